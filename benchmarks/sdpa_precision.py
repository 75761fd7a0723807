"""Attention in bf16 against fp32 on this CPU, by sequence length: where ``mme.models.vit.attention`` should switch.

Times ``F.scaled_dot_product_attention`` forward and backward (q, k, v as views of one qkv product, as the model
makes them) three ways: fp32 inputs; bf16 inputs with torch's bf16 kernel; bf16 inputs attended in fp32 (cast up,
attended, cast down: what ``attention`` does on a CPU for sequences up to ``SHORT_ON_CPU`` tokens, 400 without AMX
and 191 with it).
The ways take turns, each reports its best. About 4,096 tokens per call (batch = 4096 // N).

    python benchmarks/sdpa_precision.py                  # all cores
    python benchmarks/sdpa_precision.py --threads 1 --lengths 144 392 512 784

Prints per (heads, head dim, N) the ms of each way and "bf16 / in fp32": above 1, attending in fp32 is faster.
Measured on an AVX512-BF16 CPU without AMX and on an AMX CPU: docs/performance.md (logs in benchmarks/results/).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mme.utils import cpu_name


def step(batch: int, heads: int, tokens: int, dim: int, dtype: torch.dtype, in_fp32: bool):
    qkv = torch.randn(batch, tokens, 3 * heads * dim).to(dtype).requires_grad_()

    def run():
        q, k, v = (t.view(batch, tokens, heads, dim).transpose(1, 2) for t in qkv.split(heads * dim, -1))
        if in_fp32:
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out.sum().backward()
        qkv.grad = None

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[48, 144, 392, 512, 784, 1568])
    ap.add_argument("--heads", type=str, nargs="+", default=["6x32", "6x64", "12x64"],
                    help="heads x head dim (6x32: heads as wide as the demo's decoder's, which is 4x32; ViT-S 6x64; "
                         "ViT-B 12x64)")
    ap.add_argument("--seconds", type=float, default=3.0, help="per shape, at least 5 rounds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'heads x dim':>11} {'N':>5} {'batch':>5} {'fp32 ms':>9} {'bf16 ms':>9} {'in fp32 ms':>11} "
          f"{'bf16 / in fp32':>15}")
    for shape in args.heads:
        heads, dim = (int(x) for x in shape.split("x"))
        for tokens in args.lengths:
            batch = max(1, 4096 // tokens)
            ways = {"fp32": step(batch, heads, tokens, dim, torch.float32, False),
                    "bf16": step(batch, heads, tokens, dim, torch.bfloat16, False),
                    "in fp32": step(batch, heads, tokens, dim, torch.bfloat16, True)}
            best = dict.fromkeys(ways, float("inf"))
            for run in ways.values():
                run()  # warm-up
            start, rounds = time.perf_counter(), 0
            while rounds < 5 or time.perf_counter() - start < args.seconds:
                for name, run in ways.items():
                    tic = time.perf_counter()
                    run()
                    best[name] = min(best[name], 1000 * (time.perf_counter() - tic))
                rounds += 1
            print(f"{shape:>11} {tokens:5d} {batch:5d} {best['fp32']:9.1f} {best['bf16']:9.1f} "
                  f"{best['in fp32']:11.1f} {best['bf16'] / best['in fp32']:15.2f}")


if __name__ == "__main__":
    main()
