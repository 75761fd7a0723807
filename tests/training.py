"""Tiny training runs for the tests: any recipe shrunk to seconds on a CPU (the data come from the ``synth``
fixture of conftest.py)."""

from __future__ import annotations

from mme.config import layered, load_config
from mme.train.config import PretrainConfig
from mme.train.loop import TrainResult
from mme.train.pretrain import pretrain

# A tiny version of any recipe: 64² clips of 8 frames (4x4x4 = 64 tokens), a 2-block 64-d ViT, batch 4, at lr
# 1e-3 (above the tiny_cpu recipes' 3e-4) so that runs of 20-40 steps show their losses falling.
TINY = ["optim.base_lr=1e-3", "model.img_size=64", "data.img_size=64", "model.num_frames=8", "data.num_frames=8",
        "data.stride=2", "model.depth=2", "model.embed_dim=64", "model.num_heads=2", "model.decoder_dim=32",
        "model.decoder_heads=2", "model.head_hidden=64", "data.num_workers=0", "train.batch_size=4",
        "optim.warmup_steps=5", "train.ckpt_every=1000", "train.device=cpu"]  # CUDA cases set train.device=cuda
# Tests of an exact property (resume, accumulation, DDP equivalence) pin fp32 whatever 'auto' resolves to here.
FP32 = "train.precision=fp32"


def tiny(*overrides: str) -> list[str]:
    """:data:`TINY` and ``overrides``, a key given again replacing the earlier one (mme refuses a key given twice
    in one list): each test's settings over the tiny ones."""
    return layered(*([o] for o in (*TINY, *overrides)))


def tiny_config(recipe: str, data: list[str], out, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, recipe, tiny(*data, f"train.out_dir={out}", *extra))


def run(recipe: str, data: list[str], out, *extra: str) -> TrainResult:
    return pretrain(tiny_config(recipe, data, out, *extra))


def report_json(**fields) -> str:
    """The text of a file that reads as a test report of fine-tuning's (``mme.eval.testing.read_report``)."""
    import json

    from mme.eval.testing import REPORT_KEYS
    return json.dumps({**dict.fromkeys(REPORT_KEYS, 0), **fields})
