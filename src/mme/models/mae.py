"""The masked autoencoder of VideoMAE/MME with pluggable prediction heads.

forward = forward_encoder (visible tokens only) -> forward_decoder (visible + mask tokens, outputs at masked
tokens only) -> forward_loss (per-token squared error averaged over masked tokens, one term per head).
References: VideoMAE (Tong et al. 2022), MME (Sun et al. 2023) and mme-method.md §5, §6, §8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from mme.models.config import ModelConfig
from mme.models.masking import make_mask
from mme.models.vit import Block, VisionTransformer, init_weights, sincos_table, table_for

ACTIVATIONS = {"none": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@dataclass(frozen=True)
class HeadSpec:
    """One prediction head: what it predicts and how its loss term is formed.

    name: the target's name (the key of the targets mapping). dim: channels per token.
    activation: 'none' (default: a linear output), or the release's 'sigmoid' (HOG) / 'tanh' (trajectories).
    hidden: width of the MLP hidden layer (0 = one Linear, as VideoMAE's pixel head).
    weight: the term's weight in the total loss.
    reduction: how a token's squared errors combine over channels: 'mean' (VideoMAE's MSE) or 'sum' (MME's SSE).
    """

    name: str
    dim: int
    activation: str = "none"
    hidden: int = 0
    weight: float = 1.0
    reduction: str = "mean"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"head {self.name!r}: activation must be one of {sorted(ACTIVATIONS)}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"head {self.name!r}: reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.dim <= 0:
            raise ValueError(f"head {self.name!r}: dim must be positive, got {self.dim}")


class Head(nn.Module):
    """Linear, or Linear-GELU-Linear, then the activation: ``(B, M, decoder_dim) -> (B, M, dim)``."""

    def __init__(self, in_dim: int, spec: HeadSpec):
        super().__init__()
        if spec.hidden > 0:
            self.fc1 = nn.Linear(in_dim, spec.hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(spec.hidden, spec.dim)
        else:
            self.fc2 = nn.Linear(in_dim, spec.dim)
        self.out = ACTIVATIONS[spec.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "fc1"):
            x = self.act(self.fc1(x))
        return self.out(self.fc2(x))


def gather_masked(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Select the masked tokens in increasing token order: ``(B, N, ...) -> (B, N_masked, ...)``."""
    B = tokens.shape[0]
    return tokens[mask].reshape(B, -1, *tokens.shape[2:])


class MaskedAutoencoder(nn.Module):
    def __init__(self, cfg: ModelConfig, heads: list[HeadSpec]):
        super().__init__()
        if not heads:
            raise ValueError("a masked autoencoder needs at least one prediction head")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate head names: {names}")
        self.cfg = cfg
        self.head_specs = list(heads)
        self.encoder = VisionTransformer(cfg)
        self.encoder_to_decoder = nn.Linear(cfg.embed_dim, cfg.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.register_buffer("decoder_pos_embed", sincos_table(cfg.num_tokens, cfg.decoder_dim), persistent=False)
        rates = [cfg.drop_path * i / max(cfg.decoder_depth - 1, 1) for i in range(cfg.decoder_depth)]  # as VideoMAE's
        self.decoder_blocks = nn.ModuleList(
            Block(cfg.decoder_dim, cfg.decoder_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.decoder_layer_scale_init, r,
                  cfg.norm_eps)
            for r in rates
        )
        self.decoder_norm = nn.LayerNorm(cfg.decoder_dim, eps=cfg.decoder_norm_eps)
        self.heads = nn.ModuleDict({h.name: Head(cfg.decoder_dim, h) for h in heads})
        # VideoMAE's: its decoder's modules as its encoder's; the projection keeps PyTorch's default Linear init (its
        # model never applies _init_weights to it); the mask token truncated at one std (its own trunc_normal_)
        for m in (self.decoder_blocks, self.decoder_norm, self.heads):
            m.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def make_mask(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A mask of the configured kind and ratio for ``batch`` clips (on CPU; move it with the batch)."""
        return make_mask(self.cfg.mask_type, batch, self.cfg.grid, self.cfg.mask_ratio, generator)

    def forward_encoder(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``video (B, C, T, H, W)``, ``mask (B, N)`` -> visible tokens ``(B, N_visible, D)``."""
        return self.encoder(video, mask)

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor,
                        grid: tuple[int, int, int] | None = None) -> dict[str, torch.Tensor]:
        """Visible tokens ``(B, N_visible, D)`` -> predictions ``{name: (B, N_masked, dim)}`` at masked tokens."""
        B = latent.shape[0]
        x = self.encoder_to_decoder(latent)  # (B, N_visible, Dd)
        pos = table_for(self.decoder_pos_embed, math.prod(grid or self.cfg.grid), x).expand(B, -1, -1)  # (B, N, Dd)
        pos_visible = pos[~mask].reshape(B, -1, x.shape[-1])
        pos_masked = pos[mask].reshape(B, -1, x.shape[-1])
        x = torch.cat([x + pos_visible, self.mask_token.to(x.dtype) + pos_masked], dim=1)  # (B, N, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x[:, x.shape[1] - pos_masked.shape[1]:])  # (B, N_masked, Dd); none masked: empty
        return {name: head(x) for name, head in self.heads.items()}

    def forward_loss(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], mask: torch.Tensor,
                     valid: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-head loss: squared error per masked token (mean or sum over channels), times the token's validity
        where given (``valid[name]``, ``(B, N)``), averaged over all masked tokens; total = weighted sum.

        ``targets[name]`` is ``(B, N, dim)`` over all tokens (or already ``(B, N_masked, dim)``)."""
        valid = valid or {}
        terms: dict[str, torch.Tensor] = {}
        total = 0.0
        for spec in self.head_specs:
            if spec.name not in targets:
                raise KeyError(f"no target for head {spec.name!r}; targets given: {sorted(targets)}")
            pred = preds[spec.name].float()
            target = targets[spec.name]
            if target.shape[1] != pred.shape[1]:
                target = gather_masked(target, mask)
            if target.shape != pred.shape:
                raise ValueError(
                    f"target {spec.name!r} has shape {tuple(target.shape)}, the head predicts {tuple(pred.shape)}"
                )
            err = (pred - target.float()) ** 2
            err = err.mean(-1) if spec.reduction == "mean" else err.sum(-1)  # (B, N_masked)
            if spec.name in valid:
                v = valid[spec.name]
                v = gather_masked(v, mask) if v.shape[1] != err.shape[1] else v
                err = err * v.to(err.dtype)
            terms[spec.name] = err.mean()
            total = total + spec.weight * terms[spec.name]
        return total, terms

    def forward(self, video: torch.Tensor, mask: torch.Tensor, targets: dict[str, torch.Tensor],
                valid: dict[str, torch.Tensor] | None = None):
        """Returns ``(loss, preds, terms)``: the total loss, ``{name: (B, N_masked, dim)}`` predictions, and
        each head's unweighted loss term."""
        _, _, T, H, W = video.shape
        c = self.cfg
        grid = (T // c.tubelet_size, H // c.patch_size, W // c.patch_size)
        latent = self.forward_encoder(video, mask)
        preds = self.forward_decoder(latent, mask, grid)
        loss, terms = self.forward_loss(preds, targets, mask, valid)
        return loss, preds, terms
