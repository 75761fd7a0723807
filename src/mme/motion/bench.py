"""``mme bench targets``: what the online motion targets cost against decoding the same window.

    mme bench targets                         # 16 x 224² at stride 4, one core, a generated H.264 video
    mme bench targets --video clip.mp4 --threads 2 --json out.json

The data worker's stages are timed separately on one sample: decode (the window's needed raw frames + the
crop/resize), flow (every frame pair the tracks cover), tracking (bilinear lookups), and the worker's whole target
function (flow, tracks and what it ships) as a check. Then the training step's share, per clip: every target it
makes of a batch (``--batch`` clips, on this CPU, as ``mme bench pipeline`` times it), named from the kind's heads:
HOG along the tracks (shape), PatchStd and the token layout, and the clip's pixel or HOG target where the kind has
one (``mme-released``: HOG of the clip, none along the tracks). With a flow of the training step (``--flow
torch-lk``) the flow and the tracks are part of the step's share, and the worker's targets are its target function
(picking the frames to ship); the per-pair flow and tracking stages are still timed, on this CPU.
Goal: worker targets <= 2x decode. A target without motion heads (pixel, hog) has no flow nor tracks to time and is
refused; ``mme bench pipeline`` times the pixel target.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mme.data.dataset import Sample, collate
from mme.data.sampling import ClipIndices, sample_pretrain
from mme.data.transforms import Geometry, apply_geometry, to_clip, view_crops
from mme.data.video import open_video, with_true_count
from mme.errors import ConfigError
from mme.models.config import ModelConfig
from mme.motion.flow import DEFAULT_FLOW, STEP_FLOWS, Compensation, pair_flow
from mme.motion.targets import KIND_ONCE, TargetConfig, make_target_fn, token_geometry
from mme.motion.tracks import track
from mme.train.pretrain import make_step_targets
from mme.utils import (
    check_bench_json,
    check_given_once,
    counted,
    cpu_name,
    keys_as_flags,
    sets_threads,
    write_bench_json,
)


def _generated_video(folder: Path, frames: int) -> str:
    """A 256² H.264 video of a textured object moving over a textured background (mme synth's renderer)."""
    from mme.data.synth import draw_params, encode_h264, render

    rng = np.random.default_rng(0)
    path = folder / "bench.mp4"
    encode_h264(path, render(draw_params(0, 256, frames, rng), 256, frames, rng, camera_jitter=2.0)[0])
    return str(path)


def _step_makes(cfg: TargetConfig, flow_in_step: bool) -> str:
    """What the training step makes of this target, in words: the label of its timed share."""
    heads = cfg.heads
    parts = [*(["flow, tracks"] if flow_in_step else []), *(["pixel target"] if "pixel" in heads else []),
             *(["HOG of the clip"] if "hog" in heads else []), *(["HOG along the tracks"] if "shape" in heads else [])]
    return ", ".join(parts) + " + assembly"


def _time(fn, repeat: int) -> tuple[float, object]:
    """Median CPU ms of this process (all its threads) over ``repeat`` calls, and the last result. CPU time, not
    wall time: on a shared machine the wall clock measures the neighbours; with one thread the two agree."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times), out


FLAGS = {"target.kind": "--kind", "target.track_length": "--length", "target.flow": "--flow",
         "model.img_size": "--size", "model.num_frames": "--frames"}
"""The config keys :func:`run`'s arguments set, and the flag of ``mme bench targets`` that gives each."""


@sets_threads
def run(video: str | None = None, frames: int = 16, stride: int = 4, size: int = 224, length: int | None = None,
        kind: str = "mme", repeat: int = 3, threads: int | None = 1, flow: str = DEFAULT_FLOW, batch: int = 8) -> dict:
    """Median ms per stage over ``repeat`` runs on one clip; returns the figures."""
    with keys_as_flags(FLAGS):
        cfg = TargetConfig(kind=kind, track_length=length, flow=flow)
        m = ModelConfig(img_size=size, num_frames=frames)
    check_given_once("--kind", cfg.kinds, KIND_ONCE, "kind", shown=kind)
    if not cfg.tracked:
        raise ConfigError(f"--kind {kind} has no motion head (its heads: {', '.join(cfg.heads)}), so no flow nor "
                          "tracks to time; `mme bench pipeline` times the pixel target (a hog target's data worker "
                          "decodes as pixel's does)")
    g = token_geometry(cfg, m)
    L = cfg.track_length
    with tempfile.TemporaryDirectory() as tmp:
        path = video or _generated_video(Path(tmp), frames * stride + L + 8)

        def decoded() -> tuple[ClipIndices, Geometry, float, np.ndarray]:  # the clip, its crop, ms, the window
            with open_video(path) as r:
                n, src = r.num_frames, r.size
            idx = sample_pretrain(n, frames, stride, m.tubelet_size, L, np.random.default_rng(0))
            geom = view_crops(src, size, 1)[0]

            def decode():
                with open_video(path, threads=threads or 0) as reader:
                    return apply_geometry(reader.read(idx.needed), geom)

            return idx, geom, *_time(decode, repeat)

        idx, geom, t_decode, window = with_true_count(decoded)
    sample = Sample(window, idx.needed, idx.clip, idx.starts, geom, path, L)
    at = {int(f): i for i, f in enumerate(idx.needed)}
    last = int(idx.needed[-1])
    pairs = sorted({(min(s + j, last), min(s + j + 1, last)) for s in idx.starts for j in range(L)})
    pairs = [p for p in pairs if p[0] != p[1]]
    comp = Compensation() if cfg.compensate else None

    def flows():
        return {p: pair_flow(window[at[p[0]]], window[at[p[1]]], cfg.flow, comp) for p in pairs}

    t_flow, cache = _time(flows, repeat)

    def tracking():
        return track(window, idx.needed, idx.starts, L, 1, g.seed_stride, cfg.flow, cfg.compensate, cfg.max_disp,
                     flow_cache=dict(cache), clamp=True)

    t_track, _ = _time(tracking, repeat)
    fn = make_target_fn(cfg, m)
    t_fn, motion = _time(lambda: fn(sample), repeat)
    item = {"video": to_clip(sample.frames_at(sample.clip)), "motion": motion}  # a pre-training item's
    shipped = collate([item] * batch)
    t_step, _ = _time(lambda: make_step_targets(shipped, cfg, m, torch.device("cpu")), repeat)
    t_step /= batch
    in_step = flow in STEP_FLOWS
    total = t_fn if in_step else t_flow + t_track
    return {
        "video": path if video else "generated 256x256 H.264", "clip": f"{frames}x{size}x{size}", "stride": stride,
        "kind": kind, "flow": flow, "track_length": L, "threads": threads, "frames_decoded": len(idx.needed),
        "flow_pairs": len(pairs), "cpu": cpu_name(), "decode_ms": t_decode, "flow_ms": t_flow, "tracking_ms": t_track,
        "total_ms": total, "target_fn_ms": t_fn, "batch": batch, "step_ms": t_step,
        "flow_in": "training step" if in_step else "data worker", "step_makes": _step_makes(cfg, in_step),
        "ratio_total_decode": total / t_decode,
    }


def bench_targets(video: str | None = None, frames: int = 16, stride: int = 4, size: int = 224,
                  length: int | None = None, kind: str = "mme", flow: str | None = None, repeat: int = 3,
                  threads: int | None = 1, batch: int = 8, json_path: str | None = None) -> dict:
    """``mme bench targets``: :func:`run`, printed as a table (and written to ``json_path``); returns the
    figures."""
    check_bench_json(json_path, [("the video benchmarked", video)])  # before the benchmark, not after it
    r = run(video, frames, stride, size, length, kind, repeat, threads, flow or DEFAULT_FLOW, batch)
    print(f"mme bench targets: {r['clip']} stride {r['stride']}, target {r['kind']} L={r['track_length']}, "
          f"flow {r['flow']}, "
          f"{counted(r['threads'], 'thread')}, {r['cpu']}")
    print(f"  {r['frames_decoded']} raw frames decoded, {r['flow_pairs']} flow pairs; video: {r['video']}")
    in_step = r["flow_in"] == "training step"
    print("  median CPU time of this process per stage, data worker" + (
        " (flow and tracking: one pair at a time here, batched in the training step in training):" if in_step
        else ":"))
    for key in ("decode_ms", "flow_ms", "tracking_ms", "total_ms", "target_fn_ms"):
        print(f"  {key[:-3]:<14} {r[key]:8.1f} ms")
    print(f"  total / decode {r['ratio_total_decode']:8.2f}x   (goal <= 2x; total: the worker's "
          + ("target function)" if in_step else "flow and tracking)"))
    print(f"  training step, per clip (batch {r['batch']}, this CPU): {r['step_makes']} {r['step_ms']:.1f} ms")
    if json_path:
        write_bench_json(json_path, r)
    return r
