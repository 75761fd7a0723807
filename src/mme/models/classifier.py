"""Video classifier for fine-tuning and linear probing, laid out as VideoMAE's fine-tuning model.

encoder (VisionTransformer, all tokens) -> mean over tokens -> ``fc_norm`` LayerNorm -> dropout -> ``head``
Linear (mme-method.md §10). With mean pooling the encoder's final LayerNorm is replaced by Identity, as in
VideoMAE/MME, so the original fine-tuned layout (``patch_embed``, ``blocks.N.*``, ``fc_norm``, ``head``) maps
onto ``encoder.patch_embed``, ``encoder.blocks.N.*``, ``fc_norm``, ``head`` by a prefix.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mme.models.config import ModelConfig
from mme.models.vit import VisionTransformer

POOLS = ("mean", "norm_mean")
"""'mean': VideoMAE fine-tuning (no final encoder norm, mean, fc_norm). 'norm_mean': keep the pre-trained
encoder's final LayerNorm before the mean (then fc_norm), for heads on a frozen pre-trained encoder."""


FC_NORM_EPS = 1e-6
"""eps of ``fc_norm``, VideoMAE's (a Hugging Face classifier's is 1e-5, nn.LayerNorm's default)."""

SCRATCH_INITS = ("trunc_normal", "xavier")
"""How a classifier's encoder trained from scratch starts (``task.scratch_init``): 'trunc_normal', VideoMAE's
fine-tuning ViT (``modeling_finetune``: trunc-normal(0.02) Linear weights, zero biases; its LayerNorms and patch
embedding as the pre-training encoder's); 'xavier', the pre-training encoder's own (:func:`init_weights`), whose
Linear weights scale with the width: 2-5x trunc-normal(0.02)'s at the tiny widths (96, 192)."""


def _finetune_init(module: nn.Module) -> None:
    """VideoMAE's fine-tuning ViT's Linear layers: trunc-normal(0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VideoClassifier(nn.Module):
    """``forward(x (B, C, T, H, W)) -> logits (B, num_classes)``; ``forward_features(x) -> (B, D)``."""

    def __init__(self, cfg: ModelConfig, num_classes: int, pool: str = "mean", fc_drop: float = 0.0,
                 head_init_scale: float = 0.001, fc_norm_eps: float = FC_NORM_EPS, scratch_init: str = "trunc_normal"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if scratch_init not in SCRATCH_INITS:
            raise ValueError(f"scratch_init must be one of {SCRATCH_INITS}, got {scratch_init!r}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.pool = pool
        self.encoder = VisionTransformer(cfg)
        if scratch_init == "trunc_normal":  # what a classifier trained from scratch starts from (train.init unset)
            self.encoder.apply(_finetune_init)
        if pool == "mean":
            self.encoder.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=fc_norm_eps)
        self.fc_dropout = nn.Dropout(fc_drop)
        self.head = nn.Linear(cfg.embed_dim, num_classes)
        # VideoMAE: trunc-normal(0.02) head scaled by init_scale (0.001), so fine-tuning starts near uniform logits.
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)`` after ``fc_norm`` (the head's input, before dropout)."""
        return self.fc_norm(self.encoder(x).mean(dim=1))  # (B, N, D) -> (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in the head's dtype (fp32) under autocast too: bf16's 8-bit mantissa rounded logits less than its
        step apart (1/16 from 8 to 16) to one value, classes that then tied and ranked by class id. One small matmul."""
        features = self.fc_dropout(self.forward_features(x))
        weight = next(self.head.parameters(), None)  # (a head of another kind a caller put in: an MLP, an Identity)
        with torch.autocast(x.device.type, enabled=False):
            return self.head(features.to(weight.dtype if weight is not None else torch.float32))
