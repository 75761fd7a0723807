"""Optical flow and dense tracks against analytic motion in real encoded videos (PyAV write -> decode)."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
from videos import affine_video, analytic_positions, encoded, texture, write_video

from mme.data.video import open_video
from mme.errors import ConfigError, DataError, MMEError
from mme.motion import compute_tracks
from mme.motion.flow import pair_flow, raw_flow
from mme.motion.tracks import in_frame, integrate, seed_grid, track

FLOWS = ("dis-balanced", "torch-lk")  # the default and the training step's flow


@pytest.mark.parametrize("flow", FLOWS)
def test_translation_per_step_error_below_half_pixel_at_224(tmp_path, flow):
    dx, dy = 2.3, -1.4
    frames, _ = affine_video(9, 224, 224, dx=dx, dy=dy)
    disp, valid = compute_tracks(encoded(tmp_path, frames), starts=[0, 4], length=4, flow=flow)
    assert disp.shape == (2, 4, 28, 28, 2) and valid.shape == (2, 28, 28) and disp.dtype == np.float32
    err = np.linalg.norm(disp - np.array([dx, dy], np.float32), axis=-1)  # (S, L, Gh, Gw)
    assert err[np.broadcast_to(valid[:, None], err.shape)].mean() <= 0.5
    assert np.median(err) < 0.2


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("rot_deg,scale", [(1.5, 1.0), (0.0, 1.025)])
def test_rotation_and_scaling_follow_the_analytic_maps(tmp_path, rot_deg, scale, flow):
    frames, maps = affine_video(7, 128, 128, rot_deg=rot_deg, scale=scale, seed=3)
    seeds = seed_grid(128, 128, 8)
    disp, valid = compute_tracks(encoded(tmp_path, frames), starts=[0, 2], length=4, flow=flow)
    truth = analytic_positions(maps, [0, 2], 4, seeds)  # (S, 5, Gh, Gw, 2)
    true_step = np.diff(truth, axis=1)
    err = np.linalg.norm(disp - true_step, axis=-1)  # (S, L, Gh, Gw)
    inner = np.zeros((16, 16), bool)
    inner[2:-2, 2:-2] = True  # flow at the frame border sees content entering: judged on the interior
    assert np.abs(true_step).max() > 1.0  # the motion is not trivially small
    assert err[:, :, inner].mean() <= 0.5
    end_error = np.linalg.norm(integrate(seeds, disp)[:, -1] - truth[:, -1], axis=-1)  # (S, Gh, Gw) after 4 steps
    assert end_error[:, inner].mean() < 1.0


def test_points_that_leave_the_frame_are_invalid(tmp_path):
    """A point is valid while every position it reads the flow at is in the frame; its last position, where it
    reads none, is not checked (the release's rule, mme-method.md §7.3: a point ending just past the edge dropped
    the edge column of tokens of a pan)."""
    frames, _ = affine_video(7, 64, 64, dx=6.0, seed=1)
    disp, valid = compute_tracks(encoded(tmp_path, frames), starts=[0], length=6, seed_stride=8)
    last_read_x = seed_grid(64, 64, 8)[..., 0] + 6.0 * 5  # before the 6th and last step
    clear = np.abs(last_read_x - 63) > 3  # away from the exit line, where noise cannot flip the verdict
    assert (valid[0][clear] == (last_read_x <= 63)[clear]).all()
    assert valid[0].any() and not valid[0].all()
    # out of the frame they read the flow at its edge (the release's rule): the pan goes on, where 0 px would
    # stand beside the moving points of their patch
    gone = ~valid[0] & clear
    assert gone.sum() >= 8 and np.abs(disp[0, -1][gone][:, 0] - 6.0).mean() < 1.0


def test_a_point_on_the_last_pixel_centre_is_in_the_frame():
    """The frame spans the pixel centres 0..W-1 and 0..H-1, both ends included: with seeds every 2 px the last
    column and row of seeds lie on x = W-1 and y = H-1, and do not move in a still video. A point past the last
    centre is out, also within the last pixel (x = W-0.5), which the release's [0, W) keeps (docs/targets.md: its
    bilinear lookup would read flow replicated beyond the frame)."""
    points = np.array([[63, 31], [0, 0], [63.01, 5], [5, 31.01], [-0.01, 5], [5, -0.01], [63.5, 5], [5, 31.5]],
                      np.float32)
    assert in_frame(points, 32, 64).tolist() == [True, True, False, False, False, False, False, False]
    frame = texture(32, 64, seed=1)
    tracks = track(np.stack([frame] * 3), [0, 1, 2], [0], length=2, seed_stride=2)
    assert tuple(tracks.seeds[-1, -1]) == (63, 31) and np.abs(tracks.disp).max() == 0
    assert tracks.valid.shape == (1, 16, 32) and tracks.valid.all()


@pytest.mark.parametrize("flow", FLOWS)
def test_static_video_gives_zero_displacement(tmp_path, flow):
    frame = texture(96, 96, seed=5)
    disp, valid = compute_tracks(encoded(tmp_path, np.stack([frame] * 6)), starts=[0, 1], length=4, flow=flow)
    assert np.abs(disp).max() < 0.05 and valid.all()


def test_compensation_removes_a_pan_and_keeps_an_independent_object():
    """The scene moves by (-3, 0) px/frame in the image (a pan); a 48-px textured object by (0, 2.5), i.e. by
    (3, 2.5) relative to the scene. Compensated tracks: background ~0, object ~(3, 2.5)."""
    H = W = 160
    big = texture(H, W + 40, seed=7)
    obj = texture(48, 48, seed=8, scale=1.5)
    frames = []
    for t in range(6):
        f = big[:, 3 * t: 3 * t + W].astype(np.float32)
        y0 = 40 + 2.5 * t
        yi, frac = int(np.floor(y0)), y0 - np.floor(y0)
        layer = np.zeros_like(f)
        layer[yi:yi + 48, 60:108] += (1 - frac) * obj
        layer[yi + 1:yi + 49, 60:108] += frac * obj
        cover = np.zeros(f.shape[:2], np.float32)
        cover[yi:yi + 48, 60:108] += 1 - frac
        cover[yi + 1:yi + 49, 60:108] += frac
        frames.append(np.clip(f * (1 - cover[..., None]) + layer, 0, 255).astype(np.uint8))  # sub-pixel object
    frames = np.stack(frames)
    raw, _ = compute_tracks(frames, starts=[0], length=4)
    comp, valid = compute_tracks(frames, starts=[0], length=4, compensate=True)
    seeds = seed_grid(H, W, 8)
    on_obj = (seeds[..., 0] > 68) & (seeds[..., 0] < 100) & (seeds[..., 1] > 48) & (seeds[..., 1] < 80)
    background = ((seeds[..., 0] < 40) | (seeds[..., 0] > 128)) & (seeds[..., 0] < 150)
    assert np.abs(raw[0][:, background].mean((0, 1)) - [-3, 0]).max() < 0.3  # the pan is there before
    assert np.abs(comp[0][:, background]).mean() < 0.3
    assert np.abs(comp[0][:, on_obj].mean((0, 1)) - [3.0, 2.5]).max() < 0.5
    assert valid[0][on_obj].all()


def test_flow_methods_agree_on_a_translation():
    frames, _ = affine_video(2, 96, 96, dx=1.5, dy=0.5, seed=2)
    for method in ("dis", "dis-balanced", "farneback", "torch-lk"):
        f = raw_flow(frames[0], frames[1], method)
        assert f.shape == (96, 96, 2) and f.dtype == np.float32
        assert np.abs(np.median(f.reshape(-1, 2), 0) - [1.5, 0.5]).max() < 0.25, method
    flow, hom = pair_flow(frames[0], frames[1], "dis", None)
    assert hom is None


def test_tvl1_without_contrib_is_a_clear_error():
    import cv2

    frames, _ = affine_video(2, 32, 32)
    if hasattr(cv2, "optflow"):
        assert raw_flow(frames[0], frames[1], "tvl1").shape == (32, 32, 2)
    else:
        with pytest.raises(MMEError, match="opencv-contrib"):
            raw_flow(frames[0], frames[1], "tvl1")


def test_tvl1_without_contrib_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """target.flow=tvl1 without opencv-contrib was refused in the first data item, after the run folder, its
    config.yaml, run.json and logs were made; mme extract failed every video with it and wrote a failure report."""
    import cv2

    from mme import cli
    from mme.config import load_config
    from mme.motion import bench
    from mme.train.config import PretrainConfig

    monkeypatch.delattr(cv2, "optflow", raising=False)
    write_video(tmp_path / "a.mp4", affine_video(12, 32, 32)[0])
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    said = "='tvl1' needs the opencv-contrib build (cv2.optflow)"
    assert cli.main(["pretrain", "--config", "tiny_cpu_mme", f"data.list_file={tmp_path / 'list.txt'}",
                     f"data.root={tmp_path}", f"train.out_dir={tmp_path / 'run'}", "train.batch_size=1",
                     "data.num_workers=0", "target.flow=tvl1"]) == 1
    assert f"target.flow{said}" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert cli.main(["extract", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "cache"),
                     "--flow", "tvl1"]) == 1
    assert f"mme extract: error: --flow{said}" in capsys.readouterr().err and not (tmp_path / "cache").exists()
    monkeypatch.setattr(bench, "_generated_video", lambda *args: pytest.fail("a video was made for the bench"))
    assert cli.main(["bench", "targets", "--flow", "tvl1"]) == 1
    assert f"--flow{said}" in capsys.readouterr().err  # (the flag given, not its config key)
    # tracks read from a cache were made by mme extract: the run's flow is not computed
    assert load_config(PretrainConfig, "tiny_cpu_mme", ["target.flow=tvl1", f"target.cache_dir={tmp_path}"])


def test_sparse_frames_need_only_the_pairs_the_tracks_cover():
    frames, _ = affine_video(20, 64, 64, dx=1.0)
    ids = np.array([3, 4, 5, 6, 11, 12, 13, 14])
    cache: dict = {}
    tr = track(frames[ids], ids, starts=[3, 11], length=3, flow_cache=cache)
    assert sorted(cache) == [(3, 4), (4, 5), (5, 6), (11, 12), (12, 13), (13, 14)]
    assert np.abs(tr.disp[..., 0] - 1.0).mean() < 0.2
    with pytest.raises(DataError, match=r"clip\.mp4: video too short for the tracks: raw frame \[7\] needed, "):
        track(frames[ids], ids, starts=[3], length=4, source="clip.mp4")
    with pytest.raises(DataError, match=r"clip\.mp4: video too short for the tracks: raw frames \[7, 8\] needed, "):
        track(frames[ids], ids, starts=[3], length=5, source="clip.mp4")


@pytest.mark.parametrize("compensate", [False, True])
def test_no_starts_give_empty_tracks_of_the_grids_shape(compensate):
    """No starts was a ValueError of np.stack (no flows to stack)."""
    frames, _ = affine_video(4, 48, 64, dx=1.0)
    disp, valid = compute_tracks(frames, starts=[], length=3, compensate=compensate, prune=True)
    assert disp.shape == (0, 3, 6, 8, 2) and disp.dtype == np.float32
    assert valid.shape == (0, 6, 8) and valid.dtype == bool
    tr = track(frames, np.arange(4), [], 3, compensate=compensate)
    assert tr.positions().shape == (0, 4, 6, 8, 2)


def test_bad_frame_input_is_a_clear_error():
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(DataError, match="different sizes"):
        compute_tracks([a, np.zeros((32, 40, 3), np.uint8)], starts=[0], length=1)
    with pytest.raises(DataError, match="too short"):
        compute_tracks(a[None], starts=[0], length=1)  # a single-frame video
    with pytest.raises(DataError, match="too short"):
        compute_tracks(np.stack([a] * 4), starts=[0, 2], length=4)
    # a start that is no frame index was cut to one (0.7 -> 0), called 'too short' (-1) or an OverflowError (inf);
    # a seed stride of 0 was a ZeroDivisionError
    for starts in ([0.7], [-1], [np.inf]):
        with pytest.raises(ConfigError, match=r"starts must be raw frame indices \(whole numbers from 0 to "
                                              rf"2\*\*63 - 1\), got \[{starts[0]}\]$"):
            compute_tracks(np.stack([a] * 4), starts=starts, length=1)
    with pytest.raises(ConfigError, match="seed stride must be > 0 pixels, got 0"):
        compute_tracks(np.stack([a] * 4), starts=[0], length=1, seed_stride=0)
    assert compute_tracks(np.stack([a] * 4), starts=np.array([0.0, 2.0]), length=1)[0].shape[0] == 2  # whole floats


def test_prune_drops_static_tracks_and_keeps_moving_ones():
    static = np.stack([texture(64, 64, seed=9)] * 5)
    assert not compute_tracks(static, starts=[0], length=4, prune=True)[1].any()
    moving, _ = affine_video(5, 64, 64, dx=1.5, seed=9)
    _, valid = compute_tracks(moving, starts=[0], length=4, prune=True)
    assert valid[0][:, :4].all()  # points away from the exit edge stay valid


def test_viz_draws_tracks_and_predictions(tmp_path, capsys):
    import torch
    from PIL import Image

    from mme.cli import main as cli
    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    frames, _ = affine_video(24, 72, 96, dx=2.0, seed=6)
    video = write_video(tmp_path / "v.mp4", frames)
    args = ["viz", str(video), "--num-frames", "4", "--stride", "4", "--size", "64", "--length", "4",
            "--seed-stride", "16"]
    assert cli(args + ["--out", str(tmp_path / "t.png")]) == 0
    w, h = Image.open(tmp_path / "t.png").size
    assert w >= 2 * 288 and h >= 288  # one readable panel per tubelet start (tests/test_viz.py)
    assert cli(args + ["--out", str(tmp_path / "t.gif")]) == 0
    gif = Image.open(tmp_path / "t.gif")
    assert gif.n_frames == 2 * 5 and gif.info["duration"] == 100  # L+1 raw frames per tubelet, at 10 fps exactly
    assert cli(args + ["--out", str(tmp_path / "t.mp4")]) == 0
    with open_video(tmp_path / "t.mp4") as r:
        assert r.num_frames == 2 * 5 and r.size == (64, 64)
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2,
                    head_hidden=16)
    model = MaskedAutoencoder(m, head_specs(TargetConfig(kind="mme-released"), m))
    torch.manual_seed(0)
    save_pretrained(model, tmp_path / "ckpt")
    assert cli(["viz", str(video), "--out", str(tmp_path / "p.png"), "--checkpoint", str(tmp_path / "ckpt"),
                "--stride", "4"]) == 0
    w, h = Image.open(tmp_path / "p.png").size
    assert w >= 3 * 288 and h >= 2 * 288  # per tubelet: frame, target, predicted
    assert cli(["viz", str(video), "--out", str(tmp_path / "x.png"), "--start", "20"]) == 1  # too short
    assert re.search(r"v\.mp4: too short \(24 frames; 16 frames at stride 4 from frame 20, with tracks of \d+, "
                     r"need \d+; --start 0 reads it as training reads a video this short, its last frame "
                     r"repeated\)", capsys.readouterr().err)
    assert cli(args + ["--out", str(tmp_path / "late.png"), "--start", "15"]) == 1  # 13 frames from 15
    assert "need 28; --start 11 is the last that fits)" in capsys.readouterr().err
    short = write_video(tmp_path / "short.mp4", frames[:9])  # shorter than the window: read as training reads it
    assert cli(args[:1] + [str(short)] + args[2:] + ["--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == Image.open(tmp_path / "t.png").size
    assert cli(args[:1] + [str(short)] + args[2:] + ["--out", str(tmp_path / "s.gif")]) == 0
    assert cli(["viz", str(short), "--out", str(tmp_path / "sp.png"), "--checkpoint", str(tmp_path / "ckpt"),
                "--stride", "4"]) == 0


def test_flow_is_a_function_of_the_frames_whatever_was_computed_before():
    """The flow engines are cached per process: flow of frames of another size in between must not change it."""
    a = texture(96, 96, seed=1)
    b = np.roll(a, 2, axis=1)
    first = raw_flow(a, b)
    raw_flow(texture(32, 32, seed=2), texture(32, 32, seed=3))
    raw_flow(texture(224, 160, seed=4), texture(224, 160, seed=5))
    assert np.array_equal(raw_flow(a, b), first)


@pytest.mark.parametrize("flow", FLOWS)
def test_object_moving_over_a_still_background(tmp_path, flow):
    """The flow stops at a moving object's edges: the still background keeps zero flow up to a few px from the
    object (a flow spread beyond the edges moves the background's tracks with the object), and its inside has
    the object's motion."""
    H, W, (oh, ow), (x0, y0), v = 128, 160, (48, 56), (48, 40), np.array([6.0, -4.0])
    background, thing = texture(H, W, seed=1), texture(oh, ow, seed=2, scale=2.0)
    frames = []
    for t in range(3):
        f = background.copy()
        x, y = x0 + int(v[0]) * t, y0 + int(v[1]) * t
        f[y:y + oh, x:x + ow] = thing
        frames.append(f)
    a, b = encoded(tmp_path, np.stack(frames))[:2]
    flow_ab = raw_flow(a, b, flow)
    yy, xx = np.mgrid[:H, :W]
    # px from the object's box, in either frame (its motion is within the box grown by |v|)
    outside = np.maximum(np.maximum(x0 - xx, xx - (x0 + ow - 1 + v[0])),
                         np.maximum(y0 + v[1] - yy, yy - (y0 + oh - 1)))
    inside = np.minimum(np.minimum(xx - x0, x0 + ow - 1 - xx), np.minimum(yy - y0, y0 + oh - 1 - yy))
    err = np.linalg.norm(flow_ab - np.where((inside >= 0)[..., None], v, 0.0), axis=-1)
    frame = (xx >= 8) & (xx < W - 8) & (yy >= 8) & (yy < H - 8)
    # measured: dis-balanced 0.03 / 0.02 / 0.04 px, torch-lk 0.13 / 0.54 / 0.08; before its propagation
    # (torch_flow.PROPAGATE) the object's motion spread over the background: 0.34 / 1.68 / 0.30
    assert err[frame & (outside > 4)].mean() < 0.2  # the background, from 4 px off the object's path
    assert err[frame & (outside > 12)].max() < 0.8
    assert err[inside > 6].mean() < 0.15  # the object's inside, from 6 px off its edges


def test_tracks_made_in_threads_are_those_made_one_after_another():
    """Every thread of a process shared one DIS engine per frame size, whose buffers OpenCV uses without the GIL:
    videos of one size tracked in a thread pool gave tracks up to 17 px off those made one at a time, or crashed the
    process (a segfault, a corrupted heap)."""
    from concurrent.futures import ThreadPoolExecutor

    from mme.motion import compute_tracks

    videos = [affine_video(12, 128, 160, dx=1.0 + 0.3 * i, dy=0.2 * i, rot_deg=0.5 * i, seed=i)[0] for i in range(6)]

    def tracks(video):
        return compute_tracks(video, starts=[0, 3, 6], length=5)[0]

    alone = [tracks(v) for v in videos]
    for _ in range(3):
        with ThreadPoolExecutor(3) as pool:
            assert all(np.array_equal(a, b) for a, b in zip(alone, pool.map(tracks, videos), strict=True))


def test_a_thread_with_opencvs_ipp_off_gets_the_targets_of_a_fresh_process():
    """IPP's kernels round otherwise than OpenCV's own (DIS flow, warpPerspective, warpAffine): a caller that turned
    IPP off (``cv2.ipp.setUseIPP``, per thread) got other tracks (up to 3e-5 px at 224², other weights after a run)
    and other frames of a fractional crop than ``mme extract`` in a fresh process. The flow and the crop set IPP to
    its default, on, and put the caller's switch back."""
    import cv2

    from mme.data.transforms import Geometry, apply_geometry

    if not (cv2.ipp.useIPP() or cv2.ipp.setUseIPP(True) or cv2.ipp.useIPP()):
        pytest.skip("this OpenCV build has no IPP")
    video = affine_video(9, 128, 160, dx=1.3, dy=0.4, rot_deg=0.7, seed=3)[0]
    crop = Geometry(3.7, 5.2, 150.3, 118.6, 112, 96)

    def targets():
        with_comp = track(video, np.arange(9), [0, 2], 5, compensate=True)
        return (compute_tracks(video, starts=[0, 3], length=5)[0], with_comp.disp, with_comp.homs,
                apply_geometry(video, crop))

    fresh = targets()
    cv2.ipp.setUseIPP(False)
    try:
        off = targets()
        assert not cv2.ipp.useIPP()  # the caller's switch, put back
    finally:
        cv2.ipp.setUseIPP(True)
    for a, b in zip(fresh, off, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_flow_is_a_function_of_its_frames_from_an_engines_first_call(monkeypatch):
    """A new DIS engine's first flow differed from its later flows of the same frames (0.04 px here): online
    targets depended on a worker's history, and an extraction's bytes on what the process had extracted before."""
    import cv2

    from mme.motion import flow

    monkeypatch.setattr(flow._THREAD, "engines", OrderedDict())  # engines as a new process has them
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (80, 120), np.uint8), (5, 5), 1.5)
    frames = [np.ascontiguousarray(big[t:t + 32, 2 * t:2 * t + 45]) for t in range(8)]
    first = flow.raw_flow(frames[0], frames[1])
    flow.raw_flow(frames[5], frames[6])
    np.testing.assert_array_equal(flow.raw_flow(frames[0], frames[1]), first)


def test_a_thread_keeps_a_bounded_number_of_flow_engines_and_one_made_again_gives_the_same_flow(monkeypatch):
    """A thread kept a flow engine for every frame size it met, for its life (an extraction tracks each video at its
    own size: +4 MB a size, hundreds of MB in a worker over a folder of many sizes); the least recently used is let
    go, and the flow of one made again is the same to the bit."""
    import cv2

    from mme.motion import flow

    monkeypatch.setattr(flow._THREAD, "engines", OrderedDict())
    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(rng.integers(0, 256, (48, 120), np.uint8), (5, 5), 1.5)

    def pair(w):  # two 40 x w frames, the second moved by (1, 2) px
        return np.ascontiguousarray(big[:40, :w]), np.ascontiguousarray(big[2:42, 1:w + 1])

    first = flow.raw_flow(*pair(40))
    for w in range(41, 41 + 2 * flow.ENGINES_KEPT):
        flow.raw_flow(*pair(w))
        assert len(flow._THREAD.engines) <= flow.ENGINES_KEPT
    assert not any(key[2][:2] == (40, 40) for key in flow._THREAD.engines)  # let go, so made again below
    np.testing.assert_array_equal(flow.raw_flow(*pair(40)), first)


def test_compensated_tracks_of_a_crop_with_a_margin_are_in_the_crops_frame(tmp_path):
    """With a margin around the crop (``crop``, target.flow_margin) the flow and the camera's homographies are of the
    widened frames; the tracks, homographies included, are expressed in the crop's frame, where their positions
    follow the analytic motion (a homography left in the widened frame's coordinates puts a rotating camera's points
    off by about (I - R) x the margin per step)."""
    from mme.data.transforms import Geometry, apply_geometry

    frames, maps = affine_video(6, 96, 96, dx=1.5, rot_deg=2.0, seed=2)
    frames = encoded(tmp_path, frames)
    crop = Geometry(16.0, 16.0, 64.0, 64.0, 64, 64)
    wide, offset = crop.widened(16, (96, 96))
    assert offset == (16, 16) and (wide.w, wide.out_w) == (96.0, 96)
    truth = analytic_positions(maps, [0], 4, seed_grid(64, 64, 8) + 16) - 16  # (1, 5, 8, 8, 2) in the crop
    alone = track(apply_geometry(frames, crop), range(6), [0], 4, compensate=True)
    margin = track(apply_geometry(frames, wide), range(6), [0], 4, compensate=True, crop=(*offset, 64, 64))
    assert margin.size == (64, 64) and np.array_equal(margin.seeds, alone.seeds)
    error = {name: np.linalg.norm(t.positions() - truth, axis=-1).mean() for name, t in
             (("alone", alone), ("margin", margin))}
    assert error["margin"] < 0.08 < error["alone"]  # 0.040 and 0.157 px


@pytest.mark.parametrize("compensate", [False, True])
def test_tracks_with_a_margin_are_exactly_those_of_the_crop_under_one_affine_flow(monkeypatch, compensate):
    """The flow replaced by one affine field over the scene (and a known camera homography): tracked on frames with
    a margin around the crop (``crop``) or on the crop's own frames, where the field and the homography are the same
    ones seen from the crop's first pixel, the points read the same flow, so their validity is the same and their
    positions and homographies agree to float precision (a seed offset off by half a pixel, validity read in the
    frame with the margin or a homography left in its coordinates do not)."""
    from mme.motion import tracks as tracks_module

    x0, y0, w, h = 3, 8, 40, 24
    hom_wide = np.array([[1.01, -0.02, 0.7], [0.02, 1.01, -0.4], [0, 0, 1]], np.float32)
    shift = np.eye(3, dtype=np.float32)
    shift[:2, 2] = (x0, y0)

    def affine_flow(origin, hom):
        def pair_flow(a, b, method, comp):
            y, x = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
            x, y = x + origin[0], y + origin[1]  # the scene's coordinates
            flow = np.stack([0.03 * x - 0.01 * y + 0.9, 0.02 * x + 0.025 * y - 0.6], -1).astype(np.float32)
            return flow, (hom if comp is not None else None)
        return pair_flow

    frames = np.zeros((6, 36, 50, 3), np.uint8)
    monkeypatch.setattr(tracks_module, "pair_flow", affine_flow((0, 0), hom_wide))
    margin = track(frames, range(6), [0, 1], 4, seed_stride=8, compensate=compensate, crop=(x0, y0, w, h))
    monkeypatch.setattr(tracks_module, "pair_flow", affine_flow((x0, y0), np.linalg.inv(shift) @ hom_wide @ shift))
    alone = track(frames[:, y0:y0 + h, x0:x0 + w], range(6), [0, 1], 4, seed_stride=8, compensate=compensate)
    assert margin.size == alone.size == (h, w) and np.array_equal(margin.seeds, alone.seeds)
    assert np.array_equal(margin.valid, alone.valid) and 0.3 < alone.valid.mean() < 1  # some points leave the crop
    valid = alone.valid[:, None]  # (S, 1, Gh, Gw): over every position
    np.testing.assert_allclose(margin.positions()[valid.repeat(5, 1)], alone.positions()[valid.repeat(5, 1)],
                               atol=1e-5, rtol=0)
    if compensate:
        np.testing.assert_allclose(margin.homs, alone.homs, atol=1e-5, rtol=0)
    else:
        assert margin.homs is None and alone.homs is None
