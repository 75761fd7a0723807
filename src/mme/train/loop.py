"""The training engine's loop (set up by mme.train.engine): micro-batches, the optimizer step with accumulation
and DDP's ``no_sync``, non-finite steps, logs, progress, checkpoints, and a clean stop on SIGINT/SIGTERM.

    setup -> loop.train(run): per step, forward/backward -> lr/wd from the step -> update -> the job's after-step
    -> log -> maybe checkpoint, until ``train.stop_after`` or the end of the schedule. A checkpoint due at a step
    with a job's after-step (fine-tuning's periodic validation) is written before it, the step's record after.

Besides the job's metrics every record logs ``lr`` (the schedule's: with ``optim.layer_decay`` the head's, whose
``lr_scale`` is 1, the lower layers training at it times theirs: :func:`mme.train.optim.param_groups`),
``weight_decay`` (of the decayed parameters), ``grad_norm`` (the norm of the gradient before ``optim.clip_grad``
clips it), ``clips_per_s`` (the run's, not a rank's: the clips of every rank's step over rank 0's time of it; the
progress bar's ``clips_s`` too), ``epoch`` (of the step's last batch), ``data_failures`` (videos replaced so far,
found by any rank, prefetching included, and the list's unreadable lines), ``data_wait``: the fraction of the step
spent waiting for batches (rank 0's), which says whether the data workers keep up with the model, ``skipped`` and
``steps``. A record (every ``train.log_every`` steps) covers the steps since the last one: ``steps`` counts them,
and its values are theirs summed up (:class:`LoggedSteps`), not its own step's alone.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn as nn

from mme.config import recorded
from mme.data.dataset import collate, make_loader, start_workers
from mme.data.sampling import window_length
from mme.errors import (
    WRITTEN_KEPT,
    CheckpointError,
    DataError,
    Interrupted,
    MMEError,
    NonFiniteLossError,
    OutOfMemory,
    ProcessLost,
    TooManyFailures,
    memory_limit_said,
    out_of_memory,
)
from mme.train import checkpoint as ckpt
from mme.train import distributed as dist
from mme.train import run_folder
from mme.train.engine import Run
from mme.train.interrupts import StopRequests, WaitStopped, ignore_in_worker
from mme.train.metrics import build_logger, plot_loss_curves
from mme.train.optim import schedule_step
from mme.train.precision import autocast
from mme.utils import (
    Tally,
    atomic_write_json,
    check_folder_held,
    counted,
    error_reason,
    may_want_space,
    memory_advice,
    mib_free,
    plural,
    progress_bar,
    said_as,
    writing,
)

log = logging.getLogger(__name__)


HISTORY_KEPT = 10_000
"""Logged records a run keeps in memory (about 8 MB): a long run logs every step, 750k in a Kinetics pre-training."""


@dataclass
class TrainResult:
    """What the loop did (rank 0's history)."""

    out_dir: Path
    step: int
    checkpoint: Path | None
    history: list[dict]
    """The logged metrics records, the last :data:`HISTORY_KEPT` (``metrics.jsonl`` holds them all); each covers
    the ``steps`` steps since the one before (:class:`LoggedSteps`)."""
    nonfinite_skipped: int
    """Over the whole run, resumed parts included."""
    seconds: float
    """This process's time in the loop."""
    clips: int = 0
    """Clips trained on in this process's steps (:func:`clips_per_step`)."""
    step_seconds: float = 0.0
    """The time of those steps alone, each timed as its logged ``clips_per_s`` (its wait for batches included, not
    the checkpoints, logs and loss curve written after it)."""
    total_steps: int = 0
    """The run's length (``train.steps``, or its epochs'): more than :attr:`step` where a part ended at
    ``train.stop_after``, which ``--resume auto`` continues."""

    @property
    def finished(self) -> bool:
        """Whether the run did all its steps (not a part ending at ``train.stop_after``)."""
        return self.step >= self.total_steps

    @property
    def clips_per_s(self) -> float:
        """The run's training rate: its clips over its steps' time (NaN without a step)."""
        return self.clips / self.step_seconds if self.step_seconds else math.nan


def micro_batches(run: Run) -> Iterator[tuple[int, int, list[tuple[int, int]], dict]]:
    """(epoch, batch index, its items' keys, batch) forever from the saved position; consumed batches are skipped
    by index.

    One loader serves every epoch, so its workers live for the whole run and keep what they cache per process
    (each file's frame index: a second open and demux of the file otherwise). Its batches are lists of (epoch,
    index) keys, so an item prefetched across an epoch boundary is drawn for its own epoch."""
    t = run.cfg.train

    def positions() -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
        epoch, skip = run.position["epoch"], run.position["batch"]
        while True:
            order = dist.epoch_batches(len(run.data), t.batch_size, t.seed, epoch)[:run.batches_per_epoch]
            for i in range(skip, len(order)):
                yield epoch, i, [(epoch, index) for index in order[i]]
            epoch, skip = epoch + 1, 0

    # The loader draws its workers' base seed from `generator`, not from the global RNG, which must advance only
    # with the steps (it is checkpointed; creating the loader on resume must not move it).
    g = torch.Generator().manual_seed(dist.sample_seed(t.seed, run.position["epoch"], dist.get_rank(), "loader"))
    asked, done = itertools.tee(positions())  # the loader runs ahead on `asked`; `done` names what it returns
    loader = make_loader(run.data, batch_sampler=(keys for _, _, keys in asked), collate_fn=collate,
                        generator=g, num_workers=run.cfg.data.num_workers, pin_memory=run.device.type == "cuda",
                        worker_init_fn=ignore_in_worker)
    # closed here as this stream is, not left to the garbage collector, which drops an exception of its workers'
    # shutdown (a second Ctrl-C there, said as "Exception ignored": the run went on to its checkpoint)
    with contextlib.closing(start_workers(loader)) as batches:
        for (epoch, i, keys), batch in zip(done, batches):  # the loader keeps its sampler's order
            yield epoch, i, keys, batch


def update(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           clip_grad: float | None, loss_finite: bool) -> tuple[float, bool, bool]:
    """Unscale, clip, and step unless the loss or (without fp16's scaler, which skips by itself) the gradient is
    non-finite on any rank. Returns ``(grad norm, skipped, overflow)``: ``overflow`` when fp16's scaler skipped
    the step for a non-finite gradient and lowered its scale, still at least 1 (routine at the start of a run;
    below 1 the gradient itself diverges), which ``skipped`` then counts too."""
    scaler.unscale_(optimizer)
    norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if clip_grad:  # without clipping, clip_grad_norm_ would still multiply every gradient by 1
        nn.utils.clip_grads_with_norm_(model.parameters(), clip_grad, norm)
    grad_norm = norm.item()
    bad = not loss_finite or (not scaler.is_enabled() and not math.isfinite(grad_norm))
    skipped = dist.any_true(bad, next(model.parameters()).device)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        scaler.step(optimizer)
    scaler.update()
    scaler_skipped = scaler.is_enabled() and not skipped and not math.isfinite(grad_norm)  # the unscaled gradient
    return grad_norm, skipped or scaler_skipped, scaler_skipped and scaler.get_scale() >= 1.0


def seed_dropout(seed: int, step: int, micro_batch: int) -> None:
    """Seed torch's global generator, which dropout and drop path draw from, for one micro-batch of one step
    (``micro_batch`` counts over ranks): every rank draws its own masks (they drew the same ones, the model having
    been seeded alike on every rank), and a resumed run draws the same as an uninterrupted one."""
    torch.manual_seed(dist.sample_seed(seed, step, micro_batch, "dropout"))


def train_step(run: Run, stream: Iterator, stop: StopRequests) -> tuple[dict[str, float], float, float]:
    """One optimizer step over ``accum_steps`` micro-batches (DDP's gradient all-reduce only on the last). Returns
    the metrics, averaged over micro-batches and ranks, and the step's lr and weight decay; ``skipped`` = 1 when the
    loss or gradient was not finite on some rank (no update then); ``data_wait_s``: this rank's seconds spent waiting
    for its batches. A stop signal while a rank waits for a batch raises
    :class:`~mme.train.interrupts.WaitStopped` on every rank, and a data failure its error, the model, optimizer
    (its lr and weight decay too: the step sets its own only once all its batches are in) and position as the step
    before left them (:meth:`~mme.train.interrupts.StopRequests.waiting`), which the checkpoint of that step saves.

    The ranks agree on a data failure before every micro-batch (:func:`data_failed_together`), and the metrics stay
    tensors on the device until the step's one copy of them to the host
    (:func:`~mme.train.distributed.mean_over_ranks`)."""
    t = run.cfg.train
    ddp = isinstance(run.step_model, nn.parallel.DistributedDataParallel)
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, torch.Tensor] = {}
    waited, before = 0.0, stop.received  # (a stop received before the step ends the run after it, as it said)
    fetched = []  # (keys, videos read) of its micro-batches: their failures the run's once the step is done
    for k in range(t.accum_steps):
        tic = time.perf_counter()
        failed, stopped = None, False
        try:
            with stop.waiting(received_in_step=stop.received is not before):
                epoch, i, keys, batch = next(stream)
        except MMEError as e:  # this rank's alone (no readable video for an item): every rank stops with it
            failed = e
        except WaitStopped:
            stopped = True
        waited += time.perf_counter() - tic
        data_failed_together(failed, run.device, stopped)
        fetched.append((keys, batch["index"]))
        sync = k == t.accum_steps - 1
        inputs = run.job.inputs(run, batch, epoch, k)
        seed_dropout(t.seed, run.step, dist.get_rank() * t.accum_steps + k)
        with dist.rank_lost_said():  # DDP's collectives: the last micro-batch's all-reduce, any in the forward
            with (run.step_model.no_sync() if ddp and not sync else contextlib.nullcontext()), \
                    autocast(run.precision, run.device):
                loss, values = run.job.forward(run, inputs)
            run.scaler.scale(loss * (1.0 / t.accum_steps)).backward()
        for key, v in {"loss": loss, **values}.items():  # float64, as the sum of Python floats it replaced
            share = v.detach().double() / t.accum_steps
            sums[key] = sums[key] + share if key in sums else share
    run.position = {"epoch": epoch + 1, "batch": 0} if i + 1 >= run.batches_per_epoch else \
        {"epoch": epoch, "batch": i + 1}
    metrics = dist.mean_over_ranks(sums, run.device)
    lr, wd = schedule_step(run.optimizer, run.cfg.optim, *run.schedule_args(run.step))
    grad_norm, skipped, overflow = update(run.model, run.optimizer, run.scaler, run.cfg.optim.clip_grad,
                                          math.isfinite(metrics["loss"]))  # (the mean: finite on every rank)
    for keys, read in fetched:
        run.data.note_trained(keys, read)
    scaler = {"grad_overflow": float(overflow)} if run.scaler.is_enabled() else {}
    return {**metrics, "grad_norm": grad_norm, "skipped": float(skipped), **scaler, "data_wait_s": waited}, lr, wd


COUNTED = ("skipped", "grad_overflow")
"""A step's flags that a metrics record counts over the steps it covers (:class:`LoggedSteps`)."""


class LoggedSteps:
    """The steps since the last metrics record (or since this process began its steps: the first record of a
    resumed run covers the steps since the resume), which the next record sums up: ``steps``, their count; the loss,
    the job's metrics and ``grad_norm`` (the norm before clipping) as means over the steps that made their update
    (over all of them where none did: their non-finite values, as a record of one skipped step says them);
    ``skipped`` and fp16's ``grad_overflow`` as counts; ``clips_per_s`` as their clips over their seconds and
    ``data_wait`` as their seconds waiting for batches over their seconds. The other keys (``lr``, ``epoch``, ...)
    are the last step's. The values added are already every rank's (:func:`train_step`), so the means are too."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.steps, self.ran, self.seconds, self.waited = 0, 0, 0.0, 0.0
        self.sums_ran: dict[str, float] = {}
        self.sums_all: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, metrics: dict, seconds: float) -> None:
        """One step's ``metrics`` as :func:`train_step` returns them, which took ``seconds``."""
        self.steps += 1
        self.seconds += seconds
        self.waited += metrics["data_wait_s"]
        ran = not metrics["skipped"]
        self.ran += ran
        for k, v in metrics.items():
            if k in COUNTED:
                self.counts[k] = self.counts.get(k, 0.0) + v
            elif k != "data_wait_s":
                self.sums_all[k] = self.sums_all.get(k, 0.0) + v
                if ran:
                    self.sums_ran[k] = self.sums_ran.get(k, 0.0) + v

    def record(self, step_metrics: dict, clips: int) -> dict:
        """The record of these steps: ``step_metrics`` (the last step's, in their order) with the values summed up
        here in place of the step's own, and ``steps``; then cleared for the next."""
        sums, n = (self.sums_ran, self.ran) if self.ran else (self.sums_all, self.steps)
        record = {**step_metrics, **{k: v / n for k, v in sums.items()}, **self.counts,
                  "clips_per_s": clips * self.steps / self.seconds, "data_wait": self.waited / self.seconds,
                  "steps": self.steps}
        self.clear()
        return record


def data_failed_together(failed: MMEError | None, device: torch.device, stopped: bool = False) -> None:
    """Stop every rank with the data failure of any (:func:`~mme.train.distributed.raise_together`), else with
    :class:`~mme.train.interrupts.WaitStopped` where a stop signal ended any rank's wait for its batch. Called before
    every micro-batch's forward, not once a step: DDP may hold a collective in a forward under ``no_sync`` too (the
    rebuild of its gradient buckets after the first synchronised backward, a static graph's, unused parameters'
    search), which a rank that failed, waiting here, would never meet. In one process it costs nothing
    (:func:`~mme.train.distributed.any_true` returns the flag)."""
    if dist.any_true(failed is not None or stopped, device):
        dist.raise_together(failed)
        raise WaitStopped


def count_nonfinite(in_a_row: int, metrics: dict) -> int:
    """Skipped (non-finite) steps in a row, this one included. fp16's routine gradient overflows (:func:`update`),
    which its scaler skips and answers with a lower scale, are not counted."""
    return in_a_row + 1 if metrics["skipped"] and not metrics.get("grad_overflow") else 0


def nonfinite_values(metrics: dict) -> str:
    """Which of a skipped step's values was non-finite, as its messages say it: 'a non-finite loss and gradient',
    'a non-finite loss' (its gradient norm finite) or 'a non-finite gradient of a finite loss' (an overflow in the
    backward). The loss is the mean over ranks, the gradient norm that of the all-reduced gradient: both every
    rank's."""
    loss, grad = (metrics.get(k) for k in ("loss", "grad_norm"))
    bad_loss, bad_grad = (v is not None and not math.isfinite(v) for v in (loss, grad))
    if bad_loss:
        return "a non-finite loss and gradient" if bad_grad else "a non-finite loss"
    return "a non-finite gradient of a finite loss" if bad_grad else "a non-finite loss or gradient"


def check_nonfinite(in_a_row: int, metrics: dict, step: int, max_nonfinite: int, precision: str,
                    clip_grad: float | None = None) -> None:
    """Stop the run with a diagnostic at ``max_nonfinite`` non-finite steps in a row (``step``: the last one's
    number, as logs and checkpoints count), saying which value was non-finite in the last. It advises
    ``optim.clip_grad`` only where the last gradient norm was finite: clipping scales a gradient, which cannot mend
    a NaN or infinite one. Every rank raises it at the same step: a step is skipped where it is on any rank
    (:func:`update`), so the ranks count alike."""
    if in_a_row >= max_nonfinite:
        grad = metrics.get("grad_norm")
        if grad is not None and not math.isfinite(grad):
            clip = " (optim.clip_grad cannot mend a non-finite gradient)"
        else:
            clip = f" or lower optim.clip_grad (now {clip_grad:g})" if clip_grad else " or set optim.clip_grad"
        advice = "Lower optim.base_lr" + clip + ("" if precision == "fp32" else ", or use fp32")
        raise dist.alike(NonFiniteLossError(
            f"step {step}: {in_a_row} non-finite steps in a row (loss or gradient; train.max_nonfinite="
            f"{max_nonfinite}), the last with {nonfinite_values(metrics)}; last values {metrics}. {advice}."))


def check_updated(run: Run, path: Path | None) -> None:
    """Stop, as :func:`check_nonfinite` does, a run none of whose steps made its update (the run's: checkpoints
    carry its ``skipped`` and ``grad_overflows``, so a run ends alike whether whole or resumed in parts, and a retry
    of a finished run is stopped again), at least one of them skipped for a non-finite loss or gradient: one shorter
    than ``train.max_nonfinite`` ran to its end. Its weights are still those it started from, which give non-finite
    values. Called once its last checkpoint (``path``) is written, at the end of the run's schedule (a part ending at
    ``train.stop_after`` may update later); a run whose skipped steps were all fp16's routine
    gradient overflows (:func:`count_nonfinite`) is not stopped."""
    steps, nonfinite = run.step, skipped_but_overflows(run)
    if not steps or run.skipped < steps or not nonfinite:
        return
    t = run.cfg.train
    overflows = f" ({steps - nonfinite} of them fp16 gradient overflows)" if nonfinite < steps else ""
    origin = f"train.init's, {t.init}" if t.init else "the model as built"
    fp32 = "" if run.precision == "fp32" else ", or use fp32"
    ran = "step 1: the run's one step was" if steps == 1 else f"steps 1-{steps}: the run's {steps} steps were all"
    saved = f", saved as {path}," if path else ""  # (none: resumed with no step left from outside train.out_dir)
    raise dist.alike(NonFiniteLossError(
        f"{ran} skipped for a non-finite loss or gradient{overflows}, fewer in a row than train.max_nonfinite="
        f"{t.max_nonfinite}: no update was made, so its weights are still those it started from ({origin}){saved} "
        f"and they give non-finite values. Check the model's settings (its layer scale, its "
        f"norm eps, its initial scales) and the weights it starts from{fp32}."))


NONFINITE_SAID = 3
"""The skipped steps a process warns about one by one (:class:`SkippedSteps`)."""


class SkippedSteps:
    """Says the steps skipped for a non-finite loss or gradient (rank 0: the ranks skip alike), whatever
    ``train.log_every`` (1 by default): each of the process's first :data:`NONFINITE_SAID` in a warning of its own,
    naming the step and which value was non-finite (:func:`nonfinite_values`); the later ones counted in one warning
    each time the process's count of them doubles (at 6, 12, 24, ...: :class:`mme.utils.Tally`), so that a long run
    skipping every step says about 20 lines in a million steps, and those since the last said in the run's total at
    its end (:func:`_say_skipped`). fp16's routine gradient overflows (:func:`count_nonfinite`:
    ``Run.grad_overflows``) are left to its scaler, unsaid and uncounted here."""

    def __init__(self) -> None:
        self.tally = Tally(NONFINITE_SAID)  # this process's skipped steps

    def step(self, run: Run, metrics: dict) -> None:
        """After the step ``run.step`` that gave ``metrics`` (:func:`count_nonfinite` counted it)."""
        if not dist.is_main() or not run.nonfinite_in_a_row:  # (0: done, or an fp16 overflow)
            return
        since = self.tally.add()
        if since == 0:
            log.warning("step %d skipped: %s (loss %.4g, gradient norm %.4g), its update not made%s", run.step,
                        nonfinite_values(metrics), metrics["loss"], metrics["grad_norm"],
                        self.tally.later and f"{self.tally.later} and at the run's end")
        elif since:
            log.warning("%s skipped for a non-finite loss or gradient, up to step %d: %s so far",
                        counted(since, "more step"), run.step, skipped_share(run))


def skipped_but_overflows(run: Run) -> int:
    """The run's steps skipped for a non-finite loss or gradient but fp16's routine gradient overflows (resumed
    parts included): those :class:`SkippedSteps` says."""
    return run.skipped - run.grad_overflows


def skipped_share(run: Run) -> str:
    """The run's skipped steps but fp16's routine gradient overflows (:func:`skipped_but_overflows`) among its steps."""
    n = skipped_but_overflows(run)
    return f"{n} of the run's {run.step} steps ({100 * n / max(run.step, 1):.1f}%)"


def _say_skipped(run: Run) -> None:
    """At the end of a run: one warning where it skipped steps but fp16's routine gradient overflows, which one
    info line counts (both in ``nonfinite_skipped``, the count of the final JSON line)."""
    if not dist.is_main():
        return
    if run.grad_overflows:
        log.info("%d of the run's %d steps were fp16 gradient overflows, which its scaler skipped, lowering its scale "
                 "(routine: neither warned about nor counted towards train.max_nonfinite)", run.grad_overflows,
                 run.step)
    if skipped_but_overflows(run):
        log.warning("%s were skipped for a non-finite loss or gradient: their updates were not made "
                    "(nonfinite_skipped%s)", skipped_share(run),
                    f", which counts the {run.grad_overflows} fp16 gradient overflows too" if run.grad_overflows
                    else "")


def save(run: Run) -> Path:
    """A checkpoint at the current step, its path on every rank: rank 0 writes it, with every rank's failures of the
    steps trained (:func:`trained_failures`), while the others wait, and they all stop with rank 0's error when it
    could not write (:func:`mme.train.distributed.on_main`). Every rank must call it at the same step."""
    path = dist.on_main(_write_checkpoint, run, trained_failures(run))
    run.saved_step = run.step
    return path


DATA_STOPS = (TooManyFailures, ProcessLost, OutOfMemory)
"""The errors by which the data side ends a run, the model and optimizer intact: videos that cannot be read (more than
``data.max_failure_fraction`` of the list, or an item none of whose tries reads: :class:`~mme.errors.NoReadableVideo`),
a loader worker lost (the out-of-memory killer, a crash, a batch too large for shared memory), or the data side out of
memory (a loader worker's allocation, a video's read: :class:`~mme.errors.OutOfMemory`)."""


def raise_keeping_steps(run: Run, error: Exception, record_pending: Callable[[], object] | None = None) -> NoReturn:
    """Raise ``error`` as the run ends by it, the steps since its last checkpoint kept where the data side stops the
    run on every rank (:data:`DATA_STOPS` raised alike: before a step's forward, :func:`data_failed_together`; at a
    record's join, :func:`share_failures`; in the periodic validation after a step, or fine-tuning's tests after the
    last; checked together, as ranks may fail otherwise at once): a checkpoint of its last finished step, which the
    failed fetch left as it was (model, optimizer, position; the gradients of a step's earlier micro-batches are no
    part of a checkpoint, and the generators are seeded again at each micro-batch), the failures of its steps
    (:func:`trained_failures`), and the error saying so, raised from ``error``; where the run's last checkpoint is of
    that step (a stop right after one, a resumed run's first fetch, the tests after the last step), that one. The
    steps not logged yet are logged first (``record_pending``, where the run may have any), as at any checkpoint, so
    that the kept step's record is there once after a resume. A checkpoint that cannot be written is warned about,
    ``error`` raised as it was."""
    if not dist.raised_alike(error) or dist.any_true(not isinstance(error, DATA_STOPS) or not run.step, run.device):
        raise error
    if record_pending is not None:
        record_pending()  # (a TooManyFailures of its join: the run stops by the error it has)
    if run.step == run.saved_step:  # (a stop right after a checkpoint, or at a resumed run's first fetch)
        path = ckpt.checkpoint_path(run.out_dir, run.step)
    else:
        try:
            path = save(run)
        except CheckpointError as e:
            log.warning("%s", e)
            path = None
    if path is None:  # (nothing kept)
        raise error
    said = str(error)
    raised = " with data.max_failure_fraction raised" if type(error) is TooManyFailures else ""
    # (not one whose line the CLI ends with its own of what is kept: this one says it)
    kind = MMEError if isinstance(error, WRITTEN_KEPT) else type(error)
    kept = dist.alike(kind(f"{said}{' ' if said.endswith(('.', '?')) else '. '}Kept: {path}, the checkpoint of step "
                           f"{run.step}: --resume auto (train.resume=auto){raised} continues from there"))
    kept.unkept = error  # (for a command that continues otherwise: raise_unkept)
    raise kept from error


def raise_unkept(error: BaseException) -> NoReturn:
    """Where ``error`` is a data stop whose steps the run kept (:func:`raise_keeping_steps`), raise the stop in its own
    words from it, a new error of its kind, without the checkpoint kept and how --resume auto continues from it: for a
    command that runs a training run and continues otherwise (``mme demo`` pre-trains the row again, ``mme bench
    pipeline`` removes the run's folder on the way out), whose line the CLI ends, for one of
    :data:`~mme.errors.WRITTEN_KEPT`, with what that command keeps. Else ``error`` itself."""
    stop = getattr(error, "unkept", None)
    if stop is not None:
        raise type(stop)(str(stop)) from error
    raise error


def _write_checkpoint(run: Run, failures: torch.Tensor) -> Path:
    state = {"model": run.model.state_dict(), "config": recorded(run.cfg),  # (paths as UTF-8 text, as config.yaml's)
             "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "step": run.step,
             "data": dict(run.position), "rng": ckpt.rng_state(), "meta": run.meta, "skipped": run.skipped,
             "grad_overflows": run.grad_overflows, "nonfinite_in_a_row": run.nonfinite_in_a_row,
             "schedule": {"offset": run.schedule_offset, "warmup": run.warmup_steps},
             "data_failures": {"list": run.data.list_digest, "codes": failures},
             **run.job.checkpoint_extra}
    try:
        if run.resumed_at is not None:  # a rewind's first checkpoint: every later one is of the branch it left
            run_folder.set_aside_after(run.out_dir, run.resumed_at)
            run.resumed_at = None
        return ckpt.save_checkpoint(state, run.out_dir, run.cfg.train.keep_last)
    except (OSError, RuntimeError) as e:  # (torch.save's writes': their OSError; RuntimeError: torch's own)
        kept = ckpt.list_checkpoints(run.out_dir)
        needed = _nbytes(state) / 2**20
        space = f"; it needs about {needed:.0f} MiB, {mib_free(run.out_dir)}" if may_want_space(e) else ""
        raise CheckpointError(
            f"{run.out_dir}: could not write the checkpoint of step {run.step} ({error_reason(e)}"
            f"{f': {e.filename}' if getattr(e, 'filename', None) else ''}){space}. "
            f"Kept: {kept[-1].name if kept else 'no earlier checkpoint'}") from e


def _nbytes(obj) -> int:
    """Bytes of the tensors in a nested state."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def data_failures(run: Run) -> float:
    """Videos the dataset could not decode and replaced so far, with the list's unreadable lines (counted by the
    dataset over all workers, whose prefetching may have found some in batches not trained on yet; over all ranks
    as of the last :func:`share_failures`)."""
    return float(sum(run.data.failure_counts().values()))


def trained_failures(run: Run) -> torch.Tensor:
    """The run's failures as of its last finished step, every rank's
    (:attr:`~mme.data.dataset.ClassificationDataset.trained_failures`), which its checkpoint records: not those its
    loader workers found in batches fetched ahead, which a resumed run, and one whose stop the checkpoint keeps, has
    yet to fetch (it recorded them, and refused at once a video restored since). Every rank must call it at the same
    step."""
    codes = run.data.trained_failures
    return dist.max_over_ranks(codes, run.device).to(codes.dtype)


def share_failures(run: Run) -> float:
    """Join the failures every rank found (each decodes its own share of the videos), so that each rank counts and
    skips them all and ``data.max_failure_fraction`` applies to the run; returns :func:`data_failures`. Every rank
    must call it at the same step; a DataError of the fraction is then every rank's, decided from the joined codes."""
    if dist.get_world_size() > 1:
        try:
            run.data.join_failures(dist.max_over_ranks(run.data.failure_codes, run.device))
        except DataError as e:
            dist.alike(e)
            raise
    return data_failures(run)


def train(run: Run) -> TrainResult:
    """The loop: forward/backward -> lr/wd from the step -> update -> the job's after-step -> log -> maybe
    checkpoint (a due one before the after-step), until ``train.stop_after`` or the end of the schedule."""
    if run.resumed_at is not None:
        dist.on_main(run_folder.keep_logs_of_rewind, run.out_dir, run.resumed_at)
    try:
        return _train(run)
    finally:  # without a checkpoint (an error, Ctrl-C, no step left), a rewind leaves the logs it found
        if run.resumed_at is not None and dist.is_main():
            with contextlib.suppress(OSError):
                run_folder.restore_logs_of_rewind(run.out_dir)


def _train(run: Run) -> TrainResult:
    t = run.cfg.train
    end = min(t.stop_after or run.total_steps, run.total_steps)
    logger = build_logger(run.out_dir, run.step if run.step else None, enabled=dist.is_main())
    stream = micro_batches(run)
    history: deque[dict] = deque(maxlen=HISTORY_KEPT)
    t0, first_step = time.perf_counter(), run.step
    # the loader's workers stop, and the run's files are finished, while a repeated SIGTERM is absorbed (else it
    # raised in the loader's shutdown, a traceback from its __del__, or replaced the message saying what was saved)
    with StopRequests() as stop:
        try:
            with contextlib.closing(stream), progress_bar(None, end, None, "step", show=dist.is_main(),
                                                          initial=run.step) as bar:
                path, stopping, step_seconds = _steps(run, stream, stop, end, logger, history, bar)
                stop.steps_over = True
            path = _last_checkpoint(run, path)
            _say_skipped(run)
            if stopping is None and run.step >= run.total_steps:  # (a run stopped, or a part ending at
                check_updated(run, path)  # train.stop_after, says what was saved; the run is judged at its end)
        except KeyboardInterrupt:  # a second Ctrl-C stops at once: no curve drawn from a long log
            logger.close()
            raise
        except Exception as e:  # (a data stop's steps kept by _steps)
            with contextlib.suppress(Exception):  # the logs of a run that failed: its loss curve is wanted most
                _finish_logs(run, logger, history, together=dist.raised_alike(e))
            raise
        _finish_logs(run, logger, history, together=True)
        # a signal after the last step's check (in the final writes), agreed where every rank meets once more
        stopping = stopping or _stop_signal(stop, run.device)
    stopping = stopping or stop.received  # one after that join: this rank's alone, which ends as stopped too
    result = TrainResult(run.out_dir, run.step, path, list(history), run.skipped, time.perf_counter() - t0,
                         clips=(run.step - first_step) * clips_per_step(run), step_seconds=step_seconds,
                         total_steps=run.total_steps)
    if stopping is not None:  # also on a rank that stopped for another's signal
        by = stopping.name + ("" if stop.received == stopping else " (sent to another rank)")
        finished = result.finished  # (not a stop at train.stop_after, which --resume auto continues)
        saved = f"stopped by {by} after step {run.step} of {end}"
        if finished:
            saved += f", its last: the run's training is finished, saved as {path}"
        elif run.step >= end:  # the same command would train nothing
            saved += (f", where train.stop_after={t.stop_after} ends it anyway, saved as {path}; --resume auto "
                      "(train.resume=auto) with train.stop_after raised or unset continues from there")
        elif not run.step:  # (a fresh run stopped while its first step waited for its data)
            saved = f"stopped by {by} before its first step: nothing trained, nothing saved"
        else:
            saved += f", saved as {path}; the same command with --resume auto (train.resume=auto) continues from there"
        raise Interrupted(saved, 128 + int(stopping), finished=result if finished else None)
    return result


def clips_per_step(run: Run) -> int:
    """Clips one optimizer step trains on: every rank's micro-batches, each item's repeated augmentations."""
    t = run.cfg.train
    return t.batch_size * dist.get_world_size() * t.accum_steps * run.job.clips_per_item


def _steps(run: Run, stream, stop: StopRequests, end: int, logger, history: deque, bar
           ) -> tuple[Path | None, signal.Signals | None, float]:
    """The steps up to ``end``, or to a stop signal: ``(the last checkpoint written, the signal, the steps' seconds
    as their clips_per_s counts them)``."""
    t, o = run.cfg.train, run.cfg.optim
    clips = clips_per_step(run)
    path, stopping, step_seconds, skipped, logged = None, None, 0.0, SkippedSteps(), LoggedSteps()

    def record_pending() -> TooManyFailures | None:
        """The record of the steps not logged yet (``metrics``: the last one's), which a checkpoint forces: a run
        resumed from it goes on from a record, none of its steps in none; the TooManyFailures of its join."""
        return _record(run, logged, metrics, clips, logger, history) if logged.steps else None

    try:
        while run.step < end:
            tic, epochs_done = time.perf_counter(), run.position["epoch"]
            run.model.train()
            try:
                metrics, lr, wd = train_step(run, stream, stop)
            except WaitStopped:  # (every rank, before the step changed anything: a checkpoint of the step before)
                stopping = _stop_signal(stop, run.device)
                too_many = record_pending()
                if too_many is not None:
                    raise too_many from None  # (kept below, as at any record)
                if run.step > run.saved_step:
                    path = save(run)
                break
            except (MemoryError, RuntimeError) as e:  # (torch.OutOfMemoryError is a RuntimeError; the data side's
                # failed allocation is an OutOfMemory, a data stop: mme.data.dataset._out_of_memory)
                limited = memory_limit_said(e)  # (a loader worker's "unable to mmap ...: Cannot allocate memory")
                if limited is None and not out_of_memory(type(e), str(e)):
                    raise
                said = f"step {run.step + 1}: " + (limited or (
                    f"out of memory ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                    f"{memory_advice(False)}"))
                kept = ckpt.list_checkpoints(run.out_dir)
                raise MMEError(f"{said}. Kept: {kept[-1].name if kept else 'no earlier checkpoint'}") from e
            run.nonfinite_in_a_row = count_nonfinite(run.nonfinite_in_a_row, metrics)
            diverged = run.nonfinite_in_a_row >= t.max_nonfinite
            run.skipped += int(metrics["skipped"])
            run.grad_overflows += int(metrics.get("grad_overflow", 0))
            run.step += 1
            seconds = time.perf_counter() - tic
            step_seconds += seconds
            logged.add(metrics, seconds)
            epoch = run.position["epoch"] - (run.position["batch"] == 0)  # the step's own, not the next one's
            metrics.update(lr=lr, weight_decay=wd, clips_per_s=clips / seconds, epoch=epoch,
                           data_wait=metrics.pop("data_wait_s") / seconds)
            kept = run.position["epoch"]  # the epochs done, one more where this step ended one
            kept = kept if kept > epochs_done and kept in t.keep_epochs else None
            due = run.step % t.ckpt_every == 0 or run.step == end or kept is not None
            evaluated = False
            if not diverged and run.job.after_step is not None:
                if due:  # the due checkpoint first: a validation (where memory peaks, with its own loader workers) that
                    # fails or is cut short does not lose the steps; its record follows it
                    path = save(run)
                evaluated = run.job.after_step(run, metrics)
            stopping = _stop_signal(stop, run.device)  # one decision per step, the same on every rank
            saving = due or stopping is not None
            # a record at each checkpoint too: a run resumed from it goes on from a record, none of its steps in none
            too_many = None
            if run.step % t.log_every == 0 or saving or evaluated or diverged:
                too_many = _record(run, logged, metrics, clips, logger, history)
            if not diverged:  # (said by its error)
                skipped.step(run, metrics)
            check_nonfinite(run.nonfinite_in_a_row, metrics, run.step, t.max_nonfinite, run.precision, o.clip_grad)
            if too_many is not None:  # (after the stop of non-finite steps, which a checkpoint kept of it would undo)
                raise too_many
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{lr:.2e}", clips_s=f"{metrics['clips_per_s']:.1f}",
                            refresh=False)
            bar.update(1)
            if saving and run.step > run.saved_step:
                path = save(run)
            if kept is not None:
                dist.on_main(ckpt.keep_of_epoch, path, kept, run.step)
            if stopping is not None:
                break
    except Exception as e:
        raise_keeping_steps(run, e, record_pending)
    return path, stopping, step_seconds


def _record(run: Run, logged: LoggedSteps, metrics: dict, clips: int, logger, history: deque
            ) -> TooManyFailures | None:
    """Log the record of the steps since the last (:class:`LoggedSteps`; ``metrics``: the last step's) with every
    rank's data failures joined (a checkpoint forces a record: a run resumed from it goes on from one). Returns the
    TooManyFailures of the join, to raise once the step is logged, and kept (:func:`_steps`), else None."""
    record = logged.record(metrics, clips)
    too_many = None
    try:
        share_failures(run)
    except TooManyFailures as e:
        too_many = e
    record["data_failures"] = data_failures(run)
    warn_short(run)
    logger.log(record, run.step)
    history.append({"step": run.step, **record})
    return too_many


def warn_short(run: Run, in_all: bool = False) -> None:
    """Warn (the main rank, of the videos its reads met) once the videos read hold fewer raw frames than a clip's
    window spans (:meth:`mme.data.dataset._VideoDataset.short_videos`), whose clips repeat their last frame (TSN
    segments: draw frames more than once): a run whose clip, stride or track length is too long for its videos trains
    on frozen frames without a word otherwise. Said
    at the first metrics record that finds one, of the records at doubling steps (the first, then the first at twice
    its step or later, ...: the table is scanned there only, not at every step), and ``in_all`` (the run's end)
    again where more were met since; the frame counts come from the reads themselves (no video is opened for it), this
    rank's only (the message says so where there are several). It advises the keys to lower: ``data.num_frames`` where
    the clip alone, at stride 1, is longer than the shortest video (no stride fits it), else ``data.stride`` where
    above 1; ``target.track_length`` where the tracks lengthen the window. A dataset that keeps none (a caller's own,
    as benchmarks' banks of clips) says nothing."""
    if (not dist.is_main() or getattr(run.data, "clip_window", None) is None
            or not (in_all or (not run.short_videos_said and run.step >= run.short_videos_next))):
        return  # (said once already: counted again at the run's end only)
    run.short_videos_next = 2 * run.step
    short, read, fewest = run.data.short_videos()
    if not short or short == run.short_videos_said:
        return
    d = run.cfg.data
    window = run.data.clip_window
    segments = d.sampling == "segments"  # (one frame of each segment: no stride)
    tracks = window - (d.num_frames if segments else window_length(d.num_frames, d.stride, d.tubelet, 0))
    keys = f"data.num_frames={d.num_frames} " + ("in data.sampling=segments" if segments else
                                                 f"at data.stride={d.stride}") + (
        f", and target.track_length={run.cfg.target.track_length}: {tracks} more for the last tubelet's tracks"
        if tracks > 0 else "")
    # each setting as the command running takes it, those it does not take left out (mme.utils.said_as: mme bench
    # pipeline's --frames, --stride; its list is its own), and the check of the run's own list and root
    frames, model_frames, stride, length = (said_as(k) for k in ("data.num_frames", "model.num_frames",
                                                                 "data.stride", "target.track_length"))
    if d.num_frames > fewest:  # even at stride 1 the clip is longer: no stride fits it
        lowered = ([frames + (f" (with {model_frames})" if model_frames != frames else "")] if frames else []) + (
            [length] if tracks > 0 and length else [])
        advice = " and ".join(lowered)
    else:  # a stride above 1, or tracks, lengthen the window past the clip's frames
        advice = " or ".join(([stride] if d.stride > 1 and not segments and stride else [])
                             + ([length] if tracks and length else []))
    listed = getattr(run.data, "checked_as", None)  # (a dataset of mme's; benchmarks' own banks have none)
    them = plural(short, "it", "them")
    check = (f"leave {them} out of the list (`mme check {listed} --min-frames {window}` names {them})"
             if listed is not None and said_as("data.list_file") else "")
    advice = ", or ".join(([f"lower {advice}"] if advice else []) + ([check] if check else []))
    where = " on this rank" if dist.get_world_size() > 1 else ""
    log.warning("data: %s fewer raw frames than the %d a clip spans (%s; the shortest holds %d): %s, and train on "
                "frozen frames%s", run.data.short_said(short, read, where + (" over the run" if in_all else " so far")),
                window, keys, fewest, run.data.short_clip_effect(fewest, short), f"; {advice}" if advice else "")
    run.short_videos_said = short


def _last_checkpoint(run: Run, path: Path | None) -> Path | None:
    """The run's last checkpoint, and the failed videos said: a resume with nothing left to train (the run was
    killed after its last checkpoint, before the rest) finishes its rotation. Found on every rank: each names it
    (a resumed run stopped as its first step waited for its data)."""
    if path is None and ckpt.checkpoint_path(run.out_dir, run.step).is_file():
        path = ckpt.checkpoint_path(run.out_dir, run.step)
        if dist.is_main() and ckpt.list_checkpoints(run.out_dir)[-1] == path:
            ckpt.rotate(run.out_dir, run.cfg.train.keep_last)
    warn_short(run, in_all=True)
    counts = run.data.failure_counts()
    counts.pop("bad list line", None)  # said at the start
    if dist.is_main() and counts:
        found = sum(counts.values())
        where = "see the warnings above" if not run.failures_carried else \
            f"{run.failures_carried} of them before the run resumed" + \
            ("; the warnings above name the others" if found > run.failures_carried else "")
        log.warning("data: %s videos failed and were replaced: %s (%s)", found, counts, where)
    return path


def _finish_logs(run: Run, logger, history, together: bool) -> None:
    """Close the run's loggers and draw its loss curves; ``together``: while the other ranks wait, where every rank
    ends the run at the same point (torchrun stops the others when a rank ends with an error or a stop: rank 0 was
    cut off in its writes by a SIGTERM, which replaced its last line)."""
    logger.close()
    if logger.stopped:
        _record_stopped_logs(run, logger.stopped)
    if together:
        dist.on_main(_draw_loss_curves, run, history)
    elif dist.is_main():
        _draw_loss_curves(run, history)


def _record_stopped_logs(run: Run, stopped: dict[str, int]) -> None:
    """Record in ``run.json`` (``logs_stopped``: each log's file -> the step its logger stopped at) the logs that
    stopped part-way (a failed write, a full disk: :class:`mme.train.metrics.MetricLogger`), so their readers know
    they end there; one that cannot be written is warned about, as a log that cannot."""
    run.meta["logs_stopped"] = {**run.meta.get("logs_stopped", {}), **stopped}
    run_json = run.out_dir / "run.json"
    try:
        with writing(run_json, "the run goes on without that record"):
            atomic_write_json(run_json, run.meta)
    except MMEError as e:
        log.warning("%s", e)


def _draw_loss_curves(run: Run, history) -> None:
    """``loss.png``; one that cannot be written (a full disk) or drawn (matplotlib's RuntimeError) is warned about,
    as a log that cannot: the run goes on to what follows (fine-tuning's tests)."""
    if history or (run.out_dir / "metrics.jsonl").is_file():
        png = run.out_dir / "loss.png"
        check_folder_held(run.out_dir)
        try:
            plot_loss_curves(run.out_dir / "metrics.jsonl", png)
        except (OSError, RuntimeError) as e:  # RuntimeError: matplotlib's drawing failed (a font error, ...)
            log.warning("%s: could not be written (%s); the run goes on without its loss curve", png,
                        error_reason(e))


def _stop_signal(stop: StopRequests, device: torch.device) -> signal.Signals | None:
    """The signal that asked any rank to stop (the highest, if ranks got different ones), else None: all ranks
    stop after the same step, and each ends as interrupted, not as finished (a rank ending with exit 0 while the
    others stop would go on alone to what follows training, such as fine-tuning's tests)."""
    received = torch.tensor([int(stop.received or 0)])
    received = int(dist.max_over_ranks(received, device)[0])
    return signal.Signals(received) if received else None
