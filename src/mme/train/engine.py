"""The one training engine: setup, the step loop and checkpoints, shared by pre-training and fine-tuning.

A kind of training supplies its config, model, dataset and a :class:`Job`: how a micro-batch becomes the model's
inputs (``inputs``, outside autocast: to the device, masks, targets, augmentation) and how those become a loss
(``forward``, under autocast), plus its own metrics. The engine owns the rest: device, precision, DDP, the out
folder, resume, logs, accumulation with DDP's ``no_sync``, clipping, lr/wd schedules, non-finite steps,
progress, and the checkpoint of every stateful part.

Reproducibility: the data order is a function of (seed, epoch); jobs draw each sample's randomness (crop, mask,
augmentation) from generators seeded by the seed, the epoch or step, and the sample, so nothing depends on the
rank, the number of data workers or where a run was resumed. A checkpoint holds the weights, optimizer, scaler,
step, RNG states and data position, so a resumed run continues bitwise-identically on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader, Dataset

from mme.data.dataset import collate
from mme.errors import CheckpointError, MMEError, NonFiniteLossError
from mme.models.checkpoint import load_state
from mme.models.vit import count_parameters
from mme.train import checkpoint as ckpt
from mme.train import distributed as dist
from mme.train.config import TrainConfig
from mme.train.metrics import build_logger, plot_loss_curves
from mme.train.optim import OptimConfig, build_optimizer, schedule_step
from mme.train.precision import autocast, choose_device, choose_precision, make_scaler

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What a kind of training supplies to the engine besides its config, model and data."""

    inputs: Callable[[Run, dict, int, int], Any]
    """``(run, batch, epoch, micro-batch k) ->`` what ``forward`` takes, on the run's device."""
    forward: Callable[[Run, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    """``(run, inputs) -> (loss, {name: scalar tensor to log})``, called under autocast."""
    timing_loss: Callable[[torch.device], Callable[[], torch.Tensor]]
    """A representative loss of the model on the device, for timing precisions (``train.precision=auto``)."""
    unit: str = "clips"
    """What a dataset item is, in messages."""
    clips_per_item: int = 1
    """Clips per dataset item (fine-tuning's repeated augmentation), for the clips/s metric."""
    after_step: Callable[[Run, dict], None] | None = None
    """Called after each optimizer step with its metrics (which it may extend), before they are logged."""
    checkpoint_extra: dict = field(default_factory=dict)
    """Entries every checkpoint of the run holds besides the training state (pre-training's head specs, so a
    checkpoint rebuilds its model without the code of its targets)."""


@dataclass
class Start:
    """What every run knows before it builds anything: where it runs, its folder, and what it resumes."""

    device: torch.device
    world_size: int
    out_dir: Path
    resume: tuple[str, dict] | None
    """``(source, checkpoint state)``, or None for a fresh run."""


@dataclass
class Run:
    """Everything built by :func:`setup`."""

    cfg: Any
    """The run's whole config (with ``train`` and ``optim`` sections); checkpoints store it."""
    job: Job
    model: nn.Module  # the plain module (its state dict is what checkpoints hold)
    data: Dataset
    device: torch.device
    precision: str
    step_model: nn.Module  # what the step calls: the model, compiled and/or DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batches_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    final_lr: float
    out_dir: Path
    meta: dict
    step: int = 0
    position: dict = field(default_factory=lambda: {"epoch": 0, "batch": 0})


@dataclass
class TrainResult:
    """What the loop did (rank 0's history)."""

    out_dir: Path
    step: int
    checkpoint: Path | None
    history: list[dict]
    """The logged metrics records."""
    nonfinite_skipped: int
    seconds: float


# ---- setup -------------------------------------------------------------------------------------------------------


def begin(t: TrainConfig) -> Start:
    """Join the process group (under torchrun), pick the device, check the out folder, read what to resume."""
    info = dist.init_distributed(choose_device(t.device).type)
    device = choose_device(t.device, info.local_rank)
    out_dir = ckpt.prepare_out_dir(t.out_dir, write=dist.is_main())
    return Start(device, info.world_size, out_dir, resume_state(t.resume, out_dir))


def resume_state(resume: str | None, out_dir: Path) -> tuple[str, dict] | None:
    """``(source, checkpoint state)`` to resume from: 'auto' = the newest valid checkpoint in out_dir, else a
    path; None when starting fresh."""
    if not resume:
        return None
    if resume == "auto":
        found = ckpt.latest_valid(out_dir)
        if found is None:
            log.info("train.resume=auto: no checkpoint in %s, starting fresh", out_dir)
            return None
        return str(found[0]), found[1]
    return resume, ckpt.load_checkpoint(Path(resume))


def setup(cfg: Any, job: Job, model: nn.Module, data: Dataset, start: Start) -> Run:
    """The run of ``model`` (on the CPU, with its initial weights) on ``data``: schedule, precision, optimizer,
    resumed state, and the run files, all checked before the first step."""
    t, o = cfg.train, cfg.optim
    batches_per_epoch, total_steps, warmup = schedule_lengths(len(data), t, o, start.world_size, job.unit)
    peak_lr, final_lr = o.scaled_lr(t.batch_size * start.world_size * t.accum_steps)
    if start.resume is None and dist.is_main() and ckpt.list_checkpoints(start.out_dir):
        log.warning("%s holds checkpoints of an earlier run; this fresh run replaces them as it goes "
                    "(train.resume=auto continues the earlier one instead)", start.out_dir)
    model.to(start.device)
    precision, why = run_precision(t, start.device, model, job.timing_loss(start.device))
    optimizer, scaler, step_model = build_step(model, o, t, start.device, precision, start.world_size)
    run = Run(cfg, job, model, data, start.device, precision, step_model, optimizer, scaler, batches_per_epoch,
              total_steps, warmup, peak_lr, final_lr, start.out_dir,
              ckpt.run_meta(start.device, precision, why, start.world_size))
    if start.resume is not None:
        restore(run, *start.resume)
    dist.check_start_step(run.step, start.device)
    if dist.is_main():
        ckpt.write_run_files(start.out_dir, dataclasses.asdict(cfg), run.meta)
    return run


def schedule_lengths(num_items: int, t: TrainConfig, o: OptimConfig, world_size: int,
                     unit: str) -> tuple[int, int, int]:
    """``(batches per epoch, total optimizer steps, warm-up steps)`` for ``num_items`` training items, failing
    before any training when an epoch cannot fill one optimizer step."""
    batches_per_epoch = num_items // (t.batch_size * world_size)
    if batches_per_epoch < t.accum_steps:
        raise MMEError(f"data: {num_items} {unit} give {batches_per_epoch} batches per epoch of "
                       f"{t.batch_size} x {world_size} ranks; an optimizer step needs {t.accum_steps}")
    steps_per_epoch = batches_per_epoch // t.accum_steps
    total = t.steps or t.epochs * steps_per_epoch
    warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_epochs * steps_per_epoch)
    return batches_per_epoch, total, min(warmup, total)


def run_precision(t: TrainConfig, device: torch.device, model: nn.Module,
                  loss_fn: Callable[[], torch.Tensor]) -> tuple[str, str]:
    """``(precision, reason)``: ``train.precision``, or what 'auto' resolves to, timing ``loss_fn`` on ``model``
    where that decides. Every rank takes rank 0's choice."""
    choice = dist.broadcast_object(choose_precision(t.precision, device, loss_fn))
    model.zero_grad(set_to_none=True)  # from the timed steps, if any
    return choice


def build_step(model: nn.Module, o: OptimConfig, t: TrainConfig, device: torch.device, precision: str,
               world_size: int) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler, nn.Module]:
    """The optimizer, the grad scaler and the module the step calls (compiled and/or DDP-wrapped)."""
    optimizer = build_optimizer(model, o, device)
    scaler = make_scaler(precision, device)
    step_model: nn.Module = torch.compile(model) if t.compile else model
    if world_size > 1:
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
    return optimizer, scaler, step_model


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old -> new`` for every flattened key whose value differs (keys in ``ignore`` left out)."""
    old, new = _flat(old), _flat(new)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in ignore and old.get(k) != new.get(k)]


def restore(run: Run, source: str, state: dict) -> None:
    """Load model, optimizer, scaler, step, data position and RNG states into ``run`` (warns on config changes)."""
    load_state(run.model, state["model"], f"checkpoint {source}")
    changed = config_changes(state["config"], dataclasses.asdict(run.cfg),
                             ("train.resume", "train.stop_after", "train.init", "train.out_dir"))
    if changed:
        log.warning("resuming %s with a changed config (the run will not replay exactly): %s", source, changed)
    try:
        run.optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {source}: optimizer state does not fit this model ({e})") from e
    run.scaler.load_state_dict(state.get("scaler") or {})
    run.step, run.position = int(state["step"]), dict(state["data"])
    ckpt.set_rng_state(state["rng"])
    log.info("resumed from %s at step %d (epoch %d, batch %d)", source, run.step, run.position["epoch"],
             run.position["batch"])


def summary(run: Run, job_lines: list[str]) -> str:
    """What a run prints at its start: the derived numbers (``job_lines`` are the job's own), the settings that
    differ from the defaults, and where the full config is."""
    t, o = run.cfg.train, run.cfg.optim
    world = dist.get_world_size()
    items = t.batch_size * world * t.accum_steps
    params = count_parameters(run.model)
    settings = config_changes(dataclasses.asdict(type(run.cfg)()), dataclasses.asdict(run.cfg))
    lines = [
        f"  world size {world}, device {run.device} ({run.meta['device_name']}), precision {run.precision}"
        f" ({run.meta['precision_reason']})",
        f"  effective batch {items} = {t.batch_size}/rank x {world} ranks x {t.accum_steps} accum",
        f"  lr {run.peak_lr:.4g} -> {run.final_lr:.4g} (base {o.base_lr:g} x {items}/{o.lr_batch_ref}), warm-up "
        f"{run.warmup_steps} steps, cosine" + (f", layer decay {o.layer_decay}" if o.layer_decay else ""),
        f"  {len(run.data)} {run.job.unit}, {run.batches_per_epoch // t.accum_steps} steps/epoch, "
        f"{run.total_steps} steps" + (f", stopping after {t.stop_after}" if t.stop_after else ""),
        f"  parameters {params / 1e6:.2f}M",
        *job_lines,
        f"  out dir {run.out_dir} (config.yaml: the full config)" + (f"; resuming at step {run.step}" if run.step
                                                                     else ""),
    ]
    sections: dict[str, list[str]] = {}
    for change in settings:  # "section.key: old -> new"
        key, value = change.split(": ", 1)[0], change.split(" -> ", 1)[1]
        sections.setdefault(key.split(".")[0], []).append(f"{key.split('.', 1)[1]}={value}")
    wrap = textwrap.TextWrapper(120, subsequent_indent="      ", break_long_words=False)
    return "\n".join(["derived:", *lines, "settings that differ from the defaults:",
                      *(wrap.fill(f"  {name}: " + " ".join(items)) for name, items in sections.items())])


def print_summary(run: Run, job_lines: list[str]) -> None:
    """Rank 0 prints :func:`summary`; the whole resolved config goes to the debug log (``mme -v``)."""
    if dist.is_main():
        log.debug("resolved config:\n%s", yaml.safe_dump(dataclasses.asdict(run.cfg), sort_keys=False).rstrip())
        print(summary(run, job_lines), flush=True)


# ---- the loop ----------------------------------------------------------------------------------------------------


def micro_batches(run: Run) -> Iterator[tuple[int, int, dict]]:
    """(epoch, batch index, batch) forever from the saved position; consumed batches are skipped by index."""
    t = run.cfg.train
    epoch, skip = run.position["epoch"], run.position["batch"]
    while True:
        order = dist.epoch_batches(len(run.data), t.batch_size, t.seed, epoch)[:run.batches_per_epoch]
        run.data.set_epoch(epoch)  # the dataset draws each item's crop from (seed, epoch, index)
        # The loader draws its workers' base seed from `generator`, not from the global RNG, which must advance
        # only with the steps (it is checkpointed; creating a loader mid-epoch on resume must not move it).
        g = torch.Generator().manual_seed(dist.sample_seed(t.seed, epoch, dist.get_rank(), "loader"))
        loader = DataLoader(run.data, batch_sampler=order[skip:], collate_fn=collate, generator=g,
                            num_workers=run.cfg.data.num_workers, pin_memory=run.device.type == "cuda")
        for i, batch in enumerate(loader, start=skip):
            yield epoch, i, batch
        epoch, skip = epoch + 1, 0


def update(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           clip_grad: float | None, loss_finite: bool) -> tuple[float, bool]:
    """Unscale, clip, and step unless the loss or (without fp16's scaler, which skips by itself) the gradient is
    non-finite on any rank. Returns ``(grad norm, skipped)``."""
    scaler.unscale_(optimizer)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad or math.inf).item()
    bad = not loss_finite or (not scaler.is_enabled() and not math.isfinite(grad_norm))
    skipped = dist.any_true(bad, next(model.parameters()).device)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        scaler.step(optimizer)
    scaler.update()
    return grad_norm, skipped


def train_step(run: Run, stream: Iterator) -> dict[str, float]:
    """One optimizer step over ``accum_steps`` micro-batches (DDP's gradient all-reduce only on the last). Returns
    the metrics, averaged over micro-batches and ranks; ``skipped`` = 1 when the loss or gradient was not finite
    on some rank (no update then)."""
    t = run.cfg.train
    ddp = isinstance(run.step_model, nn.parallel.DistributedDataParallel)
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    for k in range(t.accum_steps):
        epoch, i, batch = next(stream)
        inputs = run.job.inputs(run, batch, epoch, k)
        sync = k == t.accum_steps - 1
        with (run.step_model.no_sync() if ddp and not sync else contextlib.nullcontext()), \
                autocast(run.precision, run.device):
            loss, values = run.job.forward(run, inputs)
        run.scaler.scale(loss * (1.0 / t.accum_steps)).backward()
        for key, v in {"loss": loss, **values}.items():
            sums[key] = sums.get(key, 0.0) + v.item() / t.accum_steps
    run.position = {"epoch": epoch + 1, "batch": 0} if i + 1 >= run.batches_per_epoch else \
        {"epoch": epoch, "batch": i + 1}
    grad_norm, skipped = update(run.model, run.optimizer, run.scaler, run.cfg.optim.clip_grad,
                                math.isfinite(sums["loss"]))
    return {**dist.mean_over_ranks(sums, run.device), "grad_norm": grad_norm, "skipped": float(skipped)}


def count_nonfinite(in_a_row: int, metrics: dict, lr: float, step: int, max_nonfinite: int) -> int:
    """Skipped (non-finite) steps in a row, this one included; stops the run with a diagnostic at
    ``max_nonfinite``."""
    in_a_row = in_a_row + 1 if metrics["skipped"] else 0
    if in_a_row >= max_nonfinite:
        raise NonFiniteLossError(
            f"step {step}: {in_a_row} non-finite losses in a row (train.max_nonfinite={max_nonfinite}); last values "
            f"{metrics}; lr {lr:.3g}. Lower optim.base_lr, set optim.clip_grad or use fp32.")
    return in_a_row


def save(run: Run) -> Path | None:
    """A checkpoint at the current step (rank 0 writes; every rank waits for it)."""
    path = None
    if dist.is_main():
        state = {"model": run.model.state_dict(), "config": dataclasses.asdict(run.cfg),
                 "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "step": run.step,
                 "data": dict(run.position), "rng": ckpt.rng_state(), "meta": run.meta, **run.job.checkpoint_extra}
        path = ckpt.save_checkpoint(state, run.out_dir, run.cfg.train.keep_last)
    dist.barrier()
    return path


def data_failures(run: Run) -> float:
    """Videos the dataset could not decode and replaced so far (counted by the dataset over all workers)."""
    return float(sum(run.data.failure_counts().values()))


def train(run: Run) -> TrainResult:
    """The loop: lr/wd from the step -> forward/backward/update -> the job's after-step -> log -> maybe
    checkpoint, until ``train.stop_after`` or the end of the schedule."""
    from tqdm import tqdm

    t, o = run.cfg.train, run.cfg.optim
    end = min(t.stop_after or run.total_steps, run.total_steps)
    logger = build_logger(run.out_dir, run.step if run.step else None, enabled=dist.is_main())
    stream = micro_batches(run)
    clips_per_step = t.batch_size * dist.get_world_size() * t.accum_steps * run.job.clips_per_item
    bar = tqdm(total=end, initial=run.step, unit="step", disable=not dist.is_main(), dynamic_ncols=True)
    history, in_a_row, skipped, path, t0 = [], 0, 0, None, time.perf_counter()
    with contextlib.closing(stream):  # its loader workers stop when the loop ends, inside the timed run
        while run.step < end:
            tic = time.perf_counter()
            lr, wd = schedule_step(run.optimizer, o, run.step, run.total_steps, run.warmup_steps, run.peak_lr,
                                   run.final_lr)
            run.model.train()
            metrics = train_step(run, stream)
            in_a_row = count_nonfinite(in_a_row, metrics, lr, run.step, t.max_nonfinite)
            skipped += int(metrics["skipped"])
            run.step += 1
            metrics.update(lr=lr, weight_decay=wd, clips_per_s=clips_per_step / (time.perf_counter() - tic),
                           epoch=run.position["epoch"], data_failures=data_failures(run))
            if run.job.after_step is not None:
                run.job.after_step(run, metrics)
            if run.step % t.log_every == 0 or run.step == end:
                logger.log(metrics, run.step)
                history.append({"step": run.step, **metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{lr:.2e}", clips_s=f"{metrics['clips_per_s']:.1f}")
            bar.update(1)
            if run.step % t.ckpt_every == 0 or run.step == end:
                path = save(run)
    bar.close()
    logger.close()
    if dist.is_main() and data_failures(run):
        log.warning("data: %s videos failed and were replaced: %s (see the warnings above)",
                    int(data_failures(run)), run.data.failure_counts())
    if dist.is_main() and history:
        plot_loss_curves(run.out_dir / "metrics.jsonl", run.out_dir / "loss.png")
    return TrainResult(run.out_dir, run.step, path, history, skipped, time.perf_counter() - t0)
