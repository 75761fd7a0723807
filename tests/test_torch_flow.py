"""``torch-lk``: the flow and tracks of the training step, batched on its device, against the same flow one pair
at a time (the worker's ``track``), on real encoded videos with analytic motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from test_targets import make_sample
from training import run
from videos import affine_video, encoded, write_video

from mme.data.dataset import DataConfig, PretrainDataset, collate
from mme.errors import ConfigError, DataError
from mme.models.config import ModelConfig
from mme.motion.flow import raw_flow
from mme.motion.targets import TargetConfig, TargetFn, batch_targets, make_target_fn
from mme.motion.torch_flow import grey, lk_flow
from mme.motion.tracks import track, track_in_step

pytestmark = pytest.mark.numerics


def test_grey_is_bt601_in_fixed_point_and_within_a_level_of_opencv():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    g = grey(torch.from_numpy(rgb)).numpy()
    exact = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert g.shape == (2, 40, 56) and g.dtype == np.float32
    assert np.abs(g - exact).max() <= 0.51  # rounded to the nearest level (weights in 14-bit fixed point)
    assert np.abs(g[0] - cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY)).max() <= 1


@pytest.mark.pinned  # no run: the flow and tracks compute in fp32 whatever 'auto' resolves to
def test_a_pair_gets_the_same_flow_alone_in_a_batch_and_under_autocast(tmp_path):
    frames = encoded(tmp_path, affine_video(5, 72, 88, dx=1.7, dy=-0.6, rot_deg=1.0)[0])
    g = grey(torch.from_numpy(frames))
    batch = lk_flow(g[:4], g[1:])
    alone = torch.cat([lk_flow(g[i:i + 1], g[i + 1:i + 2]) for i in range(4)])
    assert batch.shape == (4, 2, 72, 88) and batch.dtype == torch.float32
    assert (batch - alone).abs().max() < 1e-3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(lk_flow(g[:4], g[1:]), batch)  # the flow runs in fp32 whatever autocast says
    # the per-pair entry (raw_flow, as `track` and `mme extract` call it) is the same flow
    assert np.abs(raw_flow(frames[0], frames[1], "torch-lk") - alone[0].permute(1, 2, 0).numpy()).max() < 1e-3
    # and it measures the motion: the median flow is the translation plus the small rotation's mean (0 here)
    assert np.abs(np.median(alone[0].permute(1, 2, 0).reshape(-1, 2).numpy(), 0) - [1.7, -0.6]).max() < 0.2


@pytest.mark.parametrize("h, w", [(48, 48), (50, 70), (62, 62)])
def test_small_frames_read_the_whole_motion(h, w, tmp_path):
    """Frames under 64 px had a pyramid of two levels and read a 1.5 px translation as 1.34-1.45 px. Judged on the
    median flow of four textures: one texture's moves by a few hundredths of a px with any change to the flow."""
    from mme.motion.torch_flow import _pyramid

    medians = []
    for seed in range(4):
        frames = encoded(tmp_path, affine_video(2, h, w, dx=1.5, dy=-0.8, seed=seed)[0])
        medians.append(np.median(raw_flow(frames[0], frames[1], "torch-lk")[6:-6, 6:-6].reshape(-1, 2), 0))
    assert np.abs(np.mean(medians, 0) - [1.5, -0.8]).max() < 0.04, medians
    # three levels, down to 8 px; frames of 64 px and more keep the levels they had (coarsest >= 16 px)
    sides = {s: [level.shape[-1] for level in _pyramid(torch.zeros(1, 1, s, s))] for s in (48, 62, 64, 112, 224)}
    assert sides == {48: [48, 24, 12], 62: [62, 31, 16], 64: [64, 32, 16], 112: [112, 56, 28],
                     224: [224, 112, 56, 28]}


def test_the_accelerators_blur_is_the_cpus_and_gives_the_same_flow(tmp_path, monkeypatch):
    """A GPU blurs by convolution, a CPU by shifted sums: checked here on the CPU, where both run."""
    from mme.motion import torch_flow

    x = torch.rand(3, 5, 37, 50) * 255
    for sigma in (0.8, 2.0, 3.0):
        for outside in ("replicate", "constant"):
            conv, shifted = (torch_flow._blur(x, sigma, shifted=s, outside=outside) for s in (False, True))
            assert (conv - shifted).abs().max() < 1e-3
    g = grey(torch.from_numpy(encoded(tmp_path, affine_video(3, 64, 80, dx=1.2, rot_deg=1.5)[0])))
    shifted = lk_flow(g[:2], g[1:])
    blur = torch_flow._blur
    monkeypatch.setattr(torch_flow, "_blur", lambda x, sigma, **kw: blur(x, sigma, shifted=False, **kw))
    assert (lk_flow(g[:2], g[1:]) - shifted).abs().max() < 1e-3


@pytest.mark.pinned  # no run: the flow and tracks compute in fp32 whatever 'auto' resolves to
def test_tracks_of_the_step_are_the_workers_tracks_of_the_same_flow(tmp_path):
    frames = encoded(tmp_path, affine_video(12, 64, 80, dx=2.0, dy=1.0, rot_deg=2.0, seed=4)[0])
    starts = [0, 2, 4, 8]  # 4 + 4 overlaps 8's pairs: each distinct pair once; 8 + 4 > 11: clamped at the end
    tr = track(frames, np.arange(12), starts, 4, seed_stride=8, flow="torch-lk", clamp=True)
    index = torch.tensor([[min(s + j, 11) for j in range(5)] for s in starts])
    disp, valid, pos = track_in_step(torch.from_numpy(frames), index, 8, chunk_px=64 * 80 * 3)
    assert disp.shape == (4, 4, 8, 10, 2) and valid.shape == (4, 8, 10) and pos.shape == (4, 5, 8, 10, 2)
    assert (disp - torch.from_numpy(tr.disp)).abs().max() < 1e-3
    assert torch.equal(valid, torch.from_numpy(tr.valid))
    assert (pos - torch.from_numpy(tr.positions())).abs().max() < 1e-3
    assert torch.equal(disp[3, 3:], torch.zeros_like(disp[3, 3:]))  # frame 11 to itself: no motion at all
    assert disp[:, :3].abs().mean() > 1.0  # and elsewhere the motion is there
    assert not valid.all()  # points that left the frame (2 px per frame to the right) are invalid


@pytest.mark.pinned  # no run: the flow and tracks compute in fp32 whatever 'auto' resolves to
def test_the_flow_under_a_callers_float64_default_dtype_is_the_float32_one_and_leaves_the_float32_one_working(
        tmp_path):
    """Under ``torch.set_default_dtype(torch.float64)`` the flow's zero flow, its window table and the step's flow
    buffer were float64: "expected scalar type Float but found Double", and the window table, cached per frame size
    and device, stayed float64, so every later torch-lk flow of that size failed under float32 too (pre-training
    with ``target.flow=torch-lk`` included)."""
    frames = encoded(tmp_path, affine_video(4, 56, 72, dx=1.5, dy=0.5)[0])  # a frame size no other test flows at
    index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    tcfg, m = _configs(flow="torch-lk")
    sample = make_sample(affine_video(12, 64, 64, dx=1.0, rot_deg=1.0)[0], 8, 1, 4)

    def flows():
        worker = track(frames, np.arange(4), [0, 1], 2, flow="torch-lk").disp
        targets = TargetFn(tcfg, m).targets(sample)[0]  # the shape target's HOG scale was float64 too
        return torch.from_numpy(worker), track_in_step(torch.from_numpy(frames), index, 8)[0], *targets.values()

    torch.set_default_dtype(torch.float64)
    try:
        under = flows()
    finally:
        torch.set_default_dtype(torch.float32)
    after = flows()
    assert len(under) == 4
    for u, a in zip(under, after, strict=True):
        assert u.dtype == a.dtype == torch.float32 and torch.equal(u, a)
    assert (after[0][:, :2] - after[1]).abs().max() < 1e-3
    assert np.abs(np.median(after[1].reshape(-1, 2).numpy(), 0) - [1.5, 0.5]).max() < 0.1


def _configs(**target):
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2,
                    head_hidden=16)
    return TargetConfig(kind="mme", track_length=4, patch_norm=False, position_unit=1.0, **target), m


class _WorkerTracks(TargetFn):
    """The same target with its tracks made in the worker, one flow pair at a time (``track``)."""

    tracks_in_step = False


@pytest.mark.pinned  # no run: the flow and tracks compute in fp32 whatever 'auto' resolves to
def test_workers_ship_frames_and_the_step_makes_the_targets_of_the_workers_tracks(tmp_path):
    frames, _ = affine_video(40, 80, 96, dx=1.0, rot_deg=1.0)
    write_video(tmp_path / "a.mp4", frames)
    write_video(tmp_path / "short.mp4", frames[:13])  # 8 frames at stride 2 need 15 + 4: the last tracks clamp
    (tmp_path / "list.txt").write_text("a.mp4\nshort.mp4\n")
    tcfg, m = _configs(flow="torch-lk")
    fn = make_target_fn(tcfg, m)
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=8, stride=2, img_size=64)
    ds = PretrainDataset(data, fn, track_length=fn.track_length)
    items = [ds[0], ds[1]]
    motion = items[0]["motion"]
    assert set(motion) == {"frames", "track_index", "shape_index"}  # no tracks: the workers only decode
    # starts 4 raw frames apart, 5 frames each: the frame where one track ends and the next starts is shipped once
    assert motion["track_index"].shape == (4, 5) and len(motion["frames"]) == 4 * 4 + 1
    assert len(items[1]["motion"]["frames"]) < 17  # clamped at the short video's end
    batch = collate(items)
    assert batch["motion"]["track_index"][1].min() == 17  # the second clip's indices follow the first's frames
    targets, valid = batch_targets(batch["video"].float(), batch["motion"], tcfg, m)
    assert targets["traj"].shape == (2, 64, 32) and targets["shape"].shape == (2, 64, 432)
    worker = _WorkerTracks(tcfg, m)
    for b in range(2):
        sample = ds.sample(b, np.random.default_rng([0, 0, b, 0]))  # the draws of ds[b]
        alone, alone_valid = worker.targets(sample)
        assert "disp" in worker(sample)
        assert (targets["traj"][b] - alone["traj"]).abs().max() < 1e-3
        assert (targets["shape"][b] - alone["shape"]).abs().max() < 1e-3
        assert torch.equal(valid["traj"][b], alone_valid["traj"])


def test_an_extraction_rank_runs_on_the_gpu_of_its_local_rank(monkeypatch, tmp_path):
    """``mme extract --device cuda`` under torchrun: every rank ran on the first GPU (``cuda`` without an index)."""
    from mme.motion import extract

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second rank on this node
    used = []
    monkeypatch.setattr(extract, "extract_video", lambda path, out_path, opts: used.append(opts.device))
    (tmp_path / "list.txt").write_text("a.mp4\n")
    for asked, device in (("cuda", "cuda:1"), ("cuda:0", "cuda:0"), ("cpu", "cpu")):
        used.clear()
        report = extract.run(str(tmp_path / "list.txt"), str(tmp_path), str(tmp_path / asked.replace(":", "")),
                             extract.ExtractOptions(flow="torch-lk", device=asked))
        assert used == [device] and report["done"] == 1, (asked, used)


def test_extraction_on_a_device_that_is_not_there_is_a_clear_error():
    from mme.motion.extract import ExtractOptions

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^--device: 'cuda' requested but torch sees no CUDA device$"):
            ExtractOptions(flow="torch-lk", device="cuda")
    with pytest.raises(ConfigError, match=r"^--device: 'gpu0' is not a device"):
        ExtractOptions(flow="torch-lk", device="gpu0")
    assert ExtractOptions(flow="torch-lk").batched and not ExtractOptions(flow="torch-lk", compensate=True).batched


def test_extraction_checks_its_device_as_training_does(monkeypatch, tmp_path):
    """ExtractOptions had a device check of its own: `mme extract --device auto`, which every other command takes,
    was refused as no device, and `meta` (shapes without data), `cuda:N` past the GPUs torch sees or an `mps` it
    does not were taken, to fail later. It checks with choose_device, as train.device and --device elsewhere are."""
    from mme.motion import extract

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    used = []
    monkeypatch.setattr(extract, "extract_video", lambda path, out_path, opts: used.append(opts.device))
    (tmp_path / "list.txt").write_text("a.mp4\n")
    report = extract.run(str(tmp_path / "list.txt"), str(tmp_path), str(tmp_path / "out"),
                         extract.ExtractOptions(flow="torch-lk", device="auto"))
    assert used == ["cpu"] and report["done"] == 1
    with pytest.raises(ConfigError, match=r"^--device: 'meta' holds shapes without data, which no run trains on"):
        extract.ExtractOptions(flow="torch-lk", device="meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"^--device: 'cuda:1' requested but torch sees 1 CUDA device, cuda:0 "
                                    r"to cuda:0$"):
        extract.ExtractOptions(flow="torch-lk", device="cuda:1")


def test_a_step_flow_refuses_what_only_worker_tracks_do():
    for key in ("compensate", "prune"):
        with pytest.raises(ConfigError, match=f"torch-lk.*{key}"):
            _configs(flow="torch-lk", **{key: True})
    with pytest.raises(ConfigError, match="interpolate=false"):
        _configs(flow="torch-lk", interpolate=False)
    _configs(flow="torch-lk", compensate=True, cache_dir="/cache")  # tracks from a cache: the flow is not used
    pixel = TargetConfig(kind="pixel", flow="torch-lk", compensate=True)  # no tracks: said to have no effect at all
    with pytest.raises(ConfigError, match="target.flow=torch-lk has no effect on this target"):
        pixel.check_settings_used()


def test_missing_frames_are_an_error_naming_the_video_not_a_wrong_frame(tmp_path):
    frames, _ = affine_video(20, 64, 64, dx=1.0)
    tcfg, m = _configs(flow="torch-lk")
    sample = make_sample(frames, 8, 2, 4)
    sample.frame_ids = sample.frame_ids.copy()
    sample.frame_ids[-1] += 100  # the last frame a track needs is not held
    with pytest.raises(DataError, match="gen.mp4.*too short"):
        make_target_fn(tcfg, m)(sample)


def test_pretraining_with_the_step_flow_learns_its_targets(synth, tmp_path):
    res = run("tiny_cpu_mme", synth, tmp_path, "target.flow=torch-lk", "train.steps=12", "data.num_workers=1")
    traj = [r["loss_traj"] for r in res.history]
    assert all(np.isfinite(traj)) and np.mean(traj[-3:]) < 0.8 * np.mean(traj[:3])
    assert all(0.5 < r["valid_traj"] <= 1.0 for r in res.history)


def test_a_rigid_pan_gives_border_tokens_no_patchstd_motion_with_torch_lk():
    """A translation moves every patch rigidly: its PatchStd traj target is 0 everywhere. torch-lk's windows and warps
    read the replicated border near the edge the content moves towards, under-read the flow there (0.3 px of 1.3 at
    the last column) and gave 33 % of the border ring's traj values |z| > 0.5 (interior 0); dis-balanced 0."""
    frames, _ = affine_video(19, 96, 96, dx=1.3, dy=-0.7)
    m = ModelConfig(img_size=96, num_frames=8, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2)
    sample = make_sample(frames, 8, 2, 6)
    share = {}
    for flow in ("dis-balanced", "torch-lk"):
        z = TargetFn(TargetConfig(kind="mme", flow=flow, track_length=6), m).targets(sample)[0]["traj"]
        big = (z.reshape(4, 6, 6, -1).abs() > 0.5).float().mean(-1).mean(0)  # per token position (rows, columns)
        interior = big[1:-1, 1:-1].sum()
        share[flow] = ((big.sum() - interior) / 20).item(), (interior / 16).item()
    assert share["dis-balanced"][0] < 0.02 and share["dis-balanced"][1] == 0.0, share
    assert share["torch-lk"][0] < 0.02 and share["torch-lk"][1] == 0.0, share


def test_the_flow_runs_where_a_caller_gave_torchs_per_operator_tf32_setting():
    """torch >= 2.9 refuses its old cuDNN switch (``cudnn.flags(allow_tf32=...)``) once a caller gave the per-operator
    setting (``torch.backends.cudnn.conv.fp32_precision = "ieee"``, what docs/performance.md advises for full fp32):
    the torch-lk flow (and ``mme bench train``) stopped there in torch's RuntimeError of 'a mix of the legacy and new
    APIs'. ``mme.utils.no_tf32`` takes either setting, and leaves the caller's as it was."""
    from mme.motion.torch_flow import lk_flow
    from mme.utils import no_tf32

    b = torch.backends.cudnn
    if not hasattr(getattr(b, "conv", None), "fp32_precision"):
        pytest.skip("this torch has no per-operator TF32 setting")
    allowed, before = b.allow_tf32, b.conv.fp32_precision
    with no_tf32():
        assert b.allow_tf32 is False
    assert b.allow_tf32 == allowed
    try:
        b.conv.fp32_precision = "ieee"
        with no_tf32():
            assert b.conv.fp32_precision == "ieee"
        assert b.conv.fp32_precision == "ieee"
        a = torch.rand(1, 32, 32) * 255
        assert torch.isfinite(lk_flow(a, torch.roll(a, 1, 2))).all()
    finally:
        b.conv.fp32_precision = before
