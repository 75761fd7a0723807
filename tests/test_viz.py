"""`mme viz` pictures a person can read: panels upsampled to at least MIN_PANEL px, titled, masked patches dimmed,
track colours that follow the motion (as the key says), target and prediction in panels of their own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from videos import affine_video, write_video

from mme.motion import viz
from mme.motion.viz import MIN_PANEL, _direction_rgb, _upsample, prediction_picture, read_clip, tracks_picture


@pytest.fixture
def panels(monkeypatch) -> list[tuple[str, np.ndarray]]:
    """The titled panels of the next picture (the PNG is still written)."""
    seen = []
    figure = viz._figure

    def capture(p, *args):
        seen.extend(p)
        figure(p, *args)

    monkeypatch.setattr(viz, "_figure", capture)
    return seen


def added(panel: np.ndarray, under: np.ndarray, rgb: tuple[int, int, int], tol: int = 60) -> int:
    """Pixels of ``panel`` within ``tol`` of colour ``rgb`` that were not so in ``under``."""
    def near(img):
        return (np.abs(img.astype(int) - rgb) <= tol).all(-1)
    return int((near(panel) & ~near(under)).sum())


def test_track_colours_follow_the_direction_and_length_of_the_motion():
    d = np.array([[0, 0], [4, 0], [-4, 0], [0, 4], [0, -4], [1, 0]], float)  # px, image axes (y down)
    assert _direction_rgb(d, full=4.0).tolist() == [
        [255, 255, 255],  # still: white
        [255, 0, 0],  # right: red
        [0, 255, 255],  # left: cyan
        [127, 255, 0],  # down: yellow-green
        [128, 0, 255],  # up: violet
        [255, 192, 192],  # right by a quarter of full: pale red
    ]


@pytest.mark.parametrize("dx, colour", [(2.0, (255, 0, 0)), (-2.0, (0, 255, 255))])
def test_tracks_picture_has_one_upsampled_titled_panel_per_tubelet_coloured_by_motion(dx, colour, panels,
                                                                                       tmp_path):
    frames, _ = affine_video(24, 72, 96, dx=dx, seed=6)
    video = write_video(tmp_path / "v.mp4", frames)
    out = tracks_picture(str(video), tmp_path / "t.png", num_frames=4, stride=4, size=64, length=4)
    assert [t for t, _ in panels] == ["frame 0, tracks to 4", "frame 8, tracks to 12"]  # tubelet starts 0 and 8
    assert all(p.shape == (320, 320, 3) for _, p in panels)  # 64 px shown x5 (>= MIN_PANEL)
    w, h = Image.open(out).size
    assert w >= 2 * MIN_PANEL and h >= MIN_PANEL
    decoded = read_clip(str(video), 0, 4, 4, 64, 4).frames
    other = (0, 255, 255) if dx > 0 else (255, 0, 0)
    for (_, p), start in zip(panels, (0, 8)):  # ~8 px to the side in 4 frames: the tracks in full colour
        under = _upsample(decoded[start], 5)
        assert added(p, under, colour) > 300 and added(p, under, other) == 0


def test_prediction_picture_shows_frame_target_and_prediction_apart_with_masked_patches_dimmed(panels, tmp_path):
    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    frames, _ = affine_video(24, 64, 64, dx=2.0, seed=6)
    video = write_video(tmp_path / "v.mp4", frames)
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2,
                    head_hidden=16)
    torch.manual_seed(0)
    model = MaskedAutoencoder(m, head_specs(TargetConfig(kind="mme-released"), m))
    save_pretrained(model, tmp_path / "ckpt")
    out = prediction_picture(str(video), str(tmp_path / "ckpt"), tmp_path / "p.png", stride=4)
    assert [t for t, _ in panels] == ["frame 0", "target tracks, frame 0", "predicted tracks, frame 0",
                                      "frame 8", "target tracks, frame 8", "predicted tracks, frame 8"]
    w, h = Image.open(out).size
    assert w >= 3 * MIN_PANEL and h >= 2 * MIN_PANEL  # a row of three readable panels per tubelet
    decoded = read_clip(str(video), 0, 4, 4, 64, 4).frames
    masked = model.make_mask(1, torch.Generator().manual_seed(0))[0].reshape(m.grid).numpy()
    for k in range(2):
        frame, target, pred = (p.astype(float) for _, p in panels[3 * k: 3 * k + 3])
        assert np.array_equal(frame, _upsample(decoded[8 * k], 5))
        is_masked = np.kron(masked[k], np.ones((5 * 16, 5 * 16), bool))  # token grid -> panel px
        ratio = target.mean(-1) / np.maximum(frame.mean(-1), 1)
        assert abs(np.median(ratio[is_masked]) - viz.DIM) < 0.05  # masked patches dimmed
        assert (target == frame).all(-1)[~is_masked].mean() > 0.9  # visible ones as they are, bar stray tracks
        assert added(target, frame, viz.TARGET_RGB) > 100 and added(target, frame, viz.PRED_RGB) == 0
        assert added(pred, frame, viz.PRED_RGB) > 100 and added(pred, frame, viz.TARGET_RGB) == 0
        assert (target != pred).any(-1)[is_masked].mean() > 0.02  # the two motions drawn differ


@pytest.mark.parametrize("run_target, stride", [
    ({"flow": "farneback", "max_disp": 1.0, "patch_norm": False, "prune": True}, 2),
    ({"interpolate": False, "patch_norm": False, "position_unit": 1.0}, 2),
    ({"flow": "torch-lk"}, 4),
])
def test_prediction_picture_draws_the_targets_its_run_trained_on(run_target, stride, monkeypatch, tmp_path):
    """The target panels were tracks of the default flow over the CLI's stride, unbounded (2x a run's max_disp
    of 1 px), with no pruning or interpolate=false: motion the run never supervised."""
    import dataclasses

    from mme.models.config import ModelConfig
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, TargetFn, head_specs

    frames, _ = affine_video(24, 64, 64, dx=2.0, seed=6)
    video = str(write_video(tmp_path / "v.mp4", frames))
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2,
                    head_hidden=16)
    run = TargetConfig(kind="mme", track_length=4, **run_target)
    heads = head_specs(run, m)
    model = MaskedAutoencoder(m, heads)
    torch.save({"model": model.state_dict(), "heads": [dataclasses.asdict(h) for h in heads],
                "config": {"model": dataclasses.asdict(m), "target": dataclasses.asdict(run),
                           "data": {"stride": stride}}}, tmp_path / "checkpoint.pth")
    drawn = {}
    draw = viz._prediction_panels

    def capture(frames, starts, tokens, target, *rest):
        drawn.update(starts=list(starts), target=target)
        return draw(frames, starts, tokens, target, *rest)

    monkeypatch.setattr(viz, "_prediction_panels", capture)
    prediction_picture(video, str(tmp_path / "checkpoint.pth"), tmp_path / "p.png")
    assert drawn["starts"] == [0, 2 * stride]  # tubelet starts of the run's clip stride
    trained = TargetFn(run, m).targets(read_clip(video, 0, 4, stride, 64, 4))[0]["traj"]
    mask = model.make_mask(1, torch.Generator().manual_seed(0))[0]
    assert torch.equal(drawn["target"], trained[mask])
    if not run.patch_norm:  # 2 px per frame to the right, in the run's unit: bounded at 1 px, or as it is
        x = drawn["target"].reshape(len(drawn["target"]), 2, 4, 4)[:, 0]
        assert x.median() == pytest.approx(1.0 if run.max_disp else 2.0, abs=0.1)
