"""Fine-tuning augmentation on batches of clips, written in torch (no torchvision/timm): RandAugment with one
op and magnitude per clip (every frame alike), random erasing of one box through every frame of a clip (the video
RandomErasing VideoMAE/MME use, ``cube=True``), mixup/cutmix with label smoothing, and the soft-target
cross-entropy they need.

The recipe is VideoMAE/MME's (mme-method.md §10): ``rand-m7-n4-mstd0.5-inc1``, random erasing 0.25 (pixel
noise, 1 box), mixup 0.8 / cutmix 1.0 (probability 1, switch 0.5), label smoothing 0.1. Here the ops run on the
batch after the dataset's crop and flip (VideoMAE runs RandAugment before the crop); every random draw comes
from one ``numpy.random.Generator`` so a step's augmentation is replayed exactly from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mme.config import MAX_REPEATS, check_integers, check_within
from mme.data.transforms import IMAGENET_MEAN, denormalize, normalize
from mme.errors import ConfigError

_MAX_LEVEL = 10.0  # RandAugment magnitudes are on a 0..10 scale


@dataclass
class AugmentConfig:
    """Batch augmentation of fine-tuning (defaults: the VideoMAE/MME recipe)."""

    randaug_ops: int = 4
    """RandAugment: ops drawn per clip (n); 0 disables RandAugment."""
    randaug_magnitude: float = 7.0
    """RandAugment: magnitude m on the 0..10 scale."""
    randaug_magnitude_std: float = 0.5
    """RandAugment: std of the per-op Gaussian noise on the magnitude (mstd); above 100 each op's magnitude is
    uniform in [0, m] instead, as timm reads ``mstd`` above 100 (``rand-m9-mstd101``)."""
    randaug_prob: float = 0.5
    """RandAugment: probability that each drawn op is applied."""
    erase_prob: float = 0.25
    """Random erasing probability per clip (one box through all its frames, N(0, 1) pixel noise)."""
    mixup_alpha: float = 0.8
    """Beta(α, α) parameter of mixup; 0 disables mixup."""
    cutmix_alpha: float = 1.0
    """Beta(α, α) parameter of cutmix; 0 disables cutmix."""
    mix_prob: float = 1.0
    """Probability that a batch is mixed at all."""
    mix_switch_prob: float = 0.5
    """Probability of cutmix instead of mixup when both are enabled."""
    label_smoothing: float = 0.1
    """Label smoothing of the (mixed) targets."""

    def __post_init__(self):
        check_integers(self, "augment")
        for name in ("randaug_prob", "erase_prob", "mix_prob", "mix_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.randaug_magnitude <= _MAX_LEVEL:
            raise ConfigError(f"augment.randaug_magnitude must be in [0, 10], got {self.randaug_magnitude}")
        if self.randaug_ops < 0 or self.mixup_alpha < 0 or self.cutmix_alpha < 0 or self.randaug_magnitude_std < 0:
            raise ConfigError("augment.randaug_ops, randaug_magnitude_std, mixup_alpha, cutmix_alpha must be >= 0")
        check_within("augment.randaug_ops", self.randaug_ops, most=MAX_REPEATS,
                     why="ops applied to each clip: RandAugment's 2 to 4")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"augment.label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def unmixed_in(self, batch_size: int) -> str:
        """Why a batch of ``batch_size`` videos (one rank's micro-batch) leaves one of them unmixed, or '': mixup and
        cutmix pair each video with the batch reversed (:func:`mix_batch`, as timm), so the middle video of an odd
        batch is mixed with itself (its own copy, with repeated augmentation); a batch of 1 is never mixed."""
        if batch_size % 2 == 0 or self.mix_prob == 0 or (self.mixup_alpha == 0 and self.cutmix_alpha == 0):
            return ""
        which = "its one video is never mixed" if batch_size == 1 else \
            f"the middle one of its {batch_size} videos is mixed with its own copy, unmixed"
        return (f"train.batch_size={batch_size} is odd: mixup and cutmix pair each video with the batch reversed, "
                f"so {which} (its targets stay one class, smoothed); an even train.batch_size mixes every video")

    def keys_without_effect(self) -> dict[str, str]:
        """:func:`mme.config.keys_without_effect`: the choice between mixup and cutmix where one is off, the chance
        of mixing where both are, RandAugment's settings where it draws no op."""
        alphas = f"augment.mixup_alpha={self.mixup_alpha} augment.cutmix_alpha={self.cutmix_alpha} (0 turns one off)"
        unused = {}
        if not (self.mixup_alpha > 0 and self.cutmix_alpha > 0):
            unused["mix_switch_prob"] = f"it chooses between mixup and cutmix where both are on, and {alphas}"
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            unused["mix_prob"] = f"it is the chance that a batch is mixed, and {alphas}"
        if self.randaug_ops == 0:
            for name in ("randaug_magnitude", "randaug_magnitude_std", "randaug_prob"):
                unused[name] = "augment.randaug_ops=0 draws no RandAugment op"
        return unused


UNIFORM_MAGNITUDE_STD = 100.0
"""An ``augment.randaug_magnitude_std`` above it draws each op's magnitude uniformly in [0, m], as timm's ``mstd``
above 100 does: a Gaussian that wide, clipped to [0, 10], would give almost only 0 and 10."""


# ---- RandAugment ops on one clip ``x (T, 3, H, W)`` in [0, 1]; ``m`` is the magnitude in [0, 1] -----------------


def _fill(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def _affine(x: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Warp every frame by the 2x3 ``matrix`` in normalised [-1, 1] coordinates (output -> input), bilinear,
    uncovered pixels filled with the ImageNet mean colour."""
    theta = torch.tensor(matrix, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = _fill(x)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def _rotate(x, m, sign):
    a = math.radians(sign * 30.0 * m)
    H, W = x.shape[-2:]
    # Rotation about the centre in pixel units, expressed in normalised coordinates (aspect-corrected).
    return _affine(x, [[math.cos(a), -math.sin(a) * H / W, 0.0], [math.sin(a) * W / H, math.cos(a), 0.0]])


def _shear_x(x, m, sign):  # about the top edge, as PIL's affine (1, a, 0, 0, 1, 0) in timm
    H, W = x.shape[-2:]
    a = sign * 0.3 * m * H / W
    return _affine(x, [[1.0, a, a], [0.0, 1.0, 0.0]])


def _shear_y(x, m, sign):  # about the left edge
    H, W = x.shape[-2:]
    a = sign * 0.3 * m * W / H
    return _affine(x, [[1.0, 0.0, 0.0], [a, 1.0, a]])


def _translate_x(x, m, sign):  # up to 45 % of the width
    return _affine(x, [[1.0, 0.0, sign * 2 * 0.45 * m], [0.0, 1.0, 0.0]])


def _translate_y(x, m, sign):
    return _affine(x, [[1.0, 0.0, 0.0], [0.0, 1.0, sign * 2 * 0.45 * m]])


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ImageEnhance: ``degenerate + factor * (x - degenerate)``, clipped to [0, 1]."""
    return (degenerate + factor * (x - degenerate)).clamp(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def _color(x, m, sign):
    return _blend(_gray(x), x, 1.0 + sign * 0.9 * m)


def _contrast(x, m, sign):  # towards the clip's mean grey level
    return _blend(_gray(x).mean().expand_as(x), x, 1.0 + sign * 0.9 * m)


def _brightness(x, m, sign):
    return _blend(torch.zeros_like(x), x, 1.0 + sign * 0.9 * m)


def _sharpness(x, m, sign):
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=x.dtype, device=x.device) / 13
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), kernel[None, None]).reshape(
        *x.shape[:2], x.shape[-2] - 2, x.shape[-1] - 2)  # borders stay as in x (PIL)
    return _blend(smooth, x, 1.0 + sign * 0.9 * m)


def _levels(x):
    """The 8-bit levels of ``x`` in [0, 1], rounded: a level back from normalisation may sit a hair under k/255."""
    return (x * 255).round().to(torch.int32)


def _posterize(x, m, sign):  # keep 4 .. 0 high bits as m grows ("increasing" variant)
    bits = 4 - int(m * 4)
    shift = 8 - bits
    return (_levels(x) >> shift << shift).to(x.dtype) / 255


def _solarize(x, m, sign):  # invert pixels at or above a threshold that drops from 256 to 0 as m grows
    return torch.where(_levels(x) >= 256 - int(m * 256), 1.0 - x, x)


def _solarize_add(x, m, sign):
    return torch.where(x < 128 / 255, (x + int(m * 110) / 255).clamp(max=1.0), x)


def _autocontrast(x, m, sign):  # per channel over the whole clip
    lo = x.amin(dim=(0, 2, 3), keepdim=True)
    hi = x.amax(dim=(0, 2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-6), x)


def _equalize(x, m, sign):
    """PIL's histogram equalisation per channel, with the histogram of the whole clip."""
    q = _levels(x).long().clamp(0, 255)
    out = torch.empty_like(x)
    for c in range(3):
        v = q[:, c]
        hist = torch.bincount(v.flatten(), minlength=256)
        nonzero = hist[hist > 0]
        step = (hist.sum() - nonzero[-1]) // 255
        if step == 0:
            out[:, c] = x[:, c]
            continue
        lut = ((torch.cumsum(hist, 0) - hist + step // 2) // step).clamp(max=255)
        out[:, c] = lut[v].to(x.dtype) / 255
    return out


def _invert(x, m, sign):
    return 1.0 - x


RAND_OPS = {
    "AutoContrast": _autocontrast, "Equalize": _equalize, "Invert": _invert, "Rotate": _rotate,
    "Posterize": _posterize, "Solarize": _solarize, "SolarizeAdd": _solarize_add, "Color": _color,
    "Contrast": _contrast, "Brightness": _brightness, "Sharpness": _sharpness, "ShearX": _shear_x,
    "ShearY": _shear_y, "TranslateX": _translate_x, "TranslateY": _translate_y,
}
"""The 15 ops of RandAugment's "increasing" set (timm ``inc1``): larger magnitude = stronger for every op."""


def op_magnitude(cfg: AugmentConfig, rng: np.random.Generator) -> float:
    """One op's magnitude on the 0..10 scale: m, or N(m, mstd) clipped to [0, 10], or uniform in [0, m] where mstd
    exceeds UNIFORM_MAGNITUDE_STD (timm's ``rand-m9-mstd101``)."""
    level = cfg.randaug_magnitude
    if cfg.randaug_magnitude_std > UNIFORM_MAGNITUDE_STD:
        return float(rng.uniform(0.0, level))
    if cfg.randaug_magnitude_std > 0:
        return float(np.clip(rng.normal(level, cfg.randaug_magnitude_std), 0.0, _MAX_LEVEL))
    return level


def rand_augment(clip: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """RandAugment on one clip ``(3, T, H, W)`` in [0, 1]: ``randaug_ops`` ops drawn uniformly (with
    replacement), each applied with ``randaug_prob`` at a magnitude of :func:`op_magnitude` and a random sign,
    identically to every frame."""
    x = clip.transpose(0, 1)  # (T, 3, H, W): frames as a batch
    names = list(RAND_OPS)
    for _ in range(cfg.randaug_ops):
        op = RAND_OPS[names[rng.integers(len(names))]]
        if rng.random() >= cfg.randaug_prob:
            continue
        level = op_magnitude(cfg, rng)
        sign = -1.0 if rng.random() < 0.5 else 1.0
        x = op(x, level / _MAX_LEVEL, sign)
    return x.transpose(0, 1).contiguous()


def random_erase(clip: torch.Tensor, prob: float, rng: np.random.Generator,
                 area: tuple[float, float] = (0.02, 1 / 3),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """With probability ``prob``, one box of a normalised clip ``(3, T, H, W)`` replaced in every frame by fresh
    N(0, 1) noise: its area uniform in ``area`` of a frame, its aspect log-uniform in ``ratio`` (100 tries). As the
    video RandomErasing that VideoMAE/MME call on the clip's frames (mode 'pixel', one box, ``cube=True``): the
    box stays where it is through the clip, an occluder rather than a flicker of boxes (motion, to a video
    model)."""
    _, T, H, W = clip.shape
    if rng.random() >= prob:
        return clip
    for _ in range(100):
        target = rng.uniform(*area) * H * W
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < h < H and 0 < w < W:
            top, left = rng.integers(H - h + 1), rng.integers(W - w + 1)
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            out = clip.clone()
            out[:, :, top:top + h, left:left + w] = torch.randn(3, T, h, w, generator=g).to(clip)
            return out
    return clip


def one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Smoothed one-hot targets ``(B, C)``: ``1 - smoothing + smoothing/C`` on the label, ``smoothing/C`` elsewhere."""
    off = smoothing / num_classes
    return torch.full((len(labels), num_classes), off, device=labels.device).scatter_(
        1, labels[:, None].long(), 1.0 - smoothing + off)


def mix_batch(video: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: AugmentConfig,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix of a batch ``(B, 3, T, H, W)`` with its reverse (one λ per batch, one box through all
    frames), and the correspondingly mixed, smoothed targets ``(B, C)``."""
    targets = one_hot(labels, num_classes, cfg.label_smoothing)
    use_mixup, use_cutmix = cfg.mixup_alpha > 0, cfg.cutmix_alpha > 0
    if not (use_mixup or use_cutmix) or rng.random() >= cfg.mix_prob:
        return video, targets
    cutmix = use_cutmix and (not use_mixup or rng.random() < cfg.mix_switch_prob)
    lam = float(rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha) if cutmix else rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
    flipped = video.flip(0)
    if cutmix:
        H, W = video.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy, cx = rng.integers(H), rng.integers(W)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        video = video.clone()
        video[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)  # the area actually kept
    else:
        video = video * lam + flipped * (1.0 - lam)
    return video, targets * lam + targets.flip(0) * (1.0 - lam)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c targets_c log softmax(logits)_c``."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def augment_batch(video: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: AugmentConfig,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole fine-tuning augmentation of a normalised batch ``(B, 3, T, H, W)``: per clip RandAugment (in
    [0, 1]) then random erasing (normalised), then mixup/cutmix of the batch. Returns (video, targets (B, C))."""
    clips = []
    for clip in video:
        if cfg.randaug_ops > 0:
            clip = normalize(rand_augment(denormalize(clip).clamp(0, 1), cfg, rng))
        clips.append(random_erase(clip, cfg.erase_prob, rng) if cfg.erase_prob > 0 else clip)
    return mix_batch(torch.stack(clips), labels, num_classes, cfg, rng)
