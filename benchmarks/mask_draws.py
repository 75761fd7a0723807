"""What the training step's process spends on a batch's masks, now that the loader workers draw them.

    python benchmarks/mask_draws.py --batch 64 --rounds 7

For each ``model.mask_type`` at ``--ratio`` on a 16 x 224² clip's (8, 14, 14) grid, in one process on one thread,
best of ``--rounds``: the ms to draw a batch's masks one clip at a time, each from its (seed, epoch, index)
(:func:`mme.train.pretrain.sample_mask`): what the step's process did for every batch before, and what the workers
now share, one clip per item; the workers' ms to stack them (``collate``); and what the step's process does with
them now, ``batch["mask"].to(device)`` (on a CPU, nothing).
"""

from __future__ import annotations

import argparse
import time

import torch

from mme.data.dataset import collate
from mme.models.config import ModelConfig
from mme.train.pretrain import sample_mask
from mme.utils import cpu_name


def best_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    indices = [37 * k for k in range(args.batch)]  # any dataset indices
    print(f"{cpu_name()}, batch {args.batch}, grid (8, 14, 14), ratio {args.ratio}, best of {args.rounds}, ms")
    print("mask   draws per batch (per clip)   stacking   step's process now")
    for kind in ("tube", "random", "cube"):
        cfg = ModelConfig(img_size=224, num_frames=16, mask_type=kind, mask_ratio=args.ratio)
        drawn = best_ms(lambda cfg=cfg: [sample_mask(cfg, 0, 3, i) for i in indices], args.rounds)
        items = [{"mask": sample_mask(cfg, 0, 3, i)} for i in indices]
        stacking = best_ms(lambda items=items: collate(items), args.rounds)
        batch = collate(items)
        step = best_ms(lambda batch=batch: batch["mask"].to("cpu", non_blocking=True), args.rounds)
        print(f"{kind:6} {drawn:10.2f} ({drawn / args.batch:.3f}) {stacking:16.3f} {step:14.4f}")


if __name__ == "__main__":
    main()
