"""The ViT parts of VideoMAE/MME, written on ``F.scaled_dot_product_attention`` (no timm).

Shapes: clips ``(B, C, T, H, W)`` -> tokens ``(B, N, D)`` with ``N = T/t * H/p * W/p`` in (t, h, w) raster
order. References: VideoMAE (Tong et al. 2022) and mme-method.md §5.
"""

from __future__ import annotations

import functools
from collections.abc import Collection

import torch
import torch.nn as nn
import torch.nn.functional as F

from mme.data.transforms import deviations
from mme.models.config import DEFAULT_NORM_EPS, ModelConfig, mlp_width
from mme.utils import counted, cpu_features


def sincos_table(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sinusoid table ``(num_positions, dim)``: angle = pos / 10000^(2*floor(j/2)/dim),
    sin on even j, cos on odd j (VideoMAE's ``get_sinusoid_encoding_table``), computed in float64 on the CPU and
    returned on the default device. Under ``torch.device("meta")`` (a module built to check a checkpoint's shapes)
    an empty table of that shape alone, computed nowhere (a clip of a million tokens' took seconds and GBs)."""
    if torch.get_default_device().type == "meta":
        return torch.empty(num_positions, dim, dtype=torch.float32, device="meta")
    pos = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None]
    j = torch.arange(dim, dtype=torch.float64, device="cpu")[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(num_positions, dim, dtype=torch.float64, device="cpu")
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float().to(torch.get_default_device())


@functools.lru_cache(maxsize=8)
def clip_position_table(tokens: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The fixed position table of a clip of ``tokens`` tokens (:func:`sincos_table` over them in raster order, as
    VideoMAE and Hugging Face compute it for a model of that clip: ``get_sinusoid_encoding_table(num_patches, dim)``)
    on ``device`` in ``dtype``, kept for the last 8 such tables. Every model of mme has this table (a stored one that
    differs, a learned one, is refused when read: ``mme.models.checkpoint._check_position_tables``), so a clip of
    another token count than its model's takes its own, as the model built for that clip does (``load_encoder(F,
    img_size=, num_frames=)``, ``mme embed --img-size / --num-frames``, fine-tuning at that size); kept, every batch of
    a loop at that size computes it once (each forward computed it again in float64 on the CPU and copied it: 9 ms a
    call for ViT-B at 8 x 224²). Made outside inference mode, so a run with gradients may take a table an
    ``inference_mode`` forward kept; never to be changed in place."""
    with torch.inference_mode(False):
        return sincos_table(tokens, dim).to(device=device, dtype=dtype)


def table_for(table: torch.Tensor, tokens: int, like: torch.Tensor) -> torch.Tensor:
    """The position table of a clip of ``tokens`` tokens: ``table``, a model's buffer, where it has that many rows
    (the table depends on the count alone), else :func:`clip_position_table`, in ``like``'s dtype and device."""
    if tokens == table.shape[0]:
        return table.to(like.dtype)
    return clip_position_table(tokens, table.shape[-1], like.device, like.dtype)


def clip_standardised(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``x`` less its mean over ``dims``, divided by its standard deviation there (unbiased, ``+ 1e-6`` under the
    root): the encoder's per-clip input norm (``model.input_norm`` 'clip'). The deviations are
    :func:`~mme.data.transforms.deviations`' (a flat channel exactly 0), their squares summed as it advises."""
    d = deviations(x, dims)
    squares = (d * d).sum(dims, keepdim=True)
    # the count of the values summed per clip and channel: a generator over x.shape here made torch.compile fall
    # back to eager and drop the standardisation on a recompile (the unmasked forward after a masked one)
    var = squares.div_(d.numel() // squares.numel() - 1)
    return d * torch.rsqrt(var + 1e-6)


class TubeletEmbed(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch): ``(B, C, T, H, W) -> (B, N, D)``.

    ``forward(x, index)`` embeds only the tokens ``index`` ``(B, M)`` (token numbers in raster order): their
    tubelets are gathered and multiplied by the same weights as one matmul, so a mask ratio of 0.9 leaves a
    tenth of the convolution's work (equal to the convolution's tokens up to float rounding).

    ``standardise`` (``model.input_norm`` 'clip'): each clip is first standardised per channel
    (:func:`clip_standardised`) over the tubelets embedded, with ``index`` over those alone, so that the pixels of
    the other (masked) tubelets reach no token through the clip's mean and spread."""

    def __init__(self, in_chans: int, embed_dim: int, tubelet_size: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv3d(
            in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None, standardise: bool = False) -> torch.Tensor:
        if index is None:
            x = clip_standardised(x, (2, 3, 4)) if standardise else x  # per clip and channel, over (T, H, W)
            return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, t, h, w) -> (B, N, D)
        B, C, T, H, W = x.shape
        t, p = self.proj.kernel_size[:2]
        w = W // p
        area = H // p * w
        tiles = x.reshape(B, C, T // t, t, H // p, p, w, p).permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B,t,h,w,C,t,p,p)
        row = index % area
        batch = torch.arange(B, device=x.device)[:, None]
        patches = tiles[batch, index // area, row // w, row % w].flatten(3)  # (B, M, C, t*p*p), gathered
        if standardise:  # per clip and channel, over its M tubelets
            patches = clip_standardised(patches, (1, 3))
        return F.linear(patches.flatten(2), self.proj.weight.flatten(1), self.proj.bias)


SHORT_ON_CPU = {"AMX": 191, "other": 400}
"""Under bf16/fp16 autocast on a CPU, sequences of up to this many tokens are attended in fp32
(:func:`attention`), by whether the CPU has AMX."""


def short_on(features: Collection[str]) -> int:
    """:data:`SHORT_ON_CPU` for a CPU of these :func:`~mme.utils.cpu_features`."""
    return SHORT_ON_CPU["AMX" if "AMX" in features else "other"]


SHORT_ON_THIS_CPU = short_on(cpu_features())
"""This CPU's :data:`SHORT_ON_CPU`: a module constant, which ``torch.compile`` reads as one (a function marked
constant for it imported ``torch._dynamo`` with this module, 1.2 s of every process that imports the model)."""


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, in fp32 for short sequences on a CPU (:data:`SHORT_ON_CPU`).

    There torch's bf16 kernel (forward and backward) is slower than its fp32 kernel on short sequences: on an
    AVX512-BF16 CPU without AMX it took 1.04-3.6x the fp32 kernel's time up to 392 tokens and gained 2-15 % from
    512 on; on an AMX CPU it took 1.04-3.7x up to 196 tokens (16 x 224² at mask 0.9: 160) and gained up to 29 %
    from 256 on with 64-wide heads (docs/performance.md). So under autocast such sequences (the encoder's visible
    tokens, small models' decoders) go through fp32, which is also the more exact; the casts cost a few percent of
    the kernel. fp32 runs and CUDA take the kernel as it is."""
    if q.dtype in (torch.bfloat16, torch.float16) and q.device.type == "cpu" and q.shape[-2] <= SHORT_ON_THIS_CPU:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv weight and separate q/v biases (no k bias)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        # q, k, v as views (B, nh, N, hs) of the (B, N, 3C) product: their gradients (which SDPA lays out as
        # (B, N, nh, hs)) then join the qkv gradient in one copy
        q, k, v = (t.view(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)
                   for t in F.linear(x, self.qkv.weight, bias).split(C, dim=-1))
        x = attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole residual branches per sample."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    """Pre-LN transformer block, optional layer scale (gamma_1/gamma_2) and drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 layer_scale_init: float = 0.0, drop_path: float = 0.0, norm_eps: float = DEFAULT_NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_width(dim, mlp_ratio))
        self.drop_path = drop_path
        if layer_scale_init > 0:
            self.gamma_1 = nn.Parameter(layer_scale_init * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale_init * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def _scale(self, x: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
        x = x if gamma is None else gamma * x
        return drop_path(x, self.drop_path, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._scale(self.attn(self.norm1(x)), self.gamma_1)
        return x + self._scale(self.mlp(self.norm2(x)), self.gamma_2)


def init_weights(module: nn.Module) -> None:
    """xavier_uniform for Linear, zero biases, unit LayerNorm (VideoMAE's ``_init_weights``; other modules, the
    patch embedding's Conv3d among them, keep PyTorch's default, as there)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """The video ViT encoder. ``forward(x, mask=None)``: ``x (B, C, T, H, W)`` ImageNet-normalised (and, with
    ``cfg.input_norm`` 'clip', standardised per clip and channel first, over the visible tubelets only: masked
    pixels change no output), ``mask`` ``(B, N)`` bool with True = masked (dropped; the same count per sample);
    returns the tokens of the visible positions ``(B, N_visible, D)`` after the final LayerNorm, in increasing
    token order."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = TubeletEmbed(cfg.in_chans, cfg.embed_dim, cfg.tubelet_size, cfg.patch_size)
        self.register_buffer("pos_embed", sincos_table(cfg.num_tokens, cfg.embed_dim), persistent=False)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.layer_scale_init, r, cfg.norm_eps)
            for r in rates
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.apply(init_weights)

    @staticmethod
    def _visible(mask: torch.Tensor, batch: int, tokens: int) -> torch.Tensor:
        """The numbers of the visible tokens ``(B, N_visible)``, increasing per clip, of a ``(B, N)`` bool ``mask``
        (True = masked) with the same count per clip; ValueError for another (an integer mask's ``~`` flips its
        bits: every token read as visible)."""
        if mask.dtype != torch.bool or tuple(mask.shape) != (batch, tokens):
            raise ValueError(f"mask of shape {tuple(mask.shape)} and dtype {mask.dtype}: give a ({batch}, {tokens}) "
                             "bool mask, True for the masked tokens")
        visible = (~mask).nonzero()
        if not torch.compiler.is_compiling():  # (a check that reads the device: no graph break for it)
            counts = torch.bincount(visible[:, 0], minlength=batch)
            if (counts != counts[0]).any():
                raise ValueError(f"mask: {counts.tolist()} visible tokens per clip; every clip needs the same count")
        return visible[:, 1].view(batch, -1)

    def pos_for(self, x: torch.Tensor) -> torch.Tensor:
        """The position table for an input clip: the config's, or where the clip's token count differs, that
        count's own (:func:`clip_position_table`; the features of the encoder built for that clip). A clip that does
        not divide
        into tubelets and patches is refused: the patch embedding would drop the rest."""
        _, _, T, H, W = x.shape
        c = self.cfg
        if T % c.tubelet_size or H % c.patch_size or W % c.patch_size:
            raise ValueError(f"a clip of shape {tuple(x.shape)} (B, C, T, H, W) does not divide into tubelets of "
                             f"{c.tubelet_size} frames and {c.patch_size}x{c.patch_size} patches: give T a multiple "
                             f"of {c.tubelet_size} and H, W multiples of {c.patch_size}")
        return table_for(self.pos_embed, (T // c.tubelet_size) * (H // c.patch_size) * (W // c.patch_size), x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 5 or not x.is_floating_point():
            raise ValueError(f"a clip of shape {tuple(x.shape)} and dtype {x.dtype}: the encoder takes float clips "
                             "(B, C, T, H, W), ImageNet-normalised (mme.data.transforms.normalize_clip makes them "
                             "from uint8 frames)")
        if x.shape[1] != self.cfg.in_chans:
            layout = ": for a (B, T, C, H, W) clip (Hugging Face VideoMAE's layout), give x.transpose(1, 2)" \
                if x.shape[2] == self.cfg.in_chans else ""
            raise ValueError(f"a clip of shape {tuple(x.shape)} (B, C, T, H, W) has {counted(x.shape[1], 'channel')}; "
                             f"the encoder takes {self.cfg.in_chans}{layout}")
        weights = next(self.patch_embed.parameters()).dtype
        if x.dtype != weights and (x.dtype == torch.float64 or not torch.is_autocast_enabled(x.device.type)):
            # (autocast casts a float32 or half clip itself, not a float64 one)
            raise ValueError(f"a clip of dtype {x.dtype} for an encoder of {weights} weights: give x.to({weights})")
        per_clip = self.cfg.input_norm == "clip"  # standardised over the tubelets embedded: the visible ones
        pos = self.pos_for(x)
        if mask is None:
            x = self.patch_embed(x, standardise=per_clip) + pos  # (B, N, D)
        else:  # only the visible tokens are embedded: (B, N_visible, D)
            index = self._visible(mask, x.shape[0], len(pos))
            x = self.patch_embed(x, index, per_clip) + pos[index]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def checkpoint_blocks(module: nn.Module) -> None:
    """Activation checkpointing of each of ``module.blocks`` (an encoder's; ``train.activation_checkpointing``):
    the forward is replaced per instance, so parameter names (and checkpoints) are unchanged."""
    from torch.utils.checkpoint import checkpoint

    for blk in module.blocks:
        blk.forward = lambda x, f=blk.forward: checkpoint(f, x, use_reentrant=False)


def count_parameters(module: nn.Module) -> int:
    """Parameters of ``module``, as every run summary and benchmark reports them."""
    return sum(p.numel() for p in module.parameters())

