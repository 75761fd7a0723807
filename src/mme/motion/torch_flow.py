"""``torch-lk``: a dense coarse-to-fine Lucas-Kanade optical flow in torch, batched over frame pairs, for the
training step on the accelerator (no weights, nothing downloaded).

OpenCV's DIS runs one pair at a time on one CPU core in the data workers, and its 48 pairs per 16 x 224² clip
are most of a worker's CPU for online MME targets (docs/performance.md). This flow runs wherever the batch is:
every pair of a batch at once on the GPU, so online targets need only decoding from the workers.

Per pyramid level, coarse to fine (each level half the size of the one below, the coarsest at least :data:`MIN_SIZE`
px on its short side): both frames smoothed by a Gaussian of :data:`PRE_SIGMA` px; then :data:`ITERATIONS`
Gauss-Newton steps of a translation per pixel, fitted over a Gaussian window of :data:`WINDOW_SIGMA` px: frame b
warped by the current flow (bilinear), the symmetric gradient (the mean of both frames' gradients), residuals
weighted robustly (:data:`ROBUST`), the 2 x 2 system damped by :data:`DAMPING` (a quarter of it per level up, as the
gradients' energy falls; it keeps the update small where the window has no texture, so the coarser level's flow
stays there), each step at most :data:`MAX_STEP` px, and the flow smoothed by a Gaussian of :data:`SMOOTH` px after
each step (DIS's variational refinement plays this part). The settings were chosen on ``mme bench flow``'s analytic
motions and its object set's PatchStd probe, where the flow's detail inside a patch counts (docs/performance.md).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

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
MIN_SIZE = 16
"""Short side of the coarsest level, px (at least)."""
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


def _blur(x: torch.Tensor, sigma: float, shifted: bool | None = None) -> torch.Tensor:
    """Separable Gaussian of every channel of ``(P, C, H, W)``, borders replicated. On a CPU (``shifted`` None)
    as a sum of shifted copies (1.4-5x faster there than torch's depthwise convolution, measured on 2 to 5
    channels of 96² and 224²); elsewhere as two depthwise convolutions (two passes over memory instead of one per
    tap)."""
    k = _gaussian(sigma, x.device)
    r, C = len(k) // 2, x.shape[1]
    if not (x.device.type == "cpu" if shifted is None else shifted):
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
    taps = k.tolist()
    for dim in (-1, -2):
        n = x.shape[dim]
        padded = F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="replicate")
        x = padded.narrow(dim, 0, n) * taps[0]
        for i, w in enumerate(taps[1:], 1):
            x.add_(padded.narrow(dim, i, n), alpha=w)
    return x


def _gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(P, 1, H, W)``, borders replicated."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5, (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5


@functools.lru_cache(maxsize=32)
def _pixel_grid(H: int, W: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(H, W)`` row and column of every pixel."""
    return torch.meshgrid(torch.arange(H, dtype=torch.float32, device=device),
                          torch.arange(W, dtype=torch.float32, device=device), indexing="ij")


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image (P, C, H, W)`` read at ``x + flow(x)`` (bilinear, borders replicated); flow float32 ``(P, 2, H, W)``
    px."""
    H, W = image.shape[-2:]
    ys, xs = _pixel_grid(H, W, flow.device)
    gx = (xs + flow[:, 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(H - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    levels = [x]
    while min(levels[-1].shape[-2:]) >= 2 * MIN_SIZE:
        h, w = levels[-1].shape[-2:]
        levels.append(F.interpolate(levels[-1], size=((h + 1) // 2, (w + 1) // 2), mode="bilinear",
                                    antialias=True, align_corners=False))
    return levels


def lk_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Flow from each grey frame of ``a`` to the same one of ``b`` (float ``(P, H, W)``, 0..255, any device):
    float32 ``(P, 2, H, W)`` (dx, dy) px. Runs in fp32 whatever autocast says."""
    with torch.autocast(a.device.type, enabled=False):
        pyramid = list(zip(_pyramid(a[:, None].float()), _pyramid(b[:, None].float()), strict=True))
        flow = None
        for level, (i0, i1) in reversed(list(enumerate(pyramid))):
            i0, i1 = _blur(i0, PRE_SIGMA), _blur(i1, PRE_SIGMA)
            H, W = i0.shape[-2:]
            if flow is None:
                flow = torch.zeros(i0.shape[0], 2, H, W, device=i0.device)
            else:
                h, w = flow.shape[-2:]
                flow = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=False)
                flow[:, 0] *= W / w
                flow[:, 1] *= H / h
            g0x, g0y = _gradient(i0)
            for _ in range(ITERATIONS):
                moved = warp(i1, flow)
                g1x, g1y = _gradient(moved)
                gx, gy, e = (g0x + g1x) * 0.5, (g0y + g1y) * 0.5, moved - i0
                root_weight = (1.0 + (e / ROBUST) ** 2) ** -0.25  # each product below carries the weight once
                gx, gy, e = gx * root_weight, gy * root_weight, e * root_weight
                sxx, sxy, syy, sxe, sye = _blur(torch.cat([gx * gx, gx * gy, gy * gy, gx * e, gy * e], 1),
                                                WINDOW_SIGMA).unbind(1)
                damping = DAMPING / 4 ** level
                sxx, syy = sxx + damping, syy + damping
                det = sxx * syy - sxy * sxy
                step = torch.stack([syy * sxe - sxy * sye, sxx * sye - sxy * sxe], 1) / det[:, None]
                flow = _blur(flow - step.clamp_(-MAX_STEP, MAX_STEP), SMOOTH)
        return flow
