"""Time per frame pair of the ``torch-lk`` flow (mme.motion.torch_flow.lk_flow) by frame size and pairs per call,
on a CPU or a GPU, to size ``track_in_step``'s chunks (``chunk_px``) and to put a figure on the step's share.

    python benchmarks/torch_flow_speed.py                      # this CPU, one thread
    python benchmarks/torch_flow_speed.py --device cuda        # a GPU (wall time, the queue drained)

Each row: one size and number of pairs per call, the median of ``--repeat`` calls after one untimed call; ms per
pair and, on a GPU, the peak memory of a call. Random frames with a one-pixel shift: the flow's work does not
depend on the content.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from mme.motion.torch_flow import lk_flow
from mme.train.bench import seconds_per_step
from mme.utils import counted, cpu_name


def time_call(a: torch.Tensor, b: torch.Tensor, repeat: int) -> float:
    """Median seconds of ``lk_flow(a, b)`` over ``repeat`` calls (wall time, the device's queue drained)."""
    lk_flow(a, b)
    return statistics.median(seconds_per_step(lambda: lk_flow(a, b), 1, a.device) for _ in range(repeat))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 224], help="square frame sides")
    p.add_argument("--pairs", type=int, nargs="+", default=None,
                   help="pairs per call (default: 1 4 16 on a CPU, 16 64 256 1024 on a GPU)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    pairs = args.pairs or ([1, 4, 16] if dev.type == "cpu" else [16, 64, 256, 1024])
    where = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
             else f"{cpu_name()}, {counted(args.threads, 'thread')}")
    print(f"torch-lk per frame pair on {where}")
    print("| side | pairs per call | pixels per call | ms per pair | peak GiB |")
    print("|---|---|---|---|---|")
    for side in args.sizes:
        for n in pairs:
            a = torch.rand(n, side, side, device=dev) * 255
            b = torch.roll(a, 1, -1)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            sec = time_call(a, b, args.repeat)
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f}" if dev.type == "cuda" else "–"
            print(f"| {side} | {n} | {n * side * side:,} | {1000 * sec / n:.3f} | {peak} |", flush=True)


if __name__ == "__main__":
    main()
