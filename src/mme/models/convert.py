"""Checkpoint conversion as key tables: the original VideoMAE/MME layouts and Hugging Face VideoMAE <-> ours.

Our layout is the canonical one; every reader converts to it (``to_ours``), the HF writer converts from it
(``to_hf``). Its keys, by kind:

- ``encoder`` (a VisionTransformer): ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv.weight, attn.q_bias,
  attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2, gamma_1, gamma_2}``, ``norm.*`` -- the same names as the
  original code's encoder, so original encoders need no renaming;
- ``mae`` (a MaskedAutoencoder): ``encoder.<encoder keys>``, ``encoder_to_decoder.weight``, ``mask_token``,
  ``decoder_blocks.N.*``, ``decoder_norm.*``, ``heads.<name>.{fc1, fc2}.*``;
- ``classifier`` (a VideoClassifier): ``encoder.<encoder keys>`` (no ``norm`` with mean pooling), ``fc_norm.*``,
  ``head.*``.

A table maps source names to destination names with ``{}`` for a block/head index (torchtitan's
state_dict_adapter style). A tuple destination splits a fused tensor along dim 0 (our ``qkv`` -> HF's
query/key/value; HF has no key bias, nor do we); a tuple source concatenates (the inverse).
"""

from __future__ import annotations

import logging
import re

import torch

from mme.errors import CheckpointError
from mme.utils import plural

log = logging.getLogger(__name__)

Table = dict[str, "str | tuple[str, ...]"]

# One transformer block: our (= the original VideoMAE/MME) names -> Hugging Face VideoMAELayer names. The q/v
# biases use the Hub's names (``attention.attention.q_bias``), which transformers 4.x has as parameters and 5.x
# renames on load to ``query.bias`` / ``value.bias`` (and back on save); both are read (HF_ALIASES).
BLOCK_TO_HF: Table = {
    "norm1.weight": "layernorm_before.weight",
    "norm1.bias": "layernorm_before.bias",
    "attn.qkv.weight": ("attention.attention.query.weight", "attention.attention.key.weight",
                        "attention.attention.value.weight"),
    "attn.q_bias": "attention.attention.q_bias",
    "attn.v_bias": "attention.attention.v_bias",
    "attn.proj.weight": "attention.output.dense.weight",
    "attn.proj.bias": "attention.output.dense.bias",
    "norm2.weight": "layernorm_after.weight",
    "norm2.bias": "layernorm_after.bias",
    "mlp.fc1.weight": "intermediate.dense.weight",
    "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight",
    "mlp.fc2.bias": "output.dense.bias",
}
BLOCK_KEYS = [*BLOCK_TO_HF, "gamma_1", "gamma_2"]  # ours; layer scale has no HF counterpart


def _blocks(src: str, dst: str, table: Table) -> Table:
    """Per-block entries ``{src}.{}.<key>`` -> ``{dst}.{}.<value>`` for every entry of a block table."""
    def name(v):
        return f"{dst}.{{}}.{v}" if isinstance(v, str) else tuple(f"{dst}.{{}}.{x}" for x in v)
    return {f"{src}.{{}}.{k}": name(v) for k, v in table.items()}


def _prefixed(table: Table, src: str, dst: str) -> Table:
    def name(v):
        return dst + v if isinstance(v, str) else tuple(dst + x for x in v)
    return {src + k: name(v) for k, v in table.items()}


def _same(keys) -> Table:
    return {k: k for k in keys}


ENCODER_KEYS: Table = {
    **_same(["patch_embed.proj.weight", "patch_embed.proj.bias"]),
    **_blocks("blocks", "blocks", _same(BLOCK_KEYS)),
    **_same(["norm.weight", "norm.bias"]),
}

# --- ours -> Hugging Face (VideoMAEModel / VideoMAEForPreTraining / VideoMAEForVideoClassification) ---
ENCODER_TO_HF: Table = {
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    **_blocks("blocks", "encoder.layer", BLOCK_TO_HF),
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
MAE_TO_HF: Table = {
    **_prefixed(ENCODER_TO_HF, "encoder.", "videomae."),
    "encoder_to_decoder.weight": "encoder_to_decoder.weight",
    "mask_token": "mask_token",
    **_blocks("decoder_blocks", "decoder.decoder_layers", BLOCK_TO_HF),
    "decoder_norm.weight": "decoder.norm.weight",
    "decoder_norm.bias": "decoder.norm.bias",
    "heads.pixel.fc2.weight": "decoder.head.weight",
    "heads.pixel.fc2.bias": "decoder.head.bias",
}
CLASSIFIER_TO_HF: Table = {
    **_prefixed(ENCODER_TO_HF, "encoder.", "videomae."),
    "fc_norm.weight": "fc_norm.weight",
    "fc_norm.bias": "fc_norm.bias",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
TO_HF = {"encoder": ENCODER_TO_HF, "mae": MAE_TO_HF, "classifier": CLASSIFIER_TO_HF}


def _root(key: str) -> str:
    """A tensor name's first component after a ``videomae.`` / ``encoder.`` prefix (``encoder.layer.0.x`` ->
    ``layer``)."""
    for prefix in ("videomae.", "encoder."):
        key = key[len(prefix):] if key.startswith(prefix) else key
    return key.split(".")[0]


# First components of encoder tensors' names in every layout (ours and the originals', Hugging Face's), and a
# class token, which ViTs other than VideoMAE's carry.
ENCODER_ROOTS = frozenset({_root(k) for k in ENCODER_KEYS} | {_root(v) for v in ENCODER_TO_HF.values()
                                                               if isinstance(v, str)} | {"cls_token"})


def in_encoder(key: str) -> bool:
    """Whether a tensor of any known layout belongs to the encoder (the encoder of a file read for it alone)."""
    return _root(key) in ENCODER_ROOTS

# --- original layouts -> ours ---
# VideoMAE pre-training (pretrain_videomae_*): one decoder with a Linear pixel head.
VIDEOMAE_PRETRAIN: Table = {
    **_prefixed(ENCODER_KEYS, "encoder.", "encoder."),
    **_same(["encoder_to_decoder.weight", "mask_token"]),
    **_blocks("decoder.blocks", "decoder_blocks", _same(BLOCK_KEYS)),
    "decoder.norm.weight": "decoder_norm.weight",
    "decoder.norm.bias": "decoder_norm.bias",
    "decoder.head.weight": "heads.pixel.fc2.weight",
    "decoder.head.bias": "heads.pixel.fc2.bias",
}
# MME pre-training (mme-method.md §6): decoders and projections are ModuleLists (decoder_num=1 -> index 0);
# head i = Sequential(Linear, GELU, Linear, Dropout, activation) -> our heads.head<i>.{fc1, fc2}.
MME_PRETRAIN: Table = {
    **_prefixed(ENCODER_KEYS, "encoder.", "encoder."),
    "encoder_to_decoder.0.weight": "encoder_to_decoder.weight",
    "mask_token": "mask_token",
    **_blocks("decoder.0.blocks", "decoder_blocks", _same(BLOCK_KEYS)),
    "decoder.0.norm.weight": "decoder_norm.weight",
    "decoder.0.norm.bias": "decoder_norm.bias",
    "decoder.0.head.{}.0.weight": "heads.head{}.fc1.weight",
    "decoder.0.head.{}.0.bias": "heads.head{}.fc1.bias",
    "decoder.0.head.{}.2.weight": "heads.head{}.fc2.weight",
    "decoder.0.head.{}.2.bias": "heads.head{}.fc2.bias",
}
# VideoMAE/MME fine-tuning (vit_*_patch16_224): a bare encoder (no final norm when mean-pooling) + fc_norm + head.
FINETUNED: Table = {
    **_prefixed(ENCODER_KEYS, "", "encoder."),
    **_same(["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]),
}


def invert(table: Table) -> Table:
    """The inverse table (a split becomes a concatenation: a tuple source)."""
    return {v: k for k, v in table.items()}  # type: ignore[misc]


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.escape(name).replace(r"\{\}", r"(\d+)") + "$")


def rename(state: dict[str, torch.Tensor], table: Table) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert ``state`` through ``table``. Returns the converted dict and the source keys no entry matched.

    Every converted key is checked: a split tensor must divide evenly, a concatenation needs all its parts
    (``CheckpointError`` naming the key otherwise)."""
    rules = [((src,) if isinstance(src, str) else src, dst) for src, dst in table.items()]
    compiled = [(_pattern(srcs[0]), srcs, dst) for srcs, dst in rules]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, value in state.items():
        for pattern, srcs, dst in compiled:
            m = pattern.match(key)
            if m is None:
                continue
            idx = m.groups()
            if len(srcs) > 1:  # concatenate parts along dim 0
                names = [s.format(*idx) for s in srcs]
                missing = [n for n in names if n not in state]
                if missing:
                    raise CheckpointError(f"key {key!r} needs {missing} to form {dst.format(*idx)!r}")
                out[dst.format(*idx)] = torch.cat([state[n] for n in names], dim=0)
                used.update(names)
            elif isinstance(dst, tuple):  # split along dim 0
                if value.shape[0] % len(dst):
                    raise CheckpointError(f"key {key!r} of shape {tuple(value.shape)} does not split in {len(dst)}")
                for name, part in zip(dst, value.chunk(len(dst), dim=0)):
                    out[name.format(*idx)] = part
                used.add(key)
            else:
                out[dst.format(*idx)] = value
                used.add(key)
            break
    # keys that only appear as a non-first part of a concatenation were consumed above
    unmatched = [k for k in state if k not in used]
    return out, unmatched


def to_hf(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Our ``kind`` state dict -> Hugging Face names. Every key must convert (layer scale cannot), and the key
    count must come out as expected (+2 per fused qkv)."""
    out, unmatched = rename(state, TO_HF[kind])
    if unmatched:
        raise CheckpointError(f"no Hugging Face VideoMAE counterpart for {plural(len(unmatched), 'key')} "
                              f"{unmatched[:6]}"
                              + (" (HF VideoMAE has no layer scale)" if any("gamma_" in k for k in unmatched) else ""))
    n_qkv = sum(k.endswith("attn.qkv.weight") for k in state)
    if len(out) != len(state) + 2 * n_qkv:
        raise CheckpointError(f"conversion to HF produced {len(out)} keys from {len(state)} (+{2 * n_qkv} expected)")
    return out


# --- reading any layout ---

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DeepSpeed, torch.compile
HF_ALIASES = {"attention.attention.query.bias": "attention.attention.q_bias",
              "attention.attention.value.bias": "attention.attention.v_bias"}  # transformers 5.x in-memory names


def _hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for alias, name in HF_ALIASES.items():
            k = k.replace(alias, name)
        out[k] = v
    return out


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP ``module.`` and torch.compile ``_orig_mod.`` prefixes from every key."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


class SeparateDecoders(CheckpointError):
    """An MME file of the release's ``--decoder_num 2``: its encoder alone has a counterpart here."""


def to_ours(state: dict[str, torch.Tensor],
            encoder_only: bool = False) -> tuple[str, dict[str, torch.Tensor], list[str], str]:
    """Detect the layout of a bare state dict and convert it to ours.

    Returns ``(kind, state, unexpected_keys, layout_name)``; unexpected keys are those no table knows (reported,
    not loaded). Raises CheckpointError for an unknown layout, and for one whose encoder alone has a counterpart
    here (MME's separate decoders) unless ``encoder_only``."""
    state = strip_wrappers(state)
    keys = set(state)
    embed = next((state[k] for k in ("patch_embed.proj.weight", "encoder.patch_embed.proj.weight") if k in keys), None)
    if embed is not None and embed.ndim != 5:
        raise CheckpointError(f"patch_embed.proj.weight has shape {tuple(embed.shape)}, not a video ViT's 3-D patch "
                              "embedding (D, C, tubelet, patch, patch): an image model, not a video one")
    if "videomae.embeddings.patch_embeddings.projection.weight" in keys:
        state = _hf_names(state)
        if "mask_token" in keys or "decoder.head.weight" in keys:
            kind, table = "mae", MAE_TO_HF
        elif "classifier.weight" in keys:
            kind, table = "classifier", CLASSIFIER_TO_HF
        else:
            kind, table = "encoder", _prefixed(ENCODER_TO_HF, "", "videomae.")
        out, unexpected = rename(state, invert(table))
        return kind, out, unexpected, f"Hugging Face VideoMAE ({kind})"
    if "embeddings.patch_embeddings.projection.weight" in keys:
        out, unexpected = rename(_hf_names(state), invert(ENCODER_TO_HF))
        return "encoder", out, unexpected, "Hugging Face VideoMAEModel"
    if "encoder.patch_embed.proj.weight" in keys:
        if any(k.startswith("decoder.1.") for k in keys):
            if not encoder_only:
                raise SeparateDecoders("MME checkpoint with separate decoders (decoder.1.*, --decoder_num 2): our "
                                       "model has one joint decoder, so only its encoder loads (load_encoder, "
                                       "mme export --kind model, train.init)")
            out, unexpected = rename({k: v for k, v in state.items() if in_encoder(k)},
                                     _prefixed(ENCODER_KEYS, "encoder.", ""))
            return "encoder", out, unexpected, f"{MME_LAYOUT} with separate decoders, its encoder"
        if any(k.startswith("decoder.0.") for k in keys):
            out, unexpected = rename(state, MME_PRETRAIN)
            return "mae", _name_release_heads(out), unexpected, MME_LAYOUT
        if any(k.startswith("decoder.") for k in keys):
            out, unexpected = rename(state, VIDEOMAE_PRETRAIN)
            return "mae", out, unexpected, "original VideoMAE pre-training"
        if "mask_token" in keys:
            return "mae", state, [], "mme masked autoencoder"
        if "head.weight" in keys and "fc_norm.weight" in keys:
            return "classifier", state, [], "mme classifier"
        out, unexpected = rename(state, _prefixed(ENCODER_KEYS, "encoder.", ""))
        return "encoder", out, unexpected, "encoder.-prefixed encoder"
    if "patch_embed.proj.weight" in keys:
        if "head.weight" in keys and "fc_norm.weight" in keys:
            out, unexpected = rename(state, FINETUNED)
            return "classifier", out, unexpected, "original VideoMAE/MME fine-tuned"
        out, unexpected = rename(state, ENCODER_KEYS)
        return "encoder", out, unexpected, "ViT encoder"
    sample = sorted(keys)[:5]
    raise CheckpointError(f"unknown state-dict layout (keys like {sample}): expected a VideoMAE/MME, mme or "
                          "Hugging Face VideoMAE checkpoint")


MME_LAYOUT = "original MME pre-training"
# The release's heads by count (pretrain/run.py get_model): 'idt' = [HOG (Sigmoid), trajectory (Tanh)]; one head =
# 'hog' (Sigmoid) or the RGB fallback (linear). Their losses are per-token sums (mme-method.md §8).
RELEASE_HEADS = {"hog": ("sigmoid", "sum"), "traj": ("tanh", "sum"), "pixel": ("none", "mean")}


def _name_release_heads(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename MME's indexed heads ``heads.head<i>`` to our target names (hog, traj, pixel)."""
    n = len({k.split(".")[1] for k in state if k.startswith("heads.")})
    if n == 2:
        names = ["hog", "traj"]
    elif n == 1:
        t, p = state["encoder.patch_embed.proj.weight"].shape[2:4]
        pixel = state["heads.head0.fc2.weight"].shape[0] == 3 * t * p * p
        names = ["pixel" if pixel else "hog"]
    else:
        return state
    rename_to = {f"heads.head{i}.": f"heads.{name}." for i, name in enumerate(names)}
    out = {}
    for k, v in state.items():
        prefix = next((p for p in rename_to if k.startswith(p)), None)
        out[rename_to[prefix] + k[len(prefix):] if prefix else k] = v
    return out


def encoder_part(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """The encoder's keys of our ``kind`` state dict, without the ``encoder.`` prefix."""
    if kind == "encoder":
        return dict(state)
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def encoder_key(key: str, kind: str) -> str:
    """The key of our ``kind`` state dict that holds the encoder's ``key`` (as :func:`encoder_part` names it)."""
    return key if kind == "encoder" else f"encoder.{key}"
