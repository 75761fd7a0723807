"""Mask generators. Convention: a mask is a bool tensor ``(B, N)`` over tokens in (t, h, w) raster order,
True = masked (hidden from the encoder, predicted by the decoder), False = visible. Every sample has the same
number of masked tokens, so visible tokens can be gathered into a dense ``(B, N_visible, D)`` tensor.

Pass a ``torch.Generator`` to make masks replay exactly (resume, tests).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def num_masked(num_positions: int, ratio: float) -> int:
    """Masked count for ``ratio`` of ``num_positions`` (floor, as VideoMAE: int(0.7*196) = 137)."""
    return int(ratio * num_positions)


def _mask_from_noise(noise: torch.Tensor, n_mask: int) -> torch.Tensor:
    """Mask the ``n_mask`` positions with the largest noise in each row: noise (B, P) -> bool (B, P)."""
    B, P = noise.shape
    ids = torch.argsort(noise, dim=1)  # ascending: the first P - n_mask stay visible
    mask = torch.zeros(B, P, dtype=torch.bool)
    mask.scatter_(1, ids[:, P - n_mask:], True)
    return mask


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Tube masking: one spatial mask of exactly ``int(ratio*h*w)`` positions, repeated over all ``t`` slices.

    Returns bool ``(batch, t*h*w)``.
    """
    t, h, w = grid
    noise = torch.rand(batch, h * w, generator=generator)  # (B, h*w)
    spatial = _mask_from_noise(noise, num_masked(h * w, ratio))
    return spatial[:, None, :].expand(batch, t, h * w).reshape(batch, t * h * w)


def random_mask(batch: int, grid: tuple[int, int, int], ratio: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent random masking of exactly ``int(ratio*N)`` of the ``N = t*h*w`` tokens per sample."""
    t, h, w = grid
    noise = torch.rand(batch, t * h * w, generator=generator)
    return _mask_from_noise(noise, num_masked(t * h * w, ratio))


def blockwise_mask(height: int, width: int, count: int, rng: random.Random, min_block: int = 16,
                   min_aspect: float = 0.3, attempts: int = 10) -> np.ndarray:
    """BEiT's blockwise masking (Bao et al. 2022, Algorithm 1, as BEiT's and the MME release's code draw it) of
    exactly ``count`` of ``height x width`` positions: bool ``(height, width)``.

    Rectangles are added until ``count`` are masked: of area s ~ U(min_block, count - masked), aspect r
    log-uniform in [min_aspect, 1/min_aspect] (the paper writes U, the code draws the log), ``round(sqrt(s r))``
    rows by ``round(sqrt(s / r))`` columns (fewer than the grid's, each), at a uniform top-left corner, taken only
    if it masks 1 to ``count - masked`` new positions; after ``attempts`` tries without one, the positions left
    are drawn at random (the release's top-up, so the count is exact).
    """
    mask = np.zeros((height, width), dtype=bool)
    masked = 0
    log_aspect = math.log(min_aspect)
    while masked < count:
        added = 0
        for _ in range(attempts):
            area = rng.uniform(min_block, count - masked)
            aspect = math.exp(rng.uniform(log_aspect, -log_aspect))
            rows, cols = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if rows < height and cols < width:
                top, left = rng.randint(0, height - rows), rng.randint(0, width - cols)
                block = mask[top:top + rows, left:left + cols]
                new = rows * cols - int(block.sum())
                if 0 < new <= count - masked:
                    block[:] = True
                    added = new
                    break
        if not added:
            break
        masked += added
    free = np.flatnonzero(~mask)
    mask.reshape(-1)[rng.sample(free.tolist(), count - masked)] = True
    return mask


def cube_mask(batch: int, grid: tuple[int, int, int], ratio: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Cube masking (the paper's "cube" ablation; the MME release's ``CubeMaskingGenerator``): each temporal slice
    masks exactly ``int(ratio*h*w)`` positions by :func:`blockwise_mask`, one such mask shared by a run of slices.

    Until every slice has its mask, a run is drawn: a start slice uniform in 0..t (t: none) and a length uniform in
    1..(slices left); a fresh blockwise mask goes to the slices from the start on, up to the length, the last
    slice or a slice that has its mask already, whichever comes first. Returns bool ``(batch, t*h*w)``. The
    draws are Python's (per sample, seeded from ``generator``): a mask takes hundreds of small ones.
    """
    t, h, w = grid
    count = num_masked(h * w, ratio)
    out = np.zeros((batch, t, h, w), dtype=bool)
    for sample in out:
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        done = np.zeros(t, dtype=bool)
        while not done.all():
            start, length = rng.randint(0, t), rng.randint(1, t - int(done.sum()))
            end = start
            while end < min(start + length, t) and not done[end]:
                end += 1
            if end > start:
                sample[start:end] = blockwise_mask(h, w, count, rng)
                done[start:end] = True
    return torch.from_numpy(out).reshape(batch, t * h * w)


MASKS = {"tube": tube_mask, "random": random_mask, "cube": cube_mask}


def masked_per_sample(kind: str, grid: tuple[int, int, int], ratio: float) -> int:
    """How many tokens a mask of ``kind`` hides per sample: ``int(ratio*h*w)`` per temporal slice for tube and
    cube, ``int(ratio*N)`` for random."""
    t, h, w = grid
    return num_masked(t * h * w, ratio) if kind == "random" else t * num_masked(h * w, ratio)


def make_mask(kind: str, batch: int, grid: tuple[int, int, int], ratio: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    if kind not in MASKS:
        raise ValueError(f"unknown mask type {kind!r}; available: {sorted(MASKS)}")
    return MASKS[kind](batch, grid, ratio, generator)
