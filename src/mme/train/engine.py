"""The one training engine (setup here, the step loop in mme.train.loop), shared by pre-training and fine-tuning.

A kind of training supplies its config, model, dataset and a :class:`Job`: how a micro-batch becomes the model's
inputs (``inputs``, outside autocast: to the device, masks, targets, augmentation) and how those become a loss
(``forward``, under autocast), plus its own metrics. The engine owns the rest: device, precision, DDP, the out
folder, resume, logs, accumulation with DDP's ``no_sync``, clipping, lr/wd schedules, non-finite steps,
progress, and the checkpoint of every stateful part.

Reproducibility: the data order is a function of (seed, epoch); jobs draw each sample's randomness (crop, mask,
augmentation) from generators seeded by the seed, the epoch or step, and the sample, so nothing depends on the
number of data workers or where a run was resumed, but for float rounding: on a CPU the intra-op threads are
chosen from the cores the workers leave, and another thread count sums in another order (``train.threads`` pins
it; a resume under another count is said). Dropout and drop path draw from torch's global generator,
seeded per step, rank and micro-batch (:func:`mme.train.loop.seed_dropout`), so with them a run depends on its
world size (fine-tuning's drop path; pre-training's only when ``model.drop_path`` > 0, 0 in its recipes). A
checkpoint holds the weights, optimizer, scaler, step, RNG states and data position, so a resumed run continues
bitwise-identically on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import math
import os
import sys
import textwrap
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from mme import rule_versions
from mme.config import (
    dump_recipe,
    flatten,
    from_dict,
    given_in,
    keys_shadowed,
    keys_without_effect,
    path_keys,
    recipe_of,
    recorded,
    with_paths_as,
)
from mme.data.dataset import identity_change, identity_text, lines_digest, list_identity, same_content
from mme.data.lists import check_root, left_out
from mme.data.video import decode_on
from mme.errors import CheckpointError, ConfigError, Interrupted, MMEError
from mme.eval.testing import reading_changed
from mme.models.checkpoint import (
    CLIP,
    Checkpoint,
    NoClipFits,
    load_state,
    read_checkpoint,
    recorded_cwd,
    recorded_model,
    run_model_config,
)
from mme.models.config import ModelConfig
from mme.models.convert_config import HEAD_WIDTHS, HeadCountUnknown, head_guess
from mme.models.vit import count_parameters
from mme.motion.targets import TargetConfig
from mme.train import checkpoint as ckpt
from mme.train import distributed as dist
from mme.train import run_folder
from mme.train.config import (
    FROM_INIT,
    TrainConfig,
    ignored_value,
    say_ignored,
    tubelet_ignored,
)
from mme.train.interrupts import HeldBack
from mme.train.optim import OptimConfig, build_optimizer, cosine_schedule
from mme.train.precision import (
    KEPT,
    TIMED_CLIPS,
    TimedLoss,
    bf16_said,
    check_compiler,
    choose_device,
    choose_precision,
    choose_threads,
    make_scaler,
)
from mme.utils import (
    MISSING,
    counted,
    fs_name,
    generator_for_a_job,
    held_folders,
    open_files_for,
    plural,
    process_group_up,
    said_as,
    same_device,
    stat_or_none,
    torch_as_mme,
    unlock_folder,
    why_absent,
)

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What a kind of training supplies to the engine besides its config, model and data."""

    inputs: Callable[[Run, dict, int, int], Any]
    """``(run, batch, epoch, micro-batch k) ->`` what ``forward`` takes, on the run's device."""
    forward: Callable[[Run, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    """``(run, inputs) -> (loss, {name: scalar tensor to log})``, called under autocast."""
    timing_loss: Callable[[torch.device, int], Callable[[], torch.Tensor]]
    """``(device, clips) ->`` a loss of the model on the device on that many zero clips of the run's shape, for
    timing precisions (``train.precision=auto``)."""
    unit: str = "clips"
    """What a dataset item is, in messages."""
    clips_per_item: int = 1
    """Clips per dataset item (fine-tuning's repeated augmentation), for the clips/s metric."""
    after_step: Callable[[Run, dict], bool] | None = None
    """Called after each optimizer step with its metrics (which it may extend), before they are logged; True: log
    this step whatever ``train.log_every`` says (it added metrics). The same on every rank."""
    test_views: bool = False
    """Whether the run reads test views (fine-tuning's validation and tests), whose changes alone the reading rule's
    versions may make (:func:`deciding_rules`)."""
    rules: dict[str, Callable[[int], str | None]] = field(default_factory=dict)
    """The rules besides every run's reading (:func:`deciding_rules`) whose versions decide what the run computes, by
    their names in
    :func:`mme.rule_versions`, each with what a run of a recorded version gets otherwise now, None where nothing
    (pre-training's ``tracker`` where it computes tracks: the revisions that changed its flow's): recorded in the
    run's meta (run.json, every checkpoint) and compared at a resume (:func:`rule_change`)."""
    checkpoint_extra: dict = field(default_factory=dict)
    """Entries every checkpoint of the run holds besides the training state (pre-training's head specs, so a
    checkpoint rebuilds its model without the code of its targets)."""
    input_identities: dict[str, dict] = field(default_factory=dict)
    """What says which of its inputs besides its list the run reads, by name (pre-training's ``track cache``: the
    settings of its files, :meth:`~mme.data.dataset.PretrainDataset.cache_identity`): recorded in the run's meta
    (run.json, every checkpoint) and compared at a resume (:func:`read_change`), as the list's content is."""


@dataclass
class Start:
    """What every run knows before it builds anything: where it runs, its folder, what it resumes, and its config
    as resumed."""

    cfg: Any
    """The run's config with the ``train.init`` of the run it resumes (:func:`resumed_init`): what the kind of
    training builds its run of."""
    device: torch.device
    world_size: int
    out_dir: Path
    resume: tuple[str, dict] | None
    """``(source, checkpoint state)``, or None for a fresh run."""
    threads: tuple[int, str]
    """The training process's intra-op threads and why (:func:`mme.train.precision.choose_threads`)."""
    replaced: list[Path]
    """Another run's checkpoints that ``train.overwrite`` removes once this run is set up (rank 0's)."""


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
    resumed_at: int | None = None
    """The step a resumed run continues from, until its first checkpoint sets the folder's later ones aside."""
    saved_step: int = 0
    """The step of the run's last checkpoint in its folder: the one it resumed from there, then each it writes (0:
    none, nor a step to keep)."""
    skipped: int = 0
    """Steps skipped for a non-finite loss or gradient, over the whole run (checkpoints carry it over resumes)."""
    grad_overflows: int = 0
    """Of those, fp16's routine gradient overflows (:func:`mme.train.loop.count_nonfinite`), which its scaler skips
    and answers with a lower scale: not warned about (:class:`mme.train.loop.SkippedSteps`); checkpoints carry it
    (an fp16 checkpoint of an earlier mme, which holds none, counts all its skipped steps as overflows)."""
    nonfinite_in_a_row: int = 0
    """The non-finite steps in a row up to the current step (:func:`mme.train.loop.count_nonfinite`), which
    ``train.max_nonfinite`` bounds; checkpoints carry it over resumes, so a run cut into parts stops where it would
    whole (one of a checkpoint that holds none resumes with 0)."""
    failures_carried: int = 0
    """Videos that failed before the run resumed (its checkpoint's), counted with this process's."""
    short_videos_said: int = 0
    """The videos too short for a clip's window that a warning has said so far (:func:`mme.train.loop.warn_short`)."""
    short_videos_next: int = 1
    """The step from which the next metrics record looks for short videos again (it doubles at each look)."""
    schedule_offset: int = 0
    """What the lr and wd schedules add to :attr:`step` (:meth:`schedule_args`): a run whose schedule is in epochs
    (:func:`schedule_in_epochs`) resumed with other steps per epoch than its checkpoint's (another world size, batch
    per rank, accumulation or list) reads it at the epochs done, in this run's steps (:func:`at_epochs_done`), not at
    the checkpoint's step count, taken in the other's."""

    def schedule_args(self, step: int) -> tuple[int, int, int, float, float]:
        """``(step, total steps, warm-up steps, peak lr, final lr)`` of the schedule at the run's optimizer step
        ``step`` (0-based), for :func:`~mme.train.optim.cosine_schedule` and
        :func:`~mme.train.optim.schedule_step`."""
        off = self.schedule_offset
        return step + off, self.total_steps + off, self.warmup_steps, self.peak_lr, self.final_lr


# ---- setup -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Before:
    """What a job (a run, ``task.eval_only``) changes in the process, as it was at the job's start
    (:class:`JobScope`), for :func:`finish` to give back: a run seeds the global generators for its weights and
    dropout (a resumed one sets them all from its checkpoint), sets the intra-op threads and, under torchrun, starts
    the process group where none is up, so a library caller's later draws and threads would be the run's."""

    held: frozenset[Path]
    """The folders the process held (:func:`mme.utils.held_folders`): a caller's, as mme demo's --out, stay held."""
    threads: int
    rng: dict
    """The global generators' states: torch's, CUDA's, numpy's, Python's (:func:`~mme.train.checkpoint.rng_state`)."""
    group_up: bool
    """A process group was up (:func:`mme.utils.process_group_up`): the caller's (a script under torchrun that started
    it, then calls ``pretrain()``), which the job joins as it is and leaves up for the caller's own collectives."""
    dynamo: bool
    """``torch._dynamo`` was imported: else the job's first optimizer imports it (torch's ``add_param_group``), whose
    import leaves a reference cycle through the job's frames, which hold its model and optimizer
    (:func:`_collected_at_finish`)."""


class JobScope:
    """``with JobScope() as job:`` around every job, first thing: the process as the job finds it (:class:`Before`)
    is given back by :func:`finish` however the job ends, and the job runs with torch's settings of
    :func:`~mme.utils.torch_as_mme` (not its caller's autocast, grad mode or default dtype), the caller's given back
    after. The job sets ``job.run`` once built and ``job.result`` once done; it fails by the exception leaving the
    block, not by one its caller was handling (a job started in an ``except`` block: a retry, a fallback). It holds
    torch's global generator from its start to its end (:func:`~mme.utils.generator_for_a_job`): a job or a load
    started meanwhile in another thread of the process (a notebook's thread pool) is refused."""

    run: Run | None = None
    result: Any = None

    def __enter__(self) -> JobScope:
        with contextlib.ExitStack() as held:
            held.enter_context(generator_for_a_job())
            self.before = Before(frozenset(held_folders()), torch.get_num_threads(), ckpt.rng_state(),
                                 process_group_up(), "torch._dynamo" in sys.modules)
            held.enter_context(torch_as_mme())
            self.held = held.pop_all()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        with self.held:
            finish(self.run, self.before, self.result, failing=kind is not None)


def begin(cfg) -> Start:
    """Join the process group (under torchrun), pick the device, check the out folder and ``data.root``, read what
    to resume (a run of the kind of ``cfg``: pre-training or fine-tuning), set the process's threads beside the loader
    workers, and take the ``train.init`` of the run resumed (:func:`resumed_init`)."""
    t = cfg.train
    info, device = join(t.device)
    check_same_config(cfg, device)
    if t.compile:
        check_compiler(device)
    with dist.agreed():  # (before the folder is made: that of a renamed run's config.yaml)
        run_folder.check_recipe_of_run(recipe_of(cfg), t.out_dir, t.resume, given_in(cfg))
        nothing_listed = t.resume == "auto" and not ckpt.list_checkpoints(Path(t.out_dir), "train.out_dir")
        if nothing_listed:  # (a fresh run: refused before its folder is taken, which it leaves as it was)
            _check_as_fresh(cfg)
    out_dir = dist.on_main(run_folder.take, t.out_dir)
    dist.check_folder_shared(out_dir, "train.out_dir")  # (every rank resumes from it, rank 0 alone writes there)
    with dist.agreed():  # each rank reads what it resumes (a node, its own copy)
        resume = resume_state(t.resume, out_dir, t.overwrite)
        if resume is not None:  # (its paths as this locale names the files: a run made under another resumed)
            resume[1]["config"] = with_paths_as(fs_name, type(cfg), resume[1]["config"])
        if resume is not None and _kind(resume[1]["config"]) != _kind(dataclasses.asdict(cfg)):
            raise CheckpointError(f"checkpoint {resume[0]}: made by a {_kind(resume[1]['config'])} run, this is "
                                  f"{_kind(dataclasses.asdict(cfg))}; train.init starts a run from a file's weights")
        if resume is None and t.resume and not nothing_listed:  # (train.overwrite of checkpoints none of which reads)
            _check_as_fresh(cfg)
    resumed = resume[1] if resume else None
    dist.check_start_step(int(resumed["step"]) if resumed else None, run_folder.run_of(resumed))
    replaced = dist.on_main(run_folder.check_owner, out_dir, resumed, t.overwrite, t.init)
    threads = set_threads(cfg, device)
    with dist.agreed():  # (after the out folder's checks, which name a folder in use or another run's first; each
        # rank checks its own, a node's copy; a refused run's new folder is removed: run_folder.take)
        check_root(cfg.data.root, "data.root")
        open_files_for(cfg.data.num_workers, "data.num_workers")  # (refused before any work: again as they start)
        if resume is not None:
            built_mlp_ratio(*resume)
    return Start(resumed_init(cfg, resume), device, info.world_size, out_dir, resume, threads, replaced)


def _check_as_fresh(cfg) -> None:
    """``cfg``, whose ``--resume auto`` finds no checkpoint, checked as a fresh run's config is as it is read: what it
    left for the checkpoint (:func:`~mme.train.config.taken_from_checkpoint`: the clip's fit to the model, a
    pre-training mask's token grid, a target's settings) is the config's own in a fresh run."""
    dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=None))  # (its __post_init__ checks)


def check_same_config(cfg, device: torch.device) -> None:
    """Stop every rank unless all run one code and one config, ``cfg`` as each resolved its own (a node reads its own
    copy of a recipe, and its own overrides): one line naming each key that differs, with its value on each rank
    (:func:`~mme.train.distributed.check_same_settings`, which compares the code). Left out: :data:`PER_NODE`, and
    the text of the keys that name files (each node may name its copies its own way; what they name is compared by
    content, :func:`check_same_inputs`, :func:`~mme.train.distributed.check_folder_shared`), of which those that may
    name none are compared by whether they name one; ``train.device`` is compared by the kind of the ``device`` it
    resolved to ('auto' and 'cpu' on a node without a GPU alike, 'cuda:0' and 'cuda:1')."""
    if dist.get_world_size() == 1:
        return
    paths = path_keys(type(cfg))  # {key: what its empty value names}: "" none, "." the working folder
    settings = {}
    for key, value in flatten(dataclasses.asdict(cfg)).items():
        if key in paths:
            if paths[key] == "":  # (the others name a folder whatever they say)
                settings[f"{key} given"] = bool(value)
        elif key not in PER_NODE:
            settings[key] = value
    settings["train.device"] = device.type
    dist.check_same_settings(settings, "the config", "every rank must run one config (each node reads its own "
                                                     "--config file and overrides)")


def check_same_inputs(cfg, data: Dataset | None, init: Checkpoint | None, names: list[str] | None = None,
                      list_test_set: Callable[[Any, str], Dataset] | None = None,
                      cache: dict | None = None) -> None:
    """Stop every rank unless all read the same copies (a node, its own) of ``data.list_file`` (``data``, the
    dataset read from it; None: none read), of ``train.init`` (``init``, where read), of the class names
    (``names``, fine-tuning's), of the lists fine-tuning tests, ``task.tested`` (``list_test_set``: ``(cfg, list
    file) ->`` the dataset of one, :func:`mme.train.finetune.list_test_set`) and of pre-training's track cache,
    ``target.cache_dir`` (``cache``: what says this rank's, where read, :meth:`~mme.data.dataset.PretrainDataset.
    cache_identity`, as :attr:`Job.input_identities` records it), in one exchange before any step or test:
    :func:`~mme.train.distributed.check_same_inputs`."""
    dist.check_same_inputs({
        f"data.list_file {cfg.data.list_file}": None if data is None else lambda: list_identity(data),
        f"train.init {cfg.train.init}": None if init is None else lambda: init.identity,
        **({} if cache is None else {f"target.cache_dir {cfg.target.cache_dir}": lambda: identity_text(cache)}),
        "the class names (task.classes, or a checkpoint's)":
            None if names is None else lambda: f"{len(names)} classes (digest {lines_digest(names)})",
        **({} if list_test_set is None else {f"task.{split}_list {list_file}": lambda f=list_file: list_identity(
            list_test_set(cfg, f)) for split, list_file in cfg.task.tested.items()})})


def built_mlp_ratio(source: str, state: dict) -> None:
    """Record in the config of the checkpoint ``state`` resumed (from ``source``) the MLP ratio its weights were
    built with, where an earlier mme truncated the product of the recorded one (119 units at 88 x 120/88, which
    :func:`~mme.models.config.mlp_width` makes 120: :func:`~mme.models.checkpoint.run_model_config`), as the file
    loads: the run builds its model of that config (its MLPs, its optimizer's moments, the checkpoint's), compares
    its own config with it (no change), and records it in its later checkpoints and config.yaml; so with an earlier
    mme's negative layer scale, read as the 0 it meant (:func:`~mme.models.checkpoint.recorded_model`)."""
    model = state["config"]["model"] = recorded_model(state["config"]["model"])
    kind = "mae" if _kind(state["config"]) == "pre-training" else "classifier"
    ratio = run_model_config(ModelConfig, model, source, weights=state["model"], kind=kind,
                             meta=state.get("meta")).mlp_ratio
    if ratio != model.get("mlp_ratio", ratio):
        model["mlp_ratio"] = ratio


def set_threads(cfg, device: torch.device) -> tuple[int, str]:
    """Set the process's intra-op threads for a job of ``cfg`` on ``device`` (``train.threads``, else chosen beside
    its loader workers: :func:`~mme.train.precision.choose_threads`), given back by :func:`finish`. Returns
    ``(threads, why)``."""
    threads = choose_threads(cfg.train.threads, device, cfg.data.num_workers)
    torch.set_num_threads(threads[0])
    return threads


def join(device_name: str) -> tuple[dist.DistInfo, torch.device]:
    """The process group this rank joins (under torchrun) and its device of ``train.device`` (``device_name``),
    chosen once, before either: a device that cannot be used is refused before any work; a CUDA one is the GPU
    ``data.backend=pyav-cuda`` decodes on (:func:`~mme.data.video.decode_on`)."""
    device = choose_device(device_name, dist.rank_on_node())
    decode_on(device)
    return dist.init_distributed(device), device


def _kind(config: dict) -> str:
    """'pre-training' or 'fine-tuning', by the section only that kind of config has."""
    return "pre-training" if "target" in config else "fine-tuning" if "task" in config else "unknown"


def _collected_at_finish(step_model: nn.Module, before: Before) -> bool:
    """Whether a job's end collects the process's garbage: a DDP wrapper's reference cycles, freed after the process
    group, deadlocked its gloo threads and the interpreter at exit; and a job that imported ``torch._dynamo``
    (:attr:`Before.dynamo`: a process's first) would leave its model and optimizer to a later collection (a GPU's
    memory held into the caller's next job). A collection of the whole process (0.2-0.4 s) is for those alone."""
    return isinstance(step_model, nn.parallel.DistributedDataParallel) or (
        not before.dynamo and "torch._dynamo" in sys.modules)


def finish(run: Run | None, before: Before, result: Any = None, failing: bool = False) -> None:
    """The end of every job, however it ends: unlock its folder (those the process holds and did not hold
    ``before``: not a caller's, as mme demo's --out), leave the process group it started (not a caller's: its script
    goes on with its own collectives), and give the process back its threads and its global generators' states (a
    library caller goes on with its own). The run's DDP wrapper goes first: destroyed after the process group, its
    gloo threads and the interpreter deadlocked at exit (a finished 2-rank run hung). A signal meanwhile waits until
    all of it is done (:class:`~mme.train.interrupts.HeldBack`), then stops the job as one after its last step does:
    :class:`~mme.errors.Interrupted` carrying ``result``, the job's, where it did all its work (not a run stopped at
    its ``train.stop_after``), which a caller keeps (mme demo's row); else the signal goes to the handler installed
    (a library caller's KeyboardInterrupt; the CLI's, which ends the command as stopped); a job ``failing`` (ending by
    its own exception, :meth:`JobScope.__exit__`) ends by it (a repeated SIGTERM, a second signal of the same
    stop)."""
    with HeldBack() as held:
        if run is not None:
            collect = _collected_at_finish(run.step_model, before)
            run.step_model = None
            if collect:
                gc.collect()
        for folder in held_folders() - before.held:
            unlock_folder(folder)
        if not before.group_up:
            dist.shutdown()
        torch.set_num_threads(before.threads)
        ckpt.set_rng_state(before.rng)
    if held.received is None or failing:
        return
    if result is not None and (run is None or run.step >= run.total_steps):
        raise Interrupted(f"stopped by {held.received.name} as the job ended, its work done: what it wrote is kept "
                          f"in {result.out_dir}", 128 + int(held.received), finished=result)
    held.raise_received()


def resume_state(resume: str | None, out_dir: Path, overwrite: bool = False) -> tuple[str, dict] | None:
    """``(source, checkpoint state)`` to resume from: 'auto' = the newest valid checkpoint in out_dir, else a
    path; None when starting fresh (with 'auto' on a folder none of whose checkpoints reads, only when
    ``overwrite`` clears it)."""
    if not resume:
        return None
    if resume == "auto":
        found = ckpt.latest_valid(out_dir, "train.out_dir")
        if found is None:
            if (listed := ckpt.list_checkpoints(out_dir)) and not overwrite:  # else refused as another run's
                which = (f"the one checkpoint in {out_dir} is not" if len(listed) == 1 else
                         f"none of the {len(listed)} checkpoints in {out_dir} is")
                raise CheckpointError(f"train.resume=auto: {which} a training checkpoint mme can read (each is named "
                                      f"above, with the reason); train.overwrite=true removes "
                                      f"{plural(len(listed), 'it', 'them')} and starts afresh")
            log.info("train.resume=auto: no checkpoint in %s, starting fresh", out_dir)
            return None
        source, state = str(found[0]), found[1]
    else:
        source, state = resume, ckpt.load_checkpoint(Path(resume))
        missing = ckpt.missing_keys(state)
        if missing:
            raise CheckpointError(f"train.resume {resume}: not a training checkpoint of mme (it lacks {missing}); "
                                  f"train.init starts a run from a file's weights")
    return source, state


def read_init(path: str, model: ModelConfig, encoder_only: bool = False, at_config_clip: bool = True) -> Checkpoint:
    """``train.init`` read (any checkpoint mme reads) with the config's ``model`` as read_checkpoint's ``fallback``,
    for what the file records none of (an original VideoMAE/MME ``.pth``): its head counts where the config's width
    is the file's (a count given for another width says nothing of this one), and its clip (``model.num_frames``,
    ``model.img_size``) where the file stores no position table or one that fits it. A head count still guessed
    from the width is warned about, naming the keys that give it, and one of a width with no guess (96) is one line
    naming them; the clip taken stays in ``Checkpoint.assumed`` (a model built of it warns). A stored position table
    that fits neither the config's clip nor 224² x 16 gives the clip where exactly one of the config's frames or of
    its size fits it (a training run builds its model of the config all the same: that clip only checks the
    table); where none or several do, one line naming mme export's flags, since the config's keys set the run's
    clip. A run at the config's clip (``at_config_clip``: training, not ``task.eval_only``, which tests the file's)
    says where that is not the clip the file records."""
    try:
        ck = read_checkpoint(path, encoder_only=encoder_only, fallback=model,
                             given_as={k: f"model.{k}" for k in CLIP})
    except NoClipFits as e:
        raise CheckpointError(f"train.init {e.__cause__}: write a file that records the clip it was trained on, mme "
                              f"export {path} OUT --num-frames N --img-size N, then train.init=OUT") from e
    except HeadCountUnknown as e:  # of a width with no guess, not the config's
        keys = " ".join(f"model.{HEAD_WIDTHS[heads]}={width} model.{heads}=N" for heads, width in e.widths.items())
        raise CheckpointError(f"train.init {path} records no head count, and no guess fits its width (an original "
                              f"model's count, or 64-d heads): give the count it was trained with, {keys}") from e
    except CheckpointError as e:  # (a file gone, or in a folder this user may not enter: named as the run's init)
        if stat_or_none(path) is not None:
            raise
        raise CheckpointError(f"train.init {e}") from e
    unguessed = []
    for heads, width in HEAD_WIDTHS.items():
        theirs = getattr(ck.cfg, width)
        if heads in ck.from_fallback:
            guess = head_guess(heads, ck.cfg.embed_dim, theirs)
            if guess is None:
                unguessed.append(f"model.{heads}={getattr(model, heads)}")
            else:
                log.info("train.init %s records no head count: model.%s=%d (its guess from the width %d: %d)", path,
                         heads, getattr(model, heads), theirs, guess)
        elif heads in ck.assumed:
            log.warning("train.init %s records no head count: %s=%d guessed from its width %d (the config's "
                        "model.%s=%d counts the heads of model.%s=%d); if it was trained with another count, give it "
                        "with model.%s=%d model.%s=N", path, heads, getattr(ck.cfg, heads), theirs, heads,
                        getattr(model, heads), width, getattr(model, width), width, theirs, heads)
    if unguessed:
        log.info("train.init %s records no head count, and no guess fits its width: the config's %s", path,
                 " ".join(unguessed))
    if at_config_clip and not set(CLIP) & set(ck.assumed) and (theirs := (ck.cfg.num_frames, ck.cfg.img_size)) != (
            model.num_frames, model.img_size):
        log.info("train.init %s was trained on clips of %d frames of %d px, this run's are %d of %d px: its encoder's "
                 "sin-cos position table, fixed, is made for this run's token grid (as VideoMAE fine-tunes at another "
                 "size), so tokens sit at other position codes than those it learned", path, *theirs,
                 model.num_frames, model.img_size)
    return ck


def architecture_from(model: ModelConfig, recorded: ModelConfig, fields: tuple[str, ...], source: str,
                      given: Collection[str], data_tubelet: int) -> ModelConfig:
    """``model`` (a run's model config) with the architecture ``source``'s weights record (``fields`` of
    ``recorded``), those that differ from ``model``'s said in the log, and warned about as ignored where the command
    line gives them (``given``, dotted keys; a size of a ``model.preset`` given, as of that preset; the config's
    ``data.tubelet``, ``data_tubelet``, :func:`~mme.train.config.tubelet_ignored`), as a resume warns of them
    (:func:`warn_ignored_on_resume`); its preset kept where the weights agree with each size it sets here (none of
    those changed: a resume repeating it then ignores nothing), else set aside."""
    arch = {k: getattr(recorded, k) for k in fields}
    changed = {k: v for k, v in arch.items() if getattr(model, k) != v}
    if changed:
        log.info("architecture from %s: %s", source, changed)
    sizes = model.PRESETS.get(model.preset, {}) if "model.preset" in given else {}
    ignored = [ignored_value(f"model.{k}", getattr(model, k), v,
                             f"{'' if f'model.{k}' in given else f'of model.preset={model.preset}; '}the file's")
               for k, v in changed.items() if f"model.{k}" in given or k in sizes]
    ignored += tubelet_ignored(data_tubelet, arch.get("tubelet_size", model.tubelet_size), given, "the file's")
    say_ignored(f"train.init {source}", "the run's architecture is the file's", ignored)
    preset = None if changed.keys() & model.PRESETS.get(model.preset, {}).keys() else model.preset
    # (the clip checked with the file's patch and tubelet as the run's clips take them: mme.train.config.clips_for)
    return dataclasses.replace(model, preset=preset, checks_clip=False, **arch)


def warn_ignored_on_resume(ours: ModelConfig, runs: ModelConfig, fields: Iterable[str], given: Collection[str],
                           source: str, from_init: bool, data_tubelet: int) -> None:
    """Warn of the config's model values (``ours``) that a run resumed from ``source`` ignores, keeping its own
    (``runs``, of its checkpoint) for ``fields``: those that differ, but of a run begun from a ``train.init``
    (``from_init``: the resumed run's train.init is set, :func:`resumed_init`) the :data:`FROM_INIT` fields only where
    the command line gives them (``given``, dotted keys): its recipe's would differ on every resume, nothing having
    been given; with them the config's ``data.tubelet`` (``data_tubelet``) where given
    (:func:`~mme.train.config.tubelet_ignored`)."""
    ignored = [ignored_value(f"model.{k}", getattr(ours, k), getattr(runs, k), "the run's") for k in fields
               if getattr(ours, k) != getattr(runs, k) and (f"model.{k}" in given or not from_init
                                                            or k not in FROM_INIT)]
    ignored += tubelet_ignored(data_tubelet, runs.tubelet_size, given, "the run's")
    say_ignored(f"resuming {source}", "its model is the run's own", ignored)


def resumed_init(cfg: Any, resume: tuple[str, dict] | None) -> Any:
    """``cfg`` with the ``train.init`` of the run it resumes (``resume``, or None), as it takes that run's
    architecture: a resumed run's weights are its checkpoint's, so its summary, config.yaml and later checkpoints
    say what the run began from, whatever this config gives. The run's file is found where it lies now
    (:func:`runs_init_now`: after its folders moved, too, or as the file the config names, wherever it is
    recognisably that file, :func:`same_init`) and recorded absolute, so it names that file from any folder; where
    none is found, the path as the run recorded it is kept, with a warning (saying the
    file given is ignored). Another file the config names is warned about as ignored, as is one given where the
    checkpoint records none (a run begun from scratch cannot be told from one an earlier mme resumed, which recorded
    none: neither is recorded as begun from it)."""
    if resume is None:
        return cfg
    source, state = resume
    runs, ours = state["config"]["train"].get("init"), cfg.train.init
    if runs:
        was, runs = runs_init_now(runs, source, state, ours)
        if runs is None:
            why = ours and why_absent(ours)
            log.warning("resuming %s: the run's train.init %s no longer exists, nor is that file (of its name and "
                        "contents) found from this working folder or from the run's folder (where its folders "
                        "moved)%s: config.yaml and later checkpoints record it as it was; give train.init=PATH of "
                        "that file (of its name) where it lies now to record that", source, was,
                        "" if not ours else f"; train.init={ours} names no file either" if why == MISSING
                        else f"; train.init={ours} cannot be read ({why})" if why
                        else f"; train.init={ours} is ignored: it is not that file (another name, or other contents "
                        "than the run began from)")
            ours, runs = None, was
        elif runs != was:
            log.info("resuming %s: the run's train.init %s no longer exists; it is %s, recorded in its place", source,
                     was, runs)
    if ours and not runs:
        log.warning("resuming %s: train.init=%s is ignored: the run's weights are its checkpoint's, which records no "
                    "train.init (a run begun from scratch, or resumed by an earlier version of mme, which recorded "
                    "none)", source, ours)
    elif ours and os.path.realpath(ours) != os.path.realpath(runs):
        log.warning("resuming %s: train.init=%s is ignored: the run's weights are its checkpoint's (it began from "
                    "train.init %s)", source, ours, runs)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init=runs))


def same_init(given: str, recorded: str, state: dict) -> bool:
    """Whether the file or folder ``given`` (a resume's ``train.init``, there) is recognisably the one the run of
    checkpoint ``state`` began from, ``recorded`` (its path, which no longer finds it): of the same name, and of the
    fingerprint the run recorded (``init_fingerprint`` of its meta: :func:`mme.train.run_folder.identity`), where it
    recorded one."""
    fingerprint = state.get("meta", {}).get("init_fingerprint")
    return os.path.basename(os.path.abspath(given)) == os.path.basename(recorded) and \
        fingerprint in (None, run_folder.init_fingerprint(given))


def runs_init_now(recorded: str, source: str, state: dict, given: str | None = None) -> tuple[str, str | None]:
    """``(as recorded, now)``: the ``train.init`` a run recorded (``recorded``, of its checkpoint ``source`` whose
    ``state`` is given) as an absolute path from the run's working folder (``cwd`` of the checkpoint's meta; of one
    that records none, this process's), and the absolute path of the file where it lies now, or None where none is
    found: that path, else, where that file is gone (the run's folders moved: a renamed project folder, another
    machine), the same relative path from this working folder (for a path given relative, or one in the run's
    working folder, as a relative one a resume recorded absolute: not a file elsewhere), then from the run's folder
    where it lies now (``source``'s, as the file lay from the run's ``train.out_dir``), then the file the command
    line gives (``given``, the resume's ``train.init``): each of these only where it is recognisably that file
    (:func:`same_init`), not another file that happens to lie at that path."""
    was = recorded_cwd(state) or os.getcwd()
    path = os.path.abspath(os.path.join(was, recorded))
    out_dir = os.path.abspath(os.path.join(was, state["config"]["train"]["out_dir"]))
    here = [os.path.join(os.getcwd(), os.path.relpath(path, was))] \
        if not os.path.isabs(recorded) or Path(path).is_relative_to(was) else []
    if why_absent(path) != MISSING:  # (there, or in a folder this user may not enter: not gone, its read says why)
        return path, path
    candidates = (*here, os.path.join(os.path.dirname(os.path.abspath(source)), os.path.relpath(path, out_dir)),
                  *([given] if given else []))
    return path, next((os.path.abspath(c) for c in candidates if why_absent(c) is None and same_init(c, path, state)),
                      None)


def setup(cfg: Any, job: Job, model: nn.Module, data: Dataset, start: Start) -> Run:
    """The run of ``model`` (on the CPU, with its initial weights) on ``data``: schedule, precision, optimizer,
    resumed state, and the run files, all checked before the first step."""
    t, o = cfg.train, cfg.optim
    with dist.agreed():  # of each rank's list
        batches_per_epoch, total_steps, warmup = schedule_lengths(len(data), t, o, start.world_size, job.unit)
    peak_lr, final_lr = o.scaled_lr(t.batch_size * start.world_size * t.accum_steps)
    model.to(start.device)
    precision, why = run_precision(t, start.device, model, job.timing_loss,
                                   start.resume[1].get("meta", {}) if start.resume else {})
    optimizer, scaler, step_model = build_step(model, o, t, start.device, precision, start.world_size)
    run = Run(cfg, job, model, data, start.device, precision, step_model, optimizer, scaler, batches_per_epoch,
              total_steps, warmup, peak_lr, final_lr, start.out_dir,
              {**ckpt.run_meta(start.device, precision, why, start.world_size),
               "threads": start.threads[0], "threads_reason": start.threads[1], "order": dist.ORDER_VERSION,
               **{name: version for name, version in rule_versions().items() if name in deciding_rules(cfg, job)},
               "items": len(data), "list_files_digest": list(data.content_digest),
               **({"input_identities": dict(job.input_identities)} if job.input_identities else {}),
               **run_folder.identity(dataclasses.asdict(cfg), start.resume[1] if start.resume else None)})
    if data.bad_lines and dist.is_main():  # counted with the failed videos against data.max_failure_fraction
        log.warning("%s", left_out(data.bad_lines, "the training list"))
    if start.resume is not None:
        with dist.agreed():
            restore(run, *start.resume)
    epochs = run.position["epoch"] + (run.position["batch"] + (total_steps - run.step) * t.accum_steps) / \
        batches_per_epoch  # where the schedule ends, from where this run starts
    if (beyond := [e for e in t.keep_epochs if e > epochs]) and dist.is_main():
        log.warning("train.keep_epochs %s: beyond this run's %.3g epochs, never kept", beyond, epochs)
    dist.on_main(_prepare_folder, run, start)  # (a full disk stops every rank)
    return run


def _prepare_folder(run: Run, start: Start) -> None:
    """Rank 0's writes before the first step: the resumed checkpoint kept of its epoch where that was missed, the
    replaced run's files removed (``train.overwrite``), the run files written."""
    if start.resume is not None:
        keep_missed_epoch(run, Path(start.resume[0]), start.resume[1])
    run_folder.clear(start.out_dir, start.replaced, fresh=start.resume is None)
    ckpt.write_run_files(start.out_dir, as_recipe(run.cfg), run.meta)


def keep_missed_epoch(run: Run, source: Path, state: dict) -> None:
    """Keep the resumed checkpoint as its epoch's (``train.keep_epochs``) when its step ended that epoch (within its
    micro-batches, which take a batch each) and no kept one exists: the run that wrote it was killed before keeping
    it."""
    epoch, batch = state["data"]["epoch"], state["data"]["batch"]
    if batch < state["config"]["train"]["accum_steps"] and epoch in run.cfg.train.keep_epochs and \
            source.parent.resolve() == run.out_dir.resolve() and \
            epoch not in {ckpt.kept_epoch_step(p)[0] for p in ckpt.kept_checkpoints(run.out_dir)}:
        ckpt.keep_of_epoch(source, epoch, int(state["step"]))


def as_recipe(cfg: Any) -> dict:
    """The run's config as its ``config.yaml`` keeps it, a recipe for later runs: without the settings of this one
    call (``train.resume``, ``train.overwrite``, ``train.stop_after``), which reused would resume another run,
    clear another run's folder or stop early. (The dict is edited, not the config: a resumed run's config may hold
    what only a resumed run is let keep, :meth:`~mme.motion.targets.TargetConfig.check_settings_used`.) Its paths
    are UTF-8 text (:func:`mme.config.recorded`), as a recipe is read whatever the locale."""
    recipe = recorded(cfg)
    recipe["train"].update(resume=None, overwrite=False, stop_after=None)
    return recipe


def warmup_of(warmup_steps: int | None, warmup_epochs: float, steps_per_epoch: int) -> int:
    """The lr warm-up's length in steps: ``optim.warmup_steps``, else ``optim.warmup_epochs`` of the epochs' steps."""
    return warmup_steps if warmup_steps is not None else round(warmup_epochs * steps_per_epoch)


def schedule_lengths(num_items: int, t: TrainConfig, o: OptimConfig, world_size: int,
                     unit: str) -> tuple[int, int, int]:
    """``(batches per epoch, total optimizer steps, warm-up steps)`` for ``num_items`` training items, failing
    before any training when an epoch cannot fill one optimizer step. An epoch is a whole number of optimizer
    steps: the batches left over by ``accum_steps`` are dropped, as the last partial batch is (else the spare
    ones ran into the next epoch, and ``train.epochs`` of them covered fewer passes over the data). A warm-up
    that takes the whole run is warned about, and so is an epoch of a ``train.epochs`` run that leaves out more
    than :data:`LEFT_OUT_WARNED` of the items (:func:`left_out_of_epoch`): a ``train.steps`` run is not bound to
    epochs, its steps drawing each item about as often (or it is shorter than one epoch, which leaves items out
    by its length)."""
    batches = num_items // (t.batch_size * world_size)
    if batches < t.accum_steps:
        raise MMEError(f"data: {num_items} {unit} give {batches} batches per epoch of train.batch_size="
                       f"{t.batch_size} x {counted(world_size, 'rank')}; an optimizer step needs train.accum_steps="
                       f"{t.accum_steps} of them ({t.batch_size * world_size * t.accum_steps} {unit}): lower "
                       "train.batch_size or train.accum_steps, or list more videos")
    steps_per_epoch = batches // t.accum_steps
    if not t.steps and (left := left_out_of_epoch(num_items, steps_per_epoch * t.accum_steps, t.batch_size,
                                                  world_size)) > LEFT_OUT_WARNED * num_items:
        batch, accum, step = said_as("train.batch_size"), said_as("train.accum_steps"), \
            t.batch_size * world_size * t.accum_steps
        log.warning("each epoch trains %d of the %d %s, leaving out %d (%.1f%%, over %g%%), others each epoch: an "
                    "epoch takes whole optimizer steps of %s x %s x %s = %d %s (the effective batch), so a "
                    "list of a multiple of %d leaves none out", num_items - left, num_items, unit, left,
                    100 * left / num_items, 100 * LEFT_OUT_WARNED, f"{batch}={t.batch_size}" if batch
                    else t.batch_size, counted(world_size, "rank"), f"{accum}={t.accum_steps}" if accum
                    else t.accum_steps, step,
                    unit, step)
    total = t.steps or t.epochs * steps_per_epoch
    warmup = warmup_of(o.warmup_steps, o.warmup_epochs, steps_per_epoch)
    if warmup >= total:
        log.warning("the lr warm-up (%s) takes the whole run of %s%s, so the lr reaches its peak at the last step "
                    "and never decays; set optim.warmup_steps or optim.warmup_epochs for a run this short",
                    counted(warmup, "step"), counted(total, "step"), f": it is shortened to {total}"
                    if warmup > total else "")
    return steps_per_epoch * t.accum_steps, total, min(warmup, total)


LEFT_OUT_WARNED = 0.05
"""The share of the training items an epoch of a ``train.epochs`` run may leave out (:func:`left_out_of_epoch`)
unwarned."""


def left_out_of_epoch(num_items: int, batches: int, batch_size: int, world_size: int) -> int:
    """The items of ``num_items`` that an epoch of ``batches`` batches per rank (whole optimizer steps:
    :func:`schedule_lengths`) of ``batch_size`` over ``world_size`` ranks leaves out: a different random set each
    epoch (:func:`mme.train.distributed.epoch_batches` draws its order from the seed and epoch)."""
    return num_items - batches * batch_size * world_size


def run_precision(t: TrainConfig, device: torch.device, model: nn.Module,
                  timing_loss: Callable[[torch.device, int], Callable[[], torch.Tensor]],
                  resumed: dict) -> tuple[str, str]:
    """``(precision, reason)``: ``train.precision``, or what 'auto' resolves to, timing ``model``'s ``timing_loss``
    (:attr:`Job.timing_loss`) on up to :data:`~mme.train.precision.TIMED_CLIPS` clips of the batch where that
    decides; a run resumed on the same kind of device keeps what 'auto' chose for it (``resumed``: the
    checkpoint's meta), so that a close timing does not switch it, unless it took bf16 as native where it is not
    (:func:`~mme.train.precision.choose_precision`). One choice for every rank (``ranks``)."""
    chosen = str(resumed.get("precision_reason", "")).startswith("auto") and "environment" not in \
        resumed["precision_reason"]  # by this machine, not by the user or the environment
    said = bf16_said(resumed.get("precision_reason"))
    same = resumed["precision"] if chosen and same_device(resumed.get("device_name"), ckpt.device_name(device), said) \
        else None
    clips = min(t.batch_size, TIMED_CLIPS)
    precision, why = choose_precision(t.precision, device, TimedLoss(timing_loss(device, clips), clips), same,
                                      ranks=True)
    if why == KEPT:  # the measurement that chose it stays said, over any number of resumes
        first = resumed["precision_reason"]
        why = first if first.startswith(KEPT) else f"{KEPT}: {first}"
    model.zero_grad(set_to_none=True)  # from the timed steps, if any
    return precision, why


def build_step(model: nn.Module, o: OptimConfig, t: TrainConfig, device: torch.device, precision: str,
               world_size: int) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler, nn.Module]:
    """The optimizer, the grad scaler and the module the step calls (compiled and/or DDP-wrapped)."""
    optimizer = build_optimizer(model, o, device)
    scaler = make_scaler(precision, device)
    step_model: nn.Module = torch.compile(model) if t.compile else model
    if world_size > 1:
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
        # The models' buffers are constants every rank computes alike (sincos position tables): broadcasting them
        # would be a collective in a forward of every step for nothing. Set as the attribute: torch 2.13 deprecates the
        # argument, and earlier versions lack its replacement (forward_sync_buffers).
        step_model.broadcast_buffers = False
    return optimizer, scaler, step_model


ADDED_KEYS = {"target.hog_style": "skimage", "target.hog_norm": False, "target.flow_margin": 0, "model.norm_eps": 1e-6,
              "task.scratch_init": "trunc_normal"}
"""Keys a later version of mme added, with what a run made before they existed did: resuming such a run under
another value is a change (the ``released`` preset's HOG became the release's Sobel HOG; ``maskfeat``'s became
MaskFeat's style, normalised, named as the ``hog_style`` change: that style normalises whatever ``hog_norm`` says, so
``hog_norm``'s is named where ``target.hog_style=skimage`` keeps the run's style)."""


def with_added_keys(config: dict) -> dict:
    """A saved config (sections of fields) with each :data:`ADDED_KEYS` key it lacks, in a section it has, at what a
    run made before the key did: an earlier mme's config as this mme writes the same settings."""
    config = {section: dict(fields) if isinstance(fields, dict) else fields for section, fields in config.items()}
    for key, value in ADDED_KEYS.items():
        section, name = key.split(".")
        if isinstance(config.get(section), dict):
            config[section].setdefault(name, value)
    return config


@dataclass(frozen=True)
class Change:
    """A flattened config key whose value differs between two configs (:func:`config_changes`); said as
    ``key: old -> new``."""

    key: str
    old: Any
    new: Any
    added: bool = False
    """An :data:`ADDED_KEYS` key the old run was made before: ``old`` is what it did."""
    folders: tuple[str, str] | None = None
    """The working folders of the old and the new config, said where a path key's text is the same."""

    def __str__(self) -> str:
        return (f"{self.key}: {self.old!r}{' (before the key existed)' if self.added else ''} -> {self.new!r}"
                + (f" (working folder {self.folders[0]} -> {self.folders[1]})" if self.folders else ""))


def config_changes(old: dict, new: dict, ignore: tuple[str, ...] = (), paths: dict[str, str] | None = None,
                   cwds: tuple[str, str] | None = None) -> list[Change]:
    """A :class:`Change` for every flattened key whose value differs (keys in ``ignore`` left out, and the target
    settings the new config's target does not use, :meth:`~mme.motion.targets.TargetConfig.settings_without_effect`,
    or takes from its track cache, :meth:`~mme.motion.targets.TargetConfig.settings_from_the_cache`, whose value
    changes nothing). A key only one config has is compared too, as an entry of a mapping
    (``target.loss_weights.traj``: an empty mapping flattens to no key) of a ``section.field`` both have; a field the
    old config has not is one a later version of mme added: only the :data:`ADDED_KEYS` whose value now differs
    from what the old run did are changes, unless left out as above. A resume compares the checkpoint's config
    with the new one alone: a setting changed on a resume whose target does not use it (left out as above) is
    recorded by no later resume either, which compares it with itself (``target.flow_margin`` 0 -> 8 resumed on
    ``torch-lk``, then resumed on a worker flow with 8: no part records the margin's change). With ``cwds``, the
    working folders of the old and the new config, a key of ``paths`` (:func:`mme.config.path_keys`) differs when it
    names another file: ``syn`` in /data is /data/syn, and an empty one names what ``paths`` gives for its key
    (``data.root``: the working folder). A head's loss weight (``target.loss_weights.<head>``) is compared and said
    as the weight it has on the new config's target (:meth:`~mme.motion.targets.TargetConfig.loss_weight`: a head
    left out weighs 1/number of heads), None where it has no such head."""
    new_target = from_dict(TargetConfig, new["target"], "target.") if "target" in new else None
    if new_target is not None:
        unused = (*new_target.settings_without_effect(), *new_target.settings_from_the_cache())
        ignore = (*ignore, *(f"target.{key}" for key in unused))
    old_fields = {f"{section}.{name}" for section, fields in old.items() if isinstance(fields, dict) for name in fields}
    flat_old, flat_new, paths = flatten(old), flatten(new), paths or {}
    before = {k: v for k, v in ADDED_KEYS.items() if k not in flat_old and k in flat_new and k not in ignore}
    compared = [k for k in sorted(flat_old.keys() | flat_new.keys())
                if k in flat_old or ".".join(k.split(".")[:2]) in old_fields]
    weights = [k for k in compared if k.startswith("target.loss_weights.")]
    if weights:  # the old weights on the new target's heads (the same on resume; the summary's defaults are of
        # another kind, whose heads weigh otherwise): a weight left out is 1/number of this target's heads
        old_target = from_dict(TargetConfig, {**new["target"], "loss_weights": old["target"].get("loss_weights")},
                               "target.")
        for flat, target in ((flat_old, old_target), (flat_new, new_target)):
            flat.update({k: target.loss_weight(head) if (head := k.rsplit(".", 1)[1]) in target.heads else None
                         for k in weights})

    def differs(k: str) -> bool:
        a, b = flat_old.get(k), flat_new.get(k)
        if cwds and k in paths and isinstance(a, str) and isinstance(b, str):
            a, b = a or paths[k], b or paths[k]
            if a and b:
                return os.path.realpath(os.path.join(cwds[0], a)) != os.path.realpath(os.path.join(cwds[1], b))
        return a != b

    def change(k: str) -> Change:
        a, b = flat_old.get(k), flat_new.get(k)
        return Change(k, a, b, folders=cwds if a == b else None)

    return [change(k) for k in compared if k not in ignore and differs(k)] + \
        [Change(k, v, flat_new[k], added=True) for k, v in sorted(before.items()) if flat_new[k] != v]


BOOKKEEPING = ("train.resume", "train.stop_after", "train.init", "train.out_dir", "train.overwrite", "train.keep_last",
               "train.keep_epochs", "train.ckpt_every", "train.log_every", "data.num_workers")
"""Keys that change where and how often a run writes, or which process makes its items (each item is drawn from its
own seed), not what it computes: not config changes on resume."""


STOPPING = ("data.max_failure_fraction", "train.max_nonfinite")
"""Keys that decide when a run stops on failures: each rank decides by its own value, so ranks compare them (a rank
given another would stop alone while the others went on)."""

WITHOUT_ARITHMETIC = ("data.decode_threads", "data.index_dir", "train.activation_checkpointing", "model.preset",
                      "target.preset", *STOPPING)
"""Keys that change no bit of a run's weights nor what it reports: how its videos are decoded (the same frames) and
found, whether its blocks' activations are recomputed (the same ops, the RNG state restored: bitwise the same on a
CPU in fp32, tests/test_resume.py), a preset's name, whose values the resolved keys beside it hold, and when it
stops on failures. A resume that changes them replays exactly: they are said, not recorded."""

PER_NODE = (*(key for key in WITHOUT_ARITHMETIC if key not in STOPPING), "data.num_workers", "train.threads")
"""Keys that may differ by node and change no result: those of :data:`WITHOUT_ARITHMETIC` but :data:`STOPPING`
(``train.activation_checkpointing``, which a node out of memory may need alone), and the processes and threads
that make a rank's items and steps, sized to its node's cores. The ranks compare every other key of their configs
(:func:`check_same_config`)."""

EVALUATION = ("data.test_clips", "data.test_crops", "task.eval_every", "task.eval_batch_size", "task.val_list",
              "task.test_list")
"""Keys of what a fine-tuning run validates and tests, which change no bit of its weights: a resume that changes
them replays its training exactly, said so, and they are recorded (its validation history and tests follow them)."""

RESOLVED_IN_META = {"train.device": "device_name", "train.threads": "threads", "train.precision": "precision"}
"""Keys whose resolved value the run meta holds (in the field named), compared as resolved: 'auto' resolved to the CPU
is ``train.device=cpu``, and to fp32 ``train.precision=fp32``; a resolved value that changed is said once, as the
meta's (a precision with what 'auto' resolved to), not as the key and again as the value."""


MODEL_SECTIONS = ("model.", "target.")
"""The config sections whose keys build a run's model (a target's heads): a change of theirs may make a checkpoint
not fit it."""


def _resolved_changes(old_meta: dict, meta: dict) -> set[str]:
    """The meta fields of what a resumed run computes with that differ from its checkpoint's ``old_meta``: the
    precision, and where both record them (an mme before it, a GPU without MKL) the device (not another name of the
    same device), MKL mode and intra-op threads."""
    said = bf16_said(old_meta.get("precision_reason"))
    return {key for key in ("precision", "device_name", "mkl_mode", "threads")
            if None not in (old_meta.get(key), meta[key]) and old_meta[key] != meta[key]
            and not (key == "device_name" and same_device(old_meta[key], meta[key], said))}


def restore(run: Run, source: str, state: dict) -> None:
    """Load model, optimizer, scaler, step, data position and RNG states into ``run``. A config changed since the
    checkpoint is warned about and recorded with the step it applies from (``config_changes`` of run.json), since
    config.yaml holds the newest config only; so is another world size, and the data position is carried over
    by the samples it had consumed (and a ``train.epochs`` run's end by the batches left). A path key is a change
    when it names another file, a relative path taken from its run's working folder (``cwd`` of the meta; of a
    checkpoint that records none: when it is written otherwise)."""
    old_meta = state.get("meta", {})
    unchanging = (*WITHOUT_ARITHMETIC, *RESOLVED_IN_META, *unused_in_both(state["config"], run.cfg))
    compared = config_changes(state["config"], dataclasses.asdict(run.cfg), ignore=BOOKKEEPING,
                              paths=path_keys(type(run.cfg)),
                              cwds=(old_meta["cwd"], run.meta["cwd"]) if "cwd" in old_meta else None)
    harmless, evaluated, changed = [], [], []
    moved = _resolved_changes(old_meta, run.meta)
    for change in compared:
        if RESOLVED_IN_META.get(change.key) in moved:
            continue  # said below as the value it resolved to
        if change.added or change.key not in (*unchanging, *EVALUATION):
            changed.append(str(change))
        else:
            (harmless if change.key in unchanging else evaluated).append(str(change))
    try:
        load_state(run.model, state["model"], f"checkpoint {source}")
    except CheckpointError as e:  # the config's keys that build the model, where they changed, say why (a preset's
        # name too: the one given, though its values are compared as resolved)
        built = [str(c) for c in compared if c.key.startswith(MODEL_SECTIONS)]
        if not built:
            raise
        raise CheckpointError(f"{e}; the config changed since its run ({'; '.join(built)}): resume with the run's "
                              "values") from e
    world = run.meta["world_size"]
    if old_meta.get("world_size", world) != world:
        changed.append(f"world size: {old_meta['world_size']} -> {world}")
    changed += [f"{name}: {old_meta[key]} -> {run.meta[key]}"
                for key, name in (("mme", "mme"), ("git", "code"), ("torch", "torch"))
                if old_meta.get(key, run.meta[key]) != run.meta[key]]
    if "precision" in moved:  # (the reason left out where an mme before it recorded none)
        why = f"{old_meta['precision_reason']}, " if old_meta.get("precision_reason") else ""
        changed.append(f"precision: {old_meta['precision']} ({why}on {old_meta.get('device_name')}) -> "
                       f"{run.precision} ({run.meta['precision_reason']})")
    changed += [f"{name}: {old_meta[key]} -> {run.meta[key]}{why}" for key, name, why in (
        ("device_name", "device", " (the same up to float rounding, not bitwise)"),
        ("mkl_mode", "MKL mode", " (the same up to float rounding, not bitwise; MKL_CBWR=AUTO,STRICT, which import "
         "mme sets, pins it)"),
        ("threads", "intra-op threads", " (the same up to float rounding, not bitwise; train.threads pins them)"))
        if key in moved]
    changed += (listed := list_change(state, run.data))
    changed += read_change(old_meta, run.meta)
    changed += rule_change(old_meta, run.cfg, run.job)
    if (order := old_meta.get("order", 1)) != dist.ORDER_VERSION:  # a checkpoint that records none: version 1
        changed.append(f"data order: version {order} -> {dist.ORDER_VERSION} (other batches for its remaining "
                       "epochs: mme.train.distributed.ORDER_VERSION)")
    if harmless:  # (where other changes are said, not that it replays exactly)
        log.info("resuming %s with settings that change nothing it computes%s: %s", source,
                 "" if changed else " (it replays exactly)", harmless)
    if evaluated:
        log.info("resuming %s with other validation or test settings, recorded%s: %s", source,
                 "" if changed else " (its training replays exactly)", evaluated)
    if changed:
        log.warning("resuming %s with a changed config (the run will not replay exactly): %s", source, changed)
    if changed or evaluated:
        run.meta["config_changes"] = [*run.meta.get("config_changes", []),
                                      {"from_step": int(state["step"]), "changes": changed + evaluated}]
    load_optimizer(run.optimizer, state["optimizer"], source)
    saved_scaler = state.get("scaler") or {}
    if run.scaler.is_enabled() and not saved_scaler:
        log.info("train.precision=%s: a fresh fp16 grad scaler (the checkpoint's run had none)", run.precision)
    elif saved_scaler:
        run.scaler.load_state_dict(saved_scaler)
    run.step = run.resumed_at = int(state["step"])
    in_folder = Path(source).resolve() == ckpt.checkpoint_path(run.out_dir, run.step).resolve()
    run.saved_step = run.step if in_folder else 0  # (one resumed from elsewhere: its step is kept in this folder)
    run.skipped = int(state.get("skipped", 0))
    run.grad_overflows = int(state.get("grad_overflows", run.skipped if saved_scaler else 0))  # (fp16's: a scaler)
    run.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
    failed = state.get("data_failures") or {}
    if failed.get("list") == run.data.list_digest and (carried := int(failed["codes"].count_nonzero())):
        run.failures_carried = carried  # of the same list
        log.info("%s that failed in the run before it resumed (up to its step %d checkpoint) %s skipped "
                 "and counted, as the run would have gone on", counted(run.failures_carried, "video"), run.step,
                 plural(run.failures_carried, "is", "are"))
        run.data.carry_failures(failed["codes"])
    run.position = data_position(state, len(run.data), run.cfg.train.batch_size * world, run.cfg.train.seed,
                                 bool(listed) and failed.get("list") != run.data.list_digest)  # (not relabelled)
    read_in_epochs = schedule_in_epochs(run.cfg) and at_epochs_done(run, state)
    if run.step > run.total_steps:
        raise ConfigError(f"train.resume {source}: its run trained {run.step} steps, past this config's end at "
                          f"{run.total_steps} (train.steps / train.epochs): resume with the length it ran, or start "
                          f"a new run from its weights with train.init={source}")
    group = state["optimizer"]["param_groups"][0]
    ran = group["lr"] / group["lr_scale"]  # the checkpoint's last step's
    now = cosine_schedule(*run.schedule_args(run.step - 1))
    if run.step > 0 and not math.isclose(ran, now, rel_tol=0.01):
        log.warning("the lr schedule is not the one the checkpoint ran: its step %d ran at lr %.3g, this run's "
                    "schedule has %.3g there and goes on from it (%s)", run.step, ran, now,
                    schedule_change(state, run, read_in_epochs))
    ckpt.set_rng_state(state["rng"])
    log.info("resumed from %s at step %d (epoch %d, batch %d)", source, run.step, run.position["epoch"],
             run.position["batch"])


def unused_in_both(old: dict, cfg: Any) -> list[str]:
    """The keys without effect or shadowed (:func:`mme.config.keys_without_effect`, :func:`~mme.config.keys_shadowed`)
    in both the checkpoint's config ``old`` and ``cfg``: a key unused on one side only is compared, as a change of
    it between two parts that use it may pass through a part that does not (``data.rrc_scale`` given beside
    ``data.crop=multiscale``, then ``random_resized`` again). The old config is built as a resumed run's (a first
    part's may hold a setting an earlier mme took that only a resumed run may keep:
    :meth:`~mme.motion.targets.TargetConfig.check_settings_used`); one this mme cannot build leaves none out."""
    def unused(c: Any) -> set[str]:
        return keys_without_effect(c).keys() | keys_shadowed(c).keys()

    try:
        old_cfg = from_dict(type(cfg), {**old, "train": {**old.get("train", {}), "resume": "auto"}})
    except ConfigError:
        return []
    return sorted(unused(old_cfg) & unused(cfg))


def list_change(state: dict, data: Dataset) -> list[str]:
    """The change of the training list since the checkpoint's run, by its length and content (one entry): a list
    edited in place keeps its ``data.list_file``. A checkpoint that records no digest of the files its list names
    (``list_files_digest`` of its meta; one made before, whose ``list_digest`` took the paths as written) is compared
    by the digest of the paths its failure table carries, where it has one."""
    meta, items = state.get("meta", {}), len(data)
    if "list_files_digest" in meta:  # (the list the same where either of its digests is)
        other = not same_content(meta["list_files_digest"], data.content_digest)
    else:
        other = (state.get("data_failures") or {}).get("list", data.list_digest) != data.list_digest
    if not other and meta.get("items", items) == items:
        return []
    return [f"training list content: {meta.get('items', '?')} -> {items} items, changed"]


def read_change(old_meta: dict, meta: dict) -> list[str]:
    """The changes of the inputs a run reads besides its list (:attr:`Job.input_identities`, ``input_identities`` of
    the meta ``meta``) since the checkpoint's run (``old_meta``), one entry each, naming what differs ('track cache:
    short_side 64 -> 96, max_disp None -> 30.0': :func:`~mme.data.dataset.identity_change`): a track
    cache extracted again into its folder keeps its ``target.cache_dir``. A checkpoint of an earlier mme records
    them in words (``read_identities``); an input the checkpoint records none of (made before they were recorded, or
    its run read none) is not compared."""
    old = old_meta.get("input_identities") or old_meta.get("read_identities") or {}
    return [f"{name}: {change}" for name, now in (meta.get("input_identities") or {}).items()
            if name in old and (change := identity_change(old[name], now))]


def deciding_rules(cfg: Any, job: Job) -> dict[str, Callable[[int], str | None]]:
    """The rules besides the data order (``order`` of the meta) whose versions (:func:`mme.rule_versions`) decide
    what ``job``'s run of ``cfg`` computes, with what a run of a recorded version gets otherwise now: every run's
    reading of its videos (by its ``data.backend``, its test views where :attr:`Job.test_views`:
    :func:`~mme.eval.testing.reading_changed`) and :attr:`Job.rules`. Not the index's
    (:data:`~mme.data.pyav_reader.INDEX_VERSION`): a stored index is what the reader finds of a file, found again
    where its version is another, and a bump of it that changes the frames or verdicts it gives bumps the reading's
    too (the rule since version 14, the first that runs recording ``reading`` were made with)."""
    return {"reading": functools.partial(reading_changed, backend=cfg.data.backend, test_views=job.test_views),
            **job.rules}


def rule_change(old_meta: dict, cfg: Any, job: Job) -> list[str]:
    """The rules that decide what the run computes (:func:`deciding_rules`) whose version since the checkpoint's run
    (``old_meta``) changes it, one entry each ('tracker: revision 2, this mme's is 3; ...'). A rule the checkpoint
    records no version of (made before they were recorded, or its run used none) is not compared."""
    return [f"{name}: {said}" for name, changed in deciding_rules(cfg, job).items()
            if name in old_meta and (said := changed(old_meta[name])) is not None]


def schedule_in_epochs(cfg: Any) -> bool:
    """Whether a run's lr and wd schedules are laid out in epochs, read at the epochs done where a resume takes other
    steps per epoch (:func:`at_epochs_done`): a ``train.epochs`` run's, and a ``train.steps`` run's whose warm-up is
    in epochs (``optim.warmup_epochs``, ``optim.warmup_steps`` unset)."""
    return cfg.train.steps is None or (cfg.optim.warmup_steps is None and cfg.optim.warmup_epochs > 0)


def at_epochs_done(run: Run, state: dict) -> bool:
    """Read a resumed run's lr and wd schedules at the epochs done (:func:`schedule_in_epochs`), and end a
    ``train.epochs`` run after the batches its epochs have left: its checkpoint's steps may have taken other batches
    (another world size, batch per rank, accumulation or list), so ``epochs x steps per epoch`` would have covered
    more or fewer epochs than asked, and the checkpoint's step count, in the other's steps, would put the schedule
    elsewhere (back into its warm-up, on fewer steps per epoch). The schedule is this run's steps per epoch over the
    epochs (its warm-up too); its position, the batches done in this run's steps, is found again from the data
    position at each resume (0 from the step count where the steps never changed). A ``train.steps`` run's cosine is
    laid out in its steps, its warm-up alone in epochs: it is read so within the warm-up its checkpoint ran, and past
    it goes on as it ran (the checkpoint's ``schedule``: its position's offset and warm-up in steps; an earlier mme's,
    which records none, at its step count and its config's warm-up), so that such a resume moves no lr but by the
    peak's scaling. Returns whether it read them at the epochs done: not a ``train.steps`` run's past that warm-up."""
    t, per_epoch = run.cfg.train, run.batches_per_epoch
    if t.steps is not None and (ran := _past_warm_up(state, run)):
        run.schedule_offset, run.warmup_steps = ran["offset"], min(ran["warmup"], run.total_steps + ran["offset"])
        return False
    done = run.position["epoch"] * per_epoch + min(run.position["batch"], per_epoch)
    run.schedule_offset = done // t.accum_steps - run.step
    if t.steps is None:
        end = run.step + (t.epochs * per_epoch - done) // t.accum_steps  # before the checkpoint's step when it is
        # past the epochs: refused
        if end != run.total_steps and end >= run.step:
            log.info("train.epochs=%d: the checkpoint's %d steps took other batches than this run's; the rest of the "
                     "epochs takes %d steps of %d per epoch, so the run ends at step %d (not %d), its lr schedule "
                     "read at the %.3g epochs done (its step %d of %d)", t.epochs, run.step, end - run.step,
                     per_epoch // t.accum_steps, end, run.total_steps, done / per_epoch, done // t.accum_steps,
                     end + run.schedule_offset)
        run.total_steps = end
    run.warmup_steps = min(run.warmup_steps, run.total_steps + run.schedule_offset)
    return True


def _past_warm_up(state: dict, run: Run) -> dict | None:
    """The schedule checkpoint ``state``'s run ran (its position's offset and warm-up in steps: its ``schedule``, an
    earlier mme's, which records none, at its step count and its config's warm-up) where it was past its warm-up;
    None within it."""
    optim = state["config"]["optim"]
    ran = state.get("schedule") or {"offset": 0, "warmup": warmup_of(optim.get("warmup_steps"), optim["warmup_epochs"],
                                                                    checkpoint_steps_per_epoch(state, run))}
    return ran if run.step + ran["offset"] >= ran["warmup"] else None


def effective_batch(state: dict, run: Run) -> int:
    """The effective batch of the run of checkpoint ``state``: its batch per micro-batch over its ranks, by its
    accumulation."""
    old, meta = state["config"]["train"], state.get("meta", {})
    return old["batch_size"] * meta.get("world_size", run.meta["world_size"]) * old.get("accum_steps", 1)


def checkpoint_steps_per_epoch(state: dict, run: Run) -> int:
    """The optimizer steps per epoch of the run of checkpoint ``state`` (its items, or this run's where it records
    none, over its effective batch)."""
    return state.get("meta", {}).get("items", len(run.data)) // effective_batch(state, run)


def schedule_change(state: dict, run: Run, read_in_epochs: bool) -> str:
    """Why a resumed run's schedule gives another lr than its checkpoint's last step ran at: the effective batch,
    which scales the peak, and the steps per epoch of a schedule read at the epochs done (``read_in_epochs``, what
    :func:`at_epochs_done` returned), with the warm-up left where its length in steps changed, as they changed; else a
    changed length or lr setting."""
    t = run.cfg.train
    said = []
    if (before := effective_batch(state, run)) != (now := t.batch_size * run.meta["world_size"] * t.accum_steps):
        said.append(f"its effective batch {before} -> {now} scales the peak lr; train.batch_size x ranks x "
                    f"train.accum_steps at {before} keeps it")
    before, now = checkpoint_steps_per_epoch(state, run), run.batches_per_epoch // t.accum_steps
    if read_in_epochs and before != now:
        said.append(f"its steps per epoch {before} -> {now}: the schedule goes on from the epochs done, in this "
                    "run's steps")
        if (left := run.warmup_steps - run.step - run.schedule_offset) > 0 and run.cfg.optim.warmup_steps is None:
            said.append(f"its warm-up (optim.warmup_epochs={run.cfg.optim.warmup_epochs:g}) takes "
                        f"{counted(run.warmup_steps, 'step')} at {now} per epoch, {left} of them left")
    return "; ".join(said) or ("its length or lr settings changed (train.steps or train.epochs, optim.*lr*, "
                               "warm-up): e.g. a longer run restarts part of the cosine")


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict, source: str) -> None:
    """The moments of a checkpoint's optimizer (``saved``) into ``optimizer``, matched by parameter name, so that
    its groups may be arranged otherwise (``optim.layer_decay`` turned on or off); the hyper-parameters are the
    config's (betas, eps, each group's lr scale), as a changed config says."""
    try:
        index = {name: i for g in saved["param_groups"] for name, i in zip(g["names"], g["params"], strict=True)}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source}: its optimizer state has no parameter names ({e})") from e
    names = [name for g in optimizer.param_groups for name in g["names"]]
    missing = [name for name in names if name not in index]
    if missing or len(names) != len(index):
        extra = sorted(set(index) - set(names))
        raise CheckpointError(f"checkpoint {source}: optimizer state does not fit this model (parameters it lacks: "
                              f"{missing[:5]}; it has others: {extra[:5]})")
    current = optimizer.state_dict()
    current["state"] = {k: saved["state"][index[name]] for k, name in enumerate(names) if index[name] in saved["state"]}
    optimizer.load_state_dict(current)


def data_position(state: dict, items: int, samples_per_batch: int, seed: int, moved: bool = False) -> dict:
    """Where a resumed run's data start: the checkpoint's epoch and batch, the batch converted by the samples the
    run had consumed when the world size or batch per rank changed (an epoch's permutation depends on the seed
    and epoch alone, and the ranks together consume its prefix), with a warning for what cannot be carried over:
    mid-epoch, another epoch order than the one whose prefix the checkpoint's run consumed, of a list of another
    length, ``train.seed`` (``seed``) or order version; or a list of the same length naming other videos at some
    of its positions (``moved``: its paths in order changed, not its labels alone), whose positions the rest of
    the epoch draws as it would have (one moved in the list may be trained twice or not at all, one replaced not
    twice)."""
    position = dict(state["data"])
    meta = state.get("meta", {})
    old_seed, reordered = state["config"]["train"].get("seed", seed), []
    if meta.get("items", items) != items:
        reordered.append(f"the training list has {items} items, the checkpoint's run had {meta['items']}")
    if old_seed != seed:
        reordered.append(f"train.seed is {seed}, the checkpoint's run had {old_seed}")
    if (order := meta.get("order", 1)) != dist.ORDER_VERSION:  # (a checkpoint that records none: version 1)
        reordered.append(f"the data order is version {dist.ORDER_VERSION}, the checkpoint's run had {order}")
    if reordered and position["batch"]:
        log.warning("%s: the rest of epoch %d follows another order than the one it began (some of its items seen "
                    "twice, others not at all)", "; ".join(reordered), position["epoch"])
    elif moved and position["batch"]:
        log.warning("the training list names other videos at some of its %d positions: the rest of epoch %d draws "
                    "the positions it has not drawn, so a video moved in the list may be trained twice this epoch, "
                    "or not at all", items, position["epoch"])
    before = state["config"]["train"]["batch_size"] * meta.get("world_size", 1)
    if before != samples_per_batch and position["batch"]:
        consumed = position["batch"] * before
        position["batch"] = consumed // samples_per_batch
        if consumed % samples_per_batch:
            log.warning("resuming at epoch %d with batches of %d samples over all ranks where the checkpoint had "
                        "%d: %d samples of the epoch are drawn again", position["epoch"], samples_per_batch, before,
                        consumed % samples_per_batch)
    return position


def summary(run: Run, job_lines: list[str]) -> str:
    """What a run prints at its start: the derived numbers (``job_lines`` are the job's own), the settings that
    differ from the defaults, and where the full config is."""
    t, o = run.cfg.train, run.cfg.optim
    world = dist.get_world_size()
    items = t.batch_size * world * t.accum_steps
    params = count_parameters(run.model)
    settings = config_changes(dataclasses.asdict(type(run.cfg)()), dataclasses.asdict(run.cfg))
    schedule_total = run.schedule_args(0)[1]  # (a schedule in epochs resumed with other steps per epoch: its
    # length in this run's steps, schedule_in_epochs)
    lines = [
        f"  world size {world}, device {run.device} ({run.meta['device_name']}), precision {run.precision}"
        f" ({run.meta['precision_reason']}), {counted(run.meta['threads'], 'thread')} ({run.meta['threads_reason']})",
        f"  effective batch {items} = {t.batch_size}/rank x {counted(world, 'rank')} x {t.accum_steps} accum",
        (f"  lr {run.peak_lr:.4g} -> {run.final_lr:.4g} (base {o.base_lr:g} x {items}/{o.lr_batch_ref}), "
         f"warm-up {counted(run.warmup_steps, 'step')}, cosine" if run.warmup_steps < schedule_total - 1 else
         f"  lr up to {run.peak_lr:.4g} (base {o.base_lr:g} x {items}/{o.lr_batch_ref}), warm-up {run.warmup_steps} "
         f"of {counted(schedule_total, 'step')}: no decay")  # (one step after the warm-up is at the peak: the cosine's
        # start)
        + (f", layer decay {o.layer_decay} (the lr logged is the head's)" if o.layer_decay else ""),
        f"  {len(run.data)} {run.job.unit}"
        + (f", {len(run.data) - left} trained per epoch ({left} left out, others each epoch)" if (
            left := left_out_of_epoch(len(run.data), run.batches_per_epoch, t.batch_size, world)) else "")
        + f", {counted(run.batches_per_epoch // t.accum_steps, 'step')}/epoch, "
        f"{counted(run.total_steps, 'step')}" + (f", stopping after {t.stop_after}" if t.stop_after else ""),
        f"  parameters {params / 1e6:.2f}M",
        *job_lines,
        f"  out dir {run.out_dir} (config.yaml: the full config)" + (f"; resuming at step {run.step}" if run.step
                                                                     else ""),
    ]
    sections: dict[str, list[str]] = {}
    for change in settings:
        section, key = change.key.split(".", 1)
        sections.setdefault(section, []).append(f"{key}={change.new!r}")
    wrap = textwrap.TextWrapper(120, subsequent_indent="      ", break_long_words=False)
    return "\n".join(["derived:", *lines, "settings that differ from the defaults:",
                      *(wrap.fill(f"  {name}: " + " ".join(items)) for name, items in sections.items())])


def print_summary(run: Run, job_lines: list[str]) -> None:
    """Rank 0 prints :func:`summary`; the whole resolved config goes to the debug log (``mme -v``)."""
    if dist.is_main():
        if log.isEnabledFor(logging.DEBUG):
            log.debug("resolved config:\n%s", dump_recipe(dataclasses.asdict(run.cfg)).rstrip())
        print(summary(run, job_lines), flush=True)
