"""``mme viz``: pictures of tracks over a video's frames, and of what a masked autoencoder predicts for the masked
patches of a clip: its trajectories against the targets, its reconstruction of the pixels.

    mme viz clip.mp4 --out tracks.png                     # a titled panel per tubelet: its start frame + tracks
    mme viz clip.mp4 --out tracks.gif                     # the raw frames with the tracks growing (or .mp4)
    mme viz clip.mp4 --out pred.png --checkpoint run/ckpt # per tubelet: frame | target tracks | predicted tracks
                                                          # (a 'traj' head) | masked input | reconstruction (a
                                                          # 'pixel' head)

PNG panels are upsampled to at least MIN_PANEL px and come with a key to their colours. Each picture carries a mark
of mme viz (:data:`DRAWN_BY` and the digest of the frames it holds): a rerun replaces its own picture at ``--out``,
and any other file there (a video of the user's, a picture made from viz's, which keeps its comment) only with
``--overwrite``; the video drawn or the checkpoint read, never.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np
import torch

from mme.data.dataset import DataConfig, Sample, read_with_margin
from mme.data.pyav_reader import open_container
from mme.data.sampling import clip_indices, window_length
from mme.data.transforms import to_video_tensor, view_crops
from mme.data.video import open_video, require_backend, video_error, with_true_count
from mme.errors import CheckpointError, ConfigError, MMEError
from mme.motion.tracks import Tracks, integrate, track
from mme.utils import (
    atomic_path,
    check_output,
    check_seed,
    counted,
    error_reason,
    file_path,
    given_path,
    keep_others_file,
    keep_what_is_read,
    literal,
    literal_text,
    plural,
    torch_as_mme,
    writing,
)

if TYPE_CHECKING:
    from mme.models.checkpoint import Checkpoint
    from mme.models.config import ModelConfig
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import Geometry, TargetConfig


log = logging.getLogger(__name__)


def read_clip(path: str, start: int, num_frames: int, stride: int, size: int, length: int,
              tubelet: int = 2, orientation: str = DataConfig.orientation, backend: str = DataConfig.backend,
              flow_margin: int = 0) -> Sample:
    """The centre-cropped window of a video as the data workers' sample: every raw frame of the window (the tracks
    need them) cropped to ``size``², their ids, the encoder's clip indices and the tubelet starts; with
    ``flow_margin`` (a run's :attr:`~mme.motion.targets.TargetFn.flow_margin`), the frames with that margin around
    the crop that its workers' flow read (:func:`~mme.data.dataset.read_with_margin`). A video shorter
    than the window is read from frame 0 as training reads it, its last frame repeated (said); a ``start`` too
    late for a longer one is refused. Its frames are chosen by the video's true count (:func:`with_true_count`); a
    refusal by a count that no decode has proven (the packets') reads the last frame first, so that it names the
    true count and a ``--start`` that fits."""

    def read() -> Sample:
        with open_video(path, backend, orientation=orientation) as reader:
            n, span = reader.num_frames, window_length(num_frames, stride, tubelet, length)
            if start + span > n and reader.count_may_change and n > 0:
                reader.read([n - 1])  # a count it corrects raises FrameCountChanged: read() again, by the truth
            if start + span > n:
                tracks = f", with tracks of {length}," if length else ""
                need = f"{num_frames} frames at stride {stride} from frame {start}{tracks} need {start + span}"
                if start > 0 or n == 0:
                    raise video_error(path, "too short", f"{counted(n, 'frame')}; {need}; " + (
                        f"--start {n - span} is the last that fits" if n >= span else
                        "--start 0 reads it as training reads a video this short, its last frame repeated"))
                log.warning("%s: %s; %s: its last frame repeats, as training reads a video this short", path,
                            counted(n, "frame"), need)
            indices = clip_indices(start + stride * np.arange(num_frames), n, tubelet, length)
            ids = np.arange(start, min(start + span, n))
            geometry = view_crops(reader.size, size, 1)[0]
            frames, flow_frames, offset = read_with_margin(reader, ids, geometry, flow_margin)
        return Sample(frames, ids, indices.clip, indices.starts, geometry, path, length, flow_frames=flow_frames,
                      flow_offset=offset)
    return with_true_count(read)


MIN_PANEL = 288
"""px: PNG panels are at least this wide (frames upsampled by a whole factor) so a person can read them."""
TARGET_RGB, PRED_RGB = (40, 210, 40), (235, 40, 40)
DIM = 0.45
"""Brightness left to masked patches in the prediction picture."""


def _factor(size: int) -> int:
    return max(1, -(-MIN_PANEL // size))


def _upsample(frame: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)


def _on_upsampled(positions: np.ndarray, factor: int) -> np.ndarray:
    """Positions on a frame (pixel centres at whole numbers, as tracks have them) on the frame :func:`_upsample`-d
    ``factor`` times, whose pixel i is the centre of pixels i*f .. i*f + f - 1 (``* factor`` alone drew the tracks
    (f - 1) / 2 px up and to the left)."""
    return (positions + 0.5) * factor - 0.5


def _direction_rgb(d: np.ndarray, full: float) -> np.ndarray:
    """Displacements ``(..., 2)`` px -> RGB ``(..., 3)`` uint8: hue = direction (image axes, y down), saturation =
    length up to ``full`` px, so still points are white."""
    hue = (np.degrees(np.arctan2(d[..., 1], d[..., 0])) % 360) / 2
    sat = np.clip(np.hypot(d[..., 0], d[..., 1]) / full, 0, 1) * 255
    hsv = np.stack([hue, sat, np.full_like(hue, 255)], -1).astype(np.uint8).reshape(-1, 1, 3)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(*d.shape[:-1], 3)


def draw_tracks(frame: np.ndarray, positions: np.ndarray, valid: np.ndarray, full: float, upto: int | None = None,
                thickness: int = 1) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with the tracks ``positions (L+1, P, 2)`` px drawn up to step ``upto``
    (valid points only; a dot at the current end), each coloured by its whole track's motion, in full colour
    from ``full`` px (`_direction_rgb`)."""
    out = frame.copy()
    pts = positions[: (upto if upto is not None else len(positions) - 1) + 1]  # (k+1, P, 2)
    colours = _direction_rgb(positions[-1] - positions[0], full)
    for p in np.flatnonzero(valid):
        _polyline(out, pts[:, p], tuple(int(v) for v in colours[p]), thickness)
    return out


def _polyline(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> None:
    """Draw one track ``(k, 2)`` px in place, with a dot at its end, over a dark edge that keeps it visible on
    any background."""
    line = np.round(pts * 4).astype(np.int32)  # 2 fractional bits: sub-pixel lines
    end = tuple(int(v) for v in line[-1])
    for c, t in (((0, 0, 0), thickness + 2), (colour, thickness)):
        cv2.polylines(img, [line], False, c, t, cv2.LINE_AA, shift=2)
        cv2.circle(img, end, 4 * (t + 1), c, -1, cv2.LINE_AA, shift=2)


DRAWN_BY = "drawn by mme viz"
"""The mark mme viz writes into each picture (a PNG's ``Comment`` text, a GIF's comment, an MP4's ``comment``
metadata), followed by the digest of its frames (:func:`_frames_digest`), by which a later run tells its own picture
at ``--out`` from a file of the user's (:func:`_drawn_by_viz`)."""


@contextlib.contextmanager
def _opened_picture(path: Path) -> Iterator[tuple[str | None, Iterator[np.ndarray]]]:
    """The picture at ``path`` opened once: the comment of its header (a PNG's ``Comment`` text, a GIF's comment, an
    MP4's ``comment`` metadata; None without one) and its frames (a PNG's one, a GIF's or an MP4's each), decoded as
    they are taken."""
    from PIL import Image, ImageSequence

    with contextlib.ExitStack() as stack:
        if path.suffix.lower() == ".mp4":
            container = stack.enter_context(open_container(path))
            comment = container.metadata.get("comment")
            frames = (f.to_ndarray(format="rgb24") for f in container.decode(video=0))
        else:
            image = stack.enter_context(Image.open(path))
            comment = image.info.get("Comment", image.info.get("comment"))
            frames = (np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(image))
        yield comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment, frames


def _frames_digest(path: Path) -> str:
    """sha256 of the frames the picture at ``path`` decodes to (a PNG's one, a GIF's or an MP4's each, with its
    size): what viz's mark carries, so that a file made from one of its pictures (cut, resized, re-encoded), which
    keeps its comment, is not taken for it."""
    with _opened_picture(path) as (_, frames):
        return _digest(frames)


def _digest(frames: Iterable[np.ndarray]) -> str:
    """sha256 of ``frames``, each with its shape, taken one at a time (a user's file may be long)."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(repr(frame.shape).encode() + frame.tobytes())
    return digest.hexdigest()


def _write_marked(out: Path, write: Callable[[Path, str], None], frames_digest: str | None = None) -> None:
    """Write the picture at ``out`` with ``write(path, mark)`` atomically, a failed write an MMEError naming it. Its
    mark holds ``frames_digest``, of the frames a lossless picture decodes to (a PNG's, known before it is written);
    without it, of the frames written (a GIF's colours are reduced, an MP4 encoded with loss): written and encoded
    once, with a placeholder of the digest's length that the digest of its frames then replaces in its bytes (a
    GIF's comment and an MP4's metadata hold the mark as it is, under no checksum; a comment changes none of the
    frames)."""
    with writing(out, "nothing is replaced"):
        with atomic_path(out) as tmp:  # its suffix kept: PIL takes the format from it
            if frames_digest is not None:
                write(tmp, f"{DRAWN_BY} {frames_digest}")
            else:
                placeholder = f"{DRAWN_BY} {'0' * 64}"  # (a sha256 hex digest's length)
                write(tmp, placeholder)
                mark = f"{DRAWN_BY} {_frames_digest(tmp)}"
                tmp.write_bytes(tmp.read_bytes().replace(placeholder.encode(), mark.encode()))


@contextlib.contextmanager
def _drawing(out: Path) -> Iterator[None]:
    """A RuntimeError drawing or writing the picture at ``out`` (matplotlib's: a font it cannot load, ...; Pillow's,
    PyAV's) is an MMEError naming the picture and the reason, as a failed write is: the picture is mme viz's only
    output, and nothing of it is written."""
    try:
        yield
    except RuntimeError as e:
        raise MMEError(f"{out}: could not be drawn ({error_reason(e)}); nothing is replaced") from e


def _save_frames(images: list[np.ndarray], out: Path, fps: float = 10.0) -> None:
    """Animated GIF or H.264 MP4 of the images at ``fps`` (10 by default, which a GIF holds exactly: it counts
    centiseconds, so 8 fps came out as 120 ms frames); written atomically, a failed write or drawing an MMEError
    naming it (:func:`_drawing`)."""
    from PIL import Image

    from mme.data.synth import encode_h264

    with _drawing(out):
        if out.suffix.lower() == ".mp4":
            clip = np.stack(images)
            _write_marked(out, lambda path, mark: encode_h264(path, clip, fps=int(fps), comment=mark))
            return
        frames = [Image.fromarray(im) for im in images]
        _write_marked(out, lambda path, mark: frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                                                             duration=10 * max(1, round(100 / fps)),
                                                             comment=mark.encode()))


def _figure(panels: list[tuple[str, np.ndarray]], cols: int, title: str, legend, out: Path) -> None:
    """PNG of titled panels, row by row at about their pixel size (100 dpi), with a key column on the right that
    ``legend(subfigure)`` fills; written atomically, a failed write or drawing an MMEError naming it
    (:func:`_drawing`; a matplotlib that cannot be imported too, :func:`literal_text`'s RuntimeError)."""
    from PIL import Image, PngImagePlugin

    with _drawing(out), literal_text():
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = -(-len(panels) // cols)
        side = panels[0][1].shape[0] / 100  # inches
        fig = Figure(figsize=(cols * (side + 0.15) + 2.6, rows * (side + 0.4) + 0.5), dpi=100, layout="constrained")
        grid, key = fig.subfigures(1, 2, width_ratios=[cols * (side + 0.15), 2.6])
        for ax, (name, img) in zip(grid.subplots(rows, cols, squeeze=False).flat, panels + [("", None)] * cols):
            # cells past the last panel stay blank
            ax.set_axis_off()
            if img is not None:
                ax.imshow(img, interpolation="nearest")
                ax.set_title(literal(name), fontsize=11)  # names are the user's
        fig.suptitle(literal(title), fontsize=12)
        legend(key)
        canvas = FigureCanvasAgg(fig)  # drawn once: a constrained layout drawn again may move by a pixel
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())
        picture = Image.fromarray(pixels)

        def write(path: Path, mark: str) -> None:
            text = PngImagePlugin.PngInfo()
            text.add_text("Comment", mark)
            picture.save(path, format="png", pnginfo=text)

        _write_marked(out, write, _digest([pixels]))  # a PNG decodes to the RGBA pixels it holds


def _wheel_legend(full: float, compensate: bool = False):
    """A key of `_direction_rgb`: the colour of each displacement up to ``full`` px from the centre (with
    ``compensate``, of the motion relative to the camera)."""
    def legend(key) -> None:
        r = np.linspace(-full, full, 121)
        d = np.stack(np.meshgrid(r, r), -1)
        img = _direction_rgb(d, full)
        img[np.hypot(d[..., 0], d[..., 1]) > full] = 255
        ax = key.add_axes((0.1, 0.35, 0.8, 0.3))
        ax.imshow(img, extent=(-full, full, full, -full))
        relative = "\nrelative to the camera" if compensate else ""
        ax.set_title(f"track colour = its motion{relative}\nfrom first to last frame", fontsize=10)
        ax.set_xlabel("dx px (right)", fontsize=8)
        ax.set_ylabel("dy px (down)", fontsize=8)
        ax.tick_params(labelsize=7)
        view = "\nin the first frame's view" if compensate else ""
        ax.annotate(f"white: still\nfull colour: moved >= {full:.1f} px\ndot: where the point is\nat the last "
                    f"frame{view}", (0.5, 0), (0, -34), "axes fraction", "offset points", ha="center", va="top",
                    fontsize=9)
    return legend


def tracks_picture(video: str, out: str | Path, start: int = 0, num_frames: int = 16, stride: int = DataConfig.stride,
                   size: int = 224, length: int = 6, seed_stride: int = 16, compensate: bool = False,
                   orientation: str = DataConfig.orientation, backend: str = DataConfig.backend) -> Path:
    """PNG: one titled panel per tubelet (its first frame upsampled, the tracks of its L steps) and a colour key.
    GIF / MP4: per tubelet, the raw frames of its tracks (its first frame and the L after it) at their size, the
    tracks drawn up to each (tubelets further apart than L leave frames out; closer ones show some twice).
    With ``compensate`` each track is its motion relative to the camera (the displacements a compensated target
    holds), drawn from its seed in the start frame's view: a GIF's / MP4's frames are turned to that view by the
    camera's homographies (:func:`_in_start_view`)."""
    c = read_clip(video, start, num_frames, stride, size, length, orientation=orientation, backend=backend)
    tr: Tracks = track(c.frames, c.frame_ids, c.starts, length, seed_stride=seed_stride, compensate=compensate,
                       source=video, clamp=True)
    # the displacements alone: with compensate, the motion relative to the camera (tr.positions() puts the camera's
    # motion back in: each point on its scene point in each frame, as it was without compensation)
    pos = integrate(tr.seeds, tr.disp).reshape(len(c.starts), length + 1, -1, 2)  # (S, L+1, P, 2)
    valid = tr.valid.reshape(len(c.starts), -1)
    moved = np.hypot(*(pos[:, -1] - pos[:, 0]).transpose(2, 0, 1))[valid]
    full = max(float(np.percentile(moved, 90)) if moved.size else 0.0, 1.0)  # most tracks below full colour
    out = Path(out)
    last = int(c.frame_ids[-1])  # a short video repeats its last frame
    if out.suffix.lower() in (".gif", ".mp4"):
        shown = c.frames_at(np.minimum(c.starts[:, None] + np.arange(length + 1), last))  # (S, L+1, h, w, 3)
        if tr.homs is not None:
            shown = np.stack([_in_start_view(frames, homs) for frames, homs in zip(shown, tr.homs)])
        _save_frames([draw_tracks(shown[k, j], pos[k], valid[k], full, upto=j)
                      for k in range(len(c.starts)) for j in range(length + 1)], out)
        return out
    f = _factor(size)
    panels = [(f"frame {s}, tracks to {min(s + length, last)}",
               draw_tracks(_upsample(frame, f), _on_upsampled(pos[k], f), valid[k], full=full * f, thickness=2))
              for k, (s, frame) in enumerate(zip(c.starts, c.frames_at(c.starts)))]
    relative = ", motion relative to the camera (compensated)" if compensate else ""
    title = (f"{Path(video).name}: point tracks over {length} frames{relative}, one panel per tubelet\n"
             f"frames {size} px shown x{f}")
    _figure(panels, min(4, len(panels)), title, _wheel_legend(full, compensate), out)
    return out


def _in_start_view(frames: np.ndarray, homs: np.ndarray) -> np.ndarray:
    """The frames ``(L+1, h, w, 3)`` of a track, each after the first turned to the first's view: frame j + 1 read
    through the camera's homographies ``homs (L, 3, 3)`` (step j: frame j -> j + 1) from the first up to it, so that
    a still scene point keeps its pixel of the first frame (where a compensated track is drawn); what the first
    frame did not see is black. The track adds up steps each measured in its own frame's pixels: on its point
    exactly under a pan, off it by a moving point's motion times the zoom or turn since the first frame else."""
    h, w = frames.shape[1:3]
    seen, out = np.eye(3), [frames[0]]
    for j, hom in enumerate(homs):
        seen = hom.astype(np.float64) @ seen  # the first frame's pixels -> frame j + 1's
        out.append(cv2.warpPerspective(frames[j + 1], seen, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return np.stack(out)


def _mae(checkpoint: str, img_size: int | None = None, num_frames: int | None = None
         ) -> tuple[MaskedAutoencoder, Checkpoint]:
    """The checkpoint's masked autoencoder (built for the clip ``img_size`` / ``num_frames`` where given: mme viz's
    --size / --num-frames, read_checkpoint's hints, for a file that records no clip; one that records its clip is
    drawn at it, those flags refused), refused unless it has a head to draw ('traj' or 'pixel')."""
    from mme.models.checkpoint import build_model, read_checkpoint

    flags = {"img_size": "--size", "num_frames": "--num-frames"}
    ck = read_checkpoint(checkpoint, img_size=img_size, num_frames=num_frames, given_as=flags)
    if ck.replaced:
        recorded = ", ".join(f"{k}={v}" for k, v in ck.replaced.items())
        raise ConfigError(f"{', '.join(f'{flags[k]} {getattr(ck.cfg, k)}' for k in ck.replaced)}: {checkpoint} "
                          f"records the clip its model was trained on ({recorded}), which is drawn; leave "
                          f"{plural(len(ck.replaced), 'it', 'them')} out")
    names = [h.name for h in ck.heads] if ck.kind == "mae" else []
    if not {"traj", "pixel"} & set(names):
        held = (f"a masked autoencoder with the {plural(len(names), 'head')} {', '.join(repr(n) for n in names)}"
                if ck.kind == "mae" else {"encoder": "an encoder", "classifier": "a classifier"}[ck.kind])
        raise MMEError(f"{checkpoint}: holds {held}; nothing to draw (mme viz --checkpoint draws the predicted "
                       "motion of a 'traj' head and the reconstruction of a 'pixel' head)")
    return build_model(ck), ck


def _traj_target(checkpoint: str, ck: Checkpoint, model: MaskedAutoencoder,
                 compensate: bool) -> tuple[TargetConfig, Geometry, bool]:
    """The target config and token geometry of the ``traj`` head: its run's when ``checkpoint`` is one of our
    training checkpoints or an export of one (the tracks computed online with its ``target.flow``, also for a run
    that read them from a track cache), else the released layout (2×2 points, PatchStd); and whether ``compensate``
    makes other targets than its run trained on (a run without ``target.compensate``: warned, as another
    ``--backend`` is)."""
    from dataclasses import replace

    from mme.config import from_dict
    from mme.motion.targets import TargetConfig, token_geometry

    spec = next(h for h in model.head_specs if h.name == "traj")
    if isinstance(ck.run_config.get("target"), dict):  # only the traj target is drawn: no HOG maps needed
        try:
            run = from_dict(TargetConfig, ck.run_config["target"], prefix="target.")
        except ConfigError as e:
            raise CheckpointError(f"{checkpoint}: its run's target section does not load here: {e}") from e
        cfg = replace(run, kind="mme-released", loss_weights={}, compensate=run.compensate or compensate,
                      cache_dir=None)
        other = compensate and not run.compensate
    else:
        cfg = TargetConfig(kind="mme-released", track_length=max(spec.dim // (2 * 4), 1), compensate=compensate)
        other = False
    g = token_geometry(cfg, model.cfg)
    if spec.dim != 2 * cfg.track_length * g.points:
        raise MMEError(f"{checkpoint}: traj head of {spec.dim} dims is not 2 x {cfg.track_length} steps x "
                       f"{g.points} points; cannot draw it")
    if other:
        log.warning("viz: --compensate draws targets of the motion relative to the camera, but %s's run trained "
                    "without target.compensate: its predictions are of the motion in the frame, the camera's "
                    "included, so the two differ by the camera's motion; leave --compensate out to draw the targets "
                    "its run trained on", checkpoint)
    return cfg, g, other


@torch_as_mme()
def prediction_picture(video: str, checkpoint: str, out: str | Path, start: int = 0, stride: int | None = None,
                       seed: int = 0, compensate: bool = False, scale: float = 4.0, orientation: str | None = None,
                       img_size: int | None = None, num_frames: int | None = None, backend: str | None = None
                       ) -> Path:
    """PNG, a row per tubelet: its first frame, then what the masked autoencoder's heads predict for the masked
    patches of a clip (the model's mask of seed ``seed``), in one forward pass:

    - a ``traj`` head: the target and the predicted trajectories on the masked (dimmed) patches, drawn from each
      point's seed, cumulated over the steps. The targets are made as the run's training made them
      (:class:`TargetFn`: its flow and its margin around the crop, bound, pruning, interpolation and compensation;
      ``compensate`` compensates the targets of a run trained without, warned and said in the title). PatchStd
      targets are unit-free z-scores, drawn at ``scale`` px (of the model's frame) per unit; position targets in
      their run's unit.
    - a ``pixel`` head: the masked input (masked patches grey) and the reconstruction (:func:`reconstruction`).

    The clip is read at ``stride`` raw frames (default: the run's ``data.stride``, else 4), its frames as
    ``orientation`` (default: the run's ``data.orientation``, else as coded) with ``backend`` (default: the run's
    ``data.backend``, else pyav: :meth:`~mme.models.checkpoint.Checkpoint.run_backend`), ``num_frames`` of ``img_size``²
    (the clip the model is built for; default: the checkpoint's, which an original ``.pth`` does not record: 16 of 224²,
    with a warning). Of a file that records no run, what is taken on trust (these defaults, the released traj target,
    VideoMAE's pixel normalisation) is said in one warning
    (:meth:`~mme.models.checkpoint.Checkpoint.warn_no_run`)."""
    model, ck = _mae(checkpoint, img_size, num_frames)
    m, traj, pixel = model.cfg, "traj" in model.heads, "pixel" in model.heads
    if compensate and not traj:
        raise ConfigError(f"--compensate: {checkpoint} has no 'traj' head; its reconstruction uses no tracks")
    unset = {"stride": stride is None, "orientation": orientation is None, "backend": backend is None}
    stride, orientation = ck.run_setting(stride, "stride", "viz"), ck.run_setting(orientation, "orientation", "viz")
    backend = ck.run_backend(backend, "viz")
    trusted = [(f"{name} {value}", f"--{name}") for name, value in (("stride", stride), ("orientation", orientation),
                                                                    ("backend", backend)) if unset[name]]
    if traj:
        from mme.motion.targets import TargetFn

        cfg, g, other_target = _traj_target(checkpoint, ck, model, compensate)
        target_fn = TargetFn(cfg, m)
        trusted.append((f"the traj target of the released layout (PatchStd, {g.points} points a patch, tracks of "
                        f"{cfg.track_length} steps, flow {cfg.flow})", None))
    if pixel and ck.norm_pix is None:
        trusted.append(("pixels normalised per patch (VideoMAE's norm_pix_loss default)", None))
    ck.warn_no_run("viz", trusted)
    c = read_clip(video, start, m.num_frames, stride, m.img_size, cfg.track_length if traj else 0, m.tubelet_size,
                  orientation, backend, target_fn.flow_margin if traj else 0)
    x = to_video_tensor(c.frames_at(c.clip))[None]  # (1, 3, T, H, W)
    mask = model.make_mask(1, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = model.forward_decoder(model.forward_encoder(x, mask), mask)  # {head: (1, N_masked, dim)}
    f = _factor(m.img_size)
    frames = [_upsample(frame, f) for frame in c.frames_at(c.starts)]
    rows = [[(f"frame {s}", im)] for s, im in zip(c.starts, frames)]
    shows, notes = [], [f"frames {m.img_size} px shown x{f}"]
    if traj:
        from mme.motion.tracks import default_max_disp

        L = cfg.track_length
        target = target_fn.targets(c)[0]["traj"]  # (N, 2LK)
        if not cfg.patch_norm:  # targets are displacements in units of position_unit (default: the track bound)
            scale = cfg.position_unit or cfg.max_disp or default_max_disp(*c.frames.shape[1:3])
        tokens = torch.nonzero(mask[0]).flatten().tolist()
        drawn = _prediction_panels(frames, c.starts, tokens, target[mask[0]], pred["traj"][0], m, g.seed_stride, L,
                                   scale * f, "tracks (PatchStd)" if cfg.patch_norm else "tracks")
        for row, panels in zip(rows, drawn):
            row.extend(panels)
        relative = " relative to the camera (compensated)" if cfg.compensate else ""
        motion = "motion within the masked patches (PatchStd)" if cfg.patch_norm else "motion of the masked patches"
        shows.append(f"{motion}{relative}, target vs predicted")
        unit = "PatchStd unit" if cfg.patch_norm else "position unit"
        notes[0] += f"; tracks of {L} steps drawn at {scale * f:g} px per {unit}"
        if cfg.patch_norm:
            notes.append("PatchStd: each point's motion less its patch's mean, divided by their standard "
                         "deviation: a patch moving as one (a pan) draws as dots")
        if other_target:
            notes.append("targets compensated by --compensate; its run trained without: the predictions are of the "
                         "motion in the frame")
    if pixel:
        spec = next(h for h in model.head_specs if h.name == "pixel")
        if spec.dim != m.tubelet_size * m.patch_size ** 2 * 3:
            raise MMEError(f"{checkpoint}: pixel head of {spec.dim} dims is not {m.tubelet_size} frames x "
                           f"{m.patch_size}² px x 3 colours; cannot draw it")
        norm_pix = True if ck.norm_pix is None else ck.norm_pix  # VideoMAE's default where the file does not say
        recon = reconstruction(x, pred["pixel"][0], mask[0], m.tubelet_size, m.patch_size, norm_pix)
        for row, panels in zip(rows, _reconstruction_panels(recon, mask[0], c.starts, m, f)):
            row.extend(panels)
        shows.append("masked patches reconstructed")
        if norm_pix:
            said = "" if ck.norm_pix is not None else ", not recorded: VideoMAE's default"
            notes.append(f"norm_pix{said}: each predicted patch de-normalised with the mean and std of the input's "
                         "patch,\nas VideoMAE's pictures: its mean colour and contrast are the input's")
        else:
            notes.append("the pixel head predicts pixels (no norm_pix)")
    title = f"{Path(video).name}, {Path(checkpoint).name}: {'; '.join(shows)}\n" + "\n".join(notes)
    out = Path(out)
    _figure([p for row in rows for p in row], len(rows[0]), title,
            _prediction_legend(sorted(model.heads), traj and cfg.patch_norm), out)
    return out


GREY = 128
"""uint8 value of the masked patches in the masked input of a reconstruction picture."""


def reconstruction(video: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, tubelet: int, patch: int,
                   norm_pix: bool) -> torch.Tensor:
    """A clip's tokens ``(N, tubelet*patch², 3)`` in [0, 1] RGB, pixels in :func:`pixel_target`'s order: the
    visible ones (``~mask``, ``(N,)``) from the ImageNet-normalised clip ``video (1, 3, T, H, W)``, the masked
    ones the ``pixel`` head's prediction ``pred (N_masked, tubelet*patch²*3)``. With ``norm_pix`` the prediction
    is a z-score per channel of each patch, which holds no mean nor contrast: it is de-normalised with the
    input patch's (VideoMAE's visualisation; its own target's inverse, 1e-6 included)."""
    from mme.motion.targets import pixel_target

    tokens = pixel_target(video, tubelet, patch, norm=False)[0].unflatten(-1, (-1, 3))
    shown = pred.float().unflatten(-1, (-1, 3))
    if norm_pix:
        hidden = tokens[mask]  # (N_masked, tubelet*patch², 3)
        shown = shown * (hidden.std(1, keepdim=True) + 1e-6) + hidden.mean(1, keepdim=True)
    out = tokens.clone()
    out[mask] = shown
    return out


def token_frames(tokens: torch.Tensor, m: ModelConfig) -> np.ndarray:
    """Tokens ``(N, tubelet*patch², 3)`` in [0, 1] (:func:`reconstruction`) -> uint8 frames ``(T, H, W, 3)``."""
    (S, h, w), t, p = m.grid, m.tubelet_size, m.patch_size
    x = tokens.reshape(S, h, w, t, p, p, 3).permute(0, 3, 1, 4, 2, 5, 6).reshape(S * t, h * p, w * p, 3)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def _reconstruction_panels(recon: torch.Tensor, mask: torch.Tensor, starts: np.ndarray, m: ModelConfig,
                           f: int) -> list[list[tuple[str, np.ndarray]]]:
    """Per tubelet, its first frame as the encoder saw it (masked patches grey) and as reconstructed."""
    masked = token_frames(torch.where(mask[:, None, None], GREY / 255, recon), m)  # visible tokens: the input's
    shown = token_frames(recon, m)
    t = m.tubelet_size
    return [[(f"masked input, frame {s}", _upsample(masked[k * t], f)),
             (f"reconstruction, frame {s}", _upsample(shown[k * t], f))] for k, s in enumerate(starts)]


def _prediction_panels(frames: list[np.ndarray], starts: np.ndarray, tokens: list[int], target: torch.Tensor,
                       pred: torch.Tensor, m: ModelConfig, seed_stride: int, L: int,
                       px_per_unit: float, tracks: str) -> list[list[tuple[str, np.ndarray]]]:
    """Per tubelet, two titled panels of its frame: the target tracks and the predicted ones on the masked
    (dimmed) patches, titled 'target <tracks>' and 'predicted <tracks>'; rows of ``target`` / ``pred`` follow
    ``tokens``."""
    f = frames[0].shape[0] // m.img_size
    p, (_, h, w), a = m.patch_size * f, m.grid, m.patch_size // seed_stride
    cells = [(tok // (h * w), (tok % (h * w)) // w * p, tok % w * p) for tok in tokens]  # (tubelet, y0, x0)
    dimmed = [im.copy() for im in frames]
    for ti, y0, x0 in cells:
        dimmed[ti][y0:y0 + p, x0:x0 + p] = (dimmed[ti][y0:y0 + p, x0:x0 + p] * DIM).astype(np.uint8)
    drawn = {"target": [im.copy() for im in dimmed], "predicted": [im.copy() for im in dimmed]}
    k = np.arange(a * a)
    offsets = _on_upsampled(seed_stride * np.stack([k % a + 0.5, k // a + 0.5], -1), f)  # (K, 2) in the patch, x y
    for row, (ti, y0, x0) in enumerate(cells):
        for name, vec, colour in (("target", target[row], TARGET_RGB), ("predicted", pred[row], PRED_RGB)):
            z = vec.reshape(2, L, a * a).permute(2, 1, 0).numpy() * px_per_unit  # (K, L, 2)
            seeds = (np.array([x0, y0]) + offsets)[:, None]  # (K, 1, 2)
            for path in np.concatenate([seeds, seeds + np.cumsum(z, 1)], 1):  # (L+1, 2)
                _polyline(drawn[name][ti], path, colour, 2)
    return [[(f"target {tracks}, frame {s}", drawn["target"][k]),
             (f"predicted {tracks}, frame {s}", drawn["predicted"][k])] for k, s in enumerate(starts)]


def _prediction_legend(heads: list[str], within_patch: bool):
    """The key of :func:`prediction_picture` for the heads it draws; ``within_patch``: its motion targets are
    PatchStd's, each point's motion relative to its patch (a tracked motion drawn as such read as the frame's)."""
    def legend(key) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        target, predicted = (("target: motion within\nthe patch (PatchStd)", "predicted motion\nwithin the patch")
                             if within_patch else ("target: tracked motion", "predicted motion"))
        handles = []
        if "traj" in heads:
            handles += [Line2D([], [], color=np.array(TARGET_RGB) / 255, lw=2, marker="o", label=target),
                        Line2D([], [], color=np.array(PRED_RGB) / 255, lw=2, marker="o", label=predicted),
                        Patch(facecolor=(0, 0, 0, 1 - DIM), edgecolor="none", label="masked patch (dimmed):\n"
                              "hidden from the encoder,\nits motion predicted")]
        if "pixel" in heads:
            handles.append(Patch(facecolor=(GREY / 255,) * 3, edgecolor="none", label="masked patch (grey):\n"
                                 "hidden from the encoder;\nin the reconstruction,\nthe model's prediction"))
        key.legend(handles=handles, loc="center", fontsize=9, title="key", frameon=False,
                   handlelength=2.5, labelspacing=1.2)
    return legend


PICTURES = (".png", ".gif", ".mp4")


def _drawn_by_viz(path: Path) -> bool:
    """Whether the file at ``path`` is a picture mme viz wrote: it holds :data:`DRAWN_BY`, read from its header, and
    the digest of the frames it decodes to (decoded only where the mark is there). A file that cannot be read as a
    picture or video is not, nor one whose header Pillow refuses to read (a PNG with more text than its limits, its
    ValueError)."""
    from PIL import Image

    try:
        with _opened_picture(path) as (mark, frames):
            return isinstance(mark, str) and mark.startswith(DRAWN_BY) and mark == f"{DRAWN_BY} {_digest(frames)}"
    except (OSError, ValueError, av.FFmpegError, Image.DecompressionBombError):
        return False


def draw_picture(video: str, out: str | Path, checkpoint: str | None = None, start: int = 0,
                 num_frames: int | None = None, stride: int | None = None, size: int | None = None,
                 length: int | None = None, seed_stride: int | None = None, compensate: bool = False,
                 seed: int | None = None, orientation: str | None = None, overwrite: bool = False,
                 backend: str | None = None) -> Path:
    """``mme viz``: :func:`prediction_picture` (a PNG: predicted motion, a reconstruction) with a ``checkpoint``, whose
    model sets the track length and points, and the frames and size unless given (the clip it is built for, which an
    original ``.pth`` does not record), and whose run the stride, orientation and backend unless given (``seed`` draws
    the mask, default 0), else :func:`tracks_picture` (16 frames of 224² at stride 4, L=6, a point every 16 px unless
    given; no ``seed``); prints and returns the path written. A file at ``out`` that is not a picture of viz's is
    replaced only with ``overwrite``; the video drawn or the checkpoint read, never."""
    out = file_path(out, "--out")  # (not Path: pics.png/ would write a file pics.png)
    kind = out.suffix.lower()
    if kind not in PICTURES:
        raise ConfigError(f"--out {out}: the picture is written as its suffix says: one of {', '.join(PICTURES)}")
    seed = None if seed is None else check_seed(seed, "--seed")
    if backend is not None:
        require_backend(backend, "--backend")
    if checkpoint is not None:
        given_path(checkpoint, "--checkpoint", "file or folder")
    check_output(out, "--out")
    # the picture would replace what it draws, which later runs read as a video
    keep_what_is_read(out, "--out", [("the video drawn", video),
                                     ("the checkpoint whose predictions are drawn", checkpoint)], "picture")
    keep_others_file(out, "--out", "mme viz", _drawn_by_viz, "a picture of its own", overwrite)  # viz's own replaced
    if checkpoint is not None:
        given = [name for name, v in (("--length", length), ("--seed-stride", seed_stride)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: with --checkpoint the track length and points are the model's; "
                              f"leave {plural(len(given), 'it', 'them')} out")
        if kind != ".png":
            raise ConfigError(f"--out {out}: a picture of predicted motion is a .png, as is a reconstruction")
        path = prediction_picture(video, checkpoint, out, start, stride, 0 if seed is None else seed, compensate,
                                  orientation=orientation, img_size=size, num_frames=num_frames, backend=backend)
    else:
        if seed is not None:
            raise ConfigError("--seed draws the mask of --checkpoint's model; a picture of tracks masks nothing: "
                              "leave it out")
        size = 224 if size is None else size
        if kind == ".mp4" and size % 2:
            raise ConfigError(f"--size {size}: an .mp4 (H.264, 4:2:0) needs an even size")
        path = tracks_picture(video, out, start, num_frames or 16, stride or DataConfig.stride, size, length or 6,
                              seed_stride or 16, compensate, orientation or DataConfig.orientation,
                              backend or DataConfig.backend)
    print(f"viz: wrote {path}")
    return path
