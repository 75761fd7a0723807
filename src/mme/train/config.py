"""The training configurations, pre-training and fine-tuning: one dataclass per component, read by
``mme.config.load_config``. The fine-tuning dataclasses' defaults are the VideoMAE/MME K400 fine-tuning recipe.

defaults (below and in each component's dataclass) <- a recipe in ``configs/`` <- ``key=value`` overrides,
e.g. ``mme pretrain --config tiny_cpu_mme train.steps=50 model.mask_ratio=0.9``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from mme.config import MAX_REPEATS, check_integers, check_within
from mme.data.dataset import DataConfig
from mme.data.sampling import window_length
from mme.errors import ClipNotDivisible, ConfigError
from mme.models.classifier import SCRATCH_INITS
from mme.models.config import DECODER_AND_MASK_FIELDS, DECODER_FIELDS, ENCODER_FIELDS, ModelConfig
from mme.models.masking import masked_per_sample
from mme.motion.targets import TargetConfig
from mme.train.augment import AugmentConfig
from mme.train.optim import OptimConfig
from mme.train.precision import PRECISIONS
from mme.utils import MAX_THREADS, THREADS_WHY, check_seed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """The run: length, batch, precision, seed, output, checkpoints, failure limits."""

    SHADOWED_BY: ClassVar[dict[str, str]] = {"epochs": "steps"}
    PATHS: ClassVar[dict[str, str]] = {"out_dir": ".", "init": "", "resume": ""}  # (resume's 'auto' is a word, and
    # resume is compared in no config change: mme.train.engine.BOOKKEEPING)
    epochs: int = 1600
    """Schedule length in epochs (ignored when steps is set); 1600 as the released K400 recipe."""
    steps: int | None = None
    """Schedule length in optimizer steps; overrides epochs. The run ends after this many; one whose warm-up is in
    epochs (``optim.warmup_epochs``), resumed within its warm-up with other steps per epoch (another world size,
    batch or list), reads its lr and wd schedules at the epochs done, in its new steps, so their length is this plus
    the steps the epochs done take more than the checkpoint's steps did (fewer: minus), and goes on so past it
    (:func:`mme.train.engine.at_epochs_done`)."""
    stop_after: int | None = None
    """Stop (with a checkpoint) once this many optimizer steps are done, keeping the full schedule, e.g. to
    split a long run into jobs; None = run to the end."""
    batch_size: int = 64
    """Clips per rank per micro-batch (the effective batch is batch_size x world size x accum_steps)."""
    accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    precision: str = "auto"
    """'auto' (fp32 without native bf16; bf16 on a GPU with it; on a native-bf16 CPU the faster of the two, timed at
    setup: mme.train.precision), 'fp32', 'bf16' or 'fp16' (with a grad scaler)."""
    compile: bool = False
    """torch.compile the model (a gain on GPUs; on CPUs none or small: 0.95x eager for ViT-S in fp32 on AVX2, 1.08x
    for ViT-S and 0.93x for the demo's model in bf16 on AVX512-BF16; docs/performance.md)."""
    activation_checkpointing: bool = False
    """Recompute encoder blocks in the backward pass to save activation memory."""
    seed: int = 0
    """Seeds the initial weights, the data order, the augmentations and the masks."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' (each rank's own GPU), 'cuda:1', or another torch device
    that this machine has (mme.train.precision.choose_device)."""
    out_dir: str = "runs/pretrain"
    """Folder for config.yaml, run.json, metrics, checkpoints and the loss-curve PNG."""
    log_every: int = 1
    """Write a metrics record every this many optimizer steps (and at the last, a stop, a periodic validation, the
    step a run diverged at, each checkpoint, so that a run resumed from one goes on from a record and each step is
    in one record): its values are those of the steps since the record before, or since the run resumed for the
    first after a resume (``steps`` counts them): the loss, the job's metrics and ``grad_norm`` their means over the
    steps that made their update, ``skipped`` the count of those that did not, ``clips_per_s`` and ``data_wait``
    over their time (mme.train.loop.LoggedSteps)."""
    ckpt_every: int = 1000
    """Save a checkpoint every this many optimizer steps (and always at the end)."""
    keep_last: int = 3
    """Checkpoints kept in out_dir (older ones are deleted); 0 keeps all."""
    keep_epochs: tuple[int, ...] = ()
    """After each of these many epochs, a checkpoint kept beside the rotating ones,
    ``checkpoint-epoch-<N>-<step>.pt``: a long run's intermediate models (the release's "400/800 epochs" models
    are most likely epochs 400 and 700 of its 1600-epoch run, whose cosine had not decayed to its end)."""
    resume: str | None = None
    """'auto' (the newest valid checkpoint in out_dir, if any) or a checkpoint path; None = start fresh."""
    overwrite: bool = False
    """Let a fresh run take an out_dir that holds another run's checkpoints, deleting them and its logs first
    (without it such a run is refused: mme.train.run_folder)."""
    init: str | None = None
    """Initial model weights from any checkpoint mme reads (the optimizer and step start fresh); the model's
    architecture is the one it records (``mme.models.config.ENCODER_FIELDS``, of a masked autoencoder's decoder and
    heads too), and its clips take its tubelet. A resumed run keeps the one it began from (its checkpoint's, as
    its architecture; a relative path from that run's working folder, recorded absolute)."""
    max_nonfinite: int = 5
    """Stop with a diagnostic after this many non-finite steps in a row (a non-finite loss or gradient: each one
    skips its step; fp16's routine gradient overflows, which its scaler answers, not counted); the count goes on
    over resumes (checkpoints carry it). A run that ends with fewer, but none of its steps updated, stops with one
    too (:func:`mme.train.loop.check_updated`)."""
    threads: int | None = None
    """Intra-op threads of the training process; None: on a CPU the cores the loader workers leave free (at least
    1), on a GPU torch's default (mme.train.precision.choose_threads)."""

    def __post_init__(self):
        self.seed = check_seed(self.seed, "train.seed")  # before check_integers: a seed refused in its own words
        check_integers(self, "train")
        for name in ("epochs", "batch_size", "accum_steps", "log_every", "ckpt_every", "max_nonfinite"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("steps", "stop_after", "threads"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive or null, got {getattr(self, name)}")
        check_within("train.threads", self.threads, most=MAX_THREADS, why=THREADS_WHY)
        if self.keep_last < 0:
            raise ConfigError(f"train.keep_last must be >= 0, got {self.keep_last}")
        if any(e <= 0 for e in self.keep_epochs):
            raise ConfigError(f"train.keep_epochs must be positive epoch counts, got {list(self.keep_epochs)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not self.out_dir:
            raise ConfigError("train.out_dir must not be empty")


FROM_INIT = ("preset", *ENCODER_FIELDS, *DECODER_FIELDS)
"""The model fields a run begun from ``train.init`` may have taken from that file
(:func:`mme.train.engine.architecture_from`, the preset set aside with them): its recipe's values of these need not
be the run's."""


@dataclass
class PretrainConfig:
    """Everything ``mme pretrain`` needs."""

    OTHER_KINDS: ClassVar[dict[str, str]] = {"task": "a 'task' section: a fine-tuning recipe, for mme finetune"}
    """Sections of the other kind of recipe, named when a recipe of that kind is given (``from_dict``)."""
    CHECKS_SECTION_CLIPS: ClassVar[bool] = True
    """Its model and data sections are built without their clip's checks (:func:`mme.config.from_dict`): it makes
    them in its ``__post_init__`` (so on every copy of it too), all but those of the model's fields a checkpoint
    gives (:func:`taken_from_checkpoint`)."""
    RESUMED_MODEL: ClassVar[tuple[str, ...]] = FROM_INIT
    """The model fields a resumed run takes from its checkpoint (``mme.train.pretrain.setup``'s
    ``_with_architecture``): its architecture and preset, the clip's frames and size the config's."""

    data: DataConfig = field(default_factory=DataConfig)
    """Videos, sampling and augmentation (mme.data.dataset)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Encoder, masking and decoder (mme.models.config)."""
    target: TargetConfig = field(default_factory=TargetConfig)
    """What the decoder reconstructs: pixel, hog, mme, mme-released (mme.motion.targets)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and its schedules (mme.train.optim)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Length, batch, precision, checkpoints (above)."""

    @staticmethod
    def keys_without_effect() -> dict[str, str]:
        """:func:`mme.config.keys_without_effect`: the test views (of mme finetune), which pre-training never takes."""
        return dict.fromkeys(("data.test_clips", "data.test_crops"), "pre-training tests nothing (the test views "
                                                                     "are mme finetune's)")

    def __post_init__(self):
        taken = taken_from_checkpoint(self)
        check_clips_fit_model(self.data, self.model, taken)
        check_window(self.data, self.target.track_length if self.target.tracked else 0)
        if not self.train.resume:  # else once its checkpoint is found (mme.train.pretrain.setup)
            self.target.check_settings_used()
        if self.target.shuffled and self.train.batch_size < 2:
            raise ConfigError(f"train.batch_size={self.train.batch_size} with target.shuffled=true: the control "
                              "trains each clip on another clip's targets of its batch (per rank), which needs "
                              ">= 2 clips; one would keep its own")
        if not taken:  # (else with the checkpoint's patch and tubelet: mme.train.pretrain.setup's _with_architecture)
            check_masks_a_token(self.model)
        if self.target.tracked and not self.target.interpolate:
            t = self.target
            why = ("it is computed online only (unset target.cache_dir)" if t.cache_dir else
                   f"it needs strided clips, not data.sampling={self.data.sampling}" if self.data.sampling != "stride"
                   else f"data.stride={self.data.stride} must divide target.track_length={t.track_length}"
                   if t.track_length % self.data.stride else "")
            if why:
                raise ConfigError(f"target.interpolate=false tracks between sampled frames: {why}")


@dataclass
class FinetuneData(DataConfig):
    """Fine-tuning clips: random-resized crop (area 0.25-1) with flip; K400's 7 x 3 test views."""

    crop: str = "random_resized"
    flip: bool = True
    test_clips: int = 7
    test_crops: int = 3


@dataclass
class FinetuneModel(ModelConfig):
    """The encoder of the classifier: ViT-B with drop path 0.1 (the architecture follows ``train.init``). Its decoder
    and mask keys (:data:`~mme.models.config.DECODER_AND_MASK_FIELDS`), which fine-tuning does not build, keep
    ModelConfig's defaults whatever is given (:meth:`keys_without_effect` says so): a value of theirs the checks of
    a decoder would refuse (``model.decoder_dim=64`` beside its 6 heads) is not refused, nor recorded in its runs."""

    drop_path: float = 0.1

    def __post_init__(self, checks_clip: bool = True, given_as: Mapping[str, str] | None = None):
        for f in dataclasses.fields(ModelConfig):
            if f.name in DECODER_AND_MASK_FIELDS:
                setattr(self, f.name, f.default)
        super().__post_init__(checks_clip, given_as)

    @staticmethod
    def keys_without_effect() -> dict[str, str]:
        """:func:`mme.config.keys_without_effect`: the decoder's and the mask's keys."""
        return dict.fromkeys(DECODER_AND_MASK_FIELDS, "fine-tuning builds no decoder or mask")


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

    PATHS: ClassVar[dict[str, str]] = {"classes": "", "val_list": "", "test_list": ""}
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
    scratch_init: str = "trunc_normal"
    """The encoder's initial weights where train.init is unset (``mme.models.classifier.SCRATCH_INITS``):
    'trunc_normal', VideoMAE's (trunc-normal(0.02) Linear weights), or 'xavier', the pre-training encoder's, which
    scales with the width (a narrow encoder from scratch learns in few steps from it: finetune_tiny_cpu)."""
    fc_drop: float = 0.0
    """Dropout before the head."""
    eval_every: int = 0
    """Single-view validation top-1 every this many steps (0 = only the final multi-view test)."""
    eval_batch_size: int = 2
    """Videos per forward pass at test time (each with clips x crops views)."""
    eval_only: bool = False
    """Only test the fine-tuned classifier in train.init on val_list / test_list (no training)."""

    def keys_without_effect(self) -> dict[str, str]:
        """:func:`mme.config.keys_without_effect`: periodic validation without a list to validate on."""
        return {} if self.val_list else {"eval_every": "it validates on task.val_list, which is unset"}

    @property
    def tested(self) -> dict[str, str]:
        """The lists tested at the end of fine-tuning, by split (``val``, ``test``): those set."""
        return {split: listed for split, listed in (("val", self.val_list), ("test", self.test_list)) if listed}

    def __post_init__(self):
        check_integers(self, "task")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"task.num_classes must be >= 2, got {self.num_classes}")
        if self.scratch_init not in SCRATCH_INITS:
            raise ConfigError(f"task.scratch_init must be one of {SCRATCH_INITS}, got {self.scratch_init!r}")
        if self.repeated_aug < 1 or self.eval_batch_size < 1 or self.eval_every < 0:
            raise ConfigError("task.repeated_aug and task.eval_batch_size must be >= 1, task.eval_every >= 0")
        check_within("task.repeated_aug", self.repeated_aug, most=MAX_REPEATS,
                     why="clips of each video per batch: VideoMAE's 2")
        check_within("task.head_init_scale", self.head_init_scale, 0.0, 100.0, "the head's initial weights are "
                     "trunc-normal(0.02) times it: VideoMAE's 0.001; 1e30 makes inf logits")
        if not 0.0 <= self.fc_drop < 1.0:
            raise ConfigError(f"task.fc_drop must be in [0, 1), got {self.fc_drop}")


@dataclass
class FinetuneConfig:
    """Everything ``mme finetune`` needs."""

    OTHER_KINDS: ClassVar[dict[str, str]] = {"target": "a 'target' section: a pre-training recipe, for mme pretrain"}
    """As :attr:`PretrainConfig.OTHER_KINDS`."""
    CHECKS_SECTION_CLIPS: ClassVar[bool] = True
    """As :attr:`PretrainConfig.CHECKS_SECTION_CLIPS`."""
    RESUMED_MODEL: ClassVar[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(FinetuneModel))
    """As :attr:`PretrainConfig.RESUMED_MODEL`: the whole model, its clip's frames and size too (a resumed classifier
    is tested on the clips it was trained on)."""

    data: FinetuneData = field(default_factory=FinetuneData)
    model: FinetuneModel = field(default_factory=FinetuneModel)
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: FinetuneTrain = field(default_factory=FinetuneTrain)

    def __post_init__(self):
        check_clips_fit_model(self.data, self.model, taken_from_checkpoint(self))
        check_window(self.data)


CLIP_FIELDS = (("num_frames", "num_frames"), ("img_size", "img_size"), ("tubelet", "tubelet_size"))
"""The clip's fields of the data section, with the model's of the same meaning: its frames and size (a model's
weights run on clips of others: ``mme embed``) and its tubelet, which, unlike them, is the model's architecture (its
weights fix it)."""


def ignored_value(key: str, value, kept, whose: str = "the file's") -> str:
    """How a warning of ignored values names one: ``key=value (the file's: kept)`` (:func:`say_ignored`)."""
    return f"{key}={value!r} ({whose}: {kept!r})"


def tubelet_ignored(tubelet: int, kept: int, given: Collection[str], whose: str) -> list[str]:
    """The config's ``data.tubelet`` where the command line gives it (``given``, dotted keys) other than the tubelet
    of a model whose weights fix it (``kept``), as :func:`ignored_value`: the model's architecture, one setting with
    ``model.tubelet_size``, so warned of in one line with it (:func:`clips_for` leaves it to that line)."""
    return [ignored_value("data.tubelet", tubelet, kept, whose)] if "data.tubelet" in given and tubelet != kept else []


def say_ignored(source: str, why: str, ignored: list[str], advice: str = "") -> None:
    """Warn, where there are any, of the values given on the command line that ``source``'s own replace
    (``ignored``, each :func:`ignored_value`), ``why`` (``"the run's architecture is the file's"``), and what to do
    instead (``advice``): the one way a run, its resume and ``task.eval_only`` say such values."""
    if ignored:
        log.warning("%s: %s, so these are ignored: %s%s", source, why, ", ".join(ignored),
                    f"; {advice}" if advice else "")


def clips_for(cfg, model: ModelConfig, source: str, given: frozenset[str] = frozenset(), *,
              why: str = "the clips are those its model takes", unsaid: tuple[str, ...] = (),
              advice: str = "", resumed: bool = False, **data_fields):
    """``cfg`` (a pre-training or fine-tuning config) with ``model`` as its model and clips that fit it: the data
    section's frames, size and tubelet the model's (a checkpoint's weights fix the tubelet). Where these differ from
    the config's, those the command line gives (``given``, dotted keys; with the model's fields ``unsaid``, that the
    caller's ``model`` replaced without a word) are warned of as ignored (:func:`say_ignored`: ``why``, the file's
    values kept, ``advice``; ``resumed``: ``source`` is a resumed run's folder X, named ``resuming X`` there, as
    the warning of its model's ignored values names it, and ``the resumed run (X)`` in the log, its values the run's;
    ``data.tubelet`` left to the caller's warning of the model's architecture, :func:`tubelet_ignored`), the others
    said in the log as the recipe's, not those of ``source``'s model.
    ``data_fields``: other data values set in the same replace (the data section is checked once, with the model's
    clip: :func:`check_model_takes_clip`, naming ``source``'s weights, whose patch, tubelet and channels the model
    may have taken unchecked)."""
    data = dataclasses.replace(cfg.data, num_frames=model.num_frames, img_size=model.img_size,
                               tubelet=model.tubelet_size, checks_clip=False, **data_fields)
    check_model_takes_clip(model, f"the resumed run's weights ({source})" if resumed else f"{source}'s weights")
    differ = [(section, key, getattr(ours, key), getattr(theirs, key)) for section, ours, theirs, keys in (
        ("data", cfg.data, data, [d for d, _ in CLIP_FIELDS]), ("model", cfg.model, model, unsaid))
        for key in keys if getattr(ours, key) != getattr(theirs, key)]
    said_as, source = (f"resuming {source}", f"the resumed run ({source})") if resumed else (source, source)
    whose = "the run's" if resumed else "the file's"
    taken = (f"{data.num_frames} frames of {data.img_size} px, tubelet {data.tubelet}, as the model of {source} "
             "takes them")
    ignored = frozenset(given) - {"data.tubelet"}  # (given: any collection of dotted keys)
    say_ignored(said_as, why, [ignored_value(f"{section}.{key}", value, kept, whose)
                               for section, key, value, kept in differ if f"{section}.{key}" in ignored], advice)
    recipe = {key: value for section, key, value, _ in differ if section == "data" and f"data.{key}" not in given}
    if recipe:
        said = {"num_frames": "{} frames", "img_size": "{} px", "tubelet": "tubelet {}"}
        log.info("clips of %s, not the recipe's %s", taken,
                 ", ".join(said[key].format(value) for key, value in recipe.items()))
    return dataclasses.replace(cfg, data=data, model=model)


def taken_from_checkpoint(cfg) -> tuple[str, ...]:
    """The model fields whose values in ``cfg`` (a pre-training or fine-tuning config) a run leaves for a
    checkpoint's: a resumed run's (``train.resume``, its kind's ``RESUMED_MODEL``) or, as a resume's, those of the
    classifier ``task.eval_only`` tests (its ``train.init``, whose clip it is tested on), else those of its
    ``train.init`` (:data:`FROM_INIT`; none without one). The config's clip is checked against its own patch and
    tubelet as it is read (their divisibility, a pre-training mask's token grid) only where this is empty; else with
    the checkpoint's where its architecture is applied (:func:`clips_for`; :func:`check_masks_a_token` in
    :func:`mme.train.pretrain.setup`'s ``_with_architecture``), and as a fresh run's config where ``--resume auto``
    finds no checkpoint (:func:`mme.train.engine.begin`: the clip's fit and the mask's token grid)."""
    if cfg.train.resume or isinstance(cfg, FinetuneConfig) and cfg.task.eval_only:
        return cfg.RESUMED_MODEL
    return FROM_INIT if cfg.train.init else ()


def check_clips_fit_model(data, model, taken: Collection[str] = ()) -> None:
    """The data section's clips must fit the model (shared by pre-training and fine-tuning): their frames, size and
    tubelet are the model's, and the model takes them (:func:`check_model_takes_clip`). Nothing of the model's
    fields ``taken`` (:func:`taken_from_checkpoint`): the run's are a checkpoint's, checked where its architecture is
    applied (:func:`clips_for`), the config's warned about as ignored where given."""
    for d, m in CLIP_FIELDS:
        if m not in taken and getattr(data, d) != getattr(model, m):
            raise ConfigError(f"data.{d}={getattr(data, d)} differs from model.{m}={getattr(model, m)}: "
                              "the clips must fit the model; set both")
    if not taken:
        check_model_takes_clip(model)


def check_model_takes_clip(model, weights: str = "") -> None:
    """What the model's weights fix must take the clip: its patch and tubelet divide it (the data section's clip is
    the model's, :data:`CLIP_FIELDS`), and it takes RGB. ``weights``: what the model's patch, tubelet and channels
    are of, named in their refusal (``train.init X's weights``)."""
    of = f" of {weights}" if weights else ""
    try:
        model.check_clip()
    except ClipNotDivisible as e:
        if not weights:
            raise
        raise ClipNotDivisible(e.field, e.value, f"{e.reason}{of}", e.key) from e
    if model.in_chans != 3:
        raise ConfigError(f"model.in_chans={model.in_chans}{of}: the clips are RGB, 3 channels (a model of other "
                          f"inputs loads and exports, but does not train on videos)")


MAX_WINDOW = 2**24
"""The most raw frames a clip's window may span (:func:`check_window`): mme's cap against runaway values
(``data.stride=1e12``), not a length of videos: 16777216 raw frames, about 6 days at 30 fps, past any video a list
holds (a window the list's videos do not hold is warned about as training meets them)."""


def check_window(data, track_length: int = 0) -> None:
    """A strided clip's window, with its tracks (``track_length`` raw steps), must not span more than
    :data:`MAX_WINDOW` raw frames (``data.stride=1e12``); one longer than the list's videos but within it is warned
    about as training meets them (:func:`mme.train.loop.warn_short`)."""
    if data.sampling != "stride":
        return
    window = window_length(data.num_frames, data.stride, data.tubelet, track_length)
    if window > MAX_WINDOW:
        tracks = f" and target.track_length={track_length}" if track_length else ""
        raise ConfigError(f"data.num_frames={data.num_frames} at data.stride={data.stride}{tracks}: a clip spans "
                          f"{window} raw frames, more than mme's cap of {MAX_WINDOW} (about 6 days at 30 fps, a "
                          "guard against runaway values); lower data.stride")


def check_masks_a_token(model: ModelConfig) -> None:
    """The mask must hide a token of the grid (shared by pre-training and ``mme bench train``)."""
    if masked_per_sample(model.mask_type, model.grid, model.mask_ratio) == 0:
        raise ConfigError(f"model.mask_ratio={model.mask_ratio} masks no token of the {model.grid} grid "
                          "(the count rounds down): the model would reconstruct what it sees")
