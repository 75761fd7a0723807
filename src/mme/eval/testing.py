"""Classification testing: multi-view prediction, top-k accuracy, confusion matrix and per-class accuracy.

Multi-view testing (VideoMAE/MME protocol, mme-method.md §10): every test video is seen as N temporal clips ×
M spatial crops (the dataset's ``test_clips`` × ``test_crops``); the model's softmax over each view is averaged
into one probability vector per video. Top-1/top-5 and the confusion matrix are computed on those averages.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from mme.data.lists import SHOWN
from mme.data.transforms import normalize_clip
from mme.errors import ConfigError, DataError, MMEError, OutOfMemory
from mme.utils import (
    Tally,
    absolute_path,
    atomic_path,
    atomic_write_json,
    error_reason,
    literal,
    literal_text,
    plural,
    progress_bar,
    read_json_object,
    reading,
    removing,
    writing,
)

if TYPE_CHECKING:
    from mme.data.lists import ListEntry
    from mme.models.checkpoint import Checkpoint

log = logging.getLogger(__name__)


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5),
                  voted: torch.Tensor | None = None) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest scores, for each k (k is capped at the number of
    classes, so top-5 of a 4-class problem is 1.0). Of tied scores the lower class id ranks first, as argmax
    (the confusion matrix's prediction) takes it. ``voted`` (kNN, ``(N, C)`` bool): the classes a neighbour voted
    for, which rank before the others, those being no prediction; a vote share or a probability that underflowed
    to 0 still ranks."""
    out = {}
    key = probs if voted is None else probs.masked_fill(~voted, -1)
    order = key.sort(dim=1, descending=True, stable=True).indices
    for k in ks:
        top = order[:, :min(k, probs.shape[1])]  # (N, k)
        hit = top == labels[:, None]
        if voted is not None:
            hit &= voted.gather(1, top)
        out[f"top{k}"] = int(hit.any(dim=1).sum()) / len(labels) if len(labels) else float("nan")  # (no float32 noise)
    return out


def top5_classes(report: dict[str, Any]) -> int:
    """The classes a :func:`classification_report`'s top-5 ranks among: those of its model's training labels where
    it records them (``trained_classes``: a head of 13 classes fit on the labels {0, 5, 9, 12} ranks those 4 first,
    a kNN votes for them alone), else all of its classes."""
    return min(len(report["class_names"]), report.get("trained_classes") or len(report["class_names"]))


def trivial_top5(report: dict[str, Any]) -> bool:
    """Whether a :func:`classification_report`'s top-5 says nothing: of 5 classes or fewer (:func:`top5_classes`)
    every class is in the top 5 (1.0 by :func:`topk_accuracy`'s cap; a kNN vote's can be less: a class no neighbour
    voted for is no guess)."""
    return top5_classes(report) <= 5 and report["top5"] == 1.0


def top5_said(report: dict[str, Any]) -> str:
    """'top-5 X%' of a :func:`classification_report`, or '--' where it says nothing (:func:`trivial_top5`)."""
    if trivial_top5(report):
        n = top5_classes(report)
        return f"top-5 -- ({n} classes{' trained on' if n < len(report['class_names']) else ''})"
    return f"top-5 {100 * report['top5']:6.2f}%"


CONFUSION_CELLS = 25_000_000
"""The most cells of a report's confusion matrix (5000 classes: 200 MB of int64, more as JSON): beyond them the
report records none (``null``), with a warning; its other figures are counted class by class."""


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts, ``(num_classes, num_classes)`` int64."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def check_class_names(what: str, class_names: list[str] | None, num_classes: int) -> None:
    """A DataError where ``class_names`` (given) names another count than ``num_classes`` (the per-class figures
    were filed under the first names alone, the others dropped, or names left over, unsaid)."""
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"{what}: class_names has {len(class_names)} names for num_classes={num_classes}; give one "
                        "name per class")


def classification_report(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None,
                          voted: torch.Tensor | None = None, trained_classes: int | None = None) -> dict[str, Any]:
    """Top-1/top-5, per-class accuracy (recall; None for a class absent from ``labels``), mean class accuracy
    and the confusion matrix of ``probs (N, C)`` against ``labels (N,)``, as JSON-serialisable values
    (``voted``: see :func:`topk_accuracy`; ``trained_classes``: the number of distinct labels the model was fit
    on, where known: :func:`top5_classes`). ``probs`` are ranked per row, so log-probabilities rank as their
    probabilities (the linear probe's, whose probabilities underflow). DataError for non-finite scores, which rank
    as no class."""
    probs = torch.as_tensor(probs, dtype=torch.float64)  # (kNN vote shares below float32's range keep their rank)
    labels = torch.as_tensor(labels, dtype=torch.long)
    bad = int((~torch.isfinite(probs)).any(1).sum())
    if bad:
        raise DataError(f"classification report: {bad} of {len(probs)} rows of scores are not finite (NaN or "
                        "inf: the model's outputs overflowed or diverged)")
    from mme.data.lists import distinct_classes

    num_classes = probs.shape[1]
    check_class_names("classification report", class_names or None, num_classes)
    names = distinct_classes(list(class_names), "classification report's class_names") if class_names else \
        [str(c) for c in range(num_classes)]
    preds = probs.argmax(1)
    cm = confusion_matrix(preds, labels, num_classes) if num_classes ** 2 <= CONFUSION_CELLS else None
    if cm is None:  # (a head of 100001 classes: 80 GB)
        log.warning("classification report: no confusion matrix of %d classes (%d cells, more than %d); the other "
                    "figures are whole", num_classes, num_classes ** 2, CONFUSION_CELLS)
    support = torch.bincount(labels, minlength=num_classes).numpy()
    hits = torch.bincount(labels[preds == labels], minlength=num_classes).numpy()
    recall = [float(hits[c] / support[c]) if support[c] else None for c in range(num_classes)]  # by class id
    present = [r for r in recall if r is not None]
    return {
        **topk_accuracy(probs, labels, voted=voted),
        "mean_class_accuracy": float(np.mean(present)) if present else float("nan"),
        "num_samples": int(len(labels)),
        "per_class_accuracy": dict(zip(names, recall)),
        "confusion_matrix": None if cm is None else cm.tolist(),
        "class_names": names,
        "trained_classes": trained_classes,
    }


@literal_text()
def save_confusion_png(cm: np.ndarray | list, path: str | Path, class_names: list[str] | None = None,
                       title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (rows: true class, columns: predicted), written atomically; up to 20
    classes, each cell's count is written in it, and the row of a class without videos says 'no videos'."""
    from matplotlib.figure import Figure  # not pyplot, whose backend and figures are the process's (a notebook's)

    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = [] if n > 60 else [literal(c) for c in class_names] if class_names else [str(c) for c in range(n)]
    side = min(2 + 0.35 * n + 0.06 * max(map(len, names), default=0), 30)  # (7-point tick labels: ~0.06 in a letter)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    im = ax.imshow(rows, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # over the figure's width, wrapped to it (over the axes, pushed aside by long class names, a small matrix's was
    # cut off at the edge)
    fig.suptitle(literal(title) or f"confusion ({int(cm.sum())} videos, row-normalised)", wrap=True)
    if names:  # (none beyond 60 classes: unreadable)
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        if n <= 20:
            for i in range(n):
                if not cm[i].any():  # (an empty row read as a class never predicted right)
                    ax.text((n - 1) / 2, i, "no videos", ha="center", va="center", fontsize=7, color="grey")
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rows[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:  # (cut to what is drawn: names wider than their letters allow stay in)
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


@torch.no_grad()
def view_probabilities(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Per-view softmax averaged over views: ``video (B, V, 3, T, H, W) -> probs (B, C)`` float64 (a float32 softmax
    underflows to 0 for a class whose logit is ~100 below the top one's, float64's ~700: the classes still rank by
    their scores, not by class id)."""
    B, V = video.shape[:2]
    logits = model(video.flatten(0, 1))  # (B*V, C)
    return logits.double().softmax(-1).reshape(B, V, -1).mean(1)


READING_VERSION = 10
"""Of how :func:`build_test_set`'s views read a list's videos, recorded with mme embed's (and mme probe's) features so
that those read by an earlier rule are made again, not reused as up to date: bump it with any change that gives a video
other views or another verdict (the frames of the test views, which files are refused), in :data:`READING_BACKENDS`
where it changes some backends' alone and :data:`TEST_VIEWS_ALONE` where the test views alone (training runs record it
too: :func:`reading_changed`). 10: the opencv backend counts and reads past a grab that fails where frames follow, as
FFmpeg's decode from the start does (``_opencv_count`` in :mod:`mme.data.video`): a file cut short has the frames its
decoder held for reordering, an H.264 file with packets without a picture is read, and one damaged in its middle is a
decode error (before: each ended at the first failed grab, the damaged one a video of the frames before the damage, the
other a shorter or frameless one), and a file is read without seeking at or past its first frame whose timestamp is
not its index over the frame rate, and an MPEG program or transport stream without seeking at all (``_seeks_to``;
before: an MP4 whose header counted a frame more read from 49 of its 60 frames on as the frame before, an MP4 with gaps
in its timestamps frames 30 and 33 as others, a 120-frame MPEG-2 .mpg frames 30, 60 and 110 as others); 9: the opencv
backend reads the frame asked of a file whose container header counts fewer frames than it holds, or under 2 (an AVI
never finalised, a WebM written live), where OpenCV's seek stops short or does not seek (``_OpenCVReader._seek`` in
:mod:`mme.data.video`; before: as many frames early as the seek fell short), and a read from where its capture stands
(a test view from frame 0) decodes on without a seek (before: frames later on MPEG-TS); 8: an MPEG-TS or MPEG-PS whose
stream's codec parameters give no size (its video starts after FFmpeg's probe window) is read at its first frame's size
(:attr:`mme.data.pyav_reader._Index.size`; before: refused, its features a NaN row); 7: a file whose last packet with
data fails to decode has the frames the decoder held for reordering after it, as ``ffmpeg``'s decode
(:func:`mme.data.pyav_reader._decode`; before: fewer frames, so other views), and a file with a frame FFmpeg decodes
with errors and conceals is read by counting, on one thread, one read by counting from its indexing too (before: by
seek, a view's concealed frame up to 21 levels off the sequential decode's, and on frame threads otherwise from one read
to the next); 6: the pyav backend refuses a picture only where it counts one frame
(:func:`mme.data.pyav_reader.not_a_video`; before: a file of several frames opened by a picture demuxer, several PNGs
one after another, or an MP4 whose major brand is avif, was refused unread), an animated AVIF is read as its sequence by
pyav and refused by opencv, and a still AVIF is refused by what FFmpeg's MP4 demuxer lists
(:func:`mme.data.pyav_reader.still_image`), whatever its brand (before: the animated one read as its still main image,
one frame; one of major brand mif1 read as a one-frame video, an MP4 of one H.264 frame whose major brand says avif
refused), and a GIF or an APNG of one frame is refused as a still picture (before: read as a one-frame video, given a
row); 5: segment views' frames computed in integers (:func:`mme.data.sampling.sample_segments`; before: a float product,
a frame early where ⌊(i + k/N)·F/T⌋ is a whole number the product fell just under, e.g. frame 14 for 15); 4: an ICO and
a still AVIF are refused as still pictures (:func:`mme.data.pyav_reader.not_a_video`; before: read as one-frame videos,
given a row); 3: the opencv and decord backends probe with PyAV every file but one that begins as a video container or
raw stream (:func:`mme.data.pyav_reader.video_by_its_bytes`), so a still picture of any of FFmpeg's picture demuxers
(Sun raster, Radiance HDR, DPX, ...) named as a video is refused (before: only those of a short list of signatures; the
others read as one-frame videos, given a row); 2: strided view starts rounded down
(:func:`mme.data.sampling.sample_test_clips`; before: to the nearest, halves to even), and text files and still pictures
refused (:func:`mme.data.video.open_video`; before: read as frames); 1: recorded by no version."""


READING_BACKENDS = {3: ("opencv", "decord"), 7: ("pyav", "pyav-cuda"), 8: ("pyav", "pyav-cuda"), 9: ("opencv",),
                    10: ("opencv",)}
"""The backends (``data.backend``) whose reading a version of :data:`READING_VERSION` changed, where it changed some
only (others: every backend's). A bump adds its entry here where so."""
TEST_VIEWS_ALONE = (5,)
"""The versions of :data:`READING_VERSION` that changed the test views alone (:func:`build_test_set`'s, fine-tuning's
validation and tests), no training clip's frames and no video's verdict (the others changed those too). A bump adds
itself here where so."""


def reading_changed(version: int, backend: str, test_views: bool) -> str | None:
    """How reading a training run's videos with ``backend`` by this mme's rule differs from reading them by rule
    ``version`` (the run's recorded ``reading``: :func:`mme.rule_versions`), None where no version since changed the
    run's reading: another backend's alone (:data:`READING_BACKENDS`), or the test views alone
    (:data:`TEST_VIEWS_ALONE`) where the run reads none (``test_views``). A later mme's version may have changed it."""
    changed = [v for v in range(version + 1, READING_VERSION + 1)
               if backend in READING_BACKENDS.get(v, (backend,)) and (test_views or v not in TEST_VIEWS_ALONE)]
    by = f"by {plural(len(changed), 'version')} {', '.join(map(str, changed))}"
    if version > READING_VERSION:
        said = "a later mme's rule, which may have read some videos' frames or verdicts otherwise"
    elif not changed:
        return None
    elif set(changed) <= set(TEST_VIEWS_ALONE):
        said = f"other test views of some videos for its remaining validations and tests, {by}"
    else:
        said = f"other frames or verdicts of some videos for its remaining steps, {by}"
    return f"version {version} -> {READING_VERSION} ({said}: mme.eval.testing.READING_VERSION)"


def reading_as_now(version: object, backend: str | None) -> object:
    """A recorded reading version (:data:`READING_VERSION`) of test views read with ``backend`` (mme embed's
    features, the demo's rows) as this mme records it where no version since changed that reading
    (:func:`reading_changed`), else as recorded: such records are this mme's, not made again."""
    if isinstance(version, int) and reading_changed(version, backend, test_views=True) is None:
        return READING_VERSION
    return version


def build_test_set(source: str | Path, model_cfg, *, clips: int, crops: int, stride: int | None = None,
                   segments: bool = False, root: str = "", backend: str | None = None, orientation: str | None = None,
                   seed: int = 0, index_dir: str | None = None, checkpoint: Checkpoint | None = None,
                   entries: list[ListEntry] | None = None) -> Dataset:
    """The multi-view test set of ``source``: a list file (``path [label]`` lines, rows in list order) or one
    video file. Clip length, tubelet and crop size come from the encoder's ``model_cfg``; ``clips`` temporal
    clips (strided at ``stride``, or TSN ``segments``) × ``crops`` spatial crops per video; ``stride`` (or
    ``segments``), ``orientation`` and ``backend`` not given are those of the run that made ``checkpoint`` (read by
    ``read_checkpoint``), as ``mme embed`` takes them, else DataConfig's; ``index_dir``: the PyAV reader's frame
    indices (``data.index_dir``); ``entries``: those of the list ``source``, already read (``mme probe``'s: a list
    given through a pipe reads empty the second time).

    Unlabelled lists and single files read with the placeholder label 0 and ``labelled`` False, which
    :class:`GuardedTestSet` turns into -1. Failures are not capped here (callers report them per video)."""
    from mme.data.dataset import ClassificationDataset, DataConfig
    from mme.models.checkpoint import Checkpoint

    if checkpoint is not None:
        if not isinstance(checkpoint, Checkpoint):  # (a path: the file, not what it records)
            raise ConfigError(f"build_test_set: checkpoint= takes a Checkpoint, what read_checkpoint(path) returns, "
                              f"got {checkpoint!r}")
        stride, segments, orientation, backend = checkpoint.run_views(
            stride, segments, orientation, "build_test_set", ("stride= or segments=", "orientation=", "backend="),
            backend)
    listed = entries is not None
    if entries is None:
        entries, listed = _source_entries(Path(source))
    labelled = all(e.label is not None for e in entries)
    # ClassificationDataset takes labelled entries: the paths as given, read under ``root`` (so that a list's digest
    # is of its paths under the root, as training's: nodes mounting one list's videos at other roots agree,
    # distributed.check_same_inputs), with placeholder label 0 if none; not a list written of them, which cannot
    # hold every name a file system does (one that is not UTF-8, under a folder that is not).
    given = {k: v for k, v in (("stride", stride), ("orientation", orientation), ("backend", backend))
             if v is not None}
    cfg = DataConfig(list_file=str(source), num_frames=model_cfg.num_frames, img_size=model_cfg.img_size,
                     tubelet=model_cfg.tubelet_size, sampling="segments" if segments else "stride", test_clips=clips,
                     test_crops=crops, index_dir=index_dir, max_failure_fraction=1.0, root=root or "", **given)
    dataset = ClassificationDataset(cfg, mode="test", seed=seed,
                                    entries=entries if labelled else [replace(e, label=0) for e in entries])
    dataset.labelled = labelled
    # the list and root as the user gave them, for a command to run (`mme check`); none for one video
    dataset.checked_as = dataset.as_arguments([source], root) if listed else None
    return dataset


def _source_entries(source: Path) -> tuple[list[ListEntry], bool]:
    """The entries of :func:`build_test_set`'s ``source``: a list file's, or one of a video file; and whether it is a
    list (:func:`_is_list`, whose head is read once)."""
    from mme.data.lists import ListEntry, read_list

    with reading(source, DataError):  # (a folder on the way this user may not enter: EACCES)
        if source.is_dir():
            raise DataError(f"{source}: a folder, not a list file or video (`mme lists folder` lists a folder of "
                            f"class folders)")
        if not source.is_file():
            raise DataError(f"{source}: no such list file or video")
        listed = _is_list(source)
    # a video named on the command line is where it says, not under ``root``
    if listed:
        return read_list(source, strict=True)[0], True
    return [ListEntry(absolute_path(source))], False


def _is_list(source: Path) -> bool:
    """Whether the file ``source`` is read as a list file (else as one video)."""
    from mme.data.lists import LIST_EXTS, VIDEO_EXTS

    with open(source, "rb") as f:
        head = f.read(4096)
    # Containers have NUL bytes in their headers, text has none; YUV4MPEG2 (a text header, then raw pixels) is
    # told by its signature. An empty or non-UTF-8 list goes to the list reader, which says what is wrong with it.
    suffix = source.suffix.lower()
    return suffix in LIST_EXTS or (suffix not in VIDEO_EXTS and b"\0" not in head
                                   and not head.startswith(b"YUV4MPEG2"))


class GuardedTestSet(Dataset):
    """A test dataset (one that raises a failed video's error rather than substitute another: ``substitutes``
    False) whose failed videos yield ``{"index", "error"}``, so that every video of a test list is either
    predicted or reported. Out of memory as a video is read (:class:`~mme.errors.OutOfMemory`) is no failure of
    the video: raised, it stops the test."""

    def __init__(self, dataset: Dataset):
        if getattr(dataset, "substitutes", False):
            raise ValueError("a test set must report its failed videos, not replace them (substitutes=False)")
        self.dataset = dataset
        self.labelled = getattr(dataset, "labelled", True)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            item = self.dataset[i]
        except OutOfMemory:
            raise
        except MMEError as e:
            return {"index": i, "error": str(e)}
        return {"index": i, "video": item["video"], "label": int(item["label"]) if self.labelled else -1}


def collate_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch the good items of a :class:`GuardedTestSet` (``video`` (B, V, 3, T, H, W) or None, ``index``,
    ``label``) and list the failed ones under ``failed``."""
    from mme.data.dataset import in_shared_memory, stacked

    ok = [it for it in items if "error" not in it]
    return in_shared_memory({
        "video": stacked([it["video"] for it in ok]) if ok else None,
        "index": torch.tensor([it["index"] for it in ok], dtype=torch.long),
        "label": torch.tensor([it["label"] for it in ok], dtype=torch.long),
        "failed": [{"index": it["index"], "error": it["error"]} for it in items if "error" in it],
    })


def iter_test_batches(dataset: Dataset, indices=None, *, batch_size: int, num_workers: int, desc: str = "test",
                 progress: bool = True):
    """Batches (see :func:`collate_views`) of ``dataset`` items at ``indices`` (default all), in order, with a
    progress bar counting failures; the first :data:`~mme.data.lists.SHOWN` failures are warned about one by one,
    the later ones counted each time their number doubles and at the end (:class:`mme.utils.Tally`: a wrong
    ``--root`` on Kinetics' 240k videos is some 20 lines, not one per video). Under torchrun a rank's ``indices``
    are its share of the test, which its bar (rank 0's, where only rank 0 shows one) says it counts. A warning of more
    workers than cores names data.num_workers as the command running sets it (:func:`~mme.data.dataset.make_loader`,
    :func:`mme.utils.said_as`)."""
    from mme.data.dataset import make_loader, start_workers
    from mme.train.distributed import get_rank, get_world_size
    from mme.train.interrupts import ignore_in_worker

    guarded = GuardedTestSet(dataset)
    subset = guarded if indices is None else Subset(guarded, list(indices))
    # (a test's views draw nothing: the loader's seed for its workers comes from a generator of its own, not the
    # caller's global one)
    loader = make_loader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_views,
                        worker_init_fn=ignore_in_worker, generator=torch.Generator())
    failed, world = 0, get_world_size()
    counted = desc if world == 1 else f"{desc} (rank {get_rank()}'s share of {world})"
    tally = Tally(SHOWN)
    bar = progress_bar(start_workers(loader), len(loader), counted, "batch", show=progress)
    # (the pass over the batches closed here as this generator is, not left to the garbage collector, which drops an
    # exception of the workers' shutdown: a second Ctrl-C there, as in training's stream, mme.train.loop.micro_batches)
    with contextlib.closing(iter(bar)) as batches:
        for batch in batches:
            for f in batch["failed"]:
                since = tally.add()
                if since == 0:
                    log.warning("%s: video %d failed: %s%s", desc, f["index"], f["error"], tally.later)
                elif since:
                    log.warning("%s: %d more videos failed, up to video %d: %d so far", desc, since, f["index"],
                                tally.seen)
            failed += len(batch["failed"])
            bar.set_postfix(failed=failed, refresh=False)
            # a worker's tensors are in shared memory, each holding a file descriptor while it lives: callers keep
            # the labels and indices of every batch (20k descriptors over Kinetics' val set, past `ulimit -n`)
            yield {**batch, "index": batch["index"].clone(), "label": batch["label"].clone()}
    if tally.unsaid:
        log.warning("%s: %d more videos failed: %d in all", desc, tally.unsaid, tally.seen)


class Predictions(NamedTuple):
    probs: torch.Tensor
    """``(N_ok, C)`` softmax averaged over each video's views (float64: :func:`view_probabilities`)."""
    labels: torch.Tensor
    """``(N_ok,)`` ground truth."""
    index: torch.Tensor
    """``(N_ok,)`` dataset index of each row (increasing)."""
    views: int
    """Views per video (temporal clips × spatial crops)."""
    failures: list[dict[str, Any]]
    """``{"index", "error"}`` of every video that could not be decoded (left out of the rows)."""


@torch.no_grad()
def multiview_predict(model: torch.nn.Module, dataset: Dataset, *, indices=None, batch_size: int = 2,
                      num_workers: int = 0, device: str | torch.device = "cpu", precision: str = "fp32",
                      progress: bool = True, desc: str = "test") -> Predictions:
    """Softmax-averaged multi-view probabilities of the items at ``indices`` (default all) of a test
    ``dataset`` (items ``{"video": (V, 3, T, H, W), "label", "index"}``), in that order; failed videos are
    listed, not replaced (``probs`` is empty, 1-D, when no video was predicted). ``precision``: one already
    chosen ('fp32', 'bf16', 'fp16'; the tests after fine-tuning pass their run's), not 'auto', which
    ``extract_features`` and the CLI resolve: fp32 by default, the same predictions on every kind of CPU."""
    from mme.train.precision import CHOSEN_PRECISIONS, autocast

    if precision not in CHOSEN_PRECISIONS:
        raise ConfigError(f"multiview_predict's precision must be one of {list(CHOSEN_PRECISIONS)} (one already "
                          f"chosen), got {precision!r}")
    device = torch.device(device)
    model.eval().to(device)
    indices = range(len(dataset)) if indices is None else list(indices)
    # The rows go into tensors made once for the whole test, not one small tensor per batch: kept from batch to
    # batch, those sat in the space of each batch's freed large blocks, and malloc's heap grew past it without end
    # (about 100 MB per 1,000 videos).
    labels, index = (torch.empty(len(indices), dtype=torch.long) for _ in range(2))
    probs, failures, views, done = None, [], 0, 0
    for batch in iter_test_batches(dataset, indices, batch_size=batch_size, num_workers=num_workers, desc=desc,
                                   progress=progress):
        failures += batch["failed"]
        if batch["video"] is None:
            continue
        video = normalize_clip(batch["video"].to(device, non_blocking=True))
        views, rows = video.shape[1], slice(done, done + len(video))
        with autocast(precision, device):
            p = view_probabilities(model, video)
        if probs is None:
            probs = torch.empty(len(indices), p.shape[1], dtype=p.dtype)
        probs[rows], labels[rows], index[rows] = p, batch["label"], batch["index"]
        done = rows.stop
    if probs is None:  # every video failed, or none asked for (a rank without a share of a tiny test set)
        return Predictions(torch.zeros(0), labels[:0].clone(), index[:0].clone(), views, failures)
    if done < len(indices):  # (a view pickles its whole tensor: ranks gather these, unfilled rows and all)
        return Predictions(probs[:done].clone(), labels[:done].clone(), index[:done].clone(), views, failures)
    return Predictions(probs, labels, index, views, failures)


def merge_predictions(parts: list[Predictions]) -> Predictions:
    """One Predictions from the shards of several ranks, rows in dataset-index order."""
    index = torch.cat([p.index for p in parts])
    order = index.argsort()
    return Predictions(torch.cat([p.probs for p in parts])[order], torch.cat([p.labels for p in parts])[order],
                       index[order], max(p.views for p in parts),
                       sorted((f for p in parts for f in p.failures), key=lambda f: f["index"]))


def multiview_report(pred: Predictions, dataset: Dataset, class_names: list[str] | None = None) -> dict[str, Any]:
    """The multi-view test report: ``classification_report`` plus the views per video and the failed videos
    with their paths. DataError when no video could be tested."""
    failures = [{**f, "path": dataset.path(f["index"])} for f in pred.failures]
    if not len(pred.labels):
        raise DataError(f"multi-view test: no video could be tested; failures: {failures[:3]}")
    return {**classification_report(pred.probs, pred.labels, class_names), "views_per_video": pred.views,
            "failures": failures}


def short_videos(parts: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The :meth:`~mme.data.dataset._VideoDataset.short_videos` counts ``(short, read, fewest)`` of several ranks'
    reads (each rank reads its own share of the videos) as one: the sums, and the fewest frames of them all."""
    fewest = [f for s, _, f in parts if s]
    return sum(s for s, _, _ in parts), sum(r for _, r, _ in parts), min(fewest) if fewest else 0


def warn_short(dataset: Dataset, what: str, frozen: str, counts: tuple[int, int, int]) -> None:
    """Warn (the main rank) where videos read hold fewer raw frames than a clip spans: their views repeat their last
    frame, or TSN segments draw frames more than once (docs/evaluation.md), ``frozen`` (what is made of them:
    'features of frozen frames'), the line starting with ``what`` (the command, the split). ``counts``: ``(short,
    read, fewest)`` of every rank's reads (:func:`short_videos`)."""
    from mme.train import distributed as dist

    short, read, fewest = counts
    if not short or not dist.is_main():
        return
    cfg, window = dataset.cfg, dataset.clip_window
    segments = cfg.sampling == "segments"
    how = f"{cfg.num_frames} frames in TSN segments" if segments else f"{cfg.num_frames} frames at stride {cfg.stride}"
    log.warning("%s: %s fewer raw frames than the %d a clip spans (%s; the shortest holds %d): %s, %s%s",
                what, dataset.short_said(short, read), window, how, fewest, dataset.short_clip_effect(fewest, short),
                frozen, f" (`mme check {listed} --min-frames {window}` names {plural(short, 'it', 'them')})"
                if (listed := dataset.checked_as) else "")


SPLITS = ("val", "test")
"""The lists a fine-tuning run tests at its end (``task.val_list``, ``task.test_list``), each with its report."""


def report_files(name: str) -> tuple[str, str]:
    """The files :func:`save_report` writes for the split ``name``: its report and its confusion matrix."""
    return f"{name}.json", f"{name}_confusion.png"


REPORT_KEYS = ("top1", "confusion_matrix", "class_names", "views_per_video")
"""Keys every report of :func:`save_report` holds: a JSON file without them is no test report of mme's."""


def read_report(path: str | Path) -> dict | None:
    """The test report at ``path`` (:func:`save_report`'s); None where there is none, or the file is not one (a
    user's own ``test.json`` in a folder a run was given: the home folder, a project's)."""
    return read_json_object(path, REPORT_KEYS)


def drop_report(out_dir: str | Path, name: str, then: str) -> bool:
    """Remove the report of the split ``name`` from ``out_dir`` (one that would read as another test's); whether
    there was one. A file of that name that is no report (:func:`read_report`) is left, and its confusion matrix's
    name too. A file that cannot be removed is an MMEError naming it, the reason and ``then`` (what the report is,
    how to go on: :func:`mme.utils.removing`)."""
    paths = [Path(out_dir, f) for f in report_files(name)]
    if read_report(paths[0]) is None:
        return False
    for path in paths:
        with removing(path, then):
            path.unlink(missing_ok=True)
    return True


def save_report(report: dict[str, Any], out_dir: str | Path, name: str, then: str = "") -> None:
    """A one-line summary in the log, then ``<name>.json`` and ``<name>_confusion.png`` in ``out_dir``. The summary
    comes first, so the figures outlive a report that cannot be written (a full disk): an MMEError naming the file,
    the reason, the MiB free where it may be for want of space and ``then`` (:func:`mme.utils.writing`). The
    confusion matrix is a figure only: one that cannot be written or drawn is warned about."""
    out_dir = Path(out_dir)
    data, picture = report_files(name)
    failed = len(report["failures"])
    log.log(logging.WARNING if failed else logging.INFO, "%s: top-1 %.2f%%  %s  mean class accuracy %.2f%%  (%d "
            "videos x %d views, %d failed%s)", name, 100 * report["top1"], top5_said(report),
            100 * report["mean_class_accuracy"], report["num_samples"], report["views_per_video"], failed,
            f", listed in {data}" if failed else "")
    with writing(out_dir / data, then):
        atomic_write_json(out_dir / data, report)
    if report["confusion_matrix"] is None:  # (too many classes: classification_report warned)
        with removing(out_dir / picture, then, warn=True):  # an earlier test's would read as this one's
            (out_dir / picture).unlink(missing_ok=True)
        return
    try:
        save_confusion_png(report["confusion_matrix"], out_dir / picture, report["class_names"])
    except (OSError, RuntimeError) as e:  # RuntimeError: matplotlib's drawing failed (a font error, ...)
        with contextlib.suppress(OSError):  # an earlier test's would read as this one's
            (out_dir / picture).unlink(missing_ok=True)
        log.warning("%s: could not be written (%s); %s is whole without it", out_dir / picture, error_reason(e), data)
