"""``torch-lk``: a dense coarse-to-fine Lucas-Kanade optical flow in torch, batched over frame pairs, for the training
step on the accelerator (no weights, nothing downloaded).

OpenCV's DIS runs one pair at a time on one CPU core in the data workers, and its 48 pairs per 16 x 224² clip are most
of a worker's CPU for online MME targets (docs/performance.md). This flow runs wherever the batch is: every pair of a
batch at once on the GPU, so online targets need only decoding from the workers.

Per pyramid level, coarse to fine (each level half the size of the one below, the coarsest at least :data:`MIN_SIZE` px
on its short side, or down to :data:`SMALLEST` px for :data:`MIN_LEVELS` levels): both frames smoothed by a Gaussian of
:data:`PRE_SIGMA` px; then :data:`ITERATIONS` Gauss-Newton steps of a translation per pixel, fitted over a Gaussian
window of :data:`WINDOW_SIGMA` px: first (on the finest level only before the first two) the flow of the pixels
:data:`PROPAGATE` px away is tried at every pixel (see there), then frame b warped by the flow (bilinear), the symmetric
gradient (the mean of both frames' gradients), residuals weighted robustly (:data:`ROBUST`), the 2 x 2 system damped by
:data:`DAMPING` (a quarter of it per level up, as the gradients' energy falls; it keeps the update small where the
window has no texture, so the coarser level's flow stays there), each step at most :data:`MAX_STEP` px, and the flow
smoothed by a Gaussian of :data:`SMOOTH` px after each step (DIS's variational refinement plays this part); samples read
at the frame's edge or beyond it get no weight (:data:`EDGE_MARGIN`). The settings were chosen on ``mme bench flow``'s
analytic motions and its object set's PatchStd probe, where the flow's detail inside a patch counts, and the propagation
on objects moving over real footage (``benchmarks/flow_real_footage.py``; docs/performance.md). """

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from mme.utils import no_tf32

WINDOW_SIGMA = 3.0
"""Gaussian window of each pixel's least-squares fit, px."""
PRE_SIGMA = 0.8
"""Gaussian smoothing of both frames at each level before their gradients, px."""
ITERATIONS = 5
"""Gauss-Newton steps per level."""
DAMPING = 100.0
"""Added to the diagonal of each pixel's 2 x 2 system at the finest level (grey levels², frames in 0..255); a
quarter of it at each level above."""
SMOOTH = 2.0
"""Gaussian smoothing of the flow after each step, px."""
ROBUST = 8.0
"""Residuals are weighted by ``(1 + (e / ROBUST)²)^-1/2`` (Charbonnier, grey levels): occlusions and appearance
changes pull the flow less."""
MAX_STEP = 1.0
"""The largest change of each flow component in one Gauss-Newton step, px of its level."""
PROPAGATE = 4
"""Before each Gauss-Newton step every pixel tries the flow of the pixels this many px away (of its level) left and
right, or above and below on odd steps, and takes the one whose warp explains its window best (robust residuals;
the current flow wins ties). Where an object moves over a still background, the coarse levels' windows spread its
motion tens of pixels beyond its edges, and the finer levels' Gauss-Newton steps cannot undo it in textureless
parts; a flow cut at the edge travels across the spread a few px per step (DIS's spatial propagation does the same
for its patches)."""
FINEST_MARGIN = 0.01
"""On the finest level a neighbour's flow is taken only where it lowers the window's residual by more than this
fraction. A flow spread across an edge misfits by more; the slight differences of a smooth flow field inside a small
rotating or growing object do not, and without the margin they were replaced by their neighbours' (in a trial,
``mme bench flow``'s object probe on PatchStd targets fell from 68.8 / 70.8 to 54.2 / 41.7 %; with it 60.4 / 75.0,
``dis-balanced``'s 60.4 / 62.5; docs/performance.md)."""
FINEST_PROPAGATIONS = 2
"""The finest level propagates before this many of its Gauss-Newton steps (one each way), the coarser levels before
all: before every step there it cost 1.4-1.7x the CPU per pair, for an error of 0.24 instead of 0.26 px on
``benchmarks/flow_real_footage.py``'s moving objects."""
MIN_SIZE = 16
"""Short side of the coarsest level, px (at least), unless :data:`MIN_LEVELS` need a smaller one."""
MIN_LEVELS = 3
"""Levels a pyramid has at least, while the coarsest stays :data:`SMALLEST` px or more on its short side: frames of
32-62 px (two levels by :data:`MIN_SIZE`) under-read motion by 3-10 % (a 1.5 px translation read as 1.37 px at 48²,
1.45 at 62², 1.50-1.51 with three levels); frames of 15-31 px gain one or two (29-31 px). Frames of 63 px or more
have three levels by :data:`MIN_SIZE`."""
SMALLEST = 8
"""Short side of the coarsest level that :data:`MIN_LEVELS` may add, px (at least)."""
EDGE_MARGIN = 1.0
"""The fit weighs only the samples of frame b read at least this many px inside its edge (:func:`_inside`), and its
windows sum the frame's samples only: beyond the last pixel centre the warp reads the border replicated, and next to
it the smoothing and the gradient read it; neither moves with the content, and weighed like the others they
under-read the flow near the edge the content moves towards (a 1.3 px translation on 96² by 0.31 px at the last
column, 0.03 px inside: 7-25 % of PatchStd's traj values |z| > 0.5 on a pan, whose targets are 0; now 0.06 px).
Chosen on analytic motions: with 0 px the translation was under-read by 0.11 px at the last column; the mask costs a
1.5° rotation's outermost pixels a little (0.23 px error against 0.21 px before it, from 16 px inside 0.025 px)."""
GREY_WEIGHTS = (4899, 9617, 1868)
"""RGB -> grey with ITU-R BT.601's weights in fixed point (``(r w_r + g w_g + b w_b + 2^13) >> 14``): integer
arithmetic gives the same grey frames on every device (``cv2.cvtColor`` differs by one level on a few pixels)."""


def grey(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames ``(..., H, W, 3)`` -> float32 grey ``(..., H, W)`` (:data:`GREY_WEIGHTS`)."""
    r, g, b = frames.to(torch.int32).unbind(-1)
    wr, wg, wb = GREY_WEIGHTS
    return ((r * wr + g * wg + b * wb + (1 << 13)) >> 14).float()


@functools.lru_cache(maxsize=32)
def _gaussian(sigma: float, device: torch.device) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float, shifted: bool | None = None, outside: str = "replicate") -> torch.Tensor:
    """Separable Gaussian of every channel of ``(P, C, H, W)``, the samples outside the frame ``outside``: replicated
    (``"replicate"``) or zero (``"constant"``: a windowed sum of the frame's samples only). On a CPU (``shifted``
    None) as a sum of shifted copies (1.4-5x faster there than torch's depthwise convolution, measured on 2 to 5
    channels of 96² and 224²); elsewhere as two depthwise convolutions (two passes over memory instead of one per
    tap)."""
    k = _gaussian(sigma, x.device)
    r, C = len(k) // 2, x.shape[1]
    if not (x.device.type == "cpu" if shifted is None else shifted):
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=outside), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode=outside), k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
    taps = k.tolist()
    for dim in (-1, -2):
        n = x.shape[dim]
        padded = F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode=outside)
        x = padded.narrow(dim, 0, n) * taps[0]
        for i, w in enumerate(taps[1:], 1):
            x.add_(padded.narrow(dim, i, n), alpha=w)
    return x


def _gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(P, 1, H, W)``, borders replicated."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5, (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5


@functools.lru_cache(maxsize=32)
def _pixel_grid(H: int, W: int, device: torch.device, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(n H, W)`` row and column of every pixel of an ``H x W`` image, n times along the rows."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32, device=device),
                            torch.arange(W, dtype=torch.float32, device=device), indexing="ij")
    return ys.repeat(n, 1), xs.repeat(n, 1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image (P, C, H, W)`` read at ``x + flow(x)`` (bilinear, borders replicated); flow float32 ``(P, 2, H, W)``
    px, or ``(P, 2, n H, W)``: n flows of the image stacked along the rows, read into n images stacked so."""
    H, W = image.shape[-2:]
    ys, xs = _pixel_grid(H, W, flow.device, flow.shape[-2] // H)
    gx = (xs + flow[:, 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(H - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


@functools.lru_cache(maxsize=32)
def _flow_bounds(H: int, W: int, device: torch.device, n: int) -> tuple[torch.Tensor, ...]:
    """The least and the largest flow of every pixel, x then y, that reads :data:`EDGE_MARGIN` px or more inside
    an ``H x W`` frame: float32 ``(n H, W)`` each, n times along the rows."""
    ys, xs = _pixel_grid(H, W, device, n)
    return EDGE_MARGIN - xs, W - 1 - EDGE_MARGIN - xs, EDGE_MARGIN - ys, H - 1 - EDGE_MARGIN - ys


def _inside(flow: torch.Tensor, H: int) -> torch.Tensor:
    """Whether ``x + flow(x)`` lies :data:`EDGE_MARGIN` px or more inside the ``H x W`` frame: bool ``(P, H, W)`` of
    a flow ``(P, 2, H, W)``, or ``(P, n H, W)`` of n flows stacked along the rows (as :func:`warp` takes them). The
    fit gives the other samples no weight."""
    x_low, x_high, y_low, y_high = _flow_bounds(H, flow.shape[-1], flow.device, flow.shape[-2] // H)
    dx, dy = flow[:, 0], flow[:, 1]
    return (dx >= x_low) & (dx <= x_high) & (dy >= y_low) & (dy <= y_high)


@functools.lru_cache(maxsize=32)
def _window_share(H: int, W: int, device: torch.device) -> torch.Tensor:
    """float32 ``(1, H, W)``: the share of each pixel's window (:data:`WINDOW_SIGMA`) inside an ``H x W`` frame."""
    return _blur(torch.ones(1, 1, H, W, dtype=torch.float32, device=device), WINDOW_SIGMA, outside="constant")[:, 0]


def _shifted(flow: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``flow`` read ``(dy, dx)`` px away: the flow of pixel ``(y + dy, x + dx)`` at ``(y, x)``, borders replicated."""
    r = max(abs(dy), abs(dx))
    H, W = flow.shape[-2:]
    if dy == 0:
        return F.pad(flow, (r, r, 0, 0), mode="replicate")[..., r + dx:r + dx + W]
    return F.pad(flow, (0, 0, r, r), mode="replicate")[..., r + dy:r + dy + H, :]


def _propagate(i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor, vertical: bool,
               margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:data:`PROPAGATE`'s step: the flow after it ``(P, 2, H, W)``, ``i1`` warped by that flow ``(P, 1, H, W)`` and
    where it reads inside the frame (:func:`_inside`, ``(P, 1, H, W)``); a neighbour's flow must lower the residual
    by more than the fraction ``margin``. The three candidates are
    warped by one ``grid_sample`` (stacked along the rows: the frame is not copied)."""
    d, H = PROPAGATE, flow.shape[-2]
    offsets = ((d, 0), (-d, 0)) if vertical else ((0, d), (0, -d))
    candidates = torch.cat([flow, *(_shifted(flow, dy, dx) for dy, dx in offsets)], 2)  # (P, 2, 3 H, W)
    moved = warp(i1, candidates)  # (P, 1, 3 H, W)
    inside = _inside(candidates, H).unflatten(1, (3, H))  # (P, 3, H, W)
    residual = (1.0 + ((moved.unflatten(2, (3, H)) - i0[:, :, None]) / ROBUST) ** 2).sqrt_()[:, 0]
    # a sample a candidate reads at the frame's edge costs what the current flow's does (the least cost, 1, where
    # that is at the edge too): it favours no candidate
    residual = torch.where(inside, residual, torch.where(inside[:, :1], residual[:, :1], 1.0))
    cost = _blur(residual, WINDOW_SIGMA, outside="constant")
    if margin:
        cost[:, 0] *= 1.0 - margin
    # the first of equal costs, as argmin, by comparisons (argmin over a middle axis of 3 is slow on a CPU)
    first = cost[:, 1:2] < cost[:, :1]
    second = cost[:, 2:] < torch.where(first, cost[:, 1:2], cost[:, :1])

    def block(x: torch.Tensor, k: int) -> torch.Tensor:  # candidate k of a row-stacked tensor
        return x[:, :, k * H:(k + 1) * H]

    return (torch.where(second, block(candidates, 2), torch.where(first, block(candidates, 1), flow)),
            torch.where(second, block(moved, 2), torch.where(first, block(moved, 1), block(moved, 0))),
            torch.where(second, inside[:, 2:], torch.where(first, inside[:, 1:2], inside[:, :1])))


def _pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    levels = [x]
    while (short := min(levels[-1].shape[-2:])) >= 2 * MIN_SIZE or (len(levels) < MIN_LEVELS
                                                                    and (short + 1) // 2 >= SMALLEST):
        h, w = levels[-1].shape[-2:]
        levels.append(F.interpolate(levels[-1], size=((h + 1) // 2, (w + 1) // 2), mode="bilinear",
                                    antialias=True, align_corners=False))
    return levels


@no_tf32()
def lk_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Flow from each grey frame of ``a`` to the same one of ``b`` (float ``(P, H, W)``, 0..255, any device):
    float32 ``(P, 2, H, W)`` (dx, dy) px. Runs in fp32 whatever autocast says, and without TF32 on CUDA, so a GPU
    computes the CPU's flow."""
    with torch.autocast(a.device.type, enabled=False):
        pyramid = list(zip(_pyramid(a[:, None].float()), _pyramid(b[:, None].float()), strict=True))
        flow = None
        for level, (i0, i1) in reversed(list(enumerate(pyramid))):
            i0, i1 = _blur(i0, PRE_SIGMA), _blur(i1, PRE_SIGMA)
            H, W = i0.shape[-2:]
            if flow is None:
                flow = torch.zeros(i0.shape[0], 2, H, W, dtype=torch.float32, device=i0.device)
            else:
                h, w = flow.shape[-2:]
                flow = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=False)
                flow[:, 0] *= W / w
                flow[:, 1] *= H / h
            g0x, g0y = _gradient(i0)
            # the windows sum the frame's samples only: the damping in proportion, as against a whole window
            damping = DAMPING / 4 ** level * _window_share(H, W, i0.device)
            for it in range(ITERATIONS):
                if level > 0 or it < FINEST_PROPAGATIONS:
                    flow, moved, inside = _propagate(i0, i1, flow, it % 2 == 1,
                                                     FINEST_MARGIN if level == 0 else 0.0)
                else:
                    moved, inside = warp(i1, flow), _inside(flow, H)[:, None]
                g1x, g1y = _gradient(moved)
                gx, gy, e = (g0x + g1x) * 0.5, (g0y + g1y) * 0.5, moved - i0
                # each product below carries the weight once; samples read at the frame's edge (_inside) none
                root_weight = (1.0 + (e / ROBUST) ** 2) ** -0.25 * inside
                gx, gy, e = gx * root_weight, gy * root_weight, e * root_weight
                sxx, sxy, syy, sxe, sye = _blur(torch.cat([gx * gx, gx * gy, gy * gy, gx * e, gy * e], 1),
                                                WINDOW_SIGMA, outside="constant").unbind(1)
                sxx, syy = sxx + damping, syy + damping
                det = sxx * syy - sxy * sxy
                step = torch.stack([syy * sxe - sxy * sye, sxx * sye - sxy * sxe], 1) / det[:, None]
                flow = _blur(flow - step.clamp_(-MAX_STEP, MAX_STEP), SMOOTH)
        return flow
