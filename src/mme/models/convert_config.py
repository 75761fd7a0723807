"""Model configs and head specs for checkpoints that do not carry ours: read from the weights' shapes
(``infer_config``, ``infer_heads``) or translated from / to a Hugging Face VideoMAEConfig dict (``config_from_hf``,
``config_to_hf``). The key tables that convert the weights themselves are in :mod:`mme.models.convert`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch

from mme.errors import CheckpointError, ConfigError
from mme.models.config import MAX_LAYER_SCALE, ModelConfig, mlp_width, whole_mlp_width
from mme.models.convert import RELEASE_HEADS, encoder_part
from mme.models.mae import HeadSpec
from mme.utils import as_count, flag, is_positive_number

log = logging.getLogger(__name__)

# Attention heads of the original model factories per encoder width (VideoMAE/MME small, base, large, huge;
# ViT-H's heads are 80-d) and of their decoders, which the files do not record.
ORIGINAL_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16}
ORIGINAL_DECODER_HEADS = {384: 3, 768: 6, 1024: 8, 1280: 8}


class HeadCountUnknown(CheckpointError):
    """A file records no head count, and its width has no guess nor a fallback's count (:func:`infer_config`):
    ``widths`` = the width of each count concerned (``{"num_heads": 96}``), for the caller's message
    (``mme.train.engine.read_init``)."""

    def __init__(self, message: str, widths: dict[str, int] | None = None):
        super().__init__(message)
        self.widths = widths or {}


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if idx != set(range(len(idx))):
        raise CheckpointError(f"block indices under {prefix!r} are not contiguous: {sorted(idx)}")
    return len(idx)


def infer_config(state: dict[str, torch.Tensor], kind: str, num_heads: int | None = None,
                 decoder_heads: int | None = None, fallback_heads: ModelConfig | None = None,
                 **fields) -> ModelConfig:
    """A ModelConfig for our ``kind`` state dict, read from the weights' shapes.

    Head counts are not in the weights: ``num_heads`` and ``decoder_heads`` default to ``fallback_heads``' counts
    where its width is the weights' (:func:`fallback_counts`), else to the original factories' values for the
    encoder width (ViT-B: 12 and 6), else to 64-d heads; a guess is logged (at info: whoever builds a model of it
    warns, naming how to give it, as ``Checkpoint.assumed`` carries it). A width of none of these (96) is a
    :class:`HeadCountUnknown`. ``img_size`` / ``num_frames`` are not in the weights either (the position table is
    fixed): pass them in ``fields``, else 224 / 16."""
    enc = encoder_part(state, kind)
    if "patch_embed.proj.weight" not in enc:
        raise CheckpointError("state dict has no patch_embed.proj.weight: not a ViT encoder")
    D, C, t, p, p2 = enc["patch_embed.proj.weight"].shape  # Conv3d weight (D, C, tubelet, patch, patch)
    if p != p2:
        raise CheckpointError(f"non-square patches {p}x{p2} are not supported")
    depth = _count_blocks(enc, "blocks.")
    if depth == 0:
        raise CheckpointError("state dict has no encoder blocks (blocks.N.*)")
    if "blocks.0.mlp.fc1.weight" not in enc:
        raise CheckpointError("state dict has no blocks.0.mlp.fc1.weight: its encoder blocks are incomplete")
    hidden = enc["blocks.0.mlp.fc1.weight"].shape[0]
    cfg = dict(embed_dim=D, in_chans=C, tubelet_size=t, patch_size=p, depth=depth, num_heads=num_heads,
               mlp_ratio=hidden / D, qkv_bias="blocks.0.attn.q_bias" in enc,
               layer_scale_init=_layer_scale(enc.get("blocks.0.gamma_1")))
    if kind == "mae":
        for key in ("encoder_to_decoder.weight", "decoder_blocks.0.mlp.fc1.weight"):
            if key not in state and (key.startswith("encoder") or any(k.startswith("decoder_blocks.") for k in state)):
                raise CheckpointError(f"a pre-training state dict without {key}: incomplete")
        dd = state["encoder_to_decoder.weight"].shape[0]
        cfg.update(decoder_dim=dd, decoder_depth=_count_blocks(state, "decoder_blocks."), decoder_heads=decoder_heads,
                   decoder_layer_scale_init=_layer_scale(state.get("decoder_blocks.0.gamma_1")))
        if cfg["decoder_depth"] and state["decoder_blocks.0.mlp.fc1.weight"].shape[0] != mlp_width(dd, hidden / D):
            raise CheckpointError("decoder MLP ratio differs from the encoder's: not supported by ModelConfig")
        hidden_sizes = [v.shape[0] for k, v in state.items() if k.startswith("heads.") and k.endswith("fc1.weight")]
        cfg["head_hidden"] = hidden_sizes[0] if hidden_sizes else 0  # (0: single Linear heads, VideoMAE's pixel head)
    cfg.update(_head_counts(cfg, fallback_heads))
    cfg.update({k: v for k, v in fields.items() if v is not None})
    return ModelConfig(**cfg)


HEAD_WIDTHS = {"num_heads": "embed_dim", "decoder_heads": "decoder_dim"}
"""Each head count of a model config, and the width whose heads it counts."""

GUESSES = {"num_heads": (ORIGINAL_HEADS, "number of attention heads"),
           "decoder_heads": (ORIGINAL_DECODER_HEADS, "decoder attention heads")}
"""Each head count :func:`infer_config` guesses: the original factories' counts (by the encoder's width), and its
name in messages."""


def head_guess(key: str, embed_dim: int, width: int) -> int | None:
    """The count :func:`infer_config` guesses for the head count ``key`` of a file of encoder width ``embed_dim``
    whose heads divide ``width`` (:data:`HEAD_WIDTHS`): the original factories' for that encoder width, else 64-d
    heads; None where neither divides the width."""
    count = GUESSES[key][0].get(embed_dim, width // 64 if width % 64 == 0 else None)
    return None if count is None or width % count else count


def fallback_counts(fallback: ModelConfig | None, file_cfg: dict, keys: Iterable[str]) -> dict[str, int]:
    """The head counts among ``keys`` (config fields) of ``fallback`` (a run's model config) whose width is the one
    in ``file_cfg`` (a file's config fields): a count given for another width says nothing of the file's."""
    if fallback is None:
        return {}
    return {key: getattr(fallback, key) for key in keys
            if key in HEAD_WIDTHS and getattr(fallback, HEAD_WIDTHS[key]) == file_cfg[HEAD_WIDTHS[key]]}


def _head_counts(cfg: dict, fallback: ModelConfig | None) -> dict[str, int]:
    """The head counts ``cfg`` (:func:`infer_config`'s) leaves unset: ``fallback``'s where its width is the file's,
    else guessed from the widths and logged at info; a :class:`HeadCountUnknown` where a width has neither."""
    unset = [key for key in GUESSES if cfg.get(key, 0) is None]  # (0: not of this kind's)
    taken = fallback_counts(fallback, cfg, unset)
    guessed, unknown = {}, {}
    for key in unset:
        if key in taken:
            continue
        count = head_guess(key, cfg["embed_dim"], cfg[HEAD_WIDTHS[key]])
        if count is None:
            unknown[key] = cfg[HEAD_WIDTHS[key]]
        else:
            guessed[key] = count
    if unknown:
        widths = " nor ".join(f"{'its decoder' if key == 'decoder_heads' else 'its'} width {w}"
                              for key, w in unknown.items())
        options = " ".join(flag(key) + " N" for key in unknown)
        raise HeadCountUnknown(f"it records no head count, and no guess fits {widths} (an original model's count, "
                               f"or 64-d heads): give the count it was trained with to mme export ({options}) and "
                               f"use the export (in Python: {', '.join(k + '=N' for k in unknown)})", unknown)
    for key, count in guessed.items():
        why = (f"the original factories' value for width {cfg['embed_dim']}" if cfg["embed_dim"] in GUESSES[key][0]
               else "assuming 64-d heads")
        log.info("%s not stored in this checkpoint: %s=%d (%s)", GUESSES[key][1], key, count, why)
    return {**guessed, **taken}


def _layer_scale(gamma: torch.Tensor | None) -> float:
    """``layer_scale_init`` for blocks whose first stores ``gamma``: only its presence matters for loading (the
    value is an init); the stored magnitude is kept within the bound of the setting (trained gammas may average
    past :data:`~mme.models.config.MAX_LAYER_SCALE`, or be NaN: 1 then)."""
    return 0.0 if gamma is None else float(gamma.abs().mean().nan_to_num(1.0).clamp(1e-6, MAX_LAYER_SCALE))


def infer_heads(state: dict[str, torch.Tensor], release: bool = False) -> list[HeadSpec]:
    """Head specs of our MAE state dict from its ``heads.<name>.*`` keys (in key order). Activations and loss
    reductions are not in the weights: with ``release`` (an original MME file) they are the release's, else
    linear outputs and mean reduction are assumed (logged when a head is an MLP, i.e. not a pixel head)."""
    names = list(dict.fromkeys(k.split(".")[1] for k in state if k.startswith("heads.")))
    specs = []
    for name in names:
        fc1 = state.get(f"heads.{name}.fc1.weight")
        act, reduction = RELEASE_HEADS.get(name, ("none", "mean")) if release else ("none", "mean")
        specs.append(HeadSpec(name, state[f"heads.{name}.fc2.weight"].shape[0], act,
                              hidden=0 if fc1 is None else fc1.shape[0], weight=1.0 / len(names), reduction=reduction))
    if not release and any(s.hidden for s in specs):
        log.warning("head activations are not stored in this checkpoint: assuming linear outputs and mean "
                    "reduction for %s", [s.name for s in specs])
    return specs


def _hf_integer(key: str, value, least: int = 1) -> int:
    """``value`` of a Hugging Face config's ``key``: an integer of at least ``least``, else a CheckpointError naming
    the key (JSON's ``"192"``, ``null`` and ``8.0`` are none: :func:`~mme.utils.as_count`)."""
    if (count := as_count(value, least)) is None:
        raise CheckpointError(f"{key} is {json.dumps(value, default=repr)}: expected an integer of at least {least}")
    return count


def _hf_side(key: str, value) -> int:
    """``value`` of a Hugging Face config's ``key`` of a square's side: an integer, or a list of equal ones."""
    if not isinstance(value, (list, tuple)):
        return _hf_integer(key, value)
    sides = {_hf_integer(key, x) for x in value}
    if len(sides) != 1:
        raise CheckpointError(f"{key} is {json.dumps(value, default=repr)}: expected one side "
                              "(non-square images are not supported)")
    return sides.pop()


def _hf_flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise CheckpointError(f"{key} is {json.dumps(value, default=repr)}: expected true or false")
    return value


def _hf_eps(key: str, value) -> float:
    if not is_positive_number(value):
        raise CheckpointError(f"{key} is {json.dumps(value, default=repr)}: expected a positive number")
    return float(value)


class HFKey(NamedTuple):
    """The key of a Hugging Face VideoMAEConfig that records a value of ours, transformers' value where a file has
    none, and what reads it (the key and the file's value in, the value or a CheckpointError naming the key out)."""
    key: str
    default: object
    read: Callable[[str, object], object] = _hf_integer

    def value(self, hf: dict):
        """Its value in the Hugging Face config dict ``hf`` (transformers' default where ``hf`` lacks it), read."""
        return self.read(self.key, hf.get(self.key, self.default))


HF_KEYS = {
    "img_size": HFKey("image_size", 224, _hf_side), "patch_size": HFKey("patch_size", 16, _hf_side),
    "num_frames": HFKey("num_frames", 16), "tubelet_size": HFKey("tubelet_size", 2),
    "in_chans": HFKey("num_channels", 3), "embed_dim": HFKey("hidden_size", 768),
    "depth": HFKey("num_hidden_layers", 12), "num_heads": HFKey("num_attention_heads", 12),
    "qkv_bias": HFKey("qkv_bias", True, _hf_flag), "norm_eps": HFKey("layer_norm_eps", 1e-12, _hf_eps),
    "decoder_dim": HFKey("decoder_hidden_size", 384), "decoder_heads": HFKey("decoder_num_attention_heads", 6),
    "decoder_depth": HFKey("decoder_num_hidden_layers", 4, functools.partial(_hf_integer, least=0)),
}
"""Each ModelConfig field a Hugging Face VideoMAEConfig records, and its key there: what :func:`config_from_hf`
reads, :func:`config_to_hf` writes, and the file's refusals name. ``mlp_ratio`` is recorded as the MLP widths
(:data:`HF_MLP_KEYS`); ``norm_eps`` is the encoder's and the decoder blocks' LayerNorms' eps (the decoder's final
norm's is 1e-5). ``qkv_bias`` is written so, which every transformers reads (over ``qv_bias``, transformers 5's key
(5.25 checked), which it writes: :data:`HF_QV_BIAS`)."""

HF_MLP_KEYS = {"embed_dim": HFKey("intermediate_size", 3072), "decoder_dim": HFKey("decoder_intermediate_size", 1536)}
"""The key of a Hugging Face VideoMAEConfig that records the MLP width of the blocks of each width field of
ModelConfig, whose quotient is ``mlp_ratio``."""

HF_QV_BIAS = "qv_bias"
"""transformers 5's key of ``qkv_bias`` (5.25 checked), read where a file has no ``qkv_bias``."""


def _hf_ratio(width: str) -> str:
    """How a Hugging Face config records the MLP ratio of the blocks of ``width`` (a ModelConfig field)."""
    return f"{HF_MLP_KEYS[width].key} / {HF_KEYS[width].key}"


HF_NAMES = {**{field: hf.key for field, hf in HF_KEYS.items()}, "mlp_ratio": _hf_ratio("embed_dim")}
"""How a Hugging Face config names each ModelConfig field: ModelConfig's ``given_as`` where :func:`config_from_hf`
builds one, so that its refusals name the file's keys."""


def config_from_hf(hf: dict, decoder: bool = True) -> ModelConfig:
    """Our ModelConfig from a Hugging Face VideoMAEConfig dict (:data:`HF_KEYS`; a key it lacks, transformers'
    default). ``decoder``: whether the weights hold a decoder; a VideoMAEConfig always has decoder fields
    (transformers' defaults in a ``VideoMAEModel``'s): each must be a whole number (or a positive eps) either way,
    their ratio to the encoder's width only where they describe weights."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (ours is exact GELU)")
    fields = {field: key.value(hf) for field, key in HF_KEYS.items()}
    if HF_KEYS["qkv_bias"].key not in hf and HF_QV_BIAS in hf:
        fields["qkv_bias"] = HF_KEYS["qkv_bias"].read(HF_QV_BIAS, hf[HF_QV_BIAS])
    ratio, dec_ratio = (HF_MLP_KEYS[width].value(hf) / fields[width] for width in ("embed_dim", "decoder_dim"))
    if decoder and HF_KEYS["decoder_dim"].key in hf and dec_ratio != ratio:
        raise CheckpointError(f"{_hf_ratio('decoder_dim')} {dec_ratio:g} differs from {_hf_ratio('embed_dim')} "
                              f"{ratio:g}: mme's decoder blocks have the encoder's MLP ratio")
    try:
        return ModelConfig(**fields, mlp_ratio=ratio, decoder_norm_eps=1e-5, head_hidden=0, given_as=HF_NAMES)
    except ConfigError as e:  # (a value of the file that ModelConfig refuses: named by the file's keys)
        raise CheckpointError(str(e)) from e


def _mlp_width(cfg: ModelConfig, width: str) -> int:
    """The MLP width of the blocks of width ``width`` (a config field: ``embed_dim``, ``decoder_dim``) at
    ``cfg.mlp_ratio``; a CheckpointError naming the width where the product is no whole number (a Hugging Face
    config records the MLP width itself, and reads back as the ratio of the widths)."""
    hidden = whole_mlp_width(getattr(cfg, width), cfg.mlp_ratio)
    if hidden is None:
        raise CheckpointError(f"mlp_ratio {cfg.mlp_ratio} gives {width} {getattr(cfg, width)} a non-integer MLP width "
                              f"({getattr(cfg, width) * cfg.mlp_ratio:g})")
    return hidden


def config_to_hf(cfg: ModelConfig, architecture: str, use_mean_pooling: bool, norm_pix: bool = True,
                 labels: list[str] | None = None, assumed: tuple[str, ...] = (), run: dict | None = None,
                 origin: dict | None = None, decoder: bool = True, dtype: torch.dtype = torch.float32) -> dict:
    """A Hugging Face VideoMAEConfig dict for our config (its keys: :data:`HF_KEYS`); ``labels``: a classifier's
    class names by id (``id2label``); ``assumed``: the fields that no file recorded (``mme_assumed``); ``run``: the
    record of the run that made it (``mme_run``, ``Checkpoint.run_record``); ``origin``: where its weights were trained
    (``mme_origin``, ``Checkpoint.origin``). transformers keeps and ignores the
    ``mme_`` keys, mme reads them back. ``decoder``: whether the weights hold a decoder; its MLP width
    (``decoder_intermediate_size``) is written only then (an encoder's or classifier's config records the decoder
    width of the run that made it, at whose MLP ratio it may have none: VideoMAE V2's ViT-g, 1408 wide with an MLP of
    6144). ``dtype``: the weights' (``torch_dtype``)."""
    if cfg.input_norm != "dataset":
        raise CheckpointError(f"model.input_norm={cfg.input_norm!r} (per-clip standardisation inside the encoder) "
                              "has no Hugging Face VideoMAE counterpart: the exported model would give other outputs")
    widths = ("embed_dim", "decoder_dim") if decoder else ("embed_dim",)
    out = {
        "architectures": [architecture], "model_type": "videomae",
        **{hf.key: getattr(cfg, field) for field, hf in HF_KEYS.items()},
        **{HF_MLP_KEYS[width].key: _mlp_width(cfg, width) for width in widths},
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "use_mean_pooling": use_mean_pooling, "norm_pix_loss": norm_pix,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if assumed:
        out["mme_assumed"] = list(assumed)
    if run:
        out["mme_run"] = run
    if origin:
        out["mme_origin"] = origin
    if labels is not None:
        out["id2label"] = {str(i): name for i, name in enumerate(labels)}
        out["label2id"] = {name: i for i, name in enumerate(labels)}
    return out
