"""Training logs: after a resume from step 3 of a run killed at step 5, JSONL, CSV and TensorBoard all read as one
run (steps 1-5, the resumed values for 4-5)."""

import csv
import json
import logging
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mme.train.metrics import build_logger, read_records


def test_every_log_reads_as_one_run_after_a_resume(tmp_path):
    first = build_logger(tmp_path)
    for step in range(1, 6):
        first.log({"loss": float(step)}, step)
    first.close()
    resumed = build_logger(tmp_path, resume_step=3)
    assert len(resumed.loggers) == 3  # JSONL, CSV and TensorBoard
    for step in (4, 5):
        resumed.log({"loss": 100.0 + step}, step)
    resumed.close()
    expected = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 104.0), (5, 105.0)]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == expected
    with open(tmp_path / "metrics.csv") as f:
        assert [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)] == expected
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == expected


def test_a_resume_cuts_its_logs_back_in_place_so_that_a_follower_of_them_reads_on(tmp_path, caplog):
    """A resume after a stop that logged steps past its last checkpoint (kill -9, a requeue) cut the logs back by
    writing new files renamed over them: ``tail -f metrics.jsonl`` followed the removed file and showed nothing more,
    and ``tail -F`` said it was replaced. The records dropped at the end are now cut off in place, the files kept, so
    a follower reads on (GNU tail, -f or -F, still says 'file truncated' and prints the kept log again first); a line
    dropped before kept ones still rewrites the file, its other lines as they were."""
    first = build_logger(tmp_path)
    for step in range(1, 11):
        first.log({"loss": float(step)}, step)
    first.close()
    logs = [tmp_path / "metrics.jsonl", tmp_path / "metrics.csv"]
    for path, torn in zip(logs, ('{"step": 11, "lo', "11,0.")):
        with open(path, "a", newline="") as f:
            f.write(torn)  # the kill came mid-write
    kept = {path: b"".join(path.read_bytes().splitlines(keepends=True)[:7 + (path.suffix == ".csv")]) for path in logs}
    followers = {path: open(path, "rb") for path in logs}  # as tail -f holds them, at their end
    try:
        for f in followers.values():
            f.seek(0, os.SEEK_END)
        resumed = build_logger(tmp_path, resume_step=7)
        resumed.log({"loss": 108.0}, 8)
        resumed.close()
        for path, f in followers.items():
            assert os.fstat(f.fileno()).st_nlink == 1 and os.fstat(f.fileno()).st_ino == path.stat().st_ino, path
            assert path.read_bytes().startswith(kept[path]), path  # (the CSV's \r\n line ends as written)
            f.seek(len(kept[path]))
            assert f.read().decode().splitlines() == [{"metrics.jsonl": '{"step": 8, "loss": 108.0}',
                                                       "metrics.csv": "8,108.0"}[path.name]]
    finally:
        for f in followers.values():
            f.close()
    # a line that is no record before kept ones: the file rewritten, the kept lines as they were
    csv_log = tmp_path / "metrics.csv"
    lines = csv_log.read_bytes().splitlines(keepends=True)
    csv_log.write_bytes(b"".join(lines[:3] + [b"garbage\r\n"] + lines[3:]))
    with caplog.at_level(logging.WARNING):
        build_logger(tmp_path, resume_step=5).close()
    assert f"{csv_log}:4: not a metrics record, dropped: 'garbage" in caplog.text
    assert csv_log.read_bytes() == b"".join(lines[:6])


def test_a_tensorboard_that_cannot_be_imported_is_a_warning_and_one_not_installed_is_said_so(tmp_path, monkeypatch,
                                                                                             caplog):
    """An installed tensorboard that cannot be imported (too old for torch's writer, a broken protobuf) was said at
    info to be 'not installed', with 'pip install tensorboard' as the advice: it is a warning with its reason, and
    'not installed' is said only where no tensorboard is found."""
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensor"))]:
        monkeypatch.delitem(sys.modules, name)  # each imported again, and restored after the test
    old = tmp_path / "site" / "tensorboard"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('__version__ = "1.14.0"\n')  # installed, importable, older than torch needs
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with monkeypatch.context() as m, caplog.at_level(logging.INFO, logger="mme.train.metrics"):
        m.syspath_prepend(str(tmp_path / "site"))
        logger = build_logger(tmp_path / "a")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "tensorboard cannot be imported (TensorBoard logging requires TensorBoard version 1.15 or above): "
                    "logging JSONL and CSV only; reinstall tensorboard (it is installed but fails to load)")]
    assert [type(lg).__name__ for lg in logger.loggers] == ["JSONLLogger", "CSVLogger"]
    logger.close()
    caplog.clear()
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensor"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not installed: find_spec finds none
    with caplog.at_level(logging.INFO, logger="mme.train.metrics"):
        build_logger(tmp_path / "b").close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "tensorboard not installed: logging JSONL and CSV only (pip install tensorboard)")]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["metrics.csv", "metrics.jsonl"]


def test_a_run_folder_whose_name_is_not_utf8_keeps_every_log_and_draws_its_curves(tmp_path, caplog):
    """``train.out_dir=$'out\\xe9'`` (a Latin-1 byte, read by Python with a surrogate escape): TensorBoard's
    UnicodeEncodeError ended the run before step 1, and the loss curve's title a TypeError at its end; then TensorBoard
    was dropped with a warning. Every log is written there (TensorBoard's through the folder's descriptor), and the
    title drawn with U+FFFD for the byte."""
    from mme.train.metrics import plot_loss_curves

    run = tmp_path / os.fsdecode(b"out\xe9")
    run.mkdir()
    with caplog.at_level(logging.WARNING, logger="mme.train.metrics"):
        logger = build_logger(run)
    assert not caplog.records and len(logger.loggers) == 3  # JSONL, CSV and TensorBoard
    for step in (1, 2):
        logger.log({"loss": 1.0 / step}, step)
    logger.close()
    assert [(r["step"], r["loss"]) for r in read_records(run / "metrics.jsonl")] == [(1, 1.0), (2, 0.5)]
    fd = os.open(run / "tb", os.O_RDONLY)
    try:  # (TensorBoard's reader too takes a path as UTF-8 text)
        events = EventAccumulator(f"/proc/self/fd/{fd}")
        events.Reload()
    finally:
        os.close(fd)
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 0.5)]
    assert plot_loss_curves(run / "metrics.jsonl", run / "loss.png") == run / "loss.png"
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_proc_a_run_folder_tensorboard_cannot_be_given_is_one_warning_saying_why(tmp_path, caplog,
                                                                                          monkeypatch):
    """Where there is no ``/proc`` (not Linux), a folder whose name is not UTF-8 text (``out\\xe9``, under a UTF-8
    locale) was told to use a UTF-8 locale, which it did, and an empty ``tb/`` was left; a UTF-8 name under a locale
    that is not UTF-8 (ASCII) is. Neither folder is made."""
    from mme.train.metrics import _tensorboard_path

    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: not str(p).startswith("/proc/") and isdir(p))
    run = tmp_path / os.fsdecode(b"out\xe9")
    run.mkdir()
    with caplog.at_level(logging.WARNING, logger="mme.train.metrics"):
        build_logger(run).close()
    assert [r.getMessage() for r in caplog.records] == [
        f"tensorboard cannot log to {str(run / 'tb')!r} (OSError: its name is not UTF-8 text, the encoding tensorboard "
        "writes its files by (a folder named in UTF-8 logs there); without /proc it cannot be given to tensorboard "
        "otherwise): logging JSONL and CSV only"]
    assert sorted(os.listdir(run)) == ["metrics.csv", "metrics.jsonl"]
    assert _tensorboard_path(tmp_path / "tb") == (str(tmp_path / "tb"), None)  # (a UTF-8 name: given as it is)
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from mme.train.metrics import _tensorboard_path

        os.path.isdir = lambda p: False
        try:
            _tensorboard_path(Path({str(tmp_path).encode().decode("ascii", "surrogateescape")!r}) / "caf\\udcc3\\udca9")
        except OSError as e:
            print(e)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"})
    assert done.stdout == ("its name under this locale's encoding (ascii) is not the UTF-8 that tensorboard writes its "
                           "files by (a UTF-8 locale, LC_ALL=C.UTF-8, logs there); without /proc it cannot be given to "
                           "tensorboard otherwise\n"), done.stderr[-3000:]
    assert not (tmp_path / "caf\u00e9").exists()


def test_a_non_finite_value_is_logged_as_null_and_read_back_as_nan(tmp_path):
    """A diverging run's loss (inf) and a skipped step's (nan) went to metrics.jsonl as bare ``Infinity`` / ``NaN``:
    not JSON (jq read the loss as 1.8e308, JavaScript refused the line). They are null, as in mme's other JSON files,
    and its readers (the loss curves, the demo's) read them as NaN, as they read an older log's bare NaN."""
    from mme.demo_report import plot_losses
    from mme.train.metrics import plot_loss_curves

    def no_constant(c):
        raise ValueError(c)

    logger = build_logger(tmp_path)
    for step, loss in ((1, 2.0), (2, float("inf")), (3, float("nan")), (4, 1.0)):
        logger.log({"loss": loss, "lr": 0.1}, step)
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln, parse_constant=no_constant)["loss"] for ln in lines] == [2.0, None, None, 1.0]
    read = [r["loss"] for r in read_records(tmp_path / "metrics.jsonl")]
    assert read[0::3] == [2.0, 1.0] and all(v != v for v in read[1:3])  # (NaN is not itself)
    assert plot_loss_curves(tmp_path / "metrics.jsonl", tmp_path / "loss.png") == tmp_path / "loss.png"
    plot_losses([{"metrics": "metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path, tmp_path / "losses.png", 4)
    assert (tmp_path / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a log written before: its bare NaN is read, and kept by a resume
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": NaN}\n{"step": 2, "loss": 0.5}\n')
    resumed = build_logger(tmp_path, resume_step=2)
    resumed.log({"loss": 0.25}, 3)
    resumed.close()
    read = [(r["step"], r["loss"]) for r in read_records(tmp_path / "metrics.jsonl")]
    assert read[0][1] != read[0][1] and read[1:] == [(2, 0.5), (3, 0.25)]


def test_a_key_that_first_appears_later_widens_the_csv(tmp_path):
    """Fine-tuning logs its single-view val top-1 every task.eval_every steps, not at step 1: the CSV's columns
    were fixed by step 1's record, so the key was dropped from it (it stayed in metrics.jsonl). Now the table
    widens, earlier rows leaving the column empty, and a resumed run keeps the wider table."""
    logger = build_logger(tmp_path)
    logger.log({"loss": 1.0}, 1)
    logger.log({"loss": 2.0, "val_top1_1view": 0.5}, 2)
    logger.log({"loss": 3.0}, 3)
    logger.close()
    resumed = build_logger(tmp_path, resume_step=3)
    resumed.log({"loss": 4.0, "val_top1_1view": 0.75}, 4)
    resumed.close()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["loss"], r["val_top1_1view"]) for r in rows] == [
        ("1", "1.0", ""), ("2", "2.0", "0.5"), ("3", "3.0", ""), ("4", "4.0", "0.75")]


def test_a_logger_that_cannot_write_is_dropped_and_the_others_go_on(tmp_path, caplog):
    """A full disk made the JSONL logger raise out of the training loop: the run ended with a traceback and no
    checkpoint of the steps it had done."""
    from mme.train.metrics import JSONLLogger, MetricLogger

    class Full:
        def log(self, metrics, step):
            raise OSError(27, "File too large")

        def close(self):
            pass

    good = JSONLLogger(tmp_path / "m.jsonl")
    logger = MetricLogger([Full(), good])
    with caplog.at_level(logging.WARNING):
        for step in (1, 2):
            logger.log({"loss": 1.0}, step)
    logger.close()
    assert [r["step"] for r in read_records(tmp_path / "m.jsonl")] == [1, 2]
    assert caplog.text.count("stopped logging at step 1: [Errno 27] File too large") == 1


def test_a_folder_named_as_a_log_is_one_line_before_any_step(tmp_path):
    """A folder named metrics.jsonl (or metrics.csv) in the run's folder: before, an IsADirectoryError traceback from
    the logger's open; now an MMEError naming the file and the reason, the other log's file closed."""
    import pytest

    from mme.errors import MMEError

    for name in ("metrics.jsonl", "metrics.csv"):
        run = tmp_path / name.split(".")[1]
        (run / name).mkdir(parents=True)
        with pytest.raises(MMEError) as info:
            build_logger(run)
        assert str(info.value) == (f"{run / name}: could not be written (Is a directory); the run did not start its "
                                   f"steps")
        with pytest.raises(MMEError) as info:  # a resume reads the log first (before: said as a write alone)
            build_logger(run, resume_step=1)
        assert str(info.value) == (f"{run / name}: could not be read or written (Is a directory); the run did not "
                                   f"start its steps")


def test_a_full_disk_under_tensorboard_is_its_one_warning_without_its_threads_traceback(tmp_path):
    """TensorBoard's writer writes from a thread of its own: a full disk printed that thread's OSError traceback (17
    lines) before the warning that the logger stopped. The log dropped is recorded by its folder's name, tb (before:
    'TensorBoardLogger', in run.json's logs_stopped beside metrics.jsonl). A 24 KiB tmpfs where this user may mount
    one; else the writer's appends raise ENOSPC past their first."""
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(full)],
                             capture_output=True).returncode == 0
    script = textwrap.dedent(f"""
        import errno, logging, os, sys
        from pathlib import Path
        from tensorboard.compat.tensorflow_stub.io import gfile
        from mme.train.metrics import MetricLogger, TensorBoardLogger

        if not {mounted}:
            real, appends = gfile.LocalFileSystem.append, iter(range(10**6))

            def append(self, *args, **kwargs):
                if next(appends):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(self, *args, **kwargs)

            gfile.LocalFileSystem.append = append
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logger = MetricLogger([TensorBoardLogger(Path({str(full / "tb")!r}))])
        for step in range(1, 3001):
            logger.log({{"loss": 1.0 / step, "lr": 1e-3, "grad_norm": 2.0, "clips_per_s": 9.5}}, step)
            if not logger.loggers:
                break
        logger.close()
        print("stopped", logger.stopped)
        print("steps logged", step)
        """)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    finally:
        if mounted:
            subprocess.run(["umount", str(full)], check=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr, done.stderr[-3000:]
    warned = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(warned) == 1 and warned[0].startswith("TensorBoardLogger stopped logging at step ") and \
        "[Errno 28] No space left on device (the run goes on" in warned[0], done.stderr[-3000:]
    step = int(done.stdout.split()[-1])
    assert step < 3000  # it stopped where the disk was full
    assert f"stopped {{'tb': {step}}}" in done.stdout  # run.json's logs_stopped names its folder, as a file's name


def test_a_tensorboard_writer_failing_as_it_starts_is_one_warning_without_its_threads_traceback(tmp_path):
    """The writer's thread writes its first event as it starts: where that failed (a folder TensorBoard had made by
    another name than it wrote to, under a Latin-1 locale), the thread's traceback ("Exception in thread ...
    FileNotFoundError") was printed, as its thread was quieted only once the writer was made. One warning now."""
    script = textwrap.dedent(f"""
        import errno, logging, os
        from pathlib import Path
        from tensorboard.compat.tensorflow_stub.io import gfile
        from mme.train.metrics import build_logger

        def write(self, *args, **kwargs):  # (its first write: the writer's own event, as it is made)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        gfile.LocalFileSystem.write = write
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logger = build_logger(Path({str(tmp_path)!r}))
        logger.log({{"loss": 1.0}}, 1)
        logger.close()
        print([type(lg).__name__ for lg in logger.loggers])
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines() == [f"tensorboard cannot log to {str(tmp_path / 'tb')!r} (OSError: [Errno 28] No "
                                        "space left on device): logging JSONL and CSV only"], done.stderr[-3000:]
    assert done.stdout.split("\n")[0] == "['JSONLLogger', 'CSVLogger']"


def test_tensorboard_logs_into_a_folder_whose_name_this_locale_decodes_otherwise_than_utf8(tmp_path):
    """TensorBoard makes its folder by the locale's encoding of its path and writes its events by the UTF-8 encoding
    of the same text: under ``LC_ALL=C PYTHONUTF8=0`` (ASCII) a run folder ``caf\u00e9`` was no TensorBoard log
    ("tensorboard cannot log to ... UnicodeEncodeError"), and under a Latin-1 locale its events went nowhere (the
    writer's thread failed). They are written into the run's own tb/."""
    run = tmp_path / "caf\u00e9"
    run.mkdir()
    script = textwrap.dedent(f"""
        import logging
        from pathlib import Path
        from mme.train.metrics import build_logger

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logger = build_logger(Path({str(run).encode().decode("ascii", "surrogateescape")!r}))
        for step in (1, 2):
            logger.log({{"loss": 1.0 / step}}, step)
        logger.close()
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and not done.stderr, done.stderr[-3000:]
    assert os.listdir(tmp_path) == ["caf\u00e9"]  # (no other folder of TensorBoard's making)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 0.5)]


def test_a_tensorboard_logger_leaves_threading_excepthook_as_it_found_it_and_a_hook_set_meanwhile_works(tmp_path):
    """The hook quieting TensorBoard's writer threads stayed set after the run, and a caller's hook set since that
    calls the hook it found (the usual chaining) then called it back without end: a thread's error became ~500 frames
    and a RecursionError, the error itself never reported."""
    import threading

    from mme.train.metrics import TensorBoardLogger

    before = threading.excepthook
    logger = TensorBoardLogger(tmp_path / "tb")
    seen = []
    found = threading.excepthook

    def mine(args):  # a notebook's hook, set while the run logs
        seen.append(args.exc_type)
        found(args)

    threading.excepthook = mine
    try:
        failing = threading.Thread(target=lambda: 1 / 0)
        failing.start()
        failing.join()
    finally:
        threading.excepthook = found
    logger.close()
    assert seen == [ZeroDivisionError]
    assert threading.excepthook is before


def test_a_fresh_run_hides_the_tensorboard_events_of_one_killed_before_its_first_checkpoint(tmp_path):
    from mme.train.metrics import TensorBoardLogger

    for run in range(2):  # both fresh: the second restarts the first, which never checkpointed
        tb = TensorBoardLogger(tmp_path / "tb")
        for step in (1, 2, 3):
            tb.log({"loss": float(run)}, step)
        tb.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 1.0), (3, 1.0)]


def test_the_waiting_fraction_weighs_each_step_by_its_time():
    """A mean over steps made a short step that waited count as much as a long one that did not."""
    from mme.train.metrics import waiting_fraction

    steps = [{"clips_per_s": 10.0, "data_wait": 0.5}, {"clips_per_s": 1.0, "data_wait": 0.0}]  # 0.1 s, 1 s
    assert waiting_fraction(steps) == 0.05 / 1.1
    # a record of train.log_every=4 steps, its rate theirs: 0.4 s, weighed as its 4 steps (it was as one)
    assert waiting_fraction([{**steps[0], "steps": 4}, steps[1]]) == pytest.approx(0.2 / 1.4, rel=1e-12)


def test_the_loss_curve_is_titled_with_its_run_folder_as_spelt(tmp_path, drawn_text):
    """A run folder named with two '$' was read by matplotlib as maths: a parse error at the end of the run, or a
    title without its '$'."""
    from mme.train.metrics import plot_loss_curves

    run = tmp_path / "lr_$1e-3$_x"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3)))
    assert plot_loss_curves(run / "metrics.jsonl", run / "loss.png") == run / "loss.png"
    assert drawn_text.get("lr_$1e-3$_x") is False  # drawn, as text


def test_a_log_axis_is_labelled_in_plain_text_beside_a_name_drawn_as_spelt(tmp_path, drawn_text):
    """The loss curves' log axis was labelled by matplotlib in maths text ('$\\mathdefault{10^{0}}$'): with maths off
    for the whole picture, so that a name with two '$' was drawn as spelt, the ticks showed that source; kept on, its
    parsing took half of a run's loss picture. The ticks are plain text (1, 10), under a user's text.parse_math: False
    too, and the name is drawn literally: nothing in either picture is drawn as maths."""
    import matplotlib

    from mme.demo_report import plot_losses
    from mme.train.metrics import plot_loss_curves

    run = tmp_path / "lr_$1e-3$_x"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 10 / s}) + "\n" for s in range(1, 30)))
    with matplotlib.rc_context({"text.parse_math": False}):
        plot_loss_curves(run / "metrics.jsonl", run / "loss.png")
        loss_png = dict(drawn_text)
        drawn_text.clear()
        plot_losses([{"metrics": "lr_$1e-3$_x/metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path,
                    tmp_path / "loss_curves.png", 29)
        assert matplotlib.rcParams["text.parse_math"] is False  # the user's setting, outside the pictures
    for drawn in (loss_png, drawn_text):
        assert drawn.get("1") is False and drawn.get("10") is False, drawn
        assert not any(drawn.values()) and not any("mathdefault" in text for text in drawn), drawn
    assert loss_png.get("lr_$1e-3$_x") is False  # the title, drawn as text


def test_pictures_are_drawn_without_latex_under_a_users_usetex_and_a_drawing_error_is_a_warning(tmp_path, drawn_text,
                                                                                                 monkeypatch, caplog):
    """A user's matplotlibrc with text.usetex: True sent every text to LaTeX: without it, loss.png ended a run with
    rc 1 and a traceback after training, and the confusion matrix too. Pictures draw their text without LaTeX; a
    drawing error that still comes (matplotlib's RuntimeError) is a warning, the reports whole."""
    import matplotlib
    import torch

    from mme.demo_report import plot_losses
    from mme.eval.testing import classification_report, save_report
    from mme.train import loop
    from mme.train.metrics import plot_loss_curves

    monkeypatch.setenv("PATH", str(tmp_path))  # no latex to be found, whatever the machine has
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3)))
    report = {**classification_report(torch.eye(2)[[0, 1, 1]], torch.tensor([0, 1, 0]), ["bikes", "runs"]),
              "views_per_video": 1, "failures": []}
    with matplotlib.rc_context({"text.usetex": True}):
        assert plot_loss_curves(run / "metrics.jsonl", run / "loss.png") == run / "loss.png"
        save_report(report, run, "test")
        plot_losses([{"metrics": "run/metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path, run / "losses.png", 3)
        assert matplotlib.rcParams["text.usetex"] is True  # the user's setting, outside the pictures
    assert drawn_text.get("run") is False and drawn_text.get("bikes") is False  # drawn, as text
    assert sorted(p.name for p in run.iterdir()) == ["loss.png", "losses.png", "metrics.jsonl", "test.json",
                                                     "test_confusion.png"]

    def latex_missing(*args, **kwargs):
        raise RuntimeError("Failed to process string with tex because latex could not be found")

    monkeypatch.setattr(loop, "plot_loss_curves", latex_missing)
    monkeypatch.setattr("mme.eval.testing.save_confusion_png", latex_missing)
    with caplog.at_level("WARNING"):
        loop._draw_loss_curves(SimpleNamespace(out_dir=run), history=[1])
        save_report(report, run, "val")
    assert [r.getMessage() for r in caplog.records] == [
        f"{run / 'loss.png'}: could not be written (Failed to process string with tex because latex could not be "
        "found); the run goes on without its loss curve",
        f"{run / 'val_confusion.png'}: could not be written (Failed to process string with tex because latex could "
        "not be found); val.json is whole without it"]
    assert (run / "val.json").is_file()


def test_a_log_resumed_after_its_logger_stopped_is_not_read_as_the_runs_whole_log(tmp_path):
    """A metrics.jsonl that a full disk stopped at step 2, then resumed to step 6, holds steps 1, 4, 5, 6: it reaches
    the last step, and was read as the run's log (the demo's loss over the last tenth of the steps, its curves) though
    metrics.csv holds every step. The log that reaches the last step with the more records is read."""
    from mme.train.metrics import records_through

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 4, 5,
                                                                                                            6)))
    (tmp_path / "metrics.csv").write_text("step,loss\n" + "".join(f"{s},{1 / s}\n" for s in range(1, 7)))
    assert [r["step"] for r in records_through(tmp_path, 6)] == [1, 2, 3, 4, 5, 6]
    (tmp_path / "metrics.csv").write_text("step,loss\n" + "".join(f"{s},{1 / s}\n" for s in (1, 5, 6)))
    assert [r["step"] for r in records_through(tmp_path, 6)] == [1, 4, 5, 6]  # (the JSONL on a tie too)


def test_the_demos_loss_curves_are_read_from_a_log_that_reaches_the_runs_last_step(tmp_path, drawn_text):
    """A metrics.jsonl stopped by a full disk at step 9 of 30 was drawn as the run's curve (cut short, beside a loss
    table read from metrics.csv), and one that held no record was an IndexError traceback that ended the demo. The
    curves are read as the table is (records_through); a run with no log to its last step has no panel."""
    from mme.demo_report import plot_losses
    from mme.errors import DataError

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 10)))
    (run / "metrics.csv").write_text("step,loss\n" + "".join(f"{s},{1 / s}\n" for s in range(1, 31)))
    rows = [{"metrics": "run/metrics.jsonl", "seed": 0, "target": "pixel"}]
    plot_losses(rows, tmp_path, run / "losses.png", 30)
    assert "loss (mean of 3 records)" in drawn_text  # the CSV's 30 steps, not the JSONL's 9 (mean of 1)
    (run / "metrics.jsonl").write_text("")
    (run / "metrics.csv").write_text("step,loss\n1,1.0\n")
    with pytest.raises(DataError, match="its logs do not reach the run's last step, 30 \\(metrics.jsonl holds no "
                                        "record; metrics.csv stops at step 1"):
        plot_losses(rows, tmp_path, run / "losses2.png", 30)
    assert not (run / "losses2.png").exists()


def test_the_demos_running_mean_of_the_loss_weighs_each_record_by_its_steps(tmp_path, drawn_text, monkeypatch):
    """With train.log_every=3 a record's loss is the mean of its 3 steps, one forced at a checkpoint of 1 step: the
    demo's curve averaged 3 records as 3 values (the record of 1 step weighed as one of 3) and labelled its points
    "per batch". The running mean is over the steps the records cover, its legend saying records."""
    from matplotlib.axes import Axes

    from mme.demo_report import plot_losses

    drawn, plot = {}, Axes.plot

    def kept(self, *args, **kwargs):  # each line's values, by its label
        drawn[kwargs.get("label")] = np.asarray(args[1], dtype=float)
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", kept)
    run = tmp_path / "run"
    run.mkdir()
    covers = [3, 1] * 15  # 30 records: a running mean of 3
    steps, losses = np.cumsum(covers), [1.0 + i * i % 5 for i in range(30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": int(s), "loss": v, "steps": n}) + "\n"
                                               for s, v, n in zip(steps, losses, covers)))
    plot_losses([{"metrics": "run/metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path, run / "l.png", 60)
    assert "loss (mean of 3 records)" in drawn_text
    want = [np.dot(losses[i - 2:i + 1], covers[i - 2:i + 1]) / sum(covers[i - 2:i + 1]) for i in range(2, 30)]
    assert drawn["loss (mean of 3 records)"] == pytest.approx(want, rel=1e-12)  # (was their plain mean)
    assert drawn["loss (mean of 3 records)"][0] == pytest.approx((3 * 1 + 1 * 2 + 3 * 5) / 7, rel=1e-12)  # not 8 / 3


def test_the_loss_curve_breaks_where_the_loss_cannot_be_drawn_and_marks_those_steps(tmp_path, saved_figures):
    """loss.png kept the losses > 0 alone, as lines without markers: a NaN (a diverging run's, logged as null) was
    bridged by a straight line, a run whose loss went NaN was cut at its last finite record with no sign it went
    on, one finite record drew nothing, a log of NaN alone drew no picture, and a long run's noise a solid band.
    The curve breaks there and those steps are marked along the top ('not finite') or bottom ('≤ 0'), so the x
    axis reaches the last step; few records are each marked; many are faint under their running mean."""
    import warnings

    from mme.train.metrics import plot_loss_curves

    def drawn(losses):
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": v}) + "\n"
                                                        for s, v in enumerate(losses, 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (a log axis with no value to draw: matplotlib's warning)
            assert plot_loss_curves(tmp_path / "metrics.jsonl", tmp_path / "loss.png") == tmp_path / "loss.png"
        ax = saved_figures.pop().axes[0]
        return ax, [(line.get_label(), line.get_marker(), line.get_xdata(), line.get_ydata()) for line in
                    ax.get_lines()]

    def marks(what, steps):  # the steps marked along the top or the bottom of the axes
        return what, {"not finite": "x", "≤ 0": "v"}[what], steps, {"not finite": 0.97, "≤ 0": 0.03}[what]

    steps = np.arange(1.0, 101.0)
    losses = [None if 40 <= s < 60 else 10 / s for s in steps]  # NaN mid-way: the curve breaks at steps 40-59
    ax, lines = drawn(losses)
    gap = np.where((steps >= 40) & (steps < 60), np.nan, 10 / steps)
    windows = np.lib.stride_tricks.sliding_window_view(gap, 8)  # (80 records drawn: a mean of 8)
    mean = [np.nanmean(w) if np.isfinite(w).sum() >= 4 else np.nan for w in windows]  # of half a window or more
    assert [label for label, *_ in lines] == [lines[0][0], "loss (mean of 8 records)", "not finite"]
    np.testing.assert_allclose(lines[0][2:], [steps, gap], rtol=1e-15)
    np.testing.assert_allclose(lines[1][2:], [steps[7:], mean], rtol=1e-12)  # NaN at steps 44-62
    assert np.isnan(lines[1][3]).sum() == 19 and lines[0][1] == lines[1][1] == "None"
    label, marker, x, y = lines[2]
    assert (label, marker, list(x), set(y)) == ("not finite", "x", list(steps[39:59]), {0.97})

    ax, lines = drawn([5.0, 5.0, 5.0] + [None] * 97)  # a run that diverged at step 4: its 3 records, each marked
    assert [(label, marker) for label, marker, *_ in lines] == [("loss", "o"), ("not finite", "x")]
    np.testing.assert_array_equal(lines[0][3], [5.0] * 3 + [np.nan] * 97)
    assert list(lines[1][2]) == list(steps[3:]) and ax.get_xlim()[1] >= 100  # (cut at step 3 before)
    ax, lines = drawn([None] * 5)  # every loss NaN: the marks alone
    assert [(label, list(x)) for label, _, x, _ in lines[1:]] == [("not finite", [1, 2, 3, 4, 5])]
    assert ax.get_yscale() == "linear" and np.isnan(lines[0][3]).all()
    ax, lines = drawn([1.0, 0.0, 2.0])  # a loss of 0, off the log axis
    assert [(label, marker, list(x)) for label, marker, x, _ in lines[1:]] == [("≤ 0", "v", [2])]
    np.testing.assert_array_equal(lines[0][3], [1.0, np.nan, 2.0])
    noisy = 1 + 0.5 * np.cos(np.arange(6000.0))  # a long run: a mean of 30 records (a 200th of them)
    ax, lines = drawn(list(noisy))
    assert [label for label, *_ in lines[1:]] == ["loss (mean of 30 records)"]
    assert [line.get_alpha() for line in ax.get_lines()] == [0.25, None]  # the records faint under their mean
    np.testing.assert_allclose(lines[1][2:], [np.arange(30.0, 6001.0, 2),  # (at most 4,000 ends: each second)
                                              np.convolve(noisy, np.ones(30), "valid")[::2] / 30], rtol=1e-12)


def test_the_running_mean_of_the_loss_is_of_each_windows_drawable_records_and_a_long_runs_lines_are_thin():
    """The running mean was a difference of running sums: after one huge finite loss (1e20) every later mean was 0
    (1e16: 2); a window holding one non-finite record was NaN, so a long run's loss NaN at one record in 150 drew
    two thirds of its mean as gaps. Each window's mean is now its own, of its drawable records where they are half
    of it or more. A run of 100,000 records drew 100,000 points a line (a 400,000 one took 351 MB): the records
    are drawn as each bucket's lowest and highest (a spike kept), the mean at no more than 4,000 window ends."""
    from matplotlib.figure import Figure

    from mme.train.metrics import plot_loss_records

    def drawn(values, covered):
        ax = Figure().subplots()
        plot_loss_records(ax, np.arange(1.0, len(values) + 1), values, covered, "loss")
        return [(line.get_label(), np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
                for line in ax.get_lines()]

    rng = np.random.default_rng(0)
    loss, covered = 1 + 0.1 * rng.random(2000), rng.integers(1, 4, 2000).astype(float)
    loss[99] = 1e20  # one record's loss huge (finite), the run going on
    (_, _, faint), (label, _, mean) = drawn(loss, covered)
    want = np.convolve(loss * covered, np.ones(25), "valid") / np.convolve(covered, np.ones(25), "valid")
    assert label == "loss (mean of 25 records)" and faint[99] == 1e20
    np.testing.assert_allclose(mean, want, rtol=1e-12)  # (0 after the window of the 1e20)
    loss[29::30] = np.nan  # one record in 30 not finite
    (_, _, faint), (_, _, mean) = drawn(loss, covered)
    drawable = np.where(np.isnan(loss), 0.0, covered)
    want = (np.convolve(np.nan_to_num(loss) * drawable, np.ones(25), "valid") /
            np.convolve(drawable, np.ones(25), "valid"))
    assert np.isnan(faint).sum() == 66 and not np.isnan(mean).any()  # (all NaN but the first 4 ends)
    np.testing.assert_allclose(mean, want, rtol=1e-12)
    n = 100_000
    loss = 1 + 0.1 * rng.random(n)
    loss[[5_000, 70_001]] = 50.0, 0.01  # a spike and a dip among the records of a bucket (50 of them)
    loss[40_000:40_010] = np.nan
    (_, x, faint), (label, x_mean, mean) = drawn(loss, np.ones(n))
    assert len(x) == 4000 + 1 and np.isnan(faint).sum() == 1 and len(mean) == 3981  # (a break; each 25th end)
    assert (np.nanmax(faint), np.nanmin(faint)) == (50.0, 0.01) and np.all(np.diff(x) >= 0)
    assert label == "loss (mean of 499 records)"  # (a 200th of the 99,990 drawable)
    np.testing.assert_array_equal(x_mean, np.arange(499.0, n + 1, 25))
    np.testing.assert_allclose(mean, [np.nanmean(loss[int(e) - 499:int(e)]) for e in x_mean], rtol=1e-12)


def test_a_matplotlib_that_cannot_be_imported_is_a_warning_and_the_reports_are_whole(tmp_path, monkeypatch, caplog):
    """A matplotlib that cannot be imported (installed without its dependencies, or built against another numpy)
    raised an ImportError that the pictures' guards (OSError, RuntimeError) let through: a traceback after training,
    fine-tuning without its test reports. It is a RuntimeError naming matplotlib (``literal_text``), so a warning."""
    import torch

    from mme.demo_report import plot_losses
    from mme.eval.testing import classification_report, save_report
    from mme.train import loop

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3)))
    report = {**classification_report(torch.eye(2)[[0, 1, 1]], torch.tensor([0, 1, 0]), ["bikes", "runs"]),
              "views_per_video": 1, "failures": []}
    import matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: an ImportError
    reason = "matplotlib cannot be imported (import of matplotlib halted; None in sys.modules); pip install matplotlib"
    with caplog.at_level("WARNING"):
        loop._draw_loss_curves(SimpleNamespace(out_dir=run), history=[1])
        save_report(report, run, "test")
    assert [r.getMessage() for r in caplog.records] == [
        f"{run / 'loss.png'}: could not be written ({reason}); the run goes on without its loss curve",
        f"{run / 'test_confusion.png'}: could not be written ({reason}); test.json is whole without it"]
    with pytest.raises(RuntimeError, match=r"^matplotlib cannot be imported \(import of matplotlib halted"):
        plot_losses([{"metrics": "run/metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path, run / "losses.png",
                    3)
    assert json.loads((run / "test.json").read_text())["top1"] == pytest.approx(2 / 3)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "test.json"]
    # matplotlib itself imports, its figure module (fontTools, its compiled _image) does not: a reinstall is asked
    monkeypatch.setitem(sys.modules, "matplotlib", matplotlib)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    caplog.clear()
    with caplog.at_level("WARNING"):
        loop._draw_loss_curves(SimpleNamespace(out_dir=run), history=[1])
    assert [r.getMessage() for r in caplog.records] == [
        f"{run / 'loss.png'}: could not be written (matplotlib cannot be imported (import of matplotlib.figure halted; "
        "None in sys.modules); reinstall matplotlib (it is installed but fails to load)); the run goes on without its "
        "loss curve"]


def test_a_backend_the_environment_names_and_this_one_lacks_leaves_the_pictures_drawn(tmp_path, monkeypatch, caplog):
    """A notebook's kernel exports MPLBACKEND=module://matplotlib_inline.backend_inline to its `!` commands, a backend
    a venv of its own lacks: matplotlib's first import raised a ValueError, a traceback after training (fine-tuning
    without its reports). mme draws without a backend, so its first import of matplotlib sets MPLBACKEND aside and
    then gives matplotlib the backend it names where it is valid: a valid one (svg) stays pyplot's after mme drew
    (it was lost, pyplot's 'agg': a notebook's inline figures not shown). Any other error of the import is the
    warning of a matplotlib that cannot be imported."""
    from mme import utils
    from mme.train import loop

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2)))
    script = textwrap.dedent(f"""
        import os, sys
        from mme.train.metrics import plot_loss_curves

        assert "matplotlib" not in sys.modules
        plot_loss_curves({str(tmp_path / "metrics.jsonl")!r}, {str(tmp_path / "loss.png")!r})
        print(os.environ["MPLBACKEND"])
        if os.environ["MPLBACKEND"] == "svg":
            import matplotlib.pyplot

            print(matplotlib.pyplot.get_backend())
        """)
    for backend, said in [("module://matplotlib_inline.backend_inline", ""), ("svg", "svg\n")]:
        (tmp_path / "loss.png").unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MPLBACKEND": backend, "OMP_NUM_THREADS": "1"})
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{backend}\n{said}", "")
        assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")

    def refused():
        raise ValueError("Key backend: 'module://x' is not a valid value for backend")

    monkeypatch.setattr(utils, "_import_matplotlib", refused)
    with caplog.at_level("WARNING"):
        loop._draw_loss_curves(SimpleNamespace(out_dir=tmp_path), history=[1])
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'loss.png'}: could not be written (matplotlib cannot be imported (Key backend: 'module://x' is "
        "not a valid value for backend)); the run goes on without its loss curve"]


def test_pictures_drawn_in_two_threads_at_once_leave_matplotlib_and_the_warnings_as_they_were():
    """Two literal_text blocks overlapping in two threads (pictures drawn by a thread pool): the one left last put
    back what the other had set, so text.parse_math stayed off and the glyph warning hidden for the rest of the
    process."""
    import threading
    import warnings

    import matplotlib

    from mme.utils import literal_text

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with literal_text():
            first_in.set()
            second_in.wait(timeout=1)  # the second waits for this block to end, or enters now (before)
        first_out.set()

    def second():
        first_in.wait()
        with literal_text():
            second_in.set()
            first_out.wait(timeout=5)

    filters = list(warnings.filters)
    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert matplotlib.rcParams["text.parse_math"] is True and matplotlib.rcParams["text.usetex"] is False
    assert warnings.filters == filters


def test_pictures_leave_the_processs_matplotlib_backend_and_its_figures_as_they_were(tmp_path):
    """The loss curve, the confusion matrix and the demo's loss curves switched the process's matplotlib backend to
    Agg (a notebook's, for the rest of its session) and drew with pyplot, beside the user's figures."""
    import matplotlib
    import matplotlib.pyplot as plt
    from PIL import Image

    from mme.demo_report import plot_losses
    from mme.eval.testing import save_confusion_png
    from mme.train.metrics import plot_loss_curves

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3)))
    backend = matplotlib.get_backend()
    matplotlib.use("pdf")  # stands for a notebook's backend
    try:
        users = plt.figure()
        plot_loss_curves(run / "metrics.jsonl", run / "loss.png")
        save_confusion_png([[2, 0], [1, 1]], run / "confusion.png", ["bikes", "runs"])
        plot_losses([{"metrics": "run/metrics.jsonl", "seed": 0, "target": "pixel"}], tmp_path, run / "losses.png", 3)
        assert matplotlib.get_backend() == "pdf" and plt.get_fignums() == [users.number]
    finally:
        plt.close("all")
        matplotlib.use(backend)
    assert [Image.open(run / name).format for name in ("loss.png", "confusion.png", "losses.png")] == ["PNG"] * 3


def test_the_loss_curve_of_a_long_log_is_drawn_keeping_its_losses_only(tmp_path):
    """The end of a run read its whole metrics.jsonl into a list of records (81 MB for this 8 MB log, 10x it
    whatever its length) to draw the loss curve; a resume read it whole to cut it back. Both go line by line now."""
    import tracemalloc

    import matplotlib.pyplot  # noqa: F401  (its import's memory is not the curve's)
    from PIL import Image

    from mme.train.metrics import _keep_until, plot_loss_curves

    other = {f"metric_{k}": 0.5 for k in range(40)}
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step in range(1, 10_001):
            f.write(json.dumps({"step": step, "loss": 1 / step, "loss_hog": 2 / step, **other}) + "\n")
    size = (tmp_path / "metrics.jsonl").stat().st_size  # 8 MB
    tracemalloc.start()
    plot_loss_curves(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    _keep_until(tmp_path / "metrics.jsonl", 9_999, lambda i, line: json.loads(line)["step"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < size, (peak, size)  # 0.74 of it: matplotlib's figure (~3 MB) and the paths of the two curves
    assert Image.open(tmp_path / "loss.png").size == (770, 440)
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl")][-2:] == [9_998, 9_999]


def test_the_records_of_a_log_that_is_a_fifo_or_a_link_are_refused_not_waited_on_or_followed(tmp_path):
    """The loss picture and the demo read a run's logs through ``iter_records`` / ``iter_csv_records``, which
    opened a FIFO put at ``metrics.jsonl`` and waited on it for good, and followed a link to another user's file
    (quoting its lines in a warning): they read as every run log is read (``read_log``)."""
    from mme.train.metrics import read_csv_records, read_records
    from mme.utils import NotRegularFile

    other = tmp_path / "other.txt"
    other.write_text("secret\n")
    os.mkfifo(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.csv").symlink_to(other)
    with pytest.raises(NotRegularFile, match=r"is not a regular file: '.*/metrics\.jsonl'$"):
        read_records(tmp_path / "metrics.jsonl")
    with pytest.raises(NotRegularFile, match=r"is a symbolic link \(not followed\): '.*/metrics\.csv'$"):
        read_csv_records(tmp_path / "metrics.csv")
