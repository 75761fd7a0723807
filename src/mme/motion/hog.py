"""HOG cell histograms in torch (CPU in data workers, GPU in the training step), and their lookup along tracks.

Per colour channel (each channel is its own grey image, as the release), 9 unsigned orientation bins over
[0, 180), cells of ``cell`` px, no block normalisation (mme-method.md §7.7). Three styles (``STYLES``):

- ``skimage``: central differences, each pixel's magnitude voted into one bin, bin i covering [20i, 20i+20)
  degrees, histograms mean-pooled over the cell: scikit-image's convention, but at the frame's outermost pixels,
  where the gradient across the edge is the one-sided difference (the frame replicated by a pixel, as the release
  pads) and scikit-image's is 0. The interior cells are scikit-image's; the outermost ring of cells differs
  (correlation 0.997 over all cells of a bikes frame; tests/test_hog.py).
- ``release``: the MME release's ``HOGDescriptorByConv``: 3x3 Sobel gradients (weights 1-2-1, about 4x the
  central difference) and a linear vote between the two bins centred on multiples of 20 degrees either side,
  mean-pooled. Its conv's random bias (D5) is not reproduced: zero bias, as intended. At an orientation exactly
  on a bin centre the release gives both bins weight 0, which with its bias never happens; here that bin takes it
  all.
- ``maskfeat``: MaskFeat's ``HOGLayerC`` (SlowFast) as its video model builds it: reflect-padded 3x3 Sobel, each
  magnitude voted whole into bin ``floor(9 atan2(gx, gy) / pi) mod 9`` of its conv's outputs (the negated
  gradients: the angle is measured from the image's y axis, so its bins are not scikit-image's), histograms
  summed over the cell, then, as ``HOGLayerC``'s last step, each cell's histogram of each colour scaled to unit
  length (``NORMALISED_STYLES``: its cells do not depend on the images' scale). ``HOGLayerC``'s optional Gaussian
  weighting of the magnitudes is off there (``gaussian_window=0``), as here.

Track positions are accumulated in pixels (D6).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

BINS = 9
STYLES = ("skimage", "release", "maskfeat")
NORMALISED_STYLES = ("maskfeat",)
"""Styles whose cells are each L2-normalised per colour: unit length (0 where flat), whatever the images' scale."""


def hog_cells(images: torch.Tensor, cell: int = 8, bins: int = BINS, style: str = "skimage") -> torch.Tensor:
    """HOG of ``(N, C, H, W)`` images -> ``(N, C*bins, H//cell, W//cell)``, channel index ``c*bins + b``.

    Gradients by slicing (replicate-padded central differences ``x[i+1] - x[i-1]``, or Sobel for the
    ``release`` and ``maskfeat`` styles), the magnitude voted into unsigned orientation bins, and scatter-adds
    into cells per image (bincount-style: the fast path on CPU, see platform-notes; conv gradients are 5x
    slower); ``maskfeat`` then scales each cell's histogram of each colour to unit length. Pixels beyond the last
    whole cell are ignored. Floating images give cells of their own dtype; uint8 images give float32 cells,
    bitwise the cells of the same images as float32 (``skimage``: by an exact shortcut, :func:`_integer_votes`).
    """
    N, C, H, W = images.shape
    hc, wc = H // cell, W // cell
    if hc == 0 or wc == 0:
        raise ValueError(f"hog_cells: images of {H}x{W} px are smaller than one {cell}-px cell")
    if style not in STYLES:
        raise ValueError(f"hog_cells: unknown style {style!r}; choose from {list(STYLES)}")
    h, w = hc * cell, wc * cell
    if style == "release":
        hist = _linear_votes(images[..., :h, :w].float().reshape(N * C, h, w), cell, bins)
    elif style == "maskfeat":
        hist = _maskfeat_votes(images[..., :h, :w].float().reshape(N * C, h, w), cell, bins)
    elif images.dtype == torch.uint8:
        idx, mag = _integer_votes(images[..., :h, :w].reshape(N * C, h, w), cell, bins)
        hist = torch.zeros(N * C * hc * wc * bins, device=images.device, dtype=torch.float32)
        hist.index_add_(0, idx, mag).div_(cell * cell)
    else:
        x = images[..., :h, :w].float().reshape(N * C, 1, h, w)
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")[:, 0]  # (N*C, h+2, w+2)
        gx = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]  # x to the right
        gy = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]  # y downwards (image rows)
        mag = torch.hypot(gx, gy)
        idx = _bin(gx, gy, bins).add_(_cell_offsets(1, h, w, cell, bins, x.device).view(h, w))  # cell*bins + bin
        hist = torch.zeros(N * C, hc * wc * bins, device=x.device, dtype=mag.dtype)
        hist.scatter_add_(1, idx.view(N * C, -1), mag.view(N * C, -1)).div_(cell * cell)
    hist = hist.view(N, C, hc, wc, bins).permute(0, 1, 4, 2, 3)  # (N, C, bins, hc, wc)
    return hist.reshape(N, C * bins, hc, wc).to(images.dtype if images.is_floating_point() else torch.float32)


def _sobel(x: torch.Tensor, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel gradients ``(gx, gy)`` of float images ``(M, h, w)`` padded by 1 px (``padding``: an ``F.pad``
    mode): central differences x rightwards (y downwards), smoothed 1-2-1 across them."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode=padding)[:, 0]  # (M, h+2, w+2)
    dx = p[:, :, 2:] - p[:, :, :-2]  # central differences on every padded row, then smoothed 1-2-1 across rows
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]
    dy = p[:, 2:] - p[:, :-2]
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]
    return gx, gy


def _linear_votes(x: torch.Tensor, cell: int, bins: int) -> torch.Tensor:
    """Cell histograms ``(M, cells * bins)`` of float images ``(M, h, w)`` as the release's HOG: replicate-padded
    3x3 Sobel gradients, each magnitude split linearly between the bins centred either side of its orientation
    (bin k centred on ``k * 180 / bins`` degrees), mean-pooled over cells."""
    M, h, w = x.shape
    gx, gy = _sobel(x, "replicate")
    mag = torch.hypot(gx, gy)
    s = torch.remainder(torch.atan2(gy, gx).mul_(bins / math.pi), bins)  # [0, bins]: bins itself by rounding
    low = s.floor()
    upper = s.sub_(low).mul_(mag)  # the upper bin's part of each magnitude
    low = low.to(torch.int32).masked_fill_(low == bins, 0)  # s rounded up to bins: bin 0, with all of it
    high = (low + 1).masked_fill_(low == bins - 1, 0)
    offsets = _cell_offsets(M, h, w, cell, bins, x.device).view(M, h, w)
    hist = torch.zeros(M * (h // cell) * (w // cell) * bins, device=x.device, dtype=x.dtype)  # 1-D: index_add_,
    hist.index_add_(0, low.add_(offsets).view(-1), mag.sub_(upper).view(-1))  # the fast path on CPU
    hist.index_add_(0, high.add_(offsets).view(-1), upper.view(-1))
    hist = hist.view(M, -1)
    return hist.div_(cell * cell)


def _maskfeat_votes(x: torch.Tensor, cell: int, bins: int) -> torch.Tensor:
    """Cell histograms ``(M, cells * bins)`` of float images ``(M, h, w)`` as MaskFeat's HOG: reflect-padded 3x3
    Sobel gradients, each magnitude voted whole into bin ``floor(bins * atan2(gx, gy) / pi) mod bins`` of
    MaskFeat's conv outputs (kernels ``[[1, 0, -1], ...]``: the negated gradients), summed over cells, each cell's
    histogram scaled to unit length (``F.normalize`` over the bins, as ``HOGLayerC`` ends)."""
    M, h, w = x.shape
    gx, gy = _sobel(x, "reflect")
    mag = torch.hypot(gx, gy)
    phase = torch.atan2(gx.neg_(), gy.neg_()).div_(math.pi).mul_(bins)  # (-bins, bins]
    index = phase.floor_().remainder_(bins).to(torch.int32).view(-1)
    hist = torch.zeros(M * (h // cell) * (w // cell) * bins, device=x.device, dtype=x.dtype)
    hist.index_add_(0, index.add_(_cell_offsets(M, h, w, cell, bins, x.device)), mag.view(-1))
    return F.normalize(hist.view(M, -1, bins), dim=-1).view(M, -1)


def _bin(gx: torch.Tensor, gy: torch.Tensor, bins: int) -> torch.Tensor:
    """Unsigned orientation bin (int64) of float gradients: atan2 in (-pi, pi] -> [0, bins), floored."""
    return torch.remainder(torch.atan2(gy, gx).mul_(bins / math.pi), bins).long().clamp_(max=bins - 1)


@functools.lru_cache(maxsize=8)
def _cell_offsets(images: int, h: int, w: int, cell: int, bins: int, device: torch.device) -> torch.Tensor:
    """Flat int32 ``(images * h * w,)``: where each pixel's histogram starts in the histograms of ``images``
    images of ``h x w`` (image, then cell, each of ``bins``)."""
    ys = torch.arange(h, device=device) // cell
    xs = torch.arange(w, device=device) // cell
    start = torch.arange(images, device=device) * ((h // cell) * (w // cell) * bins)
    return (start[:, None, None] + (ys[:, None] * (w // cell) + xs[None, :]) * bins).view(-1).to(torch.int32)


@functools.lru_cache(maxsize=4)
def _integer_gradient_votes(bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin (int32) and magnitude (float32) of every integer gradient (gx, gy) in [-255, 255]², at
    ``(gy + 255) * 511 + gx + 255``, made by the float path's own ops on this device."""
    g = torch.arange(-255, 256, dtype=torch.float32, device=device)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    return _bin(gx, gy, bins).view(-1).to(torch.int32), torch.hypot(gx, gy).view(-1)


def _integer_votes(x: torch.Tensor, cell: int, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat histogram index (int32) and magnitude of every pixel of uint8 images ``(M, h, w)``.

    Their gradients are integers in [-255, 255], so bin and magnitude come from a table of all 511² of them
    (:func:`_integer_gradient_votes`) in place of six float passes over the frames: about half the CPU time of
    the float path, e.g. 0.29 against 0.52 ms per 96² RGB frame on an AMD EPYC. The votes are bitwise the float
    path's (the table is that path's arithmetic) and are added in the same order."""
    M, h, w = x.shape
    x = x.to(torch.int16, memory_format=torch.contiguous_format)
    gx, gy = torch.empty_like(x), torch.empty_like(x)  # the central differences, replicated at the borders
    torch.sub(x[:, :, 2:], x[:, :, :-2], out=gx[:, :, 1:-1])
    torch.sub(x[:, :, 1], x[:, :, 0], out=gx[:, :, 0])
    torch.sub(x[:, :, -1], x[:, :, -2], out=gx[:, :, -1])
    torch.sub(x[:, 2:], x[:, :-2], out=gy[:, 1:-1])
    torch.sub(x[:, 1], x[:, 0], out=gy[:, 0])
    torch.sub(x[:, -1], x[:, -2], out=gy[:, -1])
    code = gy.to(torch.int32).mul_(511).add_(gx).add_(255 * 511 + 255).view(-1)
    bin_of, mag_of = _integer_gradient_votes(bins, x.device)
    idx = bin_of.index_select(0, code).add_(_cell_offsets(M, h, w, cell, bins, x.device))
    return idx, mag_of.index_select(0, code)


def hog_at(cells: torch.Tensor, positions: torch.Tensor, cell: int) -> torch.Tensor:
    """Bilinear lookup of cell histograms at pixel positions.

    cells ``(S, D, hc, wc)`` (from :func:`hog_cells`), positions ``(S, P, 2)`` in pixels (x, y) of the image
    the cells came from, pixel centres at integers (as flow and tracks); returns ``(S, P, D)``. Cell k spans pixels
    ``cell*k .. cell*k + cell - 1``; positions beyond the outermost cell centres take the border cell.
    """
    S, D, hc, wc = cells.shape
    # align_corners=False: the left edge of pixel 0 (x = -0.5) maps to -1, the right edge of the last cell to +1
    gx = (positions[..., 0] + 0.5) * (2.0 / (wc * cell)) - 1.0
    gy = (positions[..., 1] + 0.5) * (2.0 / (hc * cell)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[:, None].to(cells.dtype)  # (S, 1, P, 2)
    out = F.grid_sample(cells, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (S, D, 1, P)
    return out[:, :, 0].transpose(1, 2)
