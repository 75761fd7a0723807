"""The pre-training config, the optimizer's parameter groups and schedules, and the precision choice."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from mme.config import field_types, load_config
from mme.errors import ConfigError, UnknownConfigKeys
from mme.models.config import ModelConfig
from mme.models.mae import HeadSpec, MaskedAutoencoder
from mme.train import precision
from mme.train.config import PretrainConfig
from mme.train.optim import OptimConfig, build_optimizer, cosine_schedule, param_groups, schedule_step
from mme.train.precision import (
    AUTO_ENV,
    BF16_MIN_SPEEDUP,
    TimedLoss,
    bf16_native,
    choose_precision,
    faster_precision,
)
from mme.utils import plural, torch_as_mme


def test_defaults_are_the_released_k400_recipe():
    cfg = PretrainConfig()
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.model.mask_ratio, cfg.model.decoder_depth) == (768, 12, 0.7, 1)
    assert (cfg.data.num_frames, cfg.data.stride) == (16, 4)
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.weight_decay == 0.05 and cfg.optim.warmup_epochs == 40
    assert cfg.optim.scaled_lr(1024) == pytest.approx((6e-4, 4e-5))  # 16 GPUs x 64: lr 1.5e-4 x 1024/256
    assert cfg.train.epochs == 1600 and cfg.train.batch_size == 64


def test_overrides_win_over_the_recipe_and_are_coerced():
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["optim.base_lr=1", "train.steps=7", "model.mask_ratio=0.9"])
    assert cfg.optim.base_lr == 1.0 and isinstance(cfg.optim.base_lr, float)
    assert cfg.train.steps == 7 and cfg.model.mask_ratio == 0.9
    assert cfg.model.img_size == 96  # from the recipe


def test_a_section_with_init_only_values_is_read_on_every_python(monkeypatch):
    """ModelConfig and DataConfig declare InitVars (``checks_clip``, ``given_as``), which Python 3.10's
    typing.get_type_hints refuses (bpo-44799): every command that loaded a config crashed there in a TypeError.
    Its refusal is made here on any Python."""
    import typing

    get_type_hints = typing.get_type_hints

    def as_on_python_3_10(obj, *args, **kwargs):
        declared = [a for base in getattr(obj, "__mro__", ()) for a in vars(base).get("__annotations__", {}).values()]
        if any(isinstance(a, str) and a.startswith(("InitVar[", "dataclasses.InitVar[")) for a in declared):
            raise TypeError("Forward references must evaluate to types. Got dataclasses.InitVar[bool].")
        return get_type_hints(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", as_on_python_3_10)
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["data.num_frames=8", "model.depth=3"])
    assert (cfg.data.num_frames, cfg.model.depth) == (8, 3)
    model_types = field_types(ModelConfig)
    assert model_types["depth"] == int | None and model_types["mask_ratio"] is float
    assert not {"checks_clip", "given_as"} & set(model_types)


def _number_keys(cls: type, prefix: str = "") -> dict[str, object]:
    """The dotted keys of config dataclass ``cls`` whose values are numbers (in a list, a union too), with their
    types."""
    import typing

    hints = field_types(cls)
    keys: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys |= _number_keys(tp, f"{prefix}{f.name}.")
        elif {int, float} & {tp, *typing.get_args(tp)}:
            keys[prefix + f.name] = tp
    return keys


def test_every_integer_key_past_int64_and_an_mlp_past_it_are_refused_in_one_line():
    """data.stride=2**63, train.threads=2**63 and task.eval_batch_size=2**63 were tracebacks where torch, numpy or
    itertools.islice took them (OverflowError: Python int too large to convert to C long), model.mlp_ratio=1e30 one
    of torch.empty at the model's build; an ``int | None`` key said its value 'matches none of' its types."""
    from mme.train.config import FinetuneConfig

    for cls, recipe in ((PretrainConfig, "tiny_cpu_mme"), (FinetuneConfig, "finetune_tiny_cpu")):
        integer_keys = {k: tp for k, tp in _number_keys(cls).items() if "int" in str(tp)}
        assert {"data.stride", "train.threads", "train.seed"} <= set(integer_keys)
        for key, tp in integer_keys.items():
            for huge in (2**63, 10**20, -(2**63) - 1) if key == "data.stride" else (2**63,):
                with pytest.raises(ConfigError) as info:
                    load_config(cls, recipe, [f"{key}={huge}"])
                named = f"{key}[0]" if "tuple" in str(tp) else key
                assert str(info.value) == (f"config key '{named}': {huge} does not fit a 64-bit integer (at most "
                                           "2**63 - 1 = 9223372036854775807 in size)"), key
    assert load_config(FinetuneConfig, "finetune_tiny_cpu", ["task.eval_batch_size=3"]).task.eval_batch_size == 3
    assert load_config(PretrainConfig, "tiny_cpu_mme", [f"train.seed={2**63 - 1}"]).train.seed == 2**63 - 1
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, "tiny_cpu_mme", ["model.mlp_ratio=1e30"])
    assert str(info.value) == ("model.mlp_ratio=1e+30 makes an MLP of 1.92e+32 units for model.embed_dim=192: it must "
                               "be at least 1 and fit a 64-bit integer")
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["model.mlp_ratio=2.5"]).model.mlp_ratio == 2.5


def test_a_whole_number_in_any_decimal_form_is_an_integer_and_a_fraction_is_refused(tmp_path):
    """``train.steps=1e3`` was refused ('1e3' matches none of ['int', 'NoneType']), ``train.batch_size=1e1`` too
    (expected an integer, got '1e1'), while ``1.0e+3`` was 1000: YAML 1.1 reads a float only with a dot, and an
    exponent only when signed. A decimal text of a whole number, in any form, is that integer, read from its text (a
    seed written ``9007199254740993.0`` is not rounded as a float); a fraction is refused as before, and so is a text
    that is no number to Python for its underscores (``_10``, ``1_e3``: Decimal takes an underscore anywhere). One
    past a 64-bit integer is said as written (not ``1E+20``)."""
    for steps, batch in (("1e3", "1e1"), ("1E3", "10E0"), ("1.0e+3", "1.0e+1"), ("1000.0", "10.00"), ("10e2", "1_0")):
        c = load_config(PretrainConfig, "tiny_cpu_mme", [f"train.steps={steps}", f"train.batch_size={batch}",
                                                         f"train.keep_epochs=[{steps}, 2e0]"])
        assert (c.train.steps, c.train.batch_size, c.train.keep_epochs) == (1000, 10, (1000, 2)), (steps, batch)
        assert type(c.train.steps) is int and type(c.train.batch_size) is int
    (tmp_path / "r.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 1e3\n  batch_size: 1.0e+1\n")
    assert (load_config(PretrainConfig, tmp_path / "r.yaml").train.steps,
            load_config(PretrainConfig, tmp_path / "r.yaml").train.batch_size) == (1000, 10)
    for seed in ("9007199254740993.0", "9.007199254740993e15"):
        assert load_config(PretrainConfig, "tiny_cpu_mme", [f"train.seed={seed}"]).train.seed == 2**53 + 1
    for override, said in (("train.steps=1.5e0", "expected an integer, got '1.5e0'"),
                           ("train.steps=1.5", "expected an integer, got 1.5"),
                           ("train.batch_size=1.5", "expected an integer, got 1.5"),
                           ("train.batch_size=1e-1", "expected an integer, got '1e-1'"),
                           ("train.batch_size=nan", "expected an integer, got 'nan'"),
                           *((f"train.batch_size={text}", f"expected an integer, got '{text}'")
                             for text in ("_10", "1_e3", "1e_3", "1._5e1")),
                           ("train.steps=1e20", "1e20 does not fit a 64-bit integer (at most 2**63 - 1 = "
                                                "9223372036854775807 in size)"),
                           ("train.steps=1.0e+20", "1.0e+20 does not fit a 64-bit integer"),
                           ("train.steps=1e999999999", "1e999999999 does not fit a 64-bit integer")):
        with pytest.raises(ConfigError) as info:
            load_config(PretrainConfig, "tiny_cpu_mme", [override])
        assert str(info.value).startswith(f"config key '{override.split('=')[0]}': {said}"), override
    for batch, said in (("1_e3", "expected an integer, got '1_e3'"), ("1e_3", "expected an integer, got '1e_3'"),
                        ("1e20", "1e20 does not fit a 64-bit integer")):
        (tmp_path / "r.yaml").write_text(f"_base_: tiny_cpu_mme\ntrain:\n  batch_size: {batch}\n")
        with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/r\.yaml: config key 'train\.batch_size': {said}"):
            load_config(PretrainConfig, tmp_path / "r.yaml")


def test_overrides_of_text_keys_are_read_as_written_and_numbers_must_be_finite(tmp_path, monkeypatch):
    """YAML turned text values into numbers and back ('010' -> '8', '1:30' -> '90'), cut them at ' #', and an
    unparsable one (%HOME%) was a bare traceback; 'None' and an empty value made folders of those names; a
    section given whole dropped the keys given before it; NaN and inf passed every range check (a max_disp of NaN
    trained on no valid track at loss 0)."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    c = load_config(PretrainConfig, "tiny_cpu_mme", [
        "train.out_dir=010", "data.root=runs/x #2", "train.init=%HOME%", "data.index_dir=None", "target.cache_dir=~",
        "target.activation=none", "optim.base_lr=1e-3", "target.loss_weights.traj=.5", "train={batch_size: 3}",
        "data.list_file=~/lists/train.txt"])
    assert (c.train.out_dir, c.data.root, c.train.init) == ("010", "runs/x #2", "%HOME%")
    assert c.data.index_dir is None and c.target.cache_dir is None and c.target.activation == "none"
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["train.out_dir=1:30"]).train.out_dir == "1:30"
    assert c.optim.base_lr == 1e-3 and c.target.loss_weights == {"traj": 0.5} and c.train.batch_size == 3
    assert c.data.list_file == str(Path.home() / "lists" / "train.txt")
    assert load_config(PretrainConfig, "tiny_cpu_mme", ['train.out_dir="~"']).train.out_dir == str(Path.home())
    for bad, said in (("target.max_disp=nan", "target.max_disp"), ("optim.base_lr=inf", "a finite number"),
                      ("target.loss_weights.traj=-1", "must be >= 0"), ("model.drop_path=1.0", "drop_path"),
                      ("model.decoder_heads=0", "decoder_heads must be positive"),
                      ("model.decoder_norm_eps=-1", "decoder_norm_eps must be positive")):  # (a NaN loss from step 1)
        with pytest.raises(ConfigError, match=said):
            load_config(PretrainConfig, "tiny_cpu_mme", [bad])
    from mme.train.config import FinetuneConfig

    for fc_drop in ("1.5", "-1"):  # (a traceback of torch's Dropout at the classifier's build)
        with pytest.raises(ConfigError, match=rf"task.fc_drop must be in \[0, 1\), got {fc_drop}"):
            load_config(FinetuneConfig, "finetune_tiny_cpu", [f"task.fc_drop={fc_drop}"])


def test_a_path_yaml_would_read_as_a_block_mapping_or_list_is_a_text_keys_value_as_written(tmp_path, capsys):
    """``train.out_dir=runs/exp: 2`` (a path holding ': '), ``- x`` or ``D:`` was read as YAML's block mapping or
    list and refused ("{'runs/exp': 2} matches none of ...", also a path given to --resume); a text key takes it as
    written. Other keys still refuse it in one line naming the key, and a collection in brackets is read as one."""
    from mme.cli import main
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    c = load_config(PretrainConfig, "tiny_cpu_mme", [f"train.out_dir={tmp_path}/exp: 2", "train.init=- a.pt",
                                                     "data.root=D:", "target.cache_dir=? x", "train.keep_epochs=[1,2]",
                                                     "target.loss_weights={traj: 2}"])
    assert (c.train.out_dir, c.train.init, c.data.root, c.target.cache_dir) == (f"{tmp_path}/exp: 2", "- a.pt", "D:",
                                                                               "? x")
    assert (c.train.keep_epochs, c.target.loss_weights) == ((1, 2), {"traj": 2.0})
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, "tiny_cpu_mme", ["train.steps=- 1"])
    assert str(info.value) == "config key 'train.steps': expected an integer, got ['1']"
    missing = tmp_path / "run: 1" / "checkpoint-5.pt"
    assert main(["pretrain", "--config", "tiny_cpu_mme", f"train.out_dir={tmp_path / 'out'}", "train.device=cpu",
                 "--resume", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mme pretrain: error: ") and str(missing) in err and "matches none" not in err, err


def test_a_block_collection_is_a_non_text_keys_collection_and_a_text_keys_text(tmp_path):
    """Taking an override YAML reads as a block mapping or list as its text, for text keys, made it text for every
    key: ``train=steps: 5``, ``model=depth: 3``, ``train.keep_epochs=- 1`` and a block list of ``optim.betas``, read
    before, were refused, the tuples' error naming an item ``[0]`` never written, and a section given so beside one
    of its keys was said to be given twice as the whole section. The text is taken where the key's type is known, for
    text keys alone; every other key reads the collection, as before."""
    from mme.config import load_config, parse_overrides
    from mme.train.config import PretrainConfig

    c = load_config(PretrainConfig, "tiny_cpu_mme", ["train=steps: 5", "model=depth: 3", "train.keep_epochs=- 1",
                                                     "optim.betas=- 0.8\n- 0.9", f"train.out_dir={tmp_path}/a: b",
                                                     "train.init=- a.pt"])
    assert (c.train.steps, c.model.depth, c.train.keep_epochs, c.optim.betas) == (5, 3, (1,), (0.8, 0.9))
    assert (c.train.out_dir, c.train.init) == (f"{tmp_path}/a: b", "- a.pt")
    assert parse_overrides(["train=steps: 5", "train.seed=1"]) == {"train": {"steps": "5", "seed": "1"}}
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, "tiny_cpu_mme", ["train.steps=5", "train=steps: 7"])
    assert str(info.value) == ("override 'train=steps: 7': key 'train.steps' is given twice (also by 'train.steps=5'), "
                               "the later would win unsaid: give it once")
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, "tiny_cpu_mme", ["optim.betas=- 0.8\n- x"])
    assert str(info.value) == "config key 'optim.betas[1]': expected a finite number, got 'x'"


def test_a_block_list_for_a_key_that_is_text_or_a_list_is_the_list():
    """``target.kind`` is a text or a list of texts: a block list given to it (``- pixel``) was taken as the text
    ``'- pixel'``, the union's text member tried first, and refused as an unknown target. A block collection is tried
    on the union's other members first, its text taken only where none of them takes it."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    for written, kinds in (("- pixel", ["pixel"]), ("- mme\n- pixel", ["mme", "pixel"]), ("pixel", "pixel")):
        assert load_config(PretrainConfig, "tiny_cpu_mme", [f"target.kind={written}"]).target.kind == kinds
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, "tiny_cpu_mme", ["target.kind=mme: 2"])
    assert str(info.value) == ("target.kind: unknown target ['mme: 2']; choose from ['pixel', 'hog', 'mme', "
                               "'mme-released']")
    for written, said in (("[]", "target.kind: [] names no target"), (",", "target.kind: ',' names no target"),
                          ("[hog, foo, bar]", "target.kind: unknown targets ['foo', 'bar']")):
        with pytest.raises(ConfigError) as info:  # (an empty list was 'unknown target(s) []')
            load_config(PretrainConfig, "tiny_cpu_mme", [f"target.kind={written}"])
        assert str(info.value) == f"{said}; choose from ['pixel', 'hog', 'mme', 'mme-released']"
    assert [plural(n, "key") for n in (0, 1, 2)] == ["keys", "key", "keys"]
    assert [plural(n, "is", "are") for n in (0, 1, 2)] == ["are", "is", "are"]


def test_section_and_quoted_overrides_read_text_keys_as_a_recipe_does():
    """A section given whole was read by plain YAML: ``train={out_dir: 010}`` wrote into '8', ``2024_01`` into
    '202401', and ``on`` or a date were refused as not text, where the dotted form and a recipe keep the text; a
    quoted text (``train.out_dir="runs/my run"``) kept its quotes, where a recipe drops them."""
    c = load_config(PretrainConfig, "tiny_cpu_mme", [
        "train={out_dir: 010, steps: 010}", "data={root: 2024_01, list_file: on, index_dir: 2024-01-05}",
        'target.cache_dir="runs/my run"', "train.init='null'", 'model.preset="small"', 'optim.betas="0.9,0.98"'])
    assert (c.train.out_dir, c.train.steps, c.data.root, c.data.list_file) == ("010", 10, "2024_01", "on")
    assert (c.data.index_dir, c.target.cache_dir, c.train.init) == ("2024-01-05", "runs/my run", "null")
    assert (c.model.embed_dim, c.optim.betas) == (384, (0.9, 0.98))
    with pytest.raises(ConfigError, match=r"override 'train=\{steps: 1, steps: 2\}': key 'steps' is given twice"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["train={steps: 1, steps: 2}"])
    # characters YAML cannot hold (a path's bytes that are not UTF-8, as argv brings them): text, as before
    for path in ("runs/caf\udce9", "a\x01b"):
        assert load_config(PretrainConfig, "tiny_cpu_mme", [f"train.out_dir={path}"]).train.out_dir == path
        assert load_config(PretrainConfig, "tiny_cpu_mme", [f'train.out_dir="{path} x"']).train.out_dir == path + " x"


def test_a_lone_value_for_a_list_key_is_a_list_of_one():
    """``data.scales=1.0`` was refused ("expected a list, got 1.0") where ``1.0,`` and ``[1.0]`` were taken."""
    for written in ("data.scales=1.0", "data.scales=1", "data={scales: 1.0}"):
        assert load_config(PretrainConfig, "tiny_cpu_mme", [written]).data.scales == (1.0,), written
    with pytest.raises(ConfigError, match=r"optim\.betas must be two numbers"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["optim.betas=0.9"])


def test_a_base_recipe_is_never_taken_from_the_working_folder(tmp_path, monkeypatch):
    """A user's edited copy of a packaged recipe in the working folder became the base of every packaged recipe
    built on it (mme_k400_paper trained 100 epochs instead of 1600)."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mme_k400_released.yaml").write_text("train:\n  epochs: 100\n")
    assert load_config(PretrainConfig, "mme_k400_paper").train.epochs == 1600
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "child.yaml").write_text("_base_: gone.yaml\ntrain:\n  steps: 5\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: its _base_: recipe 'gone\.yaml' not found"):
        load_config(PretrainConfig, "mine/child.yaml")


def test_mmes_own_jobs_run_the_packaged_recipes_beside_a_users_copy_of_one(tmp_path, monkeypatch):
    """A bare name that is both a file in the working folder and a packaged recipe is refused as ambiguous; the
    demo and the benches, whose recipes no flag names, were refused so in a folder holding a user's copy of
    tiny_cpu_mme.yaml, with advice they take no flag for. They name the packaged files (packaged_recipe)."""
    from mme.config import RECIPES_DIR, load_config, packaged_recipe
    from mme.demo import DemoSettings, unused_overrides
    from mme.motion.bench_flow import DEMO_RECIPE, recipe_configs
    from mme.train.config import PretrainConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny_cpu_mme.yaml").write_text("model:\n  depth: 1\n")
    with pytest.raises(ConfigError, match="is both tiny_cpu_mme.yaml in the working folder and the packaged"):
        load_config(PretrainConfig, "tiny_cpu_mme", [])
    assert packaged_recipe("tiny_cpu_mme") == DEMO_RECIPE == RECIPES_DIR / "tiny_cpu_mme.yaml"
    assert load_config(PretrainConfig, packaged_recipe("tiny_cpu_mme"), []).model.depth == 4
    assert recipe_configs(DEMO_RECIPE, ())[0].depth == 4
    assert set(unused_overrides(DemoSettings())) == {"mme", "pixel", "hog"}


def test_a_base_may_leave_a_section_or_mapping_empty_for_the_recipe_over_it(tmp_path):
    """Each layer of a recipe is checked as it is read; a base's section or mapping left empty (null: its keys
    commented out) was refused there, though the recipe over it fills it, a chain that loaded before."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    (tmp_path / "base.yaml").write_text("_base_: tiny_cpu_mme\ntarget:\n  loss_weights:\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntarget:\n  loss_weights: {traj: 2}\n")
    assert load_config(PretrainConfig, tmp_path / "child.yaml", []).target.loss_weights == {"traj": 2.0}
    (tmp_path / "base.yaml").write_text("_base_: tiny_cpu_mme\ntarget:\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntarget:\n  track_length: 3\n")
    assert load_config(PretrainConfig, tmp_path / "child.yaml", []).target.track_length == 3


def test_a_section_or_mapping_left_empty_changes_nothing_at_any_layer(tmp_path):
    """A recipe over tiny_cpu_mme whose ``optim:`` and ``train:`` had every key commented out, run with an override
    of a key in each, trained with the defaults' whole sections (an lr 64 times lower, into runs/pretrain) without a
    word; without an override it was refused naming no recipe. A section or mapping left empty (null) is nothing
    changed there, in a recipe over a base as in one without; a recipe of nothing but empty sections is empty."""
    (tmp_path / "mine.yaml").write_text("_base_: tiny_cpu_mme\noptim:\n#  base_lr: 1.0e-4\ntrain:\n#  steps: 100\n")
    for overrides in (["train.steps=2", "optim.min_lr=1e-6"], []):
        mine = load_config(PretrainConfig, tmp_path / "mine.yaml", overrides)
        assert (mine.optim.base_lr, mine.train.batch_size, mine.train.out_dir) == (3e-4, 8, "runs/tiny_cpu_mme")
        assert dataclasses.asdict(mine) == dataclasses.asdict(load_config(PretrainConfig, "tiny_cpu_mme", overrides))
    (tmp_path / "base.yaml").write_text("_base_: tiny_cpu_mme\ntarget:\n  loss_weights: {traj: 2}\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntarget:\n  loss_weights: ~\n")
    assert load_config(PretrainConfig, tmp_path / "child.yaml").target.loss_weights == {"traj": 2.0}
    (tmp_path / "alone.yaml").write_text("optim:\nmodel: None\ntrain:\n  steps: 3\n")  # (None: null, as in a key)
    alone = load_config(PretrainConfig, tmp_path / "alone.yaml")
    assert (alone.train.steps, alone.optim, alone.model) == (3, PretrainConfig().optim, PretrainConfig().model)
    (tmp_path / "nothing.yaml").write_text("optim:\ntrain:\n#  steps: 3\n")
    with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/nothing\.yaml: empty \(a recipe holds at least one "):
        load_config(PretrainConfig, tmp_path / "nothing.yaml")


def test_a_base_given_as_a_path_is_never_a_packaged_recipe(tmp_path):
    """``_base_: ./tiny_cpu_mme.yaml`` with no such file beside the recipe took the packaged tiny_cpu_mme (its sizes
    and out_dir) without a word, where ``--config ./tiny_cpu_mme.yaml`` is refused; ``../configs/x.yaml`` was found
    under the package's folder. A base naming a folder is a path from the recipe's folder."""
    from mme.config import load_config, packaged_recipe
    from mme.train.config import PretrainConfig

    for base in ("./tiny_cpu_mme.yaml", "../configs/tiny_cpu_mme.yaml", "sub/tiny_cpu_mme"):
        (tmp_path / "my.yaml").write_text(f"_base_: {base}\ntrain:\n  steps: 7\n")
        with pytest.raises(ConfigError, match=rf"recipe '{re.escape(base)}' not found \(no such file from .*; the "
                                              rf"packaged recipe of that name is given as tiny_cpu_mme\)$"):
            load_config(PretrainConfig, tmp_path / "my.yaml", [])
    # a tiny_cpu_mme.yaml beside the recipe is what `_base_: tiny_cpu_mme` gives there: the packaged one's path
    (tmp_path / "tiny_cpu_mme.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=rf"the packaged recipe of that name is given as "
                                          rf"{re.escape(str(packaged_recipe('tiny_cpu_mme')))}\)$"):
        load_config(PretrainConfig, tmp_path / "my.yaml", [])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tiny_cpu_mme.yaml").write_text("_base_: tiny_cpu_mme\nmodel:\n  depth: 1\n")
    assert load_config(PretrainConfig, tmp_path / "my.yaml", []).model.depth == 1  # (its own base: the packaged)


def test_a_base_named_without_yaml_is_looked_for_beside_the_recipe_first(tmp_path, monkeypatch):
    """``_base_: tiny_cpu_mme`` skipped the user's edited tiny_cpu_mme.yaml beside the recipe for the packaged one
    (300 steps, not its 11), and ``_base_: mybase`` with mybase.yaml beside was "not found"; ``.yaml`` found both.
    A copy named like a packaged recipe may still build on that one, and the working folder is still never looked
    in."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tiny_cpu_mme.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 11\n")
    (tmp_path / "mine" / "mybase.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  batch_size: 3\n")
    (tmp_path / "mine" / "child.yaml").write_text("_base_: mybase\ntrain:\n  out_dir: runs/child\n")
    c = load_config(PretrainConfig, "mine/child.yaml")
    assert (c.train.steps, c.train.batch_size, c.train.out_dir, c.model.img_size) == (11, 3, "runs/child", 96)
    (tmp_path / "mybase.yaml").write_text("train:\n  steps: 5\n")
    (tmp_path / "mine" / "other.yaml").write_text("_base_: mybase\n")
    (tmp_path / "mine" / "mybase.yaml").unlink()
    with pytest.raises(ConfigError, match=r"other\.yaml: its _base_: recipe 'mybase' not found"):
        load_config(PretrainConfig, "mine/other.yaml")


def test_a_recipe_given_as_a_path_is_never_a_packaged_one_and_a_name_both_are_is_refused(tmp_path, monkeypatch,
                                                                                         caplog):
    """``--config tiny_cpu_mme`` ran the packaged recipe over the user's tiny_cpu_mme.yaml in the working folder, and
    ``./tiny_cpu_mme`` or ``./tiny_cpu_mme.yaml`` (none there) took the packaged one too, the file read unsaid."""
    from mme.config import RECIPES_DIR

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "tiny_cpu_mme.yaml").write_text("_base_: tiny_cpu_mme\nmodel:\n  img_size: 64\ndata:\n  img_size: 64\n")
    (tmp_path / "mine.yml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 7\n")
    packaged = RECIPES_DIR / "tiny_cpu_mme.yaml"
    with pytest.raises(ConfigError, match=rf"^recipe 'tiny_cpu_mme' is both tiny_cpu_mme\.yaml in the working folder "
                                          rf"and the packaged {packaged}: give \./tiny_cpu_mme\.yaml or the packaged"):
        load_config(PretrainConfig, "tiny_cpu_mme")
    with caplog.at_level(logging.INFO, logger="mme.config"):
        for given in ("./tiny_cpu_mme", "./tiny_cpu_mme.yaml", "tiny_cpu_mme.yaml"):
            assert load_config(PretrainConfig, given).model.img_size == 64, given
    assert f"config: recipe {Path('tiny_cpu_mme.yaml')}" in caplog.messages
    assert load_config(PretrainConfig, "mine.yml").train.steps == 7
    assert load_config(PretrainConfig, str(packaged)).model.img_size == 96
    # the packaged recipe's bare name would be refused here (a tiny_cpu_mme.yaml in the working folder): its path
    with pytest.raises(ConfigError, match=rf"^recipe 'sub/tiny_cpu_mme\.yaml' not found \(no such file; the packaged "
                                          rf"recipe of that name is given as {re.escape(str(packaged))}\)$"):
        load_config(PretrainConfig, "sub/tiny_cpu_mme.yaml")
    monkeypatch.chdir(tmp_path / "empty")
    # (which said only "not found (no such file)", where the name is a packaged recipe's given as a file)
    for given in ("./tiny_cpu_mme", "./tiny_cpu_mme.yaml", "tiny_cpu_mme.yaml", "sub/tiny_cpu_mme.yml"):
        with pytest.raises(ConfigError, match=rf"^recipe '{re.escape(given)}' not found \(no such file; the packaged "
                                              rf"recipe of that name is given as tiny_cpu_mme\)$"):
            load_config(PretrainConfig, given)
    with pytest.raises(ConfigError, match=r"^recipe 'mine\.yaml' not found \(no such file\)$"):
        load_config(PretrainConfig, "mine.yaml")
    assert load_config(PretrainConfig, "tiny_cpu_mme").model.img_size == 96


@pytest.mark.parametrize("nesting", ["top-level lists", "lists under a known key", "merges under a known key",
                                     "merges of one mapping ten times"])
def test_a_recipe_of_nested_yaml_aliases_is_refused_or_read_at_once(tmp_path, nesting):
    """A recipe of a few hundred bytes whose lists hold ten aliases each of the list before (8 levels: 10**8 paths
    to the first list's items), or whose mappings merge ('<<') the mapping before ten times (7 levels), hung mme for
    minutes: marking its texts with their recipe walked every path, and under a known key (train.steps) its refusal
    quoted the whole expanded value, a message of hundreds of MB. It is refused as it is read now, naming the recipe
    and how many values it holds, its aliases expanded. A mapping merging the one before ten times in one list (<<:
    [*m0, *m0, ...], 7 levels) holds the first's ten keys, which the merge gave it 10**7 times (6 levels: 9 s and
    435 MB, 7: over 30 s; the cap, counting the mapping made, never reached): it is read at once now, each key merged
    once, its top keys refused as unknown."""
    refusal = r"holds \d+ values \(its YAML aliases expanded\), more than the 100000 mme reads: give fewer$"
    if nesting == "merges of one mapping ten times":
        text = "m0: &m0 {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1, j: 1}\n" + "".join(
            f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 8))
        refusal = r"unknown config keys \['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'\]; "
    elif nesting == "merges under a known key":
        items = ["&m0 {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1, j: 1}"]
        items += [f"&m{i} {{{', '.join(f'{c}: {{<<: *m{i - 1}}}' for c in 'abcdefghij')}}}" for i in range(1, 7)]
        text = f"_base_: tiny_cpu_mme\ntrain:\n  steps: [{', '.join(items)}]\n"
    else:
        items = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
        items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        text = ("\n".join(f"a{i}: {item}" for i, item in enumerate(items)) + "\n" if nesting == "top-level lists"
                else f"_base_: tiny_cpu_mme\ntrain:\n  steps: [{', '.join(items)}]\n")
    (tmp_path / "aliases.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/aliases\.yaml: {refusal}"):
        load_config(PretrainConfig, tmp_path / "aliases.yaml")


def test_a_recipe_that_is_not_utf8_or_cannot_be_read_is_one_line(tmp_path, capsys):
    """A recipe saved in Latin-1 (an accented comment), itself or as a base, and one that cannot be read (an I/O
    error) ended the command with a bare UnicodeDecodeError / OSError traceback. A recipe is read as a list is
    (:func:`mme.data.lists._utf8_text`): its first bad byte's line and offset, or that it was saved as UTF-16 (the
    decoder's own words were given: "'utf-8' codec can't decode byte 0xff in position 0"; of ASCII saved as UTF-16
    without a byte-order mark, "not valid YAML" for its NULs)."""
    from mme.cli import main

    (tmp_path / "latin1.yaml").write_bytes(b"_base_: tiny_cpu_mme\n# r\xe9glages de l'\xe9quipe\ntrain:\n  steps: 3\n")
    (tmp_path / "child.yaml").write_text("_base_: latin1.yaml\ntrain:\n  batch_size: 2\n")
    (tmp_path / "on_io_error.yaml").write_text("_base_: /proc/self/mem\n")  # its read fails with EIO
    for recipe in ("latin1.yaml", "child.yaml"):
        with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/latin1\.yaml: not UTF-8 text \(line 2 holds the "
                                              r"byte 0xe9, at offset 24 of the file\); save it as UTF-8$"):
            load_config(PretrainConfig, tmp_path / recipe)
    text = "_base_: tiny_cpu_mme\ntrain:\n  steps: 3\n"
    for name, data, how in (("bom.yaml", text.encode("utf-16"), "saved as UTF-16, its first bytes the byte-order mark"),
                            ("le.yaml", text.encode("utf-16-le"), "saved as UTF-16 without a byte-order mark")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError) as e:
            load_config(PretrainConfig, tmp_path / name)
        assert str(e.value) == f"recipe {tmp_path / name}: not UTF-8 text ({how}); save it as UTF-8"
    with pytest.raises(ConfigError, match=r"^recipe /proc/self/mem: cannot be read \(Input/output error\)$"):
        load_config(PretrainConfig, tmp_path / "on_io_error.yaml")
    assert main(["pretrain", "--config", str(tmp_path / "child.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mme pretrain: error: recipe {tmp_path}/latin1.yaml: not UTF-8 text (") and \
        err.count("\n") == 1, err


def test_a_recipe_that_cannot_be_looked_for_a_null_key_and_a_nul_in_a_path_are_one_line(tmp_path):
    """A recipe (or its ``_base_``) that cannot be looked for (a folder that cannot be searched, a name too long),
    a null key (``~: 3``, ``train={null: 3}``) and a NUL byte in a path key ended in tracebacks (OSError,
    TypeError, ValueError: embedded null byte); then a NUL byte in a recipe, a ``_base_`` among them, was refused
    without naming the recipe that holds it; ``train.resume`` holding one was looked for as a checkpoint, 'no such
    file', its NUL byte printed raw."""
    too_long = tmp_path / ("r" * 300 + ".yaml")
    with pytest.raises(ConfigError, match=r"^recipe .*/r{300}\.yaml: cannot be read \(File name too long\)$"):
        load_config(PretrainConfig, str(too_long))
    (tmp_path / "child.yaml").write_text(f"_base_: {too_long.name}\ntrain:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: its _base_: recipe .*: cannot be read \(File name too long"):
        load_config(PretrainConfig, tmp_path / "child.yaml")
    (tmp_path / "null_key.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 1\n  ~: 3\n")
    with pytest.raises(ConfigError, match=r"^recipe .*null_key\.yaml: key '~' \(line 4\) is YAML's null, not a name"):
        load_config(PretrainConfig, tmp_path / "null_key.yaml")
    with pytest.raises(ConfigError, match=r"^override 'train=\{null: 3\}': key 'null' \(line 1\) is YAML's null"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["train={null: 3}"])
    (tmp_path / "nul.yaml").write_text('_base_: tiny_cpu_mme\ntrain: {out_dir: "run\\0x"}\n')
    (tmp_path / "over_nul.yaml").write_text("_base_: nul.yaml\ntrain:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/nul\.yaml: config key 'train\.out_dir': 'run\\x00x' "
                                          "holds a NUL byte"):
        load_config(PretrainConfig, tmp_path / "over_nul.yaml")
    for key in ("data.list_file", "data.root", "data.index_dir", "target.cache_dir", "train.init", "train.resume"):
        with pytest.raises(ConfigError, match=rf"^config key '{key}': 'p\\x00' holds a NUL byte, which no path"):
            load_config(PretrainConfig, "tiny_cpu_mme", [f'{key}="p\\0"'])


def test_a_tilde_path_without_a_home_folder_is_refused_naming_key_and_value(monkeypatch, capsys):
    """HOME unset and the user in no passwd entry (a container run with ``--user UID``): ``train.out_dir=~/runs/x``
    made a folder named ``~`` in the working folder (a later ``rm -rf ~`` deletes the real home); ``HOME=`` made it
    ``/runs/x``. Each is one line naming the key (the option) and the value, and why."""
    import pwd

    from mme.cli import main as cli_main
    from mme.train.config import PretrainConfig

    def no_passwd_entry(uid: int):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_passwd_entry)
    for home, why in ((None, "HOME is unset, and this user has no passwd entry"),
                      ("", "HOME is '', not an absolute path")):
        if home is None:
            monkeypatch.delenv("HOME", raising=False)
        else:
            monkeypatch.setenv("HOME", home)
        with pytest.raises(ConfigError) as info:
            load_config(PretrainConfig, "tiny_cpu_mme", ["train.out_dir=~/runs/x"])
        assert str(info.value) == (f"config key 'train.out_dir': '~/runs/x': ~ names the home folder, which this "
                                   f"process has not ({why}); set HOME, or give the path in full")
        with pytest.raises(SystemExit, match="2"):
            cli_main(["check", "l.txt", "--out", "~/c.json"])
        assert (f"argument --out: '~/c.json': ~ names the home folder, which this process has not ({why})"
                in capsys.readouterr().err)
    monkeypatch.setenv("HOME", "/home/x")
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["train.out_dir=~/runs/x"]).train.out_dir == "/home/x/runs/x"


def test_a_base_under_the_home_folder_is_found(tmp_path, monkeypatch):
    """``_base_: ~/recipes/b.yaml`` was looked for as a folder named ``~`` beside the recipe: not found, though every
    text key's ``~/`` is the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "recipes").mkdir(parents=True)
    (tmp_path / "home" / "recipes" / "b.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  batch_size: 3\n")
    (tmp_path / "child.yaml").write_text("_base_: ~/recipes/b.yaml\ntrain:\n  steps: 5\n")
    c = load_config(PretrainConfig, tmp_path / "child.yaml")
    assert (c.train.steps, c.train.batch_size, c.model.img_size) == (5, 3, 96)


def test_a_bad_key_or_value_of_a_recipe_names_the_recipe_that_holds_it(tmp_path):
    """A wrong key or value in a ``_base_`` (a team's common recipe) was refused without naming any file: the user
    looked for it in their own recipe. A layer is checked alone for its keys and types only: what layers set
    together (the model's and the data's image size) still holds across them."""
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "common.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  batch_size: eight\n")
    (tmp_path / "mine.yaml").write_text("_base_: team/common.yaml\ntrain:\n  steps: 10\n")
    with pytest.raises(ConfigError, match=rf"^recipe {tmp_path}/team/common\.yaml: config key 'train\.batch_size': "
                                          r"expected an integer, got 'eight'$"):
        load_config(PretrainConfig, tmp_path / "mine.yaml")
    (tmp_path / "lr.yaml").write_text("_base_: tiny_cpu_mme\noptim:\n  lr: 1e-4\n")
    with pytest.raises(UnknownConfigKeys, match=rf"^recipe {tmp_path}/lr\.yaml: unknown config key "
                                                r"\['optim\.lr'\]"):
        load_config(PretrainConfig, tmp_path / "lr.yaml")
    (tmp_path / "size.yaml").write_text("_base_: tiny_cpu_mme\nmodel:\n  img_size: 64\n")
    (tmp_path / "size2.yaml").write_text("_base_: size.yaml\ndata:\n  img_size: 64\n")
    assert load_config(PretrainConfig, tmp_path / "size2.yaml").data.img_size == 64


def test_a_key_given_twice_in_a_recipe_is_refused_naming_both_lines(tmp_path):
    """YAML keeps the later of two equal keys: a second ``train:`` section dropped the first's steps and out_dir
    (a 300-step run into the base's folder), without a word."""
    (tmp_path / "sections.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 5\n  out_dir: runs/dup\n"
                                            "train:\n  batch_size: 2\n")
    (tmp_path / "keys.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 5\n  steps: 7\n")
    for name, key, lines in (("sections", "train", "2 and 5"), ("keys", "steps", "3 and 4")):
        with pytest.raises(ConfigError, match=rf"recipe .*{name}\.yaml: key '{key}' is given twice \(lines {lines}\)"):
            load_config(PretrainConfig, tmp_path / f"{name}.yaml")


def test_merge_keys_are_read_as_yaml_1_1_and_a_second_one_or_a_yaml_1_2_directive_is_refused(tmp_path):
    """A second merge key ``<<`` in one mapping was read without a word (the later one won: PyYAML takes it as more
    keys), ``<<: [a, b]`` let ``b`` win where a key was longer than one character (YAML 1.1: the first listed
    wins), and ``%YAML 1.2`` was read as 1.1 (``yes`` a boolean, where 1.2 reads text)."""
    (tmp_path / "listed.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  <<: [{steps: 5, batch_size: 2}, "
                                          "{steps: 7, log_every: 3}]\n  out_dir: runs/merged\n")
    c = load_config(PretrainConfig, tmp_path / "listed.yaml")
    assert (c.train.steps, c.train.batch_size, c.train.log_every, c.train.out_dir) == (5, 2, 3, "runs/merged")
    (tmp_path / "own.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  <<: {steps: 5, batch_size: 2}\n  steps: 9\n")
    c = load_config(PretrainConfig, tmp_path / "own.yaml")
    assert (c.train.steps, c.train.batch_size) == (9, 2)
    (tmp_path / "self.yaml").write_text("_base_: tiny_cpu_mme\ntrain: &t\n  steps: 5\n  <<: *t\n")
    assert load_config(PretrainConfig, tmp_path / "self.yaml").train.steps == 5
    for name, text, said in (
            ("nested", "data: {<<: &a {<<: {num_frames: 4}, num_frames: 8}, tubelet: 2}\ntrain: {<<: *a, steps: 3}\n",
             r"unknown config key \['train\.num_frames'\]"),  # (merged before its own check: not refused twice)
            ("inline", "train: {<<: {steps: 5, steps: 7}}\n", r"key 'steps' is given twice"),
            ("twice", "train:\n  <<: {steps: 5}\n  <<: {steps: 7}\n",
             r"the merge key '<<' is given twice in one mapping \(lines 3 and 4\), and which would win is unsaid: "
             r"give one, with a list"),
            ("v12", "train:\n  compile: yes\n", r"%YAML 1\.2 \(line 1\): mme reads YAML 1\.1, where yes/no/on/off are "
                                                 r"booleans \(1\.2: text\): remove the directive")):
        head = "%YAML 1.2\n---\n" if name == "v12" else ""
        (tmp_path / f"{name}.yaml").write_text(f"{head}_base_: tiny_cpu_mme\n{text}")
        with pytest.raises(ConfigError, match=rf"^recipe .*{name}\.yaml: {said}"):
            load_config(PretrainConfig, tmp_path / f"{name}.yaml")
    (tmp_path / "v11.yaml").write_text("%YAML 1.1\n---\n_base_: tiny_cpu_mme\ntrain:\n  compile: yes\n")
    assert load_config(PretrainConfig, tmp_path / "v11.yaml").train.compile is True
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["train.out_dir=%YAML 1.2"]).train.out_dir == "%YAML 1.2"


def test_a_key_given_twice_on_the_command_line_is_refused_naming_both(tmp_path, capsys):
    """``train.steps=5 train.steps=7`` took the later one unsaid, while a section override or a recipe holding a key
    twice was refused; ``--resume auto train.resume=X`` resumed auto unsaid (the flag's override comes last). A
    command's own overrides under the user's (mme demo's) are layers: the user's key replaces the command's."""
    from mme.cli import main

    for given, again, first in ((["train.steps=5", "train.steps=7"], "train.steps=7", "train.steps=5"),
                                (["train.steps=5", "train={steps: 7, out_dir: x}"], "train={steps: 7, out_dir: x}",
                                 "train.steps=5"),
                                (["target.loss_weights.traj=2", "target.loss_weights=null"], "target.loss_weights=null",
                                 "target.loss_weights.traj=2")):
        key = "target.loss_weights" if "null" in again else "train.steps"
        with pytest.raises(ConfigError) as info:
            load_config(PretrainConfig, "tiny_cpu_mme", given)
        assert str(info.value) == (f"override {again!r}: key '{key}' is given twice (also by {first!r}), the later "
                                   "would win unsaid: give it once")
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["target.loss_weights.traj=2", "target.loss_weights.shape=1",
                                                       "train={steps: 7}", "train.out_dir=x"])
    assert cfg.target.loss_weights == {"traj": 2.0, "shape": 1.0} and (cfg.train.steps, cfg.train.out_dir) == (7, "x")
    for flags, said in ((["--resume", "auto", f"train.resume={tmp_path / 'x.pt'}"],
                         f"--resume auto and train.resume={tmp_path / 'x.pt'} both set train.resume: give one"),
                        (["train.overwrite=false", "--overwrite"],
                         "--overwrite and train.overwrite=false both set train.overwrite: give one"),
                        (["train=null", "--overwrite"],  # a section sets each of its keys (config's rule)
                         "--overwrite and train=null both set train.overwrite: give one")):
        assert main(["pretrain", "--config", "tiny_cpu_mme", f"train.out_dir={tmp_path / 'run'}", *flags]) == 1
        assert capsys.readouterr().err == f"mme pretrain: error: {said}\n"
    assert not (tmp_path / "run").exists()
    from mme.config import layered

    assert layered(["model.input_norm=clip", "train.steps=5"], ["train.steps=7"]) == ["model.input_norm=clip",
                                                                                       "train.steps=7"]


def test_a_later_layer_drops_each_earlier_override_setting_the_same_key_mapping_values_too():
    """A layer drops an earlier override of a key it sets, of a section or mapping holding it, or of one it holds,
    each override's keys read once (``train={...}`` sets each of its keys), and keeps the others in their order."""
    from mme.config import layered, same_key_in

    earlier = ["train={steps: 5, seed: 1}", "train.out_dir=a=b", "target.loss_weights.traj=2", "train.seeds=x"]
    assert layered(earlier, ["train.seed=2", "target.loss_weights={shape: 1}"], ["train.out_dir=c"]) == [
        "target.loss_weights.traj=2", "train.seeds=x", "train.seed=2", "target.loss_weights={shape: 1}",
        "train.out_dir=c"]
    assert layered(["train.seed=1", "data.root=r"], ["train={seed: 2}"]) == ["data.root=r", "train={seed: 2}"]
    assert (same_key_in("train", ["data.root", "train.seed"]), same_key_in("train.seed", ["train.seeds"])) == (
        "train.seed", None)


def test_a_key_that_an_earlier_layer_overrides_is_warned_about(tmp_path, caplog):
    """``train.epochs=5`` on a recipe that sets ``train.steps`` changed nothing without a word (steps win); the
    same for ``optim.warmup_epochs`` under ``warmup_steps``, and for a recipe over its base. Setting the winner to
    null is quiet and does what it says. mme demo said it once per config it loaded (16 times)."""
    import logging

    from mme.config import warnings_once

    with caplog.at_level(logging.WARNING, logger="mme.config"):
        c = load_config(PretrainConfig, "tiny_cpu_mme", ["train.epochs=5", "optim.warmup_epochs=1"])
    assert (c.train.steps, c.optim.warmup_steps) == (300, 20)
    assert "train.epochs=5 has no effect: train.steps=300 set before it wins (add train.steps=null" in caplog.text
    assert "optim.warmup_epochs=1 has no effect: optim.warmup_steps=20" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.config"):
        c = load_config(PretrainConfig, "tiny_cpu_mme", ["train.epochs=5", "train.steps=null"])
        assert (c.train.steps, c.train.epochs) == (None, 5)
        load_config(PretrainConfig, "mme_k400_paper", ["train.epochs=5"])
        assert not caplog.text
        (tmp_path / "child.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  epochs: 3\n")
        load_config(PretrainConfig, tmp_path / "child.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        f"recipe {tmp_path}/child.yaml: train.epochs: 3 has no effect: train.steps: 300 set before it wins (add "
        "train.steps=null, or steps: null to the recipe, to use epochs)"]
    caplog.clear()  # within warnings_once (mme demo's configs, one per row) said once, as load_config's own lines
    with caplog.at_level(logging.INFO, logger="mme.config"), warnings_once():
        for _ in range(3):
            load_config(PretrainConfig, "tiny_cpu_mme", ["train.epochs=5", "model.preset=small"])
    assert [r.getMessage() for r in caplog.records if "config: recipe" not in r.getMessage()] == [
        "config: model.preset=small replaces model.depth=4, model.embed_dim=192, model.num_heads=3 set before it",
        "config: train.epochs=5 has no effect: train.steps=300 set before it wins (add train.steps=null to use epochs)"]


def test_a_key_given_beside_the_key_that_wins_over_it_is_warned_about(tmp_path, caplog):
    """``train.epochs=7 train.steps=50`` on one command line trained 50 steps, the epochs dropped without a word (and
    ``optim.warmup_epochs`` beside ``optim.warmup_steps``), where the epochs alone over a recipe's steps were warned
    about; without a recipe, or one without the section, nothing was checked at all."""
    import logging

    (tmp_path / "model.yaml").write_text("model:\n  depth: 1\n")
    for recipe, overrides in (("tiny_cpu_mme", ["train.epochs=7", "train.steps=50", "optim.warmup_epochs=1",
                                                "optim.warmup_steps=5"]),
                              (None, ["train={epochs: 7, steps: 50}", "optim={warmup_epochs: 1, warmup_steps: 5}"]),
                              (tmp_path / "model.yaml", ["train.epochs=7", "train.steps=50", "optim.warmup_epochs=1",
                                                         "optim.warmup_steps=5"])):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme.config"):
            c = load_config(PretrainConfig, recipe, overrides)
        assert (c.train.steps, c.optim.warmup_steps) == (50, 5)
        assert [r.getMessage() for r in caplog.records] == [
            "config: optim.warmup_epochs=1 has no effect: optim.warmup_steps=5 set beside it wins (give one of the "
            "two)", "config: train.epochs=7 has no effect: train.steps=50 set beside it wins (give one of the two)"
        ], recipe


def test_a_shadowed_key_is_judged_on_the_config_the_layers_make(tmp_path, caplog):
    """Each layer was checked as it was merged, before the layers after it: a recipe's epochs over its base's steps
    (or beside its own) was said to have no effect even where the command line then unset the steps
    (``train.steps=null``, the very advice given), and ``train.epochs=null train.steps=50`` was warned about before
    refused. The config the layers make is judged, a recipe's key named in the recipe's words; a key whose winner
    a later layer sets (a recipe's epochs under the command line's steps) is the later choice, and a recipe without
    a base (a run's ``config.yaml``, which holds both) is not checked."""
    import logging

    (tmp_path / "child.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  epochs: 3\n")
    (tmp_path / "both.yaml").write_text("_base_: child.yaml\ntrain:\n  epochs: 7\n  steps: 50\n")
    (tmp_path / "plain.yaml").write_text("train:\n  epochs: 7\n  steps: 50\n")
    for recipe, overrides, length in (("child", ["train.steps=null"], (3, None)),
                                      ("both", ["train.steps=null"], (7, None)),
                                      ("child", ["train.steps=10"], (3, 10)), ("plain", [], (7, 50))):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme.config"):
            c = load_config(PretrainConfig, tmp_path / f"{recipe}.yaml", overrides)
        assert ((c.train.epochs, c.train.steps), caplog.text) == (length, ""), (recipe, overrides)
    with caplog.at_level(logging.WARNING, logger="mme.config"):
        c = load_config(PretrainConfig, tmp_path / "both.yaml")
    assert [r.getMessage() for r in caplog.records] == [
        f"recipe {tmp_path}/both.yaml: train.epochs: 7 has no effect: train.steps: 50 set beside it wins (give one of "
        "the two)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.config"), pytest.raises(ConfigError, match="'train.epochs'"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["train.epochs=null", "train.steps=50"])
    assert not caplog.text


def test_a_recipe_s_text_keys_keep_the_text_yaml_1_1_reads_as_a_number(tmp_path):
    """YAML 1.1 reads ``2024_01`` as 20241, ``010`` as 8 and ``1:30`` as 90: text keys of a recipe file got those
    numbers' digits (a run wrote into runs/20241). They keep the text; number keys still read numbers."""
    import yaml

    (tmp_path / "r.yaml").write_text("_base_: tiny_cpu_pixel\ntrain:\n  out_dir: runs/2024_01\n  batch_size: 3\n"
                                     "  stop_after: 010\ndata:\n  list_file: 010\n  root: 1:30\n  stride: 2.0\n"
                                     "optim:\n  base_lr: 1.5e-4\n  betas: [0.9, 0.95]\n")
    c = load_config(PretrainConfig, tmp_path / "r.yaml")
    assert (c.train.out_dir, c.data.list_file, c.data.root) == ("runs/2024_01", "010", "1:30")
    assert (c.train.batch_size, c.train.stop_after, c.optim.base_lr, c.optim.betas) == (3, 10, 1.5e-4, (0.9, 0.95))
    assert type(c.train.batch_size) is int and type(c.optim.betas[0]) is float and type(c.data.root) is str
    yaml.safe_dump(dataclasses.asdict(c))  # config.yaml: plain values only
    (tmp_path / "d.yaml").write_text("_base_: tiny_cpu_pixel\ntrain:\n  out_dir: 2024-01-05\n  overwrite: yes\n"
                                     "data:\n  root: on\n")  # a date and booleans of YAML 1.1
    d = load_config(PretrainConfig, tmp_path / "d.yaml")
    assert (d.train.out_dir, d.train.overwrite, d.data.root) == ("2024-01-05", True, "on")
    from mme.motion.bench_flow import recipe_configs  # the raw recipe's other reader

    assert (recipe_configs(tmp_path / "r.yaml", ())[2].stride, c.data.stride) == (2, 2)


def test_a_number_is_read_in_decimal_in_an_override_and_a_recipe(tmp_path):
    """YAML 1.1 read ``train.seed=0042`` as octal 34, ``train.steps=1:30`` as 90 (base 60), ``0b11`` as 3 and
    ``optim.base_lr=010`` as 8.0, without a word, while ``096``, no octal, was 96 and ``0o10`` was refused; a
    recipe's ``seed: 010`` was 8. A number key reads its value in decimal, in an override and a recipe alike, and
    refuses a notation that is not decimal, naming it as written."""
    keys = {"train.seed": "0042", "train.steps": "0100", "optim.base_lr": "010", "train.keep_epochs": "[010, 2]"}
    over = load_config(PretrainConfig, "tiny_cpu_mme", [f"{k}={v}" for k, v in keys.items()])
    (tmp_path / "r.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  seed: 0042\n  steps: 0100\n"
                                     "  keep_epochs: [010, 2]\noptim:\n  base_lr: 010\n")
    for c in (over, load_config(PretrainConfig, tmp_path / "r.yaml")):
        assert (c.train.seed, c.train.steps, c.optim.base_lr, c.train.keep_epochs) == (42, 100, 10.0, (10, 2))
        assert type(c.optim.base_lr) is float
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["train.steps=096"]).train.steps == 96
    for override, said in (("train.steps=1:30", "expected an integer, got '1:30'"),
                           ("train.steps=0b11", "expected an integer, got '0b11'"),
                           ("train.seed=0x10", "expected an integer, got '0x10'"),
                           ("train.steps=0o10", "expected an integer, got '0o10'"),
                           ("train.keep_epochs=[0x1]", "expected an integer, got '0x1'"),
                           ("optim.base_lr=1:30", "expected a finite number, got '1:30'")):
        with pytest.raises(ConfigError) as info:
            load_config(PretrainConfig, "tiny_cpu_mme", [override])
        key = override.split("=")[0] + ("[0]" if "[" in override else "")
        assert str(info.value) == f"config key '{key}': {said}", override
    (tmp_path / "hex.yaml").write_text("_base_: tiny_cpu_mme\ntrain:\n  steps: 0x10\n")
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, tmp_path / "hex.yaml")
    assert str(info.value) == f"recipe {tmp_path}/hex.yaml: config key 'train.steps': expected an integer, got '0x10'"


def test_a_later_preset_replaces_the_sizes_set_before_it(tmp_path, caplog):
    """``model.preset=base`` over a recipe that sets the encoder's sizes trains ViT-B (it trained the recipe's
    192x4 model: the recipe's explicit sizes beat the override's preset); keys the same layer sets still win, and
    a recipe naming a preset over its base drops the base's values of it the same way."""
    import logging

    from mme.train.bench import _configs

    with caplog.at_level(logging.INFO, logger="mme.config"):
        c = load_config(PretrainConfig, "tiny_cpu_mme", ["model.preset=base"])
    assert (c.model.embed_dim, c.model.depth, c.model.num_heads, c.model.img_size) == (768, 12, 12, 96)
    assert "model.preset=base replaces model.depth=4, model.embed_dim=192, model.num_heads=3" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mme.config"):
        load_config(PretrainConfig, "tiny_cpu_pixel")  # a recipe's own layers: at debug (every demo run said it)
    assert "replaces" not in caplog.text
    c = load_config(PretrainConfig, "tiny_cpu_mme", ["model.preset=small", "model.depth=6"])
    assert (c.model.embed_dim, c.model.depth, c.model.num_heads) == (384, 6, 6)
    c = load_config(PretrainConfig, "tiny_cpu_pixel", ["target.preset=released"])
    assert (c.target.kind, c.target.track_length, c.target.activation) == ("mme-released", 4, "release")
    (tmp_path / "base.yaml").write_text("target:\n  kind: pixel\n  track_length: 3\nmodel:\n  depth: 2\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntarget:\n  preset: paper\n")
    c = load_config(PretrainConfig, tmp_path / "child.yaml")
    assert (c.target.kind, c.target.track_length, c.model.depth) == ("mme", 6, 2)
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["model.preset=base"]).model.decoder_dim == 128  # not a size
    assert _configs("tiny_cpu_mme", "base", None, None, None, None, None)[0].embed_dim == 768  # mme bench train


@pytest.mark.parametrize("variable, value, least", [("LOCAL_RANK", "abc", 0), ("WORLD_SIZE", "0", 1),
                                                    ("LOCAL_WORLD_SIZE", "0", 1), ("RANK", "-1", 0), ("RANK", "1", 0)])
def test_a_bad_torchrun_variable_is_named(tmp_path, capsys, monkeypatch, variable, value, least):
    """Each was a bare traceback (ValueError from int(), or a ZeroDivisionError in the thread count), or, for a
    RANK out of range, an extract that did nothing and said it was done."""
    from mme.cli import main

    monkeypatch.setenv(variable, value)
    if variable == "RANK":
        (tmp_path / "list.txt").write_text("a.mp4\n")
        code = main(["extract", str(tmp_path / "list.txt"), "--out", str(tmp_path / "cache")])
    else:
        code = main(["pretrain", "--config", "tiny_cpu_mme", "data.list_file=missing.txt", "train.steps=1",
                     f"train.out_dir={tmp_path / 'run'}"])
    assert code != 0
    err = capsys.readouterr().err
    said = (f"{variable}='{value}' in the environment: expected a whole number >= {least}" if value != "1" else
            "RANK=1 in the environment is not below WORLD_SIZE=1")  # extract did nothing and said it was done
    assert said in err, err


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, "tiny_cpu_mme", ["train.bacth_size=4"])
    assert "train.bacth_size" in str(e.value) and "batch_size" in str(e.value) and "accum_steps" in str(e.value)
    with pytest.raises(ConfigError, match="unknown config key.*'optimizer'.*valid keys.*optim"):
        load_config(PretrainConfig, None, ["optimizer.lr=1"])


def test_wrong_type_and_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="train.batch_size.*integer"):
        load_config(PretrainConfig, None, ["train.batch_size=many"])
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(PretrainConfig, None, ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="optim.clip_grad"):
        load_config(PretrainConfig, None, ["optim.clip_grad=-1"])


def test_an_integer_key_of_a_config_built_in_python_takes_integers_alone_and_names_itself():
    """Recipes and overrides are read by each key's type; a config built in Python was not: ``ModelConfig(img_size=
    32.0)`` was taken, its token count 8.0 and the model's build a TypeError of ``torch.empty``; ``img_size="224"``
    and ``DataConfig(stride="4")`` failed with "'<=' not supported between instances of 'str' and 'int'"."""
    import numpy as np

    from mme.data.dataset import DataConfig
    from mme.models.vit import VisionTransformer
    from mme.motion.targets import TargetConfig
    from mme.train.config import TaskConfig, TrainConfig

    tiny = dict(num_frames=4, patch_size=16, tubelet_size=2, embed_dim=32, depth=1, num_heads=2)
    for build, key in ((lambda v: ModelConfig(**{**tiny, "img_size": v}), "model.img_size"),
                       (lambda v: ModelConfig(**{**tiny, "depth": v}), "model.depth"),  # int | None
                       (lambda v: DataConfig(stride=v), "data.stride"),
                       (lambda v: DataConfig(num_frames=v, tubelet=2), "data.num_frames"),
                       (lambda v: TrainConfig(batch_size=v), "train.batch_size"),
                       (lambda v: TaskConfig(num_classes=v), "task.num_classes"),
                       (lambda v: OptimConfig(warmup_steps=v), "optim.warmup_steps"),
                       (lambda v: TargetConfig(kind="mme", track_length=v), "target.track_length")):
        for value in (32.0, "32", True, np.float64(32)):
            with pytest.raises(ConfigError) as info:
                build(value)
            assert str(info.value) == f"config key '{key}': expected an integer, got {value!r}"
    with pytest.raises(ConfigError, match=r"^config key 'model\.img_size': 1180591620717411303424 does not fit a "
                                          r"64-bit integer \(at most 2\*\*63 - 1 = 9223372036854775807 in size\)$"):
        ModelConfig(img_size=2**70)
    # the words of a recipe's or an override's value: the same value, refused alike however it was given
    for override, build in (("data.stride=2.5", lambda: DataConfig(stride=2.5)),
                            ("data.stride=true", lambda: DataConfig(stride=True)),
                            (f"model.img_size={2**70}", lambda: ModelConfig(img_size=2**70)),
                            ("train.keep_epochs=[2,1.5]", lambda: TrainConfig(keep_epochs=(2, 1.5)))):
        with pytest.raises(ConfigError) as given:
            load_config(PretrainConfig, "tiny_cpu_mme", [override])
        with pytest.raises(ConfigError) as built:
            build()
        assert str(given.value) == str(built.value)
    # numpy integers are integers: taken as plain ints, which a run's config.yaml can hold
    m = ModelConfig(**{**tiny, "img_size": np.int64(32), "embed_dim": np.int32(32)})
    assert (type(m.img_size), type(m.embed_dim), m.num_tokens) == (int, int, 8)
    assert VisionTransformer(m)(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 8, 32)
    assert ModelConfig(**{**tiny, "img_size": 32, "depth": None}).depth == 12  # unset, then the base preset's
    # a tuple of integers, item by item (before: keep_epochs=(1.5,) kept no epoch, ("2",) a TypeError at a comparison)
    assert TrainConfig(keep_epochs=[np.int64(2), 4]).keep_epochs == (2, 4)
    for value, said in (((1.5,), "train.keep_epochs[0]': expected an integer, got 1.5"),
                        ((1, "2"), "train.keep_epochs[1]': expected an integer, got '2'"),
                        (2, "train.keep_epochs': expected a list of integers, got 2")):
        with pytest.raises(ConfigError) as info:
            TrainConfig(keep_epochs=value)
        assert str(info.value) == f"config key '{said}"
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=32", "data.img_size=32", "data.stride=2.0"])
    assert (cfg.model.img_size, cfg.data.stride, type(cfg.data.stride)) == (32, 2, int)  # recipes read as before


def test_a_seed_numpy_or_torch_would_refuse_is_one_line_before_the_run(tmp_path, capsys):
    """train.seed=-1 or 2**64 passed validation and died with a traceback in the first batch (np.random.default_rng,
    torch.manual_seed), a negative one after the run's files were written; one rule for every command's seed."""
    from mme.cli import main
    from mme.train.config import FinetuneConfig

    for seed in (-1, 2**63, 2**64):  # (a seed past int64 is refused as any integer key's: the range is the same)
        for cls in (PretrainConfig, FinetuneConfig):
            with pytest.raises(ConfigError) as info:
                load_config(cls, None, [f"train.seed={seed}"])
            assert str(info.value) == (f"train.seed: a seed must be in [0, 2**63 - 1], got {seed}" if seed < 0 else
                                       f"config key 'train.seed': {seed} does not fit a 64-bit integer (at most "
                                       "2**63 - 1 = 9223372036854775807 in size)")
    assert load_config(PretrainConfig, None, [f"train.seed={2**63 - 1}"]).train.seed == 2**63 - 1
    out = tmp_path / "run"
    assert main(["pretrain", "--config", "tiny_cpu_mme", f"train.out_dir={out}", "train.seed=-1"]) == 1
    assert capsys.readouterr().err == "mme pretrain: error: train.seed: a seed must be in [0, 2**63 - 1], got -1\n"
    assert not out.exists()


def test_a_seed_is_a_plain_integer_and_anything_else_is_one_line(tmp_path):
    """A numpy integer seed (of np.arange over seeds, through the Python API) passed and the run died writing its
    config.yaml, which YAML cannot write it into, leaving a folder with only its lock; '5' and None died with a
    TypeError traceback, and True and 2.5 were taken (as 1 and 2 by numpy and torch)."""
    import numpy as np
    import yaml

    from mme.train.config import TrainConfig
    from mme.utils import check_seed

    for seed in (np.int64(3), np.uint8(3), 3):
        train = dataclasses.replace(TrainConfig(), seed=seed)
        assert type(train.seed) is int and train.seed == 3
        assert yaml.safe_load(yaml.safe_dump(dataclasses.asdict(train)))["seed"] == 3
    for seed in (True, 2.5, 3.0, "5", None, np.float64(3)):
        with pytest.raises(ConfigError) as info:
            TrainConfig(seed=seed)
        assert str(info.value) == f"train.seed: a seed must be an integer, got {seed!r}"
    with pytest.raises(ConfigError, match=r"^--seeds: a seed must be an integer, got False$"):
        check_seed(False, "--seeds")
    from mme.data.synth import _check_design, synth_design
    from mme.demo import demo_settings

    seeds = demo_settings(tmp_path, seeds=[np.int64(1), np.int64(2)]).seeds  # mme demo's rows and synth's params
    assert seeds == (1, 2) and all(type(s) is int for s in seeds)  # are JSON, which takes no numpy integer
    with pytest.raises(ConfigError, match=r"^--seeds: a seed must be an integer, got True$"):  # (not 'repeated')
        demo_settings(tmp_path, seeds=[True, 1])
    design = {**synth_design(), "seed": np.int64(3)}
    _check_design(design)
    assert type(design["seed"]) is int and json.dumps(design)


def test_data_and_model_must_agree_on_clip_shape():
    with pytest.raises(ConfigError, match="data.img_size=224 differs from model.img_size=64"):
        load_config(PretrainConfig, None, ["model.img_size=64"])
    cfg = load_config(PretrainConfig, None, ["model.img_size=64", "data.img_size=64"])
    assert cfg.model.num_tokens == 8 * 4 * 4


def test_with_train_init_the_clip_is_checked_against_the_files_patch_and_tubelet(tmp_path):
    """The config's clip was checked against the recipe's patch and tubelet as it was read, before train.init's
    architecture replaced them: a patch-8, tubelet-1 file at 104 px or 7 frames was refused ("model.img_size 104 is
    not a multiple of patch_size 16"; the run uses 8). Checked once the file's are taken, naming the file."""
    from mme.train.engine import resumed_init
    from mme.train.pretrain import _with_architecture, read_init

    src = _tubelet_1_file(tmp_path, patch_size=8)
    clip = ["model.img_size=104", "data.img_size=104", "model.num_frames=7", "data.num_frames=7"]
    with pytest.raises(ConfigError, match="model.img_size 104 is not a multiple of patch_size 16$"):
        load_config(PretrainConfig, "tiny_cpu_mme", clip)  # no train.init: the recipe's tubelet is the run's
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", [*clip, f"train.init={src}"])
    ran = _with_architecture(cfg, None, read_init(cfg))
    assert (ran.model.img_size, ran.model.patch_size, ran.model.num_frames, ran.model.tubelet_size) == (104, 8, 7, 1)
    assert (ran.data.img_size, ran.data.num_frames, ran.data.tubelet) == (104, 7, 1)
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=100", "data.img_size=100", f"train.init={src}"])
    with pytest.raises(ConfigError, match=re.escape(f"model.img_size 100 is not a multiple of patch_size 8 of "
                                                    f"train.init {src}'s weights")):
        _with_architecture(cfg, None, read_init(cfg))
    # the mask's check of the grid too: "masks no token of the (4, 1, 1) grid" (the recipe's patch 16 at 24 px),
    # "of the (0, 6, 6) grid" (its tubelet 2 at 1 frame), the file's grids being (8, 3, 3) and (1, 12, 12)
    for clip, grid in ((["model.img_size=24", "data.img_size=24"], (8, 3, 3)),
                       (["model.num_frames=1", "data.num_frames=1"], (1, 12, 12))):
        cfg = load_config(PretrainConfig, "tiny_cpu_mme", [*clip, f"train.init={src}"])
        ran = _with_architecture(cfg, None, read_init(cfg))
        assert ran.model.grid == grid
        # its resume: the config of the same keys rebuilt with the resumed run's train.init (engine.resumed_init's
        # dataclasses.replace) was refused by the recipe's grid, "masks no token of the (4, 1, 1) grid"
        state = {"config": dataclasses.asdict(ran), "meta": {"cwd": str(tmp_path)}}
        resumed = resumed_init(cfg, ("checkpoint-00000001.pt", state))
        assert resumed.train.init == str(src)
        again = _with_architecture(resumed, ("checkpoint-00000001.pt", state), None)
        assert again.model.grid == grid and (again.model.patch_size, again.model.tubelet_size) == (8, 1)
        assert (again.data.img_size, again.data.num_frames, again.data.tubelet) == \
            (ran.data.img_size, ran.data.num_frames, 1)
        # the deferral is the config's (its train.init), whenever it is rebuilt: without one, the recipe's checks
        with pytest.raises(ConfigError, match="model.mask_ratio=0.7 masks no token of the|is not a multiple of"):
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init=""))
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=8", "data.img_size=8", "model.num_frames=1",
                                                       "data.num_frames=1", f"train.init={src}"])
    with pytest.raises(ConfigError, match=re.escape("model.mask_ratio=0.7 masks no token of the (1, 1, 1) grid")):
        _with_architecture(cfg, None, read_init(cfg))  # (checked with the file's patch and tubelet)


def _tubelet_1_file(tmp_path, **sizes) -> Path:
    """A train.init file of tubelet 1 (the recipes' is 2), patch 16 as theirs unless ``sizes`` say."""
    from mme.models.export import save_pretrained
    from mme.models.vit import VisionTransformer

    return save_pretrained(VisionTransformer(ModelConfig(**{"img_size": 32, "num_frames": 4, "tubelet_size": 1,
                                                            "embed_dim": 32, "depth": 2, "num_heads": 2, **sizes})),
                           tmp_path / "pre")


def _resumed(kind=PretrainConfig, recipe="tiny_cpu_mme") -> tuple[str, dict]:
    """What engine.begin reads of a run of the recipe as it is (tubelet 2, patch 16, 8 frames of 64 px)."""
    return "checkpoint-00000001.pt", {"config": dataclasses.asdict(load_config(kind, recipe, [])),
                                      "meta": {"cwd": os.getcwd()}}


def _applied(cfg, resume, caplog):
    """``cfg``'s run config once its checkpoint's architecture is applied (pre-training's or fine-tuning's), with the
    warnings said."""
    from mme.config import given_in
    from mme.train import engine, finetune, pretrain

    caplog.clear()
    with caplog.at_level("WARNING", logger="mme"):
        if isinstance(cfg, PretrainConfig):
            ran = pretrain._with_architecture(cfg, resume, None if resume else pretrain.read_init(cfg), given_in(cfg))
        else:
            init = None if resume else engine.read_init(cfg.train.init, cfg.model, encoder_only=True)
            ran = finetune._with_architecture(cfg, resume, init, given_in(cfg))
    return ran, [r.getMessage() for r in caplog.records]


FILES = "train.init {src}: the run's architecture is the file's, so these are ignored: "
RUNS = "resuming checkpoint-00000001.pt: its model is the run's own, so these are ignored: "
CLIPS = "resuming checkpoint-00000001.pt: the clips are those its model takes, so these are ignored: "


@pytest.mark.parametrize("kind, keys, said", [
    (PretrainConfig, ["model.tubelet_size=4"], FILES + "model.tubelet_size=4 (the file's: 1)"),
    (PretrainConfig, ["model.tubelet_size=4", "data.tubelet=4"],
     FILES + "model.tubelet_size=4 (the file's: 1), data.tubelet=4 (the file's: 1)"),
    (PretrainConfig, ["model.tubelet_size=3"], FILES + "model.tubelet_size=3 (the file's: 1)"),
    (PretrainConfig, ["model.in_chans=1"], FILES + "model.in_chans=1 (the file's: 3)"),
    ("FinetuneConfig", ["model.tubelet_size=4"], FILES + "model.tubelet_size=4 (the file's: 1)"),
    ("FinetuneConfig", ["model.in_chans=1"], FILES + "model.in_chans=1 (the file's: 3)"),
])
def test_model_keys_train_init_replaces_are_warned_about_as_ignored_not_refused(tmp_path, caplog, kind, keys, said):
    """Model keys beside a train.init whose architecture replaces them (a tubelet, its channels) were refused as the
    config was read ("data.tubelet=2 differs from model.tubelet_size=4 ... set both"; "model.in_chans=1: the clips
    are RGB"), the advice followed only warned of as ignored. One warning; the run takes the file's."""
    from mme.train.config import FinetuneConfig

    kind, recipe = (FinetuneConfig, "finetune_tiny_cpu") if kind == "FinetuneConfig" else (kind, "tiny_cpu_mme")
    src = _tubelet_1_file(tmp_path)
    ran, warned = _applied(load_config(kind, recipe, [f"train.init={src}", *keys]), None, caplog)
    assert (ran.model.tubelet_size, ran.data.tubelet, ran.model.in_chans) == (1, 1, 3)
    assert warned == [said.format(src=src)]


@pytest.mark.parametrize("kind, keys, said, model", [
    (PretrainConfig, ["model.tubelet_size=4"], RUNS + "model.tubelet_size=4 (the run's: 2)", (8, 96, 16, 2)),
    (PretrainConfig, ["model.tubelet_size=4", "data.tubelet=4"],
     RUNS + "model.tubelet_size=4 (the run's: 2), data.tubelet=4 (the run's: 2)", (8, 96, 16, 2)),
    (PretrainConfig, ["model.tubelet_size=3"], RUNS + "model.tubelet_size=3 (the run's: 2)", (8, 96, 16, 2)),
    (PretrainConfig, ["model.patch_size=20"], RUNS + "model.patch_size=20 (the run's: 16)", (8, 96, 16, 2)),
    (PretrainConfig, ["model.patch_size=20", "model.img_size=48", "data.img_size=48"],
     RUNS + "model.patch_size=20 (the run's: 16)", (8, 48, 16, 2)),
    (PretrainConfig, ["model.in_chans=1"], RUNS + "model.in_chans=1 (the run's: 3)", (8, 96, 16, 2)),
    ("FinetuneConfig", ["model.img_size=100", "data.img_size=100"],
     [RUNS + "model.img_size=100 (the run's: 96)", CLIPS + "data.img_size=100 (the run's: 96)"], (8, 96, 16, 2)),
    ("FinetuneConfig", ["model.num_frames=5", "data.num_frames=5"],
     [RUNS + "model.num_frames=5 (the run's: 8)", CLIPS + "data.num_frames=5 (the run's: 8)"], (8, 96, 16, 2)),
    ("FinetuneConfig", ["model.in_chans=1"], RUNS + "model.in_chans=1 (the run's: 3)", (8, 96, 16, 2)),
])
def test_model_keys_a_resume_replaces_are_warned_about_as_ignored_not_refused(caplog, kind, keys, said, model):
    """A resume, which takes its run's architecture (and a fine-tuning run's clip), refused as the config was read
    the keys it then ignored ("model.num_frames 8 is not a multiple of tubelet_size 3", "model.img_size 96 is not a
    multiple of patch_size 20", "model.in_chans=1: the clips are RGB"), a train.init accepting them. One warning;
    the run takes its own (frames, size, patch, tubelet), the clips fit to it."""
    from mme.train.config import FinetuneConfig

    kind, recipe = (FinetuneConfig, "finetune_tiny_cpu") if kind == "FinetuneConfig" else (kind, "tiny_cpu_mme")
    ran, warned = _applied(load_config(kind, recipe, ["train.resume=auto", *keys]), _resumed(kind, recipe), caplog)
    m = ran.model
    assert (m.num_frames, m.img_size, m.patch_size, m.tubelet_size, m.in_chans) == (*model, 3)
    assert (ran.data.num_frames, ran.data.img_size, ran.data.tubelet) == (model[0], model[1], model[3])
    assert warned == (said if isinstance(said, list) else [said])


@pytest.mark.parametrize("keys, refused", [
    (["model.num_frames=4"], "data.num_frames=8 differs from model.num_frames=4: the clips must fit the model"),
    (["model.img_size=48"], "data.img_size=96 differs from model.img_size=48: the clips must fit the model"),
])
@pytest.mark.parametrize("checkpoint", ["train.init=any.pt", "train.resume=auto"])
def test_a_pretraining_clip_unfit_for_its_model_is_refused_as_the_config_is_read(checkpoint, keys, refused):
    """The frames and size a pre-training run with a checkpoint takes from its config are checked as it is read."""
    with pytest.raises(ConfigError, match=f"^{re.escape(refused)}"):
        load_config(PretrainConfig, "tiny_cpu_mme", [checkpoint, *keys])


def test_a_resumed_runs_tubelet_that_does_not_divide_the_clip_is_refused_naming_the_run(caplog):
    """A pre-training resume at a clip its run's tubelet does not divide (the config's 7 frames, the run's tubelet
    2) was refused "model.num_frames 7 is not a multiple of tubelet_size 2", of a 2 the command line did not give
    (model.tubelet_size=1 was warned of as ignored). The refusal names the resumed run, as train.init's names the
    file."""
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["train.resume=auto", "model.tubelet_size=1", "data.tubelet=1",
                                                       "model.num_frames=7", "data.num_frames=7"])
    with pytest.raises(ConfigError, match=re.escape(
            "model.num_frames 7 is not a multiple of tubelet_size 2 of the resumed run's weights "
            "(checkpoint-00000001.pt)") + "$"):
        _applied(cfg, _resumed(), caplog)


def test_a_checkpoint_of_other_channels_than_rgb_is_refused_naming_it(tmp_path, caplog):
    """model.in_chans is the checkpoint's where it gives the architecture: one of 1 channel is refused, named."""
    src = _tubelet_1_file(tmp_path, in_chans=1)
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", [f"train.init={src}"])
    with pytest.raises(ConfigError, match=re.escape(f"model.in_chans=1 of train.init {src}'s weights: the clips are "
                                                    "RGB, 3 channels")):
        _applied(cfg, None, caplog)


@pytest.mark.parametrize("keys, refused", [
    (["model.tubelet_size=4"], "data.tubelet=2 differs from model.tubelet_size=4: the clips must fit the model"),
    (["data.tubelet=3"], "data.tubelet=3 differs from model.tubelet_size=2: the clips must fit the model"),
    (["model.tubelet_size=3", "data.tubelet=3"], "model.num_frames 8 is not a multiple of tubelet_size 3$"),
    (["model.in_chans=1"], "model.in_chans=1: the clips are RGB"),
    (["model.img_size=16", "data.img_size=16", "model.num_frames=2", "data.num_frames=2"],
     re.escape("model.mask_ratio=0.7 masks no token of the (1, 1, 1) grid")),
])
def test_without_a_checkpoint_the_clip_is_checked_against_the_configs_model(tmp_path, keys, refused):
    """Refused as the config is read without a checkpoint, and by engine.begin where --resume auto finds none (the
    config's model is then the run's: its clip's fit, and its mask's token grid, which begin left to the run's
    set-up), before it takes the folder: one that was there is left as it was (it held a .lock after the refusal)."""
    from mme.train import engine

    with pytest.raises(ConfigError, match=f"^{refused}"):
        load_config(PretrainConfig, "tiny_cpu_mme", keys)
    for out in (tmp_path / "fresh", tmp_path / "kept"):
        if out.name == "kept":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
        fresh = load_config(PretrainConfig, "tiny_cpu_mme", ["train.resume=auto", *keys, f"train.out_dir={out}",
                                                            "train.device=cpu"])
        with pytest.raises(ConfigError, match=f"^{refused}"):
            engine.begin(fresh)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept", "notes.txt"]


def test_an_overwritten_folder_whose_checkpoints_do_not_read_checks_the_clip_against_the_configs_model(tmp_path):
    """--resume auto with train.overwrite=true over checkpoints none of which reads starts afresh: the model keys
    left to a checkpoint as the config was read are the run's own, checked by engine.begin (once the folder is
    taken)."""
    from mme.train import engine

    (tmp_path / "checkpoint-00000001.pt").write_bytes(b"not a checkpoint")
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["train.resume=auto", "train.overwrite=true", "model.in_chans=1",
                                                      f"train.out_dir={tmp_path}", "train.device=cpu"])
    with pytest.raises(ConfigError, match="^model.in_chans=1: the clips are RGB"):
        engine.begin(cfg)


def test_an_eval_only_config_leaves_its_whole_model_to_its_classifier():
    """task.eval_only tests its classifier at its clip, with its channels (mme.eval.finetuned): the config's model
    keys beside it are not refused as it is read (they were: "data.img_size=96 differs from model.img_size=100 ...
    set both", a refusal whose advice was then warned of as ignored), as a fine-tuning resume's are not."""
    from mme.train.config import FROM_INIT, FinetuneConfig, taken_from_checkpoint

    keys = ["task.eval_only=true", "train.init=clf.pt"]
    for given in (["model.img_size=100"], ["model.num_frames=7"], ["model.in_chans=1"]):
        cfg = load_config(FinetuneConfig, "finetune_tiny_cpu", [*keys, *given])
        assert taken_from_checkpoint(cfg) == FinetuneConfig.RESUMED_MODEL
    assert taken_from_checkpoint(load_config(FinetuneConfig, "finetune_tiny_cpu", keys[1:])) == FROM_INIT


def _tiny_mae() -> MaskedAutoencoder:
    cfg = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=3, num_heads=2, decoder_dim=16,
                      decoder_heads=2)
    return MaskedAutoencoder(cfg, [HeadSpec("pixel", 2 * 16 * 16 * 3)])


def test_no_weight_decay_on_norms_biases_positions_and_mask_token():
    model = _tiny_mae()
    groups = param_groups(model, 0.05)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert decayed | plain == {n for n, _ in model.named_parameters()} and not decayed & plain
    assert "mask_token" in plain and "encoder.blocks.0.attn.q_bias" in plain and "encoder.norm.weight" in plain
    assert "encoder.blocks.0.attn.qkv.weight" in decayed and "encoder.patch_embed.proj.weight" in decayed
    assert all(p.ndim > 1 for n, p in model.named_parameters() if n in decayed)
    assert all(g["lr_scale"] == 1.0 for g in groups)


def test_layer_decay_scales_lr_by_depth():
    model = _tiny_mae()  # 3 encoder blocks: embedding = layer 0, blocks 1..3, the rest = layer 4
    scale = {n: g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for n in g["names"]}
    assert scale["encoder.patch_embed.proj.weight"] == 0.5**4
    assert scale["encoder.blocks.0.mlp.fc1.weight"] == 0.5**3
    assert scale["encoder.blocks.2.mlp.fc1.bias"] == 0.5**1
    assert scale["decoder_blocks.0.mlp.fc1.weight"] == 1.0  # 'decoder_blocks' are not encoder layers
    assert scale["encoder.norm.weight"] == 1.0


def test_cosine_schedule_warms_up_linearly_then_decays_to_final():
    lrs = [cosine_schedule(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.5) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert lrs[10 + 89 // 2] == pytest.approx(0.55, abs=0.01)  # the cosine's midpoint
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert cosine_schedule(500, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_schedule(0, 1, 0, 2.0, 0.5) == 2.0
    # one step after a warm-up is at final (it stayed at the peak, which the warm-up's last step had reached)
    assert [cosine_schedule(s, 2, 1, 2.0, 0.5) for s in range(3)] == [2.0, 0.5, 0.5]
    assert [cosine_schedule(s, 3, 1, 2.0, 0.5) for s in range(3)] == [2.0, 2.0, 0.5]


@pytest.mark.parametrize(("steps_per_epoch", "epochs", "gap"), [(234, 75, 0.006), (37, 100, 0.026),
                                                                  (13, 100, 0.074)])
def test_after_the_warm_up_the_lr_is_videomaes_within_pi_over_2_per_decay_step(steps_per_epoch, epochs, gap):
    """docs/evaluation.md's bound: VideoMAE's cosine_scheduler runs its cosine over the D steps after the warm-up
    to one step short of min_lr, ours reaches it, so the lr differs by about 0.91/D of the peak (under (pi/2)/D):
    0.006 % for K400 (234 steps per epoch), 0.026 % and 0.074 % for UCF101 and HMDB51 on 8 GPUs (37 and 13
    steps)."""
    peak, final, total, warmup = 1e-3, 1e-6, epochs * steps_per_epoch, 5 * steps_per_epoch
    decay = total - warmup
    videomae = [final + 0.5 * (peak - final) * (1 + math.cos(math.pi * i / decay)) for i in range(decay)]
    most = max(abs(cosine_schedule(warmup + i, total, warmup, peak, final) - v) for i, v in enumerate(videomae))
    assert most / peak < math.pi / 2 / decay and most / peak == pytest.approx(0.91 / decay, rel=0.01)
    assert round(100 * most / peak, 3) == gap


def test_the_weight_decay_schedule_is_a_cosine_from_step_0_on_the_decayed_groups_only():
    """As VideoMAE's wd_schedule_values (cosine_scheduler without warm-up, written only to the groups that decay):
    the weight decay falls from step 0 whatever the lr's warm-up, and norms, biases and position tables keep 0."""
    model = _tiny_mae()
    cfg = OptimConfig(weight_decay=0.05, weight_decay_end=0.0)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    assert {g["decay"] for g in opt.param_groups} == {True, False}
    for step in range(4):
        lr, wd = schedule_step(opt, cfg, step, 20, 5, 1e-3, 1e-5)
        assert lr == pytest.approx(1e-3 * (step + 1) / 5)  # the lr warms up over 5 steps
        assert wd == pytest.approx(0.025 * (1 + math.cos(math.pi * step / 19)))  # 0.05, 0.04966, 0.04865, 0.04699
        assert [g["weight_decay"] for g in opt.param_groups] == [wd if g["decay"] else 0.0 for g in opt.param_groups]
        assert all(g["lr"] == lr for g in opt.param_groups)
    assert schedule_step(opt, cfg, 19, 20, 5, 1e-3, 1e-5) == (pytest.approx(1e-5), pytest.approx(0.0))


def test_optim_config_validation():
    with pytest.raises(ConfigError, match="optim.layer_decay"):
        OptimConfig(layer_decay=1.5)
    with pytest.raises(ConfigError, match="optim.betas"):
        OptimConfig(betas=(0.9, 1.2))


def test_a_negative_final_weight_decay_is_refused():
    """optim.weight_decay_end=-0.5 was taken: the weight decay went negative over the run (0.05, -0.225, -0.5)."""
    with pytest.raises(ConfigError, match=r"optim.weight_decay_end must be >= 0, got -0.5$"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["optim.weight_decay_end=-0.5"])
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["optim.weight_decay_end=0"]).optim.weight_decay_end == 0


def test_a_final_lr_above_the_peak_is_refused_naming_both():
    """optim.min_lr=0.01 over base_lr 3e-4 was taken: the cosine 'decay' raised the lr 33x over the run. Both are
    per optim.lr_batch_ref clips, so they compare as the schedule's peak and final lr do."""
    with pytest.raises(ConfigError, match=r"^optim.min_lr=0.01 is above optim.base_lr=0.0003: .*lower optim.min_lr"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["optim.min_lr=0.01"])
    c = load_config(PretrainConfig, "tiny_cpu_mme", ["optim.min_lr=3e-4", "optim.lr_batch_ref=4"])
    assert c.optim.scaled_lr(8) == (6e-4, 6e-4)  # a constant lr is a schedule


def test_the_shuffled_targets_control_needs_two_clips_per_rank():
    """A batch of 1 was trained on its own targets (the roll of one clip): silently not a control."""
    with pytest.raises(ConfigError, match=r"^train.batch_size=1 with target.shuffled=true: .*>= 2 clips"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["target.shuffled=true", "train.batch_size=1"])
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["target.shuffled=true", "train.batch_size=2"]).target.shuffled
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["train.batch_size=1"]).train.batch_size == 1


MKL_ORDERS = {"mme-first": "import mme, torch; torch.mm(a := torch.randn(64, 64), a)",
              "torch-first": "import torch; torch.mm(a := torch.randn(64, 64), a); import mme",
              "set-late": "import os, torch; torch.mm(a := torch.randn(64, 64), a); "
                          "os.environ['MKL_CBWR'] = 'AUTO,STRICT'; import mme"}
"""Scripts computing with torch after ``import mme``, and before it (and before setting ``MKL_CBWR`` themselves)."""


MKL_REASONS = {"computed first": ("it read MKL_CBWR at its first call, a torch computation before import mme",
                                  "Import mme before any torch computation, or set MKL_CBWR in the environment"),
               "set late": ("it read MKL_CBWR at its first call, a torch computation before the variable was set",
                            "Set MKL_CBWR in the environment, or leave it unset and import mme before any torch "
                            "computation"),
               "not taken": ("MKL did not take that value (MKL reads it once, at its first call, and takes it in "
                             "capitals with a branch before STRICT, as AUTO,STRICT)",
                             "Set MKL_CBWR=AUTO,STRICT in the environment, or leave it unset for import mme to set")}
"""Why MKL is not in the strict mode ``MKL_CBWR`` asks for, and what to do: where ``import mme`` set it, where the
user's script set a value MKL takes after a computation, and where the user set one MKL does not take."""


@pytest.mark.parametrize("order, given, reason", [("mme-first", None, None), ("torch-first", None, "computed first"),
                                                  ("mme-first", "COMPATIBLE", None), ("mme-first", "", None),
                                                  ("mme-first", "auto,strict", "not taken"),
                                                  ("mme-first", "STRICT", "not taken"),
                                                  ("set-late", None, "set late")])
def test_import_mme_puts_mkl_in_its_strict_reproducible_mode_unless_the_user_chose_one(order, given, reason):
    """What README.md and docs/architecture.md say: ``import mme`` sets ``MKL_CBWR=AUTO,STRICT`` and keeps a value
    the user set. MKL reads it at its first call, so only where mme is imported before any torch computation is
    MKL strict (as MKL itself says): a script that computed first had the variable set, MKL not strict, and no word
    of it. A job on the CPU (here: its precision's choice, twice) warns once there. A value of the user's that asks
    for the strict mode in a form MKL does not take (it is case-sensitive, and wants a branch) was said to be read
    late, by a torch computation before import mme: the warning says MKL did not take it. Then a script that
    computed first and set AUTO,STRICT itself was told MKL did not take the value it recommends: a value in a form
    MKL takes that is not in effect was set after a computation, as the warning says. An empty value (``MKL_CBWR=
    $MKL_CBWR`` of a variable not set), which MKL takes as unset, was kept as the user's: MKL in its default mode,
    without a word; it counts as unset."""
    import os
    import subprocess
    import sys

    script = (MKL_ORDERS[order] + "; import logging, os; from mme.train.precision import choose_precision; "
              "from mme.utils import mkl_strict; logging.basicConfig(); "
              "print(os.environ['MKL_CBWR'], mkl_strict(), sep='|'); "
              "[choose_precision('fp32', torch.device('cpu')) for _ in range(2)]")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    proc = subprocess.run([sys.executable, "-c", script], env={**env, **({} if given is None else {"MKL_CBWR": given})},
                          capture_output=True, text=True, timeout=60)
    variable, strict = proc.stdout.strip().split("|")
    assert variable == (given or "AUTO,STRICT"), proc.stderr[-2000:]
    if strict == "None":
        pytest.skip("this torch has no MKL to ask its mode")
    assert strict == str(reason is None and given != "COMPATIBLE")
    warnings = [line for line in proc.stderr.splitlines() if "MKL (torch's CPU BLAS) is not in" in line]
    said = [] if reason is None else [
        "WARNING:mme.utils:MKL (torch's CPU BLAS) is not in the strict reproducible mode MKL_CBWR={} asks for: {}; its "
        "results may vary with memory alignment, and a resumed run not replay bitwise. {}".format(variable,
                                                                                                *MKL_REASONS[reason])]
    assert warnings == said, proc.stderr[-2000:]


def test_the_mkl_cbwr_values_mkl_takes_as_its_strict_mode_are_told_apart():
    """Those this MKL took as its strict mode (measured with mkl_strict, each set before the first computation)."""
    from mme.utils import mkl_takes_strict

    taken = ["AUTO,STRICT", "AVX2,STRICT", "COMPATIBLE,STRICT", "SSE4_2,STRICT", "AVX512_MIC_E1,STRICT", "AUTO, STRICT"]
    refused = ["auto,strict", "Auto,STRICT", "STRICT", "STRICT,AUTO", " AUTO,STRICT", "AUTO ,STRICT", "AUTO,STRICT ",
               "FOO,STRICT", "AUTO,STRICT,AVX2", "AUTO", ""]
    assert [v for v in taken + refused if mkl_takes_strict(v)] == taken


def test_a_device_this_machine_lacks_is_one_line_naming_the_key_or_flag(tmp_path, capsys, monkeypatch):
    """train.device=cuda:0 (the form --device's help gives), mps or xpu on a machine without them passed
    choose_device and failed at model.to() with a traceback; only a bare 'cuda' was one line. So did mme embed and
    mme probe --device cuda:0."""
    from mme.cli import main

    past = torch.cuda.device_count() if torch.cuda.is_available() else 0
    lacks = (f"torch sees {past} CUDA device{'s' * (past > 1)}, cuda:0 to cuda:{past - 1}" if past
             else "torch sees no CUDA device")
    with pytest.raises(ConfigError, match=rf"^train\.device: 'cuda:{past}' requested but {re.escape(lacks)}$"):
        precision.choose_device(f"cuda:{past}")
    for name in ("xpu", "mps"):
        if not getattr(torch, name).is_available():
            with pytest.raises(ConfigError, match=rf"^--device: '{name}' requested but torch sees no {name} device$"):
                precision.choose_device(name, option="--device")
    assert precision.choose_device("cpu") == torch.device("cpu")
    with monkeypatch.context() as m:  # a machine of one GPU
        m.setattr(torch.cuda, "is_available", lambda: True)
        m.setattr(torch.cuda, "device_count", lambda: 1)
        assert precision.choose_device("cuda:0") == torch.device("cuda", 0)
        with pytest.raises(ConfigError, match=r"^train\.device: 'cuda:1' requested but torch sees 1 CUDA device, "
                                              r"cuda:0 to cuda:0$"):
            precision.choose_device("cuda:1")
    assert main(["pretrain", "--config", "tiny_cpu_mme", f"train.out_dir={tmp_path / 'run'}", "train.device=xpu"]) == 1
    assert capsys.readouterr().err == ("mme pretrain: error: train.device: 'xpu' requested but torch sees no xpu "
                                       "device\n")
    assert not (tmp_path / "run").exists()
    assert main(["embed", str(tmp_path / "x.pt"), str(tmp_path / "list.txt"), "--out", str(tmp_path / "e.npy"),
                 "--device", f"cuda:{past}"]) == 1
    assert capsys.readouterr().err == f"mme embed: error: --device: 'cuda:{past}' requested but {lacks}\n"


def test_a_run_chooses_its_device_once_by_its_rank_on_the_node(monkeypatch):
    """A run's start (and task.eval_only's) chooses its device once, before joining the process group: this rank's
    CUDA device by LOCAL_RANK for 'auto' on a machine of two GPUs."""
    from mme.train import engine

    chosen = []
    choose = engine.choose_device
    monkeypatch.setattr(engine, "choose_device", lambda *args: chosen.append(args) or choose(*args))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with torch_as_mme():  # (the job's block, JobScope's: the GPU it decodes on is put back as it ends)
        info, device = engine.join("auto")
    assert (device, info.local_rank, info.world_size, chosen) == (torch.device("cuda", 1), 1, 1, [("auto", 1)])


def test_pyav_cuda_decodes_on_the_gpu_the_job_chose(monkeypatch, tmp_path):
    """data.backend=pyav-cuda decoded on CUDA device LOCAL_RANK, where the job's device is LOCAL_RANK modulo the GPUs
    torch sees, or the cuda:N asked for: a rank 1 that sees one GPU (CUDA_VISIBLE_DEVICES per task) was refused
    ('FFmpeg cannot decode on CUDA device 1'), and train.device=cuda:1 (mme embed, mme extract --device cuda:1)
    decoded on GPU 0, maybe another job's. The job's device is the decoder's, in its process and in its loader
    workers, spawned ones too (they inherit the environment); a job on the CPU decodes on the rank's GPU."""
    from mme.data import video
    from mme.eval.features import check_embed_options
    from mme.motion import extract
    from mme.train import engine

    opened = []
    monkeypatch.setattr(video, "cuda_decoder", lambda gpu, option="data.backend": opened.append((gpu, option)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second rank, which sees one GPU
    assert video.decode_gpu() == 0
    with torch_as_mme():  # (a job's block: JobScope's, embed's, extract.run's)
        assert engine.join("auto")[1] == torch.device("cuda", 0) and video.decode_gpu() == 0
        video.require_backend("pyav-cuda")
        assert opened == [(0, "data.backend")]
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        monkeypatch.delenv("LOCAL_RANK")  # one process asking for the second GPU
        assert engine.join("cuda:1")[1] == torch.device("cuda", 1) and video.decode_gpu() == 1
        worker = subprocess.run([sys.executable, "-c", "from mme.data.video import decode_gpu; print(decode_gpu())"],
                                capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        assert worker.stdout == "1\n", worker.stderr  # (a spawned loader worker, seeing no GPU itself)
        assert engine.join("cpu")[1] == torch.device("cpu") and video.decode_gpu() == 0  # the rank's
        opened.clear()
        assert check_embed_options([tmp_path / "e.npy"], "pyav-cuda", "cuda:1")[0] == torch.device("cuda", 1)
        assert opened == [(1, "--backend")]
    assert os.environ.get(video.DECODE_GPU_ENV) is None  # the caller's, once the job ends
    decoded = []
    monkeypatch.setattr(extract, "extract_video", lambda path, out_path, opts: decoded.append(video.decode_gpu()))
    (tmp_path / "list.txt").write_text("a.mp4\n")
    opened.clear()
    extract.run(str(tmp_path / "list.txt"), str(tmp_path), str(tmp_path / "cache"),
                extract.ExtractOptions(flow="torch-lk", backend="pyav-cuda", device="cuda:1"))
    assert opened == [(1, "--backend")] and decoded == [1]
    assert os.environ.get(video.DECODE_GPU_ENV) is None


def test_the_gpu_a_command_decodes_on_is_the_callers_again_when_it_ends(monkeypatch, tmp_path):
    """mme extract --device cuda:1 (embed, pretrain: any job that chose a CUDA device) called from Python left its GPU
    in the process's environment: every later pyav-cuda decode that chose none (mme viz --backend pyav-cuda, mme bench
    data, the caller's own datasets, their subprocesses) decoded on GPU 1. The caller's choice is back as it ends."""
    from mme.cli import main
    from mme.data import video
    from mme.motion import extract

    opened = []
    monkeypatch.setattr(video, "cuda_decoder", lambda gpu, option="data.backend": opened.append(gpu))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(extract, "extract_video", lambda path, out_path, opts: None)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", video.DECODE_GPU_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "list.txt").write_text("a.mp4\n")
    command = ["extract", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "cache"),
               "--flow", "torch-lk", "--backend", "pyav-cuda", "--device", "cuda:1"]
    assert main(command) == 0 and opened == [1]
    assert os.environ.get(video.DECODE_GPU_ENV) is None
    video.require_backend("pyav-cuda", "--backend")  # a later command's decode, choosing no device
    assert opened == [1, 0]
    monkeypatch.setenv(video.DECODE_GPU_ENV, "0")  # a caller's own choice
    assert main(command) == 0 and opened[-1] == 1 and os.environ[video.DECODE_GPU_ENV] == "0"


def test_a_device_no_run_trains_on_is_refused_by_name_in_a_short_line(monkeypatch):
    """mps on a machine without it (Linux) was refused with ~1,250 characters of torch's dispatcher text, and 'meta'
    (shapes without data) passed, the run dying later with a traceback. A backend torch has an availability check
    for is asked; another's failed allocation gives the first sentence of its reason."""
    monkeypatch.setattr(torch.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        precision.choose_device("mps")
    assert str(info.value) == "train.device: 'mps' requested but torch sees no mps device"
    with pytest.raises(ConfigError) as info:
        precision.choose_device("meta", option="--device")
    assert str(info.value) == ("--device: 'meta' holds shapes without data, which no run trains on; use 'auto', 'cpu' "
                               "or 'cuda'")
    with pytest.raises(ConfigError) as info:  # a backend of no build of torch we run on, without is_available
        precision.choose_device("fpga")
    assert str(info.value) == ("train.device: 'fpga' cannot be used here (Could not run 'aten::empty.memory_format' "
                               "with arguments from the 'FPGA' backend)")


def test_auto_precision_is_fp32_where_bf16_is_not_native_and_the_environment_can_pin_it(monkeypatch, caplog):
    cpu = torch.device("cpu")
    native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert bf16_native(cpu) == native
    monkeypatch.delenv(AUTO_ENV, raising=False)
    if not native:
        assert choose_precision("auto", cpu) == ("fp32", "auto: no native bf16 on this cpu, where emulated bf16 is "
                                                 "far slower than fp32")
    monkeypatch.setattr(precision, "cpu_fp16_native", lambda: False)  # a CPU without AVX512-FP16 or AMX-FP16
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert choose_precision("fp16", cpu) == ("fp16", "requested")
    # emulated there, many times slower than fp32 (before: said of bf16 only)
    assert "fp16 requested on cpu without native fp16 support: it will be emulated and slow" in caplog.text
    # a resumed run keeps what auto chose for it on this kind of device (a close timing switched it), but a bf16
    # taken for native where it is not (an mme that judged a GPU before Ampere so)
    assert choose_precision("auto", cpu, resumed="fp32") == ("fp32", "auto: the resumed run's, on the same device")
    assert choose_precision("auto", cpu, resumed="bf16")[0] == ("bf16" if native else "fp32")
    with monkeypatch.context() as m:
        m.setattr(precision, "bf16_native", lambda device: True)
        assert choose_precision("auto", cpu, resumed="bf16") == ("bf16", "auto: the resumed run's, on the same device")
    with pytest.raises(ConfigError, match="train.precision"):
        choose_precision("fp64", cpu)
    monkeypatch.setenv(AUTO_ENV, "bf16")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert choose_precision("auto", cpu) == ("bf16", f"auto: {AUTO_ENV}=bf16 in the environment")
    assert (f"bf16 forced by {AUTO_ENV} on cpu without native bf16 support" in caplog.text) == (not native)
    assert choose_precision("fp32", cpu)[0] == "fp32"  # an explicit precision wins over the environment
    assert choose_precision("auto", cpu, resumed="fp32")[0] == "bf16"  # and the environment over a resumed run's
    monkeypatch.setenv(AUTO_ENV, "fp64")
    with pytest.raises(ConfigError, match=AUTO_ENV):
        choose_precision("auto", cpu)
    with pytest.raises(ConfigError, match=AUTO_ENV):  # mme demo's check of its rows' precision, before any work
        precision.settled_precision("auto", cpu)


ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics " \
    "fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc " \
    "flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
"""/proc/cpuinfo's first core of a Graviton3 (Neoverse V1: bf16 among its Features)."""


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_precision_on_an_arm_cpu_reads_its_native_bf16_from_proc_cpuinfo(bf16, monkeypatch, caplog):
    """torch's cpuinfo probes are x86's, all False on aarch64: a Graviton3/4 (Neoverse V1/V2), native bf16, got fp32
    'no native bf16 on this cpu', and bf16 asked for was said to be emulated. Its Features line says (``bf16``;
    a Graviton2's has none)."""
    import mme.utils as utils

    cpu = torch.device("cpu")
    monkeypatch.delenv(AUTO_ENV, raising=False)
    monkeypatch.setattr(utils.platform, "machine", lambda: "aarch64")
    for probe in (p for probes in utils.CPU_FEATURES.values() for p in probes if hasattr(torch.cpu, p)):
        monkeypatch.setattr(torch.cpu, probe, lambda: False)  # as torch's x86 probes answer on Arm
    monkeypatch.setattr(utils, "_proc_cpuinfo", lambda: ARM_CPUINFO if bf16 else ARM_CPUINFO.replace(" bf16 ", " "),
                        raising=False)
    utils.cpu_features.cache_clear()
    try:
        assert utils.cpu_features() == (("BF16",) if bf16 else ())
        assert bf16_native(cpu) == bf16
        assert choose_precision("auto", cpu) == (("bf16", "auto: native bf16 on this cpu") if bf16 else (
            "fp32", "auto: no native bf16 on this cpu, where emulated bf16 is far slower than fp32"))
        with caplog.at_level(logging.WARNING, logger="mme"):
            assert choose_precision("bf16", cpu) == ("bf16", "requested")
        assert ("will be emulated" in caplog.text) == (not bf16)
        assert utils.same_device("Neoverse-V1", "Neoverse-V1 (BF16)", True)  # (BF16) read as cpu_name's features
    finally:
        utils.cpu_features.cache_clear()


def test_auto_precision_on_a_gpu_before_ampere_is_fp32_judged_on_the_runs_device(monkeypatch, caplog):
    """torch's ``cuda.is_bf16_supported()`` counts emulated bf16 (a V100 or T4, compute capability 7.x, makes bf16
    tensors) and judges the current device: on a V100, auto took bf16 'native bf16 on this cuda' and bf16 asked for
    was not said to be emulated, and a run on a V100 as cuda:1 beside an A100 as cuda:0 was judged by the A100."""
    capability = {0: 8, 1: 7}  # an A100 as cuda:0, a V100 as cuda:1
    monkeypatch.delenv(AUTO_ENV, raising=False)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(
        major=capability[getattr(device, "index", device)], minor=0))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # as a V100's is
    a100, v100 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert (bf16_native(a100), bf16_native(v100)) == (True, False)
    assert choose_precision("auto", a100) == ("bf16", "auto: native bf16 on this cuda")
    assert choose_precision("auto", v100) == ("fp32", "auto: no native bf16 on this cuda, where emulated bf16 is "
                                              "far slower than fp32")
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert choose_precision("bf16", v100) == ("bf16", "requested")
    assert "bf16 requested on cuda:1 without native bf16 support: it will be emulated and slow" in caplog.text
    # a run begun at auto by an mme that took a V100's bf16 as native, resumed there: auto chooses again, where the
    # same run on an A100 keeps its bf16
    from mme.train import engine
    from mme.train.config import TrainConfig

    names = {0: "NVIDIA A100-SXM4-40GB", 1: "Tesla V100-SXM2-16GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: names[getattr(device, "index", device)])
    for device, chosen in ((a100, ("bf16", "auto: the resumed run's, on the same device: auto: native bf16 on this "
                                           "cuda")),
                           (v100, ("fp32", "auto: no native bf16 on this cuda, where emulated bf16 is far slower than "
                                           "fp32"))):
        meta = {"precision": "bf16", "precision_reason": "auto: native bf16 on this cuda",
                "device_name": names[device.index]}
        assert engine.run_precision(TrainConfig(), device, torch.nn.Linear(1, 1), lambda device, clips: None,
                                    meta) == chosen
    monkeypatch.setattr(torch.version, "hip", "6.2")  # a ROCm GPU's bf16
    assert bf16_native(v100)


EMULATED_FP16 = "fp16 requested on cpu without native fp16 support: it will be emulated and slow (fp32 is faster)"
UNKNOWN_FP16 = ("fp16 requested on cpu, not known to compute fp16 natively: it may be emulated and slow (fp32 then is "
                "faster)")


@pytest.mark.parametrize(("machine", "capabilities", "amx_fp16", "said"), [
    ("x86_64", {"avx512_fp16": True, "amx_fp16": False}, False, None),  # Sapphire Rapids
    ("x86_64", {"avx512_fp16": True, "amx_fp16": True}, True, None),  # Granite Rapids
    ("x86_64", {"avx512_fp16": False, "amx_fp16": False}, False, EMULATED_FP16),
    ("x86_64", None, True, None),  # a torch without get_capabilities, its AMX-FP16 probe alone
    ("x86_64", None, False, UNKNOWN_FP16),  # (it has no probe of AVX512-FP16)
    ("aarch64", {"fp16_arith": True}, False, UNKNOWN_FP16),  # its fp16 arithmetic: not taken as fast matmuls
])
def test_fp16_asked_for_on_a_cpu_is_warned_as_emulated_only_where_it_is(machine, capabilities, amx_fp16, said,
                                                                        monkeypatch, caplog):
    """fp16 on any CPU was warned 'without native fp16 support ... (fp32 is faster)', also on CPUs with AVX512-FP16
    or AMX-FP16, which compute it natively (oneDNN's fp16 matmuls). torch's probes decide; where they cannot tell,
    the warning says it is not known to be native."""
    import mme.utils as utils

    cpu = torch.device("cpu")
    monkeypatch.setattr(utils.platform, "machine", lambda: machine)
    if capabilities is None:
        monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    else:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: amx_fp16, raising=False)
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert choose_precision("fp16", cpu) == ("fp16", "requested")
    assert [r.getMessage() for r in caplog.records if "fp16" in r.getMessage()] == ([said] if said else [])
    assert bool(precision.emulation("fp16", cpu)) == (said is not None)
    from mme.train import bench  # its row under --all-precisions says what the warning says

    label = {None: "fp16", EMULATED_FP16: "fp16 (emulated)", UNKNOWN_FP16: "fp16 (not known native)"}[said]
    assert f"{label} eager" in [name for name, *_ in bench._variants(cpu, True, False, False, False)]


AS_CPU = """\
import mme.train.precision, mme.utils
mme.utils.cpu_features = mme.train.precision.cpu_features = lambda: {features}
"""
"""A pytest plugin (``-p``) that makes the suite's CPU one of ``features`` (:func:`mme.utils.cpu_features`'s), as its
conftest sees it."""


def test_the_suite_and_its_rerun_as_on_the_other_cpu_run_in_bf16_and_fp32_on_either_kind_of_cpu(tmp_path, monkeypatch):
    """On a CPU with native bf16 the suite's tiny models time fp32 faster, so both passes of make test ran fp32
    (--as-other-cpu pinned fp32 too): its bf16 path never ran there. Each kind of CPU now runs the suite in one of the
    two and the rerun in the other (said in the header), unless MME_AUTO_PRECISION is set. Each case by the
    conftest's hooks in this process; one by a pytest process, whose header says it."""
    import conftest

    class Config:  # what the hooks read of pytest's
        def __init__(self, other: bool):
            self.other, self.stash = other, pytest.Stash()

        def getoption(self, name: str) -> bool:
            assert name == "--as-other-cpu"
            return self.other

    kinds = {"native": ("AVX2", "AVX-512", "AVX512-BF16", "AMX"), "avx2": ("AVX2",)}
    said = {}
    for cpu, features in kinds.items():
        for other in (False, True, "pinned"):
            with monkeypatch.context() as m:
                m.setattr(precision, "cpu_features", lambda features=features: features)
                m.setenv(AUTO_ENV, "fp32")  # (recorded, so that what the hook sets is undone)
                if other != "pinned":
                    m.delenv(AUTO_ENV)
                config = Config(other is True)
                conftest.pytest_configure(config)
                said[cpu, other] = re.search(r"precision 'auto' on this CPU: (\w+)",
                                             conftest.pytest_report_header(config)).group(1)
    assert said.pop(("avx2", False)) == "fp32" and said.pop(("avx2", True)) == "bf16"
    assert said.pop(("avx2", "pinned")) == "fp32"  # the user's pin stands
    assert said == {("native", False): "bf16", ("native", True): "fp32", ("native", "pinned"): "fp32"}

    (tmp_path / "as_native.py").write_text(AS_CPU.format(features=kinds["native"]))
    env = {k: v for k, v in os.environ.items() if k != AUTO_ENV} | {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "as_native", "--co",
                           f"{__file__}::test_a_cpu_run_takes_the_cores_its_loader_workers_leave"],
                          cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "precision 'auto' on this CPU: bf16 (" in proc.stdout
    assert ", set by the suite on a CPU with native bf16 (tests/conftest.py)" in proc.stdout


def test_a_cpu_run_takes_the_cores_its_loader_workers_leave(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    before = torch.get_num_threads()
    monkeypatch.setattr(precision, "usable_cores", lambda: 6)
    monkeypatch.setattr(precision, "core_share", lambda: (6, ""))
    try:
        torch.set_num_threads(4)
        assert precision.choose_threads(None, cpu, 2) == (4, "auto: 6 cores less 2 loader workers")  # torch's 4
        assert precision.choose_threads(None, cpu, 4) == (2, "auto: 6 cores less 4 loader workers")
        assert precision.choose_threads(None, cpu, 8) == (1, "auto: at least 1: the 8 loader workers leave none of 6 "
                                                             "cores; data.num_workers=5 suits this machine")
        assert precision.choose_threads(None, cpu, 6) == (1, "auto: at least 1: the 6 loader workers leave none of 6 "
                                                             "cores")  # as many: each core is a worker's
        assert precision.choose_threads(3, cpu, 4) == (3, "train.threads")
        assert precision.choose_threads(8, cpu, 0) == (8, "train.threads, more than the 6 usable cores")
        assert precision.choose_threads(None, cpu, 0) == (4, "auto: 6 cores less 0 loader workers, capped at torch's "
                                                             "4 (its physical cores, or OMP_NUM_THREADS: torchrun's "
                                                             "is 1)")
        assert precision.choose_threads(None, cuda, 4) == (4, "torch's; the step runs on cuda")
        monkeypatch.setattr(precision, "core_share", lambda: (1, ""))  # one core: one of each, said so
        assert precision.choose_threads(None, cpu, 0) == (1, "auto: 1 core less 0 loader workers")
        assert precision.choose_threads(None, cpu, 1) == (1, "auto: at least 1: the 1 loader worker leaves none of "
                                                             "1 core")
    finally:
        torch.set_num_threads(before)
    monkeypatch.undo()
    cores = precision.usable_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks of torchrun on this node share its cores
    assert precision.usable_cores() == max(1, cores // 2)
    with pytest.raises(ConfigError, match="train.threads"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["train.threads=0"])


def test_the_usable_cores_keep_to_the_cgroups_cpu_quota(tmp_path, monkeypatch):
    """docker --cpus=2 or a Kubernetes CPU limit set a quota and leave the affinity mask the host's: synth's
    processes and the step's threads were the host's 64 cores, each fighting for two; they keep to the quota (v2
    cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, the least of the cgroup's and its ancestors')."""
    from mme import utils

    monkeypatch.setattr(utils, "CGROUP_FS", tmp_path, raising=False)
    monkeypatch.setattr(utils, "PROC_CGROUP", tmp_path / "self-cgroup", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    (tmp_path / "self-cgroup").write_text("0::/\n")
    assert utils.usable_cores() == 64  # no cpu.max at the top: no quota
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert utils.usable_cores() == 2
    assert utils.core_share() == (2, " (the cgroup's CPU quota of 2)")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks in the container share it
    assert utils.core_share() == (1, " (the cgroup's CPU quota of 2, split between 2 ranks)")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert utils.core_share() == (64, "")
    (tmp_path / "job" / "step").mkdir(parents=True)  # its own cgroup, a quota on its parent
    (tmp_path / "job" / "cpu.max").write_text("250000 100000\n")
    (tmp_path / "self-cgroup").write_text("0::/job/step\n")
    assert utils.usable_cores() == 3  # 2.5 CPUs: three threads use it
    (tmp_path / "self-cgroup").write_text("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n")  # v1, the host's path
    v1 = tmp_path / "cpu,cpuacct"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert utils.cpu_quota() is None
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")  # the container's own, shown at the top
    assert utils.usable_cores() == 4
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(32)
        assert precision.choose_threads(None, torch.device("cpu"), 2) == (
            2, "auto: 4 cores (the cgroup's CPU quota of 4) less 2 loader workers")
    finally:
        torch.set_num_threads(before)


def test_the_nodes_ranks_split_a_narrow_mask_they_inherit(tmp_path, monkeypatch):
    """taskset -c 0-7 torchrun --nproc_per_node 4 on 64 CPUs: the 4 ranks inherit one 8-CPU mask; each takes 2,
    not 8 (32 threads on 8 CPUs). A mask is taken as the ranks' shared one."""
    from mme import utils

    monkeypatch.setattr(utils, "CGROUP_FS", tmp_path, raising=False)
    monkeypatch.setattr(utils, "PROC_CGROUP", tmp_path / "self-cgroup", raising=False)
    (tmp_path / "self-cgroup").write_text("0::/\n")  # (a cgroup without a CPU quota)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert utils.core_share() == (2, "")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert utils.usable_cores() == 1  # at least one


@pytest.mark.parametrize("bf16_ms,fp32_ms,expected", [(20, 60, "bf16"), (60, 20, "fp32"), (50, 52, "fp32")])
def test_auto_precision_on_a_native_bf16_cpu_takes_the_faster_step(bf16_ms, fp32_ms, expected, monkeypatch):
    """The measured choice, with steps of known duration (a clock that each step advances: slept steps were
    timed by a loaded machine's scheduler): bf16 only when it is BF16_MIN_SPEEDUP times faster."""
    w = torch.ones(1, requires_grad=True)
    clock = [0.0]
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(thread_time=lambda: clock[0],
                                                                 process_time=lambda: clock[0]))

    def loss():
        clock[0] += (bf16_ms if torch.is_autocast_enabled("cpu") else fp32_ms) / 1000
        return (w * 2).sum()

    state = torch.get_rng_state()
    chosen, reason = faster_precision(TimedLoss(loss, 1), torch.device("cpu"))
    assert chosen == expected and reason.startswith("auto: measured here, forward and backward of 1 clip take")
    assert torch.equal(torch.get_rng_state(), state)
    assert f"needs {BF16_MIN_SPEEDUP}x" in reason


def test_auto_precision_takes_the_faster_step_through_a_burst_of_load(monkeypatch):
    """A burst of load as long as four passes, which fell on bf16's alone (fp32's passes were all timed first, then
    bf16's), made fp32 the faster where bf16 is 1.4x faster: 2 of 12 runs under bursts of load. Timed in turns,
    the burst slows both alike, and the best of each is its unloaded step."""
    w = torch.ones(1, requires_grad=True)
    clock, passes = [0.0], [0]
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(thread_time=lambda: clock[0],
                                                                 process_time=lambda: clock[0]))

    def loss():
        passes[0] += 1
        clock[0] += ((10 if torch.is_autocast_enabled("cpu") else 14) + 30 * (5 <= passes[0] <= 8)) / 1000
        return (w * 2).sum()

    chosen, reason = faster_precision(TimedLoss(loss, 3), torch.device("cpu"))
    assert (chosen, reason) == ("bf16", "auto: measured here, forward and backward of 3 clips take 10.0 ms in bf16 vs "
                                        "14.0 ms in fp32, best of 5 rounds (bf16 needs 1.1x)")


def _fake_pass_clocks(monkeypatch, threads: int):
    """Fake torch threads and the clocks faster_precision may read, each a list its fake pass advances: thread CPU
    time, process CPU time, wall time."""
    clocks = [0.0], [0.0], [0.0]
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(
        **{name: (lambda c=c: c[0]) for name, c in zip(("thread_time", "process_time", "perf_counter"), clocks)}))
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    return clocks


def test_auto_precision_times_a_pass_on_the_cpu_time_of_its_thread_at_one_thread(monkeypatch):
    """On a shared machine (a load of 2.6 to 3.6 on 2 cores), wall time counted other processes' turns on the core,
    and a model 1.4x faster in bf16 took fp32 in 2 to 4 runs of 20, kept for the whole run. At one thread a pass is
    timed on its thread's CPU time, which the other processes do not lengthen (nor another thread of the process,
    which counts in its CPU time); here they take 50 ms in each of the first six bf16 passes (the warm-up's and five
    timed)."""
    w = torch.ones(1, requires_grad=True)
    (thread, process, wall), passes = _fake_pass_clocks(monkeypatch, 1), [0]

    def loss():
        bf16 = torch.is_autocast_enabled("cpu")
        passes[0] += bf16
        thread[0] += (40 if bf16 else 56) / 1000
        for clock in (process, wall):
            clock[0] += ((40 if bf16 else 56) + 50 * (bf16 and passes[0] <= 6)) / 1000
        return (w * 2).sum()

    assert faster_precision(TimedLoss(loss, 4), torch.device("cpu")) == (
        "bf16", "auto: measured here, forward and backward of 4 clips take 40.0 ms in bf16 vs 56.0 ms in fp32, best of "
        "5 rounds (bf16 needs 1.1x)")


def test_auto_precision_times_further_rounds_where_the_two_are_close_on_the_cpu_time_of_the_process(monkeypatch):
    """At more than one thread a pass is timed on the process's CPU time, all its threads' work: on the wall clock,
    other processes' load (here 100 ms on each bf16 pass) chose fp32 for a model 1.4x faster in bf16 (4 of 5 ordinary
    runs on 2 threads, a load of 5); the calling thread's CPU time misses the other threads' share (here it sees 30 ms
    in either). Where the bests are near bf16's 1.1x (within CLOSE either side), rounds follow until the choice is
    clear, at most MAX_ROUNDS: 16 ms more in bf16's first eight passes made 1.4x look like 1.0x."""
    w = torch.ones(1, requires_grad=True)
    (thread, process, wall), passes = _fake_pass_clocks(monkeypatch, 2), [0]

    def loss(bf16_ms=40, fp32_ms=56, loaded=8):
        bf16 = torch.is_autocast_enabled("cpu")
        passes[0] += bf16
        work = ((bf16_ms if bf16 else fp32_ms) + 16 * (bf16 and passes[0] <= loaded)) / 1000
        thread[0] += 0.030
        process[0] += work
        wall[0] += work + 0.100 * bf16
        return (w * 2).sum()

    assert faster_precision(TimedLoss(loss, 4), torch.device("cpu")) == (
        "bf16", "auto: measured here, forward and backward of 4 clips take 40.0 ms in bf16 vs 56.0 ms in fp32, best of "
        "8 rounds (bf16 needs 1.1x)")
    passes[0] = 0
    chosen, reason = faster_precision(TimedLoss(lambda: loss(50, 52, 0), 4), torch.device("cpu"))
    assert chosen == "fp32" and reason.endswith(f"best of {precision.MAX_ROUNDS} rounds (bf16 needs 1.1x)")


def test_auto_precision_stops_further_rounds_after_about_max_timing_s_of_its_passes(monkeypatch):
    """Further rounds stop once the passes took MAX_TIMING_S (3 s) on the pass clock, checked before each round:
    passes of 150 and 156 ms (close) reach 3.06 s after the warm-up and 9 rounds. The wall clock, which load
    stretches (here by 1 s a pass), does not count: on it the 3 s went by in the first six rounds, and under load no
    further round ran."""
    w = torch.ones(1, requires_grad=True)
    thread, _, wall = _fake_pass_clocks(monkeypatch, 1)

    def loss():
        thread[0] += (150 if torch.is_autocast_enabled("cpu") else 156) / 1000
        wall[0] += 1.0
        return (w * 2).sum()

    assert faster_precision(TimedLoss(loss, 4), torch.device("cpu")) == (
        "fp32", "auto: measured here, forward and backward of 4 clips take 150.0 ms in bf16 vs 156.0 ms in fp32, best "
        "of 9 rounds (bf16 needs 1.1x)")


def test_commands_refuse_settings_they_own_or_cannot_use(tmp_path, capsys):
    """mme demo's overrides may not set what each of its runs sets (train.seed=3 made every 'seed' seed 3, and
    its spread over seeds a fake); mme extract refuses a bound a run refuses (--max-disp -1 wrote every track as
    +-1 px)."""
    from mme.cli import main
    from mme.demo import demo_settings

    with pytest.raises(ConfigError, match=r"^mme demo sets these keys of its runs itself: train.seed \(use --seeds\)$"):
        demo_settings(tmp_path, overrides=["train.seed=3", "model.depth=2"])
    with pytest.raises(ConfigError, match=r"itself: train.out_dir \(use --out\), train.seed \(use --seeds\)$"):
        demo_settings(tmp_path, overrides=["train={seed: 5, out_dir: /tmp/elsewhere}"])  # a mapping sets them too
    with pytest.raises(ConfigError, match=r"^target.kind: mme demo sets what each row is"):
        demo_settings(tmp_path, overrides=["target={kind: mme}"])
    from mme.demo import DemoSettings  # the Python route of docs/experiments.md: demo(DemoSettings(...)), checked alike

    with pytest.raises(ConfigError, match=r"^mme demo sets these keys of its runs itself: train.seed \(use --seeds\)$"):
        DemoSettings(out=tmp_path, overrides=["train.seed=5"])  # (was taken: every seed's row trained with seed 5)
    with pytest.raises(ConfigError, match=r"^train.stop_after: mme demo sets what each row is"):
        DemoSettings(out=tmp_path, overrides=["train.stop_after=1"])
    (tmp_path / "list.txt").write_text("a.mp4\n")
    with pytest.raises(SystemExit):
        main(["extract", str(tmp_path / "list.txt"), "--out", str(tmp_path / "c"), "--max-disp", "-1"])
    assert "argument --max-disp: must be a finite number > 0, got -1" in capsys.readouterr().err


def test_unset_is_unset_however_written_and_text_keys_refuse_it():
    """``model.preset=null`` (or ``~``, or nothing) dropped the recipe's sizes as a change of preset would, where
    ``None`` kept them: a ViT-B trained for the tiny recipe's; ``task.val_list=None`` was the text 'None' (a
    folder of that name was made, then not read as a list)."""
    from mme.train.config import FinetuneConfig, PretrainConfig

    sizes = {text: (c.model.embed_dim, c.model.depth) for text in ("None", "null", "~", "")
             for c in [load_config(PretrainConfig, "tiny_cpu_mme", [f"model.preset={text}"])]}
    assert set(sizes.values()) == {(192, 4)}, sizes
    with pytest.raises(ConfigError, match=r"task.val_list': 'None' would be taken as that text"):
        load_config(FinetuneConfig, "finetune_tiny_cpu", ["task.val_list=None"])
    assert load_config(FinetuneConfig, "finetune_tiny_cpu", ["task.val_list="]).task.val_list == ""


def test_an_empty_value_of_a_key_that_is_not_text_is_refused(capsys):
    """``train.steps=$STEPS``, STEPS unset, unset the recipe's 300 steps: the run went by the default 1600 epochs
    (6400 steps), said only in the start-up's derived block, where ``train.batch_size=`` was refused. An empty value
    is a text: a key that is not text refuses it, ``null`` unsetting a key; a text key takes it as before. The empty
    list or mapping is named where the key takes one (it was ``[]`` for ``optim.betas``, which refuses it as not two
    numbers, and nothing for ``target.loss_weights``, which takes ``{}``)."""
    from mme.cli import main

    for key, said in (("train.steps", "give its value, or null to unset it"),
                      ("model.depth", "give its value, or null to unset it"), ("train.batch_size", "give its value"),
                      ("optim.base_lr", "give its value"), ("train.compile", "give its value"),
                      ("train.keep_epochs", "give its value ([] for none)"), ("train", "give its value"),
                      ("optim.betas", "give its value"), ("data.rrc_scale", "give its value"),
                      ("data.scales", "give its value"), ("target.loss_weights", "give its value ({} for none)")):
        with pytest.raises(ConfigError) as info:
            load_config(PretrainConfig, "tiny_cpu_mme", [f"{key}="])
        assert str(info.value) == (f"config key '{key}': empty (an unset shell variable?), which only a text key "
                                   f"takes: {said}")
    c = load_config(PretrainConfig, "tiny_cpu_mme", ["train.steps=null", "train.keep_epochs=[]", "model.preset=",
                                                     "data.root=", "target.loss_weights={}"])
    assert (c.train.steps, c.train.keep_epochs, c.model.depth, c.data.root, c.target.loss_weights) == (
        None, (), 4, "", {})
    assert main(["pretrain", "--config", "tiny_cpu_mme", "train.steps="]) == 1
    assert "config key 'train.steps': empty (an unset shell variable?)" in capsys.readouterr().err


def test_an_empty_path_that_may_be_unset_and_an_empty_value_in_a_mapping_are_refused():
    """``train.init=$INIT``, INIT unset, trained from scratch without a word (``train.init=`` unset it), and so did
    ``train.resume=``, ``target.cache_dir=`` and ``data.index_dir=`` unset their keys; inside a section given whole
    (``train={steps: $STEPS}``) the empty value was YAML's null, unsetting the recipe's steps. A key naming a file or
    folder that may be unset refuses the empty value, as a key that is not text does, in a mapping too; ``null``
    unsets them, and a key whose empty text is a value (``task.val_list=``: none; ``data.root=``) takes it."""
    from mme.train.config import FinetuneConfig

    for overrides, key, said in (
            (["train.init="], "train.init", "which names no file or folder: give its path, or null to unset it"),
            (["train.resume="], "train.resume", "which names no file or folder: give its path, or null to unset it"),
            (["train={init: }"], "train.init", "which names no file or folder: give its path, or null to unset it"),
            (["target.cache_dir="], "target.cache_dir", "which names no file or folder: give its path, or null to "
                                                        "unset it"),
            (["data.index_dir="], "data.index_dir", "which names no file or folder: give its path, or null to unset "
                                                    "it"),
            (["train={steps: }"], "train.steps", "which only a text key takes: give its value, or null to unset it"),
            (["train=steps: "], "train.steps", "which only a text key takes: give its value, or null to unset it")):
        with pytest.raises(ConfigError) as info:  # (a target: pre-training's)
            load_config(*(PretrainConfig, "tiny_cpu_mme") if key.startswith("target.") else
                        (FinetuneConfig, "finetune_tiny_cpu"), overrides)
        assert str(info.value) == f"config key '{key}': empty (an unset shell variable?), {said}", overrides
    c = load_config(FinetuneConfig, "finetune_tiny_cpu", ["train={init: null, steps: ~}", "train.resume=null",
                                                          "data.index_dir=null", "task.val_list=", "data={root: }"])
    assert (c.train.init, c.train.steps, c.train.resume, c.data.index_dir) == (None, None, None, None)
    assert (c.task.val_list, c.data.root) == ("", "")


def test_none_in_a_recipe_unsets_a_key_as_an_override_does(tmp_path):
    """A recipe's unquoted ``None`` (or ``none``) was the text, where the override ``key=None`` unsets the key:
    ``preset: None`` was "unknown preset 'None'", ``cache_dir: None`` a folder named None, ``steps: None`` "matches
    none of [int, NoneType]", ``kind: None`` an unknown target, ``activation: None`` refused. Now both read it
    alike, for every kind of key: unset where the key may be, refused for a text key that may not, ``none`` a value
    where the key takes it; quoted, it is the text; a run's config.yaml writes such a text quoted, and reads back."""
    import yaml

    from mme.train.engine import as_recipe

    def read(section, key, text):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"_base_: tiny_cpu_mme\n{section}:\n  {key}: {text}\n")
        got = []
        for route in (lambda: load_config(PretrainConfig, recipe),
                      lambda: load_config(PretrainConfig, "tiny_cpu_mme", [f"{section}.{key}={text}"])):
            try:
                got.append(getattr(getattr(route(), section), key))
            except ConfigError as e:
                got.append(re.sub(r"^recipe \S+: ", "", str(e)))
        assert got[0] == got[1], (key, text, got)
        return got[0]

    for text in ("None", "none", "null"):
        assert read("model", "preset", text) is None
        assert read("target", "cache_dir", text) is None
        assert read("train", "init", text) is None
        assert read("train", "steps", text) is None
        assert read("target", "track_length", text) == 6
        assert read("target", "kind", text) == "mme"
        assert "train.keep_epochs" in read("train", "keep_epochs", text)  # a list, which cannot be unset
    for text in ("None", "none"):  # (a recipe's says to quote it there: test_an_old_runs_none_text_...)
        with pytest.raises(ConfigError) as e:
            load_config(PretrainConfig, "tiny_cpu_mme", [f"train.out_dir={text}"])
        assert str(e.value) == f"config key 'train.out_dir': {text!r} would be taken as that text; this key " \
            "cannot be unset (a string: 'train.out_dir=' gives the empty one)"
    assert read("target", "activation", "none") == "none"  # the linear heads, not unset
    assert load_config(PretrainConfig, "mme_k400_released", ["target.activation=None"]).target.activation == "release"
    (tmp_path / "preset.yaml").write_text("_base_: tiny_cpu_mme\nmodel:\n  preset: None\n")
    cfg = load_config(PretrainConfig, tmp_path / "preset.yaml")
    assert (cfg.model.embed_dim, cfg.model.depth) == (192, 4)  # no change of preset: the recipe's sizes kept
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ["model={preset: None}", "target={cache_dir: none}"])
    assert (cfg.model.preset, cfg.model.embed_dim, cfg.target.cache_dir) == (None, 192, None)  # a section whole

    for section, key in (("train", "out_dir"), ("target", "cache_dir")):
        recipe = tmp_path / "quoted.yaml"
        recipe.write_text(f'_base_: tiny_cpu_mme\n{section}:\n  {key}: "None"\n')
        quoted = [load_config(PretrainConfig, recipe),
                  load_config(PretrainConfig, "tiny_cpu_mme", [f'{section}.{key}="None"'])]
        assert [getattr(getattr(c, section), key) for c in quoted] == ["None", "None"]
    (tmp_path / "nobase.yaml").write_text("_base_: None\ntrain:\n  steps: 3\n")
    assert load_config(PretrainConfig, tmp_path / "nobase.yaml").model.embed_dim == 768  # no base, as null

    from mme.train.checkpoint import write_run_files

    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ['train.out_dir="None"', "target.cache_dir=none"])
    write_run_files(tmp_path, as_recipe(cfg), {})
    again = load_config(PretrainConfig, tmp_path / "config.yaml")
    assert (again.train.out_dir, again.target.cache_dir, again.target.activation) == ("None", None, "none")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["out_dir"] == "None"


def test_an_old_runs_none_text_resumes_with_an_override_and_none_in_a_collection_is_text(tmp_path):
    """An old run folder whose config.yaml held ``out_dir: None`` unquoted (the text, as mme wrote it before
    a663ca2) was refused, naming the override ``train.out_dir=`` (another folder), and the override
    ``train.out_dir="None"`` could not help: the recipe's layer was refused first. Now the refusal names the file and
    says to quote the text there, and a later layer (an override, a recipe over it) replaces the value. Inside a
    collection ``None`` stayed the text before a663ca2 and stays so again: a list's item (``kind: [hog, None]``, an
    unknown target), a mapping's key (``loss_weights: {None: 1.0}``, no such head); ``!!str None`` is the text."""
    import yaml

    from mme.train.config import FinetuneConfig
    from mme.train.engine import as_recipe

    old = tmp_path / "None" / "config.yaml"  # as write_run_files wrote it before a663ca2: yaml.safe_dump
    old.parent.mkdir()
    cfg = load_config(PretrainConfig, "tiny_cpu_mme", ['train.out_dir="None"', 'data.root="None"'])
    old.write_text(yaml.safe_dump(as_recipe(cfg), sort_keys=False))
    assert "  out_dir: None\n" in old.read_text()
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, old, ["train.resume=auto"])
    assert str(e.value) == f"recipe {old}: config key 'data.root': None, unquoted, unsets a key, which this one " \
        f"cannot be: for the text, quote it in {old} (root: \"None\"), or give 'data.root=\"None\"'"
    again = load_config(PretrainConfig, old, ['train.out_dir="None"', "data.root=None/..", "train.resume=auto"])
    assert (again.train.out_dir, again.data.root, again.model.embed_dim) == ("None", "None/..", 192)
    over = tmp_path / "over.yaml"  # a recipe over it replaces it too
    over.write_text(f"_base_: {old}\ntrain:\n  out_dir: runs/x\ndata:\n  root: '/data'\n")
    assert (load_config(PretrainConfig, over).train.out_dir, load_config(PretrainConfig, over).data.root) \
        == ("runs/x", "/data")
    over.write_text(f"_base_: {old}\ntrain:\n  out_dir: runs/x\n")
    with pytest.raises(ConfigError, match=rf"^recipe {re.escape(str(old))}: config key 'data.root': None, unquoted"):
        load_config(PretrainConfig, over)  # (the file that holds it named, not the recipe over it)
    old.write_text(old.read_text().replace("out_dir: None", 'out_dir: "None"').replace("root: None", "root: 'None'"))
    assert (load_config(PretrainConfig, old).train.out_dir, load_config(PretrainConfig, old).data.root) \
        == ("None", "None")  # quoted as the message says
    ft = tmp_path / "ft.yaml"
    ft.write_text("_base_: finetune_tiny_cpu\ntask:\n  val_list: None\n")
    with pytest.raises(ConfigError, match=r"'task.val_list': None, unquoted, .* quote it in .*ft.yaml \(val_list: "):
        load_config(FinetuneConfig, ft)
    assert load_config(FinetuneConfig, ft, ["task.val_list=v.txt"]).task.val_list == "v.txt"
    with pytest.raises(ConfigError, match=r"^config key 'task.val_list': 'None' would be taken as that text"):
        load_config(FinetuneConfig, "finetune_tiny_cpu", ["task={val_list: None}"])  # an override's: as before

    recipe = tmp_path / "r.yaml"
    for route in ("recipe", "override"):
        for key, value, said in (("kind", "[hog, None]", r"target.kind: unknown target \['None'\]; choose from"),
                                 ("loss_weights", "{None: 1.0}", r"target.loss_weights: no head \['None'\]; "
                                                                 r"heads of this target: \['traj', 'shape'\]")):
            recipe.write_text(f"_base_: tiny_cpu_mme\ntarget:\n  {key}: {value}\n")
            with pytest.raises(ConfigError, match=said):
                if route == "recipe":
                    load_config(PretrainConfig, recipe)
                else:
                    load_config(PretrainConfig, "tiny_cpu_mme", [f"target.{key}={value}"])
    recipe.write_text("_base_: tiny_cpu_mme\ntarget:\n  kind: [mme, none]\n  cache_dir: !!str None\n"
                      "train:\n  out_dir: !!str none\n")
    with pytest.raises(ConfigError, match=r"unknown target \['none'\]"):
        load_config(PretrainConfig, recipe)
    recipe.write_text("_base_: tiny_cpu_mme\ntarget:\n  cache_dir: !!str None\ntrain:\n  out_dir: !!str none\n"
                      "  init: ! None\n")
    cfg = load_config(PretrainConfig, recipe)
    assert (cfg.target.cache_dir, cfg.train.out_dir, cfg.train.init) == ("None", "none", "None")  # tagged: text


def test_none_is_the_linear_heads_of_target_activation_on_every_route(tmp_path):
    """``target.activation=none`` (linear heads) was read as null, which unsets the key, so the preset filled it: over
    mme_k400_released the release's Sigmoid/Tanh heads were trained instead, without a word (a recipe's ``none`` was
    the text). The other spellings of null still unset it; a run's config.yaml gives it back as a recipe and as
    overrides."""
    import yaml

    from mme.config import flatten
    from mme.motion.targets import head_specs
    from mme.train.engine import as_recipe

    def activations(cfg):
        return {h.name: h.activation for h in head_specs(cfg.target, cfg.model)}

    for override in ("target.activation=none", " target.activation= none ", "target={activation: none}",
                     'target.activation="none"'):
        cfg = load_config(PretrainConfig, "mme_k400_released", [override])
        assert cfg.target.activation == "none", override
        assert activations(cfg) == {"traj": "none", "hog": "none"}, override
    for unset in ("null", "~", "None", ""):
        cfg = load_config(PretrainConfig, "mme_k400_released", [f"target.activation={unset}"])
        assert activations(cfg) == {"traj": "tanh", "hog": "sigmoid"}, unset
    recipe = tmp_path / "linear.yaml"
    recipe.write_text("_base_: mme_k400_released\ntarget:\n  activation: none\n")
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(as_recipe(load_config(PretrainConfig, recipe)), sort_keys=False))
    assert load_config(PretrainConfig, saved).target.activation == "none"
    target_keys = [f"target.{k}={v}" for k, v in flatten(yaml.safe_load(saved.read_text())["target"]).items()]
    assert "target.activation=none" in target_keys
    assert load_config(PretrainConfig, "mme_k400_released", target_keys).target.activation == "none"


def test_a_model_of_other_than_three_channels_does_not_train_on_videos():
    """``model.in_chans=1`` passed the checks and failed at the first step with a traceback."""
    from mme.train.config import PretrainConfig

    with pytest.raises(ConfigError, match=r"model.in_chans=1: the clips are RGB"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["model.in_chans=1"])


def test_a_pretraining_config_must_mask_a_token_and_untracked_strides_must_fit():
    """``model.mask_ratio=0`` (or 0.2 of a 2 x 2 slice: int(0.8) = 0) trained on every token, visible ones
    included; ``target.interpolate=false`` with a stride that does not divide L failed in the first data item."""
    from mme.train.config import PretrainConfig

    for override in (["model.mask_ratio=0"], ["model.mask_ratio=0.2", "model.img_size=32", "data.img_size=32"]):
        with pytest.raises(ConfigError, match=r"masks no token"):
            load_config(PretrainConfig, "tiny_cpu_mme", override)
    for overrides, why in ((["data.stride=4", "target.track_length=6"], "data.stride=4 must divide"),
                           (["data.sampling=segments"], "not data.sampling=segments"),
                           (["target.cache_dir=/tmp"], "computed online only")):
        with pytest.raises(ConfigError, match=why):
            load_config(PretrainConfig, "tiny_cpu_mme", ["target.interpolate=false", *overrides])
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["target.interpolate=false", "data.stride=2",
                                                          "target.track_length=6"]).target.interpolate is False


def test_a_recipe_of_the_other_kind_is_named_as_such():
    from mme.train.config import FinetuneConfig, PretrainConfig

    with pytest.raises(ConfigError, match=r"\['task'\].*a fine-tuning recipe, for mme finetune"):
        load_config(PretrainConfig, "finetune_k400")
    for recipe in ("mme_k400_paper", "tiny_cpu_mme", "tiny_cpu_pixel", "videomae_k400_pixel"):
        with pytest.raises(ConfigError, match=r"\['target'\].*a pre-training recipe, for mme pretrain"):
            load_config(FinetuneConfig, recipe)


def test_a_given_key_that_the_other_settings_leave_unused_is_warned_about(caplog):
    """``task.eval_every`` without ``task.val_list`` (no validation runs), a crop's keys under another crop, the
    stride of TSN segments, test views in pre-training, the mixup/cutmix switch with one of them off, the chance of
    mixing with both off, RandAugment's magnitude where it draws no op: each was taken
    without a word. A recipe's own values are not warned about, nor a key that takes effect; each warning is said once
    within warnings_once (mme demo loads the configs of its rows, of the same overrides, 17 times in a quick run),
    and at each load outside it (a second pretrain() of a notebook)."""
    from mme.config import warnings_once
    from mme.models.checkpoint import run_model_config
    from mme.train.config import FinetuneConfig, FinetuneModel

    cases = [(FinetuneConfig, "finetune_tiny_cpu", ["task.eval_every=5", "task.val_list="],
              "task.eval_every=5 has no effect: it validates on task.val_list, which is unset"),
             (FinetuneConfig, "finetune_tiny_cpu", ["data.scales=[0.5]", "data.rrc_scale=[0.5,1]"],
              "data.scales=[0.5] has no effect: it is the multiscale crop's, and data.crop=random_resized"),
             (PretrainConfig, "tiny_cpu_mme", ["data.rrc_ratio=[1,2]"],
              "data.rrc_ratio=[1,2] has no effect: it is the random_resized crop's, and data.crop=multiscale"),
             (PretrainConfig, "tiny_cpu_mme", ["data.crop=center", "data.max_distort=2"],
              "data.max_distort=2 has no effect: it is the multiscale crop's, and data.crop=center"),
             (PretrainConfig, "tiny_cpu_mme", ["data.sampling=segments", "data.stride=7"],
              "data.stride=7 has no effect: data.sampling=segments takes one frame per segment"),
             (PretrainConfig, "tiny_cpu_mme", ["data.test_clips=5"], "data.test_clips=5 has no effect: pre-training"),
             (FinetuneConfig, "finetune_tiny_cpu", ["model.decoder_dim=64"],  # (refused: not divisible by 6 heads)
              "model.decoder_dim=64 has no effect: fine-tuning builds no decoder or mask"),
             (FinetuneConfig, "finetune_tiny_cpu", ["model.mask_ratio=0.9"],
              "model.mask_ratio=0.9 has no effect: fine-tuning builds no decoder or mask"),
             (FinetuneConfig, "finetune_tiny_cpu", ["augment.mix_switch_prob=0.9"],
              "augment.mix_switch_prob=0.9 has no effect: it chooses between mixup and cutmix where both are on, "
              "and augment.mixup_alpha=0.0 augment.cutmix_alpha=0.0"),
             (FinetuneConfig, "finetune_tiny_cpu", ["augment.mix_prob=0.5"],
              "augment.mix_prob=0.5 has no effect: it is the chance that a batch is mixed, and augment.mixup_alpha=0.0 "
              "augment.cutmix_alpha=0.0"),
             (FinetuneConfig, "finetune_tiny_cpu", ["augment.randaug_magnitude=9"],
              "augment.randaug_magnitude=9 has no effect: augment.randaug_ops=0 draws no RandAugment op")]
    for cls, recipe, overrides, said in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme.config"), warnings_once():
            load_config(cls, recipe, overrides)
            load_config(cls, recipe, overrides)
        said_once = [r.getMessage() for r in caplog.records]
        assert len(said_once) == 1 and said_once[0].startswith(f"config: {said}"), (overrides, said_once)
        with caplog.at_level(logging.WARNING, logger="mme.config"):
            load_config(cls, recipe, overrides)
        assert len(caplog.records) == 2  # (outside warnings_once: said again)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme.config"):  # each takes effect, or is the recipe's
        load_config(FinetuneConfig, "finetune_tiny_cpu", ["task.eval_every=5", "data.rrc_scale=[0.5,1]",
                                                          "augment.mix_switch_prob=0.9", "augment.mixup_alpha=0.8",
                                                          "augment.cutmix_alpha=1.0", "data.test_clips=2",
                                                          "augment.mix_prob=0.5", "augment.randaug_ops=2",
                                                          "augment.randaug_magnitude=9"])
        load_config(PretrainConfig, "tiny_cpu_mme", ["data.scales=[0.5]", "data.stride=2"])
        load_config(FinetuneConfig, "finetune_ssv2", ["task.val_list="])  # its TSN segments' stride: the recipe's
        load_config(PretrainConfig, "tiny_cpu_mme")  # its test views: the defaults
        # a run's recorded model section (a pre-training run's decoder and mask in it), read as fine-tuning's: not
        # given, so not warned about, and not kept
        recorded = dataclasses.asdict(load_config(PretrainConfig, "tiny_cpu_mme", [
            "model.decoder_dim=64", "model.decoder_heads=4", "model.mask_type=random", "model.head_hidden=0"]).model)
        model = run_model_config(FinetuneModel, recorded, "checkpoint-5.pt")
        assert (model.decoder_dim, model.decoder_heads, model.mask_type, model.embed_dim) == (
            192, 6, "tube", recorded["embed_dim"])
    assert not caplog.text


def test_a_clip_window_past_mmes_cap_is_refused_at_load_and_a_long_one_within_it_taken():
    """A window past mme's cap of raw frames, against runaway values (data.stride=1e12 was taken and trained on the
    last frame repeated), is refused at load; one within it is taken (finetune_k400 at data.stride=5000, a clip of
    75001 raw frames, where a first cap of 65536 refused it), and warned about as its reads meet shorter videos
    (test_pretrain)."""
    from mme.train.config import FinetuneConfig

    assert load_config(FinetuneConfig, "finetune_k400", ["data.stride=5000"]).data.stride == 5000
    with pytest.raises(ConfigError, match=r"^data.num_frames=8 at data.stride=1000000000000 and "
                       r"target.track_length=6: a clip spans 7000000000001 raw frames, more than mme's cap of "
                       r"16777216 \(about 6 days at 30 fps, a guard against runaway values\); lower data.stride$"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["model.img_size=64", "data.img_size=64", "data.num_frames=8",
                                                     "model.num_frames=8", "data.stride=1000000000000"])


def test_values_no_research_use_needs_are_refused_in_one_line_naming_the_key_and_the_bound():
    """A value far past any recipe's, which the config took, then failed with a traceback in the first batch, hung
    the model's build, or trained on nonsense without a word (an auditor's fuzzing of the keys): each is one line
    naming the key, the bound and why; the bounds take every packaged recipe (test_recipes) and the values beside."""
    from mme.train.config import FinetuneConfig

    refused = [  # (the override, the recipe's kind, the message)
        ("data.rrc_ratio=[300,400]", FinetuneConfig, "data.rrc_ratio[0] must be in [0.01, 100], got 300 (a box's w/h: "
         "a box 100 times wider than high is a line of pixels)"),  # (cv2's resize of a 0-px box)
        ("data.rrc_ratio=[1e-30,1]", FinetuneConfig, "data.rrc_ratio[0] must be in [0.01, 100], got 1e-30"),
        ("data.rrc_ratio=[1,1e30]", PretrainConfig, "data.rrc_ratio[1] must be in [0.01, 100], got 1e+30"),
        # (PyAV's OverflowError, torch.set_num_threads' ValueError, at the run's start)
        ("data.decode_threads=3000000000", PretrainConfig, "data.decode_threads must be at most 4096, got 3000000000 "
         "(more threads than any machine's cores)"),
        ("train.threads=3000000000", FinetuneConfig, "train.threads must be at most 4096, got 3000000000"),
        # (an allocator's traceback; the model's build or the first batch hung)
        ("target.track_length=1000000000000", PretrainConfig,
         "target.track_length must be at most 1024, got 1000000000000 (raw steps of each track, each a flow over the "
         "seeds: the recipes' 4 to 6)"),
        ("model.decoder_depth=100000", PretrainConfig, "model.decoder_depth must be at most 1024, got 100000 "
         "(blocks: ViT-L has 24)"),
        ("model.depth=1000000000000", FinetuneConfig, "model.depth must be at most 1024, got 1000000000000"),
        ("augment.randaug_ops=1000000000000", FinetuneConfig,
         "augment.randaug_ops must be at most 1024, got 1000000000000"),
        ("task.repeated_aug=1000000000000", FinetuneConfig,
         "task.repeated_aug must be at most 1024, got 1000000000000 (clips of each video per batch: VideoMAE's 2)"),
        # (trained without a word on nonsense: LayerNorms that output their bias, crops of a pixel, inf logits)
        ("model.norm_eps=1e30", PretrainConfig, "model.norm_eps must be at most 1, got 1e+30 (a LayerNorm's eps"),
        ("model.decoder_norm_eps=2", PretrainConfig, "model.decoder_norm_eps must be at most 1, got 2"),
        ("target.max_disp=0", PretrainConfig, "target.max_disp must be positive, got 0"),
        ("data.scales=[1,1e-9]", PretrainConfig, "data.scales[1] must be at least 0.01, got 1e-09 (a crop of 1% of "
         "the frame"),
        ("data.rrc_scale=[0.001,1]", FinetuneConfig, "data.rrc_scale[0] must be at least 0.01, got 0.001"),
        ("task.head_init_scale=1e30", FinetuneConfig, "task.head_init_scale must be in [0, 100], got 1e+30"),
        ("task.head_init_scale=-1", FinetuneConfig, "task.head_init_scale must be in [0, 100], got -1"),
        # (NaN activations from the first step: every step skipped, the run ending as trained)
        ("model.layer_scale_init=1e30", PretrainConfig, "model.layer_scale_init must be in [0, 100], got 1e+30 (each "
         "block's residual branches start scaled by it: VideoMAE's 0.1"),
        ("model.layer_scale_init=1e30", FinetuneConfig, "model.layer_scale_init must be in [0, 100], got 1e+30"),
        ("model.decoder_layer_scale_init=-0.1", PretrainConfig,
         "model.decoder_layer_scale_init must be in [0, 100], got -0.1"),
    ]
    for override, cls, said in refused:
        recipe = "tiny_cpu_mme" if cls is PretrainConfig else "finetune_tiny_cpu"
        with pytest.raises(ConfigError) as info:
            load_config(cls, recipe, [override])
        assert str(info.value).startswith(said), (override, str(info.value))
    taken = [("data.rrc_ratio=[0.01,100]", FinetuneConfig), ("data.decode_threads=4096", PretrainConfig),
             ("train.threads=4096", PretrainConfig), ("target.track_length=1024", PretrainConfig),
             ("model.decoder_depth=1024", PretrainConfig), ("task.repeated_aug=1024", FinetuneConfig),
             ("model.norm_eps=1e-12", PretrainConfig), ("target.max_disp=0.375", PretrainConfig),
             ("data.rrc_scale=[0.01,1]", FinetuneConfig), ("task.head_init_scale=0", FinetuneConfig),
             ("model.layer_scale_init=0.1", FinetuneConfig), ("model.decoder_layer_scale_init=100", PretrainConfig),
             # a clamp of each track step, however small, is a setting (tracks stay valid while in the frame): the
             # track cache's check advises 0.375 for a cache bounded at 1 px in 256 px frames, 96 px clips
             ("target.max_disp=1e-9", PretrainConfig)]
    for override, cls in taken:
        load_config(cls, "tiny_cpu_mme" if cls is PretrainConfig else "finetune_tiny_cpu", [override])
