"""Every pre-training recipe in configs/ loads, builds its model, and runs 2 steps: the tiny CPU recipes with their true
architecture; the ViT-B recipes with their architecture checked by shape and parameter count (ViT-B encoder
86.2M) and trained at a tiny size."""

from __future__ import annotations

import pytest
import torch
from training import run

from mme.config import RECIPES_DIR, load_config
from mme.models.mae import MaskedAutoencoder
from mme.motion.targets import head_specs
from mme.train.config import PretrainConfig

RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml") if not p.stem.startswith("finetune"))  # pre-training

# recipe -> (encoder params in M, decoder (dim, depth, heads), mask ratio, {head: (dim, activation)}, stride)
EXPECTED = {
    "mme_k400_released": (86.2, (192, 1, 6), 0.7, {"hog": (108, "sigmoid"), "traj": (32, "tanh")}, 4),
    "mme_k400_paper": (86.2, (192, 1, 6), 0.7, {"traj": (48, "none"), "shape": (648, "none")}, 4),
    "mme_ssv2_paper": (86.2, (192, 1, 6), 0.7, {"traj": (48, "none"), "shape": (648, "none")}, 2),
    "videomae_k400_pixel": (86.2, (384, 4, 6), 0.9, {"pixel": (1536, "none")}, 4),
    "tiny_cpu_mme": (2.07, (128, 1, 4), 0.7, {"traj": (48, "none"), "shape": (648, "none")}, 2),
    "tiny_cpu_pixel": (2.07, (128, 1, 4), 0.7, {"pixel": (1536, "none")}, 2),
}


def test_every_recipe_is_covered():
    assert set(RECIPES) == set(EXPECTED)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_builds_its_architecture(recipe):
    cfg = load_config(PretrainConfig, recipe)
    enc_m, decoder, ratio, heads, stride = EXPECTED[recipe]
    with torch.device("meta"):  # shapes and counts only: no memory, no initialisation time
        model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    assert sum(p.numel() for p in model.encoder.parameters()) / 1e6 == pytest.approx(enc_m, abs=0.05)
    m = cfg.model
    assert (m.decoder_dim, m.decoder_depth, m.decoder_heads, m.mask_ratio) == (*decoder, ratio)
    assert {h.name: (h.dim, h.activation) for h in model.head_specs} == heads
    assert cfg.data.stride == stride
    if enc_m > 80:  # the published ViT-B recipes: 16 frames of 224², 1568 tokens, AdamW (0.9, 0.95), 64/GPU
        assert (m.num_frames, m.img_size, m.num_tokens, cfg.train.batch_size) == (16, 224, 1568, 64)
        assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.base_lr == 1.5e-4 and cfg.optim.warmup_epochs == 40


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_two_steps(recipe, synth, tmp_path):
    if recipe.startswith("tiny"):  # the true architecture (96², 4 blocks), only batch and workers changed
        res = run_true(recipe, synth, tmp_path)
    else:
        res = run(recipe, synth, tmp_path, "train.steps=2", "train.batch_size=2")
    assert res.step == 2 and all(r["skipped"] == 0 for r in res.history)
    assert all(k in res.history[-1] for k in (f"loss_{h}" for h in EXPECTED[recipe][3]))


def run_true(recipe, data, out):
    from mme.train.pretrain import pretrain

    return pretrain(load_config(PretrainConfig, recipe, [*data, f"train.out_dir={out}", "train.steps=2",
                                                          "train.batch_size=2", "data.num_workers=0"]))
