"""The pre-training loop on real (generated, H.264) synthetic videos: losses fall, logs and run records are
written, failures are caught at start-up or after too many non-finite steps."""

from __future__ import annotations

import ast
import dataclasses
import gc
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from training import FP32, on_one_core, run, tiny, tiny_config

from mme import cli
from mme.config import load_config
from mme.errors import CheckpointError, ConfigError, DataError, MMEError, NonFiniteLossError, VideoError
from mme.models.checkpoint import load_encoder
from mme.train.config import FinetuneConfig, PretrainConfig
from mme.train.optim import cosine_schedule
from mme.utils import caller_generator_kept, generator_for_a_job

pytestmark = pytest.mark.numerics  # also run with 'auto' resolved as on the other CPU kind (Makefile)


def _falls(values: list[float], k: int = 5) -> tuple[float, float]:
    return sum(values[:k]) / k, sum(values[-k:]) / k


def test_pixel_loss_decreases(synth, tmp_path):
    # VideoMAE's normalised-pixel loss starts at ~1 (predicting the token mean) and falls slowly: over 40 steps
    # 1.033 -> 1.002 for seeds 0, 1, 2 (6-step means); require a fall well outside the ~0.005 step noise.
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=40")
    first, last = _falls([r["loss"] for r in res.history], 6)
    assert last < first - 0.015, (first, last)
    assert res.step == 40 and res.nonfinite_skipped == 0


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_step_bar_in_a_log_file_is_drawn_at_its_start_and_end_not_at_every_step(synth, tmp_path, capsys):
    # stderr in a file (a Slurm log) keeps every redraw: setting the bar's postfix redrew it at each step (224
    # redraws for 200 steps, megabytes of one line over a long run)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=6", "model.depth=1", FP32)
    drawn = re.findall(r"(\d+)/6 \[", capsys.readouterr().err)
    assert drawn[0] == "0" and drawn[-1] == "6" and len(drawn) <= 3, drawn


@pytest.mark.pinned  # every run train.precision=fp32
def test_loader_workers_are_stopped_when_the_run_returns(synth, tmp_path):
    # Left to the garbage collector, a run's loader shut its workers down at some later point: inside the
    # next run's timed steps when the demo runs targets back to back in one process.
    gc.disable()  # so that only the run itself can have stopped them
    try:
        before = set(multiprocessing.active_children())  # anything an earlier test in this process left
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "data.num_workers=2", FP32)
        assert set(multiprocessing.active_children()) <= before
    finally:
        gc.enable()


@pytest.mark.pinned  # every run train.precision=fp32
def test_one_set_of_loader_workers_serves_every_epoch_and_gives_the_items_of_no_workers(synth, tmp_path,
                                                                                       monkeypatch):
    """16 clips at batch 4 are 4 steps per epoch: 7 steps cross an epoch boundary, where the workers have already
    prefetched the next epoch's items. Those must be drawn for their own epoch, as without workers; and the same 2
    workers serve both epochs (so each keeps its per-process index of the files it read)."""
    from mme.data.dataset import PretrainDataset
    from mme.train import loop
    from mme.train.distributed import epoch_batches

    started = tmp_path / "workers_started"
    monkeypatch.setattr(loop, "ignore_in_worker", lambda worker_id: open(started, "a").write(f"{worker_id}\n"))
    get, runs, keys = PretrainDataset.__getitem__, {}, {}
    for w in (2, 0):
        asked = tmp_path / f"keys{w}"  # the items asked for, by whichever process makes them
        monkeypatch.setattr(PretrainDataset, "__getitem__",
                            lambda self, key, asked=asked: (open(asked, "a").write(f"{key}\n"), get(self, key))[1])
        runs[w] = run("tiny_cpu_mme", synth, tmp_path / str(w), "train.steps=7", FP32, "train.threads=1",
                      f"data.num_workers={w}")
        keys[w] = [ast.literal_eval(line) for line in asked.read_text().splitlines()]
    assert sorted(started.read_text().split()) == ["0", "1"]
    expected = [(e, i) for e in (0, 1) for batch in epoch_batches(16, 4, 0, e, 0, 1) for i in batch][:28]
    assert keys[0] == expected and set(expected) <= set(keys[2])  # the workers also prefetched a few beyond
    assert [r["epoch"] for r in runs[2].history] == [0, 0, 0, 0, 1, 1, 1]  # each step's own epoch
    assert [r["loss"] for r in runs[2].history] == [r["loss"] for r in runs[0].history]
    a, b = (torch.load(runs[w].checkpoint, weights_only=True)["model"] for w in (2, 0))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_step_takes_the_cores_the_workers_leave_and_the_process_gets_its_threads_back(synth, tmp_path,
                                                                                           monkeypatch):
    from mme.train import precision

    monkeypatch.setattr(precision, "core_share", lambda: (3, ""))
    calls = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), set_threads(n)))
    before = torch.get_num_threads()
    try:
        set_threads(2)
        run("tiny_cpu_pixel", synth, tmp_path / "auto", "train.steps=2", "data.num_workers=2", FP32)
        meta = json.loads((tmp_path / "auto" / "run.json").read_text())
        assert (meta["threads"], meta["threads_reason"]) == (1, "auto: 3 cores less 2 loader workers")
        assert calls == [1, 2] and torch.get_num_threads() == 2  # set for the run, then given back
        run("tiny_cpu_pixel", synth, tmp_path / "set", "train.steps=1", "train.threads=3", FP32)
        assert json.loads((tmp_path / "set" / "run.json").read_text())["threads"] == 3 and calls[2:] == [3, 2]
    finally:
        set_threads(before)


@pytest.mark.pinned  # every run train.precision=fp32
def test_loader_workers_on_one_core_are_said_once_in_mmes_words(synth, tmp_path, caplog):
    """On one core (taskset -c 0) a recipe's 2 loader workers leave the step none: its threads reason said "1
    cores less 2 loader workers" (the clamp to 1 unsaid) and torch warned twice that the loader "might get running
    slow or even freeze". The reason says the clamp and what suits the machine; mme warns once, torch not at all."""
    import warnings

    with on_one_core():
        with caplog.at_level(logging.WARNING, logger="mme"), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            run("tiny_cpu_pixel", synth, tmp_path / "one", "train.steps=1", "data.num_workers=2", FP32)
    meta = json.loads((tmp_path / "one" / "run.json").read_text())
    assert (meta["threads"], meta["threads_reason"]) == (
        1, "auto: at least 1: the 2 loader workers leave none of 1 core; data.num_workers=0 suits this machine")
    assert not [w for w in said if "worker processes" in str(w.message)]  # torch's, at the loader's creation and start
    assert [r.getMessage() for r in caplog.records if "loader workers on" in r.getMessage()] == [
        "data.num_workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside this process: "
        "data.num_workers=0 suits this machine"]


@pytest.mark.pinned  # no run: a loader made in each rank's process
def test_loader_workers_beside_a_nodes_cores_are_said_by_rank_0_alone():
    """Under torchrun every rank warned of its loader workers outnumbering the usable cores, the same line once per
    rank: the node's ranks share its cores (mme.utils.usable_cores), so rank 0 alone says it
    (mme.cli.ALIKE_ON_EVERY_RANK), as the run's threads reason."""
    import subprocess
    import sys

    # the two ranks' processes in turn in one (its torch imported once): each its own log and its own once-a-process
    # warnings, rank 1's first, so that a line it said cannot have silenced rank 0's
    script = ("import logging, os, sys, types; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from mme import cli; from mme.data import dataset\n"
              "for rank in (1, 0):\n"
              "    os.environ['RANK'] = str(rank); logging.root.handlers.clear(); dataset._WORKERS_SAID.clear()\n"
              "    print(f'@@ rank {rank}', file=sys.stderr, flush=True)\n"
              "    cli._logging_of_ranks(types.SimpleNamespace(verbose=False))\n"
              "    dataset.make_loader(list(range(4)), batch_size=2, num_workers=2)\n")
    env = {**os.environ, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said = {int(rank): [ln.split("] ", 1)[1] for ln in err.splitlines() if "loader workers on" in ln]
            for rank, err in re.findall(r"@@ rank (\d)\n(.*?)(?=@@ rank|\Z)", done.stderr, re.S)}
    assert said == {0: ["data.num_workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside "
                        "this process: data.num_workers=0 suits this machine"], 1: []}


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_log_stopped_by_a_full_disk_is_recorded_and_the_demos_loss_is_read_from_a_log_that_reaches_the_end(
        synth, tmp_path, monkeypatch, caplog):
    """The disk is briefly full at step 2 of 4: the JSONL logger is dropped (the run goes on), so metrics.jsonl ends
    at step 1. Before: nothing recorded it, and the demo's loss over the last tenth of the steps was read from that
    log: the figures of step 1, as the run's final loss, and its verdict made from them. Now run.json records the log
    and the step its logger stopped at, the demo reads metrics.csv, which reaches the last step, and where no log
    does the row has no loss figures (NaN), with a note saying why."""
    import errno

    from mme.demo import loss_against_mean
    from mme.train import metrics as metrics_module

    write = metrics_module.JSONLLogger.log

    def full_at_step_2(self, metrics, step):
        if step == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, metrics, step)

    monkeypatch.setattr(metrics_module.JSONLLogger, "log", full_at_step_2)
    result = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", FP32)
    monkeypatch.undo()
    assert [r["step"] for r in metrics_module.read_records(tmp_path / "metrics.jsonl")] == [1]
    assert json.loads((tmp_path / "run.json").read_text())["logs_stopped"] == {"metrics.jsonl": 2}
    cfg = load_config(PretrainConfig, "tiny_cpu_pixel", tiny(*synth, "train.steps=4"))
    level = loss_against_mean(cfg, tmp_path / "metrics.jsonl", 2)
    last = [h for h in result.history if h["step"] == 4][0]["loss"]
    assert level["final_loss"] == pytest.approx(last, rel=1e-6) and level["loss_ratio"] == pytest.approx(
        last / level["mean_prediction_loss"])
    lines = (tmp_path / "metrics.csv").read_text().splitlines(keepends=True)
    (tmp_path / "metrics.csv").write_text("".join(lines[:-2]))  # the CSV stopped too: at step 2
    known = level
    with caplog.at_level(logging.WARNING, logger="mme.demo"):
        level = loss_against_mean(cfg, tmp_path / "metrics.jsonl", 2)
    assert math.isnan(level["final_loss"]) and math.isnan(level["loss_ratio"])
    # the level needs no log: given all the same (the demo's report names its clips; without them it stopped)
    assert level["mean_prediction_loss"] == known["mean_prediction_loss"] and level["mean_prediction_clips"] == 2
    assert level["loss_note"] == (f"{tmp_path}: its logs do not reach the run's last step, 4 (metrics.jsonl stops at "
                                  f"step 1; metrics.csv stops at step 2: a write that failed, a full disk, stopped "
                                  f"them), so its loss there is not known")
    assert level["loss_note"] in caplog.text


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_demos_loss_of_the_last_tenth_of_the_steps_weighs_each_record_by_its_steps(synth, tmp_path):
    """50 steps logged every 3: 17 records, the last (forced at the run's end) of steps 49-50 alone. The demo's
    "loss, last tenth of the steps" averaged the last tenth of the records: that one, 2 steps. It is the mean over
    steps 46-50, as the same run logged at every step gives it."""
    from mme.demo import loss_against_mean

    kept = ("train.steps=50", "model.depth=1", "train.batch_size=2", FP32)
    every = run("tiny_cpu_pixel", synth, tmp_path / "every", *kept, "train.log_every=1").history
    threes = run("tiny_cpu_pixel", synth, tmp_path / "threes", *kept, "train.log_every=3").history
    assert len(threes) == 17 and [(r["step"], r.get("steps")) for r in threes[-2:]] == [(48, 3), (50, 2)]
    cfg = load_config(PretrainConfig, "tiny_cpu_pixel", tiny(*synth, *kept))
    level = {d: loss_against_mean(cfg, tmp_path / d / "metrics.jsonl", 2)["final_loss"] for d in ("every", "threes")}
    last = sum(r["loss"] for r in every[-5:]) / 5
    assert level["every"] == pytest.approx(last, rel=1e-12) and level["threes"] == pytest.approx(last, rel=1e-12)


@pytest.fixture
def held_on_its_first_step(monkeypatch):
    """``(training, go_on)``: a run's first step waits, once ``training`` is set, for ``go_on``."""
    from mme.train import loop

    real_step, training, go_on = loop.train_step, threading.Event(), threading.Event()

    def held(run, stream, stop):
        if not training.is_set():
            training.set()
            go_on.wait(60)
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", held)
    return training, go_on


ANOTHER_THREAD_TRAINS = ("^an mme training job .* is running in another thread of this process: torch's global "
                         "generator.* is shared by the threads of one process.*; run them one after another, or in "
                         "separate processes$")


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_started_while_another_trains_in_another_thread_is_refused_and_one_after_another_is_fine(
        synth, tmp_path, held_on_its_first_step):
    """Two pretrain() runs in a notebook's thread pool at once drew, and re-seeded, torch's one global generator
    (initial weights, dropout at every step) in turns: losses matching neither run alone, under the seed each
    recorded. The second is refused at once, saying why and what to do; the first trains on, as one after it."""
    from concurrent.futures import ThreadPoolExecutor

    training, go_on = held_on_its_first_step
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run, "tiny_cpu_pixel", synth, tmp_path / "first", "train.steps=3", FP32)
        assert training.wait(60)
        try:
            with pytest.raises(MMEError, match=ANOTHER_THREAD_TRAINS):
                run("tiny_cpu_pixel", synth, tmp_path / "second", "train.steps=3", FP32)
        finally:
            go_on.set()
        first = first.result()
    assert not (tmp_path / "second").exists()
    second = run("tiny_cpu_pixel", synth, tmp_path / "second", "train.steps=3", FP32)
    assert [h["loss"] for h in second.history] == [h["loss"] for h in first.history] and len(first.history) == 3


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_load_while_another_thread_trains_is_refused_and_a_run_waits_for_a_load(synth, tmp_path,
                                                                                 held_on_its_first_step):
    """A load (load_encoder, embed(), run_probe(): :func:`caller_generator_kept`) in another thread while a run
    trained drew and rewound the global generator the run draws its dropout from: the run's losses differed from
    the run alone, without a word. It is refused while the run trains, as a second run is; a run started while a
    load holds the generator waits for it (a load is short)."""
    from concurrent.futures import ThreadPoolExecutor

    training, go_on = held_on_its_first_step
    with ThreadPoolExecutor(1) as pool:
        training_run = pool.submit(run, "tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=1", FP32)
        assert training.wait(60)
        try:
            with pytest.raises(MMEError, match=ANOTHER_THREAD_TRAINS), caller_generator_kept():
                pass
        finally:
            go_on.set()
        assert training_run.result().step == 1
        loading, done = threading.Event(), []

        def load():
            with caller_generator_kept():
                loading.set()
                time.sleep(0.3)
                done.append("load")

        loaded = pool.submit(load)
        assert loading.wait(60)
        with generator_for_a_job():
            done.append("job")
        loaded.result()
    assert done == ["load", "job"]


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_process_forked_while_another_thread_trains_trains(synth, tmp_path, held_on_its_first_step):
    """The refusal's own advice, separate processes: a child forked (multiprocessing's default on Linux, a
    ProcessPoolExecutor) while a thread of the parent trained inherited the held lock and was refused, though no job
    ran in its process. It trains."""
    training, go_on = held_on_its_first_step
    fork = multiprocessing.get_context("fork")
    said = fork.Queue()

    def child():
        try:
            said.put(run("tiny_cpu_pixel", synth, tmp_path / "child", "train.steps=1", FP32).step)
        except BaseException as e:  # noqa: BLE001 (said to the parent)
            said.put(f"{type(e).__name__}: {e}")

    ran = []
    thread = threading.Thread(target=lambda: ran.append(run("tiny_cpu_pixel", synth, tmp_path / "thread",
                                                            "train.steps=1", FP32).step))
    thread.start()
    process = fork.Process(target=child)
    try:
        assert training.wait(60)
        process.start()
        try:
            got = said.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"the forked child said nothing in 60 s (alive: {process.is_alive()}, exit code "
                        f"{process.exitcode})")
        assert got == 1
        process.join(60)
    finally:
        go_on.set()
        thread.join(60)
        if process.is_alive():
            process.kill()
    assert ran == [1]  # (the parent's run, which a thread's exception would not fail)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_and_the_demos_random_encoder_leave_the_callers_global_generator_as_it_was(synth, tmp_path):
    """A notebook seeds torch, calls pre-training, then draws: the run seeded the global generator for its weights
    and dropout and left it so, so the caller's draws no longer followed its seed (also after a failed run; numpy's
    and Python's after a resumed run, which sets them from its checkpoint)."""
    from mme.demo import _random_encoder, loss_against_mean

    torch.manual_seed(1)
    before = torch.get_rng_state()
    run("tiny_cpu_pixel", synth, tmp_path / "ok", "train.steps=2", FP32)
    assert torch.equal(torch.get_rng_state(), before)
    (tmp_path / "missing.txt").write_text("nope.mp4 0\n" * 4)
    with pytest.raises(DataError, match="failed, more than data.max_failure_fraction"):  # in the loop
        run("tiny_cpu_pixel", [f"data.list_file={tmp_path / 'missing.txt'}", synth[1]], tmp_path / "bad",
            "train.steps=2", FP32)
    assert torch.equal(torch.get_rng_state(), before)
    _random_encoder(load_config(PretrainConfig, "tiny_cpu_mme", tiny()), 0)
    assert torch.equal(torch.get_rng_state(), before)
    # the demo's loss of predicting the mean target builds a model of random weights, whose loss alone it uses
    level = loss_against_mean(load_config(PretrainConfig, "tiny_cpu_pixel", tiny(*synth, "train.steps=2")),
                              tmp_path / "ok" / "metrics.jsonl", 2)
    assert torch.equal(torch.get_rng_state(), before) and level["mean_prediction_clips"] == 2
    # a resumed run sets numpy's and Python's generators too, from its checkpoint: put back as well
    np.random.seed(3)
    random.seed(3)
    state = (np.random.get_state()[1].copy(), random.getstate())
    run("tiny_cpu_pixel", synth, tmp_path / "ok", "train.steps=3", "train.resume=auto", FP32)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], state[0]) and random.getstate() == state[1]


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_asked_for_fp32_trains_in_fp32_under_a_callers_autocast_which_is_left_on(synth, tmp_path):
    """A notebook's ``torch.autocast("cpu", dtype=torch.bfloat16)`` around ``pretrain()``: a run asked for fp32 ran
    its forward (an fp32 autocast was no context) and its targets in bf16, and recorded fp32; its losses were bf16's."""
    plain = run("tiny_cpu_pixel", synth, tmp_path / "plain", "train.steps=2", FP32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = run("tiny_cpu_pixel", synth, tmp_path / "under", "train.steps=2", FP32)
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16  # the caller's
    assert [h["loss"] for h in under.history] == [h["loss"] for h in plain.history]
    assert json.loads((tmp_path / "under" / "run.json").read_text())["precision"] == "fp32"


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_called_with_gradients_off_trains_as_one_called_with_them_on_and_leaves_them_off(synth, tmp_path):
    """A notebook cell under ``torch.no_grad()`` (or ``torch.inference_mode()``, or after
    ``torch.set_grad_enabled(False)``) that calls ``pretrain()``: torch's traceback, 'element 0 of tensors does not
    require grad', at the first backward."""
    plain = [h["loss"] for h in run("tiny_cpu_pixel", synth, tmp_path / "plain", "train.steps=2", FP32).history]
    with torch.no_grad():
        losses = [h["loss"] for h in run("tiny_cpu_pixel", synth, tmp_path / "no_grad", "train.steps=2", FP32).history]
        assert not torch.is_grad_enabled()  # the caller's
    assert losses == plain
    with torch.inference_mode():
        losses = [h["loss"] for h in run("tiny_cpu_pixel", synth, tmp_path / "inference", "train.steps=2",
                                         FP32).history]
        assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    assert losses == plain


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_called_with_float64_as_the_default_dtype_trains_in_float32_and_leaves_it(synth, tmp_path):
    """A notebook's ``torch.set_default_dtype(torch.float64)`` before ``pretrain()``: the model was built in float64
    and refused the float32 clips, advising ``x.to(torch.float64)``, which no caller of pretrain can give."""
    plain = run("tiny_cpu_pixel", synth, tmp_path / "plain", "train.steps=2", FP32)
    torch.set_default_dtype(torch.float64)
    try:
        under = run("tiny_cpu_pixel", synth, tmp_path / "under", "train.steps=2", FP32)
        assert torch.get_default_dtype() == torch.float64  # the caller's
    finally:
        torch.set_default_dtype(torch.float32)
    assert [h["loss"] for h in under.history] == [h["loss"] for h in plain.history]
    weights = load_encoder(under.checkpoint).state_dict()
    assert {t.dtype for t in weights.values()} == {torch.float32}
    assert all(torch.equal(t, load_encoder(plain.checkpoint).state_dict()[k]) for k, t in weights.items())


def test_mme_loss_terms_decrease_and_the_run_is_recorded(synth, tmp_path):
    res = run("tiny_cpu_mme", synth, tmp_path, "train.steps=20", "train.ckpt_every=5", "train.keep_last=2")
    for term in ("loss_traj", "loss_shape"):  # e.g. traj 23.9 -> 13.7, shape 23.0 -> 4.8 (first/last 4 steps)
        first, last = _falls([r[term] for r in res.history], 4)
        assert last < 0.8 * first, (term, first, last)
    # per-step JSONL and CSV with each term, the grad norm, the trajectory term's valid-token fraction
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert {"loss", "loss_traj", "loss_shape", "grad_norm", "valid_traj", "lr", "clips_per_s",
            "data_failures", "data_wait"} <= set(rows[0])
    assert all(0.5 < r["valid_traj"] <= 1.0 for r in rows)
    # without loader workers the step waits while the main process decodes and makes the MME targets
    assert all(0 < r["data_wait"] < 1 for r in rows) and sum(r["data_wait"] for r in rows) / len(rows) > 0.05
    assert rows[-1]["data_failures"] == 0
    # each step's lr is the schedule's at that step (warm-up, then cosine), as the step applied it
    cfg = load_config(PretrainConfig, tmp_path / "config.yaml")
    peak, final = cfg.optim.scaled_lr(cfg.train.batch_size)
    assert [r["lr"] for r in rows] == [cosine_schedule(s, 20, cfg.optim.warmup_steps, peak, final) for s in range(20)]
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,loss") and len(csv_lines) == 21
    assert (tmp_path / "loss.png").stat().st_size > 1000
    # resolved config + reproducibility facts, in the folder and in the checkpoint
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["embed_dim"] == 64 and saved["target"]["kind"] == "mme"
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["torch"] == torch.__version__ and meta["precision"] in ("fp32", "bf16") and meta["device"] == "cpu"
    assert len((meta["git"] or "").removesuffix("-dirty")) in (0, 40)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pt")) == ["checkpoint-00000015.pt",
                                                                       "checkpoint-00000020.pt"]
    state = torch.load(res.checkpoint, weights_only=True)
    assert state["step"] == 20 and state["config"]["model"]["depth"] == 2 and state["meta"] == meta
    # the checkpoint engineer's loader reads our training checkpoint
    enc = load_encoder(res.checkpoint)
    assert torch.equal(enc.blocks[1].mlp.fc2.weight, state["model"]["encoder.blocks.1.mlp.fc2.weight"])


def _accumulated_vs_big_batch(synth, tmp_path, *extra: str) -> tuple[float, float, float]:
    """Two steps with batch 4 vs 2 x 2 accumulated: the largest weight difference, and the two final losses."""
    a = run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=2", "train.batch_size=4", *extra)
    b = run("tiny_cpu_pixel", synth, tmp_path / "b", "train.steps=2", "train.batch_size=2", "train.accum_steps=2",
            *extra)
    sa, sb = (torch.load(r.checkpoint, weights_only=True)["model"] for r in (a, b))
    return max((sa[k] - sb[k]).abs().max().item() for k in sa), a.history[-1]["loss"], b.history[-1]["loss"]


@pytest.mark.pinned  # every run train.precision=fp32
def test_gradient_accumulation_equals_the_big_batch(synth, tmp_path):
    worst, loss_a, loss_b = _accumulated_vs_big_batch(synth, tmp_path, FP32)
    assert worst <= 1e-6
    assert loss_a == pytest.approx(loss_b, rel=1e-5)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_step_copies_its_metrics_to_the_host_once_and_agrees_on_each_micro_batch_for_free_in_one_process(
        synth, tmp_path, monkeypatch):
    """train_step copied every metric to the host (a GPU sync) on every micro-batch; now once a step, logging the
    same values: the float64 mean of the micro-batches' own. The ranks still agree on a data failure before every
    micro-batch (DDP may hold a collective in any forward), which in one process copies nothing to the host."""
    from mme.train import distributed as dist
    from mme.train import loop
    from mme.train import pretrain as pretraining

    counted = {"any_true": 0, "item": 0}
    real_any_true, real_item, real_step, real_forward = dist.any_true, torch.Tensor.item, loop.train_step, \
        pretraining._forward
    per_step, losses = [], []

    def any_true(*args):
        counted["any_true"] += 1
        return real_any_true(*args)

    def item(self):
        counted["item"] += 1
        return real_item(self)

    def step(run, stream, stop):
        before = dict(counted)
        stepped = real_step(run, stream, stop)  # (metrics, lr, wd)
        per_step.append({k: counted[k] - before[k] for k in counted})
        return stepped

    def forward(run, inputs):
        loss, values = real_forward(run, inputs)
        losses.append(loss.detach().clone())
        return loss, values

    monkeypatch.setattr(dist, "any_true", any_true)
    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(pretraining, "_forward", forward)
    counts = {}
    for accum in (1, 4):
        per_step.clear(), losses.clear()
        result = run("tiny_cpu_pixel", synth, tmp_path / f"accum{accum}", "train.steps=2", "train.batch_size=2",
                     f"train.accum_steps={accum}", FP32)
        counts[accum] = list(per_step)
        assert [c["any_true"] for c in per_step] == [accum + 1] * 2  # the data's agreements and update's (a skip)
        for step_losses, record in zip((losses[:accum], losses[accum:]), result.history, strict=True):
            mean = 0.0
            for loss in step_losses:  # what the loop summed in Python floats
                mean += real_item(loss) / accum
            assert record["loss"] == mean
    assert [c["item"] for c in counts[4]] == [c["item"] for c in counts[1]]


@pytest.mark.pinned  # each case pins its precision (bf16, fp16)
@pytest.mark.parametrize("device,precision", [
    ("cpu", "bf16"),
    pytest.param("cuda", "bf16", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    pytest.param("cuda", "fp16", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
])
def test_gradient_accumulation_matches_the_big_batch_within_low_precision_rounding(device, precision, synth,
                                                                                    tmp_path):
    """Under autocast the two runs round activations differently. Bounds from the formats: the loss (a mean of
    fp32-accumulated terms) within a few units of bf16's 2^-8 relative rounding; each AdamW update is at most
    ~lr (1e-3) in size whatever the gradient, so after 2 steps no weight can differ by more than 2 x 2 x lr."""
    worst, loss_a, loss_b = _accumulated_vs_big_batch(synth, tmp_path, f"train.precision={precision}",
                                                      f"train.device={device}")
    assert worst <= 4e-3, worst
    assert loss_a == pytest.approx(loss_b, rel=4 * 2**-8)


@pytest.mark.pinned  # refused before a precision is chosen
@pytest.mark.parametrize("sizes", [("train.batch_size=17",), ("train.batch_size=2", "train.accum_steps=9")])
def test_a_step_bigger_than_an_epoch_is_refused_naming_the_keys_to_lower(sizes, synth, tmp_path):
    """Before: '16 clips give 8 batches per epoch of 2 x 1 ranks; an optimizer step needs 9', no key named."""
    code = cli.main(["pretrain", "--config", "tiny_cpu_pixel", *tiny(*synth, f"train.out_dir={tmp_path / 'run'}",
                                                                     *sizes)])
    assert code == 1
    batch, accum = (int(s.split("=")[1]) for s in (*sizes, "train.accum_steps=1")[:2])
    with pytest.raises(MMEError, match=rf"train.batch_size={batch} x 1 rank; an optimizer step needs "
                       rf"train.accum_steps={accum} of them \({batch * accum} clips\): lower train.batch_size or "
                       "train.accum_steps"):
        run("tiny_cpu_pixel", synth, tmp_path / "run2", *sizes)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_clip_window_longer_than_the_videos_is_warned_about_as_the_reads_meet_them(synth, tmp_path, caplog):
    """A stride or track length too long for the list's videos trained on clips that repeat their last frame (the
    sampler clamps to it), exit 0 and not a word (data.stride=16 over videos of 48 frames: an auditor's fuzzing).
    The reads record each video's frames in a table the loader workers share (no video opened for it), and the
    first metrics record that finds a short one warns, naming the keys, the window and the shortest; a window the
    videos hold says nothing. One past any video (data.stride=1e12) is refused at load."""
    def warned(*overrides: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme.train.loop"):
            run(*overrides[:1], synth, tmp_path / f"run{len(list(tmp_path.iterdir()))}", FP32, "train.steps=2",
                "train.log_every=1", *overrides[1:])
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]

    # 8 frames at stride 4 span 29 raw frames of the synth's 24: two steps of 4 clips read 8 videos
    said = warned("tiny_cpu_pixel", "data.stride=4")
    listed, root = (o.split("=", 1)[1] for o in synth)
    check = f"mme check {listed} --root {root} --min-frames 29"  # (was `mme check --min-frames 29`: no list given)
    assert said == ["data: the 4 videos read so far hold fewer raw frames than the 29 a clip spans "
                    "(data.num_frames=8 at data.stride=4; the shortest holds 24): their clips repeat their last "
                    "frame, and train on frozen frames; lower data.stride, or leave them out of the list "
                    f"(`{check}` names them)",
                    "data: the 8 videos read over the run hold fewer raw frames than the 29 a clip spans "
                    "(data.num_frames=8 at data.stride=4; the shortest holds 24): their clips repeat their last "
                    "frame, and train on frozen frames; lower data.stride, or leave them out of the list "
                    f"(`{check}` names them)"], said
    # one short video of those read: the line agrees with it (before: "their clips repeat their last frame", "leave
    # them out", "names them")
    from types import SimpleNamespace

    from mme.train.loop import warn_short
    from mme.train.pretrain import pretrain_dataset
    cfg = load_config(PretrainConfig, "tiny_cpu_pixel", [*synth, "data.stride=4"])
    data = pretrain_dataset(cfg)
    data._note_frames(0, 24)  # (as a read records them)
    data._note_frames(1, 40)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.train.loop"):
        warn_short(SimpleNamespace(cfg=cfg, data=data, short_videos_said=0, short_videos_next=1, step=1))
    assert [r.getMessage() for r in caplog.records] == [
        "data: 1 of the 2 videos read so far holds fewer raw frames than the 29 a clip spans (data.num_frames=8 at "
        "data.stride=4; the shortest holds 24): its clips repeat its last frame, and train on frozen frames; lower "
        f"data.stride, or leave it out of the list (`{check}` names it)"]
    # the command as said runs, and names each of the list's videos short
    report = tmp_path / "check.json"
    assert cli.main([*shlex.split(check)[1:], "--out", str(report)]) == 0
    checked = json.loads(report.read_text())
    assert (checked["videos"], checked["counts"], checked["min_frames"]) == (16, {"short": 16}, 29), checked
    # tracks of 12 from the last tubelet's start (12) reach raw frame 24: a window of 25
    said = warned("tiny_cpu_mme", "target.track_length=12", "data.num_workers=1")
    assert len(said) == 2 and said[0].startswith("data: ") and "than the 25 a clip spans (data.num_frames=8 at " \
        "data.stride=2, and target.track_length=12: 10 more for the last tubelet's tracks; the shortest holds 24)" \
        in said[0] and "lower data.stride or target.track_length" in said[0], said
    # at stride 1 the clip alone (32 frames) is longer than the videos: no stride fits it, data.num_frames is named
    said = warned("tiny_cpu_pixel", "data.stride=1", "data.num_frames=32", "model.num_frames=32")
    assert len(said) == 2 and "than the 32 a clip spans (data.num_frames=32 at data.stride=1; the shortest holds " \
        "24): their clips repeat their last frame, and train on frozen frames; lower data.num_frames (with " \
        "model.num_frames), or leave them out" in said[0] and "data.stride," not in said[0], said
    # records every 3 steps (no step a power of two): the first, at step 3, looks and warns (before: at the end only)
    said = warned("tiny_cpu_pixel", "data.stride=4", "train.steps=4", "train.log_every=3")
    assert len(said) == 2 and said[0].startswith("data: the 12 videos read so far"), said
    assert warned("tiny_cpu_pixel", "data.stride=3") == []  # (a window of 22)
    assert warned("tiny_cpu_mme") == []  # (its tracks of 6 end at raw frame 18)
    # TSN segments (SSv2's recipes) of 32 over videos of 24 draw frames twice (before: not a word, no window counted)
    said = warned("tiny_cpu_pixel", "data.sampling=segments", "data.num_frames=32", "model.num_frames=32")
    assert len(said) == 2 and said[0].startswith("data: the 4 videos read so far hold fewer raw frames than the "
                                                 "32 a clip spans (data.num_frames=32 in data.sampling=segments; the "
                                                 "shortest holds 24): their clips draw frames more than once, and "
                                                 "train on frozen frames; lower data.num_frames (with model.num_frames)"
                                                 ", or leave them out"), said
    # with tracks of 20 after 8 segments: 28 frames, the last segments' tracks repeating the last frame
    said = warned("tiny_cpu_mme", "data.sampling=segments", "target.track_length=20", "data.num_workers=1")
    assert len(said) == 2 and "than the 28 a clip spans (data.num_frames=8 in data.sampling=segments, and " \
        "target.track_length=20: 20 more for the last tubelet's tracks; the shortest holds 24): their clips repeat " \
        "their last frame, and train on frozen frames; lower target.track_length, or" in said[0], said
    assert warned("tiny_cpu_pixel", "data.sampling=segments") == []  # (8 segments of 24 frames)


def _second_step_raises(monkeypatch, error: BaseException | Callable[[], BaseException]) -> None:
    """The training step raises ``error`` at the run's second step (its first checkpoint written); a function, the
    error it makes there (its advice as the command running words it)."""
    from mme.train import loop

    real_step = loop.train_step

    def step(run, stream, stop):
        if run.step == 1:
            raise error() if callable(error) else error
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", step)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_step_whose_batch_could_not_be_mapped_under_a_memory_limit_names_the_limit(synth, tmp_path, monkeypatch):
    """A loader worker's batch the step could not map ("unable to mmap ...: Cannot allocate memory (12)") under
    ``ulimit -v``: the step's out-of-memory line names the limit and its remedy, not batch sizes to lower."""
    import resource

    from mme.train import loop

    error = RuntimeError("unable to mmap 1048576 bytes from file </torch_4_1_0>: Cannot allocate memory (12)")
    real_step, real_limit = loop.train_step, resource.getrlimit

    def step(run, stream, stop):
        if run.step == 1:  # (the limit set as the step raises: the run before it has none)
            monkeypatch.setattr(resource, "getrlimit", lambda kind: (1200000 * 1024, resource.RLIM_INFINITY)
                                if kind == resource.RLIMIT_AS else real_limit(kind))
            raise error
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", step)
    with pytest.raises(MMEError) as raised:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "train.ckpt_every=1", "model.depth=1", FP32)
    assert str(raised.value) == (
        f"step 2: out of memory under this process's address space limit, 1172 MiB (ulimit -v 1200000): {error}; "
        "raise it (ulimit -v unlimited: torch and its libraries reserve gigabytes of address space they do not use; "
        "a scheduler's --mem limits what a job uses instead). Kept: checkpoint-00000001.pt")


@pytest.mark.pinned  # every run train.precision=fp32
@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 9437184 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    # a GPU's, raised as a plain RuntimeError by older torch and by paths outside the caching allocator (was a
    # traceback): its allocator, a kernel's launch, cuBLAS's handle
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other API "
                 "call, so the stacktrace below might be incorrect."),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("mat1 and mat2 shapes cannot be multiplied")])
def test_a_step_out_of_memory_names_the_step_and_what_to_lower_and_keeps_the_checkpoint(error, synth, tmp_path,
                                                                                           monkeypatch):
    # before: torch's allocator error was a ~30-line traceback; any other RuntimeError is still raised as it was
    _second_step_raises(monkeypatch, error)
    with pytest.raises((MMEError, RuntimeError)) as raised:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=3", "train.ckpt_every=1", "model.depth=1", FP32)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pt")) == ["checkpoint-00000001.pt"]
    if "shapes" in str(error):
        assert raised.value is error
        return
    assert isinstance(raised.value, MMEError) and raised.value.__cause__ is error
    text = str(raised.value)
    assert text.startswith("step 2: out of memory (") and "\n" not in text, text
    size = "the clips' size (data.img_size with model.img_size, data.num_frames with model.num_frames)"
    assert text.endswith("lower train.batch_size (raising train.accum_steps keeps the clips a step trains on), set "
                         f"train.activation_checkpointing=true, or lower {size}. Kept: checkpoint-00000001.pt"), text
    # the clips' size lowered as said is taken (data.img_size alone: "differs from model.img_size ... set both")
    cfg = tiny_config("tiny_cpu_pixel", synth, tmp_path / "smaller", "data.img_size=48", "model.img_size=48")
    assert (cfg.data.img_size, cfg.model.img_size) == (48, 48)


@pytest.mark.pinned  # no run
def test_advice_for_a_command_that_takes_none_of_its_settings_is_a_sentence_not_a_traceback():
    """memory_advice indexed its list of ways at [-1] and make_loader / workers_advice named ``None`` where the
    command running takes none of those settings (keys_as_flags with no flag for them, no overrides): an IndexError
    in place of the out-of-memory line, 'None=0 suits this machine'."""
    from mme.train.loop import memory_advice
    from mme.utils import keys_as_flags, workers_advice

    with keys_as_flags({"train.batch_size": None}, overrides=False):
        assert memory_advice(False) == memory_advice(True) == \
            "this command takes none of the settings that would lower it"
        assert workers_advice(4, 1) == "data.num_workers=0 suits this machine"
    with keys_as_flags({"train.batch_size": None, "data.num_workers": "--workers"}):
        assert memory_advice(True).startswith("lower --workers, or the clips' size (data.img_size with")
        assert workers_advice(4, 2) == "--workers=1 suits this machine"


def _loader_out_of_memory() -> MMEError:
    """The error a loader worker's failed allocation gives where its batch is fetched (mme.data.dataset._batches), its
    advice as the command running words it."""
    from mme.data.dataset import _out_of_memory

    return _out_of_memory(MemoryError("Caught MemoryError in DataLoader worker process 0.\nOriginal Traceback "
                                      "(most recent call last):\n  File \"w.py\", line 1, in f\nMemoryError: "
                                      "Unable to allocate 64.0 TiB"))


@pytest.mark.pinned  # its runs' 'auto' set to fp32 (AUTO_ENV)
@pytest.mark.parametrize("stop", ["step out of memory", "loader worker out of memory", "loader worker lost"])
@pytest.mark.usefixtures("demo_probes_left_out")
def test_a_run_stopped_in_the_demo_and_bench_pipeline_advises_only_what_each_command_takes(stop, tmp_path, capsys,
                                                                                           monkeypatch):
    """A step out of memory in ``mme demo`` advised "lower train.batch_size (raising train.accum_steps ...)" and, in a
    loader worker, "lower data.num_workers or train.batch_size": the demo refuses both ("mme demo sets these keys of
    its runs itself: train.batch_size (fixed: the same in every row)", data.num_workers: "use --workers"); in ``mme
    bench pipeline``, which takes no key=value at all, every key it named. The advice names each setting as the
    command takes it (mme.utils.said_as within keys_as_flags), leaving out those it does not take. A data stop (a
    loader worker out of memory or lost), whose run keeps its last step, advised "Kept: OUT/checkpoint-N.pt ...:
    --resume auto (train.resume=auto) continues from there": the demo takes neither (its rerun pre-trains the row
    again), and bench pipeline's run folder is removed on the way out. The demo says what continues it, for a worker
    out of memory as for one lost (the out-of-memory line said nothing of it); bench pipeline that nothing is kept
    (it said "what was written is kept (run it again)" of a worker lost)."""
    from mme import demo
    from mme.errors import ProcessLost
    from mme.train import bench_pipeline
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    _second_step_raises(monkeypatch, {
        "step out of memory": RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                                           "allocate memory: you tried to allocate 9437184 bytes. Error code 12 "
                                           "(Cannot allocate memory)"),
        "loader worker out of memory": _loader_out_of_memory,
        "loader worker lost": ProcessLost("data loader worker 0 (pid 1) died (signal 9: Killed)")}[stop])
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--workers", "0"]) == 1
    said = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mme demo: error:")]
    size = "the clips' size (data.img_size with model.img_size, data.num_frames with model.num_frames)"
    worker_oom = "out of memory (Unable to allocate 64.0 TiB (in DataLoader worker process 0)); lower --workers, or "
    lost = "data loader worker 0 (pid 1) died (signal 9: Killed)"
    continues = "; what was written is kept (the same command continues, keeping what it finished)"
    assert said == [f"mme demo: error: {worker_oom}{size}{continues}"] if stop == "loader worker out of memory" else \
        said == [f"mme demo: error: {lost}{continues}"] if stop == "loader worker lost" else \
        len(said) == 1 and said[0].endswith(f"; set train.activation_checkpointing=true, or lower {size}. Kept: no "
                                            "earlier checkpoint"), said
    # what it advises, the demo takes: its runs' config built with each override as said
    for extra in (["train.activation_checkpointing=true"], ["data.img_size=48", "model.img_size=48"],
                  ["data.num_frames=8", "model.num_frames=8"]):
        s = demo.demo_settings(out, quick=True, workers=0, overrides=extra)  # (as mme demo --quick KEY=VALUE)
        cfg = demo._pretrain_config(s, "mme", 0, out / "data/train.txt")
        assert all(str(getattr(getattr(cfg, o.split(".")[0]), o.split("=")[0].split(".")[1])).lower()
                   == o.split("=")[1] for o in extra), extra
    with pytest.raises(ConfigError, match="train.batch_size"):  # (which it advised before)
        demo.DemoSettings(out=out, overrides=["train.batch_size=2"])

    monkeypatch.setattr(bench_pipeline, "extract_cache", lambda *args, **kwargs: None)  # (not this test's: time)
    monkeypatch.setattr(bench_pipeline, "_variants_ms", lambda cfgs, *args: dict.fromkeys(cfgs, (1.0, 0.0, 1.0)))
    assert cli.main(["bench", "pipeline", "--size", "64", "--frames", "8", "--stride", "2", "--clips", "1",
                     "--steps", "3", "--workers", "0", "--clips-per-s", "100"]) == 1
    said = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mme bench pipeline: error:")]
    # (its run folder is removed on the way out: nothing is kept, as its Interrupted line says)
    assert said == [f"mme bench pipeline: error: {worker_oom}the clips' size (--size, --frames); nothing is kept: run "
                    "it again"] if stop == "loader worker out of memory" else \
        said == [f"mme bench pipeline: error: {lost}; nothing is kept: run it again"] if stop == "loader worker lost" \
        else \
        len(said) == 1 and said[0].endswith("; lower the clips' size (--size, --frames). Kept: no earlier "
                                            "checkpoint"), said


@pytest.mark.pinned  # every run train.precision=fp32
def test_diverging_run_stops_with_a_diagnostic(synth, tmp_path, saved_figures):
    """The error names the last step as logs count them (it named the one before) and that step is logged (it was
    lost); fp32 runs are not told to use fp32; the loss curve is drawn, its finite records each marked, the steps of
    a non-finite loss marked 'not finite' (it drew no point of the one record with train.log_every=8, nor a sign of
    the steps after). With train.log_every=8 the record forced at that step sums up the steps since the one before
    as any record does: the loss of those that made their update, the non-finite ones counted in ``skipped`` (the
    last step's own values are the error's)."""
    diverging = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=8", "optim.base_lr=1e35", "optim.warmup_steps=0",
                 "train.max_nonfinite=2", FP32)
    with pytest.raises(NonFiniteLossError, match=r"step \d+: 2 non-finite steps in a row \(loss or gradient; "
                       r"train.max_nonfinite=2\), the last with a non-finite loss and gradient; ") as e:
        run(*diverging, "train.log_every=1")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[0]["skipped"] == 0  # the first step was fine; the skipped ones are not logged as done
    assert rows[-1]["step"] == int(str(e.value).split(":")[0].split()[1])
    assert [r["skipped"] for r in rows[-2:]] == [1, 1]
    assert "use fp32" not in str(e.value)
    assert str(e.value).endswith(". Lower optim.base_lr (optim.clip_grad cannot mend a non-finite gradient).")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"  # its loss curve, wanted most (was not drawn)

    def drawn():  # each line of the loss curve: its label, marker, steps and values
        return [(line.get_label(), line.get_marker(), list(line.get_xdata()), list(line.get_ydata()))
                for line in saved_figures.pop().axes[0].get_lines()]

    lines, steps = drawn(), [r["step"] for r in rows]
    assert [line[:3] for line in lines] == [("loss", "o", steps), ("loss_pixel", "o", steps),
                                            ("not finite", "x", steps[-2:])]
    for _, _, _, values in lines[:2]:  # (NaN at the two non-finite steps: the curve breaks there)
        np.testing.assert_array_equal(values, [r["loss"] for r in rows[:-2]] + [math.nan] * 2)
    with pytest.raises(NonFiniteLossError):
        run(*diverging, "train.log_every=8", "train.overwrite=true")
    eights = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps"], r["skipped"]) for r in eights] == [(rows[-1]["step"], len(rows), 2)]
    assert eights[0]["loss"] == pytest.approx(sum(r["loss"] for r in rows[:-2]) / (len(rows) - 2), rel=1e-12)
    assert drawn() == [(key, "o", [rows[-1]["step"]], [eights[0]["loss"]]) for key in ("loss", "loss_pixel")]


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_record_of_log_every_steps_sums_them_up_a_skipped_one_counted(synth, tmp_path, monkeypatch):
    """With train.log_every=4 a record held its own step's values only: step 2 skipped for a NaN loss left
    skipped=0 in every record. A record gives the means of the steps since the last record (since the resume for
    the first after one), the loss and the job's metrics over the steps that made their update, and counts the
    skipped ones: the same run logged at every step, its values averaged per record, gives the same figures."""
    from mme.train import pretrain as pretraining

    real_forward = pretraining._forward

    def forward(run, inputs):  # step 2's loss is not finite (a diverging batch): skipped, its update not made
        loss, values = real_forward(run, inputs)
        return (loss * math.nan if run.step + 1 == 2 else loss), values

    monkeypatch.setattr(pretraining, "_forward", forward)
    args = ("tiny_cpu_mme", synth)
    kept = ("train.steps=8", "model.depth=1", "train.batch_size=2", FP32)
    every = run(*args, tmp_path / "every", *kept, "train.log_every=1").history
    run(*args, tmp_path / "fours", *kept, "train.log_every=4", "train.stop_after=6")
    fours = run(*args, tmp_path / "fours", *kept, "train.log_every=4", "train.resume=auto")
    rows = [json.loads(line) for line in (tmp_path / "fours" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"]) for r in rows] == [(4, 1), (6, 0), (8, 0)]  # (was 0 in each)
    assert [r.get("steps") for r in rows] == [4, 2, 2]
    assert [r["skipped"] for r in every] == [0, 1, 0, 0, 0, 0, 0, 0] and {r["steps"] for r in every} == {1}
    for r in rows:  # the steps it covers, those that made their update
        ran = [e for e in every if r["step"] - r["steps"] < e["step"] <= r["step"] and not e["skipped"]]
        for key in ("loss", "loss_traj", "loss_shape", "valid_traj", "grad_norm"):
            assert r[key] == pytest.approx(sum(e[key] for e in ran) / len(ran), rel=1e-12), (r["step"], key)
        assert math.isfinite(r["loss"]) and 0 < r["data_wait"] < 1
    assert [h["step"] for h in fours.history] == [8] and fours.history[0]["loss"] == rows[-1]["loss"]
    clips = 2  # a step's clips: its rate is theirs over the steps' seconds, which the run's own time sums
    assert 2 * clips / fours.history[0]["clips_per_s"] == pytest.approx(fours.step_seconds, rel=1e-9)
    csv_rows = (tmp_path / "fours" / "metrics.csv").read_text().splitlines()
    assert "steps" in csv_rows[0].split(",") and len(csv_rows) == 4


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_killed_between_records_resumes_with_each_step_in_one_record(synth, tmp_path, monkeypatch):
    """train.log_every=3, train.ckpt_every=4, killed at step 6: the run resumed from step 4's checkpoint, a step in
    no record (the record of step 6 never written, the resumed run's first covering steps 5-6): the records' steps
    added up to 7 of 8. A checkpoint forces a record, a kept epoch's too (train.keep_epochs=[1]: its 8 steps end at
    step 8, logged every 5), so the records' steps add up to the run's."""
    from mme.train import pretrain as pretraining

    real_forward, killed_at = pretraining._forward, []

    def forward(run, inputs):  # the kill: the run ends there, the step's record and checkpoint not written
        if run.step + 1 in killed_at:
            raise RuntimeError("killed")
        return real_forward(run, inputs)

    monkeypatch.setattr(pretraining, "_forward", forward)
    kept = ("model.depth=1", "train.batch_size=2", FP32)
    for name, settings, kill, records in (
            ("every", ("train.steps=8", "train.log_every=3", "train.ckpt_every=4"), 6,
             [(3, 3), (4, 1), (6, 2), (8, 2)]),
            ("epoch", ("train.steps=12", "train.log_every=5", "train.keep_epochs=[1]"), 10,
             [(5, 5), (8, 3), (10, 2), (12, 2)])):
        killed_at[:] = [kill]
        with pytest.raises(RuntimeError, match="killed"):
            run("tiny_cpu_mme", synth, tmp_path / name, *kept, *settings)
        killed_at.clear()
        run("tiny_cpu_mme", synth, tmp_path / name, *kept, *settings, "train.resume=auto")
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [(r["step"], r["steps"]) for r in rows] == records, name  # (every: step 4 in none)
        assert sum(r["steps"] for r in rows) == rows[-1]["step"], name


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_diagnostic_of_a_diverged_run_says_which_value_was_non_finite_and_advises_clipping_where_it_helps(
        synth, tmp_path):
    """At lr 1e3 the loss stays finite (about 6e14) and the backward overflows: the diagnostic said "non-finite
    losses" and advised optim.clip_grad, which cannot mend a NaN gradient. It names the gradient, and advises
    clipping only after a finite gradient norm."""
    from mme.train.loop import check_nonfinite

    with pytest.raises(NonFiniteLossError) as e:
        run("tiny_cpu_pixel", synth, tmp_path, "train.steps=6", "optim.base_lr=1e3", "optim.warmup_steps=0",
            "optim.lr_batch_ref=4", "train.max_nonfinite=2", FP32)
    text = str(e.value)
    assert text.startswith("step 3: 2 non-finite steps in a row (loss or gradient; train.max_nonfinite=2), the last "
                           "with a non-finite gradient of a finite loss; last values {'loss': "), text
    assert text.endswith(". Lower optim.base_lr (optim.clip_grad cannot mend a non-finite gradient)."), text
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and 1e6 < rows[-1]["loss"] < math.inf and rows[-1]["grad_norm"] is None  # (NaN)
    for clip, advice in ((None, "Lower optim.base_lr or set optim.clip_grad, or use fp32."),
                         (1.0, "Lower optim.base_lr or lower optim.clip_grad (now 1), or use fp32.")):
        with pytest.raises(NonFiniteLossError) as e:
            check_nonfinite(2, {"loss": math.inf, "grad_norm": 3e7, "skipped": 1.0}, 9, 2, "bf16", clip)
        assert "the last with a non-finite loss; last values" in str(e.value) and str(e.value).endswith(advice)


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_count_of_skipped_steps_is_the_whole_runs_over_resumes(synth, tmp_path, caplog, monkeypatch):
    """``nonfinite_skipped`` (the final JSON) counted the last resumed part's steps only; the end of each part says
    the run's share (it said nothing: tests/test_finetune.py has the warnings of each step). Steps 2 to 4 skip."""
    from mme.train import pretrain as pretraining

    real_forward = pretraining._forward

    def forward(run, inputs):
        loss, values = real_forward(run, inputs)
        return (loss * math.nan if 2 <= run.step + 1 <= 4 else loss), values

    monkeypatch.setattr(pretraining, "_forward", forward)
    bad = ("train.steps=5", "train.max_nonfinite=10", "train.log_every=1", FP32)
    with caplog.at_level("WARNING", logger="mme.train.loop"):
        run("tiny_cpu_pixel", synth, tmp_path, *bad, "train.stop_after=3")
        res = run("tiny_cpu_pixel", synth, tmp_path, *bad, "train.resume=auto")
    ends = [r.getMessage() for r in caplog.records if "were skipped" in r.getMessage()]
    assert ends == [f"{n} of the run's {steps} steps ({share}) were skipped for a non-finite loss or gradient: their "
                    "updates were not made (nonfinite_skipped)"
                    for n, steps, share in ((2, 3, "66.7%"), (3, 5, "60.0%"))]
    assert "step 2 skipped: a non-finite loss and gradient (loss nan, gradient norm nan)" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"]) for r in rows] == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 0)]
    assert res.nonfinite_skipped == 3


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_resumed_in_parts_shorter_than_max_nonfinite_stops_where_the_whole_run_does(synth, tmp_path):
    """The non-finite steps in a row started again at 0 on every resume: a diverged run whose jobs were cut into
    parts shorter than ``train.max_nonfinite`` never stopped. Checkpoints carry the count; steps 2 on skip here."""
    from mme.train import checkpoint as ckpt

    bad = ("train.steps=6", "optim.base_lr=1e35", "optim.warmup_steps=0", "train.max_nonfinite=3", FP32)
    with pytest.raises(NonFiniteLossError, match=r"^step 4: 3 non-finite"):
        run("tiny_cpu_pixel", synth, tmp_path / "whole", *bad)
    parts = tmp_path / "parts"
    run("tiny_cpu_pixel", synth, parts, *bad, "train.stop_after=2")
    run("tiny_cpu_pixel", synth, parts, *bad, "train.stop_after=3", "train.resume=auto")
    with pytest.raises(NonFiniteLossError, match=r"^step 4: 3 non-finite"):
        run("tiny_cpu_pixel", synth, parts, *bad, "train.resume=auto")
    state = torch.load(ckpt.checkpoint_path(parts, 3), weights_only=True)
    assert state.pop("nonfinite_in_a_row") == 2  # as of an earlier mme, which saved none: the count starts at 0
    torch.save(state, ckpt.checkpoint_path(parts, 3))
    with pytest.raises(NonFiniteLossError, match=r"^step 6: 3 non-finite"):
        run("tiny_cpu_pixel", synth, parts, *bad, "train.resume=auto")


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_stop_by_non_finite_steps_wins_over_too_many_failed_videos_at_the_same_record(synth, tmp_path, monkeypatch):
    """Under torchrun the ranks' join of their failures at a record can find too many at the step that reaches
    train.max_nonfinite (here its join stands in for it): the fraction's error won, and the checkpoint it keeps held
    the count at its maximum, so a run resumed from it with the fraction raised went on past the step where the whole
    run stops. The non-finite stop wins, nothing saved of that step."""
    from mme.errors import TooManyFailures
    from mme.train import checkpoint as ckpt
    from mme.train import distributed as dist
    from mme.train import loop

    def share_failures(run):  # the join of step 4's record finds too many
        if run.step == 4:
            raise dist.alike(TooManyFailures("17 of 16 videos failed, more than data.max_failure_fraction=0.01"))
        return loop.data_failures(run)

    monkeypatch.setattr(loop, "share_failures", share_failures)
    bad = ("train.steps=6", "optim.base_lr=1e35", "optim.warmup_steps=0", "train.max_nonfinite=3", FP32)
    with pytest.raises(NonFiniteLossError, match=r"^step 4: 3 non-finite"):
        run("tiny_cpu_pixel", synth, tmp_path, *bad)
    assert not ckpt.list_checkpoints(tmp_path)


@pytest.mark.pinned  # no run: the update's checks alone
def test_an_fp16_step_its_scaler_skips_is_logged_as_skipped_but_not_as_divergence(caplog):
    """fp16's scaler skips a step whose gradient overflowed: it was logged as done (skipped 0). It is now skipped,
    marked as an overflow, which ``train.max_nonfinite`` leaves to the scaler (a few in a row are routine) while its
    scale stays at least 1; below, the gradient diverges whatever the scale, and the step counts as non-finite."""
    from mme.train.loop import check_nonfinite, count_nonfinite, update

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for init, routine in ((2.0 ** 16, True), (1.0, False)):
        scaler = torch.amp.GradScaler("cpu", init_scale=init)
        scaler.scale(model(torch.ones(1, 2)).sum()).backward()
        model.weight.grad[0, 0] = float("inf")
        before = model.weight.detach().clone()
        _, skipped, overflow = update(model, optimizer, scaler, None, loss_finite=True)
        assert skipped and overflow == routine and torch.equal(model.weight, before) and scaler.get_scale() == init / 2
        optimizer.zero_grad()
    assert count_nonfinite(0, {"skipped": 1.0, "grad_overflow": 1.0}) == 0
    assert count_nonfinite(0, {"skipped": 1.0}) == 1
    with pytest.raises(NonFiniteLossError):
        check_nonfinite(1, {"skipped": 1.0}, 3, max_nonfinite=1, precision="fp16")


@pytest.mark.pinned  # no run: the check alone
def test_a_run_none_of_whose_steps_updated_is_stopped_unless_they_were_all_fp16_overflows():
    """The steps counted are the run's, resumed parts included (checkpoints carry its counts); fp16's routine
    gradient overflows alone (a short run's start) stop nothing, but where every step was skipped, one at least for
    a non-finite loss or gradient, no update was made: the run is stopped, its overflows said."""
    from types import SimpleNamespace

    from mme.train.config import TrainConfig
    from mme.train.loop import check_updated

    def ran(step, skipped, overflows, precision="fp16"):
        return SimpleNamespace(step=step, skipped=skipped, grad_overflows=overflows, precision=precision,
                               cfg=SimpleNamespace(train=TrainConfig()))

    for updated in (ran(3, 3, 3), ran(3, 2, 0), ran(0, 0, 0)):  # all overflows, one update, no step
        check_updated(updated, None)
    with pytest.raises(NonFiniteLossError) as e:
        check_updated(ran(5, 5, 2), "ckpt")
    assert str(e.value).startswith("steps 1-5: the run's 5 steps were all skipped for a non-finite loss or gradient "
                                   "(2 of them fp16 gradient overflows), fewer in a row than train.max_nonfinite=5: "
                                   "no update was made, so its weights are still those it started from (the model as "
                                   "built), saved as ckpt")
    assert str(e.value).endswith("the weights it starts from, or use fp32.")


@pytest.mark.pinned  # every run train.precision=fp16
def test_an_fp16_runs_routine_gradient_overflows_are_not_warned_about(synth, tmp_path, monkeypatch, caplog):
    """Every fp16 run whose scaler overflowed (a few times at its start, and every ~2000 steps after: routine) ended
    with a warning that 'N of the run's steps were skipped ..., fp16's gradient overflows included'. A scaler that
    starts at 2**30 overflows the first steps here: they are counted apart (``grad_overflows``, carried over
    resumes: a checkpoint of an earlier mme, which holds none, counts its fp16 run's skipped steps as such), said in
    one info line at the end, and in ``nonfinite_skipped`` as before; no warning."""

    from mme.train import checkpoint as ckpt
    from mme.train import engine

    monkeypatch.setattr(engine, "make_scaler", lambda precision, device: torch.amp.GradScaler(
        device.type, init_scale=2.0 ** 30, enabled=precision == "fp16"))
    fp16 = ("train.steps=12", "train.precision=fp16")
    with caplog.at_level(logging.INFO, logger="mme.train.loop"):
        run("tiny_cpu_pixel", synth, tmp_path, *fp16, "train.stop_after=3")
        state = torch.load(ckpt.checkpoint_path(tmp_path, 3), weights_only=True)
        assert state.pop("grad_overflows") == state["skipped"] == 3  # overflows all
        torch.save(state, ckpt.checkpoint_path(tmp_path, 3))  # as of an earlier mme
        res = run("tiny_cpu_pixel", synth, tmp_path, *fp16, "train.resume=auto")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    overflows = sum(r["grad_overflow"] for r in rows)
    assert overflows == sum(r["skipped"] for r in rows) == res.nonfinite_skipped > 3 and res.step == 12
    assert [r.levelname for r in caplog.records if r.name == "mme.train.loop"] == ["INFO", "INFO"], caplog.text
    assert [r.getMessage() for r in caplog.records if r.name == "mme.train.loop"][-1] == (
        f"{res.nonfinite_skipped} of the run's 12 steps were fp16 gradient overflows, which its scaler skipped, "
        "lowering its scale (routine: neither warned about nor counted towards train.max_nonfinite)")
    assert torch.load(res.checkpoint, weights_only=True)["grad_overflows"] == res.nonfinite_skipped


@pytest.mark.pinned  # no run: the schedule alone
def test_an_epoch_is_a_whole_number_of_optimizer_steps_and_a_whole_run_warm_up_is_said(caplog):
    """10 clips in batches of 2 with 2 micro-batches a step: 2 steps an epoch, the fifth batch dropped (it ran into
    the next epoch, so 4 epochs read 3.2 passes over the data)."""

    from mme.train.config import TrainConfig
    from mme.train.engine import schedule_lengths
    from mme.train.optim import OptimConfig

    t = TrainConfig(batch_size=2, accum_steps=2, epochs=4)
    assert schedule_lengths(10, t, OptimConfig(warmup_steps=1), 1, "clips") == (4, 8, 1)
    with caplog.at_level(logging.WARNING):
        assert schedule_lengths(10, t, OptimConfig(warmup_epochs=40), 1, "clips") == (4, 8, 8)
    assert "the lr warm-up (80 steps) takes the whole run of 8 steps" in caplog.text
    caplog.clear()  # a 1-step run said 'the whole run of 1 steps' (mme.utils.counted)
    with caplog.at_level(logging.WARNING):
        assert schedule_lengths(10, TrainConfig(batch_size=2, steps=1), OptimConfig(warmup_steps=1), 1,
                                "clips") == (5, 1, 1)
    assert "the lr warm-up (1 step) takes the whole run of 1 step, so the lr reaches its peak" in caplog.text


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_items_an_epoch_leaves_out_are_said_and_a_large_share_warned_about(synth, tmp_path, caplog, capsys):
    """An epoch takes whole optimizer steps, so up to batch x ranks x accum - 1 items are left out of each (a
    different random set each epoch): the summary said '16 clips, 2 steps/epoch' as if all were trained, without a
    word. It says how many are trained per epoch and how many left out, and a share over 5 % of a train.epochs run
    is warned about, naming the settings as the command takes them, its share to a tenth (5.3 %, not '5 %'). A
    train.steps run is not warned about: its steps draw each item about as often (1000 steps of 12 of 22 clips
    draw each 505 to 586 times), or it is shorter than an epoch, its length leaving items out."""
    from mme.train.config import TrainConfig
    from mme.train.engine import schedule_lengths
    from mme.train.optim import OptimConfig
    from mme.utils import keys_as_flags

    o = OptimConfig(warmup_steps=0)
    with caplog.at_level(logging.WARNING, logger="mme.train.engine"):
        assert schedule_lengths(22, TrainConfig(batch_size=4, accum_steps=3, epochs=5), o, 1, "clips") == (3, 5, 0)
        assert schedule_lengths(41, TrainConfig(batch_size=4, epochs=5), o, 1, "clips") == (10, 50, 0)  # 1 (2 %)
        assert schedule_lengths(38, TrainConfig(batch_size=4, epochs=1), o, 1, "clips") == (9, 9, 0)  # 2 (5.3 %)
        with keys_as_flags({"train.batch_size": None}):  # (a command that fixes the batch: mme demo)
            assert schedule_lengths(22, TrainConfig(batch_size=2, epochs=5), o, 4, "videos") == (2, 10, 0)
        assert schedule_lengths(22, TrainConfig(batch_size=4, accum_steps=3, steps=1000), o, 1, "clips") == \
            (3, 1000, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "each epoch trains 12 of the 22 clips, leaving out 10 (45.5%, over 5%), others each epoch: an epoch takes "
        "whole optimizer steps of train.batch_size=4 x 1 rank x train.accum_steps=3 = 12 clips (the effective "
        "batch), so a list of a multiple of 12 leaves none out",
        "each epoch trains 36 of the 38 clips, leaving out 2 (5.3%, over 5%), others each epoch: an epoch takes "
        "whole optimizer steps of train.batch_size=4 x 1 rank x train.accum_steps=1 = 4 clips (the effective "
        "batch), so a list of a multiple of 4 leaves none out",
        "each epoch trains 16 of the 22 videos, leaving out 6 (27.3%, over 5%), others each epoch: an epoch takes "
        "whole optimizer steps of 2 x 4 ranks x train.accum_steps=1 = 8 videos (the effective batch), so a list of "
        "a multiple of 8 leaves none out"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.train.engine"):
        run("tiny_cpu_pixel", synth, tmp_path, FP32, "model.depth=1", "train.batch_size=3", "train.accum_steps=2",
            "train.steps=1", "optim.warmup_steps=0")  # shorter than an epoch: unwarned
    assert "  16 clips, 12 trained per epoch (4 left out, others each epoch), 2 steps/epoch, 1 step\n" in \
        capsys.readouterr().out
    assert "leaving out" not in caplog.text


def _no_training_happened(out) -> bool:
    return not (out / "metrics.jsonl").exists() and not list(out.glob("checkpoint-*"))


@pytest.mark.pinned  # its runs pin fp32 or are refused before a precision is chosen
def test_bad_input_fails_at_start_up_naming_it(synth, tmp_path, capsys):
    # an unknown key, through the command line: exit code 1, the key and the valid ones named, no traceback
    assert cli.main(["pretrain", "--config", "tiny_cpu_pixel", f"train.out_dir={tmp_path}", "train.bogus=1"]) == 1
    err = capsys.readouterr().err
    assert "train.bogus" in err and "batch_size" in err and "Traceback" not in err
    # a missing list file
    with pytest.raises(DataError, match="nowhere/list.txt"):
        run("tiny_cpu_pixel", ["data.list_file=/nowhere/list.txt", "data.root="], tmp_path / "a")
    with pytest.raises(DataError, match="data.root '/nowhere/videos' is not a folder"):
        run("tiny_cpu_pixel", [*synth, "data.root=/nowhere/videos"], tmp_path / "a")
    # an output folder that cannot be created (its parent is a file)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="train.out_dir.*file/run.*not a writable folder"):
        run("tiny_cpu_pixel", synth, tmp_path / "file" / "run")
    # a checkpoint of other heads than the config's target makes, to resume from and to initialise from (its
    # architecture is taken: test_init_and_resume_take_the_architecture_of_their_checkpoint)
    ref = run("tiny_cpu_pixel", synth, tmp_path / "ref", "train.steps=1", FP32)
    for key in ("resume", "init"):
        out = tmp_path / f"other_heads_{key}"
        named = "checkpoint" if key == "resume" else "train.init"
        with pytest.raises(CheckpointError, match=rf"^{named} .*checkpoint-00000001.pt.*does not fit the model: "
                                                  r"missing keys \['heads.hog.") as info:
            run("tiny_cpu_pixel", synth, out, "target.kind=[pixel,hog]", f"train.{key}={ref.checkpoint}", FP32)
        assert _no_training_happened(out)
        if key == "init":  # a masked autoencoder of another shape: how to start from its encoder alone
            assert str(info.value).endswith("--kind model, then train.init=encoder.safetensors")
    # fine-tuning resumed from a pre-training run's checkpoint (a ConfigError on a model key before)
    from mme.config import load_config
    from mme.train.finetune import setup

    ft = load_config(FinetuneConfig, "finetune_tiny_cpu", [*synth, "task.num_classes=4", "task.classes=",
                                                           "task.val_list=", "task.test_list=",
                                                           f"train.out_dir={tmp_path / 'ft'}",
                                                           f"train.resume={ref.checkpoint}"])
    with pytest.raises(CheckpointError, match=r"checkpoint-00000001\.pt: made by a pre-training run, this is "
                                              r"fine-tuning; train\.init starts a run"):
        setup(ft)
    with pytest.raises(CheckpointError, match="no such file"):
        run("tiny_cpu_pixel", synth, tmp_path / "b", f"train.resume={tmp_path}/missing.pt")


@pytest.mark.pinned  # every run train.precision=fp32
def test_activation_checkpointing_gives_the_same_training(synth, tmp_path):
    a = run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=2", FP32)
    b = run("tiny_cpu_pixel", synth, tmp_path / "b", "train.steps=2", FP32, "train.activation_checkpointing=true")
    sa, sb = (torch.load(r.checkpoint, weights_only=True)["model"] for r in (a, b))
    assert sa.keys() == sb.keys()  # parameter names unchanged by the wrapping
    assert max((sa[k] - sb[k]).abs().max().item() for k in sa) <= 1e-6


def _on_disk(root: Path, videos: Iterable[str]) -> None:
    """Empty files at the list paths ``videos`` under ``root``: videos that are there, to a track cache's start check,
    which asks only whether a video without a cache file is there (one missing is not made by mme extract)."""
    for video in videos:
        (root / video).parent.mkdir(parents=True, exist_ok=True)
        (root / video).touch()


def _list_with(synth, tmp_path, video, at: int = 15) -> tuple[list[str], str]:
    """``(data overrides, a listed video's path)``: the synth list's first 15 videos with ``video`` inserted at ``at``
    (15: last), as tmp_path/list.txt; a copy of the video named restores a missing one."""
    list_file = next(o.split("=", 1)[1] for o in synth if o.startswith("data.list_file="))
    root = next(o.split("=", 1)[1] for o in synth if o.startswith("data.root="))
    lines = open(list_file).read().splitlines()[:15]
    listed = os.path.join(root, lines[0].split()[0])
    lines.insert(at, f"{video} 0")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={root}"], listed


@pytest.mark.pinned  # every run train.precision=fp32
def test_undecodable_videos_are_replaced_and_counted_in_the_log_over_resumes(synth, tmp_path, caplog):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    listed, _ = _list_with(synth, tmp_path, tmp_path / "broken.mp4")
    data = [*listed, "data.max_failure_fraction=0.2", "train.seed=1", "data.num_workers=0",
            FP32]  # epoch 2 reads the broken video (entry 15) in its last batch
    with caplog.at_level("WARNING"):
        res = run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=8", "train.stop_after=4")
    assert res.step == 4 and res.history[-1]["data_failures"] == 1.0  # one epoch = all 16 entries read
    assert "data: 1 videos failed and were replaced: {'unreadable': 1}" in caplog.text  # the run's summary
    # resumed, it counts and skips them from its first step, as the run would have gone on (they started from 0)
    caplog.clear()
    with caplog.at_level("WARNING"):
        res = run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=8", "train.stop_after=5", "train.resume=auto")
    assert res.history[-1]["data_failures"] == 1.0
    assert "1 videos failed and were replaced: {'unreadable': 1} (1 of them before the run resumed)" in caplog.text


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_stopped_by_too_many_failed_videos_keeps_its_steps_and_resumes_as_if_never_stopped(synth, tmp_path):
    """The missing video is read for step 3 (seed 1): at the fraction's default 0.01 the run stops there, its steps 1-2
    past its last checkpoint (none: train.ckpt_every=1000). They were lost, --resume auto starting again from step 0;
    now a checkpoint of step 2 keeps them, and resumed with the fraction raised the run ends with the weights of one
    that ran with it from the start (the failed video skipped as it would have been). The checkpoint recorded the
    video as failed, so a resume once it was restored stopped at once, calling it missing again: it is read now. A
    stop right after a checkpoint of its step, as a resume that fails at its first fetch, gave no advice (nothing to
    save); the line said '?. Kept'."""
    gone = tmp_path / "gone.mp4"
    listed, a_video = _list_with(synth, tmp_path, gone)
    data = [*listed, "train.seed=1", "model.depth=1", FP32]
    step_2 = "checkpoint-00000002.pt"
    kept = (r"; are the folders of the listed absolute paths here \(a volume not mounted\)\? If so, these videos are "
            r"gone: .*, or raise data.max_failure_fraction\. "
            r"Kept: .*checkpoint-00000002\.pt, the checkpoint of step 2: --resume auto "
            r"\(train.resume=auto\) with data.max_failure_fraction raised continues from there$")
    with pytest.raises(DataError, match=kept):
        run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=6")
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2]
    shutil.copytree(tmp_path / "run", tmp_path / "raised")
    with pytest.raises(DataError, match=kept):  # the stop right after a checkpoint of its step
        run("tiny_cpu_pixel", data, tmp_path / "every", "train.steps=6", "train.ckpt_every=2")
    with pytest.raises(DataError, match=kept):  # still missing: found again at the resumed run's first fetch
        run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=6", "train.resume=auto")
    elsewhere = tmp_path / "elsewhere"  # resumed from another folder's checkpoint: its step kept in this one
    with pytest.raises(DataError, match=kept):
        run("tiny_cpu_pixel", data, elsewhere, "train.steps=6", f"train.resume={tmp_path / 'run' / step_2}")
    assert (elsewhere / step_2).is_file()
    raised = "data.max_failure_fraction=0.2"
    resumed = run("tiny_cpu_pixel", data, tmp_path / "raised", "train.steps=6", raised, "train.resume=auto")
    whole = run("tiny_cpu_pixel", data, tmp_path / "whole", "train.steps=6", raised)
    assert resumed.step == whole.step == 6 and resumed.history[-1]["data_failures"] == 1.0
    a, b = (torch.load(r.checkpoint, weights_only=True)["model"] for r in (resumed, whole))
    assert all(torch.equal(a[k], b[k]) for k in a)
    shutil.copy(a_video, gone)  # restored
    mended = run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=6", "train.resume=auto")
    assert mended.step == 6 and mended.history[-1]["data_failures"] == 0.0


@pytest.mark.pinned  # every run train.precision=fp32
def test_an_item_out_of_tries_before_the_fraction_keeps_the_steps_and_gives_the_advice(synth, tmp_path, monkeypatch):
    """On a list of over a thousand videos an item gives up after its MAX_ATTEMPTS tries before the failures reach
    data.max_failure_fraction's 1% (a storage outage: every try missing): the run stopped with a bare DataError
    ('failures so far: ...'), every step since the last checkpoint lost, no advice. Here one try and the fraction at
    0.99 stand in for the long list: the stop keeps the checkpoint of step 2 and says the fraction's examples and
    advice."""
    from mme.data import dataset

    monkeypatch.setattr(dataset, "MAX_ATTEMPTS", 1)
    gone = tmp_path / "gone.mp4"
    listed, _ = _list_with(synth, tmp_path, gone)  # read for step 3 (seed 1)
    data = [*listed, "train.seed=1", "model.depth=1", FP32, "data.max_failure_fraction=0.99"]
    with pytest.raises(DataError) as info:
        run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=6", "train.ckpt_every=1000")
    assert re.fullmatch(rf"no readable video for item \d+ of {re.escape(listed[0].split('=', 1)[1])} after 1 tries "
                        rf"\({{'missing': 1}}\); e\.g\. {re.escape(str(gone))}: missing; are the folders of the listed "
                        rf"absolute paths here \(a volume not mounted\)\? If so, .* Kept: "
                        rf"{re.escape(str(tmp_path / 'run'))}/checkpoint-"
                        r"00000002\.pt, the checkpoint of step 2: --resume auto \(train.resume=auto\) continues from "
                        r"there", str(info.value)), info.value
    assert torch.load(tmp_path / "run" / "checkpoint-00000002.pt", weights_only=True)["step"] == 2
    from mme.errors import NoReadableVideo  # (of this fix: after the message, which says what failed before it)

    assert isinstance(info.value, NoReadableVideo)


@pytest.mark.pinned  # every run train.precision=fp32
@pytest.mark.parametrize("workers", [0, 1])
def test_the_checkpoint_a_data_stop_keeps_records_the_failures_of_its_step_not_those_fetched_ahead(
        synth, tmp_path, monkeypatch, workers):
    """The video that stops a run (here step 3's, missing, one try) is no failure of the step kept: with a loader
    worker, which fetched step 3's batch while step 2 ran, the kept checkpoint of step 2 recorded it, and a resume
    once the video was restored refused at once ('the run recorded it as failed before it resumed'); the failures a
    checkpoint records are those of the items its steps trained on, as without workers (log_every=4: the step's
    record, logged at the stop, is made after the failed fetch)."""
    from mme.data import dataset

    monkeypatch.setattr(dataset, "MAX_ATTEMPTS", 1)
    listed, _ = _list_with(synth, tmp_path, tmp_path / "gone.mp4")  # read for step 3 (seed 1)
    with pytest.raises(DataError, match="Kept: .*checkpoint-00000002.pt"):
        run("tiny_cpu_pixel", [*listed, "train.seed=1", "model.depth=1", FP32, "data.max_failure_fraction=0.99"],
            tmp_path / "run", "train.steps=6", "train.ckpt_every=1000", "train.log_every=4",
            f"data.num_workers={workers}")
    kept = torch.load(tmp_path / "run" / "checkpoint-00000002.pt", weights_only=True)
    assert kept["data_failures"]["codes"].tolist() == [0] * len(kept["data_failures"]["codes"])


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_failures_of_the_steps_trained_are_joined_at_each_checkpoint_not_at_each_record(synth, tmp_path,
                                                                                          monkeypatch):
    """Every metrics record (each step at train.log_every=1) joined the ranks' failures of the steps trained, which
    only a checkpoint reads: a second all-reduce a step, over a tensor the length of the list. They are joined at each
    checkpoint alone, which records them."""
    from mme.train import loop

    real, joined = loop.trained_failures, []
    monkeypatch.setattr(loop, "trained_failures", lambda run_: joined.append(run_.step) or real(run_))
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "train.log_every=1", "train.ckpt_every=2", "model.depth=1",
        FP32)
    assert joined == [2, 4]


@pytest.mark.pinned  # every run train.precision=fp32
@pytest.mark.parametrize("stop", ["worker lost", "worker out of memory"])
def test_a_data_stop_mid_step_keeps_the_step_before_with_its_record(synth, tmp_path, monkeypatch, stop):
    """The data side stopping a run (here at step 3's second micro-batch) keeps the checkpoint of its last finished
    step, whose metrics record is logged first, as at any checkpoint: that record was lost (log_every=4: a resumed run's
    metrics.jsonl lacked step 2's row), and a loader worker's failed allocation, which leaves the model intact as a
    worker killed does, kept nothing ('Kept: no earlier checkpoint')."""
    from mme.errors import ProcessLost
    from mme.train import loop

    real = loop.micro_batches

    def stopping(run_):  # (the errors a loader worker's death or failed allocation gives: mme.data.dataset._batches)
        for fetched, batch in enumerate(real(run_), 1):
            if fetched == 6:
                raise ProcessLost("data loader worker 0 (pid 1) died (signal 9: Killed)") if stop == "worker lost" \
                    else _loader_out_of_memory()
            yield batch

    common = ("train.steps=6", "train.accum_steps=2", "train.log_every=4", "train.ckpt_every=1000", "model.depth=1",
              FP32)
    monkeypatch.setattr(loop, "micro_batches", stopping)
    with pytest.raises(MMEError) as info:
        run("tiny_cpu_pixel", synth, tmp_path, *common)
    said = ("data loader worker 0 (pid 1) died (signal 9: Killed)" if stop == "worker lost" else
            "out of memory (Unable to allocate 64.0 TiB (in DataLoader worker process 0)); lower "
            "data.num_workers or train.batch_size, or the clips' size (data.img_size with model.img_size, "
            "data.num_frames with model.num_frames)")
    assert str(info.value) == (f"{said}. Kept: {tmp_path / 'checkpoint-00000002.pt'}, the checkpoint of step 2: "
                               "--resume auto (train.resume=auto) continues from there")
    monkeypatch.setattr(loop, "micro_batches", real)
    run("tiny_cpu_pixel", synth, tmp_path, *common, "train.resume=auto")
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]


@pytest.mark.pinned  # every run train.precision=fp32
@pytest.mark.parametrize("accum", [1, 2])
def test_the_checkpoint_of_a_stop_before_a_step_holds_the_lr_of_its_own_step(synth, tmp_path, caplog, accum):
    """The loop set the next step's lr before fetching its batches, so a stop there (a signal while it waited, too
    many failed videos, either in a later micro-batch) saved the step before with the next step's lr, and its resume
    warned that 'the lr schedule is not the one the checkpoint ran'. The missing video is read for step 3 (seed 1), in
    its second micro-batch where there are two."""
    listed, _ = _list_with(synth, tmp_path, tmp_path / "gone.mp4", at=5)  # (micro-batch 3 of 4 clips, or 6 of 2)
    data = [*listed, "train.seed=1", "model.depth=1", FP32, "train.steps=6", f"train.accum_steps={accum}",
            f"train.batch_size={4 // accum}"]
    with pytest.raises(DataError, match="the checkpoint of step 2"):
        run("tiny_cpu_pixel", data, tmp_path / "run", "train.ckpt_every=1000")
    groups = torch.load(tmp_path / "run" / "checkpoint-00000002.pt", weights_only=True)["optimizer"]["param_groups"]
    group = next(g for g in groups if g["decay"])
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and logged[0]["lr"] < logged[1]["lr"]  # (in the warm-up)
    assert (group["lr"], group["weight_decay"]) == (logged[1]["lr"], logged[1]["weight_decay"])
    with caplog.at_level("WARNING"):
        res = run("tiny_cpu_pixel", data, tmp_path / "run", "train.stop_after=3", "data.max_failure_fraction=0.2",
                  "train.resume=auto")
    assert res.step == 3 and "lr schedule" not in caplog.text


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_resume_stopped_by_the_failures_its_checkpoint_recorded_says_so(synth, tmp_path):
    """Its error called the video unreadable and advised `mme check`, which finds nothing wrong once it is repaired:
    the resume counts it without opening it. The missing video is read for step 3 (seed 1)."""
    listed, a_video = _list_with(synth, tmp_path, tmp_path / "gone.mp4")
    data = [*listed, "train.seed=1", "model.depth=1", FP32]
    run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=3", "data.max_failure_fraction=0.2")
    shutil.copy(a_video, tmp_path / "gone.mp4")  # restored
    with pytest.raises(DataError, match=rf"; e.g. {tmp_path / 'gone.mp4'}: missing; the run recorded it as failed "
                                        r"before it resumed \(up to its checkpoint\), and a resumed run counts it "
                                        "without opening its file again: raise data.max_failure_fraction"):
        run("tiny_cpu_pixel", data, tmp_path / "run", "train.steps=6", "train.resume=auto")


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_final_line_says_whether_the_run_did_all_its_steps(synth, tmp_path, capsys):
    """A part ending at train.stop_after printed the line of a finished run: its step alone."""
    pretraining = ["pretrain", "--config", "tiny_cpu_pixel",
                   *tiny(*synth, f"train.out_dir={tmp_path}", "train.steps=2", "model.depth=1", FP32)]
    assert cli.main([*pretraining, "train.stop_after=1"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (final["step"], final["total_steps"], final["finished"]) == (1, 2, False)
    assert cli.main([*pretraining, "train.resume=auto"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (final["step"], final["total_steps"], final["finished"]) == (2, 2, True)


@pytest.mark.pinned  # every run train.precision=fp32
def test_every_export_says_which_checkpoint_run_and_code_its_weights_come_from(synth, tmp_path):
    """``mme export`` kept the model, its run's clips and target, and no word of where the weights came from: not the
    checkpoint's file or step, nor its run's id, the mme and commit that trained it, its precision."""
    from mme.models.checkpoint import read_checkpoint
    from mme.models.export import export
    from mme.utils import code_version

    res = run("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=1", "model.depth=1", FP32)
    meta = torch.load(res.checkpoint, weights_only=True)["meta"]
    origin = {"file": "checkpoint-00000001.pt", "step": 1, "run_id": meta["run_id"], **code_version(),
              "precision": "fp32"}
    one = export(res.checkpoint, tmp_path / "one.safetensors", "safetensors")
    hf = export(one, tmp_path / "hf", "hf")
    for out in (one, export(res.checkpoint, tmp_path / "ours", "mme"), hf, export(hf, tmp_path / "back", "mme")):
        assert read_checkpoint(out).origin == origin, out
    assert json.loads((hf / "config.json").read_text())["mme_origin"] == origin


@pytest.mark.pinned  # each case pins its precision (fp16, bf16)
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_steps_run_and_are_recorded(precision, synth, tmp_path):
    # on CPUs without native bf16/fp16 these are emulated (slow), so only a tiny model and 2 steps
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", f"train.precision={precision}")
    state = torch.load(res.checkpoint, weights_only=True)
    assert state["meta"]["precision"] == precision and all(r["skipped"] == 0 for r in res.history)
    assert (state["scaler"].get("scale") is not None) == (precision == "fp16")  # a grad scaler for fp16 only


@pytest.mark.parametrize(("batch_size", "clips"), [(2, 2), (5, 4)])
def test_auto_precision_says_how_many_clips_it_timed(batch_size, clips, synth, tmp_path, monkeypatch):
    """On a CPU with native bf16, auto times forward and backward of the run's model on at most 4 clips of its batch,
    not a step: its reason said 'a step takes X ms in bf16 vs Y ms in fp32'. It says what it timed."""
    import mme.train.precision as precision

    monkeypatch.delenv(precision.AUTO_ENV, raising=False)
    monkeypatch.setattr(precision, "bf16_native", lambda device: True)  # (auto times the two)
    res = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=1", "model.depth=1", f"train.batch_size={batch_size}")
    reason = json.loads((res.out_dir / "run.json").read_text())["precision_reason"]
    assert re.fullmatch(rf"auto: measured here, forward and backward of {clips} clips take \d+\.\d ms in bf16 vs "
                        rf"\d+\.\d ms in fp32, best of \d+ rounds \(bf16 needs 1\.1x\)", reason), reason


@pytest.mark.pinned  # both commands refused before a precision is chosen
def test_compile_on_cpu_without_a_cpp_compiler_is_refused_before_any_work(synth, tmp_path, monkeypatch, capsys):
    """train.compile=true on CPU without a C++ compiler failed at the first step (inductor's InvalidCxxCompiler
    traceback), after the run folder was made; mme bench train --compile the same. One line each, nothing made."""
    from torch._inductor.cpp_builder import cpp_compiler_search

    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no g++ to be found, whatever the machine has
    monkeypatch.delenv("CXX", raising=False)
    cpp_compiler_search.cache_clear()  # torch's lookup keeps what it found first
    try:
        compiled = tiny(*synth, f"train.out_dir={tmp_path / 'run'}", "train.compile=true", "train.device=cpu")
        assert cli.main(["pretrain", "--config", "tiny_cpu_pixel", *compiled]) == 1
        assert cli.main(["bench", "train", "--recipe", "tiny_cpu_pixel", "--img-size", "32", "--frames", "4", "--batch",
                         "2", "--steps", "1", "--warmup", "0", "--rounds", "1", "--no-peer", "--compile", "--json",
                         str(tmp_path / "bench.json"), "--device", "cpu"]) == 1
    finally:
        cpp_compiler_search.cache_clear()
    why = "needs a C++ compiler on CPU, and torch finds none ('g++' cannot be run; it runs $CXX, else g++): install " \
          "g++ or clang++ (CXX=clang++), or drop"
    assert [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln] == [
        f"mme pretrain: error: train.compile {why} train.compile", f"mme bench train: error: --compile {why} --compile"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


@pytest.mark.pinned  # bench train times named precisions, never 'auto'
def test_bench_train_reports_throughput_against_the_fp32_reference_and_names_the_machine(tmp_path, capsys):
    from mme.train.precision import bf16_native
    from mme.utils import cpu_name

    out = tmp_path / "bench.json"
    assert cli.main(["bench", "train", "--recipe", "tiny_cpu_pixel", "--img-size", "32", "--frames", "4", "--batch",
                     "2", "--steps", "1", "--warmup", "0", "--rounds", "1", "--no-peer", "--json", str(out),
                     "--device", "cpu"]) == 0  # (auto: a GPU where there is one; the machine asserted is the CPU)
    bench = json.loads(out.read_text())
    rows = bench["rows"]
    assert [r["variant"] for r in rows][0] == "fp32 eager" and rows[0]["ratio"] == 1.0
    assert not any(r["variant"].startswith("HF") for r in rows)
    model = bench["model"]  # the demo's model with the sizes given in place of the recipe's
    assert (model["embed_dim"], model["depth"], model["decoder_dim"], model["img_size"]) == (192, 4, 128, 32)
    assert all(r["clips_per_s"] > 0 and r["ratio"] > 0 for r in rows)
    cpu = torch.device("cpu")
    assert (bench["cpu"], bench["gpu"], bench["bf16_native"]) == (cpu_name(), None, bf16_native(cpu))
    assert (bench["target"]["kind"], bench["steps"], bench["warmup"], bench["rounds"]) == ("pixel", 1, 0, 1)
    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    assert f"device cpu ({cpu_name()})" in header and "1 round of 1 step after 0 warm-up steps" in header
    assert "clips/s" in printed


@pytest.mark.pinned  # no run
def test_bench_train_makes_the_motion_targets_in_the_step_from_tracks_of_the_shipped_shapes():
    from mme.motion.targets import batch_targets, head_specs
    from mme.train.bench import random_motion

    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=32", "model.num_frames=4", "data.img_size=32",
                                                       "data.num_frames=4"])
    motion = random_motion(cfg.target, cfg.model, 3, torch.device("cpu"))
    assert motion["frames"].shape == (3 * 2 * 6, 32, 32, 3)  # clips x starts x steps distinct frames
    targets, valid = batch_targets(torch.zeros(3, 3, 4, 32, 32), motion, cfg.target, cfg.model)
    assert {n: t.shape for n, t in targets.items()} == {h.name: (3, 8, h.dim) for h in head_specs(cfg.target,
                                                                                                     cfg.model)}
    assert all(v.all() for v in valid.values())
    assert random_motion(load_config(PretrainConfig, "tiny_cpu_pixel", []).target, cfg.model, 3,
                         torch.device("cpu")) == {}


@pytest.mark.pinned  # refused before any run
def test_bench_pipeline_refuses_sizes_the_model_does_not_take_and_a_missing_video_before_any_work(monkeypatch):
    from mme.train import bench_pipeline

    def made(*args, **kwargs):
        raise AssertionError("the video was generated before the sizes were checked")

    monkeypatch.setattr(bench_pipeline, "generated_video", made)
    with pytest.raises(ConfigError, match="^--frames 3 is not a multiple of tubelet_size 2$"):  # (the flag given)
        bench_pipeline.bench_pipeline(frames=3)

    monkeypatch.setattr(bench_pipeline, "extract_cache", made)
    with pytest.raises(VideoError, match=r"none\.mp4: missing"):  # before: an extract, then a list's failures
        bench_pipeline.bench_pipeline(video="none.mp4", size=64, frames=8)


def test_bench_pipeline_reports_the_workers_cost_per_target_and_the_cores_a_step_rate_needs(tmp_path, capsys, caplog):
    out = tmp_path / "pipeline.json"
    with caplog.at_level("WARNING", logger="mme"):
        assert cli.main(["bench", "pipeline", "--size", "64", "--frames", "8", "--stride", "2", "--clips", "3",
                         "--steps", "3", "--clips-per-s", "100", "--json", str(out)]) == 0
    assert "warm-up" not in caplog.text  # (its run's: the recipe's 20 steps took its 3, the user told to set keys)
    r = json.loads(out.read_text())
    ms = r["worker_ms_per_clip"]
    assert set(ms) == {"pixel", "mme online", "mme torch-lk", "mme cached"} and all(v > 0 for v in ms.values())
    # (which worker costs more is the bench's to say, not a test's: at 64² the flow is as cheap as the timing noise)
    assert all(r["ratio_to_pixel"][v] == pytest.approx(ms[v] / ms["pixel"]) for v in ms)
    step = r["step_target_ms_per_clip"]  # HOG along the tracks and the assembly moved to the step
    assert set(step) == set(ms) and step["mme online"] > 0 and step["mme cached"] > 0
    assert step["mme torch-lk"] > 5 * step["mme online"]  # the step's share has the flow and tracks (36x at 64²)
    assert all(r["cores_needed"][v] == pytest.approx(100 * ms[v] / 1000) for v in ms)
    assert 0 <= r["data_wait_fraction"] <= 1 and r["clips_per_s_source"] == "given"
    printed = capsys.readouterr().out
    assert "cores needed" in printed and "extract:" not in printed  # (its track cache's counts are extract's own)
    # (its pre-training run's summary and JSON line named a temporary folder, removed before the bench ended)
    assert '"checkpoint"' not in printed and tempfile.gettempdir() not in printed


@pytest.mark.pinned  # its runs' 'auto' set to fp32 (AUTO_ENV)
@pytest.mark.parametrize("given", [None, 1000.0])
def test_bench_pipelines_step_rate_is_the_step_alone_on_a_batch_of_its_items_as_bench_train_times_it(given, tmp_path,
                                                                                                      monkeypatch,
                                                                                                      capsys):
    """The measured step rate was the short run's clips/s over its step time less the data wait, a step that shared
    its cores with the run's loader workers (2.5-3.0 clips/s at 8 x 112² on 2 cores, against 8-9 for the step
    alone): cores needed 2-3x too low. It is now ``mme bench train``'s step and timing, on a collated batch of the
    run's items, with no worker alive beside it; the run is kept for the data-wait line, which says whose the step
    rate is (with ``--clips-per-s``, the one given: no step is timed)."""
    from mme.train import bench, bench_pipeline, precision
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")  # (the run's precision on any CPU)
    # the run's threads (2 cores less its one worker: 1) other than this process's, which the step is not timed on
    monkeypatch.setattr(precision, "core_share", lambda: (2, ""))
    torch.set_num_threads(2)
    # (the workers' timings and the track cache come before the run and are not this test's: skipped for time)
    monkeypatch.setattr(bench_pipeline, "extract_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench_pipeline, "_variants_ms", lambda cfgs, *args: dict.fromkeys(cfgs, (1.0, 0.0, 1.0)))
    made, timed = [], []

    def step_fn(model_cfg, target_cfg, optim, batch, precision, *args):
        made.append((batch, precision, args[4].shape, args[4].dtype, sorted(args[6]), torch.get_num_threads()))
        return bench.step_fn(model_cfg, target_cfg, optim, batch, precision, *args)

    def seconds_per_step(step, steps, device):
        timed.append((steps, multiprocessing.active_children()))
        return 0.25  # a batch of 2 per 0.25 s: 8 clips/s

    monkeypatch.setattr(bench_pipeline, "step_fn", step_fn)
    monkeypatch.setattr(bench_pipeline, "seconds_per_step", seconds_per_step)
    out = tmp_path / "pipeline.json"
    assert cli.main(["bench", "pipeline", "--size", "64", "--frames", "8", "--stride", "2", "--clips", "1",
                     "--steps", "3", "--workers", "1", "--json", str(out),
                     *(["--clips-per-s", str(given)] if given else [])]) == 0
    r = json.loads(out.read_text())
    wait = [line for line in capsys.readouterr().out.splitlines() if "waited for data" in line]
    assert 0 <= r["data_wait_fraction"] <= 1 and r["workers"] == 1
    if given:
        assert (made, timed) == ([], []) and r["clips_per_s"] == given and r["clips_per_s_rounds"] is None
        assert r["clips_per_s_source"] == "given" and wait[0].endswith("the step rate above is the one given)")
        return
    assert r["clips_per_s"] == 8.0 and r["clips_per_s_rounds"] == [8.0] * bench_pipeline.STEP_ROUNDS
    assert r["cores_needed"]["pixel"] == pytest.approx(8.0 * 1.0 / 1000)
    motion = sorted(bench.random_motion(load_config(PretrainConfig, "tiny_cpu_mme").target,
                                        dataclasses.replace(load_config(PretrainConfig, "tiny_cpu_mme").model,
                                                            img_size=64, num_frames=8), 2, torch.device("cpu")))
    # one step, of the run's batch, precision and threads (1, not this process's 2): the items' clip normalised,
    # their tracks as shipped
    assert made == [(2, "fp32", (2, 3, 8, 64, 64), torch.float32, motion, 1)]
    assert timed == [(bench_pipeline.STEP_STEPS, [])] * bench_pipeline.STEP_ROUNDS  # no loader worker beside it
    assert r["clips_per_s_source"].startswith("measured: the tiny model's MME step alone, as mme bench train times "
                                              "it, on a collated batch of 2, fp32, 1 thread, ")
    assert "no loader worker beside it" in r["clips_per_s_source"]
    assert wait[0].endswith("the step rate above is the step's alone, not this run's, whose workers take cores "
                            "beside it)")


@pytest.mark.pinned  # its runs' 'auto' set to fp32 (AUTO_ENV)
@pytest.mark.parametrize("at", [1, 3])
def test_bench_pipeline_stopped_during_its_run_says_nothing_is_kept(at, tmp_path, capsys, monkeypatch):
    """A Ctrl-C during the benchmark's pre-training run (mid-run, or on its last step) named a checkpoint in the
    temporary folder removed on the way out, and advised ``--resume auto``, which ``mme bench`` does not take."""
    import os
    import signal

    from mme.train import bench_pipeline, loop
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")  # (the run's precision on any CPU)
    real_step = loop.train_step
    # (the workers' timings and the track cache come before the run and are not this test's: skipped for time)
    monkeypatch.setattr(bench_pipeline, "extract_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench_pipeline, "_variants_ms", lambda cfgs, *args: dict.fromkeys(cfgs, (1.0, 0.0, 1.0)))

    def signalled(run, stream, stop):
        if run.step == at - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, stream, stop)

    monkeypatch.setattr(loop, "train_step", signalled)
    out = tmp_path / "pipeline.json"
    assert cli.main(["bench", "pipeline", "--size", "64", "--frames", "8", "--stride", "2", "--clips", "1",
                     "--steps", "3", "--workers", "0", "--clips-per-s", "100", "--json", str(out)]) == 130
    ends = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mme bench")]
    assert ends == ["mme bench pipeline: error: stopped by SIGINT during the benchmark's 3-step pre-training run; "
                    "nothing is kept: run it again"]
    assert not out.exists()


@pytest.mark.pinned  # its runs' 'auto' set to fp32 (AUTO_ENV)
def test_bench_pipelines_workers_on_one_core_are_said_naming_its_flag(tmp_path, capsys, caplog, monkeypatch):
    """``mme bench pipeline --workers 2`` on one core warned of data.num_workers, a key the command does not take:
    its run is made within keys_as_flags (mme.utils.said_as), and the warning names --workers."""
    from mme.train import bench_pipeline
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")  # (the run's precision on any CPU)
    # (the workers' timings and the track cache come before the run and are not this test's: skipped for time)
    monkeypatch.setattr(bench_pipeline, "extract_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench_pipeline, "_variants_ms", lambda cfgs, *args: dict.fromkeys(cfgs, (1.0, 0.0, 1.0)))
    with on_one_core():
        with caplog.at_level(logging.WARNING, logger="mme"):
            assert cli.main(["bench", "pipeline", "--size", "64", "--frames", "8", "--stride", "2", "--clips", "1",
                             "--steps", "3", "--workers", "2", "--clips-per-s", "100"]) == 0
    assert [r.getMessage() for r in caplog.records if "loader workers on" in r.getMessage()] == [
        "--workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside this process: --workers=0 "
        "suits this machine"]
    assert "a 3-step MME run with 2 workers" in capsys.readouterr().out


@pytest.mark.pinned  # its runs' 'auto' set to fp32 (AUTO_ENV)
def test_bench_pipelines_clips_longer_than_its_video_are_said_with_its_flags_and_no_list(tmp_path, caplog,
                                                                                          monkeypatch):
    """``mme bench pipeline --video`` of a video shorter than its clips warned "lower data.stride or
    target.track_length, or leave them out of the list (`mme check --min-frames 31` names them)": keys it does not
    take (its flag is --stride; the track length is its own), and a list of its own in a folder it removes. It names
    --stride alone (mme.utils.said_as within keys_as_flags)."""
    from videos import affine_video, write_video

    from mme.train import bench_pipeline
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")  # (the run's precision on any CPU)
    write_video(tmp_path / "short.mp4", affine_video(20, 96, 96, dx=1.0)[0])
    # (the workers' timings and the track cache come before the run and are not this test's: skipped for time)
    monkeypatch.setattr(bench_pipeline, "extract_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench_pipeline, "_variants_ms", lambda cfgs, *args: dict.fromkeys(cfgs, (1.0, 0.0, 1.0)))
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert cli.main(["bench", "pipeline", "--video", str(tmp_path / "short.mp4"), "--size", "64", "--frames", "8",
                         "--stride", "4", "--clips", "1", "--steps", "3", "--workers", "0", "--clips-per-s",
                         "100"]) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert said and all(m.endswith("the shortest holds 20): their clips repeat their last frame, and train on frozen "
                                   "frames; lower --stride") for m in said), said


@pytest.mark.pinned  # every run train.precision=fp32
def test_init_loads_the_weights_of_a_checkpoint(synth, tmp_path):
    a = run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=1", FP32)
    # lr 0: AdamW leaves the weights as loaded, so the result must be exactly run a's weights
    b = run("tiny_cpu_pixel", synth, tmp_path / "b", "train.steps=1", "optim.base_lr=0", "optim.min_lr=0",
            f"train.init={a.checkpoint}", "train.seed=7", FP32)
    sa, sb = (torch.load(r.checkpoint, weights_only=True)["model"] for r in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.pinned  # every run train.precision=fp32
def test_init_and_resume_take_the_architecture_of_their_checkpoint(synth, tmp_path, caplog):
    """train.init loaded a masked autoencoder trained with other head counts and another input norm into the
    config's architecture (the shapes match), without a word: its encoder computed something else (off by 0.31).
    The architecture the file records is taken, as fine-tuning takes it, said in the log; a resume keeps the run's
    own, the values given otherwise on its command line warned about as ignored (not the recipe's that the file's
    replaced: before, those were said on every resume, nothing having been given), and so are they on the fresh run
    (before: only the info line "architecture from ...", while a resume warned of the same keys). The clips take the
    tubelet taken."""

    from mme.models.checkpoint import load_model
    from mme.train.pretrain import main

    other = ("model.num_heads=4", "model.decoder_heads=4", "model.input_norm=clip", "model.decoder_norm_eps=1e-5",
             "model.tubelet_size=1", "data.tubelet=1")
    a = run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=1", FP32, *other)
    frozen = ("optim.base_lr=0", "optim.min_lr=0")  # AdamW leaves the weights as loaded
    with caplog.at_level("INFO", logger="mme"):
        b = run("tiny_cpu_pixel", synth, tmp_path / "b", "train.steps=1", FP32, f"train.init={a.checkpoint}", *frozen)
    x = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    mae_a, mae_b = load_model(a.checkpoint), load_model(b.checkpoint)
    mask = mae_a.make_mask(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(mae_b.forward_decoder(mae_b.forward_encoder(x, mask), mask)["pixel"],
                           mae_a.forward_decoder(mae_a.forward_encoder(x, mask), mask)["pixel"])
    ran = torch.load(b.checkpoint, weights_only=True)["config"]["model"]
    assert (ran["num_heads"], ran["decoder_heads"], ran["input_norm"], ran["decoder_norm_eps"]) == (4, 4, "clip", 1e-5)
    assert ran["tubelet_size"] == torch.load(b.checkpoint, weights_only=True)["config"]["data"]["tubelet"] == 1
    assert f"architecture from {a.checkpoint}: {{'num_heads': 4, 'tubelet_size': 1, 'input_norm': 'clip', " \
        "'decoder_heads': 4, 'decoder_norm_eps': 1e-05}" in caplog.text
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "ignored" in r.getMessage()] == [(
        "WARNING", f"train.init {a.checkpoint}: the run's architecture is the file's, so these are ignored: "
        "model.num_heads=2 (the file's: 4), model.decoder_heads=2 (the file's: 4)")]  # (the recipe's are not said)
    caplog.clear()
    with caplog.at_level("INFO", logger="mme"):  # the command line gives TINY's head counts, not the others
        main("tiny_cpu_pixel", tiny(*synth, f"train.out_dir={tmp_path / 'b'}", "train.steps=2", FP32,
                                "train.resume=auto", *frozen))
    assert torch.load(tmp_path / "b" / "checkpoint-00000002.pt", weights_only=True)["config"]["model"] == ran
    assert f"clips of 8 frames of 64 px, tubelet 1, as the model of the resumed run ({b.checkpoint}) takes them, " \
        "not the recipe's tubelet 2" in caplog.text
    assert [r.getMessage() for r in caplog.records if "ignored" in r.getMessage() and r.levelname == "WARNING"] == [
        f"resuming {b.checkpoint}: its model is the run's own, so these are ignored: model.num_heads=2 (the run's: "
        "4), model.decoder_heads=2 (the run's: 4)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme"):  # one tubelet through both keys: said once (it was twice)
        run("tiny_cpu_pixel", synth, tmp_path / "c", "train.steps=1", FP32, f"train.init={a.checkpoint}", *frozen,
            "model.tubelet_size=2", "data.tubelet=2")
    assert [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()] == [
        f"train.init {a.checkpoint}: the run's architecture is the file's, so these are ignored: model.num_heads=2 "
        "(the file's: 4), model.tubelet_size=2 (the file's: 1), model.decoder_heads=2 (the file's: 4), data.tubelet=2 "
        "(the file's: 1)"]


@pytest.mark.pinned  # every run train.precision=fp32
def test_init_of_a_decoder_width_with_no_head_count_guess_takes_the_configs_count(synth, tmp_path):
    """An original VideoMAE .pth whose decoder width has no guess (32: not of 64-d heads) was refused as train.init
    ("cannot infer the decoder's attention heads for width 32: pass decoder_heads", which pre-training has no way
    to pass), though the config gives that width and the count. The config's count is taken where its
    model.decoder_dim is the file's width; else one line naming the keys that give it."""
    from mme.models import convert
    from mme.models.config import ModelConfig
    from mme.models.mae import HeadSpec, MaskedAutoencoder

    torch.manual_seed(0)
    mae = MaskedAutoencoder(ModelConfig(img_size=64, num_frames=8, embed_dim=64, depth=2, num_heads=2, decoder_dim=32,
                                        decoder_heads=2, head_hidden=0), [HeadSpec("pixel", 2 * 16 * 16 * 3)])
    torch.save({"model": convert.rename(mae.state_dict(), convert.invert(convert.VIDEOMAE_PRETRAIN))[0]},
               tmp_path / "pre.pth")
    frozen = ("train.steps=1", "optim.base_lr=0", "optim.min_lr=0", FP32)  # AdamW leaves the weights as loaded
    res = run("tiny_cpu_pixel", synth, tmp_path / "a", f"train.init={tmp_path}/pre.pth", *frozen)
    ran = torch.load(res.checkpoint, weights_only=True)
    assert ran["config"]["model"]["decoder_heads"] == 2
    assert all(torch.equal(ran["model"][k], v) for k, v in mae.state_dict().items())
    with pytest.raises(CheckpointError, match=f"train.init {tmp_path}/pre.pth records no head count, .*: give the "
                                              "count it was trained with, model.decoder_dim=32 model.decoder_heads=N$"):
        run("tiny_cpu_pixel", synth, tmp_path / "b", f"train.init={tmp_path}/pre.pth", "model.decoder_dim=64", *frozen)


@pytest.mark.pinned  # every run train.precision=fp32
def test_init_from_a_masked_autoencoder_takes_the_hidden_width_of_its_heads(synth, tmp_path, caplog):
    """Pre-training from an MME masked autoencoder whose model.head_hidden (64) was not the recipe's (32) was refused
    for the shapes of its heads, with advice to start from its encoder alone (its decoder and heads thrown away),
    though the file records that width. It is taken with its decoder's architecture, the heads loaded."""
    frozen = ("train.steps=1", "optim.base_lr=0", "optim.min_lr=0", FP32)  # AdamW leaves the weights as loaded
    a = run("tiny_cpu_mme", synth, tmp_path / "a", *frozen)
    with caplog.at_level("INFO", logger="mme"):
        b = run("tiny_cpu_mme", synth, tmp_path / "b", f"train.init={a.checkpoint}", "model.head_hidden=32", *frozen)
    theirs, ours = (torch.load(r.checkpoint, weights_only=True) for r in (a, b))
    assert ours["config"]["model"]["head_hidden"] == 64 and ours["model"]["heads.traj.fc1.weight"].shape == (64, 32)
    assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
    assert f"architecture from {a.checkpoint}: {{'head_hidden': 64}}" in caplog.text


INIT = "checkpoint-00000002.pt"
"""The last checkpoint of a run of 2 steps."""


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_pretraining_run_begun_from_train_init_keeps_it_on_resume(synth, tmp_path):
    """Resumed without train.init (the plain resume command), a run begun from one recorded ``init: null`` in its
    config.yaml and later checkpoints (as fine-tuning did: test_finetune.py)."""
    a = run("tiny_cpu_pixel", synth, tmp_path / "a", "train.steps=1", FP32)
    b = tmp_path / "b"
    run("tiny_cpu_pixel", synth, b, f"train.init={a.checkpoint}", "train.steps=2", "train.stop_after=1", FP32)
    res = run("tiny_cpu_pixel", synth, b, "train.steps=2", "train.resume=auto", FP32)
    assert yaml.safe_load((b / "config.yaml").read_text())["train"]["init"] == str(a.checkpoint)
    assert torch.load(res.checkpoint, weights_only=True)["config"]["train"]["init"] == str(a.checkpoint)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_relative_train_init_is_the_runs_from_its_working_folder_on_resume(synth, tmp_path, caplog, monkeypatch):
    """A run begun from a relative train.init and resumed from another folder compared the paths in the resuming
    folder: the same command line named a missing file unsaid, the same file by its path from there was warned about
    as another, and config.yaml kept the relative path, which named another file from there. The run's path is taken
    from its own working folder and recorded absolute."""
    a = run("tiny_cpu_pixel", synth, tmp_path / "pre", "train.steps=1", FP32)
    (tmp_path / "A").mkdir(), (tmp_path / "B").mkdir()
    (tmp_path / "A" / "init.pt").write_bytes(a.checkpoint.read_bytes())
    out, init = tmp_path / "run", str(tmp_path / "A" / "init.pt")
    monkeypatch.chdir(tmp_path / "A")
    run("tiny_cpu_pixel", synth, out, "train.init=init.pt", "train.steps=3", "train.stop_after=1", FP32)
    monkeypatch.chdir(tmp_path / "B")
    for given, stop, ignored in (("init.pt", 2, True), ("../A/init.pt", 3, False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme"):
            run("tiny_cpu_pixel", synth, out, f"train.init={given}", "train.steps=3", f"train.stop_after={stop}",
                "train.resume=auto", FP32)
        assert [r.getMessage() for r in caplog.records if "train.init" in r.getMessage()] == ([
            f"resuming {out}/checkpoint-0000000{stop - 1}.pt: train.init={given} is ignored: the run's weights are "
            f"its checkpoint's (it began from train.init {init})"] if ignored else [])
        assert yaml.safe_load((out / "config.yaml").read_text())["train"]["init"] == init
        assert torch.load(out / f"checkpoint-0000000{stop}.pt", weights_only=True)["config"]["train"]["init"] == init
    moved = tmp_path / "run2"  # a run whose folders moved (A to M), resumed by its own command from the new one
    monkeypatch.chdir(tmp_path / "A")
    run("tiny_cpu_pixel", synth, moved, "train.init=init.pt", "train.steps=2", "train.stop_after=1", FP32)
    (tmp_path / "A").rename(tmp_path / "M")
    monkeypatch.chdir(tmp_path / "M")
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme"):
        run("tiny_cpu_pixel", synth, moved, "train.init=init.pt", "train.steps=2", "train.resume=auto", FP32)
    assert "train.init" not in caplog.text, caplog.text
    assert yaml.safe_load((moved / "config.yaml").read_text())["train"]["init"] == str(tmp_path / "M" / "init.pt")


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_run_whose_folders_moved_after_a_resume_finds_its_train_init(synth, tmp_path, caplog, monkeypatch):
    """A run begun from a relative train.init records it absolute at its first resume; its project folder then moved
    (renamed, copied to another machine), the next resume kept that old path, which no longer exists: unsaid with
    the plain --resume auto, config.yaml naming it (as a recipe: 'no such file'), and the run's own command, given
    train.init=init.pt, warned about as ignored ('it began from' the old path). The file is found where the folders
    moved (the same path from this working folder, else from the run's folder), the file the command line gives
    stands for one no path finds where it is that file (its name, the contents the run recorded), and one found
    nowhere is recorded as it was, said in a warning; another file given (another name, or the name with other
    contents: it took whatever file train.init named, recorded as the one the run began from) is ignored there."""
    a = run("tiny_cpu_pixel", synth, tmp_path / "pre", "train.steps=1", FP32)
    (tmp_path / "proj").mkdir(), (tmp_path / "kept").mkdir()
    (tmp_path / "proj" / "init.pt").write_bytes(a.checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path / "proj")
    run("tiny_cpu_pixel", synth, "run", "train.init=init.pt", "train.steps=8", "train.stop_after=1", FP32)

    def resume(cwd: str, out: str, stop: int, *given: str) -> tuple[list[str], str]:
        """The train.init warnings of a resume from ``cwd`` that stops at ``stop``, and the train.init its
        config.yaml records (its checkpoint's too)."""
        monkeypatch.chdir(tmp_path / cwd)
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme"):
            res = run("tiny_cpu_pixel", synth, out, *given, "train.steps=8", f"train.stop_after={stop}",
                      "train.resume=auto", FP32)
        init = yaml.safe_load((res.out_dir / "config.yaml").read_text())["train"]["init"]
        assert torch.load(res.checkpoint, weights_only=True)["config"]["train"]["init"] == init
        return [r.getMessage() for r in caplog.records if "train.init" in r.getMessage()], init

    assert resume("proj", "run", 2) == ([], str(tmp_path / "proj" / "init.pt"))
    (tmp_path / "proj").rename(tmp_path / "moved")  # found from this working folder
    assert resume("moved", "run", 3) == ([], str(tmp_path / "moved" / "init.pt"))
    (tmp_path / "moved").rename(tmp_path / "m2")  # from the run's folder, resumed from another working folder
    assert resume(".", "m2/run", 4) == ([], str(tmp_path / "m2" / "init.pt"))
    (tmp_path / "m2" / "init.pt").rename(tmp_path / "kept" / "init.pt")  # found by no path: the file given
    assert resume(".", "m2/run", 5, "train.init=kept/init.pt") == ([], str(tmp_path / "kept" / "init.pt"))
    kept = tmp_path / "kept" / "init.pt"
    (tmp_path / "o").mkdir()  # the same contents by another name, its name with other contents; it is gone
    (tmp_path / "w.pt").write_bytes(kept.read_bytes())
    (tmp_path / "o" / "init.pt").write_bytes(kept.read_bytes() + b"\0")
    kept.unlink()

    def not_found(step: int, given: str) -> str:
        return (f"resuming m2/run/checkpoint-0000000{step}.pt: the run's train.init {kept} no longer exists, nor is "
                "that file (of its name and contents) found from this working folder or from the run's folder (where "
                f"its folders moved){given}: config.yaml and later checkpoints record it as it was; give "
                "train.init=PATH of that file (of its name) where it lies now to record that")
    other = "; train.init={} is ignored: it is not that file (another name, or other contents than the run began from)"
    for step, given in ((5, "w.pt"), (6, "o/init.pt")):
        assert resume(".", "m2/run", step + 1, f"train.init={given}") == ([not_found(step, other.format(given))],
                                                                           str(kept))
    assert resume(".", "m2/run", 8) == ([not_found(7, "")], str(kept))


@pytest.mark.pinned  # no run: resumed_init alone
def test_another_file_where_a_moved_runs_train_init_is_looked_for_is_not_taken_for_it(tmp_path, caplog,
                                                                                     monkeypatch):
    """The run's init.pt gone, resumed from another working folder that holds another init.pt: the plain
    --resume auto (and the run's own command, train.init=init.pt) took that file unchecked as the run's and recorded
    it in its place, in an info line; the fingerprint the run recorded was checked for the command line's file
    alone. Every file found where the run's is looked for is checked the same way (engine.same_init)."""
    from mme.motion.cache import source_identity
    from mme.train.config import TrainConfig
    from mme.train.engine import resumed_init

    @dataclasses.dataclass
    class Config:  # (the train section is all resumed_init reads and replaces)
        train: TrainConfig

    for name, data in (("A", b"the run's init" * 100), ("B", b"another file" * 100), ("C", b"the run's init" * 100)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "init.pt").write_bytes(data)
    state = {"config": {"train": {"init": "init.pt", "out_dir": "run"}},
             "meta": {"cwd": str(tmp_path / "A"), "init_fingerprint": source_identity(tmp_path / "A" / "init.pt")[
                 "fingerprint"]}}
    (tmp_path / "A" / "init.pt").unlink()
    monkeypatch.chdir(tmp_path / "B")
    source = str(tmp_path / "A" / "run" / "checkpoint-00000001.pt")
    for given, now in ((None, tmp_path / "A" / "init.pt"), ("init.pt", tmp_path / "A" / "init.pt"),
                       (str(tmp_path / "C" / "init.pt"), tmp_path / "C" / "init.pt")):
        caplog.clear()
        with caplog.at_level("INFO", logger="mme"):
            cfg = resumed_init(Config(TrainConfig(init=given)), (source, state))
        assert cfg.train.init == str(now)
        assert [r.levelname for r in caplog.records if "no longer exists" in r.getMessage()] == \
            ["WARNING" if now.parent.name == "A" else "INFO"]


@pytest.mark.pinned  # no run: resumed_init alone
def test_a_moved_runs_train_init_folder_is_told_by_its_weights(tmp_path, caplog, monkeypatch):
    """A run begun from an export's folder (train.init=pre), the folder moved: the run recorded no fingerprint of a
    folder and a folder was never recognised as the run's (same_init asked for a file), so the folder given where it
    lies now was ignored, 'it is not that file (another name, or other contents ...)'. A folder's fingerprint is
    that of its weights' files (run_folder.init_fingerprint), compared as a file's: the moved copy is taken, a
    folder of that name with other weights is not, nor one whose index lists a shard it lacks (a partial copy: its
    fingerprint's os.stat stopped the resume with a FileNotFoundError)."""
    import shutil

    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.vit import VisionTransformer
    from mme.train import run_folder
    from mme.train.config import TrainConfig
    from mme.train.engine import resumed_init

    @dataclasses.dataclass
    class Config:  # (the train section is all resumed_init reads and replaces)
        train: TrainConfig

    cfg = ModelConfig(img_size=32, num_frames=4, patch_size=8, tubelet_size=1, embed_dim=32, depth=2, num_heads=2)
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(cfg), tmp_path / "A" / "pre")
    save_pretrained(VisionTransformer(cfg), tmp_path / "B" / "pre")  # other weights
    monkeypatch.chdir(tmp_path / "A")
    meta = run_folder.identity({"train": {"init": "pre"}}, None)
    assert meta["init_fingerprint"] == run_folder.init_fingerprint(str(tmp_path / "A" / "pre" / "model.safetensors"))
    state = {"config": {"train": {"init": "pre", "out_dir": "run"}}, "meta": {"cwd": str(tmp_path / "A"), **meta}}
    (tmp_path / "C").mkdir()
    shutil.move(tmp_path / "A" / "pre", tmp_path / "C" / "pre")
    monkeypatch.chdir(tmp_path)
    partial = tmp_path / "D" / "pre"
    partial.mkdir(parents=True)
    shutil.copy(tmp_path / "C" / "pre" / "model.safetensors", partial / "model-00001-of-00002.safetensors")
    (partial / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    source = str(tmp_path / "A" / "run" / "checkpoint-00000001.pt")
    for given, now in (("B/pre", tmp_path / "A" / "pre"), ("D/pre", tmp_path / "A" / "pre"),
                       ("C/pre/", tmp_path / "C" / "pre")):
        caplog.clear()
        with caplog.at_level("INFO", logger="mme"):
            assert resumed_init(Config(TrainConfig(init=given)), (source, state)).train.init == str(now)
        said = [r for r in caplog.records if "no longer exists" in r.getMessage()]
        assert [r.levelname for r in said] == ["INFO" if given == "C/pre/" else "WARNING"]
        assert ("is ignored: it is not that file" in said[0].getMessage()) == (given != "C/pre/")


@pytest.mark.pinned  # every run train.precision=fp32
def test_an_absolute_train_init_outside_the_working_folder_is_not_looked_for_from_another(synth, tmp_path, caplog,
                                                                                         monkeypatch):
    """A run begun from an absolute train.init outside its working folder (a shared models folder), the file gone,
    resumed from another working folder: the file of the same relative path from there (../ext/A.pt, another file)
    was taken as the run's and recorded in its place. Only a path given relative, or one in the run's working
    folder, is looked for from this one: the recorded path is kept, with the warning that it no longer exists."""
    a = run("tiny_cpu_pixel", synth, tmp_path / "pre", "train.steps=1", FP32)
    for folder in ("ext", "p1", "q/p2", "q/ext"):
        (tmp_path / folder).mkdir(parents=True)
    init = tmp_path / "ext" / "A.pt"
    init.write_bytes(a.checkpoint.read_bytes())
    (tmp_path / "q" / "ext" / "A.pt").write_bytes(a.checkpoint.read_bytes() + b"\0")  # another file, from q/p2
    monkeypatch.chdir(tmp_path / "p1")
    run("tiny_cpu_pixel", synth, "run", f"train.init={init}", "train.steps=2", "train.stop_after=1", FP32)
    init.unlink()
    monkeypatch.chdir(tmp_path / "q" / "p2")
    with caplog.at_level("WARNING", logger="mme"):
        res = run("tiny_cpu_pixel", synth, tmp_path / "p1" / "run", "train.steps=2", "train.resume=auto", FP32)
    assert [r.getMessage() for r in caplog.records if "train.init" in r.getMessage()] == [
        f"resuming {tmp_path / 'p1' / 'run' / 'checkpoint-00000001.pt'}: the run's train.init {init} no longer "
        "exists, nor is that file (of its name and contents) found from this working folder or from the run's folder "
        "(where its folders moved): config.yaml and later checkpoints record it as it was; give train.init=PATH of "
        "that file (of its name) where it lies now to record that"]
    assert yaml.safe_load((res.out_dir / "config.yaml").read_text())["train"]["init"] == str(init)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_train_init_given_to_a_run_whose_checkpoint_records_none_is_ignored_and_said(synth, tmp_path, caplog):
    """A checkpoint that records ``init: null`` (a run begun from scratch, or one an earlier version resumed, which
    recorded none) cannot tell which it is: a train.init given on resume is warned about as ignored, saying both,
    and not recorded (recording it made a scratch run's config.yaml replay from those weights, a file that does not
    exist recorded too); before that, the warning said "(it began without train.init)", false for the second."""
    from mme.train import checkpoint as ckpt

    a = run("tiny_cpu_pixel", synth, tmp_path / "pre", "model.depth=1", "train.steps=1", FP32)
    out, given = tmp_path / "run", ("tiny_cpu_pixel", synth, tmp_path / "run", f"train.init={a.checkpoint}",
                                    "train.steps=3", FP32)
    run(*given, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(out)[-1])
    state["config"]["train"]["init"] = None  # as the earlier version's resume wrote it, or a run from scratch
    ckpt.save_checkpoint(state, out, keep_last=0)
    for init, stop in ((a.checkpoint, 2), (tmp_path / "no_such.pt", 3)):
        caplog.clear()
        with caplog.at_level("INFO", logger="mme"):
            res = run(*given[:3], f"train.init={init}", "train.steps=3", FP32, f"train.stop_after={stop}",
                      "train.resume=auto")
        assert [r.getMessage() for r in caplog.records if "train.init=" in r.getMessage()] == [
            f"resuming {out}/checkpoint-0000000{stop - 1}.pt: train.init={init} is ignored: the run's weights are "
            "its checkpoint's, which records no train.init (a run begun from scratch, or resumed by an earlier "
            "version of mme, which recorded none)"]
        assert yaml.safe_load((out / "config.yaml").read_text())["train"]["init"] is None
        assert torch.load(res.checkpoint, weights_only=True)["config"]["train"]["init"] is None


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_resume_keeps_the_runs_preset(synth, tmp_path, caplog):
    """A resumed pre-training run took its architecture from its checkpoint with model.preset=None, so a run begun
    with model.preset=tiny, resumed by the same command, warned of a changed config and recorded
    "model.preset: 'tiny' -> None" though nothing changed. It keeps the run's preset; so does a run begun from a
    train.init of the preset's sizes (it set the preset aside, and a resume repeating model.preset warned of it as
    ignored), while one whose file has other sizes than the preset's sets it aside."""
    for out, init in ((tmp_path / "a", ()), (tmp_path / "b", (f"train.init={tmp_path / 'a' / INIT}",))):
        run("tiny_cpu_pixel", synth, out, "model.preset=tiny", *init, "train.steps=2", "train.stop_after=1", FP32)
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme"):
            res = run("tiny_cpu_pixel", synth, out, "model.preset=tiny", *init, "train.steps=2", "train.resume=auto",
                      FP32)
        assert "changed config" not in caplog.text and "ignored" not in caplog.text, caplog.text
        assert "config_changes" not in json.loads((out / "run.json").read_text())
        assert yaml.safe_load((out / "config.yaml").read_text())["model"]["preset"] == "tiny"
        assert torch.load(res.checkpoint, weights_only=True)["config"]["model"]["preset"] == "tiny"
    c = run("tiny_cpu_pixel", synth, tmp_path / "c", "model.preset=tiny", "model.embed_dim=96", "train.steps=1",
            "model.num_heads=2", f"train.init={res.checkpoint}", FP32)  # the file is 64 wide, not 96
    assert torch.load(c.checkpoint, weights_only=True)["config"]["model"]["preset"] is None


@pytest.mark.pinned  # every run train.precision=fp32
def test_init_from_hugging_face_pretraining_without_a_final_norm_starts_that_norm_fresh(synth, tmp_path, caplog):
    """A Hugging Face VideoMAEForPreTraining saved with use_mean_pooling=true (transformers' default: no final encoder
    LayerNorm) was refused as train.init for the missing encoder.norm, and the advice given (export its encoder,
    start from that) met the same refusal. Its weights load, the run's encoder.norm fresh, with a warning."""
    import transformers

    from mme.models.checkpoint import load_model
    from mme.models.export import export

    hf_cfg = transformers.VideoMAEConfig(image_size=64, num_frames=8, hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=256, decoder_hidden_size=32,
                                         decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                         decoder_intermediate_size=128)
    assert hf_cfg.use_mean_pooling
    torch.manual_seed(0)
    transformers.VideoMAEForPreTraining(hf_cfg).save_pretrained(tmp_path / "hf")
    theirs = load_model(tmp_path / "hf").state_dict()  # (its encoder without a final norm)
    export(tmp_path / "hf", tmp_path / "encoder.safetensors", "safetensors", "model")
    frozen = ("train.steps=1", "optim.base_lr=0", "optim.min_lr=0", FP32)  # AdamW leaves the weights as loaded
    for init, prefix in ((tmp_path / "hf", ""), (tmp_path / "encoder.safetensors", "encoder.")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme"):
            res = run("tiny_cpu_pixel", synth, tmp_path / init.stem, f"train.init={init}", *frozen)
        ours = torch.load(res.checkpoint, weights_only=True)["model"]
        assert all(torch.equal(ours[k], v) for k, v in theirs.items() if k.startswith(prefix)), init
        assert torch.equal(ours["encoder.norm.weight"], torch.ones(64))
        assert torch.equal(ours["encoder.norm.bias"], torch.zeros(64))
        said = f"train.init {init} has no final encoder LayerNorm (Hugging Face's use_mean_pooling, or a classifier " \
            "fine-tuned with mean pooling): this run's encoder.norm starts fresh (weight 1, bias 0)"
        assert said + (", which its decoder did not see in its training" if not prefix else "") in caplog.text


@pytest.mark.parametrize("target", [[], ["target.seed_stride=4", "target.patch_norm=false",
                                         "target.position_unit=1", "target.track_length=3"]])
def test_prediction_picture_follows_the_runs_target_layout(target, synth, tmp_path, monkeypatch):
    """`mme viz --checkpoint` draws targets made as the run made them: 2x2 or 4x4 points per patch, PatchStd or
    position units, any track length (it assumed the released 2x2 layout before)."""
    import numpy as np
    from PIL import Image

    from mme.motion import viz

    panels, figure = [], viz._figure

    def capture(p, *args):  # the titled panels, and the PNG written as ever
        panels.extend(p)
        figure(p, *args)

    monkeypatch.setattr(viz, "_figure", capture)
    r = run("tiny_cpu_mme", synth, tmp_path / "run", "train.steps=1", *target)
    root = next(o.split("=", 1)[1] for o in synth if o.startswith("data.root="))
    video = f"{root}/" + open(next(o.split("=", 1)[1] for o in synth if o.startswith("data.list_file="))
                              ).readline().split()[0]
    out = viz.prediction_picture(video, str(r.checkpoint), tmp_path / "pred.png", stride=2)
    w, h = Image.open(out).size
    assert len(panels) == 4 * 3 and w >= 3 * viz.MIN_PANEL and h >= 4 * viz.MIN_PANEL  # 4 tubelets: rows of 3
    for (_, frame), (title, drawn) in zip(panels[::3], panels[1::3]):
        green = (np.abs(drawn.astype(int) - viz.TARGET_RGB) < 60).all(-1) & (drawn != frame).any(-1)
        assert title.startswith("target tracks") and green.sum() > 0  # target trajectories were drawn


def test_prediction_picture_names_the_checkpoint_whose_target_section_does_not_load(synth, tmp_path):
    from mme.errors import CheckpointError
    from mme.motion.viz import prediction_picture

    r = run("tiny_cpu_mme", synth, tmp_path / "run", "train.steps=1")
    ck = torch.load(r.checkpoint, weights_only=False)
    ck["config"]["target"]["from_a_newer_version"] = 1
    bad = tmp_path / "newer.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match=rf"{bad}.*target.*from_a_newer_version"):
        prediction_picture("never_opened.mp4", str(bad), tmp_path / "pred.png")


@pytest.mark.pinned  # no run
def test_mean_prediction_loss_is_the_valid_weighted_spread_about_the_mean_target():
    """Motion targets with invalid tokens (per-token sum over channels, invalid tokens count 0, as the training
    loss) made from shipped tracks of clips that read different numbers of frames, and a pixel target made from
    the clips; any chunking gives the same level."""
    from mme.data.dataset import collate
    from mme.data.transforms import normalize_clip
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import batch_targets, head_specs, pixel_target
    from mme.train.pretrain import mean_prediction_loss

    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=32", "model.num_frames=4", "data.img_size=32",
                                                       "data.num_frames=4", "model.depth=1",
                                                       "model.embed_dim=48", "target.kind=[mme, pixel]"])
    model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    g = torch.Generator().manual_seed(0)
    L = cfg.target.track_length

    def item(i):
        frames = 12 - i % 3  # distinct frames read by the shape features, different per clip
        return {"video": torch.randint(0, 256, (3, 4, 32, 32), generator=g, dtype=torch.uint8),
                "motion": {"disp": torch.randn(2, L, 4, 4, 2, generator=g) * (1 + i),
                           "track_valid": torch.rand(2, 4, 4, generator=g) > 0.6,
                           "shape_pos": torch.rand(2, L, 4, 4, 2, generator=g) * 31,
                           "frames": torch.randint(0, 256, (frames, 32, 32, 3), generator=g, dtype=torch.uint8),
                           "shape_index": torch.randint(0, frames, (2, L), generator=g)}}

    items = [item(i) for i in range(5)]
    batch = collate(items)
    video = normalize_clip(batch["video"])
    targets, valid = batch_targets(video, batch["motion"], cfg.target, cfg.model)
    traj, valid = targets["traj"], valid["traj"]  # (5, N, C), (5, N)
    assert 0 < valid.float().mean() < 1
    mean = traj[valid].mean(0)
    expected_traj = ((traj - mean) ** 2).sum(-1)[valid].sum() / valid.numel()
    shape = targets["shape"]
    expected_shape = ((shape - shape[valid].mean(0)) ** 2).sum(-1)[valid].sum() / valid.numel()
    pix = pixel_target(video, 2, 16)
    expected_pixel = ((pix - pix.mean((0, 1))) ** 2).mean()
    for chunk in (64, 2):
        level = mean_prediction_loss(model, cfg, items, chunk=chunk)
        assert level["traj"] == pytest.approx(expected_traj.item(), rel=1e-5)
        assert level["shape"] == pytest.approx(expected_shape.item(), rel=1e-5)
        assert level["pixel"] == pytest.approx(expected_pixel.item(), rel=1e-5)
        weights = {s.name: s.weight for s in model.head_specs}
        assert level["loss"] == pytest.approx(sum(weights[k] * level[k] for k in weights), rel=1e-6)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_track_cache_without_the_lists_files_is_refused_before_any_work(synth, tmp_path):
    """A missing or empty target.cache_dir was refused at the first batch, after the run's config.yaml, run.json
    and logs, the model and the loader workers were made; one that holds none of the list's files says so, where its
    lookup stopped once more than the run may skip were lacking. A cache that lacks some videos' files still trains."""
    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray").mkdir()  # another list's file alone: "lacks the track cache files of 2 ..., and its listing
    (tmp_path / "stray" / "other.mp4.tracks").write_bytes(b"x")  # lacks those of 14 more" before
    every = r"holds no track cache file for any of the 16 videos of .*txt \(the first: [^)]*\)(?!, and its)"
    for cache, said in (("missing", "is not a folder"), ("empty", every), ("stray", every)):
        with pytest.raises(DataError, match=rf"^target.cache_dir '.*{cache}' {said}.*; `mme extract .* --root .* --out "
                                            rf".*{cache} --length 6 .*` makes the track cache files"):
            run("tiny_cpu_mme", synth, tmp_path / f"run_{cache}", f"target.cache_dir={tmp_path / cache}", FP32)
        assert not (tmp_path / f"run_{cache}" / "config.yaml").exists() and not (tmp_path / "missing").exists()
    assert (tmp_path / "empty").is_dir()
    # the files of every other video, the first's not among them, or of the second half of the list (an extraction
    # stopped part-way, of a list read backwards; the first 8 were probed, and refused): the run trains, the others
    # failing as videos do
    listed = open(lists["data.list_file"]).read().splitlines()
    for name, part in (("half", listed[1::2]), ("last", listed[len(listed) // 2:])):
        (tmp_path / f"{name}.txt").write_text("".join(f"{line}\n" for line in part))
        extract_cache(str(tmp_path / f"{name}.txt"), str(tmp_path / name), root=lists["data.root"], length=6,
                      short_side=64)
        r = run("tiny_cpu_mme", synth, tmp_path / f"runs_{name}", f"target.cache_dir={tmp_path / name}",
                "train.steps=1", "data.max_failure_fraction=1", FP32)
        assert r.step == 1 and len(listed) > 8


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_lacking_files_beyond_the_probed_videos_is_refused_before_any_work(synth, tmp_path):
    """Only 64 videos spread over the list were looked up in target.cache_dir: a cache holding their files alone
    started the run, which stopped mid-run once more than data.max_failure_fraction of the list had failed; one
    holding every file but theirs was refused as holding none, advised the run's finest settings, which mme extract
    refused for the files there. The whole list is looked up, in one listing of the folder (a video it misses then
    on disk, until more lack a file than the run may skip): both are refused before any work, the advice resuming
    with the settings of the files there; within the fraction, the run starts."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    first = open(lists["data.list_file"]).read().split()[0]
    (tmp_path / "one.txt").write_text(f"{first}\n")
    extract_cache(str(tmp_path / "one.txt"), str(tmp_path / "made"), root=lists["data.root"], length=6,
                  short_side=64, seed_stride=4)
    (tmp_path / "list.txt").write_text("".join(f"v/{i:03d}.mp4\n" for i in range(200)))
    probed = set(np.linspace(0, 199, 64).round().astype(int).tolist())  # the 64 videos looked up before
    for name, held in (("probed", probed), ("others", set(range(200)) - probed)):
        for i in held:
            cache_file(tmp_path / name, f"v/{i:03d}.mp4").parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cache_file(tmp_path / "made", first), cache_file(tmp_path / name, f"v/{i:03d}.mp4"))
        _on_disk(tmp_path, (f"v/{i:03d}.mp4" for i in set(range(200)) - held))
        data = [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}"]
        cfg = tiny_config("tiny_cpu_mme", data, tmp_path / "run", f"target.cache_dir={tmp_path / name}")
        lacking = 200 - len(held)
        with pytest.raises(DataError) as refused:  # before: started ("probed"), or refused as holding none
            check_cache(cfg, pretrain_dataset(cfg))
        assert str(refused.value) == (
            f"target.cache_dir '{tmp_path / name}' lacks the track cache files of 3 of the 200 videos of "
            f"{tmp_path / 'list.txt'} (the first: {tmp_path}/v/{min(set(range(200)) - held):03d}.mp4), and its "
            f"listing lacks those of {lacking - 3} more (not looked up one by one), more than "
            f"data.max_failure_fraction=0.01 of them; `mme extract {tmp_path / 'list.txt'} --root {tmp_path} --out "
            f"{tmp_path / name} --length 6 --short-side 64 --seed-stride 4 --flow dis-balanced --orientation coded "
            f"--backend pyav` makes the track cache files these videos lack with the settings of the cache's "
            f"{cache_file(tmp_path / name, f'v/{min(held):03d}.mp4')}, and resumes")
        cfg.data.max_failure_fraction = lacking / 200
        check_cache(cfg, pretrain_dataset(cfg))  # as many as the run may skip: it starts
        for video in tmp_path.glob("v/*.mp4"):  # (the next cache holds their files, made from another video)
            video.unlink()


def _cache_refusal(tmp_path: Path, cache: Path, videos: list, *data: str) -> str | None:
    """check_cache's refusal of a tiny run over ``videos`` reading the track cache ``cache`` (None: it reads it)."""
    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    (tmp_path / "run.txt").write_text("".join(f"{p}\n" for p in videos))
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'run.txt'}", *data], tmp_path / "run",
                      f"target.cache_dir={cache}")
    try:
        check_cache(cfg, pretrain_dataset(cfg))
    except DataError as e:
        return str(e)
    return None


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_lacking_files_mme_extract_failed_is_refused_naming_why_not_advising_it_again(synth, tmp_path,
                                                                                                   monkeypatch):
    """mme extract fails a video it cannot make a file of (here unreadable; a frame over 8:1 too) and names it in its
    report (<cache>/failed-*.json); the run's refusal of the cache lacking its file advised that same mme extract,
    which failed it again (exit 1), and the run was refused with the same line forever. Where the videos mme extract
    failed are alone more than data.max_failure_fraction, the refusal names them and why, and advises leaving them
    out or raising the fraction (mme extract only for the others: never extracted, or failed otherwise); where they
    are not, or a video changed since its report, the mme extract that makes the others. A video mme extract failed
    for a passing cause (here missing while it ran, then moved back with its old mtime: a mount away) is not one:
    the mme extract that makes it is advised (before: "mme extract failed, and fails again", where it made it)."""
    import os
    import shutil

    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    listed = [f"{lists['data.root']}/{line.split()[0]}" for line in open(lists["data.list_file"]).read().splitlines()]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    back = tmp_path / "back.mp4"  # away while mme extract ran, then moved back as it was
    shutil.copy2(listed[5], tmp_path / "away.mp4")
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in [*listed[:3], str(bad), str(back)]))
    cache = tmp_path / "cache"
    made = extract_cache(str(tmp_path / "list.txt"), str(cache), length=6, short_side=64, seed_stride=4)
    assert sorted(made["failed"]) == sorted([str(bad), str(back)]) and "missing" in made["failed"][str(back)]
    os.rename(tmp_path / "away.mp4", back)
    report = next(cache.glob("failed-*.json"))

    def refusal(videos: list[str], *extra: str) -> str | None:
        return _cache_refusal(tmp_path, cache, videos, "data.root=", *extra)

    said = refusal([*listed[:3], str(bad)])  # before: "lacks the track cache files of 1 of the 4 videos ...; `mme
    assert said is not None and said.startswith(  # extract ...` makes the track cache files these videos lack"
        f"target.cache_dir '{cache}' lacks the track cache files of 1 of the 4 videos of {tmp_path / 'run.txt'} that "
        f"mme extract failed, and fails again (the first: {bad}: unreadable")
    assert said.endswith(f"; each in {report}), more than data.max_failure_fraction=0.01 of them: leave them out of "
                         "the list, or raise data.max_failure_fraction"), said
    extract = (f"`mme extract {tmp_path / 'run.txt'} --out {cache} --length 6 --short-side 64 --seed-stride 4 --flow "
               "dis-balanced --orientation coded --backend pyav` makes the track cache files these videos lack")
    said = refusal([*listed[:4], str(bad)])  # and a video never extracted: mme extract makes its file
    assert said is not None and " that mme extract failed, and fails again (the first: " in said
    assert f"; it lacks the files of 1 more too: {extract}" in said, said
    said = refusal([*listed[:3], str(bad), str(back)])  # the one missing then is made by mme extract now
    assert said is not None and " that mme extract failed, and fails again (the first: " in said
    assert f"; it lacks the files of 1 more too: {extract}" in said, said
    said = refusal([*listed[:3], str(back)])  # before: "... that mme extract failed, and fails again (the first:
    assert said is not None and "mme extract failed" not in said and extract in said, said  # back.mp4: missing"
    said = refusal([*listed[:4], str(bad)], "data.max_failure_fraction=0.25")  # the failed one alone may be skipped
    assert said is not None and "mme extract failed" not in said and extract in said, said
    assert refusal([*listed[:3], str(bad)], "data.max_failure_fraction=0.25") is None
    shutil.copy2(listed[3], tmp_path / "bad.mp4")  # another file of its name, its old mtime: mme extract makes it
    os.utime(bad, (os.stat(report).st_mtime - 10,) * 2)
    said = refusal([*listed[:3], str(bad)])
    assert said is not None and "mme extract failed" not in said and extract in said, said
    shards = [tmp_path / f"bad{k}.mp4" for k in range(2)]  # failed by the two shares of a sharded extraction
    for k, video in enumerate(shards):
        video.write_bytes(np.random.default_rng(k + 1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "sharded.txt").write_text("".join(f"{p}\n" for p in shards))
    made = [extract_cache(str(tmp_path / "sharded.txt"), str(cache), length=6, short_side=64, seed_stride=4,
                          shard=f"{k}/2")["reports"] for k in range(2)]
    assert len({*made[0], *made[1]}) == 2, made
    said = refusal([*listed[:3], *map(str, shards)])  # before: "each in" the first share's report alone
    assert said is not None and f"; each in {made[0][0]}, {made[1][0]}), more than " in said, said
    (tmp_path / "vids").mkdir()  # extracted from its folder, --root relative; read from another, by a symlink
    worse = tmp_path / "vids" / "worse.mp4"
    worse.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "rel.txt").write_text("worse.mp4\n")
    monkeypatch.chdir(tmp_path)
    assert list(extract_cache("rel.txt", "cache", root="vids", length=6, short_side=64, seed_stride=4)["failed"]) == [
        "vids/worse.mp4"]
    (tmp_path / "link").symlink_to(tmp_path / "vids")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    said = refusal([*listed[:3], str(tmp_path / "link" / "worse.mp4")])  # before: not matched, mme extract advised
    assert said is not None and " that mme extract failed, and fails again (the first: vids/worse.mp4: " in said, said


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_report_of_failures_from_an_earlier_mme_is_judged_at_once(synth, tmp_path):
    """A report of mme extract's failures written by an mme that recorded no ``lasting`` (which of its videos failed
    of themselves) made the run advise the mme extract that fails the same video again (exit 1); only its new report
    gave the right advice. A video such a report failed with a reason of its own, its file unchanged since, is one
    mme extract fails again; one missing then, or changed since (a repaired copy put in place with its old mtime
    too), is made by the mme extract advised."""
    import json
    import os
    import shutil

    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    listed = [f"{lists['data.root']}/{line.split()[0]}" for line in open(lists["data.list_file"]).read().splitlines()]
    bad, back, fixed = tmp_path / "bad.mp4", tmp_path / "back.mp4", tmp_path / "fixed.mp4"
    for each in (bad, fixed):
        each.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shutil.copy2(listed[5], tmp_path / "away.mp4")  # away while mme extract ran, then moved back as it was
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in [*listed[:3], bad, back, fixed]))
    cache = tmp_path / "cache"
    extract_cache(str(tmp_path / "list.txt"), str(cache), length=6, short_side=64, seed_stride=4)
    os.rename(tmp_path / "away.mp4", back)
    report = next(cache.glob("failed-*.json"))
    told = json.loads(report.read_text())
    del told["lasting"]  # as an earlier mme wrote it
    report.write_text(json.dumps(told))

    def refusal(videos: list) -> str | None:
        return _cache_refusal(tmp_path, cache, videos, "data.root=")

    said = refusal([*listed[:3], bad])  # before: "...; `mme extract ...` makes the track cache files these videos lack"
    assert said.startswith(f"target.cache_dir '{cache}' lacks the track cache files of 1 of the 4 videos of "
                           f"{tmp_path / 'run.txt'} that mme extract failed, and fails again (the first: {bad}: "
                           "unreadable") and said.endswith(f"; each in {report}), more than data.max_failure_fraction"
                                                           "=0.01 of them: leave them out of the list, or raise "
                                                           "data.max_failure_fraction"), said
    said = refusal([*listed[:3], back])  # missing then: mme extract makes it
    assert "mme extract failed" not in said and "makes the track cache files these videos lack" in said, said
    shutil.copy2(listed[4], fixed)  # repaired since, its good copy's old mtime kept (cp -p, rsync -a): made now
    said = refusal([*listed[:3], fixed])  # before: "... that mme extract failed, and fails again (the first: ..."
    assert "mme extract failed" not in said and "makes the track cache files these videos lack" in said, said
    os.utime(bad, ns=(report.stat().st_mtime_ns + 10**9,) * 2)  # changed since: mme extract tries it again
    said = refusal([*listed[:3], bad])
    assert "mme extract failed" not in said and "makes the track cache files these videos lack" in said, said


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_lacking_the_files_of_missing_videos_advises_leaving_them_out_not_mme_extract(synth, tmp_path):
    """A list of which more videos are missing than data.max_failure_fraction lets the run skip (a download that
    missed some): the run's refusal of the cache lacking their files advised the mme extract that makes them, which
    failed them again as missing, and the run gave the same advice again, forever. The refusal names them as missing
    and gives the advice of a run without a cache (data.root, or leave them out: mme check names them, mme lists
    --skip-missing rebuilds the list); mme extract only for the videos it can make; the list without them starts the
    run."""
    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    root = lists["data.root"]
    listed = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()]
    (tmp_path / "made.txt").write_text("".join(f"{p}\n" for p in [*listed[:3], "gone.mp4"]))
    cache = tmp_path / "cache"
    made = extract_cache(str(tmp_path / "made.txt"), str(cache), root=root, length=6, short_side=64, seed_stride=4)
    assert list(made["failed"]) == [f"{root}/gone.mp4"] and "missing" in made["failed"][f"{root}/gone.mp4"]

    def refusal(videos: list[str]) -> str | None:
        return _cache_refusal(tmp_path, cache, videos, f"data.root={root}")

    gone = (f"target.cache_dir '{cache}' lacks the track cache files of 1 of the 4 videos of {tmp_path / 'run.txt'} "
            f"that mme extract cannot make: 1 is missing ({root}/gone.mp4), more than data.max_failure_fraction=0.01 "
            f"of them: is data.root ({root}) the folder its relative paths start from? If so, these videos are gone: "
            f"leave them out of the list (`mme check {tmp_path / 'run.txt'} --root {root}` names each, as missing, in "
            f"its report; a list of `mme lists` is built again without them by `mme lists KIND SOURCE --root {root} "
            "--skip-missing`), or raise data.max_failure_fraction")
    assert refusal([*listed[:3], "gone.mp4"]) == gone  # before: "...; `mme extract ...` makes the track cache files"
    said = refusal([*listed[:2], "gone.mp4", listed[3]])  # and a video never extracted: mme extract makes its file
    # (the run may skip none: one of the two videos without a file is looked up, the first)
    assert said is not None and said.startswith(gone.split(" (")[0].replace(" 1 ", " at least 1 ")), said
    assert said.endswith(f"; it lacks the files of 1 more too (1 of their videos not looked up): `mme extract "
                         f"{tmp_path / 'run.txt'} --root {root} --out "
                         f"{cache} --length 6 --short-side 64 --seed-stride 4 --flow dis-balanced --orientation coded "
                         f"--backend pyav` makes the track cache files these videos lack with the settings of the "
                         f"cache's {cache}/{listed[0]}.tracks, and resumes"), said
    assert refusal(listed[:3]) is None  # the list without it: the run starts


@pytest.mark.pinned  # no run: the track cache's start check alone
def test_a_track_cache_lacking_the_files_of_videos_this_user_may_not_reach_says_so_not_missing(tmp_path):
    """Videos in a folder this user may not enter (a teammate's of mode 0700), whose track cache files the cache
    lacks: the refusal called them missing (``os.path.exists`` answers False there) and advised mme check, which names
    them unreadable, and --skip-missing, which keeps them. They are said as unreadable, the folder named; and a video
    of the list whose cache file mme extract made is not taken for missing where it is only out of reach. The
    videos not looked up, in that folder too, are not advised the mme extract that makes their files: it cannot
    read them either (as where they are missing)."""
    from types import SimpleNamespace

    from os_fakes import unenterable

    from mme.train import pretrain

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in "abcd":
        (theirs / f"{name}.mp4").write_bytes(b"x")
    (tmp_path / "cache").mkdir()
    with unenterable(theirs):
        said = _cache_refusal(tmp_path, tmp_path / "cache", [f"theirs/{name}.mp4" for name in "abcd"],
                              f"data.root={tmp_path}")
        held = pretrain._held_missing(SimpleNamespace(cache_lookup=SimpleNamespace(files=[None, "a.tracks"]),
                                                      path=lambda i: str(theirs / "a.mp4")))
    assert said == (
        f"target.cache_dir '{tmp_path / 'cache'}' lacks the track cache files of at least 1 of the 4 videos of "
        f"{tmp_path / 'run.txt'} that mme extract cannot make: at least 1 cannot be read (the first: "
        f"{theirs / 'a.mp4'}: Permission denied: this user may not enter {theirs}), more than "
        "data.max_failure_fraction=0.01 of them: let this user read those it cannot, or leave them out of the list, "
        "or raise data.max_failure_fraction")
    assert held is None


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refusal_of_missing_videos_in_a_track_cache_keeps_the_failed_ones_advice_and_looks_up_a_bounded_few(
        synth, tmp_path, monkeypatch):
    """The cached run's refusal of videos mme extract cannot make: the advice of missing videos (data.root; 'these
    videos are gone') is given where they are most of them (as a run without a cache), with that for the ones mme
    extract failed, not for one missing among four mme extract failed, which are on disk. Of the videos without a cache
    file, as many as the run may skip and one more are looked up on disk, spread over them ('at least N'), not one
    stat each. A video with a cache file missing too says the paths lead elsewhere (a wrong data.root), not that the
    videos are gone."""
    from mme.motion.extract import extract_cache
    from mme.train import pretrain

    lists = dict(s.split("=", 1) for s in synth)
    listed = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()][:5]
    root = tmp_path / "root"
    for video in listed:
        (root / video).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f"{lists['data.root']}/{video}", root / video)
    bad = [f"bad{k}.mp4" for k in range(4)]
    for k, video in enumerate(bad):
        (root / video).write_bytes(np.random.default_rng(k).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "made.txt").write_text("".join(f"{p}\n" for p in [*listed[:4], *bad, "gone.mp4"]))
    cache = tmp_path / "cache"
    made = extract_cache(str(tmp_path / "made.txt"), str(cache), root=str(root), length=6, short_side=64,
                         seed_stride=4)
    assert len(made["failed"]) == 5
    report = next(cache.glob("failed-*.json"))

    def refusal(videos: list[str], fraction: float = 0.01, at: Path = root) -> str | None:
        return _cache_refusal(tmp_path, cache, videos, f"data.root={at}", f"data.max_failure_fraction={fraction}")

    failed = (f"mme extract failed, and fails again (the first: {root}/bad0.mp4: unreadable ([Errno 1094995529] "
              f"Invalid data found when processing input: '{root}/bad0.mp4'); each in {report})")
    run = tmp_path / "run.txt"
    assert refusal([*listed[:4], *bad, "gone.mp4"], 0.1) == (  # (not "is data.root ... these videos are gone")
        f"target.cache_dir '{cache}' lacks the track cache files of 5 of the 9 videos of {run} that mme extract cannot "
        f"make: 1 is missing ({root}/gone.mp4), 4 {failed}, more than data.max_failure_fraction=0.1 of them: leave "
        "them out of the list, or raise data.max_failure_fraction")
    gone = [f"gone{k}.mp4" for k in range(3)]  # most of them missing: their advice, then the failed one's
    assert refusal([*listed[:4], bad[0], *gone], 0.25) == (
        f"target.cache_dir '{cache}' lacks the track cache files of 4 of the 8 videos of {run} that mme extract cannot "
        f"make: 3 are missing ({', '.join(f'{root}/{g}' for g in gone)}), 1 {failed}, more than "
        f"data.max_failure_fraction=0.25 of them: is data.root ({root}) the folder its relative paths start from? If "
        f"so, these videos are gone: leave them out of the list (`mme check {run} --root {root}` names each, as "
        f"missing, in its report; a list of `mme lists` is built again without them by `mme lists KIND SOURCE --root "
        f"{root} --skip-missing`), or raise data.max_failure_fraction; those mme extract failed: leave them out of the "
        "list, or raise data.max_failure_fraction")

    real_why_absent_each, looked = pretrain.why_absent_each, []
    monkeypatch.setattr(pretrain, "why_absent_each", lambda paths: looked.extend(paths.values()) or
                        real_why_absent_each(paths))
    many = [f"gone{k:02d}.mp4" for k in range(40)]
    said = refusal([*listed[:4], *many], 0.1)  # 44 videos: the run may skip 4, so 5 are looked up
    assert said is not None and said.startswith(
        f"target.cache_dir '{cache}' lacks the track cache files of at least 5 of the 44 videos of {run} that mme "
        f"extract cannot make: at least 5 are missing ({root}/gone00.mp4, {root}/gone10.mp4, {root}/gone20.mp4 ...), "
        f"more than data.max_failure_fraction=0.1 of them: is data.root ({root}) the folder"), said
    assert "it lacks the files of 35 more too (35 of their videos not looked up): `mme extract" in said, said
    assert sorted(p for p in looked if "gone" in str(p)) == [f"{root}/gone{k:02d}.mp4" for k in (0, 10, 20, 29, 39)]
    monkeypatch.undo()

    elsewhere = tmp_path / "elsewhere"  # the cache holds 4 of the 5 files; every video is missing under this root
    assert refusal(listed, at=elsewhere).endswith(
        f"more than data.max_failure_fraction=0.01 of them: {elsewhere}/{listed[0]}, whose track cache file mme "
        f"extract made, is missing too: is data.root ({elsewhere}) the folder its relative paths start from?")


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refusal_of_videos_mme_extract_failed_counts_files_a_partial_listing_missed_as_unknown(synth, tmp_path,
                                                                                                 monkeypatch):
    """Where folders of the cache could not be listed (mode 0711 of another owner: simulated, root lists any), the
    videos its listing missed past those looked up on disk were counted as lacking their files: 'it lacks the files of
    3 more' of 3 videos whose files are there, and a video mme extract failed whose file is there now was refused as
    failed again. Those are looked up (the failed) or said as the cache's other refusal says them (the others)."""
    import errno
    import os
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = [f"{lists['data.root']}/{line.split()[0]}" for line in open(lists["data.list_file"]).read().splitlines()]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in [*listed[:3], str(bad)]))
    cache = tmp_path / "cache"
    extract_cache(str(tmp_path / "list.txt"), str(cache), length=6, short_side=64, seed_stride=4)
    real = os.scandir

    def scandir(path="."):  # every folder below the cache's top, where its reports are
        if os.fspath(path).startswith(str(cache) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    def refusal(videos: list[str]) -> str:
        (tmp_path / "run.txt").write_text("".join(f"{p}\n" for p in videos))
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'run.txt'}", "data.root="], tmp_path / "run",
                          f"target.cache_dir={cache}")
        with monkeypatch.context() as m, pytest.raises(DataError) as refused:
            m.setattr(os, "scandir", scandir)
            check_cache(cfg, pretrain_dataset(cfg))
        return str(refused.value)

    said = refusal([str(bad), *listed[:3]])  # before: "; it lacks the files of 3 more, never extracted: `mme extract"
    assert " that mme extract failed, and fails again (the first: " in said and said.endswith(
        "data.max_failure_fraction; its listing lacks those of 3 more (not looked up one by one; some of its folders "
        "could not be listed, and they may be there): `mme extract " + said.split(": `mme extract ", 1)[1]), said
    cache_file(cache, str(bad)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cache_file(cache, listed[0]), cache_file(cache, str(bad)))  # bad.mp4 has its file now
    said = refusal([listed[3], str(bad)])  # before: refused as failed again, which it is not: it has its file
    assert "mme extract failed" not in said and said.startswith(
        f"target.cache_dir '{cache}' lacks the track cache files of 1 of the 2 videos of {tmp_path / 'run.txt'} (the "
        f"first: {listed[3]}), and its listing lacks those of 1 more"), said


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_made_by_an_earlier_mme_is_refused_before_any_work_naming_why(synth, tmp_path, caplog):
    """A cache whose files an earlier mme made (mme.motion.cache.stale: here of tracker revision 1) started the run
    with a warning that its flow is used, and stopped it at the first batch as "1 of 6 videos failed ({'track
    cache': 1})" with advice to make the files "these videos lack", at the run's default flow. It is refused before
    any work, in one line counting the stale files (of a large cache: among those probed), saying why and that a
    resumed mme extract makes them again (the missing files' advice: here, of no file the run reads, at the run's
    settings); within data.max_failure_fraction the run starts."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file, read_cache, save_tracks, stale
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    first = open(lists["data.list_file"]).read().split()[0]
    (tmp_path / "one.txt").write_text(f"{first}\n")
    extract_cache(str(tmp_path / "one.txt"), str(tmp_path / "made"), root=lists["data.root"], length=6,
                  short_side=64, seed_stride=4, flow="dis")
    made = read_cache(cache_file(tmp_path / "made", first))
    old = tmp_path / "old.tracks"
    save_tracks(old, made.disp, made.valid, None, {**made.meta, "tracker": 1})
    why = stale(read_cache(old).meta)
    assert why.startswith("its tracks were made by tracker revision 1, this mme's is 3")

    def refusal(videos: int, stale_every: int, *extra: str) -> str | None:
        name = f"c{videos}_{stale_every}"
        (tmp_path / f"{name}.txt").write_text("".join(f"v/{i:03d}.mp4\n" for i in range(videos)))
        for i in range(videos):
            cache_file(tmp_path / name, f"v/{i:03d}.mp4").parent.mkdir(parents=True, exist_ok=True)
            made_by = old if i % stale_every == 0 else cache_file(tmp_path / "made", first)
            shutil.copy(made_by, cache_file(tmp_path / name, f"v/{i:03d}.mp4"))
        data = [f"data.list_file={tmp_path / name}.txt", f"data.root={tmp_path}", "data.max_failure_fraction=0.01"]
        cfg = tiny_config("tiny_cpu_mme", data, tmp_path / "run", f"target.cache_dir={tmp_path / name}", *extra)
        try:
            check_cache(cfg, pretrain_dataset(cfg))
        except DataError as e:
            return str(e)
        return None

    remake = "--length 6 --short-side 224 --seed-stride 28 --flow dis-balanced --orientation coded --backend pyav"
    with caplog.at_level(logging.WARNING, logger="mme"):
        said = refusal(20, 1)  # every file stale; the run's target.flow (the default) is not the cache's
    assert said == (f"target.cache_dir '{tmp_path / 'c20_1'}': 20 of its 20 track cache files of the videos of "
                    f"{tmp_path / 'c20_1'}.txt were made by an earlier mme, which each read fails as its video's "
                    f"failure (the first, {cache_file(tmp_path / 'c20_1', 'v/000.mp4')}: {why}); a resumed mme "
                    f"extract makes them again: `mme extract {tmp_path / 'c20_1'}.txt --root {tmp_path} --out "
                    f"{tmp_path / 'c20_1'} {remake}` makes the track cache files these videos lack, and resumes")
    assert "is not used" not in caplog.text  # (the flow warning: of a cache about to be refused)
    assert refusal(200, 2).startswith(  # half stale, of more files than are probed: counted on every header
        f"target.cache_dir '{tmp_path / 'c200_2'}': 100 of its 200 track cache files of the videos of "
        f"{tmp_path / 'c200_2'}.txt were made by an earlier mme, more than data.max_failure_fraction=0.01 of the list, "
        f"which each read fails as its video's failure (the first, {cache_file(tmp_path / 'c200_2', 'v/000.mp4')}: "
        f"{why}); a resumed mme extract makes them again: `mme extract")
    assert refusal(20, 20, "data.max_failure_fraction=0.05") is None  # one of 20 stale: the run may skip it
    # one stale among the probes of 200 (1.5 % of them: over the fraction, as a share of the whole), 1 of 200 in all
    assert refusal(200, 1000, "data.max_failure_fraction=0.01") is None


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_start_check_opens_each_probed_video_once_where_the_caches_orientation_is_not_the_runs(synth, tmp_path,
                                                                                                 monkeypatch):
    """A cache extracted with --orientation coded, read by a run of data.orientation=display (videos without a
    display matrix: both turn them alike), half its files made by an earlier mme: the start check opens each probed
    video of a current file to judge its orientation, then refuses the stale files with advice that judged each
    again, opening it a second time. Each is opened once, and the refusal is as it was."""
    from training import tiny_config

    from mme.motion.cache import cache_file, read_cache, save_tracks
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:4]]
    (tmp_path / "four.txt").write_text("".join(f"{video}\n" for video in videos))
    extract_cache(str(tmp_path / "four.txt"), str(tmp_path / "cache"), root=lists["data.root"], length=6,
                  short_side=64)
    for video in videos[::2]:
        made = read_cache(cache_file(tmp_path / "cache", video))
        save_tracks(cache_file(tmp_path / "cache", video), made.disp, made.valid, None, {**made.meta, "tracker": 1})
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'four.txt'}", f"data.root={lists['data.root']}",
                                       "data.orientation=display", "data.max_failure_fraction=0.01"],
                      tmp_path / "run", f"target.cache_dir={tmp_path / 'cache'}")
    dataset = pretrain_dataset(cfg)
    opened = []
    real_open = dataset.open
    monkeypatch.setattr(dataset, "open", lambda path: opened.append(path) or real_open(path))
    with pytest.raises(DataError, match=r"2 of its 4 track cache files .* were made by an earlier mme.*`mme extract "
                                        r".*--orientation coded --backend pyav` makes the track cache files these "
                                        r"videos lack with the settings of the cache's"):
        check_cache(cfg, dataset)
    current = [dataset.path(i) for i in (1, 3)]
    assert opened == current  # before: each twice, the second time for the advice


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_track_cache_of_unreadable_files_is_refused_before_any_work_as_stale_ones_are(synth, tmp_path):
    """A cache none of whose probed files could be read (damaged) was not judged: the run made its folder, model and
    loader workers, and stopped at its first batch over data.max_failure_fraction. Unreadable files are counted with
    those an earlier mme made, as each read fails both before their settings count (of a large cache: among those
    probed, then on every file's header), and refused past the fraction before any work, with the mme extract that
    resumes the cache, making them again."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file, read_cache, save_tracks
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:4]]
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in videos))
    data = [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"]
    made = tmp_path / "made"
    extract_cache(str(tmp_path / "list.txt"), str(made), root=lists["data.root"], length=6, short_side=64)
    damaged = tmp_path / "damaged"
    shutil.copytree(made, damaged)
    for video in videos:
        cache_file(damaged, video).write_bytes(b"damaged")
    listed = f"{tmp_path / 'list.txt'} --root {lists['data.root']}"
    with pytest.raises(DataError) as refused:  # before: the run started, and stopped at its first batch
        run("tiny_cpu_mme", data, tmp_path / "run", f"target.cache_dir={damaged}", FP32)
    assert str(refused.value) == (
        f"target.cache_dir '{damaged}': 4 of its 4 track cache files of the videos of {tmp_path / 'list.txt'} are "
        f"unreadable, which each read fails as its video's failure (the first, {cache_file(damaged, videos[0])}: "
        f"unreadable (unknown file type)); a resumed mme extract makes them again: `mme extract {listed} --out "
        f"{damaged} --length 6 --short-side 224 --seed-stride 28 --flow dis-balanced --orientation coded --backend "
        "pyav` makes the track cache files these videos lack, and resumes")
    assert not (tmp_path / "run" / "config.yaml").exists()
    # one unreadable and one stale of 4, past a fraction of a quarter (before: passed, each alone within it)
    mixed = tmp_path / "mixed"
    shutil.copytree(made, mixed)
    cache_file(mixed, videos[0]).write_bytes(b"damaged")
    current = read_cache(cache_file(made, videos[1]))
    save_tracks(cache_file(mixed, videos[1]), current.disp, current.valid, None, {**current.meta, "tracker": 1})
    cfg = tiny_config("tiny_cpu_mme", data, tmp_path / "run", f"target.cache_dir={mixed}",
                      "data.max_failure_fraction=0.25")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    assert str(refused.value).startswith(
        f"target.cache_dir '{mixed}': 2 of its 4 track cache files of the videos of {tmp_path / 'list.txt'} are "
        "unreadable (1) or were made by an earlier mme (1), more than data.max_failure_fraction=0.25 of the list, "
        f"which each read fails as its video's failure (the first, {cache_file(mixed, videos[0])}: unreadable "
        f"(unknown file type)); a resumed mme extract makes them again: `mme extract {listed} --out {mixed} --length 6 "
        f"--short-side 64 --seed-stride 8 --flow dis-balanced --orientation coded --backend pyav` makes the track "
        f"cache files these videos lack with the settings of the cache's {cache_file(mixed, videos[2])}, and resumes")
    # a large cache, every other file damaged: counted among the probed files, then on every file's header
    (tmp_path / "many.txt").write_text("".join(f"v/{i:03d}.mp4\n" for i in range(200)))
    for i in range(200):
        cache_file(tmp_path / "many", f"v/{i:03d}.mp4").parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache_file(made, videos[0]), cache_file(tmp_path / "many", f"v/{i:03d}.mp4"))
        if i % 2:
            cache_file(tmp_path / "many", f"v/{i:03d}.mp4").write_bytes(b"damaged")
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'many.txt'}", f"data.root={tmp_path}"],
                      tmp_path / "run", f"target.cache_dir={tmp_path / 'many'}", "data.max_failure_fraction=0.4")
    with pytest.raises(DataError, match=r"^target.cache_dir '.*many': 100 of its 200 track cache files of the videos "
                                        r"of .*many.txt are unreadable, more than data.max_failure_fraction=0.4 of "
                                        r"the list, which each"):
        check_cache(cfg, pretrain_dataset(cfg))
    cfg.data.max_failure_fraction = 0.5  # as many as the run may skip: it starts
    check_cache(cfg, pretrain_dataset(cfg))


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_track_cache_of_videos_re_encoded_in_place_is_refused_before_another_runs_folder_is_cleared(tmp_path):
    """Videos re-encoded in place since their cache was extracted (same names, frame size and count, other content)
    passed the start check, which judged only the tracker's revision of the probed files: a run with
    train.overwrite=true removed another run's checkpoints, then stopped at its first batch ({'track cache': 1}). The
    start check counts such files with the unreadable and stale ones, and refuses the run before any work; a copied
    dataset (the videos' mtimes changed, their content the same) passes it and trains on the cache."""
    import shutil

    from training import tiny_config
    from videos import affine_video, write_video

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    def encode(seed: int) -> None:
        for i in range(2):
            frames = affine_video(20, 64, 80, dx=1.0 + seed + i, dy=0.5, seed=10 * seed + i)[0]
            write_video(tmp_path / f"v{i}.mp4", frames)

    encode(0)
    (tmp_path / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(tmp_path), length=6, short_side=64)
    data = [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}", "train.batch_size=2"]
    cached = [f"target.cache_dir={tmp_path / 'cache'}", "train.overwrite=true"]
    for i in range(2):  # a copied dataset: the videos' mtimes changed, their content the same
        shutil.copy(tmp_path / f"v{i}.mp4", tmp_path / "copy.mp4")
        os.replace(tmp_path / "copy.mp4", tmp_path / f"v{i}.mp4")
    cfg = tiny_config("tiny_cpu_mme", data, tmp_path / "copied", cached[0], "train.steps=1", FP32)
    dataset = pretrain_dataset(cfg)
    assert dataset.refused_probes == [] and len(dataset.current_probes) == 2
    check_cache(cfg, dataset)  # passes: the files are of these videos
    assert run("tiny_cpu_mme", data, tmp_path / "copied", cached[0], "train.steps=1", FP32).step == 1
    run("tiny_cpu_mme", data, tmp_path / "run", "train.steps=1", FP32)
    kept = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("checkpoint-*.pt")}
    assert kept
    encode(3)  # re-encoded in place
    with pytest.raises(DataError) as refused:
        run("tiny_cpu_mme", data, tmp_path / "run", "train.steps=1", *cached, FP32)
    assert str(refused.value).startswith(
        f"target.cache_dir '{tmp_path / 'cache'}': 2 of its 2 track cache files of the videos of "
        f"{tmp_path / 'list.txt'} were made from another version of their video, which each read fails as its video's "
        f"failure (the first, {cache_file(tmp_path / 'cache', 'v0.mp4')}: made from another version of "
        f"{tmp_path / 'v0.mp4'} (its content changed since)); a resumed mme extract makes them again: `mme extract")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").glob("checkpoint-*.pt")} == kept  # before: removed
    made = extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(tmp_path), length=6,
                         short_side=64)
    assert made["done"] == 2  # as the refusal says: made again
    assert run("tiny_cpu_mme", data, tmp_path / "run", "train.steps=1", *cached, FP32).step == 1


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refused_files_of_a_list_that_repeats_videos_are_counted_per_entry_as_the_dataset_counts(synth,
                                                                                                      tmp_path):
    """A damaged file of a video listed 40 times of 100 entries was counted once per probe that met it (26 of the
    64), its share estimated over the 6 distinct files: the start check passed a fraction of 0.3 and the run stopped
    at its first steps, over the fraction. Refused files are counted per entry of the list, as the dataset counts
    its failures (each file read once): refused past 0.3, passed at 0.4."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    first = open(lists["data.list_file"]).read().split()[0]
    (tmp_path / "one.txt").write_text(f"{first}\n")
    extract_cache(str(tmp_path / "one.txt"), str(tmp_path / "made"), root=lists["data.root"], length=6,
                  short_side=64)
    entries = [0] * 40 + [1 + k % 5 for k in range(60)]
    (tmp_path / "list.txt").write_text("".join(f"v/{i:03d}.mp4\n" for i in entries))
    for i in range(6):
        cache_file(tmp_path / "cache", f"v/{i:03d}.mp4").parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache_file(tmp_path / "made", first), cache_file(tmp_path / "cache", f"v/{i:03d}.mp4"))
    damaged = cache_file(tmp_path / "cache", "v/000.mp4")
    damaged.write_bytes(b"damaged")
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}",
                                       "data.max_failure_fraction=0.3"], tmp_path / "run",
                      f"target.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(DataError) as refused:  # before: passed (26 of the probes counted)
        check_cache(cfg, pretrain_dataset(cfg))
    assert str(refused.value).startswith(
        f"target.cache_dir '{tmp_path / 'cache'}': 40 of its 100 track cache files of the videos of "
        f"{tmp_path / 'list.txt'} (entries of the list: 6 files, some listed more than once) are unreadable, more than "
        f"data.max_failure_fraction=0.3 of the list, which each read fails as its video's failure (the first, "
        f"{damaged}: unreadable (unknown file type)); a resumed mme extract makes them again: `mme extract")
    cfg.data.max_failure_fraction = 0.4  # as many as the run may skip: it starts
    check_cache(cfg, pretrain_dataset(cfg))


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_list_is_looked_up_in_a_track_cache_as_each_read_finds_its_files(synth, tmp_path, monkeypatch):
    """The whole list was judged on one walk of target.cache_dir, taken as the whole truth: a shared cache whose
    folders can be entered but not listed (mode 0711, another owner's; the walk passed them over without a word) was
    refused, though each read finds its files by path; a cache of links to a volume not mounted passed (the walk
    listed the links as files), the run then stopping at its first batch after making its run folder; a link back up
    the folder (latest -> .) made the start hang. The listing now serves hits alone: a hit is a file (a link only
    where it leads to one), a folder met again is walked once, and a video it misses is looked up on disk."""
    import errno
    import os
    import shutil
    import threading

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    first = open(lists["data.list_file"]).read().split()[0]
    (tmp_path / "one.txt").write_text(f"{first}\n")
    extract_cache(str(tmp_path / "one.txt"), str(tmp_path / "made"), root=lists["data.root"], length=6,
                  short_side=64)
    videos = [f"v/a/{i:02d}.mp4" for i in range(20)]
    (tmp_path / "list.txt").write_text("".join(f"{v}\n" for v in videos))
    for name in ("shared", "loop"):
        for v in videos:
            cache_file(tmp_path / name, v).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cache_file(tmp_path / "made", first), cache_file(tmp_path / name, v))
    for v in videos:  # links to where a volume is not mounted
        cache_file(tmp_path / "unmounted", v).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(tmp_path / "not-mounted" / v, cache_file(tmp_path / "unmounted", v))
    for link in ("latest", "current"):
        os.symlink(".", tmp_path / "loop" / link)

    def dataset(name: str):
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}"],
                          tmp_path / "run", f"target.cache_dir={tmp_path / name}")
        return cfg, pretrain_dataset(cfg)

    def unlistable(real):  # mode 0711 of another owner (root lists any folder: simulated)
        def scandir(path="."):
            if os.fspath(path).startswith(str(tmp_path / "shared" / "v")):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real(path)
        return scandir

    with monkeypatch.context() as m:
        m.setattr(os, "scandir", unlistable(os.scandir))
        cfg, data = dataset("shared")
        check_cache(cfg, data)  # before: refused, holding no file for any video
        assert data.cache_lookup.files == [str(cache_file(tmp_path / "shared", v)) for v in videos]
    _on_disk(tmp_path, videos)
    cfg, data = dataset("unmounted")
    with pytest.raises(DataError, match=rf"^target.cache_dir '{tmp_path / 'unmounted'}' holds no track cache file for "
                                        rf"any of the 20 videos of .*list.txt \(the first: {tmp_path}/v/a/00.mp4\);"):
        check_cache(cfg, data)  # before: passed, the run stopping at its first batch
    cfg, data = dataset("loop")
    checked = threading.Thread(target=check_cache, args=(cfg, data), daemon=True)
    checked.start()
    checked.join(timeout=10)
    assert not checked.is_alive()  # before: a walk through latest/current/latest/... without end
    assert data.cache_lookup.files == [str(cache_file(tmp_path / "loop", v)) for v in videos]


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refusal_of_a_track_cache_says_where_its_listing_could_not_list_folders(tmp_path, monkeypatch):
    """A cache lacking more files than the run may skip is refused, naming how many more its listing misses, not
    looked up one by one; where folders of it could not be listed (a shared cache's, mode 0711, another owner's),
    those files may be there, which the refusal did not say. Now it does, and only then."""
    import errno
    import os

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.train.pretrain import check_cache, pretrain_dataset

    videos = [f"v/a/{i:02d}.mp4" for i in range(20)]
    (tmp_path / "list.txt").write_text("".join(f"{v}\n" for v in videos))
    for v in videos[:2]:
        cache_file(tmp_path / "cache", v).parent.mkdir(parents=True, exist_ok=True)
        cache_file(tmp_path / "cache", v).write_bytes(b"")
    _on_disk(tmp_path, videos[2:])
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}"],
                      tmp_path / "run", f"target.cache_dir={tmp_path / 'cache'}")
    real = os.scandir

    def scandir(path="."):  # mode 0711 of another owner (root lists any folder: simulated)
        if os.fspath(path).startswith(str(tmp_path / "cache" / "v")):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    said = (f"target.cache_dir '{tmp_path / 'cache'}' lacks the track cache files of 1 of the 20 videos of "
            f"{tmp_path / 'list.txt'} (the first: {tmp_path}/v/a/02.mp4), and its listing lacks those of 17 more (not "
            "looked up one by one{})")
    for unlisted, why in ((True, "; some of its folders could not be listed, and they may be there"), (False, "")):
        with monkeypatch.context() as m:
            if unlisted:
                m.setattr(os, "scandir", scandir)
            with pytest.raises(DataError) as refused:
                check_cache(cfg, pretrain_dataset(cfg))
        assert str(refused.value).startswith(said.format(why) + ", more than data.max_failure_fraction=0.01"), \
            str(refused.value)


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_resumed_run_of_a_target_without_tracks_is_not_refused_for_the_cache_it_does_not_read(synth, tmp_path):
    """A pixel run resumed from the folder of an earlier version that took a target.cache_dir (its checkpoint's
    config holds it) resumes without it, warned; the cache's whole-list check ran before the check that the target
    reads no tracks, and refused the run for a cache it never reads (here an empty folder)."""
    from mme.train import checkpoint as ckpt

    (tmp_path / "cache").mkdir()
    base = ("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=2", "optim.warmup_steps=1", FP32)
    run(*base, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
    state["config"]["target"]["cache_dir"] = str(tmp_path / "cache")  # as such a version wrote it
    ckpt.save_checkpoint(state, tmp_path / "run", keep_last=0)
    res = run(*base, "train.resume=auto", f"target.cache_dir={tmp_path / 'cache'}")  # before: DataError, no file
    assert res.step == 2


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refusal_of_a_track_cache_lacking_files_counts_the_lists_bad_lines_as_the_fraction_does(synth, tmp_path):
    """The failure fraction counts the list's bad lines with the videos that lack a cache file; the refusal said
    '1 of the 8 videos ..., more than data.max_failure_fraction=0.2' where 2 of the list's 9 lines fail. It names
    both; without bad lines, as before."""
    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.train.pretrain import check_cache, pretrain_dataset

    videos = [f"v/a/{i}.mp4" for i in range(8)]
    for v in videos[1:]:  # (the files' content is not read by the check of which are there)
        cache_file(tmp_path / "cache", v).parent.mkdir(parents=True, exist_ok=True)
        cache_file(tmp_path / "cache", v).write_bytes(b"")
    _on_disk(tmp_path, videos[:1])
    for name, bad in (("bad", ["v/a/x.mp4 notanumber extra\n"]), ("good", [])):
        (tmp_path / f"{name}.txt").write_text("".join(f"{v} 0\n" for v in videos) + "".join(bad))
        fraction = 0.2 if bad else 0.1
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / name}.txt", f"data.root={tmp_path}"],
                          tmp_path / "run", f"target.cache_dir={tmp_path / 'cache'}",
                          f"data.max_failure_fraction={fraction}")
        counted = ", which with its 1 bad line are 2 of its 9 lines" if bad else ""
        with pytest.raises(DataError) as refused:
            check_cache(cfg, pretrain_dataset(cfg))
        assert str(refused.value).startswith(
            f"target.cache_dir '{tmp_path / 'cache'}' lacks the track cache files of 1 of the 8 videos of "
            f"{tmp_path / name}.txt (the first: {tmp_path}/v/a/0.mp4){counted}, more than "
            f"data.max_failure_fraction={fraction} of them; `mme extract "), str(refused.value)


def test_a_run_on_a_track_cache_says_which_flow_and_decoder_made_its_tracks(synth, tmp_path, caplog):
    """target.flow does not apply to cached tracks: a run whose cache was extracted with another flow says so; and
    one whose cache was extracted with a decoder that can read other frames (before: no word of it)."""
    from mme.motion.extract import extract_cache

    lists = dict(s.split("=", 1) for s in synth)
    extract_cache(lists["data.list_file"], str(tmp_path / "cache"), root=lists["data.root"], length=6,
                  short_side=64, flow="dis", backend="opencv")
    for flow, backend, warned in (("dis-balanced", "pyav", True), ("dis", "opencv", False)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            run("tiny_cpu_mme", synth, tmp_path / flow, f"target.cache_dir={tmp_path / 'cache'}",
                f"target.flow={flow}", f"data.backend={backend}", "train.steps=1")
        said = [r.getMessage() for r in caplog.records if "track cache" in r.getMessage()]
        assert len(said) == 2 * warned, said
        if warned:
            assert "extracted with flow dis;" in said[0] and "target.flow=dis-balanced is not used" in said[0]
            assert "extracted with --backend opencv, this run decodes with data.backend=pyav" in said[1]
            assert said[1].endswith("extract again with --length 6 --short-side 64 --seed-stride 8 --flow "
                                    "dis-balanced --orientation coded --backend pyav --overwrite, or set "
                                    "data.backend=opencv"), said[1]


def test_a_track_cache_made_with_settings_the_run_cannot_read_is_refused_before_any_work(synth, tmp_path):
    """A cache of shorter tracks, a lower displacement bound, another compensation, or a phone video's frames turned
    otherwise than the run's data.orientation was refused by the first batch's read, after the run's config.yaml,
    run.json and logs, the model and the loader workers were made. The first cache file's header is checked
    before any of them (each read still checks its own); a video without a display matrix serves either
    orientation. The bound is judged in the run's px: --max-disp 5 at --short-side 128 bounds the run's 64 px clips
    at 2.5 px, below target.max_disp=5 (before: taken as 5, and read without a word)."""
    import re

    from training import tiny_config
    from videos import affine_video, write_video

    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    data = [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"]
    phone = tmp_path / "phone"
    phone.mkdir()
    frames = affine_video(12, 48, 64, dx=1.5, seed=6)[0]
    write_video(phone / "phone.mp4", frames, display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    write_video(phone / "plain.mp4", frames)
    for name in ("phone", "plain"):
        (phone / f"{name}.txt").write_text(f"{name}.mp4\n")

    def remake(cache: str, flags: str) -> str:  # the whole command, at the cache's --short-side and --seed-stride
        return re.escape(f"`mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {tmp_path / cache} "
                         f"--length 6 {flags} --orientation coded --backend pyav --overwrite`")

    cases = [("length", dict(length=4), data, [], r"target\.track_length=6 but the track cache .*\.tracks holds only 4 "
                                                  r"steps; extract again with " + remake("length", "--short-side 64 "
                                                                                         "--seed-stride 8 --flow "
                                                                                         "dis-balanced") + "$"),
             ("bound", dict(max_disp=1.0), data, [], r"holds displacements bounded at 1 px per frame in its 64 px "
                                                     r"working frames \(mme extract --max-disp\), 1 px in this run's "
                                                     r"64 px clips of a frame's whole short side, below this run's "
                                                     r"default bound 5\.71429 \(target\.max_disp unset: the release's, "
                                                     r"scaled to its clips\); extract again with "
                                                     + remake("bound", "--short-side 64 --seed-stride 8 --flow "
                                                              "dis-balanced") + r", or set target\.max_disp=1$"),
             ("bound_in_run_px", dict(short_side=128, max_disp=5.0), data, ["target.max_disp=5"],
              r"bounded at 5 px per frame in its 128 px working frames \(mme extract --max-disp\), 2\.5 px in this "
              r"run's 64 px clips of a frame's whole short side, below this run's 5 \(target\.max_disp\); extract "
              r"again with " + remake("bound_in_run_px", "--short-side 128 --seed-stride 8 --flow dis-balanced "
                                                         "--max-disp 10") + r", or set target\.max_disp=2\.5$"),
             ("compensate", dict(compensate=True), data, [], r"^target\.compensate=False but the track cache "
                                                             r".*\.tracks was extracted with compensate=True; extract "
                                                             r"again with " + remake("compensate", "--short-side 64 "
                                                                                     "--seed-stride 8 --flow "
                                                                                     "dis-balanced") + "$"),
             ("phone", {}, [f"data.list_file={phone / 'phone.txt'}", f"data.root={phone}"],
              ["data.orientation=display"], r"phone\.mp4\.tracks was extracted with --orientation coded, which read "
                                            r"this video's frames as coded, where this run's data\.orientation reads "
                                            r"them as displayed \(its display matrix turns its frames 90 degrees "
                                            r"counterclockwise\); extract again with")]
    for name, extracted, run_data, more, refused in cases:
        list_file = dict(s.split("=", 1) for s in run_data)["data.list_file"]
        extract_cache(list_file, str(tmp_path / name), root=run_data[1].split("=", 1)[1],
                      **{"length": 6, "short_side": 64, **extracted})
        with pytest.raises(ConfigError, match=refused):
            run("tiny_cpu_mme", run_data, tmp_path / f"run_{name}", f"target.cache_dir={tmp_path / name}",
                "train.batch_size=1", *more)
        assert not (tmp_path / f"run_{name}" / "config.yaml").exists(), name
    pixel = tiny_config("tiny_cpu_pixel", data, tmp_path / "run_pixel")
    pixel.target.cache_dir = str(tmp_path / "bound")  # as a resumed run's config may hold it (refused to a fresh one)
    check_cache(pixel, pretrain_dataset(pixel))  # a target of no tracks reads none of the cache
    extract_cache(str(phone / "plain.txt"), str(tmp_path / "plain"), root=str(phone), length=6, short_side=64)
    r = run("tiny_cpu_mme", [f"data.list_file={phone / 'plain.txt'}", f"data.root={phone}"], tmp_path / "run_plain",
            f"target.cache_dir={tmp_path / 'plain'}", "data.orientation=display", "train.steps=1", "train.batch_size=1")
    assert r.step == 1


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_coarser_than_the_runs_targets_is_warned_about(synth, tmp_path, caplog):
    """A cache extracted at a smaller --short-side or a wider --seed-stride than the run's targets need was read
    without a word, its tracks read between its seeds (PatchStd trajectories off by > 0.5 on 27.7 % of the values
    against 14.9 % for a cache of the run's settings, docs/targets.md). The run says so before it starts, naming
    both; a cache at least as fine is not warned about (a larger --short-side with a wider --seed-stride is as fine)."""
    from training import tiny_config

    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    data = [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"]
    seeds = "its seeds lie 16 px apart in the run's 64 px clips (a crop of a frame's whole short side; further apart " \
            "in a smaller one), where target.seed_stride is 8"
    advice = "its targets are less fine than online ones. Extract again with --length 6 --short-side 64 " \
             "--seed-stride 8 --flow dis-balanced --orientation coded --backend pyav --overwrite, or unset " \
             "target.cache_dir"
    for short, stride, said in ((64, 8, None), (128, 16, None),
                                (32, 8, f"{seeds}; its flow read frames 32 px on their short side, the run's clips "
                                        f"are 64 px; {advice}"),
                                (64, 16, f"{seeds}; {advice}")):
        cache = tmp_path / f"cache_{short}_{stride}"
        extract_cache(str(tmp_path / "list.txt"), str(cache), root=lists["data.root"], length=6, short_side=short,
                      seed_stride=stride)
        cfg = tiny_config("tiny_cpu_mme", data, tmp_path / "run", f"target.cache_dir={cache}")
        caplog.clear()
        with caplog.at_level("WARNING"):
            check_cache(cfg, pretrain_dataset(cfg))
        warned = [r.getMessage() for r in caplog.records if "coarser" in r.getMessage()]
        assert warned == ([] if said is None else [f"the track cache {cache} is coarser than this run's targets: "
                                                   f"extracted at --short-side {short} --seed-stride {stride}: "
                                                   f"{said}"]), warned


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_of_settings_the_run_cannot_read_is_refused_though_its_first_file_is_unreadable(synth,
                                                                                                         tmp_path):
    """The check of a cache's settings read its first file again and, where that was unreadable (a damaged file:
    its video's failure), checked nothing: a cache of 2-step tracks under a run of 6 started, and stopped at its
    first batch once its folder, model and loader workers were made. The settings are judged on the first readable
    file this mme made of those probed (read once), as each read would judge them."""
    import re

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cache = tmp_path / "cache"
    extract_cache(str(tmp_path / "list.txt"), str(cache), root=lists["data.root"], length=2, short_side=64)
    cache_file(cache, listed[0].split()[0]).write_bytes(b"damaged")
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}",
                                       "data.max_failure_fraction=0.5"], tmp_path / "run", f"target.cache_dir={cache}",
                      "target.track_length=6")
    second = cache_file(cache, listed[1].split()[0])
    with pytest.raises(ConfigError, match=f"^target.track_length=6 but the track cache {re.escape(str(second))} holds "
                                          "only 2 steps"):
        check_cache(cfg, pretrain_dataset(cfg))  # before: passed


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_cache_of_settings_the_run_cannot_read_beside_files_to_make_again_is_advised_what_makes_it_read(synth,
                                                                                                        tmp_path):
    """A cache of 2-step tracks under a run of 6, beside a damaged file (or a missing one), was refused for the file
    to make again, advising a resumed extraction at the run's settings without --overwrite, which mme extract refused
    for the 2-step files ("made with other settings"): the run refused again, a loop. The 2-step file is judged
    first (the accurate line), and where files are missing the advice makes every file again (--overwrite, saying
    why); followed as given, the run reads the cache."""
    import re
    import shlex

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:2]]
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in videos))
    (tmp_path / "part.txt").write_text(f"{videos[1]}\n")
    for name, listed in (("damaged", "list.txt"), ("missing", "part.txt")):
        extract_cache(str(tmp_path / listed), str(tmp_path / name), root=lists["data.root"], length=2, short_side=64)
    cache_file(tmp_path / "damaged", videos[0]).write_bytes(b"damaged")
    made = cache_file(tmp_path / "damaged", videos[1])

    def check(cache: str):
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}",
                                           f"data.root={lists['data.root']}", "data.max_failure_fraction=0"],
                          tmp_path / "run", f"target.cache_dir={tmp_path / cache}", "target.track_length=6")
        check_cache(cfg, pretrain_dataset(cfg))

    with pytest.raises(ConfigError) as refused:  # before: DataError, 1 of its 2 files unreadable, and the loop
        check("damaged")
    assert str(refused.value) == (  # the cache made again at its --short-side
        f"target.track_length=6 but the track cache {made} holds only 2 steps; extract again with `mme extract "
        f"{tmp_path / 'list.txt'} --root {lists['data.root']} --out {tmp_path / 'damaged'} --length 6 --short-side 64 "
        "--seed-stride 8 --flow dis-balanced --orientation coded --backend pyav --overwrite`")
    with pytest.raises(DataError) as refused:
        check("missing")
    command = re.search(r"`(mme extract [^`]*)`", str(refused.value)).group(1)
    assert str(refused.value).endswith(
        f"more than data.max_failure_fraction=0.0 of them; the cache's files were made with settings this run cannot "
        f"read (target.track_length=6 but the track cache {cache_file(tmp_path / 'missing', videos[1])} holds only 2 "
        f"steps), and a resumed extraction refuses files of other settings; `{command}` makes every file again with "
        "this run's settings")
    assert command == (f"mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {tmp_path / 'missing'} "
                       "--length 6 --short-side 224 --seed-stride 28 --flow dis-balanced --orientation coded "
                       "--backend pyav --overwrite")
    assert cli.main(shlex.split(command)[1:]) == 0  # before: refused, made with other settings (length 2 ...)
    check("missing")


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_is_judged_on_its_first_probed_file_the_run_reads_not_a_stale_one(synth, tmp_path, caplog):
    """The settings were judged on the first readable file of those probed, which may be one an earlier mme made
    (stale): each read fails such a file as its video's failure before its settings count, so a cache whose stale
    file held 2-step tracks was refused under a run of 6 that trains on the others, and one whose stale file was of
    another flow was warned about as extracted with that flow. They are judged on the first file this mme made."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file, read_cache, save_tracks
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:4]]
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in videos))
    for length in (2, 6):
        extract_cache(str(tmp_path / "list.txt"), str(tmp_path / f"made{length}"), root=lists["data.root"],
                      length=length, short_side=64)
    for stale_length in (2, 6):  # the stale file's tracks too short for the run, or of its flow (dis: not the run's)
        cache = tmp_path / f"stale{stale_length}"
        shutil.copytree(tmp_path / "made6", cache)
        cache_file(cache, videos[0]).write_bytes(b"damaged")
        made = read_cache(cache_file(tmp_path / f"made{stale_length}", videos[1]))
        save_tracks(cache_file(cache, videos[1]), made.disp, made.valid, None,
                    {**made.meta, "tracker": 1, "flow": "dis"})
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}",
                                           f"data.root={lists['data.root']}", "data.max_failure_fraction=0.5"],
                          tmp_path / "run", f"target.cache_dir={cache}", "target.track_length=6")
        assert cfg.target.flow == "dis-balanced"  # the flow of the files made now
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme"):
            check_cache(cfg, pretrain_dataset(cfg))  # before: ConfigError "... holds only 2 steps" (stale2)
        assert caplog.text == ""  # before: "extracted with flow dis; target.flow=dis-balanced is not used" (stale6)


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
@pytest.mark.parametrize("made, advised", [
    ("--short-side 32 --max-disp 7", "--short-side 64 --seed-stride 8 --flow dis-balanced --compensate --max-disp 7"),
    ("--short-side 128 --seed-stride 32 --max-disp 14",
     "--short-side 128 --seed-stride 16 --flow dis-balanced --compensate --max-disp 14")])
def test_the_coarse_cache_advice_followed_as_given_makes_a_cache_the_run_reads(synth, tmp_path, caplog, made,
                                                                              advised):
    """The coarse-cache warning advised only --short-side, --seed-stride and --overwrite: followed as given, it threw
    away a cache of compensated 8-step tracks bounded at 7 px and made one of extract's defaults, which the run
    refuses (target.compensate=True but ... compensate=False). The advice names every extract setting the run
    reads; run through mme extract as given, it makes a cache the run accepts, and no longer calls coarse. Its
    --max-disp is in the working px of its --short-side: 7 px in the run's 64 px clips is 14 at 128 (before: 7,
    which bounds those clips at 3.5 px)."""
    import re

    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cache = tmp_path / "cache"
    extract = ["extract", str(tmp_path / "list.txt"), "--root", lists["data.root"], "--out", str(cache)]
    assert cli.main(extract + made.split() + ["--length", "8", "--compensate"]) == 0
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={cache}", "target.compensate=true",
                      "target.track_length=8", "target.max_disp=7")
    with caplog.at_level("WARNING"):
        check_cache(cfg, pretrain_dataset(cfg))
    warned = [r.getMessage() for r in caplog.records if "coarser" in r.getMessage()]
    advice = re.search(r"Extract again with (.*), or unset target\.cache_dir$", warned[0]).group(1)
    assert advice == f"--length 8 {advised} --orientation coded --backend pyav --overwrite"
    assert cli.main(extract + advice.split()) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_cache(cfg, pretrain_dataset(cfg))  # before: ConfigError, target.compensate=True but ... False
    assert not [r.getMessage() for r in caplog.records if "track cache" in r.getMessage()]


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_bound_below_refusal_followed_as_given_makes_a_cache_the_run_reads(synth, tmp_path):
    """A cache of the run's settings but for its bound (compensated, --max-disp 5 at --short-side 128: 2.5 px in the
    run's 64 px clips, below target.max_disp=5) was refused advising "extract again with --max-disp 10 at
    --short-side 128": typed as given, mme extract refused the files there as made with other settings, and with
    --overwrite made uncompensated ones, which the run refused in turn. The refusal gives the whole command, the
    run's settings at the cache's --short-side and --seed-stride with --overwrite; run as given, the run reads it."""
    import re
    import shlex

    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cache = tmp_path / "cache"
    extract = ["extract", str(tmp_path / "list.txt"), "--root", lists["data.root"], "--out", str(cache)]
    assert cli.main(extract + ["--short-side", "128", "--seed-stride", "16", "--compensate", "--max-disp", "5"]) == 0
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={cache}", "target.compensate=true", "target.max_disp=5")
    with pytest.raises(ConfigError, match="below this run's 5") as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    command = re.search(r"`(mme extract [^`]*)`", str(refused.value))  # before: only --max-disp 10 at --short-side 128
    assert command is not None and cli.main(shlex.split(command.group(1))[1:]) == 0
    check_cache(cfg, pretrain_dataset(cfg))  # before, with --overwrite: target.compensate=True but ... False
    assert command.group(1) == (f"mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {cache} "
                                "--length 6 --short-side 128 --seed-stride 16 --flow dis-balanced --compensate "
                                "--max-disp 10 --orientation coded --backend pyav --overwrite")


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_missing_files_advice_followed_as_given_makes_a_cache_the_run_reads(synth, tmp_path, caplog):
    """A run whose target.cache_dir lacks the list's files advised `mme extract LIST --root R --out C` "with the run's
    track length, flow and orientation": followed as given, it made a cache of extract's defaults, which a run of
    compensated tracks bounded at 3 px refused (target.compensate=True but ... compensate=False). The advice is the
    whole command, its flags those of the coarse-cache advice (every extract setting the run reads); run as given,
    it makes a cache the run accepts without a word."""
    import re
    import shlex

    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cache = tmp_path / "cache"
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={cache}", "target.compensate=true", "target.max_disp=3")
    with pytest.raises(DataError, match="is not a folder") as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    advised = re.search(r"`(mme extract [^`]*)`", str(refused.value)).group(1)
    assert cli.main(shlex.split(advised)[1:]) == 0
    with caplog.at_level("WARNING"):
        check_cache(cfg, pretrain_dataset(cfg))  # before: ConfigError, target.compensate=True but ... False
    assert not [r.getMessage() for r in caplog.records if "track cache" in r.getMessage()]
    assert advised == (f"mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {cache} --length 6 "
                       "--short-side 224 --seed-stride 28 --flow dis-balanced --compensate --max-disp 11 "
                       "--orientation coded --backend pyav")


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
@pytest.mark.parametrize("made, recorded, run_settings, advised", [
    ((), {}, (), "--length 6 --short-side 224 --seed-stride 8 --flow dis-balanced --orientation coded --backend pyav"),
    (("--length", "8", "--short-side", "96", "--seed-stride", "4", "--max-disp", "7.5", "--compensate"), {},
     ("target.compensate=true", "target.max_disp=3"),
     "--length 8 --short-side 96 --seed-stride 4 --flow dis-balanced --compensate --max-disp 7.5 --orientation coded "
     "--backend pyav"),
    ((), {}, ("data.orientation=display",),
     "--length 6 --short-side 224 --seed-stride 8 --flow dis-balanced --orientation coded --backend pyav"),
    ((), {"backend": "pyav-cuda"}, (),
     "--length 6 --short-side 224 --seed-stride 8 --flow dis-balanced --orientation coded --backend pyav")])
def test_the_missing_files_advice_resumes_a_part_made_cache_with_its_files_settings(synth, tmp_path, made, recorded,
                                                                                   run_settings, advised):
    """A cache that holds some of the list's files (an extraction stopped part-way, a list that grew) was advised the
    extraction at the run's finest settings (--short-side 224 --seed-stride 28 ...), without --overwrite, "and
    resumes": run as given, mme extract refused the files there as made with other settings. The advice takes the
    settings of a file of the cache that the run reads, so the command resumes it, and the run then reads every
    file. A file extracted at --orientation coded of a video without a display matrix is one a run at display reads
    (the same turn): its --orientation is kept (before: the file was passed over, and the finest settings at
    --orientation display advised, which mme extract refused). A file made with --backend pyav-cuda (``recorded`` in
    its meta: a GPU's extraction) is resumed with the run's pyav, which reads its frames (before: --backend
    pyav-cuda, which a machine without CUDA refused)."""
    import re
    import shlex

    from training import tiny_config

    from mme.motion.cache import quantise, read_cache, track_writer
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    (tmp_path / "part.txt").write_text(f"{listed[0]}\n")
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cache = tmp_path / "cache"
    assert cli.main(["extract", str(tmp_path / "part.txt"), "--root", lists["data.root"], "--out", str(cache),
                     *made]) == 0
    if recorded:
        made_file = cache / (listed[0].split()[0] + ".tracks")
        held = read_cache(made_file)
        with track_writer(made_file, {**held.meta, **recorded}, held.num_starts, held.disp.shape[2:4], False) as write:
            write(quantise(held.disp), held.valid)
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={cache}", "data.max_failure_fraction=0", *run_settings)
    dataset = pretrain_dataset(cfg)
    with pytest.raises(DataError, match="makes the track cache files these videos lack") as refused:
        check_cache(cfg, dataset)  # the first video's file read; the second's lacking, before any work
    command = re.search(r"`(mme extract [^`]*)`", str(refused.value)).group(1)
    with pytest.raises(DataError, match="makes the track cache files these videos lack") as failed:
        dataset[1]
    assert re.search(r"`(mme extract [^`]*)`", str(failed.value)).group(1) == command  # as the run's failures advise
    assert cli.main(shlex.split(command)[1:]) == 0  # before: refused, made with other settings (seed_stride 8 ...)
    assert command == f"mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {cache} {advised}"
    dataset = pretrain_dataset(cfg)
    assert [dataset[i]["index"] for i in range(2)] == [0, 1]


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_missing_files_advice_for_a_mixed_cache_makes_it_again_with_the_runs_settings(synth, tmp_path):
    """A cache holding files of two settings the run reads each (extractions of two parts of the list) was advised
    the resumed extraction of its first file's settings, which mme extract refused for the other's. The advice says
    the cache is mixed, naming two files and their settings, and gives the run's command with --overwrite; run as
    given, the run reads every file."""
    import re
    import shlex

    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:3]
    cache = tmp_path / "cache"
    for i, made in enumerate([(), ("--seed-stride", "4")]):
        (tmp_path / f"part{i}.txt").write_text(f"{listed[i]}\n")
        assert cli.main(["extract", str(tmp_path / f"part{i}.txt"), "--root", lists["data.root"], "--out", str(cache),
                         *made]) == 0
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={cache}", "data.max_failure_fraction=0")
    dataset = pretrain_dataset(cfg)
    with pytest.raises(DataError, match="mme extract") as refused:
        check_cache(cfg, dataset)
    command = re.search(r"`(mme extract [^`]*)`", str(refused.value)).group(1)
    assert cli.main(shlex.split(command)[1:]) == 0  # before: refused, made with other settings (seed_stride 4 ...)
    files = [cache / (line.split()[0] + ".tracks") for line in listed[:2]]
    assert (f"the cache is mixed: {files[0]} was made with seed_stride 8, {files[1]} with seed_stride 4"
            in str(refused.value))
    assert command == (f"mme extract {tmp_path / 'list.txt'} --root {lists['data.root']} --out {cache} --length 6 "
                       "--short-side 224 --seed-stride 28 --flow dis-balanced --orientation coded --backend pyav "
                       "--overwrite")
    dataset = pretrain_dataset(cfg)
    assert [dataset[i]["index"] for i in range(3)] == [0, 1, 2]


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_mixed_cache_the_run_reads_is_warned_about_whichever_file_comes_first(synth, tmp_path, caplog):
    """Part of the list extracted with the defaults, the rest with --flow dis-fast --seed-stride 32, into one cache
    the run reads: the flow and coarseness warnings judged the first probed file alone, so the run said nothing where
    the list's first video's file was of the defaults, and warned as if the whole cache were of dis-fast where it came
    first. Each probed file is judged: the run says the cache is mixed, naming two files and their settings, and
    names the file each warning is of."""
    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:2]
    cache = tmp_path / "cache"
    for i, made in enumerate([(), ("--flow", "dis-fast", "--seed-stride", "32")]):
        (tmp_path / f"part{i}.txt").write_text(f"{listed[i]}\n")
        assert cli.main(["extract", str(tmp_path / f"part{i}.txt"), "--root", lists["data.root"], "--out", str(cache),
                         "--length", "2", *made]) == 0
    files = [cache / (line.split()[0] + ".tracks") for line in listed]
    for order in ([0, 1], [1, 0]):
        (tmp_path / "list.txt").write_text("".join(f"{listed[k]}\n" for k in order))
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}",
                                           f"data.root={lists['data.root']}"], tmp_path / "run",
                          f"target.cache_dir={cache}", "target.track_length=2")
        caplog.clear()
        with caplog.at_level("WARNING"):
            check_cache(cfg, pretrain_dataset(cfg))
        said = [r.getMessage() for r in caplog.records]
        first, second = (files[k] for k in order)
        held = {files[0]: "seed_stride 8, flow dis-balanced", files[1]: "seed_stride 32, flow dis-fast"}
        assert said[0].startswith(f"the track cache {cache}: its tracks differ from one video to another: the cache "
                                  f"is mixed: {first} was made with {held[first]}, {second} with {held[second]}; "
                                  "`mme extract "), said
        assert said[0].endswith("--overwrite` makes every file again with this run's settings")
        of_it = f"the track cache file {files[1]} (of the mixed cache {cache})"
        assert said[1] == (f"{of_it} was extracted with flow dis-fast; target.flow=dis-balanced is not used (the "
                           "tracks are the cache's)")
        assert said[2].startswith(f"{of_it} is coarser than this run's targets: extracted at --short-side 224 "
                                  "--seed-stride 32: its seeds lie")
        assert len(said) == 3, said


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_cache_mixed_in_settings_that_change_nothing_the_run_reads_is_not_warned_about(synth, tmp_path, caplog):
    """Parts of the list extracted with --length 2 and 3 and --orientation display (videos without a display matrix)
    into one cache a run of 2-step tracks reads: the run warned that its tracks differ from one video to another and
    advised making every file again, though each file gives the tracks of a cache made with one setting. The warning
    judges the settings that change what the run reads; the resume advice still names the files' differences (a
    resumed extraction compares every setting)."""
    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    listed = open(lists["data.list_file"]).read().splitlines()[:3]
    (tmp_path / "list.txt").write_text("".join(f"{line}\n" for line in listed))
    parts = [("--length", "2"), ("--length", "3"), ("--length", "2", "--orientation", "display")]
    for i, made in enumerate(parts):
        (tmp_path / f"part{i}.txt").write_text(f"{listed[i]}\n")
        assert cli.main(["extract", str(tmp_path / f"part{i}.txt"), "--root", lists["data.root"], "--out",
                         str(tmp_path / "mixed"), *made]) == 0
    assert cli.main(["extract", str(tmp_path / "list.txt"), "--root", lists["data.root"], "--out",
                     str(tmp_path / "one"), "--length", "2"]) == 0
    disp = {}
    for cache in ("one", "mixed"):
        cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}",
                                           f"data.root={lists['data.root']}"], tmp_path / "run",
                          f"target.cache_dir={tmp_path / cache}", "target.track_length=2")
        dataset = pretrain_dataset(cfg)
        caplog.clear()
        with caplog.at_level("WARNING"):
            check_cache(cfg, dataset)
        assert [r.getMessage() for r in caplog.records] == []  # before: 'its tracks differ from one video to another'
        disp[cache] = [dataset[i]["motion"]["disp"] for i in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(disp["one"], disp["mixed"]))
    files = [tmp_path / "mixed" / (line.split()[0] + ".tracks") for line in listed]
    assert dataset.mixed_cache() == f"{files[0]} was made with length 2, {files[1]} with length 3"
    assert dataset.mixed_cache(read=True) is None


def _masks_as_drawn_before(model_cfg, indices: list[int], epoch: int, seed: int) -> torch.Tensor:
    """The masks of ``indices`` as the training step's process drew them before the data workers did (the former
    ``pretrain.masks_for``, kept here only): a mask of a given (seed, epoch, index) must stay the same across
    versions, or a resumed run and a rerun of a recorded one would train on other masks."""
    from mme.models.masking import make_mask
    from mme.train.distributed import sample_seed

    g = torch.Generator()
    rows = []
    for i in indices:
        g.manual_seed(sample_seed(seed, epoch, i, "mask"))
        rows.append(make_mask(model_cfg.mask_type, 1, model_cfg.grid, model_cfg.mask_ratio, g))
    return torch.cat(rows)


@pytest.mark.pinned  # no run: the dataset's items alone
@pytest.mark.parametrize("kind", ["tube", "random", "cube"])
def test_each_item_brings_the_mask_of_its_seed_epoch_and_video_as_drawn_before(kind, synth, tmp_path):
    """Drawn in the data worker with the item, of the video read (a replaced entry's replacement), the same mask as
    the training step drew for it itself, on several seeds, ratios and grids."""
    from training import tiny_config

    from mme.train.pretrain import pretrain_dataset

    list_file = next(o.split("=", 1)[1] for o in synth if o.startswith("data.list_file="))
    lines = open(list_file).read().splitlines()
    (tmp_path / "list.txt").write_text("\n".join(lines[:5] + [f"{tmp_path / 'missing.mp4'} 0"] + lines[5:]) + "\n")
    root = next(o for o in synth if o.startswith("data.root="))
    data = [f"data.list_file={tmp_path / 'list.txt'}", root, "data.max_failure_fraction=0.5"]
    for seed, ratio, patch in [(0, 0.9, 16), (3, 0.5, 8), (7, 0.75, 16)]:  # grids (4, 4, 4) and (4, 8, 8)
        cfg = tiny_config("tiny_cpu_pixel", data, tmp_path, f"model.mask_type={kind}", f"model.mask_ratio={ratio}",
                          f"train.seed={seed}", f"model.patch_size={patch}")
        dataset = pretrain_dataset(cfg)
        for epoch, index in [(0, 2), (2, 11), (1, 5)]:  # entry 5: the missing file, replaced by another
            item = dataset[(epoch, index)]
            assert (item["index"] != 5) if index == 5 else (item["index"] == index)
            assert item["mask"].shape == (cfg.model.num_tokens,)
            assert torch.equal(item["mask"], _masks_as_drawn_before(cfg.model, [item["index"]], epoch, seed)[0])


@pytest.mark.pinned  # no run
def test_sample_masks_stay_those_of_earlier_versions():
    """Masked tokens of a few (seed, epoch, index), recorded from the step's own draws before the data workers drew
    the masks: the seeding and the three mask generators must keep them."""
    from mme.models.config import ModelConfig
    from mme.train.pretrain import sample_mask

    recorded = {("tube", 0.5, 0, 0, 3): [0, 1, 2, 3, 5, 8, 11, 12, 16, 17, 18, 19, 21, 24, 27, 28],
                ("random", 0.75, 1, 2, 7): [0, 1, 2, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 24, 25,
                                            27, 28, 29, 30],
                ("cube", 0.4, 5, 1, 11): [0, 1, 4, 5, 8, 9, 18, 19, 22, 23, 26, 27]}
    for (kind, ratio, seed, epoch, index), masked in recorded.items():
        cfg = ModelConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, mask_type=kind, mask_ratio=ratio)
        assert cfg.grid == (2, 4, 4)
        assert sample_mask(cfg, seed, epoch, index).nonzero().flatten().tolist() == masked, kind


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_step_takes_the_masks_the_loader_workers_drew(synth, tmp_path, monkeypatch):
    """With loader workers, the training step's process only moves each batch's masks (stacked by the workers) to
    the device: those the step drew itself before, for every clip of every step."""
    from mme.train import pretrain

    inputs, seen = pretrain._inputs, []

    def recording(run_, batch, epoch, k):
        out = inputs(run_, batch, epoch, k)
        seen.append((epoch, batch["index"].tolist(), batch["mask"], out[1], run_.cfg))
        return out

    monkeypatch.setattr(pretrain, "_inputs", recording)
    run("tiny_cpu_pixel", synth, tmp_path, "train.steps=5", FP32, "data.num_workers=2", "model.mask_type=cube",
        "model.mask_ratio=0.9", "train.seed=4")
    assert [e for e, *_ in seen] == [0, 0, 0, 0, 1]
    for epoch, indices, shipped, used, cfg in seen:
        assert torch.equal(used, shipped)
        assert torch.equal(used, _masks_as_drawn_before(cfg.model, indices, epoch, cfg.train.seed))


@pytest.mark.pinned  # every run train.precision=fp32
def test_the_learnability_benchmarks_bank_trains_and_probes_at_its_stops(tmp_path, monkeypatch, capsys):
    """benchmarks/motion_learnability.py bank (docs/experiments.md) ended at its first stop with AttributeError: its
    bank of clips lacked the list digest and failure codes that pre-training's checkpoints record."""
    import importlib.util
    from pathlib import Path

    from mme.data.synth import generate_synth

    data = generate_synth(tmp_path / "syn", num_classes=2, videos_per_class=4, size=32, num_frames=16, workers=1,
                          splits=(0.5, 0.25, 0.25))
    path = Path(__file__).parents[1] / "benchmarks" / "motion_learnability.py"
    spec = importlib.util.spec_from_file_location("motion_learnability", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr("sys.argv", [str(path), "bank", str(data.root), "--views", "1", "--workers", "0",
                                     "--probe-every", "1", "--steps", "2", "--batch", "2", "--out",
                                     str(tmp_path / "run"), "--recipe", "tiny_cpu_pixel", FP32,
                                     "data.img_size=32", "model.img_size=32"])
    benchmark.main()
    out = capsys.readouterr().out
    assert out.count("probe at step") == 2 and (tmp_path / "run" / "checkpoint-00000002.pt").is_file(), out


@pytest.mark.pinned  # every run train.precision=fp32
def test_a_runs_result_counts_the_clips_this_process_trained_on(synth, tmp_path):
    """mme demo's clips/s was its steps x batch over the run's seconds: half the rate with train.accum_steps=2
    (each step two micro-batches), and a run's full length where it stopped early or resumed. The result counts
    what the loop ran: the steps of this process x batch x accumulated micro-batches."""
    first = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "train.accum_steps=2", "train.stop_after=1", FP32)
    assert (first.step, first.clips) == (1, 1 * 4 * 2)
    rest = run("tiny_cpu_pixel", synth, tmp_path, "train.steps=4", "train.accum_steps=2", "train.resume=auto", FP32)
    assert (rest.step, rest.clips) == (4, 3 * 4 * 2) and rest.seconds > 0


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_video_that_will_not_open_is_not_taken_for_settings_the_run_cannot_read(synth, tmp_path):
    """A cache of the run's settings whose first probed video will not open (damaged after extraction), under a run
    of data.orientation=display (which opens it to compare its turn), beside a damaged cache file, was advised as
    "made with settings this run cannot read ([the video]: unreadable ...)" with --overwrite, making every file
    again. The video is its own failure, the run's to skip: the advice resumes the cache with its files' settings."""
    import shutil

    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:2]]
    for video in videos:
        (tmp_path / "data" / video).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f"{lists['data.root']}/{video}", tmp_path / "data" / video)
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in videos))
    extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(tmp_path / "data"), length=6,
                  short_side=64)
    damaged = tmp_path / "data" / videos[0]  # damaged on disk, its size and mtime kept: the file the cache was made
    was = damaged.stat()  # of (one rewritten since is another version of it, refused before its settings count)
    damaged.write_bytes(bytes(was.st_size))
    os.utime(damaged, ns=(was.st_atime_ns, was.st_mtime_ns))
    cache_file(tmp_path / "cache", videos[1]).write_bytes(b"damaged")
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path / 'data'}",
                                       "data.max_failure_fraction=0"], tmp_path / "run",
                      f"target.cache_dir={tmp_path / 'cache'}", "data.orientation=display")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    assert str(refused.value).endswith(  # before: "made with settings this run cannot read (...: unreadable ...)"
        f"a resumed mme extract makes them again: `mme extract {tmp_path / 'list.txt'} --root {tmp_path / 'data'} "
        f"--out {tmp_path / 'cache'} --length 6 --short-side 64 --seed-stride 8 --flow dis-balanced --orientation "
        f"coded --backend pyav` makes the track cache files these videos lack with the settings of the cache's "
        f"{cache_file(tmp_path / 'cache', videos[0])}, and resumes")


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_advice_makes_every_file_again_where_one_probed_file_is_not_read(tmp_path):
    """A coded cache of a plain video and a phone video (display matrix), a third video's file missing, under a run of
    data.orientation=display: the advice resumed the cache as soon as one probed file (the plain video's) was read,
    keeping the phone video's, which the run refuses: followed as given, the run was refused again. Where any probed
    file is not read, the advice makes every file again with the run's settings; followed, the run reads the cache."""
    import re
    import shlex

    from training import tiny_config
    from videos import affine_video, write_video

    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    frames = affine_video(12, 48, 64, dx=1.5, seed=6)[0]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("plain", "other"):
        write_video(data / f"{name}.mp4", frames)
    write_video(data / "phone.mp4", frames, display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    (tmp_path / "made.txt").write_text("plain.mp4\nphone.mp4\n")
    (tmp_path / "list.txt").write_text("plain.mp4\nphone.mp4\nother.mp4\n")
    extract_cache(str(tmp_path / "made.txt"), str(tmp_path / "cache"), root=str(data), length=6, short_side=64)
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={data}",
                                       "data.max_failure_fraction=0"], tmp_path / "run",
                      f"target.cache_dir={tmp_path / 'cache'}", "data.orientation=display")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    command = re.search(r"`(mme extract [^`]*)`", str(refused.value)).group(1)
    assert "phone.mp4.tracks was extracted with --orientation coded" in str(refused.value)  # before: resumed
    assert command == (f"mme extract {tmp_path / 'list.txt'} --root {data} --out {tmp_path / 'cache'} --length 6 "
                       "--short-side 224 --seed-stride 28 --flow dis-balanced --orientation display --backend pyav "
                       "--overwrite")
    assert cli.main(shlex.split(command)[1:]) == 0
    check_cache(cfg, pretrain_dataset(cfg))


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_phone_video_later_in_the_list_is_judged_before_any_work(tmp_path):
    """A coded cache of a plain video and, after it in the list, a phone video (display matrix), under a run of
    data.orientation=display: the orientation was judged on the first probed file alone (the plain video's), so the
    check passed and the run stopped at the phone video's first read. Every probed file's orientation is judged
    (opening only the videos of files whose --orientation is not the run's), refused before any work with the cache
    made again; followed as given, the run reads the cache."""
    import shlex

    from training import tiny_config
    from videos import affine_video, write_video

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    frames = affine_video(12, 48, 64, dx=1.5, seed=6)[0]
    data = tmp_path / "data"
    data.mkdir()
    write_video(data / "plain.mp4", frames)
    write_video(data / "phone.mp4", frames, display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    (tmp_path / "list.txt").write_text("plain.mp4\nphone.mp4\n")
    extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(data), length=6, short_side=64)
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={data}"],
                      tmp_path / "run", f"target.cache_dir={tmp_path / 'cache'}", "data.orientation=display")
    with pytest.raises(ConfigError) as refused:  # before: passed
        check_cache(cfg, pretrain_dataset(cfg))
    command = (f"mme extract {tmp_path / 'list.txt'} --root {data} --out {tmp_path / 'cache'} --length 6 --short-side "
               "64 --seed-stride 8 --flow dis-balanced --orientation display --backend pyav --overwrite")
    assert str(refused.value) == (
        f"the track cache {cache_file(tmp_path / 'cache', 'phone.mp4')} was extracted with --orientation coded, which "
        f"read this video's frames as coded, where this run's data.orientation reads them as displayed (its display "
        f"matrix turns its frames 90 degrees counterclockwise); extract again with `{command}`")
    assert cli.main(shlex.split(command)[1:]) == 0
    check_cache(cfg, pretrain_dataset(cfg))


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_a_track_cache_files_header_is_read_once_where_the_list_repeats_its_video(synth, tmp_path, monkeypatch):
    """The start check read a file's header once per probe that met it: a video listed 5 times of 6 entries had its
    file read 5 times (on a share, an open each). Each file of the probes is read once."""
    from training import tiny_config

    import mme.motion.cache
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:2]]
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in [videos[0]] * 5 + [videos[1]]))
    extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=lists["data.root"], length=6,
                  short_side=64)
    reads = []
    real = mme.motion.cache.cache_meta_and_refusal
    monkeypatch.setattr(mme.motion.cache, "cache_meta_and_refusal",
                        lambda found, video: reads.append(found) or real(found, video))
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}"],
                      tmp_path / "run", f"target.cache_dir={tmp_path / 'cache'}")
    dataset = pretrain_dataset(cfg)
    check_cache(cfg, dataset)
    assert len(dataset.current_probes) == 6
    assert sorted(reads) == sorted({found for _, found, _ in dataset.current_probes})  # before: 6 reads of 2 files


@pytest.mark.pinned  # no run: the track cache's start check (and mme extract) alone
def test_the_refused_files_message_names_the_missing_ones_where_every_entry_fails(synth, tmp_path):
    """A cache of two videos, one file damaged and the other missing, under data.max_failure_fraction=0.6 (the
    missing one alone is within it): the refusal said "1 of its 1 track cache files ... are unreadable" and dropped
    the missing file, which counts with it. It says "with the 1 it lacks" whether or not every entry fails."""
    from training import tiny_config

    from mme.motion.cache import cache_file
    from mme.motion.extract import extract_cache
    from mme.train.pretrain import check_cache, pretrain_dataset

    lists = dict(s.split("=", 1) for s in synth)
    videos = [line.split()[0] for line in open(lists["data.list_file"]).read().splitlines()[:2]]
    (tmp_path / "list.txt").write_text("".join(f"{video}\n" for video in videos))
    (tmp_path / "one.txt").write_text(f"{videos[0]}\n")
    extract_cache(str(tmp_path / "one.txt"), str(tmp_path / "cache"), root=lists["data.root"], length=6,
                  short_side=64)
    damaged = cache_file(tmp_path / "cache", videos[0])
    damaged.write_bytes(b"damaged")
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={lists['data.root']}",
                                       "data.max_failure_fraction=0.6"], tmp_path / "run",
                      f"target.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    assert str(refused.value).startswith(  # before: "... are unreadable, which each read fails ..."
        f"target.cache_dir '{tmp_path / 'cache'}': 1 of its 1 track cache files of the videos of "
        f"{tmp_path / 'list.txt'} are unreadable, with the 1 it lacks, which each read fails as its video's failure "
        f"(the first, {damaged}: unreadable (unknown file type)); a resumed mme extract makes them again: `mme extract")


@pytest.mark.pinned  # its run refused before a precision is chosen
def test_the_extract_advice_for_names_starting_with_a_dash_runs_as_given(synth, tmp_path, monkeypatch):
    """A list, data.root and target.cache_dir named '-train.txt', '-data', '-cache' (relative): the advice is a
    command argparse takes ('./-train.txt', '--root=-data', '--out=-cache'), and run as given it fills the cache
    (before: '--root -data' was refused, 'expected one argument')."""
    import shlex

    lists = dict(s.split("=", 1) for s in synth)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-data").symlink_to(lists["data.root"])
    (tmp_path / "-train.txt").write_text("".join(open(lists["data.list_file"]).readlines()[:2]))
    (tmp_path / "-cache").mkdir()
    with pytest.raises(DataError, match="holds no track cache file") as refused:
        run("tiny_cpu_mme", ["data.list_file=-train.txt", "data.root=-data"], tmp_path / "run",
            "target.cache_dir=-cache")
    advice = str(refused.value).split("`")[1]
    assert advice.startswith("mme extract ./-train.txt --root=-data --out=-cache --length 6 ")
    assert cli.main(shlex.split(advice)[1:] + ["--workers", "1"]) == 0
    assert len(list((tmp_path / "-cache").rglob("*.tracks"))) == 2
