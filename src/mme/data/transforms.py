"""Video transforms with one geometry for every frame of a clip (no torchvision)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(ref: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = [1] * ref.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, dtype=ref.dtype, device=ref.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=ref.dtype, device=ref.device).view(shape)
    return mean, std


def normalize(video: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised; the channel axis defaults to C of ``(..., C, T, H, W)``."""
    mean, std = _stats(video, channel_dim)
    return (video - mean) / std


def denormalize(video: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    mean, std = _stats(video, channel_dim)
    return video * std + mean
