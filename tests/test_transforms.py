"""Transforms: every Geometry maps coordinates exactly as it reports, proven on a video whose pixels encode
their own (x, y, t) coordinates; the crop choices follow MME's pre-training and VideoMAE's fine-tuning rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from videos import coordinate_video, read_all

from mme.data.transforms import (
    Geometry,
    apply_geometry,
    denormalize,
    deviations,
    multiscale_crop,
    normalize,
    normalize_clip,
    random_resized_crop,
    to_clip,
    to_video_tensor,
    view_crops,
)


@pytest.fixture(scope="module")
def coord_frames(tmp_path_factory):
    path, frames = coordinate_video(tmp_path_factory.mktemp("coord") / "coord.mkv", T=8, H=48, W=64)
    decoded = read_all(path)
    np.testing.assert_array_equal(decoded, frames)  # the codec is lossless: the coordinates survive exactly
    return decoded


def check_geometry(frames: np.ndarray, geom: Geometry) -> int:
    """Each interior output pixel holds the source coordinates it was resampled from (R/4, G/4 = source pixel
    index, i.e. centre at +0.5); map_points must send them to that output pixel's centre. In source pixels the
    error has no bias (< 0.04) and stays below 0.25 (uint8 rounding of 4x is 0.125, INTER_AREA's fractional
    weights add < 0.1). A half-pixel convention error is a bias of 0.5 |1 - 1/scale|. Returns pixels checked."""
    out = apply_geometry(frames, geom).astype(np.float64)
    assert out.shape == (len(frames), geom.out_h, geom.out_w, 3)
    np.testing.assert_array_equal(out[..., 2], frames[:, :1, :1, 2].astype(np.float64) * np.ones_like(out[..., 2]))
    src = np.stack([out[0, ..., 0] / 4 + 0.5, out[0, ..., 1] / 4 + 0.5], -1)  # (h, w, 2) source (x, y)
    mapped = geom.map_points(src)
    yy, xx = np.mgrid[0:geom.out_h, 0:geom.out_w] + 0.5
    sx, sy = geom.scale
    bx, by = int(np.ceil(max(sx, 1 / sx))) + 1, int(np.ceil(max(sy, 1 / sy))) + 1  # resampling footprint
    inner = (slice(by, geom.out_h - by), slice(bx, geom.out_w - bx))
    err_x = ((mapped[..., 0] - xx) / sx)[inner]  # signed error in source pixels
    err_y = ((mapped[..., 1] - yy) / sy)[inner]
    for err in (err_x, err_y):
        assert abs(err.mean()) < 0.04 and np.abs(err).max() < 0.25, (geom, err.mean(), np.abs(err).max())
    return err_x.size


def test_coordinate_video_proves_every_transform(coord_frames):
    size = (64, 48)
    geoms = [Geometry(8.0, 4.0, 48.0, 40.0, 24, 20),  # shrink by 2
             Geometry(10.0, 6.0, 20.0, 16.0, 40, 32),  # enlarge by 2
             Geometry(10.0, 6.0, 20.0, 16.0, 40, 32, flip=True),
             Geometry(5.25, 3.5, 30.5, 30.5, 24, 24)]  # fractional box: exact affine warp
    rng = np.random.default_rng(0)
    geoms += [multiscale_crop(size, 32, rng) for _ in range(6)]
    geoms += [dataclasses.replace(random_resized_crop(size, 32, rng), flip=bool(i % 2)) for i in range(8)]
    geoms += view_crops(size, 24, 3)
    assert any(g.flip for g in geoms) and any(not g.flip for g in geoms)
    for geom in geoms:
        assert check_geometry(coord_frames, geom) > 50


def test_one_channel_and_channel_less_frames_resize_as_a_channel_of_rgb(coord_frames):
    for geom in (Geometry(8.0, 4.0, 48.0, 40.0, 24, 20), Geometry(10.0, 6.0, 20.0, 16.0, 40, 32, flip=True),
                 Geometry(5.25, 3.5, 30.5, 30.5, 24, 24)):
        rgb = apply_geometry(coord_frames, geom)
        for grey in (coord_frames[..., :1], coord_frames[..., 0]):
            out = apply_geometry(grey, geom)
            assert out.shape == (len(coord_frames), geom.out_h, geom.out_w, 1) and out.flags.c_contiguous
            np.testing.assert_array_equal(out, rgb[..., :1])


class CentreConventionGeometry(Geometry):
    """The classic mistake: scaling about pixel centres at integers instead of pixel edges."""

    def map_points(self, xy):
        return super().map_points(np.asarray(xy) - 0.5) + 0.5


@pytest.mark.parametrize("box", [(8.0, 4.0, 48.0, 40.0, 24, 20), (10.0, 6.0, 20.0, 16.0, 40, 32)])
def test_the_coordinate_check_catches_a_half_pixel_error(coord_frames, box):
    with pytest.raises(AssertionError):
        check_geometry(coord_frames, CentreConventionGeometry(*box))


def test_map_vectors_follow_scale_and_flip():
    g = Geometry(10, 0, 40, 20, 20, 40, flip=True)
    np.testing.assert_allclose(g.map_vectors([[2.0, 1.0]]), [[-1.0, 2.0]])
    a, b = np.array([[12.0, 5.0]]), np.array([[14.0, 6.0]])
    np.testing.assert_allclose(g.map_points(b) - g.map_points(a), g.map_vectors(b - a))
    # each axis alone: a point or vector unknown along one axis stays known along the other (a product with the
    # map's zeros made both NaN)
    np.testing.assert_array_equal(g.map_vectors([[2.0, np.nan]]), [[-1.0, np.nan]])
    np.testing.assert_array_equal(g.map_points([[np.inf, 5.0]])[:, 1], g.map_points([[0.0, 5.0]])[:, 1])


def test_multiscale_crop_follows_mme_rules():
    rng = np.random.default_rng(1)
    W, H, out = 340, 256, 224
    sides = [224 if abs(int(256 * s) - 224) < 3 else int(256 * s) for s in (1, 0.875, 0.75, 0.66)]
    assert sides == [256, 224, 192, 168]
    seen_pairs, seen_offsets = set(), set()
    for _ in range(600):
        g = multiscale_crop((W, H), out, rng)
        assert (g.out_w, g.out_h, g.flip) == (out, out, False)
        wi, hi = sides.index(int(g.w)), sides.index(int(g.h))
        assert abs(wi - hi) <= 1
        seen_pairs.add((wi, hi))
        ws, hs = (W - int(g.w)) // 4, (H - int(g.h)) // 4
        ox, oy = (g.x0 / ws if ws else 0), (g.y0 / hs if hs else 0)
        assert float(ox).is_integer() and float(oy).is_integer() and 0 <= ox <= 4 and 0 <= oy <= 4
        if ws and hs:
            seen_offsets.add((int(ox), int(oy)))
    assert len(seen_pairs) == 10  # 4 diagonal + 2*3 off-by-one
    assert len(seen_offsets) == 13
    assert not {(1, 0), (0, 1), (2, 1)} & seen_offsets  # only the 13 fixed positions


def test_random_resized_crop_stays_in_range():
    rng = np.random.default_rng(2)
    W, H = 320, 240
    for _ in range(300):
        g = random_resized_crop((W, H), 112, rng)
        assert 0 <= g.x0 and g.x0 + g.w <= W and 0 <= g.y0 and g.y0 + g.h <= H
        assert 0.24 <= g.w * g.h / (W * H) <= 1.0
        assert 3 / 4 - 0.05 <= g.w / g.h <= 4 / 3 + 0.05
        assert not g.flip  # the dataset draws the flip (test_dataset)


def test_random_resized_crop_falls_back_to_the_centre_crop_of_the_nearest_ratio():
    """Ten boxes of the whole area at aspect 3/4..4/3 fit no frame of aspect 1/4 or 4: the fallback is
    torchvision's, the centre crop of the full short side at the ratio's bound (1/4 -> 3/4: 100 x 133)."""
    rng = np.random.default_rng(0)
    tall = random_resized_crop((100, 400), 32, rng, scale=(1, 1))
    wide = random_resized_crop((400, 100), 32, rng, scale=(1, 1))
    assert (tall.x0, tall.y0, tall.w, tall.h) == (0, 133, 100, 133)
    assert (wide.x0, wide.y0, wide.w, wide.h) == (133, 0, 133, 100)
    # a box that spans a whole side fits: its offset along the other is drawn, not the fallback's centre
    boxes = [random_resized_crop((100, 400), 32, rng, scale=(0.5, 0.5), ratio=(0.5, 0.5)) for _ in range(20)]
    assert {(g.x0, g.w, g.h) for g in boxes} == {(0, 100, 200)} and len({g.y0 for g in boxes}) > 10
    boxes = [random_resized_crop((400, 100), 32, rng, scale=(0.5, 0.5), ratio=(2, 2)) for _ in range(20)]
    assert {(g.y0, g.w, g.h) for g in boxes} == {(0, 200, 100)} and len({g.x0 for g in boxes}) > 10
    # a ratio far from the frame's (data.rrc_ratio=[300,400] on 112 px): a box of one pixel's side, not of none,
    # which OpenCV's resize refused with a traceback in the first batch
    frames = np.random.default_rng(1).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    for ratio, box in (((300, 400), (0, 55, 112, 1)), ((1 / 400, 1 / 300), (55, 0, 1, 112))):
        g = random_resized_crop((112, 112), 32, rng, scale=(0.25, 1), ratio=ratio)
        assert (g.x0, g.y0, g.w, g.h) == box
        assert apply_geometry(frames, g).shape == (2, 32, 32, 3)


def test_view_crops_span_the_long_side():
    assert [(g.x0, g.y0, g.w, g.h) for g in view_crops((320, 240), 224, 3)] == [
        (0, 0, 240, 240), (40, 0, 240, 240), (80, 0, 240, 240)]
    assert [(g.x0, g.y0) for g in view_crops((240, 320), 224, 3)] == [(0, 0), (0, 40), (0, 80)]
    assert [(g.x0, g.y0) for g in view_crops((320, 240), 224, 1)] == [(40, 0)]
    for size in ((171, 128), (135, 128)):  # an odd room: the centre of 1 is the centre of 3 (it was 1 px apart)
        assert view_crops(size, 112, 1)[0] == view_crops(size, 112, 3)[1]
        assert view_crops(size, 112, 1)[0].x0 == -(-(size[0] - 128) // 2)  # rounded up (ours)


@pytest.mark.parametrize("shape", [(16, 224, 224, 3), (3, 7, 5, 3), (2, 9, 11, 1), (0, 4, 4, 3)])
def test_clips_hold_the_frames_channel_first(shape):
    frames = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for f in (frames, frames[::-1], frames[:, :, ::-1]):  # contiguous, reversed in time, flipped
        clip = to_clip(f)
        assert clip.dtype == torch.uint8 and clip.is_contiguous()
        assert torch.equal(clip, torch.from_numpy(f.copy()).permute(3, 0, 1, 2))


def test_normalisation_round_trip_and_layout():
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    video = to_video_tensor(frames)
    assert video.shape == (3, 4, 8, 10) and video.dtype == torch.float32
    assert video[0, 2, 3, 4].item() == pytest.approx((frames[2, 3, 4, 0] / 255 - 0.485) / 0.229, abs=1e-5)
    assert torch.allclose(denormalize(normalize(video)), video, atol=1e-6)
    plain = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    assert torch.equal(video, normalize(plain)) and torch.equal(normalize(plain.clone(), inplace=True), video)
    clips = torch.stack([to_clip(frames), to_clip(frames[::-1])])  # uint8 (2, 3, 4, 8, 10): what workers ship
    assert clips.dtype == torch.uint8 and torch.equal(clips[0].permute(1, 2, 3, 0), torch.from_numpy(frames))
    assert torch.equal(normalize_clip(clips), torch.stack([video, to_video_tensor(frames[::-1].copy())]))
    with pytest.raises(TypeError, match="uint8 clips, got torch.float32"):
        normalize_clip(video)
    for integral in (clips, clips.long()):  # ImageNet's mean and std rounded to 0 there: every value inf or NaN
        with pytest.raises(TypeError) as info:
            normalize(integral)
        assert str(info.value) == (f"normalize takes float clips (RGB in [0, 1]), got {integral.dtype}; a uint8 clip "
                                   "(0..255, a dataset item's) is normalised by mme.data.transforms.normalize_clip")
        with pytest.raises(TypeError) as info:  # it takes normalised clips: a uint8 one is RGB, not for normalize_clip
            denormalize(integral)
        assert str(info.value) == (f"denormalize takes float clips (ImageNet-normalised), got {integral.dtype}; a "
                                   "uint8 clip (0..255) is RGB already: clip.float() / 255 is it in [0, 1]")


def test_deviations_are_exact_for_constant_blocks_and_accurate_for_long_ones():
    """x less its mean over some axes: within float rounding of float64's over 800k-element blocks, 0 exactly
    where a block is constant, written into ``out`` when given (also from a strided view)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 112, 112, generator=g) * 0.7 + 2.0  # far from 0: a mean taken carelessly shows
    x[1, 2] = 0.123456  # a constant channel of one clip
    before = x.clone()
    d = deviations(x, (2, 3, 4))
    want = x.double() - x.double().mean((2, 3, 4), keepdim=True)
    assert (d.double() - want).abs().max() < 1e-5 and d[1, 2].abs().max() == 0
    assert torch.equal(x, before)  # a new tensor; x is kept
    blocks = torch.randint(0, 256, (4, 3, 1, 1), generator=g).float().div(255).expand(4, 3, 16, 16)
    view = blocks.permute(0, 2, 3, 1)  # strided; each (clip, channel) block constant
    out = torch.empty(view.shape)
    assert deviations(view, (1, 2), out=out) is out and out.abs().max() == 0


def test_multiscale_crop_of_a_one_pixel_side_is_not_empty():
    """A video 1 px wide: every scale of its short side was 0 px, and OpenCV's resize raised (not a VideoError),
    which ended the loader worker."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = multiscale_crop((1, 40), 32, rng)
        assert g.w == 1 and 1 <= g.h <= 40
        assert apply_geometry(np.zeros((1, 40, 1, 3), np.uint8), g).shape == (1, 32, 32, 3)


@pytest.mark.parametrize("geom", [Geometry(6.0, 10.0, 60.0, 64.0, 40, 32, flip=True),
                                  Geometry(0.0, 3.0, 45.0, 60.0, 40, 24)], ids=["flipped", "at-the-left-edge"])
def test_a_widened_crop_maps_every_point_as_the_crop_does_shifted_by_its_offset(geom):
    """An anisotropic crop widened by 8 output px where a 100x80 frame has them (some sides clipped, others whole;
    flipped, the output's left margin is the source's right; at the frame's left edge, none there): its map from the
    source is the crop's, shifted by where the crop lies in it (output px, per side), and its box stays in the
    frame."""
    wide, (ox, oy) = geom.widened(8, (100, 80))
    a, b = geom.affine(), wide.affine()
    np.testing.assert_allclose(b[:2, :2], a[:2, :2], atol=1e-12)
    np.testing.assert_allclose(b[:2, 2], a[:2, 2] + (ox, oy), atol=1e-9)
    assert wide.scale == pytest.approx(geom.scale) and wide.flip == geom.flip
    assert -1e-9 < wide.x0 and -1e-9 < wide.y0 and wide.x0 + wide.w < 100 + 1e-9 and wide.y0 + wide.h < 80 + 1e-9
    margins = (ox, wide.out_w - geom.out_w - ox, oy, wide.out_h - geom.out_h - oy)  # left, right, top, bottom
    assert margins == ((8, 4, 5, 3) if geom.flip else (0, 8, 1, 6))


def _textured_frame() -> np.ndarray:
    """A 640x360 RGB frame textured as a natural image is (1/f)."""
    rng = np.random.default_rng(0)
    fy, fx = np.fft.fftfreq(360)[:, None], np.fft.fftfreq(640)[None]
    field = np.real(np.fft.ifft2(np.exp(2j * np.pi * rng.random((360, 640))) / np.maximum(np.hypot(fx, fy), 1 / 640)))
    frame = np.clip((field - field.mean()) / field.std() * 50 + 128, 0, 255).astype(np.uint8)
    return np.repeat(frame[None, ..., None], 3, -1)


@pytest.mark.parametrize("geom", [Geometry(100.0, 0.0, 360.0, 360.0, 126, 126),
                                  Geometry(60.0, 20.0, 300.0, 300.0, 105, 105, flip=True)], ids=["plain", "flipped"])
def test_a_shrunk_crops_widened_box_is_resampled_as_the_crop_is(geom):
    """A textured frame shrunk x0.35 to a crop widened by 8 output px: the widened box's edges fall between source
    pixels, and a bilinear warp of it read one source pixel in eight, aliased (9.3 levels of 255 off the crop's
    area-averaged frames on average, up to 53); the whole source pixels around it are area-averaged at the crop's
    scale, and only the sub-pixel rest warped (0.6-0.9, up to 8), so its margin is resampled as the crop is (the
    crop's own place is the clip's, pasted by the worker's read)."""
    frames = _textured_frame()
    wide, (ox, oy) = geom.widened(8, (640, 360))
    assert wide.area and not wide.whole_pixel and wide.scale == pytest.approx(geom.scale)
    inner = apply_geometry(frames, wide)[:, oy:oy + geom.out_h, ox:ox + geom.out_w].astype(np.int16)
    diff = np.abs(inner - apply_geometry(frames, geom))
    assert diff.mean() < 1.5 and diff.max() <= 12


def test_a_widened_box_shrunk_less_than_2x_is_warped_bilinearly():
    """A bilinear warp reads 2x2 source pixels for each output one, so it aliases only past a 2x shrink: a box
    shrunk x0.75 is warped, not area-averaged, though it asks for the area path."""
    wide, _ = Geometry(60.0, 20.0, 300.0, 240.0, 225, 180).widened(8, (640, 360))
    frames = _textured_frame()
    assert wide.area and not wide.whole_pixel
    assert np.array_equal(apply_geometry(frames, wide), apply_geometry(frames, dataclasses.replace(wide, area=False)))
