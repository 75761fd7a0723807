"""Exact resume: a run stopped (or SIGKILLed) after N steps and resumed with ``train.resume=auto`` ends with
bitwise-identical parameters to an uninterrupted run of 2N steps (on CPU, fp32: every kernel here is
deterministic, so equality is exact, not within a tolerance), also when the resumed half runs in a process with
another Python hash seed. Checkpoint writes are atomic; resume skips damaged files and stops at one it cannot open."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from os_fakes import unenterable
from training import FP32, in_one_process, run, tiny

import mme
from mme.data.dataset import lines_digest
from mme.errors import CheckpointError, CheckpointUnreadable, ConfigError, MMEError
from mme.train import checkpoint as ckpt
from mme.train import run_folder
from mme.train.distributed import epoch_batches

STEPS = 6  # 16 clips / batch 4 = 4 steps per epoch: the resumed part crosses an epoch boundary
# Stochastic depth draws from the global torch RNG in every step, so resuming must restore it exactly too.
DROP = "model.drop_path=0.2"


def _pretrain_argv(recipe: str, synth: list[str], out, *extra: str) -> list[str]:
    """The arguments of ``mme pretrain`` of the tiny recipe (fp32) into ``out``."""
    return ["pretrain", "--config", recipe, *tiny(*synth, f"train.out_dir={out}", FP32, *extra)]


def cli_pretrain(recipe: str, synth: list[str], out, *extra: str, hash_seed: int,
                 **popen) -> subprocess.Popen:
    """``mme pretrain`` of the tiny recipe in a new process with Python hash seed ``hash_seed`` (started, not
    waited for)."""
    cmd = [sys.executable, "-m", "mme.cli", *_pretrain_argv(recipe, synth, out, *extra)]
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}, **popen)


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    res = run("tiny_cpu_pixel", synth, out, f"train.steps={STEPS}", DROP, FP32)
    return torch.load(res.checkpoint, weights_only=True)["model"], res.history


HASH_SEED = 1  # another hash seed than this process's (random, or PYTHONHASHSEED's: checked below)


@pytest.fixture(scope="module")
def in_hash_seed(synth, tmp_path_factory):
    """The runs of the two tests below in a process of another hash seed than this one's: it resumes the pixel run
    this process stopped after 3 steps (test_stop_and_resume_is_bitwise_exact), then runs 2 steps of the MME target
    from scratch, which this process runs too (test_runs_in_processes_of_different_hash_seeds_end_bitwise_equal), as
    ``mme pretrain`` (``cli.main``) one after the other. Returns the stopped run, the folder of each job, each job's
    exit status and stderr (None where the process ended before it), and this process's MME run."""
    assert os.environ.get("PYTHONHASHSEED") != str(HASH_SEED), "this process shares the hash seed"
    tmp = tmp_path_factory.mktemp("hash_seed")
    first = run("tiny_cpu_pixel", synth, tmp / "stopped", f"train.steps={STEPS}", DROP, FP32, "train.stop_after=3")
    folders = {"resumed": tmp / "resumed", "mme": tmp / "mme"}
    shutil.copytree(tmp / "stopped", folders["resumed"])
    mme_argv = ("tiny_cpu_mme", synth, "train.steps=2", "model.depth=1")
    ran = in_one_process([_pretrain_argv("tiny_cpu_pixel", synth, folders["resumed"], f"train.steps={STEPS}", DROP,
                                         "train.resume=auto"),
                          _pretrain_argv(*mme_argv[:2], folders["mme"], *mme_argv[2:])],
                         env={**os.environ, "PYTHONHASHSEED": str(HASH_SEED)}).ran
    ended = {job: (code, err) for job, (code, err, _) in zip(folders, ran)}
    here = run(*mme_argv[:2], tmp / "mme_here", *mme_argv[2:], FP32)
    return first, folders, ended, here


def _finished_in(in_hash_seed, job: str) -> Path:
    """The folder of ``job`` of the process of the other hash seed, which it finished."""
    _, folders, ended, _ = in_hash_seed
    code, err = ended[job]
    assert code == 0, err[-3000:]
    return folders[job]


def _assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"parameters differ after resume: {different[:5]}"


def test_stop_and_resume_is_bitwise_exact(reference, in_hash_seed):
    first = in_hash_seed[0]
    assert first.step == 3 and first.checkpoint.name == "checkpoint-00000003.pt"
    assert torch.load(first.checkpoint, weights_only=True)["data"] == {"epoch": 0, "batch": 3}
    out = _finished_in(in_hash_seed, "resumed")  # the resumed half in a process of another hash seed
    _assert_same_params(torch.load(ckpt.checkpoint_path(out, STEPS), weights_only=True)["model"], reference[0])
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))  # the log reads as one run
    assert [r["loss"] for r in log[3:]] == [r["loss"] for r in reference[1][3:]]


def test_runs_in_processes_of_different_hash_seeds_end_bitwise_equal(in_hash_seed):
    """The MME target (tracks, HOG along them, several loss terms) end to end in two processes."""
    there = torch.load(ckpt.checkpoint_path(_finished_in(in_hash_seed, "mme"), 2), weights_only=True)["model"]
    _assert_same_params(there, torch.load(in_hash_seed[3].checkpoint, weights_only=True)["model"])


def test_sigkill_then_resume_auto_is_bitwise_exact(reference, synth, tmp_path):
    proc = cli_pretrain("tiny_cpu_pixel", synth, tmp_path, f"train.steps={STEPS}", "train.ckpt_every=2", DROP,
                        hash_seed=3, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.checkpoint_path(tmp_path, 2).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = [int(p.stem.split("-")[1]) for p in ckpt.list_checkpoints(tmp_path)]
    assert done and max(done) < STEPS
    resumed = run("tiny_cpu_pixel", synth, tmp_path, f"train.steps={STEPS}", "train.ckpt_every=2", DROP, FP32,
                  "train.resume=auto")
    assert resumed.step == STEPS and len(resumed.history) == STEPS - max(done)
    _assert_same_params(torch.load(resumed.checkpoint, weights_only=True)["model"], reference[0])


def _state(step: int, size: int = 4) -> dict:
    return {"model": {"w": torch.full((size,), float(step))}, "config": {}, "optimizer": {}, "step": step,
            "data": {"epoch": 0, "batch": step}, "rng": ckpt.rng_state()}


def test_save_and_purge_keeps_last_k_checkpoints(tmp_path):
    for step in range(1, 6):
        ckpt.save_checkpoint(_state(step), tmp_path, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-00000004.pt", "checkpoint-00000005.pt"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_failed_purge_only_warns(tmp_path, caplog):
    (tmp_path / "checkpoint-00000001.pt").mkdir()  # cannot be unlinked like a file
    with caplog.at_level(logging.WARNING):
        path = ckpt.save_checkpoint(_state(2), tmp_path, keep_last=1)
    assert path.is_file() and f"{tmp_path / 'checkpoint-00000001.pt'}: could not be removed (Is a directory); an " \
        "old checkpoint, left beside the newest 1 (train.keep_last)" in caplog.text
    assert ckpt.latest_valid(tmp_path)[1]["step"] == 2


def test_resume_auto_skips_a_truncated_newest_checkpoint(tmp_path, caplog):
    ckpt.save_checkpoint(_state(1), tmp_path, keep_last=0)
    newest = ckpt.save_checkpoint(_state(2), tmp_path, keep_last=0)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        path, state = ckpt.latest_valid(tmp_path)
    assert state["step"] == 1 and path.name == "checkpoint-00000001.pt"
    assert "checkpoint-00000002.pt" in caplog.text and "truncated or corrupt" in caplog.text


@pytest.mark.parametrize("cause", ["permission", "io", "io in torch.load", "io under a torch RuntimeError"])
def test_resume_auto_stops_at_a_newest_checkpoint_that_cannot_be_opened(tmp_path, monkeypatch, refuse_open,
                                                                         cause):
    """Before: a traceback (PermissionError, OSError); an I/O error inside torch.load was 'truncated or corrupt'.
    Skipped like a truncated file, the run would resume from an older checkpoint and set the newest aside as an
    abandoned branch: it stops, naming the file and the reason."""
    from mme.train.engine import resume_state

    ckpt.save_checkpoint(_state(1), tmp_path, keep_last=0)
    newest = ckpt.save_checkpoint(_state(2), tmp_path, keep_last=0)
    if cause == "permission":
        newest.chmod(0)
        try:
            newest.open("rb").close()
            pytest.skip("this process reads a file of mode 000 (root)")
        except PermissionError:
            reason = "Permission denied"
    elif cause == "io":
        refuse_open(newest, OSError(errno.EIO, "Input/output error", str(newest)))
        reason = "Input/output error"
    else:  # the first bytes read, the rest not
        real_load = torch.load

        def failing_load(file, *args, **kwargs):
            if Path(getattr(file, "name", file)) != newest:  # (a path, or the file torch_load opened)
                return real_load(file, *args, **kwargs)
            try:
                raise OSError(errno.EIO, "Input/output error")
            except OSError as e:
                if cause == "io in torch.load":
                    raise
                raise RuntimeError("PytorchStreamReader failed reading file data/0: file read failed") from e

        monkeypatch.setattr("torch.load", failing_load)
        reason = "Input/output error"
    with pytest.raises(CheckpointError, match=rf"^{newest}: cannot be read \({reason}\)$"):
        resume_state("auto", tmp_path)
    assert ckpt.list_checkpoints(tmp_path) == [ckpt.checkpoint_path(tmp_path, 1), newest]


def test_a_run_folder_this_user_may_not_enter_is_said_in_one_line(tmp_path, capsys):
    """A teammate's run folder of mode 0700 (made under umask 077): --resume auto, --resume PATH, a checkpoint read
    (mme embed, probe, viz, export), train.init and the folder's lock raised PermissionError tracebacks (Python's
    ``is_dir`` and ``exists`` raise there, and the lock's look at its .lock raised again in its error handler); each
    is now one line naming the path, the reason, and the folder this user may not enter (train.out_dir's refusal
    named no folder, --resume auto's no setting)."""
    from mme.cli import main as cli_main
    from mme.models.checkpoint import read_checkpoint
    from mme.models.config import ModelConfig
    from mme.train.engine import read_init, resume_state

    run = tmp_path / "run"
    ckpt.save_checkpoint(_state(1), run, keep_last=0)
    saved = ckpt.checkpoint_path(run, 1)
    shut = re.escape(str(run))
    inside = rf"{re.escape(str(saved))}: cannot be read \(Permission denied: this user may not enter {shut}\)"
    with unenterable(run):
        with pytest.raises(CheckpointUnreadable,
                           match=rf"^train.out_dir {shut}: cannot be read \(Permission denied\)$"):
            resume_state("auto", run)
        for read in (lambda: resume_state(str(saved), tmp_path / "other"), lambda: read_checkpoint(saved)):
            with pytest.raises(CheckpointUnreadable, match=rf"^{inside}$"):
                read()
        with pytest.raises(CheckpointError, match=rf"^train.init {inside}$"):
            read_init(str(saved), ModelConfig())
        assert cli_main(["export", str(saved), str(tmp_path / "out")]) == 1
        assert re.fullmatch(rf"mme export: error: {inside}\n", capsys.readouterr().err)
        for out_dir in (run, run / "sub"):
            with pytest.raises(ConfigError, match=rf"^train.out_dir '{re.escape(str(out_dir))}' is not a writable "
                                                  rf"folder \(Permission denied: this user may not enter {shut}\)$"):
                run_folder.take(out_dir)


def test_resume_auto_refuses_a_folder_none_of_whose_checkpoints_reads(tmp_path, caplog):
    """Before: 'no checkpoint, starting fresh', then the fresh run refused the folder as another run's and advised
    train.resume=auto, the option given, or train.overwrite, which deletes them."""
    from mme.train.engine import resume_state

    only = ckpt.save_checkpoint(_state(1), tmp_path, keep_last=0)
    only.write_bytes(only.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"train.resume=auto: the one checkpoint in .* is not a "
                                              r"training checkpoint mme can read"):
        resume_state("auto", tmp_path)
    assert "checkpoint-00000001.pt" in caplog.text and "truncated or corrupt" in caplog.text
    assert resume_state("auto", tmp_path / "empty") is None
    assert resume_state("auto", tmp_path, overwrite=True) is None  # the option the message advises


def test_a_missing_torch_api_is_not_called_a_corrupt_checkpoint(tmp_path, monkeypatch):
    """Before: an older torch without ``safe_globals`` made every checkpoint 'truncated or corrupt', which
    ``--resume auto`` skipped."""
    path = ckpt.save_checkpoint(_state(1), tmp_path, keep_last=0)
    monkeypatch.delattr(torch.serialization, "safe_globals")
    with pytest.raises(AttributeError, match="safe_globals"):
        ckpt.load_checkpoint(path)


def test_sigkill_during_a_write_leaves_the_previous_checkpoint(tmp_path):
    ckpt.save_checkpoint(_state(1), tmp_path, keep_last=0)
    code = ("import sys, torch; from mme.train import checkpoint as c; "
            f"s = {{'model': {{'w': torch.ones(64_000_000)}}, 'config': {{}}, 'optimizer': {{}}, 'step': 2, "
            f"'data': {{}}, 'rng': {{}}}}; c.save_checkpoint(s, {str(tmp_path)!r}, keep_last=0)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".checkpoint-00000002.pt.tmp*")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    killed = proc.wait() == -signal.SIGKILL
    if killed and not ckpt.checkpoint_path(tmp_path, 2).exists():
        assert list(tmp_path.glob(".checkpoint-00000002.pt.tmp*"))  # the half-written temp file is there...
        path, state = ckpt.latest_valid(tmp_path)  # ...and ignored
        assert state["step"] == 1 and [p.name for p in ckpt.list_checkpoints(tmp_path)] == [path.name]
    else:  # the write finished first: then the new checkpoint must be complete
        assert ckpt.latest_valid(tmp_path)[1]["step"] == 2
        pytest.skip("the 256 MB write finished before the kill; atomicity not exercised this time")


def test_data_order_depends_on_seed_and_epoch_only_and_shards_like_one_big_batch():
    one = epoch_batches(20, 4, seed=3, epoch=1, rank=0, world_size=1)
    assert one == epoch_batches(20, 4, seed=3, epoch=1, rank=0, world_size=1)
    assert one != epoch_batches(20, 4, seed=3, epoch=2, rank=0, world_size=1)
    assert sorted(i for b in one for i in b) == list(range(20))
    ranks = [epoch_batches(20, 2, seed=3, epoch=1, rank=r, world_size=2) for r in range(2)]
    for k, big in enumerate(one):  # the k-th batches of the two ranks together = the k-th big batch
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(big)


def test_no_two_seeds_share_an_epochs_data_order():
    """Seed s's epoch e was seed s+1's epoch e-1 (torch's DistributedSampler seeds by seed + epoch): a spread over
    seeds left out the variance of the data order."""
    orders = {(seed, epoch): epoch_batches(1000, 8, seed, epoch, rank=0, world_size=1)
              for seed in range(3) for epoch in range(10)}
    assert len({str(order) for order in orders.values()}) == len(orders)
    dealt = [epoch_batches(10, 1, seed=0, epoch=1, rank=r, world_size=4) for r in range(4)]
    assert [len(batches) for batches in dealt] == [2] * 4  # as DistributedSampler(drop_last=True): 8 of 10 dealt
    assert len({i for batches in dealt for b in batches for i in b}) == 8


def test_a_key_added_since_a_run_was_made_is_a_change_when_its_value_is_not_what_the_run_did():
    """A ``released``-preset run made before ``target.hog_style`` existed trained on the scikit-image HOG; resumed
    now, its preset gives the release's: a change to warn about (keys added with the old behaviour are not)."""
    from mme.train.engine import config_changes

    old = {"target": {"preset": "released", "kind": "mme-released"}}
    [change] = config_changes(old, {"target": {**old["target"], "hog_style": "release"}})
    assert (change.key, change.old, change.new, change.added) == ("target.hog_style", "skimage", "release", True)
    assert str(change) == "target.hog_style: 'skimage' (before the key existed) -> 'release'"
    assert config_changes(old, {"target": {**old["target"], "hog_style": "skimage", "shuffled": False}}) == []


@pytest.mark.parametrize("target, added", [
    ({"cache_dir": "/cache"}, {"flow_margin": 8}), ({"flow": "torch-lk"}, {"flow_margin": 8}),
    ({"kind": "pixel"}, {"flow_margin": 8}), ({"kind": "pixel"}, {"hog_style": "release", "hog_norm": True})])
def test_a_key_added_since_a_run_was_made_is_no_change_where_the_new_target_takes_no_effect_from_it(target, added):
    """A run made before target.flow_margin (or the HOG keys) existed, resumed with one on a target it has no
    effect on (tracks of a cache or of the step, a pixel head): said as a change from what the run did, beside the
    warning that it has no effect; no change now, as a key both configs hold."""
    import dataclasses

    from mme.motion.targets import TargetConfig
    from mme.train.engine import config_changes

    old = dataclasses.asdict(TargetConfig(**target))
    for key in added:
        del old[key]  # as an mme before the key wrote it
    new = TargetConfig(**target, **added)
    assert set(added) <= set(new.settings_without_effect())
    assert config_changes({"target": old}, {"target": dataclasses.asdict(new)}) == []
    assert config_changes({"target": {**old, **dataclasses.asdict(TargetConfig(**target))}},
                          {"target": dataclasses.asdict(new)}) == []  # (as the key, held before, is compared)


def test_a_flow_the_run_does_not_use_for_reading_a_track_cache_is_no_change_on_resume(synth, tmp_path, caplog):
    """A run that reads its tracks from target.cache_dir (made with --flow dis), resumed with another target.flow
    (a new default), was warned about as "resuming ... with a changed config (the run will not replay exactly):
    target.flow: 'dis' -> 'dis-balanced'" and recorded so in run.json, though the cache's tracks are read either
    way. A run that computes its tracks online still reports the flow it changed."""
    from mme.motion.extract import extract_cache
    from mme.train.engine import config_changes

    lists = dict(s.split("=", 1) for s in synth)
    extract_cache(lists["data.list_file"], str(tmp_path / "cache"), root=lists["data.root"], length=6,
                  short_side=64, flow="dis")
    cached = (f"target.cache_dir={tmp_path / 'cache'}", FP32, "train.steps=2", "train.ckpt_every=1")
    assert run("tiny_cpu_mme", synth, tmp_path / "run", *cached, "target.flow=dis", "train.stop_after=1").step == 1
    with caplog.at_level(logging.WARNING, logger="mme"):
        resumed = run("tiny_cpu_mme", synth, tmp_path / "run", *cached, "target.flow=dis-balanced",
                      "train.resume=auto")
    assert resumed.step == 2 and "changed config" not in caplog.text
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "config_changes" not in meta and "tracker" not in meta  # (the revision of its tracks is its files')
    online = {"target": {"kind": "mme", "flow": "dis", "cache_dir": None}}
    assert list(map(str, config_changes(online, {"target": {**online["target"], "flow": "dis-balanced"}}))) == [
        "target.flow: 'dis' -> 'dis-balanced'"]


def test_a_track_cache_extracted_again_between_a_stop_and_its_resume_is_a_recorded_change(synth, tmp_path, caplog):
    """A track cache made again into its folder between a run's stop and its resume (the coarse-cache warning's
    advice, `mme extract ... --overwrite` at another --short-side and --max-disp) keeps its target.cache_dir: the
    resumed run trained on other targets without a word (config_changes None). What the run reads of it (the settings
    of its files, as ranks compare them) is recorded in the run's meta and compared on resume: one recorded change. A
    checkpoint made before it was recorded resumes as before."""
    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    cache = str(tmp_path / "cache")

    def extract(**settings) -> None:
        extract_cache(lists["data.list_file"], cache, root=lists["data.root"], length=6, **settings)

    extract(short_side=64)
    base = ("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}", FP32, "train.steps=4",
            "train.ckpt_every=1", "model.depth=1")
    run(*base, "train.stop_after=1")
    run(*base, "train.stop_after=2", "train.resume=auto")  # the same cache: no change
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "config_changes" not in recorded
    assert recorded["input_identities"] == {"track cache": {"made_with": {  # its values, not words to read back
        "short_side": 64, "seed_stride": 8, "flow": "dis-balanced", "compensate": False, "max_disp": None,
        "backend": "pyav"}}}
    extract(short_side=96, max_disp=30, overwrite=True)
    with caplog.at_level(logging.WARNING):
        run(*base, "train.stop_after=3", "train.resume=auto")
    change = "track cache: short_side 64 -> 96, max_disp None -> 30.0"  # (before: all six settings each side)
    assert f"with a changed config (the run will not replay exactly): ['{change}']" in caplog.text
    recorded = [{"from_step": 2, "changes": [change]}]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == recorded  # before: none
    newest = ckpt.list_checkpoints(tmp_path / "run")[-1]
    state = ckpt.load_checkpoint(newest)
    del state["meta"]["input_identities"]  # as a checkpoint made before the meta recorded it
    ckpt.save_checkpoint(state, tmp_path / "run", keep_last=0)
    extract(short_side=64, overwrite=True)
    assert run(*base, "train.resume=auto").step == 4
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == recorded


def test_a_run_that_recorded_its_track_cache_in_words_resumes_compared_by_its_settings(synth, tmp_path, caplog):
    """An earlier mme recorded the settings of a run's track cache files in words (``read_identities``, 'files made
    with short_side 64, ...'), where this one records their values: a checkpoint holding the words resumes over the
    same cache without a change, and over a cache made again with other settings with the one entry naming those."""
    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    cache = str(tmp_path / "cache")

    def extract(**settings) -> None:
        extract_cache(lists["data.list_file"], cache, root=lists["data.root"], length=6, **settings)

    def in_words() -> None:
        """The newest checkpoint's record of the cache as the earlier mme wrote it."""
        state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
        del state["meta"]["input_identities"]
        state["meta"]["read_identities"] = {"track cache": (
            "files made with short_side 64, seed_stride 8, flow dis-balanced, compensate False, max_disp None, "
            "backend pyav")}
        ckpt.save_checkpoint(state, tmp_path / "run", keep_last=0)

    extract(short_side=64)
    base = ("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}", FP32, "train.steps=3",
            "train.ckpt_every=1", "model.depth=1")
    run(*base, "train.stop_after=1")
    in_words()
    run(*base, "train.stop_after=2", "train.resume=auto")  # the same cache: no change
    assert "config_changes" not in json.loads((tmp_path / "run" / "run.json").read_text())
    in_words()
    extract(short_side=96, max_disp=30, overwrite=True)
    with caplog.at_level(logging.WARNING):
        run(*base, "train.resume=auto")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == [
        {"from_step": 2, "changes": ["track cache: short_side 64 -> 96, max_disp None -> 30.0"]}]


def test_the_track_cache_identity_is_of_its_files_whatever_the_runs_decoder(tmp_path):
    """What a run records of its track cache names the files' own settings: a resume that changes only
    data.backend between pyav-cuda and pyav (one frames) on an untouched cache recorded 'backend pyav-cuda ->
    backend pyav' as a changed cache, since the identity named the run's decoder; and the warning of a mixed cache,
    under data.backend=opencv, held a cache of files made with pyav-cuda and pyav mixed."""
    import dataclasses

    from videos import affine_video, write_video

    from mme.data.dataset import DataConfig, PretrainDataset, identity_text
    from mme.models.config import ModelConfig
    from mme.motion.extract import extract_cache
    from mme.motion.targets import TargetConfig, make_target_fn
    from mme.train.engine import read_change

    for i in range(2):
        write_video(tmp_path / f"v{i}.mp4", affine_video(20, 64, 80, dx=1.0 + i, dy=0.5, seed=i)[0])
    (tmp_path / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(tmp_path), length=6, short_side=64)
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=4, stride=2, img_size=64)
    dataset = PretrainDataset(data, track_length=6)
    dataset.target_fn = make_target_fn(TargetConfig(kind="mme", track_length=6, cache_dir=str(tmp_path / "cache")),
                                       ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2))
    said = {}
    for backend in ("pyav-cuda", "pyav"):  # (the run's decoder only: no GPU needed to judge the identity)
        dataset.cfg = dataclasses.replace(data, backend=backend)
        said[backend] = dataset.cache_identity()
    assert said["pyav"] == said["pyav-cuda"]
    assert identity_text(said["pyav"]) == ("files made with short_side 64, seed_stride 8, flow dis-balanced, "
                                           "compensate False, max_disp None, backend pyav")
    assert read_change({"input_identities": {"track cache": said["pyav-cuda"]}},
                       {"input_identities": {"track cache": said["pyav"]}}) == []
    # one file made with pyav-cuda on a GPU (its meta as that extraction records it), the other with pyav: one cache
    # to a run of any decoder, where the warning of a mixed cache said 'v0.mp4.tracks was made with backend
    # pyav-cuda, v1.mp4.tracks with backend pyav' under data.backend=opencv
    (path, found, meta, kind, why), *rest = dataset._probe_reads
    dataset.__dict__["_probe_reads"] = [(path, found, {**meta, "backend": "pyav-cuda"}, kind, why), *rest]
    for backend in ("pyav", "pyav-cuda", "opencv"):
        dataset.cfg = dataclasses.replace(data, backend=backend)
        assert dataset.mixed_cache(read=True) is None
        assert dataset.cache_identity() == said["pyav"]
    # (a resumed extraction of the run's --backend opencv takes neither: its flags still name the files' decoders)
    assert dataset.mixed_cache() == f"{found} was made with backend pyav-cuda, {rest[0][1]} with backend pyav"


def test_a_track_cache_identity_change_reads_values_holding_a_comma_or_a_space():
    """What changed since a track cache identity an earlier mme recorded in words was read by splitting at ', ' and
    ' ': a value holding either (a flow or decoder named so by another mme) or a text without a value (an earlier
    mme's) raised ValueError during the resume. Each is read by the keys of READ_SETTINGS; a text of other keys is
    said whole."""
    from mme.data.dataset import identity_change, identity_text

    def made(flow: str = "dis-balanced", short_side: int = 64) -> dict:
        return {"made_with": {"short_side": short_side, "seed_stride": 8, "flow": flow, "compensate": False,
                              "max_disp": None, "backend": "pyav"}}

    assert identity_change(identity_text(made("dis, balanced")), made(short_side=96)) == (
        "short_side 64 -> 96, flow dis, balanced -> dis-balanced")
    assert identity_change(identity_text(made("my flow")), made("my flow", 96)) == "short_side 64 -> 96"
    assert identity_change(made("my flow"), made("my flow", 96)) == "short_side 64 -> 96"
    assert identity_change(identity_text(made()), made()) is None
    for old in ("files made with short_side 64", "files made with flow"):  # (before: ValueError)
        assert identity_change(old, made()) == f"{old} -> {identity_text(made())}"


def test_a_mixed_track_cache_identity_says_how_many_probed_files_were_read(tmp_path):
    """A mixed cache's identity digests its probed files' settings: a probed video re-encoded between a stop and its
    resume (its file no longer read) changed it, and the entry said only that the track cache changed. It now says
    over how many probed files read, which drops with it."""
    from videos import affine_video, write_video

    from mme.data.dataset import DataConfig, PretrainDataset, identity_change, identity_text
    from mme.models.config import ModelConfig
    from mme.motion.extract import extract_cache
    from mme.motion.targets import TargetConfig, make_target_fn

    for i in range(3):
        write_video(tmp_path / f"v{i}.mp4", affine_video(20, 64, 80, dx=1.0 + i, dy=0.5, seed=i)[0])
    (tmp_path / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\nv2.mp4 0\n")
    (tmp_path / "a.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    (tmp_path / "b.txt").write_text("v2.mp4 0\n")
    for part, short_side in (("a", 64), ("b", 96)):  # two extractions of parts of the list into one folder
        extract_cache(str(tmp_path / f"{part}.txt"), str(tmp_path / "cache"), root=str(tmp_path), length=6,
                      short_side=short_side)

    def identity() -> dict:
        data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=4, stride=2,
                          img_size=64)
        dataset = PretrainDataset(data, track_length=6)
        dataset.target_fn = make_target_fn(
            TargetConfig(kind="mme", track_length=6, cache_dir=str(tmp_path / "cache")),
            ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2))
        return dataset.cache_identity()

    before = identity()
    write_video(tmp_path / "v1.mp4", affine_video(20, 64, 80, dx=3.0, dy=0.5, seed=9)[0])  # re-encoded
    after = identity()
    words = identity_text(before), identity_text(after)
    assert re.fullmatch(r"mixed files of 2 settings \(digest \w{16} over the 3 probed files read\)", words[0])
    assert re.fullmatch(r"mixed files of 2 settings \(digest \w{16} over the 2 probed files read\)", words[1])
    assert identity_change(before, after) == f"{words[0]} -> {words[1]}"
    assert identity_change(words[0], before) is None  # (as an earlier mme recorded it: in words)
    assert identity_change("no file read", {}) is None


def test_a_loss_weight_given_on_resume_is_a_change_and_a_setting_that_differs(synth, tmp_path, caplog, capsys):
    """``target.loss_weights`` is a mapping, empty by default, which flattens to no key: a weight given on resume was
    applied but neither warned about nor recorded (only the old config's keys were compared), and a fresh run's
    summary left it out of the settings that differ from the defaults."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "optim.warmup_steps=1", FP32)
    run(*base, "train.stop_after=1")
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        run(*base, "train.resume=auto", "target.loss_weights.pixel=2")
    change = "target.loss_weights.pixel: 1.0 -> 2.0"
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [{"from_step": 1, "changes": [change]}]
    assert change in caplog.text
    assert re.search(r"^  target: .*loss_weights\.pixel=2\.0", capsys.readouterr().out, re.M)


def test_a_loss_weight_on_resume_is_compared_and_said_as_the_weight_the_head_has():
    """A weight given on resume equal to the one the head had (a head left out weighs 1/number of heads) was warned
    about and recorded as a change ('None -> 0.5'), and one dropped on resume was said as '2.0 -> None' where the
    head went on at 0.5. Each is the head's weight in its config (TargetConfig.loss_weight)."""
    import dataclasses

    from mme.config import load_config
    from mme.train.config import PretrainConfig
    from mme.train.engine import BOOKKEEPING, config_changes

    def weighted(*weights: str) -> dict:
        given = [f"target.loss_weights.{w}" for w in weights]
        return dataclasses.asdict(load_config(PretrainConfig, "tiny_cpu_mme", given))

    def said(*args) -> list[str]:
        return [str(c) for c in config_changes(*args) if c.key.startswith("target.loss_weights.")]

    unweighted = weighted()
    assert config_changes(unweighted, weighted("traj=0.5"), BOOKKEEPING) == []
    assert config_changes(unweighted, weighted("traj=0.5", "shape=0.5"), BOOKKEEPING) == []
    assert said(weighted("traj=2"), unweighted, BOOKKEEPING) == ["target.loss_weights.traj: 2.0 -> 0.5"]
    assert said(unweighted, weighted("traj=2", "shape=0.5"), BOOKKEEPING) == ["target.loss_weights.traj: 0.5 -> 2.0"]
    pixel = dataclasses.asdict(load_config(PretrainConfig, "tiny_cpu_pixel", ["target.loss_weights.pixel=2"]))
    assert said(unweighted, pixel) == [  # the old weights on the new
        "target.loss_weights.pixel: 1.0 -> 2.0"]  # target's heads: the start's summary, against the defaults' target
    three = dataclasses.asdict(load_config(PretrainConfig, "tiny_cpu_mme", ["target.kind=pixel,mme",
                                                                             "target.loss_weights.traj=0.5"]))
    assert said(unweighted, three) == [  # 0.5 of three heads, not
        f"target.loss_weights.traj: {1 / 3!r} -> 0.5"]  # of the default target's two: a setting that differs


def _maskfeat_run_made_before_hog_norm(synth, tmp_path) -> tuple:
    """A ``maskfeat`` preset's HOG run stopped after step 1 whose checkpoint holds neither ``target.hog_norm`` nor
    ``target.hog_style`` (hog_style came after hog_norm), as an mme before hog_norm wrote it, and the run's own
    command line, with which it was made: scikit-image's style then, its cells not normalised."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "model.depth=1", "target.preset=maskfeat",
            "target.kind=hog", FP32)
    run(*base, "target.hog_style=skimage", "target.hog_norm=false", "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    del state["config"]["target"]["hog_norm"], state["config"]["target"]["hog_style"]
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    return base


def test_a_maskfeat_run_made_before_hog_norm_existed_records_its_hog_normalised_on_resume(synth, tmp_path, caplog):
    """Before ``target.hog_norm`` the ``maskfeat`` preset's HOG (scikit-image's style then) was not normalised;
    resumed keeping that style (``target.hog_style=skimage``), its preset now normalises it (the HOG loss jumped,
    27-30 -> 36-37): the warning and run.json's ``config_changes`` say so (before: they named the code change
    alone)."""
    base = _maskfeat_run_made_before_hog_norm(synth, tmp_path)
    with caplog.at_level(logging.WARNING):
        run(*base, "target.hog_style=skimage", "train.resume=auto")
    change = "target.hog_norm: False (before the key existed) -> True"
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [
        {"from_step": 1, "changes": [change]}]
    assert change in caplog.text


def test_a_maskfeat_run_made_before_hog_norm_resumed_with_its_own_command_records_the_style_change(
        synth, tmp_path, caplog):
    """The same run resumed with its own command takes the preset's maskfeat style, whose cells are normalised
    whatever hog_norm says: the change is the style's, named alone."""
    base = _maskfeat_run_made_before_hog_norm(synth, tmp_path)
    with caplog.at_level(logging.WARNING):
        run(*base, "train.resume=auto")
    change = "target.hog_style: 'skimage' (before the key existed) -> 'maskfeat'"
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [
        {"from_step": 1, "changes": [change]}]
    assert change in caplog.text and "target.hog_norm" not in caplog.text


def test_a_maskfeat_run_made_before_its_maskfeat_hog_style_records_the_style_change_on_resume(synth, tmp_path, caplog):
    """Before ``hog_style=maskfeat`` the ``maskfeat`` preset's HOG was scikit-image's (``hog_style: skimage`` in its
    config); resumed now, its preset gives MaskFeat's: the warning and run.json's ``config_changes`` name it, and
    ``target.hog_style=skimage`` goes on as the run began, no change."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "model.depth=1", "target.preset=maskfeat",
            "target.kind=hog", FP32)
    run(*base, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    assert state["config"]["target"]["hog_style"] == "maskfeat"
    state["config"]["target"]["hog_style"] = "skimage"  # as the preset gave before
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    with caplog.at_level(logging.WARNING):
        run(*base, "target.hog_style=skimage", "train.stop_after=2", "train.resume=auto")
    assert "config_changes" not in json.loads((tmp_path / "run.json").read_text())
    assert "target.hog_style" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run(*base, "train.resume=auto")
    change = "target.hog_style: 'skimage' -> 'maskfeat'"
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [
        {"from_step": 2, "changes": [change]}]
    assert change in caplog.text


def _steps_in(folder) -> list[int]:
    return [ckpt.checkpoint_step(p) for p in ckpt.list_checkpoints(folder)]


def test_a_rewind_sets_the_abandoned_branch_aside(synth, tmp_path, caplog, refuse_removal):
    """Resumed from checkpoint 4 of a folder holding 4, 5 and 6: the later ones stayed, so `--resume auto` next
    took the abandoned step 6 (training nothing), and rotation deleted the new branch's checkpoints first. One that
    could not be moved aside was "could not write the checkpoint of step 5 ... Kept: checkpoint-00000006.pt", step 5
    moved and 6 left, which `--resume auto` took next. The logs, cut back to step 4 when the rewind started, kept
    neither the branch left (its steps 5 and 6, not set aside) nor, where the rewind failed, the kept checkpoints'
    steps (step 5 then the failed rewind's)."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=8", "train.ckpt_every=1", "train.keep_last=3", FP32)
    run(*base, "train.stop_after=6")
    assert _steps_in(tmp_path) == [4, 5, 6]
    logs = {name: (tmp_path / name).read_text() for name in ("metrics.jsonl", "metrics.csv")}
    with pytest.raises(CheckpointError):  # a rewind that fails before its first checkpoint changes nothing
        run(*base, f"train.resume={ckpt.checkpoint_path(tmp_path, 4)}", "target.kind=[pixel,hog]")  # other heads
    assert _steps_in(tmp_path) == [4, 5, 6] and not list(tmp_path.glob("abandoned-*"))
    with refuse_removal(ckpt.checkpoint_path(tmp_path, 6), errno.EPERM), pytest.raises(MMEError) as refused:
        run(*base, f"train.resume={ckpt.checkpoint_path(tmp_path, 4)}", "train.stop_after=5")
    folder = re.escape(str(tmp_path))
    assert re.fullmatch(
        rf"{folder}/checkpoint-00000006.pt: could not be moved to {folder}/abandoned-[\d-]+ \(Operation not "
        rf"permitted\); the 2 checkpoints after step 4 in {folder} are of a branch this run left \(it resumed "
        r"from step 4\), and stay there; this run wrote no checkpoint: make them movable, or move them out of the "
        r"folder, then run this command again", str(refused.value)), refused.value
    assert _steps_in(tmp_path) == [4, 5, 6] and not list(tmp_path.glob("abandoned-*"))  # step 5 put back
    assert {name: (tmp_path / name).read_text() for name in logs} == logs
    with caplog.at_level(logging.WARNING):
        run(*base, f"train.resume={ckpt.checkpoint_path(tmp_path, 4)}", "train.stop_after=5", "optim.base_lr=0.002")
    assert _steps_in(tmp_path) == [4, 5]
    (aside,) = tmp_path.glob("abandoned-*")
    assert _steps_in(aside) == [5, 6] and "moved to" in caplog.text
    assert {name: (aside / name).read_text() for name in logs} == logs  # the branch left, up to its step 6
    kept = logs["metrics.jsonl"].splitlines()[:4]
    assert (tmp_path / "metrics.jsonl").read_text().splitlines()[:4] == kept  # then this branch's step 5
    assert [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert not list(tmp_path.glob(".metrics*"))
    assert run(*base, "train.resume=auto").step == 8  # from step 5 of this branch
    # one checkpoint after the step resumed: the line agrees with it (checkpoint 8 after step 7)
    with refuse_removal(ckpt.checkpoint_path(tmp_path, 8), errno.EPERM), pytest.raises(MMEError) as refused:
        run_folder.set_aside_after(tmp_path, 7)
    assert str(refused.value).endswith(
        f"the 1 checkpoint after step 7 in {tmp_path} is of a branch this run left (it resumed from step 7), and stays "
        "there; this run wrote no checkpoint: make it movable, or move it out of the folder, then run this command "
        "again"), refused.value
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_folder.set_aside_after(tmp_path, 7)
    assert re.search(r"the 1 checkpoint of this folder after it \(up to step 8\) belongs to a branch it left",
                     caplog.text), caplog.text


def test_a_rewind_killed_before_its_first_checkpoint_leaves_the_logs_of_the_checkpoints_to_the_next_run(synth,
                                                                                                      tmp_path):
    """A rewind keeps a copy of the logs for the branch it leaves until its first checkpoint. Killed before it, the
    copy stayed beside the cut logs: the same rewind again wrote its copy over it (the branch's later steps lost),
    and an ordinary resume that then failed put the stale copy over its own steps; a rewind with no step left to
    train left the logs cut."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=8", "train.ckpt_every=1", "train.keep_last=4", FP32)
    rewind = f"train.resume={ckpt.checkpoint_path(tmp_path, 4)}"
    run(*base, "train.stop_after=6")
    jsonl = tmp_path / "metrics.jsonl"
    lines = jsonl.read_text().splitlines()

    def killed_rewind():  # what a rewind to step 4 killed after its step 5 leaves
        run_folder.keep_logs_of_rewind(tmp_path, 4)
        jsonl.write_text("\n".join([*lines[:4], lines[4].replace('"step": 5', '"step": 5, "other": 1')]) + "\n")

    run(*base, rewind, "train.stop_after=4")  # no step left to train: no checkpoint
    assert jsonl.read_text().splitlines() == lines and not list(tmp_path.glob(".metrics*"))
    killed_rewind()
    res = run(*base, "train.resume=auto", "train.stop_after=7")  # the newest checkpoint, 6, with its logs
    assert res.step == 7 and jsonl.read_text().splitlines()[:6] == lines and not list(tmp_path.glob(".metrics*"))
    lines = jsonl.read_text().splitlines()
    killed_rewind()
    run(*base, rewind, "train.stop_after=5")  # the same rewind again: the branch left keeps its steps up to 7
    (aside,) = tmp_path.glob("abandoned-*")
    assert (aside / "metrics.jsonl").read_text().splitlines() == lines
    assert [json.loads(ln)["step"] for ln in jsonl.read_text().splitlines()] == [1, 2, 3, 4, 5]
    killed_rewind()  # then a fresh run in the folder: the copy, of another run, goes (a resume put it back)
    run(*base, "train.overwrite=true", "train.stop_after=2", "train.seed=5")
    assert not list(tmp_path.glob(".metrics*"))


def test_a_finished_run_killed_before_its_last_writes_completes_them_on_resume(synth, tmp_path):
    """Killed after its final checkpoint, before rotation and the loss plot: `--resume auto` trained nothing and
    left both undone, and its summary named no checkpoint."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "train.ckpt_every=1", "train.keep_last=2", FP32)
    run(*base)
    shutil.copy(ckpt.checkpoint_path(tmp_path, 2), ckpt.checkpoint_path(tmp_path, 1))  # rotation never ran
    (tmp_path / "loss.png").unlink()
    res = run(*base, "train.resume=auto")
    assert res.step == 3 and res.checkpoint == ckpt.checkpoint_path(tmp_path, 3)
    assert _steps_in(tmp_path) == [2, 3] and (tmp_path / "loss.png").is_file()


def test_optimizer_settings_changed_on_resume_apply(synth, tmp_path):
    """betas, eps and layer decay changed on resume were announced as config changes but the checkpoint's stayed
    in the optimizer; a layer decay turned on (other parameter groups) was refused as not fitting the model."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "optim.warmup_steps=1", FP32)
    run(*base, "train.stop_after=2")
    res = run(*base, "train.resume=auto", "optim.betas=[0.5,0.6]", "optim.eps=0.1", "optim.layer_decay=0.5")
    groups = torch.load(res.checkpoint, weights_only=True)["optimizer"]["param_groups"]
    assert {(tuple(g["betas"]), g["eps"]) for g in groups} == {((0.5, 0.6), 0.1)}
    assert len({g["lr_scale"] for g in groups}) > 1


def test_a_checkpoint_that_no_longer_fits_the_config_names_the_keys_that_changed(synth, tmp_path):
    """A resume whose config builds another model (a target of other heads) said only "does not fit the model:
    missing keys [...]"; the warning naming the changed keys came after, never reached."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "optim.warmup_steps=1", FP32)
    run(*base, "train.stop_after=1")
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint-00000001\.pt: does not fit the model: missing "
                                              r"keys \['heads\.hog\..*; the config changed since its run \(target\."
                                              r"kind: 'pixel' -> \['pixel', 'hog'\]\): resume with the run's "
                                              r"values$"):
        run(*base, "train.resume=auto", "target.kind=[pixel,hog]")


def test_a_run_whose_mlp_an_earlier_mme_truncated_resumes_as_it_was_built(synth, tmp_path, caplog):
    """A run an earlier mme made at mlp_ratio=120/88 of an 88-wide encoder built MLPs of 119 units (44 x 120/88: 59
    in its decoder), the product truncated; mme now builds 120 (:func:`mme.models.config.mlp_width`). Such a file
    loaded, but its resume was refused as of the wrong architecture ((119, 88) in the checkpoint, the model expects
    (120, 88)). It resumes with the ratio of its weights and continues bitwise as the run built so (its MLPs and
    their optimizer moments of 119 units), a run that replays exactly: no config change recorded, nor for a negative
    layer scale it recorded (off, as 0 is: it was said changed to 0)."""
    base = ("tiny_cpu_pixel", synth, "train.steps=3", "optim.warmup_steps=1", "model.embed_dim=88",
            "model.num_heads=2", "model.decoder_dim=44", FP32)
    built = f"model.mlp_ratio={119 / 88!r}"  # the widths the earlier mme built, 119 and 59
    reference = run(*base[:2], tmp_path / "uninterrupted", *base[2:], built)
    out = tmp_path / "old"
    first = run(*base[:2], out, *base[2:], built, "train.stop_after=1")
    state = torch.load(first.checkpoint, weights_only=True)
    assert state["model"]["encoder.blocks.0.mlp.fc1.weight"].shape == (119, 88)
    assert state["model"]["decoder_blocks.0.mlp.fc1.weight"].shape == (59, 44)
    state["config"]["model"]["mlp_ratio"] = 120 / 88  # as the earlier mme recorded it
    state["config"]["model"]["layer_scale_init"] = -1.0  # off, as it took it (now refused as a setting): no change
    torch.save(state, first.checkpoint)
    with caplog.at_level(logging.WARNING):
        res = run(*base[:2], out, *base[2:], f"model.mlp_ratio={120 / 88!r}", "train.resume=auto")
    assert res.step == 3
    resumed = torch.load(res.checkpoint, weights_only=True)
    assert resumed["model"]["encoder.blocks.0.mlp.fc1.weight"].shape == (119, 88)
    assert resumed["model"]["decoder_blocks.0.mlp.fc2.weight"].shape == (44, 59)
    assert resumed["config"]["model"]["mlp_ratio"] == 119 / 88
    _assert_same_params(resumed["model"], torch.load(reference.checkpoint, weights_only=True)["model"])
    assert "config_changes" not in json.loads((out / "run.json").read_text())
    assert "changed config" not in caplog.text


def test_a_checkpoint_that_no_longer_fits_a_preset_given_on_resume_names_the_preset(synth, tmp_path):
    """A preset's name is no change where its values are the run's (they are compared as resolved), but the
    refusal of a model the checkpoint does not fit left out ``target.preset``, the key given that changed it."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "optim.warmup_steps=1", "model.depth=1", FP32)
    run(*base, "train.stop_after=1")
    with pytest.raises(CheckpointError, match=r"; the config changed since its run \(target\.kind: 'pixel' -> 'mme'; "
                                              r"target\.preset: 'videomae' -> 'paper'\): resume with the run's "
                                              r"values$"):
        run(*base, "train.resume=auto", "target.preset=paper")


def test_a_train_epochs_run_resumed_with_other_batches_covers_its_epochs(synth, tmp_path):
    """The end step was epochs x this run's steps per epoch, counted from the checkpoint's step taken in its own:
    2 epochs of 16 clips, 2 steps of batch 4 then batch 2 (as another world size), ran 14 steps more to step 16,
    2.25 epochs."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=null", "train.epochs=2", "optim.warmup_steps=1",
            "model.depth=1", FP32)
    run(*base, "train.stop_after=2")
    res = run(*base, "train.resume=auto", "train.batch_size=2")
    assert res.step == 2 + 12  # the 24 clips left, 2 a step
    assert torch.load(res.checkpoint, weights_only=True)["data"] == {"epoch": 2, "batch": 0}


def test_a_train_epochs_run_resumed_with_other_steps_per_epoch_goes_on_along_its_schedule(synth, tmp_path, caplog):
    """The schedule was read at the checkpoint's step count, taken in the other run's steps, with this run's warm-up
    counted from step 0: 2 epochs of 16 clips begun at 4 steps per epoch (train.accum_steps=2, as 2 ranks) and
    stopped after 5 steps (1.25 epochs, past the 1-epoch warm-up), resumed at 8 per epoch, went back into the
    warm-up (lr rising over steps 6-8) and sat early in the cosine after. Its lr is now an uninterrupted run's at
    8 steps per epoch from the epochs done, over a second resume too."""
    base = ("tiny_cpu_pixel", synth, "train.steps=null", "train.epochs=2", "optim.warmup_steps=null",
            "optim.warmup_epochs=1", "train.batch_size=2", "model.depth=1", FP32)
    straight = run(*base[:2], tmp_path / "straight", *base[2:])
    run(*base[:2], tmp_path, *base[2:], "train.accum_steps=2", "train.stop_after=5")
    with caplog.at_level(logging.WARNING):
        second = run(*base[:2], tmp_path, *base[2:], "train.resume=auto", "train.stop_after=8")
    third = run(*base[:2], tmp_path, *base[2:], "train.resume=auto")
    assert [h["step"] for h in second.history + third.history] == list(range(6, 12))  # the 12 batches left
    assert [h["lr"] for h in second.history + third.history] == [h["lr"] for h in straight.history[10:]]
    assert torch.load(third.checkpoint, weights_only=True)["data"] == {"epoch": 2, "batch": 0}
    assert "(its effective batch 4 -> 2 scales the peak lr; train.batch_size x ranks x train.accum_steps at 4 " \
        "keeps it; its steps per epoch 4 -> 8: the schedule goes on from the epochs done, in this run's steps)" \
        in caplog.text


def test_a_train_steps_run_with_its_warm_up_in_epochs_resumed_with_other_steps_per_epoch_goes_on_along_it(
        synth, tmp_path, caplog):
    """A train.steps run's warm-up in epochs (optim.warmup_epochs) was laid out in the resumed run's steps and read
    at the checkpoint's step count: 12 steps at 4 per epoch (train.accum_steps=2, as 2 ranks) stopped after 3, in the
    1-epoch warm-up, resumed at 8 per epoch, took a warm-up of 8 steps from step 0 (a run stopped past its warm-up
    went back into it). Its schedule is now read at the epochs done, as a train.epochs run's: its lr is that of an
    uninterrupted run at 8 steps per epoch from the 6 steps done in those, over the 9 steps it has left. Past its
    warm-up, it goes on as it ran."""
    base = ("tiny_cpu_pixel", synth, "optim.warmup_steps=null", "optim.warmup_epochs=1", "train.batch_size=2",
            "model.depth=1", FP32)
    straight = run(*base[:2], tmp_path / "straight", *base[2:], "train.steps=15")
    run(*base[:2], tmp_path, *base[2:], "train.steps=12", "train.accum_steps=2", "train.stop_after=3")
    with caplog.at_level(logging.WARNING):
        resumed = run(*base[:2], tmp_path, *base[2:], "train.steps=12", "train.resume=auto")
    assert [h["step"] for h in resumed.history] == list(range(4, 13))
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history[6:]]
    assert "(its effective batch 4 -> 2 scales the peak lr; train.batch_size x ranks x train.accum_steps at 4 " \
        "keeps it; its steps per epoch 4 -> 8: the schedule goes on from the epochs done, in this run's steps; its " \
        "warm-up (optim.warmup_epochs=1) takes 8 steps at 8 per epoch, 2 of them left)" in caplog.text
    # past its warm-up (4 steps at 4 per epoch), its cosine goes on in its steps as it ran, the peak scaled alone
    # (read at the epochs done, its lr moved: to a quarter of the peak where it ran at a half); an earlier mme's
    # checkpoint, which records no schedule, alike
    as_ran = run(*base[:2], tmp_path / "as_ran", "optim.warmup_steps=4", *base[4:], "train.steps=12")
    for name, earlier in (("past", False), ("earlier", True)):
        run(*base[:2], tmp_path / name, *base[2:], "train.steps=12", "train.accum_steps=2", "train.stop_after=6")
        if earlier:
            state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / name)[-1])
            del state["schedule"]
            ckpt.save_checkpoint(state, tmp_path / name, keep_last=0)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            resumed = run(*base[:2], tmp_path / name, *base[2:], "train.steps=12", "train.resume=auto")
        assert [h["lr"] for h in resumed.history] == [h["lr"] for h in as_ran.history[6:]], name
        assert "(its effective batch 4 -> 2 scales the peak lr; train.batch_size x ranks x train.accum_steps at 4 " \
            "keeps it)" in caplog.text, name


def test_a_resume_in_fp16_starts_a_fresh_scaler(synth, tmp_path):
    """A run checkpointed in fp32 resumed with train.precision=fp16: GradScaler refused the checkpoint's empty
    state with a traceback."""
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "train.stop_after=1", FP32)
    assert run("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "train.resume=auto",
               "train.precision=fp16").step == 3


def test_a_resumed_auto_precision_keeps_the_measured_choice_or_records_the_change(synth, tmp_path, monkeypatch):
    """train.precision=auto resumed on the device that measured it keeps the choice and the measurement that made
    it (before: replaced by "the resumed run's"); resolved to another precision (another device, or the
    environment), the change is recorded with its step as other changes are (before: warned, then run.json said
    the new precision alone, as if the run had had it from the start)."""
    import mme.train.precision
    import mme.utils
    from mme.train.precision import AUTO_ENV, KEPT

    monkeypatch.delenv(AUTO_ENV, raising=False)
    for module in (mme.utils, mme.train.precision):  # an AMX CPU, on any machine: a measured bf16 is kept where native
        monkeypatch.setattr(module, "cpu_features", lambda: ("AVX2", "AVX-512", "AVX512-BF16", "AMX"))
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "model.depth=1", "train.precision=auto")
    run(*base, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    measured = ("auto: measured here, forward and backward of 4 clips take 1.0 ms in bf16 vs 2.0 ms in fp32 "
                "(bf16 needs 1.1x)")
    state["meta"].update(precision="bf16", precision_reason=measured)  # as an AMX CPU's run
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    run(*base, "train.stop_after=2", "train.resume=auto")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert (meta["precision"], meta["precision_reason"]) == ("bf16", f"{KEPT}: {measured}")
    assert "config_changes" not in meta
    run(*base, "train.stop_after=3", "train.steps=4", "train.resume=auto")  # a second resume keeps it too
    assert json.loads((tmp_path / "run.json").read_text())["precision_reason"] == f"{KEPT}: {measured}"
    monkeypatch.setenv(AUTO_ENV, "fp32")
    run(*base, "train.steps=4", "train.resume=auto")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["precision"] == "fp32" and meta["config_changes"][1:] == [
        {"from_step": 3, "changes": [f"precision: bf16 ({KEPT}: {measured}, on {meta['device_name']}) -> fp32 "
                                     f"(auto: {AUTO_ENV}=fp32 in the environment)"]}]


def test_a_resume_that_pins_the_precision_auto_resolved_to_replays_exactly_and_another_names_autos(
        synth, tmp_path, monkeypatch, caplog):
    """A run at train.precision=auto (fp32 here, an AVX2-only CPU) resumed with train.precision=fp32, as the docs
    advise a run meant to be reproduced, was warned "the run will not replay exactly" and recorded
    ``train.precision: 'auto' -> 'fp32'``, though it ran the same arithmetic: the key is compared as resolved, by
    the run meta's precision, and a change of precision names what auto had resolved to, once (it was also listed as
    a setting that changes nothing); also from a checkpoint of an mme before the meta held the precision's reason
    (its change named the reason None)."""
    import mme.train.precision
    import mme.utils
    from mme.train.precision import AUTO_ENV

    monkeypatch.delenv(AUTO_ENV, raising=False)
    for module in (mme.utils, mme.train.precision):
        monkeypatch.setattr(module, "cpu_features", lambda: ("AVX2",))  # an AVX2-only CPU, on any machine
    no_native = "auto: no native bf16 on this cpu, where emulated bf16 is far slower than fp32"
    base = ("tiny_cpu_pixel", synth, tmp_path / "auto", "train.steps=3", "model.depth=1")
    straight = run("tiny_cpu_pixel", synth, tmp_path / "fp32", *base[3:], FP32)
    run(*base, "train.stop_after=1", "train.precision=auto")
    first = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "auto")[-1])
    with caplog.at_level(logging.INFO, logger="mme"):
        resumed = run(*base, "train.resume=auto", FP32)
    meta = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert "config_changes" not in meta and "changed config" not in caplog.text
    assert "settings that change nothing it computes (it replays exactly): [\"train.precision: 'auto' -> 'fp32'\"]" \
        in caplog.text
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history][1:]
    for reason, precision, changes in (
            (no_native, "bf16", [{"from_step": 1, "changes": [
                f"precision: fp32 ({no_native}, on {meta['device_name']}) -> bf16 (requested)"]}]),
            (None, "fp32", None),  # a meta without the reason
            (None, "bf16", [{"from_step": 1, "changes": [
                f"precision: fp32 (on {meta['device_name']}) -> bf16 (requested)"]}])):
        if reason is None:
            first["meta"].pop("precision_reason", None)
        shutil.rmtree(tmp_path / "auto")
        ckpt.save_checkpoint(first, tmp_path / "auto", keep_last=0)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mme"):
            run(*base, "train.resume=auto", "train.stop_after=2", f"train.precision={precision}")
        assert json.loads((tmp_path / "auto" / "run.json").read_text()).get("config_changes") == changes
        harmless = [r.getMessage() for r in caplog.records if "settings that change nothing" in r.getMessage()]
        assert ("train.precision" in " ".join(harmless)) == (changes is None)  # a changed one said once, resolved


def test_a_run_resumed_with_other_code_torch_device_or_threads_records_it(synth, tmp_path):
    """run.json kept the resumed run's code, torch, device and thread count only, as if the run had had them from
    the start (device and threads were an info line); neither it nor a checkpoint recorded mme's version, where git
    is null for an installed copy. The loader's worker count changes nothing a run computes: it
    is no config change (it was warned about as one). A config whose end is before the checkpoint's step is
    refused (it ended at once, as finished, its config.yaml saying fewer steps than the model had)."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "model.depth=1", FP32)
    run(*base, "train.stop_after=1", "data.num_workers=0")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    threads = state["meta"]["threads"]
    assert state["meta"]["mme"] == mme.__version__  # what made it, where git is null (an installed copy)
    state["meta"].update(mme="0.1.0", git="0" * 40, torch="2.5.0", device_name="NVIDIA H100", threads=threads + 1)
    del state["meta"]["order"]  # a checkpoint of the data order before ORDER_VERSION 2
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    run(*base, "train.resume=auto", "data.num_workers=1")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["mme"] == mme.__version__
    assert meta["config_changes"] == [{"from_step": 1, "changes": [
        f"mme: 0.1.0 -> {mme.__version__}", f"code: {'0' * 40} -> {meta['git']}",
        f"torch: 2.5.0 -> {torch.__version__}",
        f"device: NVIDIA H100 -> {meta['device_name']} (the same up to float rounding, not bitwise)",
        f"intra-op threads: {threads + 1} -> {meta['threads']} (the same up to float rounding, not bitwise; "
        "train.threads pins them)", "data order: version 1 -> 2 (other batches for its remaining "
        "epochs: mme.train.distributed.ORDER_VERSION)"]}]
    with pytest.raises(ConfigError, match=r"checkpoint-00000002.pt: its run trained 2 steps, past this config's end "
                                          r"at 1 \(train.steps / train.epochs\).*train.init="):
        run(*base[:3], "train.steps=1", *base[4:], "train.resume=auto")
    epochs = ("tiny_cpu_pixel", synth, tmp_path / "epochs", "train.steps=null", "model.depth=1", FP32)
    run(*epochs, "train.epochs=2")  # 16 clips, batch 4: 8 steps
    with pytest.raises(ConfigError, match=r"its run trained 8 steps, past this config's end at 4"):
        run(*epochs, "train.epochs=1", "train.resume=auto")


def test_a_run_resumed_across_a_change_of_its_rules_records_it(synth, tmp_path, monkeypatch):
    """A run resumed by an mme whose tracker or reading rule had changed computed other targets or frames from then
    on, and recorded at most ``code: <sha> -> <sha>`` (nothing for an installed mme, its git null, its __version__ the
    same). The rule versions that decide a run's results (:func:`mme.rule_versions`: the reading; the tracker where
    the run computes its tracks) are recorded in its meta, and a change said and recorded as the data order's is:
    the tracker only where a revision since changed the tracks of the run's flow. A checkpoint that records none (an
    earlier mme's) resumes without a change, and so does one across reading versions that changed other backends'
    reading alone (8 -> 9: the opencv backend's; before: warned and recorded for a pyav run too)."""
    from mme.eval import testing
    from mme.motion.tracks import TRACKER, TRACKER_CHANGES

    READING_VERSION = 9  # (the reading's history up to 9, whatever versions came after)
    monkeypatch.setattr(testing, "READING_VERSION", READING_VERSION)

    def resumed(out, edit: dict, *extra: str) -> dict:
        base = ("tiny_cpu_mme", synth, out, "train.steps=2", "model.depth=1", "train.batch_size=2", FP32, *extra)
        run(*base, "train.stop_after=1")
        state = ckpt.load_checkpoint(ckpt.list_checkpoints(out)[-1])
        assert {k: state["meta"].get(k) for k in ("reading", "tracker")} == {"reading": READING_VERSION,
                                                                             "tracker": TRACKER}
        state["meta"] = {k: v for k, v in {**state["meta"], **edit}.items() if v is not None}
        ckpt.save_checkpoint(state, out, keep_last=0)
        run(*base, "train.resume=auto")
        return json.loads((out / "run.json").read_text())

    meta = resumed(tmp_path / "lk", {"reading": 6, "tracker": 2}, "target.flow=torch-lk")
    assert (meta["reading"], meta["tracker"]) == (READING_VERSION, TRACKER)
    assert meta["config_changes"] == [{"from_step": 1, "changes": [
        "reading: version 6 -> 9 (other frames or verdicts of some videos for its remaining steps, by versions 7, 8: "
        "mme.eval.testing.READING_VERSION)",
        f"tracker: revision 2, this mme's is {TRACKER}; revision 3: {TRACKER_CHANGES[3]} (other targets for its "
        "remaining steps: mme.motion.tracks.TRACKER)"]}]
    assert "config_changes" not in resumed(tmp_path / "dis", {"tracker": 2, "reading": 8})  # both other flows' or
    # backends' alone: revision 3 torch-lk's, reading version 9 opencv's
    earlier = resumed(tmp_path / "earlier", {"reading": None, "tracker": None}, "target.flow=torch-lk")
    assert "config_changes" not in earlier and (earlier["reading"], earlier["tracker"]) == (READING_VERSION, TRACKER)
    run("tiny_cpu_pixel", synth, tmp_path / "pixel", "train.steps=1", "model.depth=1", FP32)  # computes no tracks
    assert "tracker" not in json.loads((tmp_path / "pixel" / "run.json").read_text())


def test_a_reading_version_is_a_change_only_where_it_changed_the_runs_backend_or_the_views_it_reads(monkeypatch):
    """Every bump of the reading rule was warned of and recorded as 'other frames or verdicts of some videos' at a
    resume, where version 9 changed the opencv backend's reads alone and version 5 the test views alone (which
    pre-training never reads). A version is a change where it changed the run's backend (READING_BACKENDS) and,
    where it changed test views alone (TEST_VIEWS_ALONE), where the run reads them; a later mme's is said as one
    that may have."""
    from mme.eval import testing

    monkeypatch.setattr(testing, "READING_VERSION", 9)  # (the reading's history up to 9)
    changed, rule = testing.reading_changed, "mme.eval.testing.READING_VERSION"
    assert changed(8, "pyav", test_views=True) is None and changed(9, "opencv", test_views=True) is None
    assert changed(8, "opencv", test_views=False) == \
        f"version 8 -> 9 (other frames or verdicts of some videos for its remaining steps, by version 9: {rule})"
    assert changed(2, "decord", test_views=False).endswith("by versions 3, 4, 6: mme.eval.testing.READING_VERSION)")
    assert changed(2, "pyav-cuda", test_views=True).endswith(f"by versions 4, 5, 6, 7, 8: {rule})")
    monkeypatch.setattr(testing, "READING_VERSION", 5)
    assert changed(4, "pyav", test_views=False) is None
    assert changed(4, "pyav", test_views=True) == ("version 4 -> 5 (other test views of some videos for its remaining "
                                                   f"validations and tests, by version 5: {rule})")
    assert changed(9, "pyav", test_views=False) == ("version 9 -> 5 (a later mme's rule, which may have read some "
                                                    f"videos' frames or verdicts otherwise: {rule})")


def test_a_run_resumed_in_another_mkl_mode_records_it(synth, tmp_path):
    """MKL outside its strict mode (``MKL_CBWR``) sums in another order: the resumed run went on, not bitwise, with
    nothing said or recorded."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "model.depth=1", FP32)
    run(*base, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    mode = state["meta"]["mkl_mode"]
    other = "default" if mode == "strict" else "strict"
    state["meta"]["mkl_mode"] = other
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    run(*base, "train.resume=auto")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["mkl_mode"] == mode and meta["config_changes"] == [{"from_step": 1, "changes": [
        f"MKL mode: {other} -> {mode} (the same up to float rounding, not bitwise; MKL_CBWR=AUTO,STRICT, which import "
        "mme sets, pins it)"]}]
    # a GPU's run records no MKL mode: resumed on a CPU, the device's change alone is said
    state["meta"].update(mkl_mode=None, step=1)
    (tmp_path / "run.json").unlink()
    for path in ckpt.list_checkpoints(tmp_path):
        path.unlink()
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    run(*base, "train.resume=auto")
    assert not any("MKL mode" in change for entry in json.loads((tmp_path / "run.json").read_text()).get(
        "config_changes", []) for change in entry["changes"])


def test_a_run_resumed_on_its_cpu_from_an_mme_that_named_it_without_its_features_records_no_device_change(
        synth, tmp_path, monkeypatch, caplog):
    """A checkpoint of an mme before cpu_name listed the CPU's features holds its model alone ("Intel(R) Xeon(R)
    Processor", where this mme names "Intel(R) Xeon(R) Processor (AVX2, AVX-512, AVX512-BF16, AMX)"): resumed on the
    same CPU, the run recorded 'device: X -> X (...) (the same up to float rounding, not bitwise)'. It records nothing
    there where what the checkpoint says of its CPU agrees with this one (auto's fp32 for want of native bf16, here
    an AVX2-only CPU). The model alone names CPUs of other features: auto's bf16 timed on an AMX CPU of this model was
    kept here, emulated (~400x slower), and no device change recorded; now auto resolves here, and both changes are
    recorded. A checkpoint that says nothing of its CPU (auto forced by the environment), and another CPU's model,
    are recorded as another device."""
    import mme.train.precision
    import mme.utils
    from mme.train.precision import AUTO_ENV
    from mme.utils import cpu_name

    monkeypatch.delenv(AUTO_ENV, raising=False)
    for module in (mme.utils, mme.train.precision):
        monkeypatch.setattr(module, "cpu_features", lambda: ("AVX2",))  # an AVX2-only CPU, on any machine
    name = cpu_name()
    model = name.removesuffix(" (AVX2)")  # as the earlier mme named it
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=5", "model.depth=1", "train.precision=auto")
    run(*base, "train.stop_after=1")
    no_native = "auto: no native bf16 on this cpu, where emulated bf16 is far slower than fp32"

    def resumed(stop: int, **meta) -> tuple[dict, list | None]:
        state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
        state["meta"].pop("config_changes", None)
        state["meta"].update(meta)
        ckpt.save_checkpoint(state, tmp_path, keep_last=0)
        run(*base, "train.resume=auto", f"train.stop_after={stop}")
        now = json.loads((tmp_path / "run.json").read_text())
        return now, now.get("config_changes")

    assert json.loads((tmp_path / "run.json").read_text())["precision_reason"] == no_native
    with caplog.at_level("WARNING"):
        meta, changes = resumed(2, device_name=model)
    assert meta["device_name"] == name and changes is None and "changed config" not in caplog.text
    measured = ("auto: measured here, forward and backward of 4 clips take 1.0 ms in bf16 vs 2.0 ms in fp32 "
                "(bf16 needs 1.1x)")
    meta, changes = resumed(3, device_name=model, precision="bf16", precision_reason=measured)  # an AMX CPU's
    assert (meta["precision"], meta["precision_reason"]) == ("fp32", no_native)
    assert changes == [{"from_step": 2, "changes": [f"precision: bf16 ({measured}, on {model}) -> fp32 ({no_native})",
                                                     f"device: {model} -> {name} (the same up to float rounding, "
                                                     "not bitwise)"]}]
    forced = f"auto: {AUTO_ENV}=fp32 in the environment"
    _, changes = resumed(4, device_name=model, precision_reason=forced)  # says nothing of its CPU
    assert changes == [{"from_step": 3, "changes": [
        f"device: {model} -> {name} (the same up to float rounding, not bitwise)"]}]
    _, changes = resumed(5, device_name=f"{model[:-1]}X", precision_reason=no_native)  # another CPU's model
    assert changes == [{"from_step": 4, "changes": [
        f"device: {model[:-1]}X -> {name} (the same up to float rounding, not bitwise)"]}]


def test_a_run_resumed_from_another_working_folder_compares_the_files_its_paths_name(synth, tmp_path, monkeypatch):
    """A run made with relative paths, resumed from another working folder with the same files' absolute paths, was
    warned about and recorded as changed (``data.root: 'syn' -> '/data/syn'``, "the run will not replay exactly"):
    a relative path is now taken from its run's working folder (``cwd`` of run.json and the checkpoints); a path
    that names another file (a copy of the videos) is still a change, and so is an unset ``data.root`` (the working
    folder) in another working folder (it was no change: the run read the other folder's videos unsaid)."""
    data = dict(s.split("=", 1) for s in synth)
    copy = tmp_path / "other" / "copy"
    shutil.copytree(data["data.root"], copy)
    base = ("tiny_cpu_pixel", "train.steps=5", "model.depth=1", FP32)
    monkeypatch.chdir(tmp_path)
    run(base[0], [f"data.{k}={os.path.relpath(data[f'data.{k}'])}" for k in ("list_file", "root")], "run", *base[1:],
        "train.stop_after=1")
    monkeypatch.chdir(tmp_path / "other")
    run(base[0], synth, tmp_path / "run", *base[1:], "train.stop_after=2", "train.resume=auto")
    assert "config_changes" not in json.loads((tmp_path / "run" / "run.json").read_text())
    run(base[0], [synth[0], "data.root=copy"], tmp_path / "run", *base[1:], "train.stop_after=3", "train.resume=auto")
    changed = [{"from_step": 2, "changes": [f"data.root: {data['data.root']!r} -> 'copy'"]}]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == changed
    monkeypatch.chdir(copy)
    run(base[0], [synth[0], "data.root="], tmp_path / "run", *base[1:], "train.stop_after=4", "train.resume=auto")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == changed
    monkeypatch.chdir(data["data.root"])
    run(base[0], [synth[0], "data.root="], tmp_path / "run", *base[1:], "train.resume=auto")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == [*changed, {
        "from_step": 4, "changes": [f"data.root: '' -> '' (working folder {copy} -> {data['data.root']})"]}]


def test_the_code_of_a_run_is_its_own_commit_or_none(tmp_path):
    """A copy of mme installed inside another project's repository (ignored by it) recorded that project's
    commit as the run's code."""
    import mme

    project = tmp_path / "project"
    shutil.copytree(Path(mme.__file__).parent, project / "venv" / "mme", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".gitignore").write_text("venv/\n")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", ".gitignore"], ["commit", "-qm", "theirs"]):
        subprocess.run(git + args, check=True, capture_output=True)
    said = subprocess.run([sys.executable, "-c", "from mme.utils import git_sha; print(git_sha())"],
                          env={**os.environ, "PYTHONPATH": str(project / "venv")}, capture_output=True, text=True)
    assert said.stdout.strip() == "None", said.stderr


def test_the_code_of_a_checkout_git_cannot_read_is_its_commit_unchecked(tmp_path):
    """A checkout git cannot read (no git on PATH; one of another user's, refused as of dubious ownership) recorded
    the run's code as None, an installed copy's, without a word. Its commit is read from .git itself, marked
    ``-unchecked`` (whether its files differ is not known), and git's error is warned of. A copy of mme vendored
    into another project's repository (not at its ``src/mme``) stays None: that commit is the project's."""
    import mme

    checkout = tmp_path / "checkout"
    shutil.copytree(Path(mme.__file__).parent, checkout / "src" / "mme", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(checkout / "src" / "mme", checkout / "vendor" / "mme")
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "src"], ["commit", "-qm", "mme"]):
        subprocess.run(git + args, check=True, capture_output=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "bin").mkdir()
    warning = f"the checkout mme runs from, {checkout}, was not read with git (no git on PATH)"
    for package, code, warned in (("src", f"{sha}-unchecked", True), ("vendor", "None", False)):
        said = subprocess.run([sys.executable, "-c", "from mme.utils import git_sha; print(git_sha())"],
                              env={**os.environ, "PYTHONPATH": str(checkout / package), "PATH": str(tmp_path / "bin")},
                              capture_output=True, text=True)
        assert (said.stdout.strip(), warning in said.stderr) == (code, warned), said.stderr


def test_the_checkpoints_of_train_keep_epochs_outlive_the_rotation(synth, tmp_path, caplog):
    """A long run's intermediate models (the release's "400/800 epochs" models are epochs 400 and 700 of its
    1600-epoch run) could not be kept: rotation deleted every checkpoint but the newest train.keep_last."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=12", "train.keep_last=1", "train.keep_epochs=[1,2]", FP32)
    res = run(*base)  # 16 clips, batch 4: 4 steps an epoch
    kept = ckpt.kept_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["checkpoint-epoch-0001-00000004.pt", "checkpoint-epoch-0002-00000008.pt"]
    assert [ckpt.load_checkpoint(p)["data"] for p in kept] == [{"epoch": 1, "batch": 0}, {"epoch": 2, "batch": 0}]
    assert ckpt.list_checkpoints(tmp_path) == [res.checkpoint] and res.step == 12  # rotation left them alone
    # a rewind to epoch 1 with another lr: the old branch's epoch 2 is set aside with its later checkpoints
    rewind = ("train.resume=" + str(kept[0]), "optim.base_lr=5e-4", "train.keep_epochs=[1]", "train.ckpt_every=10")
    run(*base[:-2], "train.stop_after=10", *rewind, FP32)  # its first checkpoint at 10: epoch 2's at 8 set aside too
    aside = next(tmp_path.glob("abandoned-*"))
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint-00000012.pt", "checkpoint-epoch-0002-00000008.pt",
                                                     "metrics.csv", "metrics.jsonl"]
    assert [p.name for p in ckpt.kept_checkpoints(tmp_path)] == ["checkpoint-epoch-0001-00000004.pt"]
    # an epoch ended inside a step whose micro-batches straddle it (accumulation changed on resume) is kept too
    shutil.rmtree(tmp_path)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=20", "train.batch_size=2", "train.stop_after=3", FP32)
    with caplog.at_level(logging.WARNING):  # 8 batches an epoch, from batch 3: steps 4-6 take 3-4, 5-6, 7 and 0
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=20", "train.batch_size=2", "train.accum_steps=2",
            "train.keep_epochs=[1,2,9]", "train.stop_after=10", "train.resume=auto", FP32)
    assert [ckpt.kept_epoch_step(p) for p in ckpt.kept_checkpoints(tmp_path)] == [(1, 6), (2, 10)]
    assert "train.keep_epochs [9]: beyond this run's 4.62 epochs, never kept" in caplog.text  # 3 + 17 x 2 batches
    # another run's kept checkpoints alone still make the folder another run's
    for p in ckpt.list_checkpoints(tmp_path):
        p.unlink()
    with pytest.raises(ConfigError, match=r"holds 2 checkpoint.*up to step 10: continue that run with "
                                          r"train.resume=.*checkpoint-epoch-0002-00000010.pt \(kept of an epoch"):
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", FP32)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", "train.overwrite=true", FP32)  # removed with the rest
    assert not ckpt.kept_checkpoints(tmp_path)
    with pytest.raises(ConfigError, match="train.keep_epochs must be positive"):
        run(*base[:-2], "train.keep_epochs=[0]", FP32)


def test_an_epoch_checkpoint_a_killed_run_had_not_kept_yet_is_kept_on_resume(synth, tmp_path):
    """A run killed between writing the checkpoint that ended a kept epoch and keeping it lost that epoch's model
    to the rotation; its resume keeps it (here: the first run ended epoch 1 without keeping it)."""
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=8", "train.stop_after=4", FP32)  # 4 steps an epoch
    assert not ckpt.kept_checkpoints(tmp_path)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=8", "train.keep_last=1", "train.keep_epochs=[1,2]",
        "train.resume=auto", FP32)
    assert [ckpt.kept_epoch_step(p) for p in ckpt.kept_checkpoints(tmp_path)] == [(1, 4), (2, 8)]
    # a step whose micro-batches straddle the epoch's end (accumulation changed on resume: 8 batches an epoch, from
    # batch 3 steps 4-6 take 3-4, 5-6, 7 and 0)
    shutil.rmtree(tmp_path)
    more = ("train.steps=20", "train.batch_size=2", FP32)
    run("tiny_cpu_pixel", synth, tmp_path, *more, "train.stop_after=3")
    run("tiny_cpu_pixel", synth, tmp_path, *more, "train.accum_steps=2", "train.stop_after=6", "train.resume=auto")
    run("tiny_cpu_pixel", synth, tmp_path, *more, "train.accum_steps=2", "train.stop_after=7", "train.keep_epochs=[1]",
        "train.resume=auto")
    assert [ckpt.kept_epoch_step(p) for p in ckpt.kept_checkpoints(tmp_path)] == [(1, 6)]


def test_an_epoch_checkpoint_that_cannot_be_kept_is_one_line_naming_it(tmp_path, refuse_removal, caplog):
    """A kept checkpoint whose copy could not be written (a full disk without hard links; here a folder holds its
    name) was a bare OSError: a traceback on rank 0, gloo's on the others. An earlier one of the epoch that cannot
    be removed was the same line, naming the new one as not written, with the MiB free."""
    path = tmp_path / "checkpoint-00000004.pt"
    path.write_bytes(b"a checkpoint")
    (tmp_path / "checkpoint-epoch-0001-00000004.pt" / "a folder").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"/checkpoint-epoch-0001-00000004.pt: could not be written \(Is a "
                                              r"directory\); checkpoint-00000004.pt is kept, and "
                                              r"--resume auto keeps it as epoch 1's$"):
        ckpt.keep_of_epoch(path, 1, 4)
    assert path.read_bytes() == b"a checkpoint"

    shutil.rmtree(tmp_path / "checkpoint-epoch-0001-00000004.pt")
    earlier = tmp_path / "checkpoint-epoch-0001-00000003.pt"
    earlier.write_bytes(b"an earlier one")
    with refuse_removal(earlier, errno.EPERM), caplog.at_level(logging.WARNING):
        kept = ckpt.keep_of_epoch(path, 1, 4)
    assert f"{earlier}: could not be removed (Operation not permitted); an earlier checkpoint kept of epoch 1, " \
           "left beside checkpoint-epoch-0001-00000004.pt, which is kept in its place" in caplog.text
    assert kept.read_bytes() == b"a checkpoint" and earlier.read_bytes() == b"an earlier one"


def test_the_data_position_carries_over_by_samples(caplog):
    """A run resumed with another world size or batch per rank read the checkpoint's batch index as its own:
    samples of the epoch were seen twice or skipped, unsaid; so was a list that changed length. Mid-epoch, another
    order of the epoch (a list of another length, train.seed or order version) is warned about in one line, and a
    list of the same length naming other videos at some positions (edited in place: ``moved``) in its own, as may
    train one twice; a list relabelled alone is not (its videos at the same positions: the changed config says
    it); at an epoch's start, where no item of it was drawn, neither is (the changed config says it)."""
    from mme.train import distributed as dist
    from mme.train.engine import data_position

    state = {"data": {"epoch": 1, "batch": 3}, "config": {"train": {"batch_size": 2, "seed": 0}},
             "meta": {"world_size": 2, "items": 40, "order": dist.ORDER_VERSION}}
    with caplog.at_level(logging.WARNING):
        assert data_position(state, 40, 4, 0) == {"epoch": 1, "batch": 3}  # 2 ranks x 2 = 1 rank x 4
        assert data_position(state, 40, 2, 0) == {"epoch": 1, "batch": 6}
        assert not caplog.records
        assert data_position(state, 40, 8, 0) == {"epoch": 1, "batch": 1}  # 12 samples consumed: 4 drawn again
        assert "4 samples of the epoch are drawn again" in caplog.text
        caplog.clear()
        data_position(state, 44, 4, 0)
        data_position(state, 40, 4, 7)
        data_position(state, 40, 4, 0, moved=True)
        data_position(state, 44, 4, 0, moved=True)  # (the length said: one warning)
        data_position({**state, "meta": {"world_size": 2, "items": 40}}, 44, 4, 7)  # (one that records no order)
        data_position({**state, "data": {"epoch": 2, "batch": 0}}, 44, 4, 7, moved=True)
    said = ": the rest of epoch 1 follows another order than the one it began (some of its items seen twice, others " \
        "not at all)"
    assert [r.getMessage() for r in caplog.records] == [
        f"the training list has 44 items, the checkpoint's run had 40{said}",
        f"train.seed is 7, the checkpoint's run had 0{said}",
        "the training list names other videos at some of its 40 positions: the rest of epoch 1 draws the positions "
        "it has not drawn, so a video moved in the list may be trained twice this epoch, or not at all",
        f"the training list has 44 items, the checkpoint's run had 40{said}",
        "the training list has 44 items, the checkpoint's run had 40; train.seed is 7, the checkpoint's run had 0; "
        f"the data order is version {dist.ORDER_VERSION}, the checkpoint's run had 1{said}"]


def test_a_resume_mid_epoch_with_another_seed_says_the_epoch_sees_items_twice(synth, tmp_path, caplog):
    """--resume auto with another train.seed mid-epoch goes on along the new seed's order from the old position, so
    some videos of that epoch are trained twice and others not at all: only the changed config was said, while a
    list of another length had its own warning. The same warning says it; resumed at an epoch's end, not."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=6", "model.depth=1", FP32)  # 4 steps an epoch
    run(*base, "train.stop_after=2")
    with caplog.at_level(logging.WARNING, logger="mme.train.engine"):
        run(*base, "train.stop_after=4", "train.resume=auto", "train.seed=3")
    assert "train.seed is 3, the checkpoint's run had 0: the rest of epoch 0 follows another order than the one it " \
        "began (some of its items seen twice, others not at all)" in caplog.text
    assert "['train.seed: 0 -> 3']" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.train.engine"):
        run(*base, "train.resume=auto", "train.seed=4")  # at the end of epoch 0
    assert "['train.seed: 3 -> 4']" in caplog.text and "seen twice" not in caplog.text


def test_a_training_list_edited_in_place_is_a_recorded_change_on_resume(synth, tmp_path, caplog):
    """A list edited in place keeps its ``data.list_file``: reordered, or one video swapped for another, the resumed
    run trained on other data without a word (only another length was warned about, and recorded nowhere). Its
    content is compared by digest, and a change of length or content is one recorded change. A checkpoint made
    before the meta recorded the digest is compared by its failure table's digest of the paths."""
    listed = Path(dict(s.split("=", 1) for s in synth)["data.list_file"])
    edited = tmp_path / "train.txt"
    lines = listed.read_text().splitlines()
    edited.write_text("\n".join(lines) + "\n")
    data = [f"data.list_file={edited}", synth[1]]
    base = ("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=4", "model.depth=1", FP32)
    run(*base, "train.stop_after=1")
    run(*base, "train.stop_after=2", "train.resume=auto")  # the same list: no change
    assert "config_changes" not in json.loads((tmp_path / "run" / "run.json").read_text())
    edited.write_text("\n".join(reversed(lines)) + "\n")
    with caplog.at_level(logging.WARNING):
        run(*base, "train.stop_after=3", "train.resume=auto")
    assert "with a changed config (the run will not replay exactly): ['training list content: 16 -> 16 items, " \
        "changed']" in caplog.text
    newest = ckpt.list_checkpoints(tmp_path / "run")[-1]
    state = ckpt.load_checkpoint(newest)
    del state["meta"]["list_files_digest"]  # as a checkpoint made before the meta recorded it
    ckpt.save_checkpoint(state, tmp_path / "run", keep_last=0)
    edited.write_text("\n".join([*reversed(lines), lines[0]]) + "\n")  # a video added: one entry, not two
    run(*base, "train.resume=auto")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_changes"] == [
        {"from_step": 2, "changes": ["training list content: 16 -> 16 items, changed"]},
        {"from_step": 3, "changes": ["training list content: 16 -> 17 items, changed"]}]


def test_a_list_reordered_in_place_resumed_mid_epoch_says_a_video_may_be_trained_twice(synth, tmp_path, caplog):
    """A list of the same length naming other videos at some positions (two lines swapped), resumed mid-epoch: the
    rest of the epoch draws the positions it has not drawn, so a video moved may be trained twice; said in its own
    line (a list relabelled alone is not: test_finetune.py)."""
    listed = Path(dict(s.split("=", 1) for s in synth)["data.list_file"])
    edited = tmp_path / "train.txt"
    lines = listed.read_text().splitlines()
    edited.write_text("\n".join(lines) + "\n")
    base = ("tiny_cpu_pixel", [f"data.list_file={edited}", synth[1]], tmp_path / "run", "train.steps=2",
            "model.depth=1", FP32)  # 16 clips of batch 8: 2 steps an epoch
    run(*base, "train.stop_after=1")
    edited.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="mme.train.engine"):
        run(*base, "train.resume=auto")
    assert [r.getMessage().split(" (the run will not replay exactly)")[-1] for r in caplog.records
            if "warm-up" not in r.getMessage()] == [
        ": ['training list content: 16 -> 16 items, changed']",
        "the training list names other videos at some of its 16 positions: the rest of epoch 0 draws the positions "
        "it has not drawn, so a video moved in the list may be trained twice this epoch, or not at all"]


def test_a_training_list_respelled_in_place_is_no_change_on_resume(synth, tmp_path):
    """The list digest took each path as written: the same list rewritten as './x.mp4' or as absolute paths (the
    same files, the same data.root) was recorded as 'training list content: 16 -> 16 items, changed', though the
    run replays bitwise. The files the paths name are digested, spelled one way; a checkpoint whose meta holds the
    earlier digest (``list_digest``) is compared by its failure table's digest of the paths."""
    given = dict(s.split("=", 1) for s in synth)
    lines = Path(given["data.list_file"]).read_text().splitlines()
    edited = tmp_path / "train.txt"
    edited.write_text("\n".join(lines) + "\n")
    base = ("tiny_cpu_pixel", [f"data.list_file={edited}", synth[1]], tmp_path / "run", "train.steps=4",
            "model.depth=1", FP32)
    run(*base, "train.stop_after=1")
    edited.write_text("\n".join(f"./{line}" for line in lines) + "\n")
    run(*base, "train.stop_after=2", "train.resume=auto")
    edited.write_text("\n".join(f"{given['data.root']}/{line}" for line in lines) + "\n")
    run(*base, "train.stop_after=3", "train.resume=auto")
    assert "config_changes" not in json.loads((tmp_path / "run" / "run.json").read_text())
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
    state["meta"]["list_digest"] = lines_digest(line.split()[0] for line in lines)  # the earlier digest
    del state["meta"]["list_files_digest"]
    ckpt.save_checkpoint(state, tmp_path / "run", keep_last=0)
    run(*base, "train.resume=auto")
    assert "config_changes" not in json.loads((tmp_path / "run" / "run.json").read_text())


def test_the_list_digests_are_of_the_files_named_by_either_spelling_of_the_root(tmp_path):
    """A list of absolute paths under a data.root reached through a link, or moved while its paths stay, was
    'training list content ... changed' (only the root-relative digest was kept); a line edited to 'a/lnk/../x.mp4',
    which after the link names another file, was no change (normalised by text to 'a/x.mp4')."""
    from types import SimpleNamespace

    from mme.data.dataset import PretrainDataset
    from mme.data.lists import ListEntry

    def digests(root, *paths):
        return PretrainDataset.content_digest.func(SimpleNamespace(
            cfg=SimpleNamespace(root=str(root)), entries=[ListEntry(p, 0) for p in paths], need_labels=False))

    root, link = tmp_path / "data", tmp_path / "link"
    root.mkdir()
    link.symlink_to(root, target_is_directory=True)
    under, absolute = digests(root, "a/x.mp4", "b/y.mp4")
    assert digests(root, "./a/x.mp4", "b//y.mp4") == (under, absolute)
    assert digests(root, f"{root}/a/x.mp4", f"{root}/b/y.mp4")[0] == under  # respelled absolute
    assert digests(link, f"{root}/a/x.mp4", f"{root}/b/y.mp4")[1] == absolute  # the root through a link
    assert digests(tmp_path / "moved", "a/x.mp4", "b/y.mp4")[0] == under  # another root: its own change
    assert not {under, absolute} & set(digests(root, "a/lnk/../x.mp4", "b/y.mp4"))


def test_a_resume_with_settings_that_change_no_weight_replays_exactly_and_records_no_change(reference, synth,
                                                                                            tmp_path, caplog):
    """Settings that change no bit of the weights were warned about as "the run will not replay exactly" and
    recorded as changes: the decoder's threads, the failure bounds, the test views pre-training never takes, the
    keys of a crop not chosen, a key another wins over (``train.epochs`` beside ``train.steps``), a preset's name
    whose values the run has, ``train.device=cpu`` where 'auto' resolved to the CPU, activation checkpointing. The
    values are compared as resolved: the run replays bitwise, they are said in an info line and not recorded."""
    stopped = ("tiny_cpu_pixel", synth, tmp_path, f"train.steps={STEPS}", DROP, FP32)
    run(*stopped, "train.stop_after=3", "train.device=auto")
    harmless = ("data.decode_threads=2", f"data.index_dir={tmp_path / 'index'}", "data.max_failure_fraction=0.5",
                "data.test_clips=2", "data.rrc_scale=[0.5,1.0]", "train.max_nonfinite=2", "train.device=cpu",
                "train.epochs=10", "optim.warmup_epochs=1", "target.preset=null", "target.kind=pixel",
                "train.activation_checkpointing=true")
    with caplog.at_level(logging.INFO):
        res = run(*stopped, "train.resume=auto", *harmless)
    assert "will not replay exactly" not in caplog.text
    assert "config_changes" not in json.loads((tmp_path / "run.json").read_text())
    said = re.search(r"settings that change nothing it computes \(it replays exactly\): (.*)", caplog.text)[1]
    assert [key for key in ("data.decode_threads", "data.index_dir", "data.max_failure_fraction", "data.test_clips",
                            "data.rrc_scale", "train.max_nonfinite", "train.device", "train.epochs",
                            "optim.warmup_epochs", "target.preset", "train.activation_checkpointing")
            if f"{key}: " not in said] == []
    _assert_same_params(torch.load(res.checkpoint, weights_only=True)["model"], reference[0])


def test_settings_that_change_nothing_beside_a_change_are_not_said_to_replay_exactly(synth, tmp_path, caplog):
    """A resume with a setting that changes nothing and a change said in the same second "resuming ... with settings
    that change nothing it computes (it replays exactly)" and "resuming ... with a changed config (the run will not
    replay exactly)". Beside a change, the settings that change nothing are said without "it replays exactly"."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "model.depth=1", FP32)
    run(*base, "train.stop_after=1")
    with caplog.at_level(logging.INFO):
        run(*base, "train.resume=auto", "data.decode_threads=2", "optim.weight_decay=0.01")
    assert "with a changed config (the run will not replay exactly): ['optim.weight_decay: " in caplog.text
    assert "it replays exactly" not in caplog.text and re.search(
        r"with settings that change nothing it computes: \['data.decode_threads: \S+ -> 2'\]", caplog.text), \
        caplog.text


def test_a_thread_count_given_on_resume_is_one_recorded_change(synth, tmp_path, caplog):
    """``train.threads=2`` on resume was recorded twice, as the key (``train.threads: 1 -> 2``) and as the
    resolved count (``intra-op threads: 1 -> 2``): the key is compared as resolved, by the run meta's count; and
    the key was also said among the settings that change nothing it computes."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "model.depth=1", FP32)
    run(*base, "train.stop_after=1", "train.threads=1")
    with caplog.at_level(logging.INFO):
        run(*base, "train.resume=auto", "train.threads=2")
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [{"from_step": 1, "changes": [
        "intra-op threads: 1 -> 2 (the same up to float rounding, not bitwise; train.threads pins them)"]}]
    assert "change nothing" not in caplog.text and "train.threads: 1 -> 2" not in caplog.text, caplog.text


@pytest.mark.parametrize("first", ["as made", "holding a setting only a resumed run may keep"])
def test_a_change_made_where_its_key_has_no_effect_is_recorded_when_a_later_part_gives_it_effect(first, synth,
                                                                                                tmp_path):
    """A key without effect or shadowed was judged on the resumed part's config alone: ``data.rrc_scale`` given
    beside ``data.crop=multiscale`` (and ``train.epochs`` beside ``train.steps``) was left out, and the next part,
    back on ``random_resized`` (``train.steps`` unset), compared with that part's config: the change of the crop's
    scale (of the epochs) was recorded nowhere. A key is left out only where it has no effect in both configs; the
    first part's config is built as a resumed run's (one holding a target setting an earlier mme took, which a fresh
    run refuses, was not built, and the resumed part's config alone judged it)."""
    base = ("tiny_cpu_pixel", synth, tmp_path, "model.depth=1", "train.batch_size=8", "optim.warmup_steps=1", FP32)
    run(*base, "data.crop=random_resized", "train.steps=null", "train.epochs=1", "train.stop_after=1")
    if first != "as made":
        state = ckpt.load_checkpoint(tmp_path / "checkpoint-00000001.pt")
        state["config"]["target"]["track_length"] = 9  # (a pixel target has no tracks)
        ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    run(*base, "data.crop=multiscale", "data.rrc_scale=[0.9,1.0]", "train.steps=3", "train.epochs=2",
        "train.stop_after=2", "train.resume=auto")
    run(*base, "data.crop=random_resized", "data.rrc_scale=[0.9,1.0]", "train.steps=null", "train.epochs=2",
        "train.resume=auto")
    assert json.loads((tmp_path / "run.json").read_text())["config_changes"] == [
        {"from_step": 1, "changes": ["data.crop: 'random_resized' -> 'multiscale'",
                                     "data.rrc_scale: (0.25, 1.0) -> (0.9, 1.0)", "train.epochs: 1 -> 2",
                                     "train.steps: None -> 3"]},
        {"from_step": 2, "changes": ["data.crop: 'multiscale' -> 'random_resized'", "train.steps: 3 -> None"]}]


def test_a_run_with_a_non_ascii_data_root_resumes_unchanged_under_an_ascii_locale(synth, tmp_path):
    """A checkpoint keeps its config's paths as UTF-8 text, as config.yaml does, and a resume reads them as this
    locale names the files: under a Latin-1 locale a checkpoint kept ``data.root`` as that locale spells it
    (``dat\\u00c3\\u00a9``), which the resume's reading converted again, and reported a change of data.root nobody
    made. Made and resumed under ``LC_ALL=C PYTHONUTF8=0`` (ASCII): the checkpoint holds ``dat\\u00e9``, and the
    resume finds it the run's own root."""
    root = tmp_path / "dat\u00e9"
    root.symlink_to(Path(synth[1].removeprefix("data.root=")))
    data = [synth[0], f"data.root={tmp_path}/dat\udcc3\udca9"]  # (as an ASCII locale's shell gives it)
    argv = [_pretrain_argv("tiny_cpu_mme", data, tmp_path / "r", f"train.steps={steps}", "train.ckpt_every=1",
                           "model.depth=1", "data.num_workers=0", "train.resume=auto") for steps in (1, 2)]
    ran = in_one_process(argv, env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}).ran
    assert [code for code, _, _ in ran] == [0, 0], ran[-1][1][-3000:]
    state = torch.load(max(ckpt.list_checkpoints(tmp_path / "r")), weights_only=False, map_location="cpu")
    assert (state["config"]["data"]["root"], state["step"]) == (str(root), 2)
    assert "with a changed config (the run will not replay exactly): ['train.steps: 1 -> 2']" in ran[1][1], ran[1][1]
    assert "data.root" not in (tmp_path / "r" / "run.json").read_text()
