"""``mme viz``: pictures of tracks over a video's frames, and of a model's predicted vs target trajectories.

    mme viz clip.mp4 --out tracks.png                     # one panel per tubelet: its start frame + tracks
    mme viz clip.mp4 --out tracks.gif                     # the raw frames with the tracks growing (or .mp4)
    mme viz clip.mp4 --out pred.png --checkpoint run/ckpt # masked patches: target (green) vs predicted (red)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mme.data.transforms import apply_geometry, to_video_tensor, view_crops
from mme.data.video import open_video, video_error
from mme.errors import CheckpointError, ConfigError, MMEError
from mme.motion.tracks import Tracks, track


@dataclass
class Clip:
    """A centre-cropped window of a video: the raw frames ``(F, S, S, 3)`` with their ids, the encoder's clip
    indices and the tubelet starts."""

    frames: np.ndarray
    frame_ids: np.ndarray
    clip: np.ndarray
    starts: np.ndarray


def read_clip(path: str, start: int, num_frames: int, stride: int, size: int, length: int, tubelet: int = 2) -> Clip:
    """Decode every raw frame of the window (the tracks need them) and centre-crop them to ``size``²."""
    with open_video(path) as reader:
        clip = start + stride * np.arange(num_frames)
        starts = clip[::tubelet]
        last = max(int(clip[-1]), int(starts[-1]) + length)
        if last >= reader.num_frames:
            raise video_error(path, "too short", f"{reader.num_frames} frames; {num_frames} frames at stride "
                              f"{stride} from frame {start}, with tracks of {length}, need {last + 1}")
        ids = np.arange(start, last + 1)
        frames = apply_geometry(reader.read(ids), view_crops(reader.size, size, 1)[0])
    return Clip(frames, ids, clip, starts)


def _colour(i: int, n: int) -> tuple[int, int, int]:
    hue = np.uint8([[[int(180 * i / max(n, 1)), 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hue, cv2.COLOR_HSV2RGB)[0, 0])


def draw_tracks(frame: np.ndarray, positions: np.ndarray, valid: np.ndarray, upto: int | None = None,
                colour: tuple[int, int, int] | None = None, thickness: int = 1) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with the tracks ``positions (L+1, P, 2)`` px drawn up to step ``upto``
    (valid points only; a dot at the current end). Colours follow the seed's position unless given."""
    out = frame.copy()
    pts = positions[: (upto if upto is not None else len(positions) - 1) + 1]  # (k+1, P, 2)
    P = pts.shape[1]
    for p in np.flatnonzero(valid):
        _polyline(out, pts[:, p], colour or _colour(p, P), thickness)
    return out


def _polyline(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> None:
    """Draw one track ``(k, 2)`` px in place, with a dot at its end."""
    line = np.round(pts * 4).astype(np.int32)  # 2 fractional bits: sub-pixel lines
    cv2.polylines(img, [line], False, colour, thickness, cv2.LINE_AA, shift=2)
    cv2.circle(img, tuple(int(v) for v in line[-1]), 4 * thickness, colour, -1, cv2.LINE_AA, shift=2)


def _save(images: list[np.ndarray], out: Path, fps: float = 8.0) -> None:
    """PNG (the images tiled), animated GIF, or H.264 MP4; written atomically."""
    from PIL import Image

    from mme.data.synth import encode_h264

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        encode_h264(out, np.stack(images), fps=int(fps))  # atomic itself
        return
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    if out.suffix.lower() == ".gif":
        frames = [Image.fromarray(im) for im in images]
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    else:
        Image.fromarray(_grid(images)).save(tmp)
    tmp.replace(out)


def _grid(images: list[np.ndarray], cols: int = 4) -> np.ndarray:
    """Panels ``(H, W, 3)`` tiled row by row with a 4-px white gutter."""
    H, W = images[0].shape[:2]
    rows = -(-len(images) // cols)
    cols = min(cols, len(images))
    canvas = np.full((rows * (H + 4) - 4, cols * (W + 4) - 4, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (H + 4): r * (H + 4) + H, c * (W + 4): c * (W + 4) + W] = im
    return canvas


def tracks_picture(video: str, out: str | Path, start: int = 0, num_frames: int = 16, stride: int = 4,
                   size: int = 224, length: int = 6, seed_stride: int = 16, compensate: bool = False) -> Path:
    """PNG: one panel per tubelet (its first frame, the tracks of its L steps). GIF / MP4: every raw frame, the
    tracks of the current tubelet drawn up to that frame."""
    c = read_clip(video, start, num_frames, stride, size, length)
    tr: Tracks = track(c.frames, c.frame_ids, c.starts, length, seed_stride=seed_stride, compensate=compensate,
                       source=video)
    pos = tr.positions().reshape(len(c.starts), length + 1, -1, 2)  # (S, L+1, P, 2)
    valid = tr.valid.reshape(len(c.starts), -1)
    out = Path(out)
    at = {int(f): i for i, f in enumerate(c.frame_ids)}
    if out.suffix.lower() in (".gif", ".mp4"):
        images = []
        for k, s in enumerate(c.starts):
            for j in range(length + 1):
                images.append(draw_tracks(c.frames[at[int(s) + j]], pos[k], valid[k], upto=j))
    else:
        images = [draw_tracks(c.frames[at[int(s)]], pos[k], valid[k]) for k, s in enumerate(c.starts)]
    _save(images, out)
    return out


def prediction_picture(video: str, checkpoint: str, out: str | Path, start: int = 0, stride: int = 4,
                       seed: int = 0, compensate: bool = False, scale: float = 4.0) -> Path:
    """Masked patches of each tubelet's first frame, greyed, with the target (green) and predicted (red)
    trajectories of the ``traj`` head drawn from each point's seed, cumulated over the steps.

    The targets are made as the run made them (points per patch, track length, PatchStd or position unit)
    when ``checkpoint`` is one of our training checkpoints; otherwise the released layout (2×2 points, PatchStd)
    is assumed. PatchStd targets are unit-free z-scores, drawn at ``scale`` px per unit."""
    from dataclasses import replace

    from mme.config import from_dict
    from mme.models.checkpoint import build_model, read_checkpoint
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, assemble, token_geometry
    from mme.motion.tracks import default_max_disp

    ck = read_checkpoint(checkpoint)
    model = build_model(ck)
    if not isinstance(model, MaskedAutoencoder) or "traj" not in model.heads:
        raise MMEError(f"{checkpoint}: not a masked autoencoder with a 'traj' head; nothing to compare")
    m = model.cfg
    spec = next(h for h in model.head_specs if h.name == "traj")
    if isinstance(ck.run_config.get("target"), dict):  # only the traj target is drawn: no HOG maps needed
        try:
            run = from_dict(TargetConfig, ck.run_config["target"], prefix="target.")
        except ConfigError as e:
            raise CheckpointError(f"{checkpoint}: its run's target section does not load here: {e}") from e
        cfg = replace(run, kind="mme-released", loss_weights={}, compensate=run.compensate or compensate)
    else:
        cfg = TargetConfig(kind="mme-released", track_length=max(spec.dim // (2 * 4), 1), compensate=compensate)
    g = token_geometry(cfg, m)
    L = cfg.track_length
    if spec.dim != 2 * L * g.points:
        raise MMEError(f"{checkpoint}: traj head of {spec.dim} dims is not 2 x {L} steps x {g.points} points; "
                       "cannot draw it")
    c = read_clip(video, start, m.num_frames, stride, m.img_size, L, m.tubelet_size)
    tr = track(c.frames, c.frame_ids, c.starts, L, seed_stride=g.seed_stride, compensate=cfg.compensate,
               source=video)
    targets, _ = assemble(tr, cfg, g)
    if not cfg.patch_norm:  # targets are displacements in units of position_unit (default: the track bound)
        scale = cfg.position_unit or cfg.max_disp or default_max_disp(*tr.size)
    at = {int(f): i for i, f in enumerate(c.frame_ids)}
    x = to_video_tensor(c.frames[[at[int(f)] for f in c.clip]])[None]  # (1, 3, T, H, W)
    mask = model.make_mask(1, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = model.forward_decoder(model.forward_encoder(x, mask), mask)["traj"][0]  # (N_masked, 2LK)
    target = targets["traj"][mask[0]]
    t, h, w = m.grid
    a = m.patch_size // g.seed_stride
    tokens = torch.nonzero(mask[0]).flatten().tolist()
    images = [c.frames[at[int(s)]].copy() for s in c.starts]
    for row, tok in enumerate(tokens):
        ti, rem = divmod(tok, h * w)
        hi, wi = divmod(rem, w)
        y0, x0 = hi * m.patch_size, wi * m.patch_size
        img = images[ti]
        img[y0:y0 + m.patch_size, x0:x0 + m.patch_size] //= 2
        for vec, colour in ((target[row], (40, 220, 40)), (pred[row], (230, 40, 40))):
            z = vec.reshape(2, L, a * a).permute(2, 1, 0).numpy() * scale  # (K, L, 2)
            for k in range(a * a):
                seed_xy = np.array([x0 + g.seed_stride * (k % a + 0.5), y0 + g.seed_stride * (k // a + 0.5)])
                _polyline(img, np.concatenate([seed_xy[None], seed_xy + np.cumsum(z[k], 0)]), colour)  # (L+1, 2)
    out = Path(out)
    _save(images, out)
    return out


def main(args) -> int:
    """CLI entry (flags in mme.cli._add_viz)."""
    if args.checkpoint:
        path = prediction_picture(args.video, args.checkpoint, args.out, args.start, args.stride, args.seed,
                                  args.compensate)
    else:
        path = tracks_picture(args.video, args.out, args.start, args.num_frames, args.stride, args.size,
                              args.length, args.seed_stride, args.compensate)
    print(f"viz: wrote {path}")
    return 0
