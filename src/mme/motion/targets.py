"""Reconstruction targets in token layout ``(B, N, C)``, N in (t, h, w) raster order (mme-method.md §7-8)."""

from __future__ import annotations

import torch

from mme.data.transforms import denormalize


def pixel_target(video: torch.Tensor, tubelet: int, patch: int, norm: bool = True) -> torch.Tensor:
    """VideoMAE's pixel target from an ImageNet-normalised clip ``(B, C, T, H, W)``.

    Each token's ``tubelet*patch*patch`` pixels are ordered (t, y, x, c); with ``norm`` they are z-scored per
    channel over the token (unbiased std + 1e-6), as VideoMAE's ``norm_pix_loss``. Returns ``(B, N, t*p*p*C)``.
    """
    frames = denormalize(video.float())  # [0, 1]
    B, C, T, H, W = frames.shape
    x = frames.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, t, h, w, tubelet, p, p, C)
    x = x.reshape(B, -1, tubelet * patch * patch, C)  # (B, N, tubelet*p*p, C)
    if norm:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.reshape(B, x.shape[1], -1)
