"""Datasets: list file -> decode -> sample -> one geometry -> tensors (architecture.md, the sample contract).

:class:`PretrainDataset` items: ``{"video": (3, T, H, W) uint8, "motion": {...}, "mask", "index"}``, the clip
normalised by the step on its device (``normalize_clip``), ``motion`` from ``target_fn(Sample)`` and ``mask`` from
``mask_fn(epoch, index)`` run in the data worker (the tracks the training step makes its motion targets from; the
clip's token mask, off the step's path).
:class:`ClassificationDataset` items:
``{"video", "label", "index"}``, where at test time ``video`` is ``(V, 3, T, H, W)`` for V = clips × crops.

Bad videos (missing, empty, truncated, not a video) and bad list lines are skipped and counted, never fatal one
by one: a failed item is replaced by another entry drawn deterministically from (seed, epoch, index, attempt),
and the dataset raises DataError only when more than ``max_failure_fraction`` of the list has failed (under
torchrun, when the ranks join what each found, :func:`mme.train.loop.share_failures`: a rank that stopped alone
left the others to die at their next collective). The failure flags live in shared memory, so counts from all
DataLoader workers (fork or spawn) are visible in the main process through :attr:`failures`. Both work with any
sampler (mme.train.distributed.epoch_batches, torch's DistributedSampler).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import functools
import gc
import hashlib
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import InitVar, dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from mme.config import check_integers, check_within
from mme.data.lists import ListEntry, read_list, resolve
from mme.data.packed import PackedEntries, PackedStrings
from mme.data.pyav_reader import (
    decodes_on_cuda,
    filled_by_check,
    holds_indices,
    indexes_none_of,
    note_other_index_versions,
    read_only_index_dirs,
    reads_only,
    take_index_dir,
    take_read_only,
)
from mme.data.sampling import sample_pretrain, sample_segments, sample_test_clips, window_length
from mme.data.transforms import (
    MULTISCALE_SCALES,
    Geometry,
    apply_geometry,
    geometry_of_each,
    multiscale_crop,
    random_resized_crop,
    to_clip,
    view_crops,
)
from mme.data.video import (
    BACKENDS,
    anamorphic_said,
    check_index_dir,
    missing_hint,
    open_video,
    require_backend,
    with_true_count,
)
from mme.data.video_reader import ORIENTATIONS, VideoReader, video_error
from mme.errors import (
    ConfigError,
    DataError,
    MMEError,
    NoReadableVideo,
    OutOfMemory,
    ProcessLost,
    TooManyFailures,
    UnguardedScript,
    VideoError,
    memory_limit,
    out_of_memory,
    said_under,
)
from mme.utils import (
    MAX_THREADS,
    SCRIPT_RERUN_EXIT,
    STATES_SAID,
    THREADS_WHY,
    Held,
    Watch,
    as_given,
    command_option,
    command_path,
    counted,
    end_with_parent,
    how_it_ended,
    keep_freed_memory,
    launch_ranks,
    log_setup,
    memory_advice,
    open_files_for,
    opencv_settings,
    plural,
    process_state,
    said_as,
    said_holders,
    take_log_setup,
    usable_cores,
    why_workers_cannot_start,
    workers_advice,
    workers_and_batch,
    workers_option,
    writers_of,
)

log = logging.getLogger(__name__)
_workers_log = logging.getLogger(f"{__name__}.workers")
""":func:`make_loader`'s warning of more workers than cores, alike on a node's ranks (they share its cores:
:func:`mme.utils.usable_cores`): one of ``mme.cli.ALIKE_ON_EVERY_RANK``, said by rank 0 alone under torchrun."""

SAMPLINGS = ("stride", "segments")
CROPS = ("multiscale", "random_resized", "center")
# Reasons a list entry can fail; the shared failure table stores an index into this tuple (0 = not failed).
REASONS = ("", "missing", "empty", "unreadable", "too short", "decode error", "index out of range",
           "frame count changed", "bad list line", "track cache", "other")
RRC_RATIO_RANGE = (0.01, 100.0)
"""The aspect ratios (w/h) ``data.rrc_ratio`` may give: VideoMAE's 3/4 to 4/3, widely around them."""
MAX_ATTEMPTS = 10
CACHE_PROBES = 64
"""How many track cache files, spread evenly over the list's videos that have one, the advice for a cache that lacks
files reads the settings of, and the start of a run judges for files each read fails (unreadable, made by an
earlier mme, or made from another version of its video) and for settings it cannot read (every one where fewer:
:attr:`PretrainDataset.cache_probes`)."""
READ_SETTINGS = ("short_side", "seed_stride", "flow", "compensate", "max_disp", "backend")
"""The extraction settings (:func:`mme.motion.cache.resume_settings`'s) whose difference between two track cache files
a run reads changes their tracks there: not ``length`` (each file it reads holds the run's steps, and more give the
same first ones: :func:`mme.motion.cache.check_settings`) nor ``orientation`` (each turned its video's frames as the
run turns them: :func:`mme.motion.cache.check_orientation`; both alike where it has no display matrix)."""


def read_settings(meta: dict) -> dict:
    """The :data:`READ_SETTINGS` the track cache file of ``meta`` was made with, its own whatever a run's
    ``data.backend``: the decoder it was made with, the two PyAV decoders (CPU and GPU, one frames:
    :func:`mme.motion.cache.same_frames`) and files recording none named ``pyav``."""
    from mme.motion.cache import resume_settings

    made = resume_settings(meta, "pyav")
    return {key: made[key] for key in READ_SETTINGS}


@dataclass
class DataConfig:
    """Where the videos are and how clips are sampled and cropped (defaults: MME's K400 pre-training)."""

    PATHS: ClassVar[dict[str, str]] = {"list_file": "", "root": ".", "index_dir": "."}
    """The keys that name a file or folder, each with what an empty value names: '.' the working folder, '' none
    (:func:`mme.config.path_keys`)."""
    list_file: str = ""
    """List file in the VideoMAE format (``path label`` or ``path`` per line)."""
    root: str = ""
    """Folder the list's relative paths start from ('' = as written)."""
    num_frames: int = 16
    """T: frames per clip fed to the encoder."""
    stride: int = 4
    """Raw frames between sampled frames (MME: 4 on K400, 2 on SSv2)."""
    img_size: int = 224
    """Output side in pixels (square)."""
    tubelet: int = 2
    """Frames per token; tracks start at every tubelet's first frame."""
    sampling: str = "stride"
    """'stride' (T frames at ``stride`` from a random window) or 'segments' (TSN: one frame per segment, SSv2)."""
    crop: str = "multiscale"
    """Training crop: 'multiscale' (pre-training), 'random_resized' (fine-tuning) or 'center'."""
    scales: tuple[float, ...] = MULTISCALE_SCALES
    """Multi-scale crop: crop sides as fractions of the short side."""
    max_distort: int = 1
    """Multi-scale crop: most steps between the width and height scale indices (aspect jitter)."""
    rrc_scale: tuple[float, ...] = (0.25, 1.0)
    """Random-resized crop: range of the box area as a fraction of the frame."""
    rrc_ratio: tuple[float, ...] = (3 / 4, 4 / 3)
    """Random-resized crop: range of the box aspect ratio w/h."""
    flip: bool = False
    """Random horizontal flip in training (the fine-tuning recipes of K400/UCF/HMDB; off for SSv2, whose labels
    name directions, and in the pre-training recipes). Tracks of a flipped clip are made on its flipped frames
    (a track cache's, made unflipped, are mirrored: x displacements negated)."""
    test_clips: int = 7
    """Temporal clips per video at test time (MME: 7 on K400, 2 on SSv2, 10 on UCF101/HMDB51)."""
    test_crops: int = 3
    """Spatial crops per clip at test time (3 along the long side, or 1 = centre)."""
    backend: str = "pyav"
    """Video decoder: 'pyav', 'pyav-cuda' (the same reader, decoding with FFmpeg's NVDEC on the job's CUDA device,
    else this rank's: :func:`mme.data.video.decode_gpu`; the loader workers then start by spawn; docs/data.md),
    'opencv' or 'decord'."""
    orientation: str = "coded"
    """'coded': frames as coded (frame i; phone videos then lie on their side, as in decord and torchvision), or
    'display': turned and mirrored as the file's display matrix tells players to (docs/data.md)."""
    decode_threads: int = 1
    """Decoder threads per video (0 = the decoder's choice). 1 suits DataLoader workers: on 2 cores one thread
    decoded a 40-frame clip in 103 ms vs 188 ms with FFmpeg's choice."""
    index_dir: str | None = None
    """Folder where the PyAV reader keeps each video's frame index and how much of it decodes have proven, for every
    process that reads the list (loader workers, ranks, later runs): a video's first read in a worker then needs
    no demux, and its decoder may drop the frames the read does not return (docs/data.md). For lists larger than
    a worker's in-memory index cache (4,096 videos, and without an index folder 512 MB of indices: a few thousand
    ten-minute videos). None: each process indexes for itself. Refused with the backends that keep no index
    (opencv, decord)."""
    max_failure_fraction: float = 0.01
    """Stop with an error once more than this fraction of the list has failed (bad or unreadable videos)."""
    num_workers: int = 2
    """DataLoader worker processes."""
    checks_clip: InitVar[bool] = True
    """Whether the config, as built, checks that its tubelet divides its frames (:meth:`check_clip`); not a key:
    as :attr:`mme.models.config.ModelConfig.checks_clip`."""

    def __post_init__(self, checks_clip: bool = True):
        check_integers(self, "data")
        for name in ("num_frames", "stride", "img_size", "tubelet", "test_clips", "test_crops"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if checks_clip:
            self.check_clip()
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.crop not in CROPS:
            raise ConfigError(f"data.crop must be one of {CROPS}, got {self.crop!r}")
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise ConfigError(f"data.scales must be fractions in (0, 1], got {self.scales}")
        if self.max_distort < 0:
            raise ConfigError(f"data.max_distort must be >= 0, got {self.max_distort}")
        if len(self.rrc_scale) != 2 or not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ConfigError(f"data.rrc_scale must be (min, max) with 0 < min <= max <= 1, got {self.rrc_scale}")
        if len(self.rrc_ratio) != 2 or not 0 < self.rrc_ratio[0] <= self.rrc_ratio[1]:
            raise ConfigError(f"data.rrc_ratio must be (min, max) with 0 < min <= max, got {self.rrc_ratio}")
        for key, fraction in [*((f"data.scales[{i}]", s) for i, s in enumerate(self.scales)),
                              ("data.rrc_scale[0]", self.rrc_scale[0])]:
            check_within(key, fraction, least=0.01, why="a crop of 1% of the frame is its 10th part across, which "
                         "the resize blows up to the clip's size")
        for i, ratio in enumerate(self.rrc_ratio):
            check_within(f"data.rrc_ratio[{i}]", ratio, *RRC_RATIO_RANGE, "a box's w/h: a box 100 times wider than "
                         "high is a line of pixels")
        if self.backend not in BACKENDS:
            raise ConfigError(f"data.backend must be one of {BACKENDS}, got {self.backend!r}")
        check_index_dir(self.backend, self.index_dir)
        if self.orientation not in ORIENTATIONS:
            raise ConfigError(f"data.orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.decode_threads < 0 or self.num_workers < 0:
            raise ConfigError("data.decode_threads and data.num_workers must be >= 0")
        check_within("data.decode_threads", self.decode_threads, most=MAX_THREADS, why=THREADS_WHY)
        if not 0.0 <= self.max_failure_fraction <= 1.0:
            raise ConfigError(f"data.max_failure_fraction must be in [0, 1], got {self.max_failure_fraction}")

    def check_clip(self) -> None:
        """The clip's frames must be a multiple of the tubelet."""
        if self.num_frames % self.tubelet:
            raise ConfigError(f"data.num_frames {self.num_frames} is not a multiple of data.tubelet {self.tubelet}")

    def keys_without_effect(self) -> dict[str, str]:
        """The keys the other values leave unused (:func:`mme.config.keys_without_effect`): those of the crops not
        chosen, the stride of TSN segments."""
        unused = {}
        for crop, keys in (("random_resized", ("rrc_scale", "rrc_ratio")), ("multiscale", ("scales", "max_distort"))):
            if self.crop != crop:
                unused |= dict.fromkeys(keys, f"it is the {crop} crop's, and data.crop={self.crop}")
        if self.sampling == "segments":
            unused["stride"] = "data.sampling=segments takes one frame per segment, at no stride"
        return unused


@dataclass
class Sample:
    """One decoded clip after the geometry: what ``target_fn`` sees."""

    frames: np.ndarray
    """uint8 (F, h, w, 3): every needed raw frame (clip and track frames), after the geometry."""
    frame_ids: np.ndarray
    """(F,) sorted raw index of each frame."""
    clip: np.ndarray
    """(T,) raw indices of the encoder's frames."""
    starts: np.ndarray
    """(T / tubelet,) raw index where each tubelet's tracks start."""
    geometry: Geometry
    """The crop/resize/flip applied to the raw frames: ``geometry.map_points`` maps source points with pixel edges at
    integers (:mod:`mme.data.transforms`), ``geometry.affine()`` the track positions, whose pixel centres are."""
    path: str
    """The video file."""
    track_length: int = 0
    """L raw steps per track (tracks visit ``min(s + j, frame_ids[-1])`` for 0 <= j <= L; a sample for cached tracks
    holds only the frames its targets read)."""
    source: tuple[int, int, int, tuple[bool, bool, bool]] | None = None
    """The video as read: (width, height, frames, the turn its frames were read with: ``VideoReader.turn``), which
    a track cache must have been made from (None: unchecked)."""
    cache_file: str | None = None
    """The video's track cache file as the run's start found it (:attr:`PretrainDataset.cache_lookup`), read without
    looking it up again; None: looked up at the read."""
    flow_frames: np.ndarray | None = None
    """uint8 (F, h', w', 3): the same raw frames as ``frames`` with a margin of the source frame around the crop
    (``target.flow_margin``), which a flow of the data workers reads; None: no margin (none asked, or the crop
    reaches the frame's edge on every side). The crop's place in them holds ``frames`` bitwise (pasted there); the
    margin is the widened box resampled as a whole, whose edges fall between source pixels where the crop is
    scaled: warped bilinearly, or area-averaged where the crop shrinks more than 2x on both axes
    (:attr:`~mme.data.transforms.Geometry.area`)."""
    flow_offset: tuple[int, int] = (0, 0)
    """(x, y) of the crop's first output pixel in ``flow_frames``."""

    def frames_at(self, raw_indices) -> np.ndarray:
        """Frames ``(*raw_indices.shape, h, w, 3)`` at raw indices that are among ``frame_ids``."""
        raw = np.asarray(raw_indices)
        pos = np.searchsorted(self.frame_ids, raw)
        if np.any(pos >= len(self.frame_ids)) or np.any(self.frame_ids[np.minimum(pos, len(self.frame_ids) - 1)]
                                                         != raw):
            raise KeyError(f"raw frames {raw.tolist()} are not all decoded ({self.frame_ids.tolist()})")
        return self.frames[pos]


def read_with_margin(reader, indices, geom: Geometry, flow_margin: int
                     ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """The frames at ``indices`` of an open video ``reader`` cropped by ``geom`` ``(F, h, w, 3)``, and a
    :class:`Sample`'s ``flow_frames`` and ``flow_offset`` for a ``flow_margin`` (``target.flow_margin``: the crop
    widened where the video has the px, :meth:`~mme.data.transforms.Geometry.widened`), both from one decoding pass;
    None and (0, 0) where the crop gets no margin."""
    wide, offset = geom.widened(flow_margin, reader.size)
    if wide == geom:
        return reader.read(indices, each=geometry_of_each(geom)), None, offset
    (x, y), (h, w) = offset, (geom.out_h, geom.out_w)

    def each(frame: np.ndarray) -> np.ndarray:  # the crop as the clip has it, whatever the margin's resampling
        widened = apply_geometry(frame[None], wide)[0]
        widened[y:y + h, x:x + w] = apply_geometry(frame[None], geom)[0]
        return widened

    flow_frames = reader.read(indices, each=each)
    return np.ascontiguousarray(flow_frames[:, y:y + h, x:x + w]), flow_frames, offset


TORCH_WORKERS_WARNING = r"This DataLoader will create \d+ worker processes in total"
"""torch's warning, at a loader's creation and again at its start, where its workers outnumber the CPUs this
process may run on: :func:`make_loader` says it once, in mme's words."""


@contextlib.contextmanager
def _torch_workers_warning_left_out() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCH_WORKERS_WARNING, UserWarning)
        yield


_WORKERS_SAID: set[tuple[int, int]] = set()
"""The ``(workers, cores)`` :func:`make_loader` has warned of in this process: once each, the first loader's setting
named (a demo's probe splits, then its runs, under ``--workers``; a fine-tuning's run and test splits)."""


def make_loader(dataset: Dataset, **kwargs) -> DataLoader:
    """``DataLoader(dataset, **kwargs)``, with a warning, once per process (:data:`_WORKERS_SAID`), where its workers
    outnumber the usable cores (:func:`mme.utils.usable_cores`), naming their setting (data.num_workers as the command
    running sets it, :func:`mme.utils.workers_option`) and what suits the machine; torch's own, said twice (here and
    at :func:`start_workers`), is left out."""
    option = workers_option()
    workers, cores = kwargs.get("num_workers", 0), usable_cores()
    if (advice := workers_advice(workers, cores)) and (workers, cores) not in _WORKERS_SAID:
        _WORKERS_SAID.add((workers, cores))
        _workers_log.warning("%s=%d: %d loader workers on %s wait for the CPU in turn, beside this process: %s",
                             option, workers, workers, counted(cores, "usable core"), advice)
    with _torch_workers_warning_left_out():
        return DataLoader(dataset, **kwargs)


def start_workers(loader: DataLoader) -> Iterator:
    """The batches of ``iter(loader)``, its worker processes started with OpenCV on one thread in each, as torch
    sets itself there, and with malloc keeping freed memory (:func:`mme.utils.keep_freed_memory`: a worker frees and
    allocates the same frame-sized arrays for every item). A forked worker logs as this process does, whatever its
    log; one started fresh (spawn, forkserver) has none, and sets up the CLI's where an ``mme`` command runs it
    (:func:`mme.utils.log_setup`), but not a Python caller's own logging, which is not handed on: its lines are then
    Python's bare warnings. The loader's own ``worker_init_fn``, if any, runs after, once, however often the loader
    is started so.

    OpenCV's default, a thread per core in every worker, takes cores from the training step without making the
    workers faster: its pthreads pool spins (a DIS flow of a 96² pair took 2.4 ms of CPU on 2 threads against 1.2
    ms on one, for the same wall time, on a 2-core AMD EPYC), and the flow is bitwise the same on any number of
    threads. A forked worker cannot set it itself: OpenCV reconfiguring a pool it inherited through fork from a
    process that had used it hangs (in ``pthread_cond_destroy``). So this process drops to one thread while the
    workers fork, which they inherit, and goes back after; workers started fresh (spawn, forkserver) set it
    themselves (:func:`_worker_start`). Where this process decodes on a GPU (``data.backend=pyav-cuda``), the
    workers start by spawn: a CUDA context does not survive a fork.

    A worker that dies (the out-of-memory killer, a crash) is a ProcessLost naming it, raised by the batch that
    waits for it (:func:`_batches`), not where this process happened to be (:func:`_defer_worker_deaths`); one that
    ended before its init ran could not start (:func:`_dead_worker`). A low limit of open files is raised first, or
    refused in one line (:func:`mme.utils.open_files_for`)."""
    # The tensors in shared memory are for workers that start: without any, or with persistent ones running (which
    # keep their init), a full /dev/shm stops nothing.
    if loader.num_workers and not _workers_run(loader):
        open_files_for(loader.num_workers, workers_option())
        try:
            said, started = anamorphic_said(), torch.zeros(loader.num_workers, dtype=torch.int64).share_memory_()
        except RuntimeError as e:
            if not _no_room_in_shm(e):
                raise
            raise _unstarted_in_shm() from e
        earlier = _own_start(loader.worker_init_fn)  # (this loader's, from an earlier call: its own init inside)
        then = earlier.keywords["then"] if earlier is not None else loader.worker_init_fn
        loader.worker_init_fn = functools.partial(
            _worker_start, then=then, said=said, read_only=read_only_index_dirs(), setup=log_setup(), started=started,
            parent=os.getpid(), by_main_thread=threading.current_thread() is threading.main_thread())
        if decodes_on_cuda():
            loader.multiprocessing_context = "spawn"
    # A forked worker's collections then leave this process's objects unwritten. Not where the caller froze objects
    # itself (a server, a notebook): unfreezing would release those too.
    freezing = gc.get_freeze_count() == 0 and _forks_workers(loader)
    if freezing:
        gc.freeze()
    try:
        with opencv_settings(threads=1), _torch_workers_warning_left_out():  # (make_loader said it)
            batches = _iterator(loader)
    finally:
        if freezing:
            gc.unfreeze()
    if loader.num_workers:
        _defer_worker_deaths()
    return _batches(batches, loader.persistent_workers)


def _workers_run(loader: DataLoader) -> bool:
    """Whether ``loader``'s workers run already: its ``persistent_workers``, kept by its iterator of an earlier
    ``iter()`` (torch's ``_iterator``, which no public API names), which its next ``iter()`` resets, no worker
    started, their init the one they began with (:func:`_started`)."""
    return loader.persistent_workers and getattr(loader, "_iterator", None) is not None


def _forks_workers(loader: DataLoader) -> bool:
    """Whether ``loader`` starts worker processes by fork (its own context's start method, else this process's)."""
    return loader.num_workers > 0 and (loader.multiprocessing_context or multiprocessing).get_start_method() == "fork"


def _defer_worker_deaths() -> None:
    """Keep torch's SIGCHLD handler from raising a dead loader worker's RuntimeError at whatever line this process
    runs: inside a checkpoint's write, which then read as failed though it was written; inside a collective, the
    other ranks left in it. The loader finds the worker dead itself, at the batch that waits for it (within torch's
    MP_STATUS_CHECK_INTERVAL, 5 s). Once per process, from the main thread (the only one torch sets it from)."""
    handler = signal.getsignal(signal.SIGCHLD)
    if not callable(handler) or getattr(handler, "defers_worker_deaths", False) \
            or threading.current_thread() is not threading.main_thread():
        return

    def deferring(signum, frame) -> None:
        with contextlib.suppress(RuntimeError):  # torch's "DataLoader worker (pid N) is killed by signal: ..."
            handler(signum, frame)

    deferring.defers_worker_deaths = True
    signal.signal(signal.SIGCHLD, deferring)


def worker_death_guess(exitcode: int | None) -> str | None:
    """What a loader worker's exit code (minus the signal that killed it) most likely says, and what to do, each
    setting as the command running takes it (:func:`mme.utils.memory_advice`, :func:`mme.utils.said_as`); None for
    another end."""
    if exitcode == -signal.SIGKILL:
        return f"most likely killed by the out-of-memory killer: {memory_advice(True)}"
    if exitcode == -signal.SIGBUS:
        return f"most likely for want of shared memory (/dev/shm): {shm_advice()}"
    return None


def shm_advice(batches: bool = True) -> str:
    """What to do where shared memory (/dev/shm) has no room for the loader workers' ``batches``, which it holds for
    every worker at once: data.num_workers and train.batch_size as the command running takes them
    (:func:`mme.utils.workers_and_batch`); else for what starts them (:func:`_unstarted_in_shm`), whose size is the
    workers' count alone: data.num_workers (:func:`mme.utils.said_as`)."""
    lowered = workers_and_batch() if batches else said_as("data.num_workers")
    return "give it more" + (f", or lower {lowered}" if lowered else "")


_NO_ROOM_IN_SHM = r"</torch_[^>]*>: No space left on device"
"""Torch's error of a tensor that found shared memory full (its file ``</torch_...>: No space left on device
(28)``, of a ``posix_fallocate`` or a write)."""
_SHM_FULL = re.compile(rf"in DataLoader worker process (\d+)\..*{_NO_ROOM_IN_SHM}", re.S)
"""That error in a loader worker, its batch's (:func:`_shm_full`), with the worker's id."""


def _shm_usage():
    """/dev/shm's ``shutil.disk_usage``; None where there is none."""
    return shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None


def _shm_said(usage=None) -> str:
    """/dev/shm as a line of shared memory too small names it, with its size (``usage``, read where not given):
    '/dev/shm, 0.25 MiB in all'."""
    usage = usage or _shm_usage()
    total = usage.total / 2**20 if usage is not None else None
    return "/dev/shm" + (f", {total:.{0 if total >= 1 else 2}f} MiB in all" if total is not None else "")


def _no_room_in_shm(error: BaseException) -> bool:
    """Whether ``error`` is of shared memory (/dev/shm) full: a semaphore's (multiprocessing's SemLock, ENOSPC) or a
    tensor's (:data:`_NO_ROOM_IN_SHM`)."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC
            or isinstance(error, RuntimeError) and re.search(_NO_ROOM_IN_SHM, str(error)) is not None)


def _unstarted_in_shm() -> ProcessLost:
    """A loader whose workers' queues and locks (multiprocessing's semaphores, about a page each, a few per worker),
    or the tensors they share (:func:`~mme.data.video.anamorphic_said`'s flag, :func:`_started`'s PIDs), found no
    room in shared memory (/dev/shm), as one line of advice, as a batch that does not fit there (:func:`_shm_full`);
    the batch size has no part in it. A /dev/shm of a MiB or more that they found so is full of other files (Docker's
    64 MB, of other jobs' leftovers): said so, freeing it advised first."""
    usage = _shm_usage()
    full = usage is not None and usage.total >= 2**20 and usage.free < 2**16
    return ProcessLost(f"data loader: its workers cannot start: no room in shared memory ({_shm_said(usage)}"
                       f"{', full' if full else ''}) for their queues, locks and shared tensors: "
                       f"{'free what other jobs left in it, or ' if full else ''}{shm_advice(batches=False)}")


def _iterator(loader: DataLoader) -> Iterator:
    """``iter(loader)``, or :func:`_unstarted_in_shm` where shared memory has no room for its workers' semaphores.
    Torch's iterator, left half-made, fails in its ``__del__`` (it stops workers it never listed: an AttributeError
    said as ignored, with its traceback) as the error that holds it goes: quietly, where this line replaces it."""
    unraisable = sys.unraisablehook
    try:
        try:
            return iter(loader)
        except OSError as e:
            if not _no_room_in_shm(e):
                raise
            sys.unraisablehook = lambda _: None  # (the half-made iterator goes with e, as this clause ends)
    finally:
        sys.unraisablehook = unraisable
    raise _unstarted_in_shm()


def _shm_full(error: Exception, batches: Iterator) -> ProcessLost | None:
    """A loader worker's ``error`` that its batch did not fit in shared memory (/dev/shm), as one line of advice, as
    for a worker that died of it (SIGBUS: :func:`worker_death_guess`); None for another error. The worker lives on,
    but its batch is lost. Shared memory holds the batches of every worker of ``batches`` (a DataLoader's iterator)
    at once, each its prefetch factor's (torch's ``_num_workers``, ``_prefetch_factor``; no public API names them):
    one batch fits where they do not together, which the line says."""
    found = _SHM_FULL.search(str(error))
    if found is None:
        return None
    workers, prefetch = getattr(batches, "_num_workers", None), getattr(batches, "_prefetch_factor", None)
    held = (f", which holds the batches of the loader's {counted(workers, 'worker')} at once, {prefetch} each"
            if workers and prefetch else ", which holds the batches of every worker at once")
    return ProcessLost(f"data loader worker {found[1]}: a batch does not fit in shared memory ({_shm_said()})"
                       f"{held}: {shm_advice()}")


def _batches(batches: Iterator, persistent_workers: bool) -> Iterator:
    """The batches of a DataLoader's iterator; a worker of its that ended is one error naming the worker and how it
    ended (torch's traceback of "DataLoader worker (pid(s) N) exited unexpectedly" before, or of the pipe it cut
    mid-batch, an EOFError, a ConnectionResetError): a ProcessLost where it died, an MMEError where it could not
    start, an UnguardedScript where it ran the calling script again (:func:`_dead_worker`); one whose batch did not
    fit in shared memory is a ProcessLost too (:func:`_shm_full`: torch's traceback of the worker's "No space left
    on device" before); a failed allocation of the data side, a worker's or a video's read in this process or a
    worker, is an OutOfMemory with what to lower (:func:`_out_of_memory`);
    a batch long in coming is warned about (:class:`_SlowBatches`).

    Its workers stop when the batches end early (an error, the caller closing them, a signal): an error's traceback
    holds the iterator, whose workers (each holding this process's open files, a run folder's lock among them)
    otherwise lived on as long as the error did (in a notebook, for good); one that does not end is killed
    (:func:`_stop_workers`). At the batches' end torch stops them itself. A loader's ``persistent_workers`` are left
    alone: the loader keeps them, and its iterator, for its next ``iter()``, which fails on workers stopped ("Queue
    ... is closed")."""
    slow = _SlowBatches(batches)
    try:
        while True:
            try:
                batch = slow.next()
            except StopIteration:
                return
            except (OutOfMemory, RuntimeError, MemoryError, EOFError, ConnectionError) as e:
                # (torch's own error comes once it found the worker dead; a pipe cut short, while the worker exits)
                cut = isinstance(e, (EOFError, ConnectionError))
                said = _out_of_memory(e) or _shm_full(e, batches) or _dead_worker(batches, 1.0 if cut else 0, e)
                if said is None:
                    raise
                raise said from e
            yield batch
    except BaseException:  # (GeneratorExit where the caller closed them)
        if not persistent_workers and hasattr(batches, "_shutdown_workers"):  # (torch's multi-process iterator)
            _stop_workers(batches)
        raise
    finally:
        slow.close()


_WORKER_ERROR = re.compile(r"Caught \w+ in (DataLoader worker process \d+)\.\nOriginal Traceback.*\n([\w.]+)"
                           r"(?:: (.*))?$", re.S)
"""Torch's text of a loader worker's error re-raised in this process: where, and the traceback's last line, the
error's class (its module's path before it, a builtin's bare) and message."""


def _out_of_memory(error: BaseException) -> OutOfMemory | None:
    """A failed allocation of the data side as the one line of a batch out of memory, with what to lower
    (:func:`~mme.utils.memory_advice`): a video's read (an :class:`~mme.errors.OutOfMemory` of FFmpeg's ENOMEM, in
    this process or a worker, whose line names the video), or a loader worker's own (:func:`~mme.errors.out_of_memory`
    of its error's class and message: numpy's ``_ArrayMemoryError`` too, which torch cannot re-create here and
    re-raises as a RuntimeError) with its message and the worker. Under a limit of this process's memory, which its
    workers inherit (``ulimit -v``: :func:`~mme.errors.memory_limit`), the line names the limit and its remedy
    instead. An OutOfMemory, so that in a training run every rank stops with it and the steps are kept, as for a
    worker killed; else None."""
    if isinstance(error, OutOfMemory):  # (a worker's line recovered from torch's text: MMEError)
        failed = plain = str(error)
    else:
        found = _WORKER_ERROR.match(str(error).rstrip())
        if found is None:
            return None
        where, name, worker_said = found.groups()
        module, _, kind = name.rpartition(".")
        kind_class = getattr(sys.modules.get(module or "builtins"), kind, None)  # (a worker's module is loaded here)
        if not (isinstance(kind_class, type) and out_of_memory(kind_class, worker_said or "")):
            return None
        failed = f"{worker_said or kind} (in {where})"
        plain = f"out of memory ({failed})"
    limited = memory_limit()
    return OutOfMemory(f"{plain}; {memory_advice(True)}" if limited is None else said_under(limited, failed))


def _stop_workers(batches: Iterator) -> None:
    """Torch's shutdown of a loader iterator's workers, then SIGKILL to any it left running: a worker stopped
    (SIGSTOP, a job suspended) takes neither the loader's word to end nor its SIGTERM, and Python's exit waited for
    it for good (a Ctrl-C never ended the command). One stopped is killed first: torch's shutdown waited for it 5 s
    (MP_STATUS_CHECK_INTERVAL), the checkpoint of a stop after it. A worker in an uninterruptible read (a hung NFS
    mount) is left to the kernel after a second."""
    workers = getattr(batches, "_workers", [])
    for worker in workers:
        if process_state(worker.pid) == "T":
            worker.kill()
    batches._shutdown_workers()
    for worker in workers:
        worker.join(timeout=1)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=1)


class _SlowBatches:
    """A watch over the waits for the batches of a loader's iterator ``batches`` (:meth:`next`): a warning once one
    has lasted :data:`mme.utils.WAIT_WARNING_S`, and again each time it doubles, naming the workers stopped or hung
    and the one that owes the batch (:meth:`_owing`), their PIDs and states, and how long it has been waited for: a
    worker stopped (SIGSTOP) or hung on a read held the run without a word. One thread for all the waits
    (:class:`mme.utils.Watch`'s); none without workers (this process reads the batches itself). Torch's iterator
    names the worker owing nowhere public: its ``_task_info`` of the batch awaited (``_rcvd_idx``) and its
    ``_workers``; without them the loader's workers are named together."""

    def __init__(self, batches: Iterator):
        self._batches, self._held = batches, {}
        self._watch = Watch(self._held, self._warn, "mme-batch-wait").start() \
            if getattr(batches, "_workers", None) else None

    def next(self) -> Any:
        """The iterator's next batch, its wait watched."""
        self._held[None] = Held(None)
        try:
            return next(self._batches)
        finally:
            del self._held[None]

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def _warn(self, _: None, waited: float) -> None:
        log.warning("%s: no batch for %.0f s, still waited for (a slow read may take this long; SIGTERM or Ctrl-C ends "
                    "the wait, but in a run's periodic validation, task.eval_every, only a second Ctrl-C does, without "
                    "a checkpoint)", self._owing(), waited)

    def _owing(self) -> str:
        """The workers the warning names: each stopped or in an uninterruptible wait (:data:`~mme.utils.STATES_SAID`),
        whichever owes the batch (this process may hold a batch's message and wait on the worker that sent it for its
        shared memory, a worker other than the one owing the next), and the one that owes it, if another; the
        loader's workers together where none is known."""
        workers = getattr(self._batches, "_workers", None)
        if not isinstance(workers, list):
            return "the data loader's workers"
        owed = getattr(self._batches, "_task_info", {}).get(getattr(self._batches, "_rcvd_idx", None), ())
        owing = owed[0] if len(owed) == 1 else None  # (not sent yet: its worker)
        named = [f"data loader worker {i} (pid {worker.pid}{STATES_SAID.get(state, '')})"
                 for i, worker in enumerate(workers) if (state := process_state(worker.pid)) in STATES_SAID
                 or i == owing]
        return ", ".join(named) or "the data loader's workers"


def _no_workers() -> str:
    """The setting that loads a job's data in its own process, with no loader worker, as the command running takes
    it (:func:`mme.utils.workers_option`): ``data.num_workers=0``, or ``--workers=0`` in a command that takes that
    flag (``mme demo``, ``mme embed``, ``mme probe``, ``mme bench data``, ``mme bench pipeline``)."""
    return f"{workers_option()}=0"


def _dead_worker(batches: Iterator, wait_s: float, error: Exception) -> MMEError | None:
    """The first of the loader iterator's worker processes that ended, waited for up to ``wait_s``, as a ProcessLost
    saying how (:func:`worker_death_guess`), or an error no resume mends: an UnguardedScript where it ended as one
    running its parent's script again ends (:func:`mme.utils.exit_if_script_rerun`), an MMEError where it exited
    before its init ran (:func:`_started`), so could not start (one started fresh, by spawn or forkserver, whose
    import of the script or of the dataset's module failed: :func:`mme.utils.why_workers_cannot_start`); None while
    all live. Torch names them nowhere public: this reads its iterator's ``_workers`` (by worker id), and where a
    torch version has no such list of processes, falls back on torch's own ``error``: its "DataLoader worker (pid(s)
    N) exited unexpectedly", said in one line without how."""
    workers = getattr(batches, "_workers", None)
    if not isinstance(workers, list) or not all(isinstance(w, BaseProcess) for w in workers):
        said = str(error).splitlines()[0] if str(error) else ""
        if not (said.startswith("DataLoader worker") and "exited unexpectedly" in said):
            return None  # (a loader without workers, or another error)
        return ProcessLost(f"{said} (how, this version of torch does not say): where the out-of-memory killer ended "
                           f"it, {memory_advice(True)}")
    ended, started = wait([w.sentinel for w in workers], timeout=wait_s), _started(batches)
    for i, worker in enumerate(workers):
        if worker.sentinel in ended:
            worker.join()  # (its exit code, once its exit, which closed the sentinel, is done)
            if worker.exitcode == SCRIPT_RERUN_EXIT:
                return UnguardedScript(f"to load data in this process: {_no_workers()}")
            if worker.exitcode >= 0 and started is not None and int(started[i]) != worker.pid:
                why = why_workers_cannot_start(f"set {_no_workers()}")
                return MMEError(f"data loader worker {i} (pid {worker.pid}) could not start "
                                f"({how_it_ended(worker.exitcode)}): {why}")
            guess = worker_death_guess(worker.exitcode)
            return ProcessLost(f"data loader worker {i} (pid {worker.pid}) died ({how_it_ended(worker.exitcode)})"
                               + (f", {guess}" if guess else ""))
    return None


def _started(batches: Iterator) -> torch.Tensor | None:
    """The PID of each worker of the loader iterator ``batches`` that began its init, by worker id (0 for one that
    did not), in shared memory: :func:`_worker_start`'s ``started``; None where its workers run no such init. Torch
    keeps the init its workers run (a persistent loader's, of its first iterator) nowhere public: its iterator's
    ``_worker_init_fn``."""
    init = _own_start(getattr(batches, "_worker_init_fn", None))
    return init.keywords["started"] if init is not None else None


def _own_start(init: Callable[[int], None] | None) -> functools.partial | None:
    """``init``, a loader's ``worker_init_fn``, where it is :func:`start_workers`' (:func:`_worker_start`); else
    None."""
    return init if isinstance(init, functools.partial) and init.func is _worker_start else None


def _worker_start(worker_id: int, *, then: Callable[[int], None] | None, said: torch.Tensor,
                  read_only: frozenset[str], setup: Callable[[], None] | None, started: torch.Tensor, parent: int,
                  by_main_thread: bool) -> None:
    """A worker's init under :func:`start_workers`: its end with the process that started it (``parent``, its PID,
    and whether its main thread did: :func:`~mme.utils.end_with_parent`; a worker blocked in a read, which torch's own
    watch of its parent checks only between items, outlived a parent killed with SIGKILL, holding its memory), its PID
    in ``started`` (:func:`_started`), its log as the job's
    where it started fresh with none (``setup``: :func:`~mme.utils.take_log_setup`), OpenCV on one thread where it
    started fresh (a forked one has it already and must not reconfigure it), malloc keeping freed memory, the job's
    warnings said shared (``said``: :func:`~mme.data.video.anamorphic_said`), the index folders the job only reads
    taken as read-only (``read_only``, which a spawned worker does not inherit:
    :func:`~mme.data.pyav_reader.take_read_only`), then the loader's own ``worker_init_fn`` (``then``)."""
    end_with_parent(parent, by_main_thread)
    started[worker_id] = os.getpid()
    take_log_setup(setup)
    anamorphic_said(said)
    take_read_only(read_only)
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    keep_freed_memory()
    if then is not None:
        then(worker_id)


def collate(items: list[dict]) -> dict:
    """Stack a list of items into a batch: tensors get a leading batch axis, nested dicts (``motion``) are
    stacked key by key, ints become a (B,) tensor. The one ragged entry, ``motion["frames"]`` (as many frames as
    the clip's tracks read), is concatenated along its frames instead, and every ``motion[..._index]`` shifted to
    index the concatenation."""
    if not items or "frames" not in items[0].get("motion", {}):
        return in_shared_memory(default_collate(items))
    frames = [it["motion"]["frames"] for it in items]
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]])
    items = [{**it, "motion": {k: v + int(o) if k.endswith("_index") else v
                               for k, v in it["motion"].items() if k != "frames"}}
             for it, o in zip(items, offsets, strict=True)]
    batch = default_collate(items)
    batch["motion"]["frames"] = stacked(frames, cat=True)
    return in_shared_memory(batch)


def stacked(tensors: Sequence[torch.Tensor], cat: bool = False) -> torch.Tensor:
    """``torch.stack(tensors)`` (``cat``: ``torch.cat``), where this is a loader worker written into shared memory
    as default_collate stacks, so that its batch goes out as it is (:func:`in_shared_memory`)."""
    out = None
    if get_worker_info() is not None:
        first = tensors[0]
        shape = (sum(len(t) for t in tensors), *first.shape[1:]) if cat else (len(tensors), *first.shape)
        # (shared storage made as such, as default_collate makes it: new_empty(...).share_memory_() would allocate
        # a private buffer and copy it, uninitialised, into shared memory)
        storage = first._typed_storage()._new_shared(math.prod(shape), device=first.device)
        out = first.new(storage).resize_(shape)
    return (torch.cat if cat else torch.stack)(tensors, out=out)


def in_shared_memory(batch):
    """A collated ``batch`` (tensors within mappings, lists and tuples) with each tensor in shared memory, moved there
    in place where it is not (:meth:`torch.Tensor.share_memory_`), where this is a loader worker: ``batch`` itself,
    its containers kept as they are (a namedtuple, a dict's subclass, as default_collate keeps them). The worker's
    queue would move them itself as it pickles the batch, but in a thread of its own, which prints its error
    (/dev/shm full: "No space left on device") and drops the batch, the worker alive: the main process waited for
    that batch for good. Here the error is the worker's own, raised in the main process (:func:`_batches`)."""
    if get_worker_info() is None:
        return batch
    if isinstance(batch, torch.Tensor):
        batch.share_memory_()
    elif isinstance(batch, Mapping):
        for value in batch.values():
            in_shared_memory(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            in_shared_memory(value)
    return batch


def _epoch_and_index(key: int | tuple[int, int]) -> tuple[int, int]:
    """A dataset key, ``(epoch, index)`` or an index in epoch 0, as ``(epoch, index)``."""
    return key if isinstance(key, tuple) else (0, key)


def lines_digest(lines: Iterable[str], names: bool = False) -> str:
    """A short digest of ``lines`` in order, text as UTF-8; ``names``: lines of the file system's names (paths), taken
    as their bytes on disk (:func:`os.fsencode`), so that a list digests alike whatever the locale (a Latin-1 one
    names ``caf\u00e9`` ``caf\u00c3\u00a9``; the same bytes as UTF-8 text under a UTF-8 or ASCII locale)."""
    joined = "\n".join(lines)
    return hashlib.sha256(os.fsencode(joined) if names else joined.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def content_digest(entries: Iterable[ListEntry], root: str, labelled: bool) -> tuple[str, str]:
    """Digests of what a run reads from a list, the files its ``entries`` name in order, with their labels where it
    takes labels (``labelled``, fine-tuning: a relabelled list trains otherwise): ``(under the root, absolute)``.
    Each path is joined to the absolute ``root`` and normalised, as text (no file looked up in a list of 240k
    lines), so that './x.mp4' and '<root>/x.mp4' are one; one under the root is also taken from it, so another
    ``data.root`` is its own change, not the list's too, whether the list's paths are relative (the first digest) or
    absolute (the second). A path with '..' is kept as written, neither joined nor normalised (the first digest
    takes the root off one written from it, as off any): after a link, '..' is not what removing it by text
    names."""
    root = os.path.abspath(root)
    under = root.rstrip(os.sep) + os.sep
    lines = [(e.path if ".." in e.path.split(os.sep) else os.path.normpath(resolve(e, root)))
             + (f"\t{e.label}" if labelled else "") for e in entries]
    return lines_digest((line.removeprefix(under) for line in lines), names=True), lines_digest(lines, names=True)


def same_content(recorded: Sequence[str], digest: tuple[str, str]) -> bool:
    """Whether the list whose :func:`content_digest` is ``digest`` is the one whose digests a run recorded
    (``recorded``, its checkpoint meta's ``list_files_digest``): the same where either digest is."""
    return any(r == c for r, c in zip(recorded, digest))


def list_identity(data: Dataset) -> str:
    """What says which list a dataset (ours, or one that forwards their ``content_digest``) holds, beside another
    rank's copy of it (:func:`mme.train.distributed.check_same_inputs`): its videos' count and the digest of their
    files under the root, in order, with their labels where it takes them (:attr:`_VideoDataset.content_digest`)."""
    return f"{len(data)} videos (digest {data.content_digest[0]})"


INDEX_SAMPLE = 64
"""How many of a list's videos, spread over it, a run looks up in its index folder
(:meth:`_VideoDataset.say_index_missed`)."""


def evenly_spread(n: int, k: int) -> list[int]:
    """Up to ``k`` of the indices ``range(n)``, spread evenly over it (the first and last among them), in order."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)).tolist()


def fill_index_command(listed: str, index_dir: str | os.PathLike) -> str:
    """The `mme check` that fills ``index_dir`` with the frame indices of ``listed`` (lists and root as a command's
    arguments: :meth:`_VideoDataset.as_arguments`), to be run where the folder can be written where this process
    only reads it (:func:`~mme.data.pyav_reader.reads_only`: the check refuses it here)."""
    command = f"`mme check {listed} {command_option('--index-dir', index_dir)}`"
    return f"{command} where the folder can be written (not here)" if reads_only(index_dir) else command


@functools.cache
def _warn_index_missed(index_dir: str, option: str, listed: str | None, looked: int) -> None:
    log.warning("%s holds the frame index of none of the %s of %s looked up there, so each is indexed at its first "
                "read (seconds for a long video): they were not indexed there (its `mme check` was of another list), "
                "or are other files than those indexed (it keeps each by its absolute path, size, times and inode: "
                "copies of the videos, cp -a, rsync -a, and another spelling of their root, a symlink, are other "
                "files; another PyAV build keeps its own)%s", as_given(option, index_dir),
                counted(looked, "video"),
                listed or "the run",
                f"; {fill_index_command(listed, index_dir)}, run on the paths as this run reads them, fills it"
                if listed else "")


class _VideoDataset(Dataset):
    """The list, the failure bookkeeping and the deterministic replacement shared by both datasets."""

    substitutes = True
    """Whether a video that fails is replaced by another (training); else its VideoError is raised (testing: each
    video is predicted or reported)."""

    def __init__(self, cfg: DataConfig, seed: int = 0, need_labels: bool = False,
                 entries: list[ListEntry] | None = None):
        """``entries``: the videos, already read (a test set's: :func:`~mme.eval.testing.build_test_set`), where
        ``cfg.list_file``, then not read, names what they were given as (a list, one video)."""
        if not cfg.list_file:
            raise DataError("data.list_file is not set")
        self.cfg = cfg
        self.seed = seed
        require_backend(cfg.backend)
        if cfg.index_dir is not None:
            take_index_dir(cfg.index_dir, "data.index_dir")
            note_other_index_versions(cfg.index_dir)
        entries_given = entries
        if entries is None:
            entries, self.bad_lines = read_list(cfg.list_file, strict=False, key="data.list_file")
        else:
            self.bad_lines = []
        if need_labels and any(e.label is None for e in entries):
            raise DataError(f"list file {cfg.list_file}: classification needs a label on every line")
        self.entries = PackedEntries(entries)
        """Its videos, held packed: each loader worker reads them without copying them (:mod:`mme.data.packed`)."""
        self.need_labels = need_labels
        self.checked_as: str | None = self.as_arguments([cfg.list_file], cfg.root)
        """The list and its root as a command's arguments (``mme check``'s, ``mme extract``'s), as the user gave them
        (a test set's: :func:`~mme.eval.testing.build_test_set`); None where the user gave
        no list (one video)."""
        # Shared between DataLoader workers and the main process (fork and spawn pass shared memory).
        self._reason = torch.zeros(len(entries), dtype=torch.int8).share_memory_()
        # Per video, its frames as a training read found them (0: not read yet), likewise shared: short_videos.
        self._frames = torch.zeros(len(entries), dtype=torch.int32).share_memory_()
        # Per video, whether its failure was taken from a resumed run's checkpoint (:meth:`carry_failures`), set in
        # place so that the copies of :meth:`with_seed` see it; not in shared memory: it is set before any loader
        # worker starts (a resume's restore), so the workers, which take the dataset as they start, see it too.
        self._carried = torch.zeros(len(entries), dtype=torch.bool)
        # Per video, whether its failure is the run's as of its last finished step: replaced by an item of one
        # (:meth:`note_trained`), or carried (:meth:`carry_failures`); not the failures loader workers found in
        # batches fetched ahead, which a checkpoint of the step must not record. This process's own, as _carried.
        self._trained = torch.zeros(len(entries), dtype=torch.bool)
        self._check_failures()
        if entries_given is None:  # (a test set given its entries: its caller says it, as it spells the list)
            self.say_index_missed()

    def __len__(self) -> int:
        return len(self.entries)

    @functools.cached_property
    def list_digest(self) -> str:
        """A digest of the listed paths in order: what a failure table carried from another run must match."""
        return lines_digest(self.entries.paths, names=True)

    @functools.cached_property
    def content_digest(self) -> tuple[str, str]:
        """What the run reads from its list (:func:`content_digest`): a resumed run whose list matches neither
        digest trains on other data."""
        return content_digest(self.entries, self.cfg.root, self.need_labels)

    def with_seed(self, seed: int) -> _VideoDataset:
        """This dataset drawing its clips and replacements by ``seed`` (repeated augmentation's copies): its list
        and failure table are shared, not read again, so a video that failed for one is not opened, nor warned
        about, again by the others."""
        twin = copy.copy(self)
        twin.seed = seed
        return twin

    @property
    def failures(self) -> dict[str, str]:
        """Failed videos and bad list lines so far, across all workers: ``{path or file:line: reason}``."""
        return self._failures_in(self._reason)

    def _failures_in(self, codes: torch.Tensor) -> dict[str, str]:
        """The bad list lines and the failed videos of ``codes`` (as :attr:`failure_codes`), as :attr:`failures`."""
        out = {str(b.list_file) + f":{b.line_no}": b.reason for b in self.bad_lines}
        for i in torch.nonzero(codes).flatten().tolist():
            out[self.path(i)] = REASONS[int(codes[i])]
        return out

    track_length = 0
    """Raw frames after each tubelet start a clip's tracks reach (:class:`PretrainDataset`'s; none here)."""

    @property
    def clip_window(self) -> int:
        """Raw frames a training clip spans with its tracks (:func:`~mme.data.sampling.window_length`); for TSN
        segments, spread over any video, the frames they need to draw none twice with the tracks on real frames, one
        per segment and the tracks' after them (:func:`~mme.data.sampling.sample_segments`)."""
        cfg = self.cfg
        if cfg.sampling == "segments":
            return cfg.num_frames + self.track_length
        return window_length(cfg.num_frames, cfg.stride, cfg.tubelet, self.track_length)

    def short_videos(self) -> tuple[int, int, int]:
        """``(short, read, fewest)``: of the videos reads have read so far (training's, a test set's), across all
        workers, those that
        hold fewer raw frames than :attr:`clip_window` (their clips repeat their last frame, or segments draw frames
        twice: mme.data.sampling),
        all of them, and the fewest frames of the short ones (0 where none)."""
        window, frames = self.clip_window, self._frames
        read = frames > 0
        short = read & (frames < window)
        return int(short.sum()), int(read.sum()), int(frames[short].min()) if bool(short.any()) else 0

    @staticmethod
    def short_said(short: int, read: int, where: str = "") -> str:
        """The subject and verb of the warnings of :meth:`short_videos`: 'the 1 video read holds', '3 of the 5 videos
        read hold', ``where`` after 'read' (' on this rank so far')."""
        which = f"the {counted(read, 'video')}" if short == read else f"{short} of the {counted(read, 'video')}"
        return f"{which} read{where} {plural(short, 'holds', 'hold')}"

    def short_clip_effect(self, fewest: int, short: int) -> str:
        """What ``short`` videos, the shortest of ``fewest`` raw frames, fewer than :attr:`clip_window`, do to their
        clips, as the warnings of :meth:`short_videos` say it ('its clips' for one): TSN segments draw frames more than
        once where it holds fewer than a clip's frames; otherwise (a window, or the tracks after the segments, past its
        end) they repeat its last frame."""
        cfg = self.cfg
        its = plural(short, "its", "their")
        twice = cfg.sampling == "segments" and cfg.num_frames > fewest
        return f"{its} clips " + ("draw frames more than once" if twice else f"repeat {its} last frame")

    def _note_frames(self, i: int, frames: int) -> None:
        """Record that video ``i``, read, holds ``frames`` raw frames (:meth:`short_videos`)."""
        self._frames[i] = frames

    @property
    def failure_codes(self) -> torch.Tensor:
        """Per video, its failure's reason as an index of REASONS (0: none so far); shared with the workers."""
        return self._reason

    def join_failures(self, codes: torch.Tensor) -> None:
        """Take in the failures found elsewhere (``codes`` as :attr:`failure_codes`: other ranks', which decode
        their own share of the videos), so that they are counted here and not opened again.
        ``data.max_failure_fraction`` is checked on ``codes`` alone: ranks that join the same codes decide alike, where
        this table may hold more, a failure its loader workers found since ``codes`` were joined over the ranks
        (counted at the next join)."""
        codes = codes.to(self._reason.dtype)
        self._reason.copy_(torch.maximum(self._reason, codes))
        self._check_failures(codes)

    def carry_failures(self, codes: torch.Tensor) -> None:
        """Take in the failures the checkpoint of a resumed run recorded (``codes`` as :attr:`failure_codes`): counted
        and not opened again, as :meth:`join_failures`, and said so where they stop the run."""
        self._carried |= codes > 0
        self._trained |= codes > 0
        self.join_failures(codes)

    def failure_counts(self, codes: torch.Tensor | None = None) -> dict[str, int]:
        """Number of failures per reason (in ``codes``, as :attr:`failure_codes`; default this table's)."""
        codes = self._reason if codes is None else codes
        counts = Counter(REASONS[int(r)] for r in codes[codes > 0].tolist())
        if self.bad_lines:
            counts["bad list line"] += len(self.bad_lines)
        return dict(counts)

    def open(self, path: str) -> VideoReader:
        """A reader of ``path`` as ``data`` says (backend, decoder threads, index folder, orientation)."""
        cfg = self.cfg
        return open_video(path, cfg.backend, cfg.decode_threads, cfg.index_dir, cfg.orientation)

    def path(self, i: int) -> str:
        return resolve(self.entries[i], self.cfg.root)

    @staticmethod
    def as_arguments(list_files: Sequence[str | os.PathLike], root: str | os.PathLike | None) -> str:
        """The lists ``list_files`` and their ``root`` as a command's arguments, quoted for a shell
        (:attr:`checked_as`)."""
        return " ".join(map(command_path, list_files)) + (f" {command_option('--root', root)}" if root else "")

    def say_index_missed(self, option: str = "data.index_dir") -> None:
        """Warn (once per process, folder and list) where the index folder (``option``), filled by `mme check`
        (:func:`filled_by_check`) and holding indices (:func:`holds_indices`: not a check that indexed nothing, its
        videos missing or unreadable), holds the frame index of none of :data:`INDEX_SAMPLE` of the videos spread over
        the list (:func:`indexes_none_of`): the run would index every video again, unsaid (an empty folder, filled by
        the run's reads, is said by :func:`~mme.eval.features.say_unindexed`). Said by the first rank of each node
        alone, which judges the node's own copy of the videos where nodes staged one each."""
        from mme.train.distributed import rank_on_node

        index_dir = self.cfg.index_dir
        if (index_dir is None or not self.entries or rank_on_node() != 0 or not filled_by_check(index_dir)
                or not holds_indices(index_dir)):
            return
        looked = evenly_spread(len(self.entries), INDEX_SAMPLE)
        if indexes_none_of(index_dir, (self.path(int(i)) for i in looked)):
            _warn_index_missed(str(index_dir), option, self.checked_as, len(looked))

    def failed_of(self, videos: int) -> tuple[int, int]:
        """``videos`` failed videos of the list with its bad lines, and the list's lines (its entries and bad lines)."""
        return videos + len(self.bad_lines), len(self.entries) + len(self.bad_lines)

    def too_many_failures(self, videos: int) -> bool:
        """Whether ``videos`` failed videos of the list, with its bad lines, are more than ``data.max_failure_fraction``
        of it: where the dataset stops the run."""
        return self._past_fraction(*self.failed_of(videos))

    def _past_fraction(self, failed: int, total: int) -> bool:
        return failed > self.cfg.max_failure_fraction * total

    def _check_failures(self, codes: torch.Tensor | None = None) -> None:
        """DataError where more than ``data.max_failure_fraction`` of the list failed, by ``codes`` (as
        :attr:`failure_codes`; default this table's), its counts and examples all of ``codes``: ranks that joined
        the same codes give the same message."""
        stop = self._failures_stop(codes)
        if stop is not None:
            raise stop

    def _failures_stop(self, codes: torch.Tensor | None = None, item: int | None = None) -> TooManyFailures | None:
        """The stop for videos that cannot be read, by ``codes`` (as :attr:`failure_codes`; default this table's, read
        once: the workers write it): TooManyFailures where more than ``data.max_failure_fraction`` of the list failed,
        else, given ``item``, an item none of whose tries read, NoReadableVideo; else None. Either says the counts,
        examples and advice of the failures of ``codes``."""
        codes = self._reason.clone() if codes is None else codes
        failed, total = self.failed_of(int((codes > 0).sum()))
        if self._past_fraction(failed, total):
            kind, said = TooManyFailures, (f"{failed} of {total} videos in {self.cfg.list_file} failed, more than "
                                           f"data.max_failure_fraction={self.cfg.max_failure_fraction}")
        elif item is not None:
            kind = NoReadableVideo
            said = f"no readable video for item {item} of {self.cfg.list_file} after {MAX_ATTEMPTS} tries"
        else:
            return None
        examples = "; ".join(f"{k}: {v}" for k, v in list(self._failures_in(codes).items())[:5])
        return kind(f"{said} ({self.failure_counts(codes)}); e.g. {examples}; {self._carried_advice(codes, failed)}")

    def _carried_advice(self, codes: torch.Tensor, failed: int) -> str:
        """:meth:`_failure_advice`, saying which failures the run recorded before it resumed (:meth:`carry_failures`):
        their files are not opened again, so neither `mme check` nor a repair changes them, and the advice is of the
        run's own failures alone (carried ones, 'missing' say, restored since, would ask about data.root); where they
        are all the failures, the advice is what does."""
        was_carried = self._carried & (codes > 0)
        carried = int(was_carried.sum())
        files = plural(carried, "its file", "their files")
        if carried == failed:
            them = plural(carried, "it", "them")
            return (f"the run recorded {them} as failed before it resumed (up to its checkpoint), and a resumed run "
                    f"counts {them} without opening {files} again: raise data.max_failure_fraction to go on without "
                    f"{them}, or, where {plural(carried, 'it was', 'they were')} repaired since, start the run afresh "
                    "(another train.out_dir; train.init=CHECKPOINT starts it from the weights of the checkpoint "
                    f"resumed) to train on {them}")
        said = (f"{carried} of them, recorded as failed by the run before it resumed (up to its checkpoint), "
                f"{plural(carried, 'is', 'are')} counted without opening {files} again; ") if carried else ""
        return said + self._failure_advice(torch.where(was_carried, 0, codes), failed - carried)

    def _failure_advice(self, codes: torch.Tensor, failed: int) -> str:
        """What to do where ``failed`` failures by ``codes`` (as :attr:`failure_codes`) stop the run: for videos missing
        (most of the failures), :meth:`missing_advice`; else `mme check`, which names every video a run cannot read."""
        missing = torch.nonzero(codes == REASONS.index("missing")).flatten().tolist()
        if 2 * len(missing) > failed:
            return self.missing_advice(missing)
        check = self.checked_as + (f" --decode-threads {self.cfg.decode_threads}" if self.cfg.decode_threads != 1
                                  else "")
        check += f" {command_option('--index-dir', self.cfg.index_dir)}" if self.cfg.index_dir else ""
        return (f"`mme check {check}` names every video a run cannot read: leave them out of the list, or raise "
                "data.max_failure_fraction")

    def missing_advice(self, missing: Sequence[int], held_missing: str | None = None) -> str:
        """What to do about the list's videos ``missing`` (indices), not on disk: why the first of them that one tells
        (:func:`~mme.data.video.missing_hint`: a Windows list's '\\', a label read as part of the name), else whether
        their paths lead where the videos are (``data.root``, a volume mounted), and where they do, the videos are
        gone (a download that missed some): left out of the list, or the failure fraction raised. ``held_missing``: a
        video of the list missing too though ``mme extract`` made its track cache file, so found it: the paths lead
        elsewhere than where it ran, and the videos are not gone."""
        told = ((path, hint) for path in map(self.path, missing[:5]) if (hint := missing_hint(path)))
        if first := next(told, None):
            return f"{first[0]}: {first[1].removeprefix('; ')}"
        lost = [self.entries.paths[i] for i in missing]
        relative = 2 * sum(not os.path.isabs(p) for p in lost) > len(lost)
        if relative:
            where = (f"is data.root ({self.cfg.root or 'unset: the working folder'}) the folder its relative paths "
                     "start from?")
        else:
            where = "are the folders of the listed absolute paths here (a volume not mounted)?"
        if held_missing:
            return f"{held_missing}, whose track cache file mme extract made, is missing too: {where}"
        rebuilt = (f"; a list of `mme lists` is built again without them by `mme lists KIND SOURCE "
                   f"{command_option('--root', self.cfg.root or '.')} --skip-missing`" if relative else "")
        return (f"{where} If so, these videos are gone: leave them out of the list (`mme check {self.checked_as}` "
                f"names each, as missing, in its report{rebuilt}), or raise data.max_failure_fraction")

    def _record_failure(self, i: int, err: Exception) -> None:
        reason = getattr(err, "reason", "other")
        self._reason[i] = REASONS.index(reason) if reason in REASONS else REASONS.index("other")
        if self.substitutes:  # a test set's caller reports each failure
            log.warning("skipping %s", err)
        if launch_ranks()[1] == 1:  # torchrun's ranks check when they join their failures, all at once
            self._check_failures()

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item ``key`` = (epoch, index), or index in epoch 0: the video ``index`` with draws from (seed, epoch,
        index, attempt), or if it fails, the first readable of a fixed sequence of replacements drawn from them
        (without ``substitutes``: its VideoError). Known failures are not reopened (skipped, or their error raised
        again), which gives the same result as retrying them, so the item does not depend on which worker found a
        bad file first. The epoch travels with the index so that workers can live across epochs
        (mme.train.loop.micro_batches)."""
        epoch, index = _epoch_and_index(key)
        for attempt in range(MAX_ATTEMPTS if self.substitutes else 1):
            i = self._video(epoch, index, attempt)
            if self._reason[i] != 0:
                if not self.substitutes:
                    raise video_error(self.path(i), REASONS[int(self._reason[i])], "failed before, not reopened")
                continue
            try:  # (drawn again on a corrected count)
                item = with_true_count(lambda a=attempt: self._load(*self._draw(epoch, index, a)))
            except VideoError as e:
                self._record_failure(i, e)
                if not self.substitutes:
                    raise
                continue
            item["index"] = i
            return item
        raise self._failures_stop(item=index)  # (the fraction's, where it is passed: under torchrun too)

    def _draw(self, epoch: int, index: int, attempt: int) -> tuple[int, np.random.Generator]:
        """Try ``attempt`` of item ``index`` of ``epoch``: its video (the item's own first, then a replacement drawn)
        and the generator its clip is drawn from."""
        rng = np.random.default_rng([self.seed, epoch, index, attempt])
        return (int(rng.integers(len(self.entries))) if attempt > 0 else index), rng

    def _video(self, epoch: int, index: int, attempt: int) -> int:
        """The video of try ``attempt`` of item ``index`` of ``epoch`` (:meth:`_draw`'s), without a generator made for
        the first try, the item's own video (a generator: 10.6 us on a 2-core AMD EPYC, `python -m timeit -s "import
        numpy as np" "np.random.default_rng([0, 1, 12345, 0])"`)."""
        return index if attempt == 0 else self._draw(epoch, index, attempt)[0]

    def note_trained(self, keys: list[tuple[int, int]], read: torch.Tensor) -> None:
        """Items ``keys`` of a finished training step, which read videos ``read`` (their ``index``): the videos each
        tried before, failed (found by its own fetch or an earlier one), become failures of the run as of that step
        (:attr:`trained_failures`)."""
        for key, used in zip(keys, read.tolist(), strict=True):
            epoch, index = _epoch_and_index(key)
            for attempt in range(MAX_ATTEMPTS):
                tried = self._video(epoch, index, attempt)
                if tried == used:
                    break
                self._trained[tried] = True

    @property
    def trained_failures(self) -> torch.Tensor:
        """:attr:`failure_codes` as of the run's last finished step (:meth:`note_trained`): without the failures of
        batches loader workers fetched ahead, as a run without workers has them."""
        return self._reason * self._trained

    def _load(self, i: int, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def _train_geometry(self, size: tuple[int, int], rng: np.random.Generator) -> Geometry:
        cfg = self.cfg
        if cfg.crop == "random_resized":
            geom = random_resized_crop(size, cfg.img_size, rng, cfg.rrc_scale, cfg.rrc_ratio)
        elif cfg.crop == "multiscale":
            geom = multiscale_crop(size, cfg.img_size, rng, cfg.scales, cfg.max_distort)
        else:
            geom = view_crops(size, cfg.img_size, 1)[0]
        return dataclasses.replace(geom, flip=True) if cfg.flip and rng.random() < 0.5 else geom


@dataclass(frozen=True)
class CacheLookup:
    """Where the list's videos have their track cache files (:attr:`PretrainDataset.cache_lookup`): ``files``, each
    video's, None where it has none or was not looked up; ``lacking``, the videos without one; ``unsought``, how many
    more the folder's listing misses, not looked up on disk once ``lacking`` were more than the run may skip;
    ``whole``, whether the listing listed every folder (:func:`mme.motion.cache.listed_files`): where it did not, the
    unsought videos' files may be in those it could not list. ``files`` are packed: each loader worker reads them
    without copying them (:mod:`mme.data.packed`)."""

    files: PackedStrings
    lacking: list[int]
    unsought: int
    whole: bool


def settings_said(settings: Mapping) -> str:
    """Settings in words, in their order: 'short_side 64, max_disp None'."""
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def identity_text(identity: dict) -> str:
    """The words of a track cache identity (:meth:`PretrainDataset.cache_identity`), as the ranks compare it and an
    earlier mme recorded it."""
    if "made_with" in identity:
        return f"files made with {settings_said(identity['made_with'])}"
    if "mixed_settings" in identity:
        return (f"mixed files of {identity['mixed_settings']} settings (digest {identity['digest']} over the "
                f"{identity['files_read']} probed files read)")
    return "no file read"


_MADE_WITH_WORDS = re.compile("files made with " + ", ".join(f"{key} (.*)" for key in READ_SETTINGS), re.DOTALL)


def identity_change(old: dict | str, now: dict) -> str | None:
    """What changed between two track cache identities (:meth:`PretrainDataset.cache_identity`), None where nothing
    did: where both are of files of one setting each, the settings that differ, as :meth:`PretrainDataset.mixed_cache`
    names only those ('short_side 64 -> 96, max_disp None -> 30.0'); else both in words ('files made with ... ->
    mixed files of 2 settings (...)'). ``old`` may be an earlier mme's record, the words of :func:`identity_text`: its
    settings, read by the keys of :data:`READ_SETTINGS` in their order (a value may hold ', ' or a space), are
    compared as words; other words are compared whole."""
    if isinstance(old, str):
        if not (held := _MADE_WITH_WORDS.fullmatch(old)):
            return None if old == identity_text(now) else f"{old} -> {identity_text(now)}"
        old = {"made_with": dict(zip(READ_SETTINGS, held.groups()))}
        if "made_with" in now:
            now = {"made_with": {key: str(value) for key, value in now["made_with"].items()}}
    was, is_ = old.get("made_with"), now.get("made_with")
    if was is not None and is_ is not None and was.keys() == is_.keys():
        return ", ".join(f"{key} {was[key]} -> {is_[key]}" for key in was if was[key] != is_[key]) or None
    return None if old == now else f"{identity_text(old)} -> {identity_text(now)}"


class PretrainDataset(_VideoDataset):
    """Pre-training clips with the raw frames their tracks need, the ``motion`` of ``target_fn`` and the ``mask``
    of ``mask_fn``.

    ``track_length`` is the target's L (0 = only the clip's frames are decoded); ``track_reads`` the raw frames
    decoded from each tubelet start (default L + 1, every frame the tracks visit; fewer when the tracks come from
    a cache); ``flow_margin`` the output px of the video around the crop that each sample's ``flow_frames`` hold
    for the worker's flow (``TargetFn.flow_margin``; 0: none); ``target_fn(sample) -> motion`` (a dict of tensors)
    runs here, in the worker
    (``mme.motion.targets.make_target_fn``), and so does ``mask_fn(epoch, index) -> (N,) bool`` of the video read
    (``mme.train.pretrain.sample_mask``; a cube mask takes a Python loop per clip, which the training step's
    process would otherwise run for every clip of its batch). An item's ``video`` is the uint8 clip
    ``(3, T, H, W)``; the training step normalises it on its device (:func:`mme.data.transforms.normalize_clip`).
    """

    def __init__(self, cfg: DataConfig, target_fn: Callable[[Sample], dict] | None = None,
                 track_length: int = 0, seed: int = 0, track_reads: int | None = None,
                 mask_fn: Callable[[int, int], torch.Tensor] | None = None, flow_margin: int = 0):
        super().__init__(cfg, seed)
        self.target_fn = target_fn
        self.mask_fn = mask_fn
        self.track_length = track_length
        self.track_reads = track_reads
        self.flow_margin = flow_margin
        self._turns: dict[str, tuple[bool, bool, bool] | None] = {}  # (:meth:`_turn`'s)

    @functools.cached_property
    def cache_lookup(self) -> CacheLookup:
        """Where each video of the list has its track cache file (``target.cache_dir`` of ``target_fn``), not in its
        files' content: looked up in one listing of the folder (:func:`mme.motion.cache.listed_files`), a video it
        misses then on disk, as each read looks, until more videos lack one than the run may skip
        (:meth:`too_many_failures`: the refusal needs no more). Judged once, as the run starts
        (:func:`mme.train.pretrain.check_cache`); its failure advice later reads the same (:meth:`extract_advice`)."""
        from mme.motion.cache import listed_files

        cache_dir = self.target_fn.cfg.cache_dir
        listed, whole = listed_files(cache_dir)
        files = [self._cache_file(cache_dir, i, listed) for i in range(len(self))]
        missed = [i for i, found in enumerate(files) if found is None]
        lacking: list[int] = []
        unsought = 0
        if whole and not listed:  # a whole listing of no file: none on disk either
            lacking = missed
        else:
            for k, i in enumerate(missed):
                files[i] = self._cache_file(cache_dir, i)
                if files[i] is None:
                    lacking.append(i)
                    if self.too_many_failures(len(lacking)):
                        unsought = len(missed) - k - 1
                        break
        return CacheLookup(PackedStrings(files), lacking, unsought, whole)

    @functools.cached_property
    def extract_failed(self) -> dict[int, tuple[str, str]]:
        """The videos of the list without a track cache file (:attr:`cache_lookup`) that ``mme extract`` failed of
        themselves, by its reports of failures in ``target.cache_dir`` (:func:`mme.motion.extract.reported_failures`:
        a VideoError of the file there, unreadable or a frame over 8:1), each with its reason and report: a resumed
        extraction fails them again. A video whose file is not the one that failed (changed, replaced, gone) is not
        one, nor one that failed otherwise (missing then, its worker died, another error): an extraction tries it
        anew. One the folder's listing missed and the lookup did not look up on disk (``unsought``) is looked up."""
        from mme.motion.cache import same_source
        from mme.motion.extract import reported_failures

        cache_dir = self.target_fn.cfg.cache_dir
        reported = reported_failures(cache_dir)
        lookup = self.cache_lookup if reported else None
        lacking = set(lookup.lacking) if lookup else set()
        out: dict[int, tuple[str, str]] = {}
        for i, found in enumerate(lookup.files if lookup else ()):
            if found is not None:
                continue
            why, report, lasting = reported.get(os.path.realpath(self.path(i)), (None, None, None))
            if lasting is not None:
                with contextlib.suppress(OSError, VideoError):  # (gone, or no regular file: not the file that failed)
                    # one the listing missed, not looked up on disk (unsought), is there where it could not list
                    if same_source(lasting, self.path(i)) and (i in lacking or self._cache_file(cache_dir, i) is None):
                        out[i] = why, report
        return out

    def _cache_file(self, cache_dir: str, i: int, listed: frozenset[tuple[str, ...]] | None = None) -> str | None:
        """The track cache file of video ``i`` under ``cache_dir`` (in ``listed``, else on disk), None where none."""
        from mme.motion.cache import find_cache_file

        try:
            return str(find_cache_file(cache_dir, self.path(i), listed))
        except VideoError:
            return None

    @functools.cached_property
    def cache_probes(self) -> list[tuple[str, str]]:
        """The video path and cache file of :data:`CACHE_PROBES` videos spread evenly over those of the list with a
        cache file (:attr:`cache_lookup`; every one where fewer), on which the cache's settings are judged."""
        files = self.cache_lookup.files
        held = [i for i, found in enumerate(files) if found is not None]
        return [(self.path(held[k]), files[held[k]]) for k in evenly_spread(len(held), CACHE_PROBES)]

    @functools.cached_property
    def _probe_reads(self) -> list[tuple[str, str, dict | None, str | None, str | None]]:
        """The video path and cache file of each probed video (:attr:`cache_probes`), in the list's order, with the
        file's meta and the kind and why of each read's failing it before its settings count
        (:func:`~mme.motion.cache.cache_meta_and_refusal`). Each (video, file) pair read once, that of a video the
        list repeats too, as :attr:`cache_lookup` is made once: each failure check past the fraction gives the advice
        again."""
        from mme.motion.cache import cache_meta_and_refusal

        probes = self.cache_probes
        read = {probe: cache_meta_and_refusal(probe[1], probe[0]) for probe in dict.fromkeys(probes)}
        return [(path, found, *read[path, found]) for path, found in probes]

    @property
    def current_probes(self) -> list[tuple[str, str, dict]]:
        """The video path, cache file and meta of each probed video whose cache file this mme made and can read: the
        files whose settings and orientation the run reads, judged on each (:func:`mme.train.pretrain.check_cache`), and
        a resumed extraction compares its settings with."""
        return [(path, found, meta) for path, found, meta, kind, _ in self._probe_reads if kind is None]

    @property
    def refused_probes(self) -> list[tuple[str, str, str, str]]:
        """The video path, cache file, kind of refusal (of :data:`mme.motion.cache.REFUSALS`) and reason of each
        probed one that each read fails as its video's failure before its settings count (unreadable, made by an
        earlier mme, or of another version of its video), and a resumed extraction makes again."""
        return [(path, found, kind, why) for path, found, _, kind, why in self._probe_reads if kind is not None]

    def cache_file_refusal(self, path: str, found: str, meta: dict, remake: str | None = None) -> ConfigError | None:
        """Why this run does not read the cache file ``found`` (of ``meta``) of the video at ``path``, else None:
        settings the run cannot read (:func:`mme.motion.cache.check_settings`), or its video's frames turned otherwise
        than the run turns them (:func:`mme.motion.cache.check_orientation`), advising ``remake`` where given. The
        video is opened only where the file's ``--orientation`` is not ``data.orientation`` (without a display matrix
        both turn it alike), once (:meth:`_turn`). A video that will not open is its own failure, skipped by the run,
        not the cache's."""
        from mme.motion.cache import check_orientation, check_settings

        try:
            if self.track_length:  # (a target of no tracks reads none of its settings)
                check_settings(meta, found, self.target_fn.cfg, self.track_length, self.cfg.img_size, remake)
            if meta.get("orientation", "coded") != self.cfg.orientation and (turn := self._turn(path)) is not None:
                check_orientation(meta, found, turn, remake)
        except ConfigError as e:
            return e
        return None

    def _turn(self, path: str) -> tuple[bool, bool, bool] | None:
        """How this run turns the frames of the video at ``path`` (:attr:`~mme.data.video_reader.VideoReader.turn`),
        None where it will not open: each video opened once, by the start check, whose advice judges it again."""
        if path not in self._turns:
            self._turns[path] = None
            with contextlib.suppress(VideoError), self.open(path) as reader:
                self._turns[path] = tuple(reader.turn)
        return self._turns[path]

    def extract_advice(self) -> str:
        """The ``mme extract`` command that makes the track cache files the list's videos lack (``target.cache_dir``
        of ``target_fn``, a :class:`mme.motion.targets.TargetFn`) and resumes the cache: with the settings of its
        files (:attr:`current_probes`), since a resumed extraction refuses files made with others, where the run
        reads one of them; where it holds none, as this run reads them, at extract's default ``--short-side``, or the
        run's clip size where larger (the coarse-cache warning's advice, without ``--overwrite``). Where the run does
        not read one of them (2-step tracks under a run of 6, a phone video's file turned otherwise), which that
        resumed extraction would keep or refuse, that command with ``--overwrite``, saying why the first is not read;
        and so for a cache whose files were made with other settings each (a mixed cache, which no resumed extraction
        takes), naming two and their settings. Where an ``mme extract`` of the run's list writes the cache now (it
        holds a share of the list in its ``.locks``: :func:`mme.utils.writers_of`), which would refuse that command
        as in use: that it is writing it, to wait for its end (one of another list makes none of these files)."""
        from mme.motion.cache import command_flags, resume_settings
        from mme.motion.extract import shares_named

        if writing := writers_of(self.target_fn.cfg.cache_dir,
                                 lambda name: shares_named(name, self.cfg.list_file) is not None):
            return f"an mme extract ({said_holders(writing)}) is writing it now: wait for it to end, then run again"
        made = self.current_probes
        if (mixed := self.mixed_cache()) is not None:
            return (f"the cache is mixed: {mixed}, and a resumed extraction refuses files of other settings; "
                    f"{self.remake_advice()}")
        if (refusal := next(filter(None, (self.cache_file_refusal(*probe) for probe in made)), None)) is not None:
            return (f"the cache's files were made with settings this run cannot read ({refusal}), and a resumed "
                    f"extraction refuses files of other settings; {self.remake_advice()}")
        if made:
            settings = resume_settings(made[0][2], self.cfg.backend)
            return (f"`{self.extract_command(command_flags(**settings, overwrite=False))}` makes the track cache "
                    f"files these videos lack with the settings of the cache's {made[0][1]}, and resumes")
        return (f"`{self.extract_command(self._fine_flags(overwrite=False))}` makes the track cache files these "
                "videos lack, and resumes")

    def _fine_flags(self, overwrite: bool = True) -> str:
        """``mme extract``'s flags for a cache this run reads as its own targets (not coarser)."""
        from mme.motion.cache import extract_flags_as_fine

        return extract_flags_as_fine(self.target_fn.cfg, self.cfg, self.target_fn.geom.seed_stride,
                                     overwrite=overwrite)

    def remake_advice(self) -> str:
        """The ``mme extract`` command that makes every file of the cache again with this run's settings, said."""
        return f"`{self.extract_command(self._fine_flags())}` makes every file again with this run's settings"

    def mixed_cache(self, read: bool = False) -> str | None:
        """Where the probed files (:attr:`current_probes`) were made with other settings each (a mixed cache: two
        extractions of parts of the list into one folder), two of them and their settings ('<file> was made with
        seed_stride 8, flow dis-balanced, <file> with seed_stride 32, flow dis-fast'), else None: every setting a
        resumed extraction compares, or ``read``, those that change the tracks a run that reads them takes
        (:func:`read_settings`, the files' own whatever this run's ``data.backend``: its warning that they differ
        from one video to another)."""
        from mme.motion.cache import resume_settings

        made = self.current_probes
        settings = [read_settings(meta) if read else resume_settings(meta, self.cfg.backend) for _, _, meta in made]
        for (_, other, _), theirs in zip(made[1:], settings[1:]):
            if differ := [key for key in settings[0] if theirs[key] != settings[0][key]]:
                said = [settings_said({key: held[key] for key in differ}) for held in (settings[0], theirs)]
                return f"{made[0][1]} was made with {said[0]}, {other} with {said[1]}"
        return None

    def cache_identity(self) -> dict:
        """What says which track cache (``target.cache_dir``) this rank reads, beside another rank's copy of it (a
        node, its own: :func:`mme.train.distributed.check_same_inputs`, in words: :func:`identity_text`): the
        settings that change the tracks a run reads (:data:`READ_SETTINGS`) of its probed files
        (:attr:`current_probes`), ``made_with``; those of a mixed cache digested in the list's order, with how many
        were read (a probed video changed since, whose file is no longer read, changes the digest: the count says
        why); none where no file was read. The files' own settings, whatever this run's ``data.backend``
        (:func:`read_settings`), so it changes only where the files do."""
        settings = [read_settings(meta) for _, _, meta in self.current_probes]
        kinds = [held for k, held in enumerate(settings) if held not in settings[:k]]
        if len(kinds) == 1:
            return {"made_with": kinds[0]}
        return {"mixed_settings": len(kinds), "digest": lines_digest(map(settings_said, settings)),
                "files_read": len(settings)} if kinds else {}

    def _failure_advice(self, codes: torch.Tensor, failed: int) -> str:
        """:meth:`extract_advice` where most failures are of the track cache (the one dataset that reads it), else
        the advice of any dataset."""
        if 2 * self.failure_counts(codes).get("track cache", 0) > failed:
            advice = (f"{self.extract_advice()}; a re-run also makes again the files of videos changed since (the "
                      "warnings above name each file)")
            if damaged := self._damaged_cache_files(codes):
                named = ", ".join(found for found, _ in damaged[:2]) + (f" and {len(damaged) - 2} more"
                                                                        if len(damaged) > 2 else "")
                advice = (f"delete the track cache files that cannot be read, which a resumed extraction keeps (it "
                          f"reads their headers only): {named} ({damaged[0][1]}); then {advice}")
            return advice
        return super()._failure_advice(codes, failed)

    def _damaged_cache_files(self, codes: torch.Tensor) -> list[tuple[str, str]]:
        """The track cache files that cannot be read whole (:func:`mme.motion.cache.damaged`), with why, of the first
        :data:`CACHE_PROBES` videos that failed for their cache by ``codes`` (as :attr:`failure_codes`), where a
        resumed extraction keeps them: their header reads and they are of their video as it is and made as this mme
        makes them (:func:`~mme.motion.cache.cache_meta_and_refusal`; any other it makes again). Read at the failure
        check that stops the run only."""
        from mme.motion.cache import cache_meta_and_refusal, damaged

        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i in torch.nonzero(codes == REASONS.index("track cache")).flatten().tolist()[:CACHE_PROBES]:
            video = self.path(i)
            found = self._found_cache_file(i) or self._cache_file(self.target_fn.cfg.cache_dir, i)
            if found is None or found in seen or not os.path.isfile(found):  # (none: what the extraction advised makes)
                continue
            seen.add(found)
            meta, refused, _ = cache_meta_and_refusal(found, video)
            if meta is None or refused is not None or not os.path.isfile(video):
                continue
            if (why := damaged(found)) is not None:
                out.append((found, why))
        return out

    def extract_command(self, flags: str) -> str:
        """The ``mme extract`` of the list's videos into the run's track cache (``target.cache_dir``) with ``flags``."""
        return f"mme extract {self.checked_as} {command_option('--out', self.target_fn.cfg.cache_dir)} {flags}"

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        item = super().__getitem__(key)
        if self.mask_fn is not None:  # of the video read: a replacement shares the mask of that video's own item
            # of the epoch (its crop is drawn from the failed item's key, another)
            item["mask"] = self.mask_fn(_epoch_and_index(key)[0], item["index"])
        return item

    def sample(self, i: int, rng: np.random.Generator) -> Sample:
        """Decode and crop entry ``i`` into a :class:`Sample` (raises VideoError on a bad video)."""
        cfg = self.cfg
        path = self.path(i)
        with self.open(path) as reader:
            self._note_frames(i, reader.num_frames)
            if cfg.sampling == "segments":
                idx = sample_segments(reader.num_frames, cfg.num_frames, cfg.tubelet, rng, self.track_length,
                                      reads=self.track_reads)
            else:
                idx = sample_pretrain(reader.num_frames, cfg.num_frames, cfg.stride, cfg.tubelet,
                                      self.track_length, rng, self.track_reads)
            geom = self._train_geometry(reader.size, rng)
            frames, flow_frames, offset = read_with_margin(reader, idx.needed, geom, self.flow_margin)
            source = (*reader.size, reader.num_frames, reader.turn)
        return Sample(frames, idx.needed, idx.clip, idx.starts, geom, path, idx.track_length, source,
                      self._found_cache_file(i), flow_frames, offset)

    def _found_cache_file(self, i: int) -> str | None:
        """The track cache file of video ``i`` where :attr:`cache_lookup` found it, else None; a lookup not made (a
        run without a track cache, or no start check) is not made here, in a loader worker, for one video."""
        lookup = self.__dict__.get("cache_lookup")  # (cached_property's value, where computed)
        return None if lookup is None else lookup.files[i]

    def _load(self, i: int, rng: np.random.Generator) -> dict:
        sample = self.sample(i, rng)
        motion = self.target_fn(sample) if self.target_fn is not None else {}
        return {"video": to_clip(sample.frames_at(sample.clip)), "motion": motion}


class ClassificationDataset(_VideoDataset):
    """Labelled uint8 clips (whoever feeds a model normalises them on its device: ``normalize_clip``).
    ``mode='train'``: one clip with the training crop (``cfg.crop``, ``cfg.flip``).
    ``mode='test'``: ``cfg.test_clips`` evenly spaced clips × ``cfg.test_crops`` crops, ``video`` (V, 3, T, H, W)
    ordered clip-major (view ``v`` = clip ``v // crops``, crop ``v % crops``)."""

    def __init__(self, cfg: DataConfig, mode: str = "train", seed: int = 0, entries: list[ListEntry] | None = None):
        if mode not in ("train", "test"):
            raise ConfigError(f"ClassificationDataset mode must be 'train' or 'test', got {mode!r}")
        super().__init__(cfg, seed, need_labels=True, entries=entries)
        self.mode = mode
        self.substitutes = mode == "train"

    def _load(self, i: int, rng: np.random.Generator) -> dict:
        cfg = self.cfg
        with self.open(self.path(i)) as reader:
            n, size = reader.num_frames, reader.size
            self._note_frames(i, n)  # (a test set's too: mme embed's warning)
            if self.mode == "train":
                if cfg.sampling == "segments":
                    clips = [sample_segments(n, cfg.num_frames, cfg.tubelet, rng)]
                else:
                    clips = [sample_pretrain(n, cfg.num_frames, cfg.stride, cfg.tubelet, 0, rng)]
                geoms = [self._train_geometry(size, rng)]
            else:
                clips = sample_test_clips(n, cfg.num_frames, cfg.stride, cfg.tubelet, cfg.test_clips,
                                          segments=cfg.sampling == "segments")
                geoms = view_crops(size, cfg.img_size, cfg.test_crops)
            ids = np.unique(np.concatenate([c.needed for c in clips]))
            crops = reader.read(ids, each=geometry_of_each(*geoms))  # every view's frames in one pass
        crops = crops[:, None] if len(geoms) == 1 else crops  # (F, crops, h, w, 3)
        views = [to_clip(crops[np.searchsorted(ids, c.clip), k]) for c in clips for k in range(len(geoms))]
        video = views[0] if self.mode == "train" else torch.stack(views)  # (3, T, H, W) or (V, 3, T, H, W)
        return {"video": video, "label": int(self.entries.labels[i])}

