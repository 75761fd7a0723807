"""Per-token motion targets: shapes for any frame count / stride, PatchStd, heads, config, dataset integration."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videos import affine_video, analytic_positions, texture, write_video

from mme.config import from_dict
from mme.data.dataset import DataConfig, PretrainDataset, Sample, collate
from mme.data.sampling import sample_pretrain
from mme.data.transforms import Geometry, apply_geometry, normalize, normalize_clip, to_clip, to_video_tensor
from mme.errors import ConfigError, DataError
from mme.models.config import ModelConfig
from mme.models.mae import MaskedAutoencoder
from mme.motion.hog import hog_cells
from mme.motion.targets import (
    TargetConfig,
    _to_tokens,
    batch_targets,
    head_specs,
    make_target_fn,
    motion_targets,
    patch_std,
    step_targets,
)
from mme.motion.tracks import seed_grid, track


def model_cfg(size=64, frames=8, **kw):
    return ModelConfig(img_size=size, num_frames=frames, embed_dim=32, depth=1, num_heads=2, decoder_dim=16,
                       decoder_heads=2, head_hidden=16, **kw)


def make_sample(frames, num_frames, stride, length, tubelet=2, seed=0, path="gen.mp4", geom=None):
    """A Sample as the dataset builds it: the needed raw frames of a random window, after one geometry."""
    idx = sample_pretrain(len(frames), num_frames, stride, tubelet, length, np.random.default_rng(seed))
    H, W = frames.shape[1:3]
    geom = geom or Geometry(0, 0, W, H, W, H)
    return Sample(apply_geometry(frames[idx.needed], geom), idx.needed, idx.clip, idx.starts, geom, path,
                  idx.track_length)


@pytest.mark.parametrize("num_frames,stride", [(8, 2), (8, 4), (16, 2), (16, 4)])
def test_target_shapes_follow_frame_count_and_stride(num_frames, stride):
    frames, _ = affine_video(num_frames * stride + 8, 64, 64, dx=1.0, rot_deg=1.0)
    cfg = TargetConfig(kind="mme", track_length=4)
    m = model_cfg(64, num_frames)
    targets, valid = make_target_fn(cfg, m).targets(make_sample(frames, num_frames, stride, 4))
    N = num_frames // 2 * 4 * 4
    assert targets["traj"].shape == (N, 2 * 4 * 4) and targets["shape"].shape == (N, 27 * 4 * 4)
    assert valid["traj"].shape == (N,) and valid["traj"].dtype == torch.bool
    specs = {h.name: h.dim for h in head_specs(cfg, m)}
    assert specs == {"traj": 32, "shape": 432}
    assert all(torch.isfinite(t).all() for t in targets.values())


def test_released_shapes_at_16x224_tubelet2_patch16_L4():
    """mme-method.md §7.9: 8L = 32 position dims + 108 HOG dims per token, 1568 tokens."""
    frames, _ = affine_video(16 * 4 + 4, 224, 224, dx=1.5, rot_deg=0.5)
    cfg = from_dict(TargetConfig, {"preset": "released"})
    m = ModelConfig()
    assert cfg.track_length == 4 and cfg.kinds == ["mme-released"]
    specs = {h.name: (h.dim, h.activation, h.weight, h.reduction) for h in head_specs(cfg, m)}
    assert specs == {"hog": (108, "sigmoid", 0.5, "sum"), "traj": (32, "tanh", 0.5, "sum")}
    sample = make_sample(frames, 16, 4, 4)
    targets, valid = make_target_fn(cfg, m).targets(sample)
    assert set(targets) == {"traj"} and targets["traj"].shape == (1568, 32) and valid["traj"].all()
    video = normalize(to_video_tensor(sample.frames_at(sample.clip)))[None]  # (1, 3, 16, 224, 224)
    step = step_targets(video, cfg, m)
    assert set(step) == {"hog"} and step["hog"].shape == (1, 1568, 108)
    # token 0's HOG: colour-bin-major, then the 2x2 cells of the patch, from the tubelet's second frame, the
    # release's Sobel HOG (about 4x the default's values)
    ref = hog_cells(video[:, :, 1], 8, style="release")[0, :, :2, :2].reshape(27, 4)
    assert torch.allclose(step["hog"][0, 0].reshape(27, 4), ref)
    # the dataset's uint8 clip, not normalised, gave targets 57x too large without a word
    with pytest.raises(TypeError, match="step_targets: a torch.uint8 clip; give the normalised float clip"):
        step_targets(to_clip(sample.frames_at(sample.clip))[None], cfg, m)


def test_a_preset_gives_the_same_config_in_python_as_from_yaml_and_explicit_keys_win():
    assert TargetConfig(preset="released") == from_dict(TargetConfig, {"preset": "released"})
    released = TargetConfig(preset="released")
    assert (released.kind, released.track_length, released.activation) == ("mme-released", 4, "release")
    mixed = TargetConfig(preset="released", track_length=6, activation="none")
    assert (mixed.kind, mixed.track_length, mixed.activation) == ("mme-released", 6, "none")
    assert ModelConfig(preset="small") == from_dict(ModelConfig, {"preset": "small"})
    with pytest.raises(ConfigError, match="target.preset"):
        TargetConfig(preset="mae")


def test_paper_defaults_and_combinations():
    cfg = TargetConfig()
    assert cfg.kinds == ["mme"] and cfg.track_length == 6 and cfg.patch_norm
    m = ModelConfig()
    assert {h.name: h.dim for h in head_specs(cfg, m)} == {"traj": 48, "shape": 648}
    combo = from_dict(TargetConfig, {"kind": "pixel,mme-released", "loss_weights": {"traj": 2.0}})
    specs = {h.name: (h.dim, h.weight, h.reduction, h.hidden) for h in head_specs(combo, m)}
    # with mme-released among the kinds L defaults to the release's 4: 2 * 4 * 4 position dims
    assert specs == {"pixel": (1536, 1 / 3, "mean", 0), "hog": (108, 1 / 3, "sum", 512), "traj": (32, 2.0, "sum", 512)}
    sparse = TargetConfig(seed_stride=16, patch_norm=False)
    assert {h.name: h.dim for h in head_specs(sparse, m)} == {"traj": 12, "shape": 162}


@pytest.mark.parametrize("data,match", [
    ({"kind": "flowz"}, "target.kind"),
    ({"loss_weights": {"hog": 1.0}}, "target.loss_weights"),
    ({"loss_weights": {"traj": 0, "shape": 0}}, "every head's weight is 0"),  # trained nothing, decayed the weights
    ({"flow": "raft"}, "target.flow"),
    ({"track_length": 0}, "target.track_length"),
    ({"std_floor": -1}, "target.std_floor"),
])
def test_bad_config_names_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(TargetConfig, data)


def test_a_setting_this_target_does_not_use_is_refused_unless_it_is_the_default_or_the_presets():
    """target.position_unit with PatchStd on (the default) was ignored without a word: the losses bitwise those
    without it, while the start-up listed it among the settings that differ; so were std_floor without PatchStd and
    hog_norm without a hog head, and hog_style without a HOG head (hog or shape). hog_norm on a hog head of the
    maskfeat style, whose cells are normalised already, is taken true or false (the next test)."""
    for data, said in (({"position_unit": 3.0}, "position_unit=3.0 .*patch_norm=true.* only with target.patch_norm="
                                                 "false"),
                       ({"patch_norm": False, "std_floor": 0.1}, "std_floor=0.1 .* only with target.patch_norm=true"),
                       ({"hog_norm": True}, "hog_norm=true .*heads traj, shape.* only to a hog head"),
                       ({"kind": "pixel", "hog_style": "maskfeat"}, "hog_style=maskfeat .*heads pixel;.* only to a "
                                                                    "hog or shape head")):
        with pytest.raises(ConfigError, match=rf"^target\.{said}.*; leave it out \(target\."):
            from_dict(TargetConfig, data).check_settings_used()
    # the default's or the preset's value is no setting of the user's: a run's config.yaml, which writes every
    # value, reads back
    for data in ({"patch_norm": False, "std_floor": 0.05, "position_unit": 1.0}, {"kind": "mme", "hog_norm": False},
                 {"preset": "maskfeat", "kind": "mme"}, {"kind": "mme-released", "hog_norm": True},
                 {"preset": "maskfeat", "kind": "pixel"}, {"preset": "released", "kind": "pixel"},
                 {"kind": "mme", "hog_style": "release"}, {"kind": "pixel", "hog_style": "skimage"}):
        written = dataclasses.asdict(from_dict(TargetConfig, data))
        assert from_dict(TargetConfig, written) == from_dict(TargetConfig, data)
        from_dict(TargetConfig, written).check_settings_used()
    # refused for a run to be trained; a checkpoint's target section that holds one (a run before the check) still
    # reads (mme viz --checkpoint could not draw it)
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    with pytest.raises(ConfigError, match=r"target\.position_unit=3.0 has no effect"):
        load_config(PretrainConfig, "tiny_cpu_mme", ["target.position_unit=3"])
    assert from_dict(TargetConfig, {"position_unit": 3.0}).position_unit == 3.0


def test_a_hog_head_of_the_maskfeat_style_takes_hog_norm_either_way_and_its_resume_records_no_change():
    """The maskfeat style's cells are normalised already, so target.hog_norm changes nothing on its hog head. A run
    set up as the docs gave MaskFeat's HOG before its preset took the style (kind=hog hog_style=maskfeat
    hog_norm=true) was refused with its own command (hog_norm=true had no effect), and left out, hog_norm resolved
    false: resuming it recorded a change, 'target.hog_norm: True -> False', that changed nothing. Unset, it is true
    there, as the preset's. A run made while it resolved false (its config.yaml holds hog_norm: false) was then
    refused with its own command and config.yaml, and resumed without it recorded 'target.hog_norm: False -> True',
    that changed nothing: true and false are both taken, and a change of a key without effect is none."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig
    from mme.train.engine import config_changes

    command = ["target.kind=hog", "target.hog_style=maskfeat"]
    set_up = load_config(PretrainConfig, "tiny_cpu_mme", [*command, "target.hog_norm=true"])
    left_out = load_config(PretrainConfig, "tiny_cpu_mme", command)
    assert set_up.target.hog_norm is True and left_out.target.hog_norm is True
    assert config_changes(dataclasses.asdict(set_up), dataclasses.asdict(left_out)) == []
    assert from_dict(TargetConfig, {"preset": "maskfeat"}) == from_dict(TargetConfig, {"preset": "maskfeat",
                                                                                          "hog_norm": True})
    made_false = load_config(PretrainConfig, "tiny_cpu_mme", [*command, "target.hog_norm=false"])
    assert made_false.target.hog_norm is False
    assert from_dict(PretrainConfig, dataclasses.asdict(made_false)) == made_false  # its config.yaml reads back
    assert config_changes(dataclasses.asdict(made_false), dataclasses.asdict(left_out)) == []
    assert from_dict(TargetConfig, {"preset": "maskfeat", "hog_norm": False}).check_settings_used() is None
    skimage = load_config(PretrainConfig, "tiny_cpu_mme", ["target.kind=hog", "target.hog_norm=true"])
    assert list(map(str, config_changes(dataclasses.asdict(skimage), dataclasses.asdict(  # there it normalises
        load_config(PretrainConfig, "tiny_cpu_mme", ["target.kind=hog"]))))) == ["target.hog_norm: True -> False"]
    assert from_dict(TargetConfig, {"kind": "hog"}).hog_norm is False  # the skimage style: off unless set
    assert from_dict(TargetConfig, {"kind": "mme", "hog_style": "maskfeat"}).hog_norm is False  # no hog head


def test_every_setting_a_target_does_not_use_is_refused_and_a_resumed_run_is_warned(synth, tmp_path, caplog):
    """Beyond position_unit, std_floor, hog_norm and hog_style, the track settings on a target without a traj or
    shape head, hog_cell without a HOG head, activation on a pixel target and norm_pix without one were taken and
    listed among the settings that differ, the losses bitwise those without them. A fresh run is refused them; a
    run resumed from the folder of an earlier version that took them (its config.yaml holds them) is warned about
    each and resumes, writing them back as they were."""
    from training import FP32, run

    from mme.config import load_config
    from mme.train import checkpoint as ckpt
    from mme.train.config import PretrainConfig

    unused = {"pixel": ["flow=farneback", "compensate=true", "prune=true", "seed_stride=4", "max_disp=3",
                        "activation=release", "track_length=3", "interpolate=false", "cache_dir=/tmp", "hog_cell=4",
                        "patch_norm=false"],
              "mme": ["norm_pix=false"], "hog": ["norm_pix=false", "flow=dis", "track_length=4", "patch_norm=false"]}
    for kind, settings in unused.items():
        for setting in settings:
            key = setting.split("=")[0]
            with pytest.raises(ConfigError, match=rf"^target\.{key}=.* has no effect on this target \(heads "
                                                  r".*; leave it out \(target\."):
                load_config(PretrainConfig, "tiny_cpu_mme", [f"target.kind={kind}", f"target.{setting}"])
    # what the preset and kind give unset is no setting: every shipped recipe, and a run's config.yaml, read back
    for recipe in sorted(p.stem for p in (Path(__file__).parents[1] / "src/mme/configs").glob("[!f]*.yaml")):
        cfg = load_config(PretrainConfig, recipe)
        assert from_dict(PretrainConfig, dataclasses.asdict(cfg)) == cfg
    for data in ({"preset": "released", "kind": "pixel"}, {"kind": "hog", "hog_cell": 4},
                 {"kind": "mme", "track_length": 3, "norm_pix": True}, {"kind": "pixel", "track_length": 6}):
        from_dict(TargetConfig, data).check_settings_used()
    # a run an earlier version made with them resumes, each warned about
    base = ("tiny_cpu_pixel", synth, tmp_path, "train.steps=2", "optim.warmup_steps=1", FP32)
    run(*base, "train.stop_after=1")
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[-1])
    state["config"]["target"].update(flow="farneback", activation="release")  # as such a version wrote them
    ckpt.save_checkpoint(state, tmp_path, keep_last=0)
    with caplog.at_level("WARNING", logger="mme"):
        res = run(*base, "train.resume=auto", "target.flow=farneback", "target.activation=release")
    assert res.step == 2
    assert [r.getMessage().split(" (heads")[0] for r in caplog.records if "has no effect" in r.getMessage()] == [
        "target.flow=farneback has no effect on this target", "target.activation=release has no effect on this target"]
    assert "config_changes" not in json.loads((tmp_path / "run.json").read_text())


def test_an_empty_train_resume_is_a_fresh_run_refused_a_setting_without_effect():
    """train.resume='' starts a fresh run (mme.train.engine.resume_state), but PretrainConfig took it for a resume and
    left the check to setup, which checks only a run given train.resume: the setting passed both and the run trained
    with it, listed among its settings. Both read an empty train.resume as none."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    for resume in ("''", "null"):
        with pytest.raises(ConfigError, match=r"^target\.position_unit=3\.0 has no effect on this target"):
            load_config(PretrainConfig, "tiny_cpu_mme", ["target.position_unit=3", f"train.resume={resume}"])


def test_patch_norm_needs_two_points_per_patch():
    with pytest.raises(ConfigError, match="patch_norm"):
        head_specs(TargetConfig(seed_stride=16), ModelConfig())


def test_patch_std_zero_variance_is_zero_and_otherwise_unit():
    x = torch.tensor([[2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.01, 1.0, 1.01]])
    z = patch_std(x, floor=0.05)
    assert torch.isfinite(z).all() and z[0].abs().max() == 0 and z[2].abs().max() == 0  # below the floor
    assert torch.isclose(z[1].mean(), torch.tensor(0.0)) and torch.isclose(z[1].std(), torch.tensor(1.0))


def test_motion_tokens_are_in_the_patch_embeddings_raster_order_on_a_non_square_grid():
    """Token (i, j) of a slice is row i, column j of the patch grid, at index i * w + j (the Conv3d's flatten, the
    masks' (t, h, w) order), its points in raster order. A transposed order (j * h + i) would run without an error
    on a non-square grid, each token trained on another's motion."""
    points = torch.arange(24.0).view(1, 1, 4, 6, 1)  # (S, X, Gh, Gw, C): 2 x 3 tokens of 2 x 2 points
    assert _to_tokens(points, 2).reshape(6, 4).tolist() == [
        [0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11], [12, 13, 18, 19], [14, 15, 20, 21], [16, 17, 22, 23]]
    # a 32 x 64 clip (2 x 4 tokens of 16 px, 4 x 8 points): at the first start the top-right quadrant moves and the
    # bottom-right one has left the frame, at the second the bottom-left quadrant moves
    disp = torch.zeros(1, 2, 4, 4, 8, 2)  # (B, S, L, Gh, Gw, 2)
    disp[0, 0, :, :2, 4:] = torch.tensor([1.5, -0.5])
    disp[0, 1, :, 2:, :4] = torch.tensor([-1.0, 2.0])
    track_valid = torch.ones(1, 2, 4, 8, dtype=torch.bool)
    track_valid[0, 0, 2:, 4:] = False
    cfg = TargetConfig(kind="mme-released", patch_norm=False, position_unit=1.0)
    targets, valid = motion_targets({"disp": disp, "track_valid": track_valid}, cfg, model_cfg(64, 4), (32, 64))
    traj = targets["traj"][0].reshape(16, 2, 4, 4)  # (token, coordinate, step, point) in px
    assert (traj != 0).flatten(1).any(1).nonzero().flatten().tolist() == [2, 3, 12, 13]
    assert (traj[[2, 3]] == torch.tensor([1.5, -0.5]).view(1, 2, 1, 1)).all()
    assert (traj[[12, 13]] == torch.tensor([-1.0, 2.0]).view(1, 2, 1, 1)).all()
    assert (~valid["traj"][0]).nonzero().flatten().tolist() == [6, 7]


def test_static_video_gives_all_zero_patch_std_targets():
    frames = np.stack([texture(64, 64, seed=2)] * 24)
    targets, valid = make_target_fn(TargetConfig(track_length=4), model_cfg()).targets(make_sample(frames, 8, 2, 4))
    assert targets["traj"].abs().max() == 0 and valid["traj"].all()
    assert targets["shape"].abs().sum() > 0  # the shape is there even without motion


def test_rotation_gives_unit_scale_patch_std_targets():
    """A rotation of 3 deg/frame at 64 px: intra-patch differences ~0.4 px, well above the floor."""
    frames, _ = affine_video(30, 64, 64, rot_deg=3.0)
    m = model_cfg()
    targets, _ = make_target_fn(TargetConfig(track_length=4), m).targets(make_sample(frames, 8, 2, 4))
    z = targets["traj"].reshape(-1, 2, 4, 4)  # (N, coordinate, step, point)
    moving = z.abs().sum(-1) > 0
    assert moving.float().mean() > 0.8
    assert torch.allclose(z.std(-1)[moving], torch.ones(()), atol=1e-4)
    # x-displacement of a clockwise rotation grows with y: the lower points (2, 3) move in -x relative to the upper
    zx = z[:, 0]  # (N, step, point)
    assert ((zx[..., 2] + zx[..., 3]) < (zx[..., 0] + zx[..., 1]))[moving[:, 0]].float().mean() > 0.9


def test_without_patch_std_the_position_unit_sets_the_scale():
    """patch_norm=false: the displacement divided by position_unit px (1.0 keeps pixels)."""
    frames, _ = affine_video(40, 64, 64, dx=1.2, dy=-0.8)
    sample, m = make_sample(frames, 8, 2, 4), model_cfg()
    px, _ = make_target_fn(TargetConfig(track_length=4, patch_norm=False, position_unit=1.0), m).targets(sample)
    bound, _ = make_target_fn(TargetConfig(track_length=4, patch_norm=False), m).targets(sample)
    inside = (px["traj"] != 0).all(-1)
    assert inside.float().mean() > 0.5
    z = px["traj"][inside].reshape(-1, 2, 4, 4)  # (N, coordinate, step, point) in px per raw step
    for got, true in ((z[:, 0], 1.2), (z[:, 1], -0.8)):  # flow error at 64²: mean 0.02 px, max 0.16 px
        assert (got - true).abs().mean() < 0.05 and torch.allclose(got, torch.tensor(true), atol=0.2)
    assert torch.allclose(px["traj"], bound["traj"] * (20 * 64 / 224), atol=1e-5)
    with pytest.raises(ConfigError, match="position_unit"):
        TargetConfig(position_unit=0.0)


def test_without_interpolation_tracks_use_only_sampled_frames():
    frames, _ = affine_video(60, 64, 64, dx=1.2, dy=-0.8)
    m = model_cfg()
    full = make_sample(frames, 8, 4, 4)
    # the encoder's frames only: with tubelet 2, stride 4 and L = 4 every track end is a sampled frame
    keep = np.isin(full.frame_ids, full.clip)
    clip_only = Sample(full.frames[keep], full.frame_ids[keep], full.clip, full.starts, full.geometry, full.path, 4)
    off = TargetConfig(track_length=4, patch_norm=False, interpolate=False)
    t_off, _ = make_target_fn(off, m).targets(clip_only)
    t_on, _ = make_target_fn(TargetConfig(track_length=4, patch_norm=False), m).targets(full)
    bound = 20 * 64 / 224  # without PatchStd the target is displacement / bound
    inside = (t_on["traj"] != 0).all(-1)  # points that leave the frame stop at once with interpolation only
    assert inside.float().mean() > 0.5
    a, b = t_off["traj"][inside], t_on["traj"][inside]
    assert torch.allclose(a, b, atol=0.15 / bound)  # a translation: (1.2, -0.8) px per raw step either way
    assert torch.allclose(a[:, :16], torch.full((16,), 1.2 / bound), atol=0.15 / bound)  # x: 4 steps x 4 points
    # the bound is per raw frame: a span of 4 frames may move 4 times it (it clipped a pan of 2 px/frame at
    # 20 * 64 / 224 = 5.7 px per span, 1.43 px per step)
    fast, _ = affine_video(60, 64, 64, dx=2.0, dy=0.0)
    f = make_sample(fast, 8, 4, 4)
    keep = np.isin(f.frame_ids, f.clip)
    t_fast, _ = make_target_fn(off, m).targets(Sample(f.frames[keep], f.frame_ids[keep], f.clip, f.starts,
                                                      f.geometry, f.path, 4))
    assert abs(float(t_fast["traj"][:, :16].median()) * bound - 2.0) < 0.1
    with pytest.raises(DataError, match="too short"):
        make_target_fn(TargetConfig(track_length=4), m).targets(clip_only)  # interpolation needs the raw frames between
    with pytest.raises(ConfigError, match="interpolate"):
        make_target_fn(TargetConfig(track_length=6, interpolate=False), m).targets(full)
    # a video shorter than the window: the clip ends on its last frame, repeated (0, 4, 8, 12, 13, 13, 13, 13)
    short = make_sample(frames[:14], 8, 4, 4)
    keep = np.isin(short.frame_ids, short.clip)
    t_short, _ = make_target_fn(off, m).targets(Sample(short.frames[keep], short.frame_ids[keep], short.clip,
                                                       short.starts, short.geometry, short.path, 4))
    first, last = t_short["traj"][:16], t_short["traj"][-16:]  # the tokens of the starts at frames 0 and 13
    moving = (first != 0).all(-1)
    assert moving.sum() >= 8 and torch.allclose(first[moving][:, :16], torch.tensor(1.2 / bound), atol=0.15 / bound)
    assert (last == 0).all()  # no motion past the last frame
    # a span that passes the last frame has only its real raw steps: start 8 of (0, 4, 8, 9, 9, 9, 9, 9) moves
    # from frame 8 to 9 only, so its first step carries that motion and its others none (it was spread as a
    # quarter over all four)
    shorter = make_sample(frames[:10], 8, 4, 4)
    keep = np.isin(shorter.frame_ids, shorter.clip)
    assert shorter.clip.tolist() == [0, 4, 8, 9, 9, 9, 9, 9]
    t_shorter, _ = make_target_fn(off, m).targets(Sample(shorter.frames[keep], shorter.frame_ids[keep], shorter.clip,
                                                         shorter.starts, shorter.geometry, shorter.path, 4))
    x = t_shorter["traj"][16:32].reshape(16, 2, 4, 4)[:, 0]  # the start at frame 8: (token, step, point), x
    moving = (x[:, 0] != 0).all(-1)
    assert moving.sum() >= 8 and torch.allclose(x[moving][:, 0], torch.tensor(1.2 / bound), atol=0.15 / bound)
    assert (x[:, 1:] == 0).all()
    # only a clip that repeats its last frame is a short video's: a repeat mid-clip (segments) has no stride
    fn = make_target_fn(off, m)
    def clip(frames, video_frames=None):
        return SimpleNamespace(clip=np.array(frames), path="v.mp4",
                               source=None if video_frames is None else (64, 64, video_frames, (False,) * 3))

    assert fn._stride(clip([0, 4, 8, 9, 9, 9, 9, 9], 10)) == 4
    assert fn._stride(clip([0, 4, 8, 11], 12)) == 4  # a shorter last step, to the video's last frame
    for frames, video_frames in (([0, 2, 4, 4, 6, 8, 10, 12], 20), ([0, 4, 8, 11], 20)):
        with pytest.raises(ConfigError, match="interpolate"):  # a repeat mid-clip; a short step mid-video
            fn._stride(clip(frames, video_frames))


def test_dataset_ships_tracks_and_the_step_makes_each_clips_targets_batched(tmp_path):
    """Workers ship tracks and the frames the shape features read; the step's batched targets of clips that
    read different numbers of frames (a window clamped at the video's end reads fewer) are each clip's own."""
    frames, _ = affine_video(40, 80, 96, dx=1.0, rot_deg=1.0)
    write_video(tmp_path / "a.mp4", frames)
    write_video(tmp_path / "short.mp4", frames[:13])  # 8 frames at stride 2 need 15 + 3: the last tracks clamp
    (tmp_path / "list.txt").write_text("a.mp4\nshort.mp4\n")
    tcfg = TargetConfig(kind="mme,hog", track_length=4)
    m = model_cfg(64, 8)
    fn = make_target_fn(tcfg, m)
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=8, stride=2, img_size=64)
    ds = PretrainDataset(data, fn, track_length=fn.track_length)
    items = [ds[0], ds[1], ds[0]]
    shipped = [len(it["motion"]["frames"]) for it in items]
    assert shipped[0] == 16 and shipped[1] < 16  # 4 starts x 4 steps, distinct frames; fewer when clamped
    assert items[0]["motion"]["disp"].shape == (4, 4, 8, 8, 2)
    assert items[0]["motion"]["frames"].dtype == torch.uint8
    batch = collate(items)
    assert batch["motion"]["frames"].shape[0] == sum(shipped)
    video = normalize_clip(batch["video"])  # the workers ship uint8 clips
    targets, valid = batch_targets(video, batch["motion"], tcfg, m)
    assert targets["traj"].shape == (3, 64, 32) and targets["shape"].shape == (3, 64, 432)
    assert targets["hog"].shape == (3, 64, 108) and valid["shape"].shape == (3, 64)
    for b, index in enumerate([0, 1, 0]):
        sample = ds.sample(index, np.random.default_rng([0, 0, index, 0]))  # the draws of ds[index]
        alone, alone_valid = fn.targets(sample)
        for name in ("traj", "shape"):
            assert torch.equal(targets[name][b], alone[name]) and torch.equal(valid[name][b], alone_valid[name])
    model = MaskedAutoencoder(m, head_specs(tcfg, m))
    loss, preds, terms = model(video, model.make_mask(3), targets, valid)
    assert set(terms) == {"hog", "traj", "shape"} and torch.isfinite(loss)


def margin_tracks(folder, monkeypatch, geom: Geometry, margin: int, **motion):
    """The sample the dataset draws with the crop ``geom`` of a 96² video of the ``affine_video`` ``motion`` (8
    frames at stride 2, L = 4, 64² clips), the worker's tracks with ``target.flow_margin=margin``, and the per-step
    error (px) of each point ``(S, L, 8, 8)`` against the analytic motion."""
    frames, maps = affine_video(24, 96, 96, seed=3, **motion)
    write_video(folder / "v.mp4", frames)
    (folder / "list.txt").write_text("v.mp4\n")
    data = DataConfig(list_file=str(folder / "list.txt"), root=str(folder), num_frames=8, stride=2, img_size=64)
    fn = make_target_fn(TargetConfig(track_length=4, flow_margin=margin), model_cfg(64, 8))
    ds = PretrainDataset(data, fn, track_length=fn.track_length, flow_margin=fn.flow_margin)
    monkeypatch.setattr(ds, "_train_geometry", lambda size, rng: geom)
    sample = ds.sample(0, np.random.default_rng(0))
    motion = fn(sample)
    a = geom.affine()  # source pixel centres -> output ones
    seeds = np.concatenate([seed_grid(64, 64, 8), np.ones((8, 8, 1), np.float32)], -1)
    truth = analytic_positions(maps, sample.starts, 4, (seeds @ np.linalg.inv(a).T)[..., :2])  # (S, 5, 8, 8, 2)
    truth = truth @ a[:2, :2].T + a[:2, 2]
    error = np.linalg.norm(motion["disp"].numpy() - np.diff(truth, axis=1), axis=-1)
    return sample, motion, error


RING = np.pad(np.zeros((4, 4), bool), 2, constant_values=True)
"""The points of the outer ring of 16-px tokens of a 64² clip (2×2 points per token)."""


@pytest.mark.parametrize("crop,width", [(Geometry(16.0, 16.0, 64.0, 64.0, 64, 64), 80),  # 16 px on every side
                                         (Geometry(12.0, 16.0, 76.0, 70.0, 64, 64), 78)],  # scaled; 6 on the right
                         ids=["unscaled", "scaled"])
@pytest.mark.parametrize("motion,bound", [({"rot_deg": 1.5}, 0.08), ({"scale": 1.02}, 0.11)])
def test_a_flow_margin_reads_the_motion_of_the_crops_outer_ring_of_tokens(tmp_path, monkeypatch, motion, bound, crop,
                                                                          width):
    """DIS on the crop alone sees nothing past its edge and misreads the motion of the outer ring of tokens (more
    than half of them at 64² to 96²); with target.flow_margin the worker's flow reads the crop's frames with that
    many output px of the video around them, and the ring's tracks come near the interior's, which stay as they
    were. The crop in those frames is the clip's, scaled or not."""
    alone = margin_tracks(tmp_path, monkeypatch, crop, 0, **motion)[2]
    sample, shipped, error = margin_tracks(tmp_path, monkeypatch, crop, 8, **motion)
    assert sample.flow_frames.shape == (17, 80, width, 3) and sample.flow_offset == (8, 8)
    assert (sample.flow_frames[:, 8:72, 8:72] == sample.frames).all()  # the crop, at its place
    assert shipped["disp"].shape == (4, 4, 8, 8, 2) and shipped["track_valid"].shape == (4, 8, 8)
    # rotation: 0.140 -> 0.057 px; zoom: 0.173 -> 0.083 px (per point and step; scaled: 0.13 -> 0.06, 0.16 -> 0.07)
    assert alone[:, :, RING].mean() > bound > error[:, :, RING].mean()
    assert error[:, :, ~RING].mean() < alone[:, :, ~RING].mean() + 0.01 < 0.07


def test_a_flow_margin_is_clipped_at_the_frames_edge_and_mirrored_with_a_flipped_crop(tmp_path, monkeypatch):
    """A crop that touches the video's left edge has no margin there; flipped, that side is the clip's right, and
    its tracks are the unflipped ones mirrored (up to the flow's own noise). A crop of the whole frame has no margin
    at all: its tracks are bitwise those of target.flow_margin=0, which are the tracker's on the crop's frames."""
    crop = Geometry(0.0, 16.0, 64.0, 64.0, 64, 64)
    plain, motion, error = margin_tracks(tmp_path, monkeypatch, crop, 8, rot_deg=1.5)
    flipped, motion_f, error_f = margin_tracks(tmp_path, monkeypatch, dataclasses.replace(crop, flip=True), 8,
                                               rot_deg=1.5)
    assert plain.flow_frames.shape == flipped.flow_frames.shape == (17, 80, 72, 3)
    assert plain.flow_offset == (0, 8) and flipped.flow_offset == (8, 8)
    assert (plain.flow_frames[:, 8:72, :64] == plain.frames).all()
    assert (flipped.flow_frames[:, 8:72, 8:] == flipped.frames).all()
    mirrored = motion_f["disp"].numpy()[..., ::-1, :] * np.array([-1, 1], np.float32)
    assert np.abs(mirrored - motion["disp"].numpy()).mean() < 0.03
    assert (motion_f["track_valid"].numpy()[..., ::-1] == motion["track_valid"].numpy()).mean() > 0.95
    assert error[:, :, RING].mean() < 0.1 and error_f[:, :, RING].mean() < 0.1  # 0.14 without the margin
    whole = Geometry(0.0, 0.0, 96.0, 96.0, 64, 64)
    sample, margin, _ = margin_tracks(tmp_path, monkeypatch, whole, 8, rot_deg=1.5)
    none, no_margin, _ = margin_tracks(tmp_path, monkeypatch, whole, 0, rot_deg=1.5)
    assert sample.flow_frames is None and none.flow_frames is None
    today = track(none.frames, none.frame_ids, none.starts, 4, clamp=True)
    for name in ("disp", "track_valid"):
        assert torch.equal(margin[name], no_margin[name])
    assert np.array_equal(no_margin["disp"].numpy(), today.disp)


def test_the_flow_margin_is_refused_negative_and_said_without_effect_where_no_worker_computes_a_flow(tmp_path):
    """target.flow_margin is a number of px >= 0, which pre-training's dataset is given; it has no effect on tracks
    read from a cache, made in the step (torch-lk) or on a target without them, which a fresh run refuses as any
    such setting, and on which the workers read no margin. A run made before the key existed did without one:
    resumed with one, that is a change."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig
    from mme.train.engine import config_changes
    from mme.train.pretrain import pretrain_dataset

    with pytest.raises(ConfigError, match=r"^target\.flow_margin must be >= 0 px, got -1$"):
        TargetConfig(flow_margin=-1)
    with pytest.raises(ConfigError, match=r"target\.flow_margin"):
        TargetConfig(flow_margin=1.5)
    for others in ({"cache_dir": "/tmp/cache"}, {"flow": "torch-lk"}, {"kind": "pixel"}):
        cfg = TargetConfig(flow_margin=8, **others)
        assert "flow_margin" in cfg.settings_without_effect()
        assert make_target_fn(cfg, model_cfg()).flow_margin == 0
        with pytest.raises(ConfigError, match=r"^target\.flow_margin=8 has no effect on this target .* applies only "
                                              r"to a flow of the data workers"):
            cfg.check_settings_used()
    cfg = TargetConfig(flow_margin=8)
    assert "flow_margin" not in cfg.settings_without_effect() and make_target_fn(cfg, model_cfg()).flow_margin == 8
    (tmp_path / "list.txt").write_text("v.mp4\n")
    run = load_config(PretrainConfig, "tiny_cpu_mme", [f"data.list_file={tmp_path / 'list.txt'}",
                                                       f"data.root={tmp_path}", "target.flow_margin=8"])
    assert pretrain_dataset(run).flow_margin == 8
    before = dataclasses.asdict(TargetConfig())
    del before["flow_margin"]
    changes = config_changes({"target": before}, {"target": dataclasses.asdict(cfg)})
    assert [str(c) for c in changes] == ["target.flow_margin: 0 (before the key existed) -> 8"]


def test_pixel_target_is_videomaes_norm_pix_of_the_pixels_in_0_1():
    """The z-score per token and channel of the denormalised pixels in (t, y, x, c) order (VideoMAE's
    norm_pix_loss, unbiased std + 1e-6), on textured, nearly flat and flat clips; and the raw pixels without norm."""
    from mme.data.transforms import denormalize
    from mme.motion.targets import pixel_target

    def reference(video, norm):
        x = denormalize(video).reshape(2, 3, 2, 2, 2, 16, 2, 16).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(2, 8, 512, 3)
        if norm:
            x = (x - x.mean(-2, keepdim=True)) / (x.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
        return x.reshape(2, 8, 1536)

    g = torch.Generator().manual_seed(0)
    textured = torch.randint(0, 256, (2, 3, 4, 32, 32), generator=g, dtype=torch.uint8)
    nearly_flat = torch.full((2, 3, 4, 32, 32), 128, dtype=torch.uint8)
    nearly_flat[..., ::7, ::5] = 129
    flat = torch.full((2, 3, 4, 32, 32), 77, dtype=torch.uint8)
    flat_tokens = torch.randint(0, 256, (2, 3, 2, 1, 2, 1, 2, 1), generator=g, dtype=torch.uint8)  # one per channel
    flat_tokens = flat_tokens.expand(2, 3, 2, 2, 2, 16, 2, 16).reshape(2, 3, 4, 32, 32)
    for clip in (textured, nearly_flat, flat):
        video = normalize_clip(clip)
        for norm in (True, False):
            got, want = pixel_target(video, 2, 16, norm), reference(video, norm)
            assert got.shape == want.shape == (2, 8, 1536)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for clip in (flat, flat_tokens):  # 0 exactly, whatever the value
        assert pixel_target(normalize_clip(clip), 2, 16).abs().max() == 0


@pytest.mark.parametrize("style", ["skimage", "release", "maskfeat"])
def test_frame_hog_equals_hog_of_the_normalised_frames(style):
    from mme.motion.targets import frame_hog

    frames = torch.from_numpy(np.stack([texture(32, 40, seed=s) for s in range(5)]))
    ref = hog_cells(normalize(frames.permute(0, 3, 1, 2).float() / 255, channel_dim=1), 8, style=style)
    got = frame_hog(frames, 8, style)
    if style == "maskfeat":  # whole votes: a Sobel gradient on the 0/180-degree bin edge (gx = 0) is bin 0 from the
        # raw frames, and bin 0 or 8 from the normalised ones as the sign of their rounding error falls, which
        # changes the cell's length before its L2 step: the same direction once those two bins are merged
        norms = got.unflatten(1, (3, 9)).norm(dim=2)
        torch.testing.assert_close(norms, torch.ones_like(norms))  # unit length, not rescaled to the clip's scale
        got, ref = (F.normalize(torch.cat([h[:, :, :1] + h[:, :, 8:], h[:, :, 1:8]], 2), dim=2)
                    for h in (got.unflatten(1, (3, 9)), ref.unflatten(1, (3, 9))))
    assert torch.allclose(got, ref, atol=1e-5)


def test_the_released_preset_takes_the_release_hog():
    """``target.preset=released`` is the authors' target: its HOG head reads the release's Sobel HOG (checked
    value by value in test_released_shapes_at_16x224_tubelet2_patch16_L4); every other preset, and an explicit
    key over it, keeps its own."""
    from mme.motion.targets import step_targets

    assert TargetConfig(preset="released").hog_style == "release"
    assert TargetConfig(preset="released", hog_style="skimage").hog_style == "skimage"
    assert TargetConfig().hog_style == TargetConfig(preset="videomae").hog_style == "skimage"
    with pytest.raises(ConfigError, match="target.hog_style"):
        TargetConfig(hog_style="sobel")
    clip = torch.from_numpy(np.stack([texture(32, 32, seed=s) for s in range(4)]))  # (T, H, W, 3)
    video = normalize(clip.permute(3, 0, 1, 2)[None].float() / 255, channel_dim=1)  # (1, 3, 4, 32, 32)
    model = ModelConfig(img_size=32, num_frames=4)
    release = step_targets(video, TargetConfig(preset="released"), model)["hog"]  # (1, 2*2*2, 108)
    skimage = step_targets(video, TargetConfig(kind="mme-released"), model)["hog"]
    assert 3.5 < release.sum() / skimage.sum() < 4.2


def test_bench_targets_reports_every_stage(tmp_path):
    import cv2

    from mme.motion.bench import run

    frames, _ = affine_video(48, 72, 72, dx=1.0)
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    r = run(str(write_video(tmp_path / "b.mp4", frames)), frames=8, stride=4, size=64, length=4, repeat=1)
    # timed on one thread, and the process's own thread counts back after (later reductions round as before)
    assert r["threads"] == 1 and torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
    assert r["flow_pairs"] == 4 * 4 and r["frames_decoded"] == 4 * 5 + 4 - 4
    for key in ("decode_ms", "flow_ms", "tracking_ms", "total_ms", "target_fn_ms", "step_ms"):
        assert r[key] > 0
    assert r["ratio_total_decode"] == pytest.approx(r["total_ms"] / r["decode_ms"])


def test_bench_targets_times_and_names_what_the_training_step_makes(tmp_path, capsys, monkeypatch):
    """The step's share of `mme bench targets` timed only the motion targets and was named "HOG along the tracks"
    for every kind: mme-released makes none of those, and its HOG of the clip (a pixel target alike) went untimed.
    It times the step's own batch_targets on the batch's uint8 clip and names what the kind's heads make."""
    from mme.motion.bench import bench_targets
    from mme.train import pretrain

    made = []

    def counted(video, motion, cfg, model_cfg):
        targets, valid = batch_targets(video, motion, cfg, model_cfg)
        made.append((tuple(video.shape), video.dtype, sorted(targets)))
        return targets, valid

    monkeypatch.setattr(pretrain, "batch_targets", counted)
    torch.set_num_threads(1)
    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    expected = {"mme-released": ("HOG of the clip + assembly", ["hog", "traj"]),
                "mme,pixel": ("pixel target, HOG along the tracks + assembly", ["pixel", "shape", "traj"])}
    for kind, (label, heads) in expected.items():
        made.clear()
        r = bench_targets(video, frames=4, stride=2, size=64, length=2, kind=kind, repeat=2, batch=3)
        assert made == [((3, 3, 4, 64, 64), torch.float32, heads)] * 2, kind
        assert r["step_ms"] > 0 and r["step_makes"] == label
        assert capsys.readouterr().out.splitlines()[-1].startswith(
            f"  training step, per clip (batch 3, this CPU): {label} "), kind


def test_bench_targets_refuses_a_target_without_motion_heads(tmp_path, capsys):
    """`mme bench targets --kind pixel` (or hog) printed DIS flow and tracking times, over a track window, that
    these targets never spend: they have no motion head. Refused in one line before any work, naming the pipeline
    benchmark that times the pixel target; nothing is written to --json."""
    from mme.cli import main

    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    for kind in ("pixel", "hog", "pixel,hog"):
        argv = ["bench", "targets", "--kind", kind, "--video", video, "--frames", "4", "--stride", "2", "--size",
                "64", "--length", "2", "--repeat", "1", "--json", str(tmp_path / "b.json")]
        assert main(argv) == 1, kind
        out, err = capsys.readouterr()
        heads = ", ".join(TargetConfig(kind=kind).heads)
        assert out == "" and err.splitlines() == [
            f"mme bench targets: error: --kind {kind} has no motion head (its heads: {heads}), so no flow nor tracks "
            "to time; `mme bench pipeline` times the pixel target (a hog target's data worker decodes as pixel's "
            "does)"], kind
        assert not (tmp_path / "b.json").exists()


def test_half_scale_geometry_patch8_tubelet1():
    """§14's half-scale knob: patch 8 -> seed stride 4 and HOG cell 4 keep 2x2 points and cells per patch."""
    m = ModelConfig(img_size=48, num_frames=3, tubelet_size=1, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                    decoder_dim=16, decoder_heads=2)
    cfg = TargetConfig(kind="mme,hog,pixel", track_length=3)
    assert {h.name: h.dim for h in head_specs(cfg, m)} == {"pixel": 192, "hog": 108, "traj": 24, "shape": 324}
    frames, _ = affine_video(20, 48, 48, dx=1.0, rot_deg=2.0)
    sample = make_sample(frames, 3, 2, 3, tubelet=1)
    targets, valid = make_target_fn(cfg, m).targets(sample)
    assert targets["traj"].shape == (108, 24) and targets["shape"].shape == (108, 324)
    step = step_targets(to_video_tensor(sample.frames_at(sample.clip))[None], cfg, m)
    assert step["pixel"].shape == (1, 108, 192) and step["hog"].shape == (1, 108, 108)


def test_the_maskfeat_preset_takes_maskfeats_hog_and_normalises_each_cells_histograms():
    """The maskfeat preset's hog head is MaskFeat's HOG (``hog_style=maskfeat``, checked value by value in
    test_hog.py), every cell's 9-bin histogram of each colour L2-normalised as MaskFeat's, its ``hog_norm=true``
    changing nothing; the hog kind unless asked is scikit-image's HOG, unnormalised; an explicit key wins over the
    preset."""
    assert (TargetConfig(preset="maskfeat").hog_style, TargetConfig(preset="maskfeat").hog_norm) == ("maskfeat", True)
    assert TargetConfig(preset="maskfeat", hog_style="skimage").hog_style == "skimage"
    frames, _ = affine_video(8, 64, 64, dx=1.0)
    video = normalize(to_video_tensor(frames))[None]  # (1, 3, 8, 64, 64)
    m = model_cfg(frames=8)
    maskfeat = step_targets(video, from_dict(TargetConfig, {"preset": "maskfeat"}), m)["hog"].reshape(1, 64, 3, 9, 4)
    cells = hog_cells(video[0, :, 1::2].transpose(0, 1), 8, style="maskfeat")  # each tubelet's 2nd frame
    cells = cells.reshape(4, 3, 9, 4, 2, 4, 2).permute(0, 3, 5, 1, 2, 4, 6).reshape(1, 64, 3, 9, 4)  # token order
    assert torch.equal(maskfeat, cells)
    unnormed = from_dict(TargetConfig, {"preset": "maskfeat", "hog_norm": False})  # refused for a run: no effect
    assert torch.equal(step_targets(video, unnormed, m)["hog"].reshape(1, 64, 3, 9, 4), maskfeat)
    torch.testing.assert_close(maskfeat.norm(dim=3), torch.ones(1, 64, 3, 4))
    plain = step_targets(video, TargetConfig(kind="hog"), m)["hog"].reshape(1, 64, 3, 9, 4)  # (B, N, colour, bin, cell)
    skimage = hog_cells(video[0, :, 1::2].transpose(0, 1), 8)
    skimage = skimage.reshape(4, 3, 9, 4, 2, 4, 2).permute(0, 3, 5, 1, 2, 4, 6).reshape(1, 64, 3, 9, 4)
    torch.testing.assert_close(plain, skimage)
    assert (maskfeat - plain / plain.norm(dim=3, keepdim=True)).abs().max() > 0.1  # another HOG than skimage's


def test_the_maskfeat_style_normalises_each_cell_on_the_hog_and_the_shape_head():
    """MaskFeat's HOG ends by scaling each cell's histogram of each colour to unit length (HOGLayerC's
    F.normalize): the maskfeat style does so on any head. Before, that step was the hog head's hog_norm alone, so
    the shape head (target.kind=mme) and the released preset's hog head took the summed histograms, in the
    hundreds: 99.97 % of the loss. The shape head reads bilinear blends of unit cells at the tracked points: at a
    seed 0.5 px off its cell's centre, >= 0.88 of its own cell, so a length in [0.76, 1]."""
    frames = np.stack([texture(64, 64, seed=2)] * 24)  # static: the points stay on their seeds
    m = model_cfg()
    sample = make_sample(frames, 8, 2, 4)
    mme = from_dict(TargetConfig, {"kind": "mme", "track_length": 4, "hog_style": "maskfeat"})
    shape = make_target_fn(mme, m).targets(sample)[0]["shape"].reshape(-1, 4, 4, 3, 9)  # (N, step, point, colour, bin)
    norms = shape.norm(dim=-1)
    assert norms.max() <= 1 + 1e-5 and norms.min() >= 0.75
    video = normalize(to_video_tensor(sample.frames_at(sample.clip)))[None]
    assert from_dict(TargetConfig, {"preset": "released", "hog_style": "maskfeat"}).hog_norm is True  # says so
    released = from_dict(TargetConfig, {"preset": "released", "hog_style": "maskfeat", "hog_norm": False})
    hog = step_targets(video, released, m)["hog"].reshape(1, 64, 3, 9, 4)  # (B, N, colour, bin, cell)
    torch.testing.assert_close(hog.norm(dim=3), torch.ones(1, 64, 3, 4))  # by the style, hog_norm off
