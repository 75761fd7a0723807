"""``mme bench pipeline``: what the data workers spend per clip for each target, and the cores a step rate needs.

    mme bench pipeline                         # a generated 340x256 H.264 video, 16 x 224² clips at stride 4
    mme bench pipeline --clips-per-s 1000      # cores needed to feed a step of 1,000 clips/s (a GPU's)
    mme bench pipeline --video bikes.mp4 --json pipeline.json

For the pixel target, the MME target computed online (the flow in the workers), the same with the flow and tracks
made in the training step (``torch-lk``: the workers ship frames), and the MME target read from the track cache
(``mme extract`` of the same video first), it times the dataset item exactly as a worker makes it (decode, crop, and
for MME the flow and tracks, or the cached tracks) in CPU time of one thread, the median over ``--clips`` items made
in turns with the other variants', plus its share of collating a batch of 8 (what a worker does with it); and the
training step's share of making the targets (pixel; or HOG along the tracks and the assembly, and for ``torch-lk``
the flow and the tracks), per clip of that batch, made on the device the training step would use (CPU time of one
thread on a CPU, wall time on a GPU). The step rate times the worker time gives the cores the workers need:
``--clips-per-s``, else the rate of the tiny demo model's MME step measured here, the step alone, as ``mme bench
train`` times it (:func:`mme.train.bench.step_fn`, :func:`mme.train.bench.seconds_per_step`), on a collated batch
of the run's items at the run's precision and threads, the median of :data:`STEP_ROUNDS` rounds, printed with their
range: the workers need cores beside the step's, so the step is timed without workers taking its CPU (a run's step
time less its data wait still holds the CPU its workers took from it: 2.5-3.0 clips/s at 8 x 112² on 2 cores with
2 workers, against 8-9 alone). Ratios are against the pixel target measured in the same run. Then a short real
pre-training run with ``--workers`` loader workers reports the fraction of its step time spent waiting for data.
"""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mme.config import load_config, packaged_recipe
from mme.data.bench import generated_video
from mme.data.dataset import PretrainDataset, collate
from mme.data.video import open_video
from mme.errors import NOTHING_KEPT, Interrupted, MMEError
from mme.motion.extract import extract_cache
from mme.train.bench import seconds_per_step, step_fn
from mme.train.config import PretrainConfig
from mme.train.loop import raise_unkept
from mme.train.metrics import steps_of, waiting_fraction
from mme.train.precision import choose_device
from mme.train.pretrain import batch_on_device, make_step_targets, pretrain, pretrain_dataset
from mme.utils import (
    check_bench_json,
    counted,
    cpu_name,
    in_turns,
    keep_freed_memory,
    keys_as_flags,
    read_text,
    round_range,
    sets_threads,
    write_bench_json,
)

VARIANTS = ("pixel", "mme online", "mme torch-lk", "mme cached")


FLAGS = {"data.img_size": "--size", "model.img_size": "--size", "data.num_frames": "--frames",
         "model.num_frames": "--frames", "data.stride": "--stride", "data.num_workers": "--workers",
         "train.steps": "--steps"}
"""The config keys the benchmark's flags set (:func:`_config`), and the flag of ``mme bench pipeline`` giving each."""


def _config(list_file: Path, size: int, frames: int, stride: int, variant: str, cache: Path, out: Path,
            *extra: str) -> PretrainConfig:
    """The tiny demo recipe at the bench's clip size with the variant's target."""
    recipe = "tiny_cpu_pixel" if variant == "pixel" else "tiny_cpu_mme"
    with keys_as_flags(FLAGS):
        return load_config(PretrainConfig, packaged_recipe(recipe), [
            f"data.list_file={list_file}", f"data.root={list_file.parent}", f"data.img_size={size}",
            f"model.img_size={size}", f"data.num_frames={frames}", f"model.num_frames={frames}",
            f"data.stride={stride}", f"train.out_dir={out}", "train.overwrite=true",
            *([f"target.cache_dir={cache}"] if variant == "mme cached" else []),
            *(["target.flow=torch-lk"] if variant == "mme torch-lk" else []), *extra])


@sets_threads
def _variants_ms(cfgs: dict[str, PretrainConfig], clips: int, device: torch.device, batch: int = 8,
                 threads: int = 1) -> dict[str, tuple[float, float, float]]:
    """Per variant (its config in ``cfgs``), on ``threads`` threads (one, as a loader worker has): the median CPU
    ms to make one dataset item, the variants' items made in turns (:func:`mme.utils.in_turns`, so that a change in
    the machine's load falls on all of them alike; after a first, untimed item each that opens the video); the
    worker's CPU ms per clip to collate a batch of ``batch`` such items; and the step's ms per clip to make their
    targets on ``device`` (medians of 3). This process's malloc then keeps freed memory, as a worker's."""
    keep_freed_memory()
    data = {v: pretrain_dataset(cfg) for v, cfg in cfgs.items()}
    for ds in data.values():
        ds[0]
    made = in_turns({v: functools.partial(_made, ds, itertools.count(1)) for v, ds in data.items()}, clips)
    out = {}
    for v, cfg in cfgs.items():
        collating, step = [], []
        for _ in range(3):
            t0 = time.process_time()
            b = collate([made[v][k % clips][1] for k in range(batch)])
            collating.append(1000 * (time.process_time() - t0) / batch)
            step.append(_step_share_ms(b, cfg, device) / batch)
        out[v] = (statistics.median(ms for ms, _ in made[v]), statistics.median(collating), statistics.median(step))
    return out


def _made(dataset: PretrainDataset, at: Iterator[int]) -> tuple[float, dict]:
    """The CPU ms to make ``dataset``'s item at the next index of ``at`` (modulo its length), and the item."""
    i = next(at)
    t0 = time.process_time()
    item = dataset[i % len(dataset)]
    return 1000 * (time.process_time() - t0), item


def _step_share_ms(batch: dict, cfg: PretrainConfig, device: torch.device) -> float:
    """ms to make a collated batch's targets as the training step does, on ``device``: on a CPU this thread's CPU
    time; on an accelerator the wall time of the batch's transfer and targets, after one untimed run."""
    def make():
        make_step_targets(batch, cfg.target, cfg.model, device)

    if device.type == "cpu":
        t0 = time.process_time()
        make()
        return 1000 * (time.process_time() - t0)
    make()
    return 1000 * seconds_per_step(make, 1, device)


STEP_ROUNDS, STEP_STEPS, STEP_WARMUP = 3, 3, 2
"""The measured step rate's rounds, timed steps per round and untimed steps first (:func:`_step_rates`)."""


@sets_threads
def _step_rates(cfg: PretrainConfig, device: torch.device, precision: str, threads: int) -> list[float]:
    """Clips/s of ``cfg``'s training step alone, in each of :data:`STEP_ROUNDS` rounds: ``mme bench train``'s step
    (:func:`mme.train.bench.step_fn`, timed by :func:`mme.train.bench.seconds_per_step`) on a collated batch of the
    config's items, on ``device`` at ``precision`` with ``threads`` threads, no loader worker beside it."""
    data, n = pretrain_dataset(cfg), cfg.train.batch_size
    batch = collate([data[i % len(data)] for i in range(n)])
    video, motion = batch_on_device(batch, device)
    step, _, _ = step_fn(cfg.model, cfg.target, cfg.optim, n, precision, False, False, False, device, video, None,
                         motion)
    for _ in range(STEP_WARMUP):
        step()
    return [n / seconds_per_step(step, STEP_STEPS, device) for _ in range(STEP_ROUNDS)]


def bench_pipeline(video: str | None = None, size: int = 224, frames: int = 16, stride: int = 4, clips: int = 8,
                   clips_per_s: float | None = None, workers: int = 2, steps: int = 12,
                   json_path: str | None = None) -> dict:
    """``mme bench pipeline`` (module docstring): prints the table and returns the figures."""
    check_bench_json(json_path, [("the video benchmarked", video)])  # before the benchmark, not after it
    device = choose_device()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        list_file = tmp / "list.txt"
        # the configs first: sizes the model does not take are refused before the video and its cache are made
        cfgs = {v: _config(list_file, size, frames, stride, v, tmp / "cache", tmp / "run") for v in VARIANTS}
        run_cfg = _config(list_file, size, frames, stride, "mme online", tmp / "cache", tmp / "run",
                          f"data.num_workers={workers}", f"train.steps={steps}", "train.batch_size=2",
                          "optim.warmup_steps=0")  # (its recipe's 20 would take the short run, warned to the user)
        src = Path(video) if video else generated_video(tmp)
        open_video(str(src)).close()  # a missing or unreadable video named now, not as a list's failures later
        list_file.write_text(f"{src.resolve()}\n" * max(clips + 1, 4), encoding="utf-8")
        extract_cache(str(list_file), str(tmp / "cache"), length=6, short_side=size)
        parts = _variants_ms(cfgs, clips, device)
        ms = {v: item + collating for v, (item, collating, _) in parts.items()}
        step_ms = {v: step for v, (_, _, step) in parts.items()}
        try:  # (its summaries would name a temporary folder, removed on the way out)
            with keys_as_flags(FLAGS, overrides=False):  # (its advice names --workers, --size, no other key)
                run = pretrain(run_cfg, printed=False)
        except Interrupted as e:  # its advice (its checkpoint, --resume auto) is of a folder removed on the way out
            raise Interrupted(f"stopped by {e.signal.name} during the benchmark's {steps}-step pre-training run; "
                              f"{NOTHING_KEPT}", e.exit_code) from e
        except MMEError as e:  # (a stop of one of WRITTEN_KEPT: the CLI ends its line with "nothing is kept")
            raise_unkept(e)
        run_meta = json.loads(read_text(tmp / "run" / "run.json"))
        measured = clips_per_s is None
        # the step alone, at the run's precision and threads: the workers' cores come beside the step's
        rates = _step_rates(run_cfg, device, run_meta["precision"], run_meta["threads"]) if measured else None
    # the records of the steps after the first two, which include the workers' start
    late = [r for r in run.history if r["step"] - steps_of(r) >= 2] or run.history
    rate = statistics.median(rates) if measured else clips_per_s
    result = {"cpu": cpu_name(), "video": str(video or "generated 340x256 H.264"), "clip": f"{frames}x{size}²",
              "stride": stride, "worker_ms_per_clip": ms, "ratio_to_pixel": {v: ms[v] / ms["pixel"] for v in ms},
              "worker_collate_ms_per_clip": {v: parts[v][1] for v in parts},
              "step_target_ms_per_clip": step_ms, "step_device": str(device),
              "clips_per_s": rate, "clips_per_s_rounds": rates,
              "clips_per_s_source": f"measured: the tiny model's MME step alone, as mme bench train times it, on a "
                                    f"collated batch of {run_cfg.train.batch_size}, {run_meta['precision']}, "
                                    f"{counted(run_meta['threads'], 'thread')}, no loader worker beside it; the "
                                    f"median of {counted(STEP_ROUNDS, 'round')}" if measured else "given",
              "cores_needed": {v: rate * ms[v] / 1000 for v in ms}, "workers": workers,
              "data_wait_fraction": waiting_fraction(late)}
    print(f"mme bench pipeline: {result['clip']} clips at stride {stride}, one thread per worker, {result['cpu']}")
    print(f"  step rate {rate:.1f} clips/s ({result['clips_per_s_source']}" +
          (f", rounds {round_range(rates, 1)})" if measured else ")"))
    print(f"  {'target':<12} {'worker ms/clip':>15} {'of which collate':>17} {'vs pixel':>9} {'cores needed':>13} "
          f"{'step targets ms/clip':>21}")
    for v in VARIANTS:
        print(f"  {v:<12} {ms[v]:15.1f} {parts[v][1]:17.1f} {result['ratio_to_pixel'][v]:8.2f}x "
              f"{result['cores_needed'][v]:13.2f} {step_ms[v]:21.1f}")
    where = "this CPU's thread" if device.type == "cpu" else f"{device}, wall time"
    print(f"  (step targets: made as the training step makes them, per clip of a batch of 8, on {where})")
    print(f"  a {steps}-step MME run with {counted(workers, 'worker')} waited for data "
          f"{100 * result['data_wait_fraction']:.0f} % "
          "of its step time (after its first 2 steps; the step rate above is " +
          ("the step's alone, not this run's, whose workers take cores beside it)" if measured else "the one given)"))
    if json_path:
        write_bench_json(json_path, result)
    return result
