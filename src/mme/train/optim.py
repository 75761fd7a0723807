"""AdamW with VideoMAE's parameter groups, optional layer-wise lr decay, and per-step schedules.

Schedules are pure functions of the optimizer step, so resuming needs only the step (mme-method.md §9:
lr 1.5e-4 x batch/256, linear warm-up, cosine to min lr; weight decay 0.05 on matrices only).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from mme.config import check_integers
from mme.errors import ConfigError

# Parameters that are never decayed besides 1-D ones (norms, biases): position tables and learned tokens.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")  # encoder blocks only: 'decoder_blocks.0.' does not match


@dataclass
class OptimConfig:
    """AdamW and its schedules (defaults: MME's released K400 recipe, mme-method.md §9)."""

    SHADOWED_BY: ClassVar[dict[str, str]] = {"warmup_epochs": "warmup_steps"}
    base_lr: float = 1.5e-4
    """Learning rate per 256 clips: the actual peak lr is base_lr x effective_batch / lr_batch_ref."""
    min_lr: float = 1e-5
    """Final lr of the cosine, also per 256 clips (scaled like base_lr)."""
    lr_batch_ref: int = 256
    """The batch size that base_lr and min_lr refer to (linear scaling rule)."""
    warmup_epochs: float = 40.0
    """Linear warm-up length in epochs (ignored when warmup_steps is set)."""
    warmup_steps: int | None = None
    """Linear warm-up length in optimizer steps; overrides warmup_epochs."""
    weight_decay: float = 0.05
    """Weight decay at step 0 (matrices only; 1-D params, biases, pos/cls/mask tokens get none)."""
    weight_decay_end: float | None = None
    """Weight decay at the last step (cosine from weight_decay); None = constant."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip_grad: float | None = None
    """Max global gradient norm; None = no clipping (the release clips nothing)."""
    layer_decay: float | None = None
    """Layer-wise lr decay factor per encoder block (fine-tuning); None = off."""

    def __post_init__(self):
        check_integers(self, "optim")
        for name in ("base_lr", "min_lr", "eps", "weight_decay", "weight_decay_end"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"optim.{name} must be >= 0, got {value}")
        if self.min_lr > self.base_lr:  # both scale alike with the batch: the cosine would raise the lr
            raise ConfigError(f"optim.min_lr={self.min_lr:g} is above optim.base_lr={self.base_lr:g}: the cosine "
                              "decays from base_lr to min_lr; lower optim.min_lr")
        if self.lr_batch_ref <= 0:
            raise ConfigError(f"optim.lr_batch_ref must be positive, got {self.lr_batch_ref}")
        if self.warmup_epochs < 0 or (self.warmup_steps is not None and self.warmup_steps < 0):
            raise ConfigError("optim.warmup_epochs / optim.warmup_steps must be >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ConfigError(f"optim.clip_grad must be positive or null, got {self.clip_grad}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"optim.layer_decay must be in (0, 1] or null, got {self.layer_decay}")

    def scaled_lr(self, effective_batch: int) -> tuple[float, float]:
        """(peak lr, final lr) for an effective batch, by the linear scaling rule."""
        k = effective_batch / self.lr_batch_ref
        return self.base_lr * k, self.min_lr * k


def _layer_id(name: str, num_layers: int) -> int:
    """0 for the embedding (patches, positions, cls), i+1 for encoder block i, num_layers+1 for the rest."""
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    if any(k in name for k in ("patch_embed", "pos_embed", "cls_token")):
        return 0
    return num_layers + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW groups: no weight decay on 1-D parameters, biases and ``NO_DECAY_NAMES``; with ``layer_decay``
    each group also carries ``lr_scale = layer_decay ** (num_layers + 1 - layer_id)`` (BEiT/VideoMAE
    fine-tuning), the encoder blocks being the layers named ``...blocks.<i>.``. Every group has ``lr_scale``
    (1.0 without layer decay) and its ``weight_decay``; the schedules multiply into both."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    num_layers = 1 + max((int(m.group(1)) for n, _ in named if (m := _BLOCK.search(n))), default=-1)
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in named:
        decay = p.ndim > 1 and not name.endswith(".bias") and not any(k in name for k in NO_DECAY_NAMES)
        layer = _layer_id(name, num_layers) if layer_decay is not None else 0
        scale = layer_decay ** (num_layers + 1 - layer) if layer_decay is not None else 1.0
        g = groups.setdefault((decay, layer), {"params": [], "names": [], "lr_scale": scale,
                                               "weight_decay": weight_decay if decay else 0.0,
                                               "decay": decay})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def cosine_schedule(step: int, total_steps: int, warmup_steps: int, peak: float, final: float) -> float:
    """Value at optimizer ``step`` (0-based):
    1) warm-up: linear from peak/warmup to peak over the first ``warmup_steps`` steps (never 0, so the first
       step learns; VideoMAE's starts at exactly 0);
    2) then a half cosine from ``peak`` to ``final`` reaching ``final`` at the last step (a single step after a
       warm-up, whose last step was at the peak, is at ``final``; a run of one step without warm-up learns at
       ``peak``);
    3) past the end, ``final``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps - 1
    if decay_steps < 1:
        return final if warmup_steps or step > warmup_steps else peak
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused kernel on CPU and CUDA (on CPU several times faster than the
    per-parameter loop, docs/performance.md; the same results up to float rounding). lr/wd are set per step by
    :func:`set_schedule`."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(cfg.betas), eps=cfg.eps,
                             fused=device.type in ("cpu", "cuda"))


def set_schedule(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Write this step's lr (times each group's lr_scale) and weight decay (decayed groups only)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]
        if g["decay"]:
            g["weight_decay"] = weight_decay


def schedule_step(optimizer: torch.optim.Optimizer, cfg: OptimConfig, step: int, total_steps: int,
                  warmup_steps: int, peak_lr: float, final_lr: float) -> tuple[float, float]:
    """Set and return step ``step``'s lr (warm-up, then cosine) and weight decay (``cfg.weight_decay``, or cosine
    to ``cfg.weight_decay_end``)."""
    lr = cosine_schedule(step, total_steps, warmup_steps, peak_lr, final_lr)
    wd = cfg.weight_decay if cfg.weight_decay_end is None else \
        cosine_schedule(step, total_steps, 0, cfg.weight_decay, cfg.weight_decay_end)
    set_schedule(optimizer, lr, wd)
    return lr, wd
