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
batch gives ``task.repeated_aug`` clips with their own crop and window); the defaults of the configs
(mme.train.config) are the K400 recipe. ``mme finetune`` then tests the classifier (mme.eval.finetuned).

Reproducibility as every run of the engine (mme.train.engine): each clip's crop from (seed, epoch, index), the
batch augmentation from (seed, step, rank, micro-batch); a resumed run continues bitwise-identically on CPU.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mme.config import given_in
from mme.data.dataset import ClassificationDataset, DataConfig, content_digest, same_content
from mme.data.lists import (
    ListEntry,
    agreeing_classes,
    check_class_ids,
    check_labels,
    listed_once,
    misnamed_classes,
    read_classes,
    read_list,
    resolve,
    shared_video,
    source_group,
    untrained_classes,
    video_identity,
    warn_of_shared_sources_listed,
)
from mme.data.transforms import normalize_clip
from mme.errors import ConfigError, DataError
from mme.models.checkpoint import Checkpoint, load_checkpoint_encoder, run_model_config
from mme.models.classifier import VideoClassifier
from mme.models.config import ENCODER_FIELDS
from mme.models.vit import checkpoint_blocks, count_parameters
from mme.train import distributed as dist
from mme.train import engine, run_folder
from mme.train.augment import augment_batch, soft_target_cross_entropy
from mme.train.config import FinetuneConfig, FinetuneModel, clips_for
from mme.train.engine import Run
from mme.utils import MISSING, plural, why_absent, why_absent_each

log = logging.getLogger(__name__)

class RepeatedClips(Dataset):
    """Repeated augmentation: item i is ``repeats`` training clips of video i, ``{"video": (R, 3, T, H, W),
    "label": (R,), "index": (R,)}``, each from its own ClassificationDataset copy (own seed), so the copies
    differ in crop, flip and temporal window. The copies share one list, read once, and one failure table
    (:meth:`~mme.data.dataset.ClassificationDataset.with_seed`); each draws its own replacement for a failed video."""

    def __init__(self, cfg: DataConfig, repeats: int, seed: int):
        first = ClassificationDataset(cfg, "train", seed=seed * repeats)
        self.copies = [first] + [first.with_seed(seed * repeats + k) for k in range(1, repeats)]

    def __len__(self) -> int:
        return len(self.copies[0])

    def __getattr__(self, name: str):
        """The rest of the dataset's interface (its failures, short videos, clip window, digests, list) is the first
        copy's, which the copies share: delegated, so that none added to the dataset is missed (a hand-kept copy of
        it lacked ``short_clip_effect``: fine-tuning on videos shorter than a clip stopped with an AttributeError)."""
        if name == "copies" or name.startswith("__"):  # (not yet set while unpickled in a loader worker)
            raise AttributeError(name)
        return getattr(self.copies[0], name)

    def note_trained(self, keys: list[tuple[int, int]], read: torch.Tensor) -> None:
        """:meth:`~mme.data.dataset.ClassificationDataset.note_trained` of each copy, by its column of ``read``."""
        for k, copy in enumerate(self.copies):
            copy.note_trained(keys, read[:, k])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        items = [c[key] for c in self.copies]
        return {"video": torch.stack([it["video"] for it in items]),
                "label": torch.tensor([it["label"] for it in items]),
                "index": torch.tensor([it["index"] for it in items])}


def class_names(cfg: FinetuneConfig, recorded: list[str] | None = None, source: str = "",
                keys: Collection[str] = (), checkpoint: str | None = None) -> list[str] | None:
    """``task.classes``'s names, or those the classifier checkpoint ``source`` (file ``checkpoint``, else
    ``source``) records (``recorded``): see :func:`mme.data.lists.agreeing_classes`. A file that cannot be read
    where ``keys`` (those the command line gives, :func:`~mme.config.given_in`) lack task.classes is said to be the
    config's (a recipe's default, or the user's own --config file), and how to set it or turn it off (a recipe's
    default names a file of its own data, runs/synth/classes.json)."""
    try:
        given = read_classes(cfg.task.classes, "task.classes") if cfg.task.classes else None
    except DataError as e:
        if "task.classes" in keys:
            raise
        raise DataError(f"{e} (from the config, not given on the command line; task.classes=PATH gives another, "
                        f"task.classes= none)") from e
    return agreeing_classes(given, "task.classes", cfg.task.classes, recorded, source, checkpoint or source)


def warn_of_misnamed_classes(cfg: FinetuneConfig, names: list[str] | None,
                             lists: Collection[tuple[str, list[ListEntry]]], trained_with: str | None) -> None:
    """Warn where videos of ``lists`` lie in the class folders of other ``names`` (those of :func:`class_names`)
    than their labels' (:func:`~mme.data.lists.misnamed_classes`); under torchrun rank 0 alone says it, as every
    warning of this module's logger (``mme.cli.ALIKE_ON_EVERY_RANK``). ``trained_with``: the classifier checkpoint
    whose recorded names these are (task.classes, if given, agrees with them; None: a new head's): they, or these
    lists, may be the ones in another order than the numbering it was trained with."""
    if not names:
        return
    named_by = f"task.classes {cfg.task.classes}" if cfg.task.classes else f"the class names {trained_with} records"
    note = misnamed_classes(names, named_by, lists, trained_with)
    if note:
        log.warning("%s", note)


class TrainingList(NamedTuple):
    """The training list the val and test lists are compared with (:func:`check_test_lists`)."""

    file: str
    root: str
    """The folder its paths start from."""
    recorded: tuple[int, tuple[str, ...]] | None = None
    """What the run that trained on it recorded of it (:attr:`~mme.models.checkpoint.Checkpoint.run_list`), where
    the list now at ``file`` may be another (``task.eval_only``'s, of a run before); None: the list is the one."""


def check_test_lists(cfg: FinetuneConfig, num_classes: int, training: TrainingList | None, whence: str = ""
                     ) -> tuple[list[ListEntry], dict[str, tuple[str, list[ListEntry]]]]:
    """The val and test lists before any work: every line parses and has a label the head can predict, and some
    of their videos are there (a list none of whose files is there to read is a DataError; those not under
    ``data.root`` and those this user cannot read are counted apart in a warning, and reported as failed by the
    tests: :func:`_say_absent`); a video one of them lists twice is a DataError
    (it would be scored twice). Against the training list (``training``; None where none is known), where it is
    there and is the one recorded: videos they share with it are warned about (the figures would score videos the
    model was trained on), and so are other clips of its source videos (a clip's sibling scores high:
    :func:`~mme.data.lists.source_group`, UCF101's groups, HMDB51's sources, Kinetics' YouTube videos) and their
    videos of classes it has none of (:func:`~mme.data.lists.untrained_classes`). The training list may repeat a
    video (oversampling it). ``whence``: where ``num_classes`` came from, said with a label beyond it. Returns the
    lists read: the training list's entries ([] where it is not compared) and the val and test lists, ``{task.KEY:
    (list file, entries)}``."""
    train_file, train_root, recorded = training or TrainingList("", "")
    trained: list[ListEntry] = []
    if train_file and (why := why_absent(train_file)):  # (task.eval_only's, of a run before: moved, or shut to us)
        log.warning("the training list %s %s: the val and test lists are not compared with it", train_file,
                    "is not there" if why == MISSING else f"cannot be read ({why})")
    elif train_file:
        try:
            trained = read_list(train_file, strict=False)[0]
        except DataError as e:  # (task.eval_only's, which it does not read otherwise; a run's was read before)
            log.warning("%s: the val and test lists are not compared with the training list", e)
    if trained and recorded and not same_content(recorded[1], content_digest(trained, train_root, labelled=True)):
        log.warning("the training list %s has changed since the run (%d items then, %d now): the val and test lists "
                    "are not compared with it", train_file, recorded[0], len(trained))
        trained = []
    train = {video_identity(e, train_root): e for e in trained}
    tested = {}
    for split, list_file in cfg.task.tested.items():
        key = f"{split}_list"
        entries = check_labels(list_file, num_classes, f"task.{key}", whence)
        tested[f"task.{key}"] = list_file, entries
        videos = listed_once(list_file, entries, cfg.data.root, f"task.{key}")
        shared, named = shared_video(videos, train, cfg.data.root)
        if shared:
            log.warning("task.%s %s shares %d of its %d videos with the training list %s (e.g. %s): its figures "
                        "score videos the model was trained on", key, list_file, shared, len(entries), train_file,
                        named)
        if trained and dist.is_main():  # (its logger's warnings are every rank's)
            warn_of_shared_sources_listed(f"task.{key} {list_file}", {
                f"the training list {train_file}": trained,
                f"task.{key}": [e for video, e in videos.items() if video not in train  # (warned of above)
                                and source_group(e.path) != e.path]})  # (a file no name gives a source is its own)
        missing, unreadable = why_absent_each({e.path: resolve(e, cfg.data.root) for e in entries})
        if missing or unreadable:
            _say_absent(f"task.{key} {list_file}", missing, unreadable, len(entries), cfg.data.root)
    note = untrained_classes(train_file, trained, tested)
    if note:
        log.warning("%s", note)
    return trained, tested


def _say_absent(named: str, missing: list[str], unreadable: dict[str, str], listed: int, root: str) -> None:
    """Of a val or test list (``named``: its setting and file), its videos absent (:func:`why_absent_each`), counted
    apart: those ``missing`` (not under ``root``) and those this user cannot read (a teammate's folder of mode 0700),
    the first of each named; a DataError where they are all ``listed`` of them, else a warning (the tests report them
    as failed)."""
    first = ": ".join(next(iter(unreadable.items()), ()))  # (the first unreadable and why)
    said = [f"{len(missing)} {plural(len(missing), 'is', 'are')} not under data.root {root!r} (e.g. {missing[0]})"
            ] if missing else []
    said += [f"{len(unreadable)} cannot be read (e.g. {first})"] if unreadable else []
    if len(missing) + len(unreadable) < listed:
        log.warning("%s: of its %d videos, %s; the tests report them as failed", named, listed, ", ".join(said))
    elif not unreadable:
        raise DataError(f"{named}: none of its {listed} videos is under data.root {root!r} (e.g. {missing[0]})")
    elif not missing:
        raise DataError(f"{named}: none of its {listed} videos can be read (e.g. {first})")
    else:
        raise DataError(f"{named}: none of its {listed} videos can be read: {', '.join(said)}")


def list_test_set(cfg: FinetuneConfig, list_file: str, clips: int | None = None,
                  crops: int | None = None) -> ClassificationDataset:
    """The videos of ``list_file`` as a test set of ``clips`` x ``crops`` views (the config's by default)."""
    data = dataclasses.replace(cfg.data, list_file=list_file, test_clips=clips or cfg.data.test_clips,
                               test_crops=crops or cfg.data.test_crops, max_failure_fraction=1.0)
    return ClassificationDataset(data, "test", seed=cfg.train.seed)


def _num_classes(cfg: FinetuneConfig, names: list[str] | None) -> int:
    """``task.num_classes``, else the number of class names, else 1 + the largest label; a label the head cannot
    predict is a DataError naming the list file, found before any training."""
    entries = read_list(cfg.data.list_file, strict=False, key="data.list_file")[0]
    labels = [e.label for e in entries if e.label is not None]
    n = cfg.task.num_classes or (len(names) if names else None)
    check_class_ids(cfg.data.list_file, entries, "list file", n, "set task.num_classes or task.classes")
    if n is None:
        if not labels:
            raise DataError(f"list file {cfg.data.list_file}: no labels; set task.num_classes")
        return max(labels) + 1
    if labels and max(labels) >= n:
        raise DataError(f"list file {cfg.data.list_file}: label {max(labels)} is not a class of a {n}-class head "
                        f"(labels must be 0..{n - 1}; set task.num_classes or task.classes to match the list)")
    return n


def _check_resumed_head(cfg: FinetuneConfig, resume: tuple[str, dict], names: list[str] | None,
                        num_classes: int) -> None:
    """A ConfigError where the head of the resumed run (``resume``: its checkpoint and state) has another number of
    classes than this run gives, naming what gives it (a list whose labels changed since: its last class dropped,
    a class added; before: 'wrong architecture: head.weight has shape (4, 48) ...', which names no cause)."""
    head = resume[1]["model"].get("head.weight")
    if head is None or head.shape[0] == num_classes:
        return
    if cfg.task.num_classes:
        given = f"task.num_classes gives {num_classes}"
    elif names is not None:
        given = (f"task.classes {cfg.task.classes} names {num_classes}" if cfg.task.classes else
                 f"the class names it records are {num_classes}")
    else:
        given = (f"the labels of data.list_file {cfg.data.list_file} now give {num_classes} (task.num_classes unset: "
                 f"1 + the largest label): the list's classes changed since")
    raise ConfigError(f"checkpoint {resume[0]}: its run was trained on {head.shape[0]} classes, {given}; resume with "
                      f"the run's list, or set task.num_classes={head.shape[0]}")


def _with_architecture(cfg: FinetuneConfig, resume: tuple[str, dict] | None, init: Checkpoint | None,
                       given: Collection[str] = ()) -> FinetuneConfig:
    """``cfg`` with the encoder of the run: the resumed run's (the config's values it ignores warned about: those of
    its architecture only where ``given`` on the command line, :func:`~mme.train.engine.warn_ignored_on_resume`),
    else the architecture of ``init`` (``train.init`` read; its tubelet too) with this config's clip geometry and drop
    path, else the config's (checked as it was read); its clips fit to that model
    (:func:`~mme.train.config.clips_for`), as pre-training's ``_with_architecture``."""
    if resume is not None:
        model = run_model_config(FinetuneModel, resume[1]["config"]["model"], resume[0], meta=resume[1].get("meta"))
        engine.warn_ignored_on_resume(cfg.model, model, cfg.RESUMED_MODEL, given, resume[0], bool(cfg.train.init),
                                      cfg.data.tubelet)
        return clips_for(cfg, model, resume[0], given, resumed=True)
    if init is None:
        return cfg
    if init.clip_orientation not in (None, cfg.data.orientation):  # the same frames without display matrices
        log.info("train.init %s: its run read frames %s (data.orientation), this run reads them %s: phone videos "
                 "(display matrices) are turned otherwise than in that run", cfg.train.init, init.clip_orientation,
                 cfg.data.orientation)
    model = engine.architecture_from(cfg.model, init.cfg, ENCODER_FIELDS, cfg.train.init, given, cfg.data.tubelet)
    return clips_for(cfg, model, f"train.init {cfg.train.init}", given)


def setup(cfg: FinetuneConfig, validation=None) -> Run:
    """Build and check everything (out dir, data, model, init/resume checkpoint) before the first step;
    ``validation``: ``cfg -> `` the engine's hook for the run's config (its clips fit to its model), e.g. periodic
    validation (mme.eval.finetuned). The keys that ``load_config``'s overrides set (:func:`~mme.config.given_in`)
    are those the command line gives."""
    given = given_in(cfg)  # (recorded on this config, not on the copies made of it below)
    start = engine.begin(cfg)
    cfg = start.cfg  # (its train.init the resumed run's)
    t = cfg.train
    dist.on_main(run_folder.check_report_names, start.out_dir, list(cfg.task.tested))
    if unmixed := cfg.augment.unmixed_in(t.batch_size):
        log.warning("%s", unmixed)
    with dist.agreed():  # each rank reads its lists, classes and init (a node, its own copies)
        names = class_names(cfg, start.resume[1].get("classes"), start.resume[0], given) if start.resume else \
            class_names(cfg, keys=given)
        num_classes = _num_classes(cfg, names)
        if names is not None and len(names) != num_classes:
            raise ConfigError(f"task.classes {cfg.task.classes} names {len(names)} classes, task.num_classes is "
                              f"{num_classes}")
        if start.resume is not None:
            _check_resumed_head(cfg, start.resume, names, num_classes)
        trained, tested = check_test_lists(cfg, num_classes, TrainingList(cfg.data.list_file, cfg.data.root),
                                           "" if cfg.task.num_classes or names else
                                           f"task.num_classes unset: 1 + the largest label of data.list_file "
                                           f"{cfg.data.list_file}; set task.num_classes or task.classes")
        # (the training list too, whose names the run records; resumed, they are the checkpoint's, which it goes on
        # with)
        warn_of_misnamed_classes(cfg, names, [(cfg.data.list_file, trained), *tested.values()],
                                 start.resume[0] if start.resume and start.resume[1].get("classes") is not None
                                 else None)
        init = engine.read_init(t.init, cfg.model, encoder_only=True) if t.init and start.resume is None else None
        cfg = _with_architecture(cfg, start.resume, init, given)
        dataset = RepeatedClips(cfg.data, cfg.task.repeated_aug, t.seed)
        torch.manual_seed(t.seed)  # the head's initial weights (and the encoder's when training from scratch)
        model = VideoClassifier(cfg.model, num_classes, fc_drop=cfg.task.fc_drop,
                                head_init_scale=cfg.task.head_init_scale, scratch_init=cfg.task.scratch_init)
        if init is not None:
            load_checkpoint_encoder(model.encoder, init)
    engine.check_same_inputs(cfg, dataset, init, names, list_test_set)  # (the val and test lists: before step 1)
    if t.activation_checkpointing:
        checkpoint_blocks(model.encoder)
    job = engine.Job(_inputs, _forward, _timing_loss(model, cfg), unit="videos",
                     clips_per_item=cfg.task.repeated_aug, after_step=validation(cfg) if validation else None,
                     test_views=bool(cfg.task.tested),
                     checkpoint_extra={"classes": names} if names is not None else {})
    return engine.setup(cfg, job, model, dataset, start)


def _inputs(run: Run, batch: dict, epoch: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's clips ``(B*R, 3, T, H, W)`` on the device, augmented (RandAugment, erasing, mixup/cutmix) with
    draws from (seed, step, rank, micro-batch), and their soft targets."""
    t = run.cfg.train
    video = normalize_clip(batch["video"].flatten(0, 1).to(run.device, non_blocking=True))  # (B*R, 3, T, H, W)
    labels = batch["label"].flatten().to(run.device)
    rng = np.random.default_rng(dist.sample_seed(t.seed, run.step, dist.get_rank() * t.accum_steps + k, "augment"))
    return augment_batch(video, labels, run.model.num_classes, run.cfg.augment, rng)


def _forward(run: Run, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    video, targets = inputs
    return soft_target_cross_entropy(run.step_model(video), targets), {}


def _timing_loss(model: VideoClassifier, cfg: FinetuneConfig):
    """:attr:`~mme.train.engine.Job.timing_loss`: a loss of the classifier on ``clips`` zero clips of the run's
    shape."""
    def make(device: torch.device, clips: int):
        m = cfg.model
        video = torch.zeros(clips, 3, m.num_frames, m.img_size, m.img_size, device=device)
        return lambda: model(video).float().mean()
    return make


def describe(run: Run) -> list[str]:
    """Fine-tuning's lines of the run summary: clips per step, classes, encoder, test views."""
    c, t = run.cfg, run.cfg.train
    videos = t.batch_size * dist.get_world_size() * t.accum_steps
    enc = count_parameters(run.model.encoder)
    return [f"  {videos} videos per step x {c.task.repeated_aug} repeated clips = {videos * c.task.repeated_aug} "
            f"clips; {run.model.num_classes} classes",
            f"  encoder {enc / 1e6:.2f}M parameters, {c.model.num_tokens} tokens per clip, drop path "
            f"{c.model.drop_path}; init {t.init or 'random (from scratch)'}",
            f"  test views {c.data.test_clips} clips x {c.data.test_crops} crops"]


