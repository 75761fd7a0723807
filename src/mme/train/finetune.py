"""Supervised fine-tuning of a pre-trained encoder: VideoMAE/MME's recipe (mme-method.md §10).

    mme finetune --config finetune_tiny_cpu                              # CPU smoke run on `mme synth` data
    mme finetune --config finetune_k400 train.init=runs/pt/checkpoint-00100000.pt data.root=/k400
    torchrun --standalone --nproc_per_node=8 -m mme.cli finetune --config finetune_ssv2 train.init=ssv2.pth
    mme finetune --config R train.out_dir=runs/ft train.resume=auto     # continue exactly where it stopped

Model: ``VideoClassifier`` (encoder without its final norm -> mean over tokens -> fc_norm -> head). The encoder
comes from ``train.init``: any checkpoint ``mme.models.checkpoint`` reads (ours, original VideoMAE/MME
pre-trained or fine-tuned ``.pth``, Hugging Face VideoMAE directories); its architecture (width, depth, heads,
patch, tubelet) is taken from the checkpoint, the clip geometry and drop path from the config.

Recipe: AdamW (0.9, 0.999), wd 0.05, layer-wise lr decay 0.75, lr = base_lr × videos per step / 256, warm-up
then cosine to min_lr, drop path 0.1, label smoothing 0.1, mixup 0.8 / cutmix 1.0, RandAugment m7-n4-mstd0.5,
random erasing 0.25, random-resized crop (0.25-1) + flip (not SSv2), repeated augmentation ×2 (each video of a
batch gives ``task.repeated_aug`` clips with their own crop and window). At the end: multi-view testing
(``data.test_clips`` × ``data.test_crops`` views, softmax-averaged) on the val and test lists, sharded over ranks.

Reproducibility as in pre-training (mme.train.pretrain): data order from (seed, epoch), each clip's crop from
(seed, epoch, index), the batch augmentation from (seed, step, rank, micro-batch); checkpoints hold weights,
optimizer, scaler, step, data position and RNG states, so a resumed run continues bitwise-identically on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.utils.data import Dataset

from mme.config import from_dict, load_config
from mme.data.dataset import ClassificationDataset, DataConfig
from mme.data.lists import read_list
from mme.errors import ConfigError, DataError
from mme.eval.augment import AugmentConfig, augment_batch, soft_target_cross_entropy
from mme.eval.testing import merge_predictions, multiview_predict, multiview_report, save_report
from mme.models.classifier import VideoClassifier
from mme.models.config import ModelConfig
from mme.train import checkpoint as ckpt
from mme.train import distributed as dist
from mme.train.config import TrainConfig, check_clips_fit_model
from mme.train.metrics import build_logger, plot_loss_curves
from mme.train.optim import OptimConfig, schedule_step
from mme.train.precision import autocast, choose_device, choose_precision
from mme.train.pretrain import (
    build_step,
    count_nonfinite,
    micro_batches,
    restore,
    resume_state,
    run_precision,
    save,
    schedule_lengths,
    update,
)

log = logging.getLogger(__name__)

ARCH_FIELDS = ("in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "layer_scale_init",
               "patch_size", "tubelet_size")
"""Encoder fields taken from the ``train.init`` checkpoint (the weights fix them)."""


# ---- configuration: the dataclass defaults are the VideoMAE/MME K400 fine-tuning recipe -------------------------


@dataclass
class FinetuneData(DataConfig):
    """Fine-tuning clips: random-resized crop (area 0.25-1) with flip; K400's 7 x 3 test views."""

    crop: str = "random_resized"
    flip: bool = True
    test_clips: int = 7
    test_crops: int = 3


@dataclass
class FinetuneModel(ModelConfig):
    """The encoder of the classifier: ViT-B with drop path 0.1 (the architecture follows ``train.init``)."""

    drop_path: float = 0.1


@dataclass
class FinetuneOptim(OptimConfig):
    """AdamW (0.9, 0.999), wd 0.05, layer decay 0.75, 5 warm-up epochs, lr 1e-3 -> 1e-6 per 256 videos."""

    base_lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 5.0
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float | None = 0.75


@dataclass
class FinetuneTrain(TrainConfig):
    """75 epochs (K400); ``init`` = the pre-trained checkpoint (any supported format)."""

    epochs: int = 75
    batch_size: int = 8
    ckpt_every: int = 1000
    out_dir: str = "runs/finetune"


@dataclass
class TaskConfig:
    """The classification task and its evaluation."""

    num_classes: int | None = None
    """Number of classes; None = 1 + the largest label of the train list."""
    classes: str = ""
    """Optional JSON list of class names (index = label), e.g. ``classes.json`` of ``mme synth``/``mme lists``."""
    val_list: str = ""
    """Validation list (same root as data.list_file); multi-view tested at the end, and every eval_every steps
    with one view."""
    test_list: str = ""
    """Test list; multi-view tested at the end only."""
    repeated_aug: int = 2
    """Clips per video per batch (VideoMAE's num_sample), each with its own crop and window."""
    head_init_scale: float = 0.001
    """The head's initial weights are trunc-normal(0.02) times this."""
    fc_drop: float = 0.0
    """Dropout before the head."""
    eval_every: int = 0
    """Single-view validation top-1 every this many steps (0 = only the final multi-view test)."""
    eval_batch_size: int = 2
    """Videos per forward pass at test time (each with clips x crops views)."""
    eval_only: bool = False
    """Only test the fine-tuned classifier in train.init on val_list / test_list (no training)."""

    def __post_init__(self):
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"task.num_classes must be >= 2, got {self.num_classes}")
        if self.repeated_aug < 1 or self.eval_batch_size < 1 or self.eval_every < 0:
            raise ConfigError("task.repeated_aug and task.eval_batch_size must be >= 1, task.eval_every >= 0")


@dataclass
class FinetuneConfig:
    """Everything ``mme finetune`` needs."""

    data: FinetuneData = field(default_factory=FinetuneData)
    model: FinetuneModel = field(default_factory=FinetuneModel)
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: FinetuneTrain = field(default_factory=FinetuneTrain)

    def __post_init__(self):
        check_clips_fit_model(self.data, self.model)


# ---- data --------------------------------------------------------------------------------------------------------


class RepeatedClips(Dataset):
    """Repeated augmentation: item i is ``repeats`` training clips of video i, ``{"video": (R, 3, T, H, W),
    "label": (R,), "index": (R,)}``, each from its own ClassificationDataset copy (own seed), so the copies
    differ in crop, flip and temporal window."""

    def __init__(self, cfg: DataConfig, repeats: int, seed: int):
        self.copies = [ClassificationDataset(cfg, "train", seed=seed * repeats + k) for k in range(repeats)]

    def __len__(self) -> int:
        return len(self.copies[0])

    def set_epoch(self, epoch: int) -> None:
        for c in self.copies:
            c.set_epoch(epoch)

    def failure_counts(self) -> dict[str, int]:
        return self.copies[0].failure_counts()

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        items = [c[i] for c in self.copies]
        return {"video": torch.stack([it["video"] for it in items]),
                "label": torch.tensor([it["label"] for it in items]),
                "index": torch.tensor([it["index"] for it in items])}


def _test_set(cfg: FinetuneConfig, list_file: str, clips: int | None = None, crops: int | None = None):
    data = dataclasses.replace(cfg.data, list_file=list_file, test_clips=clips or cfg.data.test_clips,
                               test_crops=crops or cfg.data.test_crops, max_failure_fraction=1.0)
    return ClassificationDataset(data, "test", seed=cfg.train.seed)


# ---- setup -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything built by :func:`setup` (the attribute names are those mme.train.pretrain's loop helpers use)."""

    cfg: FinetuneConfig
    device: torch.device
    precision: str
    model: VideoClassifier
    step_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data: RepeatedClips
    num_classes: int
    class_names: list[str] | None
    batches_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    final_lr: float
    out_dir: Path
    meta: dict
    step: int = 0
    position: dict = field(default_factory=lambda: {"epoch": 0, "batch": 0})


def _class_names(cfg: FinetuneConfig) -> list[str] | None:
    if not cfg.task.classes:
        return None
    try:
        names = json.loads(Path(cfg.task.classes).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"task.classes {cfg.task.classes}: not a readable JSON list of class names ({e})") from e
    if not isinstance(names, list):
        raise ConfigError(f"task.classes {cfg.task.classes}: expected a JSON list of class names")
    return [str(n) for n in names]


def _num_classes(cfg: FinetuneConfig, names: list[str] | None) -> int:
    if cfg.task.num_classes:
        return cfg.task.num_classes
    if names:
        return len(names)
    labels = [e.label for e in read_list(cfg.data.list_file, strict=False)[0] if e.label is not None]
    if not labels:
        raise DataError(f"list file {cfg.data.list_file}: no labels; set task.num_classes")
    return max(labels) + 1


def _model_config(cfg: FinetuneConfig, resume: tuple[str, dict] | None) -> FinetuneModel:
    """The run's encoder config: from the resumed run, else the architecture of ``train.init`` with this
    config's clip geometry and drop path, else the config as is (training from scratch)."""
    if resume is not None:
        return from_dict(FinetuneModel, resume[1]["config"]["model"], prefix="model.")
    if not cfg.train.init:
        return cfg.model
    from mme.models.checkpoint import read_checkpoint

    src = read_checkpoint(cfg.train.init).cfg
    arch = {k: getattr(src, k) for k in ARCH_FIELDS}
    changed = {k: (getattr(cfg.model, k), v) for k, v in arch.items() if getattr(cfg.model, k) != v}
    if changed:
        log.info("architecture from %s: %s", cfg.train.init, {k: v for k, (_, v) in changed.items()})
    return dataclasses.replace(cfg.model, preset=None, **arch)


def setup(cfg: FinetuneConfig) -> Run:
    """Build and check everything (out dir, data, model, init/resume checkpoint) before the first step."""
    t = cfg.train
    info = dist.init_distributed(choose_device(t.device).type)
    device = choose_device(t.device, info.local_rank)
    out_dir = ckpt.prepare_out_dir(t.out_dir, write=dist.is_main())
    names = _class_names(cfg)
    num_classes = _num_classes(cfg, names)
    if names is not None and len(names) != num_classes:
        raise ConfigError(f"task.classes {cfg.task.classes} names {len(names)} classes, task.num_classes is "
                          f"{num_classes}")
    dataset = RepeatedClips(cfg.data, cfg.task.repeated_aug, t.seed)
    o = cfg.optim
    batches_per_epoch, total_steps, warmup = schedule_lengths(len(dataset), t, o, info.world_size, "videos")
    # VideoMAE scales by videos, not by videos x repeats
    peak_lr, final_lr = o.scaled_lr(t.batch_size * info.world_size * t.accum_steps)

    resume = resume_state(t.resume, out_dir)
    cfg = dataclasses.replace(cfg, model=_model_config(cfg, resume))
    torch.manual_seed(t.seed)  # the head's initial weights (and the encoder's when training from scratch)
    model = VideoClassifier(cfg.model, num_classes, fc_drop=cfg.task.fc_drop,
                            head_init_scale=cfg.task.head_init_scale)
    if t.init and resume is None:
        from mme.models.checkpoint import load_encoder_weights

        load_encoder_weights(model.encoder, t.init)
    model.to(device)
    m, b = cfg.model, min(t.batch_size, 4)
    video = torch.zeros(b, 3, m.num_frames, m.img_size, m.img_size, device=device)
    precision, why = run_precision(t, device, model, lambda: model(video).float().mean())
    optimizer, scaler, step_model = build_step(model, o, t, device, precision, info.world_size)
    run = Run(cfg, device, precision, model, step_model, optimizer, scaler, dataset, num_classes, names,
              batches_per_epoch, total_steps, warmup, peak_lr, final_lr, out_dir,
              ckpt.run_meta(device, precision, why, info.world_size))
    if resume is not None:
        restore(run, *resume)
    dist.check_start_step(run.step, device)
    if dist.is_main():
        ckpt.write_run_files(out_dir, dataclasses.asdict(cfg), run.meta)
    return run


def describe(run: Run) -> str:
    """The resolved config and the numbers derived from it, as printed at the start of a run."""
    c, t = run.cfg, run.cfg.train
    world = dist.get_world_size()
    videos = t.batch_size * world * t.accum_steps
    enc = sum(p.numel() for p in run.model.encoder.parameters())
    return "\n".join([
        "resolved config:", yaml.safe_dump(dataclasses.asdict(c), sort_keys=False).rstrip(), "derived:",
        f"  world size {world}, device {run.device} ({run.meta['device_name']}), precision {run.precision}"
        f" ({run.meta['precision_reason']})",
        f"  per step {videos} videos = {t.batch_size}/rank x {world} ranks x {t.accum_steps} accum, x "
        f"{c.task.repeated_aug} repeated clips = {videos * c.task.repeated_aug} clips",
        f"  lr {run.peak_lr:.4g} -> {run.final_lr:.4g} (base {c.optim.base_lr:g} x {videos}/{c.optim.lr_batch_ref}), "
        f"layer decay {c.optim.layer_decay}, warm-up {run.warmup_steps} steps, cosine",
        f"  {len(run.data)} train videos, {run.num_classes} classes, {run.batches_per_epoch // t.accum_steps} "
        f"steps/epoch, {run.total_steps} steps" + (f", stopping after {t.stop_after}" if t.stop_after else ""),
        f"  encoder {enc / 1e6:.2f}M parameters, {c.model.num_tokens} tokens per clip, drop path {c.model.drop_path}; "
        f"init {t.init or 'random (from scratch)'}",
        f"  test views {c.data.test_clips} clips x {c.data.test_crops} crops; out dir {run.out_dir}"
        + (f", resuming at step {run.step}" if run.step else ""),
    ])


# ---- the loop ----------------------------------------------------------------------------------------------------


def train_step(run: Run, stream) -> dict[str, float]:
    """One optimizer step over ``accum_steps`` micro-batches: augment (RandAugment, erasing, mixup/cutmix) ->
    soft-target cross-entropy -> backward -> update (shared with pre-training)."""
    t, dev = run.cfg.train, run.device
    ddp = isinstance(run.step_model, nn.parallel.DistributedDataParallel)
    run.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for k in range(t.accum_steps):
        epoch, i, batch = next(stream)
        video = batch["video"].flatten(0, 1).to(dev, non_blocking=True)  # (B, R, 3, T, H, W) -> (B*R, ...)
        labels = batch["label"].flatten().to(dev)
        rng = np.random.default_rng(dist.sample_seed(t.seed, run.step, dist.get_rank() * t.accum_steps + k,
                                                     "augment"))
        video, targets = augment_batch(video, labels, run.num_classes, run.cfg.augment, rng)
        sync = k == t.accum_steps - 1
        with (run.step_model.no_sync() if ddp and not sync else contextlib.nullcontext()), \
                autocast(run.precision, dev):
            loss = soft_target_cross_entropy(run.step_model(video), targets)
        run.scaler.scale(loss / t.accum_steps).backward()
        total += loss.item() / t.accum_steps
    run.position = {"epoch": epoch + 1, "batch": 0} if i + 1 >= run.batches_per_epoch else \
        {"epoch": epoch, "batch": i + 1}
    grad_norm, skipped = update(run.model, run.optimizer, run.scaler, run.cfg.optim.clip_grad, math.isfinite(total))
    return {**dist.mean_over_ranks({"loss": total}, dev), "grad_norm": grad_norm, "skipped": float(skipped)}


def train(run: Run) -> list[dict]:
    """lr/wd from the step -> train_step -> log -> maybe validate -> maybe checkpoint. Returns the history."""
    from tqdm import tqdm

    t, o = run.cfg.train, run.cfg.optim
    end = min(t.stop_after or run.total_steps, run.total_steps)
    logger = build_logger(run.out_dir, run.step if run.step else None, enabled=dist.is_main())
    stream = micro_batches(run)
    val = _test_set(run.cfg, run.cfg.task.val_list, 1, 1) if run.cfg.task.val_list and run.cfg.task.eval_every \
        else None
    clips_per_step = t.batch_size * dist.get_world_size() * t.accum_steps * run.cfg.task.repeated_aug
    bar = tqdm(total=end, initial=run.step, unit="step", disable=not dist.is_main(), dynamic_ncols=True)
    history, in_a_row = [], 0
    with contextlib.closing(stream):  # its loader workers stop when the loop ends
        while run.step < end:
            tic = time.perf_counter()
            lr, wd = schedule_step(run.optimizer, o, run.step, run.total_steps, run.warmup_steps, run.peak_lr,
                                   run.final_lr)
            run.model.train()
            metrics = train_step(run, stream)
            in_a_row = count_nonfinite(in_a_row, metrics, lr, run.step, t.max_nonfinite)
            run.step += 1
            metrics.update(lr=lr, weight_decay=wd, clips_per_s=clips_per_step / (time.perf_counter() - tic),
                           epoch=run.position["epoch"], data_failures=float(sum(run.data.failure_counts().values())))
            if val is not None and run.step % run.cfg.task.eval_every == 0:
                metrics["val_top1_1view"] = evaluate(run.model, val, run.cfg, run.device, run.precision)["top1"]
            if run.step % t.log_every == 0 or run.step == end:
                logger.log(metrics, run.step)
                history.append({"step": run.step, **metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{lr:.2e}")
            bar.update(1)
            if run.step % t.ckpt_every == 0 or run.step == end:
                save(run)
    bar.close()
    logger.close()
    if dist.is_main() and history:
        plot_loss_curves(run.out_dir / "metrics.jsonl", run.out_dir / "loss.png")
    return history


def evaluate(model: nn.Module, dataset: ClassificationDataset, cfg: FinetuneConfig, device: torch.device,
             precision: str, class_names: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
    """Multi-view test of ``model`` on ``dataset``, sharded over ranks (video i on rank i % world). With a
    ``name``, rank 0 writes ``<name>.json`` (report, views, failures) and ``<name>_confusion.png`` into
    ``train.out_dir``."""
    rank, world = dist.get_rank(), dist.get_world_size()
    pred = multiview_predict(model, dataset, indices=range(rank, len(dataset), world),
                             batch_size=cfg.task.eval_batch_size, num_workers=cfg.data.num_workers, device=device,
                             precision=precision, progress=dist.is_main() and bool(name))
    report = multiview_report(merge_predictions(dist.all_gather_objects(pred)), dataset, class_names)
    if name and dist.is_main():
        save_report(report, cfg.train.out_dir, name)
    return report


def _final_tests(model: nn.Module, cfg: FinetuneConfig, device: torch.device, precision: str,
                 class_names: list[str] | None) -> dict[str, dict]:
    return {name: evaluate(model, _test_set(cfg, list_file), cfg, device, precision, class_names, name)
            for name, list_file in (("val", cfg.task.val_list), ("test", cfg.task.test_list)) if list_file}


def evaluate_checkpoint(cfg: FinetuneConfig) -> dict[str, dict]:
    """``task.eval_only``: multi-view test of the fine-tuned classifier in ``train.init`` (ours, or an original
    VideoMAE/MME / Hugging Face fine-tuned checkpoint) on the val and test lists, without training."""
    from mme.models.checkpoint import load_model

    if not cfg.train.init:
        raise ConfigError("task.eval_only needs train.init: the fine-tuned checkpoint to test")
    info = dist.init_distributed(choose_device(cfg.train.device).type)
    device = choose_device(cfg.train.device, info.local_rank)
    precision, _ = choose_precision(cfg.train.precision, device)
    model = load_model(cfg.train.init)
    if not isinstance(model, VideoClassifier):
        raise ConfigError(f"train.init {cfg.train.init}: holds a {type(model).__name__}, not a fine-tuned "
                          "classifier; task.eval_only tests classifiers")
    names = _class_names(cfg)
    if names is not None and len(names) != model.num_classes:
        raise ConfigError(f"task.classes names {len(names)} classes, {cfg.train.init} predicts {model.num_classes}")
    ckpt.prepare_out_dir(cfg.train.out_dir, write=dist.is_main())
    return _final_tests(model, cfg, device, precision, names)


@dataclass
class FinetuneResult:
    out_dir: Path
    step: int
    history: list[dict]
    reports: dict[str, dict]
    """Final multi-view reports by split name ('val', 'test')."""
    seconds: float
    rank: int
    """This process's rank (the process group is gone when the result is returned)."""


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Set up (failing fast on bad input), print the derived numbers, train, then multi-view test."""
    t0 = time.perf_counter()
    try:
        if cfg.task.eval_only:
            reports = evaluate_checkpoint(cfg)
            return FinetuneResult(Path(cfg.train.out_dir), 0, [], reports, time.perf_counter() - t0, dist.get_rank())
        run = setup(cfg)
        if dist.is_main():
            print(describe(run), flush=True)
        history = train(run)
        reports = _final_tests(run.model, run.cfg, run.device, run.precision, run.class_names) \
            if run.step >= run.total_steps else {}
        return FinetuneResult(run.out_dir, run.step, history, reports, time.perf_counter() - t0, dist.get_rank())
    finally:
        dist.shutdown()


def main(recipe: str, overrides: list[str]) -> int:
    """``mme finetune --config RECIPE key=value ...``."""
    result = finetune(load_config(FinetuneConfig, recipe, overrides))
    if result.rank == 0:
        summary = {name: {k: r[k] for k in ("top1", "top5", "mean_class_accuracy", "views_per_video")}
                   for name, r in result.reports.items()}
        print(json.dumps({"out_dir": str(result.out_dir), "step": result.step, **summary,
                          "minutes": round(result.seconds / 60, 2)}), flush=True)
    return 0
