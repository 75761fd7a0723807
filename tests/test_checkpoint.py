"""Checkpoint interoperability: ours <-> Hugging Face VideoMAE (same outputs and loss), the original VideoMAE/MME
layouts (``module`` / ``model`` / bare, fused qkv with q/v biases), our safetensors format, ``mme export``, and
one clear CheckpointError for every bad input."""

import argparse
import dataclasses
import errno
import json
import logging
import multiprocessing
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers
from training import in_one_process

import mme
from mme.cli import main as cli_main
from mme.config import from_dict
from mme.errors import CheckpointError, CheckpointUnreadable, ConfigError, DataError
from mme.models import HeadSpec, MaskedAutoencoder, ModelConfig, VisionTransformer
from mme.models.checkpoint import checkpoint_files, load_encoder, load_encoder_weights, load_model, read_checkpoint
from mme.models.classifier import VideoClassifier
from mme.models.convert_config import config_from_hf, config_to_hf
from mme.models.export import export, export_hf, save_pretrained
from mme.models.vit import Mlp
from mme.motion.targets import pixel_target
from mme.utils import caller_generator_kept

TINY = dict(img_size=32, num_frames=8, embed_dim=64, depth=2, num_heads=4, decoder_dim=32, decoder_depth=1,
            decoder_heads=2)
PIXEL = HeadSpec("pixel", 2 * 16 * 16 * 3)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (LayerNorm gains, q/v biases, mask token), so a wrong mapping shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def clip(batch: int = 2, frames: int = 8, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, frames, side, side, generator=torch.Generator().manual_seed(seed))


def hf_input(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 1, 3, 4)  # ours (B, C, T, H, W) -> HF (B, T, C, H, W)


@pytest.fixture(scope="module")
def mae():
    return perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))


@pytest.fixture(scope="module")
def mask():
    return MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]).make_mask(2, torch.Generator().manual_seed(3))


# --- Hugging Face parity ---

@pytest.mark.parametrize("qkv_bias", [True, False])
def test_ours_to_hf_pretraining_gives_same_encoder_outputs_and_loss(mae, mask, tmp_path, qkv_bias):
    """With q/v biases (VideoMAE's default) and without: the decoder follows the encoder, as VideoMAE's does (ours
    had them in the decoder always, and HF dropped them: predictions off by 0.1)."""
    if not qkv_bias:
        mae = perturbed(MaskedAutoencoder(ModelConfig(**TINY, qkv_bias=False), [PIXEL]))
    export_hf(mae, tmp_path / "hf", kind="pretraining")
    hf, info = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    hf.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    x = clip()
    with torch.no_grad():
        ours_tokens = mae.encoder(x, mask)
        hf_tokens = hf.videomae(hf_input(x), bool_masked_pos=mask).last_hidden_state
        loss, preds, _ = mae(x, mask, {"pixel": pixel_target(x, 2, 16)})
        hf_out = hf(hf_input(x), bool_masked_pos=mask)
        hf_loss = hf_out.loss
    assert (ours_tokens - hf_tokens).abs().max() <= 1e-5
    assert (preds["pixel"] - hf_out.logits).abs().max() <= 5e-5  # HF's decoder norm eps: measured 1.2e-5
    # HF's decoder norm has eps 1e-5, ours 1e-6: measured relative loss difference ~1e-6
    assert abs(loss - hf_loss) / hf_loss <= 1e-5


@pytest.mark.parametrize("mean_pooling, qkv_bias", [(False, True), (True, False)])
def test_hf_to_ours_gives_same_encoder_outputs_and_loss(mask, tmp_path, mean_pooling, qkv_bias):
    """``use_mean_pooling`` (HF's default) leaves the encoder without its final norm, also in pre-training."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=8, hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=256, decoder_hidden_size=32,
                                         decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                         decoder_intermediate_size=128, layer_norm_eps=1e-6,
                                         use_mean_pooling=mean_pooling, qkv_bias=qkv_bias)
    torch.manual_seed(0)
    hf = perturbed(transformers.VideoMAEForPreTraining(hf_cfg))
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, MaskedAutoencoder) and ours.cfg.decoder_norm_eps == 1e-5
    assert isinstance(ours.encoder.norm, torch.nn.Identity) == mean_pooling and ours.cfg.qkv_bias == qkv_bias
    x = clip()
    with torch.no_grad():
        hf_out = hf(hf_input(x), bool_masked_pos=mask)
        loss, preds, _ = ours(x, mask, {"pixel": pixel_target(x, 2, 16)})
        tokens = ours.encoder(x)
        hf_tokens = hf.videomae(hf_input(x)).last_hidden_state
    assert (tokens - hf_tokens).abs().max() <= 1e-5
    assert abs(loss - hf_out.loss) / hf_out.loss <= 1e-5
    assert (preds["pixel"] - hf_out.logits).abs().max() <= 1e-5
    enc = mme.load_encoder(tmp_path / "hf")
    with torch.no_grad():
        assert (enc(x) - hf_tokens).abs().max() <= 1e-5


def test_hf_model_without_final_norm_loads_as_identity_norm(tmp_path):
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=256, layer_norm_eps=1e-6,
                                         use_mean_pooling=True)
    hf = perturbed(transformers.VideoMAEModel(hf_cfg))
    hf.save_pretrained(tmp_path / "hf")  # transformers 5 writes model.safetensors, whatever safe_serialization says
    weights = tmp_path / "hf" / "model.safetensors"
    torch.save(safetensors.torch.load_file(weights), tmp_path / "hf" / "pytorch_model.bin")
    both = checkpoint_files(tmp_path / "hf")  # a Hub download often holds both: each is the checkpoint's
    assert [f.name for f in both] == ["config.json", "model.safetensors", "pytorch_model.bin"]
    weights.unlink()
    assert [f.name for f in checkpoint_files(tmp_path / "hf")] == ["config.json", "pytorch_model.bin"]
    enc = load_encoder(tmp_path / "hf")
    assert isinstance(enc.norm, torch.nn.Identity) and enc.cfg.num_heads == 2 and enc.cfg.num_frames == 4
    x = clip(frames=4)
    with torch.no_grad():
        assert (enc(x) - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5


@pytest.mark.parametrize("saved, held, built", [(False, "hold", "none"), (True, "lack", "a new one")])
def test_a_hf_use_mean_pooling_that_contradicts_the_weights_is_refused(tmp_path, capsys, saved, held, built):
    """A config.json whose use_mean_pooling was edited after its weights were saved: transformers builds the final
    LayerNorm by the key alone (none for true, a new one for false), mme by the weights, so the two loaded
    other models silently (1.03 apart). One line naming the file and the key (also for a value that is not true
    or false); the model saved loads."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=256, layer_norm_eps=1e-6,
                                         use_mean_pooling=saved)
    hf = perturbed(transformers.VideoMAEModel(hf_cfg))
    hf.save_pretrained(tmp_path / "hf")
    x = clip(frames=4)
    with torch.no_grad():
        assert (load_encoder(tmp_path / "hf")(x) - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5
    config = tmp_path / "hf" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_mean_pooling": not saved}))
    said = (f"{config}: use_mean_pooling is {json.dumps(not saved)}, but its weights {held} the encoder's final "
            f"LayerNorm (layernorm.*): transformers would build another model of them ({built} there)")
    with pytest.raises(CheckpointError, match=f"^{re.escape(said)}$"):
        load_encoder(tmp_path / "hf")
    capsys.readouterr()  # (transformers' progress bar)
    assert cli_main(["export", str(tmp_path / "hf"), str(tmp_path / "out"), "--format", "mme"]) == 1
    assert capsys.readouterr().err == f"mme export: error: {said}\n"
    assert not (tmp_path / "out").exists()
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_mean_pooling": "false"}))
    with pytest.raises(CheckpointError, match=f'^{re.escape(str(config))}: use_mean_pooling is "false": expected '
                                              'true or false$'):
        load_encoder(tmp_path / "hf")


def test_export_cli_hf_output_loads_in_transformers_and_matches_load_encoder(mae, tmp_path, capsys):
    save_pretrained(mae, tmp_path / "ours")
    assert cli_main(["export", str(tmp_path / "ours"), str(tmp_path / "hf"), "--format", "hf"]) == 0
    hf = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.use_mean_pooling is False and hf.config.layer_norm_eps == 1e-6 and hf.config.qv_bias
    x = clip()
    with torch.no_grad():
        ours = mme.load_encoder(tmp_path / "ours")(x)
        theirs = hf(hf_input(x)).last_hidden_state
        back = mme.load_encoder(tmp_path / "hf")(x)  # HF dir -> ours
    assert (ours - theirs).abs().max() <= 1e-5
    assert (back - ours).abs().max() <= 1e-5
    assert (ours - mae.encoder(x)).abs().max() == 0
    # its preprocessing: transformers' defaults normalise with mean and std 0.5, other inputs than ours
    from mme.data.transforms import normalize

    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    processed = processor(list(frames), return_tensors="pt")["pixel_values"]  # (1, T, C, H, W)
    expected = normalize(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255)  # (C, T, H, W)
    assert (processed[0].permute(1, 0, 2, 3) - expected).abs().max() < 1e-5
    wide = processor(list(np.zeros((8, 48, 80, 3), np.uint8)), return_tensors="pt")["pixel_values"]
    assert wide.shape == (1, 8, 3, 32, 32)  # short side to the input size, then the centre crop


def test_classifier_round_trips_through_hf_classification(tmp_path):
    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=5))
    export_hf(clf, tmp_path / "hf", kind="classification")
    hf = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.num_labels == 5 and hf.videomae.layernorm is None
    x = clip()
    with torch.no_grad():
        ours, theirs = clf(x), hf(hf_input(x)).logits
        back = load_model(tmp_path / "hf")
        assert isinstance(back, VideoClassifier) and back.fc_norm.eps == 1e-5
        again = back(x)
    # HF's fc_norm eps is 1e-5 (ours 1e-6): measured difference ~1e-6; after import the eps follows HF exactly
    assert (ours - theirs).abs().max() <= 1e-5
    assert (again - theirs).abs().max() <= 1e-6
    assert hf.config.id2label[4] == "LABEL_4"  # a live module names no classes
    (tmp_path / "classes.json").write_text(json.dumps(list("abcde")))
    export(tmp_path / "hf", tmp_path / "named", "hf", "classification", classes=tmp_path / "classes.json")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "named").label2id == dict(zip("abcde", range(5)))
    export(tmp_path / "named", tmp_path / "ours.safetensors", "safetensors")  # the names travel on every route
    export(tmp_path / "ours.safetensors", tmp_path / "again", "hf", "classification")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "again").id2label[4] == "e"
    (tmp_path / "classes.json").write_text(json.dumps(list("abca")))
    with pytest.raises(DataError, match=r"names \['a'\] more than one class"):
        export(tmp_path / "hf", tmp_path / "bad", "hf", "classification", classes=tmp_path / "classes.json")
    (tmp_path / "classes.json").write_text(json.dumps(list("abc")))
    with pytest.raises(ConfigError, match="classes .*classes.json: 3 names for a classifier of 5 classes"):
        export(tmp_path / "hf", tmp_path / "bad", "hf", "classification", classes=tmp_path / "classes.json")
    with pytest.raises(ConfigError, match="--classes names the classes of a Hugging Face classification export"):
        export(tmp_path / "hf", tmp_path / "ours", "mme", classes=tmp_path / "classes.json")


# --- original VideoMAE / MME layouts ---

def videomae_layout(model: MaskedAutoencoder) -> dict:
    """Our MAE state dict written with the original VideoMAE pre-training names (independently of convert.py)."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("decoder_blocks.", "decoder.blocks.").replace("decoder_norm.", "decoder.norm.")
        out[k.replace("heads.pixel.fc2.", "decoder.head.")] = v.clone()
    return out


def mme_layout(model: MaskedAutoencoder) -> dict:
    """The original MME names: ModuleList decoder/projection, heads as Sequential(Linear, GELU, Linear, ...)."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("decoder_blocks.", "decoder.0.blocks.").replace("decoder_norm.", "decoder.0.norm.")
        k = k.replace("encoder_to_decoder.", "encoder_to_decoder.0.")
        for i, name in enumerate(("hog", "traj")):
            k = k.replace(f"heads.{name}.fc1.", f"decoder.0.head.{i}.0.").replace(f"heads.{name}.fc2.",
                                                                                f"decoder.0.head.{i}.2.")
        out[k] = v.clone()
    return out


WIDE = dict(TINY, embed_dim=128, num_heads=2)  # 64-d heads: the default assumption for unrecorded head counts


@pytest.mark.parametrize("wrapper", ["module", "model", None])
def test_original_layout_loads_with_no_missing_keys_and_matches_hf(wrapper, tmp_path, caplog):
    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=4)
    original = videomae_layout(src)
    assert {"encoder.blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.q_bias", "encoder.blocks.0.attn.v_bias",
            "decoder.blocks.0.attn.qkv.weight", "decoder.head.weight", "mask_token"} <= set(original)
    assert not any("k_bias" in k for k in original)
    sd = {f"module.{k}" if wrapper == "module" else k: v for k, v in original.items()}  # DDP-saved keys too
    obj = {wrapper: sd, "epoch": 799, "args": argparse.Namespace(model="pretrain_videomae_base_patch16_224")} \
        if wrapper else sd
    torch.save(obj, tmp_path / "checkpoint.pth")
    geometry = dict(img_size=32, num_frames=8)  # not recorded in original files (default 224, 16)
    with caplog.at_level(logging.INFO):
        enc = load_encoder(tmp_path / "checkpoint.pth", **geometry)  # strict: a missing encoder key would raise
    assert "assuming 64-d heads" in caplog.text and "missing" not in caplog.text  # the guess (at info), and
    assert "so taken on trust: num_heads=2 (" in caplog.text  # the warning of the model built with it
    export_hf(tmp_path / "checkpoint.pth", tmp_path / "hf", **geometry)
    hf = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    x = clip()
    with torch.no_grad():
        ours = enc(x)
        assert (ours - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5
        assert (ours - src.encoder(x)).abs().max() == 0
        full = load_model(tmp_path / "checkpoint.pth", decoder_heads=2, **geometry)
        m = src.make_mask(2, torch.Generator().manual_seed(0))
        target = {"pixel": pixel_target(x, 2, 16)}
        assert torch.equal(full(x, m, target)[0], src(x, m, target)[0])


def test_a_learned_position_table_is_refused_and_the_fixed_one_accepted(tmp_path):
    """An original-layout file trained with use_learnable_pos_emb stores its learned table, which our models (the
    fixed sin-cos table) cannot use: refused, naming the key (it loaded with the sin-cos table and a warning that a
    key was ignored). A stored table that is the sin-cos one loads."""
    from mme.errors import CheckpointError
    from mme.models.vit import sincos_table

    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=4)
    n, dim = src.cfg.num_tokens, src.cfg.embed_dim
    fixed = sincos_table(n, dim)[None]
    for table, refused in ((torch.randn(1, n, dim), True), (fixed.float(), False), (fixed.half(), False),
                           (fixed.bfloat16(), False)):  # the fixed table, as fp32 and half-precision files hold it
        torch.save({"model": {**videomae_layout(src), "encoder.pos_embed": table}}, tmp_path / "checkpoint.pth")
        if refused:
            with pytest.raises(CheckpointError, match=r"checkpoint\.pth: encoder\.pos_embed is a learned position "
                                                      r"table \(use_learnable_pos_emb\)") as e:
                load_encoder(tmp_path / "checkpoint.pth", img_size=32, num_frames=8)
            assert str(e.value).count("checkpoint.pth") == 1, e.value  # the path was said twice
        else:
            assert load_encoder(tmp_path / "checkpoint.pth", img_size=32, num_frames=8) is not None


def test_files_read_before_layer_scales_were_bounded_load_as_before(tmp_path):
    """A setting of the layer scale is bounded to [0, 100], and files read before were refused by it: one of VideoMAE's
    layout whose trained gammas average 150 or are NaN (the config takes their magnitude), and a training checkpoint
    or export of an earlier mme made with layer_scale_init=-1 (off: no gammas). They load as before, the gammas as
    stored, a negative scale as 0."""
    scaled = VisionTransformer(ModelConfig(**TINY, layer_scale_init=0.1)).state_dict()
    for value, taken in ((150.0, 100.0), (float("nan"), 1.0)):
        state = {k: v.fill_(value) if "gamma" in k else v for k, v in scaled.items()}
        torch.save({"model": state}, tmp_path / "gammas.pth")
        encoder = load_encoder(tmp_path / "gammas.pth", num_heads=4, img_size=32, num_frames=8)
        assert encoder.cfg.layer_scale_init == taken
        assert torch.equal(encoder.blocks[0].gamma_1.nan_to_num(), state["blocks.0.gamma_1"].nan_to_num())
    model = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    recorded = {**dataclasses.asdict(model.cfg), "layer_scale_init": -1.0, "decoder_layer_scale_init": -1.0}
    torch.save({"model": model.state_dict(), "config": {"model": recorded}}, tmp_path / "run.pt")
    save_pretrained(model, tmp_path / "export")
    config = tmp_path / "export" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model": recorded}))
    for path in (tmp_path / "run.pt", tmp_path / "export"):
        loaded = load_model(path)
        assert (loaded.cfg.layer_scale_init, loaded.cfg.decoder_layer_scale_init) == (0.0, 0.0)
        assert torch.equal(loaded.encoder.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)


def test_an_original_file_with_layer_scale_in_its_decoder_loads(tmp_path):
    """VideoMAE's ``init_values`` puts layer scale in the decoder's blocks too (``decoder.blocks.N.gamma_1/2``), which
    mme's decoder did not have: load_model refused such a file for unexpected keys."""
    src = MaskedAutoencoder(ModelConfig(**WIDE, layer_scale_init=0.1), [PIXEL])
    for blk in src.decoder_blocks:  # VideoMAE's decoder blocks, built apart from mme's config
        blk.gamma_1, blk.gamma_2 = (torch.nn.Parameter(torch.full((32,), 0.1)) for _ in range(2))
    src = perturbed(src, seed=7)
    torch.save({"model": videomae_layout(src)}, tmp_path / "ls.pth")
    model = load_model(tmp_path / "ls.pth", decoder_heads=2, img_size=32, num_frames=8)
    assert model.cfg.decoder_layer_scale_init > 0
    x = clip()
    m = src.make_mask(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model.forward_decoder(model.forward_encoder(x, m), m), src.forward_decoder(src.forward_encoder(x, m), m)
    assert torch.equal(a["pixel"], b["pixel"])


def test_original_mme_layout_restores_release_heads(tmp_path):
    heads = [HeadSpec("hog", 108, "sigmoid", hidden=48, weight=0.5, reduction="sum"),
             HeadSpec("traj", 32, "tanh", hidden=48, weight=0.5, reduction="sum")]
    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE, head_hidden=48), heads), seed=5)
    torch.save({"model": mme_layout(src)}, tmp_path / "mme.pth")
    model = load_model(tmp_path / "mme.pth", decoder_heads=2, img_size=32, num_frames=8)
    assert model.head_specs == heads
    x = clip()
    m = src.make_mask(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model.forward_decoder(model.forward_encoder(x, m), m), src.forward_decoder(src.forward_encoder(x, m), m)
    assert all(torch.equal(a[k], b[k]) for k in ("hog", "traj"))


def test_an_mme_file_with_separate_decoders_gives_its_encoder(tmp_path, capsys, caplog):
    """The release's ``--decoder_num 2`` (the paper's "Sep." ablation) was refused even for its encoder: by
    ``load_encoder``, ``mme export --kind model``, fine-tuning and pre-training from it. Its encoder loads; the
    model, which has one joint decoder, is refused by name."""
    from mme.config import load_config
    from mme.train import engine
    from mme.train.config import FinetuneConfig, PretrainConfig
    from mme.train.finetune import _with_architecture
    from mme.train.pretrain import load_init, read_init

    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=6)
    state = mme_layout(src)
    state.update({k.replace("decoder.0.", "decoder.1."): v.clone()
                  for k, v in state.items() if k.startswith("decoder.0.")})
    state["encoder_to_decoder.1.weight"] = state["encoder_to_decoder.0.weight"].clone()
    torch.save({"model": state}, tmp_path / "sep.pth")
    x = clip()
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path / "sep.pth", img_size=32, num_frames=8)(x), src.encoder(x))
    assert cli_main(["export", str(tmp_path / "sep.pth"), str(tmp_path / "enc"), "--format", "mme", "--kind", "model",
                     "--img-size", "32", "--num-frames", "8"]) == 0
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path / "enc")(x), src.encoder(x))
    cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [f"train.init={tmp_path / 'sep.pth'}"])
    init = engine.read_init(cfg.train.init, cfg.model, encoder_only=True)
    assert _with_architecture(cfg, None, init).model.embed_dim == 128
    assert cli_main(["export", str(tmp_path / "sep.pth"), str(tmp_path / "pre"), "--kind", "pretraining"]) == 1
    assert "separate decoders (decoder.1.*, --decoder_num 2): our model has one joint decoder, so only its " \
        "encoder loads" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="separate decoders"):
        load_model(tmp_path / "sep.pth", img_size=32, num_frames=8)
    fresh = MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL])  # pre-training from it: the encoder, a fresh decoder
    decoder = {k: v.clone() for k, v in fresh.state_dict().items() if not k.startswith("encoder.")}
    with caplog.at_level(logging.WARNING, logger="mme"):
        pre = load_config(PretrainConfig, "tiny_cpu_pixel", [f"train.init={tmp_path / 'sep.pth'}"])
        load_init(fresh, read_init(pre), pre.train.init)
    assert "has separate decoders (--decoder_num 2)" in caplog.text
    with torch.no_grad():
        assert torch.equal(fresh.encoder(x), src.encoder(x))
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in decoder.items())


def test_a_hint_given_from_python_that_is_no_integer_is_one_line_naming_it(tmp_path):
    """load_encoder(path, img_size="96") was a CheckpointError of '<=' between str and int, as if the file were at
    fault."""
    path = save_pretrained(VisionTransformer(ModelConfig(img_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                                         embed_dim=32, depth=1, num_heads=2)), tmp_path / "enc")
    for hint, said in ((dict(img_size="96"), "img_size must be an integer of at least 1, got '96'"),
                       (dict(num_heads=0), "num_heads must be an integer of at least 1, got 0")):
        with pytest.raises(ConfigError) as refused:
            load_encoder(path, **hint)
        assert str(refused.value) == said
    assert load_encoder(path, num_frames=np.int64(8)).cfg.num_frames == 8  # (a numpy integer is one)


def test_num_heads_hint_for_non_64d_heads(tmp_path):
    src = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))  # 4 heads of 16
    torch.save({"model": videomae_layout(src)}, tmp_path / "ckpt.pth")
    x = clip()
    with torch.no_grad():
        right = load_encoder(tmp_path / "ckpt.pth", num_heads=4, img_size=32, num_frames=8)
        wrong = load_encoder(tmp_path / "ckpt.pth", img_size=32, num_frames=8)  # 64-d heads assumed: 1 head
        assert (right(x) - src.encoder(x)).abs().max() == 0
        assert (wrong(x) - src.encoder(x)).abs().max() > 1e-3


def test_finetuned_layout_loads_into_video_classifier(tmp_path):
    src = perturbed(VideoClassifier(ModelConfig(**WIDE), num_classes=7))
    sd = {k.removeprefix("encoder."): v for k, v in src.state_dict().items()}
    assert {"patch_embed.proj.weight", "blocks.1.attn.v_bias", "fc_norm.weight", "head.weight"} <= set(sd)
    torch.save({"module": sd}, tmp_path / "finetuned.pth")
    clf = load_model(tmp_path / "finetuned.pth", img_size=32, num_frames=8)
    assert isinstance(clf, VideoClassifier) and clf.num_classes == 7 and clf.pool == "mean"
    enc = load_encoder(tmp_path / "finetuned.pth", img_size=32, num_frames=8)
    x = clip()
    with torch.no_grad():
        assert torch.equal(clf(x), src(x))
        assert torch.equal(enc(x), src.encoder(x))
    assert isinstance(enc.norm, torch.nn.Identity)


def test_encoder_prefixed_state_dict_loads_as_an_encoder(mae, tmp_path):
    torch.save({"model": {f"encoder.{k}": v for k, v in mae.encoder.state_dict().items()}}, tmp_path / "enc.pth")
    enc = load_encoder(tmp_path / "enc.pth", num_heads=4, img_size=32, num_frames=8)
    x = clip()
    with torch.no_grad():
        assert torch.equal(enc(x), mae.encoder(x))


# --- our formats ---

@pytest.mark.parametrize("name", ["dir", "one.safetensors"])
def test_save_pretrained_round_trips_each_kind(mae, tmp_path, name):
    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=3, pool="norm_mean", fc_drop=0.1))
    x = clip()
    for i, model in enumerate((mae, mae.encoder, clf)):
        path = save_pretrained(model, tmp_path / str(i) / name)
        back = load_model(path)
        assert type(back) is type(model)
        assert back.state_dict().keys() == model.state_dict().keys()
        assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
        with torch.no_grad():
            out = back.encoder(x) if not isinstance(back, VisionTransformer) else back(x)
            ref = model.encoder(x) if not isinstance(model, VisionTransformer) else model(x)
        assert torch.equal(out, ref)
    meta = json.loads((tmp_path / "0" / "dir" / "config.json").read_text()) if name == "dir" else None
    if meta:
        assert meta["format"] == "mme" and meta["version"] == 1 and meta["kind"] == "mae"
        assert meta["heads"] == [{"name": "pixel", "dim": 1536, "activation": "none", "hidden": 0, "weight": 1.0,
                                  "reduction": "mean"}]
        assert meta["model"]["embed_dim"] == 64


def test_training_checkpoint_loads_with_its_config_and_target_heads(tmp_path, caplog):
    """A checkpoint written by the training engine (mme.train.checkpoint) of a DDP-wrapped model: the config's
    model section rebuilds the architecture and its stored head specs the heads (activations included). One
    without head specs (mme < 0.2) gets heads inferred from the weights, with linear outputs, and a warning."""
    from mme.motion.targets import TargetConfig, head_specs
    from mme.train.checkpoint import save_checkpoint

    target = from_dict(TargetConfig, {"preset": "released"})
    cfg = ModelConfig(**TINY, head_hidden=48)
    heads = head_specs(target, cfg)
    assert [(h.name, h.activation) for h in heads] == [("hog", "sigmoid"), ("traj", "tanh")]
    src = perturbed(MaskedAutoencoder(cfg, heads))
    state = {
        "model": {f"module.{k}": v for k, v in src.state_dict().items()},
        "config": {"model": dataclasses.asdict(cfg), "target": dataclasses.asdict(target),
                   "optim": {"base_lr": 1.5e-4}},
        "optimizer": {"state": {}, "param_groups": []}, "step": 3, "data": {"epoch": 0, "batch": 3},
        "rng": {"torch": torch.get_rng_state()}, "heads": [dataclasses.asdict(h) for h in heads],
    }
    path = save_checkpoint(state, tmp_path, keep_last=2)
    enc = mme.load_encoder(path)
    model = load_model(path)
    assert model.head_specs == heads and model.cfg == cfg
    x = clip()
    m = src.make_mask(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(enc(x), src.encoder(x))
        a, b = model.forward_decoder(model.forward_encoder(x, m), m), src.forward_decoder(src.forward_encoder(x, m), m)
    assert all(torch.equal(a[k], b[k]) for k in ("hog", "traj"))
    del state["heads"]
    with caplog.at_level(logging.WARNING):
        old = load_model(save_checkpoint({**state, "step": 4}, tmp_path, keep_last=2))
    assert [(h.name, h.dim, h.activation) for h in old.head_specs] == [(h.name, h.dim, "none") for h in heads]
    assert "stores no head specs" in caplog.text


def test_export_cli_formats_and_kinds(mae, tmp_path):
    torch.save({"model": videomae_layout(mae)}, tmp_path / "orig.pth")
    assert cli_main(["export", str(tmp_path / "orig.pth"), str(tmp_path / "a"), "--format", "mme",
                     "--num-heads", "4", "--decoder-heads", "2", "--img-size", "32", "--num-frames", "8"]) == 0
    assert cli_main(["export", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "safetensors",
                     "--kind", "model"]) == 0
    assert cli_main(["export", str(tmp_path / "a"), str(tmp_path / "c"), "--format", "hf", "--kind",
                     "pretraining"]) == 0
    assert isinstance(load_model(tmp_path / "a"), MaskedAutoencoder)
    assert isinstance(load_model(tmp_path / "b.safetensors"), VisionTransformer)
    hf = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "c").eval()
    x = clip()
    with torch.no_grad():
        ref = mae.encoder(x)
        assert torch.equal(load_encoder(tmp_path / "b.safetensors")(x), ref)
        assert (hf.videomae(hf_input(x)).last_hidden_state - ref).abs().max() <= 1e-5


# --- bad input: one CheckpointError naming the file and the reason ---

class NotAWeight:
    pass


def test_missing_file_and_unknown_formats_name_the_file(tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such file or directory$"):
        load_encoder(tmp_path / "nope.pth")
    (tmp_path / "notes.pth").write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.pth: unknown checkpoint format"):
        load_encoder(tmp_path / "notes.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"meta\.pth: unknown checkpoint format.*'epoch'"):
        load_encoder(tmp_path / "meta.pth")
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match=r"resnet\.pth: unknown state-dict layout"):
        load_encoder(tmp_path / "resnet.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: not a checkpoint directory"):
        load_encoder(tmp_path / "empty")
    (tmp_path / "run").mkdir()  # a run's folder given for its checkpoints
    for step in (3, 10):
        (tmp_path / "run" / f"checkpoint-{step:08d}.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"run: a training run's folder, not a checkpoint: none of its 2 "
                                              r"checkpoints reads$"):
        load_encoder(tmp_path / "run")
    (tmp_path / "one").mkdir()  # one checkpoint, that does not read (not "pass its checkpoint, none of which reads")
    (tmp_path / "one" / "checkpoint-00000004.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"one: a training run's folder, not a checkpoint: its one checkpoint "
                                              r"does not read$"):
        load_encoder(tmp_path / "one")
    from test_resume import _state

    from mme.train import checkpoint as ckpt

    ckpt.save_checkpoint(_state(3), tmp_path / "run", keep_last=0)  # step 10's stays empty: the newest that reads
    with pytest.raises(CheckpointError, match=r"pass one of its 2 checkpoints, e.g. the newest that reads, "
                                              r".*/run/checkpoint-00000003\.pt$"):
        load_encoder(tmp_path / "run")
    # one of its checkpoints named, that a live run's rotation removed before it was read (before: "no such file or
    # directory" alone; of train.init, without naming train.init)
    from mme.train import engine

    rotated = (r"run/checkpoint-00000001\.pt: no such file or directory; its folder holds 2 other checkpoints of a "
               r"run, the newest checkpoint-00000010\.pt: a live run's rotation \(train\.keep_last\) may have removed "
               r"it; copy a checkpoint out of a live run before reading it$")
    with pytest.raises(CheckpointError, match=rotated):
        load_encoder(tmp_path / "run" / "checkpoint-00000001.pt")
    with pytest.raises(CheckpointError, match="^train.init .*" + rotated):
        engine.read_init(str(tmp_path / "run" / "checkpoint-00000001.pt"), ModelConfig(**TINY))
    with pytest.raises(CheckpointError, match=r"^checkpoint .*" + rotated.replace(" or directory", "")):
        ckpt.load_checkpoint(tmp_path / "run" / "checkpoint-00000001.pt")  # train.resume (before: no such file alone)
    # one of a later step than the newest is not one rotation removed (it removes the oldest): not written yet
    with pytest.raises(CheckpointError, match=r"run/checkpoint-00000011\.pt: no such file or directory; its folder "
                                              r"holds 2 other checkpoints of a run, the newest "
                                              r"checkpoint-00000010\.pt, of an earlier step: this one is not written "
                                              r"yet \(or its step is mistyped\)$"):
        load_encoder(tmp_path / "run" / "checkpoint-00000011.pt")
    # one between the oldest and newest held, or of a held step spelt otherwise, is not one rotation removed either
    # (before: "a live run's rotation (train.keep_last) may have removed it")
    with pytest.raises(CheckpointError, match=r"run/checkpoint-00000005\.pt: no such file or directory; its folder "
                                              r"holds 2 other checkpoints of a run, the oldest "
                                              r"checkpoint-00000003\.pt, the newest checkpoint-00000010\.pt: none of "
                                              r"step 5 was written \(its step or name may be mistyped\)$"):
        load_encoder(tmp_path / "run" / "checkpoint-00000005.pt")
    with pytest.raises(CheckpointError, match=r"run/checkpoint-10\.pt: no such file or directory; its folder holds 2 "
                                              r"other checkpoints of a run: that of step 10 is "
                                              r"checkpoint-00000010\.pt$"):
        load_encoder(tmp_path / "run" / "checkpoint-10.pt")
    with pytest.raises(CheckpointError, match=r"run/notes\.pt: no such file or directory$"):  # no run's checkpoint
        load_encoder(tmp_path / "run" / "notes.pt")
    path = save_pretrained(VisionTransformer(ModelConfig(**dict(TINY, depth=1))), tmp_path / "noweights")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"noweights/model\.safetensors: missing"):
        load_encoder(path)
    # the CLI prints it as one line and exits 1
    assert cli_main(["export", str(tmp_path / "notes.pth"), str(tmp_path / "out")]) == 1
    assert "notes.pth: unknown checkpoint format" in capsys.readouterr().err
    # a safetensors file named otherwise (.pt) is read as one, by its header (before: "unknown checkpoint format
    # (not a PyTorch or safetensors file ...)")
    enc = VisionTransformer(ModelConfig(**dict(TINY, depth=1)))
    (tmp_path / "weights.pt").write_bytes(save_pretrained(enc, tmp_path / "enc.safetensors").read_bytes())
    loaded = load_encoder(tmp_path / "weights.pt")
    assert loaded.state_dict().keys() == enc.state_dict().keys()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in loaded.state_dict().items())
    (tmp_path / "cut.pt").write_bytes((tmp_path / "weights.pt").read_bytes()[:20])  # cut inside its header
    with pytest.raises(CheckpointError, match=r"cut\.pt: unknown checkpoint format"):
        load_encoder(tmp_path / "cut.pt")


def test_a_config_edited_to_a_model_its_weights_do_not_fill_is_refused_before_the_model_is_made(tmp_path,
                                                                                               monkeypatch):
    """A checkpoint whose config.json was edited to 1000 blocks (mme's depth; a Hugging Face export's
    num_hidden_layers alike): its model was made, every weight (at ViT-B's width ~200 GB: a RuntimeError of the
    allocator, or the process killed), before its weights were seen not to fill it. It is checked on the meta device
    first now: a CheckpointError naming the file, and no model made."""
    from mme.models import checkpoint

    path = save_pretrained(VisionTransformer(ModelConfig(**dict(TINY, depth=1))), tmp_path / "tiny")
    config = json.loads((path / "config.json").read_text())
    config["model"]["depth"] = 1000
    (path / "config.json").write_text(json.dumps(config))
    built, new_model = [], checkpoint.new_model
    monkeypatch.setattr(checkpoint, "new_model", lambda ck: built.append(torch.get_default_device().type)
                        or new_model(ck))
    with pytest.raises(CheckpointError, match=rf"^{path}.*: does not fit the model: missing keys \['blocks\.1\."):
        load_encoder(path)
    assert built == ["meta"]


def test_a_config_edited_to_a_huge_clip_is_refused_and_its_meta_check_computes_no_position_table(tmp_path,
                                                                                                 monkeypatch):
    """A config.json edited to img_size 65536 (its weights fit any clip: the position table is not stored) claimed 67
    million tokens, and the check of its shapes on the meta device computed a float64 position table of theirs on the
    CPU first (img_size 4096 at ViT-L's width: 5.5 GB, 37 s, before a refusal). A clip past MAX_TOKENS is refused
    now, naming the file and the fields; on the meta device the table is an empty one of its shape, computed
    nowhere."""
    from mme.models.config import MAX_TOKENS
    from mme.models.vit import sincos_table

    path = save_pretrained(VisionTransformer(ModelConfig(**dict(TINY, depth=1))), tmp_path / "tiny")
    config = json.loads((path / "config.json").read_text())
    config["model"]["img_size"] = 65536
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"^{path}: invalid model config: model\.img_size and num_frames: a "
                                              rf"clip of .*img_size 65536.* makes \d+ tokens, more than the "
                                              rf"{MAX_TOKENS} mme takes"):
        load_encoder(path)
    monkeypatch.setattr(torch, "arange", lambda *a, **k: pytest.fail("computed a table on the meta device"))
    with torch.device("meta"):
        table = sincos_table(MAX_TOKENS, 1024)
    assert table.device.type == "meta" and table.shape == (MAX_TOKENS, 1024) and table.dtype == torch.float32


def test_truncated_files_name_the_file(mae, tmp_path):
    torch.save({"model": mae.state_dict()}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: .*truncated"):
        load_encoder(tmp_path / "cut.pth")
    path = save_pretrained(mae, tmp_path / "w.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a readable safetensors file"):
        load_encoder(path)


def _flip_a_bit_inside_the_largest_tensor(path) -> str:
    """Flip one bit in the middle of the largest tensor stored in torch.save's zip container ``path``; its member's
    name."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # after its local header
    data = bytearray(path.read_bytes())
    data[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    return info.filename


def test_bytes_damaged_inside_a_tensor_are_refused_naming_the_member(mae, tmp_path, caplog):
    """A torch file whose bytes were damaged inside a tensor (a bit flipped on a disk or in a copy) loaded without a
    word with other weights on every route (train.init, resume, embed, probe, export, viz): torch.load does not check
    the zip container's CRC-32s. They are checked: one line naming the file and the damaged member, and
    ``--resume auto`` skips such a checkpoint as a truncated one, for the one before it."""
    from test_resume import _state

    from mme.train import checkpoint as ckpt

    path = tmp_path / "full.pth"
    torch.save({"model": mae.state_dict()}, path)
    member = _flip_a_bit_inside_the_largest_tensor(path)
    read = torch.load(path, weights_only=True)["model"]  # (torch itself reads it, with other weights)
    assert [k for k in read if not torch.equal(read[k], mae.state_dict()[k])] != []
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: truncated or corrupt PyTorch checkpoint "
                                              rf"\(member {member} fails its CRC-32 check"):
        load_encoder(path)
    assert cli_main(["export", str(path), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()
    run = tmp_path / "run"
    for step in (1, 2):
        ckpt.save_checkpoint(_state(step, size=4096), run, keep_last=0)
    member = _flip_a_bit_inside_the_largest_tensor(run / "checkpoint-00000002.pt")
    with pytest.raises(CheckpointError, match=rf"checkpoint-00000002\.pt: truncated or corrupt PyTorch checkpoint "
                                              rf"\(member {member} fails its CRC-32 check"):
        ckpt.load_checkpoint(run / "checkpoint-00000002.pt")
    with caplog.at_level(logging.WARNING):
        found, state = ckpt.latest_valid(run)
    assert found.name == "checkpoint-00000001.pt" and torch.equal(state["model"]["w"], torch.full((4096,), 1.0))
    assert "checkpoint-00000002.pt: truncated or corrupt PyTorch checkpoint" in caplog.text


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_an_export_without_read_permission_is_said_so(mae, tmp_path, refuse_open, layout):
    """Before: 'not a readable safetensors file (truncated or another format): No such file or directory'."""
    path = save_pretrained(mae, tmp_path / ("w.safetensors" if layout == "file" else "w"))
    weights = path if layout == "file" else path / "model.safetensors"
    weights.chmod(0)
    try:
        weights.open("rb").close()
    except PermissionError:
        pass
    else:  # this process reads a file of mode 000 (root)
        refuse_open(weights, PermissionError(errno.EACCES, "Permission denied", str(weights)))
    with pytest.raises(CheckpointUnreadable, match=rf"^{weights}: cannot be read \(Permission denied\)$"):
        load_encoder(path)


def test_a_checkpoint_saved_without_crc32s_loads(mae, tmp_path):
    """torch saves with every member's CRC-32 0 where they are off (torch.serialization.set_crc32_options(False)),
    and torch.load reads such a file: it was refused as corrupt ("member archive/data.pkl fails its CRC-32 check"),
    and --resume auto went back to the checkpoint before it without a word of why."""
    import zipfile

    from test_resume import _state

    from mme.train import checkpoint as ckpt

    run = tmp_path / "run"
    ckpt.save_checkpoint(_state(1, size=4096), run, keep_last=0)
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"model": mae.state_dict()}, tmp_path / "nocrc.pth")
        ckpt.save_checkpoint(_state(2, size=4096), run, keep_last=0)
    finally:
        torch.serialization.set_crc32_options(True)
    assert {i.CRC for i in zipfile.ZipFile(tmp_path / "nocrc.pth").infolist()} == {0}
    encoder = load_encoder(tmp_path / "nocrc.pth")
    assert torch.equal(encoder.patch_embed.proj.weight, mae.encoder.patch_embed.proj.weight)
    found, state = ckpt.latest_valid(run)
    assert found.name == "checkpoint-00000002.pt" and torch.equal(state["model"]["w"], torch.full((4096,), 2.0))


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}, "extra": NotAWeight()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refusing to unpickle"):
        load_encoder(tmp_path / "evil.pth")


def test_wrong_architecture_names_the_key_and_both_shapes(mae, tmp_path, caplog):
    path = save_pretrained(mae, tmp_path / "small")
    bigger = VisionTransformer(ModelConfig(**dict(TINY, embed_dim=96, num_heads=4)))
    with pytest.raises(CheckpointError, match=r"small .*wrong architecture: patch_embed\.proj\.weight has shape "
                                              r"\(64, 3, 2, 16, 16\) in the checkpoint, the model expects \(96,"):
        load_encoder_weights(bigger, path)
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["depth"] = 3  # config and weights disagree
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"small .*missing keys \['encoder\.blocks\.2\."):
        load_model(path)
    with caplog.at_level(logging.WARNING):
        load_model(path, strict=False)  # loads what fits, reports the rest
    assert "13 missing keys left at initial values: ['encoder.blocks.2." in caplog.text


def test_load_encoder_weights_into_a_classifier_drops_the_pretrained_final_norm(mae, tmp_path):
    path = save_pretrained(mae, tmp_path / "pre")
    clf = VideoClassifier(ModelConfig(**TINY), num_classes=4)
    load_encoder_weights(clf.encoder, path)
    assert torch.equal(clf.encoder.blocks[1].attn.qkv.weight, mae.encoder.blocks[1].attn.qkv.weight)


def test_load_encoder_weights_refuses_an_encoder_of_another_head_count_or_input_norm_than_recorded(mae, caplog,
                                                                                                tmp_path):
    """An encoder built with 2 heads where the file records 4 (or input_norm='clip') took its weights without a word,
    no shape differing: features off by 0.25 from the file's model. Each such field is named with both values (a
    CheckpointError, a warning with strict=False); one the file takes on trust (an original .pth's head count) is not
    compared, and an encoder built as recorded loads as before. Another norm_eps is no other model (Hugging Face's
    VideoMAEConfig records 1e-12, ours 1e-6): it loads, said at info."""
    path = save_pretrained(mae, tmp_path / "pre")
    x = clip()
    for given, named in ((dict(num_heads=2), "num_heads=4, the encoder has num_heads=2"),
                         (dict(norm_eps=1e-5, input_norm="clip"), "input_norm='dataset', the encoder has "
                                                                  "input_norm='clip'")):
        clf = VideoClassifier(ModelConfig(**{**TINY, **given}), num_classes=4, pool="norm_mean")
        before = clf.encoder.blocks[0].attn.qkv.weight.clone()
        with pytest.raises(CheckpointError, match=rf"pre \(mme mae\): wrong architecture: the checkpoint records "
                                                  rf"{re.escape(named)} \(no shape differs: its weights would compute "
                                                  r"another model\); build the encoder with the checkpoint's, or load "
                                                  r"with strict=False$"):
            load_encoder_weights(clf.encoder, path)
        assert torch.equal(clf.encoder.blocks[0].attn.qkv.weight, before)  # nothing loaded
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            load_encoder_weights(clf.encoder, path, strict=False)
        assert f"records {named} (no shape differs" in caplog.text
        with torch.no_grad():
            assert (clf.encoder(x) - mae.encoder(x)).abs().max() > 1e-3  # what the warning says: another model
    hf_eps = VideoClassifier(ModelConfig(**{**TINY, "norm_eps": 1e-12}), num_classes=4, pool="norm_mean").eval()
    with caplog.at_level(logging.INFO):
        caplog.clear()
        load_encoder_weights(hf_eps.encoder, path)  # strict: loads
    assert "records norm_eps=1e-06, the encoder has norm_eps=1e-12: loaded" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with torch.no_grad():
        assert 0 < (hf_eps.encoder(x) - mae.encoder(x)).abs().max() < 1e-4
    torch.save({"model": videomae_layout(mae)}, tmp_path / "orig.pth")  # records no head count: 4 taken on trust
    clf = VideoClassifier(ModelConfig(**{**TINY, "num_heads": 2}), num_classes=4, pool="norm_mean").eval()
    load_encoder_weights(clf.encoder, tmp_path / "orig.pth", img_size=32, num_frames=8)
    same = VideoClassifier(ModelConfig(**TINY), num_classes=4, pool="norm_mean").eval()
    load_encoder_weights(same.encoder, path)
    with torch.no_grad():
        assert torch.equal(same.encoder(x), mae.encoder(x))


def test_loading_a_model_leaves_the_callers_global_generator_as_it_was(mae, tmp_path):
    """load_model / load_encoder built the module of a checkpoint with its default initial weights, drawn from the
    global generator before the file's replaced them: a notebook seeded, loaded a model and drew other numbers
    than its seed gives. The module is built under a fork of the generator: the same weights, the caller's state
    as it was."""
    paths = [save_pretrained(mae, tmp_path / "pre"),
             save_pretrained(VideoClassifier(ModelConfig(**TINY), num_classes=4), tmp_path / "clf")]
    torch.manual_seed(0)
    expected = torch.rand(3)
    for load in (load_model, load_encoder):
        for path in paths:
            torch.manual_seed(0)
            load(path)
            assert torch.equal(torch.rand(3), expected), (load.__name__, path.name)
    assert torch.equal(load_encoder(paths[0]).blocks[1].attn.qkv.weight, mae.encoder.blocks[1].attn.qkv.weight)
    # loads from several threads at once (a notebook's thread pool): each fork put back the state it found, another
    # load's drawn state among them (before: the caller's generator moved); now one load's fork at a time
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads' turns interleave the loads' builds
    try:
        torch.manual_seed(0)
        with ThreadPoolExecutor(4) as pool:
            loaded = list(pool.map(lambda i: load_encoder(paths[i % 2]), range(16)))
    finally:
        sys.setswitchinterval(switch)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(loaded[4].blocks[1].attn.qkv.weight, mae.encoder.blocks[1].attn.qkv.weight)


def test_a_child_forked_while_a_thread_loads_a_model_loads_one_too(mae, tmp_path):
    """A thread of the parent loading a model (inside :func:`mme.utils.caller_generator_kept`, which one thread at a
    time enters) at the moment the process forked: the child's copy of that lock was held for good, by a thread that
    does not exist there, and the child's own load waited forever."""
    path = save_pretrained(mae, tmp_path / "pre")
    inside, go_on = threading.Event(), threading.Event()

    def loading():
        with caller_generator_kept():
            inside.set()
            go_on.wait(120)

    fork = multiprocessing.get_context("fork")
    results = fork.SimpleQueue()

    def child():
        weight = load_encoder(path).blocks[1].attn.qkv.weight
        results.put(torch.equal(weight, mae.encoder.blocks[1].attn.qkv.weight))

    thread = threading.Thread(target=loading)
    thread.start()
    try:
        assert inside.wait(10)
        worker = fork.Process(target=child, daemon=True)
        worker.start()
        worker.join(30)
        hung = worker.is_alive()
        if hung:
            worker.kill()
            worker.join()
    finally:
        go_on.set()
        thread.join()
    assert not hung, "the forked child's load waited forever"
    assert not results.empty() and results.get() is True


def test_exports_that_hf_cannot_represent_are_refused(mae, tmp_path):
    scaled = VisionTransformer(ModelConfig(**TINY, layer_scale_init=0.1))
    with pytest.raises(CheckpointError, match="no layer scale"):
        export_hf(scaled, tmp_path / "a")
    with pytest.raises(CheckpointError, match="holds an encoder, cannot export it as pretraining"):
        export_hf(mae.encoder, tmp_path / "b", kind="pretraining")
    two = MaskedAutoencoder(ModelConfig(**TINY), [PIXEL, HeadSpec("traj", 48, hidden=32)])
    with pytest.raises(CheckpointError, match="exactly one linear pixel head"):
        export_hf(two, tmp_path / "c", kind="pretraining")
    clip_norm = VisionTransformer(ModelConfig(**TINY, input_norm="clip"))
    with pytest.raises(CheckpointError, match="input_norm='clip'"):
        export_hf(clip_norm, tmp_path / "d")
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_export_refuses_weights_that_do_not_fill_the_model(mae, tmp_path, capsys):
    """An export builds the model before it writes: a file missing a tensor, or whose config says more blocks
    than it holds, is refused in one line (it was written, and Hugging Face loaded it with a random tensor)."""
    sd = videomae_layout(mae)
    del sd["encoder.blocks.1.attn.proj.weight"]
    torch.save({"model": sd}, tmp_path / "cut.pth")
    hints = ["--num-heads", "4", "--decoder-heads", "2", "--img-size", "32", "--num-frames", "8"]
    for fmt, kind in (("hf", "model"), ("hf", "pretraining"), ("mme", "pretraining"), ("safetensors", "model")):
        out = tmp_path / f"{fmt}-{kind}"
        assert cli_main(["export", str(tmp_path / "cut.pth"), str(out), "--format", fmt, "--kind", kind,
                         *hints]) == 1
        err = capsys.readouterr().err
        assert "does not fit the model: missing keys ['" in err and "blocks.1.attn.proj.weight" in err, err
        assert not list(tmp_path.glob(f"{out.name}*/*")) and not (tmp_path / f"{out.name}.safetensors").exists()
    path = save_pretrained(mae, tmp_path / "ours")
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["depth"] = 3
    (path / "config.json").write_text(json.dumps(meta))
    assert cli_main(["export", str(path), str(tmp_path / "deeper"), "--format", "mme"]) == 1
    assert "missing keys ['encoder.blocks.2." in capsys.readouterr().err


def test_tensors_the_model_has_no_place_for_are_refused(tmp_path, caplog):
    """A tensor of a file that no key of the model takes would leave the model computing something else: a k bias
    in an encoder block, or the head of a classifier without fc_norm (VideoMAE's ``use_mean_pooling=False``, which
    reads the first token). Refused, naming the keys; loading the encoder alone drops what is not the encoder's."""
    src = perturbed(VideoClassifier(ModelConfig(**WIDE), num_classes=7))
    sd = {k.removeprefix("encoder."): v for k, v in src.state_dict().items()}
    geometry = dict(img_size=32, num_frames=8)
    torch.save({"model": {**sd, "blocks.0.attn.qkv.bias": torch.ones(3 * 128)}}, tmp_path / "kbias.pth")
    for load in (load_model, load_encoder):
        with pytest.raises(CheckpointError, match=r"kbias\.pth: 1 tensor of the original VideoMAE/MME fine-tuned "
                                                  r"layout has no place in the model.*without it: "
                                                  r".*blocks\.0\.attn\.qkv\.bias"):
            load(tmp_path / "kbias.pth", **geometry)
    first_token = {k: v for k, v in sd.items() if not k.startswith("fc_norm.")}
    first_token.update({"norm.weight": torch.ones(128), "norm.bias": torch.zeros(128)})
    torch.save({"model": first_token}, tmp_path / "first_token.pth")
    with pytest.raises(CheckpointError, match=r"\['head\.weight', 'head\.bias'\]; a classifier without fc_norm"):
        load_model(tmp_path / "first_token.pth", **geometry)
    with caplog.at_level(logging.WARNING):
        enc = load_encoder(tmp_path / "first_token.pth", **geometry)
    assert isinstance(enc, VisionTransformer) and "2 keys of the ViT encoder layout, not part" in caplog.text
    assert isinstance(load_model(tmp_path / "kbias.pth", strict=False, **geometry), VideoClassifier)


def test_head_counts_of_the_original_widths():
    """Files do not record head counts; the original factories' are taken by width (ViT-H has 16 heads of 80)."""
    from mme.models.convert_config import infer_config

    def state(width, hidden, decoder):
        return {"encoder.patch_embed.proj.weight": torch.empty(width, 3, 2, 16, 16, device="meta"),
                "encoder.blocks.0.mlp.fc1.weight": torch.empty(hidden, width, device="meta"),
                "encoder_to_decoder.weight": torch.empty(decoder, width, device="meta"),
                "decoder_blocks.0.mlp.fc1.weight": torch.empty(decoder * hidden // width, decoder, device="meta")}
    for width, heads, decoder, decoder_heads in ((384, 6, 192, 3), (768, 12, 384, 6), (1024, 16, 512, 8),
                                                 (1280, 16, 640, 8), (512, 8, 256, 4)):
        cfg = infer_config(state(width, 4 * width, decoder), "mae")
        assert (cfg.num_heads, cfg.decoder_heads) == (heads, decoder_heads), width


def test_a_width_with_no_head_count_guess_says_how_to_give_the_count(tmp_path):
    """An original file of a width with no guess (96: no original model's, nor of 64-d heads) was refused with "pass
    num_heads", which mme embed, probe and viz have no way to pass. The line says how: mme export with --num-heads,
    whose export then reads; it names each width with no guess, and carries them (HeadCountUnknown.widths)."""
    import re

    enc = perturbed(VisionTransformer(ModelConfig(**dict(TINY, embed_dim=96, num_heads=3))), seed=2)
    torch.save({"model": {f"encoder.{k}": v for k, v in enc.state_dict().items()}}, tmp_path / "w96.pth")
    with pytest.raises(CheckpointError, match="^" + re.escape(
            f"{tmp_path}/w96.pth: it records no head count, and no guess fits its width 96 (an original model's count, "
            "or 64-d heads): give the count it was trained with to mme export (--num-heads N) and use the export (in "
            "Python: num_heads=N)") + "$"):
        load_encoder(tmp_path / "w96.pth", img_size=32, num_frames=8)
    export(tmp_path / "w96.pth", tmp_path / "w96", "mme", "model", num_heads=3, img_size=32, num_frames=8)
    x = clip()
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path / "w96")(x), enc(x))
    from mme.models.convert_config import HeadCountUnknown, infer_config

    meta = {"encoder.patch_embed.proj.weight": torch.empty(96, 3, 2, 16, 16, device="meta"),
            "encoder.blocks.0.mlp.fc1.weight": torch.empty(384, 96, device="meta"),
            "encoder_to_decoder.weight": torch.empty(40, 96, device="meta"),
            "decoder_blocks.0.mlp.fc1.weight": torch.empty(160, 40, device="meta")}
    said = r"no guess fits its width 96 nor its decoder width 40 .*\(--num-heads N --decoder-heads N\) .*" \
        r"\(in Python: num_heads=N, decoder_heads=N\)$"
    with pytest.raises(HeadCountUnknown, match=said) as e:
        infer_config(meta, "mae")
    assert e.value.widths == {"num_heads": 96, "decoder_heads": 40}


def test_train_init_takes_the_configs_head_counts_in_one_read(tmp_path, monkeypatch, caplog):
    """train.init of an original file whose widths have no head-count guess (96, a decoder's 32), under a config of
    those widths, read the whole file twice: refused for the counts, then read again with the config's. The config's
    counts are read_checkpoint's ``fallback``, taken in the one read; so are they for the counts an export of an
    original file records as assumed (the guess of 1 head for width 64)."""
    from mme.models import checkpoint
    from mme.train.engine import read_init

    reads = []

    def counted(read):
        def reading(path, *args, **kwargs):
            reads.append(path)
            return read(path, *args, **kwargs)
        return reading

    for name in ("torch_load", "_read_safetensors"):  # every read of a file's tensors
        monkeypatch.setattr(checkpoint, name, counted(getattr(checkpoint, name)))
    wide = ModelConfig(**dict(TINY, embed_dim=96, num_heads=3))  # 3 heads of 32; its decoder: 2 of 16
    src = perturbed(MaskedAutoencoder(wide, [PIXEL]), seed=5)
    torch.save({"model": videomae_layout(src)}, tmp_path / "w96.pth")
    with caplog.at_level(logging.INFO, logger="mme"):
        ck = read_init(str(tmp_path / "w96.pth"), wide)
    assert reads == [tmp_path / "w96.pth"]
    assert (ck.cfg.num_heads, ck.cfg.decoder_heads, ck.assumed) == (3, 2, ("img_size", "num_frames"))
    assert f"train.init {tmp_path}/w96.pth records no head count, and no guess fits its width: the config's " \
        "model.num_heads=3 model.decoder_heads=2" in caplog.messages
    tokens = torch.randn(1, 8, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(checkpoint.build_model(ck).encoder.blocks[0](tokens), src.encoder.blocks[0](tokens))
    narrow = ModelConfig(**TINY)  # 4 heads of 16, guessed 1 of 64
    torch.save({"model": videomae_layout(perturbed(MaskedAutoencoder(narrow, [PIXEL]), seed=6))},
               tmp_path / "w64.pth")
    out = export(tmp_path / "w64.pth", tmp_path / "guessed.safetensors", "safetensors", "model")
    reads.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mme"):
        ck = read_init(str(out), narrow)
    assert reads == [out] and (ck.cfg.num_heads, ck.assumed) == (4, ("img_size", "num_frames"))
    assert f"train.init {out} records no head count: model.num_heads=4 (its guess from the width 64: 1)" \
        in caplog.messages


def test_the_clip_a_file_does_not_record_is_said_or_checked(tmp_path, caplog):
    """Original files do not record the clip: the one taken (224², 16 frames) is said when the model is built,
    and a stored position table, one row per token, must fit it."""
    from mme.models.vit import sincos_table

    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=4)
    torch.save({"model": videomae_layout(src)}, tmp_path / "plain.pth")
    with caplog.at_level(logging.WARNING):
        load_encoder(tmp_path / "plain.pth")
    assert "not recorded by the file it comes from, so taken on trust: num_heads=2, img_size=224, num_frames=16" \
        in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_encoder(tmp_path / "plain.pth", img_size=32, num_frames=8, num_heads=2)
    assert "taken on trust" not in caplog.text
    table = sincos_table(src.cfg.num_tokens, 128)[None]
    torch.save({"model": {**videomae_layout(src), "encoder.pos_embed": table}}, tmp_path / "table.pth")
    with pytest.raises(CheckpointError, match=r"table\.pth: its position table has 16 rows, one per token, but 16 "
                                              r"frames of 224x224 make 1568 tokens"):
        load_encoder(tmp_path / "table.pth")
    assert load_encoder(tmp_path / "table.pth", img_size=32, num_frames=8) is not None


def test_a_runs_clip_is_taken_where_the_file_records_none(tmp_path, caplog):
    """An original .pth records no clip: the readers of a run's config (task.eval_only, train.init) took 224² x 16
    whatever the config said, and a stored position table of another clip was refused naming flags they do not
    have. The config's clip (``fallback``) is taken where the file stores no table or one that fits it, still as
    taken on trust; a table of 224² x 16 keeps that clip (fine-tuning at another size); one that fits neither is one
    line naming the config's keys. An export that took the clip on trust records none either."""
    from mme.models.checkpoint import build_model
    from mme.models.vit import sincos_table

    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=4)  # 8 frames of 32 px: 16 tokens
    table = {"encoder.pos_embed": sincos_table(src.cfg.num_tokens, 128)[None]}
    torch.save({"model": videomae_layout(src)}, tmp_path / "plain.pth")
    torch.save({"model": {**videomae_layout(src), **table}}, tmp_path / "table.pth")
    export(tmp_path / "plain.pth", tmp_path / "exported", num_heads=2, decoder_heads=2)  # (clip: 224² x 16, assumed)
    run = ModelConfig(**WIDE)
    x = clip()
    for name in ("plain.pth", "table.pth", "exported"):
        ck = read_checkpoint(tmp_path / name, encoder_only=True, fallback=run, given_as={"img_size": "model.img_size"})
        assert (ck.cfg.num_frames, ck.cfg.img_size) == (8, 32) and ck.assumed == ("img_size", "num_frames")
        assert ck.from_fallback == (() if name == "exported" else ("num_heads",))  # (the export records its count)
        caplog.clear()
        with caplog.at_level(logging.WARNING), torch.no_grad():
            assert torch.equal(build_model(ck)(x), src.encoder(x))
        assert "so taken on trust: img_size=32, num_frames=8 (if the model was trained otherwise, give " \
            "model.img_size; for num_frames, write a file that records them: mme export with --num-frames)" \
            in caplog.text
    wider = ModelConfig(**{**WIDE, "img_size": 64})
    assert read_checkpoint(tmp_path / "plain.pth", encoder_only=True, fallback=wider).cfg.img_size == 64
    with pytest.raises(CheckpointError, match=r"table\.pth: its position table has 16 rows, one per token, but "
                                              r"neither 8 frames of 64x64 \(64 tokens\) nor 16 frames of 224x224 "
                                              r"\(1568 tokens\) make as many, and more than one clip of 8 frames or "
                                              r"of 64x64 does \(2 frames of 64x64, 8 frames of 32x32\): give the "
                                              r"clip it was trained on \(num_frames=N / img_size=N\)$"):
        read_checkpoint(tmp_path / "table.pth", encoder_only=True, fallback=wider)
    torch.save({"model": {**videomae_layout(src), "encoder.pos_embed": sincos_table(1568, 128)[None]}},
               tmp_path / "table224.pth")
    with caplog.at_level(logging.INFO):
        ck = read_checkpoint(tmp_path / "table224.pth", encoder_only=True, fallback=run)
    assert (ck.cfg.num_frames, ck.cfg.img_size) == (16, 224)
    assert "its position table of 1568 rows fits 16 frames of 224 px, not the config's 8 of 32 px " \
        "(model.num_frames, model.img_size): those taken for it" in caplog.text


def test_what_a_file_does_not_record_is_asked_for_in_the_reading_commands_own_terms(tmp_path, capsys, caplog):
    """A position table that fits no clip was refused asking for "img_size / num_frames, --img-size / --num-frames"
    whoever read the file (Python's keyword arguments and the flags both), and mme export's warning of what it took
    on trust asked for keyword arguments or "mme export with --num-heads, ...", the command itself. Each reader now
    names its own: keyword arguments in Python, mme export its flags; train.init, whose config keys set the
    run's clip, mme export's flags."""
    from mme.models.checkpoint import build_model
    from mme.models.vit import sincos_table
    from mme.train.engine import read_init

    src = perturbed(MaskedAutoencoder(ModelConfig(**WIDE), [PIXEL]), seed=4)  # 8 frames of 32 px: 16 tokens
    table = {"encoder.pos_embed": sincos_table(src.cfg.num_tokens, 128)[None]}
    torch.save({"model": {**videomae_layout(src), **table}}, tmp_path / "table.pth")
    torch.save({"model": videomae_layout(src)}, tmp_path / "plain.pth")
    refused = "table.pth: its position table has 16 rows, one per token, but 16 frames of 224x224 make 1568 tokens: " \
              "give the clip it was trained on ({})"
    with pytest.raises(CheckpointError) as e:
        load_encoder(tmp_path / "table.pth")
    assert str(e.value).endswith(refused.format("num_frames=N / img_size=N"))
    assert cli_main(["export", str(tmp_path / "table.pth"), str(tmp_path / "out"), "--kind", "model"]) == 1
    assert capsys.readouterr().err.endswith(refused.format("--num-frames / --img-size") + "\n")
    with pytest.raises(CheckpointError) as e:
        read_init(str(tmp_path / "table.pth"), ModelConfig(**{**WIDE, "img_size": 64}), encoder_only=True)
    assert str(e.value).endswith(f"does (2 frames of 64x64, 8 frames of 32x32): write a file that records the clip "
                                 f"it was trained on, mme export {tmp_path}/table.pth OUT --num-frames N --img-size N, "
                                 f"then train.init=OUT")  # (the config's keys would set the run's clip)
    with caplog.at_level(logging.WARNING):
        export(tmp_path / "plain.pth", tmp_path / "exported", kind="model")
    assert "so taken on trust: num_heads=2, img_size=224, num_frames=16 (if the model was trained otherwise, give " \
        "--num-heads, --img-size, --num-frames)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a command with clip flags alone (mme embed): no keyword arguments
        build_model(read_checkpoint(tmp_path / "plain.pth", img_size=32, num_frames=8, encoder_only=True,
                                    given_as={"img_size": "--img-size", "num_frames": "--num-frames"}))
    assert "so taken on trust: num_heads=2 (if the model was trained otherwise, write a file that records them: " \
        "mme export with --num-heads)" in caplog.text


@pytest.mark.parametrize("case, message", [
    ("image_vit", r"patch_embed\.proj\.weight has shape \(64, 3, 16, 16\), not a video ViT's 3-D patch embedding "
                  r"\(D, C, tubelet, patch, patch\): an image model, not a video one"),
    ("no_fc1", r"no blocks\.0\.mlp\.fc1\.weight: its encoder blocks are incomplete"),
    ("no_projection", r"without encoder_to_decoder\.weight: incomplete"),
    ("bad_metadata", r"its 'mme' metadata is not valid JSON"),
])
def test_foreign_or_incomplete_weights_name_the_file(mae, tmp_path, case, message):
    """Once: an image ViT's learned position table was named before its 2-D patch embedding, after the path
    twice."""
    from safetensors.torch import save_file

    sd = videomae_layout(mae)
    if case == "image_vit":
        sd = {"patch_embed.proj.weight": torch.zeros(64, 3, 16, 16), "blocks.0.norm1.weight": torch.ones(64),
              "cls_token": torch.zeros(1, 1, 64), "pos_embed": torch.randn(1, 17, 64)}  # timm's, ImageNet-MAE's
    elif case == "no_fc1":
        sd = {k: v for k, v in sd.items() if k != "encoder.blocks.0.mlp.fc1.weight"}
    elif case == "no_projection":
        sd = {k: v for k, v in sd.items() if k != "encoder_to_decoder.weight"}
    path = tmp_path / "weights.pth"
    if case == "bad_metadata":
        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, str(path), metadata={"mme": "{oops"})
    else:
        torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=f"weights\\.(pth|safetensors): .*{message}") as e:
        load_model(path, num_heads=4, decoder_heads=2, img_size=32, num_frames=8)
    assert str(e.value).count(str(path)) == 1, e.value


def test_hf_export_of_a_run_keeps_its_pixel_loss(tmp_path):
    """A pre-training run's ``target.norm_pix`` travels into the Hugging Face config (``norm_pix_loss``): unset,
    HF trained on another loss than the run's (1.125 against 0.385 in the audit). ``--norm-pix`` overrides."""
    model = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    torch.save({"model": model.state_dict(), "config": {"model": dataclasses.asdict(model.cfg),
                                                        "target": {"kind": "pixel", "norm_pix": False}},
                "heads": [dataclasses.asdict(PIXEL)]}, tmp_path / "run.pt")
    for flags, expected in (([], False), (["--norm-pix"], True)):
        out = tmp_path / f"hf{len(flags)}"
        assert cli_main(["export", str(tmp_path / "run.pt"), str(out), "--kind", "pretraining", *flags]) == 0
        assert json.loads((out / "config.json").read_text())["norm_pix_loss"] is expected
    with pytest.raises(ConfigError, match="--norm-pix"):
        export(tmp_path / "run.pt", tmp_path / "x", "mme", norm_pix=True)


def test_a_compiled_model_saves_as_the_model_inside(mae, tmp_path):
    path = save_pretrained(torch.compile(mae), tmp_path / "compiled")
    assert all(torch.equal(load_model(path).state_dict()[k], v) for k, v in mae.state_dict().items())


def test_a_bare_hf_state_dict_gets_hf_layer_norms(tmp_path):
    """A Hugging Face state dict saved on its own (no config.json) is read with HF's decoder and fc_norm eps."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=8, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=1, intermediate_size=256, layer_norm_eps=1e-6,
                                         use_mean_pooling=True, num_labels=3)
    hf = perturbed(transformers.VideoMAEForVideoClassification(hf_cfg))
    torch.save(hf.state_dict(), tmp_path / "hf.pth")
    ours = load_model(tmp_path / "hf.pth", img_size=32, num_frames=8)
    assert ours.fc_norm.eps == 1e-5
    x = clip()
    with torch.no_grad():
        assert (ours(x) - hf(hf_input(x)).logits).abs().max() <= 1e-6


def test_export_refuses_other_head_counts_and_paths_it_cannot_write(mae, tmp_path, capsys):
    """--num-heads is for files that do not record it: over one that does it silently changed the attention. A
    --format safetensors name whose .safetensors form is a folder was a traceback after the work, and --format mme
    to a .safetensors name left an empty folder behind. Exported weights are readable as the umask says
    (safetensors writes them for their owner only)."""
    import os
    import stat

    path = save_pretrained(mae, tmp_path / "ours")
    assert cli_main(["export", str(path), str(tmp_path / "a"), "--format", "mme", "--num-heads", "2"]) == 1
    err = capsys.readouterr().err
    assert "it records num_heads=4" in err and err.count(str(path)) == 1, err
    (tmp_path / "b.safetensors").mkdir()
    assert cli_main(["export", str(path), str(tmp_path / "b"), "--format", "safetensors"]) == 1
    assert "b.safetensors: is a folder" in capsys.readouterr().err
    for fmt in ("mme", "hf"):  # hf made a folder of that name
        assert cli_main(["export", str(path), str(tmp_path / "c.safetensors"), "--format", fmt]) == 1
        assert f"--format {fmt} writes a directory" in capsys.readouterr().err
        assert not (tmp_path / "c.safetensors").exists()
    old = os.umask(0o022)
    try:
        out = export_hf(mae, tmp_path / "hf")
    finally:
        os.umask(old)
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o644


def test_an_export_to_an_empty_out_is_refused_not_written_into_the_working_folder(mae, tmp_path, monkeypatch):
    """``export(SRC, "")`` (an unset shell variable in a script) wrote the model into the working folder, which
    ``Path("")`` names; refused now naming out, for every format."""
    path = save_pretrained(mae, tmp_path / "ours")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for fmt, what in (("mme", "folder"), ("hf", "folder"), ("safetensors", "file")):
        with pytest.raises(ConfigError, match=rf"^out is empty; give a {what} name$"):
            export(path, "", fmt)
    assert list(work.iterdir()) == []


def test_an_export_that_cannot_be_written_is_one_line_and_leaves_no_folder_it_made(mae, tmp_path):
    """The disk fills up (a file-size limit here): safetensors' error, which is no OSError, was a traceback, and the
    OUT folder the command had made was left empty (also by a SRC that did not read). One line names OUT, the reason
    and the MiB free; the folders made for OUT are removed, a folder that was there is left as it was, and a file
    that was there (--overwrite) too, which the line of a single file says (it said only that OUT was not written)."""
    import re

    src = save_pretrained(mae, tmp_path / "src")
    (tmp_path / "there").mkdir()
    (tmp_path / "there" / "notes.txt").write_text("kept")
    old = save_pretrained(mae, tmp_path / "old" / "one.safetensors").read_bytes()
    jobs = [["export", str(src), str(tmp_path / out), "--format", fmt]
            for fmt, out in (("hf", "new/hf"), ("mme", "new/mme"), ("safetensors", "new/one"), ("hf", "there"))]
    jobs.append(["export", str(src), str(tmp_path / "old" / "one"), "--format", "safetensors", "--overwrite"])
    proc = in_one_process(jobs, "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                                "resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))", timeout=120)
    assert proc.returncode == 0 and [code for code, _, _ in proc.ran] == [1] * len(jobs), proc.stderr[-3000:]
    assert proc.stdout == ""
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith("mme export: error:")]
    assert "Traceback" not in proc.stderr and len(said) == len(jobs), proc.stderr[-3000:]
    for line, out in zip(said, ("new/hf", "new/mme", "new/one.safetensors", "there", "old/one.safetensors")):
        kept = "; nothing is replaced" if out.endswith(".safetensors") else "; nothing in it is replaced"
        assert re.fullmatch(rf"mme export: error: {tmp_path / out}: could not be written "
                            rf"\(File too large: this process's file-size limit \(10000 bytes, ulimit -f\) reached\)"
                            rf"{kept}", line), line
    assert not (tmp_path / "new").exists() and [p.name for p in (tmp_path / "there").iterdir()] == ["notes.txt"]
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["one.safetensors"]
    assert (tmp_path / "old" / "one.safetensors").read_bytes() == old
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert cli_main(["export", str(tmp_path / "bad.pth"), str(tmp_path / "new" / "hf"), "--format", "hf"]) == 1
    assert not (tmp_path / "new").exists()


KILLED_WRITE = ("import json, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
                "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); resource.setrlimit(resource.RLIMIT_FSIZE, "
                "(10_000, 10_000)); ")
"""The start of a child's script whose writes past 10 kB kill it: the file-size limit's signal, whose default
action ends the process mid-write, where nothing of Python's runs after."""


def test_an_export_killed_while_writing_leaves_no_file_after_the_next_one(tmp_path):
    """A kill during the weights' write left safetensors' own temporary file (``.tmpXXXXXX``: its ``save_file``
    writes one beside the file, then renames it onto it) behind for good, under a name no cleanup can tell from
    another program's, and our temporary files beside it, which no later export removed. The weights are written
    into our temporary file itself, and the next export into the folder removes the ones a killed write left."""
    import signal
    import subprocess
    import sys

    script = KILLED_WRITE + (
        "from mme.models import HeadSpec, MaskedAutoencoder, ModelConfig; from mme.models.export import "
        "save_pretrained; save_pretrained(MaskedAutoencoder(ModelConfig(**json.loads(sys.argv[1])), "
        "[HeadSpec('pixel', 1536)]), sys.argv[2])")
    model = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    outs = {tmp_path / "folder": ["config.json", "model.safetensors"],
            tmp_path / "file" / "one.safetensors": ["one.safetensors"]}
    procs = [subprocess.Popen([sys.executable, "-c", script, json.dumps(TINY), str(out)], stderr=subprocess.PIPE,
                              text=True) for out in outs]  # at once: each starts Python and torch
    for proc in procs:
        stderr = proc.communicate(timeout=120)[1]
        assert proc.returncode == -signal.SIGXFSZ, stderr[-3000:]
    for out, kept in outs.items():
        folder = out if out.suffix != ".safetensors" else out.parent
        assert any(p.name.startswith(".") for p in folder.iterdir())  # what the killed write left
        save_pretrained(model, out)
        assert sorted(p.name for p in folder.iterdir()) == kept
        loaded = load_model(out).state_dict()
        assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())


def test_an_export_removes_what_a_killed_export_of_the_other_format_left(mae, tmp_path):
    """The next export into a folder removed only the temporary files of its own format's names: a killed
    ``--format hf`` export's ``.preprocessor_config.json.tmp<pid>.json`` stayed beside an ``mme`` export for good."""
    from worker_jobs import dead_pid

    pid = dead_pid()
    out = tmp_path / "out"
    out.mkdir()
    for name, suffix in (("config.json", ".json"), ("model.safetensors", ".safetensors"),
                         ("preprocessor_config.json", ".json")):
        (out / f".{name}.tmp{pid}{suffix}").write_text("half")
    save_pretrained(mae, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_a_write_stopped_by_a_file_size_limit_names_the_limit(tmp_path):
    """numpy's short write (an OSError without errno) was said as 'No space left on device, or a quota reached' under
    a file-size limit (ulimit -f) with the disk nearly empty; the limit is named where the process has one. A write
    the limit stopped with EFBIG said '(File too large; 79745 MiB free)', the space free read as its reason: it names
    the limit, without the space free. An EFBIG of a file under the limit is the file system's (its largest file:
    ext2 of 1 KiB blocks refuses a write at 17 GiB under a limit of 100 GiB), which keeps them, as without a limit
    (for a while it was blamed on the limit). numpy's short write of a file that reached the limit (np.save: one
    write) kept the full disk among its causes and the MiB free: it names the limit alone, as an EFBIG does."""
    import subprocess

    def efbig_after(size: int, name: str) -> str:  # (a write of `size` bytes, then an EFBIG, as at a file's offset)
        return (f"try:\n    with writing({str(tmp_path / name)!r}), atomic_path({str(tmp_path / name)!r}) as tmp, "
                "open(tmp, 'wb') as f:\n"
                f"        f.write(bytes({size})); f.flush()\n"
                "        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))\n"
                "except MMEError as e:\n    print(e)\n")

    script = ("import errno, os, resource, signal, numpy as np; from mme.errors import MMEError; "
              "from mme.utils import atomic_path, error_reason, writing; "
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "print(error_reason(OSError('10 requested and 1 written')))\n"
              + efbig_after(10, "big.bin") +
              "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))\n"
              f"try:\n    np.zeros(10000).tofile({str(tmp_path / 'x.bin')!r})\n"
              "except OSError as e:\n    print(error_reason(e))\n"
              + efbig_after(10, "fs.bin") + efbig_after(10000, "y.bin")
              + f"try:\n    with writing({str(tmp_path / 'z.npy')!r}), "
              f"atomic_path({str(tmp_path / 'z.npy')!r}) as tmp:\n"
              "        np.save(tmp, np.zeros(1000))\n"  # (numpy's one write: a short write past the limit)
              "except MMEError as e:\n    print(e)\n"
              f"try:\n    with writing({str(tmp_path / 'log.txt')!r}), "
              f"open({str(tmp_path / 'log.txt')!r}, 'ab') as f:\n"
              "        f.write(bytes(2000))\n"  # (a plain write, no temporary file: mme extract's marks, a log)
              "except MMEError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.splitlines()
    assert said[0] == "No space left on device, or a quota reached (a short write: 1 of 10 items written)"
    for line, name in ((said[1], "big.bin"), (said[3], "fs.bin")):
        assert re.fullmatch(rf"{tmp_path / name}: could not be written \(File too large; \d+ MiB free\)", line), line
    assert [said[2], said[4]] == [
        "No space left on device, a quota, or this process's file-size limit (1000 bytes, ulimit -f) reached (a short "
        "write: 125 of 10000 items written)",
        f"{tmp_path / 'y.bin'}: could not be written (File too large: this process's file-size limit (1000 bytes, "
        "ulimit -f) reached)"]
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'z.npy'))}: could not be written \(this process's file-size "
                        r"limit \(1000 bytes, ulimit -f\) reached \(a short write: \d+ of 1000 items written\)\)",
                        said[5]), said
    assert said[6] == (f"{tmp_path / 'log.txt'}: could not be written (File too large: this process's file-size limit "
                       "(1000 bytes, ulimit -f) reached)"), said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "x.bin"]  # (no temporary file left)


def test_a_failed_write_says_the_mib_free_only_where_it_may_have_wanted_space(tmp_path):
    """Every failed write said the MiB free: a missing folder, a read-only one or an I/O error read as a full disk.
    The space is said for a full disk, a quota and a file-size limit (and an error that gives no errno) only."""
    import errno
    import os
    import re

    from mme.errors import MMEError
    from mme.utils import writing

    path = tmp_path / "gone" / "model.safetensors"
    with pytest.raises(MMEError) as info, writing(path, "nothing is replaced"):
        path.write_bytes(b"weights")  # its folder is not there
    assert str(info.value) == f"{path}: could not be written (No such file or directory); nothing is replaced"
    for code in (errno.EACCES, errno.EROFS, errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        with pytest.raises(MMEError) as info, writing(path):
            raise OSError(code, os.strerror(code))
        space = code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        assert re.fullmatch(rf"{path}: could not be written \({re.escape(os.strerror(code))}"
                            + (r"; \d+ MiB free\)" if space else r"\)"), str(info.value)), info.value
    with pytest.raises(MMEError, match=r"\(OSError; \d+ MiB free\)$"), writing(path):
        raise OSError()


SAFETENSORS_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16,
                      torch.uint32, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
                      torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz,
                      torch.float8_e8m0fnu, torch.float4_e2m1fn_x2, torch.complex64]
"""Every torch dtype safetensors' ``save_file`` writes (0.8)."""


def safetensors_header(path) -> dict:
    raw = path.read_bytes()
    return json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])


def test_write_safetensors_writes_every_dtype_safetensors_does(tmp_path):
    """Only ten dtypes had a safetensors name: uint16/32/64, float8, float4 and complex64 weights (which
    safetensors' save_file, used before, wrote) were a bare KeyError, ``mme export`` of them a traceback. Each is
    written with safetensors' own name and shape (a float4 tensor's counts its 4-bit values) and read back with
    the same bytes; a dtype safetensors has no name for is one line naming the tensor."""
    from safetensors.torch import load_file, save_file

    from mme.errors import MMEError
    from mme.utils import write_safetensors

    raw = torch.arange(1, 49, dtype=torch.uint8).reshape(2, 3, 8)
    tensors = {f"t{i}": raw.clone().view(dtype) for i, dtype in enumerate(SAFETENSORS_DTYPES)}  # 48 bytes each
    write_safetensors(tmp_path / "ours.safetensors", tensors, {"format": "pt"})
    save_file(tensors, tmp_path / "theirs.safetensors", {"format": "pt"})
    ours, theirs = (safetensors_header(tmp_path / f"{who}.safetensors") for who in ("ours", "theirs"))
    assert ours["__metadata__"] == theirs["__metadata__"] == {"format": "pt"}
    assert {k: (v["dtype"], v["shape"]) for k, v in ours.items() if k != "__metadata__"} \
        == {k: (v["dtype"], v["shape"]) for k, v in theirs.items() if k != "__metadata__"}
    back = load_file(tmp_path / "ours.safetensors")
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(back[name].view(torch.uint8), raw), name
    with pytest.raises(MMEError, match=r"^tensor 'w': safetensors has no complex128 type; convert it to one of "):
        write_safetensors(tmp_path / "c.safetensors", {"v": torch.ones(2), "w": torch.ones(2, dtype=torch.complex128)})
    assert not (tmp_path / "c.safetensors").exists()


def test_write_safetensors_refuses_what_safetensors_would_not_read(tmp_path):
    """A metadata value that is not a string, a tensor named ``__metadata__`` and a header over safetensors' 100 MB
    were written, into files safetensors refuses to open ("invalid JSON in header", "header too large"). Each is
    a ValueError naming it, and nothing is written."""
    from mme.utils import write_safetensors

    path = tmp_path / "w.safetensors"
    with pytest.raises(ValueError, match=r"^safetensors metadata 'epoch': its value is of type int; "):
        write_safetensors(path, {"x": torch.ones(1)}, {"format": "pt", "epoch": 3})
    with pytest.raises(ValueError, match=r"^tensor '__metadata__': the name safetensors gives its metadata"):
        write_safetensors(path, {"__metadata__": torch.ones(1)}, {"format": "pt"})
    with pytest.raises(ValueError, match=r"w\.safetensors: a safetensors header of \d+ bytes, over the 100000000"):
        write_safetensors(path, {"x": torch.ones(1)}, {"info": "x" * 100_000_000})
    assert not path.exists()


def test_export_of_float8_weights_keeps_them(tmp_path):
    """``mme export`` of a checkpoint whose weights are float8 was a KeyError traceback: it writes them as they are."""
    from safetensors.torch import load_file, save_file

    save_pretrained(VisionTransformer(ModelConfig(**TINY)), tmp_path / "enc")
    weights = tmp_path / "enc" / "model.safetensors"
    state = {k: v.to(torch.float8_e4m3fn) for k, v in load_file(weights).items()}
    save_file(state, weights, {"format": "pt"})
    assert cli_main(["export", str(tmp_path / "enc"), str(tmp_path / "out"), "--format", "mme"]) == 0
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert out.keys() == state.keys()
    assert all(out[k].dtype == torch.float8_e4m3fn and torch.equal(out[k].view(torch.uint8), v.view(torch.uint8))
               for k, v in state.items())


def test_the_mib_free_of_a_failed_write_are_those_of_the_folder_written(tmp_path, monkeypatch):
    """The MiB free were taken from the first folder above the path, never the path: an export OUT that is a mount
    point (a full 200k tmpfs) reported the free space of the file system it is mounted on (69763 MiB)."""
    import errno
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    from mme.errors import MMEError
    from mme.utils import writing

    asked = []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: asked.append(Path(p)) or SimpleNamespace(free=0))
    out = tmp_path / "out"
    out.mkdir()
    for path in (out, out / "model.safetensors"):
        with pytest.raises(MMEError, match=rf"{path}: could not be written \(No space left on device; 0 MiB free\)"):
            with writing(path):
                raise OSError(errno.ENOSPC, "No space left on device")
        assert asked.pop() == out


def test_a_failed_export_leaves_what_another_job_wrote_into_the_folders_it_made(mae, tmp_path, monkeypatch):
    """A failing export removed the topmost folder it had made, whole: an export another job had finished there
    meanwhile was deleted with it. Its own files go, and the folders it made only where nothing else is in them."""
    import mme.models.export as export_module

    src = save_pretrained(mae, tmp_path / "src")
    write, other = export_module._write_ours, []

    def write_then_fail(ck, out):
        write(ck, out)  # this export's own files, then another job's export into a folder this one made
        for folder in other:
            write(ck, folder)
        raise CheckpointError("failed")

    monkeypatch.setattr(export_module, "_write_ours", write_then_fail)
    other.append(tmp_path / "exports" / "a")
    with pytest.raises(CheckpointError, match="failed"):
        export(src, tmp_path / "exports" / "b", format="mme")
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["a"]
    assert isinstance(load_model(tmp_path / "exports" / "a"), MaskedAutoencoder)
    other.clear()
    with pytest.raises(CheckpointError, match="failed"):
        export(src, tmp_path / "new" / "b", format="mme")
    assert not (tmp_path / "new").exists()


def test_an_overwrite_that_fails_between_files_leaves_no_checkpoint_of_parts_of_two(mae, tmp_path, monkeypatch,
                                                                                     capsys):
    """``mme export --overwrite`` whose disk fills after the new ``model.safetensors``, at ``config.json``: the new
    weights stayed beside the old export's config, a folder that read as a checkpoint of neither, and the line said
    only that OUT could not be written. Every file is now written before any is replaced, so the old export stays
    whole; a failure while they are put in place (a rename) leaves no checkpoint there, and the line says which."""
    import os
    import re
    from pathlib import Path

    src = save_pretrained(mae, tmp_path / "src")
    old = save_pretrained(perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]), seed=7), tmp_path / "old")
    write_text, replace = Path.write_text, os.replace

    def full_at_config(path, *args, **kwargs):
        if "config.json" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(path, *args, **kwargs)

    def rename_fails_at_config(src_, dst):
        if Path(dst).name == "config.json":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return replace(src_, dst)

    for fmt in ("hf", "mme"):
        out = tmp_path / fmt
        export(old, out, fmt, kind="pretraining")
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        job = ["export", str(src), str(out), "--format", fmt, "--kind", "pretraining", "--overwrite"]
        with monkeypatch.context() as m:
            m.setattr(Path, "write_text", full_at_config)
            assert cli_main(job) == 1
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, fmt
        assert re.search(rf"error: {out}: could not be written \(No space left on device; \d+ MiB free\); nothing in "
                         "it is replaced", capsys.readouterr().err)
        with monkeypatch.context() as m:
            m.setattr(os, "replace", rename_fails_at_config)
            assert cli_main(job) == 1
        names = ", ".join(["preprocessor_config.json"][:1 if fmt == "hf" else 0] + ["model.safetensors"])
        assert re.search(rf"error: {out}: could not be written \(Input/output error\); its config.json "
                         rf"and the new files put in place \({names}\) are removed: it holds no checkpoint$",
                         capsys.readouterr().err.strip())
        assert list(out.iterdir()) == [], fmt
        export(old, out, fmt, kind="pretraining", overwrite=True)
        weights = (out / "model.safetensors").read_bytes()
        with monkeypatch.context() as m:  # the first file put in place fails: the old weights are kept
            m.setattr(os, "replace", lambda src_, dst: rename_fails_at_config(src_, str(dst).replace(
                "model.safetensors", "config.json")))
            assert cli_main(job) == 1
        assert "); its config.json is removed: it holds no checkpoint; kept of the one it held: " + names \
               in capsys.readouterr().err
        assert (out / "model.safetensors").read_bytes() == weights and not (out / "config.json").exists()
        assert cli_main(job) == 0
        new = load_model(out).encoder.state_dict()
        assert all(torch.equal(v, new[k]) for k, v in mae.encoder.state_dict().items()), fmt


@pytest.mark.parametrize("fmt", ["hf", "safetensors"])
def test_an_export_into_an_out_another_export_is_writing_waits_then_is_refused(mae, tmp_path, fmt):
    """Two `mme export` into one new OUT at once both exited 0, the second's checkpoint replacing the first's without
    a word: each looked at OUT before either wrote there."""
    import shutil
    import time

    from mme.models.export import export_lock
    from mme.utils import exclusive_lock

    src = save_pretrained(mae, tmp_path / "src")
    name = "out.safetensors" if fmt == "safetensors" else "out"
    first = export(src, tmp_path / "first" / name, fmt, kind="model")  # what the other export writes
    out, folder = tmp_path / name, fmt != "safetensors"
    pool = ThreadPoolExecutor(1)
    other = exclusive_lock(export_lock(out, folder), remove=True)
    other.__enter__()  # the other export, writing OUT
    try:
        second = pool.submit(export, src, out, fmt, kind="pretraining")
        time.sleep(1)
        assert not second.done()  # it waits for the other
        if folder:
            shutil.copytree(first, out, dirs_exist_ok=True)
        else:
            shutil.copy(first, out)
    finally:
        other.__exit__(None, None, None)
    with pytest.raises(ConfigError, match=f"{name}: already holds a checkpoint"):
        second.result(timeout=120)
    pool.shutdown()
    files = sorted(p.name for p in first.iterdir()) if folder else [name]
    assert sorted(p.name for p in (out if folder else tmp_path).iterdir() if p.name not in ("src", "first")) == files
    for f in files:
        assert (out if folder else tmp_path).joinpath(f).read_bytes() == (first if folder else first.parent) \
            .joinpath(f).read_bytes()
    assert isinstance(load_model(out), VisionTransformer)  # the first's encoder, not the second's pre-training model


def test_an_export_waiting_for_one_that_fails_writes_out_though_the_failed_one_removed_it(mae, tmp_path,
                                                                                           monkeypatch):
    """An export waiting for OUT/.export.lock behind one that failed inside it ended in a FileNotFoundError (3 in
    40): the failed one removed its lock file and the new OUT it made, and the waiter made its lock file anew in a
    folder no longer there. It makes the folder again and writes its export."""
    import os
    import time
    from pathlib import Path

    from mme import utils
    from mme.models import export as exporting

    src, out = save_pretrained(mae, tmp_path / "src"), tmp_path / "out"
    started, go, first_done, said = threading.Event(), threading.Event(), threading.Event(), {}
    read = exporting._as_checkpoint

    def unreadable_when_bad(source, **hints):
        if Path(source).name == "bad":
            started.set()
            go.wait(60)
            raise CheckpointError("bad: unreadable")
        return read(source, **hints)

    close = utils._close_unlocked

    def close_stale_after_the_first_is_done(fd, pid):  # the waiter looks again once the failed one removed OUT
        if threading.current_thread().name == "second" and os.readlink(f"/proc/self/fd/{fd}") \
                == f"{out / '.export.lock'} (deleted)":  # (its lock file, removed by the first)
            first_done.wait(60)
        close(fd, pid)

    def run(name, source):
        try:
            said[name] = export(source, out, "mme", kind="model")
        except Exception as e:
            said[name] = e
        finally:
            if name == "first":
                first_done.set()

    monkeypatch.setattr(exporting, "_as_checkpoint", unreadable_when_bad)
    monkeypatch.setattr(utils, "_close_unlocked", close_stale_after_the_first_is_done)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x").write_text("")
    first = threading.Thread(target=run, args=("first", tmp_path / "bad"))
    first.start()
    assert started.wait(60)  # the first holds OUT's lock, reading its SRC
    second = threading.Thread(target=run, args=("second", src), name="second")
    second.start()
    time.sleep(1)
    assert second.is_alive()  # it waits for the first
    go.set()
    first.join(60)
    second.join(120)
    assert isinstance(said["first"], CheckpointError), said
    assert said["second"] == out and isinstance(load_model(out), VisionTransformer), said
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_export_never_replaces_its_source_and_replaces_a_checkpoint_only_when_told(mae, tmp_path, capsys):
    """``mme export inplace inplace`` exited 0 and left the encoder alone where the masked autoencoder was (its
    decoder and heads lost), and an export over an earlier one replaced it without a word; another program's
    config.json is never replaced."""
    src = save_pretrained(mae, tmp_path / "src")
    before = (src / "model.safetensors").read_bytes()
    for out, flags in ((src, []), (src, ["--overwrite"]), (src, ["--format", "mme", "--overwrite"]),
                       (src / "model.safetensors", ["--format", "safetensors", "--overwrite"])):
        assert cli_main(["export", str(src), str(out), *flags]) == 1
        assert f"out {out}: would replace the files of SRC {src}" in capsys.readouterr().err
    assert (src / "model.safetensors").read_bytes() == before
    assert cli_main(["export", str(src), str(tmp_path / "hf")]) == 0
    assert cli_main(["export", str(src), str(tmp_path / "hf"), "--kind", "pretraining"]) == 1
    assert "hf: already holds a checkpoint (config.json, model.safetensors); give --overwrite" in \
        capsys.readouterr().err
    assert isinstance(load_model(tmp_path / "hf"), VisionTransformer)
    assert cli_main(["export", str(src), str(tmp_path / "hf"), "--kind", "pretraining", "--overwrite"]) == 0
    assert isinstance(load_model(tmp_path / "hf"), MaskedAutoencoder)
    export(src, tmp_path / "one", "safetensors")
    with pytest.raises(ConfigError, match="one.safetensors: already holds a checkpoint"):
        export(src, tmp_path / "one", "safetensors")
    # a Hugging Face folder of pytorch_model.bin: a model.safetensors written into it is read in place of its weights
    from safetensors.torch import load_file

    hfbin = tmp_path / "hfbin"
    hfbin.mkdir()
    (hfbin / "config.json").write_bytes((tmp_path / "hf" / "config.json").read_bytes())
    torch.save(load_file(str(tmp_path / "hf" / "model.safetensors")), hfbin / "pytorch_model.bin")
    assert cli_main(["export", str(hfbin), str(hfbin / "model.safetensors"), "--format", "safetensors"]) == 1
    assert "or be read in their place" in capsys.readouterr().err and not (hfbin / "model.safetensors").exists()
    (tmp_path / "afile").write_text("x")  # a file where a folder is written: said so, not "holds a checkpoint"
    assert cli_main(["export", str(src), str(tmp_path / "afile")]) == 1
    assert "afile: is a file; a folder is needed" in capsys.readouterr().err
    # a folder holding another program's config.json: not a checkpoint, and never replaced (before: "already holds a
    # checkpoint (config.json); give --overwrite", which then replaced it)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"my": "settings"}')
    for flags in ([], ["--overwrite"]):
        assert cli_main(["export", str(src), str(tmp_path / "mine"), *flags]) == 1
        assert capsys.readouterr().err == (f"mme export: error: out {tmp_path / 'mine'}: its config.json is not a "
                                           "checkpoint's (neither an mme nor a Hugging Face VideoMAE config): another "
                                           "program's file, which the export would replace; write the export "
                                           "elsewhere\n")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["config.json"]
    assert (tmp_path / "mine" / "config.json").read_text() == '{"my": "settings"}'


def test_an_export_into_a_training_runs_folder_is_refused_and_never_read_in_place_of_its_checkpoints(
        mae, tmp_path, capsys):
    """``mme export CKPT RUN --format hf`` into a live run's folder was accepted, its config.json and weights written
    beside the rotating checkpoints; from then on load_encoder(RUN), ``mme embed RUN`` and ``mme probe RUN`` read that
    frozen export, without a word, where a run's folder is otherwise refused naming its newest checkpoint."""
    from test_resume import _state

    from mme.train import checkpoint as ckpt

    src = save_pretrained(mae, tmp_path / "src")
    run = tmp_path / "run"
    for step in (5, 10):
        ckpt.save_checkpoint(_state(step), run, keep_last=0)
    kept = tmp_path / "kept"  # a folder of a run's checkpoints kept of an epoch (train.keep_epochs) alone
    kept.mkdir()
    ckpt.keep_of_epoch(ckpt.save_checkpoint(_state(7), tmp_path / "other", keep_last=0), 1, 7).rename(
        kept / "checkpoint-epoch-0001-00000007.pt")
    for folder, count in ((run, "2 checkpoints"), (kept, "1 checkpoint")):
        before = sorted(p.name for p in folder.iterdir())
        for flags in (["--format", "hf"], ["--format", "mme"], ["--format", "hf", "--overwrite"]):
            assert cli_main(["export", str(src), str(folder), *flags]) == 1
            assert capsys.readouterr().err == (
                f"mme export: error: out {folder}: a training run's folder (it holds {count}), whose "
                "checkpoints an export there would be read in place of; write the export elsewhere\n")
            assert sorted(p.name for p in folder.iterdir()) == before
    # a run's folder an earlier mme exported into (a folder of kept checkpoints alone too): still the run's, refused
    # naming its newest checkpoint
    for folder, count, newest in (
            (run, "one of its 2 checkpoints", r", e\.g\. the newest that reads, .*/run/checkpoint-00000010\.pt"),
            (kept, "its checkpoint", r", .*/kept/checkpoint-epoch-0001-00000007\.pt")):
        for name in ("config.json", "model.safetensors"):
            (folder / name).write_bytes((src / name).read_bytes())
        with pytest.raises(CheckpointError, match=rf"{folder.name}: a training run's folder, not a checkpoint \(its "
                                                  r"config\.json is of weights written beside the run's checkpoints, "
                                                  r"which a folder of their own reads\): pass "
                                                  rf"{count}{newest}$"):
            load_encoder(folder)
    assert cli_main(["embed", str(run), str(tmp_path / "list.txt"), "--out", str(tmp_path / "f.safetensors")]) == 1
    assert "run: a training run's folder, not a checkpoint (its config.json" in capsys.readouterr().err


def test_an_export_carries_what_its_source_did_not_record(tmp_path, caplog):
    """An original file records neither its clip nor its head counts: an export without hints wrote the guesses
    (16 frames of 224², 64-d heads) as a record, so loading it warned no more and ran a 4-frame 32² model with a
    table stretched from the wrong grid (off by 3.25 in the audit), and ``--num-heads`` was refused on it. Now the
    guesses travel as ``assumed`` (ours) / ``mme_assumed`` (Hugging Face), warned about and replaced by hints."""
    src = perturbed(MaskedAutoencoder(ModelConfig(**dict(TINY, num_frames=4)), [PIXEL]), seed=5)  # 4 heads of 16
    torch.save({"model": videomae_layout(src)}, tmp_path / "plain.pth")
    x = clip(frames=4)
    with torch.no_grad():
        truth = src.encoder(x)
    for fmt in ("mme", "hf", "safetensors"):
        out = export(tmp_path / "plain.pth", tmp_path / f"guessed_{fmt}", fmt, decoder_heads=2)
        with caplog.at_level(logging.WARNING):
            guessed = load_encoder(out)
        assert "num_heads=1, img_size=224, num_frames=16" in caplog.text, fmt  # 64-d heads assumed: 1
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            enc = load_encoder(out, num_heads=4, img_size=32, num_frames=4)
        assert "taken on trust" not in caplog.text, fmt
        with torch.no_grad():
            assert (enc(x) - truth).abs().max() <= 1e-5, fmt
            assert (guessed(x) - truth).abs().max() > 0.1, fmt
    recorded = export(tmp_path / "plain.pth", tmp_path / "recorded", "mme", num_heads=4, decoder_heads=2,
                      img_size=32, num_frames=4)
    assert "assumed" not in json.loads((recorded / "config.json").read_text())
    with pytest.raises(CheckpointError, match="records num_heads=4"):
        load_encoder(recorded, num_heads=2)


def test_norm_pix_survives_every_route(tmp_path):
    """``norm_pix_loss=False`` became True through an mme export and from a Hugging Face directory (the HF loss
    0.353 -> 1.086 in the audit), and in the default export (``--kind model``, the encoder) of every one of them,
    the run's own pre-training file first."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=8, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=256, decoder_hidden_size=32,
                                         decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                         decoder_intermediate_size=128, norm_pix_loss=False)
    transformers.VideoMAEForPreTraining(hf_cfg).save_pretrained(tmp_path / "hf")
    model = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    torch.save({"model": model.state_dict(), "config": {"model": dataclasses.asdict(model.cfg),
                                                        "target": {"kind": "pixel", "norm_pix": False}},
                "heads": [dataclasses.asdict(PIXEL)]}, tmp_path / "run.pt")
    ours = export(tmp_path / "run.pt", tmp_path / "ours", "mme")
    live = save_pretrained(load_model(tmp_path / "run.pt"), tmp_path / "live")  # a loaded module saved: its record
    for src in (tmp_path / "hf", ours, export(tmp_path / "hf", tmp_path / "hf_ours", "safetensors"), live):
        out = export(src, tmp_path / f"to_hf_{src.stem}", "hf", kind="pretraining")
        assert json.loads((out / "config.json").read_text())["norm_pix_loss"] is False, src
    encoders = [export(tmp_path / "run.pt", tmp_path / "enc_ours", "mme", kind="model"),
                export(tmp_path / "run.pt", tmp_path / "enc_hf", "hf")]
    for src in (tmp_path / "run.pt", tmp_path / "hf", ours, live, *encoders):
        out = export(src, tmp_path / f"model_{src.stem}", "hf")  # (--kind model)
        assert json.loads((out / "config.json").read_text())["norm_pix_loss"] is False, src
        assert read_checkpoint(src, encoder_only=True).norm_pix is False, src
    assert read_checkpoint(live).run_config["target"] == {"kind": "pixel", "norm_pix": False}  # (was none)
    export_hf(load_model(tmp_path / "run.pt"), tmp_path / "live_hf", kind="pretraining")
    assert json.loads((tmp_path / "live_hf" / "config.json").read_text())["norm_pix_loss"] is False
    # --norm-pix given to the export: its norm_pix_loss, not its mme_run's target (the run's), is the file's on every
    # route from it (it flipped back to false: read, viz, an export again, the encoder's)
    flipped = export(tmp_path / "run.pt", tmp_path / "flipped", "hf", kind="pretraining", norm_pix=True)
    assert json.loads((flipped / "config.json").read_text())["mme_run"]["target"]["norm_pix"] is False
    assert read_checkpoint(flipped).norm_pix is True
    chain = [flipped, export(flipped, tmp_path / "flipped_enc", "mme", kind="model"),
             export(flipped, tmp_path / "flipped_ours", "safetensors")]
    for src in chain:
        assert read_checkpoint(src, encoder_only=True).norm_pix is True, src
        out = export(src, tmp_path / f"again_{src.stem}", "hf")  # (--kind model)
        assert json.loads((out / "config.json").read_text())["norm_pix_loss"] is True, src
    again = export(chain[2], tmp_path / "again_pre", "hf", kind="pretraining")
    assert json.loads((again / "config.json").read_text())["norm_pix_loss"] is True


def test_a_decoder_heads_hint_is_ignored_by_every_route_to_a_file_without_a_decoder(mae, tmp_path):
    """An encoder or classifier exported by mme (our folder, our .safetensors, a Hugging Face folder, a fine-tune's
    training checkpoint) records decoder_heads=2 though it has no decoder: `mme embed --decoder-heads 3` was refused
    ("it records decoder_heads=2 ..."), where an original .pth encoder ignored the hint. A hint of a part the file
    does not have is ignored by every route; the encoder read is the file's."""
    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=3))
    torch.save({"model": videomae_layout(mae)}, tmp_path / "orig.pth")
    torch.save({"model": {f"module.{k}": v for k, v in clf.state_dict().items()},
                "config": {"model": dataclasses.asdict(clf.cfg), "task": {"num_classes": 3}}}, tmp_path / "tuned.pt")
    routes = {"our folder": (save_pretrained(mae.encoder, tmp_path / "enc"), mae.encoder),
              "our .safetensors": (save_pretrained(clf, tmp_path / "clf.safetensors"), clf.encoder),
              "Hugging Face folder": (export_hf(mae.encoder, tmp_path / "hf_enc"), mae.encoder),
              "Hugging Face classifier": (export_hf(clf, tmp_path / "hf_clf", kind="classification"), clf.encoder),
              "fine-tune's training checkpoint": (tmp_path / "tuned.pt", clf.encoder),
              "original .pth of a pre-training": (tmp_path / "orig.pth", mae.encoder)}
    x = clip()
    for route, (path, source) in routes.items():
        hints = dict(num_heads=4, img_size=32, num_frames=8) if route.startswith("original") else {}
        encoder = load_encoder(path, decoder_heads=3, **hints)  # before: 'it records decoder_heads=2 ...'
        with torch.no_grad():
            assert torch.equal(encoder(x), source(x)), route
        if "classifier" in route or "fine-tune" in route or ".safetensors" in route:
            assert isinstance(load_model(path, decoder_heads=3), VideoClassifier), route
    with pytest.raises(CheckpointError, match=r"it records decoder_heads=2; .* not 3"):
        load_model(save_pretrained(mae, tmp_path / "mae"), decoder_heads=3)  # a decoder of 2 heads: the hint differs


def test_a_decoder_heads_hint_is_ignored_where_the_decoder_is_not_read(mae, tmp_path):
    """A pre-training MAE (a decoder of 2 heads) read for its encoder alone (load_encoder, mme export --kind model)
    with decoder_heads=3 was read from a Hugging Face folder, the hint ignored, but refused from mme's own formats
    (a training checkpoint, our folder, our .safetensors): 'it records decoder_heads=2 ... not 3'. One rule, by
    what is read: the decoder is not read, so the hint is ignored; a read of the whole model still refuses it."""
    torch.save({"model": mae.state_dict(), "config": {"model": dataclasses.asdict(mae.cfg),
                                                      "target": {"kind": "pixel"}},
                "heads": [dataclasses.asdict(PIXEL)]}, tmp_path / "run.pt")
    routes = {"training checkpoint": tmp_path / "run.pt", "our folder": save_pretrained(mae, tmp_path / "ours"),
              "our .safetensors": save_pretrained(mae, tmp_path / "ours.safetensors"),
              "Hugging Face folder": export_hf(mae, tmp_path / "hf", kind="pretraining")}
    x = clip()
    for route, path in routes.items():
        encoder = load_encoder(path, decoder_heads=3)  # before: 'it records decoder_heads=2 ...' but for HF
        with torch.no_grad():
            assert torch.equal(encoder(x), mae.encoder(x)), route
        out = export(path, tmp_path / f"enc_{path.name.replace('.', '_')}", "hf", kind="model", decoder_heads=3)
        assert torch.equal(load_encoder(out).patch_embed.proj.weight, mae.encoder.patch_embed.proj.weight), route
        with pytest.raises(CheckpointError, match=r"it records decoder_heads=2; .* not 3"):
            load_model(path, decoder_heads=3)  # the decoder read: 2 heads, not 3


def test_a_loaded_classifier_keeps_its_class_names_until_its_head_is_replaced(tmp_path):
    """A loaded module carries its checkpoint's record (``mme_record``) to save_pretrained and export_hf; the class
    names of a head since replaced (transfer to 3 classes) were written for it, or refused its export."""
    model = VideoClassifier(ModelConfig(**TINY), num_classes=4)
    ours = save_pretrained(model, tmp_path / "four")
    record = load_model(ours).mme_record
    loaded = load_model(ours)
    loaded.mme_record = {**record, "class_names": ["push", "pull", "left", "right"]}  # as a fine-tuning run records
    assert read_checkpoint(save_pretrained(loaded, tmp_path / "kept")).class_names == ["push", "pull", "left", "right"]
    loaded.head, loaded.num_classes = torch.nn.Linear(64, 3), 3
    assert read_checkpoint(save_pretrained(loaded, tmp_path / "three")).class_names is None
    export_hf(loaded, tmp_path / "hf3", kind="classification")
    labels = json.loads((tmp_path / "hf3" / "config.json").read_text())["id2label"]
    assert labels == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}


def test_a_module_whose_head_or_config_changed_after_it_was_built_saves_as_it_is_or_is_refused(mae, tmp_path,
                                                                                                monkeypatch):
    """A classifier's head replaced the usual PyTorch way (``clf.head = nn.Linear(D, 10)``, ``num_classes`` left at
    400) was saved as a 400-class classifier: neither load_model nor transformers loaded the file (``head.weight``
    of (10, 64) where (400, 64) was expected), and nothing said so when it was written. Its classes are its head's;
    a live module whose weights its attributes no longer describe (a block removed, ``cfg.depth`` left) is refused
    by save_pretrained and export_hf before anything is written, as an export of a file is. The check builds the
    model on the meta device, its keys and shapes alone (it built and initialised a second model: a ViT-B's save
    0.33 -> 4.65 s, +330 MiB)."""
    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=400))
    clf.head = perturbed(torch.nn.Linear(64, 10))
    x = clip()
    with torch.no_grad():
        expected = clf(x)
    built, init = [], VisionTransformer.__init__

    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(next(self.parameters()).device.type)

    with monkeypatch.context() as m:
        m.setattr(VisionTransformer, "__init__", recorded)
        save_pretrained(clf, tmp_path / "checked")
        export_hf(mae, tmp_path / "checked_hf", kind="pretraining")
    assert built == ["meta", "meta"]  # no weights made
    for path in (save_pretrained(clf, tmp_path / "ten"), save_pretrained(clf, tmp_path / "ten.safetensors")):
        back = load_model(path)
        assert read_checkpoint(path).classifier["num_classes"] == 10
        with torch.no_grad():
            assert torch.equal(back(x), expected), path
    export_hf(clf, tmp_path / "hf", kind="classification")
    hf = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.num_labels == 10
    with torch.no_grad():
        assert (hf(hf_input(x)).logits - expected).abs().max() <= 1e-4  # (HF's fc_norm eps, 1e-5: ~1e-5 here)
    cut = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    cut.encoder.blocks = cut.encoder.blocks[:1]  # cfg.depth still 2
    for name, save in (("cut", lambda out: save_pretrained(cut, out)),
                       ("cut_hf", lambda out: export_hf(cut, out, kind="pretraining"))):
        with pytest.raises(CheckpointError, match=r"^cannot save this module: its weights do not fit the model its "
                                                  r"attributes describe .* missing keys \['encoder\.blocks\.1\."):
            save(tmp_path / name)
        assert not (tmp_path / name).exists(), name


def test_a_hugging_face_id2label_that_names_a_class_twice_is_refused_in_one_line(tmp_path):
    """A config.json written by hand or another tool whose id2label repeats a name (``jump`` for classes 0 and 2)
    was read as the class names, and the tests of that classifier merged the two classes' results under one name.
    Refused as read_classes refuses a class file naming a class twice; distinct names still read."""
    export_hf(VideoClassifier(ModelConfig(**TINY), num_classes=4), tmp_path / "hf", kind="classification")
    config = tmp_path / "hf" / "config.json"
    hf = json.loads(config.read_text())
    config.write_text(json.dumps({**hf, "id2label": {"0": "jump", "1": "run", "2": "swim", "3": "walk"}}))
    assert read_checkpoint(tmp_path / "hf").class_names == ["jump", "run", "swim", "walk"]
    config.write_text(json.dumps({**hf, "id2label": {"0": "jump", "1": "run", "2": "jump", "3": "swim"}}))
    with pytest.raises(CheckpointError, match=rf"^id2label of {re.escape(str(config))}: names \['jump'\] more than one "
                                              r"class \(a name must say which class it is\): rename one of them "
                                              r"there$"):
        read_checkpoint(tmp_path / "hf")


@pytest.mark.parametrize("labels, said", [
    ({"1": "jump", "2": "run", "3": "swim", "4": "walk"}, "a {id: name} map needs the ids 0..3, each once"),
    ({"0": "jump", "1": "run", "one": "swim", "3": "walk"}, "a {id: name} map needs the ids 0..3, each once"),
    ({"0": "jump", "1": None, "2": "swim", "3": "walk"}, 'class 1 is null, not a name (a JSON string); class names '
                                                         'are strings, "3" for a class named 3'),
])
def test_a_hugging_face_id2label_not_of_ids_0_to_n_1_each_named_is_refused_in_one_line(tmp_path, capsys, labels, said):
    """A config.json whose id2label numbers the classes from 1 (``{"1": "a", "2": "b", "3": "c"}``) was read as the
    classes ``['None', 'a', 'b']``: a class named "None" and the last name lost, written so by a re-export. Ids
    must be 0..n-1 (as read_classes wants of a class file's map) and each name a string or a number (its text, as
    transformers reads it; loaded before); one line naming the file and id2label. Ids in another order read by id."""
    export_hf(VideoClassifier(ModelConfig(**TINY), num_classes=4), tmp_path / "hf", kind="classification")
    config = tmp_path / "hf" / "config.json"
    hf = json.loads(config.read_text())
    config.write_text(json.dumps({**hf, "id2label": {"2": "swim", "0": "jump", "3": "walk", "1": "run"}}))
    assert read_checkpoint(tmp_path / "hf").class_names == ["jump", "run", "swim", "walk"]
    config.write_text(json.dumps({**hf, "id2label": {"0": 10, "1": 2, "2": 1, "3": "3b"}}))  # (transformers reads ints)
    assert read_checkpoint(tmp_path / "hf").class_names == ["10", "2", "1", "3b"]
    config.write_text(json.dumps({**hf, "id2label": labels}))
    with pytest.raises(CheckpointError, match=rf"^id2label of {re.escape(str(config))}: {re.escape(said)}$"):
        read_checkpoint(tmp_path / "hf")
    assert cli_main(["export", str(tmp_path / "hf"), str(tmp_path / "out"), "--kind", "classification"]) == 1
    assert capsys.readouterr().err == f"mme export: error: id2label of {config}: {said}\n"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_folder_whose_config_json_is_utf8_reads_under_an_ascii_locale(tmp_path):
    """A ``config.json`` holding UTF-8 text (class names an editor or another tool saved unescaped) was read in the
    locale's encoding: under ``LC_ALL=C`` without UTF-8 mode (ASCII) ``unreadable JSON ('ascii' codec can't decode
    byte 0xc3 ...)``. JSON is UTF-8 text, read as such whatever the locale."""
    import os
    import subprocess
    import sys

    loaded = load_model(save_pretrained(VideoClassifier(ModelConfig(**TINY), num_classes=2), tmp_path / "plain"))
    loaded.mme_record = {**loaded.mme_record, "class_names": ["caf\u00e9", "th\u00e9"]}
    config = save_pretrained(loaded, tmp_path / "named") / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text(encoding="utf-8")), ensure_ascii=False), encoding="utf-8")
    assert "caf\u00e9".encode() in config.read_bytes()
    script = ("import sys; from mme.models.checkpoint import read_checkpoint; "
              "print(ascii(read_checkpoint(sys.argv[1]).class_names))")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(config.parent)], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode() == "['caf\\xe9', 'th\\xe9']\n"


def test_an_export_keeps_its_runs_clip_stride_and_target(tmp_path):
    """An export dropped the run's ``data.stride`` and ``target`` section: ``mme embed`` read its clips at stride 4
    instead of the run's 2 (features off by 0.038 in the audit) and ``mme viz`` drew PatchStd targets for a run
    trained on positions. Every export carries them (``run`` / Hugging Face ``mme_run``); an older export, without
    them, reads as before."""
    from mme.motion.targets import TargetConfig, head_specs
    from mme.motion.viz import _traj_target

    target = from_dict(TargetConfig, {"kind": "mme", "patch_norm": False, "position_unit": 1})
    cfg = ModelConfig(**TINY)
    model = MaskedAutoencoder(cfg, head_specs(target, cfg))
    run = {"model": dataclasses.asdict(cfg), "target": dataclasses.asdict(target),
           "data": {"sampling": "stride", "stride": 2, "num_frames": 8}, "optim": {"base_lr": 1e-3}}
    torch.save({"model": model.state_dict(), "config": run, "heads": [dataclasses.asdict(h) for h in model.head_specs]},
               tmp_path / "run.pt")
    ours = export(tmp_path / "run.pt", tmp_path / "ours", "mme")
    outs = [ours, export(ours, tmp_path / "one", "safetensors"), export(tmp_path / "run.pt", tmp_path / "hf", "hf")]
    for out in [*outs, export(outs[2], tmp_path / "hf_back", "safetensors")]:
        ck = read_checkpoint(out)
        assert ck.clip_stride == 2, out
        assert ck.run_config["target"] == run["target"], out
    drawn, _, _ = _traj_target(str(outs[1]), read_checkpoint(outs[1]), load_model(outs[1]), False)
    assert not drawn.patch_norm and drawn.position_unit == 1
    meta = json.loads((ours / "config.json").read_text())
    del meta["run"]
    (ours / "config.json").write_text(json.dumps(meta))
    assert read_checkpoint(ours).clip_stride is None


def test_hf_encoders_and_token_pooled_classifiers_load_as_encoders(tmp_path):
    """A VideoMAEModel with MLP ratio 2 was refused for its config's default decoder fields (ratio 4), which
    describe no weights; a classifier reading the first token (use_mean_pooling=False) was refused by
    load_encoder, which wants its encoder only."""
    common = dict(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1, num_attention_heads=4)
    hf = perturbed(transformers.VideoMAEModel(transformers.VideoMAEConfig(**common, intermediate_size=128)))
    hf.save_pretrained(tmp_path / "ratio2")
    clf = perturbed(transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(
        **common, intermediate_size=256, use_mean_pooling=False, num_labels=3)))
    clf.save_pretrained(tmp_path / "token")
    x = clip(frames=4)
    with torch.no_grad():
        assert (load_encoder(tmp_path / "ratio2")(x) - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5
        expected = clf.videomae(hf_input(x)).last_hidden_state
        assert (load_encoder(tmp_path / "token")(x) - expected).abs().max() <= 1e-5
    with pytest.raises(CheckpointError, match="classifier without fc_norm"):
        load_model(tmp_path / "token")


def test_loaded_models_are_in_eval_mode(tmp_path):
    """load_model gave a classifier in training mode: its dropout made every prediction of a loaded model differ
    (``mme viz --checkpoint`` too)."""
    model = VideoClassifier(ModelConfig(**TINY), num_classes=3, fc_drop=0.3)
    save_pretrained(model, tmp_path / "clf")
    loaded = load_model(tmp_path / "clf")
    assert not any(m.training for m in loaded.modules())
    x = clip()
    with torch.no_grad():
        assert torch.equal(loaded(x), loaded(x))


def test_a_clip_given_that_the_patch_or_tubelet_does_not_divide_is_named_as_given(tmp_path, capsys):
    """``mme embed --num-frames 5``, ``mme viz --size 70``, ``mme export --num-frames 5`` said "model.num_frames 5 is
    not a multiple of tubelet_size 2", a config key these commands do not have: each names its own flag now, and
    Python its keyword argument."""
    src = MaskedAutoencoder(ModelConfig(**{**TINY, "num_heads": 1, "decoder_dim": 64, "decoder_heads": 1}), [PIXEL])
    save_pretrained(src, tmp_path / "ours")  # records 8 frames of 32 px, tubelet 2, patch 16 (64-d heads: guessed)
    torch.save({"model": videomae_layout(src)}, tmp_path / "orig.pth")  # records none
    with pytest.raises(CheckpointError, match=r"ours: num_frames=5 is not a multiple of tubelet_size 2$"):
        read_checkpoint(tmp_path / "ours", num_frames=5)
    with pytest.raises(CheckpointError, match=r"orig\.pth: img_size=70 is not a multiple of patch_size 16$"):
        read_checkpoint(tmp_path / "orig.pth", img_size=70)
    commands = [(["export", str(tmp_path / "ours"), str(tmp_path / "out"), "--num-frames", "5"],
                 "--num-frames 5 is not a multiple of tubelet_size 2"),
                (["embed", str(tmp_path / "orig.pth"), str(tmp_path / "list.txt"), "--out", str(tmp_path / "f.npy"),
                  "--num-frames", "5"], "--num-frames 5 is not a multiple of tubelet_size 2"),
                (["viz", str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "orig.pth"), "--out",
                  str(tmp_path / "p.png"), "--size", "70"], "--size 70 is not a multiple of patch_size 16")]
    (tmp_path / "list.txt").write_text("v.mp4\n")
    for args, said in commands:
        assert cli_main(args) == 1
        err = capsys.readouterr().err
        assert err.endswith(f"{said}\n") and "model." not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.png").exists()


def test_an_export_of_a_classifiers_encoder_counts_its_head_as_dropped_not_the_fc_norm_it_keeps(tmp_path, caplog):
    """`mme export CLF OUT --kind model` logged "4 decoder/classifier tensors dropped": the head's weight and bias, and
    the fc_norm's, which the encoder keeps as its pooled norm. It counts the 2 it drops, read from our files and from
    Hugging Face's classifier."""
    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=3))
    save_pretrained(clf, tmp_path / "clf")
    hf = export(tmp_path / "clf", tmp_path / "hf", "hf", kind="classification")
    with caplog.at_level(logging.INFO, logger="mme"):
        assert cli_main(["export", str(tmp_path / "clf"), str(tmp_path / "enc"), "--format", "mme", "--kind",
                         "model"]) == 0
        assert read_checkpoint(hf, encoder_only=True).pooled_norm is not None
    said = [r.getMessage() for r in caplog.records if "tensors dropped" in r.getMessage()]
    assert len(said) == 2 and all(m.endswith(": using the encoder; 2 decoder/classifier tensors dropped")
                                  for m in said), said
    assert said[0].startswith(str(tmp_path / "clf")) and said[1].startswith(str(hf))
    assert read_checkpoint(tmp_path / "enc").pooled_norm is not None


def test_an_export_of_a_classifiers_encoder_keeps_its_fc_norm_or_says_hf_drops_it(tmp_path, caplog):
    """`mme export CLF OUT --kind model` wrote the encoder without the classifier's fc_norm: `mme embed OUT` gave the
    raw token mean, not the fc_norm'ed one `mme embed CLF` gives (off by 3.4 in the audit), said by an info line
    alone. Our format keeps it (``pooled_norm``), so every route gives the classifier's features, also
    ``save_pretrained(load_model(CLF).encoder)``, which dropped it (and a clip taken on trust: written as recorded)
    where the record was kept on the loaded module alone; Hugging Face's VideoMAEModel has no place for it: the
    export warns that it and the head are dropped."""
    from mme.models.checkpoint import build_model

    clf = perturbed(VideoClassifier(ModelConfig(**TINY), num_classes=3))
    with torch.no_grad():
        clf.fc_norm.weight.uniform_(0.5, 2.0)
        clf.fc_norm.bias.uniform_(-1.0, 1.0)
    save_pretrained(clf, tmp_path / "clf")
    x = clip()
    with torch.no_grad():
        want = clf.forward_features(x)

    def features(path):  # as mme embed computes them of a view
        ck = read_checkpoint(path, encoder_only=True)
        with torch.no_grad():
            return ck.pooled_norm(build_model(ck)(x).mean(1))

    assert torch.equal(features(tmp_path / "clf"), want)
    routes = [export(tmp_path / "clf", tmp_path / "enc", "mme", kind="model"),
              export(tmp_path / "clf", tmp_path / "enc1", "safetensors", kind="model")]
    routes += [export(routes[0], tmp_path / "enc_again", "safetensors", kind="model"),
               save_pretrained(load_encoder(routes[1]), tmp_path / "loaded"),
               save_pretrained(load_model(tmp_path / "clf").encoder, tmp_path / "encoder_of_loaded")]
    for path in routes:
        assert read_checkpoint(path).pooled_norm is not None, path
        assert torch.equal(features(path), want), path
        assert isinstance(load_model(path), VisionTransformer), path
    mae = perturbed(MaskedAutoencoder(ModelConfig(**TINY), [PIXEL]))
    torch.save({"model": videomae_layout(mae)}, tmp_path / "orig.pth")  # records no clip: 16 x 224² on trust
    for name, encoder in (("load_encoder", load_encoder(tmp_path / "orig.pth", num_heads=4)),
                          ("load_model's", load_model(tmp_path / "orig.pth", num_heads=4, decoder_heads=2).encoder)):
        saved = read_checkpoint(save_pretrained(encoder, tmp_path / name))
        assert saved.assumed == ("img_size", "num_frames") and saved.pooled_norm is None, name
    said = "has no place for the classifier's fc_norm"
    with caplog.at_level(logging.WARNING):
        assert cli_main(["export", str(tmp_path / "clf"), str(tmp_path / "hf")]) == 0  # --format hf --kind model
    assert said in caplog.text and "--kind classification" in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli_main(["export", str(routes[0]), str(tmp_path / "hf2"), "--format", "hf"]) == 0
    assert said in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli_main(["export", str(tmp_path / "clf"), str(tmp_path / "hf3"), "--kind", "classification"]) == 0
    assert said not in caplog.text


@pytest.mark.parametrize("fmt", ["mme", "safetensors", "hf"])
def test_an_export_refuses_a_clip_other_than_the_one_its_file_records(mae, tmp_path, capsys, caplog, fmt):
    """`mme export RUN.pt OUT --num-frames 16` of a run trained on 8 frames wrote 16 as the model's clip: `mme viz` of
    the export drew at 16 without refusal and `task.eval_only` tested at it, the trained clip lost from the record.
    A clip hint is for files that record none: one that records its clip refuses another, naming it, and writes
    nothing; the recorded clip itself, and hints to a file that records none, are taken. The Python route:
    ``save_pretrained(load_encoder(F, num_frames=16))`` wrote 16 as the trained clip; a module loaded so may be
    trained at 16 since (fine-tuning in Python), so it is written at 16 taken on trust (``assumed``), said in a
    warning naming how to record it, and its readers say so."""
    run = {"model": dataclasses.asdict(mae.cfg), "target": {"kind": "pixel"}}
    torch.save({"model": mae.state_dict(), "config": run, "heads": [dataclasses.asdict(PIXEL)]}, tmp_path / "run.pt")
    kind = ["--kind", "pretraining"] if fmt == "hf" else []
    for src in (tmp_path / "run.pt", save_pretrained(mae, tmp_path / "ours")):
        out = tmp_path / f"out_{src.stem}"
        args = ["export", str(src), str(out), "--format", fmt, *kind]
        assert cli_main([*args, "--num-frames", "16", "--img-size", "64"]) == 1
        err = capsys.readouterr().err
        assert err.endswith(f"error: --num-frames 16, --img-size 64: {src} records the clip its model was trained on "
                            "(num_frames=8, img_size=32), which its export records; leave them out (readers build the "
                            "model for other clips: mme embed's --num-frames / --img-size)\n"), err
        assert not out.exists() and not out.with_name(out.name + ".safetensors").exists()
        assert cli_main([*args, "--num-frames", "8"]) == 0
        written = out.with_name(out.name + ".safetensors") if fmt == "safetensors" else out
        ck = read_checkpoint(written)
        assert (ck.cfg.num_frames, ck.cfg.img_size, ck.assumed) == (8, 32, ()), src
    with pytest.raises(ConfigError, match=r"^num_frames=4: .* \(num_frames=8\)"):
        export_hf(tmp_path / "ours", tmp_path / "py", kind="pretraining", num_frames=4)
    torch.save({"model": videomae_layout(mae)}, tmp_path / "orig.pth")  # records no clip: the hint is its clip
    out = export(tmp_path / "orig.pth", tmp_path / "orig", fmt, "pretraining", num_heads=4, decoder_heads=2,
                 num_frames=8, img_size=32)
    assert (read_checkpoint(out).cfg.num_frames, read_checkpoint(out).assumed) == (8, ())
    x16 = clip(frames=16)
    for i, loaded in enumerate((load_encoder(tmp_path / "ours", num_frames=16),
                                load_model(tmp_path / "ours", num_frames=16),
                                load_model(tmp_path / "run.pt", num_frames=16).encoder)):
        for save in (save_pretrained, export_hf):  # (the module may be trained at 16 since: fine-tuning in Python)
            with caplog.at_level(logging.WARNING):
                caplog.clear()
                live = save(loaded, tmp_path / f"live{i}_{save.__name__}")
            assert ("num_frames=16: the module was loaded with it from a file that records the clip its model was "
                    "trained on (num_frames=8), so its file takes num_frames=16 on trust (its assumed, which its "
                    "readers say); if the model was trained at that clip since, give num_frames=16 when loading the "
                    "file, or write one that records it: mme export FILE OUT --num-frames 16; to save the model as "
                    "trained (num_frames=8), load it without it") in caplog.text
            ck = read_checkpoint(live)
            assert (ck.cfg.num_frames, ck.assumed) == (16, ("num_frames",)), save
            assert (read_checkpoint(live, num_frames=16).assumed, read_checkpoint(live, num_frames=16).replaced) \
                == ((), {})  # as the warning says: given, taken as recorded
        caplog.clear()
        back = load_encoder(tmp_path / f"live{i}_save_pretrained")
        assert "so taken on trust: num_frames=16" in caplog.text  # its readers say so
        encoder = loaded if isinstance(loaded, VisionTransformer) else loaded.encoder
        with torch.no_grad():
            assert torch.equal(back(x16), encoder(x16))
    assert read_checkpoint(save_pretrained(load_encoder(tmp_path / "ours"), tmp_path / "live")).cfg.num_frames == 8


def test_a_vit_g_shaped_model_exports_to_hf_without_a_decoder_of_its_mlp_ratio(tmp_path):
    """VideoMAE V2's ViT-g (1408 wide, an MLP of 6144: ratio 48/11) could not be exported to Hugging Face as a model
    or classifier: the export also wanted the decoder width its config records (384) times that ratio to be an
    integer, where the weights hold no decoder. The decoder's MLP width is written, and checked, only with a decoder;
    a message names the width that fails. ViT-g's ratio on a narrow model (88 wide, an MLP of 384) to stay small."""
    cfg = ModelConfig(img_size=32, num_frames=4, embed_dim=88, depth=1, num_heads=4, mlp_ratio=384 / 88)
    clf = perturbed(VideoClassifier(cfg, num_classes=3))
    assert clf.encoder.blocks[0].mlp.fc1.weight.shape[0] == 384
    x = clip(frames=4)
    export_hf(clf, tmp_path / "clf", kind="classification")
    export_hf(clf, tmp_path / "enc", kind="model")
    hf_clf = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "clf").eval()
    hf_enc = transformers.VideoMAEModel.from_pretrained(tmp_path / "enc").eval()
    assert hf_clf.config.intermediate_size == 384
    assert "decoder_intermediate_size" not in json.loads((tmp_path / "enc" / "config.json").read_text())
    with torch.no_grad():
        assert (hf_clf(hf_input(x)).logits - clf(x)).abs().max() <= 1e-4
        assert (hf_enc(hf_input(x)).last_hidden_state - clf.encoder(x)).abs().max() <= 1e-5
        assert torch.equal(load_model(tmp_path / "clf").head.weight, clf.head.weight)
    mae = MaskedAutoencoder(dataclasses.replace(cfg, decoder_dim=32, decoder_heads=2), [HeadSpec("pixel", 1536)])
    with pytest.raises(CheckpointError, match=r"mlp_ratio 4\.36\d* gives decoder_dim 32 a non-integer MLP width "
                                              r"\(139\.6\d*\)$"):
        export_hf(mae, tmp_path / "mae", kind="pretraining")


@pytest.mark.parametrize("edit, said", [
    ({"hidden_size": "64"}, 'hidden_size is "64": expected an integer of at least 1'),
    ({"intermediate_size": None}, "intermediate_size is null: expected an integer of at least 1"),
    ({"num_frames": "4"}, 'num_frames is "4": expected an integer of at least 1'),
    ({"image_size": None}, "image_size is null: expected an integer of at least 1"),
    ({"num_hidden_layers": 1.0}, "num_hidden_layers is 1.0: expected an integer of at least 1"),
    ({"num_attention_heads": True}, "num_attention_heads is true: expected an integer of at least 1"),
    ({"image_size": [32, 48]}, "image_size is [32, 48]: expected one side (non-square images are not supported)"),
    ({"qv_bias": "false"}, 'qv_bias is "false": expected true or false'),  # (was read as true)
    ({"layer_norm_eps": "1e-12"}, 'layer_norm_eps is "1e-12": expected a positive number'),
])
def test_a_hf_config_of_a_mistyped_or_null_field_is_one_line_naming_the_file_and_key(tmp_path, capsys, edit, said):
    """A Hugging Face config.json with ``"hidden_size": "192"``, ``"intermediate_size": null``, ``"num_frames": "8"``
    or ``"image_size": null`` gave TypeError tracebacks from mme export (and every reader): config_from_hf checked
    no types. Each is one line naming the file and the key; nothing is written."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=256)
    transformers.VideoMAEModel(hf_cfg).save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, **edit}))
    capsys.readouterr()  # (transformers' progress bar)
    assert cli_main(["export", str(tmp_path / "hf"), str(tmp_path / "out"), "--format", "mme"]) == 1
    err = capsys.readouterr().err
    assert err == f"mme export: error: {tmp_path / 'hf' / 'config.json'}: {said}\n", err
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="config.json: " + said.split(" ")[0]):
        load_encoder(tmp_path / "hf")


MME_KEYS = re.compile(r"\b(?:model\.)?(?:" + "|".join(
    {f.name for f in dataclasses.fields(ModelConfig)} - set(transformers.VideoMAEConfig().to_dict())) + r")\b")
"""A key of mme's model config that a Hugging Face VideoMAEConfig has not (``img_size``, ``model.embed_dim``)."""


@pytest.mark.parametrize("edit, said", [
    ({"image_size": 70}, "image_size 70 is not a multiple of patch_size 16"),
    ({"num_frames": 5}, "num_frames 5 is not a multiple of tubelet_size 2"),
    ({"tubelet_size": 3}, "num_frames 4 is not a multiple of tubelet_size 3"),
    ({"num_attention_heads": 3}, "hidden_size 64 is not divisible by num_attention_heads 3"),
    ({"decoder_num_attention_heads": 5}, "decoder_hidden_size 384 is not divisible by decoder_num_attention_heads 5"),
    ({"layer_norm_eps": 2.0}, "layer_norm_eps must be at most 1, got 2 (a LayerNorm's eps"),
    ({"num_hidden_layers": 2000}, "num_hidden_layers must be at most 1024, got 2000 (blocks"),
])
def test_a_hf_config_that_the_model_config_refuses_names_the_files_keys(tmp_path, capsys, edit, said):
    """A Hugging Face config.json of a clip its patch or tubelet does not divide, or of a width its head count does
    not divide, was refused naming mme's keys, not the file's: ``config.json: model.img_size 70 is not a multiple of
    patch_size 16``, ``model.embed_dim 64 is not divisible by num_heads 3``. Named by the file's keys, and by no key
    of mme's alone (``embed_dim``, ``num_heads``)."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=256)
    transformers.VideoMAEModel(hf_cfg).save_pretrained(tmp_path / "hf")
    config = tmp_path / "hf" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **edit}))
    capsys.readouterr()  # (transformers' progress bar)
    assert cli_main(["export", str(tmp_path / "hf"), str(tmp_path / "out"), "--format", "mme"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mme export: error: {config}: {said}") and err.count("\n") == 1, err
    assert "model." not in err and not MME_KEYS.search(err.removeprefix(f"mme export: error: {config}")), err
    assert not (tmp_path / "out").exists()


def test_a_hf_decoder_of_another_mlp_ratio_is_refused_naming_the_files_keys():
    """A Hugging Face pre-training config whose decoder's MLP ratio is not its encoder's was refused naming no key of
    the file: 'decoder MLP ratio 2.0 differs from the encoder's 4.0: not supported'. It names the keys that give
    them."""
    hf = {**transformers.VideoMAEConfig().to_dict(), "decoder_intermediate_size": 768}
    with pytest.raises(CheckpointError) as info:
        config_from_hf(hf)
    assert str(info.value) == ("decoder_intermediate_size / decoder_hidden_size 2 differs from intermediate_size / "
                               "hidden_size 4: mme's decoder blocks have the encoder's MLP ratio")
    assert config_from_hf(hf, decoder=False).mlp_ratio == 4.0  # (an encoder's file: its decoder keys describe nothing)


def test_the_hf_keys_are_transformers_and_a_model_config_round_trips_through_them():
    """config_from_hf, config_to_hf and the file's refusals read one table of the Hugging Face keys of the model
    config (convert_config.HF_KEYS): every key of a VideoMAEConfig beyond any model's is written, transformers reads
    each back as written, a file without one is read as transformers' default, and mme -> HF -> mme is exact."""
    cfg = ModelConfig(img_size=48, num_frames=6, patch_size=8, tubelet_size=3, in_chans=1, embed_dim=40, depth=3,
                      num_heads=5, mlp_ratio=1.5, qkv_bias=False, norm_eps=1e-3, decoder_dim=24, decoder_depth=0,
                      decoder_heads=3, decoder_norm_eps=1e-5, head_hidden=0)
    hf = config_to_hf(cfg, "VideoMAEForPreTraining", use_mean_pooling=True)
    assert config_from_hf(hf) == cfg
    theirs = transformers.VideoMAEConfig(**hf)
    own = set(transformers.VideoMAEConfig().to_dict()) - set(transformers.PretrainedConfig().to_dict())
    as_written = {key: hf["qkv_bias" if key == "qv_bias" else key] for key in own}  # (qv_bias: transformers 5's)
    assert {key: getattr(theirs, key) for key in own} == as_written
    assert config_from_hf({}) == config_from_hf(transformers.VideoMAEConfig().to_dict())


@pytest.mark.parametrize("qv_bias", [True, False])
def test_a_hf_config_of_both_qv_bias_and_qkv_bias_is_read_as_transformers_reads_it(qv_bias):
    """A config.json of both keys (transformers 5's qv_bias beside qkv_bias, which mme writes) was read by its qv_bias,
    where transformers reads qkv_bias over it (5.x: onto qv_bias; 4.x: qkv_bias alone): mme built q/v biases that
    transformers does not, or none where it does. Read as transformers reads it."""
    hf = {**transformers.VideoMAEConfig().to_dict(), "qv_bias": qv_bias, "qkv_bias": not qv_bias}
    assert config_from_hf(hf).qkv_bias is transformers.VideoMAEConfig.from_dict(hf).qv_bias is (not qv_bias)


def test_a_hf_config_of_numpy_integers_from_python_is_checked_in_one_line():
    """A VideoMAEConfig dict built in Python may hold numpy integers: one of them below the least was a TypeError
    (json.dumps of the refusal), not the refusal naming the key."""
    hf = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                     num_attention_heads=4, intermediate_size=256).to_dict()
    said = r'^num_hidden_layers is "np\.int64\(0\)": expected an integer of at least 1$'
    with pytest.raises(CheckpointError, match=said):
        config_from_hf({**hf, "num_hidden_layers": np.int64(0)})
    assert config_from_hf({**hf, "num_hidden_layers": np.int64(2)}).depth == 2
    sides = r'^image_size is \["np\.int64\(32\)", "np\.int64\(16\)"\]: expected one side'
    with pytest.raises(CheckpointError, match=sides):
        config_from_hf({**hf, "image_size": [np.int64(32), np.int64(16)]})


def test_a_hf_layer_norm_eps_is_honoured_and_written_back(tmp_path):
    """Our encoder's LayerNorms had eps 1e-6 whatever a Hugging Face config's ``layer_norm_eps`` said (info line
    only): a classifier of eps 1e-2 gave other logits than transformers', and HF -> mme -> HF turned 1e-12 into
    1e-6. The model config carries it (``norm_eps``: the encoder's and the decoder blocks' LayerNorms) and exports
    write it back; a file that records none keeps 1e-6."""
    common = dict(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=256)
    x = clip(frames=4)
    for eps in (1e-2, 1e-12):
        torch.manual_seed(0)
        hf = perturbed(transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(
            **common, layer_norm_eps=eps, num_labels=3)))
        hf.save_pretrained(tmp_path / f"hf{eps}")
        ours = load_model(tmp_path / f"hf{eps}")
        with torch.no_grad():
            assert (ours(x) - hf(hf_input(x)).logits).abs().max() <= 1e-5, eps
        assert ours.encoder.blocks[1].norm2.eps == eps
        back = export(export(tmp_path / f"hf{eps}", tmp_path / f"ours{eps}", "mme"), tmp_path / f"back{eps}", "hf",
                      kind="classification")
        assert json.loads((back / "config.json").read_text())["layer_norm_eps"] == eps
    hf_mae = perturbed(transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(
        **common, layer_norm_eps=1e-2, decoder_hidden_size=32, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=128)))
    hf_mae.save_pretrained(tmp_path / "mae")
    mae = load_model(tmp_path / "mae")
    assert mae.decoder_blocks[0].norm1.eps == 1e-2 and mae.decoder_norm.eps == 1e-5  # (HF's decoder final norm)
    mask = mae.make_mask(2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = hf_mae(hf_input(x), bool_masked_pos=mask)
        _, preds, _ = mae(x, mask, {"pixel": pixel_target(x, 2, 16)})
    assert (preds["pixel"] - out.logits).abs().max() <= 1e-5
    old = save_pretrained(VideoClassifier(ModelConfig(**TINY), num_classes=3), tmp_path / "old")
    meta = json.loads((old / "config.json").read_text())
    del meta["model"]["norm_eps"]  # as written before the field
    (old / "config.json").write_text(json.dumps(meta))
    assert load_model(old).encoder.blocks[0].norm1.eps == 1e-6


def test_a_hf_model_whose_mlp_ratio_is_no_exact_float_loads_and_exports(tmp_path):
    """A Hugging Face VideoMAE 88 wide with an MLP of 120 units was refused as of the wrong architecture (the model
    expects (119, 88)): its ratio 120/88 times 88 is 119.99999999999999 in floats, which the blocks truncated. The
    MLP width is that product where it is a whole number up to float error (mme.models.config.mlp_width): the model
    loads with the file's outputs, and it and a model of ours at that ratio export to Hugging Face as 120 units."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=2, hidden_size=88, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=120, layer_norm_eps=1e-6)
    hf = perturbed(transformers.VideoMAEModel(hf_cfg))
    hf.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf")
    x = clip(frames=2)
    assert enc.blocks[0].mlp.fc1.weight.shape == (120, 88)
    with torch.no_grad():
        assert (enc(x) - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5
    export_hf(enc, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["intermediate_size"] == 120
    ours = VisionTransformer(ModelConfig(img_size=32, num_frames=2, embed_dim=88, depth=1, num_heads=4,
                                         mlp_ratio=120 / 88))
    assert ours.blocks[0].mlp.fc1.out_features == 120
    export_hf(ours, tmp_path / "ours")
    assert transformers.VideoMAEModel.from_pretrained(tmp_path / "ours").config.intermediate_size == 120


def test_a_file_of_ours_whose_mlp_was_truncated_from_a_whole_product_still_loads(tmp_path):
    """Files of ours whose config records mlp_ratio=120/88 for an embed_dim of 88 hold the MLPs the blocks built
    before they rounded a product of float error: 119 units, and a decoder 44 wide 59 (59.99...). They load as they
    are, read with the ratio of their weights; where no one ratio gives their widths (a decoder 66 wide of 90 units,
    an exact product) the line says so."""
    def saved(decoder_dim: int, decoder_width: int, name: str):
        model = MaskedAutoencoder(ModelConfig(img_size=32, num_frames=2, embed_dim=88, depth=1, num_heads=4,
                                              mlp_ratio=120 / 88, decoder_dim=decoder_dim, decoder_heads=2), [PIXEL])
        model.encoder.blocks[0].mlp = Mlp(88, 119)  # as the blocks built it
        model.decoder_blocks[0].mlp = Mlp(decoder_dim, decoder_width)
        path = tmp_path / name  # written as that mme wrote it: this one's save_pretrained refuses such a module
        return perturbed(model), mme.models.export._write_ours(mme.models.export.describe(model), path)

    old, path = saved(44, 59, "old")
    model = load_model(path)
    assert model.cfg.mlp_ratio == 119 / 88
    assert torch.equal(model.encoder.blocks[0].mlp.fc1.weight, old.encoder.blocks[0].mlp.fc1.weight)
    assert torch.equal(model.decoder_blocks[0].mlp.fc2.weight, old.decoder_blocks[0].mlp.fc2.weight)
    _, path = saved(66, 90, "unfit")
    with pytest.raises(CheckpointError, match=r"unfit: its MLP of 119 units is model\.mlp_ratio=1\.36\d* times "
                                              r"embed_dim 88 truncated, which mme builds as 120 units, and no one "
                                              r"mlp_ratio gives the widths of its MLPs \(\{'embed_dim': 119, "
                                              r"'decoder_dim': 90\}\)$"):
        read_checkpoint(path)


def test_a_training_checkpoint_whose_mlp_was_truncated_loads_and_one_that_does_not_fit_is_named_once(tmp_path):
    """A training run's checkpoint of such a config loads likewise with the ratio of its weights; where no one ratio
    gives its widths, the line named the file twice (``run.pt: run.pt: its MLP ...``): the fit ran inside the reading
    of the weights, which names the file again."""
    def saved(decoder_dim: int, decoder_width: int):
        cfg = ModelConfig(img_size=32, num_frames=2, embed_dim=88, depth=1, num_heads=4, mlp_ratio=120 / 88,
                          decoder_dim=decoder_dim, decoder_heads=2)
        model = MaskedAutoencoder(cfg, [PIXEL])
        model.encoder.blocks[0].mlp = Mlp(88, 119)  # as the blocks built it
        model.decoder_blocks[0].mlp = Mlp(decoder_dim, decoder_width)
        path = tmp_path / f"run{decoder_dim}.pt"
        torch.save({"config": {"model": dataclasses.asdict(cfg)}, "model": perturbed(model).state_dict()}, path)
        return path

    path = saved(44, 59)
    model = load_model(path)
    assert model.cfg.mlp_ratio == 119 / 88
    saved_weights = torch.load(path)["model"]
    assert torch.equal(model.decoder_blocks[0].mlp.fc1.weight, saved_weights["decoder_blocks.0.mlp.fc1.weight"])
    path = saved(66, 90)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(e.value) == (f"{path}: its MLP of 119 units is model.mlp_ratio={120 / 88!r} times embed_dim 88 "
                            "truncated, which mme builds as 120 units, and no one mlp_ratio gives the widths of its "
                            "MLPs ({'embed_dim': 119, 'decoder_dim': 90})")


@pytest.mark.parametrize("torch_shards", [False, True])
def test_a_sharded_hf_directory_loads_from_the_shards_its_index_names(tmp_path, torch_shards):
    """A Hugging Face directory saved in shards (save_pretrained's max_shard_size, as transformers saves large
    models: model-0000k-of-0000n.safetensors and model.safetensors.index.json) was refused as a directory without
    model.safetensors or pytorch_model.bin. Its index's weight_map names the shards read; they are the
    checkpoint's files (a features file's identity), and mme export takes it. Shards of pytorch_model.bin (which
    transformers wrote before safetensors) likewise, made here of the safetensors ones."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=256, layer_norm_eps=1e-6)
    hf = perturbed(transformers.VideoMAEModel(hf_cfg))
    folder = tmp_path / "hf"
    hf.save_pretrained(folder, max_shard_size="100KB")
    index = "model.safetensors.index.json"
    if torch_shards:
        meta = json.loads((folder / index).read_text())
        for name in set(meta["weight_map"].values()):
            torch.save(safetensors.torch.load_file(folder / name), folder / name.replace(".safetensors", ".bin"))
            (folder / name).unlink()
        meta["weight_map"] = {k: v.replace(".safetensors", ".bin") for k, v in meta["weight_map"].items()}
        (folder / index).unlink()
        index = "pytorch_model.bin.index.json"
        (folder / index).write_text(json.dumps(meta))
    shards = sorted(p.name for p in folder.iterdir() if p.name.startswith("model-"))
    assert len(shards) > 1
    enc = load_encoder(folder)
    x = clip(frames=4)
    with torch.no_grad():
        assert (enc(x) - hf(hf_input(x)).last_hidden_state).abs().max() <= 1e-5
    assert sorted(p.name for p in checkpoint_files(folder)) == sorted(["config.json", index, *shards])
    export(folder, tmp_path / "ours")
    assert torch.equal(load_encoder(tmp_path / "ours").blocks[1].mlp.fc2.weight, enc.blocks[1].mlp.fc2.weight)
    if not torch_shards:  # a shard is the checkpoint's file: an export is not written over it
        with pytest.raises(ConfigError, match="would replace the files of SRC"):
            export(folder, folder / shards[0], format="safetensors", overwrite=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_a_hf_export_records_the_dtype_of_its_weights(tmp_path, dtype):
    """The Hugging Face export of half-precision weights (a Hugging Face model saved in fp16 or bf16) wrote
    ``"torch_dtype": "float32"`` beside them. It writes the dtype of the weights it writes."""
    hf_cfg = transformers.VideoMAEConfig(image_size=32, num_frames=4, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=256, layer_norm_eps=1e-6)
    transformers.VideoMAEModel(hf_cfg).to(dtype).save_pretrained(tmp_path / "src")
    out = export(tmp_path / "src", tmp_path / "hf", "hf", "model")
    with safetensors.safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {dtype}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == str(dtype).removeprefix("torch.")
