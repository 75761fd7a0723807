"""``mme bench flow``: each optical-flow method's track accuracy, CPU time and target information.

    mme bench flow --json flow.json                  # probes on mme synth data generated in a temporary folder
    mme bench flow --data /tmp/demo/data --sizes 112 # probes on an existing mme synth folder

For every method of :data:`mme.motion.flow.METHODS` (``tvl1`` only with opencv-contrib):

- **Track accuracy on analytic motion.** Scenes of the demo's kind (mme synth's renderer and high-contrast
  texture; ``scenes`` of them per motion, errors averaged over them: one scene's errors can be several times
  another's) seen by a camera that pans, rolls or zooms at a known rate, H.264-coded as ``mme synth`` codes and
  decoded with PyAV (``open_video``), at each size; tracks from every 3rd frame as the targets make them
  (:func:`mme.motion.tracks.track`). Errors are judged on points whose true path stays ``margin`` px inside the
  frame: the end-point error per step (the tracked step against the true motion of the point where it was) and
  after L steps (drift); and the RMS error of the per-token trajectory target from the tracks against the same
  from the true tracks, with the demo's target (displacements in px) and with the paper's PatchStd.
- **CPU ms per frame pair**: ``raw_flow`` on the decoded pairs, one thread, median of ``time.process_time``.
- **Information of the targets**: one clip per video of a ``mme synth`` folder (train / val / test lists), centre
  crop, as the demo's MME run makes its targets (:data:`DEMO_TARGET`: the tiny CPU recipe with PatchStd off,
  displacements in px); the flattened ``traj`` targets, and the same under PatchStd, feed a linear
  classifier of the video's class. The classifier is ridge regression to one-hot labels (closed form, strength
  chosen on val): the motion layer cannot use mme.eval's probe (imports go one way, docs/architecture.md).

The methods are ranked by accuracy per millisecond, ``1 / (EPE per step x ms per pair)`` at the largest size.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mme.config import from_dict, load_recipe, merge, packaged_recipe, parse_overrides
from mme.data.dataset import DataConfig, Sample
from mme.data.lists import read_list, resolve
from mme.data.sampling import sample_pretrain
from mme.data.synth import SPLITS, draw_params, encode_h264, generate_synth, motion_at, render
from mme.data.transforms import apply_geometry, view_crops
from mme.data.video import open_video, with_true_count
from mme.errors import ConfigError, DataError
from mme.models.config import ModelConfig
from mme.motion.flow import DEFAULT_FLOW, METHODS, flow_available, raw_flow
from mme.motion.targets import TargetConfig, _to_tokens, make_target_fn, patch_std
from mme.motion.tracks import track
from mme.train.config import PretrainConfig
from mme.utils import (
    TIMED_AGAIN,
    check_bench_json,
    check_given_once,
    counted,
    cpu_name,
    plural,
    sets_threads,
    write_bench_json,
)

MOTIONS: dict[str, dict[str, float]] = {
    "translate": {"vx": 2.3 / 224, "vy": -1.4 / 224},  # per frame, as a fraction of the frame side
    "rotate": {"omega": 3.0},  # degrees per frame, clockwise
    "zoom": {"log_scale_rate": 0.02},  # log-scale per frame (2 % per frame)
}
"""The analytic camera motions (the rates of :func:`mme.data.synth.motion_at`; the demo's classes span
0.8-1.4 px/frame of pan at 112², 2.3-7°/frame of roll and 1.2-2.3 %/frame of zoom)."""

DEMO_TARGET = ("tiny_cpu_mme", ("target.patch_norm=false", "target.position_unit=1"))
"""The demo's MME run: its recipe and target overrides (mme.demo.TARGETS['mme']; a test keeps them equal)."""
DEMO_RECIPE = packaged_recipe(DEMO_TARGET[0])
"""Its packaged file, whatever recipe files the working folder holds."""

RIDGE = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""Ridge strengths, relative to the mean squared norm of a standardised feature row."""


def available_methods() -> list[str]:
    """The flow methods this OpenCV build provides (TV-L1 needs opencv-contrib)."""
    return [m for m in METHODS if flow_available(m)]


# --- analytic motion -------------------------------------------------------------------------------------------

def _view_map(p: dict, t: int, num_frames: int, size: int) -> np.ndarray:
    """``(3, 3)`` map from still-image coordinates (origin at the middle view's centre) to view-t pixels:
    ``x = c + s R(angle) q + (dx, dy)`` (mme.data.synth.scene_view)."""
    dx, dy, log_scale, angle = motion_at(p, t, num_frames)
    a, s, c = math.radians(angle), math.exp(log_scale), size / 2
    return np.array([[s * math.cos(a), -s * math.sin(a), c + dx], [s * math.sin(a), s * math.cos(a), c + dy],
                     [0.0, 0.0, 1.0]])


def analytic_video(motion: str, size: int, num_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, size, size, 3)`` uint8 of a demo scene under one camera motion of :data:`MOTIONS`, and the
    ``(T, 3, 3)`` maps from frame-0 pixels to frame-t pixels."""
    rng = np.random.default_rng(seed)
    p = draw_params(0, size, num_frames, rng)
    p.update(vx=0.0, vy=0.0, omega=0.0, log_scale_rate=0.0, osc_ax=0.0, osc_ay=0.0, motion="scene",
             texture="high_contrast")
    rates = dict(MOTIONS[motion])
    for k in ("vx", "vy"):
        if k in rates:
            rates[k] *= size
    p.update(rates)
    frames, _ = render(p, size, num_frames, rng)
    views = [_view_map(p, t, num_frames, size) for t in range(num_frames)]
    return frames, np.stack([v @ np.linalg.inv(views[0]) for v in views])


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """An affine ``(3, 3)`` map applied to points ``(..., 2)``."""
    q = points @ m[:2, :2].T + m[:2, 2]
    return q.astype(np.float32)


def coded(frames: np.ndarray, folder: Path, name: str) -> np.ndarray:
    """``frames`` after an H.264 encode as ``mme synth`` writes its videos and a PyAV decode."""
    path = folder / f"{name}.mp4"
    encode_h264(path, frames)
    with open_video(path) as r:
        return r.read(range(r.num_frames))


def traj_tokens(disp: np.ndarray, side: int) -> torch.Tensor:
    """Displacements ``(S, L, Gh, Gw, 2)`` px per token ``(N, 2, L, K)`` (K = side² points of a patch), as the
    ``traj`` target groups them: with the demo's target (no PatchStd, unit 1 px) the target is these values."""
    return _to_tokens(torch.from_numpy(np.ascontiguousarray(disp, np.float32)), side).permute(0, 3, 1, 2)


def track_errors(frames: np.ndarray, maps: np.ndarray, method: str, length: int, every: int = 3,
                 seed_stride: int = 8, side: int = 2, margin: float = 8.0) -> dict:
    """Tracks of ``frames`` from every ``every``-th frame for ``length`` steps against the analytic ``maps``
    (frame 0 -> frame t), over the points whose true path stays ``margin`` px inside the frame: the mean end-point
    error per step (px; the tracked step against the true motion of the point from where it was), after
    ``length`` steps (px), and the RMS error of the trajectory target per token of ``side``² points (all
    judged), in px (the demo's target) and in z units under PatchStd (the paper's, default floor)."""
    T, H, W = frames.shape[:3]
    starts = list(range(0, T - length, every))
    tr = track(frames, np.arange(T), starts, length, 1, seed_stride, method)
    pos = tr.positions()  # (S, L+1, Gh, Gw, 2)
    rel = [[maps[s + j] @ np.linalg.inv(maps[s]) for j in range(length + 1)] for s in starts]
    truth = np.stack([np.stack([_apply(m, tr.seeds) for m in row]) for row in rel])  # (S, L+1, Gh, Gw, 2)
    inner = (truth[..., 0] >= margin) & (truth[..., 0] <= W - 1 - margin) & (truth[..., 1] >= margin) \
        & (truth[..., 1] <= H - 1 - margin)
    judged = inner.all(1) & tr.valid  # (S, Gh, Gw)
    step_err = []
    for j in range(length):  # the true next position of each tracked point, from where it was
        nxt = np.stack([_apply(rel[i][j + 1] @ np.linalg.inv(rel[i][j]), pos[i, j]) for i in range(len(starts))])
        step_err.append(np.linalg.norm(pos[:, j + 1] - nxt, axis=-1))  # (S, Gh, Gw)
    step_err = np.stack(step_err, -1)  # (S, Gh, Gw, L)
    tokens = _to_tokens(torch.from_numpy(judged)[:, None, ..., None], side).reshape(-1, side * side).all(-1)
    tracked, true = traj_tokens(tr.disp, side)[tokens], traj_tokens(np.diff(truth, axis=1), side)[tokens]
    floor = TargetConfig().std_floor
    return {"epe_step": float(step_err[judged].mean()),
            "epe_end": float(np.linalg.norm(pos[:, -1] - truth[:, -1], axis=-1)[judged].mean()),
            "target_rmse_px": float((tracked - true).pow(2).mean().sqrt()),
            "target_rmse_patchstd": float((patch_std(tracked, floor) - patch_std(true, floor)).pow(2).mean().sqrt()),
            "points": int(judged.sum()), "tokens": int(tokens.sum())}


def pair_ms(videos: list[np.ndarray], method: str, repeat: int) -> float:
    """Median CPU ms of one ``raw_flow`` call over every consecutive pair of ``videos``, ``repeat`` times."""
    raw_flow(videos[0][0], videos[0][1], method)  # the engine and its buffers for this size
    times = []
    for _ in range(repeat):
        for frames in videos:
            for a, b in zip(frames[:-1], frames[1:]):
                t0 = time.process_time()
                raw_flow(a, b, method)
                times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


# --- information of the targets --------------------------------------------------------------------------------

def recipe_configs(recipe: str | Path, overrides: tuple[str, ...]) -> tuple[ModelConfig, TargetConfig, DataConfig]:
    """The model, target and data settings of a pre-training recipe with ``overrides``."""
    data = merge(load_recipe(recipe, PretrainConfig), parse_overrides(list(overrides)))
    return from_dict(ModelConfig, data.get("model", {}), "model."), \
        from_dict(TargetConfig, data.get("target", {}), "target."), from_dict(DataConfig, data.get("data", {}), "data.")


def target_features(data_dir: str | Path, methods: list[str], recipe: str | Path = DEMO_RECIPE,
                    overrides: tuple[str, ...] = DEMO_TARGET[1], seed: int = 0) -> tuple[dict, dict, dict]:
    """Flattened trajectory targets of one clip per video (random window drawn with ``seed``, centre crop) for
    every method, in px (the demo's target) and under PatchStd: ``{split: {method: {"px" | "patchstd": (N, D)}}}``;
    labels ``{split: (N,)}``; the median CPU ms of the workers' tracks per clip (flow and tracking) per method.
    Splits: the folder's train.txt, val.txt (both needed) and test.txt (if it lists videos); an empty list file is
    none (what `mme synth --splits 0.8 0 0.2` writes for a split of no videos). A ``target.flow_margin`` among
    ``overrides`` is refused: the clips are read without one."""
    model, target, data = recipe_configs(recipe, overrides)
    if target.flow_margin:
        raise ConfigError(f"target.flow_margin={target.flow_margin}: the flow benchmark reads its clips as centre "
                          "crops alone, without a margin of the video around them; its targets would not be that "
                          "setting's: leave it out")
    files = {s: Path(data_dir) / f"{s}.txt" for s in SPLITS}
    lists = {s: read_list(f)[0] for s, f in files.items() if f.is_file() and f.stat().st_size}
    if "train" not in lists or "val" not in lists:
        raise DataError(f"{data_dir}: the probe needs videos in train.txt and val.txt (an `mme synth` folder)")
    frames, stride = data.num_frames, data.stride
    fns = {m: make_target_fn(replace(target, flow=m), model) for m in methods}
    side = model.patch_size // fns[methods[0]].geom.seed_stride
    floor = TargetConfig().std_floor
    L = target.track_length
    feats = {s: {m: {"px": [], "patchstd": []} for m in methods} for s in lists}
    labels, ms = {s: [] for s in lists}, {m: [] for m in methods}
    rng = np.random.default_rng(seed)

    def clip(path: str, drawn_from: dict) -> Sample:
        rng.bit_generator.state = drawn_from  # read again on a corrected count: drawn as a process that knew it
        with open_video(path) as r:
            idx = sample_pretrain(r.num_frames, frames, stride, model.tubelet_size, L, rng)
            geom = view_crops(r.size, model.img_size, 1)[0]
            return Sample(apply_geometry(r.read(idx.needed), geom), idx.needed, idx.clip, idx.starts, geom, path, L)

    for split, entries in lists.items():
        for e in entries:
            sample = with_true_count(functools.partial(clip, resolve(e, data_dir), rng.bit_generator.state))
            labels[split].append(e.label)
            for m, fn in fns.items():
                t0 = time.process_time()
                tr = fn.tracks(sample, stride)
                ms[m].append((time.process_time() - t0) * 1000)
                tok = traj_tokens(tr.disp, side)  # (N, 2, L, K)
                feats[split][m]["px"].append(tok.reshape(-1).numpy())
                feats[split][m]["patchstd"].append(patch_std(tok, floor).reshape(-1).numpy())
    stack = {s: {m: {k: np.stack(v) for k, v in d.items()} for m, d in per.items()} for s, per in feats.items()}
    return stack, {s: np.asarray(v) for s, v in labels.items()}, {m: statistics.median(v) for m, v in ms.items()}


def ridge_classifier(x: dict[str, np.ndarray], y: dict[str, np.ndarray], strengths=RIDGE) -> dict:
    """Linear classifier by ridge regression of one-hot labels on features standardised with train statistics,
    in closed (dual) form; the strength with the best val accuracy (ties: the stronger) is reported on val and
    test (when given). Returns ``{"val": acc, "test": acc, "strength": s}``."""
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-6
    z = {k: torch.from_numpy((v - mean) / std).double() for k, v in x.items()}
    n_cls = int(max(v.max() for v in y.values())) + 1
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y["train"]).long(), n_cls).double()
    ym = onehot.mean(0)
    gram = z["train"] @ z["train"].T
    scale = float(gram.diagonal().mean())
    best = None
    for s in strengths:
        alpha = torch.linalg.solve(gram + s * scale * torch.eye(len(gram), dtype=gram.dtype), onehot - ym)
        w = z["train"].T @ alpha
        acc = {k: float(((z[k] @ w + ym).argmax(1).numpy() == y[k]).mean()) for k in z if k != "train"}
        if best is None or acc["val"] >= best["val"]:
            best = {**acc, "strength": s}
    return best


# --- the benchmark ---------------------------------------------------------------------------------------------

SYNTH_SETS = {"demo": {"preset": "demo"}, "object": {}}
"""The ``mme synth`` data probed when no folder is given: the demo's (the class motion moves the whole view) and
``mme synth``'s defaults (an object, about a tenth of the frame, moves over a still background)."""


def _named(data: list[str]) -> dict[str, Path]:
    """The ``--data`` folders by the names the report gives them: each folder's own name (``synth``), or the path as
    given where folders share one (``runs1/synth``, ``runs2/synth``)."""
    names = [Path(os.path.realpath(d)).name for d in data]
    return {str(d) if names.count(name) > 1 else name: Path(d) for d, name in zip(data, names)}


@sets_threads
def run(data: list[str] | None = None, sizes: tuple[int, ...] = (112, 224), methods: list[str] | None = None,
        scenes: int = 4, num_frames: int = 16, repeat: int = 3, threads: int = 1, seed: int = 0) -> dict:
    """Every figure of the benchmark (module docstring) as a dict: the errors are means over ``scenes`` scenes
    per motion (seeds ``seed``, ``seed + 1``, ...); ``data``: ``mme synth`` folders to probe on (default:
    :data:`SYNTH_SETS`, generated in a temporary folder)."""
    methods = methods or available_methods()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"--methods: unknown flow {plural(len(unknown), 'method')} {unknown}; choose from "
                          f"{list(METHODS)}")
    check_given_once("--methods", methods, TIMED_AGAIN, "method")
    check_given_once("--sizes", sizes, TIMED_AGAIN, "size")
    check_given_once("--data", [os.path.realpath(d) for d in data or ()], "a repeat spelled otherwise is probed "
                     "and reported again under each spelling", "folder", shown=" ".join(map(str, data or ())))
    L = recipe_configs(DEMO_RECIPE, DEMO_TARGET[1])[1].track_length
    result = {"cpu": cpu_name(), "threads": threads, "sizes": list(sizes), "motions": list(MOTIONS),
              "scenes": scenes, "track_length": L, "num_frames": num_frames, "data": {},
              "methods": {m: {"probe": {}} for m in methods}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            videos = {motion: [] for motion in MOTIONS}
            for motion in MOTIONS:
                for k in range(seed, seed + scenes):
                    frames, maps = analytic_video(motion, size, num_frames, k)
                    videos[motion].append((coded(frames, Path(tmp), f"{motion}{size}_{k}"), maps))
            for m in methods:
                row = result["methods"][m]
                for motion, clips in videos.items():
                    errors = [track_errors(frames, maps, m, L) for frames, maps in clips]
                    row[f"{motion}@{size}"] = {k: float(np.mean([e[k] for e in errors])) for k in errors[0]}
                row[f"ms_pair@{size}"] = pair_ms([f for clips in videos.values() for f, _ in clips], m, repeat)
        folders = _named(data) if data else {
            name: generate_synth(Path(tmp) / name, workers=threads, **design).root
            for name, design in SYNTH_SETS.items()}
        for name, folder in folders.items():
            x, y, clip_ms = target_features(folder, methods, seed=seed)
            made = "mme synth" + "".join(f" --{k} {v}" for k, v in SYNTH_SETS.get(name, {}).items())
            result["data"][name] = {"folder": str(folder) if data else made,
                                    **{f"videos_{s}": len(v) for s, v in y.items()}}
            for m in methods:
                row = result["methods"][m]
                row.setdefault("targets_ms_clip", clip_ms[m])
                row["probe"][name] = {k: ridge_classifier({s: x[s][m][k] for s in x}, y) for k in ("px", "patchstd")}
    big = max(sizes)
    for row in result["methods"].values():
        row["epe_step_mean"] = float(np.mean([row[f"{k}@{big}"]["epe_step"] for k in MOTIONS]))
        row["acc_per_ms"] = 1.0 / (row["epe_step_mean"] * row[f"ms_pair@{big}"])
    result["ranking"] = sorted(methods, key=lambda m: -result["methods"][m]["acc_per_ms"])
    return result


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def report(r: dict) -> str:
    """:func:`run`'s figures as two tables with their captions: track accuracy and speed; target information."""
    sizes, motions, big = r["sizes"], r["motions"], max(r["sizes"])
    methods = [(f"{m} (default)" if m == DEFAULT_FLOW else m, r["methods"][m]) for m in r["ranking"]]

    def mean(row, key, size):
        return np.mean([row[f"{k}@{size}"][key] for k in motions])

    lines = ["End-point error per step (px) by motion and size, mean over the scenes; after L: mean error after L "
             "steps (px); target err: "
             "RMS error of the trajectory target in px (the demo's) / in z (PatchStd); ms/pair: median CPU ms of one "
             f"flow; ranked by accuracy per ms, 1 / (mean EPE per step at {big} x ms/pair at {big}):", ""]
    head = ["method"] + [f"{k} {s}" for s in sizes for k in motions] + [f"after L {s}" for s in sizes] \
        + [f"target err {s}" for s in sizes] + [f"ms/pair {s}" for s in sizes] + ["1/(EPE·ms)"]
    lines += _table(head, [
        [m] + [f"{row[f'{k}@{s}']['epe_step']:.3f}" for s in sizes for k in motions]
        + [f"{mean(row, 'epe_end', s):.2f}" for s in sizes]
        + [f"{mean(row, 'target_rmse_px', s):.3f} / {mean(row, 'target_rmse_patchstd', s):.2f}" for s in sizes]
        + [f"{row[f'ms_pair@{s}']:.2f}" for s in sizes] + [f"{row['acc_per_ms']:.2f}"] for m, row in methods])
    sets = r["data"]
    lines += ["", "Linear-classifier top-1 % val / test on the flattened trajectory targets (px, and PatchStd) of "
              "one clip per video, the demo's clips (8 x 96², stride 2); tracks ms/clip: median CPU ms of the flow "
              "and tracking of one such clip of the first data set. Data: " + "; ".join(
                  f"{k} = {v['folder']} ({v['videos_train']} train, {v['videos_val']} val, "
                  f"{v.get('videos_test', 0)} test videos)" for k, v in sets.items()), ""]
    head = ["method", "tracks ms/clip"] + [f"{d} {k}" for d in sets for k in ("px", "PatchStd")]
    lines += _table(head, [[m, f"{row['targets_ms_clip']:.1f}"] + [
        f"{100 * p['val']:.1f} / " + (f"{100 * p['test']:.1f}" if "test" in p else "–")
        for d in sets for p in (row["probe"][d]["px"], row["probe"][d]["patchstd"])] for m, row in methods])
    return "\n".join(lines)


def bench_flow(data: list[str] | None = None, sizes: list[int] | None = None, methods: list[str] | None = None,
               scenes: int = 4, repeat: int = 3, threads: int = 1, json_path: str | None = None) -> dict:
    """``mme bench flow``: :func:`run`, printed as tables (and written to ``json_path``); returns the figures."""
    check_bench_json(json_path)  # before the benchmark, not after it (its --data: folders)
    odd = [side for side in sizes or () if side % 2]
    if odd:
        raise ConfigError(f"--sizes {odd}: the analytic videos are H.264 (4:2:0), whose sides are even")
    blind = [side for side in sizes or () if side % 16 or side < 48]
    if blind:
        raise ConfigError(f"--sizes {blind}: the trajectory target is judged per token of 2x2 points tracked every 8 "
                          "px whose points start 8 px inside the frame; sides must be multiples of 16 (whole tokens), "
                          "from 48 (32 holds none)")
    r = run(data, tuple(sizes or (112, 224)), methods, scenes, repeat=repeat, threads=threads)
    print(f"mme bench flow: tracks of {r['track_length']} steps on {r['num_frames']} frames of {len(r['motions'])} "
          f"analytic camera motions x {r['scenes']} scenes at {r['sizes']} px (H.264); "
          f"{counted(r['threads'], 'thread')}, {r['cpu']}")
    print(report(r))
    if json_path:
        write_bench_json(json_path, r)
    return r
