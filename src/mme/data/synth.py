"""``mme synth``: a synthetic motion dataset whose label is carried by motion only.

Each video shows one textured object (a random ellipse or polygon with a random two-colour texture) on a random
textured background. The class fixes only the *kind* of motion (translation in four directions, rotation
cw/ccw, growing/shrinking, horizontal/vertical oscillation); speeds are random within a range. Appearance
(shape, texture, colours, size, position, orientation) is drawn independently of the class and describes the
*middle* frame, so the middle frame's distribution is the same for every class: a single frame says nothing
about the label. (At other frames, position and size drift with the motion, as they must.)

``motion`` says what moves: ``"object"`` (the object over a still background, about 10 % of the frame) or
``"scene"`` (the whole view: the class motion is a camera pan, roll or zoom of the same kind of scene, so every
region of the frame carries it). Both are the same classes, speeds and appearance draws.

Options towards real footage's statistics (the ``demo`` preset uses both; docs/experiments.md, "Real footage"):
``texture="dead_leaves"`` (occluding shapes of every size: flat regions cut by sharp edges, as in photographs)
and ``objects=N`` distractors per video that move on their own over the view.

A named preset fixes a whole design (:data:`PRESETS`); arguments given as well replace the preset's::

    mme synth data/demo --preset demo                      # mme demo's data (also its tests' and benchmarks')
    mme synth /tmp/small --preset demo --classes 4 --videos-per-class 6 --size 64

Output (``out_dir``)::

    videos/<class>/<class>_<k>.mp4   H.264 (PyAV), ``size``² pixels, ``num_frames`` frames
    train.txt val.txt test.txt       VideoMAE lists, paths relative to out_dir
    classes.json                     class names, index = label
    params.json                      the true motion (and appearance) of every video, keyed by its list path;
                                     with a camera jitter, its sway too (``camera_sway``, :func:`sway_at`)
    .lists-written.json              the sha256 of the lists and params.json synth wrote there (:data:`LISTS_WRITTEN`)

A rerun into the same folder keeps each video whose recorded parameters and file hash (``params.json``'s ``sha256``,
or those an interrupted run kept every few seconds in ``.params-progress.json``) are those it would make, so an
interrupted ``mme synth`` or ``mme demo`` resumes without encoding them again; a video missing or damaged is made
again, and so is one an earlier mme recorded otherwise (without its camera sway, or without some of its settings).
Videos recorded with other settings (:func:`_settings_of`, of those each record holds: another seed, size, texture),
which a run may be training on, are made again only with ``overwrite`` (``--overwrite``): without it such a folder
is refused before any video is made, naming the settings that differ. A video's split follows its number within its
class and the counts (test takes the lowest), so a rerun with more videos per class or other ``splits`` moves kept
videos (earlier training ones into test): it warns, naming how many move from which split to which. Its lists,
``classes.json`` and ``params.json`` replace an earlier run's (a list or params.json whose sha256 its runs record in
``.lists-written.json``; where that record holds none, of an earlier mme, a list of its videos only, a params.json
of its videos' records only); a folder holding ones it did not write (a user's, of ``mme lists``, a list of synth's
edited: a subset, a comment line) is refused before any video is made.

Deterministic for a seed: the same arguments and package versions give the same bytes whatever the worker count,
thread settings or process: one RNG per video, single-threaded x264 with its SIMD capped at AVX2 (its AVX-512 code
is not deterministic, :func:`_x264_options`), and OpenCV on one thread without IPP, whose optimised kernels may
round floats differently with memory alignment (and so with a process's allocation history). Checked on an AVX2 CPU
and on an AVX-512 one (AMD Zen 4), where the bytes stay the same with numpy's and OpenCV's AVX-512 code switched off
(``NPY_DISABLE_CPU_FEATURES``, ``OPENCV_CPU_DISABLE``: their AVX2 code, as an AVX2 CPU runs it; tests/test_synth.py),
so the two kinds give the same bytes as far as those libraries' choice of code decides.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import NoReturn

import av
import cv2
import numpy as np

from mme.data.lists import CLASSES_FILE, ListEntry, classes_text, list_text, parse_list, read_classes, text_lines
from mme.errors import ConfigError, DataError, MMEError
from mme.utils import (
    absolute_path,
    atomic_path,
    atomic_write_text,
    check_output,
    check_seed,
    counted,
    cpu_features,
    in_workers,
    lock_folder,
    opencv_settings,
    plural,
    read_text,
    remove_stale_temps,
    removing,
    unlock_folder,
    usable_cores,
    writing,
)

MOTIONS = ("object", "scene")
TEXTURES = ("two_colour", "high_contrast", "dead_leaves")
CLASSES = ("translate_right", "translate_left", "translate_up", "translate_down", "rotate_cw", "rotate_ccw",
           "grow", "shrink", "oscillate_horizontal", "oscillate_vertical")
SPLITS = ("train", "val", "test")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthDataset:
    """Where :func:`generate_synth` wrote things."""

    root: Path
    lists: dict[str, Path]
    """Split name -> list file (paths relative to ``root``)."""
    classes: list[str]
    params_file: Path

    def summary(self) -> str:
        """What ``mme synth`` prints: the videos per split and where they are."""
        counts = {split: len(text_lines(read_text(path))) for split, path in self.lists.items()}
        return (f"wrote {sum(counts.values())} videos of {len(self.classes)} classes to {self.root} "
                f"(lists: {counts}; classes.json, params.json)")


def _texture(h: int, w: int, rng: np.random.Generator, texture: str = "two_colour") -> np.ndarray:
    """A random texture (h, w, 3) uint8: occluding shapes of every size (:func:`dead_leaves`), or smooth noise at
    a random scale (:func:`smooth_noise`) mixing two colours (:func:`two_colours`)."""
    if texture == "dead_leaves":
        return dead_leaves(h, w, rng)
    return two_colours(smooth_noise(h, w, rng, rng.uniform(1.5, 6.0)), rng, texture)


DEAD_LEAF_RADII = (3.0, 0.3)
"""The smallest leaf radius in px and the largest as a fraction of the texture's short side."""


def dead_leaves(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A dead-leaves texture (h, w, 3) uint8, the classic model of natural-image statistics: opaque ellipses of
    random muted colour, aspect and angle, radii drawn from p(r) ∝ r⁻³ (scale-invariant: flat regions cut by
    sharp edges, and detail at every scale), each drawn over the ones before until the view is covered about four
    times; then a smooth random shading (±20 %, as light varies over a scene) and a slight blur (a camera's
    optics)."""
    r0, r1 = DEAD_LEAF_RADII[0], DEAD_LEAF_RADII[1] * min(h, w)
    mean_area = 2 * math.pi * math.log(r1 / r0) / (r0 ** -2 - r1 ** -2)  # E[pi r^2] under p(r) ∝ r^-3 on [r0, r1]
    n = int(4 * h * w / mean_area)
    radii = (r0 ** -2 - rng.random(n) * (r0 ** -2 - r1 ** -2)) ** -0.5  # inverse CDF
    centres = rng.uniform(0, 1, (n, 2)) * (w, h)
    aspects, angles = rng.uniform(0.3, 1.0, n), rng.uniform(0, 180, n)
    chroma = rng.standard_normal((n, 3))  # muted colours, as in most footage: a grey level and a tint of <= 60
    chroma *= rng.uniform(0, 60, (n, 1)) / np.linalg.norm(chroma, axis=1, keepdims=True)
    colours = np.clip(rng.uniform(20, 235, (n, 1)) + chroma, 0, 255)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.uniform(0, 255, 3).astype(np.uint8)
    for (cx, cy), r, aspect, angle, colour in zip(centres, radii, aspects, angles, colours):
        cv2.ellipse(img, (round(cx * 16), round(cy * 16)), (round(r * 16), round(r * aspect * 16)), angle, 0, 360,
                    colour.tolist(), -1, cv2.LINE_AA, 4)
    shade = cv2.resize(smooth_noise(h // 8 + 1, w // 8 + 1, rng, 2.0), (w, h), interpolation=cv2.INTER_LINEAR)
    shade = 1 + 0.2 * shade / (np.abs(shade).max() + 1e-6)
    return np.clip(cv2.GaussianBlur(img.astype(np.float32) * shade[..., None], (0, 0), 0.6), 0, 255).astype(np.uint8)


def smooth_noise(h: int, w: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Gaussian-blurred white noise (h, w) at blur ``scale``, 2·``scale`` and 4·``scale`` px, equally strong."""
    noise = np.zeros((h, w), np.float32)
    for k in (1, 2, 4):
        noise += cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), scale * k) * k
    return noise


def two_colours(pattern: np.ndarray, rng: np.random.Generator, texture: str = "two_colour") -> np.ndarray:
    """A pattern (h, w) mixing two random colours: (h, w, 3) uint8.

    "two_colour": two independent random colours, the pattern's range stretched to [0, 1] (faint on average, and
    the mean colour varies widely between videos). "high_contrast": the pattern pushed towards two tones (a
    sigmoid of its z-score) mixing two colours symmetric about mid-grey that differ by 120-254 in at least one
    channel, so the pattern is strong and every texture's mean colour is near grey.
    """
    if texture == "high_contrast":
        mix = 1 / (1 + np.exp(-2 * (pattern - pattern.mean()) / (pattern.std() + 1e-6)))
        d = rng.uniform(-1, 1, 3)
        d *= rng.uniform(60, 127) / np.abs(d).max()
        c1, c2 = 127.5 + d, 127.5 - d
    else:
        mix = (pattern - pattern.min()) / (pattern.max() - pattern.min() + 1e-6)
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return (c1 * (1 - mix[..., None]) + c2 * mix[..., None]).astype(np.uint8)


ZOOM_RANGE = (1.6, 2.5)
"""The zoom of the grow and shrink classes over a whole video (its last frame's scale over its first's), drawn in
this range: half of it, in log scale, on each side of the middle frame."""
PAN_RANGE = (0.3, 0.5)
"""How far the translate classes move over a whole video, in view sides, drawn in this range (half on each side of
the middle frame)."""
OSCILLATION_RANGE = (0.1, 0.2)
"""The amplitude of the oscillate classes, in view sides, drawn in this range."""


def draw_params(label: int, size: int, num_frames: int, rng: np.random.Generator) -> dict:
    """Appearance and motion of one video. Every draw is made for every class (so appearance is identically
    distributed across classes); the label only selects which motion is switched on and its sign."""
    name = CLASSES[label]
    span = num_frames - 1
    p = {
        "label": label, "class": name,
        "shape": "ellipse" if rng.random() < 0.5 else "polygon",
        "vertices": int(rng.integers(3, 8)),
        "aspect": float(rng.uniform(0.5, 1.0)),
        "radius": float(rng.uniform(0.12, 0.22) * size),  # at the middle frame
        "cx": float(rng.uniform(0.25, 0.75) * size), "cy": float(rng.uniform(0.25, 0.75) * size),
        "angle": float(rng.uniform(0, 360)),
        "vx": 0.0, "vy": 0.0, "omega": 0.0, "log_scale_rate": 0.0, "osc_ax": 0.0, "osc_ay": 0.0,
        "osc_period": float(rng.uniform(12, 24)), "osc_phase": float(rng.uniform(0, 2 * math.pi)),
    }
    speed = rng.uniform(*PAN_RANGE) * size / span  # px/frame
    omega = rng.uniform(90, 270) / span  # deg/frame
    rate = math.log(rng.uniform(*ZOOM_RANGE)) / span  # log-scale per frame
    amp = rng.uniform(*OSCILLATION_RANGE) * size  # px
    if name.startswith("translate"):
        p["vx"], p["vy"] = {"right": (speed, 0.0), "left": (-speed, 0.0), "up": (0.0, -speed),
                            "down": (0.0, speed)}[name.split("_")[1]]
    elif name.startswith("rotate"):
        p["omega"] = omega if name == "rotate_cw" else -omega
    elif name in ("grow", "shrink"):
        p["log_scale_rate"] = rate if name == "grow" else -rate
    else:
        p["osc_ax" if name.endswith("horizontal") else "osc_ay"] = amp
    return p


def _sprite(p: dict, rng: np.random.Generator, side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The object in its own frame: texture (side, side, 3) and alpha (side, side) float32, unit radius =
    side/2 - 2 around the centre."""
    tex = _texture(side, side, rng, p.get("texture", "two_colour"))
    mask = np.zeros((side, side), np.uint8)
    c, r = side / 2, side / 2 - 2
    if p["shape"] == "ellipse":
        cv2.ellipse(mask, (int(c * 16), int(c * 16)), (int(r * 16), int(r * p["aspect"] * 16)), 0, 0, 360, 255,
                    -1, cv2.LINE_AA, 4)
    else:
        ang = np.sort(rng.uniform(0, 2 * np.pi, p["vertices"]))
        rad = r * rng.uniform(0.6, 1.0, p["vertices"])
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return tex, mask.astype(np.float32) / 255.0


def motion_at(p: dict, t: int, num_frames: int) -> tuple[float, float, float, float]:
    """The class motion of :func:`draw_params`'s ``p`` at frame ``t`` relative to the middle frame (where
    appearance was drawn): ``(dx, dy)`` px, log-scale, angle in degrees (positive = clockwise on screen, y points
    down). Shared with mme.data.real_motion, which lays the same motions over real footage."""
    tm = t - (num_frames - 1) / 2
    osc = math.sin(2 * math.pi * tm / p["osc_period"] + p["osc_phase"]) - math.sin(p["osc_phase"])
    return (p["vx"] * tm + p["osc_ax"] * osc, p["vy"] * tm + p["osc_ay"] * osc, p["log_scale_rate"] * tm,
            p["omega"] * tm)


def _place(tex: np.ndarray, alpha: np.ndarray, p: dict, canvas: np.ndarray, cx: float, cy: float, log_scale: float,
           angle: float) -> np.ndarray:
    """``canvas`` (float32) with the sprite drawn over it, centred at (cx, cy), scaled and rotated."""
    side = tex.shape[0]
    a = cv2.getRotationMatrix2D((side / 2, side / 2), -(p["angle"] + angle),
                                p["radius"] * math.exp(log_scale) / (side / 2 - 2))
    a[:, 2] += (cx - side / 2, cy - side / 2)
    h, w = canvas.shape[:2]
    obj = cv2.warpAffine(tex, a, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
    weight = cv2.warpAffine(alpha, a, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    return canvas * (1 - weight) + obj * weight


def scene_view(still: np.ndarray, origin: tuple[float, float], size: int, dx: float, dy: float, log_scale: float,
               angle: float) -> np.ndarray:
    """The ``size``² view of a camera that pans by ``(dx, dy)`` px, zooms by ``exp(log_scale)`` and rolls by
    ``angle`` degrees (clockwise) about the centre of the middle frame's view, whose top-left corner is at
    ``origin`` in ``still``; borders reflect. The scene motion of :func:`render` and of the real-footage clips
    (mme.data.real_motion), so both are one motion, and the camera sway of :func:`render`'s object motion."""
    a = scene_matrix(origin, size, dx, dy, log_scale, angle)
    return cv2.warpAffine(still, a, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def scene_matrix(origin: tuple[float, float], size: int, dx: float, dy: float, log_scale: float,
                 angle: float) -> np.ndarray:
    """:func:`scene_view`'s affine map (2, 3) from still to view pixels."""
    # Content at still point q appears at c + R(angle) * s * (q - c') + (dx, dy), c' = origin + c: the scene
    # pans by (dx, dy), zooms by s and rolls by `angle` about the frame centre.
    c = size / 2
    ox, oy = origin
    a = cv2.getRotationMatrix2D((c + ox, c + oy), -angle, math.exp(log_scale))
    a[:, 2] += (dx - ox, dy - oy)
    return a


def scene_reach(num_classes: int = len(CLASSES)) -> float:
    """How far from the middle frame's view centre, along x or y, the pixels of a scene-motion view reach over a
    whole video, at most, in view sides, for any motion of the first ``num_classes`` classes
    (:func:`draw_params`): the half side plus a pan's half travel (<= 0.75) or an oscillation's two amplitudes
    (<= 0.9); a roll's corners, sqrt(2)/2; the half side at the strongest zoom out, 1/sqrt(max zoom) at a video's
    ends (0.79)."""
    reach = {"translate": 0.5 + PAN_RANGE[1] / 2, "rotate": math.sqrt(0.5), "grow": 0.5 * math.sqrt(ZOOM_RANGE[1]),
             "shrink": 0.5 * math.sqrt(ZOOM_RANGE[1]), "oscillate": 0.5 + 2 * OSCILLATION_RANGE[1]}
    return max(reach[name.split("_")[0]] for name in CLASSES[:num_classes])


def draw_sway(rng: np.random.Generator) -> dict:
    """The camera sway's angular frequencies (rad/frame) and phases, x then y, for :func:`sway_at`."""
    return {"freq": rng.uniform(0.05, 0.2, 2).tolist(), "phase": rng.uniform(0, 2 * np.pi, 2).tolist()}


def sway_at(sway: dict, camera_jitter: float, t: int) -> np.ndarray:
    """The ``(x, y)`` px by which the camera sway of :func:`draw_sway` moves the view's content at frame ``t``:
    ``camera_jitter`` times a sine per axis, smooth and sub-pixel."""
    return camera_jitter * np.sin(np.asarray(sway["freq"]) * t + np.asarray(sway["phase"]))


def draw_movers(size: int, num_frames: int, count: int, rng: np.random.Generator) -> list[dict]:
    """``count`` distractors for ``p["movers"]``: objects of the kind :func:`draw_params` draws (radius 0.06-0.15
    ``size``), anywhere in the view at the middle frame, each moving on its own at a constant velocity in a random
    direction (up to the class pans' top speed, px/frame) and turning at up to 90° over the video (deg/frame)."""
    span = num_frames - 1
    out = []
    for _ in range(count):
        heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.5) * size / span
        out.append({"shape": "ellipse" if rng.random() < 0.5 else "polygon", "vertices": int(rng.integers(3, 8)),
                    "aspect": float(rng.uniform(0.5, 1.0)), "radius": float(rng.uniform(0.06, 0.15) * size),
                    "cx": float(rng.uniform(0, size)), "cy": float(rng.uniform(0, size)),
                    "angle": float(rng.uniform(0, 360)), "vx": speed * math.cos(heading),
                    "vy": speed * math.sin(heading), "omega": float(rng.uniform(-90, 90)) / span})
    return out


SCENE_CANVAS = 3
"""A scene-motion view is cut from a still canvas this many times its side, centred on the middle frame's view."""


def max_scene_jitter(size: int) -> float:
    """The largest ``camera_jitter`` (px) whose sway keeps a scene-motion view of side ``size`` inside its canvas:
    at the strongest zoom out, by 1/sqrt(max zoom) at a video's ends, the view's half side plus the sway, enlarged
    by it, must fit in the canvas's half side. The other classes' views fit then too: pans (<= 0.4 size each way:
    an oscillation's two amplitudes) and rolls (corners at sqrt(2) (size/2 + sway) from the centre); without sway,
    each class's reach is :func:`scene_reach`'s."""
    return SCENE_CANVAS * size / 2 / math.sqrt(ZOOM_RANGE[1]) - size / 2


def render(p: dict, size: int, num_frames: int, rng: np.random.Generator,
           camera_jitter: float = 0.0) -> tuple[np.ndarray, dict]:
    """Frames (T, size, size, 3) uint8 of the video described by ``p`` (textures drawn from ``rng``), and the
    camera sway it drew (:func:`draw_sway`): the object moves over a still background (``p["motion"]`` "object",
    the default) or the whole view moves ("scene"); the distractors ``p["movers"]`` (:func:`draw_movers`) move
    over it on their own. A ``camera_jitter`` sways the view, object and background alike (:func:`sway_at`);
    without one the sway moves nothing. ``p`` is left as it is."""
    scene_motion = p.get("motion", "object") == "scene"
    margin = int(math.ceil(camera_jitter)) + 1
    # A scene is seen through a moving window over its canvas, which holds the sway up to max_scene_jitter
    canvas = SCENE_CANVAS * size if scene_motion else size + 2 * margin
    bg = _texture(canvas, canvas, rng, p.get("texture", "two_colour")).astype(np.float32)
    tex, alpha = _sprite(p, rng)
    sway = draw_sway(rng)  # drawn whatever the jitter, so the draws after it are the same
    if scene_motion:  # the middle frame's view sits in the canvas centre, offset by `size`
        still = _place(tex, alpha, p, bg, p["cx"] + size, p["cy"] + size, 0.0, 0.0)
    movers = [(m, *_sprite({**m, "texture": p.get("texture", "two_colour")}, rng)) for m in p.get("movers", ())]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        dx, dy, log_scale, angle = motion_at(p, t, num_frames)
        jx, jy = sway_at(sway, camera_jitter, t)
        if scene_motion:
            view = scene_view(still, (size, size), size, dx + jx, dy + jy, log_scale, angle)
        else:
            scene = _place(tex, alpha, p, bg, p["cx"] + dx + margin, p["cy"] + dy + margin, log_scale, angle)
            view = scene_view(scene, (margin, margin), size, jx, jy, 0.0, 0.0)
        tm = t - (num_frames - 1) / 2
        for m, m_tex, m_alpha in movers:
            view = _place(m_tex, m_alpha, m, view, m["cx"] + m["vx"] * tm, m["cy"] + m["vy"] * tm, 0.0,
                          m["omega"] * tm)
        frames[t] = np.clip(view + 0.5, 0, 255).astype(np.uint8)
    return frames, sway


@functools.cache
def _x264_options() -> dict[str, str]:
    """x264's options beyond crf and preset: one thread, and on a CPU with AVX-512 its SIMD capped at AVX2.

    x264's AVX-512 code (the macroblock tree of its rate control) gives different bytes from one encode of the same
    frames to the next: 11 of 60 encodes of one 32² clip differed, with PyAV 18.1's x264 on an AMD EPYC (Zen 4).
    Capped at AVX2 (``asm=AVX2``) all 60 were one output, the one x264 gives at every level from SSSE3 to AVX2, so
    also on an AVX2-only CPU (docs/experiments.md, "x264 on AVX-512 CPUs")."""
    return {"threads": "1", **({"x264-params": "asm=AVX2"} if "AVX-512" in cpu_features() else {})}


def encode_h264(path: Path, frames: np.ndarray, fps: int = 25, crf: int = 18, comment: str | None = None,
                x264: dict[str, str] | None = None) -> None:
    """Write frames as H.264 (yuv420p) with x264's options that make the bytes reproducible (``x264``: those of
    :func:`_x264_options`, which None reads here); atomic. ``comment``: the container's comment metadata (none by
    default). Opened by its absolute path: FFmpeg reads the part of a relative name before a colon ('run:1/...') as a
    protocol."""
    x264 = _x264_options() if x264 is None else x264
    with atomic_path(path) as tmp, av.open(absolute_path(tmp), mode="w") as container:
        if comment is not None:
            container.metadata["comment"] = comment
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast", **x264})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _died_making(job: tuple, how: str) -> NoReturn:
    """A worker that died making a video (the OOM killer) stops the run: no list may name a video not made."""
    raise DataError(f"a worker process died making {job[1]} ({how}); run it again with fewer workers")


# The settings every video's record holds beside its drawn parameters, in the records' order: the whole design of
# the file with them (a rerun keeps a video only when all are the same)
FILE_DESIGN = ("camera_jitter", "motion", "texture", "size", "num_frames", "fps", "seed")


def _make_video(job: tuple) -> tuple[str, dict, bool]:
    """Make one video (or keep the one an earlier run of this design made): its path, its record, and whether the
    file there was kept (a video made again, equal to its record, was counted as kept)."""
    root, rel, label, k, design, objects, made, x264 = job
    size, num_frames, camera_jitter = design["size"], design["num_frames"], design["camera_jitter"]
    rng = np.random.default_rng([design["seed"], label, k])
    p = draw_params(label, size, num_frames, rng)
    p.update(design)
    if objects:
        p["movers"] = draw_movers(size, num_frames, objects, rng)
    path = Path(root) / rel
    # The sway render draws is recorded where there is one; a swayed video recorded without it is of an earlier
    # mme, whose object-motion sway moved in whole pixels
    if made is not None and {key: v for key, v in made.items() if key not in ("split", "sha256", "camera_sway")} \
            == json.loads(json.dumps(p)) and ("camera_sway" in made) == bool(camera_jitter) and path.is_file() \
            and _sha256(path.read_bytes()) == made.get("sha256"):
        return rel, {key: v for key, v in made.items() if key != "split"}, True  # an earlier run's, of this design
    # OpenCV on one thread without IPP (module docstring); the caller's settings are put back, as in its own process
    # (fewer than two workers) its later work depends on them (IPP changes a run's tracks)
    with opencv_settings(threads=1, ipp=False):
        frames, sway = render(p, size, num_frames, rng, camera_jitter)
    with writing(path, MADE_KEPT):  # (a full disk, a quota, a file-size limit)
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_h264(path, frames, design["fps"], x264=x264)
    return rel, {**p, **({"camera_sway": sway} if camera_jitter else {}), "sha256": _sha256(path.read_bytes())}, False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PROGRESS, PROGRESS_EVERY_S = ".params-progress.json", 5.0
"""Where a run keeps the parameters of the videos made so far (every few seconds), until its params.json."""
MADE_KEPT = "the videos made are kept and the same command continues"
"""What a write of synth's that failed keeps (the progress of the videos made, for the rerun)."""


def _made_before(params_file: Path) -> dict:
    """The ``params.json`` (or progress) of an earlier run in the folder ({} without a readable one)."""
    try:
        return _json_object(params_file.read_bytes())
    except OSError:
        return {}


def _json_object(data: bytes | None) -> dict:
    """The JSON object ``data`` holds ({} for none, or other JSON)."""
    try:
        made = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return made if isinstance(made, dict) else {}


DEFAULTS: dict = {"num_classes": 8, "videos_per_class": 40, "size": 112, "num_frames": 48, "fps": 25, "seed": 0,
                  "splits": (0.7, 0.15, 0.15), "camera_jitter": 0.0, "motion": "object", "texture": "two_colour",
                  "objects": 0}
"""The design :func:`generate_synth` makes without a preset (``mme synth``'s defaults)."""

PRESETS: dict[str, dict] = {
    # ``mme demo``'s data, also used by its tests and benchmarks: the class motion moves the whole view, so every
    # region carries it (docs/results.md, "The demo's design"), over dead-leaves scenes with 2 distractors that
    # move on their own, which carry more of what the encoder learns to real footage (docs/experiments.md,
    # "Natural-statistics textures and distractors"); 8 classes x 100 videos of 40 frames at 112², split
    # 0.7 / 0.1 / 0.2 per class, seed 0.
    "demo": {"num_classes": 8, "videos_per_class": 100, "size": 112, "num_frames": 40, "splits": (0.7, 0.1, 0.2),
             "seed": 0, "motion": "scene", "texture": "dead_leaves", "objects": 2},
}
"""Named designs (``mme synth --preset NAME``): :func:`generate_synth` keyword arguments over :data:`DEFAULTS`."""


MAX_FPS = 1000
"""The highest frame rate synth writes (``mme synth --fps``): past it x264's B-frames get timestamps the MP4 cannot
tell apart, and frames are lost on decode (16 of 17 at 2000 fps, 0 of 4 at 10000, exit 0); all decode at 1000."""


def synth_design(preset: str | None = None, **given) -> dict:
    """:func:`generate_synth`'s design: :data:`DEFAULTS`, then the named preset, then the ``given`` arguments
    that are not None."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; available: {sorted(PRESETS)}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown synth arguments {unknown}; available: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **PRESETS.get(preset, {}), **{k: v for k, v in given.items() if v is not None}}


def _check_design(d: dict) -> None:
    """Refuse a design synth cannot make, in one line naming the setting; its seed is made a plain int in ``d``."""
    if d["motion"] not in MOTIONS:
        raise ConfigError(f"synth motion must be one of {MOTIONS}, got {d['motion']!r}")
    if d["texture"] not in TEXTURES:
        raise ConfigError(f"synth texture must be one of {TEXTURES}, got {d['texture']!r}")
    if not 2 <= d["num_classes"] <= len(CLASSES):
        raise ConfigError(f"synth num_classes must be in [2, {len(CLASSES)}], got {d['num_classes']}")
    if d["size"] < 32 or d["size"] % 2:
        raise ConfigError(f"synth size must be an even number >= 32 (H.264 4:2:0), got {d['size']}")
    if d["objects"] < 0:
        raise ConfigError(f"synth objects must be >= 0, got {d['objects']}")
    if d["num_frames"] < 2 or d["videos_per_class"] < 1:
        raise ConfigError("synth needs num_frames >= 2 and videos_per_class >= 1")
    if not 1 <= d["fps"] <= MAX_FPS:
        raise ConfigError(f"synth fps must be in [1, {MAX_FPS}] (past it the MP4's timestamps break: frames lost on "
                          f"decode), got {d['fps']}")
    d["seed"] = check_seed(d["seed"], "synth seed")  # a plain int, which its params.json holds
    if not 0 <= d["camera_jitter"] <= d["size"]:  # the background is drawn with the sway's margin around the frame
        raise ConfigError(f"synth camera_jitter must be in [0, size={d['size']}] px, got {d['camera_jitter']}")
    if d["motion"] == "scene" and d["camera_jitter"] > max_scene_jitter(d["size"]):
        raise ConfigError(f"synth camera_jitter must be <= {math.floor(max_scene_jitter(d['size']) * 100) / 100} px "
                          f"with motion=scene at size {d['size']} (the view, zoomed out and swayed, must stay in its "
                          f"{SCENE_CANVAS}x canvas, else it shows the scene mirrored), got {d['camera_jitter']}")
    splits = d["splits"]
    if len(splits) != 3 or not all(math.isfinite(f) and f >= 0 for f in splits) or sum(splits) <= 0:
        raise ConfigError(f"synth splits must be three non-negative fractions (train, val, test), got {splits}")


def split_sizes(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Videos per class in each split (train, val, test): ``n`` shared by the largest remainders of ``n`` times
    the normalised ``fractions`` (the first split on a tie), so that they sum to ``n`` and a split of fraction 0
    gets none; when ``n`` allows, each split of a positive fraction gets at least one, taken from the largest.
    A positive fraction left without videos is logged."""
    f = np.asarray(fractions, float) / sum(fractions)
    quotas = n * f
    sizes = np.floor(quotas).astype(int)
    remainders = (quotas - sizes).round(9)  # so that float noise (2 x 0.7 - 1 = 0.3999...) breaks no tie
    by_remainder = sorted(range(len(f)), key=lambda i: (f[i] > 0, remainders[i]), reverse=True)
    for i in by_remainder[:n - int(sizes.sum())]:
        sizes[i] += 1
    empty = np.flatnonzero((sizes == 0) & (f > 0))
    if n >= np.count_nonzero(f):
        for i in empty:
            sizes[np.argmax(sizes)] -= 1
            sizes[i] += 1
    else:
        log.warning("synth: %s per class %s %s empty despite a positive fraction (%d fill every split)",
                    counted(n, "video"), plural(n, "leaves", "leave"), " and ".join(SPLITS[i] for i in empty),
                    np.count_nonzero(f))
    return sizes.tolist()


def _video_path(name: str, k: int) -> str:
    """The list path of the ``k``-th video of class ``name``: where it lies under the dataset's folder."""
    return f"videos/{name}/{name}_{k:04d}.mp4"


LISTS_WRITTEN = ".lists-written.json"
"""The sha256 of each list and ``params.json`` synth wrote into the folder and may have left there, by file name,
kept across its runs (an interrupted run's lists stay where its params.json is another run's): such a file is
synth's where its digest is recorded, so one of its lists edited by hand (a subset, a comment line) is not."""
RECORDED = (*(f"{split}.txt" for split in SPLITS), "params.json")
"""The files whose sha256 :data:`LISTS_WRITTEN` records."""


def _lists_written(root: Path) -> dict[str, list[str]] | None:
    """The digests :data:`LISTS_WRITTEN` records by file name; None where the folder holds no such record (no run
    of this mme's wrote lists there) or it is unreadable."""
    written = _made_before(root / LISTS_WRITTEN)
    if not written or not all(isinstance(v, list) for v in written.values()):
        return None
    return written


def _names_synths_video(rel: str, label: object) -> bool:
    """Whether ``rel`` under class number ``label`` is one of synth's videos (:func:`_video_path`), numbered in ASCII
    digits ('²' is a digit to str.isdigit, not to int())."""
    name = CLASSES[label] if isinstance(label, int) and 0 <= label < len(CLASSES) else None
    k = rel.rsplit("_", 1)[-1].removesuffix(".mp4")
    return name is not None and re.fullmatch(r"[0-9]+", k) is not None and rel == _video_path(name, int(k))


def _lines_name_synths_videos(path: Path, data: bytes | None) -> bool:
    """The rule of a folder whose lists an earlier mme wrote, which recorded no digests: every line of the list at
    ``path`` (``data``, its bytes as read; None: unreadable) is one of synth's videos under its class number
    (:func:`_names_synths_video`); its list of a split left without videos is empty."""
    if data is None:  # unreadable: an empty one is still the list of a split left without videos
        return path.stat().st_size == 0
    if not data:
        return True
    try:
        entries, _ = parse_list(text_lines(data.decode("utf-8-sig")), str(path))
    except (DataError, UnicodeDecodeError):  # no list: a file of another's
        return False
    return all(_names_synths_video(e.path, e.label) for e in entries)


def _records_synths_videos(made: dict) -> bool:
    """The rule of a params.json an earlier mme wrote, which recorded no digest of it: a JSON object of records
    (``made``, as read), each keyed by one of synth's videos under the class number it records
    (:func:`_names_synths_video`)."""
    return bool(made) and all(isinstance(p, dict) and _names_synths_video(rel, p.get("label"))
                              for rel, p in made.items())


def _written_by_synth(path: Path, written: dict[str, list[str]] | None, data: bytes | None, digest: str | None,
                      params: dict) -> bool:
    """Whether the list, params.json or class map at ``path`` is one mme synth wrote: a list or params.json whose
    sha256 ``digest`` (None: unreadable) ``written`` (:func:`_lists_written`) records, or where it records none of
    that name (an earlier mme's), a list of its videos (its bytes ``data`` as read: :func:`_lines_name_synths_videos`),
    a params.json of their records (``params``, its JSON object as read: :func:`_records_synths_videos`); or its
    class names in its order."""
    try:
        if path.name == CLASSES_FILE:
            names = read_classes(path)
            return names == list(CLASSES[:len(names)])
        if written is None or path.name not in written:
            if path.name == "params.json":
                return _records_synths_videos(params)
            return _lines_name_synths_videos(path, data)
        return digest in written[path.name]
    except (DataError, OSError):  # unreadable, or no class map: a file of another's
        return False


def _readable_recorded(root: Path) -> dict[str, bytes]:
    """The bytes of each :data:`RECORDED` file in ``root`` that is there, a regular file, and can be read."""
    return {name: data for name in RECORDED if (data := _read(root / name)) is not None}


def _read(path: Path) -> bytes | None:
    """The bytes of the file ``path`` where it is there, a regular file (not a FIFO, whose read would wait), and can
    be read; else None."""
    with contextlib.suppress(OSError):
        if path.is_file():
            return path.read_bytes()
    return None


def _keep_others_files(root: Path) -> tuple[dict[str, str], dict]:
    """Refuse, before any video is made, a folder holding lists, a params.json or a class map that synth would
    replace and did not write (a user's, of `mme lists`, a list of synth's edited); synth's own, of an earlier run
    into the folder of any design, are replaced. Returns the sha256 of each of its :data:`RECORDED` files there, to
    record with those it writes, and its params.json's object (the videos made before: {} for none), each read
    once."""
    written, found = _lists_written(root), _readable_recorded(root)
    digests = {name: _sha256(data) for name, data in found.items()}
    params = _json_object(found.get("params.json"))
    others = [name for name in (*RECORDED, CLASSES_FILE)
              if (root / name).is_file()
              and not _written_by_synth(root / name, written, found.get(name), digests.get(name), params)]
    if others:
        raise ConfigError(f"out {root}: holds {', '.join(others)}, which mme synth did not write (not lists or "
                          "parameters it wrote, nor its class names) and would replace; choose another folder, or "
                          "move them")
    return digests, params


def _warn_of_moved_splits(root: Path, before: dict, params: dict) -> None:
    """Warn where videos kept with the same bytes lie in another split than the earlier run's ``params.json``
    (``before``) records: a split follows a video's number within its class and the counts (:func:`split_sizes`),
    so more videos per class or other fractions move the first ones (train into test, as test takes the lowest)."""
    moved = Counter((was, p["split"]) for rel, p in params.items()
                    if (was := (before.get(rel) or {}).get("split")) not in (None, p["split"])
                    and before[rel].get("sha256") == p["sha256"])
    if moved:
        log.warning("synth: %d videos kept from the earlier run in %s change split (%s): a model trained on the "
                    "earlier run's lists must not be scored on the new test or val list (nor one trained on the new "
                    "lists on its)",
                    sum(moved.values()), root, ", ".join(f"{n} {a} -> {b}" for (a, b), n in sorted(
                        moved.items(), key=lambda m: (SPLITS.index(m[0][0]), SPLITS.index(m[0][1])))))


def _settings_of(record: dict) -> dict:
    """The settings a video was made with, by its record (:func:`_make_video`'s): those of :data:`FILE_DESIGN` it
    holds (an earlier mme's recorded fewer: none of size, num_frames, fps or seed) and its distractors' count
    (``objects``, of its ``movers``)."""
    return {**{key: record[key] for key in FILE_DESIGN if key in record}, "objects": len(record.get("movers") or ())}


def _records(root: Path, params: dict | None = None) -> dict:
    """The records of the videos earlier runs made in ``root``: its ``params.json``'s (``params``: its object as read
    already; None: read here), with those of an interrupted run's progress over them."""
    return {**(_made_before(root / "params.json") if params is None else params), **_made_before(root / PROGRESS)}


def other_settings(out_dir: str | Path, d: dict, made: dict | None = None) -> str | None:
    """What :func:`generate_synth` of design ``d`` (:func:`synth_design`'s) into ``out_dir`` refuses without
    ``overwrite``, before any video is made: how many of its videos there are recorded with other settings than
    ``d``'s (:func:`_settings_of`, by the settings each record holds), one of them and the settings that differ; None
    where none is. Such videos are another run's data, which a run may be training on (its lists the same text, so no
    digest of them tells). ``made``: the folder's records (:func:`_records`; None: read here)."""
    root = Path(out_dir)
    made = _records(root) if made is None else made
    videos = [_video_path(name, k) for name in CLASSES[:d["num_classes"]] for k in range(d["videos_per_class"])]
    other = [(rel, differ) for rel in videos if (m := made.get(rel))
             and (differ := {key: (v, d[key]) for key, v in _settings_of(m).items() if v != d[key]})
             and (root / rel).is_file()]
    if not other:
        return None
    rel, differ = other[0]
    said = ", ".join(f"{key} {theirs} (this run: {ours})" for key, (theirs, ours) in differ.items())
    return f"{counted(len(other), 'video')} made with other settings, e.g. {rel}: {said}"


def generate_synth(out_dir: str | Path, num_classes: int | None = None, videos_per_class: int | None = None,
                   size: int | None = None, num_frames: int | None = None, fps: int | None = None,
                   seed: int | None = None, splits: tuple[float, ...] | None = None,
                   camera_jitter: float | None = None, motion: str | None = None, texture: str | None = None,
                   objects: int | None = None, workers: int | None = None, preset: str | None = None,
                   overwrite: bool = False) -> SynthDataset:
    """Generate the dataset in ``out_dir`` (module docstring) and return where everything is.

    Arguments left at None take the ``preset``'s value (:data:`PRESETS`, e.g. "demo"), else :data:`DEFAULTS`.
    ``splits``: fractions of each class's videos for train/val/test; ``camera_jitter``: amplitude in pixels of
    a smooth, sub-pixel camera sway shared by object and background (:func:`sway_at`); ``motion``: "object" or
    "scene" (what the class motion moves); ``texture``: "two_colour", "high_contrast" or "dead_leaves" (see
    ``_texture``); ``objects``: distractors that move on their own (:func:`draw_movers`); ``workers``: processes
    (default: the CPUs this process may run on, :func:`mme.utils.usable_cores`; the bytes do not depend on it);
    ``overwrite``: make again the videos there recorded with other settings (without it, refused).
    """
    d = synth_design(preset, num_classes=num_classes, videos_per_class=videos_per_class, size=size,
                     num_frames=num_frames, fps=fps, seed=seed, splits=None if splits is None else tuple(splits),
                     camera_jitter=camera_jitter, motion=motion, texture=texture, objects=objects)
    _check_design(d)
    root = check_output(out_dir, "out", folder=True, make=False)
    # one synth on the folder at a time (two of other seeds mixed their videos, params.json the last one's); not
    # taken again where this process holds this folder itself. The demo's data step holds its --out/data beside the
    # demo's --out: a second lock, so an mme synth into that folder is refused meanwhile (its .lock stays there)
    took = lock_folder(root, "out", unmade_if_unused=True)
    try:
        return _generate(root, d, workers, overwrite)
    finally:
        if took:
            unlock_folder(root)


def _generate(root: Path, d: dict, workers: int | None, overwrite: bool) -> SynthDataset:
    """:func:`generate_synth`'s work in ``root``, locked, of design ``d``."""
    found, made_params = _keep_others_files(root)
    classes = list(CLASSES[:d["num_classes"]])
    n = d["videos_per_class"]
    _, n_val, n_test = split_sizes(n, d["splits"])
    progress = root / PROGRESS
    made = _records(root, made_params)
    if not overwrite and (other := other_settings(root, d, made)):
        raise ConfigError(f"out {root}: holds {other}; give --overwrite to make them again (no run may be reading "
                          "them: it would read the new ones), or choose another folder")
    jobs, split_of = [], {}
    # x264's options read here, once: a spawned worker reading them imported torch for its CPU's features (1.9 s of
    # CPU per worker, on the 2-core AMD EPYC), which nothing else of a video's making needs. Not where every video
    # has its file and a record of this design (a rerun that keeps them all imports no torch; a worker that must make
    # one all the same, its file changed, reads them itself): a misjudgement costs time, never other bytes
    design = {key: d[key] for key in FILE_DESIGN}
    every_recorded = all((m := made.get(_video_path(name, k))) and (root / _video_path(name, k)).is_file()
                         and all(m.get(key) == v for key, v in design.items())
                         for name in classes for k in range(n))
    x264 = None if every_recorded else _x264_options()
    for label, name in enumerate(classes):
        for k in range(n):
            rel = _video_path(name, k)
            split_of[rel] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            jobs.append((str(root), rel, label, k, design, d["objects"], made.get(rel), x264))
    if workers is None:
        workers = usable_cores()
    # what a killed run was writing (its videos and records), which the same command's rerun makes again
    remove_stale_temps([*(root / rel for rel in split_of),
                        *(root / name for name in (*RECORDED, CLASSES_FILE, PROGRESS, LISTS_WRITTEN))])
    params, saved, fresh, kept = {}, time.monotonic(), False, 0
    try:
        for rel, p, was_kept in in_workers(_make_video, jobs, workers, _died_making, itemgetter(1)):
            params[rel] = {**p, "split": split_of[rel]}
            same = (made.get(rel) or {}).get("sha256") == p["sha256"]  # (one as recorded: nothing to save of it)
            kept, fresh = kept + was_kept, fresh or not same
            if fresh and time.monotonic() - saved > PROGRESS_EVERY_S:  # what an interrupted run made, for its rerun
                with writing(progress, MADE_KEPT):
                    atomic_write_text(progress, json.dumps({**made, **params}))
                saved, fresh = time.monotonic(), False
    except (OSError, MMEError):  # a write that failed (a full disk), in a worker or here; a worker that died
        remove_stale_temps([root / rel for rel in split_of])  # the writes of the workers stopped with it
        if fresh:  # what was made since the last progress, where the failed write's temporary file freed the space
            with contextlib.suppress(OSError):
                atomic_write_text(progress, json.dumps({**made, **params}))
        raise
    params = {rel: params[rel] for rel in split_of}  # in the jobs' order (the workers' finish in any)
    _warn_of_moved_splits(root, made_params, params)
    if kept < len(params):  # every video's record, should it stop before params.json (made already holds them all)
        with writing(progress, MADE_KEPT):
            atomic_write_text(progress, json.dumps(params))
    lists = {split: root / f"{split}.txt" for split in SPLITS}
    texts = {path.name: list_text(path, [ListEntry(rel, p["label"]) for rel, p in params.items()
                                         if p["split"] == split]) for split, path in lists.items()}
    texts["params.json"] = json.dumps(params, indent=1, sort_keys=True) + "\n"
    # The files found and those written next are synth's, whichever it leaves should it stop between them
    texts[LISTS_WRITTEN] = json.dumps({name: sorted({found.get(name), _sha256(texts[name].encode())} - {None})
                                       for name in RECORDED})
    texts[CLASSES_FILE] = classes_text(classes)
    for name in (LISTS_WRITTEN, *(path.name for path in lists.values()), CLASSES_FILE, "params.json"):
        if _read(root / name) != texts[name].encode():  # (a rerun that made nothing writes nothing: a full disk)
            with writing(root / name, MADE_KEPT):
                atomic_write_text(root / name, texts[name])
    with removing(progress, "it holds a run's progress until its params.json, written now: the data is complete",
                  warn=True):
        progress.unlink(missing_ok=True)
    log.info("synth: %d videos in %s, %d made, %d kept from an earlier run", len(params), root, len(params) - kept,
             kept)
    others = sorted({p.relative_to(root).as_posix() for p in (root / "videos").rglob("*.mp4")
                     if not p.name.startswith(".")} - set(params))  # (not a write's temporary file)
    if others:
        log.warning("synth: %d videos in %s are not of this design (an earlier run's, e.g. %s): no list names them; "
                    "remove them before listing the folder otherwise", len(others), root / "videos", others[0])
    return SynthDataset(root, lists, classes, root / "params.json")
