"""Mask generators. Convention: a mask is a bool tensor ``(B, N)`` over tokens in (t, h, w) raster order,
True = masked (hidden from the encoder, predicted by the decoder), False = visible. Every sample has the same
number of masked tokens, so visible tokens can be gathered into a dense ``(B, N_visible, D)`` tensor.

Pass a ``torch.Generator`` to make masks replay exactly (resume, tests).
"""

from __future__ import annotations

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


MASKS = {"tube": tube_mask, "random": random_mask}


def make_mask(kind: str, batch: int, grid: tuple[int, int, int], ratio: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    if kind not in MASKS:
        raise ValueError(f"unknown mask type {kind!r}; available: {sorted(MASKS)}")
    return MASKS[kind](batch, grid, ratio, generator)
