"""Nothing lost: a run's folder belongs to one run and one job at a time, logs survive a crash mid-write, and
SIGINT / SIGTERM stop a run after its current step with a checkpoint. Each test injects the fault."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
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
from typing import NamedTuple

import numpy as np
import pytest
import torch
from os_fakes import unenterable
from training import FP32, TINY, in_one_process, report_json, run, run_json, tiny
from worker_jobs import dead_pid, killing_a_worker_after, with_small_shm

from mme.errors import CheckpointError, ConfigError, DataError, FolderReplaced, Interrupted, MMEError
from mme.train import checkpoint as ckpt
from mme.train import run_folder
from mme.utils import remove_stale_temps, remove_stale_temps_in, unlock_folder


def _hashes(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _steps(folder) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in ckpt.list_checkpoints(folder)]


PRETRAIN_INTERRUPTED = ("mme pretrain: interrupted; what was written is kept (the same command with --resume auto "
                        "continues from the run's newest checkpoint, if it wrote one)")
"""The one line ``mme pretrain`` ends with when a Ctrl-C stops it."""


def test_a_fresh_run_refuses_a_folder_holding_another_runs_checkpoints_and_overwrite_clears_it(synth, tmp_path,
                                                                                                refuse_removal):
    run("tiny_cpu_pixel", synth, tmp_path / "ref", "train.steps=4", "train.ckpt_every=2", "train.keep_last=0", FP32)
    shutil.copytree(tmp_path / "ref", tmp_path / "x")
    before = _hashes(tmp_path / "x")
    with pytest.raises(ConfigError, match=r"holds 2 checkpoints of another run .*up to step 4.*resume auto"):
        run("tiny_cpu_pixel", synth, tmp_path / "x", "train.steps=3", "train.ckpt_every=2", "train.keep_last=2",
            "train.seed=1", FP32)
    assert _hashes(tmp_path / "x") == before  # not one file of the first run changed
    # an overwriting run refused for its data, or its init, removes nothing (before: the folder was cleared first)
    for bad, said in (("data.root=" + str(tmp_path / "nowhere"), "is not a folder"),
                      ("train.init=" + str(tmp_path / "none.pt"), "none.pt")):
        with pytest.raises(MMEError, match=said):
            run("tiny_cpu_pixel", synth, tmp_path / "x", "train.steps=3", "train.overwrite=true", bad, FP32)
        assert _hashes(tmp_path / "x") == before, bad
    # a file it cannot remove (a read-only folder, an immutable file) is one line naming it, before the new run writes
    # anything (before: a bare PermissionError)
    first = ckpt.list_checkpoints(tmp_path / "x")[0]
    with refuse_removal(first, errno.EACCES):
        with pytest.raises(MMEError, match=rf"^{re.escape(str(first))}: could not be removed \(Permission denied\); it "
                                           r"is a file of another run in train.out_dir .* where this run wrote none of "
                                           r"its files: make it removable, or choose another train.out_dir$"):
            run("tiny_cpu_pixel", synth, tmp_path / "x", "train.steps=3", "train.overwrite=true", FP32)
    assert _hashes(tmp_path / "x") == before
    (tmp_path / "y").mkdir()  # the same for the report of an earlier run without checkpoints
    (tmp_path / "y" / "test.json").write_text(report_json())
    with refuse_removal(tmp_path / "y" / "test.json", errno.EACCES), \
            pytest.raises(MMEError, match=r"test.json: could not be removed \(Permission denied\); it is a test report "
                                          r"of an earlier run in train.out_dir"):
        run_folder.clear(tmp_path / "y", [], fresh=True)
    (tmp_path / "y" / "val.json").write_text('{"my": "own notes"}')  # no report: a user's file, left (was removed)
    run_folder.clear(tmp_path / "y", [], fresh=True)
    assert sorted(p.name for p in (tmp_path / "y").iterdir()) == ["val.json"]
    other = tmp_path / "y" / "checkpoint-00000001.pt"  # train.overwrite of another run's folder: the same
    other.write_bytes(b"another run's")
    run_folder.clear(tmp_path / "y", [other], fresh=True)
    assert sorted(p.name for p in (tmp_path / "y").iterdir()) == ["val.json"]
    res = run("tiny_cpu_pixel", synth, tmp_path / "x", "train.steps=3", "train.ckpt_every=2", "train.keep_last=2",
              "train.seed=1", "train.overwrite=true", FP32)
    assert _steps(tmp_path / "x") == [2, 3] and res.checkpoint == ckpt.checkpoint_path(tmp_path / "x", 3)
    meta = json.loads((tmp_path / "x" / "run.json").read_text())
    assert torch.load(res.checkpoint, weights_only=True)["meta"]["run_id"] == meta["run_id"]
    assert [json.loads(ln)["step"] for ln in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_run_refuses_a_folder_holding_files_of_its_names_that_no_run_wrote(synth, tmp_path):
    """A recipe kept as exp/config.yaml and run there (``--config exp/config.yaml train.out_dir=exp``), another
    tool's metrics.csv or tb/: a fresh run wrote its config.yaml, run.json and logs over them (the recipe's comments
    and _base_ replaced by the expanded config), train.overwrite too. Refused in one line naming them, before any
    work; a folder whose run stopped before its first checkpoint (its run.json records the run) is run in again."""
    exp = tmp_path / "exp"
    (exp / "tb").mkdir(parents=True)
    (exp / "config.yaml").write_text("# my recipe: its comments matter\n_base_: tiny_cpu_pixel\n")
    (exp / "metrics.csv").write_text("user,notes\n")
    (exp / "tb" / "keep.txt").write_text("another tool's logs")
    before = _hashes(exp)
    said = (f"train.out_dir {str(exp)!r} holds config.yaml, metrics.csv, tb, which no run of mme wrote (it holds no "
            "run.json of a run), where this run writes its own: move them (a recipe kept as config.yaml: then give "
            "--config its new path), or choose another train.out_dir")
    for overwrite in ("false", "true"):
        with pytest.raises(ConfigError) as refused:
            run(str(exp / "config.yaml"), synth, exp, "train.steps=1", f"train.overwrite={overwrite}", FP32)
        assert str(refused.value) == said
        assert _hashes(exp) == before
    shutil.move(exp / "config.yaml", tmp_path / "recipe.yaml")
    (exp / "metrics.csv").unlink()
    shutil.rmtree(exp / "tb")
    run(str(tmp_path / "recipe.yaml"), synth, exp, "train.steps=1", FP32)
    for p in ckpt.run_checkpoints(exp):  # as a run stopped before its first checkpoint leaves its folder
        p.unlink()
    assert run(str(tmp_path / "recipe.yaml"), synth, exp, "train.steps=1", FP32).step == 1


def test_a_finished_runs_files_without_its_checkpoints_are_another_runs(synth, tmp_path):
    """A run finished, its checkpoints removed to save space, its logs kept: a fresh run in its folder replaced its
    logs, run.json and config.yaml without a word. Its logs past its first checkpoint's step (train.ckpt_every) show
    it wrote checkpoints: refused in one line, before any work, and train.overwrite replaces them. A run.json that is
    no run's is named as such; the run.json of an mme before run ids is a run's."""
    out = tmp_path / "x"
    run("tiny_cpu_pixel", synth, out, "train.steps=4", "train.ckpt_every=2", FP32)
    for p in ckpt.run_checkpoints(out):
        p.unlink()
    before = _hashes(out)
    with pytest.raises(ConfigError) as refused:
        run("tiny_cpu_pixel", synth, out, "train.steps=1", FP32)
    first = json.loads((out / "run.json").read_text())["run_id"]
    assert str(refused.value) == (
        f"train.out_dir {str(out)!r} holds the files of another run ({first}), whose checkpoints were removed (its "
        "logs reach step 4, past its checkpoint of step 2): choose another train.out_dir, or clear it with "
        "train.overwrite=true")
    assert _hashes(out) == before
    run("tiny_cpu_pixel", synth, out, "train.steps=1", "train.overwrite=true", FP32)
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    old = tmp_path / "old"  # the run.json of an mme before run ids (run_meta alone), of a run stopped before step 2
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"git": "abc", "torch": "2.5.0", "device": "cpu", "precision": "fp32",
                                              "world_size": 1}))
    (old / "config.yaml").write_text("train:\n  steps: 4\n  ckpt_every: 2\n")
    (old / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    assert run("tiny_cpu_pixel", synth, old, "train.steps=1", FP32).step == 1
    for p in ckpt.run_checkpoints(old):
        p.unlink()
    (old / "run.json").write_text('{"my": "notes"}')
    with pytest.raises(ConfigError, match=r"holds config.yaml, run.json, metrics.jsonl, .*, which no run of mme wrote "
                                          r"\(its run.json records no run\), where this run writes its own: move them"):
        run("tiny_cpu_pixel", synth, old, "train.steps=1", FP32)


def test_a_folder_of_no_run_past_a_checkpoint_here_is_no_other_runs(tmp_path):
    """Two folders the rule for a finished run's files refused as one whose checkpoints were removed: the reports of
    a task.eval_only test alone (no run.json: no run wrote there, no checkpoint), and the logs of a run resumed from
    another folder's checkpoint of step 4 (logging from step 5 on) that stopped before its own first checkpoint, at
    step 8. Both are run in again; logs past step 8 show a checkpoint written there."""
    tested = tmp_path / "tested"
    tested.mkdir()
    (tested / "test.json").write_text(report_json(checkpoint="/elsewhere/baseline.pt"))
    assert run_folder.check_owner(tested, None, False) == []
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "run.json").write_text(run_json(run_id="r"))
    (resumed / "config.yaml").write_text("train:\n  ckpt_every: 4\n")
    (resumed / "metrics.jsonl").write_text("".join(f'{{"step": {i}, "loss": 1.0}}\n' for i in (5, 6, 7)))
    (resumed / "metrics.csv").write_text("step,loss\n5,1.0\n6,1.0\n7,1.0\n1")  # (its last line torn by a crash)
    assert run_folder.check_owner(resumed, None, False) == []
    with (resumed / "metrics.jsonl").open("a") as f:
        f.write('{"step": 9, "loss": 1.0}\n')
    with pytest.raises(ConfigError, match=r"\(r\), whose checkpoints were removed \(its logs reach step 9, past its "
                                          r"checkpoint of step 8\)"):
        run_folder.check_owner(resumed, None, False)


def test_a_run_whose_run_json_could_not_be_written_is_run_again_in_its_folder(synth, tmp_path, monkeypatch):
    """A run whose run.json could not be written (a full disk) left its config.yaml, written first: a folder holding
    a config.yaml and no run.json of a run, refused for good as a user's recipe. The two are written all or none."""
    out, write_text = tmp_path / "x", Path.write_text

    def full(path, *args, **kwargs):
        if path.name.startswith(".run.") or path.name == "run.json":  # (its temporary file, or itself)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_text(path, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "write_text", full)
        with pytest.raises(MMEError, match=r"run.json: could not be written \(No space left on device"):
            run("tiny_cpu_pixel", synth, out, "train.steps=1", FP32)
    assert not (out / "config.yaml").exists()
    assert run("tiny_cpu_pixel", synth, out, "train.steps=1", FP32).step == 1


def test_a_renamed_runs_own_config_yaml_with_resume_auto_is_refused_naming_its_folder(synth, tmp_path, monkeypatch,
                                                                                       capsys):
    """``mme pretrain --config run_new/config.yaml --resume auto``, the run's folder renamed (or copied) from run_old:
    its config's train.out_dir named run_old, where --resume auto found no checkpoint, said 'starting fresh' at
    info and trained a new run from step 0 into a new run_old, the run's checkpoints beside the config given left
    behind. Refused before any work, naming both folders; given train.out_dir it resumes, and the config as a recipe
    of a fresh run is no resume."""
    from mme.cli import main

    monkeypatch.chdir(tmp_path)
    run("tiny_cpu_pixel", synth, "run_old", "train.steps=3", "train.stop_after=1", FP32)
    Path("run_old").rename("run_new")
    before = _hashes(Path("run_new"))
    run_id = json.loads(Path("run_new/run.json").read_text())["run_id"]

    def refused(*how: str, held: str = ", which holds no checkpoint", then: str = "start a new run there") -> None:
        assert main(["pretrain", "--config", "run_new/config.yaml", *how]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"mme pretrain: error: --config run_new/config.yaml is the config of the run in run_new ({run_id}), up "
            f"to step 1, but its train.out_dir is run_old{held} (the folder was renamed or copied): give "
            f"train.out_dir=run_new to continue that run, or train.out_dir=run_old to {then}")
        assert _hashes(Path("run_new")) == before

    refused("--resume", "auto")
    refused("train.resume=run_new/checkpoint-00000001.pt")
    assert not Path("run_old").exists()
    assert main(["pretrain", "--config", "run_new/config.yaml", "train.steps=1"]) == 0  # a recipe: a fresh run
    assert _steps("run_old") == [1]
    refused("--resume", "auto", held="", then="resume there")  # another run there (or a copy of this one): which
    # is meant is not known (before: "to resume there" also of a folder holding no checkpoint, a new run there)
    assert main(["pretrain", "--config", "run_new/config.yaml", "--resume", "auto", "train.out_dir=run_new",
                 "train.stop_after=2"]) == 0
    assert _steps("run_new") == [1, 2]
    # the run's folder where it was, resumed from another working folder: the one it began in is named as a cause
    Path("sub").mkdir()
    monkeypatch.chdir("sub")
    assert main(["pretrain", "--config", "../run_new/config.yaml", "--resume", "auto"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme pretrain: error: --config ../run_new/config.yaml is the config of the run in ../run_new ({run_id}), up "
        "to step 2, but its train.out_dir is run_new, which holds no checkpoint (the folder was renamed or copied, "
        f"or the run began in another working folder, {tmp_path}): give train.out_dir=../run_new to continue that "
        "run, or train.out_dir=run_new to start a new run there")
    assert not Path("run_new").exists()
    monkeypatch.chdir(tmp_path)
    # a user's recipe kept beside the run's checkpoints, for a run of its own (another name, or config.yaml edited
    # to another folder): no config of the run's, it goes on with --resume auto, first start and resume alike
    recipe = Path("run_new/config.yaml").read_text()
    assert "out_dir: run_new\n" in recipe  # (the resume with it given wrote it)
    Path("run_new/longer.yaml").write_text(recipe.replace("out_dir: run_new\n", "out_dir: run_long\n"))
    for _ in range(2):
        assert main(["pretrain", "--config", "run_new/longer.yaml", "--resume", "auto", "train.steps=1"]) == 0
    assert _steps("run_long") == [1]
    Path("run_new/config.yaml").write_text(recipe.replace("out_dir: run_new\n", "out_dir: run_edited\n"))
    assert main(["pretrain", "--config", "run_new/config.yaml", "--resume", "auto", "train.steps=1"]) == 0
    assert _steps("run_edited") == [1]


def test_a_run_refused_by_its_data_leaves_no_folder_it_made(tmp_path, capsys):
    """``mme pretrain`` / ``mme finetune`` whose data.root is missing, or whose list fails its checks, left a new,
    empty train.out_dir (with its .lock) behind: the folder is taken (made and locked) before the data are read.
    Now the folders the run made, parents too, are removed again where it wrote nothing there; a folder that was
    there is kept."""
    from mme.cli import main

    (tmp_path / "videos").mkdir()
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 1\n")
    (tmp_path / "bad.txt").write_text("a.mp4 0\nb.mp4 1\nbad line x y\n")  # (a line that is no entry)
    missing_root = [f"data.root={tmp_path / 'no' / 'such'}", f"data.list_file={tmp_path / 'list.txt'}"]
    bad_list = [f"data.root={tmp_path / 'videos'}", f"data.list_file={tmp_path / 'bad.txt'}"]
    there = tmp_path / "there"
    there.mkdir()
    for command, recipe in (("pretrain", "tiny_cpu_mme"), ("finetune", "finetune_tiny_cpu")):
        task = ["task.num_classes=2", "task.classes=", "task.val_list=", "task.test_list="]
        for out, data, said in ((tmp_path / "new" / "run", missing_root, "is not a folder"),
                                (tmp_path / "new" / "run", bad_list, "1 of 3 videos"), (there, bad_list, "1 of 3")):
            overrides = [*data, "data.num_workers=0", f"train.out_dir={out}", *(task if command == "finetune" else [])]
            assert main([command, "--config", recipe, *overrides]) == 1, (command, data)
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith(f"mme {command}: error: ") and said in err[-1], err
            assert not (tmp_path / "new").exists(), (command, data)
            assert there.is_dir(), (command, data)


def test_a_low_open_file_limit_is_raised_to_the_hard_one_or_refused_for_the_loader_workers(synth, tmp_path):
    """``ulimit -n 32`` (at 20: a hang) with loader workers: torch's ``Too many open files`` was a traceback, the
    batches the workers send come as file descriptors. The soft limit is raised to the hard one at the run's start,
    and the run trains; where the hard limit itself is too low, the run is refused in one line naming it and
    ``ulimit -n``, its new folder not left. One process, its limits set before each command: the soft one at 20,
    then both at 32 (a hard limit is lowered for good)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    trains = hard == resource.RLIM_INFINITY or hard >= 96  # (else below what 2 workers need: the refusal alone)
    trained, refused = tmp_path / "trained", tmp_path / "new" / "run"
    calls = [*([(trained, (20, hard))] if trains else []), (refused, (32, 32))]  # (train.out_dir, soft and hard limit)
    proc = in_one_process(
        [["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={out}", "train.steps=4",
                                                          "model.depth=1", "data.num_workers=2", FP32)]
         for out, _ in calls],
        f"import resource\nlimits = {[limits for _, limits in calls]!r}\n"
        "def before(i): resource.setrlimit(resource.RLIMIT_NOFILE, limits[i])\n", timeout=120)  # (a hang before, at 20)
    *ran, (refused_code, refused_err, _) = proc.ran
    if trains:
        code, err, _ = ran[0]
        assert code == 0, err[-3000:]
        assert "Too many open files" not in err
        assert _steps(trained) == [4]
    assert refused_code == 1, refused_err[-3000:]
    assert refused_err.strip().splitlines()[-1] == (
        "mme pretrain: error: data.num_workers=2: this process may open at most 32 files (its hard limit, ulimit "
        "-Hn), below the 96 that 2 loader workers may hold (the batches they send come as file descriptors): raise "
        "it (ulimit -n 96; past the hard limit, as root or by the session's limits), or lower data.num_workers")
    assert "Traceback" not in refused_err
    assert not (tmp_path / "new").exists()


def test_a_run_refused_at_its_start_keeps_a_folder_named_through_a_folder_not_there(tmp_path, monkeypatch, capsys):
    """train.out_dir=newx/../mine, where mine is the user's empty folder and newx is not there: a run refused by its
    data removed mine (a link to it left dangling) and left newx, the folder its mkdir made; made as resolved (no
    newx), the path named nothing, and a valid run's checks by it (another run's checkpoints, --resume auto) found
    nothing. Such a path is refused, naming newx: nothing is made, and nothing removed."""
    from mme.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "link").symlink_to("mine", target_is_directory=True)
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 1\n")
    overrides = ["data.root=", "data.list_file=list.txt", "data.num_workers=0"]  # (its videos not there)
    assert main(["pretrain", "--config", "tiny_cpu_mme", *overrides, "train.out_dir=newx/../mine"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mme pretrain: error: train.out_dir 'newx/../mine' is not a writable folder (newx is not there, and its '..' "
        "goes back from it)")
    assert (tmp_path / "mine").is_dir() and (tmp_path / "link").resolve() == tmp_path / "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "list.txt", "mine"]  # (no stray newx)


@pytest.mark.parametrize("out", ["runs", "runs/a", "runs/a/b"])
def test_a_folder_named_through_a_link_to_nothing_is_refused_and_nothing_made(out, tmp_path, monkeypatch):
    """runs -> /mnt/share/runs, the share not mounted: the folder is refused, as a mkdir through the link refused it,
    not made where the link leads (on the local disk, under the mount point)."""
    from mme.utils import lock_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").symlink_to(tmp_path / "mnt" / "share" / "runs", target_is_directory=True)
    with pytest.raises(ConfigError, match=rf"train.out_dir '{out}' is not a writable folder \(runs is a link to "
                       r"'.*/mnt/share/runs', which leads to nothing: mount or make what it leads to\)"):
        lock_folder(out, "train.out_dir", unmade_if_unused=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_a_folder_under_one_that_cannot_be_searched_is_one_line(tmp_path, monkeypatch):
    """A train.out_dir under a folder of mode 000 (another user's): a PermissionError traceback from the look along
    its path, which ran before the make's own refusal (an lstat refused there, as the OS refuses it to a user)."""
    from pathlib import Path

    from mme.utils import lock_folder

    private, lstat = tmp_path / "private", Path.lstat

    def refused_under_private(self):
        if private in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return lstat(self)

    monkeypatch.setattr(Path, "lstat", refused_under_private)
    private.mkdir()
    with pytest.raises(ConfigError, match=r"train.out_dir '.*/private/run' is not a writable folder \(Permission "
                       r"denied\)"):
        lock_folder(private / "run", "train.out_dir", unmade_if_unused=True)


@pytest.mark.parametrize("out, why", [("dang/x", "dang is a link to '/nonexistent/share', which leads to nothing: "
                                                 "mount or make what it leads to"),
                                      ("newx/../mine", "newx is not there, and its '..' goes back from it"),
                                      ("loopa/x", "loopa is a link to 'loopb', which leads back to itself "
                                                  "through links: point it at a folder")])
def test_an_output_that_does_not_name_the_folder_it_resolves_to_is_refused_with_nothing_made(out, why, tmp_path,
                                                                                             monkeypatch):
    """--out of mme extract, embed, lists, check, viz, synth, export (mme.utils.check_output) through a link to
    nothing was 'cannot be written (File exists)', where nothing exists; 'newx/../mine' did the work in mine and left
    an empty newx; links in a loop were said to be a link to nothing, 'mount or make what it leads to'. As for the
    folders jobs lock (the tests above): one line naming why, nothing made."""
    from mme.utils import check_output

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dang").symlink_to("/nonexistent/share")
    (tmp_path / "loopa").symlink_to("loopb")
    (tmp_path / "loopb").symlink_to("loopa")
    (tmp_path / "mine").mkdir()
    with pytest.raises(ConfigError, match=rf"^--out {re.escape(out)}: cannot be written \({re.escape(why)}\)$"):
        check_output(out, "--out", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dang", "loopa", "loopb", "mine"]


def test_a_new_folder_removed_by_a_refused_job_before_its_lock_opens_is_made_again(tmp_path, monkeypatch):
    """A job refused at its start removes the folder it made (unmade_if_unused); a valid job started beside it on
    the same new folder, between its mkdir and its .lock's open, was refused as "not a writable folder (No such
    file or directory)". Now it makes the folder again, and removes it at its unlock as one it made."""
    from mme import utils

    folder = tmp_path / "new" / "run"
    probe, removed = utils._write_probe, []

    def removed_by_a_refused_job_first(where):
        if not removed:
            removed.append(where)
            where.rmdir()
            where.parent.rmdir()
        probe(where)

    monkeypatch.setattr(utils, "_write_probe", removed_by_a_refused_job_first)
    try:
        assert utils.lock_folder(folder, "train.out_dir", unmade_if_unused=True)
        assert (folder / ".lock").read_text().startswith(f"PID {os.getpid()} on ")
    finally:
        unlock_folder(folder)
    assert len(removed) == 1 and not (tmp_path / "new").exists()


def test_a_folder_another_refused_job_made_and_removed_is_taken_for_made_by_the_job_that_makes_it_again(tmp_path,
                                                                                                      monkeypatch):
    """Two jobs on one new folder, both refused at their start: B looked and saw A's folder (so took nothing for
    made), A removed it, B's mkdir made it again; B's unlock left the folders and their .lock behind, taken by every
    later start for the user's. What a job made is what its own mkdir made."""
    import shutil
    from pathlib import Path

    from mme import utils

    out, exists, seen = tmp_path / "new1" / "new2" / "out", Path.exists, set()
    out.mkdir(parents=True)
    (out / ".lock").touch()  # job A's
    news = {out, out.parent, out.parent.parent}

    def seen_before_a_removes_them(self):
        if self in news - seen:  # B's look
            seen.add(self)
            if seen == news:
                shutil.rmtree(tmp_path / "new1")  # A, refused at its start, just after B's look
            return True
        return exists(self)

    monkeypatch.setattr(Path, "exists", seen_before_a_removes_them)
    assert utils.lock_folder(out, "train.out_dir", unmade_if_unused=True)
    unlock_folder(out)  # B refused at its start too
    assert seen == news and list(tmp_path.iterdir()) == []


def test_the_outermost_folder_a_job_made_on_any_try_is_removed_when_it_is_refused(tmp_path, monkeypatch):
    """Job A made r/a and r/a/b; job B made r/a/b/out; A, refused, removed out, b and a before B's write probe; B made
    all three again on its second try but took for made the out of its first, so, refused too, it left r/a/b."""
    from mme import utils

    out = tmp_path / "r" / "a" / "b" / "out"
    out.parent.mkdir(parents=True)  # job A's
    probe, calls = utils._write_probe, []

    def a_removes_what_it_made_first(folder):
        if not calls:
            calls.append(folder)
            for made in (out, out.parent, out.parent.parent):
                made.rmdir()
        probe(folder)

    monkeypatch.setattr(utils, "_write_probe", a_removes_what_it_made_first)
    assert utils.lock_folder(out, "train.out_dir", unmade_if_unused=True)
    unlock_folder(out)  # B refused at its start too
    assert calls and [p.name for p in tmp_path.iterdir()] == ["r"] and not (tmp_path / "r" / "a").exists()


@pytest.mark.parametrize("removed", ["in its check", "before its write", "as its write opens"])
def test_a_new_output_folder_a_refused_job_removes_under_another_jobs_output_is_made_again(tmp_path, monkeypatch,
                                                                                          removed):
    """Job A (``--out new/a.json``) made the folder ``new`` at its start (mme.utils.check_output), then was refused
    and removed it as its own (removing_made_folders); job B (``--out new/b.json``), started beside it, had found the
    folder there. A's removal between B's mkdir and B's write probe refused B, `cannot be written (No such file or
    directory)`: the removal was no step of the jobs' order, and a check made no folder again; A's removal after
    B's check failed B's write, after its work (FileNotFoundError), also where it fell between the write's look for
    the folder and the open of its temporary file. The jobs are threads here, as their steps are each process's; B's
    check pauses after its mkdir, or its write before that open, standing for any scheduling delay."""
    import threading

    from mme import utils

    out_a, out_b = tmp_path / "new" / "a.json", tmp_path / "new" / "b.json"
    a_checked, b_checked, b_made, b_opens, a_done = (threading.Event() for _ in range(5))
    probe, new_locked_file, refused = utils._write_probe, utils._new_locked_file, []

    def b_pauses_after_its_mkdir(folder):
        if threading.current_thread().name == "B" and removed == "in its check":
            b_made.set()
            a_done.wait(1)  # (A waits for this step to end, where the removal is one step to the other jobs)
        probe(folder)

    def b_pauses_before_its_temporary_file_opens(path):
        if threading.current_thread().name == "B" and removed == "as its write opens" and ".b.json.tmp" in path.name:
            b_opens.set()
            a_done.wait(10)
        return new_locked_file(path)

    def job_a():
        try:
            with utils.removing_made_folders():
                utils.check_output(out_a, "--out")
                a_checked.set()
                {"in its check": b_made, "before its write": b_checked, "as its write opens": b_opens}[removed].wait(10)
                raise ConfigError("refused by its inputs")
        except ConfigError:
            pass
        finally:
            a_done.set()

    def job_b():
        assert a_checked.wait(10)
        try:
            with utils.removing_made_folders():
                utils.check_output(out_b, "--out")
                b_checked.set()
                if removed != "as its write opens":
                    assert a_done.wait(10)  # B's work
                with utils.atomic_path(out_b) as tmp:
                    tmp.write_text("B's output")
        except (MMEError, OSError) as e:
            refused.append(f"{type(e).__name__}: {e}")

    monkeypatch.setattr(utils, "_write_probe", b_pauses_after_its_mkdir)
    monkeypatch.setattr(utils, "_new_locked_file", b_pauses_before_its_temporary_file_opens)
    jobs = [threading.Thread(target=job_a, name="A"), threading.Thread(target=job_b, name="B")]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(30)
    assert refused == []
    assert out_b.read_text() == "B's output" and sorted(p.name for p in out_b.parent.iterdir()) == ["b.json"]


_PAUSED_JOB = """
import pathlib, sys, time
from mme import utils
from mme.errors import ConfigError
out, go, where = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
owner, name = (utils, "_write_probe") if where == "made" else (pathlib.Path, "rmdir")
step = getattr(owner, name)

def paused(folder):
    setattr(owner, name, step)
    print(where, flush=True)
    deadline = time.monotonic() + 0.5  # (the other job, made to wait for this one, goes on after it)
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    step(folder)

setattr(owner, name, paused)
try:
    utils.lock_folder(out, "train.out_dir", unmade_if_unused=True)
except ConfigError as e:
    print(e, flush=True)
utils.unlock_folder(out)  # refused at its start
"""


@pytest.mark.parametrize("where", ["made", "half removed"])
def test_two_jobs_refused_at_their_start_on_one_new_nested_folder_leave_nothing(where, tmp_path):
    """Two jobs on one new nested folder, both refused at their start. Job A made the folders, then B took them for
    ones that were there: before A's lock (A then refused as "in use", its folders not removed), or half removed
    by A (its .lock unlinked: B made its own there, so A's rmdir failed); each removed only what it made, so the
    folders and a .lock were left (1 pair in about 130 of a stress run). A job's making and locking of a folder and
    another's removal of what it made are now one step each to the other jobs of this user."""
    from mme.utils import lock_folder

    out, go = tmp_path / "new" / "deeper" / "out", tmp_path / "go"
    job_a = subprocess.Popen([sys.executable, "-c", _PAUSED_JOB, str(out), str(go), where], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert job_a.stdout.readline() == f"{where}\n"
        assert out.is_dir() and not (out / ".lock").exists()  # A's folders, A paused before its .lock or after
        try:
            with contextlib.suppress(ConfigError):  # (refused as in use where A holds the folder)
                lock_folder(out, "train.out_dir", unmade_if_unused=True)  # job B
        finally:
            go.touch()
        assert job_a.wait(timeout=60) == 0  # A refused at its start (as in use by B, or later)
    finally:
        job_a.kill()
        unlock_folder(out)  # then B
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go"]


_JOB_ON_A_NEW_FOLDER = """
import logging, sys
from mme import utils
logging.basicConfig(level=logging.INFO, format="%(message)s")
utils._ORDERING_WAIT_S = 0.5
print(utils.lock_folder(sys.argv[1], "train.out_dir", unmade_if_unused=True), flush=True)
utils.unlock_folder(sys.argv[1])  # refused at its start
"""


def test_two_refused_jobs_one_of_which_found_the_others_new_output_folder_leave_nothing(tmp_path, monkeypatch):
    """Job A (``--out new/a.json``) made ``new`` at its start, job B (``--out new/b.json``) found it there, and both
    were refused. B's check probed a folder that was there without the lock that orders this user's new folders:
    A's removal landing during B's write probe failed on B's probe file, and ``new`` was left, empty, by both. Now
    the probe takes that lock where it is free at once: A's removal waits for it. Threads stand for the jobs, B's
    probe pausing as a scheduling delay would."""
    import tempfile
    import threading

    from mme import utils

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(utils, "_ordering_gone_without", set())
    new = tmp_path / "new"
    a_checked, b_probing, a_done = (threading.Event() for _ in range(3))
    probe, counted = utils._write_probe, []

    def b_pauses_in_its_probe(folder):
        if threading.current_thread().name != "B":
            return probe(folder)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-test-")  # (mme.utils._write_probe's steps)
        os.close(fd)
        b_probing.set()
        a_done.wait(1)  # (A waits for this step to end now)
        os.unlink(name)

    def job(name, out, before_refusal):
        try:
            with utils.removing_made_folders() as made:
                utils.check_output(out, "--out")
                before_refusal()
                counted.append((name, list(made)))
                raise ConfigError("refused by its inputs")
        except ConfigError:
            pass
        finally:
            if name == "A":
                a_done.set()

    monkeypatch.setattr(utils, "_write_probe", b_pauses_in_its_probe)
    jobs = [threading.Thread(target=job, name="A", args=("A", new / "a.json", lambda: a_checked.set() or
                                                         b_probing.wait(10))),
            threading.Thread(target=job, name="B", args=("B", new / "b.json", lambda: None))]
    jobs[0].start()
    assert a_checked.wait(10)
    jobs[1].start()
    for thread in jobs:
        thread.join(30)
    assert sorted(counted) == [("A", [new]), ("B", [])]
    assert not new.exists()  # (left, empty, before)


def test_a_write_whose_folder_a_third_job_made_again_after_its_open_failed_tries_again(tmp_path, monkeypatch):
    """atomic_path's open of its temporary file failed (FileNotFoundError: the folder removed by a refused job),
    and the folder was there again when the write looked (a third job made it meanwhile): the write gave up where
    one more try succeeds."""
    from mme import utils

    (tmp_path / "out").mkdir()
    new_locked_file, opens = utils._new_locked_file, []

    def removed_then_made_again(path):
        opens.append(path.name)
        if len(opens) == 1:
            path.parent.rmdir()  # (the refused job's removal)
            try:
                return new_locked_file(path)
            finally:
                path.parent.mkdir()  # (the third job's)
        return new_locked_file(path)

    monkeypatch.setattr(utils, "_new_locked_file", removed_then_made_again)
    utils.atomic_write_text(tmp_path / "out" / "a.json", "A")
    assert len(opens) == 2 and (tmp_path / "out" / "a.json").read_text() == "A"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json"]


def _ordering_lock(tmp: Path, folder: Path) -> Path:
    """The file in the temporary folder ``tmp`` that orders this user's jobs making new folders beside ``folder``."""
    return tmp / f"mme-folders-{os.geteuid()}-{folder.stat().st_dev}.lock"


def test_a_job_goes_on_unordered_when_the_folders_lock_is_held_past_its_wait(tmp_path):
    """The lock that orders this user's making of new folders (a file of a known name in the temporary folder) was
    waited for without end: a job of the user stopped with Ctrl-Z in its step, or anyone holding the file, stalled
    every later job at its start, silently. Now a job waits a few seconds, says so once, and goes on without it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ordering = _ordering_lock(tmp, tmp_path)
    holder = os.open(ordering, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        out = tmp_path / "new" / "out"
        proc = subprocess.run([sys.executable, "-c", _JOB_ON_A_NEW_FOLDER, str(out)], capture_output=True, text=True,
                              env={**os.environ, "TMPDIR": str(tmp)}, timeout=8)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "True\n"
        waits = [ln for ln in proc.stderr.splitlines() if "is held by another process" in ln]
        assert waits == [f"{ordering} is held by another process: waiting up to 0.5 s for it, then going on without "
                         f"it"]  # said once: the removal at the job's end does not wait again
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # the folders it made, removed unordered
        assert os.path.samestat(os.fstat(holder), os.stat(ordering))  # the holder's file, left to it
    finally:
        os.close(holder)


def test_an_output_check_of_a_folder_that_is_there_does_not_wait_for_the_folders_lock(tmp_path, monkeypatch):
    """mme.utils.check_output took the lock that orders this user's new folders for every output, its folder there
    or not: while a job of the user held it (stopped with Ctrl-Z in its step), every command checking an output
    (mme embed, viz, bench --json, each dataset's data.index_dir) waited 5 s. A folder that is there is made by no
    one: only its write probe runs, in that order where the lock is free at once, and a write into it likewise. An
    extract worker's track cache in a new class folder (no output job removes those) waited 5 s too, for each
    folder, where its writer made no folder itself."""
    import tempfile

    import numpy as np

    from mme import utils
    from mme.motion.cache import load_tracks, save_tracks

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(utils, "_ordering_gone_without", set())  # (this process went on without it before)
    monkeypatch.setattr(utils, "_ORDERING_WAIT_S", 30.0)  # a wait, were there one, far above a busy machine's time
    (tmp_path / "out").mkdir()
    ordering = _ordering_lock(tmp, tmp_path)
    holder = os.open(ordering, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        start = time.monotonic()
        with utils.removing_made_folders() as made:
            assert utils.check_output(tmp_path / "out" / "a.json", "--out") == tmp_path / "out" / "a.json"
            assert utils.check_output(tmp_path / "out", "--index-dir", folder=True) == tmp_path / "out"
            utils.atomic_write_text(tmp_path / "out" / "a.json", "A")
        assert time.monotonic() - start < 10.0  # (the lock's wait before: 5 s, here 30, at the first check)
        assert made == [] and (tmp_path / "out" / "a.json").read_text() == "A"
        assert utils._ordering_gone_without == set()  # (held by another job: a later making of a folder waits)
        start = time.monotonic()
        disp = np.arange(2 * 2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 2, 4, 4, 2) / 8
        save_tracks(tmp_path / "out" / "class" / "v.tracks", disp, np.ones((2, 4, 4), bool), None,
                    {"video": "v", "length": 2})
        assert time.monotonic() - start < 10.0  # (the lock's wait before, for each new class folder)
        loaded, valid = load_tracks(tmp_path / "out" / "class" / "v.tracks")
        np.testing.assert_allclose(loaded, disp, atol=0.05)
        assert valid.shape == (2, 4, 4) and valid.all()
        assert sorted(p.name for p in tmp.iterdir()) == [ordering.name]  # the holder's, untouched
        assert os.path.samestat(os.fstat(holder), os.stat(ordering))
    finally:
        os.close(holder)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="gives a file to another user: needs root")
def test_a_folders_lock_a_look_holds_for_an_instant_is_taken_not_refused(tmp_path):
    """A run wording its advice looks at an extraction's share locks (``holder_of``: a shared flock for an instant);
    an ``mme extract`` share starting at that instant was refused 'in use by another job', naming the last finished
    job's holder line. lock_folder tries again for a moment (utils._LOOKED_AT_S) and takes it; one held on is still
    refused, naming its holder."""
    import threading

    from mme.utils import FOLDER_LOCK, lock_folder, unlock_folder

    folder = tmp_path / "share"
    folder.mkdir()
    (folder / FOLDER_LOCK).write_text("PID 1 on old, since then\n")  # a finished job's line
    fd = os.open(folder / FOLDER_LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a look, let go 50 ms later
        threading.Timer(0.05, fcntl.flock, (fd, fcntl.LOCK_UN)).start()
        assert lock_folder(folder, "--out") is True
        unlock_folder(folder)
        (folder / FOLDER_LOCK).write_text("PID 999 on host-x, since then\n")  # a job holding it on: refused, named
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match=r"--out '.*share' is in use by another job \(PID 999 on host-x, since "
                                              r"then\)"):
            lock_folder(folder, "--out")
    finally:
        os.close(fd)


def test_a_folders_lock_file_of_another_user_is_not_taken(tmp_path, monkeypatch):
    """Another user's file of the ordering lock's name (0644, in a sticky temporary folder) was opened and locked,
    then its removal at the step's end failed (PermissionError): a traceback, the new folder left with its .lock.
    Only this user's own regular file is taken now; else the job goes on unordered and leaves that file alone."""
    import tempfile

    from mme.utils import lock_folder

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    others = _ordering_lock(tmp, tmp_path)
    others.touch(mode=0o644)
    os.chown(others, 65534, 65534)
    kept = others.stat()
    out = tmp_path / "new" / "out"
    assert lock_folder(out, "train.out_dir", unmade_if_unused=True)
    assert out.is_dir()
    unlock_folder(out)  # refused at its start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert os.path.samestat(others.stat(), kept) and others.stat().st_uid == 65534


def test_a_fifo_at_the_folders_lock_path_neither_holds_a_job_nor_is_taken(tmp_path, monkeypatch):
    """A FIFO put at the path of the lock that orders this user's new folders (a known name in a temporary folder all
    users write) holds an open of it until a writer comes: every job making a folder would hang at its start. It is
    opened without waiting (O_NONBLOCK), refused as no regular file of this user's, and the job goes on unordered."""
    import tempfile
    import threading

    from mme import utils

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(utils, "_ordering_gone_without", set())
    fifo = _ordering_lock(tmp, tmp_path)
    os.mkfifo(fifo)
    out, taken = tmp_path / "new" / "out", []

    def job_refused_at_its_start():
        taken.append(utils.lock_folder(out, "--out", unmade_if_unused=True))
        unlock_folder(out)

    job = threading.Thread(target=job_refused_at_its_start, daemon=True)
    job.start()
    job.join(10)
    hung = job.is_alive()
    for _ in range(100):  # (each open of the lock and of its removal's lock, where hung, let go on by a writer's end)
        if not job.is_alive():
            break
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        job.join(0.1)
    assert not hung
    assert taken == [True] and utils._ordering_gone_without == {fifo}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"] and fifo.is_fifo()


def test_a_link_at_the_folders_lock_path_is_not_followed(tmp_path, monkeypatch):
    """A link put at the path of the lock that orders this user's new folders, to a file of this user's own, would
    be followed: that file locked as the lock, and the link removed at the step's end. Its open is refused unfollowed
    (O_NOFOLLOW: ELOOP), and a job goes on unordered, the link and its file left as they were."""
    import tempfile

    from mme import utils

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(utils, "_ordering_gone_without", set())
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    link = _ordering_lock(tmp, tmp_path)
    link.symlink_to(mine)
    with pytest.raises(OSError) as refused, utils.exclusive_lock(link, remove=True, wait_s=0, own_only=True):
        pass
    assert refused.value.errno == errno.ELOOP
    out = tmp_path / "new" / "out"
    assert utils.lock_folder(out, "--out", unmade_if_unused=True)
    unlock_folder(out)  # refused at its start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "tmp"]
    assert link.is_symlink() and os.readlink(link) == str(mine) and mine.read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="gives a file to another user: needs root")
def test_another_users_folder_lock_all_may_write_in_a_shared_sticky_folder_is_taken(tmp_path, protected_regular):
    """Another user's .lock, 0666 (their job's, in a folder all users write, sticky: under /tmp), was opened with
    O_CREAT, which the kernel refuses there for another user's file (fs.protected_regular, played), so lock_folder
    refused it as 'belongs to another user ... make it writable for this user (chmod a+w)', which it is. It is opened
    as it is first now (mme.utils._open_lock) and taken, this job's line written into that user's file."""
    from mme.utils import FOLDER_LOCK, lock_folder

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    lock = folder / FOLDER_LOCK
    lock.write_text("PID 1 on other, since then\n")  # a finished job's line
    lock.chmod(0o666)
    os.chown(lock, 65534, 65534)
    kept = lock.stat()
    assert lock_folder(folder, "--out") is True
    try:
        assert lock.read_text().startswith(f"PID {os.getpid()} on ")
        assert os.path.samestat(lock.stat(), kept) and lock.stat().st_uid == 65534
    finally:
        unlock_folder(folder)


def test_a_lock_file_that_cannot_be_removed_leaves_the_block_as_it_ends(tmp_path):
    """exclusive_lock(remove=True) let the removal's error out of its block, in place of the block's own end (a
    lock_folder refused as another user's file in a sticky folder: a traceback); it keeps it now, and closes the
    file either way."""
    from mme.utils import exclusive_lock

    lock = tmp_path / "a.lock"
    fds = len(os.listdir("/proc/self/fd"))
    with exclusive_lock(lock, remove=True):
        assert len(os.listdir("/proc/self/fd")) == fds + 1
        lock.unlink()
        lock.mkdir()  # (a folder where the file was: its unlink fails, IsADirectoryError)
        (lock / "x").touch()
    assert lock.is_dir() and len(os.listdir("/proc/self/fd")) == fds


def test_a_link_to_nothing_at_a_lock_files_path_is_an_error_not_a_wait_forever(tmp_path):
    """exclusive_lock took every FileNotFoundError of its lock file's open for its folder removed while it waited
    (by a holder failing), made the folder again and tried again: a link to nothing at the lock's path (its folder
    there), which the open's O_CREAT also meets with ENOENT, spun forever (an mme export, an index save, extract's
    video locks). It is an error naming the link, at once (a link is never followed), and nothing is made where the
    link leads."""
    from mme.utils import NotRegularFile, exclusive_lock

    lock = tmp_path / "out" / ".export.lock"
    lock.parent.mkdir()
    lock.symlink_to(tmp_path / "gone" / "x.lock")

    def too_long(*_):
        raise TimeoutError("exclusive_lock still trying after 10 s")

    before = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(10)
    try:
        with pytest.raises(NotRegularFile, match="is a symbolic link"), exclusive_lock(lock, remove=True):
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert lock.is_symlink() and not (tmp_path / "gone").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


_PRECIOUS = "step,loss\nprecious\n1,1.0\n"
"""A victim's text: a table whose second line is no record (a resumed log keeping the others would rewrite it)."""


def _victim(tmp_path: Path) -> Path:
    """A file of this user's that another user, who may write a folder a job uses, would have the job overwrite."""
    victim = tmp_path / "victim.txt"
    victim.write_text(_PRECIOUS)
    victim.chmod(0o600)
    return victim


def _untouched(victim: Path) -> bool:
    return victim.read_text() == _PRECIOUS and victim.stat().st_mode & 0o777 == 0o600


def test_a_symlink_or_fifo_planted_at_a_folders_lock_is_refused_not_written_through(tmp_path):
    """lock_folder opened a folder's .lock (a run's out_dir, an extraction's share lock <out>/.locks/<share>/.lock,
    names known in advance) following links: a link another user put there had the job truncate the file it leads
    to, write its holder line there and make it 0644. A link or a FIFO there is a ConfigError naming it now, and the
    file the link leads to is untouched."""
    from mme.utils import lock_folder

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    with pytest.raises(ConfigError, match=rf"^--out '{out}': {out}/\.lock is a symbolic link \(not followed\); "
                                          r"remove it, or choose another --out$"):
        lock_folder(out, "--out")
    assert _untouched(victim)
    (out / ".lock").unlink()
    os.mkfifo(out / ".lock")
    with pytest.raises(ConfigError, match=r"\.lock is not a regular file"):
        lock_folder(out, "--out")


def test_a_symlink_planted_at_a_readers_record_is_not_written_through(tmp_path):
    """A job reading a shared track cache wrote its record (.locks/readers/<host>-<pid>.lock, a name known in
    advance) through a link there: the file it leads to was emptied and held the job's holder line. The link is not
    followed now: the job holds the folder for reading, unrecorded, and the file is untouched."""
    import socket

    from mme.utils import LOCKS, held_folders, hold_for_reading

    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    record = cache / LOCKS / "readers" / f"{socket.gethostname()}-{os.getpid()}.lock"
    record.parent.mkdir(parents=True)
    record.symlink_to(victim)
    hold_for_reading(cache, "target.cache_dir")
    try:
        assert cache.resolve() in held_folders()
    finally:
        unlock_folder(cache)
    assert _untouched(victim) and record.is_symlink()


def test_an_atomic_writes_temporary_name_cannot_be_told_in_advance_so_nothing_planted_there_is_used(tmp_path,
                                                                                                     monkeypatch):
    """atomic_path's temporary name was .<name>.tmp<pid><suffix>, known in advance: another user who may write the
    folder put a symbolic link there (the write went through it, then the link was renamed into the output's place),
    or a file of theirs, kept to themselves (0600: a bare PermissionError) or in a sticky folder, where it cannot be
    removed (every write of that file failed). The name draws 8 random hex digits after the PID now, the file made
    new (O_EXCL): the entries planted at the names of before are left alone, and a name that is taken is drawn
    again."""
    from mme import utils

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / f".report.json.tmp{os.getpid()}.json").symlink_to(victim)
    theirs = out / f".notes.json.tmp{os.getpid()}.json"
    theirs.write_text("theirs\n")
    theirs.chmod(0o600)
    if os.geteuid() == 0:  # (another user's file where it may: as root)
        os.chown(theirs, 65534, 65534)
    tags = iter(["0badc0de", "0badc0de", "5eed5eed"])
    monkeypatch.setattr(utils.secrets, "token_hex", lambda n: next(tags))
    (out / f".report.json.tmp{os.getpid()}-0badc0de.json").symlink_to(victim)  # (as if drawn by chance)
    planted = sorted(p.name for p in out.iterdir())
    utils.atomic_write_text(out / "notes.json", "{}\n")  # drawn 0badc0de, free here
    with utils.atomic_path(out / "report.json") as tmp:
        assert tmp.name == f".report.json.tmp{os.getpid()}-5eed5eed.json"  # (0badc0de taken: drawn again)
        tmp.write_text('{"written": "by mme"}\n')
    report = out / "report.json"
    assert not report.is_symlink() and report.read_text() == '{"written": "by mme"}\n'
    assert report.stat().st_mode & 0o777 == 0o666 & ~os.umask(os.umask(0o022))
    assert (out / "notes.json").read_text() == "{}\n" and theirs.read_text() == "theirs\n"
    assert _untouched(victim) and sorted(p.name for p in out.iterdir()) == sorted([*planted, "notes.json",
                                                                                   "report.json"])


def test_an_atomic_writes_temporary_name_swapped_for_a_link_while_it_is_written_is_not_put_in_place(tmp_path):
    """A user who lists the folder and may rename in it (a folder its group writes, not sticky) could swap the
    temporary file for a symbolic link while the block wrote, and os.replace put the link in the output's place.
    The name is checked to still hold the file made before it is replaced now: the write fails, naming it. A
    temporary file removed during the write (nothing in its place) is said to be removed, not replaced."""
    from mme.utils import atomic_path

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match=r"its temporary file was replaced by another entry while it was written"):
        with atomic_path(out / "report.json") as tmp:
            tmp.write_text('{"written": "by mme"}\n')
            tmp.unlink()
            tmp.symlink_to(victim)  # (the other user's swap)
    assert not (out / "report.json").exists() and _untouched(victim)
    with pytest.raises(FileNotFoundError, match=r"its temporary file was removed while it was written; not put in "
                                                r"its place: '.*\.report\.json\.tmp"):
        with atomic_path(out / "report.json") as tmp:
            tmp.unlink()
    assert not (out / "report.json").exists()


@pytest.mark.parametrize("writer", ["metrics.jsonl", "metrics.csv", "resumed metrics.jsonl", "resumed metrics.csv",
                                    "overwrite marker"])
def test_a_symlink_planted_at_a_log_or_an_overwrite_marker_is_refused_not_written_through(tmp_path, writer, caplog):
    """A run's metrics.jsonl / metrics.csv and mme extract's overwriting-<share>.jsonl, names known in advance,
    were opened following links: a link another user put there had the job empty the file it led to and write its
    records there; a resumed log read it through the link, quoting its lines that are no record in a warning, and
    where a kept line followed one (the table) copied it into a new log of its own. A link there is refused now,
    named, before a line is read, the file it leads to untouched; a FIFO there is not a regular file (it was 'No
    such device or address')."""
    from mme.motion.extract import _mark_made
    from mme.train.metrics import CSVLogger, JSONLLogger

    victim = _victim(tmp_path)
    name = "overwriting-s.jsonl" if writer == "overwrite marker" else writer.split()[-1]
    (tmp_path / name).symlink_to(victim)
    write = {"metrics.jsonl": lambda: JSONLLogger(tmp_path / name), "metrics.csv": lambda: CSVLogger(tmp_path / name),
             "resumed metrics.jsonl": lambda: JSONLLogger(tmp_path / name, resume_step=5),
             "resumed metrics.csv": lambda: CSVLogger(tmp_path / name, resume_step=5),
             "overwrite marker": lambda: _mark_made(tmp_path / name, victim, str(tmp_path))}[writer]
    for planted, why in (("link", "is a symbolic link (not followed)"), ("FIFO", "is not a regular file")):
        if planted == "FIFO":  # (no one reads it: its open to write failed 'No such device or address')
            (tmp_path / name).unlink()
            os.mkfifo(tmp_path / name)
        with pytest.raises(OSError if writer != "overwrite marker" else MMEError) as refused:
            write()
        assert str(tmp_path / name) in str(refused.value) and why in str(refused.value)
    assert _untouched(victim) and (tmp_path / name).is_fifo() and "precious" not in caplog.text


@pytest.mark.parametrize("block", ["exclusive_lock", "atomic_path"])
def test_a_lock_ends_with_its_block_for_a_child_forked_meanwhile_and_stays_for_one_forked_inside(tmp_path, block):
    """An flock belongs to the open file, which a child forked while a thread of the parent is inside an
    exclusive_lock (an index's save) or atomic_path block shares: closed alone at the block's end, the lock stayed
    held by the child's copy, closed by no one (its own lock of the file anew waited forever, the parent's next
    until the child ended); a registry of the threads' descriptors for the fork hook to close left windows where a
    fork landed between an open and its record. The block's end now releases the lock, for every copy, where it
    is the process that took it; a child forked inside the block by its own thread, leaving the block in its turn,
    leaves the lock to its parent."""
    import threading

    from mme import utils

    target = tmp_path / "x.lock"

    @contextlib.contextmanager
    def held():
        if block == "exclusive_lock":
            with utils.exclusive_lock(target):
                yield target
        else:
            with utils.atomic_path(target) as tmp:
                tmp.write_text("x")
                yield tmp

    def lockable(path: Path) -> bool:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    inside, leave, files = threading.Event(), threading.Event(), []

    def thread_block():
        with held() as path:
            files.append(path)
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=thread_block)
    thread.start()
    assert inside.wait(10)
    locked = os.open(files[0], os.O_RDONLY)  # (the file the block locks: atomic_path's renamed into place)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # holds its copy of the thread's descriptor until told
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        leave.set()
        thread.join(10)
        fcntl.flock(locked, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (BlockingIOError before, the child's copy held it)
        fcntl.flock(locked, fcntl.LOCK_UN)
    finally:
        os.close(w)
        os.waitpid(child, 0)
        os.close(locked)

    if block == "exclusive_lock":  # (a child leaving an atomic_path block would put the file in place itself)
        child = -1
        try:
            with held() as path:
                child = os.fork()
                if child:
                    assert os.waitpid(child, 0)[1] == 0  # the child left the block, and ended
                    assert not lockable(path)  # the parent's lock, kept
        finally:
            if child == 0:
                os._exit(0)
        assert lockable(target)
    else:
        assert target.read_text() == "x"


def test_a_run_whose_folder_is_removed_and_made_again_by_another_job_writes_nothing_there(synth, tmp_path,
                                                                                          monkeypatch):
    """A run's train.out_dir removed (rm -rf) mid-run and made again by a second run, which locks a new .lock: the
    first run's lock held only the removed file, so it went on writing its checkpoints by path into the second's
    folder, and its rotation deleted the second's checkpoints. It stops at its next write with one line, and the
    folder holds the second run's files alone, as they were."""
    from mme.train import metrics

    out = tmp_path / "run"
    theirs = {"checkpoint-00000001.pt": b"the second run's", "run.json": b'{"run_id": "second"}',
              ".lock": b"PID 1 on another host\n"}
    real_log = metrics.JSONLLogger.log

    def replaced_at_step_3(self, values, step):
        if step == 3:
            shutil.rmtree(out)
            out.mkdir()
            for name, data in theirs.items():
                (out / name).write_bytes(data)
        real_log(self, values, step)

    monkeypatch.setattr(metrics.JSONLLogger, "log", replaced_at_step_3)
    with pytest.raises(FolderReplaced) as info:
        run("tiny_cpu_pixel", synth, out, "train.steps=5", "train.ckpt_every=1", "train.keep_last=2", FP32)
    assert str(info.value) == (f"train.out_dir {out} was removed or replaced while this run used it; nothing written "
                               "there (what this run wrote there before is kept only where the folder still holds it)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == theirs


def test_a_run_inside_a_folder_its_caller_holds_leaves_that_folder_held(synth, tmp_path):
    """mme demo holds its --out around the rows it pre-trains in sub-folders: the end of each run unlocked every
    folder of the process, the demo's too, so a second mme demo on that --out went on beside the first (and the
    folder-held check no longer covered the demo's writes). The run's end unlocks only the run's own folder."""
    from mme.utils import held_folders, lock_folder

    outer = tmp_path / "demo"
    assert lock_folder(outer, "--out")
    try:
        run("tiny_cpu_pixel", synth, outer / "seed0", "train.steps=1", "train.ckpt_every=1", FP32)
        assert outer.resolve() in held_folders() and (outer / "seed0").resolve() not in held_folders()
        with open(outer / ".lock") as other, pytest.raises(BlockingIOError):  # (another open file: another job's)
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        unlock_folder(outer)


def test_a_run_inside_a_process_group_its_caller_started_leaves_that_group_up(synth, tmp_path):
    """A script under torchrun that starts its process group, then calls ``pretrain()``: the run's end destroyed the
    caller's group, whose next collective failed ("Default process group has not been initialized"). The run's end
    leaves only a group the run started (a group of one rank here, started by the test)."""
    import torch.distributed as td

    td.init_process_group("gloo", rank=0, world_size=1, store=td.HashStore())
    try:
        assert run("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=1", FP32).step == 1
        assert td.is_initialized()
        total = torch.tensor([3.0])
        td.all_reduce(total)  # the caller's own collective
        assert total.item() == 3.0
    finally:
        if td.is_initialized():  # not for the later tests of this process
            td.destroy_process_group()


def test_a_second_job_that_would_start_the_process_group_again_is_refused_before_any_work(synth, tmp_path,
                                                                                           monkeypatch):
    """A script under torchrun that calls ``pretrain()`` twice, letting each run start the process group: the second
    start did not connect (torchrun's rendezvous is once per process), and the run hung or failed at its first
    collective with "another rank ended before this one was done" (false). The second job is refused with one line
    that says to start the group in the script, before any work. A group of one rank here, started by the first run
    (its start taken for torchrun's: ``launch_ranks`` says 2 ranks, the environment's group has 1)."""
    import socket

    import torch.distributed as td

    from mme.train import distributed as dist

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dist, "launch_ranks", lambda: (0, 2))
    monkeypatch.setattr(dist, "_started_here", False, raising=False)  # (no earlier test's start counts)
    try:
        assert run("tiny_cpu_pixel", synth, tmp_path / "first", "train.steps=1", FP32).step == 1
        assert not td.is_initialized()  # the first run started the group and left it
        with pytest.raises(ConfigError) as info:
            run("tiny_cpu_pixel", synth, tmp_path / "second", "train.steps=1", FP32)
    finally:
        if td.is_initialized():  # not for the later tests of this process
            td.destroy_process_group()
    assert str(info.value) == (
        "the process group was started by an earlier job of this process and left at its end: it does not start again "
        "under torchrun; to run several jobs in one script, start it there first "
        "(torch.distributed.init_process_group()): each job then uses it and leaves it up")
    assert not (tmp_path / "second").exists()


def test_a_folder_whose_lock_file_was_replaced_is_no_longer_written_by_its_job(tmp_path):
    """Only the .lock made anew (the folder kept): the job's checkpoints, rotation and partial results of an embedding
    refuse it, removing and writing nothing; a folder this process does not lock is not checked."""
    from mme.eval.features import _write_part

    out, partial = run_folder.take(tmp_path / "run"), run_folder.take(tmp_path / "e.npy.partial", "--out (its partial "
                                                                                                  "results)")
    try:
        old = [ckpt.checkpoint_path(out, step) for step in (1, 2)]
        for p in old:
            p.write_bytes(b"this run's")
        for folder in (out, partial):
            (folder / ".lock").unlink()
            (folder / ".lock").write_text("PID 1 on another host\n")
        replaced = r" was removed or replaced while this run used it; nothing written there"
        with pytest.raises(FolderReplaced, match=rf"^train.out_dir {re.escape(str(out))}{replaced}"):
            ckpt.rotate(out, 1)
        with pytest.raises(FolderReplaced, match=rf"^train.out_dir {re.escape(str(out))}{replaced}"):
            ckpt.save_checkpoint({"step": 3}, out, keep_last=1)
        with pytest.raises(FolderReplaced, match=rf"^--out \(its partial results\) {re.escape(str(partial))}"
                                                 rf"{replaced}"):
            _write_part(partial, "r0", {"index": np.arange(2), "failed": np.zeros(0, np.int64)})
        assert sorted(p.name for p in out.iterdir()) == [".lock", *(p.name for p in old)]
        assert {p.read_bytes() for p in old} == {b"this run's"}
        assert sorted(p.name for p in partial.iterdir()) == [".lock"]
    finally:
        unlock_folder()
    ckpt.save_checkpoint({"step": 3}, out, keep_last=1)  # unlocked: written, and the rotation removes steps 1, 2
    assert ckpt.list_checkpoints(out) == [ckpt.checkpoint_path(out, 3)]


def test_log_rewrites_and_a_rewinds_log_copy_refuse_a_folder_taken_by_another_job(tmp_path):
    """The logs cut back at a resume (metrics.jsonl, metrics.csv), the table widened by a new column and a rewind's
    copy of the logs are written through atomic_path, which checks the folder's lock (before: they wrote into a folder
    another job had made anew, as no check was called for them)."""
    from mme.train.metrics import CSVLogger, JSONLLogger

    out = run_folder.take(tmp_path / "run")
    try:
        table = CSVLogger(out / "metrics.csv")
        table.log({"loss": 1.0}, 1)
        (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
        ckpt.checkpoint_path(out, 2).write_bytes(b"a later checkpoint")
        (out / ".lock").unlink()
        (out / ".lock").write_text("PID 1 on another host\n")
        theirs = {p.name: p.read_bytes() for p in out.iterdir()}
        replaced = rf"^train.out_dir {re.escape(str(out))} was removed or replaced while this run used it"
        with pytest.raises(FolderReplaced, match=replaced):
            JSONLLogger(out / "metrics.jsonl", resume_step=1)
        with pytest.raises(FolderReplaced, match=replaced):
            table.log({"loss": 0.5, "val_top1": 0.25}, 2)
        with pytest.raises(FolderReplaced, match=replaced):
            run_folder.keep_logs_of_rewind(out, 1)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == theirs
    finally:
        unlock_folder()


def test_a_folder_on_a_file_system_without_locks_is_used_with_a_warning(tmp_path, monkeypatch, caplog):
    """flock refused by the file system (ENOLCK: some NFS, FUSE and Lustre mounts) read as a lock another job held:
    "in use by another job (another process)", where no job was. The folder is used unlocked with a warning, as
    atomic_path writes its temporary files there; a refusal for another reason is named as such."""
    import fcntl

    from mme.utils import lock_folder, unlock_folder

    def refused(code: int):
        def flock(fd, how):
            raise OSError(code, os.strerror(code))
        return flock

    monkeypatch.setattr(fcntl, "flock", refused(errno.ENOLCK))
    with caplog.at_level("WARNING"):
        assert lock_folder(tmp_path / "a", "train.out_dir")
    try:
        assert f"train.out_dir '{tmp_path / 'a'}': its file system takes no lock (No locks available), so the folder " \
            "is used unlocked: a second job on it would not be refused" in caplog.text
        assert (tmp_path / "a" / ".lock").read_text().startswith(f"PID {os.getpid()} on ")
    finally:
        unlock_folder(tmp_path / "a")
    monkeypatch.setattr(fcntl, "flock", refused(errno.EINVAL))
    with pytest.raises(ConfigError, match=rf"^train.out_dir '{re.escape(str(tmp_path / 'b'))}': its .lock cannot be "
                                          r"locked \(Invalid argument\)$"):
        lock_folder(tmp_path / "b", "train.out_dir")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="runs a job as another user: needs root")
def test_a_folder_shared_for_writing_shares_its_lock():
    """A teammate resuming a shared cache or run folder (mode 777) was refused for good: "not a writable folder",
    as the .lock the first job left was its owner's only (0644). The lock takes the folder's write bits now, and a
    .lock that another user keeps to themselves is named as such."""
    import tempfile

    from mme.utils import FOLDER_LOCK, lock_folder, unlock_folder

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        folder = base / "shared"
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)
        assert lock_folder(folder, "--out")
        unlock_folder(folder)
        assert (folder / FOLDER_LOCK).stat().st_mode & 0o777 == 0o666
        other = [sys.executable, "-c", "import os; from mme.utils import lock_folder; os.setuid(65534); "
                 f"lock_folder({str(folder)!r}, '--out')"]
        assert subprocess.run(other, capture_output=True, text=True).returncode == 0
        (folder / FOLDER_LOCK).chmod(0o644)
        proc = subprocess.run(other, capture_output=True, text=True)
        assert f"ConfigError: --out '{folder}': its .lock belongs to another user (uid 0)" in proc.stderr
    finally:
        shutil.rmtree(base)


def test_a_users_own_lock_takes_the_write_bits_its_folder_is_given_later_but_not_a_hard_linked_one(tmp_path):
    """A run folder shared with the group after its first job (chmod 2775: a colleague resumes it) kept its .lock
    0644, the owner's alone, where the .lock was set only as it was made. The user's own lock takes the folder's
    write bits at each lock; one with a second name (a hard link to it elsewhere) keeps its mode."""
    from mme.utils import FOLDER_LOCK, lock_folder

    old = os.umask(0o022)
    try:
        folder = tmp_path / "run"
        assert lock_folder(folder, "--out")
        unlock_folder(folder)
        assert (folder / FOLDER_LOCK).stat().st_mode & 0o777 == 0o644
        folder.chmod(0o2775)
        assert lock_folder(folder, "--out")
        unlock_folder(folder)
        assert (folder / FOLDER_LOCK).stat().st_mode & 0o777 == 0o664
        (folder / FOLDER_LOCK).chmod(0o644)
        os.link(folder / FOLDER_LOCK, tmp_path / "elsewhere")
        assert lock_folder(folder, "--out")
        unlock_folder(folder)
        assert (tmp_path / "elsewhere").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_lock_on_a_file_system_that_refuses_modes_is_still_taken(tmp_path, monkeypatch):
    from mme import utils

    def refused(*a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(utils.os, "fchmod", refused)
    assert utils.lock_folder(tmp_path, "--out")
    utils.unlock_folder(tmp_path)


def test_jobs_sharing_a_pid_probe_one_folder_at_once_and_leave_its_files_alone(tmp_path):
    """The writability probe of check_output and lock_folder was named by the PID: two jobs sharing one (PID 1 in
    their containers; here two threads) removed each other's probe, and one was refused, "cannot be written (No
    such file or directory)"; a user's file of that name was emptied and removed."""
    from concurrent.futures import ThreadPoolExecutor

    from mme.utils import check_output

    (tmp_path / f".write-test-{os.getpid()}").write_text("the user's")

    def probe(_):
        for _ in range(1000):
            check_output(tmp_path, "--out", folder=True)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(probe, range(2)))
    assert [p.name for p in tmp_path.iterdir()] == [f".write-test-{os.getpid()}"]
    assert (tmp_path / f".write-test-{os.getpid()}").read_text() == "the user's"


def test_a_run_keeps_its_last_logged_records_in_memory_and_all_in_its_log(synth, tmp_path, monkeypatch):
    """Before: every logged record stayed in memory to the end (about 570 MB over a Kinetics pre-training)."""
    from mme.train import loop
    from mme.train.metrics import read_records

    monkeypatch.setattr(loop, "HISTORY_KEPT", 3)
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=5", FP32)
    assert [r["step"] for r in res.history] == [3, 4, 5]
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]


def test_a_log_line_torn_by_a_crash_does_not_stop_a_resume(synth, tmp_path):
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "train.stop_after=2", FP32)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.9')  # the crash came mid-write
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("3,0.9")
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "train.resume=auto", FP32)
    assert res.step == 4
    assert [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert [ln.split(",")[0] for ln in (tmp_path / "metrics.csv").read_text().splitlines()] == ["step", "1", "2", "3",
                                                                                               "4"]


def test_unreadable_list_lines_are_named_at_the_start_not_as_replaced_videos(synth, tmp_path, caplog):
    """Lines of the training list that are not 'path [label]' were counted in data_failures and reported at the end
    as "2 videos failed and were replaced (see the warnings above)", with no warning above naming them."""
    listed = Path(synth[0].split("=", 1)[1])
    bad = tmp_path / "bad.txt"
    bad.write_text(listed.read_text() + "a.mp4 1 extra\nb.mp4 cat\n")
    with caplog.at_level(logging.WARNING, logger="mme"):
        run("tiny_cpu_pixel", [f"data.list_file={bad}", synth[1]], tmp_path / "run", "train.steps=1",
            "data.max_failure_fraction=0.5", FP32)
    n = len(listed.read_text().splitlines())
    assert f"2 lines of the training list are not 'path [label]' and are left out: {bad}:{n + 1}: " in caplog.text
    assert f"{bad}:{n + 2}: " in caplog.text and "videos failed and were replaced" not in caplog.text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGUSR1,  # (SIGUSR1 is taken as SIGTERM: its path, in CI)
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_signal_stops_the_run_after_its_step_with_a_checkpoint_and_resume_continues(sig, synth, tmp_path):
    """The signal goes to the job's whole process group, as a terminal sends Ctrl-C and Slurm or torchrun send
    SIGTERM: the loader workers must not die under the step that is finishing (a group SIGTERM killed them, and
    the step failed without a checkpoint). Slurm's warning before the time limit (``--signal=USR1@120``) is taken
    as SIGTERM: it ended the run at once, exit 138, no checkpoint, no line. The warning says what another signal
    does by the one received (after a SIGTERM it said "Ctrl-C again to stop at once"). A second job on the folder
    while the run trains is refused naming the holder, and writes nothing there; the lock goes with the run."""
    args = tiny(*synth, f"train.out_dir={tmp_path}", "train.steps=500", "data.num_workers=2", FP32)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=500", "data.num_workers=2", "train.stop_after=1", FP32)
    # (its checkpoint 1 there: the second job is refused as in use, not as another run's checkpoints)
    cmd = [sys.executable, "-m", "mme.cli", "pretrain", "--config", "tiny_cpu_pixel", *args, "train.resume=auto"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log, deadline = tmp_path / "metrics.jsonl", time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(ConfigError, match=rf"in use by another job \(PID {proc.pid} on "):
            run("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "train.seed=1", FP32)
    finally:
        os.killpg(proc.pid, sig)
    if sig != signal.SIGINT:  # a scheduler signals every process of the job, and torchrun forwards its own too
        time.sleep(0.05)
        os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "--resume auto" in err and f"stopped by {sig.name} after step " in err
    again = "Ctrl-C again to stop at once" if sig == signal.SIGINT else \
        "another SIGTERM or SIGUSR1 is taken as this one; Ctrl-C stops at once"
    said = (f"{sig.name}: stopping after this step with a checkpoint ({again})",
            f"{sig.name} while the step waits for its data: stopping with the checkpoint of the step before (none "
            "before a fresh run's first step)")  # (a
    assert any(f"WARNING] {line}\n" in err for line in said), err[-2000:]  # step that waited for its batch: either)
    logged = [json.loads(ln)["step"] for ln in log.read_text().splitlines()]
    assert logged == list(range(1, len(logged) + 1)) and logged[-1] < 500
    assert _steps(tmp_path) == [1, logged[-1]]  # the step it finished, saved
    assert torch.load(ckpt.checkpoint_path(tmp_path, logged[-1]), weights_only=True)["meta"]["run_id"] == \
        json.loads((tmp_path / "run.json").read_text())["run_id"]  # the run's own, not the refused job's
    (tmp_path / f".checkpoint-{logged[-1] + 1:08d}.pt.tmp{dead_pid()}.pt").write_bytes(b"half a checkpoint")
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=500", f"train.stop_after={logged[-1] + 1}",
              "train.resume=auto", FP32)
    assert res.step == logged[-1] + 1 and not list(tmp_path.glob(".*.tmp*"))  # stale temp file removed


STOPPING_A_WORKER = """\
import logging, multiprocessing, os, signal, threading, time
from mme import utils
utils.WAIT_WARNING_S = 0.5
stopped = []
class SigtermOnTheWarning(logging.Handler):  # (to the main thread, which waits: a scheduler's at any time)
    def emit(self, record):
        if stopped and "no batch for" in record.getMessage():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
logging.getLogger("mme.data.dataset").addHandler(SigtermOnTheWarning())
def stop_a_worker(log):
    while not (os.path.isfile(log) and len(open(log).read().splitlines()) >= 2):
        time.sleep(0.01)
    worker = max(multiprocessing.active_children(), key=lambda p: p.pid)
    os.kill(worker.pid, signal.SIGSTOP)
    stopped.append(worker.pid)
def before(i):
    if i == 0:
        threading.Thread(target=stop_a_worker, args=(LOG,), daemon=True).start()
def after(i):
    return stopped
"""


def test_a_stop_signal_while_a_stopped_loader_worker_is_waited_for_saves_the_last_step_and_ends(synth, tmp_path):
    """A loader worker stopped (SIGSTOP) held the run for good without a word: a SIGTERM then logged "stopping after
    this step with a checkpoint", and no step, no checkpoint, no end followed (a second SIGTERM, nothing; a Ctrl-C
    left the process waiting for the stopped worker at its exit). Now the wait is warned about, naming the worker;
    a SIGTERM during it writes the checkpoint of the last step done and the command ends, the worker killed; the run
    resumed from there has the losses of a run never stopped."""
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"

    def command(out, *extra):
        return ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={out}", "train.steps=6",
                                                                "model.depth=1", FP32, *extra)]

    proc = in_one_process([command(stopped, "data.num_workers=2"), command(whole)],
                          f"LOG = {str(stopped / 'metrics.jsonl')!r}\n{STOPPING_A_WORKER}", timeout=120)
    (code, err, [pid]), (whole_code, whole_err, _) = proc.ran
    assert code == 128 + signal.SIGTERM, err[-3000:]
    warned = re.search(r"WARNING\] (.*): no batch for [01] s, still waited for", err)
    assert warned and re.search(rf"\bdata loader worker [01] \(pid {pid}, stopped: kill -CONT resumes it\)",
                                warned[1]), err[-3000:]  # (whichever worker owes the batch)
    assert ("SIGTERM while the step waits for its data: stopping with the checkpoint of the step before (none before "
            "a fresh run's first step)") in err
    logged = [json.loads(ln)["step"] for ln in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= logged[-1] < 6 and _steps(stopped) == [logged[-1]], err[-3000:]
    assert err.strip().splitlines()[-1].endswith(f"stopped by SIGTERM after step {logged[-1]} of 6, saved as "
                                                 f"{ckpt.checkpoint_path(stopped, logged[-1])}; the same command with "
                                                 "--resume auto (train.resume=auto) continues from there")
    assert not Path(f"/proc/{pid}").exists()  # (killed and reaped: the process ended)
    assert whole_code == 0, whole_err[-3000:]
    run("tiny_cpu_pixel", synth, stopped, "train.steps=6", "model.depth=1", FP32, "train.resume=auto")

    def losses(folder):
        return [json.loads(ln)["loss"] for ln in (folder / "metrics.jsonl").read_text().splitlines()]

    assert losses(stopped) == losses(whole) and len(losses(whole)) == 6


def test_a_stop_during_a_micro_batch_ends_the_steps_next_wait_at_once_with_the_step_before(synth, tmp_path,
                                                                                             monkeypatch, capsys):
    """train.accum_steps=2, SIGTERM during step 3's first micro-batch: the wait for its second, whose worker may never
    send it (stalled), went on (for good), the stop already received ignored. It ends at once: the checkpoint is of
    step 2, the first micro-batch's gradients dropped (not half applied), so the run resumed from it has the losses of
    a run never stopped. The checkpoint has its record (train.log_every=3): none was logged, the resumed run's first
    record covering steps the checkpoint's did not count."""
    from mme import cli
    from mme.train import loop

    real_seed = loop.seed_dropout

    def signalled_in_step_3s_first_micro_batch(seed, step, micro_batch):
        if step == 2 and micro_batch == 0:  # (run.step counts the steps done: step 3 is the one after 2)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_seed(seed, step, micro_batch)

    def argv(out):
        return ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={out}", "train.steps=4",
                                                                 "train.accum_steps=2", "train.log_every=3",
                                                                 "model.depth=1", FP32)]

    def records(folder, key="steps"):
        return [(r["step"], r[key]) for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]

    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    monkeypatch.setattr(loop, "seed_dropout", signalled_in_step_3s_first_micro_batch)
    assert cli.main(argv(stopped)) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines()[-1].startswith("mme pretrain: error: stopped by SIGTERM after step 2 ")
    assert _steps(stopped) == [2] and records(stopped) == [(2, 2)]
    monkeypatch.undo()
    assert cli.main([*argv(stopped), "--resume", "auto"]) == 0 and cli.main(argv(whole)) == 0

    assert records(stopped) == [(2, 2), (3, 1), (4, 1)] and records(whole) == [(3, 3), (4, 1)]
    assert records(stopped, "loss")[-1] == records(whole, "loss")[-1]  # (step 4's alone, after the same step 3)


def test_a_stop_while_a_runs_first_step_waits_for_its_data_names_what_is_kept_on_every_rank(synth, tmp_path,
                                                                                            monkeypatch, capsys):
    """SIGTERM while a run's first step waits for its data: a fresh run has nothing before it (nothing trained,
    nothing saved); a resumed one keeps the checkpoint it resumed from, which a rank other than 0 said was nothing
    (it decided by the checkpoint's path, which rank 0 alone looked up)."""
    from mme import cli
    from mme.train import loop

    real_batches, real_last = loop.micro_batches, loop._last_checkpoint

    def signalled_in_first_wait(run):
        batches = real_batches(run)
        os.kill(os.getpid(), signal.SIGTERM)  # (at the first next(): in the step's wait)
        yield from batches

    def on_rank_1(run, path):
        with monkeypatch.context() as m:
            m.setattr(loop.dist, "is_main", lambda: False)
            return real_last(run, path)

    argv = ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path}", "train.steps=4",
                                                             "model.depth=1", FP32)]
    with monkeypatch.context() as m:
        m.setattr(loop, "micro_batches", signalled_in_first_wait)
        assert cli.main(argv) == 128 + signal.SIGTERM
        assert capsys.readouterr().err.splitlines()[-1] == (
            "mme pretrain: error: stopped by SIGTERM before its first step: nothing trained, nothing saved")
    assert cli.main([*argv, "train.stop_after=2", "--resume", "auto"]) == 0 and _steps(tmp_path) == [2]
    capsys.readouterr()
    monkeypatch.setattr(loop, "micro_batches", signalled_in_first_wait)
    monkeypatch.setattr(loop, "_last_checkpoint", on_rank_1)
    assert cli.main([*argv, "--resume", "auto"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mme pretrain: error: stopped by SIGTERM after step 2 of 4, saved as {ckpt.checkpoint_path(tmp_path, 2)}; "
        "the same command with --resume auto (train.resume=auto) continues from there")


def test_a_checkpoints_rename_is_made_durable_by_an_fsync_of_its_folder(tmp_path, monkeypatch):
    """A checkpoint's file was fsynced before its rename, not its folder after: a machine losing power right after the
    rename could come back without it (the newest checkpoint lost, the run resumed from the one before). The folder is
    fsynced after the rename (atomic_path(sync=True), which checkpoints use); a write without sync is not slowed."""
    import stat

    from mme.utils import atomic_path

    synced = []
    fsync = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode) and os.fstat(fd).st_ino == (tmp_path.stat().st_ino)
                      and (tmp_path / "ck.pt").exists())  # (the folder, once the file is under its name)
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    with atomic_path(tmp_path / "ck.pt", sync=True) as tmp:
        tmp.write_bytes(b"weights")
    assert synced == [False, True] and (tmp_path / "ck.pt").read_bytes() == b"weights"
    synced.clear()
    with atomic_path(tmp_path / "other.json") as tmp:
        tmp.write_text("{}")
    assert synced == []


def test_a_stale_temporary_file_that_cannot_be_removed_is_warned_about_and_left(tmp_path, refuse_removal, caplog):
    """Taking a folder removes the temporary files of interrupted writes: one it could not remove (an immutable
    file, another user's in a shared folder) ended the run, or `mme embed`, in a bare PermissionError traceback.
    Any hidden name holding ".tmp" was removed, a user's file (``.notes.tmpl``) or folder too, and a live process's
    temporary file: only those of atomic_path's writes whose process is gone are now. The cleanup of an export
    (a cache, features) left one it could not remove without a word: warned about alike."""
    pid = dead_pid()
    stuck, gone = tmp_path / f".checkpoint-00000003.pt.tmp{pid}.pt", tmp_path / f".run.json.tmp{pid}.json"
    stuck.write_bytes(b"half a checkpoint")
    gone.write_text("{")
    kept = [tmp_path / ".notes.tmpl", tmp_path / f".run.json.tmp{os.getpid()}.json", tmp_path / ".x.tmp12.json",
            tmp_path / ".data.csv.tmp20240101", tmp_path / ".notes.tmp20240101"]
    for p in kept:
        p.write_text("mine")
    (tmp_path / ".drafts.tmp").mkdir()
    kept.append(tmp_path / ".drafts.tmp")
    with refuse_removal(stuck, errno.EPERM), caplog.at_level(logging.INFO):
        assert run_folder.take(tmp_path) == tmp_path
    unlock_folder(tmp_path)
    assert stuck.exists() and not gone.exists() and all(p.exists() for p in kept)
    assert f"{stuck}: could not be removed (Operation not permitted); it is the temporary file of an interrupted " \
        "write, left there: nothing reads it" in caplog.text
    assert f"removed {gone}, the temporary file" in caplog.text and f"removed {stuck}" not in caplog.text
    caplog.clear()
    with refuse_removal(stuck, errno.EPERM), caplog.at_level(logging.INFO):
        remove_stale_temps([tmp_path / "checkpoint-00000003.pt"])  # an export's, a cache's, features' cleanup
    assert stuck.exists() and f"{stuck}: could not be removed (Operation not permitted); it is the temporary " \
        "file of an interrupted write" in caplog.text


def test_taking_a_folder_keeps_the_temporary_file_a_live_writer_holds(tmp_path, caplog):
    """A writer in another PID namespace (another container, a node sharing the file system) has a PID that means
    nothing here: its temporary file looks stale by the PID, while the lock atomic_path holds on it says it is being
    written. Taking a folder removed it by the PID alone (an export's cleanup checked the lock), and the writer's
    file was lost. Held here by this process, on a file named with a dead PID."""
    import fcntl

    pid = dead_pid()
    held, stale = tmp_path / f".encoder.safetensors.tmp{pid}.safetensors", tmp_path / f".run.json.tmp{pid}.json"
    held.write_bytes(b"half the weights")
    stale.write_text("{")
    fd = os.open(held, os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with caplog.at_level(logging.INFO):
            assert run_folder.take(tmp_path) == tmp_path
        unlock_folder(tmp_path)
    finally:
        os.close(fd)
    assert held.read_bytes() == b"half the weights" and not stale.exists()
    assert f"removed {stale}" in caplog.text and str(held) not in caplog.text


def test_taking_a_shared_folder_warns_about_and_keeps_another_users_temporary_file_it_may_not_open():
    """Another user's temporary file, readable by its owner only, in a folder all may write: this user may remove it
    but not open it to test its lock, so whether a live writer of its owner holds it (in another container or on
    another machine, where its PID, dead here, means nothing) cannot be told. It was removed by its PID alone, and
    such a writer lost its file; it is warned about and kept, as the warning says, for its owner to remove.
    As root, the folder is taken as another user (nobody); else the file is the user's own, mode 000."""
    import tempfile

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        folder = base / "shared"
        folder.mkdir()
        folder.chmod(0o777)
        stale = folder / f".checkpoint-00000010.pt.tmp{dead_pid()}.pt"
        stale.write_bytes(b"half a checkpoint")
        stale.chmod(0o000)
        take = ("import logging, os, sys\n"
                "from mme.train import run_folder\n"
                "from mme.utils import unlock_folder\n"
                "logging.basicConfig(level=logging.INFO)\n"
                "if os.geteuid() == 0:  # (imported first: Python's own files may be root's only)\n"
                "    os.setgid(65534)\n"
                "    os.setuid(65534)\n"
                "run_folder.take(sys.argv[1])\n"
                "unlock_folder(sys.argv[1])\n")
        proc = subprocess.run([sys.executable, "-c", take, str(folder)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        stale.chmod(0o600)  # (this user's own, where not root)
        assert stale.read_bytes() == b"half a checkpoint" and "removed" not in proc.stderr
        assert f"{stale}: could not be opened to test its lock (Permission denied), which a live writer in another " \
            "container or on another machine may hold; it is the temporary file of a write, left there: its owner " \
            "may remove it" in proc.stderr
    finally:
        shutil.rmtree(base)


def test_a_fifo_or_symlink_named_like_a_stale_temporary_file_is_removed_unopened(tmp_path):
    """A FIFO named like a stale temporary file (or a symlink to one) was opened for its lock, and that open waits
    for a writer forever: taking the folder hung. What is not a regular file is no write's, removed without opening
    it (a symlink itself, not what it names)."""
    import threading

    pid = dead_pid()
    fifo, to_fifo, to_file = (tmp_path / f".{name}.tmp{pid}.pt" for name in ("a.pt", "b.pt", "c.pt"))
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "pipe")
    to_fifo.symlink_to(tmp_path / "pipe")
    (tmp_path / "mine.txt").write_text("mine")
    to_file.symlink_to(tmp_path / "mine.txt")
    cleanup = threading.Thread(target=remove_stale_temps_in, args=(tmp_path,), daemon=True)
    cleanup.start()
    cleanup.join(10)
    hung = cleanup.is_alive()
    for pipe in (fifo, tmp_path / "pipe"):  # a writer's end lets a hung open go on
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert not hung
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "pipe"]
    assert (tmp_path / "mine.txt").read_text() == "mine"


def test_stale_temporary_files_of_a_folder_that_is_gone_are_none(tmp_path, monkeypatch):
    """A folder removed by another process while its stale temporary files were looked for (after the glob found
    it a folder, before it listed it) raised FileNotFoundError, as Path.glob raises it there (Python 3.10 to 3.12;
    3.13's skips the folder). The race is made in Path.glob itself: what it calls to list a folder differs between
    versions."""
    folder, glob = tmp_path / "gone", Path.glob
    folder.mkdir()

    def removed_meanwhile(self, *args, **kwargs):
        if self == folder:
            folder.rmdir()
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
        return glob(self, *args, **kwargs)

    monkeypatch.setattr(Path, "glob", removed_meanwhile)
    remove_stale_temps_in(folder)
    assert list(tmp_path.iterdir()) == []


def test_a_sigterm_during_start_up_stops_with_the_line_a_signal_gets(synth, tmp_path):
    """A scheduler's SIGTERM before the training loop (set-up reads a long list) ended the job without a word."""
    code = ("import sys, time; import mme.train.engine as engine; "
            "engine.begin = lambda *a, **k: (print('set-up', flush=True), time.sleep(60)); "
            "from mme.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
                             f"train.out_dir={tmp_path}", FP32], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "set-up\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert err.endswith("mme pretrain: stopped by SIGTERM; what was written is kept (the same command with --resume "
                        "auto continues from the run's newest checkpoint, if it wrote one)\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_while_the_command_parses_its_arguments_stops_with_the_line_a_signal_gets(sig, tmp_path):
    """A SIGTERM in a command's first second (its arguments parsed, its modules imported: argparse's type functions
    import mme.config and yaml) ended it without a word, exit -15; a Ctrl-C there was a KeyboardInterrupt
    traceback, exit -2."""
    code = ("import sys, time; import mme.cli as cli; build = cli.build_parser; "
            "cli.build_parser = lambda: (print('parsing', flush=True), time.sleep(60), build())[2]; "
            "sys.exit(cli.main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--config", "tiny_cpu_pixel",
                             f"train.out_dir={tmp_path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "parsing\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    how = "interrupted" if sig == signal.SIGINT else f"stopped by {sig.name}"
    assert (proc.returncode, err) == (128 + sig, f"mme: {how}; what was written is kept (run it again)\n"), err[-2000:]


def test_a_ctrl_c_while_numpy_is_imported_at_start_up_stops_the_command_with_the_line_a_signal_gets(synth, tmp_path):
    """torch's C start-up imports numpy where it is not yet imported, and drops any exception raised there: a Ctrl-C
    in it left numpy half-imported and the run went on, to fail mid-training with "module 'numpy' has no attribute
    'matrix'" (exit 1). The Ctrl-C is raised as numpy imports numpy.matrixlib, in a fresh interpreter; the command's
    imports hold it back and end, then it stops the command before the run begins."""
    code = ("import importlib.abc, signal, sys\n"
            "class CtrlCInNumpysImport(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy.matrixlib':\n"
            "            sys.meta_path.remove(self)\n"
            "            signal.raise_signal(signal.SIGINT)\n"
            "sys.meta_path.insert(0, CtrlCInNumpysImport())\n"
            "assert 'numpy' not in sys.modules\n"
            "from mme.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", code, "pretrain", "--config", "tiny_cpu_mme",  # (numpy in its targets)
                           *tiny(*synth, f"train.out_dir={out}", "train.steps=2", FP32)],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (130, PRETRAIN_INTERRUPTED + "\n"), proc.stderr[-2000:]
    assert not out.exists()  # stopped before the run began


SLOW_NUMPY_IMPORT = ("import importlib.abc, sys, time\n"
                     "class SlowNumpyImport(importlib.abc.MetaPathFinder):\n"
                     "    def find_spec(self, name, path=None, target=None):\n"
                     "        if name == 'numpy.matrixlib':\n"
                     "            sys.meta_path.remove(self)\n"
                     "            print('importing', flush=True)\n"
                     "            time.sleep({seconds})\n"
                     "sys.meta_path.insert(0, SlowNumpyImport())\n"
                     "assert 'numpy' not in sys.modules\n")
"""Python code that makes a command's imports slow (``seconds``, as numpy imports numpy.matrixlib), printing
``importing`` as they begin: the code before a command in a fresh interpreter."""


def _the_mme_script() -> str:
    """The code of the ``mme`` script pip writes for pyproject.toml's ``[project.scripts]`` entry (``from module
    import function``, ``sys.exit(function())``), as the installed package's metadata records it (read alike on
    every Python: tomllib is 3.11's)."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="mme")
    return f"import sys\nfrom {script.module} import {script.attr}\nsys.exit({script.attr}())"


@pytest.mark.parametrize("entry, second", [("script", signal.SIGINT), ("mme", signal.SIGINT),
                                           ("mme.cli", signal.SIGTERM),
                                           pytest.param("script", signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_second_signal_while_the_command_imports_its_modules_stops_it_at_once(entry, second, tmp_path):
    """Ctrl-C, then Ctrl-C (or SIGTERM) again while a command imports its modules (2-12 s on a busy machine): the
    first is held until the imports are done, and the second was held too, so the command went on importing. In the
    command's own process, however started (its script, as pip writes it from pyproject.toml; ``python -m mme``;
    ``python -m mme.cli``), it ends at once with the second's line and exit status; nothing was written yet. The
    imports are made slow (60 s) in a fresh interpreter."""
    start = _the_mme_script() if entry == "script" else {
        "mme": "import runpy\nrunpy.run_module('mme', run_name='__main__')",
        "mme.cli": "import runpy\nrunpy.run_module('mme.cli', run_name='__main__', alter_sys=True)"}[entry]
    code = SLOW_NUMPY_IMPORT.format(seconds=60) + start
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", code, "pretrain", "--config", "tiny_cpu_mme",
                             f"train.out_dir={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "importing\n"
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the first is held while the imports go on
        sent = time.monotonic()
        proc.send_signal(second)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    how = "interrupted" if second == signal.SIGINT else "stopped by SIGTERM"
    assert (proc.returncode, err) == (128 + second, f"mme pretrain: {how}; what was written is kept (the same command "
                                      "with --resume auto continues from the run's newest checkpoint, if it wrote "
                                      "one)\n"), err[-2000:]
    assert took < 20 and not out.exists()  # at once: the imports had 59 s to go (held, it waited them out)


def test_a_python_caller_of_main_keeps_its_process_on_a_second_signal_while_the_command_imports(tmp_path):
    """A Python caller of mme.cli.main (a notebook, a script) with its own file not yet flushed and an atexit hook:
    two Ctrl-Cs while the command imports its modules ended the caller's process at once (os._exit), its file empty,
    its hook not run. Both are held until the imports are done; main returns the first's status, and the caller's code
    goes on after it."""
    results, out = tmp_path / "results.txt", tmp_path / "run"
    code = (SLOW_NUMPY_IMPORT.format(seconds=1.5) +
            "import atexit\n"
            f"results = open({str(results)!r}, 'w')\n"
            "results.write(\"caller's results\\n\")  # buffered: not flushed yet\n"
            "atexit.register(lambda: print('caller atexit ran', file=sys.stderr))\n"
            "from mme.cli import main\n"
            f"status = main(['pretrain', '--config', 'tiny_cpu_mme', 'train.out_dir={out}'])\n"
            "print('main returned', status, file=sys.stderr)\n"
            "results.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "importing\n"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, PRETRAIN_INTERRUPTED + "\nmain returned 130\ncaller atexit ran\n"), err[-2000:]
    assert results.read_text() == "caller's results\n" and not out.exists()
    assert took > 1.2  # held until the imports were done (1.5 s from 'importing'; the second Ctrl-C at 0.5 s)


def test_a_repeated_sigterm_in_the_loop_is_absorbed_and_a_ctrl_c_stops_at_once():
    """A rank under torchrun and a scheduler gets two SIGTERMs a few ms apart: the second one ended the run at once,
    without the checkpoint the first one asked for."""
    from mme.train.interrupts import StopRequests

    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


class _CtrlCDroppedOnDeletion:
    """Its deletion sends SIGINT, whose KeyboardInterrupt, raised in ``__del__``, Python drops ("Exception ignored"),
    as where the garbage collector runs a weakref callback."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (the KeyboardInterrupt dropped)
def test_a_dropped_ctrl_c_is_sent_again_once_after_a_long_passs_item_from_the_main_thread_alone():
    """A Ctrl-C whose exception Python dropped, recorded by the CLI's StageStops and mme demo's in it, was sent again
    after every item of a pass, by each of them: a training loop's validation took the first as its stop after the
    step with a checkpoint, the next as a second Ctrl-C (stop at once, no checkpoint); from a pass in another thread
    it was sent after each of its items, a KeyboardInterrupt in the main thread each time. It is sent once, from the
    main thread."""
    import threading

    from mme.train.interrupts import HeldBack, StageStops
    from mme.utils import progress_bar

    def a_pass():
        for _ in progress_bar(range(3), 3, None, "item", show=False):
            pass

    again = []
    with StageStops() as cli_stops, StageStops() as demo_stops:
        _CtrlCDroppedOnDeletion()
        with HeldBack(again=again.append) as sent:  # (records the first signal sent, and the others in again)
            worker = threading.Thread(target=a_pass)
            worker.start()
            worker.join()
            time.sleep(0.05)  # (Python runs the handler of a signal sent from a thread in the main thread)
            from_the_thread = sent.received
            a_pass()
            a_pass()
    assert (cli_stops.received, demo_stops.received) == (signal.SIGINT, signal.SIGINT)
    assert (from_the_thread, sent.received, again) == (None, signal.SIGINT, [])


@pytest.mark.parametrize("accum", [1, 2])
def test_a_ctrl_c_dropped_before_the_training_loop_stops_the_run_after_its_first_step(synth, tmp_path, monkeypatch,
                                                                                       capsys, caplog, accum):
    """A Ctrl-C whose exception Python dropped before the training loop (here a ``__del__`` as it starts): the run
    trained every step (the loop draws its bar, never iterating it), printed its finished summary, then the command
    said it was interrupted. The loop takes it as a Ctrl-C during its first step: it stops after it with a
    checkpoint, which the same command with --resume auto continues. With train.accum_steps=2 the step's second
    micro-batch took the stop as one received during the step: the step dropped, 'nothing trained, nothing saved'."""
    from mme import cli
    from mme.train import loop

    real_train = loop._train

    def dropped_then_train(run):
        _CtrlCDroppedOnDeletion()
        return real_train(run)

    argv = ["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path}", "train.steps=2",
                                                             "train.ckpt_every=100", f"train.accum_steps={accum}",
                                                             FP32)]
    monkeypatch.setattr(loop, "_train", dropped_then_train)
    code = cli.main(argv)
    printed = capsys.readouterr()
    assert code == 130 and printed.err.splitlines()[-1] == (
        f"mme pretrain: error: stopped by SIGINT after step 1 of 2, saved as {tmp_path / 'checkpoint-00000001.pt'}; "
        "the same command with --resume auto (train.resume=auto) continues from there"), printed.err[-2000:]
    assert "SIGINT: stopping after this step with a checkpoint (Ctrl-C again to stop at once)" in caplog.text
    assert "waits for its data" not in caplog.text
    assert '"finished": true' not in printed.out  # (no summary of a finished run)
    assert _steps(tmp_path) == [1]
    monkeypatch.undo()
    assert cli.main([*argv, "--resume", "auto"]) == 0 and _steps(tmp_path) == [1, 2]  # (resumed at step 1)


def test_a_second_ctrl_c_during_a_checkpoint_write_stops_at_once(synth, tmp_path, monkeypatch, capsys):
    """Ctrl-C twice while the checkpoint of step 2 is written: torch's writer replaces the KeyboardInterrupt raised in
    its write to the file by a RuntimeError of its own, which read as a disk too small: 'could not write the
    checkpoint of step 2 ([enforce fail at inline_container.cc:672] . unexpected pos 46 vs 0); it needs about 3 MiB,
    N MiB free', exit 1. It stops as interrupted, exit 130, the checkpoint of step 1 kept, no temporary file left."""
    from mme import cli

    real_save, saves = torch.save, iter(range(1, 100))

    class CtrlCTwiceAtItsThirdWrite:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the first asks the loop to stop after this step
                os.kill(os.getpid(), signal.SIGINT)  # the second raises here, in the write torch's writer called
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(ckpt.torch, "save", lambda obj, f: real_save(obj, CtrlCTwiceAtItsThirdWrite(f) if
                                                                      next(saves) == 2 else f))
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path}",
                     "train.steps=4", "train.ckpt_every=1", FP32)])
    err = capsys.readouterr().err
    assert code == 130 and err.strip().splitlines()[-1] == PRETRAIN_INTERRUPTED, err[-2000:]
    assert "could not write" not in err and _steps(tmp_path) == [1] and not list(tmp_path.glob(".*.tmp*"))


def test_a_second_ctrl_c_during_the_loader_workers_shutdown_stops_at_once(synth, tmp_path, monkeypatch, capsys):
    """Ctrl-C twice as the loop stops its loader's workers: the second's KeyboardInterrupt was raised in the
    shutdown, which the garbage collector ran as it finalised the loader's batches, and dropped ("Exception ignored
    in: <generator object _batches>", a traceback): the run went on to say it was stopped with its checkpoint. It
    stops at once, in one line, exit 130, the workers stopped all the same."""
    import multiprocessing

    from mme import cli
    from mme.data import dataset

    real_stop = dataset._stop_workers

    def ctrl_c_twice_then_stop(batches):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the first asks the loop to stop after this step
            os.kill(os.getpid(), signal.SIGINT)  # the second raises here, in the shutdown
        finally:
            real_stop(batches)

    monkeypatch.setattr(dataset, "_stop_workers", ctrl_c_twice_then_stop)
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path}",
                     "train.steps=1", "data.num_workers=1", FP32)])
    err = capsys.readouterr().err
    assert code == 130 and err.strip().splitlines()[-1] == PRETRAIN_INTERRUPTED, err[-2000:]
    assert _steps(tmp_path) == [1] and multiprocessing.active_children() == []


def test_a_ctrl_c_during_a_test_passs_workers_shutdown_is_not_dropped(synth, monkeypatch):
    """A test or validation pass left stopped (its consumer's Ctrl-C, or a consumer that stops early) had its
    loader's batches finalised by the garbage collector, which dropped a KeyboardInterrupt of the workers' shutdown
    ("Exception ignored in: <generator object _batches>"): it reaches the one closing the pass, the workers stopped."""
    import multiprocessing

    from mme.data import dataset
    from mme.eval.testing import build_test_set, iter_test_batches
    from mme.models.config import ModelConfig

    real_stop = dataset._stop_workers

    def ctrl_c_then_stop(batches):
        try:
            raise KeyboardInterrupt
        finally:
            real_stop(batches)

    monkeypatch.setattr(dataset, "_stop_workers", ctrl_c_then_stop)
    list_file, root = (o.split("=", 1)[1] for o in synth)
    data = build_test_set(list_file, ModelConfig(img_size=64, num_frames=8), clips=1, crops=1, stride=1, root=root)
    passing = iter_test_batches(data, batch_size=2, num_workers=1, progress=False)
    assert next(passing)["label"].numel() == 2
    with pytest.raises(KeyboardInterrupt):
        passing.close()
    assert multiprocessing.active_children() == []


def test_a_checkpoint_torch_fails_to_save_for_another_reason_than_a_write_says_no_space(synth, tmp_path, monkeypatch):
    """torch's own RuntimeError in torch.save, none of its writes' (no memory for a GPU tensor's copy), was made an
    OSError without errno, so the line gave the space needed and free, as for a full disk."""
    def no_memory(obj, f):
        torch.empty(2**50, dtype=torch.uint8)  # torch's allocator refuses a PiB: its RuntimeError, as torch.save's

    monkeypatch.setattr(ckpt.torch, "save", no_memory)
    with pytest.raises(CheckpointError) as info:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", FP32)
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}: could not write the checkpoint of step 1 \(\[enforce fail at "
                        r"alloc_cpu\.cpp:\d+\] .*DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                        r"\d+ bytes\. Error code 12 \(Cannot allocate memory\)\)\. Kept: no earlier checkpoint",
                        str(info.value)), info.value
    assert not list(tmp_path.glob(".*.tmp*"))


def test_a_rank_stopped_by_another_ranks_signal_ends_as_interrupted(synth, tmp_path, monkeypatch):
    """Under torchrun a signal may reach some ranks only: the others stopped after the same step, but returned as
    finished (exit 0), so fine-tuning would have gone on to its tests alone. Another rank's SIGTERM at step 2 is
    played here by the collective that joins the ranks' signals."""
    from mme.errors import Interrupted
    from mme.train import distributed, loop

    calls, joined = iter(range(1, 100)), distributed.max_over_ranks
    monkeypatch.setattr(loop.dist, "max_over_ranks", lambda t, device: torch.tensor([15 if next(calls) == 2 else 0])
                        if t.numel() == 1 else joined(t, device))
    with pytest.raises(Interrupted, match=r"stopped by SIGTERM \(sent to another rank\) after step 2 of 50") as info:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=50", FP32)
    assert info.value.exit_code == 143 and ckpt.list_checkpoints(tmp_path)[-1].name == "checkpoint-00000002.pt"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_on_the_last_step_or_after_it_ends_the_command_as_stopped(sig, synth, tmp_path, monkeypatch, capsys):
    """Was: a Ctrl-C or SIGTERM on a run's last step (or while its last checkpoint was written) let the run finish
    and the command end with exit 0, so ``mme pretrain ... && mme finetune ...`` went on after the user's Ctrl-C.
    The command now ends as stopped, exit 130 / 143, its one line saying that the run is finished and saved."""
    from mme import cli
    from mme.train import loop

    real_step, real_save = loop.train_step, loop.save

    def signalled_on_the_last_step(run, stream, stop):
        if run.step == run.total_steps - 1:
            os.kill(os.getpid(), sig)
        return real_step(run, stream, stop)

    def signalled_while_the_last_checkpoint_is_written(run):  # after the step's check of the signals
        os.kill(os.getpid(), sig)
        return real_save(run)

    for case, patch in (("on", ("train_step", signalled_on_the_last_step)),
                        ("after", ("save", signalled_while_the_last_checkpoint_is_written))):
        monkeypatch.setattr(loop, *patch)
        out = tmp_path / case
        code = cli.main(["pretrain", "--config", "tiny_cpu_pixel",
                         *tiny(*synth, f"train.out_dir={out}", "train.steps=3", FP32)])
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert code == 128 + sig and err.splitlines()[-1] == (
            f"mme pretrain: error: stopped by {sig.name} after step 3 of 3, its last: the run's training is finished, "
            f"saved as {out / 'checkpoint-00000003.pt'}"), err[-2000:]
        assert _steps(out) == [3] and (out / "loss.png").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_loops_last_check_of_the_signals_says_no_step_follows_and_ends_as_stopped(
        sig, synth, tmp_path, monkeypatch, capsys, caplog):
    """A signal after the loop's last join of the signals (after the loss curve), before the loop ended, was caught
    with the warning ``SIGTERM: stopping after this step with a checkpoint``, though no step followed, and then
    dropped: the run ended as finished, exit 0. It now says once that no step follows and how the run ends, and the
    command ends as stopped, exit 130 / 143, as a signal an instant later does (the rank's own, not agreed)."""
    from mme import cli
    from mme.train import loop

    real_finish, real_check = loop._finish_logs, loop._stop_signal
    finished_logs = []

    def logs_finished(*args, **kwargs):
        real_finish(*args, **kwargs)
        finished_logs.append(True)

    def signalled_after_the_last_check(stop, device):
        agreed = real_check(stop, device)
        if finished_logs:  # the loop's last check, after the loss curve
            os.kill(os.getpid(), sig)
        return agreed

    monkeypatch.setattr(loop, "_finish_logs", logs_finished)
    monkeypatch.setattr(loop, "_stop_signal", signalled_after_the_last_check)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="mme.train.interrupts"):
        code = cli.main(["pretrain", "--config", "tiny_cpu_pixel",
                         *tiny(*synth, f"train.out_dir={out}", "train.steps=2", FP32)])
    assert finished_logs == [True]
    said = [r.getMessage() for r in caplog.records if r.name == "mme.train.interrupts"]
    assert said == [f"{sig.name} after the run's last step: no step follows; it ends as stopped (exit {128 + sig}), "
                    "its last checkpoint kept"]
    err = capsys.readouterr().err
    assert code == 128 + sig and err.splitlines()[-1] == (
        f"mme pretrain: error: stopped by {sig.name} after step 2 of 2, its last: the run's training is finished, "
        f"saved as {out / 'checkpoint-00000002.pt'}"), err[-2000:]
    assert _steps(out) == [2] and (out / "loss.png").is_file()


def _finish_whose_collection_takes_a_signal(monkeypatch, sig: signal.Signals) -> list:
    """``engine.finish`` whose garbage collection (a DDP run's: :func:`mme.train.engine._collected_at_finish`) runs a
    weakref callback that sends ``sig`` to the process, as a user's Ctrl-C or a scheduler's SIGTERM sends it (any
    thread may take it: tqdm's monitor is alive); the callbacks made, to check that the collection ran them."""
    import weakref

    from mme.train import engine

    real_finish, callbacks = engine.finish, []
    monkeypatch.setattr(engine, "_collected_at_finish", lambda step_model, before: True)

    class Cycle:
        pass

    def finish(run, before, result=None, failing=False):
        garbage = Cycle()
        garbage.itself = garbage  # freed by the collection alone
        callbacks.append(weakref.ref(garbage, lambda _: os.kill(os.getpid(), sig)))
        del garbage
        real_finish(run, before, result, failing)

    monkeypatch.setattr(engine, "finish", finish)
    return callbacks


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (before: the dropped exception)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_runs_teardown_ends_the_command_as_stopped(sig, synth, tmp_path, monkeypatch, capsys):
    """A signal once the run has ended (its summary line printed), while ``engine.finish`` collects the run's
    garbage: its KeyboardInterrupt or Terminated was raised inside a weakref callback of the garbage collector, which
    dropped it ("Exception ignored ... Terminated"), and the command ended as finished, exit 0. The teardown holds
    it back and ends, and the command ends as stopped, exit 130 / 143, saying the run's work is done and kept."""
    from mme import cli
    from mme.utils import held_folders

    callbacks = _finish_whose_collection_takes_a_signal(monkeypatch, sig)
    out, threads = tmp_path / "run", torch.get_num_threads()
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={out}", "train.steps=2",
                                                                     "train.threads=1", FP32)])
    printed = capsys.readouterr()
    assert callbacks[0]() is None  # the collection ran the callback
    assert "Exception ignored" not in printed.err
    assert code == 128 + sig and printed.err.splitlines()[-1] == (
        f"mme pretrain: error: stopped by {sig.name} as the job ended, its work done: what it wrote is kept in "
        f"{out}"), printed.err[-2000:]
    assert json.loads(printed.out.splitlines()[-1])["step"] == 2 and _steps(out) == [2]
    assert out.resolve() not in held_folders() and torch.get_num_threads() == threads  # the teardown went on


@pytest.mark.parametrize("steps, where", [  # (each place and each kind of run in CI, the other pairs with -m slow)
    ("finished", "garbage collection"), ("stopped at train.stop_after", "leaving the process group"),
    *(pytest.param(*case, marks=pytest.mark.slow) for case in (("finished", "leaving the process group"),
                                                               ("stopped at train.stop_after", "garbage collection")))])
def test_a_ctrl_c_during_a_library_runs_teardown_is_raised_once_the_caller_has_its_state_back(where, steps, synth,
                                                                                                tmp_path, monkeypatch):
    """From Python (no CLI): a Ctrl-C while ``engine.finish`` tears the run down was dropped, raised inside a weakref
    callback of the garbage collector (the run returned as finished), or cut the teardown short, leaving the caller
    with the run's threads and generators. It waits until the teardown is done, then stops the caller with its
    threads and its generators' states back: a run that did all its steps as one stopped after its last step
    (Interrupted, its result kept: mme demo keeps its row), else by the caller's KeyboardInterrupt."""
    from mme.train import distributed as dist

    real_shutdown = dist.shutdown

    def shutdown_that_takes_a_signal():
        os.kill(os.getpid(), signal.SIGINT)
        real_shutdown()

    if where == "garbage collection":
        _finish_whose_collection_takes_a_signal(monkeypatch, signal.SIGINT)
    else:
        monkeypatch.setattr(dist, "shutdown", shutdown_that_takes_a_signal)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # the caller's, not the run's train.threads=1
    rng = torch.get_rng_state()
    finished = steps == "finished"
    try:
        with pytest.raises(Interrupted if finished else KeyboardInterrupt) as stopped:
            run("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=2", "train.threads=1", "train.seed=7", FP32,
                *([] if finished else ["train.stop_after=2", "train.steps=3"]))
        assert torch.get_num_threads() == threads + 1 and torch.equal(torch.get_rng_state(), rng)
    finally:
        torch.set_num_threads(threads)
    if finished:
        assert stopped.value.exit_code == 130 and stopped.value.finished.step == 2
    assert _steps(tmp_path / "run") == [2]


def test_a_run_stopped_on_its_last_step_alone_hands_back_its_finished_result(synth, tmp_path, monkeypatch):
    """``Interrupted.finished`` (a run that did all its steps, whose result a caller keeps) was also set on a stop at
    ``train.stop_after``, a run that ``--resume auto`` continues; whose line advised 'the same command with --resume
    auto', which trains nothing there (stop_after stops it again)."""
    from mme.errors import Interrupted
    from mme.train import loop

    real_step = loop.train_step

    def signalled_on_the_step_it_stops_after(run, stream, stop):
        if run.step == run.cfg.train.stop_after - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", signalled_on_the_step_it_stops_after)
    for stop_after, finished in ((2, None), (3, 3)):
        out = tmp_path / f"stop_after{stop_after}"
        with pytest.raises(Interrupted, match=f"stopped by SIGINT after step {stop_after} of {stop_after}, ") as info:
            run("tiny_cpu_pixel", synth, out, "train.steps=3", f"train.stop_after={stop_after}", FP32)
        got = info.value.finished
        assert (None if got is None else (got.step, got.checkpoint)) == (
            None if finished is None else (finished, out / f"checkpoint-0000000{finished}.pt"))
        # (stopped where train.stop_after ends it anyway: the same command would train nothing)
        assert ("train.stop_after raised or unset continues" in str(info.value)) == (finished is None)
        assert "the same command" not in str(info.value)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_library_run_goes_past_a_callers_except_exception(signum, synth, tmp_path, monkeypatch):
    """A notebook's sweep (``try: pretrain(cfg) except Exception: ...`` in a loop) took the Interrupted of the user's
    Ctrl-C, or of a batch job's SIGTERM, as a failed run and trained the next one: it is a KeyboardInterrupt, as a
    second Ctrl-C's and embed()'s are, so it stops the caller, the run's checkpoint written."""
    from mme.train import loop

    real_step = loop.train_step

    def signalled_on_step_2(run, stream, stop):
        if run.step == 1:
            os.kill(os.getpid(), signum)
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", signalled_on_step_2)
    taken = []
    with pytest.raises(Interrupted, match=f"^stopped by {signum.name} after step 2 of 4, saved as ") as stopped:
        try:
            run("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=4", FP32)
        except Exception as e:  # noqa: BLE001 (the caller's sweep)
            taken.append(e)
    assert taken == [] and isinstance(stopped.value, KeyboardInterrupt) and not isinstance(stopped.value, Exception)
    assert stopped.value.exit_code == 128 + signum and stopped.value.signal == signum
    assert _steps(tmp_path / "run") == [2]


def test_a_data_error_in_a_loader_worker_is_the_same_one_line_message(tmp_path, capfd, caplog):
    """Too many undecodable videos with data.num_workers=2 (the recipes' default). (The workers' own stderr is
    read too: capfd; and mme's log lines, which pytest's handler takes from stderr in this process: caplog.)"""
    from mme import cli

    for i in range(8):
        (tmp_path / f"v{i}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 4)
    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4 0\n" for i in range(8)))
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(
        f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}", "data.num_workers=2",
        f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=2")])
    err = capfd.readouterr().err
    assert code == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("mme pretrain: error:")]
    assert len(errors) == 1 and "failed, more than data.max_failure_fraction" in errors[0], err[-2000:]
    assert "Caught" not in err + caplog.text and "Traceback" not in err + caplog.text


def test_a_run_failed_by_its_data_stops_its_workers_and_frees_its_folder_for_the_next_call(synth, tmp_path):
    """A notebook's cell: pre-training fails in its loop (too many missing videos) with loader workers, the user
    keeps the error (as an interactive shell keeps the last one), fixes the list and calls again on the same folder.
    The error's traceback held the loader's iterator, whose forked workers shared the folder's lock: the second
    call was refused as "in use by another job" naming this process."""
    import multiprocessing

    (tmp_path / "bad.txt").write_text("nope/missing.mp4 0\n" * 4)
    out, root = tmp_path / "run", synth[1]
    with pytest.raises(DataError, match="failed, more than data.max_failure_fraction") as failed:
        run("tiny_cpu_pixel", [f"data.list_file={tmp_path / 'bad.txt'}", root], out, "train.steps=2",
            "data.num_workers=2", "train.batch_size=2", FP32)
    assert failed.value.__traceback__ is not None and multiprocessing.active_children() == []
    assert run("tiny_cpu_pixel", synth, out, "train.steps=2", "data.num_workers=2", FP32).step == 2
    assert multiprocessing.active_children() == []


def test_an_empty_recipe_and_a_base_chain_that_comes_back_are_refused(tmp_path):
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: empty"):
        load_config(PretrainConfig, str(tmp_path / "empty.yaml"))
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\ntrain: {steps: 2}\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"_base_ chain comes back to itself \(a\.yaml -> b\.yaml -> a\.yaml\)"):
        load_config(PretrainConfig, str(tmp_path / "a.yaml"))
    (tmp_path / "self.yaml").write_text("_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="comes back to itself"):
        load_config(PretrainConfig, str(tmp_path / "self.yaml"))


def test_a_label_the_head_cannot_predict_is_refused_before_training(tmp_path, caplog):
    from mme.config import load_config
    from mme.data.synth import generate_synth
    from mme.train.config import FinetuneConfig
    from mme.train.finetune import _num_classes, setup

    d = generate_synth(tmp_path / "data", num_classes=3, videos_per_class=2, size=32, num_frames=8, workers=1)
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
        f"data.list_file={d.lists['train']}", f"data.root={d.root}", "task.num_classes=2", "task.classes=",
        f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"train\.txt: label 2 is not a class of a 2-class head"):
        setup(cfg)
    assert not ckpt.list_checkpoints(tmp_path / "run")
    # the val and test lists too, each of whose videos would be predicted or reported: a label the head cannot
    # predict ended the run in its final test, and a line the parser rejects dropped out of the report unsaid
    test_list = tmp_path / "test.txt"
    videos = [line.split()[0] for line in d.lists["train"].read_text().splitlines()]
    for text, said in ((f"{videos[0]} 0\n{videos[1]} 3\n", rf"task\.test_list .*test\.txt: {videos[1]} has label 3, "
                                                         r"not a class of a 3-class model"),
                       (f"{videos[0]} 0\n{videos[1]} walking\n", r"test\.txt:2: bad label 'walking'"),
                       (f"{videos[0]}\n{videos[1]}\n", rf"test\.txt: {videos[0]} has no label"),  # after training
                       ("gone/a.mp4 0\ngone/b.mp4 1\n", r"test\.txt: none of its 2 videos is under data\.root")):
        test_list.write_text(text)
        cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
            f"data.list_file={d.lists['train']}", f"data.root={d.root}", "task.num_classes=3", "task.classes=",
            "task.val_list=", f"task.test_list={test_list}", f"train.out_dir={tmp_path / 'run'}"])
        with pytest.raises(DataError, match=said):
            setup(cfg)
    # task.num_classes unset: the count is 1 + the training list's largest label, said so (before: not said where
    # the 3 classes came from)
    test_list.write_text(f"{videos[0]} 0\n{videos[1]} 3\n")
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
        f"data.list_file={d.lists['train']}", f"data.root={d.root}", "task.classes=", "task.val_list=",
        f"task.test_list={test_list}", f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=rf"has label 3, not a class of a 3-class model \(labels must be 0\.\.2; "
                                        r"task\.num_classes unset: 1 \+ the largest label of data\.list_file "
                                        rf"{re.escape(str(d.lists['train']))}; set task\.num_classes or "
                                        r"task\.classes\)$"):
        setup(cfg)
    one = tmp_path / "one.txt"  # one class: a head of 1 class learns nothing (loss 0) and scores 100 %
    one.write_text("".join(f"{v} 0\n" for v in videos[:3]))
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
        f"data.list_file={one}", f"data.root={d.root}", "task.classes=", "task.val_list=", "task.test_list=",
        f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"one\.txt: every video has label 0; a classifier needs videos of at least 2"):
        setup(cfg)
    one.write_text("".join(f"{v} 2\n" for v in videos[:3]))  # one class of several, too
    with pytest.raises(DataError, match=r"one\.txt: every video has label 2"):
        setup(cfg)
    # labels that skip ids ({0, 5, 9, 12}: a 13-class head, 9 of its classes never trained) are warned about,
    # counted (before: nothing said)
    one.write_text("".join(f"{v} {label}\n" for v, label in zip(videos, (0, 5, 9, 12), strict=False)))
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert _num_classes(cfg, None) == 13
    assert (f"list file {one}: its labels skip 9 of the class ids 0..12, which no video has (1, 2, 3, 4, 6, ...): a "
            f"13-class head, 9 of its classes never trained; number the labels 0..3, or set task.num_classes or "
            f"task.classes") in caplog.text, caplog.text
    # a stray label (100000) gave a head of 100001 classes unsaid, then an 80 GB confusion matrix after training
    one.write_text(f"{videos[0]} 0\n{videos[1]} 1\n{videos[2]} 100000\n{videos[3]} 1\n")
    with pytest.raises(DataError, match=rf"list file {re.escape(str(one))}:3: label 100000 makes a 100001-class head "
                                        r"for the 3 labels the list has \(99998 class ids without a video\): a stray "
                                        r"label\? Number the labels 0\.\.2, or set task\.num_classes or task\.classes"):
        setup(cfg)
    assert not ckpt.list_checkpoints(tmp_path / "run")


def test_resuming_from_a_file_that_is_no_checkpoint_is_one_line_naming_it(synth, tmp_path, capsys, caplog):
    import warnings

    from mme import cli

    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    with warnings.catch_warnings(record=True) as warned:  # (what the command's stderr would show)
        warnings.simplefilter("always")
        code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth, f"train.out_dir={tmp_path / 'run'}",
                         f"train.resume={tmp_path / 'random.pt'}"])
    err = capsys.readouterr().err
    said = err + caplog.text + "".join(f"{w.message}\n" for w in warned)  # (its log lines: in caplog, in pytest)
    assert code == 1 and "Traceback" not in said and "weights_only" not in said
    assert err.strip().splitlines()[-1].startswith(
        f"mme pretrain: error: {tmp_path / 'random.pt'}: unknown checkpoint format"), err[-1000:]


def test_resuming_a_checkpoint_of_a_later_mme_names_it(synth, tmp_path):
    """--resume auto of a checkpoint whose config has a model key this mme lacks (a later mme's) said only "unknown
    config key ['model.rope']", not which file, where train.init and mme embed name it. One whose meta records a
    later mme was still 'perhaps of a later mme': it names both versions and says to upgrade."""
    import mme

    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", FP32)
    path = ckpt.checkpoint_path(tmp_path, 1)
    state = torch.load(path, weights_only=True)
    state["config"]["model"]["rope"] = True
    for version, said in ((mme.__version__, "perhaps of a later mme"),  # (this version's: a development build)
                          ("99.1.0", f"written by mme 99.1.0, a later version than this one ({mme.__version__}): "
                                     "upgrade mme to read it")):
        state["meta"]["mme"] = version
        torch.save(state, path)
        for out, given in ((tmp_path, "train.resume=auto"), (tmp_path / "b", f"train.init={path}")):
            with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: invalid model config in the "
                                                      rf"training checkpoint, {re.escape(said)}: unknown config "
                                                      r"key \['model.rope'\]; valid keys under 'model': "):
                run("tiny_cpu_pixel", synth, out, "train.steps=2", given, FP32)


def test_resuming_from_model_weights_says_to_start_from_them_with_train_init(tmp_path):
    """A weights-only .pth ({'model': weights}: a bare KeyError before) and an exported .safetensors (called 'not a
    PyTorch or safetensors file' before), also named .pt, are model weights, not a run's state: one line naming the
    file, pointing to train.init; an empty folder or one of another program's files is not (it was called so)."""
    import torch

    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.vit import VisionTransformer
    from mme.train.engine import resume_state

    enc = VisionTransformer(ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2))
    torch.save({"model": enc.state_dict()}, tmp_path / "weights.pth")
    exported = save_pretrained(enc, tmp_path / "enc.safetensors")
    with pytest.raises(CheckpointError, match=r"train\.resume .*weights\.pth: not a training checkpoint of mme \(it "
                                              r"lacks \['config', 'optimizer', 'step', 'data', 'rng'\]\); train\.init"):
        resume_state(str(tmp_path / "weights.pth"), tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"enc\.safetensors: a model's weights .*; train\.init starts a run"):
        resume_state(str(exported), tmp_path / "run")
    (tmp_path / "old_run").mkdir()  # a run's folder: resume it with auto
    torch.save({"model": {}}, tmp_path / "old_run" / "checkpoint-00000002.pt")
    with pytest.raises(CheckpointError, match=r"old_run: a run's folder; resume it with train\.resume=auto"):
        resume_state(str(tmp_path / "old_run"), tmp_path / "run")
    # weights named otherwise (a .pt) are weights; a folder without a checkpoint, or a file cut inside the header
    # of its weights, is not called so (before: every folder and every .safetensors name was "a model's weights")
    (tmp_path / "weights_named.pt").write_bytes(exported.read_bytes())
    with pytest.raises(CheckpointError, match=r"weights_named\.pt: a model's weights .*; train\.init starts a run"):
        resume_state(str(tmp_path / "weights_named.pt"), tmp_path / "run")
    (tmp_path / "cut.safetensors").write_bytes(exported.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: unknown checkpoint format \(not a PyTorch or "
                                              r"safetensors file"):
        resume_state(str(tmp_path / "cut.safetensors"), tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"my": "settings"}')
    for folder in ("empty", "checkpoint-00000004.pt", "mine"):
        (tmp_path / folder).mkdir(exist_ok=True)
        with pytest.raises(CheckpointError, match=rf"checkpoint {tmp_path / folder}: a folder holding no checkpoint "
                                                  r"\(no checkpoint-\*\.pt of a run, no config\.json of a model's "
                                                  r"weights\)$"):
            resume_state(str(tmp_path / folder), tmp_path / "run")


def test_overrides_may_follow_the_options_and_an_unknown_option_is_refused(synth, tmp_path, capsys):
    from mme import cli

    args = ["pretrain", "--config", "tiny_cpu_pixel", "--resume", "auto", *TINY, *synth, "train.steps=1",
            f"train.out_dir={tmp_path}", FP32]
    assert cli.main(args) == 0 and _steps(tmp_path) == [1]
    out = capsys.readouterr().out  # TINY's 5 warm-up steps; the lr never reaches a final one
    assert "warm-up 1 of 1 step: no decay" in out and "  lr up to " in out and " -> " not in out
    again = tiny(*synth, f"train.out_dir={tmp_path}", FP32, "train.steps=3", "optim.warmup_steps=2")
    assert cli.main([*args[:3], "--overwrite", *again]) == 0
    assert "warm-up 2 of 3 steps: no decay" in capsys.readouterr().out  # its one step after is at the peak
    assert cli.main([*args[:3], "--overwrite", *args[5:]]) == 0  # a fresh run clears the finished one
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] == torch.load(
        ckpt.checkpoint_path(tmp_path, 1), weights_only=True)["meta"]["run_id"]
    with pytest.raises(SystemExit):
        cli.main([*args, "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["probe", "CKPT", "--train", "LIST", "--out", "OUT", "--k", "0"], "argument --k: must be at least 1, got 0"),
    (["probe", "CKPT", "--train", "LIST", "--out", "OUT", "--k", "-1"], "argument --k: must be at least 1, got -1"),
    (["probe", "CKPT", "--train", "LIST", "--out", "OUT", "--temperature", "0"],
     "argument --temperature: must be a finite number > 0, got 0"),
    (["embed", "CKPT", "LIST", "--out", "OUT/f.npy", "--batch-size", "0"],
     "argument --batch-size/--batch: must be at least 1, got 0"),
    (["embed", "CKPT", "LIST", "--out", "DIR.npy"], "DIR.npy: is a folder; give a file name"),
    (["embed", "CKPT", "LIST", "--out", "FILE/f.npy"], "FILE/f.npy: cannot be written"),
    (["probe", "CKPT", "--train", "LIST", "--out", "FILE/probe"], "FILE/probe: cannot be written"),
    (["extract", "LIST", "--out", "FILE/cache"], "FILE/cache: cannot be written"),
    (["export", "CKPT", "FILE/hf", "--format", "hf"], "FILE/hf: cannot be written"),
    (["synth", "FILE/synth"], "FILE/synth: cannot be written"),
])
def test_bad_arguments_and_outputs_are_refused_in_one_line_before_any_work(argv, message, tmp_path, capsys):
    from mme import cli

    (tmp_path / "LIST").write_text("v.mp4 0\n")
    (tmp_path / "FILE").write_text("a file, not a folder")
    (tmp_path / "DIR.npy").mkdir()
    paths = {"CKPT": tmp_path / "missing.pt", "LIST": tmp_path / "LIST", "OUT": tmp_path / "out",
             "FILE": tmp_path / "FILE", "DIR.npy": tmp_path / "DIR.npy"}
    for old, new in paths.items():
        argv = [a.replace(old, str(new), 1) if a.split("/")[0] == old else a for a in argv]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own check of a flag's range
        code = e.code
    err = capsys.readouterr().err
    assert code == (2 if message.startswith("argument") else 1)
    last = err.strip().splitlines()[-1]  # argparse prints the usage first
    assert (code == 2 or err.count("\n") == 1) and last.startswith(f"mme {argv[0]}: error:") and message in last, err
    if "cannot be written" in message:
        assert f"({tmp_path / 'FILE'} is a file, not a folder)" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class FullDisk(NamedTuple):
    folders: dict[str, Path]
    """Each command's folder by its name: ``checkpoint``, ``run files``, ``lock`` (the one under which it made its
    folders)."""
    before: dict[str, str]
    """The hashes of the run files' folder before its command."""
    ran: dict[str, tuple[int | None, str, list[str]]]
    """Each command's exit status, its stderr and what the ``lock`` folder held after it, by its name (``lock`` and
    ``extract lock`` for the .lock's two commands)."""


@pytest.fixture(scope="module")
def full_disk(synth, tmp_path_factory) -> FullDisk:
    """The commands of the full-disk tests, each under a file-size limit of its own (its writes past it fail, as on
    a full disk), one after the other in one process (one start-up, not three): a run resumed where its checkpoint
    of step 2 cannot be written (``checkpoint``), a finished run resumed where its config.yaml cannot (``run
    files``), then a pretrain and an extract whose new folder's .lock cannot (``lock``, ``extract lock``)."""
    base = tmp_path_factory.mktemp("full_disk")
    folders = {"checkpoint": base / "checkpoint", "run files": base / "run", "lock": base / "lock"}
    run("tiny_cpu_pixel", synth, folders["checkpoint"], "train.steps=4", "train.stop_after=1", FP32)
    run("tiny_cpu_pixel", synth, folders["run files"], "train.steps=2", FP32)
    before = _hashes(folders["run files"])
    folders["lock"].mkdir()
    out = folders["lock"] / "new" / "deeper" / "out"
    list_file, root = (s.split("=", 1)[1] for s in synth)
    calls = {"checkpoint": (50_000, ["pretrain", "--config", "tiny_cpu_pixel", "--resume", "auto", *tiny(
                 *synth, f"train.out_dir={folders['checkpoint']}", "train.steps=4", "train.ckpt_every=1", FP32)]),
             "run files": (1000, ["pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
                                  f"train.out_dir={folders['run files']}", "train.steps=4", "--resume", "auto", FP32]),
             "lock": (10, ["pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth, f"train.out_dir={out}",
                           "train.steps=1", FP32]),
             "extract lock": (10, ["extract", list_file, "--root", root, "--out", str(out), "--workers", "1"])}
    proc = in_one_process([argv for _, argv in calls.values()],
                          "import os, resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                          f"limits, there = {[limit for limit, _ in calls.values()]!r}, {str(folders['lock'])!r}\n"
                          "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
                          "def before(i): resource.setrlimit(resource.RLIMIT_FSIZE, (limits[i], hard))\n"
                          "def after(i): return os.listdir(there)\n", timeout=300)
    return FullDisk(folders, before, dict(zip(calls, proc.ran)))


def test_a_checkpoint_that_cannot_be_written_names_the_folder_and_keeps_the_previous_one(full_disk):
    """The disk fills up while checkpointing (a file-size limit makes the write fail where a full disk would): the line
    gives the write's reason, the limit named (before: torch's "[enforce fail at inline_container.cc:672] .
    unexpected pos 10233216 vs 10233104")."""
    out, (code, err, _) = full_disk.folders["checkpoint"], full_disk.ran["checkpoint"]
    assert code == 1 and "Traceback" not in err, err[-2000:]
    last = [ln for ln in err.splitlines() if ln.startswith("mme pretrain: error:")][-1]
    assert re.fullmatch(rf"mme pretrain: error: {re.escape(str(out))}: could not write the checkpoint of step 2 "
                        r"\(File too large: this process's file-size limit \(\d+ bytes, ulimit -f\) reached\)\. Kept: "
                        r"checkpoint-00000001\.pt",
                        last), last
    assert _steps(out) == [1] and not list(out.glob(".*.tmp*"))
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(out, 1))["step"] == 1


@pytest.mark.parametrize("fault", ["read-only folder", "full disk"])
def test_run_files_that_cannot_be_written_are_one_line_and_leave_the_run_as_it_was(fault, synth, tmp_path, request):
    """Before: a traceback writing config.yaml at set-up. The folder of a finished run kept from writes (chmod a-w)
    passed for writable, as the .lock its job left still opened; a full disk (a file-size limit here) failed the
    write itself."""
    if fault == "full disk":
        full_disk = request.getfixturevalue("full_disk")
        out, (code, err, _) = full_disk.folders["run files"], full_disk.ran["run files"]
        assert code == 1 and "Traceback" not in err, err[-2000:]
        last = err.strip().splitlines()[-1]
        assert re.fullmatch(rf"mme pretrain: error: {out}/config.yaml: could not be written \(File too large: "
                            r"this process's file-size limit \(\d+ bytes, ulimit -f\) reached\)", last), last
        assert _hashes(out) == full_disk.before
        return
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    try:
        (probe / "file").touch()
        pytest.skip("this process writes into a folder of mode 555 (root)")
    except PermissionError:
        pass
    out = tmp_path / "run"
    run("tiny_cpu_pixel", synth, out, "train.steps=2", FP32)
    before = _hashes(out)
    out.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=rf"^train.out_dir '{out}' is not a writable folder \(Permission "
                                              r"denied\)$"):
            run("tiny_cpu_pixel", synth, out, "train.steps=4", "train.resume=auto", FP32)
    finally:
        out.chmod(0o755)
    assert _hashes(out) == before


def test_a_folder_lock_that_cannot_be_written_is_one_line_and_leaves_no_folder(full_disk, synth, tmp_path,
                                                                              monkeypatch):
    """The disk is full as a job takes its folder (a file-size limit of 10 bytes here: the empty ``.lock`` is made,
    its holder's line is not written). Before: a bare OSError traceback from ``lock_folder``, and the new folders
    left behind with an empty ``.lock``; now one line naming the option, the folder, the reason and, for a full disk,
    the MiB free (a file-size limit is named instead), and the folders the job made are removed: also by ``mme
    extract``, whose share's lock folder is kept after a job that ran (before: its ``.lock`` left, and with it every
    folder the job made)."""
    from mme import utils
    from mme.motion.extract import share_name

    def full(fd: int, data: bytes, truncate: bool = False) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    made = tmp_path / "made"
    with monkeypatch.context() as m:
        m.setattr(utils, "write_all", full)
        with pytest.raises(ConfigError) as info:
            utils.lock_folder(made / "out", "train.out_dir")
    assert re.fullmatch(rf"train\.out_dir '{re.escape(str(made / 'out'))}': its \.lock could not be written \(No "
                        r"space left on device; \d+ MiB free\)", str(info.value)), info.value
    assert not made.exists()

    there = full_disk.folders["lock"]
    out = there / "new" / "deeper" / "out"
    for command, option, folder in (("pretrain", "train.out_dir", out),
                                    ("extract", "--out (share 0/1 of its extraction)",
                                     out / ".locks" / share_name(synth[0].split("=", 1)[1], 0, 1))):
        code, err, left = full_disk.ran["lock" if command == "pretrain" else "extract lock"]
        assert code == 1 and "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert re.fullmatch(rf"mme {command}: error: {re.escape(option)} '{re.escape(str(folder))}': its .lock could "
                            r"not be written \(File too large: this process's file-size limit \(\d+ bytes, "
                            r"ulimit -f\) reached\)", last), last
        assert left == [], (command, left)
    assert list(there.iterdir()) == []


def test_a_checkpoint_write_failing_without_a_message_still_gives_the_checkpoint_line(synth, tmp_path, monkeypatch):
    """Before: an OSError without errno or message (as some file system layers raise) ended the run with an
    IndexError from formatting its reason, in place of the line naming the space needed and the kept checkpoint."""
    def no_message(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(ckpt, "save_checkpoint", no_message)
    with pytest.raises(CheckpointError) as info:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", FP32)
    assert str(info.value).startswith(f"{tmp_path}: could not write the checkpoint of step 1 (OSError); it needs "
                                      f"about ") and "Kept: no earlier checkpoint" in str(info.value), info.value


def test_a_checkpoint_write_refused_for_another_reason_than_space_says_no_space(synth, tmp_path, monkeypatch):
    """The line gave the space needed and free whatever the reason: a folder that refuses the write (permission
    denied) read as a disk too small. The space is said only where the write may have wanted it."""
    def refused(*args, **kwargs):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "checkpoint-00000001.pt"))

    monkeypatch.setattr(ckpt, "save_checkpoint", refused)
    with pytest.raises(CheckpointError) as info:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", FP32)
    assert str(info.value) == (f"{tmp_path}: could not write the checkpoint of step 1 (Permission denied: "
                               f"{tmp_path / 'checkpoint-00000001.pt'}). Kept: no earlier checkpoint")


def test_a_loader_worker_killed_is_one_line_and_a_checkpoint_written_is_not_called_lost(synth, tmp_path, monkeypatch,
                                                                                          capsys):
    """A loader worker killed (the out-of-memory killer's SIGKILL) raised torch's RuntimeError at whatever line the
    run was at, from torch's SIGCHLD handler: a traceback, or, killed just after a checkpoint was written, the false
    line "could not write the checkpoint of step 2 (DataLoader worker (pid N) is killed by signal: Killed.) ...
    Kept: checkpoint-00000002.pt", the write's error handler taking it for the write's."""
    from mme import cli

    killed: list[int] = []
    monkeypatch.setattr(ckpt, "save_checkpoint", killing_a_worker_after(ckpt.save_checkpoint,
                                                                        lambda state, *_: state["step"] == 2, killed))
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path}",
                     "data.num_workers=1", "train.steps=20", "train.ckpt_every=1", FP32)])
    err = capsys.readouterr().err
    assert code == 1 and re.fullmatch(
        re.escape(f"mme pretrain: error: data loader worker 0 (pid {killed[0]}) died (signal 9: Killed), most likely "
                  "killed by the out-of-memory killer: lower data.num_workers or train.batch_size, or the clips' size "
                  "(data.img_size with model.img_size, data.num_frames with model.num_frames). Kept: ")
        + rf"{re.escape(str(tmp_path))}/checkpoint-0*(\d+)\.pt, the checkpoint of step \1: --resume auto "
          r"\(train.resume=auto\) continues from there", err.strip().splitlines()[-1]), err[-3000:]
    assert "Traceback" not in err and "could not write" not in err, err[-3000:]
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 2))["step"] == 2


@pytest.mark.parametrize("recipe, shm, said", [  # (mme's: batches with motion frames)
    ("tiny_cpu_pixel", "256k", " worker 0: a batch does not fit in shared memory (/dev/shm, 0.25 MiB in all), which "
                               "holds the batches of the loader's 2 workers at once, 2 each: give it more, or lower "
                               "data.num_workers or train.batch_size"),
    pytest.param("tiny_cpu_mme", "256k", " worker 0: a batch does not fit in shared memory (/dev/shm, 0.25 MiB in "
                 "all), which holds the batches of the loader's 2 workers at once, 2 each: give it more, or lower "
                 "data.num_workers or train.batch_size", marks=pytest.mark.slow),
    ("tiny_cpu_pixel", "32k", ": its workers cannot start: no room in shared memory (/dev/shm, 0.03 MiB in all) for "
                              "their queues, locks and shared tensors: give it more, or lower data.num_workers")])
def test_a_shared_memory_too_small_for_the_loader_workers_batches_is_one_line(synth, tmp_path, recipe, shm, said):
    """A /dev/shm too small for the batches the loader workers hold at once (a container's default, Docker's 64 MB,
    under 2 workers with 2 batches each of 8 uint8 clips of 16 x 224²: 18.4 MiB a batch, 73.5 MiB (77 MB) in all):
    torch allocates a worker's batch there up front (posix_fallocate), so the worker lives on and its "RuntimeError:
    unable to allocate shared memory(shm) for file </torch_...>: No space left on device (28)" reached the run as a
    100-line traceback. It is the one line a worker dead of it (SIGBUS) gives, saying that shared memory holds the
    batches of every worker at once (the size of one batch alone misled), and naming the batch size too. One of 32
    KiB has no room for the semaphores of the workers' queues and locks, which multiprocessing makes there (about a
    page each, a few per worker): the run stopped at the loader's start with a traceback of its SemLock ("OSError:
    [Errno 28] No space left on device"); it gives one line too, its advice the workers' count alone (the batch size
    has no part in that room)."""
    out = tmp_path / "run"
    proc = subprocess.run(with_small_shm(
        [sys.executable, "-m", "mme.cli", "pretrain", "--config", recipe,
         *tiny(*synth, f"train.out_dir={out}", "train.steps=2", "model.depth=1", "data.num_workers=2", FP32)], shm),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"mme pretrain: error: data loader{said}; what was written is kept (the same command with --resume auto "
        "continues from the run's newest checkpoint, if it wrote one)"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_a_full_disk_stops_extract_and_check_with_one_line_naming_the_file(tmp_path):
    """The disk fills up during `mme extract` (a file-size limit fails writes where a full disk would): it tracked
    every remaining video and threw each away, warning only "failed: OSError: [Errno 27] File too large", then
    ended in a traceback writing its report; `mme check` ended in a traceback writing --out. A video that failed
    before the disk filled up is still named (before: gathered for the report, lost with it)."""
    from videos import affine_video, write_video

    from mme.motion.cache import cache_file

    for name, frames in (("short.mp4", 3), ("long.mp4", 30), ("other.mp4", 30)):
        write_video(tmp_path / name, affine_video(frames, 64, 64, dx=1.0, seed=frames)[0])
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 10)
    (tmp_path / "list.txt").write_text("short.mp4\nbad.mp4\nlong.mp4\nother.mp4\n")
    out = tmp_path / "cache"
    extract = ["extract", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(out), "--length", "2",
               "--short-side", "64"]
    check = ["check", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "check.json")]
    by_workers = [*extract[:5], str(tmp_path / "by-workers"), *extract[6:], "--workers", "2"]
    # one process runs the commands one after the other, each under its own file-size limit (a soft one: the next
    # command may raise it again; None: the hard one), and says after each the files in --out then (the cost of one
    # start-up, not of five)
    calls = [(1500, extract), (None, extract), (1500, by_workers), (100, extract), (100, check)]
    setup = ("import os, signal\nfrom resource import RLIMIT_FSIZE, getrlimit, setrlimit\n"
             f"limits, out, hard = {[limit for limit, _ in calls]!r}, {str(out)!r}, getrlimit(RLIMIT_FSIZE)[1]\n"
             "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "def before(i): setrlimit(RLIMIT_FSIZE, (hard if limits[i] is None else limits[i], hard))\n"
             "def after(i):\n"
             "    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)\n")
    proc = in_one_process([argv for _, argv in calls], setup)
    assert proc.returncode == 0 and proc.stderr.endswith(" @@\n"), proc.stderr[-3000:]
    ran = [(code, err) for code, err, _ in proc.ran]
    files = [listed for _, _, listed in proc.ran]  # --out's files (relative) after each command
    assert None not in [code for code, _ in ran], proc.stderr[-3000:]  # (each command ended)

    def limited(i: int) -> tuple[str, list[str]]:
        """The one error line of the ``i``-th command run under a file-size limit, and its lines naming failed
        videos."""
        code, err = ran[i]
        command = calls[i][1][0]
        failed = [ln for ln in err.splitlines() if "failed:" in ln]
        assert code == 1 and "Traceback" not in err, err
        assert len(failed) <= 1 and all("bad.mp4" in ln for ln in failed), err
        errors = [ln for ln in err.replace("\r", "\n").splitlines() if f"mme {command}: error:" in ln]
        assert len(errors) == 1 and errors[0].startswith(f"mme {command}: error:"), err
        return errors[0], failed

    said, failed = limited(0)  # short.mp4's file (0.7 kB) is written, bad.mp4 fails, long.mp4's not
    assert len(failed) == 1 and re.fullmatch(rf".*failed: {tmp_path}/bad.mp4: unreadable .*", failed[0]), failed
    assert re.fullmatch(rf"mme extract: error: {cache_file(out, 'long.mp4')}: could not be written \(File too large: "
                        r"this process's file-size limit \(\d+ bytes, ulimit -f\) reached\); the finished cache files "
                        r"are kept, and the same command continues once there is space", said), said
    short = str(cache_file(out, "short.mp4").relative_to(out))
    assert short in files[0] and not [f for f in files[0] if f.endswith(".json") or re.search(r"(^|/)\..*tmp", f)]
    reports = [f for f in files[1] if re.fullmatch(r"failed-.*\.json", f)]  # (the second command, no limit)
    assert ran[1][0] == 1 and len(reports) == 1 and json.loads((out / reports[0]).read_text())["skipped"] == 1
    report = out / reports[0]  # (bad.mp4)
    said, _ = limited(2)
    assert re.fullmatch(rf"mme extract: error: {tmp_path}/by-workers/(long|other)\.mp4\.tracks: could not be written "
                        r"\(File too large: this process's file-size limit \(\d+ bytes, ulimit -f\) reached\); the "
                        r"finished cache files are kept, .*", said), said
    said, _ = limited(3)
    assert re.fullmatch(rf"mme extract: error: {report}: could not be written \(File too large: this process's "
                        r"file-size limit \(\d+ bytes, ulimit -f\) reached\)", said), said
    said, _ = limited(4)
    assert re.fullmatch(rf"mme check: error: {tmp_path / 'check.json'}: could not be written \(File too large: "
                        r"this process's file-size limit \(\d+ bytes, ulimit -f\) reached\); the check's results are "
                        r"above; another --out keeps its report", said), said


def test_a_runs_config_yaml_is_a_recipe_without_the_settings_of_its_call(synth, tmp_path):
    """config.yaml kept train.overwrite (and resume, stop_after): reused as a recipe for another folder, it cleared
    the run there unasked."""
    import yaml

    run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=2", "train.stop_after=1", "train.overwrite=true", FP32)
    train = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["train"]
    assert (train["overwrite"], train["resume"], train["stop_after"], train["steps"]) == (False, None, None, 2)


def test_val_or_test_videos_shared_with_the_training_list_are_warned_about(tmp_path, caplog):
    """``mme finetune`` scored a test list equal to its training list without a word (``mme probe`` refuses it);
    a test list naming a training video through a symlink shares it too (before: compared by spelling), and so
    does one naming a hard link of it, as a bind mount shows one file under another path (before: compared by
    real path, nothing said)."""
    import logging

    from mme.config import load_config
    from mme.data.synth import generate_synth
    from mme.train.config import FinetuneConfig
    from mme.train.finetune import TrainingList, check_test_lists

    d = generate_synth(tmp_path / "data", num_classes=2, videos_per_class=4, size=32, num_frames=8, workers=1)
    first = d.lists["train"].read_text().splitlines()[0].rsplit(maxsplit=1)
    (tmp_path / "link.mp4").symlink_to(d.root / first[0])
    (tmp_path / "linked.txt").write_text(f"{tmp_path / 'link.mp4'} {first[1]}\n")
    os.link(d.root / first[0], tmp_path / "copy.mp4")
    (tmp_path / "copied.txt").write_text(f"{tmp_path / 'copy.mp4'} {first[1]}\n")
    for test_list, shared in ((d.lists["train"], True), (d.lists["test"], False), (tmp_path / "linked.txt", True),
                              (tmp_path / "copied.txt", True)):
        cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
            f"data.list_file={d.lists['train']}", f"data.root={d.root}", "task.classes=", "task.val_list=",
            f"task.test_list={test_list}"])
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            check_test_lists(cfg, 2, TrainingList(cfg.data.list_file, cfg.data.root))
        assert ("shares" in caplog.text and "with the training list" in caplog.text) == shared, caplog.text
    assert f"(e.g. {tmp_path / 'copy.mp4'} (as {(d.root / first[0]).resolve()}: the same file)): its figures" in \
        caplog.text, caplog.text


def test_val_or_test_clips_of_the_training_lists_source_videos_are_warned_about(tmp_path, caplog):
    """``mme finetune`` scored a test list holding other clips of the training list's source videos (UCF101's
    v_A_g01_c02 beside v_A_g01_c01: one footage, a clip's sibling) without a word, where ``mme lists`` warns of
    them; now one warning per list names the count and a source. A video the lists share is warned about as such
    alone, and a file whose name gives no source is its own, not a source of a like-named file elsewhere."""
    from mme.config import load_config
    from mme.train.config import FinetuneConfig
    from mme.train.finetune import TrainingList, check_test_lists

    root = tmp_path / "videos"
    lists = {"train": ["A/v_A_g01_c01.avi 0", "A/v_A_g02_c01.avi 0", "B/v_B_g03_c01.avi 1", "B/clip.avi 1"],
             "siblings": ["A/v_A_g01_c02.avi 0", "B/v_B_g05_c01.avi 1"],
             "same": ["A/v_A_g01_c01.avi 0", "B/v_B_g05_c01.avi 1"], "elsewhere": ["B/clip.avi 1"]}
    for name, lines in lists.items():
        for line in lines:
            folder = tmp_path / "other" if name == "elsewhere" else root
            (folder / line.split()[0]).parent.mkdir(parents=True, exist_ok=True)
            (folder / line.split()[0]).write_bytes(name.encode())  # (files of their own, whatever their names)
        (tmp_path / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))

    def warned(test_list):  # (its videos under their own root, the training list's under root)
        cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
            f"data.list_file={tmp_path / 'train.txt'}", "task.classes=", "task.val_list=",
            f"data.root={tmp_path / 'other' if test_list == 'elsewhere' else root}",
            f"task.test_list={tmp_path / test_list}.txt"])
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            check_test_lists(cfg, 2, TrainingList(cfg.data.list_file, root))
        return [r.getMessage() for r in caplog.records]

    assert warned("siblings") == [  # before: nothing
        f"task.test_list {tmp_path}/siblings.txt: 1 source video has clips in two splits, e.g. v_A_g01 "
        f"(A/v_A_g01_c01.avi in the training list {tmp_path}/train.txt, A/v_A_g01_c02.avi in task.test_list): scores "
        "of one split are of videos the other fits on; move each source's clips to one split"]
    said = warned("same")
    assert len(said) == 1 and said[0].startswith(f"task.test_list {tmp_path}/same.txt shares 1 of its 2 videos"), said
    assert warned("elsewhere") == []


def test_a_val_or_test_list_that_names_a_video_twice_is_refused(tmp_path):
    """A test list with a line repeated was scored as one more video than it has, without a word; the training
    list may repeat a video (oversampling it)."""
    from mme.config import load_config
    from mme.data.synth import generate_synth
    from mme.train.config import FinetuneConfig
    from mme.train.finetune import TrainingList, check_test_lists

    d = generate_synth(tmp_path / "data", num_classes=2, videos_per_class=4, size=32, num_frames=8, workers=1)
    test_lines = d.lists["test"].read_text().splitlines()
    (tmp_path / "twice.txt").write_text("\n".join([*test_lines, test_lines[0]]))
    (tmp_path / "train.txt").write_text(d.lists["train"].read_text() * 2)
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
        f"data.list_file={tmp_path / 'train.txt'}", f"data.root={d.root}", "task.classes=", "task.val_list=",
        f"task.test_list={tmp_path / 'twice.txt'}"])
    with pytest.raises(DataError) as e:
        check_test_lists(cfg, 2, TrainingList(cfg.data.list_file, cfg.data.root))
    assert str(e.value).startswith(f"task.test_list {tmp_path / 'twice.txt'}: lines 1 and {len(test_lines) + 1} "
                                   f"list the same video "), e.value
    cfg.task.test_list = str(d.lists["test"])
    check_test_lists(cfg, 2, TrainingList(cfg.data.list_file, cfg.data.root))


def test_a_test_list_whose_videos_this_user_may_not_reach_is_not_said_to_miss_them(tmp_path, caplog):
    """A test list whose videos are in a folder this user may not enter (a teammate's of mode 0700) was refused as
    "none of its 2 videos is under data.root" (``os.path.isfile`` answers False there); one with a missing video
    first and the others there was too, and one with a video there and one out of reach warned that one "not under
    data.root"; a training list in such a folder was "not there". Each video is said missing or unreadable, counted
    apart, the list named by its setting, the folder by the reason."""
    from mme.config import load_config
    from mme.train.config import FinetuneConfig
    from mme.train.finetune import TrainingList, check_test_lists

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (theirs / name).write_bytes(b"x")
    (tmp_path / "mine.mp4").write_bytes(b"x")
    (tmp_path / "train.txt").write_text("theirs/c.mp4 0\n")
    (theirs / "train.txt").write_text("theirs/c.mp4 0\n")
    test = tmp_path / "test.txt"
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [
        f"data.list_file={tmp_path / 'train.txt'}", f"data.root={tmp_path}", "task.classes=", "task.val_list=",
        f"task.test_list={test}"])
    shut = f"Permission denied: this user may not enter {theirs}"

    def check(lines: str, train: Path = tmp_path / "train.txt") -> str:
        test.write_text(lines)
        caplog.clear()
        with unenterable(theirs):
            try:
                check_test_lists(cfg, 2, TrainingList(str(train), cfg.data.root))
            except DataError as e:
                return str(e)
        return caplog.text

    assert check("theirs/a.mp4 0\ntheirs/b.mp4 1\n") == (
        f"task.test_list {test}: none of its 2 videos can be read (e.g. theirs/a.mp4: {shut})")
    assert check("gone.mp4 0\ntheirs/a.mp4 1\ntheirs/b.mp4 1\n") == (
        f"task.test_list {test}: none of its 3 videos can be read: 1 is not under data.root '{tmp_path}' (e.g. "
        f"gone.mp4), 2 cannot be read (e.g. theirs/a.mp4: {shut})")
    assert f"task.test_list {test}: of its 2 videos, 1 cannot be read (e.g. theirs/b.mp4: {shut}); the tests " \
           "report them as failed" in check("mine.mp4 0\ntheirs/b.mp4 1\n")
    assert f"the training list {theirs / 'train.txt'} cannot be read ({shut}): the val and test lists are not " \
           "compared with it" in check("mine.mp4 0\n", theirs / "train.txt")


def test_a_runs_init_in_a_folder_this_user_may_not_enter_is_not_taken_for_gone(tmp_path):
    """A resumed run's train.init in a teammate's folder of mode 0700 was said to exist no more (``os.path.exists``
    answers False there) and looked for elsewhere; it is where it was recorded, and its read says why it fails."""
    from mme.train.engine import runs_init_now

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "init.pt").write_bytes(b"x")
    state = {"config": {"train": {"out_dir": str(tmp_path / "run")}}, "meta": {"cwd": str(tmp_path)}}
    with unenterable(theirs):
        found = runs_init_now(str(theirs / "init.pt"), str(tmp_path / "run" / "checkpoint-00000001.pt"), state)
    assert found == (str(theirs / "init.pt"), str(theirs / "init.pt"))
    assert runs_init_now(str(tmp_path / "gone.pt"), str(tmp_path / "run" / "checkpoint-00000001.pt"), state) == (
        str(tmp_path / "gone.pt"), None)


def test_a_resumes_train_init_in_a_folder_this_user_may_not_enter_is_said_unreadable_not_absent(tmp_path, caplog):
    """Resuming a run whose recorded train.init is gone, with train.init given in a teammate's folder of mode 0700:
    the warning said it "names no file either" (``os.path.exists`` answers False there); it says the file cannot be
    read, and why. One that is not there is still said to name no file."""
    from mme.train.engine import resumed_init

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "init.pt").write_bytes(b"x")
    state = {"config": {"train": {"init": str(tmp_path / "gone" / "init.pt"), "out_dir": str(tmp_path / "run")}},
             "meta": {"cwd": str(tmp_path)}}
    source = str(tmp_path / "run" / "checkpoint-00000001.pt")

    @dataclasses.dataclass
    class Train:
        init: str

    @dataclasses.dataclass
    class Config:
        train: Train

    def said(init: Path) -> str:
        cfg = Config(Train(str(init)))
        caplog.clear()
        with unenterable(theirs):
            assert resumed_init(cfg, (source, state)).train.init == str(tmp_path / "gone" / "init.pt")
        return caplog.text

    assert f"; train.init={theirs / 'init.pt'} cannot be read (Permission denied: this user may not enter {theirs}): " \
           "config.yaml and later checkpoints" in said(theirs / "init.pt")
    assert f"; train.init={tmp_path / 'init.pt'} names no file either: " in said(tmp_path / "init.pt")


@pytest.mark.parametrize("job", ["failing, from the CLI", "failing, from Python", "finished, in an except block",
                                 "failing by its caller's exception"])
def test_a_signal_during_a_jobs_end_leaves_a_failing_job_its_error_and_stops_a_finished_one(job, synth, tmp_path,
                                                                                             monkeypatch, capsys):
    """A Ctrl-C while ``engine.finish`` tears a job down: a job failing (a video refused mid-run) ends by its own
    error, its line and exit status; a job that finished stops as such, also where its caller started it while
    handling an exception of its own (an ``except`` block: a retry, a fallback), where the caller's exception was
    taken for the job's and the Ctrl-C dropped, the job returning as finished; and a job that fails by raising the
    very exception its caller was handling (a stored error raised again) ends by it, not by a KeyboardInterrupt."""
    from mme import cli
    from mme.train import loop

    _finish_whose_collection_takes_a_signal(monkeypatch, signal.SIGINT)
    out = tmp_path / "run"
    if job.startswith("failing"):
        monkeypatch.setattr(loop, "train_step", lambda run, stream, stop: (_ for _ in ()).throw(
            DataError("video v.mp4: refused mid-run")))
    if job == "failing, from the CLI":
        code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={out}",
                                                                         "train.steps=2", FP32)])
        assert (code, capsys.readouterr().err.splitlines()[-1]) == (1, "mme pretrain: error: video v.mp4: refused "
                                                                       "mid-run")
    elif job == "failing, from Python":
        with pytest.raises(DataError, match="refused mid-run"):
            run("tiny_cpu_pixel", synth, out, "train.steps=2", FP32)
    elif job == "failing by its caller's exception":
        error = DataError("the caller's, raised again by the job")
        monkeypatch.setattr(loop, "train_step", lambda run, stream, stop: (_ for _ in ()).throw(error))
        try:
            raise error
        except DataError:
            with pytest.raises(BaseException) as ended:  # (a KeyboardInterrupt, before, not left to stop pytest)
                run("tiny_cpu_pixel", synth, out, "train.steps=2", FP32)
        assert ended.value is error
    else:
        try:
            raise ValueError("the caller's own")
        except ValueError:
            with pytest.raises(Interrupted, match="as the job ended, its work done") as stopped:
                run("tiny_cpu_pixel", synth, out, "train.steps=2", FP32)
        assert stopped.value.exit_code == 130 and stopped.value.finished.step == 2 and _steps(out) == [2]


def test_a_jobs_end_collects_the_garbage_of_a_ddp_wrapper_or_of_the_job_that_imported_torch_dynamo():
    """A collection of the whole process (0.2-0.4 s) at every job's end was for a DDP wrapper's cycles alone; the job
    that imports ``torch._dynamo`` (a process's first optimizer) needs one too: that import leaves a cycle through the
    job's frames, and its model and optimizer (a GPU's memory) outlived it until a later collection."""
    import torch._dynamo  # noqa: F401  (imported, as any optimizer built in this process has)
    import torch.distributed as td

    from mme.train import engine

    def before(dynamo: bool) -> engine.Before:
        return engine.Before(frozenset(), 1, {}, False, dynamo)

    plain = torch.nn.Linear(2, 2)
    assert engine._collected_at_finish(plain, before(False))  # this job imported it
    assert not engine._collected_at_finish(plain, before(True))
    td.init_process_group("gloo", rank=0, world_size=1, store=td.HashStore())
    try:
        assert engine._collected_at_finish(torch.nn.parallel.DistributedDataParallel(plain), before(True))
    finally:
        td.destroy_process_group()
