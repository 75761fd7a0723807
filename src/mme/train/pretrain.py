"""Masked pre-training: setup (everything checked before any training time), then a one-screen loop.

    mme synth runs/synth && mme pretrain --config tiny_cpu_mme     # CPU smoke run
    mme pretrain --config mme_k400_released data.root=/k400 data.list_file=k400/train.txt
    torchrun --standalone --nproc_per_node=8 -m mme.cli pretrain --config mme_k400_released ...
    mme pretrain --config R train.out_dir=runs/x --resume auto   # continue exactly where it stopped

Reproducibility: the data order is a function of (seed, epoch); each sample's augmentation (drawn by the
dataset) and mask come from generators seeded by (seed, epoch, sample index), so they do not depend on the
rank, the number of data workers or where a run was resumed. A checkpoint holds the weights, optimizer,
scaler, step, RNG states and the data position, so a resumed run continues bitwise-identically on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader

from mme.config import load_config
from mme.data.dataset import PretrainDataset, collate
from mme.errors import CheckpointError, DataError, MMEError
from mme.models.checkpoint import load_state, read_checkpoint
from mme.models.mae import MaskedAutoencoder, gather_masked
from mme.motion.targets import head_specs, make_target_fn, step_targets
from mme.train import checkpoint as ckpt
from mme.train import distributed as dist
from mme.train.config import PretrainConfig, TrainConfig
from mme.train.metrics import build_logger, plot_loss_curves
from mme.train.optim import OptimConfig, build_optimizer, schedule_step
from mme.train.precision import autocast, choose_device, choose_precision, make_scaler

log = logging.getLogger(__name__)


class NonFiniteLossError(MMEError):
    """Too many non-finite losses in a row: the run diverged."""


def count_nonfinite(in_a_row: int, metrics: dict, lr: float, step: int, max_nonfinite: int) -> int:
    """Skipped (non-finite) steps in a row, this one included; stops the run with a diagnostic at
    ``max_nonfinite``."""
    in_a_row = in_a_row + 1 if metrics["skipped"] else 0
    if in_a_row >= max_nonfinite:
        raise NonFiniteLossError(
            f"step {step}: {in_a_row} non-finite losses in a row (train.max_nonfinite={max_nonfinite}); last values "
            f"{metrics}; lr {lr:.3g}. Lower optim.base_lr, set optim.clip_grad or use fp32.")
    return in_a_row


@dataclass
class Run:
    """Everything built by :func:`setup`."""

    cfg: PretrainConfig
    device: torch.device
    precision: str
    model: MaskedAutoencoder  # the plain module (its state dict is what checkpoints hold)
    step_model: nn.Module  # what the step calls: the model, compiled and/or DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data: PretrainDataset
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
class PretrainResult:
    """What a run did (returned by :func:`pretrain`)."""

    out_dir: Path
    step: int
    checkpoint: Path | None
    history: list[dict]
    """The logged metrics records (rank 0)."""
    nonfinite_skipped: int
    seconds: float


def schedule_lengths(num_items: int, t: TrainConfig, o: OptimConfig, world_size: int,
                     unit: str) -> tuple[int, int, int]:
    """``(batches per epoch, total optimizer steps, warm-up steps)`` for ``num_items`` training items, failing
    before any training when an epoch cannot fill one optimizer step (shared by pre-training and fine-tuning)."""
    batches_per_epoch = num_items // (t.batch_size * world_size)
    if batches_per_epoch < t.accum_steps:
        raise MMEError(f"data: {num_items} {unit} give {batches_per_epoch} batches per epoch of "
                       f"{t.batch_size} x {world_size} ranks; an optimizer step needs {t.accum_steps}")
    steps_per_epoch = batches_per_epoch // t.accum_steps
    total = t.steps or t.epochs * steps_per_epoch
    warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_epochs * steps_per_epoch)
    return batches_per_epoch, total, min(warmup, total)


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


def pretrain_dataset(cfg: PretrainConfig) -> PretrainDataset:
    """The run's training clips with their worker-made targets (positions, shape), as pre-training reads them."""
    target_fn = make_target_fn(cfg.target, cfg.model)
    return PretrainDataset(cfg.data, target_fn, target_fn.track_length, seed=cfg.train.seed)


@torch.no_grad()
def mean_prediction_loss(model: MaskedAutoencoder, cfg: PretrainConfig, items: list[dict],
                         chunk: int = 64) -> dict[str, float]:
    """Each loss term, and their weighted total ``loss``, of always predicting the mean target of ``items``
    (dataset items; valid tokens only; pixel / HOG made from their clips as the training step makes them): the
    level below which a target's loss shows that it learned something from the clips."""
    def chunks():
        for k in range(0, len(items), chunk):
            part = items[k:k + chunk]
            targets = {n: torch.stack([it["targets"][n] for it in part]).float() for n in part[0]["targets"]}
            targets.update(step_targets(torch.stack([it["video"] for it in part]).float(), cfg.target, cfg.model))
            valid = {n: torch.stack([it["valid"][n] for it in part]) for n in part[0]["valid"]}
            yield len(part), targets, valid

    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    for _, targets, valid in chunks():
        for n, t in targets.items():
            w = valid[n].float()[..., None] if n in valid else torch.ones_like(t[..., :1])
            sums[n] = sums.get(n, 0) + (t * w).sum((0, 1))
            weights[n] = weights.get(n, 0) + w.sum()
    terms: dict[str, float] = {}
    for size, targets, valid in chunks():
        preds = {n: (sums[n] / weights[n]).expand_as(t) for n, t in targets.items()}
        mask = torch.ones(next(iter(targets.values())).shape[:2], dtype=torch.bool)
        total, parts = model.forward_loss(preds, targets, mask, valid)
        for n, v in {"loss": total, **parts}.items():
            terms[n] = terms.get(n, 0.0) + float(v) * size / len(items)
    return terms


def setup(cfg: PretrainConfig) -> Run:
    """Build and check everything (out dir, data, model, checkpoint) before the first step."""
    t = cfg.train
    info = dist.init_distributed(choose_device(t.device).type)
    device = choose_device(t.device, info.local_rank)
    out_dir = ckpt.prepare_out_dir(t.out_dir, write=dist.is_main())
    if cfg.data.root and not Path(cfg.data.root).is_dir():
        raise DataError(f"data.root {cfg.data.root!r} is not a folder")
    dataset = pretrain_dataset(cfg)
    o = cfg.optim
    batches_per_epoch, total_steps, warmup = schedule_lengths(len(dataset), t, o, info.world_size, "clips")
    peak_lr, final_lr = o.scaled_lr(t.batch_size * info.world_size * t.accum_steps)

    torch.manual_seed(t.seed)  # the initial weights
    model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    resume = resume_state(t.resume, out_dir)
    if resume is None and dist.is_main() and ckpt.list_checkpoints(out_dir):
        log.warning("%s holds checkpoints of an earlier run; this fresh run replaces them as it goes "
                    "(train.resume=auto continues the earlier one instead)", out_dir)
    if t.init and resume is None:
        _init_weights(model, t.init)
    model.to(device)
    precision, why = run_precision(t, device, model, _timing_loss(model, cfg, device))
    if t.activation_checkpointing:
        checkpoint_blocks(model)
    optimizer, scaler, step_model = build_step(model, o, t, device, precision, info.world_size)
    run = Run(cfg, device, precision, model, step_model, optimizer, scaler, dataset,
              batches_per_epoch, total_steps, warmup, peak_lr, final_lr, out_dir,
              ckpt.run_meta(device, precision, why, info.world_size))
    if resume is not None:
        restore(run, *resume)
    dist.check_start_step(run.step, device)
    if dist.is_main():
        ckpt.write_run_files(out_dir, dataclasses.asdict(cfg), run.meta)
    return run


def run_precision(t: TrainConfig, device: torch.device, model: nn.Module,
                  loss_fn) -> tuple[str, str]:
    """``(precision, reason)`` of a run (shared by pre-training and fine-tuning): ``train.precision``, or what
    'auto' resolves to, timing ``loss_fn`` on ``model`` where that decides. Every rank takes rank 0's choice."""
    choice = dist.broadcast_object(choose_precision(t.precision, device, loss_fn))
    model.zero_grad(set_to_none=True)  # from the timed steps, if any
    return choice


def _timing_loss(model: MaskedAutoencoder, cfg: PretrainConfig, device: torch.device):
    """A loss of the run's model on a zero clip of the run's shape (at most 4 clips), for timing precisions."""
    m, b = cfg.model, min(cfg.train.batch_size, 4)
    video = torch.zeros(b, 3, m.num_frames, m.img_size, m.img_size, device=device)
    mask = model.make_mask(b, torch.Generator()).to(device)  # a private generator: the run's RNG is untouched
    targets = {h.name: torch.zeros(b, m.num_tokens, h.dim, device=device) for h in model.head_specs}
    return lambda: model(video, mask, targets, {})[0]


def describe(run: Run) -> str:
    """The resolved config and the numbers derived from it, as printed at the start of a run."""
    c, t = run.cfg, run.cfg.train
    world = dist.get_world_size()
    clips = t.batch_size * world * t.accum_steps
    n = c.model.num_tokens
    n_masked = int(run.model.make_mask(1, torch.Generator()).sum())  # (a private generator: the run's RNG is untouched)
    enc = sum(p.numel() for p in run.model.encoder.parameters())
    total = sum(p.numel() for p in run.model.parameters())
    heads = ", ".join(f"{h.name}:{h.dim}" for h in run.model.head_specs)
    lines = [
        "resolved config:", yaml.safe_dump(dataclasses.asdict(c), sort_keys=False).rstrip(), "derived:",
        f"  world size {world}, device {run.device} ({run.meta['device_name']}), precision {run.precision}"
        f" ({run.meta['precision_reason']})",
        f"  effective batch {clips} = {t.batch_size}/rank x {world} ranks x {t.accum_steps} accum",
        f"  lr {run.peak_lr:.4g} -> {run.final_lr:.4g} (base {c.optim.base_lr:g} x {clips}/{c.optim.lr_batch_ref}),"
        f" warm-up {run.warmup_steps} steps, cosine",
        f"  {len(run.data)} clips, {run.batches_per_epoch // t.accum_steps} steps/epoch, {run.total_steps} steps"
        + (f", stopping after {t.stop_after}" if t.stop_after else ""),
        f"  tokens per clip {n} (grid {c.model.grid}): {n - n_masked} visible, {n_masked} masked"
        f" ({c.model.mask_type}, ratio {c.model.mask_ratio})",
        f"  per step: {clips} clips, {clips * n} tokens, {clips * (n - n_masked)} through the encoder",
        f"  parameters: encoder {enc / 1e6:.2f}M, decoder+heads {(total - enc) / 1e6:.2f}M, total {total / 1e6:.2f}M",
        f"  heads {heads}; out dir {run.out_dir}" + (f", resuming at step {run.step}" if run.step else ""),
    ]
    return "\n".join(lines)


def resume_state(resume: str | None, out_dir: Path) -> tuple[str, dict] | None:
    """``(source, checkpoint state)`` to resume from: 'auto' = the newest valid checkpoint in out_dir, else a
    path; None when starting fresh (shared by pre-training and fine-tuning)."""
    if not resume:
        return None
    if resume == "auto":
        found = ckpt.latest_valid(out_dir)
        if found is None:
            log.info("train.resume=auto: no checkpoint in %s, starting fresh", out_dir)
            return None
        return str(found[0]), found[1]
    return resume, ckpt.load_checkpoint(Path(resume))


def _init_weights(model: MaskedAutoencoder, path: str) -> None:
    """Initial weights from any checkpoint mme reads (ours, the original VideoMAE/MME release, Hugging Face):
    the whole masked autoencoder when the file has one, else the encoder only (decoder and heads stay fresh)."""
    ck = read_checkpoint(path)
    if ck.kind == "mae":
        load_state(model, ck.state, f"train.init {ck.source}")
    else:
        load_state(model.encoder, ck.encoder_state, f"train.init {ck.source}")
    log.info("initial weights from %s (%s)", ck.source, "whole model" if ck.kind == "mae" else "encoder only")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def restore(run: Run, source: str, state: dict) -> None:
    """Load model, optimizer, scaler, step, data position and RNG states into ``run`` (warns on config changes)."""
    load_state(run.model, state["model"], f"checkpoint {source}")
    ignore = ("train.resume", "train.stop_after", "train.init", "train.out_dir")
    old, new = _flat(state["config"]), _flat(dataclasses.asdict(run.cfg))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if k not in ignore and old.get(k) != new.get(k)]
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


def checkpoint_blocks(model: MaskedAutoencoder) -> None:
    """Activation checkpointing of every encoder block; the forward is replaced per instance, so parameter
    names (and checkpoints) are unchanged."""
    from torch.utils.checkpoint import checkpoint

    for blk in model.encoder.blocks:
        blk.forward = lambda x, f=blk.forward: checkpoint(f, x, use_reentrant=False)


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


def masks_for(model: MaskedAutoencoder, indices: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """One mask per sample from a generator seeded by (seed, epoch, index): ``(B, N)`` bool."""
    g = torch.Generator()
    rows = []
    for i in indices.tolist():
        g.manual_seed(dist.sample_seed(seed, epoch, i, "mask"))
        rows.append(model.make_mask(1, g))
    return torch.cat(rows)


def forward_backward(step_model: nn.Module, video: torch.Tensor, mask: torch.Tensor, targets: dict, valid: dict,
                     precision: str, scaler: torch.amp.GradScaler, scale: float = 1.0, sync: bool = True):
    """Loss under autocast and its (scaled) backward; ``sync=False`` skips DDP's gradient all-reduce (for all but
    the last accumulated micro-batch). Returns ``(loss, terms)``."""
    ddp = isinstance(step_model, nn.parallel.DistributedDataParallel)
    with (step_model.no_sync() if ddp and not sync else contextlib.nullcontext()), autocast(precision, video.device):
        loss, _, terms = step_model(video, mask, targets, valid)
    scaler.scale(loss * scale).backward()
    return loss, terms


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
    """One optimizer step over ``accum_steps`` micro-batches. Returns the metrics; ``skipped`` = 1 when the loss
    or gradient was not finite on some rank (no update then)."""
    t, dev = run.cfg.train, run.device
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    for k in range(t.accum_steps):
        epoch, i, batch = next(stream)
        video = batch["video"].to(dev, non_blocking=True)
        mask = masks_for(run.model, batch["index"], epoch, t.seed).to(dev)
        targets = {n: v.to(dev, non_blocking=True) for n, v in batch["targets"].items()}
        valid = {n: v.to(dev, non_blocking=True) for n, v in batch["valid"].items()}
        targets.update(step_targets(video, run.cfg.target, run.cfg.model))  # pixel / hog, on the device
        loss, terms = forward_backward(run.step_model, video, mask, targets, valid, run.precision, run.scaler,
                                       1.0 / t.accum_steps, sync=k == t.accum_steps - 1)
        values = {"loss": loss.item(), **{f"loss_{n}": v.item() for n, v in terms.items()},
                  **{f"valid_{n}": gather_masked(v, mask).float().mean().item() for n, v in valid.items()}}
        for key, v in values.items():
            sums[key] = sums.get(key, 0.0) + v / t.accum_steps
    run.position = {"epoch": epoch + 1, "batch": 0} if i + 1 >= run.batches_per_epoch else \
        {"epoch": epoch, "batch": i + 1}
    grad_norm, skipped = update(run.model, run.optimizer, run.scaler, run.cfg.optim.clip_grad,
                                math.isfinite(sums["loss"]))
    return {**dist.mean_over_ranks(sums, dev), "grad_norm": grad_norm, "skipped": float(skipped)}


def save(run: Run) -> Path | None:
    """A checkpoint at the current step (rank 0 writes; every rank waits for it)."""
    path = None
    if dist.is_main():
        state = {"model": run.model.state_dict(), "config": dataclasses.asdict(run.cfg),
                 "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "step": run.step,
                 "data": dict(run.position), "rng": ckpt.rng_state(), "meta": run.meta}
        path = ckpt.save_checkpoint(state, run.out_dir, run.cfg.train.keep_last)
    dist.barrier()
    return path


def train(run: Run) -> PretrainResult:
    """The loop: lr/wd from the step -> forward/backward/update -> log -> maybe checkpoint."""
    from tqdm import tqdm

    t, o = run.cfg.train, run.cfg.optim
    end = min(t.stop_after or run.total_steps, run.total_steps)
    logger = build_logger(run.out_dir, run.step if run.step else None, enabled=dist.is_main())
    stream = micro_batches(run)
    clips_per_step = t.batch_size * dist.get_world_size() * t.accum_steps
    bar = tqdm(total=end, initial=run.step, unit="step", disable=not dist.is_main(), dynamic_ncols=True)
    history, in_a_row, skipped, path, t0 = [], 0, 0, None, time.perf_counter()
    with contextlib.closing(stream):  # its loader workers stop when the loop ends, inside the timed run
        while run.step < end:
            tic = time.perf_counter()
            lr, wd = schedule_step(run.optimizer, o, run.step, run.total_steps, run.warmup_steps, run.peak_lr,
                                   run.final_lr)
            metrics = train_step(run, stream)
            in_a_row = count_nonfinite(in_a_row, metrics, lr, run.step, t.max_nonfinite)
            skipped += int(metrics["skipped"])
            run.step += 1
            metrics.update(lr=lr, weight_decay=wd, clips_per_s=clips_per_step / (time.perf_counter() - tic),
                           epoch=run.position["epoch"], data_failures=_failures(run))
            if run.step % t.log_every == 0 or run.step == end:
                logger.log(metrics, run.step)
                history.append({"step": run.step, **metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{lr:.2e}", clips_s=f"{metrics['clips_per_s']:.1f}")
            bar.update(1)
            if run.step % t.ckpt_every == 0 or run.step == end:
                path = save(run)
    bar.close()
    logger.close()
    if dist.is_main() and run.data.failure_counts():
        log.warning("data: %s videos failed and were replaced: %s (see the warnings above)",
                    int(_failures(run)), run.data.failure_counts())
    if dist.is_main() and history:
        plot_loss_curves(run.out_dir / "metrics.jsonl", run.out_dir / "loss.png")
    return PretrainResult(run.out_dir, run.step, path, history, skipped, time.perf_counter() - t0)


def _failures(run: Run) -> float:
    """Videos the dataset could not decode and replaced so far (counted by the dataset over all workers)."""
    return float(sum(run.data.failure_counts().values()))


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Set up (failing fast on bad input), print the resolved config and derived numbers, train, print a
    one-line JSON summary (rank 0)."""
    try:
        run = setup(cfg)
        if dist.is_main():
            print(describe(run), flush=True)
        result = train(run)
        if dist.is_main():
            print(json.dumps({"out_dir": str(result.out_dir), "step": result.step,
                              "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                              "nonfinite_skipped": result.nonfinite_skipped,
                              "minutes": round(result.seconds / 60, 2)}), flush=True)
        return result
    finally:
        dist.shutdown()


def main(recipe: str, overrides: list[str]) -> int:
    """``mme pretrain --config RECIPE key=value ...``."""
    pretrain(load_config(PretrainConfig, recipe, overrides))
    return 0

