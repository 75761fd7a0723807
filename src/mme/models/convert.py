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
from mme.models.config import ModelConfig
from mme.models.mae import HeadSpec

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
        raise CheckpointError(f"no Hugging Face VideoMAE counterpart for key(s) {unmatched[:6]}"
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


def to_ours(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor], list[str], str]:
    """Detect the layout of a bare state dict and convert it to ours.

    Returns ``(kind, state, unexpected_keys, layout_name)``; unexpected keys are those no table knows (reported,
    not loaded). Raises CheckpointError for an unknown layout."""
    state = strip_wrappers(state)
    keys = set(state)
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
            raise CheckpointError("MME checkpoint with separate decoders (decoder.1.*, --decoder_num 2) is not "
                                  "supported: our model has one joint decoder")
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


# --- configs ---

# Decoder heads hard-coded by the original model factories per encoder width (VideoMAE/MME small/base/large).
ORIGINAL_DECODER_HEADS = {384: 3, 768: 6, 1024: 8}


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if idx != set(range(len(idx))):
        raise CheckpointError(f"block indices under {prefix!r} are not contiguous: {sorted(idx)}")
    return len(idx)


def infer_config(state: dict[str, torch.Tensor], kind: str, num_heads: int | None = None,
                 decoder_heads: int | None = None, **fields) -> ModelConfig:
    """A ModelConfig for our ``kind`` state dict, read from the weights' shapes.

    Head counts are not in the weights: ``num_heads`` defaults to 64-d heads (as every VideoMAE/MME preset), and
    ``decoder_heads`` to the original factories' value for the encoder width (6 for ViT-B), else 64-d heads;
    both are logged. ``img_size`` / ``num_frames`` are not in the weights either (the position table is fixed):
    pass them in ``fields``, else 224 / 16."""
    enc = encoder_part(state, kind)
    if "patch_embed.proj.weight" not in enc:
        raise CheckpointError("state dict has no patch_embed.proj.weight: not a ViT encoder")
    D, C, t, p, p2 = enc["patch_embed.proj.weight"].shape  # Conv3d weight (D, C, tubelet, patch, patch)
    if p != p2:
        raise CheckpointError(f"non-square patches {p}x{p2} are not supported")
    depth = _count_blocks(enc, "blocks.")
    if depth == 0:
        raise CheckpointError("state dict has no encoder blocks (blocks.N.*)")
    hidden = enc["blocks.0.mlp.fc1.weight"].shape[0]
    if num_heads is None:
        if D % 64:
            raise CheckpointError(f"cannot infer the number of attention heads for width {D}: pass num_heads")
        num_heads = D // 64
        log.warning("number of attention heads is not stored in this checkpoint: assuming 64-d heads, "
                    "num_heads=%d (pass num_heads if that is wrong)", num_heads)
    gamma = enc.get("blocks.0.gamma_1")
    # layer scale: only its presence matters for loading (the value is an init); keep the stored magnitude
    layer_scale = 0.0 if gamma is None else max(float(gamma.abs().mean()), 1e-6)
    cfg = dict(embed_dim=D, in_chans=C, tubelet_size=t, patch_size=p, depth=depth, num_heads=num_heads,
               mlp_ratio=hidden / D, qkv_bias="blocks.0.attn.q_bias" in enc,
               layer_scale_init=layer_scale)
    if kind == "mae":
        dd = state["encoder_to_decoder.weight"].shape[0]
        cfg.update(decoder_dim=dd, decoder_depth=_count_blocks(state, "decoder_blocks."))
        if cfg["decoder_depth"] and state["decoder_blocks.0.mlp.fc1.weight"].shape[0] != round(dd * hidden / D):
            raise CheckpointError("decoder MLP ratio differs from the encoder's: not supported by ModelConfig")
        if decoder_heads is None:
            decoder_heads = ORIGINAL_DECODER_HEADS.get(D, dd // 64 if dd % 64 == 0 else None)
            if decoder_heads is None or dd % decoder_heads:
                raise CheckpointError(f"cannot infer the decoder's attention heads for width {dd}: pass decoder_heads")
            log.warning("decoder attention heads are not stored in this checkpoint: assuming %d (the original "
                        "factories' value for width %d; pass decoder_heads if that is wrong)", decoder_heads, D)
        cfg["decoder_heads"] = decoder_heads
        hidden_sizes = [v.shape[0] for k, v in state.items() if k.startswith("heads.") and k.endswith("fc1.weight")]
        if hidden_sizes:
            cfg["head_hidden"] = hidden_sizes[0]
    cfg.update({k: v for k, v in fields.items() if v is not None})
    return ModelConfig(**cfg)


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


def config_from_hf(hf: dict) -> ModelConfig:
    """Our ModelConfig from a Hugging Face VideoMAEConfig dict (its decoder norm eps is 1e-5)."""
    def side(key, default):
        v = hf.get(key, default)
        if isinstance(v, (list, tuple)):
            if len(set(v)) != 1:
                raise CheckpointError(f"non-square {key} {v} is not supported")
            v = v[0]
        return int(v)
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (ours is exact GELU)")
    D = hf.get("hidden_size", 768)
    ratio = hf.get("intermediate_size", 3072) / D
    dec_ratio = hf.get("decoder_intermediate_size", 1536) / hf.get("decoder_hidden_size", 384)
    if "decoder_hidden_size" in hf and dec_ratio != ratio:
        raise CheckpointError(f"decoder MLP ratio {dec_ratio} differs from the encoder's {ratio}: not supported")
    eps = hf.get("layer_norm_eps", 1e-12)
    if eps != 1e-6:
        log.info("Hugging Face layer_norm_eps is %g; our encoder LayerNorms use 1e-6 as the original VideoMAE "
                 "(outputs differ by ~1e-6)", eps)
    return ModelConfig(
        img_size=side("image_size", 224), patch_size=side("patch_size", 16), num_frames=hf.get("num_frames", 16),
        tubelet_size=hf.get("tubelet_size", 2), in_chans=hf.get("num_channels", 3), embed_dim=D,
        depth=hf.get("num_hidden_layers", 12), num_heads=hf.get("num_attention_heads", 12), mlp_ratio=ratio,
        qkv_bias=bool(hf.get("qv_bias", hf.get("qkv_bias", True))), decoder_dim=hf.get("decoder_hidden_size", 384),
        decoder_depth=hf.get("decoder_num_hidden_layers", 4), decoder_heads=hf.get("decoder_num_attention_heads", 6),
        decoder_norm_eps=1e-5, head_hidden=0,
    )


def config_to_hf(cfg: ModelConfig, architecture: str, use_mean_pooling: bool, norm_pix: bool = True,
                 num_labels: int | None = None) -> dict:
    """A Hugging Face VideoMAEConfig dict for our config (layer_norm_eps 1e-6 as ours)."""
    if cfg.input_norm != "dataset":
        raise CheckpointError(f"model.input_norm={cfg.input_norm!r} (per-clip standardisation inside the encoder) "
                              "has no Hugging Face VideoMAE counterpart: the exported model would give other outputs")
    hidden = cfg.embed_dim * cfg.mlp_ratio
    dec_hidden = cfg.decoder_dim * cfg.mlp_ratio
    if hidden != int(hidden) or dec_hidden != int(dec_hidden):
        raise CheckpointError(f"mlp_ratio {cfg.mlp_ratio} gives a non-integer MLP width")
    out = {
        "architectures": [architecture], "model_type": "videomae",
        "image_size": cfg.img_size, "patch_size": cfg.patch_size, "num_channels": cfg.in_chans,
        "num_frames": cfg.num_frames, "tubelet_size": cfg.tubelet_size,
        "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth, "num_attention_heads": cfg.num_heads,
        "intermediate_size": int(hidden), "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "layer_norm_eps": 1e-6,
        "qkv_bias": cfg.qkv_bias, "use_mean_pooling": use_mean_pooling,
        "decoder_num_attention_heads": cfg.decoder_heads, "decoder_hidden_size": cfg.decoder_dim,
        "decoder_num_hidden_layers": cfg.decoder_depth, "decoder_intermediate_size": int(dec_hidden),
        "norm_pix_loss": norm_pix, "torch_dtype": "float32",
    }
    if num_labels is not None:
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        out["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    return out
