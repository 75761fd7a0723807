"""``mme bench data``: clips/s of decoding + sampling + transforms for pre-training clips.

Times a :class:`PretrainDataset` (16 frames at stride 4, multi-scale crop to 224², tracks of L raw frames, so
about 40 raw frames are decoded per clip) through a DataLoader with 0, 1 and 2 workers, in wall time (the workers
are other processes), the worker counts taking turns in each of ``--rounds`` rounds so that a change in the
machine's load falls on all alike; it prints each count's median clips/s over the rounds and the median of each
round's own ratio to the first count's, with the lowest and highest round's ratio beside it (on a shared machine
these differ by tens of %: the digits a ratio can be read to), plus a per-stage breakdown of one clip in this
process. This process (the stages, and 0 workers) runs torch and OpenCV on ``threads`` (default: torch's count),
each loader worker on one.

    mme bench data                       # a generated 340x256 H.264 video, 300 frames
    mme bench data --video bikes.mp4 --workers 0 2 --clips 64 --json data_bench.json
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Subset

from mme.data.dataset import DataConfig, PretrainDataset, collate, make_loader, start_workers
from mme.data.sampling import ClipIndices, sample_pretrain, window_length
from mme.data.synth import encode_h264
from mme.data.transforms import Geometry, apply_geometry, multiscale_crop, to_clip
from mme.data.video import open_video, require_backend, with_true_count
from mme.utils import (
    TIMED_AGAIN,
    atomic_write_text,
    check_bench_json,
    check_given_once,
    counted,
    cpu_name,
    in_turns,
    keys_as_flags,
    ratios_in_rounds,
    round_range,
    sets_threads,
    write_bench_json,
)


def generated_video(folder: Path, frames: int = 300, size: tuple[int, int] = (340, 256)) -> Path:
    """A panning random texture (Kinetics-like 340x256 at 25 fps), encoded like a typical download (crf 23)."""
    W, H = size
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (H + 64, W + frames, 3), dtype=np.uint8), (0, 0), 2.0)
    video = np.stack([big[32 + int(8 * np.sin(t / 9)): 32 + int(8 * np.sin(t / 9)) + H, t: t + W]
                      for t in range(frames)])
    path = folder / "bench.mp4"
    encode_h264(path, video, crf=23)
    return path


def _stages(path: str, cfg: DataConfig, track_length: int, repeat: int = 5) -> dict[str, float]:
    """Median milliseconds per stage of one clip, in this process: decode and geometry timed apart (a dataset item
    crops each frame as it is decoded, the same work). Every round, and a read again on a corrected count, draws
    the clip and its crop from the same seed: the rounds time one clip, the one a process that knew the count
    would."""
    times: dict[str, list[float]] = {"open": [], "decode": [], "geometry": [], "to_tensor": []}

    def read() -> tuple[float, float, float, ClipIndices, np.ndarray, Geometry]:  # timed at open, read, end
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        with open_video(path, cfg.backend, cfg.decode_threads) as reader:
            t1 = time.perf_counter()
            idx = sample_pretrain(reader.num_frames, cfg.num_frames, cfg.stride, cfg.tubelet, track_length, rng)
            raw = reader.read(idx.needed)
            t2 = time.perf_counter()
            return t0, t1, t2, idx, raw, multiscale_crop(reader.size, cfg.img_size, rng, cfg.scales, cfg.max_distort)

    for _ in range(repeat):
        t0, t1, t2, idx, raw, geom = with_true_count(read)
        frames = apply_geometry(raw, geom)
        t3 = time.perf_counter()
        to_clip(frames[np.searchsorted(idx.needed, idx.clip)])
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key].append(dt * 1e3)
    out = {k: float(np.median(v)) for k, v in times.items()}
    out["decoded_frames"] = int(len(idx.needed))
    return out


def _timed_rounds(clips: int, workers: int, batch: int) -> int:
    """Rounds of ``max(workers, 1)`` batches timed for at least ``clips`` clips (:func:`_throughput`)."""
    return -(-clips // (batch * max(workers, 1)))


def _throughput(ds: PretrainDataset, workers: int, batch: int, clips: int) -> float:
    """Clips/s of whole rounds of batches (a batch of each worker), after the first round: ``w`` workers make
    their first batches at once, all before the first arrives, so timing from the first batch counted the round's
    others as made in no time, and a last round of fewer batches than workers in the time of a whole one (``w`` =
    16 read 720 clips/s where 320 were made)."""
    per_round = batch * max(workers, 1)
    items = Subset(ds, range(per_round * (1 + _timed_rounds(clips, workers, batch))))
    loader = make_loader(items, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate)
    it = start_workers(loader)
    for _ in range(max(workers, 1)):  # the first round: the workers' start-up
        next(it)
    t0 = time.perf_counter()
    n = sum(len(b["index"]) for b in it)
    dt = time.perf_counter() - t0
    del it
    return n / dt


FLAGS = {"data.num_frames": "--frames", "data.stride": "--stride", "data.img_size": "--size",
         "data.backend": "--backend", "data.decode_threads": "--decode-threads", "data.num_workers": "--workers",
         "train.batch_size": "--batch", "model.img_size": "--size", "model.num_frames": "--frames"}
"""The config keys :func:`bench_data`'s arguments set, and those its advice names (the workers' and the memory
advice: :func:`mme.utils.said_as`), each with the flag of ``mme bench data`` that gives it."""


@sets_threads
def bench_data(video: str | None = None, workers: Sequence[int] = (0, 1, 2), clips: int = 48, batch: int = 4,
               frames: int = 16, stride: int = 4, size: int = 224, length: int = 4, backend: str = "pyav",
               decode_threads: int = 1, rounds: int = 3, threads: int | None = None,
               json_path: str | None = None) -> dict:
    """``mme bench data``: clips/s through a DataLoader per worker count (the first is the reference), the counts in
    turns for ``rounds`` rounds, and the stages of one clip, printed (and written to ``json_path``); returns the
    figures."""
    # the figures are keyed by the count: a repeat's would replace the first's
    check_given_once("--workers", workers, TIMED_AGAIN, "count")
    check_bench_json(json_path, [("the video benchmarked", video)])  # before the benchmark, not after it
    require_backend(backend, "--backend")  # before a video is made
    threads = threads or torch.get_num_threads()
    cv2.setNumThreads(threads)  # (the reference decodes here: OpenCV on the count printed; @sets_threads puts it back)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with keys_as_flags(FLAGS):  # (before a video is made)
            cfg = DataConfig(list_file=str(tmp / "bench.txt"), num_frames=frames, stride=stride, img_size=size,
                             backend=backend, decode_threads=decode_threads)
        video = Path(video) if video else generated_video(tmp)
        n_items = max(batch * max(w, 1) * (1 + _timed_rounds(clips, w, batch)) for w in workers)  # a warm-up round
        atomic_write_text(tmp / "bench.txt", f"{video.resolve()}\n" * n_items)
        window = window_length(frames, stride, cfg.tubelet, length)  # raw frames a clip and its tracks span
        with open_video(video, cfg.backend) as reader:
            info = f"{video.name}: {reader.size[0]}x{reader.size[1]}, {reader.num_frames} frames"
            short = reader.num_frames < window
        stages = _stages(str(video), cfg, length)
        ds = PretrainDataset(cfg, track_length=length)
        with keys_as_flags(FLAGS, overrides=False):  # (the workers' warning and advice name its flags)
            timed = in_turns({w: functools.partial(_throughput, ds, w, batch, clips) for w in workers}, rounds)
    ratios = {w: ratios_in_rounds(timed[w], timed[workers[0]]) for w in workers}  # each round's own
    rates = {w: statistics.median(each) for w, each in timed.items()}
    print(f"mme bench data | {cpu_name()} | {counted(threads, 'thread')} in this process, 1 per worker | {info} | "
          f"backend {cfg.backend}")
    print(f"clip: {cfg.num_frames} frames at stride {cfg.stride}, tracks L={length} -> "
          f"{stages['decoded_frames']} raw frames decoded, multi-scale crop to {cfg.img_size}²")
    if short:
        print(f"  (the video is shorter than the clip's window of {window} raw frames: as in training, the clip starts "
              "at 0 and repeats the video's last frame)")
    print("stages of one clip (ms, median): " + ", ".join(
        f"{k} {stages[k]:.1f}" for k in ("open", "decode", "geometry", "to_tensor")))
    several = rounds > 1  # (one round has no range to show)
    print(f"{'workers':>8} {'clips/s':>9} {'vs ' + str(workers[0]) + ' workers':>14}" +
          (f" {'rounds':>11}" if several else ""))
    for w, r in rates.items():
        print(f"{w:>8} {r:>9.2f} {statistics.median(ratios[w]):>13.2f}x" +
              (f" {round_range(ratios[w]):>11}" if several else ""))
    print(f"(wall time; {counted(rounds, 'round')}, the worker counts in turns: clips/s the median over the rounds, "
          "the ratio the median of each round's own" + (", beside it its lowest and highest round)" if several else
                                                         ")"))
    figures = {"cpu": cpu_name(), "threads": threads, "video": info, "backend": cfg.backend,
               "num_frames": cfg.num_frames, "stride": cfg.stride, "img_size": cfg.img_size,
               "track_length": length, "window_frames": window, "video_shorter_than_window": short,
               "stages_ms": stages, "rounds": rounds, "clips_per_s": {str(w): r for w, r in rates.items()},
               "clips_per_s_rounds": {str(w): each for w, each in timed.items()},
               "ratio_rounds": {str(w): each for w, each in ratios.items()}}
    if json_path:
        write_bench_json(json_path, figures)
    return figures
