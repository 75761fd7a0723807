"""The pre-training step's FLOPs, counted analytically, and the matmul peak they are measured against (MFU).

MFU = (FLOPs of the step / seconds per step) / the peak GFLOP/s of a large matmul in the same precision, on the
same device and thread count, measured in the same run: the fastest of its operand layouts, which the layers'
matmuls all run (:func:`matmul_peak`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mme.models.config import ModelConfig, mlp_width
from mme.models.mae import HeadSpec
from mme.models.masking import masked_per_sample


def block_flops(tokens: int, dim: int, mlp_dim: int) -> int:
    """Forward FLOPs of one transformer block on ``tokens`` tokens of width ``dim``: the matmuls only,
    ``2 n (3 d² + d² + 2 d m)`` (qkv, output projection, MLP) ``+ 4 n² d`` (QKᵀ and attention × V)."""
    return 2 * tokens * (4 * dim * dim + 2 * dim * mlp_dim) + 4 * tokens * tokens * dim


def step_flops(cfg: ModelConfig, heads: list[HeadSpec], batch: int) -> int:
    """FLOPs of one training step (forward and backward) of the masked autoencoder on ``batch`` clips:
    ``batch × (3 F − 2 n_v K D)``, the backward counted as twice the forward but for the patch embedding's, which
    computes no gradient of its input (the clip) and so costs once its forward; with the forward per clip

        F = 2 n_v K D                       patch embedding of the visible tokens (K = C t p², as computed)
          + L_e · block(n_v, D, r D)        encoder on the n_v visible tokens
          + 2 n_v D D_d                     encoder_to_decoder
          + L_d · block(N, D_d, r D_d)      decoder on all N tokens
          + Σ heads 2 n_m (D_d h + h c)     heads on the n_m masked tokens (h = hidden width; D_d c without one)

    (:func:`block_flops`). Matmuls only: normalisation, softmax, activations, the loss, the targets and the
    optimizer are left out, as in the usual MFU count."""
    n = cfg.num_tokens
    n_masked = masked_per_sample(cfg.mask_type, cfg.grid, cfg.mask_ratio)
    n_visible = n - n_masked
    d, dd = cfg.embed_dim, cfg.decoder_dim
    k = cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2
    embedding = 2 * n_visible * k * d
    forward = (embedding
               + cfg.depth * block_flops(n_visible, d, mlp_width(d, cfg.mlp_ratio))
               + 2 * n_visible * d * dd
               + cfg.decoder_depth * block_flops(n, dd, mlp_width(dd, cfg.mlp_ratio))
               + sum(2 * n_masked * (dd * h.hidden + h.hidden * h.dim if h.hidden else dd * h.dim) for h in heads))
    return batch * (3 * forward - embedding)


LAYOUTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "a·bᵀ": lambda a, b: torch.mm(a, b.t()),
    "a·b": lambda a, b: torch.mm(a, b),
    "aᵀ·b": lambda a, b: torch.mm(a.t(), b),
}
"""The operand layouts of the step's matmuls, each a kernel of its own: a linear layer runs ``x·Wᵀ`` forward,
``g·W`` and ``gᵀ·x`` backward. Where a dtype is emulated their speeds differ by more than 10x (bf16 and fp16 on
an AVX2 CPU), so a peak of one layout can be below the step's rate."""


CONTENDER = 2.0
""":func:`matmul_peak` times a layout at the next size only where its best at this size is within this factor of
the fastest layout's: an emulated dtype's slow layouts (10x and more) would otherwise cut the search short."""


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int | None = None,
                seconds: float = 1.0) -> tuple[float, int, str]:
    """``(GFLOP/s, n, layout)``: the best rate of an ``n × n`` matmul in ``dtype`` on ``device`` at the current
    thread count over the :data:`LAYOUTS`, timed in turns for about ``seconds``, and the layout that reached it.
    ``n = size``, or found by doubling from 512 while the fastest layout's product at twice the size, 8 times as
    long, fits in ``seconds / 4`` (so that each layout is timed several times a call), up to 2048 on CPU (8192 on
    CUDA, where small products leave the GPU idle): the largest such size, whose products are as large as the
    layers' (a smaller one in cache can run faster than the layers' matmuls do). Only the layouts within
    :data:`CONTENDER` of the fastest are timed at the next size, so an emulated dtype's slow layouts (bf16 ``a·b``
    on AVX2, 2 GFLOP/s where ``a·bᵀ`` runs 17) do not stop the search. Before, the size grew until one product took
    0.5 s (2048² in fp32 at 1 thread, 0.12-0.18 s a product: two or three per layout a call, whose best swung
    twofold on a loaded machine)."""
    max_size = size or (8192 if device.type == "cuda" else 2048)

    def timed(layout: str, a: torch.Tensor, b: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        LAYOUTS[layout](a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - tic

    def sized(n: int, layouts: list[str]) -> dict:  # an n × n pair of operands, warmed up in ``layouts``
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for layout in layouts:
            timed(layout, a, b)
        return {"n": n, "a": a, "b": b, "best": dict.fromkeys(layouts, float("inf"))}

    def best_in_turns(c: dict, budget: float) -> None:  # each layout's best, the layouts timed in turns (3 at least)
        spent, turns = 0.0, 0
        while spent < budget or turns < 3:
            for layout in c["best"]:
                sec = timed(layout, c["a"], c["b"])
                c["best"][layout], spent = min(c["best"][layout], sec), spent + sec
            turns += 1

    def rate(c: dict) -> float:
        return 2 * c["n"] ** 3 / min(c["best"].values()) / 1e9

    chosen = sized(size or 512, list(LAYOUTS))
    while not size:
        best_in_turns(chosen, seconds / 10)
        fastest = min(chosen["best"].values())
        if chosen["n"] >= max_size or 8 * fastest > seconds / 4:
            break  # the fastest layout's product at twice the size, 8 times as long, would not fit in seconds / 4
        contenders = [layout for layout, sec in chosen["best"].items() if sec <= CONTENDER * fastest]
        chosen = sized(2 * chosen["n"], contenders)
    best_in_turns(chosen, seconds)
    fastest = min(chosen["best"], key=chosen["best"].get)
    return rate(chosen), chosen["n"], fastest
