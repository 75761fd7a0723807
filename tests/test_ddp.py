"""DDP: ``torchrun --nproc_per_node=2`` with batch b per rank trains the same model as one process with batch 2b
(CPU, gloo). The two ranks' k-th batches together hold the single process's k-th batch (one data order for any
world size), each sample's crop and mask are seeded by the sample, and DDP averages the gradients."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import re
import runpy
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from training import FP32, run, run_json, tiny

from mme.cli import main as cli
from mme.models.classifier import VideoClassifier
from mme.models.config import ModelConfig
from mme.models.export import save_pretrained
from mme.models.vit import VisionTransformer
from mme.motion.extract import share_name
from mme.motion.tracks import TRACKER
from mme.utils import lock_folder, unlock_folder

STEPS = 3
TORCHRUN = [sys.executable, "-c", "import atexit, gc\nfrom torch.distributed.run import main\n"
            "atexit.register(gc.freeze)\nmain()", "--standalone", "--nproc_per_node=2"]
"""torchrun of two ranks on this machine: torch.distributed.run's main, as the ``torchrun`` command runs it, whose own
exit, after its ranks', skips the interpreter's last garbage collections as mme's commands do (mme.cli.console): 0.3-0.5
s of CPU a launch, which imported torch."""


def _batch_b_part(d: Path, synth: list[str]) -> list[str]:
    """The arguments of the part :data:`BY_THE_CLI` that pre-trains into ``d / "run"`` on two ranks of batch 2."""
    # (clips of 8 frames at stride 4 span 29 raw frames of the synth's 24: the short-video warning's counts are rank
    # 0's own reads under torchrun, and it says so)
    return ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={d / 'run'}",
            f"train.steps={STEPS}", "train.batch_size=2", FP32, "data.stride=4")]


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(launched, tmp_path):
    d, stdout, stderr = _part(launched, "batch_b")
    single = run("tiny_cpu_pixel", json.loads((launched / "data.json").read_text()), tmp_path / "single",
                 f"train.steps={STEPS}", "train.batch_size=4", FP32, "data.stride=4")
    out = d / "run"
    assert "world size 2" in stdout and "effective batch 4 = 2/rank x 2 ranks x 1 accum" in stdout
    assert re.search(r"data: (the \d+|\d+ of the \d+) videos read on this rank so far holds? fewer raw frames than "
                     r"the 29 a clip spans", stdout + stderr), (stdout + stderr)[-3000:]
    a = torch.load(single.checkpoint, weights_only=True)
    b = torch.load(out / single.checkpoint.name, weights_only=True)
    assert b["meta"]["world_size"] == 2
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert worst <= 1e-5, worst
    # rank 0 alone wrote one log whose losses are the mean over ranks = the single process's batch loss
    ddp_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(ddp_losses) == STEPS
    for x, y in zip(ddp_losses, [r["loss"] for r in single.history]):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(y))


LAUNCH = """\
import atexit, gc, json, os, runpy, sys, traceback
import torch
from mme import cli
from mme.train import distributed as dist
base, rank = sys.argv[1], os.environ["RANK"]
open(os.path.join(base, f"pid{rank}"), "w").write(str(os.getpid()))
atexit.register(gc.freeze)  # the exit of mme's commands (mme.cli.console)
dist.init_distributed(torch.device("cpu"))  # up for every part (a job that started it would leave it at its end)
streams, home = {1: os.dup(1), 2: os.dup(2)}, os.getcwd()


def redirected(files):  # fds 1 and 2 to files {fd: file}
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        stream.flush()
        os.dup2(files[fd], fd)


for part, args in json.loads(sys.argv[2]).items():
    folder = os.path.join(base, part)
    with open(os.path.join(folder, f"stdout{rank}.txt"), "w") as out, \\
            open(os.path.join(folder, f"stderr{rank}.txt"), "w") as err, cli._logging_put_back():
        redirected({1: out.fileno(), 2: err.fileno()})
        sys.argv = [os.path.join(folder, "part.py"), *args]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            open(os.path.join(folder, f"done{rank}"), "w").close()
        except BaseException:  # any: the tests of this part fail with its traceback, the next parts go on
            traceback.print_exc()
        finally:
            redirected(streams)
            os.chdir(home)
dist.shutdown()  # without it, gloo's teardown at exit sometimes aborts a rank (1 run in 7 measured)
"""
"""A script run by torchrun's ranks that runs the scripts ``<first argument>/<part>/part.py`` of the parts of its
second argument, ``{part: arguments}``, one after the other, in one process group: each rank writes the part's stdout
and stderr to ``<part>/stdout<RANK>.txt`` and ``<part>/stderr<RANK>.txt``, and ``<part>/done<RANK>`` where the part
ended without an exception (each launch takes seconds: one for the parts of the tests below)."""


@pytest.fixture(scope="module")
def launched(synth, tmp_path_factory, request) -> Path:
    """The folder of the torchrun launch of :data:`LAUNCH` that runs the parts below (:func:`_part`), made once in a
    session: the first xdist worker to ask makes it while the other waits for it (the tests of this module are dealt
    to both). ``data.json`` holds the data overrides it read. Every test of a part runs the whole launch (with ``-k``
    too), and a failure while a part is made ready fails the tests of every part."""
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker (not the variable, which a pytest it starts inherits)
        shared = shared.parent  # the session's folder, above each worker's
    base = shared / "test_ddp_launched"
    with open(shared / "test_ddp_launched.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # (let go at the close)
        if not base.is_dir():
            base.mkdir()
            try:
                _launch(base, synth)
            except BaseException as e:
                (base / "failed.txt").write_text(str(e))
                raise
    if (base / "failed.txt").is_file():
        pytest.fail(f"the launch failed in another worker: {(base / 'failed.txt').read_text()}")
    return base


def _launch(base: Path, synth: list[str]) -> None:
    """Run :data:`LAUNCH` in ``base`` for the parts below, each made ready in its folder first, its own stderr kept in
    ``stderr.txt``; a failure where they hang (the ranks killed after 300 s, all of them)."""
    (base / "data.json").write_text(json.dumps(synth))
    parts = {"ranks": (RANKS, _ranks_part), "in_folders": (IN_RANKS_FOLDERS, _in_folders_part),
             "disagreeing": (DISAGREEING, _disagreeing_part), "mixed_cpus": (MIXED_CPUS, _mixed_cpus_part),
             "batch_b": (BY_THE_CLI, _batch_b_part), "refused_share": (REFUSED_SHARE, _refused_share_part),
             "signalled": (SIGNALLED_AFTER_THE_LAST_CHECK, _signalled_part), "meet": (MEET, lambda d, synth: []),
             "fails_at_second_step": (FAILS_AT_SECOND_STEP, _fails_at_second_step_part)}  # (last: a hang ends all)
    args = {}
    for part, (script, prepared) in parts.items():
        (base / part).mkdir()
        (base / part / "part.py").write_text(script)
        args[part] = prepared(base / part, synth)
    (base / "launch.py").write_text(LAUNCH)
    lock_folder(base / "ranks" / "locked", "the test")  # (a folder another job holds, for the part of RANKS)
    try:
        proc = subprocess.Popen([*TORCHRUN, str(base / "launch.py"), str(base), json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for pid_file in base.glob("pid*"):  # the ranks, in sessions of their own: torchrun's kill spares them
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            proc.kill()
            unended = {part: u for part in parts if (u := _unended(base / part))}
            pytest.fail(f"the ranks hung (killed after 300 s); the parts not ended: {unended}; torchrun's stderr: "
                        f"{proc.communicate()[1][-2000:]}")
    finally:
        unlock_folder(base / "ranks" / "locked")
    (base / "stderr.txt").write_text(f"{stderr}(exit {proc.returncode})\n")


BY_THE_CLI = """\
import sys
from mme import cli
assert cli.main(sys.argv[1:]) == 0, "the command failed"
"""
"""A part of :data:`LAUNCH` that runs the mme command of its arguments, which must succeed."""


def _part(launched: Path, part: str, whole: bool = True) -> tuple[Path, str, str]:
    """The folder of ``part`` in the shared launch, and its ranks' stdout and stderr; failing where a rank never
    started it, and, ``whole``, unless it ended without an exception on every rank."""
    folder = launched / part
    stdout, stderr = ("".join(f.read_text() if (f := folder / f"{name}{rank}.txt").is_file() else "" for rank in (0, 1))
                      for name in ("stdout", "stderr"))
    unended = _unended(folder)
    if unended and (whole or "never started" in unended.values()):  # (a rank that never started it: nothing to test)
        pytest.fail(f"part {part} not ended: {unended}\n{stderr[-3000:]}\nthe launch's stderr: "
                    f"{(launched / 'stderr.txt').read_text()[-3000:]}")
    return folder, stdout, stderr


def _unended(folder: Path) -> dict[str, str]:
    """Each rank that did not end the part of the shared launch in ``folder`` without an exception, to where it
    stopped: "never started" (no files of its own there: the launch ended before it) or "raised or hung"."""
    return {f"rank {rank}": "raised or hung" if (folder / f"stdout{rank}.txt").is_file() else "never started"
            for rank in (0, 1) if not (folder / f"done{rank}").is_file()}


def test_a_part_the_launch_never_reached_fails_its_tests_naming_it_and_showing_the_launchs_error(tmp_path):
    """A launch that ended early (a rank crashed in an earlier part) failed the tests of the parts it never reached
    with a FileNotFoundError of the part's files, not the launch's error, even where the part's failures are
    tolerated."""
    (tmp_path / "stderr.txt").write_text("rank 1 exited with 3\n(exit 1)\n")
    (tmp_path / "never").mkdir()
    for whole in (True, False):
        with pytest.raises(pytest.fail.Exception) as failed:
            _part(tmp_path, "never", whole=whole)
        assert str(failed.value) == ("part never not ended: {'rank 0': 'never started', 'rank 1': 'never started'}\n"
                                     "\nthe launch's stderr: rank 1 exited with 3\n(exit 1)\n"), str(failed.value)


RANKS = """\
import json, resource, signal, sys, types
from pathlib import Path
import torch
from mme import cli
from mme.config import from_dict, load_config
from mme.data.dataset import DataConfig, PretrainDataset
from mme.errors import VideoError
from mme.eval.features import embed
from mme.train import checkpoint, distributed as dist, engine, pretrain
from mme.train.config import PretrainConfig
from mme.train.loop import share_failures
d = Path(sys.argv[1])
out = {"probe": cli.main(["probe", str(d / "enc"), "--train", str(d / "probe.txt"), "--root", sys.argv[2], "--out",
                          str(d / "probe"), "--no-knn", "--clips", "1", "--stride", "2", "--workers", "0"])}
cli._logging_of_ranks(types.SimpleNamespace(verbose=False))  # the CLI's log for the parts below (main put it back)
rank = dist.get_rank()


def outcome(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:  # any, so that each test below sees what its part did
        return [type(e).__name__, str(e)]


# what pre-training and fine-tuning check after a resume (each rank reads its own copy of train.resume)
dist.check_start_step(7)  # the same on both ranks: passes
out["start"] = outcome(dist.check_start_step, 3 + 2 * rank)
# each rank decodes its own share of the videos and records what fails
cfg = from_dict(DataConfig, {"list_file": str(d / "list.txt"), "max_failure_fraction": 0.7})
data = PretrainDataset(cfg, track_length=2)
err = VideoError(f"video {rank}: broken")
err.reason = ["missing", "decode error"][rank]
data._record_failure(rank, err)
run = types.SimpleNamespace(data=data, device=torch.device("cpu"))
out["count"], out["reasons"] = share_failures(run), data.failure_counts()
if rank == 1:  # a third of three, found by rank 1: over the fraction, said when the ranks join what they found
    out["alone"] = outcome(data._record_failure, 2, err)
out["joined"] = outcome(share_failures, run)
# what rank 0 alone does: check the out folder, assemble the features
for folder in ("locked", "other"):  # train.epochs under the recipe's train.steps: a warning every rank raises
    out[folder] = outcome(engine.begin, load_config(PretrainConfig, "tiny_cpu_pixel", [
        f"train.out_dir={d / folder}", "train.device=cpu", "train.epochs=5"]))
checkpoint.latest_valid(d / "other")  # what --resume auto reads: its empty file is skipped, with a warning
out["embed"] = outcome(embed, d / "enc", d / "gone.txt", d / "gone.npy", root=str(d), num_workers=0, progress=False)
# what each rank reads and writes on its own: a data.root one rank does not see (a node without the volume), a part of
# mme embed one rank cannot write (its node's disk full; here a file-size limit, above the list it writes first)
out["root"] = outcome(pretrain.setup, load_config(PretrainConfig, "tiny_cpu_pixel", [
    f"train.out_dir={d / 'root'}", "train.device=cpu", "train.precision=fp32",
    f"data.list_file={sys.argv[2]}/train.txt", f"data.root={sys.argv[2] if rank == 0 else d / 'unmounted'}"]))
limits = resource.getrlimit(resource.RLIMIT_FSIZE)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def on_a_full_disk(full, size, fn, *args, **kwargs):  # rank full's files may not grow past size bytes in fn
    if rank == full:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, limits[1]))
    try:
        return outcome(fn, *args, **kwargs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)


out["part"] = on_a_full_disk(1, 5000, embed, d / "enc", f"{sys.argv[2]}/train.txt", d / "part.npy", root=sys.argv[2],
                             num_workers=0, tokens=True, progress=False)
# rank 0 alone writes the run files at set-up (its node's disk full)
out["run_files"] = on_a_full_disk(0, 1000, pretrain.setup, load_config(PretrainConfig, "tiny_cpu_pixel", [
    f"train.out_dir={d / 'run_files'}", "train.device=cpu", "train.precision=fp32", "data.num_workers=0",
    f"data.list_file={sys.argv[2]}/train.txt", f"data.root={sys.argv[2]}"]))
(d / f"rank{rank}.json").write_text(json.dumps(out))
"""


def _ranks_part(d: Path, synth: list[str]) -> list[str]:
    """The folder ``d`` of the part :data:`RANKS` made ready, its arguments returned."""
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2)),
                    d / "enc")
    lines = Path(synth[0].split("=", 1)[1]).read_text().splitlines()
    (d / "probe.txt").write_text("\n".join([lines[0], "videos/missing.mp4 0", *lines[1:]]) + "\n")
    (d / "list.txt").write_text("a.mp4\nb.mp4\nc.mp4\n")
    (d / "gone.txt").write_text("gone0.mp4 0\ngone1.mp4 1\n")
    (d / "other").mkdir()
    (d / "other" / "checkpoint-00000002.pt").write_bytes(b"")  # a checkpoint of another run, as its name says
    (d / "other" / "run.json").write_text(json.dumps({"run_id": "0123abcd"}))
    return [str(d), synth[1].split("=", 1)[1]]


@pytest.fixture(scope="module")
def ranks(launched):
    """What the part :data:`RANKS` of the shared launch recorded, ``{rank: what it recorded}``, and its ranks' stdout
    and stderr. Its ``mme probe`` embeds the synthetic list with a missing video at line 2 (decoded by rank 1)."""
    d, stdout, stderr = _part(launched, "ranks")
    return {r: json.loads((d / f"rank{r}.json").read_text()) for r in (0, 1)}, stdout, stderr


def test_ranks_that_would_start_at_different_steps_stop_with_a_message(ranks):
    """What pre-training and fine-tuning check after a resume (each rank reads its own copy of train.resume)."""
    for rank in (0, 1):
        _, message = ranks[0][rank]["start"]
        assert message == ("ranks disagree on the step to start at: step 3 resumed on rank 0, step 5 resumed on rank "
                           "1 (each rank resumes what it finds on its own node: a multi-node run needs train.out_dir, "
                           "and a train.resume path, on a shared file system)"), message


def test_every_rank_counts_and_skips_the_videos_any_rank_found_broken(ranks):
    """Each rank decodes its own share of the videos: the failures they found are joined at every log step, so
    rank 0's log and ``data.max_failure_fraction`` count them all (rank 0 counted its own only), and every rank
    stops there with the same line (the rank that found one too many stopped alone, in its data loading, and the
    others died at their next collective)."""
    for rank in (0, 1):
        out = ranks[0][rank]
        assert out["count"] == 2 and out["reasons"] == {"missing": 1, "decode error": 1}, out
        assert out["joined"][0] == "TooManyFailures" and out["joined"][1].startswith("3 of 3 videos in"), out
    assert ranks[0][1]["alone"] is None and ranks[0][0]["joined"] == ranks[0][1]["joined"]


def test_a_check_or_write_of_rank_0_alone_that_fails_stops_every_rank_with_its_message(ranks):
    """Rank 0 alone locks and checks the out folder, writes the run files and assembles the features of ``mme embed``:
    when it failed, it stopped with one line and the others died of gloo's lost connection at their next collective (a
    traceback; under NCCL they would have waited for its timeout)."""
    expected = {"locked": ("ConfigError", "is in use by another job"),
                "other": ("ConfigError", "holds 1 checkpoint of another run (0123abcd), up to step 2"),
                "embed": ("DataError", "all 2 videos of"),
                "run_files": ("MMEError", "config.yaml: could not be written (File too large: this process's "
                                          "file-size limit")}
    for what, (kind, words) in expected.items():
        first, second = ranks[0][0][what], ranks[0][1][what]
        assert first[0] == second[0] == kind and words in first[1], (first, second)
        assert second[1] == f"rank 0: {first[1]}"


def test_a_check_or_write_of_one_rank_alone_that_fails_stops_every_rank_with_its_message(ranks):
    """Each rank reads its data at set-up (``data.root``, the list, ``train.init``) and writes its share of ``mme
    embed``'s parts: when one rank failed, it stopped with one line, and the others died at their next collective of
    gloo's lost connection (a traceback; under NCCL they would have waited for its timeout)."""
    expected = {"root": ("DataError", "/unmounted' is not a folder"),
                "part": ("DataError", ": could not be written (File too large: this process's file-size limit")}
    for what, (kind, words) in expected.items():
        failed, other = ranks[0][1][what], ranks[0][0][what]
        assert failed[0] == other[0] == kind and words in failed[1], (failed, other)
        assert other[1] == f"rank 1: {failed[1]}"


def test_mme_probe_fits_writes_and_reports_on_rank_0_alone(ranks):
    """Every rank fitted the probe, wrote probe.json (racing the others) and printed the results."""
    outcomes, stdout, _ = ranks
    assert outcomes[0]["probe"] == outcomes[1]["probe"] == 0
    assert stdout.count("wrote ") == 1 and stdout.count("linear: top-1") == 1, stdout


def test_rank_0_logs_for_the_run_and_the_other_ranks_their_own_warnings_each_line_naming_its_rank(ranks):
    """Every rank logged every line: each was there once per rank, and a warning did not say whose it was; and
    the warnings every rank raises alike (the config's, a checkpoint --resume auto skips) once per rank."""
    _, _, stderr = ranks
    infos = [ln for ln in stderr.splitlines() if " INFO rank " in ln]
    assert infos and all(" INFO rank 0] " in ln for ln in infos), stderr[-3000:]
    assert sum("embed: 17 videos" in ln for ln in infos) == 1, infos  # each rank has one, of its own share
    assert any(" WARNING rank 1] " in ln and "missing.mp4" in ln for ln in stderr.splitlines()), stderr[-3000:]
    alike = [ln for ln in stderr.splitlines() if "train.epochs=5 has no effect" in ln]  # the config's, 2 per rank
    assert len(alike) == 2 and all(" WARNING rank 0] " in ln for ln in alike), alike
    skipped = [ln for ln in stderr.splitlines() if "] skipping " in ln and "checkpoint-00000002.pt" in ln]  # resume
    assert len(skipped) == 1 and " WARNING rank 0] " in skipped[0], skipped


def test_a_process_group_that_does_not_start_under_torchrun_says_why_without_advice_for_a_hand_set_world_size(
        tmp_path):
    """Under torchrun the advice for a WORLD_SIZE set by hand (launch with torchrun, or unset it) was given; ranks
    that torchrun restarted (--max-restarts) fail to connect again on gloo, which is said with how to go on. Here
    gloo has no network interface to start on, first and on the restart (the first try exits 1 to get one)."""
    (tmp_path / "ranks.py").write_text(
        "import os, sys\n"
        "import torch\n"
        "from mme.errors import MMEError\n"
        "from mme.train import distributed as dist\n"
        "restart = os.environ['TORCHELASTIC_RESTART_COUNT']\n"
        "try:\n"
        "    dist.init_distributed(torch.device('cpu'))\n"
        "except MMEError as e:\n"
        "    open(f\"{sys.argv[1]}/rank{os.environ['RANK']}-{restart}.txt\", 'w').write(str(e))\n"
        "import pathlib, time\n"  # torchrun stops a rank when the other exits 1: both say theirs first
        "deadline = time.time() + 60\n"
        "while len(list(pathlib.Path(sys.argv[1]).glob(f'rank*-{restart}.txt'))) < 2 and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "sys.exit(restart == '0')\n")
    _two_ranks(tmp_path / "ranks.py", str(tmp_path), options=["--max-restarts=1"],
               env={**os.environ, "GLOO_SOCKET_IFNAME": "no-such-interface"})
    for rank in (0, 1):
        first, again = ((tmp_path / f"rank{rank}-{n}.txt").read_text() for n in (0, 1))
        assert first.startswith("the process group of 2 ranks did not start (") and "no-such-interface" in first
        assert "WORLD_SIZE" not in first + again and "restart" not in first, first
        assert again.startswith(first) and "restart 1" in again and "--resume auto" in again, again


SLOW_RANK_0 = ("import os, signal, sys, time\n"
               "from mme import cli\n"
               "from mme.eval import testing\n"
               "from mme.train import loop\n"
               "def slowed(write):\n"
               "    def slow(*args, **kwargs):\n"
               "        time.sleep(1 if os.environ['RANK'] == '0' else 0)\n"
               "        return write(*args, **kwargs)\n"
               "    return slow\n"
               "loop.plot_loss_curves = slowed(loop.plot_loss_curves)\n"
               "testing.save_confusion_png = slowed(testing.save_confusion_png)\n")
"""The start of a script run by torchrun's ranks in which rank 0's pictures at the end of a run (the loss curve, a
test's confusion matrix) take 1 s more to write, as on a busy file system: ten times torchrun's check of its ranks
(--monitor-interval, 0.1 s), which stops rank 0 within it where another rank ended before."""


def _two_ranks(script: Path, *args: str, options: list[str] = (), env: dict | None = None) \
        -> subprocess.CompletedProcess:
    """Run ``script`` with ``args`` on two torchrun ranks (torchrun's ``options`` besides); each rank writes its own
    file (printed to the shared stdout, the ranks' messages can interleave)."""
    proc = subprocess.run([*TORCHRUN,
                           *options, str(script), *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _extraction_list(d: Path, synth: list[str]) -> Path:
    """A list in ``d`` of 4 files that are no videos, each beside one of the synth's videos (under ``d / "root"``):
    rank 0's share of 2 is the bad files, rank 1's the videos."""
    root, listed = d / "root", d / "list.txt"
    root.mkdir()
    (root / "videos").symlink_to(Path(synth[1].split("=", 1)[1]) / "videos")
    videos = Path(synth[0].split("=", 1)[1]).read_text().splitlines()[:4]
    for i in range(4):
        (root / f"bad{i}.mp4").write_bytes(b"not a video at all")
    listed.write_text("".join(f"bad{i}.mp4 0\n{v}\n" for i, v in enumerate(videos)))
    return listed


def _extraction(d: Path) -> list[str]:
    """``mme extract`` of :func:`_extraction_list`'s list in ``d`` into ``d / "cache"``, but its short side."""
    return ["extract", str(d / "list.txt"), "--root", str(d / "root"), "--out", str(d / "cache"), "--length", "2"]


def test_an_extraction_under_torchrun_ends_every_share(synth, tmp_path):
    """A video that failed in one rank's share ended that rank with exit 1, and torchrun stopped the others part-way,
    their reports never written (at every rerun), each rank printing the summary of its own share alone. Then rank
    0's summary, slow to print, was lost: rank 1 exited 1 and torchrun stopped rank 0 first."""
    listed = _extraction_list(tmp_path, synth)
    reports = [tmp_path / "cache" / f"failed-{share_name(str(listed), rank, 2)}.json" for rank in (0, 1)]
    slow_print = tmp_path / "slow_print.py"  # rank 0's summary takes a while (a stdout that blocks): rank 1 waits
    slow_print.write_text(textwrap.dedent("""\
        import builtins, sys, time
        from mme.cli import main
        print_now = builtins.print
        def slow(*args, **kwargs):
            if str(args[0]).startswith("extract: "):
                time.sleep(2)
            print_now(*args, **kwargs)
        builtins.print = slow
        sys.exit(main())
    """))
    proc = subprocess.run([*TORCHRUN, str(slow_print), *_extraction(tmp_path), "--short-side", "64"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "stopped by SIGTERM" not in proc.stderr, proc.stderr[-3000:]
    assert json.loads(reports[1].read_text())["done"] == 4
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("extract: ")]
    assert summary == [f"extract: 4 written, 0 already complete, 4 failed, counted over the 2 ranks' shares (see "
                       f"{reports[0]})"], proc.stdout  # (rank 1's 4 written, rank 0's 4 failed)


REFUSED_SHARE = """\
import json, os, sys
from pathlib import Path
from mme import cli
folder, report = sys.argv[1], sys.argv[2]
codes = [cli.main([*sys.argv[3:], "--short-side", "64"])]  # rank 0's share fails, rank 1's is made at 64
if os.environ["RANK"] == "0":
    os.remove(report)
codes.append(cli.main([*sys.argv[3:], "--short-side", "32"]))  # rank 1's share was made at 64
Path(folder, "codes" + os.environ["RANK"]).write_text(json.dumps(codes))
"""
"""A part of :data:`LAUNCH` that extracts :func:`_extraction_list`'s list twice, at a short side of 64 then of 32,
rank 0's report of the first removed between them; each rank writes the two exit statuses to
``<first argument>/codes<RANK>``."""


def _refused_share_part(d: Path, synth: list[str]) -> list[str]:
    """The folder ``d`` of the part :data:`REFUSED_SHARE` made ready, its arguments returned."""
    listed = _extraction_list(d, synth)
    return [str(d), str(d / "cache" / f"failed-{share_name(str(listed), 0, 2)}.json"), *_extraction(d)]


def test_a_share_refused_under_torchrun_stops_every_rank_before_any_work(launched):
    """A share refused (caches of other settings) stopped its rank, while the others extracted until torchrun stopped
    them."""
    d, _, stderr = _part(launched, "refused_share")
    assert [json.loads((d / f"codes{rank}").read_text()) for rank in (0, 1)] == [[1, 1]] * 2, stderr[-3000:]
    said = "4 videos already have caches"
    assert f"mme extract (rank 1): error: {said}" in stderr and f"mme extract: error: rank 1: {said}" in stderr, \
        stderr[-3000:]
    assert stderr.count(said) == 2
    assert not (d / "cache" / f"failed-{share_name(str(d / 'list.txt'), 0, 2)}.json").exists()  # rank 0 did no work


def test_a_command_that_does_not_share_its_work_over_ranks_is_refused_under_torchrun(tmp_path, capsys, monkeypatch):
    """``mme synth``, as every command but ``cli.RANKED``'s, ran whole on every rank: each wrote the same files and
    printed its summary. Where WORLD_SIZE comes from the environment without torchrun (a launcher setting it for
    every process), the refusal said to run it without torchrun."""
    from mme import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    for run_id, how in (("1234", "run it without torchrun"), (None, r"unset WORLD_SIZE \(or set it to 1\)")):
        if run_id is None:
            monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
        else:
            monkeypatch.setenv("TORCHELASTIC_RUN_ID", run_id)
        assert cli.main(["synth", str(tmp_path / "s"), "--classes", "2", "--videos-per-class", "1", "--size", "32",
                         "--frames", "4", "--workers", "1"]) == 1
        assert not (tmp_path / "s").exists()
        err = capsys.readouterr().err
        assert re.match(rf"mme synth \(rank 1\): error: synth runs as one process: {how} \(WORLD_SIZE=2 here", err), err


def _ends(stderr: str, command: str) -> list[str]:
    """The ranks' last lines (``mme <command>[ (rank N)]: error: ...``) in their shared stderr, where two may run
    together on one line (a pass failed on it)."""
    head = rf"mme {command}(?: \(rank \d+\))?: error: "
    return re.findall(rf"{head}.*?(?={head}|$)", stderr, re.MULTILINE)


@pytest.mark.parametrize("limit,said", [(50_000, "could not write the checkpoint of step 2"), pytest.param(
    1000, "config.yaml: could not be written", marks=pytest.mark.slow)])  # (also the ranks fixture's run_files)
def test_a_checkpoint_rank_0_cannot_write_stops_every_rank_with_its_message(limit, said, synth, tmp_path):
    """Rank 0 failed its checkpoint write with one line (its run files at set-up: a traceback); rank 1 died at the
    next collective of gloo's lost connection (a traceback), and under NCCL it would have waited for its timeout.
    Rank 1 then ended while rank 0 drew the loss curve, and torchrun's SIGTERM reached rank 0 there: a false
    'SIGTERM: stopping after this step', or a traceback of it."""
    script = (SLOW_RANK_0 + "import resource; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); sys.exit(cli.console(sys.argv[1:]))")
    (tmp_path / "limited.py").write_text(script)
    cmd = [*TORCHRUN,
           str(tmp_path / "limited.py"), "pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth,
           f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=2", FP32)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    errors = _ends(proc.stderr, "pretrain")
    assert len(errors) == 2 and said in errors[0], proc.stderr[-3000:]
    assert any(ln.startswith("mme pretrain (rank 1): error: rank 0: ") for ln in errors), errors
    assert "Connection closed by peer" not in proc.stderr
    assert "SIGTERM: stopping" not in proc.stderr and "Terminated" not in proc.stderr, proc.stderr[-3000:]


def test_a_stop_of_one_rank_ends_every_rank_once_rank_0_has_written(synth, tmp_path):
    """Rank 1, stopped by its SIGTERM, ended while rank 0 still drew the loss curve, and torchrun's SIGTERM cut
    rank 0 off there: its warning of a signal of its own, its last line replaced, or a traceback of it."""
    (tmp_path / "stopped.py").write_text(
        SLOW_RANK_0 + "import os\n"
        "from mme.train import loop\n"
        "step = loop.train_step\n"
        "def signalled(run, stream, stop):\n"
        "    if run.step == 2 and os.environ['RANK'] == '1':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return step(run, stream, stop)\n"
        "loop.train_step = signalled\n"
        "sys.exit(cli.console(sys.argv[1:]))\n")
    proc = subprocess.run([*TORCHRUN,
                           str(tmp_path / "stopped.py"), "pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth,
                           f"train.out_dir={tmp_path / 'run'}", "train.steps=20", "train.batch_size=2", FP32)],
                          capture_output=True, text=True, timeout=300)
    ends = _ends(proc.stderr, "pretrain")
    assert sorted(ends) == [
        f"mme pretrain (rank 1): error: stopped by SIGTERM after step 3 of 20, saved as {tmp_path / 'run'}/"
        "checkpoint-00000003.pt; the same command with --resume auto (train.resume=auto) continues from there",
        f"mme pretrain: error: stopped by SIGTERM (sent to another rank) after step 3 of 20, saved as "
        f"{tmp_path / 'run'}/checkpoint-00000003.pt; the same command with --resume auto (train.resume=auto) "
        "continues from there"], proc.stderr[-3000:]
    assert "WARNING rank 0] SIGTERM" not in proc.stderr and "Terminated" not in proc.stderr, proc.stderr[-3000:]
    assert "WARNING rank 1] SIGTERM: stopping after this step with a checkpoint, once every rank has finished it (" \
        in proc.stderr, proc.stderr[-3000:]  # (torchrun's SIGTERM as another rank ended: no step is finished)
    assert (tmp_path / "run" / "loss.png").is_file()


SIGNALLED_AFTER_THE_LAST_CHECK = """\
import os, signal, sys
from pathlib import Path
from mme import cli
from mme.train import loop
folder, where, rank = sys.argv[1:4]
write = getattr(loop, where)
def signalled(run, *args):
    if run.step == run.total_steps and os.environ["RANK"] == rank:
        os.kill(os.getpid(), signal.SIGTERM)
    return write(run, *args)
setattr(loop, where, signalled)
try:
    code = cli.main(sys.argv[4:])
finally:
    setattr(loop, where, write)
Path(folder, "rank" + os.environ["RANK"]).write_text(str(code))
"""
"""A script run by torchrun's ranks, alone or as a part of :data:`LAUNCH`, in which rank ``<third argument>`` gets a
SIGTERM as the last step's ``mme.train.loop.<second argument>`` starts, in the mme command of the arguments after;
each rank writes the command's exit status to ``<first argument>/rank<RANK>``."""

SIGNALLED_IN_LAUNCH = ("save", "1")
"""Where and to which rank the part ``signalled`` of the shared launch sends its SIGTERM."""


def _signalled_part(d: Path, synth: list[str], where: str = SIGNALLED_IN_LAUNCH[0],
                    rank: str = SIGNALLED_IN_LAUNCH[1]) -> list[str]:
    """The arguments of :data:`SIGNALLED_AFTER_THE_LAST_CHECK`, which pre-trains into ``d / "run"``."""
    return [str(d), where, rank, "pretrain", "--config", "tiny_cpu_pixel", *tiny(
        *synth, f"train.out_dir={d / 'run'}", "train.steps=2", "train.batch_size=2", FP32)]


@pytest.mark.parametrize("where,rank", [SIGNALLED_IN_LAUNCH, pytest.param(  # (the same stop after the last check)
    "_draw_loss_curves", "0", marks=pytest.mark.slow)])
def test_a_signal_to_one_rank_after_the_last_steps_check_ends_every_rank_as_stopped(where, rank, synth, tmp_path,
                                                                                    request):
    """A SIGTERM reaching one rank after the last step's shared check (while the last checkpoint is written, or rank 0
    draws the loss curve) ended that rank alone as stopped, exit 143; the others finished, exit 0 (pre-training
    printed its summary; fine-tuning went on to its tests alone and died of the lost rank). The checkpoint write's
    case is a part of the shared launch (each rank's command returns its status there), the loss curve's a launch of
    its own."""
    if (where, rank) == SIGNALLED_IN_LAUNCH:
        d, stdout, stderr = _part(request.getfixturevalue("launched"), "signalled")
    else:
        d = tmp_path
        (d / "signalled.py").write_text(SIGNALLED_AFTER_THE_LAST_CHECK)
        proc = subprocess.run([*TORCHRUN, str(d / "signalled.py"), *_signalled_part(d, synth, where, rank)],
                              capture_output=True, text=True, timeout=300)
        stdout, stderr = proc.stdout, proc.stderr
    said = (f"after step 2 of 2, its last: the run's training is finished, saved as {d / 'run'}/"
            "checkpoint-00000002.pt")
    signalled, other = ("mme pretrain (rank 1)", "mme pretrain") if rank == "1" else ("mme pretrain", "mme pretrain "
                                                                                       "(rank 1)")
    assert sorted(_ends(stderr, "pretrain")) == sorted([
        f"{signalled}: error: stopped by SIGTERM {said}",
        f"{other}: error: stopped by SIGTERM (sent to another rank) {said}"]), stderr[-3000:]
    assert [(d / f"rank{r}").read_text() for r in "01"] == ["143", "143"]
    assert '"checkpoint"' not in stdout and (d / "run" / "loss.png").is_file()


def test_an_error_of_rank_0_that_other_ranks_cannot_rebuild_reaches_them_as_an_mme_error(monkeypatch):
    """Another rank rebuilt rank 0's error from its message alone: an error of other arguments (ClipNotDivisible,
    with its field, value and reason) would have been a TypeError there."""
    from mme.errors import ClipNotDivisible, MMEError
    from mme.train import distributed as dist

    said = "model.num_frames 5 is not a multiple of model.tubelet_size 2"
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "is_main", lambda: False)  # this process plays rank 1
    monkeypatch.setattr(dist, "broadcast_object", lambda obj: ((ClipNotDivisible, said, 1), None))
    with pytest.raises(MMEError, match=f"^rank 0: {said}$") as caught:
        dist.on_main(lambda: None)
    assert type(caught.value) is MMEError and caught.value.exit_code == 1


def test_the_tests_after_fine_tuning_end_every_rank_once_rank_0_has_written(synth, tmp_path):
    """Rank 0's loss.png that could not be written (a full disk; here a folder holds its name) was a traceback there,
    and rank 1 went on alone into the tests, to die of gloo's lost connection: no val.json or test.json. A val list
    none of whose videos decodes ended rank 1 while rank 0 still wrote the test's report (slow here), and
    torchrun's SIGTERM cut rank 0 off: no test_confusion.png, its last line 'stopped by SIGTERM'."""
    root, out = Path(synth[1].split("=", 1)[1]), tmp_path / "ft"
    (out / "loss.png" / "a folder").mkdir(parents=True)
    (out / "run.json").write_text(run_json(run_id="stopped"))  # (a run's: no run's loss.png is refused)
    for label in (0, 1):
        (tmp_path / f"broken{label}.mp4").write_bytes(b"not a video")
    (tmp_path / "val.txt").write_text("".join(f"{tmp_path / f'broken{label}.mp4'} {label}\n" for label in (0, 1)))
    (tmp_path / "test.txt").write_text("".join(Path(synth[0].split("=", 1)[1]).read_text().splitlines(True)[:4]))
    (tmp_path / "slow.py").write_text(SLOW_RANK_0 + "sys.exit(cli.console(sys.argv[1:]))\n")
    tiny = ["model.img_size=32", "data.img_size=32", "model.num_frames=4", "data.num_frames=4", "model.embed_dim=32",
            "model.depth=1", "model.num_heads=1", "data.num_workers=0", "train.batch_size=2", "train.steps=1",
            "data.test_clips=1", "data.test_crops=1", "task.eval_batch_size=4", FP32]
    proc = subprocess.run([*TORCHRUN,
                           str(tmp_path / "slow.py"), "finetune", "--config", "finetune_tiny_cpu", *synth,
                           f"task.val_list={tmp_path / 'val.txt'}", f"task.test_list={tmp_path / 'test.txt'}",
                           f"task.classes={root / 'classes.json'}", f"train.out_dir={out}", *tiny],
                          capture_output=True, text=True, timeout=300)
    assert f"{out / 'loss.png'}: could not be written (Is a directory)" in proc.stderr, proc.stderr[-3000:]
    ends = _ends(proc.stderr, "finetune")
    said = f"error: task.val_list {tmp_path / 'val.txt'} could not be tested: multi-view test: no video could be tested"
    assert len(ends) == 2 and all(said in ln and ln.endswith("; test.json written") for ln in ends), ends
    assert (out / "test.json").is_file() and (out / "test_confusion.png").is_file()


def test_a_video_one_rank_alone_cannot_read_stops_every_rank_with_its_message(in_folders):
    """A rank whose loader failed (its videos damaged, here rank 1's copy of them) stopped alone, and the others died
    in their next collective, DDP's in the forward, of gloo's lost connection. The ranks agree on it before every
    micro-batch: rank 1 fails on its first."""
    err = in_folders["damaged"].said
    ends = _ends(err, "pretrain")
    said = next((ln.split(": error: ", 1)[1] for ln in ends if ln.startswith("mme pretrain (rank 1): error: ")), "")
    assert "videos in" in said and "failed, more than data.max_failure_fraction" in said, err[-3000:]
    assert sorted(ends) == [f"mme pretrain (rank 1): error: {said}", f"mme pretrain: error: rank 1: {said}"], ends
    assert "Connection closed by peer" not in err


FAILS_AT_SECOND_STEP = (
    "import faulthandler, os, sys\n"
    "from mme import cli\n"
    "from mme.errors import DataError\n"
    "from mme.train import loop\n"
    "faulthandler.dump_traceback_later(90, exit=True)  # a rank that hangs ends, and torchrun ends the other\n"
    "real = loop.micro_batches\n"
    "def failing(run):\n"
    "    for n, item in enumerate(real(run)):\n"
    "        if os.environ['RANK'] == '1' and n == 2:\n"
    "            raise DataError('no readable video for item 5')\n"
    "        yield item\n"
    "loop.micro_batches = failing\n"
    "try:\n"
    "    cli.main(sys.argv[1:])\n"
    "finally:\n"
    "    loop.micro_batches = real\n"
    "    faulthandler.cancel_dump_traceback_later()\n")
"""A part of :data:`LAUNCH`, the last (a hang ends the launch), that runs an mme command in which rank 1's data fails
at its third micro-batch: with ``accum_steps=2``, the first of the second step."""


def _fails_at_second_step_part(d: Path, synth: list[str]) -> list[str]:
    """The arguments of the part :data:`FAILS_AT_SECOND_STEP`, which pre-trains into ``d / "run"``."""
    return ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={d / 'run'}", "train.steps=3",
                                                            "train.batch_size=2", "train.accum_steps=2",
                                                            "train.log_every=1", FP32)]


def test_a_rank_whose_data_fails_on_the_first_micro_batch_of_a_later_step_stops_every_rank(launched):
    """The ranks agreed on a data failure once a step, before its last micro-batch, trusting DDP to hold no collective
    in the others: but after the first synchronised backward, DDP rebuilds its gradient buckets in the next forward
    (a broadcast from rank 0, under ``no_sync`` too), where rank 0 waited while rank 1 waited in the agreement, for
    ever (SIGTERM did not end them). Here a hang ends in the script's timer, a traceback, not in the two lines."""
    d, _, stderr = _part(launched, "fails_at_second_step")
    said = "no readable video for item 5"
    assert sorted(_ends(stderr, "pretrain")) == [f"mme pretrain (rank 1): error: {said}",
                                                 f"mme pretrain: error: rank 1: {said}"], stderr[-3000:]
    assert [json.loads(line)["step"] for line in (d / "run" / "metrics.jsonl").read_text().splitlines()] == [1]


KILLED_AT = ("import os, signal, sys\n"
             "from mme import cli\n"
             "from mme.train import loop\n"
             "where = sys.argv.pop(1)\n"
             "real, calls = getattr(loop, where), []\n"
             "def killing(*args, **kwargs):\n"
             "    calls.append(where)\n"
             "    if os.environ['RANK'] == '1' and len(calls) == 3:\n"
             "        os.kill(os.getpid(), signal.SIGKILL)\n"
             "    return real(*args, **kwargs)\n"
             "setattr(loop, where, killing)\n"
             "sys.exit(cli.console(sys.argv[1:]))\n")
"""A script run by torchrun's ranks in which rank 1 kills itself (SIGKILL, as the out-of-memory killer does) at its
third call of ``mme.train.loop.<first argument>``."""


@pytest.mark.parametrize("where", ["train_step", *(pytest.param(where, marks=pytest.mark.slow)  # (the same meeting)
                                   for where in ("autocast", "share_failures"))])
def test_a_rank_killed_mid_run_ends_the_others_with_one_line(where, synth, tmp_path):
    """A rank killed with kill -9 (the out-of-memory killer) left rank 0 with a traceback of gloo's "Connection
    closed by peer" from the collective it was in, here the check of the step's batches (any_true), DDP's all-reduce
    in the backward, or the join of failed videos (max_over_ranks), where a meeting of the ranks (wait_for_ranks)
    said it in one line."""
    (tmp_path / "killed.py").write_text(KILLED_AT)
    proc = subprocess.run([*TORCHRUN,
                           str(tmp_path / "killed.py"), where, "pretrain", "--config", "tiny_cpu_pixel", *tiny(
                           *synth, f"train.out_dir={tmp_path / 'run'}", "train.steps=20", "train.batch_size=2",
                           "train.ckpt_every=1", FP32)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "exitcode  : -9" in proc.stderr, proc.stderr[-3000:]
    assert _ends(proc.stderr, "pretrain") == [
        "mme pretrain: error: another rank ended before this one was done: torchrun's report on the node of the rank "
        "that ended names it, with its signal where it was killed (SIGKILL: the out-of-memory killer, or kill -9); "
        "otherwise its own last line says why; what was written is kept (the same command with --resume auto "
        "continues from the run's newest checkpoint, if it wrote one)"], proc.stderr[-3000:]
    assert "Connection closed by peer" not in proc.stderr and not re.search(r'File "[^"]*/mme/', proc.stderr), \
        proc.stderr[-3000:]  # (no frame of mme's in a traceback)
    assert (tmp_path / "run" / "checkpoint-00000001.pt").is_file()


IN_RANKS_FOLDERS = """\
import json, os, sys
from mme import cli
base, rank = sys.argv[1], os.environ["RANK"]
stderr, codes = os.dup(2), {}
for job, args in json.loads(sys.argv[2]).items():
    os.chdir(os.path.join(base, job, "node" + rank))
    with open(os.path.join(base, job, f"stderr{rank}.txt"), "w") as err:  # each job's, rank's stderr a file of its own
        sys.stderr.flush()
        os.dup2(err.fileno(), 2)
        try:
            codes[job] = cli.main(args)
        finally:
            sys.stderr.flush()
            os.dup2(stderr, 2)
open(os.path.join(base, f"codes{rank}.json"), "w").write(json.dumps(codes))
"""
"""A part of :data:`LAUNCH` that runs the mme commands of its second argument, ``{job: argv}``, one after the other:
for each job each rank works in a folder of its own, ``<first argument>/<job>/node<RANK>``, as the nodes of a
multi-node job each from its own working folder (or disk), and writes its stderr to ``<job>/stderr<RANK>.txt``, and
the jobs' exit statuses to ``codes<RANK>.json``; the process group, up before the first job, is each job's (as in a
script that runs several)."""

IN_FOLDERS_JOBS = {"fresh": [], "resumed": ["--resume", "auto"]}
"""The jobs of :func:`in_folders` whose train.out_dir is relative (``run``, each rank's own), fresh and resumed."""


class Job(NamedTuple):
    """A job of :func:`in_folders`."""
    folder: Path
    held: dict[str, bytes | None]
    """What its nodes' folders held before the launch (:func:`_on_nodes`)."""
    said: str
    """Its ranks' stderr."""
    codes: list[int]
    """Its exit status on each rank."""


def _on_nodes(folder: Path) -> dict[str, bytes | None]:
    """The files (-> their bytes) and folders (-> None) in the folders ``node<RANK>`` of a job of :func:`in_folders`
    (not in those their links name), by their paths in ``folder``."""
    return {str(Path(top, name).relative_to(folder)): None if name in dirs else Path(top, name).read_bytes()
            for node in folder.glob("node*") for top, dirs, names in os.walk(node) for name in [*dirs, *names]}


def _in_folders_part(base: Path, synth: list[str]) -> list[str]:
    """The folder ``base`` of the part :data:`IN_RANKS_FOLDERS` made ready, its arguments returned: the jobs read by
    :func:`in_folders`, with ``held.pickle`` what their nodes' folders held before the launch and ``ids.json`` the run
    ids of runs/node0/run and runs/node1/run."""
    list_file, root = (s.split("=", 1)[1] for s in synth)
    jobs = {job: ["pretrain", "--config", "tiny_cpu_pixel", *extra, *tiny(
        *synth, "train.out_dir=run", "train.steps=4", "train.batch_size=2", FP32)] for job, extra in
        IN_FOLDERS_JOBS.items()}
    jobs["runs"] = ["pretrain", "--config", "tiny_cpu_pixel", *tiny(
        *synth, f"train.out_dir={base / 'runs' / 'shared'}", "train.resume=run/checkpoint-00000002.pt",
        "train.steps=4", "train.batch_size=2", FP32)]

    def embed(out: str) -> list[str]:
        return ["embed", str(base / "enc"), list_file, "--root", root, "--out", out, "--num-workers", "0", "--device",
                "cpu", "--precision", "fp32"]

    jobs |= dict.fromkeys(("embed_partial", "embed_done0", "embed_done1"), embed("feats.npy"))
    jobs["damaged"] = ["pretrain", "--config", "tiny_cpu_pixel", *tiny(
        *synth, "data.root=root", f"train.out_dir={base / 'damaged' / 'run'}", "train.steps=2", "train.batch_size=2",
        "train.accum_steps=2", FP32)]
    for job in jobs:
        for rank in (0, 1):
            (base / job / f"node{rank}").mkdir(parents=True)
    run("tiny_cpu_pixel", synth, base / "resumed" / "node0" / "run", "train.steps=2", "train.batch_size=2",
        "train.seed=0", FP32)
    shutil.copytree(base / "resumed" / "node0" / "run", base / "runs" / "node0" / "run")
    run("tiny_cpu_pixel", synth, base / "runs" / "node1" / "run", "train.steps=2", "train.batch_size=2",
        "train.seed=1", FP32)
    (base / "ids.json").write_text(json.dumps([json.loads((base / "runs" / f"node{rank}" / "run" / "run.json")
                                                          .read_text())["run_id"] for rank in (0, 1)]))
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2)),
                    base / "enc")
    (base / "embed_partial" / "node1" / "feats.npy.partial").mkdir()
    for node in (0, 1):
        assert cli(embed(str(base / f"embed_done{node}" / f"node{node}" / "feats.npy"))) == 0
    (base / "damaged" / "node0" / "root").symlink_to(root)
    for line in Path(list_file).read_text().splitlines():
        video = base / "damaged" / "node1" / "root" / line.split()[0]
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"not a video")
    (base / "held.pickle").write_bytes(pickle.dumps({job: _on_nodes(base / job) for job in jobs}))
    return [str(base), json.dumps(jobs)]


@pytest.fixture(scope="module")
def in_folders(launched):
    """The jobs of the part :data:`IN_RANKS_FOLDERS` of the shared launch, each a command by ranks in folders of their
    own, as on nodes of their own: ``{job: Job}``, and ``{"ids": the run ids of node0/run and node1/run}``. Jobs of
    ``mme pretrain``: ``fresh`` and ``resumed`` (node0/run a finished run of 2 steps) with train.out_dir=run; ``runs``
    resumes run/checkpoint-00000002.pt, on each node a finished run of its own (node0's a copy of ``resumed``'s);
    ``damaged`` reads data.root=root, node 1's copy of the videos damaged. Jobs of ``mme embed --out feats.npy`` of the
    encoder ``enc`` (beside the jobs' folders): ``embed_partial``, node 1 holding a partial folder of its own, and
    ``embed_done0`` and ``embed_done1``, node 0 or 1 holding this job's finished features (an earlier run of the
    command on it alone)."""
    base, _, _ = _part(launched, "in_folders")
    held = pickle.loads((base / "held.pickle").read_bytes())
    codes = [json.loads((base / f"codes{rank}.json").read_text()) for rank in (0, 1)]
    return {job: Job(base / job, held[job], "".join((base / job / f"stderr{rank}.txt").read_text() for rank in (0, 1)),
                     [c[job] for c in codes]) for job in held} | {"ids": json.loads((base / "ids.json").read_text())}


@pytest.mark.parametrize("resume", [True, False])
def test_a_run_whose_out_dir_is_not_one_folder_for_every_rank_stops_every_rank_with_one_line(resume, in_folders):
    """A relative train.out_dir launched from another folder on each node (or node-local disks). A fresh run went
    through, rank 0 alone writing its checkpoints, on its node; then with --resume auto rank 0 resumed its checkpoint
    and rank 1, finding none, started fresh: they met in different collectives, and the run hung (rank 0's 'resumed
    from ... at step 2', then nothing), Ctrl-C and SIGTERM ignored; later, they stopped with 'ranks disagree on the
    step to start at'. Every rank now checks at the start that it sees the folder rank 0 locked, a fresh run too."""
    folder, held, err, _ = in_folders["resumed" if resume else "fresh"]
    said = (f"train.out_dir must be a folder every node sees (a shared file system): {folder}/node1/run on the node "
            "of rank 1 is not the one rank 0 holds")
    assert sorted(_ends(err, "pretrain")) == [f"mme pretrain (rank 1): error: {said}",
                                               f"mme pretrain: error: rank 1: {said}"], err[-3000:]
    assert sorted(_on_nodes(folder)) == sorted(held)  # nothing written
    assert "node0/run/checkpoint-00000002.pt" in held if resume else not (folder / "node0" / "run").exists()  # (rank 0
    # made it)
    assert not (folder / "node1" / "run").exists()


def test_ranks_resuming_one_step_of_different_runs_stop_with_one_line(in_folders):
    """Each node's copy of the checkpoint to resume (each rank reads its own copy of train.resume) of another run
    at the same step: the ranks agreed on the step alone and trained on silently from different weights and
    optimizer states, DDP averaging their gradients. They now agree on the run too (its run_id)."""
    folder, _, err, _ = in_folders["runs"]
    ids = in_folders["ids"]
    said = (f"ranks resume checkpoints of different runs at step 2: run {ids[0]} on rank 0, run {ids[1]} on rank 1 "
            "(each rank resumes what it finds on its own node: a multi-node run needs train.out_dir, and a "
            "train.resume path, on a shared file system)")
    assert ids[0] != ids[1] and sorted(_ends(err, "pretrain")) == [f"mme pretrain (rank 1): error: {said}",
                                                                   f"mme pretrain: error: {said}"], err[-3000:]
    assert not list((folder / "shared").glob("checkpoint-*"))  # no step trained


NCCL_ABORTED = "NCCL communicator was aborted on rank 0.  Original reason for failure was: "
"""The start of the error NCCL's collectives raise once its watchdog aborted the communicator (torch's getNcclComm),
the abort's reason after it."""


@pytest.mark.parametrize("text, lost", [
    (NCCL_ABORTED + "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=42, OpType=ALLREDUCE, "
     "NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600012 milliseconds before timing out.", False),
    (NCCL_ABORTED + "NCCL error: remote process exited or there was a network error, NCCL version 2.21.5\n"
     "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.", True),
    ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:45678", True),
    ("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 1800000ms for recv operation "
     "to complete", False)])
def test_a_collective_that_timed_out_is_no_lost_rank(text, lost):
    """NCCL's watchdog aborts the communicator after a collective timed out too, on ranks all alive (one slow or
    stuck), and the error then starts as after a lost rank's: it was said as 'another rank ended before this one was
    done', sending the user to look for a killed rank torchrun's report does not name."""
    from torch.distributed import DistBackendError

    from mme.errors import ProcessLost
    from mme.train import distributed as dist

    error = DistBackendError(text)
    assert dist.lost_rank(error) is lost
    with pytest.raises(ProcessLost if lost else DistBackendError) as info, dist.rank_lost_said():
        raise error
    assert (info.value.__cause__ is error) if lost else (info.value is error)


LOST_RANK_SAID = ("another rank ended before this one was done: torchrun's report on the node of the rank that ended "
                  "names it, with its signal where it was killed (SIGKILL: the out-of-memory killer, or kill -9); "
                  "otherwise its own last line says why")


@pytest.mark.parametrize("kind, text, lost", [
    ("DistNetworkError", "failed to recv, got 0 bytes", True),  # the store's socket, rank 0's process gone
    ("DistBackendError", "NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network "
     "error, NCCL version 2.21.5\nncclRemoteError: A call failed possibly due to a network error or a remote process "
     "exiting prematurely.\nLast error:\nsocketProgress: Connection closed by remote peer 10.0.0.2<41234>", True),
    ("DistBackendError", NCCL_ABORTED + "NCCL error: remote process exited or there was a network error", True),
    ("RuntimeError", "[../third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection reset by peer", True),
    ("RuntimeError", "[../third_party/gloo/gloo/transport/tcp/pair.cc:446] write: Broken pipe", True),
    ("DistBackendError", "NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error (run with NCCL_DEBUG=INFO "
     "for details), NCCL version 2.21.5\nncclUnhandledCudaError: Call to CUDA function failed.", False),
    ("DistStoreError", "Timed out after 901 seconds waiting for clients. 1/2 clients joined.", False),
    ("RuntimeError", "CUDA out of memory. Tried to allocate 2.00 GiB", False)])
def test_the_error_torch_raises_where_another_rank_ended_is_one_line(kind, text, lost, monkeypatch):
    """What each backend's collective raises where another rank is gone (gloo's socket errors, NCCL's remote error
    and the abort it causes, the store's lost connection) is the one line of ProcessLost, from a decorated collective
    as from the block; this rank's own errors and waits that ran out pass as torch raised them."""
    import torch.distributed as torch_dist

    from mme.errors import ProcessLost
    from mme.train import distributed as dist

    error = getattr(torch_dist, kind, RuntimeError)(text)

    def all_reduce(*args, **kwargs):
        raise error

    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist.dist, "all_reduce", all_reduce)
    with pytest.raises(ProcessLost if lost else type(error)) as info:
        dist.any_true(True, torch.device("cpu"))
    if lost:
        assert str(info.value) == LOST_RANK_SAID and info.value.__cause__ is error
    else:
        assert info.value is error


def test_any_error_of_rank_0_alone_reaches_every_rank(monkeypatch):
    """Rank 0 shared its MMEErrors only: another error of its write (an OSError) left the other ranks waiting for
    its word, to die at their next collective of gloo's lost connection (or wait for NCCL's timeout)."""
    import errno

    from mme.errors import MMEError
    from mme.train import distributed as dist

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "loss.png")

    sent = []
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "broadcast_object", lambda obj: sent.append(obj) or obj)
    with pytest.raises(OSError):  # rank 0 raises its own
        dist.on_main(full)
    monkeypatch.setattr(dist, "is_main", lambda: False)  # this process plays rank 1, which gets what rank 0 sent
    monkeypatch.setattr(dist, "broadcast_object", lambda obj: sent[0])
    with pytest.raises(MMEError, match=r"^rank 0: OSError: \[Errno 28\] No space left on device: 'loss.png'$"):
        dist.on_main(full)


@pytest.mark.parametrize("rank_1_holds, said", [
    ("7 videos (digest 0123456789abcdef)", None),
    ("3 videos (digest fedcba9876543210)", "ranks disagree on data.list_file /mnt/a/train.txt: 7 videos (digest "
     "0123456789abcdef) on rank 0, 3 videos (digest fedcba9876543210) on rank 1: every node must hold the same copy")])
def test_nodes_that_name_their_copies_of_an_input_each_their_own_way_compare_what_the_copies_hold(
        rank_1_holds, said, monkeypatch):
    """Each node names its copy of a list under its own path (its own mount), as check_same_config lets it: the ranks
    compare the copies by the place of each input, not by its name, which said the copy on each rank missing (one
    copy refused as 'none read on rank 1'; two copies said so where their digests differ). This process plays rank 1,
    then rank 0, which gets what rank 1 sent."""
    from mme.errors import ConfigError
    from mme.train import distributed as dist

    def inputs(path, holds):
        return {f"data.list_file {path}": lambda: holds, "train.init ": None}

    sent = []
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_gather_objects", lambda obj: sent.append(obj) or [obj, obj])
    dist.check_same_inputs(inputs("/data/train.txt", rank_1_holds))
    rank_1_sent = iter(sent)
    monkeypatch.setattr(dist, "all_gather_objects", lambda obj: [obj, next(rank_1_sent)])
    rank_0 = inputs("/mnt/a/train.txt", "7 videos (digest 0123456789abcdef)")
    if said is None:
        dist.check_same_inputs(rank_0)
    else:
        with pytest.raises(ConfigError) as info:
            dist.check_same_inputs(rank_0)
        assert str(info.value) == said


def test_the_errors_every_rank_raises_at_one_step_of_the_loop_are_alike_and_decided_from_joined_values(
        monkeypatch, tmp_path):
    """Non-finite losses in a row (counted from steps skipped on any rank) and the failure fraction of the joined
    failures stop every rank at the same step, but were not marked so: the end of the run took them for one rank's,
    and rank 0 drew the loss curve while the others ended, torchrun's SIGTERM reaching it there (a false 'SIGTERM:
    stopping after this step'). The fraction was checked on the rank's own table, which its loader workers may have
    added to since the ranks joined theirs: a rank could stop alone."""
    import types

    from mme.config import from_dict
    from mme.data.dataset import DataConfig, PretrainDataset
    from mme.errors import DataError, NonFiniteLossError, VideoError
    from mme.train import distributed as dist
    from mme.train.loop import check_nonfinite, share_failures

    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    with pytest.raises(NonFiniteLossError) as diverged:
        check_nonfinite(2, {"loss": float("nan")}, 5, 2, "fp32")
    assert dist.raised_alike(diverged.value)

    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\nc.mp4\n")
    data = PretrainDataset(from_dict(DataConfig, {"list_file": str(tmp_path / "list.txt"),
                                                  "max_failure_fraction": 0.5}), track_length=2)
    joined = torch.tensor([2, 0, 0], dtype=torch.int8)  # what the ranks had found when they joined: one of three
    monkeypatch.setattr(dist, "max_over_ranks", lambda codes, device: joined)
    data._record_failure(1, VideoError("b.mp4: broken"))  # this rank's worker found a second since
    run = types.SimpleNamespace(data=data, device=torch.device("cpu"))
    assert share_failures(run) == 2  # counted, and decided on at the next join, by every rank
    joined = torch.tensor([2, 2, 0], dtype=torch.int8)
    with pytest.raises(DataError, match=r"^2 of 3 videos in .* failed, more than data.max_failure_fraction=0.5") \
            as failed:
        share_failures(run)
    assert dist.raised_alike(failed.value)


def test_rank_0_alone_draws_the_progress_bar_of_an_extraction(monkeypatch, tmp_path, capsys):
    """Every rank of ``mme extract`` under torchrun drew its bar, run together on one line of the shared stderr."""
    from mme.motion import extract

    monkeypatch.setattr(extract, "extract_video", lambda path, out_path, opts: None)
    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\n")
    for rank in (0, 1):
        monkeypatch.setattr(extract, "is_main", lambda main=rank == 0: main)  # this process plays that rank
        extract.run(str(tmp_path / "list.txt"), str(tmp_path), str(tmp_path / f"out{rank}"), extract.ExtractOptions())
        bar = "extract: 100%" in capsys.readouterr().err
        assert bar == (rank == 0), rank


def test_rank_0_s_progress_bar_of_a_test_says_it_counts_its_share(monkeypatch, capsys):
    """Under torchrun rank 0's bar of the tests after fine-tuning (and of mme embed) read "val: 1/1 batch" where the
    whole test was 2 batches, one per rank: it counts rank 0's share, and now says so."""
    from mme.eval.testing import iter_test_batches
    from mme.train import distributed as dist

    class Videos(torch.utils.data.Dataset):
        substitutes = False

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"video": torch.zeros(1, 3, 2, 4, 4), "label": i}

    monkeypatch.setattr(dist, "get_world_size", lambda: 2)  # this process plays rank 0 of 2
    batches = list(iter_test_batches(Videos(), range(0, 2, 2), batch_size=1, num_workers=0, desc="val"))
    assert [b["index"].tolist() for b in batches] == [[0]]
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith("val (rank 0's share of 2): 100%") and " 1/1 " in bar, bar


# The meeting part: a meeting that times out closes the launch group's gloo pairs, so the part after it
# (fails_at_second_step) then fails too, with "Application timeout caused pair closure".
MEET = """\
import json, time
from datetime import timedelta
import torch.distributed as td
from mme.train import distributed as dist
rank = dist.get_rank()


def outcome(fn):
    try:
        fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def set_up():  # rank 1's own work before the ranks meet takes longer than that
    with dist.agreed():
        time.sleep(1.5 * rank)


def late_in_a_new_meeting_group():  # rank 1 comes to a meeting group made under a short timeout later than that
    td.distributed_c10d.default_pg_timeout = timedelta(seconds=0.5)  # a new gloo group's (torch's 30 min), scaled down
    try:
        group = dist._meeting_group("cpu")
    finally:
        td.distributed_c10d.default_pg_timeout = td.default_pg_timeout
    time.sleep(1.5 * rank)
    try:
        td.barrier(group=group)
    finally:
        td.destroy_process_group(group)


td.distributed_c10d._set_pg_timeout(timedelta(seconds=0.5))  # the process group's (torch's 30 min on gloo), scaled down
try:
    said = {"agreed": outcome(set_up), "on_main": outcome(lambda: dist.on_main(time.sleep, 1.5))}  # rank 0's, likewise
finally:
    td.distributed_c10d._set_pg_timeout(td.default_pg_timeout)  # (the launch's group's before, for the next parts)
said["new_group"] = outcome(late_in_a_new_meeting_group)
print(json.dumps(said))
"""
"""A part of :data:`LAUNCH` in which the ranks meet after work of unequal length, longer than their process group's
timeout."""


def test_a_gloo_group_that_does_not_start_beside_nccl_leaves_the_ranks_meeting_in_nccls(monkeypatch, caplog):
    """The ranks' meetings run in a gloo group of their own; beside NCCL, a cluster where gloo cannot connect (its
    interface not the one NCCL uses) would otherwise not start at all, where NCCL alone did."""
    from mme.train import distributed

    def refused(*args, **kwargs):
        raise RuntimeError("Gloo connectFullMesh failed")

    monkeypatch.setattr(distributed.dist, "new_group", refused)
    with caplog.at_level("WARNING"):
        assert distributed._meeting_group("cuda") is None
    assert "gloo group did not start (Gloo connectFullMesh failed; GLOO_SOCKET_IFNAME" in caplog.text
    with pytest.raises(RuntimeError, match="connectFullMesh"):  # on the CPU gloo is the run's own group too
        distributed._meeting_group("cpu")


def test_a_rank_that_ends_before_joining_the_ranks_gloo_group_fails_the_others_within_the_groups_timeout(
        monkeypatch):
    """The ranks' gloo group was made under :data:`~mme.train.distributed.MEETING_WAIT`: where a rank ended once
    the process group had started (SIGTERM, killed), the others waited in its making for a year, without a word.
    Made under torch's timeout, its wait for that rank's address in the store runs out (a DistStoreError, played
    here), which is one line, beside NCCL too (no fall-back to NCCL's group: the rank is gone)."""
    from mme.errors import MMEError, ProcessLost
    from mme.train import distributed

    made = []

    def unjoined(**kwargs):
        made.append(kwargs)
        raise distributed.dist.DistStoreError("wait timeout after 1000ms, keys: /default_pg/0//gloo/1/0")

    monkeypatch.setattr(distributed.dist, "new_group", unjoined)
    for device_type in ("cpu", "cuda"):
        with pytest.raises(MMEError) as raised:
            distributed._meeting_group(device_type)
        assert not isinstance(raised.value, ProcessLost)  # (nothing written: the CLI says nothing is kept)
        assert str(raised.value) == (
            "another rank did not join the ranks' gloo group within torch's timeout for a new gloo group (30 minutes "
            "by default) (wait timeout after 1000ms, keys: /default_pg/0//gloo/1/0): it most likely ended once the "
            "process group had started; torchrun's report on its node, or its own last line, says why; launch the job "
            "again")
    assert made == [{"backend": "gloo"}] * 2  # under torch's timeout of a new group (the year set once it is made)


def test_ranks_meeting_after_work_of_unequal_length_wait_beyond_the_process_groups_timeout(launched):
    """Ranks met (``agreed``, ``raise_together``, ``on_main``, the gather of shares) in a barrier or collective under
    the process group's timeout, 30 minutes on gloo, 10 on NCCL: set-up checks, an ``mme embed`` or test share that a
    rank ended that much later, or a long write of rank 0, ended the run, the rank waiting 'another rank ended before
    it was done' (false) or a traceback of gloo's (NCCL's watchdog aborts the process)."""
    _, stdout, stderr = _part(launched, "meet")
    assert [json.loads(line) for line in stdout.splitlines()] == [{"agreed": None, "on_main": None,
                                                                   "new_group": None}] * 2, stderr[-3000:]


def test_a_rank_left_in_the_environment_of_a_one_process_command_keeps_its_log(tmp_path):
    (tmp_path / "list.txt").write_text("gone.mp4 0\n")
    proc = subprocess.run([sys.executable, "-m", "mme.cli", "check", str(tmp_path / "list.txt"), "--root",
                           str(tmp_path), "--out", str(tmp_path / "c.json")], capture_output=True, text=True,
                          env={**os.environ, "RANK": "1"}, timeout=120)
    assert proc.returncode == 1 and "INFO] checking 1 video of" in proc.stderr, proc.stderr


def _finetune_replaced(work, rank: str, monkeypatch, capsys) -> tuple[int, str]:
    """``mme finetune`` as rank ``rank`` of 2 (the environment alone), its work replaced by ``work`` (``main(recipe,
    overrides)``): its exit code and stderr."""
    import mme.eval.finetuned as finetuned

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(finetuned, "main", work)
    with pytest.MonkeyPatch.context() as m:  # the root logger as a process's own at its start: without pytest's
        m.setattr(logging.getLogger(), "handlers", [])  # handlers, beside which the CLI's basicConfig adds none
        return cli(["finetune", "--config", "finetune_tiny_cpu"]), capsys.readouterr().err


def test_the_log_reads_the_rank_as_the_library_does(monkeypatch, capsys):
    """RANK=00 is rank 0 to the library (``launch_ranks``); the CLI compared the text, so its log was a rank's
    other than 0: warnings only, as 'rank 00'."""
    code, err = _finetune_replaced(lambda recipe, overrides: logging.getLogger("mme.eval.testing").info("an info line"),
                                   "00", monkeypatch, capsys)
    assert code == 0 and " INFO rank 0] an info line" in err, err


def test_a_rank_shows_its_own_warnings_and_names_itself_in_its_last_line(monkeypatch, capsys):
    """Rank 1 showed the periodic validation's warning, which every rank raises alike on the joined reports, and
    its last line ('mme finetune: error: ...') did not say it was rank 1's."""
    from mme.errors import DataError

    def warning_then_error(recipe, overrides):
        for name in ("mme.eval.finetuned", "mme.eval.testing"):
            logging.getLogger(name).warning("a warning of %s", name)
        raise DataError("an error of this rank")

    code, err = _finetune_replaced(warning_then_error, "1", monkeypatch, capsys)
    assert code == 1 and "mme.eval.finetuned" not in err, err
    assert " WARNING rank 1] a warning of mme.eval.testing\n" in err
    assert err.endswith("\nmme finetune (rank 1): error: an error of this rank\n"), err


def test_mme_embed_whose_out_is_not_one_folder_for_every_rank_stops_every_rank_with_one_line(in_folders):
    """Ranks on nodes that do not share --out (node-local disks, or a relative --out given from different folders):
    rank 1 wrote its parts into a ``.partial`` folder rank 0 never saw, or could not write them at all, and rank 0
    then said '4 rows neither embedded nor failed; rerun the same command to finish' at every rerun. Here each rank
    runs in a folder of its own, as on two nodes."""
    folder, _, err, codes = in_folders["embed_partial"]  # (rank 1's node has a partial folder of its own; none: the
    # same check)
    said = (f"--out must be a folder every node sees (a shared file system): {folder}/node1/feats.npy.partial on the "
            "node of rank 1 is not the one rank 0 holds")
    assert codes == [1, 1] and sorted(_ends(err, "embed")) == [
        f"mme embed (rank 1): error: {said}", f"mme embed: error: rank 1: {said}"], err[-3000:]
    assert not list(folder.glob("node*/feats.npy.partial/part-*"))  # no rank embedded
    assert not list(folder.glob("node*/feats.npy"))


@pytest.mark.parametrize("node", [0, 1])
def test_mme_embed_up_to_date_on_one_node_alone_stops_every_rank_with_one_line(node, in_folders):
    """--out not shared by the nodes, one of which holds this job's finished features (an earlier run of the command
    on it alone): its rank returned at once, 'up to date', while the other went on to embed and waited for it, then
    said 'another rank ended before this one was done' (where the first rank's process went on, it waited for good).
    The ranks now decide together: not up to date on every rank, so the check of --out stops both."""
    folder, held, err, codes = in_folders[f"embed_done{node}"]
    said = ("--out must be a folder every node sees (a shared file system): "
            f"{folder}/node1/feats.npy.partial on the node of rank 1 is not the one rank 0 holds")
    assert codes == [1, 1] and sorted(_ends(err, "embed")) == [
        f"mme embed (rank 1): error: {said}", f"mme embed: error: rank 1: {said}"], err[-3000:]
    assert "up to date" not in err and "another rank ended" not in err, err[-3000:]
    assert list(folder.glob("node*/feats.npy")) == [folder / f"node{node}" / "feats.npy"]
    kept = [f"node{node}/feats.npy", f"node{node}/feats.npy.json"]  # the features and their sidecar, as they were
    assert {k: (folder / k).read_bytes() for k in kept} == {k: held[k] for k in kept}


DISAGREEING = """\
import json, os, sys
from pathlib import Path
import torch
from mme.config import load_config
from mme.eval.features import embed
from mme.eval.finetuned import finetune, loop
from mme.eval.probe import run_probe
from mme.train.config import FinetuneConfig, PretrainConfig
from mme.train.pretrain import pretrain
d, root, rank = Path(sys.argv[1]), sys.argv[2], os.environ["RANK"]
os.chdir(d / f"node{rank}")  # each rank on a node of its own: relative paths name the node's own copies
TINY = ["model.img_size=32", "data.img_size=32", "model.num_frames=4", "data.num_frames=4", "model.embed_dim=32",
        "model.depth=1", "model.num_heads=1", "data.num_workers=0", "train.batch_size=2", "train.steps=1",
        "data.test_clips=1", "data.test_crops=1", "task.eval_batch_size=4", "train.precision=fp32",
        "train.device=cpu", f"data.root={root}", f"task.classes={root}/classes.json", "task.val_list="]
out = {}


def outcome(what, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
        out[what] = None
    except Exception as e:  # any, so that each test sees what its part did
        out[what] = [type(e).__name__, str(e)]
    (d / f"rank{rank}.json").write_text(json.dumps(out))  # after each part: one that fails to end keeps the others'


def finetuned(what, *overrides):
    tested = [] if any(o.startswith("task.test_list=") for o in overrides) else ["task.test_list="]
    given = {o.split("=", 1)[0] for o in overrides}  # (a key given twice is refused)
    outcome(what, finetune, load_config(FinetuneConfig, "finetune_tiny_cpu", [
        *(o for o in TINY if o.split("=", 1)[0] not in given), f"train.out_dir={d / what}", *tested, *overrides]))


finetuned("test_list", "task.eval_only=true", f"train.init={d / 'model'}", "task.test_list=test.txt")
finetuned("init", "task.eval_only=true", "train.init=model", f"task.test_list={d / 'test.txt'}")
finetuned("clip", "task.eval_only=true", f"train.init={d / 'clip3'}", f"task.test_list={d / 'test.txt'}",
          "model.num_frames=3", "data.num_frames=3")  # (the shared copies; its clip, not the recipe's tubelet 2's)
outcome("embed", embed, d / "model", "list.txt", d / "feats.npy", root=root, num_workers=0, progress=False)
outcome("embed_roots", embed, d / "model", d / "shared.txt", d / "roots.npy", root=str(d / f"mount{rank}"),
        num_workers=0, progress=False)  # (one list, its videos mounted at another path on each node)
outcome("pretrain", pretrain, load_config(PretrainConfig, "tiny_cpu_pixel", [
    *(o for o in TINY if not o.startswith("task.")), "data.list_file=reordered.txt", f"train.out_dir={d / 'pre'}"]))
finetuned("train_list", "data.list_file=train.txt")
outcome("cache", pretrain, load_config(PretrainConfig, "tiny_cpu_mme", [
    *(o for o in TINY if not o.startswith("task.")), f"data.list_file={d / 'shared.txt'}", "target.cache_dir=cache",
    f"train.out_dir={d / 'cache'}"]))  # (each node's own copy of the track cache, another flow's on node 1)
finetuned("trained_test_list", f"data.list_file={root}/train.txt", "task.test_list=test.txt")
outcome("config", pretrain, load_config(PretrainConfig, "tiny_cpu_mme", [
    *(o for o in TINY if not o.startswith(("task.", "data.num_workers", "train.device"))),
    f"data.list_file={d / 'shared.txt'}",
    f"train.out_dir={d / 'config'}", f"train.seed={rank}", f"data.num_workers={rank}",  # (its own, unsaid)
    f"train.device={'auto' if rank == '0' else 'cpu'}", f"train.activation_checkpointing={rank == '1'}",  # (unsaid)
    *(["optim.base_lr=0.003", f"target.cache_dir={d / 'node1' / 'cache'}"] if rank == "1" else [])]))
finetuned("eval_views", "task.eval_only=true", f"train.init={d / 'model'}", f"task.test_list={d / 'test.txt'}",
          f"data.test_clips={1 + int(rank)}")
outcome("embed_options", embed, d / "model", d / "shared.txt", d / "clips.npy", root=root, num_workers=0,
        progress=False, clips=1 + int(rank))
outcome("probe_options", run_probe, d / "model", d / "probe_train.txt", d / "probe", root=root, num_workers=0,
        progress=False, k=5 + int(rank), seed=int(rank), test_list=d / "probe_test.txt" if rank == "1" else None)
import mme.motion.tracks
tracker, torch_version = mme.motion.tracks.TRACKER, torch.__version__
if rank == "1":  # another tracker's rule, and a torch of the same version built for CUDA (the same torch)
    mme.motion.tracks.TRACKER, torch.__version__ = tracker + 1, torch_version.split("+")[0] + "+cu128"
try:
    outcome("embed_code", embed, d / "model", d / "shared.txt", d / "code.npy", root=root, num_workers=0,
            progress=False)
finally:  # (for the next parts of the launch)
    mme.motion.tracks.TRACKER, torch.__version__ = tracker, torch_version
trains = loop.train


def train_then_replace_the_test_list(run):  # node 1's copy replaced while the run trained (days, on a real run)
    trained = trains(run)
    if rank == "1":
        Path("same.txt").write_text("".join(Path("same.txt").read_text().splitlines(True)[:3]))
    return trained


loop.train = train_then_replace_the_test_list
try:
    finetuned("replaced_test_list", f"data.list_file={root}/train.txt", "task.test_list=same.txt")
finally:
    loop.train = trains
"""
"""Each rank, in a folder of its own as on a node of its own, reads its node's copy of an input (lists, checkpoint):
node 1's copy differs from node 0's."""


def _disagreeing_part(d: Path, synth: list[str]) -> list[str]:
    """The folder ``d`` of the part :data:`DISAGREEING` made ready, its arguments returned."""
    lines = Path(synth[0].split("=", 1)[1]).read_text().splitlines()
    for rank in (0, 1):
        node = d / f"node{rank}"
        node.mkdir()
        torch.manual_seed(rank)
        save_pretrained(VideoClassifier(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=1),
                                        num_classes=4), node / "model")
        (node / "test.txt").write_text("\n".join(lines[:7] if rank == 0 else lines[:3]) + "\n")
        (node / "list.txt").write_text("\n".join(lines[:4] if rank == 0 else lines[:4][::-1]) + "\n")
        (node / "reordered.txt").write_text("\n".join(lines if rank == 0 else lines[::-1]) + "\n")
        (node / "train.txt").write_text("\n".join(lines if rank == 0 else lines[:12]) + "\n")
        (node / "same.txt").write_text("\n".join(lines[:7]) + "\n")
        (d / f"mount{rank}").symlink_to(synth[1].split("=", 1)[1])
    (d / "shared.txt").write_text("\n".join(lines[:4]) + "\n")
    (d / "probe_train.txt").write_text("\n".join(lines[::2]) + "\n")
    (d / "probe_test.txt").write_text("\n".join(lines[1::2]) + "\n")
    for rank, flow in enumerate(("dis-balanced", "farneback")):
        assert cli(["extract", str(d / "shared.txt"), "--root", synth[1].split("=", 1)[1], "--out",
                    str(d / f"node{rank}" / "cache"), "--length", "6", "--flow", flow]) == 0
    shutil.copytree(d / "node0" / "model", d / "model")  # (the shared copies, where another input differs)
    save_pretrained(VideoClassifier(ModelConfig(img_size=32, num_frames=3, patch_size=8, tubelet_size=1, embed_dim=32,
                                                depth=1, num_heads=1), num_classes=4), d / "clip3")
    shutil.copy(d / "node0" / "test.txt", d / "test.txt")
    return [str(d), synth[1].split("=", 1)[1]]


@pytest.fixture(scope="module")
def disagreeing(launched):
    """The part :data:`DISAGREEING` of the shared launch, each rank reading its own node's copy (``node<RANK>/``) of
    one input at a time: ``{rank: {part: None or [error type, message]}}`` (what each rank recorded before it ended),
    its ranks' stderr and its folder. Rank 1's copies: a test list of 3 of rank 0's 7 videos (tested alone, and after
    training), a classifier of other weights, an embed list and a pre-training list in another order, a training list
    of 12 of the 16 videos, a track cache of another flow; and rank 1's own settings: a pre-training config,
    task.eval_only's test views, mme embed's and mme probe's options, and its own code for mme embed."""
    d, _, stderr = _part(launched, "disagreeing", whole=False)
    said = {r: json.loads(f.read_text()) if (f := d / f"rank{r}.json").is_file() else {} for r in (0, 1)}
    return said, stderr, d


def _disagree(disagreeing, part: str) -> str:
    """The message both ranks stopped ``part`` with, alike (a ConfigError)."""
    said, stderr, _ = disagreeing
    first, second = said[0].get(part), said[1].get(part)
    assert first is not None and first == second and first[0] == "ConfigError", (first, second, stderr[-3000:])
    return first[1]


def test_eval_only_with_a_test_list_of_other_videos_on_one_node_stops_every_rank_naming_each_ranks_list(
        disagreeing):
    """Each rank tested the videos ``i % world`` of its own node's copy of the test list: rank 1's stale copy of 3
    videos left rank 0's videos 3 and 5 untested, and test.json reported 5 videos as the whole list, no failure said
    (a longer copy on rank 1: an IndexError's traceback)."""
    message = _disagree(disagreeing, "test_list")
    assert re.fullmatch(r"ranks disagree on task\.test_list test\.txt: 7 videos \(digest [0-9a-f]{16}\) on rank 0, "
                        r"3 videos \(digest [0-9a-f]{16}\) on rank 1: every node must hold the same copy", message), \
        message
    assert not (disagreeing[2] / "test_list").exists()  # (no report: no folder taken)


def test_fine_tuning_with_a_test_list_of_other_videos_on_one_node_stops_every_rank_before_any_step(disagreeing):
    """Training (not task.eval_only) with each node's own copy of task.test_list: the ranks compared their copies
    only as they tested them, so the run trained every step and wrote its checkpoints before every rank stopped (a
    stale task.val_list, at the first periodic validation). The val and test lists are now compared at set-up, with
    the training list, before step 1."""
    message = _disagree(disagreeing, "trained_test_list")
    assert re.fullmatch(r"ranks disagree on task\.test_list test\.txt: 7 videos \(digest [0-9a-f]{16}\) on rank 0, "
                        r"3 videos \(digest [0-9a-f]{16}\) on rank 1: every node must hold the same copy", message), \
        message
    assert not list(disagreeing[2].glob("trained_test_list/checkpoint-*"))  # no step trained
    assert not (disagreeing[2] / "trained_test_list").exists()  # (the new run folder removed)


def test_a_test_list_replaced_on_one_node_while_the_run_trained_stops_its_tests(disagreeing):
    """The lists were compared at set-up alone: node 1's copy of task.test_list replaced while the run trained was
    dealt from otherwise at the tests, and test.json reported 5 of the 7 videos, no failure said. They are compared
    again as they are tested."""
    message = _disagree(disagreeing, "replaced_test_list")
    assert re.fullmatch(r"ranks disagree on task\.test_list same\.txt: 7 videos \(digest [0-9a-f]{16}\) on rank 0, "
                        r"3 videos \(digest [0-9a-f]{16}\) on rank 1: every node must hold the same copy", message), \
        message
    assert list(disagreeing[2].glob("replaced_test_list/checkpoint-*"))  # trained
    assert not (disagreeing[2] / "replaced_test_list" / "test.json").exists()


def test_eval_only_with_the_clip_keys_of_its_fine_tuning_run_tests_under_torchrun(disagreeing):
    """task.eval_only of a patch-8, tubelet-1 classifier at 3 frames, given the clip keys its fine-tuning run was
    given (model.num_frames=3 data.num_frames=3): under torchrun the ranks compared their test lists with the
    recipe's data section, before it took the classifier's tubelet, and stopped with 'data.num_frames 3 is not a
    multiple of data.tubelet 2' (one process tested)."""
    said, stderr, d = disagreeing
    assert said[0].get("clip", "not run") is None and said[1].get("clip", "not run") is None, \
        (said[0].get("clip"), said[1].get("clip"), stderr[-3000:])
    report = json.loads((d / "clip" / "test.json").read_text())
    assert report["num_samples"] == 7 and not report["failures"], report


def test_eval_only_of_another_checkpoint_on_one_node_stops_every_rank_naming_each_ranks_weights(disagreeing):
    """train.init, a relative path, named other weights on each node: the report mixed the predictions of two
    models, as one's."""
    message = _disagree(disagreeing, "init")
    assert re.fullmatch(r"ranks disagree on train\.init model: weights [0-9a-f]{16} on rank 0, weights [0-9a-f]{16} "
                        r"on rank 1: every node must hold the same copy", message), message
    assert not (disagreeing[2] / "init").exists()


def test_mme_embed_of_a_list_in_another_order_on_one_node_stops_every_rank(disagreeing):
    """Rank 1 embedded the videos of its own list's rows, written as rank 0's rows: rows held other videos'
    features (a shorter list: '2 rows neither embedded nor failed; rerun the same command to finish' at every
    rerun)."""
    message = _disagree(disagreeing, "embed")
    assert re.fullmatch(r"ranks disagree on the list list\.txt: 4 videos \(digest ([0-9a-f]{16})\) on rank 0, "
                        r"4 videos \(digest (?!\1)[0-9a-f]{16}\) on rank 1: every node must hold the same copy",
                        message), message
    assert not list(disagreeing[2].glob("feats.npy*"))  # (nor its partial results)


def test_mme_embed_of_one_list_whose_videos_each_node_mounts_elsewhere_is_not_refused(disagreeing):
    """The list's digest is of its paths under --root, as training's: nodes that mount one list's videos under
    another path each (``--root`` given otherwise) read the same videos (it was of the paths joined to the root, and
    such nodes were refused as holding other copies of the list)."""
    said, stderr, d = disagreeing
    assert said[0].get("embed_roots", "not run") is None and said[1].get("embed_roots", "not run") is None, (
        said, stderr[-3000:])
    assert (d / "roots.npy").is_file()


def test_pre_training_on_a_track_cache_of_other_settings_on_one_node_stops_every_rank_before_any_step(disagreeing):
    """Each node's own copy of target.cache_dir (a relative path), node 1's extracted with another flow: every
    rank trained on its own node's tracks, two kinds of targets mixed, and node 1's warning that its cache was
    not of target.flow was dropped (the warnings of mme.train.pretrain are rank 0's alone)."""
    message = _disagree(disagreeing, "cache")
    made = "files made with short_side 224, seed_stride 8, flow {}, compensate False, max_disp None, backend pyav"
    assert message == (f"ranks disagree on target.cache_dir cache: {made.format('dis-balanced')} on rank 0, "
                       f"{made.format('farneback')} on rank 1: every node must hold the same copy"), message
    assert not (disagreeing[2] / "cache").exists()  # (the new run folder removed)


@pytest.mark.parametrize("part, videos", [("pretrain", (16, 16)), ("train_list", (16, 12))])
def test_training_on_a_list_of_other_videos_on_one_node_stops_every_rank_before_any_step(disagreeing, part, videos):
    """Each rank drew its batches from its own node's copy of data.list_file: one in another order trained on other
    data than the run records, silently; a shorter one died in gloo's abort at the first join of the failures (a
    table of another size), rank 0 blaming a SIGKILL."""
    message = _disagree(disagreeing, part)
    name = "reordered" if part == "pretrain" else "train"
    assert re.fullmatch(rf"ranks disagree on data\.list_file {name}\.txt: {videos[0]} videos \(digest [0-9a-f]{{16}}\) "
                        rf"on rank 0, {videos[1]} videos \(digest [0-9a-f]{{16}}\) on rank 1: every node must hold "
                        r"the same copy", message), message
    assert not (disagreeing[2] / ("pre" if part == "pretrain" else part)).exists()  # (the new run folder removed)


def test_pre_training_with_another_config_on_one_node_stops_every_rank_naming_each_key_that_differs(disagreeing):
    """Each node reads its own config and overrides (train.seed=$RANDOM, a recipe's copy edited): the ranks compared
    their inputs alone and trained on silently, models drifting apart (another optim.base_lr), items trained twice or
    not at all in an epoch (another train.seed), or hung at a step one rank never reached (another train.steps).
    They compare their configs at the start; the keys that may differ by node and change no result are left out
    (data.num_workers, train.activation_checkpointing: a node out of memory may need it alone), train.device is
    compared as resolved (was: 'auto' on one node and 'cpu' on the other, one device, stopped the job), and one
    naming files is compared by whether it names one (each node names its copies its own way)."""
    message = _disagree(disagreeing, "config")
    assert message == (
        "ranks disagree on the config: optim.base_lr 0.0003 on rank 0, 0.003 on rank 1; target.cache_dir given False "
        "on rank 0, True on rank 1; train.seed 0 on rank 0, 1 on rank 1: every rank must run one config (each node "
        "reads its own --config file and overrides)"), message
    assert not (disagreeing[2] / "config").exists()  # (stopped before its run folder was made)


def test_eval_only_with_other_test_views_on_one_node_stops_every_rank(disagreeing):
    """Rank 1 tested its share of the videos with 2 clips each, rank 0 with 1: test.json mixed both as one test."""
    message = _disagree(disagreeing, "eval_views")
    assert message.startswith("ranks disagree on the config: data.test_clips 1 on rank 0, 2 on rank 1: "), message


@pytest.mark.parametrize("part, said", [
    ("embed_options", "disagree on the options of mme embed: clips 1 on rank 0, 2 on rank 1: every rank must be "
                      "given the same options"),
    ("probe_options", "disagree on the options of mme probe: splits ['train'] on rank 0, ['train', 'test'] on rank "
                      "1: every rank must be given the same lists"),
    ("embed_code", f"run other code: tracker version {TRACKER} on rank 0, {TRACKER + 1} on rank 1: every node must "
                   "run one version of mme and torch")])
def test_mme_embed_and_probe_given_other_options_or_code_on_one_node_stop_every_rank(disagreeing, part, said):
    """mme embed with --clips 2 on one rank and 1 on the other assembled one file whose odd rows held 1-clip
    features, its sidecar saying 2 clips for every row, exit 0. The ranks compare the options of their work (embed's
    fingerprint but its node's own paths; of mme probe's, the splits every rank embeds: its fits are rank 0's, by
    its k and seed) and their code before any: mme's rule versions and torch's version, not its build (+cu128 beside
    +cpu; was: the git commit, so a checkout beside an install of one mme stopped, blamed on embed's options, and
    another tracker's rule went on)."""
    assert _disagree(disagreeing, part) == f"ranks {said}"
    assert not list(disagreeing[2].glob("clips.npy*")) and not list(disagreeing[2].glob("code.npy*"))
    assert not (disagreeing[2] / "probe").exists()


MIXED_CPUS = """\
import json, os, sys
from mme import cli
from mme.train import precision
# rank 0 on a node with native bf16 (AMX), rank 1 on an AVX2-only one, as in a heterogeneous cluster; neither has
# native fp16 (AVX512-FP16)
rank, features, fp16 = int(os.environ["RANK"]), precision.cpu_features, precision.cpu_fp16_native
precision.cpu_features = (lambda: ("AVX2",)) if rank else (lambda: ("AVX2", "AVX-512", "AVX512-BF16", "AMX"))
precision.cpu_fp16_native = lambda: False
forced = os.environ.pop(precision.AUTO_ENV, None)  # auto as resolved, not as pinned for a run of the suite
try:
    for args in json.loads(sys.argv[1]):
        cli.main(args)
finally:  # (for the next parts of the launch)
    precision.cpu_features, precision.cpu_fp16_native = features, fp16
    if forced is not None:
        os.environ[precision.AUTO_ENV] = forced
"""
"""A part of :data:`LAUNCH`, rank 1 on a CPU without native bf16 and rank 0 on one with it, that runs the mme commands
of its argument, ``[argv, ...]``, one after the other (the CPUs and the environment put back after)."""


def test_the_mixed_cpus_part_puts_the_cpus_and_the_environment_back_where_a_command_raises(tmp_path, monkeypatch):
    """:data:`MIXED_CPUS` put them back after its commands alone: one that raised left the next parts of the launch
    on its rank's mocked CPU, the suite's pinned auto precision unset."""
    from mme.train import precision

    features, fp16 = precision.cpu_features, precision.cpu_fp16_native
    monkeypatch.setattr(precision, "cpu_features", features)  # (put back for the tests after, whatever the part did)
    monkeypatch.setattr(precision, "cpu_fp16_native", fp16)
    monkeypatch.setenv(precision.AUTO_ENV, "fp32")
    monkeypatch.setenv("RANK", "1")

    def raising(args):
        raise RuntimeError("a command that raised")

    monkeypatch.setattr("mme.cli.main", raising)
    (tmp_path / "part.py").write_text(MIXED_CPUS)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "part.py"), json.dumps([["embed"]])])
    with pytest.raises(RuntimeError, match="a command that raised"):
        runpy.run_path(sys.argv[0], run_name="__main__")
    assert precision.cpu_features is features and precision.cpu_fp16_native is fp16
    assert os.environ[precision.AUTO_ENV] == "fp32"


def _mixed_cpus_part(d: Path, synth: list[str]) -> list[str]:
    """The folder ``d`` of the part :data:`MIXED_CPUS` made ready, its arguments returned."""
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2)),
                    d / "enc")
    list_file, root = (s.split("=", 1)[1] for s in synth)
    jobs = [["embed", str(d / "enc"), list_file, "--root", root, "--out", str(d / "embed.npy"), "--workers", "0",
             "--clips", "1", "--stride", "2", "--batch-size", "4"]]
    jobs += [["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={d / name}", "train.steps=1",
                                                              "train.batch_size=2", f"train.precision={name}")]
             for name in ("auto", "bf16", "fp16")]
    save_pretrained(VideoClassifier(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=1),
                                    num_classes=4), d / "clf")
    jobs += [["finetune", "--config", "finetune_tiny_cpu", "task.eval_only=true", f"train.init={d / 'clf'}",
              f"train.out_dir={d / 'eval'}", "model.img_size=32", "data.img_size=32", "model.num_frames=4",
              "data.num_frames=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=1", "data.num_workers=0",
              "data.test_clips=1", "data.test_crops=1", "task.eval_batch_size=4", "train.device=cpu",
              f"data.root={root}", f"task.classes={root}/classes.json", "task.val_list=",
              f"task.test_list={list_file}"]]
    return [json.dumps(jobs)]


@pytest.fixture(scope="module")
def mixed_cpus(launched):
    """The part :data:`MIXED_CPUS` of the shared launch, on CPUs of which only rank 0's has native bf16: its folder
    (``enc``, an encoder, ``embed.npy`` its features of the synthetic list by ``mme embed`` at auto precision;
    ``auto``, ``bf16`` and ``fp16``, runs of ``mme pretrain`` at those precisions; ``eval``, a ``task.eval_only`` test
    of the classifier ``clf`` at auto precision), the ranks' stderr and the data overrides it read."""
    d, _, stderr = _part(launched, "mixed_cpus")
    return d, stderr, json.loads((launched / "data.json").read_text())


def test_embed_on_ranks_of_which_one_lacks_native_bf16_embeds_every_row_in_fp32_saying_which_rank(mixed_cpus):
    """Each rank resolved auto on its own CPU and the sidecar said rank 0's: the rows of rank 0's share were bf16's,
    rank 1's fp32's, all recorded as bf16. One choice is every rank's, fp32 where any rank lacks native bf16."""
    from mme.eval.features import embed, read_features

    d, stderr, synth = mixed_cpus
    assert json.loads((d / "embed.npy.json").read_text())["precision"] == "fp32"
    assert re.search(r"INFO rank 0\] .*precision fp32 \(auto: no native bf16 on the cpu of rank 1, ", stderr), \
        stderr[-3000:]
    list_file, root = (s.split("=", 1)[1] for s in synth)
    embed(d / "enc", list_file, d / "fp32.npy", root=root, num_workers=0, clips=1, stride=2, batch_size=4,
          precision="fp32", progress=False)
    assert np.array_equal(read_features(d / "embed.npy")[0], read_features(d / "fp32.npy")[0])


def test_pretraining_on_ranks_of_which_one_lacks_native_bf16_runs_fp32_and_warns_there_of_an_asked_for_bf16(mixed_cpus):
    """Every rank took rank 0's auto choice, bf16 where it timed bf16 faster, emulated on the AVX2 rank; and bf16 asked
    for was said to be emulated only where that was rank 0 (the warning of a rank's own CPU was dropped as one every
    rank raises alike)."""
    d, stderr, _ = mixed_cpus
    run = json.loads((d / "auto" / "run.json").read_text())
    assert (run["precision"], run["precision_reason"]) == ("fp32", (
        "auto: no native bf16 on the cpu of rank 1, where emulated bf16 is far slower than fp32; every rank runs one "
        "precision")), run
    warned = [ln for ln in stderr.splitlines() if "bf16 requested on cpu without native bf16 support" in ln]
    assert len(warned) == 1 and " WARNING rank 1] " in warned[0], stderr[-3000:]
    assert json.loads((d / "bf16" / "run.json").read_text())["precision"] == "bf16"


def test_an_fp16_asked_for_on_cpus_is_said_to_be_emulated_once_not_by_every_rank(mixed_cpus):
    """fp16 is emulated on CPUs without AVX512-FP16, alike on ranks of such CPUs: each rank said so, a line of its
    own (64 at 64 ranks), since the warning of a rank's own node (bf16 above) was shown by every rank."""
    d, stderr, _ = mixed_cpus
    warned = [ln for ln in stderr.splitlines() if "fp16 requested on cpu without native fp16 support" in ln]
    assert len(warned) == 1 and " WARNING rank 0] " in warned[0], stderr[-3000:]
    assert json.loads((d / "fp16" / "run.json").read_text())["precision"] == "fp16"


def test_eval_only_on_ranks_of_which_one_lacks_native_bf16_tests_in_fp32_saying_which_rank(mixed_cpus):
    """task.eval_only resolved auto on each rank: rank 0's share of the test videos in bf16, rank 1's in fp32,
    test.json saying bf16."""
    d, stderr, _ = mixed_cpus
    assert json.loads((d / "eval" / "test.json").read_text())["precision"] == "fp32"
    assert re.search(r"INFO rank 0\] task.eval_only: on cpu, precision fp32 \(auto: no native bf16 on the cpu of "
                     r"rank 1, ", stderr), stderr[-3000:]
