"""Video transforms with one geometry for every frame of a clip (no torchvision).

Each spatial transform only *chooses* a :class:`Geometry` (a crop box in source pixels, an output size and a
flip); :func:`apply_geometry` applies it to every frame with one OpenCV resize per frame, and
:meth:`Geometry.affine` (with :meth:`Geometry.map_points` / :meth:`Geometry.map_vectors`) carries points and
displacements of the source frames (a track cache's tracks) through the same geometry.

Coordinates are continuous pixel coordinates with pixel *edges* at integers: pixel column ``i`` covers
``[i, i + 1)`` and its centre is at ``x = i + 0.5``. In this convention a crop-then-resize is exactly
``x_out = (x - x0) * out_w / w`` (OpenCV's resize uses the same half-pixel alignment), and a flip is
``x_out -> out_w - x_out``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from mme.utils import opencv_settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Pre-training crop of MME / VideoMAE (mme-method.md §3): scales of the short side, and the snap distance.
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)
SNAP_PX = 3


_INTEGER_CLIP = {
    "normalize": ("RGB in [0, 1]", "a uint8 clip (0..255, a dataset item's) is normalised by "
                                   "mme.data.transforms.normalize_clip"),
    "denormalize": ("ImageNet-normalised", "a uint8 clip (0..255) is RGB already: clip.float() / 255 is it in [0, 1]"),
}
"""For :func:`normalize` and :func:`denormalize`: the float clips each takes, and what to do with a uint8 one."""


def _stats(ref: torch.Tensor, channel_dim: int, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std in ``ref``'s dtype, shaped to broadcast along ``channel_dim``; in an integer dtype
    both would round to 0, so ``caller`` refuses ``ref`` there, saying what it takes (:data:`_INTEGER_CLIP`)."""
    if not ref.is_floating_point():
        takes, advice = _INTEGER_CLIP[caller]
        raise TypeError(f"{caller} takes float clips ({takes}), got {ref.dtype}; {advice}")
    shape = [1] * ref.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, dtype=ref.dtype, device=ref.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=ref.dtype, device=ref.device).view(shape)
    return mean, std


def normalize(video: torch.Tensor, channel_dim: int = -4, inplace: bool = False) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised; the channel axis defaults to C of ``(..., C, T, H, W)``; ``inplace``
    overwrites ``video`` (bitwise the same values)."""
    mean, std = _stats(video, channel_dim, "normalize")
    return video.sub_(mean).div_(std) if inplace else (video - mean) / std


def denormalize(video: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    mean, std = _stats(video, channel_dim, "denormalize")
    return video * std + mean


def deviations(x: torch.Tensor, dims: tuple[int, ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` less its mean over ``dims`` (non-negative), as a new tensor or written into ``out``.

    Two plain passes where torch's ``var_mean`` (Welford's update per element) took 2-4x as long on a CPU, each
    block first shifted by its own first value, so that a constant block is exactly 0 as Welford's mean made it.
    Over long blocks sum the squares with ``(d * d).sum``: ``torch.linalg.vector_norm`` over the 800k values of a
    16 x 224² channel lost two digits (rows of a few hundred, as the pixel target's, keep them)."""
    first = x[tuple(slice(0, 1) if i in dims else slice(None) for i in range(x.dim()))]
    d = torch.sub(x, first, out=out) if out is not None else x - first
    return d.sub_(d.mean(dims, keepdim=True))


def to_clip(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames ``(T, H, W, 3)`` -> uint8 ``(3, T, H, W)``: what pre-training workers ship (a quarter of
    the float clip's bytes through shared memory and to the accelerator, where :func:`normalize_clip` runs).
    Each frame's channels are split into their planes by OpenCV: 0.33 ms of CPU for 16 frames of 224², where
    torch's permuted copy took 1.44 (Zen 4 EPYC, one thread)."""
    frames = np.ascontiguousarray(frames)
    out = np.empty((frames.shape[3], *frames.shape[:3]), frames.dtype)
    for t, frame in enumerate(frames):
        cv2.split(frame, list(out[:, t]))  # written in place: the planes are views of ``out``
    return torch.from_numpy(out)


def normalize_clip(clip: torch.Tensor) -> torch.Tensor:
    """uint8 clips ``(..., 3, T, H, W)`` -> ImageNet-normalised float, on the clips' device."""
    if clip.dtype != torch.uint8:
        raise TypeError(f"normalize_clip takes uint8 clips, got {clip.dtype}")
    return normalize(clip.float().div_(255.0), inplace=True)  # one float clip made, not three


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames ``(T, H, W, 3)`` -> ImageNet-normalised float ``(3, T, H, W)``."""
    # Reorder the uint8 bytes first (4x less memory traffic than reordering floats), then convert.
    return normalize_clip(to_clip(frames))


@dataclass(frozen=True)
class Geometry:
    """A crop box ``(x0, y0, w, h)`` in source pixels, resized to ``(out_w, out_h)``, then optionally flipped
    left-right. Coordinates: pixel edges at integers (module docstring)."""

    x0: float
    y0: float
    w: float
    h: float
    out_w: int
    out_h: int
    flip: bool = False
    area: bool = False
    """A fractional box shrunk more than 2x on both axes is area-averaged as a whole-pixel one is
    (:func:`apply_geometry`), not warped bilinearly, which would alias it: a whole-pixel crop's widened box
    (:meth:`widened`), so that its margin is resampled as the crop is."""

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel along x and y."""
        return self.out_w / self.w, self.out_h / self.h

    def affine(self, source_scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
        """3×3 affine from the pixel centres ``(x, y, 1)`` of the source frame, or of the source resized by
        ``source_scale`` (a track cache's working frame), to the output frame's pixel centres: the crop, the resize,
        then the flip."""
        (kx, ky), (sx, sy) = source_scale, self.scale
        fx = -1.0 if self.flip else 1.0
        # centre -> source edge: (x + 0.5) / k; -> output edge: (e - x0) * s (flipped: out_w - that); -> centre: - 0.5
        bx = fx * (0.5 / kx - self.x0) * sx + (self.out_w if self.flip else 0.0) - 0.5
        return np.array([[fx * sx / kx, 0, bx], [0, sy / ky, (0.5 / ky - self.y0) * sy - 0.5], [0, 0, 1]], np.float64)

    def map_points(self, xy) -> np.ndarray:
        """Source points ``(..., 2)`` as (x, y), pixel edges at integers (the module's convention) -> the same points
        in the output frame; points with pixel centres at integers (tracks, seed grids) map by :meth:`affine`."""
        a = self.affine()  # diagonal: each axis alone (a product with its zeros would carry a NaN to the other)
        return (np.asarray(xy, dtype=np.float64) - 0.5) * a.diagonal()[:2] + a[:2, 2] + 0.5  # edges -> centres, back

    def map_vectors(self, dxy) -> np.ndarray:
        """Source displacements ``(..., 2)`` (dx, dy) -> output displacements (scaled; dx negated by a flip)."""
        return np.asarray(dxy, dtype=np.float64) * self.affine().diagonal()[:2]

    def widened(self, margin: int, size: tuple[int, int]) -> tuple[Geometry, tuple[int, int]]:
        """This crop with ``margin`` output pixels more of the source frame of ``size`` (w, h) on each side, at the
        same scale: on a side where the frame ends sooner, the whole output pixels it has (none at its edge). Returns
        the widened geometry and where this crop's output lies in its output: the (x, y) of its first pixel, the
        flip included (a flipped crop's left margin is the source's right)."""
        (sx, sy), (W, H) = self.scale, size

        def room(source_px: float, scale: float) -> int:
            return max(0, min(margin, math.floor(source_px * scale + 1e-6)))  # (1e-6: 8 px read as 7.999999)

        left, right = room(self.x0, sx), room(W - self.x0 - self.w, sx)
        top, bottom = room(self.y0, sy), room(H - self.y0 - self.h, sy)
        if not (left or right or top or bottom):
            return self, (0, 0)
        wide = Geometry(self.x0 - left / sx, self.y0 - top / sy, self.w + (left + right) / sx,
                        self.h + (top + bottom) / sy, self.out_w + left + right, self.out_h + top + bottom, self.flip,
                        area=self.whole_pixel)
        return wide, (right if self.flip else left, top)

    @property
    def whole_pixel(self) -> bool:
        """Whether the box's edges are whole source pixels (sliced, then resized: :func:`apply_geometry`)."""
        return all(float(v).is_integer() for v in (self.x0, self.y0, self.w, self.h))


def resize(frame: np.ndarray, size: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """``frame`` resized to ``size`` (w, h): INTER_AREA when shrinking both sides, which averages like PIL's
    antialiased bilinear, else INTER_LINEAR (INTER_AREA enlarging replicates pixels at 3x and more, which the flow
    reads as less motion than there is). The rule of the online crops and of the track cache's working frames."""
    h, w = frame.shape[:2]
    interp = cv2.INTER_AREA if (size[0] < w and size[1] < h) else cv2.INTER_LINEAR
    return cv2.resize(frame, size, dst=dst, interpolation=interp)


def apply_geometry(frames: np.ndarray, geom: Geometry) -> np.ndarray:
    """Apply ``geom`` to uint8 frames ``(F, H, W, C)`` -> ``(F, out_h, out_w, C)``: one resize per frame.

    An integer crop box is sliced and :func:`resize`-d; a fractional box is warped with the exact affine map, with
    OpenCV's IPP on, whatever the calling thread set (as :func:`mme.motion.flow.pair_flow`: ``warpAffine`` rounds
    otherwise without it). A fractional box with ``geom.area`` shrunk more than 2x on both axes is area-averaged as
    a whole-pixel one: the whole source pixels around it are :func:`resize`-d at its scale, and only the sub-pixel
    rest is warped (a bilinear warp alone reads 2x2 source pixels for each output one, and aliases there).
    """
    frames, size = np.asarray(frames), (geom.out_w, geom.out_h)
    # each frame is resized into its place in the output (no stacking copy); cv2 takes a channel axis of 1 as none
    out = np.empty((len(frames), geom.out_h, geom.out_w, frames.shape[3] if frames.ndim == 4 else 1), frames.dtype)
    places = out[..., 0] if out.shape[3] == 1 else out
    if geom.whole_pixel:
        x0, y0, w, h = (int(v) for v in (geom.x0, geom.y0, geom.w, geom.h))
        for f, place in zip(frames, places):
            resize(f[y0:y0 + h, x0:x0 + w], size, dst=place)
    elif geom.area and max(geom.scale) < 0.5:
        (sx, sy), (H, W) = geom.scale, frames.shape[1:3]
        x0, y0 = max(0, math.floor(geom.x0)), max(0, math.floor(geom.y0))
        x1, y1 = min(W, math.ceil(geom.x0 + geom.w)), min(H, math.ceil(geom.y0 + geom.h))
        whole = Geometry(float(x0), float(y0), float(x1 - x0), float(y1 - y0),
                         max(1, round((x1 - x0) * sx)), max(1, round((y1 - y0) * sy)))
        # whole's output pixel centres -> the source's (its inverse affine) -> geom's: the sub-pixel rest
        m = (replace(geom, flip=False).affine() @ np.linalg.inv(whole.affine()))[:2]
        with opencv_settings(ipp=True):
            for f, place in zip(frames, places):
                cv2.warpAffine(resize(f[y0:y1, x0:x1], (whole.out_w, whole.out_h)), m, size, dst=place,
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        m = replace(geom, flip=False).affine()[:2]  # pixel centres, as OpenCV's; the flip comes after
        with opencv_settings(ipp=True):
            for f, place in zip(frames, places):
                cv2.warpAffine(f, m, size, dst=place, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out[:, :, ::-1]) if geom.flip else out


def geometry_of_each(*geoms: Geometry) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`apply_geometry` of one frame, for ``VideoReader.read(indices, each=...)``, which then holds its frames
    at the output size as it decodes them: ``(out_h, out_w, C)`` per frame for one geometry, ``(G, out_h, out_w,
    C)`` for several (the crops of a test view)."""
    if len(geoms) == 1:
        return lambda frame: apply_geometry(frame[None], geoms[0])[0]
    return lambda frame: np.stack([apply_geometry(frame[None], g)[0] for g in geoms])


def multiscale_crop(size: tuple[int, int], out_size: int, rng: np.random.Generator,
                    scales=MULTISCALE_SCALES, max_distort: int = 1) -> Geometry:
    """MME / VideoMAE pre-training crop (GroupMultiScaleCrop with fix_crop and more_fix_crop; §3).

    Crop sides are ``int(short_side * scale)``, snapped to ``out_size`` when within 3 px; width and height
    scale indices differ by at most ``max_distort``; the offset is one of 13 fixed positions on a grid of step
    ``(image - crop) // 4``. No flip.
    """
    W, H = size
    base = min(W, H)
    sides = [out_size if abs(int(base * s) - out_size) < SNAP_PX else max(int(base * s), 1) for s in scales]
    pairs = [(wi, hi) for hi in range(len(sides)) for wi in range(len(sides)) if abs(wi - hi) <= max_distort]
    wi, hi = pairs[int(rng.integers(len(pairs)))]
    cw, ch = min(sides[wi], W), min(sides[hi], H)
    ws, hs = (W - cw) // 4, (H - ch) // 4
    offsets = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2),  # corners and centre
               (0, 2), (4, 2), (2, 4), (2, 0),  # edge centres
               (1, 1), (3, 1), (1, 3), (3, 3)]  # quarter points
    ox, oy = offsets[int(rng.integers(len(offsets)))]
    return Geometry(float(ox * ws), float(oy * hs), float(cw), float(ch), out_size, out_size)


def random_resized_crop(size: tuple[int, int], out_size: int, rng: np.random.Generator,
                        scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)) -> Geometry:
    """Fine-tuning crop: a box of random area fraction in ``scale`` and aspect in ``ratio`` (log-uniform),
    10 tries, else the centre crop with the ratio clamped (a side of at least 1 px). Unflipped, as every crop here:
    the dataset draws the flip (``DataConfig.flip``)."""
    W, H = size
    area = W * H
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= W and 0 < h <= H:
            box = (int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1)), w, h)
            break
    if box is None:
        aspect = W / H
        if aspect < ratio[0]:
            w, h = W, max(1, int(round(W / ratio[0])))
        elif aspect > ratio[1]:
            w, h = max(1, int(round(H * ratio[1]))), H
        else:
            w, h = W, H
        box = ((W - w) // 2, (H - h) // 2, w, h)
    return Geometry(*(float(v) for v in box), out_size, out_size)


def view_crops(size: tuple[int, int], out_size: int, num_crops: int = 3) -> list[Geometry]:
    """Test views: resize the short side to ``out_size`` and take ``num_crops`` squares along the long side
    (first, centre, last for 3; the centre for 1, the same box as the centre of 3, its offset rounded up: our
    rounding, up to a pixel right of (or below) the authors' centre, whose test crops start at
    ``int(split_nb * spatial_step)`` of the frame resized first, docs/evaluation.md). Expressed as integer square
    boxes of the short side in the source, so each view is one crop + one resize."""
    W, H = size
    side = min(W, H)
    room = max(W, H) - side
    offsets = [-(-room // 2)] if num_crops == 1 else [-(-k * room // (num_crops - 1)) for k in range(num_crops)]
    if W >= H:
        return [Geometry(float(o), 0.0, float(side), float(side), out_size, out_size) for o in offsets]
    return [Geometry(0.0, float(o), float(side), float(side), out_size, out_size) for o in offsets]
