"""Training logs behind a two-method interface, ``log(metrics, step)`` and ``close()``.

JSONL and CSV always; TensorBoard scalars when the ``tensorboard`` package is installed; a fan-out container
writes to all of them. Only rank 0 creates loggers. ``plot_loss_curves`` draws the PNG at the end of a run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import threading
import weakref
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mme.errors import DataError, MMEError, import_advice, installed
from mme.utils import (
    TEXT,
    atomic_path,
    check_path_held,
    error_reason,
    json_nulls,
    literal,
    literal_text,
    log_scale_y,
    open_regular,
    writing,
)

log = logging.getLogger(__name__)


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _keep_until(path: Path, step: int, read_step) -> None:
    """Drop the records after ``step`` (written by a run that was killed after its last checkpoint), a last line
    cut short by a crash, and unreadable lines (with a warning). ``read_step(i, line)``: the line's step, None for a
    header, ValueError for a line that is not a record. Read line by line: a long run's log is hundreds of MB (750k
    steps). Lines dropped at the end alone (the usual case) are cut off in place, the file kept, so that ``tail -f``
    and ``tail -F`` of the log go on following it (a crash leaves it whole or cut); a line dropped before one kept
    rewrites the file atomically, its kept lines as they were."""
    if not path.is_file():
        return
    dropped, lines, at, cut = set(), 0, 0, None  # cut: (offset, line) where the dropped lines at the end begin
    with read_log(path) as f:
        for i, raw in enumerate(f):
            line, lines = raw.decode(**TEXT), i + 1
            if not line.endswith("\n"):
                drop = True  # torn by a crash mid-write: our writers end every record with a newline
            else:
                try:
                    s = read_step(i, line)
                    drop = s is not None and s > step
                except (ValueError, KeyError, IndexError, TypeError):
                    log.warning("%s:%d: not a metrics record, dropped: %r", path, i + 1, line[:80])
                    drop = True
            if drop:
                dropped.add(i)
            cut = (cut or (at, i)) if drop else None
            at += len(raw)
    if not dropped:
        return
    check_path_held(path)  # (the cut in place below opens the file itself, which atomic_path would check: after
    # a long read of the log, its folder may have been replaced by another run's)
    if cut and len(dropped) == lines - cut[1]:  # the dropped lines are the last ones
        fd = open_regular(path, os.O_WRONLY)  # (not through a link put there: :func:`open_log`)
        try:
            os.ftruncate(fd, cut[0])
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    with atomic_path(path) as tmp, read_log(path) as f, tmp.open("wb") as out:
        out.writelines(line for i, line in enumerate(f) if i not in dropped)


def iter_records(jsonl: str | Path) -> Iterator[dict]:
    """The records of a ``metrics.jsonl``, one at a time, skipping a last line cut short by a crash and (with a
    warning) any line that is not a JSON record. A null value (a non-finite loss, as :class:`JSONLLogger` writes it)
    is read as NaN, as is the bare ``NaN`` / ``Infinity`` of a log written before (read as itself). Read as every
    log of a run folder is (:func:`read_log`: a FIFO put at its name hung the loss picture)."""
    with read_log(Path(jsonl), text=True) as f:
        for i, line in enumerate(f):
            if not line.strip() or not line.endswith("\n"):
                continue
            try:
                yield {k: math.nan if v is None else v for k, v in dict(json.loads(line)).items()}
            except ValueError:
                log.warning("%s:%d: not a metrics record, skipped: %r", jsonl, i + 1, line[:80])


def read_records(jsonl: str | Path) -> list[dict]:
    """:func:`iter_records` as a list."""
    return list(iter_records(jsonl))


def iter_csv_records(path: str | Path) -> Iterator[dict]:
    """The records of a ``metrics.csv`` (:class:`CSVLogger`), one at a time, as :func:`iter_records` gives a JSONL's:
    numbers, a row's empty cells (a key that appeared later) left out. A last line torn by a crash (no newline) is
    dropped. Read as :func:`iter_records` reads (:func:`read_log`)."""
    with read_log(Path(path), text=True) as f:
        for row in csv.DictReader(line for line in f if line.endswith("\n")):
            yield {k: int(v) if k == "step" else float(v) for k, v in row.items() if v not in ("", None) and k}


def read_csv_records(path: str | Path) -> list[dict]:
    """:func:`iter_csv_records` as a list."""
    return list(iter_csv_records(path))


def records_through(out_dir: str | Path, last_step: int) -> list[dict]:
    """The records the run in ``out_dir`` logged through its ``last_step`` (a run always logs its last step): of
    ``metrics.jsonl`` and ``metrics.csv``, the one that reaches it with the more records (the JSONL on a tie). A log
    whose logger a failed write stopped (a full disk: :class:`MetricLogger` goes on without it) stops short, or,
    resumed, holds a gap of the steps it missed. Neither reaching it: a DataError naming both logs and where each
    stops."""
    ends, whole = [], []
    for path, read in ((Path(out_dir, "metrics.jsonl"), read_records), (Path(out_dir, "metrics.csv"),
                                                                         read_csv_records)):
        try:
            records = read(path)
        except (OSError, ValueError) as e:
            ends.append(f"{path.name}: {error_reason(e)}")
            continue
        if records and records[-1]["step"] >= last_step:
            whole.append(records)
        else:
            ends.append(f"{path.name} stops at step {records[-1]['step']}" if records else
                        f"{path.name} holds no record")
    if whole:
        return max(whole, key=len)  # (max keeps the first of equals)
    raise DataError(f"{out_dir}: its logs do not reach the run's last step, {last_step} ({'; '.join(ends)}: a write "
                    f"that failed, a full disk, stopped them), so its loss there is not known")


def steps_of(record: dict) -> int:
    """The optimizer steps a metrics record covers, whose values it sums up (its ``steps``: ``train.log_every``,
    fewer at a record it forces, mme.train.loop.LoggedSteps); 1 in a log of an mme before that, whose records held
    their own step's values alone."""
    return int(record.get("steps", 1))


def waiting_fraction(records: list[dict]) -> float:
    """The fraction of the time of logged steps that they spent waiting for data: each record's ``data_wait``
    weighted by its steps' seconds (a step's clips are the run's, so ``steps / clips_per_s``), not a mean over
    records."""
    seconds = [steps_of(r) / r["clips_per_s"] for r in records]
    return sum(r["data_wait"] * s for r, s in zip(records, seconds)) / sum(seconds)


def open_log(path: Path, append: bool, newline: str | None = None) -> TextIO:
    """The text file of a log at ``path`` opened for writing (emptied first unless ``append``), made where it is not
    there: never through a symbolic link put at its known name (another user who may write the run folder could have
    the run write into the file it leads to), nor into another file than a regular one (:func:`open_regular`)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(open_regular(path, flags), "a" if append else "w", newline=newline, **TEXT)


def read_log(path: Path, text: bool = False) -> BinaryIO | TextIO:
    """The log at ``path`` opened for reading, in bytes or as text (as :mod:`csv` reads it), where a resumed or
    widened log reads it to write it anew: never through a symbolic link put at its known name (the file it leads
    to, another user's, was copied into the run folder, its lines quoted in a warning), nor from another file than a
    regular one (:func:`open_regular`)."""
    fd = open_regular(path, os.O_RDONLY)
    return os.fdopen(fd, "r", newline="", **TEXT) if text else os.fdopen(fd, "rb")


class JSONLLogger:
    """One JSON object per line: ``{"step": s, **metrics}``, null for a non-finite value (:func:`json_nulls`: strict
    JSON, as mme's other files; :func:`iter_records` reads it back as NaN)."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None:
            _keep_until(self.path, resume_step, lambda i, ln: int(json.loads(ln)["step"]) if ln.strip() else None)
        self.file = open_log(self.path, append=resume_step is not None)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.file.write(json.dumps(json_nulls({"step": step, **metrics}), allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class CSVLogger:
    """A CSV table whose columns are the keys logged so far: a key that first appears after the first record (the
    periodic val top-1 of fine-tuning) widens the table, its earlier rows leaving it empty."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.columns: list[str] | None = None
        if resume_step is not None and self.path.is_file():
            _keep_until(self.path, resume_step, lambda i, ln: None if i == 0 else int(ln.split(",", 1)[0]))
            with read_log(self.path, text=True) as f:
                self.columns = next(csv.reader(f), None)
        self.file = open_log(self.path, append=bool(self.columns), newline="")
        self.writer = csv.DictWriter(self.file, self.columns) if self.columns else None

    def log(self, metrics: dict[str, float], step: int) -> None:
        row = {"step": step, **metrics}
        if self.writer is None:
            self.columns = list(row)
            self.writer = csv.DictWriter(self.file, self.columns)
            self.writer.writeheader()
        elif not row.keys() <= set(self.columns):
            self._widen([*self.columns, *(k for k in row if k not in self.columns)])
        self.writer.writerow(row)
        self.file.flush()

    def _widen(self, columns: list[str]) -> None:
        """Rewrite the table with ``columns`` (atomically) and append to it from now on."""
        self.file.close()
        with read_log(self.path, text=True) as f:
            rows = list(csv.DictReader(f))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="", **TEXT) as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        self.columns = columns
        self.file = open_log(self.path, append=True, newline="")
        self.writer = csv.DictWriter(self.file, columns)

    def close(self) -> None:
        self.file.close()


_quieting: weakref.WeakSet[TensorBoardLogger] = weakref.WeakSet()
_excepthook_before: Callable = threading.excepthook
_in_hook = threading.local()


def _excepthook(args) -> None:
    """``threading.excepthook`` while a :class:`TensorBoardLogger` is open, silent for an OSError of a TensorBoard
    writer's thread (a full disk), which its writer raises again in :meth:`TensorBoardLogger.log` (it keeps it), where
    it is warned about. Any other thread's error goes to the hook found when it was set; a hook set since that calls
    the hook it found (this one) back gets Python's own (it would otherwise be called again without end)."""
    if _quieting and type(args.thread).__module__.startswith("tensorboard.") and isinstance(args.exc_value, OSError):
        return
    if getattr(_in_hook, "active", False):
        threading.__excepthook__(args)
        return
    _in_hook.active = True
    try:
        _excepthook_before(args)
    finally:
        _in_hook.active = False


def _quiet_os_errors_for(logger: TensorBoardLogger) -> None:
    """Set :func:`_excepthook` for ``logger``, before its writer starts its thread (which may fail at once: its
    first write is of the writer's making)."""
    global _excepthook_before
    _quieting.add(logger)
    if threading.excepthook is not _excepthook:  # (put back by whoever set one since: a test runner)
        _excepthook_before, threading.excepthook = threading.excepthook, _excepthook


def _hook_back_when_quiet(logger: TensorBoardLogger) -> None:
    """Put back the hook :func:`_quiet_os_errors_for` found once no logger it quiets is open: a library caller's
    process is left as it was."""
    _quieting.discard(logger)
    if threading.excepthook is _excepthook and not _quieting:
        threading.excepthook = _excepthook_before


def _tensorboard_path(log_dir: Path) -> tuple[str, int | None]:
    """The path TensorBoard is given for ``log_dir`` (made here), and the descriptor it opens for it (None where
    none). TensorBoard makes the folder by the locale's encoding of its path but writes its event file by the UTF-8
    encoding of the same text: under a Latin-1 locale ``run \u00e9t\u00e9`` (``run \u00c3\u00a9t\u00c3\u00a9``
    there) they are other folders, and the writer's thread failed. Such a folder is given as ``/proc/self/fd/N``,
    whose text is the same in every encoding; without ``/proc`` (not Linux) an OSError saying why, the folder not
    made."""
    path = str(log_dir)
    try:
        same = path.encode("utf-8") == os.fsencode(path)
    except UnicodeEncodeError:  # (a name that is not UTF-8 text under this locale: its surrogate escapes)
        same = False
    if not same and not os.path.isdir("/proc/self/fd"):
        try:
            os.fsencode(path).decode("utf-8")
        except UnicodeDecodeError:  # (a UTF-8 locale would not help)
            why = "its name is not UTF-8 text, the encoding tensorboard writes its files by (a folder named in UTF-8 " \
                  "logs there)"
        else:
            why = (f"its name under this locale's encoding ({sys.getfilesystemencoding()}) is not the UTF-8 that "
                   "tensorboard writes its files by (a UTF-8 locale, LC_ALL=C.UTF-8, logs there)")
        raise OSError(f"{why}; without /proc it cannot be given to tensorboard otherwise")
    os.makedirs(log_dir, exist_ok=True)
    if same:
        return path, None
    fd = os.open(log_dir, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}", fd


class TensorBoardLogger:
    """Scalars under ``log_dir``; TensorBoard hides the events of earlier runs past ``resume_step`` (``purge_step``;
    all of them for a fresh run). The writer writes from a thread of its own: each :meth:`log` waits for it to
    write, so that a failure (a full disk) is raised at that step, in the caller's thread, and that thread's own
    traceback of it is not printed (:func:`_quiet_os_errors_for`): the warning of :class:`MetricLogger` alone is."""

    def __init__(self, log_dir: Path, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package

        self.path = Path(log_dir)  # (its name, "tb", is the log's where it is dropped: MetricLogger.stopped)
        path, self.fd = _tensorboard_path(self.path)
        _quiet_os_errors_for(self)
        try:
            # a fresh run hides the events of one killed before its first checkpoint, as metrics.jsonl drops them
            self.writer = SummaryWriter(path, purge_step=(resume_step or 0) + 1)
        except BaseException:
            self._release()
            raise

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self._release()

    def _release(self) -> None:
        _hook_back_when_quiet(self)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class MetricLogger:
    """Fan-out to several loggers. A logger that cannot write (a full disk, a quota) is warned about and dropped:
    the run goes on to its checkpoints, which matter more than its logs."""

    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers
        self.stopped: dict[str, int] = {}  # the log (its file's name) of each logger dropped -> the step it failed at

    def log(self, metrics: dict[str, float], step: int) -> None:
        for lg in list(self.loggers):
            try:
                lg.log(metrics, step)
            except OSError as e:
                log.warning("%s stopped logging at step %d: %s (the run goes on; its checkpoints are written as "
                            "before)", type(lg).__name__, step, e)
                self.loggers.remove(lg)
                self.stopped[Path(getattr(lg, "path", type(lg).__name__)).name] = step
                try:
                    lg.close()
                except OSError:
                    pass

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


def build_logger(out_dir: Path, resume_step: int | None = None, enabled: bool = True) -> MetricLogger:
    """``metrics.jsonl`` + ``metrics.csv`` (+ ``tb/`` when tensorboard can be imported) in ``out_dir``; when resuming,
    records past ``resume_step`` are dropped so the files read as one run. ``enabled=False`` (ranks > 0) logs
    nothing."""
    if not enabled:
        return MetricLogger([])
    out_dir = Path(out_dir)
    loggers: list[Logger] = []
    try:  # (a folder of a log's name: one line, before any step)
        for name, kind in (("metrics.jsonl", JSONLLogger), ("metrics.csv", CSVLogger)):
            with writing(out_dir / name, "the run did not start its steps",  # (resumed: its records read first)
                         done="written" if resume_step is None else "read or written"):
                loggers.append(kind(out_dir / name, resume_step))
    except MMEError:
        for lg in loggers:
            lg.close()
        raise
    try:
        loggers.append(TensorBoardLogger(out_dir / "tb", resume_step))
    except ImportError as e:  # not installed, or installed and broken (too old for torch, its protobuf's failure)
        if not installed("tensorboard"):
            log.info("tensorboard not installed: logging JSONL and CSV only (%s)", import_advice("tensorboard"))
        else:
            log.warning("tensorboard cannot be imported (%s): logging JSONL and CSV only; %s", error_reason(e),
                        import_advice("tensorboard", error=e))
    except Exception as e:  # (a folder name that is not UTF-8: its UnicodeEncodeError; a file it cannot create)
        log.warning(f"tensorboard cannot log to {str(out_dir / 'tb')!r} ({type(e).__name__}: {e}): logging JSONL "
                    f"and CSV only")  # (repr: a byte that is not UTF-8 escaped, as \udce9)
    return MetricLogger(loggers)


LOSS_POINTS = 4000
"""The most points of a line of a loss picture (a 7-inch picture at 110 dpi is 770 pixels wide): a run of 400,000
records drawn point by point took 351 MB and 10 s."""


def plot_loss_records(ax, steps, values, covered, label: str) -> bool:
    """A loss against the step on a log axis, one value per metrics record (each the mean of the ``covered`` steps
    it sums up): the records faint (:func:`_envelope`) and their running mean on top, each record weighed by its
    steps, in one colour (a long run's records alone drew a solid band); where fewer than 20 are drawable, the
    records alone, each marked (one record between non-finite ones drew nothing). A value the log axis cannot show
    (not finite, <= 0) breaks the records' line, which drew straight across it; the mean is of a window's drawable
    records, where they are at least half of it (one in a window made it all NaN). Each window's sum is its own (a
    difference of running sums lost the records after a huge one), at no more than :data:`LOSS_POINTS` ends. Whether
    any value is drawable (else a log axis would have none to show: matplotlib warns)."""
    steps, covered = np.asarray(steps, dtype=float), np.asarray(covered, dtype=float)
    values = np.asarray(values, dtype=float)
    drawable = np.isfinite(values) & (values > 0)
    values = np.where(drawable, values, np.nan)
    w = max(1, min(drawable.sum() // 10, max(25, drawable.sum() // 200)))  # (a long run's: a pixel column or so)
    if w == 1:
        ax.plot(*_envelope(steps, values), marker="o", ms=3, lw=1.2, label=label)
        return bool(drawable.any())
    line, = ax.plot(*_envelope(steps, values), alpha=0.25, lw=0.8)
    every = -(-(len(values) - w + 1) // LOSS_POINTS)

    def window_sums(x):
        return sliding_window_view(np.where(drawable, x, 0.0), w)[::every].sum(1)

    enough = 2 * window_sums(1.0) >= w
    mean = np.where(enough, window_sums(values * covered) / np.where(enough, window_sums(covered), 1.0), np.nan)
    ax.plot(steps[w - 1::every], mean, color=line.get_color(), label=f"{label} (mean of {w} records)")
    return True


def _envelope(steps, values):
    """The points of a line of ``values`` (NaN: a break) against ``steps`` in at most :data:`LOSS_POINTS` (and a
    break each): beyond, the lowest and the highest record of each bucket of records in a row, in their order (a
    spike kept), the line broken after a bucket that holds a NaN."""
    if len(values) <= LOSS_POINTS:
        return steps, values
    size = -(-len(values) // (LOSS_POINTS // 2))
    pad = -len(values) % size
    s, v = (np.pad(x, (0, pad), mode="edge").reshape(-1, size) for x in (steps, values))
    gap = np.isnan(v).any(1)
    low, high = np.where(np.isnan(v), np.inf, v).argmin(1), np.where(np.isnan(v), -np.inf, v).argmax(1)
    rows, first, last = np.arange(len(v)), np.minimum(low, high), np.maximum(low, high)
    xs = np.stack([s[rows, first], s[rows, last], s[rows, last]], 1)
    ys = np.stack([v[rows, first], v[rows, last], np.full(len(v), np.nan)], 1)
    kept = np.stack([np.ones_like(gap), np.ones_like(gap), gap], 1)
    return xs[kept], ys[kept]


OFF_THE_LOSS_AXIS = {"not finite": (0.97, "x", "red"), "≤ 0": (0.03, "v", "grey")}
"""How ``loss.png`` marks the steps of a loss the log axis cannot show: where along the axes' height (a fraction),
the marker, its colour."""


@literal_text()
def plot_loss_curves(jsonl: Path, png: Path, prefix: str = "loss") -> Path | None:
    """Plot every ``loss*`` column of a metrics JSONL against the step (log scale; :func:`plot_loss_records`) into
    ``png``, atomically. The steps where one is not finite (a diverging run's, logged as null) or <= 0 are marked
    along the top or the bottom (:data:`OFF_THE_LOSS_AXIS`), so the x axis reaches the last logged step; a log whose
    every loss is such is drawn with those marks alone. The log is read line by line, keeping the plotted values
    only (its records as a list took 158 MB for a 16 MB log of 20,000 steps, 10x the file)."""
    curves: dict[str, tuple[array, array, array]] = {}
    for r in iter_records(jsonl):
        step, n = r["step"], steps_of(r)
        for k, v in r.items():
            if k.startswith(prefix):
                steps, values, covered = curves.setdefault(k, (array("d"), array("d"), array("d")))
                steps.append(step)
                values.append(v)
                covered.append(n)
    if not curves:
        return None
    from matplotlib.figure import Figure  # not pyplot, whose backend and figures are the process's (a notebook's)

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    drawable = [plot_loss_records(ax, *curves[k], literal(k)) for k in sorted(curves)]
    steps, values = (np.concatenate([c[i] for c in curves.values()]) for i in (0, 1))
    off = {"not finite": ~np.isfinite(values), "≤ 0": values <= 0}
    for what, (height, marker, colour) in OFF_THE_LOSS_AXIS.items():
        if off[what].any():
            at = np.unique(steps[off[what]])
            ax.plot(at, np.full(len(at), height), ls="", marker=marker, color=colour, ms=5, label=what,
                    transform=ax.get_xaxis_transform())  # (x: steps; y: the axes' height)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if any(drawable):
        log_scale_y(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)  # (beside the axes: not over a mark or point)
    ax.set_title(literal(Path(jsonl).parent.name))  # the run folder's name is the user's
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(png)
