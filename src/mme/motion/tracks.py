"""Dense point tracks: seeds on a grid, followed through consecutive optical flow (mme-method.md §7.1, §7.3).

Seeds sit at cell centres ``seed_stride/2 + k*seed_stride`` (stride patch/2 gives 2×2 points per patch). A new
set starts at every requested start frame and is followed for ``length`` steps of ``step`` raw frames with
BILINEAR flow sampling (the release reads the flow at truncated integer positions). Displacements are clamped to
``±max_disp`` (20 px at 224², scaled with the frame's short side) and points move by the clamped value, so
positions are always the cumulative sum of the stored displacements (in pixels: no D6 bug). A point is valid
while the positions it reads the flow at stay inside the frame: its last position, where it reads none, is not
checked (the release's rule, §7.3). Once out it is invalid for good and, as in the release, reads the flow at
the frame's edge (where the flow was computed with a margin of the scene around the frame, ``crop`` of
:func:`track`: the flow where it is, while it is in the margin): its later displacements go on with the motion
there (a pan's) rather than stopping at 0, which would put a still point among moving ones in the targets of its
patch, still supervised through its other points (a deformation PatchStd scales up to unit size, or a 0 px step
beside the pan's). With camera-motion compensation the stored displacement is the motion relative to the camera
and the point moves by the homography too (``p' = H (p + d)``), which :func:`integrate` replays for cached tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mme.data.video_reader import frame_indices
from mme.errors import ConfigError, DataError
from mme.motion.flow import DEFAULT_FLOW, Compensation, pair_flow
from mme.motion.torch_flow import grey, lk_flow
from mme.utils import counted, plural

TRACKER_CHANGES = {2: "a point that leaves the frame reads the flow at the frame's edge, where it stopped at 0 px",
                   3: "torch-lk gives no weight to samples read outside the frame, where it under-read the motion"}
"""What each revision of the tracker changed in its tracks. A change to what :func:`track`, :func:`track_in_step`
or the flows they read give for the same frames and settings adds the next revision here: a track cache records
the revision that made it (``tracker``), and a file of another one is made again by a resumed ``mme extract`` and
refused by training (:func:`mme.motion.cache.stale`), unless every later revision changed other flows only
(:data:`REVISION_FLOWS`)."""
REVISION_FLOWS = {3: ("torch-lk",)}
"""The flows whose tracks a revision changed, where it changed some only (others: every flow): a file of another
flow made before it is still this mme's tracks."""
TRACKER = max(TRACKER_CHANGES)


def tracks_changed(revision: int, flow: str) -> str | None:
    """How this mme's tracks of ``flow`` differ from those tracker revision ``revision`` made ('revision 2, this
    mme's is 3; revision 3: ...', each later revision that changed them: :data:`REVISION_FLOWS`), or a later
    revision's (a newer mme's); None where they are the same."""
    changed = [r for r in range(revision + 1, TRACKER + 1) if r not in REVISION_FLOWS or flow in REVISION_FLOWS[r]]
    if not changed and revision <= TRACKER:
        return None
    return f"revision {revision}, this mme's is {TRACKER}" + "".join(f"; revision {r}: {TRACKER_CHANGES[r]}"
                                                                     for r in changed)


@dataclass
class Tracks:
    """Tracks of S start frames on a (Gh, Gw) seed grid.

    disp: float32 ``(S, L, Gh, Gw, 2)`` per-step displacements in px (x, y); valid: bool ``(S, Gh, Gw)``;
    homs: float32 ``(S, L, 3, 3)`` camera homographies per step (identity: none), or None without compensation;
    seeds: float32 ``(Gh, Gw, 2)`` start positions; size: (H, W) of the frame they are in (a crop's, where its flow
    read a margin around it: :func:`track`).
    """

    disp: np.ndarray
    valid: np.ndarray
    homs: np.ndarray | None
    seeds: np.ndarray
    size: tuple[int, int]

    def positions(self) -> np.ndarray:
        """Tracked positions ``(S, L+1, Gh, Gw, 2)`` in px, from the seeds, displacements and homographies."""
        return integrate(self.seeds, self.disp, self.homs)


def default_max_disp(height: int, width: int) -> float:
    """The release's ±20 px bound at 224², scaled with the short side."""
    return 20.0 * min(height, width) / 224.0


def seed_grid(height: int, width: int, stride: float) -> np.ndarray:
    """Seeds at cell centres: ``(Gh, Gw, 2)`` float32 (x, y) with Gh = H // stride, Gw = W // stride."""
    if not stride > 0:
        raise ConfigError(f"seed stride must be > 0 pixels, got {stride}")
    gh, gw = int(height // stride), int(width // stride)
    if gh == 0 or gw == 0:
        raise ConfigError(f"seed stride {stride} is larger than the {height}x{width} frame")
    ys = stride / 2 + stride * np.arange(gh, dtype=np.float32)
    xs = stride / 2 + stride * np.arange(gw, dtype=np.float32)
    return np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float32)


def _apply_hom(points: np.ndarray, homs: np.ndarray) -> np.ndarray:
    """points ``(S, ..., 2)``, homs ``(S, 3, 3)`` -> the projected points, same shape."""
    p = points.reshape(points.shape[0], int(np.prod(points.shape[1:-1])), 2)
    q = np.einsum("sij,spj->spi", homs[:, :, :2], p) + homs[:, None, :, 2]  # (S, P, 3)
    return (q[..., :2] / q[..., 2:3]).reshape(points.shape).astype(np.float32)


def integrate(seeds: np.ndarray, disp: np.ndarray, homs: np.ndarray | None = None) -> np.ndarray:
    """Positions ``(S, L+1, Gh, Gw, 2)``: ``p_0`` = seeds, ``p_{j+1} = H_j (p_j + d_j)`` (H = I without homs)."""
    S, L = disp.shape[:2]
    pos = np.empty((S, L + 1, *disp.shape[2:]), np.float32)
    pos[:, 0] = seeds
    for j in range(L):
        q = pos[:, j] + disp[:, j]
        pos[:, j + 1] = q if homs is None else _apply_hom(q, homs[:, j])
    return pos


def in_frame(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Whether points ``(..., 2)`` lie inside the frame: between its first and last pixel centres, 0..W-1 and 0..H-1.
    Deliberately narrower than the release's [0, W) x [0, H) (mme-method.md §7.3), which reads the flow at the
    truncated integer position: a bilinear lookup past the last pixel centre reads flow replicated beyond the frame
    (docs/targets.md)."""
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def sample_flow(flows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Bilinear flow lookup: flows ``(S, 2, H, W)``, pos ``(S, P, 2)`` px -> ``(S, P, 2)`` (border-clamped)."""
    H, W = flows.shape[-2:]
    g = pos.clone()
    g[..., 0] = g[..., 0] * (2.0 / max(W - 1, 1)) - 1.0  # align_corners=True: pixel centres 0..W-1 -> [-1, 1]
    g[..., 1] = g[..., 1] * (2.0 / max(H - 1, 1)) - 1.0
    out = F.grid_sample(flows, g[:, None], mode="bilinear", padding_mode="border", align_corners=True)  # (S, 2, 1, P)
    return out[:, :, 0].permute(0, 2, 1)


def _displacement(flows: torch.Tensor, pos: torch.Tensor, bound: float) -> torch.Tensor:
    """Each point's step ``(S, P, 2)``: the flow at its position (:func:`sample_flow`; at the frame's edge for points
    that have left it), bounded at ``±bound``."""
    return sample_flow(flows, pos).clamp_(-bound, bound)


def _as_frames(frames, source: str) -> np.ndarray:
    if isinstance(frames, np.ndarray):
        arr = frames
    else:
        shapes = {tuple(np.shape(f)) for f in frames}
        if len(shapes) > 1:
            raise DataError(f"{source}: frames of different sizes {sorted(shapes)}; tracks need one frame size")
        arr = np.stack(list(frames)) if shapes else np.zeros((0, 1, 1, 3), np.uint8)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise DataError(f"{source}: frames must be uint8 (T, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise DataError(f"{source}: frames must be uint8, got {arr.dtype}")
    return arr


def prune_tracks(tracks: Tracks, static_px: float = 1.0, erratic_ratio: float = 0.7) -> np.ndarray:
    """iDT-style filter (off by default): validity with static tracks (path shorter than ``static_px``) and
    erratic ones (one step longer than ``erratic_ratio`` of the path) removed. Returns ``(S, Gh, Gw)`` bool."""
    steps = np.linalg.norm(tracks.disp, axis=-1)  # (S, L, Gh, Gw)
    path = steps.sum(1)
    erratic = (steps.max(1) > erratic_ratio * path) & (tracks.disp.shape[1] > 1)
    return tracks.valid & (path >= static_px) & ~erratic


def _clamp(i: int, last: int | None) -> int:
    return i if last is None else min(i, last)


def track_frames(ids: list[int], starts: list[int], length: int, step: int, last: int | None,
                 source: str) -> np.ndarray:
    """The raw frame ``(S, length + 1)`` each start's track is at after each step (past ``last``: ``last``, the
    clamped convention of :func:`track`), checked to be among the frames held (``ids``)."""
    raw = np.asarray(starts, np.int64)[:, None] + step * np.arange(length + 1)[None]
    raw = raw if last is None else np.minimum(raw, last)
    missing = sorted(set(raw.ravel().tolist()) - set(ids))
    if missing:
        have = f"{min(ids)}..{max(ids)}" if ids else "none"
        raise DataError(
            f"{source}: video too short for the tracks: raw {plural(len(missing), 'frame')} "
            f"{missing[:5]} needed, frames held: {have} ({counted(len(ids), 'frame')}); tracks need "
            f"{counted(length, 'step')} of {counted(step, 'frame')} after each start"
        )
    return raw


def track(frames, frame_ids, starts, length: int, step: int = 1, seed_stride: float = 8, flow: str = DEFAULT_FLOW,
          compensate: bool = False, max_disp: float | None = None, prune: bool = False,
          source: str = "frames", flow_cache: dict | None = None, clamp: bool = False,
          crop: tuple[int, int, int, int] | None = None) -> Tracks:
    """Tracks on a sparse set of frames (what the dataset's Sample holds).

    frames: uint8 ``(F, H, W, 3)``; frame_ids: the raw index of each frame ``(F,)``; starts: raw start indices.
    Track k of a start s uses the flow of raw frames ``(s + j*step, s + (j+1)*step)``, j < length, so exactly
    those frames must be present; flow is computed once per distinct pair (``flow_cache`` may carry pairs
    between calls). With ``clamp``, raw frames past the last one held read as the last one (the dataset's
    convention for videos shorter than the window): the flow there is exactly zero. ``source`` names the video
    in errors. ``max_disp`` bounds the motion per raw frame: a step of ``step`` raw frames is bounded at ``step``
    times it. ``crop`` (x, y, w, h): the output frame within ``frames``, which hold a margin of the scene around it
    for the flow to read (``target.flow_margin``): seeds, bound, validity, positions, homographies and ``size`` are
    the output frame's, as without one, but a point that left it and not the frames reads the flow where it is,
    not the clamped flow of the output frame's edge.
    """
    arr = _as_frames(frames, source)
    ids = [int(i) for i in np.asarray(frame_ids).reshape(-1)]
    if len(ids) != len(arr):
        raise DataError(f"{source}: {len(arr)} frames but {len(ids)} frame ids")
    if length < 1 or step < 1:
        raise ConfigError(f"track length and step must be >= 1, got {length}, {step}")
    where = {fid: i for i, fid in enumerate(ids)}
    starts = frame_indices(starts, f"{source}: starts").tolist()
    last = max(ids) if (clamp and ids) else None
    track_frames(ids, starts, length, step, last, source)
    x0, y0, W, H = crop or (0, 0, arr.shape[2], arr.shape[1])
    if not (0 <= x0 and 0 <= y0 and x0 + W <= arr.shape[2] and y0 + H <= arr.shape[1]):
        raise DataError(f"{source}: the crop {W}x{H} at ({x0}, {y0}) is not within its {arr.shape[2]}x"
                        f"{arr.shape[1]} frames")
    offset = np.array([x0, y0], np.float32)
    seeds = seed_grid(H, W, seed_stride)
    bound = step * (default_max_disp(H, W) if max_disp is None else float(max_disp))
    comp = Compensation() if compensate else None
    cache = {} if flow_cache is None else flow_cache

    def get(a: int, b: int):
        a, b = _clamp(a, last), _clamp(b, last)
        if a == b:
            return np.zeros((*arr.shape[1:3], 2), np.float32), None
        if (a, b) not in cache:
            cache[(a, b)] = pair_flow(arr[where[a]], arr[where[b]], flow, comp)
        return cache[(a, b)]

    S, (gh, gw) = len(starts), seeds.shape[:2]
    pos = np.broadcast_to(seeds.reshape(1, -1, 2) + offset, (S, gh * gw, 2)).copy()  # (S, P, 2), in ``frames``
    inside = np.ones((S, gh * gw), bool)
    disp = np.zeros((S, length, gh * gw, 2), np.float32)
    homs = np.tile(np.eye(3, dtype=np.float32), (S, length, 1, 1)) if compensate else None
    for j in range(length if S else 0):  # no starts: no flows to stack
        inside &= in_frame(pos - offset, H, W)  # where this step reads the flow
        pairs = [get(s + j * step, s + (j + 1) * step) for s in starts]
        flows = torch.from_numpy(np.stack([f for f, _ in pairs])).permute(0, 3, 1, 2)
        d = _displacement(flows, torch.from_numpy(pos), bound).numpy()  # (S, P, 2)
        pos = pos + d
        if compensate:
            for i, (_, hom) in enumerate(pairs):
                if hom is not None:
                    homs[i, j] = hom
            pos = _apply_hom(pos, homs[:, j])
        disp[:, j] = d
    if compensate and offset.any():  # p_crop = p - offset: H_crop = T(-offset) H T(offset)
        shift = np.eye(3, dtype=np.float32)
        shift[:2, 2] = offset
        homs = np.linalg.inv(shift) @ homs @ shift
    out = Tracks(disp.reshape(S, length, gh, gw, 2), inside.reshape(S, gh, gw), homs, seeds, (H, W))
    if prune:
        out.valid = prune_tracks(out)
    return out


def compute_tracks(frames, starts, length: int, seed_stride: float = 8, flow: str = DEFAULT_FLOW,
                   compensate: bool = False, max_disp: float | None = None, step: int = 1,
                   prune: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Tracks of uint8 frames ``(T, H, W, 3)`` (frame i = raw frame i) from each start for ``length`` steps.

    Returns displacements float32 ``(S, length, Gh, Gw, 2)`` in px (x, y) and validity bool ``(S, Gh, Gw)``.
    Flow is computed only for the frame pairs the tracks cover.
    """
    arr = _as_frames(frames, "frames")
    t = track(arr, np.arange(len(arr)), starts, length, step, seed_stride, flow, compensate, max_disp, prune)
    return t.disp, t.valid


def track_in_step(frames: torch.Tensor, index: torch.Tensor, seed_stride: float, max_disp: float | None = None,
                  chunk_px: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracks of a whole batch on its device with the ``torch-lk`` flow (:mod:`mme.motion.torch_flow`), as
    :func:`track` makes them from a flow: the same seeds, bilinear lookups, bound and validity.

    frames: uint8 ``(U, H, W, 3)``, every frame the tracks visit; index: ``(P, L + 1)`` the frame each of P starts
    is at after each step (the same frame twice in a row: a clamped frame past a video's end, where the flow is
    exactly zero). Each distinct frame pair's flow is computed once, ``chunk_px`` pixels of pairs at a time
    (default: 2^18 on a CPU, the fastest per pair on one thread of a Zen 4 EPYC for 96² and 298x224 pairs, e.g.
    64 ms per 298x224 pair in chunks of 4 against 80 alone and 97 in chunks of 32; 2^24 on an accelerator, where
    the temporaries of a chunk take a few GB). Returns displacements ``(P, L, Gh, Gw, 2)`` px, validity
    ``(P, Gh, Gw)`` and positions ``(P, L + 1, Gh, Gw, 2)``.
    """
    P, L = index.shape[0], index.shape[1] - 1
    H, W = frames.shape[1:3]
    dev = frames.device
    seeds = torch.from_numpy(seed_grid(H, W, seed_stride)).to(dev)
    gh, gw = seeds.shape[:2]
    bound = default_max_disp(H, W) if max_disp is None else float(max_disp)
    pairs = torch.stack([index[:, :-1], index[:, 1:]], -1).reshape(-1, 2)  # (P*L, 2)
    distinct, which = torch.unique(pairs, dim=0, return_inverse=True)
    moving = distinct[:, 0] != distinct[:, 1]
    flows = torch.zeros(len(distinct), 2, H, W, dtype=torch.float32, device=dev)
    todo = moving.nonzero()[:, 0]
    chunk = max(1, (chunk_px or (1 << 18 if dev.type == "cpu" else 1 << 24)) // (H * W))
    for k in range(0, len(todo), chunk):
        rows = todo[k:k + chunk]
        flows[rows] = lk_flow(grey(frames[distinct[rows, 0]]), grey(frames[distinct[rows, 1]]))
    which = which.view(P, L)
    pos = seeds.reshape(1, -1, 2).expand(P, -1, -1).clone()  # (P, G, 2)
    inside = torch.ones(P, gh * gw, dtype=torch.bool, device=dev)
    disp, path = [], [pos]
    for j in range(L):
        inside &= in_frame(pos, H, W)  # where this step reads the flow
        d = _displacement(flows[which[:, j]], pos, bound)
        pos = pos + d
        disp.append(d)
        path.append(pos)
    return (torch.stack(disp, 1).reshape(P, L, gh, gw, 2), inside.reshape(P, gh, gw),
            torch.stack(path, 1).reshape(P, L + 1, gh, gw, 2))
