"""``mme viz``: pictures of tracks over a video's frames, and of a model's predicted vs target trajectories.

    mme viz clip.mp4 --out tracks.png                     # a titled panel per tubelet: its start frame + tracks
    mme viz clip.mp4 --out tracks.gif                     # the raw frames with the tracks growing (or .mp4)
    mme viz clip.mp4 --out pred.png --checkpoint run/ckpt # per tubelet: frame | target tracks | predicted tracks

PNG panels are upsampled to at least MIN_PANEL px and come with a key to their colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from mme.data.dataset import DataConfig, Sample
from mme.data.transforms import apply_geometry, to_video_tensor, view_crops
from mme.data.video import open_video, video_error
from mme.errors import CheckpointError, ConfigError, MMEError
from mme.motion.tracks import Tracks, track
from mme.utils import atomic_path, check_output

if TYPE_CHECKING:
    from mme.models.config import ModelConfig
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import Geometry, TargetConfig


def read_clip(path: str, start: int, num_frames: int, stride: int, size: int, length: int,
              tubelet: int = 2) -> Sample:
    """The centre-cropped window of a video as the data workers' sample: every raw frame of the window (the tracks
    need them) cropped to ``size``², their ids, the encoder's clip indices and the tubelet starts."""
    with open_video(path) as reader:
        clip = start + stride * np.arange(num_frames)
        starts = clip[::tubelet]
        last = max(int(clip[-1]), int(starts[-1]) + length)
        if last >= reader.num_frames:
            raise video_error(path, "too short", f"{reader.num_frames} frames; {num_frames} frames at stride "
                              f"{stride} from frame {start}, with tracks of {length}, need {last + 1}")
        ids = np.arange(start, last + 1)
        geometry = view_crops(reader.size, size, 1)[0]
        frames = apply_geometry(reader.read(ids), geometry)
    return Sample(frames, ids, clip, starts, geometry, path, length)


MIN_PANEL = 288
"""px: PNG panels are at least this wide (frames upsampled by a whole factor) so a person can read them."""
TARGET_RGB, PRED_RGB = (40, 210, 40), (235, 40, 40)
DIM = 0.45
"""Brightness left to masked patches in the prediction picture."""


def _factor(size: int) -> int:
    return max(1, -(-MIN_PANEL // size))


def _upsample(frame: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)


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


def _save_frames(images: list[np.ndarray], out: Path, fps: float = 8.0) -> None:
    """Animated GIF or H.264 MP4 of the images; written atomically."""
    from PIL import Image

    from mme.data.synth import encode_h264

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        encode_h264(out, np.stack(images), fps=int(fps))  # atomic itself
        return
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    frames = [Image.fromarray(im) for im in images]
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    tmp.replace(out)


def _figure(panels: list[tuple[str, np.ndarray]], cols: int, title: str, legend, out: Path) -> None:
    """PNG of titled panels, row by row at about their pixel size (100 dpi), with a key column on the right that
    ``legend(subfigure)`` fills; written atomically."""
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
            ax.set_title(name, fontsize=11)
    fig.suptitle(title, fontsize=12)
    legend(key)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")


def _wheel_legend(full: float):
    """A key of `_direction_rgb`: the colour of each displacement up to ``full`` px from the centre."""
    def legend(key) -> None:
        r = np.linspace(-full, full, 121)
        d = np.stack(np.meshgrid(r, r), -1)
        img = _direction_rgb(d, full)
        img[np.hypot(d[..., 0], d[..., 1]) > full] = 255
        ax = key.add_axes((0.1, 0.35, 0.8, 0.3))
        ax.imshow(img, extent=(-full, full, full, -full))
        ax.set_title("track colour = its motion\nfrom first to last frame", fontsize=10)
        ax.set_xlabel("dx px (right)", fontsize=8)
        ax.set_ylabel("dy px (down)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.annotate(f"white: still\nfull colour: moved >= {full:.1f} px\ndot: where the point is\nat the last "
                    "frame", (0.5, 0), (0, -34), "axes fraction", "offset points", ha="center", va="top", fontsize=9)
    return legend


def tracks_picture(video: str, out: str | Path, start: int = 0, num_frames: int = 16, stride: int = 4,
                   size: int = 224, length: int = 6, seed_stride: int = 16, compensate: bool = False) -> Path:
    """PNG: one titled panel per tubelet (its first frame upsampled, the tracks of its L steps) and a colour key.
    GIF / MP4: every raw frame at its size, the tracks of the current tubelet drawn up to that frame."""
    c = read_clip(video, start, num_frames, stride, size, length)
    tr: Tracks = track(c.frames, c.frame_ids, c.starts, length, seed_stride=seed_stride, compensate=compensate,
                       source=video)
    pos = tr.positions().reshape(len(c.starts), length + 1, -1, 2)  # (S, L+1, P, 2)
    valid = tr.valid.reshape(len(c.starts), -1)
    moved = np.hypot(*(pos[:, -1] - pos[:, 0]).transpose(2, 0, 1))[valid]
    full = max(float(np.percentile(moved, 90)) if moved.size else 0.0, 1.0)  # most tracks below full colour
    out = Path(out)
    at = {int(f): i for i, f in enumerate(c.frame_ids)}
    if out.suffix.lower() in (".gif", ".mp4"):
        _save_frames([draw_tracks(c.frames[at[int(s) + j]], pos[k], valid[k], full, upto=j)
                      for k, s in enumerate(c.starts) for j in range(length + 1)], out)
        return out
    f = _factor(size)
    panels = [(f"frame {s}, tracks to {s + length}", draw_tracks(_upsample(c.frames[at[int(s)]], f), pos[k] * f,
                                                                 valid[k], full=full * f, thickness=2))
              for k, s in enumerate(c.starts)]
    title = f"{Path(video).name}: point tracks over {length} frames, one panel per tubelet\nframes {size} px shown x{f}"
    _figure(panels, min(4, len(panels)), title, _wheel_legend(full), out)
    return out


def _traj_model(checkpoint: str, compensate: bool) -> tuple[MaskedAutoencoder, TargetConfig, Geometry, int | None]:
    """The checkpoint's masked autoencoder with its target config, token geometry and clip stride: its run's when
    ``checkpoint`` is one of our training checkpoints (the tracks computed online with its ``target.flow``, also
    for a run that read them from a track cache; the stride None for a run of TSN segments), else the released
    layout (2×2 points, PatchStd) and no stride."""
    from dataclasses import replace

    from mme.config import from_dict
    from mme.models.checkpoint import build_model, read_checkpoint
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, token_geometry

    ck = read_checkpoint(checkpoint)
    model = build_model(ck)
    if not isinstance(model, MaskedAutoencoder) or "traj" not in model.heads:
        raise MMEError(f"{checkpoint}: not a masked autoencoder with a 'traj' head; nothing to compare")
    spec = next(h for h in model.head_specs if h.name == "traj")
    stride = None
    if isinstance(ck.run_config.get("target"), dict):  # only the traj target is drawn: no HOG maps needed
        try:
            run = from_dict(TargetConfig, ck.run_config["target"], prefix="target.")
        except ConfigError as e:
            raise CheckpointError(f"{checkpoint}: its run's target section does not load here: {e}") from e
        cfg = replace(run, kind="mme-released", loss_weights={}, compensate=run.compensate or compensate,
                      cache_dir=None)
        stride = ck.clip_stride
    else:
        cfg = TargetConfig(kind="mme-released", track_length=max(spec.dim // (2 * 4), 1), compensate=compensate)
    g = token_geometry(cfg, model.cfg)
    if spec.dim != 2 * cfg.track_length * g.points:
        raise MMEError(f"{checkpoint}: traj head of {spec.dim} dims is not 2 x {cfg.track_length} steps x "
                       f"{g.points} points; cannot draw it")
    return model, cfg, g, stride


def prediction_picture(video: str, checkpoint: str, out: str | Path, start: int = 0, stride: int | None = None,
                       seed: int = 0, compensate: bool = False, scale: float = 4.0) -> Path:
    """PNG, per tubelet: its first frame, then the target and the predicted trajectories of the ``traj`` head
    on its masked (dimmed) patches, drawn from each point's seed, cumulated over the steps.

    The targets are made as the run's training made them (:class:`TargetFn`: its flow, bound, pruning and
    interpolation), from a clip at ``stride`` raw frames (default: the run's ``data.stride``, else 4). PatchStd
    targets are unit-free z-scores, drawn at ``scale`` px (of the model's frame) per unit; position targets in
    their run's unit."""
    from mme.motion.targets import TargetFn
    from mme.motion.tracks import default_max_disp

    model, cfg, g, run_stride = _traj_model(checkpoint, compensate)
    m, L = model.cfg, cfg.track_length
    stride = stride or run_stride or DataConfig.stride
    c = read_clip(video, start, m.num_frames, stride, m.img_size, L, m.tubelet_size)
    traj = TargetFn(cfg, m).targets(c)[0]["traj"]  # (N, 2LK)
    if not cfg.patch_norm:  # targets are displacements in units of position_unit (default: the track bound)
        scale = cfg.position_unit or cfg.max_disp or default_max_disp(*c.frames.shape[1:3])
    at = {int(f): i for i, f in enumerate(c.frame_ids)}
    x = to_video_tensor(c.frames[[at[int(f)] for f in c.clip]])[None]  # (1, 3, T, H, W)
    mask = model.make_mask(1, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = model.forward_decoder(model.forward_encoder(x, mask), mask)["traj"][0]  # (N_masked, 2LK)
    f = _factor(m.img_size)
    frames = [_upsample(c.frames[at[int(s)]], f) for s in c.starts]
    tokens = torch.nonzero(mask[0]).flatten().tolist()
    panels = _prediction_panels(frames, c.starts, tokens, traj[mask[0]], pred, m, g.seed_stride, L,
                                scale * f)
    unit = "PatchStd unit" if cfg.patch_norm else "position unit"
    title = (f"{Path(video).name}, {Path(checkpoint).name}: motion of the masked patches, target vs predicted\n"
             f"frames {m.img_size} px shown x{f}; tracks of {L} steps drawn at {scale * f:g} px per {unit}")
    out = Path(out)
    _figure(panels, 3, title, _prediction_legend, out)
    return out


def _prediction_panels(frames: list[np.ndarray], starts: np.ndarray, tokens: list[int], target: torch.Tensor,
                       pred: torch.Tensor, m: ModelConfig, seed_stride: int, L: int,
                       px_per_unit: float) -> list[tuple[str, np.ndarray]]:
    """Three titled panels per tubelet: its frame, the target tracks and the predicted ones on the masked
    (dimmed) patches; rows of ``target`` / ``pred`` follow ``tokens``."""
    f = frames[0].shape[0] // m.img_size
    p, (_, h, w), a = m.patch_size * f, m.grid, m.patch_size // seed_stride
    cells = [(tok // (h * w), (tok % (h * w)) // w * p, tok % w * p) for tok in tokens]  # (tubelet, y0, x0)
    dimmed = [im.copy() for im in frames]
    for ti, y0, x0 in cells:
        dimmed[ti][y0:y0 + p, x0:x0 + p] = (dimmed[ti][y0:y0 + p, x0:x0 + p] * DIM).astype(np.uint8)
    drawn = {"target": [im.copy() for im in dimmed], "predicted": [im.copy() for im in dimmed]}
    k = np.arange(a * a)
    offsets = f * seed_stride * np.stack([k % a + 0.5, k // a + 0.5], -1)  # (K, 2) seeds in their patch, x y
    for row, (ti, y0, x0) in enumerate(cells):
        for name, vec, colour in (("target", target[row], TARGET_RGB), ("predicted", pred[row], PRED_RGB)):
            z = vec.reshape(2, L, a * a).permute(2, 1, 0).numpy() * px_per_unit  # (K, L, 2)
            seeds = (np.array([x0, y0]) + offsets)[:, None]  # (K, 1, 2)
            for path in np.concatenate([seeds, seeds + np.cumsum(z, 1)], 1):  # (L+1, 2)
                _polyline(drawn[name][ti], path, colour, 2)
    return [panel for k, s in enumerate(starts) for panel in (
        (f"frame {s}", frames[k]), (f"target tracks, frame {s}", drawn["target"][k]),
        (f"predicted tracks, frame {s}", drawn["predicted"][k]))]


def _prediction_legend(key) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=np.array(TARGET_RGB) / 255, lw=2, marker="o", label="target: tracked motion"),
               Line2D([], [], color=np.array(PRED_RGB) / 255, lw=2, marker="o", label="predicted motion"),
               Patch(facecolor=(0, 0, 0, 1 - DIM), edgecolor="none", label="masked patch (dimmed):\n"
                     "hidden from the encoder,\nits motion predicted")]
    key.legend(handles=handles, loc="center", fontsize=9, title="key", frameon=False,
               handlelength=2.5, labelspacing=1.2)


PICTURES = (".png", ".gif", ".mp4")


def draw_picture(video: str, out: str | Path, checkpoint: str | None = None, start: int = 0,
                 num_frames: int | None = None, stride: int | None = None, size: int | None = None,
                 length: int | None = None, seed_stride: int | None = None, compensate: bool = False,
                 seed: int = 0) -> Path:
    """``mme viz``: :func:`prediction_picture` (a PNG) with a ``checkpoint``, whose model sets the frames, size,
    track length and points and whose run the stride unless given (``seed`` draws the mask), else
    :func:`tracks_picture` (16 frames of 224² at stride 4, L=6, a point every 16 px unless given); prints and
    returns the path written."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in PICTURES:
        raise ConfigError(f"--out {out}: the picture is written as its suffix says: one of {', '.join(PICTURES)}")
    check_output(out, "--out")
    if checkpoint:
        given = [name for name, v in (("--num-frames", num_frames), ("--size", size), ("--length", length),
                                      ("--seed-stride", seed_stride)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: with --checkpoint the clip, size, track length and points are "
                              f"the model's; leave {'it' if len(given) == 1 else 'them'} out")
        if kind != ".png":
            raise ConfigError(f"--out {out}: a picture of predicted motion is a .png")
        path = prediction_picture(video, checkpoint, out, start, stride, seed, compensate)
    else:
        size = 224 if size is None else size
        if kind == ".mp4" and size % 2:
            raise ConfigError(f"--size {size}: an .mp4 (H.264, 4:2:0) needs an even size")
        path = tracks_picture(video, out, start, num_frames or 16, stride or DataConfig.stride, size, length or 6,
                              seed_stride or 16, compensate)
    print(f"viz: wrote {path}")
    return path
