"""Reconstruction targets in token layout ``(N, C)`` per sample / ``(B, N, C)`` batched, N in (t, h, w) raster
order (mme-method.md §7-8), and the prediction heads that go with them.

Targets (``target.kind``, one or a list):

- ``pixel``: VideoMAE's normalised pixels (computed in the training step, :func:`step_targets`).
- ``hog``: HOG of each tubelet's second frame, 27 (3 colours × 9 bins) per 8-px cell, cells of a patch in
  (c, a, b) order: 108-d at patch 16 (the release's appearance target; training step).
- ``mme`` (the paper, default): ``traj`` + ``shape``. ``traj`` = the per-step displacements of the K points
  of each patch, tracked L raw frames from the tubelet's first raw frame, ordered (coordinate, step, point),
  2·L·K dims, PatchStd-normalised; ``shape`` = the HOG at each point's position at steps 0..L-1, read
  bilinearly between the centres of the nearest cells (:func:`hog_at`: a seed, 0.5 px off its cell's centre at
  the default 8-px cells and seeds, reads 88 % of its own cell), ordered (step, point, 27), 27·L·K dims (paper
  Eq. 2-3; the release's VolumeHOG without its D6 bug).
- ``mme-released``: ``traj`` + ``hog`` with L=4 (the released script's ``base`` variant, §12 D1).

Work is split where it is cheapest: the data workers do what is per file, the decode and the tracks (optical flow
online, or the track cache of ``target.cache_dir``), and ship them with the frames the shape features read
(:class:`TargetFn`); the training step makes every target batched on the accelerator (the CPU main process
without one): pixel and HOG from the clip, ``traj`` and ``shape`` (HOG along the tracks, PatchStd, token layout)
from what the workers shipped (:func:`batch_targets`). A patch is supervised (``valid``) if any of its points stayed
in the frame, as the release (§7.6). PatchStd: per token, coordinate and step, ``z = (x - mean) / std`` over
the K points (unbiased std), and ``z = 0`` where ``std < std_floor`` px: below the flow's noise level a z-score
only amplifies noise (§7.6). Without PatchStd the target is the displacement divided by ``position_unit`` px
(default the ±bound).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mme.config import MAX_REPEATS, apply_preset, check_integers, check_within
from mme.data.dataset import collate
from mme.data.transforms import IMAGENET_STD, denormalize, deviations
from mme.errors import ConfigError
from mme.models.config import ModelConfig
from mme.models.mae import HeadSpec
from mme.motion.cache import cached_tracks
from mme.motion.flow import DEFAULT_FLOW, METHODS, STEP_FLOWS, require_flow
from mme.motion.hog import BINS, NORMALISED_STYLES, STYLES, hog_at, hog_cells
from mme.motion.tracks import Tracks, default_max_disp, track, track_frames, track_in_step
from mme.utils import plural

KINDS = ("pixel", "hog", "mme", "mme-released")
HEADS_OF_KIND = {"pixel": ("pixel",), "hog": ("hog",), "mme": ("traj", "shape"), "mme-released": ("traj", "hog")}
MOTION_TARGETS = ("traj", "shape")  # made from the tracks (and frames) the data workers ship

log = logging.getLogger(__name__)


KIND_ONCE = "a repeated one adds nothing: the target has each of its heads once"
"""Why a command refuses a target kind given twice in its flag (``mme bench targets --kind mme,mme``)."""


@dataclass
class TargetConfig:
    """What the decoder reconstructs and how the motion targets are made (defaults: the paper's MME)."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "paper": dict(kind="mme", track_length=6),
        "released": dict(kind="mme-released", track_length=4, activation="release", hog_style="release"),
        "videomae": dict(kind="pixel"),
        "maskfeat": dict(kind="hog", hog_norm=True, hog_style="maskfeat"),
    }
    UNSET: ClassVar[dict] = {"kind": "mme", "activation": "none", "hog_norm": False, "hog_style": "skimage"}
    """What a key left unset by the config and its preset takes (but hog_norm: true on a hog head whose style
    normalises its cells already, :data:`~mme.motion.hog.NORMALISED_STYLES`, as it then says what the head does)."""
    PATHS: ClassVar[dict[str, str]] = {"cache_dir": ""}
    """As :attr:`mme.data.dataset.DataConfig.PATHS`."""
    NONE_IS_A_VALUE: ClassVar[tuple[str, ...]] = ("activation",)
    """Keys whose values include the text 'none', which ``none`` gives, in a recipe or an override (elsewhere it
    unsets a key, as the other spellings of null do here): :data:`mme.config.NONE`."""

    preset: str | None = None
    """Named recipe (paper / released / videomae / maskfeat); explicit keys override it."""
    kind: str | list[str] | None = None
    """pixel | hog | mme | mme-released, or a list of them (combined heads; a name shared by two kinds is one head);
    unset: the preset's, else 'mme'."""
    track_length: int | None = None
    """L raw frames tracked per tubelet; default 6 for 'mme' (paper, v1 T3), 4 for 'mme-released'."""
    seed_stride: int | None = None
    """Track seed spacing in px; default patch/2 (2×2 points per patch); = patch: one point (the sparse ablation)."""
    patch_norm: bool = True
    """PatchStd: z-score the displacements over the points of a patch per coordinate and step."""
    position_unit: float | None = None
    """Without PatchStd: displacements are divided by this many px (default: the displacement bound, as the
    release's /20). 1.0 keeps pixels, so a 1 px/frame motion gives targets of order 1."""
    std_floor: float = 0.05
    """PatchStd floor in px: below it the z-score is 0. Measured DIS MEDIUM noise (intra-patch std of rigidly
    moving, H.264-coded texture, 112² and 224²): median 0.02 px, p90 0.06-0.09 px; static video p95 0.016 px."""
    flow: str = DEFAULT_FLOW
    """Optical flow: dis-balanced (default: OpenCV DIS MEDIUM's accuracy at 0.6x its time) | dis (DIS MEDIUM) |
    dis-fast | dis-ultrafast | farneback | tvl1 (needs opencv-contrib), computed in the data workers; or torch-lk,
    computed with the tracks in the training step, batched on its device (for GPUs: the workers then only
    decode). Accuracy per ms in docs/performance.md. Tracks read from a cache (``cache_dir``) were made with the
    flow ``mme extract`` used."""
    compensate: bool = False
    """Camera-motion compensation (iDT-style homography; no SURF)."""
    interpolate: bool = True
    """True: track through every raw frame (the paper). False: flow only between the sampled frames, spread evenly
    over the raw steps, and shape from the sampled frames (the paper's 'no interpolation' ablation)."""
    max_disp: float | None = None
    """Displacement bound in px; default 20 at 224², scaled with the frame size."""
    flow_margin: int = 0
    """Output px of the video frame around the crop, on each side, that a flow of the data workers sees (fewer on a
    side where the frame ends sooner); the tracks stay the crop's. 0: the crop alone, where the flow misreads the
    motion of the outer ring of tokens (docs/targets.md). The track cache's flow sees the whole frame, and
    torch-lk, computed in the training step on the clip's frames, sees the crop alone."""
    prune: bool = False
    """iDT-style removal of static and erratic tracks from the validity mask."""
    hog_cell: int | None = None
    """HOG cell side in px; default patch/2 (8 px at patch 16)."""
    hog_norm: bool | None = None
    """The ``hog`` head's cells L2-normalised, each colour's histogram on its own (MaskFeat's local normalisation;
    the maskfeat preset's); unset: the preset's, else on with the maskfeat style, else off (MME's release: no
    normalisation). It applies to the skimage and release styles: the maskfeat style's cells are normalised
    already, on every head, which ``true`` says; ``false`` is taken too, as it changes nothing either."""
    hog_style: str | None = None
    """HOG of the ``hog`` and ``shape`` heads: 'skimage' (central differences, one bin per pixel, mean-pooled:
    scikit-image's but at the frame's edge, docs/targets.md), 'release' (the MME release's 3x3 Sobel and linear vote
    between bins, about 4x larger values; the released preset's) or 'maskfeat' (MaskFeat's reflect-padded Sobel, its
    bins from the y axis, one per pixel, sum-pooled, each cell's histogram of each colour scaled to unit length: the
    maskfeat preset's); unset: the preset's, else 'skimage'. docs/targets.md compares them."""
    activation: str | None = None
    """Head outputs: 'none' (linear) or 'release' (Sigmoid on HOG heads, Tanh on the trajectory head); unset: the
    preset's, else 'none'."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Per-head loss weights by head name (pixel/hog/traj/shape); a head left out weighs 1/number of heads (the
    release's average): :meth:`loss_weight`."""
    norm_pix: bool = True
    """Pixel target: z-score each token's pixels (VideoMAE's norm_pix_loss)."""
    cache_dir: str | None = None
    """Read tracks from this `mme extract` cache instead of computing flow online."""
    shuffled: bool = False
    """A control, not a method: every clip is trained on the targets (and their validity) of the previous clip of
    its micro-batch (the first on the last's; a batch per rank of >= 2 clips), so the targets keep their statistics
    but say nothing about the clip (docs/experiments.md); the pairs depend on how a step's batch is split over ranks
    and accumulation steps (docs/scaling.md)."""

    def __post_init__(self):
        hog_norm_unset = self.hog_norm is None
        apply_preset(self, "target", self.PRESETS, fallback=self.UNSET)
        check_integers(self, "target")
        if hog_norm_unset and self.normalised_hog_head:
            self.hog_norm = True
        kinds = self.kinds
        if not kinds:
            raise ConfigError(f"target.kind: {self.kind!r} names no target; choose from {list(KINDS)}")
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"target.kind: unknown {plural(len(bad), 'target')} {bad}; choose from {list(KINDS)}")
        if self.track_length is None:
            self.track_length = 4 if "mme-released" in kinds else 6
        if self.track_length < 1:
            raise ConfigError(f"target.track_length must be >= 1, got {self.track_length}")
        check_within("target.track_length", self.track_length, most=MAX_REPEATS,
                     why="raw steps of each track, each a flow over the seeds: the recipes' 4 to 6")
        if self.flow not in METHODS:
            raise ConfigError(f"target.flow must be one of {list(METHODS)}, got {self.flow!r}")
        if not self.cache_dir:  # tracks read from a cache were made by mme extract, whose flow this is not
            require_flow(self.flow)
        if self.flow_in_step:
            unsupported = [k for k in ("compensate", "prune") if getattr(self, k)] + \
                (["interpolate=false"] if not self.interpolate else [])
            if unsupported:
                raise ConfigError(f"target.flow={self.flow} tracks in the training step, which does not do "
                                  f"{', '.join(unsupported)}; use a worker flow such as {DEFAULT_FLOW}")
        if self.activation not in ("none", "release"):
            raise ConfigError(f"target.activation must be 'none' or 'release', got {self.activation!r}")
        if self.hog_style not in STYLES:
            raise ConfigError(f"target.hog_style must be one of {list(STYLES)}, got {self.hog_style!r}")
        if self.std_floor < 0:
            raise ConfigError(f"target.std_floor must be >= 0, got {self.std_floor}")
        if self.position_unit is not None and self.position_unit <= 0:
            raise ConfigError(f"target.position_unit must be positive, got {self.position_unit}")
        if self.flow_margin < 0:
            raise ConfigError(f"target.flow_margin must be >= 0 px, got {self.flow_margin}")
        if self.max_disp is not None and self.max_disp <= 0:  # a clamp of each step: any positive one is a setting
            raise ConfigError(f"target.max_disp must be positive, got {self.max_disp}")
        for name in ("seed_stride", "hog_cell"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"target.{name} must be positive, got {v}")
        negative = {k: w for k, w in self.loss_weights.items() if w < 0}
        if negative:
            raise ConfigError(f"target.loss_weights must be >= 0 (a negative weight maximises a loss), got {negative}")
        unknown = sorted(set(self.loss_weights) - set(self.heads))
        if unknown:
            raise ConfigError(f"target.loss_weights: no {plural(len(unknown), 'head')} {unknown}; heads of this "
                              f"target: {list(self.heads)}")
        if all(self.loss_weight(h) == 0 for h in self.heads):
            raise ConfigError(f"target.loss_weights: every head's weight is 0 ({self.loss_weights}): the loss is 0, "
                              "nothing is learned, and weight decay alone shrinks the weights")

    @property
    def normalised_hog_head(self) -> bool:
        """Whether this target has a hog head whose style normalises its cells already (:data:`NORMALISED_STYLES`),
        on which ``hog_norm``, true or false, changes nothing."""
        return "hog" in self.heads and self.hog_style in NORMALISED_STYLES

    def settings_without_effect(self) -> dict[str, str]:
        """The settings this target does not use (for its heads, ``patch_norm`` and ``hog_style``), each with where
        it applies."""
        heads = set(self.heads)
        motion = self.tracked
        hog_norm_applies = "hog" in heads and not self.normalised_hog_head
        tracks = "to a traj or shape head (target.kind mme, mme-released)"
        hog_or_shape = "to a hog or shape head (target.kind hog, mme, mme-released)"
        return {key: only for key, applies, only in (
            ("position_unit", motion and not self.patch_norm, f"with target.patch_norm=false, {tracks}"),
            ("std_floor", motion and self.patch_norm, f"with target.patch_norm=true, {tracks}"),
            ("hog_norm", hog_norm_applies, "to a hog head (target.kind hog, mme-released) of a hog_style other than "
             f"{', '.join(NORMALISED_STYLES)}, whose cells are normalised already"),
            ("hog_style", bool(heads & {"hog", "shape"}), hog_or_shape),
            ("hog_cell", bool(heads & {"hog", "shape"}), hog_or_shape),
            *((key, motion, tracks) for key in ("patch_norm", "track_length", "seed_stride", "flow", "compensate",
                                                "interpolate", "max_disp", "prune", "cache_dir")),
            ("flow_margin", self.flow_in_workers, f"to a flow of the data workers (a target.flow other than "
             f"{', '.join(STEP_FLOWS)}, no target.cache_dir), {tracks}"),
            ("activation", bool(heads - {"pixel"}), "to a hog, traj or shape head (target.kind hog, mme, "
             "mme-released)"),
            ("norm_pix", "pixel" in heads, "to a pixel head (target.kind pixel)")) if not applies}

    def settings_from_the_cache(self) -> tuple[str, ...]:
        """The settings a run reading its tracks from ``cache_dir`` takes from the cache's files, not from this config
        (``flow``: the one ``mme extract`` used; the others are checked against the files'): none computing them
        online. Not among :meth:`settings_without_effect`, as a config may set them for the extraction it advises."""
        return ("flow",) if self.cache_dir else ()

    def check_settings_used(self, resumed: bool = False) -> None:
        """Refuse a setting this target does not use (:meth:`settings_without_effect`) that a run's config sets
        (not the value the target's preset and kind give it unset): it would be listed among the run's settings as
        if it had an effect. ``hog_norm`` on a hog head that normalises its cells already is taken either way:
        ``true`` says what the head does, ``false`` what a run set up before that style's cells were normalised
        recorded (its ``config.yaml`` reads back). A ``resumed`` run's are warned about instead: an earlier version
        of mme took them, and its run folder's config.yaml, which holds them, resumes the run. Checked for a run to
        be trained, not for the target section of a checkpoint read later (``mme viz``), which trained as it was."""
        unset = TargetConfig(preset=self.preset, kind=self.kind)
        for key, only in self.settings_without_effect().items():
            value, default = getattr(self, key), getattr(unset, key)
            if key in self.PATHS:  # empty: none, as unset
                value = value or None
            if value != default and not (key == "hog_norm" and self.normalised_hog_head):
                said = (f"target.{key}={str(value).lower()} has no effect on this target (heads "
                        f"{', '.join(self.heads)}; target.patch_norm={str(self.patch_norm).lower()}): it applies only "
                        f"{only}")
                if not resumed:
                    raise ConfigError(f"{said}; leave it out (target.{key}="
                                      f"{'null' if default is None else str(default).lower()})")
                log.warning("%s; the resumed run trains without it, as it did", said)

    def loss_weight(self, head: str) -> float:
        return self.loss_weights.get(head, 1.0 / len(self.heads))

    @property
    def kinds(self) -> list[str]:
        items = [self.kind] if isinstance(self.kind, str) else list(self.kind)
        return [k.strip() for item in items for k in item.split(",") if k.strip()]

    @property
    def heads(self) -> list[str]:
        """Head names in a fixed order, each once."""
        names = {h for k in self.kinds for h in HEADS_OF_KIND.get(k, ())}
        return [h for h in ("pixel", "hog", "traj", "shape") if h in names]

    @property
    def tracked(self) -> bool:
        """Whether a head is made from tracks (MOTION_TARGETS), so that clips need ``track_length`` more frames."""
        return bool(set(MOTION_TARGETS) & set(self.heads))

    @property
    def flow_in_workers(self) -> bool:
        """Whether the data workers compute the tracks' flow (a head made from tracks, no track cache, a flow not of
        the training step): where ``flow_margin`` applies."""
        return self.tracked and not self.cache_dir and self.flow not in STEP_FLOWS

    @property
    def flow_in_step(self) -> bool:
        """Whether the training step makes the tracks (a head made from tracks, no track cache, a flow of the step):
        the workers ship frames."""
        return self.tracked and not self.cache_dir and self.flow in STEP_FLOWS


@dataclass(frozen=True)
class Geometry:
    """Token geometry the targets follow: points per patch side, seed stride, HOG cell, channels per cell."""

    patch: int
    tubelet: int
    seed_stride: int
    hog_cell: int

    @property
    def points(self) -> int:
        """K: tracked points per patch."""
        return (self.patch // self.seed_stride) ** 2


def token_geometry(cfg: TargetConfig, model_cfg: ModelConfig) -> Geometry:
    """Resolve the defaults that depend on the model and check that points and cells tile a patch."""
    p = model_cfg.patch_size
    seed = cfg.seed_stride or max(p // 2, 1)
    cell = cfg.hog_cell or max(p // 2, 1)
    if p % seed:
        raise ConfigError(f"target.seed_stride {seed} must divide model.patch_size {p}")
    if p % cell:
        raise ConfigError(f"target.hog_cell {cell} must divide model.patch_size {p}")
    g = Geometry(p, model_cfg.tubelet_size, seed, cell)
    if cfg.patch_norm and "traj" in cfg.heads and g.points < 2:
        raise ConfigError(
            f"target.patch_norm needs >= 2 points per patch, but seed_stride {seed} gives 1 per {p}-px patch; "
            "set target.patch_norm=false for the sparse ablation"
        )
    return g


def head_specs(cfg: TargetConfig, model_cfg: ModelConfig) -> list[HeadSpec]:
    """The heads of this target: names, dims, activation, weights; MME terms are per-token SSE (§8)."""
    g = token_geometry(cfg, model_cfg)
    L, K = cfg.track_length, g.points
    cells = (g.patch // g.hog_cell) ** 2
    release = cfg.activation == "release"
    dims = {
        "pixel": (g.tubelet * g.patch * g.patch * 3, "none", 0, "mean"),
        "hog": (3 * BINS * cells, "sigmoid" if release else "none", model_cfg.head_hidden, "sum"),
        "traj": (2 * L * K, "tanh" if release else "none", model_cfg.head_hidden, "sum"),
        "shape": (3 * BINS * L * K, "sigmoid" if release else "none", model_cfg.head_hidden, "sum"),
    }
    specs = []
    for name in cfg.heads:
        dim, act, hidden, red = dims[name]
        specs.append(HeadSpec(name, dim, act, hidden, cfg.loss_weight(name), red))
    return specs


def pixel_target(video: torch.Tensor, tubelet: int, patch: int, norm: bool = True) -> torch.Tensor:
    """VideoMAE's pixel target from an ImageNet-normalised clip ``(B, C, T, H, W)``.

    Each token's ``tubelet*patch*patch`` pixels are ordered (t, y, x, c); with ``norm`` they are z-scored per
    channel over the token (unbiased std + 1e-6), as VideoMAE's ``norm_pix_loss`` of the pixels in [0, 1]. The
    normalisation is an affine map per channel, so that z-score is the normalised clip's with the 1e-6 divided by
    the channel's std, equal to the reference up to float rounding (tests). It is made with each token's channel
    as one contiguous row (:func:`deviations`; a flat token is 0 exactly), 2x faster on a CPU than ``var_mean``
    over the clip's strided axes. Returns ``(B, N, t*p*p*C)``.
    """
    B, C, T, H, W = video.shape
    n = tubelet * patch * patch
    x = video.float().reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    if not norm:
        return denormalize(x, channel_dim=1).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, -1, n * C)
    per_channel = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, t, h, w, C, tubelet, p, p)
    rows = torch.empty(per_channel.shape, dtype=x.dtype, device=x.device)
    rows = deviations(per_channel, (5, 6, 7), out=rows).view(B, -1, C, n)
    std = torch.linalg.vector_norm(rows, dim=-1, keepdim=True).mul_((n - 1) ** -0.5)
    eps = 1e-6 / torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 1, C, 1)
    return rows.div_(std.add_(eps)).transpose(-1, -2).reshape(B, -1, n * C)


def hog_target(video: torch.Tensor, tubelet: int, patch: int, cell: int, l2: bool = False,
               style: str = "skimage") -> torch.Tensor:
    """HOG of each tubelet's second frame (the first if tubelet = 1) of a normalised clip ``(B, 3, T, H, W)``:
    ``(B, N, 27 * (patch/cell)²)``, per token ordered (colour·bin, cell row, cell col) as the release; with
    ``l2`` each cell's histogram of each colour scaled to unit length (MaskFeat's; a style of
    :data:`NORMALISED_STYLES` is already); ``style`` as :func:`hog_cells`."""
    B, C, T, H, W = video.shape
    frames = video[:, :, min(1, tubelet - 1)::tubelet]  # (B, 3, S, H, W)
    S = frames.shape[2]
    cells = hog_cells(frames.transpose(1, 2).reshape(B * S, C, H, W), cell, style=style)  # (B*S, 27, H/c, W/c)
    if l2 and style not in NORMALISED_STYLES:
        cells = F.normalize(cells.unflatten(1, (C, -1)), dim=2).flatten(1, 2)
    a = patch // cell
    D, hc, wc = cells.shape[1:]
    x = cells.reshape(B, S, D, hc // a, a, wc // a, a).permute(0, 1, 3, 5, 2, 4, 6)  # (B, S, h, w, 27, a, a)
    return x.reshape(B, S * (hc // a) * (wc // a), D * a * a)


def step_targets(video: torch.Tensor, cfg: TargetConfig, model_cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Targets computed in the training step from the normalised clip ``(B, 3, T, H, W)`` (on its device):
    ``pixel`` and ``hog``, whichever the config asks for. Returns ``{name: (B, N, C)}``. A clip that is not float
    (the dataset's uint8 frames) is a TypeError: its targets would be 255 x std too large, unsaid."""
    if not video.is_floating_point():
        raise TypeError(f"step_targets: a {video.dtype} clip; give the normalised float clip "
                        "(mme.data.transforms.normalize_clip of the dataset's uint8 frames)")
    g = token_geometry(cfg, model_cfg)
    out = {}
    if "pixel" in cfg.heads:
        out["pixel"] = pixel_target(video, g.tubelet, g.patch, cfg.norm_pix)
    if "hog" in cfg.heads:
        out["hog"] = hog_target(video.float(), g.tubelet, g.patch, g.hog_cell, cfg.hog_norm, cfg.hog_style)
    return out


def patch_std(x: torch.Tensor, floor: float) -> torch.Tensor:
    """PatchStd over the last axis (the K points): ``(x - mean) / std`` (unbiased), 0 where ``std < floor`` (and
    everywhere for one point, which has no spread)."""
    if x.shape[-1] < 2:
        return torch.zeros_like(x)
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, unbiased=True, keepdim=True)
    ok = std >= max(floor, 1e-6)
    return torch.where(ok, (x - mean) / torch.where(ok, std, torch.ones_like(std)), torch.zeros_like(x))


def _to_tokens(maps: torch.Tensor, a: int) -> torch.Tensor:
    """Per-point maps ``(S, X, Gh, Gw, C)`` -> per token ``(S*h*w, X, a*a, C)`` with h = Gh/a, w = Gw/a."""
    S, X, Gh, Gw, C = maps.shape
    x = maps.reshape(S, X, Gh // a, a, Gw // a, a, C).permute(0, 2, 4, 1, 3, 5, 6)  # (S, h, w, X, a, a, C)
    return x.reshape(S * (Gh // a) * (Gw // a), X, a * a, C)


def spread_steps(disp: np.ndarray, stride: int, length: int, starts, last: int) -> np.ndarray:
    """No-interpolation tracks: each displacement over a span of ``stride`` raw frames ``(S, n, ...)`` spread
    evenly over the raw steps of the span that exist, and cut to ``length`` steps: ``(S, length, ...)``. A span
    that passes the video's ``last`` frame has fewer (the frames after it repeat it), so its tracks see no motion
    past that frame, as interpolated ones do."""
    S, n = disp.shape[:2]
    t = np.arange(n * stride)
    span, offset = t // stride, t % stride
    begin = np.asarray(starts, np.int64)[:, None] + span[None] * stride  # (S, n * stride)
    real = np.clip(np.minimum(begin + stride, last) - begin, 0, stride)  # raw steps of each step's span
    share = np.where(offset[None] < real, 1.0 / np.maximum(real, 1), 0.0).astype(disp.dtype)
    share = share.reshape(S, n * stride, *(1,) * (disp.ndim - 2))
    return (np.repeat(disp, stride, axis=1) * share)[:, :length]


def frame_hog(frames: torch.Tensor, cell: int, style: str = "skimage") -> torch.Tensor:
    """HOG cells of uint8 RGB frames ``(F, H, W, 3)`` (on any device) as the encoder sees them
    (ImageNet-normalised): ``(F, 27, H/cell, W/cell)``. Normalising shifts and scales each channel, so its
    gradients are the raw ones times ``1 / (255 std_c)``: computed on the raw uint8 values (for ``skimage``,
    hog_cells' exact integer shortcut) and rescaled. On CPU 4 frames at a time: small temporaries are reused by
    the allocator while frame-sized ones are fresh pages every time (measured 2x faster for 48 frames of 224²); on an
    accelerator 256 at a time, which bounds the temporaries (0.15 GB per 4-byte one at 224²) for a batch of any
    size. The cells of a style of :data:`NORMALISED_STYLES` are unit length at any scale: not rescaled."""
    chunk = 4 if frames.device.type == "cpu" else 256
    cells = torch.cat([hog_cells(frames[i:i + chunk].permute(0, 3, 1, 2), cell, style=style)
                       for i in range(0, len(frames), chunk)])  # (F, 3*BINS, hc, wc), channel-major
    if style in NORMALISED_STYLES:
        return cells
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=frames.device)
    scale = (1.0 / (255.0 * std)).repeat_interleave(BINS)
    return cells.mul_(scale.view(1, -1, 1, 1))


def motion_targets(motion: dict[str, torch.Tensor], cfg: TargetConfig, model_cfg: ModelConfig,
                   size: tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The ``traj`` (and ``shape``) targets ``(B, N, C)`` and their validity ``(B, N)`` of a batch, from what the
    data workers ship (:meth:`TargetFn.__call__`, batched by ``mme.data.dataset.collate``), on its device.

    ``disp (B, S, L, Gh, Gw, 2)`` px per raw step and ``track_valid (B, S, Gh, Gw)``; for ``shape`` also
    ``shape_pos (B, S, L, Gh, Gw, 2)`` the positions looked up at step j of start s, ``frames (U, h, w, 3)``
    uint8, every clip's frames, and ``shape_index (B, S, L)`` the frame read at step j of start s. With a flow of
    the step (``torch-lk``) the workers ship ``frames`` and ``track_index (B, S, L + 1)``, the frame each start's
    track is at after each step, in place of the tracks, which are made here. ``size`` is the frames' (H, W) (the
    displacement bound scales with it).
    """
    if not motion:
        return {}, {}
    g = token_geometry(cfg, model_cfg)
    a = g.patch // g.seed_stride
    if "track_index" in motion:
        B, S, visits = motion["track_index"].shape
        L = visits - 1
        disp, track_valid, pos = track_in_step(motion["frames"], motion["track_index"].reshape(B * S, visits),
                                               g.seed_stride, cfg.max_disp)
        motion = {**motion, "track_valid": track_valid, "shape_pos": pos[:, :L]}
    else:
        B, S, L = motion["disp"].shape[:3]
        disp = motion["disp"].float().reshape(B * S, L, *motion["disp"].shape[3:])
    Gh, Gw = disp.shape[2:4]
    tok = _to_tokens(disp, a).permute(0, 3, 1, 2)  # (B*N, 2, L, K)
    tok = patch_std(tok, cfg.std_floor) if cfg.patch_norm else tok / (
        cfg.position_unit or cfg.max_disp or default_max_disp(*size))
    N = tok.shape[0] // B
    valid = _to_tokens(motion["track_valid"].reshape(B * S, 1, Gh, Gw, 1), a).reshape(B, N, -1).any(-1)
    targets = {"traj": tok.reshape(B, N, -1)}
    if "shape" in cfg.heads:
        maps = frame_hog(motion["frames"], g.hog_cell, cfg.hog_style)
        maps = maps[motion["shape_index"].reshape(-1)]  # (B*S*L, 27, ..)
        feats = hog_at(maps, motion["shape_pos"].reshape(B * S * L, Gh * Gw, 2).float(), g.hog_cell)
        feats = _to_tokens(feats.reshape(B * S, L, Gh, Gw, -1), a)  # (B*N, L, K, 27): order (step, point, 27)
        targets["shape"] = feats.reshape(B, N, -1)
    return targets, {name: valid for name in targets}


def batch_targets(video: torch.Tensor, motion: dict[str, torch.Tensor], cfg: TargetConfig,
                  model_cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every target of a batch and its validity, in the training step on the clip's device: pixel / HOG from
    the normalised clip ``(B, 3, T, H, W)``, traj / shape from the workers' ``motion``."""
    targets, valid = motion_targets(motion, cfg, model_cfg, tuple(video.shape[-2:]))
    return {**step_targets(video, cfg, model_cfg), **targets}, valid


def _ship_frames(sample, raw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct frames of a sample that the raw indices ``raw`` (any shape, all held) name, uint8
    ``(U, h, w, 3)``, and where each index is among them (``raw``'s shape)."""
    ids = np.asarray(sample.frame_ids)
    used = np.unique(raw)
    frames = np.ascontiguousarray(sample.frames[np.searchsorted(ids, used)])
    return torch.from_numpy(frames), torch.from_numpy(np.searchsorted(used, raw))


@dataclass
class TargetFn:
    """``sample -> motion`` in the data workers: the tracks (and frames) the motion targets are made of in the
    training step (picklable)."""

    cfg: TargetConfig
    model_cfg: ModelConfig

    def __post_init__(self):
        self.geom = token_geometry(self.cfg, self.model_cfg)
        self.names = [h for h in self.cfg.heads if h in MOTION_TARGETS]

    @property
    def track_length(self) -> int:
        """Raw frames after each tubelet start that the sample must hold (the sampler's ``track_length``)."""
        return self.cfg.track_length if self.names else 0

    @property
    def track_reads(self) -> int:
        """Raw frames from each tubelet start (the start included) that the worker decodes: all L + 1 the flow
        links; from a track cache only the L that ``shape`` reads its HOG at, and none for ``traj`` alone."""
        if not self.cfg.cache_dir:
            return self.track_length + 1
        return self.cfg.track_length if "shape" in self.names else 0

    def _stride(self, sample) -> int:
        """The clip's raw stride; tracks without interpolation step over it, so it must divide L. A clip of a video
        shorter than its window ends on the video's last frame, repeated (the dataset's convention: gaps of 0 after
        a shorter one); its stride is its largest gap, and its tracks see no motion past the last frame."""
        clip = np.asarray(sample.clip)
        gaps = np.diff(clip)
        moving = np.flatnonzero(gaps > 0)
        stride = int(gaps.max()) if len(moving) else 1
        # constant: every gap is the stride, but a shorter last step to the video's last frame, then only repeats
        ends_video = sample.source is None or clip[-1] == sample.source[2] - 1
        constant = len(moving) == 0 or ((gaps[moving[:-1]] == stride).all() and (gaps[:moving[-1]] > 0).all()
                                        and (gaps[moving[-1]] == stride or ends_video))
        if not self.cfg.interpolate and (not constant or self.cfg.track_length % stride):
            raise ConfigError(
                f"target.interpolate=false tracks between sampled frames: it needs a constant clip stride that "
                f"divides target.track_length={self.cfg.track_length}; clip of {sample.path} has gaps {gaps.tolist()}"
            )
        return stride

    def tracks(self, sample, stride: int) -> Tracks:
        cfg, L = self.cfg, self.cfg.track_length
        if cfg.cache_dir:
            return cached_tracks(Path(cfg.cache_dir), sample, L, self.geom.seed_stride, cfg)
        step = 1 if cfg.interpolate else stride
        n = L if cfg.interpolate else L // stride
        frames, crop = sample.frames, None
        if sample.flow_frames is not None:  # the crop with a margin around it (flow_margin)
            height, width = sample.frames.shape[1:3]
            frames, crop = sample.flow_frames, (*sample.flow_offset, width, height)
        tr = track(frames, sample.frame_ids, sample.starts, n, step, self.geom.seed_stride, cfg.flow,
                   cfg.compensate, cfg.max_disp, cfg.prune, source=str(sample.path), clamp=True, crop=crop)
        if not cfg.interpolate:
            tr.disp = spread_steps(tr.disp, stride, L, sample.starts, int(np.max(sample.frame_ids)))
            if tr.homs is not None:  # the camera moves at the end of each sampled span: exact at sampled steps
                homs = np.tile(np.eye(3, dtype=np.float32), (len(tr.homs), n * stride, 1, 1))
                homs[:, stride - 1::stride] = tr.homs
                tr.homs = homs[:, :L]
        return tr

    @property
    def flow_margin(self) -> int:
        """Output px of the video frame around the crop that the dataset is to give the worker's flow
        (``target.flow_margin``; :class:`~mme.data.dataset.PretrainDataset`'s), 0 where the workers compute none."""
        return self.cfg.flow_margin if self.cfg.flow_in_workers else 0

    @property
    def tracks_in_step(self) -> bool:
        """Whether the training step makes the tracks (:attr:`TargetConfig.flow_in_step`): the workers ship frames."""
        return self.cfg.flow_in_step

    def __call__(self, sample) -> dict[str, torch.Tensor]:
        """What this worker ships for the sample's motion targets (:func:`motion_targets` makes them in the
        step): the tracks, and for ``shape`` the frames and positions its HOG is read at; with a flow of the step,
        the frames the tracks visit instead of the tracks."""
        if not self.names:
            return {}
        if self.tracks_in_step:
            ids = np.asarray(sample.frame_ids)
            L = self.cfg.track_length
            raw = track_frames(ids.tolist(), np.asarray(sample.starts).tolist(), L, 1, int(ids.max()),
                               str(sample.path))  # (S, L + 1)
            frames, index = _ship_frames(sample, raw)
            out = {"frames": frames, "track_index": index}
            if "shape" in self.names:
                out["shape_index"] = index[:, :L].contiguous()
            return out
        stride = self._stride(sample)
        tr = self.tracks(sample, stride)
        out = {"disp": torch.from_numpy(np.ascontiguousarray(tr.disp, np.float32)),
               "track_valid": torch.from_numpy(np.ascontiguousarray(tr.valid))}
        if "shape" in self.names:
            # step j of start s reads the frame s + j (interpolate) or the last sampled frame at or before it
            ids = np.asarray(sample.frame_ids)
            L = self.cfg.track_length
            jj = np.arange(L) if self.cfg.interpolate else (np.arange(L) // stride) * stride
            raw = np.minimum(np.asarray(sample.starts)[:, None] + jj[None, :], ids.max())  # (S, L), as clamped
            out["frames"], out["shape_index"] = _ship_frames(sample, raw)
            out["shape_pos"] = torch.from_numpy(np.ascontiguousarray(tr.positions()[:, jj]))  # p_t .. p_{t+L-1}
        return out

    def targets(self, sample) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The sample's motion targets ``{name: (N, C)}`` and validity ``{name: (N,)}``, as the training step
        makes them (for inspection and tests)."""
        size = tuple(np.asarray(sample.frames).shape[1:3])
        batch = collate([{"motion": self(sample)}])["motion"]
        targets, valid = motion_targets(batch, self.cfg, self.model_cfg, size)
        return {n: t[0] for n, t in targets.items()}, {n: v[0] for n, v in valid.items()}


def make_target_fn(cfg: TargetConfig, model_cfg: ModelConfig) -> TargetFn:
    """The data workers' half of this config's targets (tracks for traj / shape; nothing for pixel and hog)."""
    return TargetFn(cfg, model_cfg)
