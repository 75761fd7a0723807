"""The model core as a specification: masking counts, position tables, encoder token counts, presets, heads,
the masked autoencoder's loss, and the classifier (mme-method.md §4-6, §10)."""

import random
import re

import pytest
import torch
import torch.nn.functional as F

from mme.config import from_dict
from mme.errors import ConfigError
from mme.models import HeadSpec, MaskedAutoencoder, ModelConfig, VisionTransformer, vit
from mme.models.classifier import VideoClassifier
from mme.models.config import PRESETS
from mme.models.masking import (
    blockwise_mask,
    cube_mask,
    make_mask,
    masked_per_sample,
    num_masked,
    random_mask,
    tube_mask,
)
from mme.models.vit import SHORT_ON_CPU, attention, count_parameters, short_on, sincos_table
from mme.motion.targets import pixel_target
from mme.train.config import TaskConfig

TINY = dict(img_size=32, num_frames=8, embed_dim=64, depth=2, num_heads=4, decoder_dim=32, decoder_depth=1,
            decoder_heads=2)


def test_tube_mask_masks_137_per_slice_with_identical_slices():
    mask = tube_mask(4, (8, 14, 14), 0.7, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (4, 1568)
    slices = mask.reshape(4, 8, 196)
    assert (slices.sum(-1) == 137).all()
    assert (slices == slices[:, :1]).all()
    assert (mask.sum(1) == 1096).all()
    assert not torch.equal(slices[0, 0], slices[1, 0])  # a new spatial pattern per sample
    # the count is floored as VideoMAE's int(mask_ratio * num_patches_per_frame): 0.9 of an 8 x 8 grid is 57.6 -> 57
    assert num_masked(64, 0.9) == 57 and num_masked(196, 0.75) == 147
    assert (tube_mask(2, (4, 8, 8), 0.9, torch.Generator().manual_seed(0)).reshape(2, 4, 64).sum(-1) == 57).all()


def test_random_mask_has_exact_count_and_is_not_a_tube():
    mask = random_mask(3, (8, 14, 14), 0.9, torch.Generator().manual_seed(1))
    assert (mask.sum(1) == int(0.9 * 1568)).all()
    slices = mask.reshape(3, 8, 196)
    assert not (slices == slices[:, :1]).all()


def test_masks_replay_from_a_generator():
    for kind in ("tube", "random", "cube"):
        a = make_mask(kind, 2, (4, 7, 7), 0.75, torch.Generator().manual_seed(5))
        b = make_mask(kind, 2, (4, 7, 7), 0.75, torch.Generator().manual_seed(5))
        c = make_mask(kind, 2, (4, 7, 7), 0.75, torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown mask type"):
        make_mask("block", 1, (2, 2, 2), 0.5)
    with pytest.raises(ConfigError, match="model.mask_type must be one of"):
        ModelConfig(mask_type="block")


def test_cube_mask_hides_int_ratio_hw_of_each_slice_in_runs_of_slices_sharing_a_blockwise_mask():
    """The paper's 40 % cube ablation at 16 x 224²: 78 of each slice's 196 positions, 624 per clip as its tube
    mask; each slice's mask shared by a run of consecutive slices, never seen again after it; the masked
    positions in blocks (far fewer masked-visible neighbour pairs than a random mask of the count has)."""
    grid = (8, 14, 14)
    mask = cube_mask(64, grid, 0.4, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (64, 1568)
    assert (mask.sum(1) == 624).all() and masked_per_sample("cube", grid, 0.4) == 624
    slices = mask.reshape(64, 8, 14, 14)
    assert (slices.sum((2, 3)) == 78).all()
    runs = []
    for clip in slices:
        planes = [clip[0]]
        for plane in clip[1:]:
            if not torch.equal(plane, planes[-1]):
                assert not any(torch.equal(plane, p) for p in planes)  # a run's mask is its own
                planes.append(plane)
        runs.append(len(planes))
    assert max(runs) >= 3 and sum(runs) < 0.75 * 64 * 8  # several masks per clip (not a tube), many over several slices

    def mixed_pairs(m: torch.Tensor) -> int:
        return int((m[..., 1:, :] ^ m[..., :-1, :]).sum() + (m[..., 1:] ^ m[..., :-1]).sum())

    random_slices = random_mask(64, (8, 1, 196), 0.4, torch.Generator().manual_seed(0)).reshape(64, 8, 14, 14)
    assert mixed_pairs(slices) < 0.5 * mixed_pairs(random_slices)


@pytest.mark.parametrize("seed", range(5))
def test_blockwise_mask_adds_blocks_of_the_drawn_area_and_aspect_and_tops_up_to_the_count(seed):
    """At area bounds [16, 16] and aspect 1 a block is round(sqrt(16)) = 4 x 4, which hides the 16 asked at once;
    a grid no block fits in (blocks have fewer rows and columns than the grid) is masked at random, to the count."""
    rng = random.Random(seed)
    square = torch.from_numpy(blockwise_mask(8, 8, 16, rng, min_aspect=1.0))
    rows, cols = square.any(1).nonzero()[:, 0], square.any(0).nonzero()[:, 0]
    assert square.sum() == 16 and rows.tolist() == list(range(rows[0], rows[0] + 4))
    assert cols.tolist() == list(range(cols[0], cols[0] + 4))
    assert blockwise_mask(6, 1, 4, rng).sum() == 4


def test_encoder_sees_exactly_472_visible_tokens_at_16x224():
    cfg = ModelConfig(embed_dim=16, depth=1, num_heads=1)  # 16 frames, 224², tubelet 2, patch 16
    enc = VisionTransformer(cfg).eval()
    x = torch.randn(1, 3, 16, 224, 224)
    mask = tube_mask(1, cfg.grid, cfg.mask_ratio, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = enc(x, mask)
        full = enc(x)
    assert cfg.grid == (8, 14, 14) and cfg.num_tokens == 1568
    assert tokens.shape == (1, 472, 16)
    assert full.shape == (1, 1568, 16)


def test_patch_embedding_of_the_visible_tokens_equals_the_convolutions_tokens():
    cfg = ModelConfig(**TINY, mask_type="random")
    embed = VisionTransformer(cfg).patch_embed
    x = torch.randn(2, 3, 8, 32, 32)
    mask = make_mask("random", 2, cfg.grid, 0.75, torch.Generator().manual_seed(0))
    index = (~mask).nonzero()[:, 1].view(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(embed(x, index), embed(x)[~mask].view(2, -1, 64), rtol=1e-5, atol=1e-5)


def test_position_table_equals_hf_sinusoid_table():
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table  # (4 s to import: here)

    for n, d in ((392, 192), (98, 64), (16, 768)):  # HF's table is a Python loop: keep it small
        assert torch.equal(sincos_table(n, d), get_sinusoid_encoding_table(n, d)[0])
    t = sincos_table(10, 8)
    pos = torch.arange(10, dtype=torch.float64)
    assert torch.equal(t[:, 0], pos.sin().float())  # j=0, 1: angle = pos / 10000^0
    assert torch.equal(t[:, 1], pos.cos().float())
    assert torch.equal(t[:, 7], (pos / 10000 ** (6 / 8)).cos().float())


def test_a_clip_of_another_grid_takes_that_grids_sincos_table_as_the_model_built_for_it():
    """A clip of another size or frame count than the config's took the config's table resampled trilinearly,
    unsaid: other features than the same weights built for that clip (``load_encoder(F, img_size=, num_frames=)``,
    ``mme embed --img-size / --num-frames``, fine-tuning at that size: VideoMAE's and Hugging Face's sin-cos table
    of the clip), 1.47 apart at most in the audit. Encoder and decoder now take the clip's own grid's table."""
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)  # 8 x 32²: grid (4, 2, 2)
    enc = VisionTransformer(cfg).eval()
    assert torch.equal(enc.pos_embed, sincos_table(cfg.num_tokens, 64))  # (its own grid: the config's)
    big = VisionTransformer(ModelConfig(**{**TINY, "img_size": 48, "num_frames": 12})).eval()
    big.load_state_dict(enc.state_dict())
    x = torch.randn(2, 3, 12, 48, 48)
    with torch.no_grad():
        assert torch.equal(enc(x), big(x))
        mask = make_mask("tube", 2, big.cfg.grid, 0.75, torch.Generator().manual_seed(0))
        assert torch.equal(enc(x, mask), big(x, mask))
        assert torch.equal(enc.pos_for(torch.zeros(1, 3, 16, 64, 48)), sincos_table(8 * 4 * 3, 64))  # not square
    heads = [HeadSpec("pixel", 2 * 16 * 16 * 3)]
    torch.manual_seed(1)
    mae = MaskedAutoencoder(cfg, heads).eval()
    wide = MaskedAutoencoder(big.cfg, heads).eval()
    wide.load_state_dict(mae.state_dict())
    with torch.no_grad():
        preds, ref = (m.forward_decoder(m.forward_encoder(x, mask), mask, big.cfg.grid) for m in (mae, wide))
        assert torch.equal(preds["pixel"], ref["pixel"])


def test_a_loop_at_another_grid_computes_its_position_tables_once(monkeypatch):
    """Each forward of a clip of another grid than the model's computed that grid's table again, in float64 on the
    CPU, and copied it (9 ms a call for ViT-B at 8 x 224², 0.6 ms for the resampling before): every batch of a loop
    over ``load_encoder(F)`` at another size, and ``mme viz``. Encoder and decoder tables are kept per grid, width,
    device and dtype; the model's own grid takes its buffers."""
    torch.manual_seed(0)
    mae = MaskedAutoencoder(ModelConfig(**TINY), [HeadSpec("pixel", 2 * 16 * 16 * 3)]).eval()  # 8 x 32²: (4, 2, 2)
    made = []
    monkeypatch.setattr(vit, "sincos_table", lambda n, dim: made.append((n, dim)) or sincos_table(n, dim))
    vit.clip_position_table.cache_clear()
    x = torch.randn(2, 3, 12, 48, 48)
    mask = make_mask("tube", 2, (6, 3, 3), 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = mae.forward_decoder(mae.forward_encoder(x, mask), mask, (6, 3, 3))["pixel"]
        for _ in range(3):
            assert torch.equal(mae.forward_decoder(mae.forward_encoder(x, mask), mask, (6, 3, 3))["pixel"], first)
            mae.encoder(x)
            mae.encoder(torch.randn(1, 3, 8, 32, 32))  # (its own grid)
    assert made == [(54, 64), (54, 32)]  # (once each, encoder and decoder)
    other_shape = torch.randn(1, 3, 4, 64, 32)  # (grid (2, 4, 2): the model's 16 tokens: its buffer, nothing made)
    assert mae.encoder.pos_for(other_shape) is mae.encoder.pos_embed and len(made) == 2
    assert torch.equal(mae.encoder.pos_for(x), sincos_table(6 * 3 * 3, 64))
    assert mae.encoder.pos_for(x.half()).dtype == torch.float16 and len(made) == 3  # (another dtype: its own)
    vit.clip_position_table.cache_clear()


def test_encoder_accepts_other_frame_counts_and_sizes():
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 16, 64, 48)).shape == (1, 8 * 4 * 3, 64)


def test_a_clip_that_does_not_divide_into_tubelets_and_patches_is_refused():
    """9 frames of 40x40 gave the tokens of 8 frames of 32x32, the last frame and 8 px a side dropped unsaid."""
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    for shape in ((1, 3, 9, 32, 32), (1, 3, 8, 40, 32), (1, 3, 8, 32, 40)):
        with pytest.raises(ValueError, match=re.escape(f"a clip of shape {shape} (B, C, T, H, W) does not divide "
                                                       "into tubelets of 2 frames and 16x16 patches")):
            enc(torch.randn(*shape))


def test_a_clip_or_mask_of_another_kind_is_refused_naming_what_the_encoder_takes():
    """An integer 0/1 mask was read as all visible (``~`` flips an integer's bits), one of another length or with
    unequal counts per clip embedded other tokens or failed in a reshape, and a uint8 or 4-D clip failed deep in
    the convolution or in unpacking its shape."""
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    x, mask = torch.randn(2, 3, 8, 32, 32), make_mask("tube", 2, (4, 2, 2), 0.5)  # 16 tokens, 8 masked
    assert enc(x, mask).shape == (2, 8, 64)
    unequal = torch.stack([mask[0], torch.zeros_like(mask[0])])
    for bad, said in ((mask.long(), r"dtype torch.int64: give a \(2, 16\) bool mask"),
                      (mask[:, :10], r"mask of shape \(2, 10\)"),
                      (unequal, r"mask: \[8, 16\] visible tokens per clip")):
        with pytest.raises(ValueError, match=said):
            enc(x, bad)
    for clip in ((x * 50 + 100).clamp(0, 255).to(torch.uint8), x[0]):
        with pytest.raises(ValueError, match="the encoder takes float clips"):
            enc(clip)


def test_a_clip_of_another_float_dtype_than_the_weights_is_refused_naming_both():
    """A float64 clip (numpy's default, through torch.from_numpy) failed deep in the convolution: "Input type
    (double) and bias type (float) should be the same", under autocast too; autocast casts a bf16 clip itself."""
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    for autocast in (False, True):
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast), pytest.raises(ValueError) as refused:
            enc(x.double())
        assert str(refused.value) == ("a clip of dtype torch.float64 for an encoder of torch.float32 weights: give "
                                      "x.to(torch.float32)")
    with pytest.raises(ValueError, match=r"^a clip of dtype torch.bfloat16 for an encoder of torch.float32 weights"):
        enc(x.bfloat16())
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert enc(x.bfloat16()).shape == (1, 16, 64)


def test_a_clip_of_another_channel_count_is_refused_naming_the_channels_and_the_transpose_of_a_hf_layout():
    """Hugging Face VideoMAE's (B, T, C, H, W) clip was refused as one that "does not divide into tubelets", a clip
    of one channel by torch's convolution ("expected input[1, 1, 8, 32, 32] to have 3 channels")."""
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with pytest.raises(ValueError) as refused:
        enc(x.transpose(1, 2))
    assert str(refused.value) == ("a clip of shape (1, 8, 3, 32, 32) (B, C, T, H, W) has 8 channels; the encoder takes "
                                  "3: for a (B, T, C, H, W) clip (Hugging Face VideoMAE's layout), give x.transpose(1, "
                                  "2)")
    with pytest.raises(ValueError) as refused:
        enc(x[:, :1])
    assert str(refused.value) == "a clip of shape (1, 1, 8, 32, 32) (B, C, T, H, W) has 1 channel; the encoder takes 3"
    with torch.no_grad():
        assert torch.equal(enc(x.transpose(1, 2).transpose(1, 2)), enc(x))


def test_presets_have_their_documented_parameter_counts():
    # Built on the meta device: shapes only, no memory, so ViT-L costs nothing.
    expected = {"tiny": 5.63e6, "small": 21.88e6, "base": 86.23e6, "large": 303.86e6}
    for name, count in expected.items():
        cfg = from_dict(ModelConfig, {"preset": name})
        assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == tuple(PRESETS[name].values())
        with torch.device("meta"):
            n = count_parameters(VisionTransformer(cfg))
        assert abs(n - count) / count < 0.001, (name, n)


def test_preset_fills_unset_sizes_and_explicit_values_win():
    assert (ModelConfig().embed_dim, ModelConfig().depth, ModelConfig().num_heads) == (768, 12, 12)
    small = ModelConfig(preset="small", depth=6)
    assert (small.embed_dim, small.depth, small.num_heads) == (384, 6, 6)
    assert from_dict(ModelConfig, {"preset": "small", "depth": 6}) == small
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig(preset="huge")


def test_vit_base_preset_builds_on_cpu_with_86m_parameters():
    enc = VisionTransformer(from_dict(ModelConfig, {"preset": "base"}))
    n = count_parameters(enc)
    assert 86.0e6 < n < 86.4e6
    attn = enc.blocks[0].attn
    assert attn.qkv.bias is None and attn.q_bias.shape == (768,) and attn.v_bias.shape == (768,)
    assert enc.blocks[0].norm1.eps == 1e-6


def test_attention_has_no_k_bias():
    """The k bias is structurally zero: moving q_bias/v_bias changes outputs, the k-slot stays zero."""
    enc = VisionTransformer(ModelConfig(**TINY)).eval()
    attn = enc.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 5, 64)
    D = 64
    w = attn.qkv.weight
    q = x @ w[:D].T + attn.q_bias
    k = x @ w[D:2 * D].T
    v = x @ w[2 * D:].T + attn.v_bias
    heads = lambda t: t.reshape(2, 5, 4, 16).transpose(1, 2)  # noqa: E731  (B, nh, N, hs)
    ref = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 4.0, -1) @ heads(v)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 5, D))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["AMX", "other"])
@pytest.mark.parametrize("beyond", [0, 1])
def test_short_sequences_attend_in_fp32_under_cpu_autocast(kind, beyond, monkeypatch):
    features = ("AVX2", "AVX-512", "AVX512-BF16") + (("AMX",) if kind == "AMX" else ())
    monkeypatch.setattr("mme.models.vit.SHORT_ON_THIS_CPU", short_on(features))
    tokens = SHORT_ON_CPU[kind] + beyond
    q, k, v = (torch.randn(1, 2, tokens, 8, generator=torch.Generator().manual_seed(i)).bfloat16()
               for i in range(3))
    expected = (F.scaled_dot_product_attention(q.float(), k.float(), v.float()).bfloat16() if not beyond
                else F.scaled_dot_product_attention(q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)


def test_the_attention_benchmark_names_the_demos_decoder_as_its_recipe_makes_it(capsys, monkeypatch):
    """benchmarks/sdpa_precision.py called its 6x32 heads the demo's decoder, which tiny_cpu_mme makes 4x32
    (decoder_dim 128, decoder_heads 4)."""
    import importlib.util
    from pathlib import Path

    from mme.config import load_config
    from mme.train.config import PretrainConfig

    path = Path(__file__).parents[1] / "benchmarks" / "sdpa_precision.py"
    spec = importlib.util.spec_from_file_location("sdpa_precision", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr("sys.argv", [str(path), "--help"])
    with pytest.raises(SystemExit):
        benchmark.main()
    model = load_config(PretrainConfig, "tiny_cpu_mme").model
    decoder = f"{model.decoder_heads}x{model.decoder_dim // model.decoder_heads}"
    assert f"the demo's decoder's, which is {decoder};" in " ".join(capsys.readouterr().out.split())


def test_mae_pixel_loss_is_mse_over_masked_tokens():
    cfg = ModelConfig(**TINY)
    torch.manual_seed(0)
    mae = MaskedAutoencoder(cfg, [HeadSpec("pixel", 2 * 16 * 16 * 3)]).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    mask = mae.make_mask(2, torch.Generator().manual_seed(0))
    target = pixel_target(x, 2, 16)
    with torch.no_grad():
        loss, preds, terms = mae(x, mask, {"pixel": target})
    n_masked = int(mask[0].sum())
    assert preds["pixel"].shape == (2, n_masked, 1536)
    ref = ((preds["pixel"] - target[mask].reshape(2, n_masked, -1)) ** 2).mean()
    torch.testing.assert_close(loss, ref)
    assert torch.equal(terms["pixel"], loss)


def test_mae_heads_weights_validity_and_reductions():
    cfg = ModelConfig(**TINY)
    heads = [HeadSpec("a", 6, "tanh", hidden=16, weight=0.25, reduction="sum"), HeadSpec("b", 3, "sigmoid", hidden=16)]
    mae = MaskedAutoencoder(cfg, heads).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    mask = mae.make_mask(2, torch.Generator().manual_seed(0))
    N = cfg.num_tokens
    targets = {"a": torch.full((2, N, 6), 0.5), "b": torch.zeros(2, N, 3)}
    valid = {"a": (torch.arange(N) % 3 == 0).expand(2, N)}  # a third of the tokens, masked ones among them
    with torch.no_grad():
        loss, preds, terms = mae(x, mask, targets, valid)
    assert preds["a"].abs().max() < 1 and (preds["b"] > 0).all()
    # "a": per masked token the squared error summed over its 6 channels, times its validity, averaged over all
    # masked tokens (valid or not); "b": averaged over its channels and the masked tokens
    v = valid["a"][mask].view(2, -1)
    assert 0 < v.sum() < v.numel()
    sse = ((preds["a"] - 0.5) ** 2).sum(-1)  # (B, N_masked)
    torch.testing.assert_close(terms["a"], (sse * v).sum() / v.numel())
    assert terms["a"] > 0.01
    torch.testing.assert_close(terms["b"], (preds["b"] ** 2).mean())
    torch.testing.assert_close(loss, 0.25 * terms["a"] + terms["b"])  # the weighted sum: "b" weighs 1
    _, none_valid = mae.forward_loss(preds, targets, mask, {"a": torch.zeros(2, N, dtype=torch.bool)})
    assert none_valid["a"] == 0 and none_valid["b"] == terms["b"]  # every token invalid
    with pytest.raises(KeyError, match="no target for head 'b'"):
        mae(x, mask, {"a": targets["a"]})


def test_decoder_norm_eps_follows_the_config():
    mae = MaskedAutoencoder(ModelConfig(**TINY, decoder_norm_eps=1e-5), [HeadSpec("pixel", 1536)])
    assert mae.decoder_norm.eps == 1e-5


def test_classifier_mean_pools_without_final_encoder_norm():
    cfg = ModelConfig(**TINY)
    torch.manual_seed(0)
    clf = VideoClassifier(cfg, num_classes=5).eval()
    assert isinstance(clf.encoder.norm, torch.nn.Identity)
    assert clf.fc_norm.eps == 1e-6
    assert 1.5e-5 < clf.head.weight.std() < 2.5e-5  # trunc-normal(std 0.02) scaled by 0.001
    assert not clf.head.bias.any()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        feats = clf.forward_features(x)
        logits = clf(x)
        tokens = clf.encoder(x)
    assert feats.shape == (2, 64) and logits.shape == (2, 5)
    torch.testing.assert_close(feats, torch.nn.functional.layer_norm(tokens.mean(1), (64,), clf.fc_norm.weight,
                                                                        clf.fc_norm.bias, 1e-6))
    torch.testing.assert_close(logits, clf.head(feats))
    names = {k.split(".")[0] for k in clf.state_dict()}
    assert names == {"encoder", "fc_norm", "head"}
    assert not any(k.startswith("encoder.norm") for k in clf.state_dict())


def test_classifier_norm_mean_keeps_the_encoder_norm_and_rejects_unknown_pools():
    clf = VideoClassifier(ModelConfig(**TINY), num_classes=3, pool="norm_mean")
    assert isinstance(clf.encoder.norm, torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="pool must be one of"):
        VideoClassifier(ModelConfig(**TINY), num_classes=3, pool="cls")


def test_clip_input_norm_ignores_each_clips_colour_and_contrast():
    """model.input_norm='clip': the encoder's output does not change when a clip's channels are scaled and shifted
    (its overall colour and contrast); with 'dataset' it does."""
    x = torch.randn(2, 3, 8, 32, 32)
    scale, shift = torch.tensor([0.3, 2.0, 0.7]).view(1, 3, 1, 1, 1), torch.tensor([1.5, -0.4, 0.2]).view(1, 3, 1, 1, 1)
    for norm, same in (("clip", True), ("dataset", False)):
        torch.manual_seed(0)
        enc = VisionTransformer(ModelConfig(**TINY, input_norm=norm)).eval()
        with torch.no_grad():
            a, b = enc(x), enc(x * scale + shift)
        assert torch.allclose(a, b, atol=1e-4) == same, norm
    x[1, 0] = 0.5  # a flat channel standardises to 0, as the float64 reference's
    var, mean = torch.var_mean(x.double(), dim=(2, 3, 4), keepdim=True)
    standardised = ((x.double() - mean) / (var + 1e-6).sqrt()).float()
    torch.manual_seed(0)
    enc = VisionTransformer(ModelConfig(**TINY, input_norm="clip")).eval()
    torch.manual_seed(0)
    plain = VisionTransformer(ModelConfig(**TINY, input_norm="dataset")).eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x), plain(standardised), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="input_norm"):
        ModelConfig(**TINY, input_norm="batch")


def test_clip_input_norm_of_a_masked_clip_takes_the_statistics_of_its_visible_tubelets_only():
    """model.input_norm='clip' with a mask: each clip is standardised per channel over its visible tubelets, so
    the masked pixels (here 4x the contrast and +1 brightness) change no output of the encoder, and its tokens are
    those of the clip standardised by the visible pixels' float64 mean and variance (before: over every pixel, the
    hidden ones included, whose per-channel mean the visible tokens then carried: outputs off by 2.0)."""
    cfg = ModelConfig(**TINY, input_norm="clip")
    x = torch.randn(2, 3, 8, 32, 32)
    mask = make_mask("tube", 2, cfg.grid, 0.75, torch.Generator().manual_seed(0))  # (2, 64), grid (4, 4, 4)
    t, p = cfg.tubelet_size, cfg.patch_size
    hidden = mask.view(2, 1, *cfg.grid).repeat_interleave(t, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)
    hidden = hidden.expand_as(x)  # (2, 3, 8, 32, 32), True at the masked tubelets' pixels
    changed = torch.where(hidden, x * 4 + 1, x)
    torch.manual_seed(0)
    enc = VisionTransformer(cfg).eval()
    torch.manual_seed(0)
    plain = VisionTransformer(ModelConfig(**TINY, input_norm="dataset")).eval()
    seen = torch.where(hidden, torch.nan, x.double())
    mean = seen.nanmean((2, 3, 4), keepdim=True)
    var = ((seen - mean) ** 2).nansum((2, 3, 4), keepdim=True) / ((~hidden[:, :1]).sum((2, 3, 4), keepdim=True) - 1)
    standardised = ((x.double() - mean) / (var + 1e-6).sqrt()).float()
    with torch.no_grad():
        tokens = enc(x, mask)
        assert (enc(changed, mask) - tokens).abs().max().item() == 0
        torch.testing.assert_close(tokens, plain(standardised, mask), rtol=1e-4, atol=1e-5)
        assert (enc(changed) - enc(x)).abs().max() > 0.1  # unmasked, every pixel is seen: the clip's statistics


@pytest.mark.slow  # torch.compile, twice
def test_a_compiled_encoder_standardises_masked_and_unmasked_clips_as_eager():
    """model.input_norm='clip' under torch.compile, a masked forward then an unmasked one (a pre-training run that
    probes its encoder): eager's outputs (a generator expression in the standardisation made dynamo fall back and
    drop it on the unmasked recompile: outputs those of the clip unstandardised, off by 1.8)."""
    cfg = ModelConfig(**TINY, input_norm="clip")
    enc = VisionTransformer(cfg).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    mask = make_mask("tube", 2, cfg.grid, 0.75, torch.Generator().manual_seed(0))
    compiled = torch.compile(enc)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, mask), enc(x, mask), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(compiled(x), enc(x), rtol=1e-4, atol=1e-5)


def test_initialisation_is_videomaes():
    """As VideoMAE's (and the MME release's) models start: the patch embedding and the encoder-to-decoder projection
    keep PyTorch's defaults (their models apply xavier to Linear layers of the encoder and decoder only), the mask
    token is truncated at one std, the decoder's drop path grows over its depth, and a classifier trained from
    scratch starts from trunc-normal(0.02) Linear layers."""
    torch.manual_seed(0)
    cfg = ModelConfig(preset="small", img_size=64, num_frames=4, drop_path=0.2, decoder_depth=3)
    mae = MaskedAutoencoder(cfg, [HeadSpec("pixel", 1536)])
    std, top = (lambda t: t.detach().std().item()), (lambda t: t.detach().abs().max().item())
    conv = mae.encoder.patch_embed.proj
    bound = conv.weight[0].numel() ** -0.5  # PyTorch's default for conv and linear: U(-1/sqrt(fan_in), ..)
    assert top(conv.weight) <= bound and std(conv.weight) == pytest.approx(bound / 3**0.5, rel=0.05)
    assert bound / 2 < top(conv.bias) <= bound  # not zeroed
    proj = mae.encoder_to_decoder.weight  # (192, 384)
    assert top(proj) <= 384**-0.5 and std(proj) == pytest.approx(384**-0.5 / 3**0.5, rel=0.05)
    qkv = mae.encoder.blocks[0].attn.qkv.weight  # xavier: std sqrt(2 / (fan_in + fan_out))
    assert std(qkv) == pytest.approx((2 / (384 + 3 * 384)) ** 0.5, rel=0.05)
    assert top(mae.mask_token) <= 0.02 and std(mae.mask_token) == pytest.approx(0.0108, rel=0.15)
    assert [b.drop_path for b in mae.decoder_blocks] == pytest.approx([0.0, 0.1, 0.2])
    clf = VideoClassifier(cfg, num_classes=5)
    fc1 = clf.encoder.blocks[0].mlp.fc1.weight
    assert std(fc1) == pytest.approx(0.02, rel=0.05) and top(fc1) < 0.1
    assert std(clf.head.weight) == pytest.approx(0.02 * 0.001, rel=0.1)
    # task.scratch_init=xavier (finetune_tiny_cpu): the pre-training encoder's, which scales with the width
    clf = VideoClassifier(cfg, num_classes=5, scratch_init="xavier")
    assert std(clf.encoder.blocks[0].mlp.fc1.weight) == pytest.approx((2 / (384 + 4 * 384)) ** 0.5, rel=0.05)
    assert std(clf.head.weight) == pytest.approx(0.02 * 0.001, rel=0.1)
    with pytest.raises(ConfigError, match=r"task.scratch_init must be one of \('trunc_normal', 'xavier'\), got 'he'"):
        TaskConfig(scratch_init="he")


def test_the_decoder_predicts_the_masked_tokens_only_also_when_there_are_none():
    """With no masked token the decoder's ``x[:, -0:]`` was every token: predictions (and a loss) of the visible
    ones."""
    cfg = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16,
                      decoder_depth=1, decoder_heads=2)
    model = MaskedAutoencoder(cfg, [HeadSpec("pixel", 2 * 16 * 16 * 3)]).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    for masked in (0, 3):
        mask = torch.zeros(2, cfg.num_tokens, dtype=torch.bool)
        mask[:, :masked] = True
        with torch.no_grad():
            preds = model.forward_decoder(model.forward_encoder(x, mask), mask)
        assert preds["pixel"].shape == (2, masked, 2 * 16 * 16 * 3)
