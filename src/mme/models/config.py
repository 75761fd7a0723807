"""Model configuration: the ViT encoder, the masking, and the light decoder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass
from typing import ClassVar

from mme.config import MAX_REPEATS, apply_preset, check_integers, check_within
from mme.errors import ClipNotDivisible, ConfigError
from mme.models.masking import MASKS
from mme.utils import MAX_INT

# Encoder presets (VideoMAE naming). Parameter counts are for the encoder at 16x224x224, tubelet 2, patch 16.
PRESETS: dict[str, dict] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),  # 5.6M encoder params
    "small": dict(embed_dim=384, depth=12, num_heads=6),  # 21.9M
    "base": dict(embed_dim=768, depth=12, num_heads=12),  # 86.2M
    "large": dict(embed_dim=1024, depth=24, num_heads=16),  # 303.9M
}


ENCODER_FIELDS = ("in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "layer_scale_init",
                  "norm_eps", "patch_size", "tubelet_size", "input_norm")
"""The encoder's architecture: the fields its weights fix (``input_norm``: how the weights learned to see a clip),
which a run starting from a checkpoint (``train.init``) takes from it."""
UNSHAPED_ENCODER_FIELDS = ("num_heads", "input_norm")
"""The fields of :data:`ENCODER_FIELDS` that no shape of the weights shows and that make another model: weights load
into an encoder built with other values of them, which computes another model. ``norm_eps`` is not one: Hugging
Face's VideoMAEConfig records 1e-12 where ours default to 1e-6, and the features differ by ~3e-6."""
DEFAULT_NORM_EPS = 1e-6
"""VideoMAE's and MME's LayerNorm eps (:attr:`ModelConfig.norm_eps`)."""
DECODER_FIELDS = ("decoder_dim", "decoder_depth", "decoder_heads", "decoder_layer_scale_init", "decoder_norm_eps",
                  "head_hidden")
"""The decoder's architecture and its prediction heads' hidden width, likewise (its final norm's eps: Hugging
Face's is 1e-5)."""
MAX_TOKENS = 2**20
"""The most tokens a clip of a model may have (:attr:`ModelConfig.num_tokens`): 1,568 at ViT-B's 16 x 224²,
131,072 at 64 frames of 1024²; past it, a config's clip (a checkpoint's ``img_size`` of 65536) made position tables
and attention of terabytes before a weight was read."""
LAYER_SCALES = ("layer_scale_init", "decoder_layer_scale_init")
"""The blocks' initial layer scales (0: off), each in [0, :data:`MAX_LAYER_SCALE`] where it is set; a file's
recorded config of an earlier mme, which took a negative one as off, is read with 0 there (the same model:
:func:`mme.models.checkpoint.recorded_model`)."""
MAX_LAYER_SCALE = 100.0
"""The largest initial layer scale a setting may have (:data:`LAYER_SCALES`)."""
DECODER_AND_MASK_FIELDS = (*DECODER_FIELDS, "mask_type", "mask_ratio")
"""The keys of pre-training alone: a classifier (fine-tuning, ``mme.train.config.FinetuneModel``) has no decoder and
masks no token."""


def whole_mlp_width(dim: int, ratio: float) -> int | None:
    """``dim * ratio`` where it is a whole number up to float error (``88 * (120 / 88)`` is 119.99999999999999: a
    ratio read as a width over ``dim`` gives that width back), else None."""
    product = dim * ratio
    nearest = round(product)
    return nearest if abs(product - nearest) <= 1e-9 * max(1.0, abs(product)) else None


def mlp_width(dim: int, ratio: float) -> int:
    """The MLP width of a block of width ``dim`` at ``mlp_ratio`` ``ratio``: the whole number the product is
    (:func:`whole_mlp_width`), else the product truncated (VideoMAE's ``int(dim * mlp_ratio)``)."""
    whole = whole_mlp_width(dim, ratio)
    return int(dim * ratio) if whole is None else whole


def _naming(given_as: Mapping[str, str] | None) -> Callable[..., str]:
    """How :class:`ModelConfig`'s refusals name a field: as its ``given_as`` does, else by its config key
    (``model.embed_dim``; bare with ``prefix=""``, for a field named beside the refused one: ``not divisible by
    num_heads``)."""
    given_as = given_as or {}

    def said(name: str, prefix: str = "model.") -> str:
        return given_as.get(name, prefix + name)
    return said


@dataclass
class ModelConfig:
    """Encoder, masking and decoder of the masked autoencoder (defaults: MME's released ViT-B recipe)."""

    PRESETS: ClassVar[dict[str, dict]] = PRESETS
    preset: str | None = None
    """Named encoder size (tiny/small/base/large) for embed_dim/depth/num_heads left unset; explicit values win."""
    img_size: int = 224
    """Input side in pixels (square)."""
    num_frames: int = 16
    """Frames per clip fed to the encoder."""
    patch_size: int = 16
    """Spatial patch side in pixels."""
    tubelet_size: int = 2
    """Frames per token."""
    in_chans: int = 3
    embed_dim: int | None = None
    """Encoder width; unset: the preset's, else ViT-B's 768 (likewise depth 12 and num_heads 12)."""
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    """q and v biases (no k bias) in the encoder and decoder blocks, as in VideoMAE."""
    layer_scale_init: float = 0.0
    """Initial layer-scale value; 0 disables layer scale."""
    norm_eps: float = DEFAULT_NORM_EPS
    """eps of the LayerNorms of the encoder and of the decoder's blocks: 1e-6 as VideoMAE/MME (and files that record
    none); a Hugging Face directory's ``layer_norm_eps`` (transformers' default 1e-12), which its export writes back."""
    drop_path: float = 0.0
    """Stochastic depth rate at the last block (linearly increasing)."""
    mask_type: str = "tube"
    """'tube' (same spatial mask on every temporal slice), 'random', or 'cube' (BEiT-style blocks over random runs
    of slices: the paper's cube ablation, at mask_ratio 0.4 there; :func:`mme.models.masking.cube_mask`)."""
    mask_ratio: float = 0.7
    decoder_dim: int = 192
    decoder_depth: int = 1
    decoder_heads: int = 6
    """Decoder attention heads. The presets set the encoder alone: the release's small model (``preset=small``) has
    a 192-d decoder of 3 heads, ``model.decoder_heads=3``."""
    decoder_layer_scale_init: float = 0.0
    """Initial layer-scale value of the decoder blocks; 0 disables it (VideoMAE's ``init_values`` sets both)."""
    decoder_norm_eps: float = 1e-6
    """eps of the decoder's final LayerNorm: 1e-6 as VideoMAE/MME; Hugging Face's VideoMAEDecoder uses 1e-5, so
    models imported from a Hugging Face directory set 1e-5 to reproduce its outputs exactly."""
    head_hidden: int = 512
    """Hidden width of the MLP prediction heads of motion/HOG targets (0 = a single Linear)."""
    input_norm: str = "dataset"
    """'dataset': the encoder sees clips as the data pipeline normalised them (ImageNet mean/std, as VideoMAE/MME);
    'clip': it first standardises each clip per colour channel (zero mean, unit std over its frames and pixels;
    given a mask, over its visible tubelets only, so that no masked pixel reaches the encoder through the clip's
    mean and spread), so a clip's overall colour and contrast, which vary widely between videos, do not drown
    small motions (a from-scratch tiny encoder, supervised, reads whole-view pans of `mme synth` by step 200 with
    it and stays at chance for 300 steps without: docs/results.md)."""
    checks_clip: InitVar[bool] = True
    """Whether the config, as built, checks that its patch and tubelet divide its clip (:meth:`check_clip`); not a
    key: False where a run config builds it as its section, which then decides (a run from ``train.init`` or a resume
    takes the checkpoint's patch and tubelet: :func:`mme.train.config.taken_from_checkpoint`), and where a run
    gives it a checkpoint's architecture, checked with the clips that take it (:func:`mme.train.config.clips_for`).
    A copy (``dataclasses.replace``) checks unless so told."""
    given_as: InitVar[Mapping[str, str] | None] = None
    """How what gives the fields names them, for its refusals (``{"embed_dim": "hidden_size"}``: a Hugging Face
    config's keys, :func:`mme.models.convert_config.config_from_hf`); not a key. A field it does not name is named by
    its config key (``model.embed_dim``, bare where a refusal names it beside the refused one), as in a copy
    (``dataclasses.replace``)."""

    def __post_init__(self, checks_clip: bool = True, given_as: Mapping[str, str] | None = None):
        said = _naming(given_as)
        apply_preset(self, "model", self.PRESETS, fallback=PRESETS["base"])
        check_integers(self, "model")
        for name in ("img_size", "num_frames", "patch_size", "tubelet_size", "embed_dim", "depth", "num_heads",
                     "decoder_dim", "decoder_heads", "mlp_ratio", "norm_eps", "decoder_norm_eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{said(name)} must be positive, got {getattr(self, name)}")
        for name in ("embed_dim", "decoder_dim"):
            width = getattr(self, name) * self.mlp_ratio
            if not 1 <= width <= MAX_INT:
                raise ConfigError(f"{said('mlp_ratio')}={self.mlp_ratio} makes an MLP of {width:g} units for "
                                  f"{said(name)}={getattr(self, name)}: it must be at least 1 and fit a 64-bit "
                                  "integer")
        for name in ("decoder_depth", "head_hidden"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{said(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("depth", "decoder_depth"):
            check_within(said(name), getattr(self, name), most=MAX_REPEATS, why="blocks: ViT-L has 24")
        for name in ("norm_eps", "decoder_norm_eps"):  # (1e30: every LayerNorm's output its bias, the input lost)
            check_within(said(name), getattr(self, name), most=1.0, why="a LayerNorm's eps, 1e-12 to 1e-5 "
                         "in the models mme reads; past the variance of its input it erases the input")
        for name in LAYER_SCALES:
            check_within(said(name), getattr(self, name), 0.0, MAX_LAYER_SCALE, "each block's residual branches "
                         "start scaled by it: VideoMAE's 0.1, 1 a plain residual, 0 off; 1e30 makes NaN activations")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"{said('drop_path')} must be in [0, 1), got {self.drop_path}")
        if checks_clip:
            self.check_clip(given_as)
        if self.num_tokens > MAX_TOKENS:
            clip = ", ".join(f"{said(name, '')} {getattr(self, name)}" for name in ("num_frames", "tubelet_size",
                                                                                   "img_size", "patch_size"))
            raise ConfigError(f"{said('img_size')} and {said('num_frames', '')}: a clip of {clip} makes "
                              f"{self.num_tokens} tokens, more than the {MAX_TOKENS} mme takes")
        for width, heads in (("embed_dim", "num_heads"), ("decoder_dim", "decoder_heads")):
            if getattr(self, width) % getattr(self, heads):
                raise ConfigError(f"{said(width)} {getattr(self, width)} is not divisible by {said(heads, '')} "
                                  f"{getattr(self, heads)}")
        if self.mask_type not in MASKS:
            raise ConfigError(f"{said('mask_type')} must be one of {list(MASKS)}, got {self.mask_type!r}")
        if self.input_norm not in ("dataset", "clip"):
            raise ConfigError(f"{said('input_norm')} must be 'dataset' or 'clip', got {self.input_norm!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"{said('mask_ratio')} must be in [0, 1), got {self.mask_ratio}")

    def check_clip(self, given_as: Mapping[str, str] | None = None) -> None:
        """The clip (frames and size) must be a multiple of the tubelet and the patch (the fields named as
        ``given_as`` says, as where it is built)."""
        said = _naming(given_as)
        for name, unit in (("img_size", "patch_size"), ("num_frames", "tubelet_size")):
            value, size = getattr(self, name), getattr(self, unit)
            if value % size:
                raise ClipNotDivisible(name, value, f"is not a multiple of {said(unit, '')} {size}", said(name))

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (t, h, w)."""
        side = self.img_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w
