"""Sampling and datasets: the sample contract, bad-input handling, DataLoader workers (fork and spawn) and a
distributed sampler. Pixels of the coordinate video encode (x, y, t), so every check reads the truth back."""

from __future__ import annotations

import collections
import dataclasses
import gc
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from os_fakes import out_of_memory_opening
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter
from videos import (
    affine_video,
    capture_mid_gop,
    coordinate_video,
    hevc_restarted,
    texture,
    write_keyint_video,
    write_open_gop_hevc,
    write_video,
)
from worker_jobs import EndsItsWorker, alive, with_small_shm

from mme.cli import main as cli_main
from mme.config import from_dict
from mme.data import pyav_reader
from mme.data.dataset import (
    ClassificationDataset,
    DataConfig,
    PretrainDataset,
    _warn_index_missed,
    collate,
    read_with_margin,
    start_workers,
)
from mme.data.lists import ListEntry, read_list
from mme.data.packed import PackedStrings
from mme.data.sampling import sample_pretrain, sample_segments, sample_test_clips, window_length
from mme.data.transforms import Geometry, apply_geometry, to_clip, view_crops
from mme.data.video import check_video, open_video, require_backend
from mme.errors import ConfigError, DataError, OutOfMemory, UnguardedScript, VideoError
from mme.utils import SCRIPT_RERUN_EXIT


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    coordinate_video(root / "coord.mkv", T=16, H=48, W=64)
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 48, 3), dtype=np.uint8)
    good = write_video(root / "good.mp4", frames)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n" * 40)
    (root / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return root


def config(videos, lines: list[str], **kw) -> DataConfig:
    (videos / "list.txt").write_text("".join(line + "\n" for line in lines))
    base = dict(list_file=str(videos / "list.txt"), root=str(videos), num_frames=4, stride=2, img_size=24,
                max_failure_fraction=1.0)
    return from_dict(DataConfig, {**base, **kw})


def frame_index(frames: np.ndarray) -> np.ndarray:
    """The t encoded in the B channel of coordinate-video frames (..., H, W, 3) -> one value per frame."""
    b = frames[..., 2].reshape(len(frames), -1)
    assert (b == b[:, :1]).all()
    return b[:, 0] // 16


# ---- sampling ------------------------------------------------------------------------------------------------

def test_pretrain_sampling_contract():
    rng = np.random.default_rng(0)
    first = set()
    for _ in range(300):
        c = sample_pretrain(200, 16, 4, 2, 4, rng)
        assert np.all(np.diff(c.clip) == 4) and c.clip.shape == (16,)
        np.testing.assert_array_equal(c.starts, c.clip[::2])
        tracks = c.starts[:, None] + np.arange(5)  # (S, L + 1): every frame a track visits
        assert tracks.shape == (8, 5)
        np.testing.assert_array_equal(c.needed, np.unique(np.concatenate([c.clip, tracks.ravel()])))
        first.add(int(c.clip[0]))
    assert min(first) == 0 and max(first) == 200 - 61  # uniform over every window that fits 61 raw frames
    long_tracks = sample_pretrain(100, 16, 4, 2, 6, rng)  # L > stride: the last track reaches past the clip
    assert long_tracks.needed[-1] == long_tracks.clip[14] + 6
    assert window_length(16, 4, 2, 6) == 63


def test_short_video_repeats_its_last_frame():
    c = sample_pretrain(30, 16, 4, 2, 4, np.random.default_rng(0))
    assert c.clip[0] == 0 and c.clip.max() == 29 and list(c.clip[-8:]) == [29] * 8
    assert c.needed.max() == 29 and c.starts[-1] == 29  # a track past the end stays on the last frame: zero motion


@pytest.mark.parametrize("frames,clips,starts", [(24, 1, [4]), (26, 1, [5]), (24, 3, [0, 4, 9]), (26, 3, [0, 5, 11]),
                                                 (29, 5, [0, 3, 7, 10, 14]), (31, 5, [0, 4, 8, 12, 16]),
                                                 (76, 8, [0, 8, 17, 26, 34, 43, 52, 61])])
def test_test_view_starts_are_rounded_down_whatever_their_parity(frames, clips, starts):
    """A strided test view starts at k/(N-1) of the room, rounded down as VideoMAE's int(chunk_nb * temporal_step)
    (one view: at half the room, rounded down). Python's round() took halves to the even start, so a 5.5 went up
    and a 4.5 down, as the room's parity fell (8 frames at stride 2: a 15-frame window). Starts are exact: the
    last of 8 views in a room of 61 frames starts at 61, where the float product 7 * (61 / 7) falls short of it."""
    views = sample_test_clips(frames, 8, 2, 2, clips)
    assert [int(v.clip[0]) for v in views] == starts
    assert all(np.array_equal(v.clip, s + 2 * np.arange(8)) for v, s in zip(views, starts))
    assert views[-1].clip[-1] == (frames - 1 if clips > 1 else starts[0] + 14)


def test_segment_and_test_sampling():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = sample_segments(100, 8, 2, rng)
        assert all(i * 100 // 8 <= c.clip[i] < (i + 1) * 100 // 8 for i in range(8)) and c.clip[-1] < 100
    # training segments hold whole frames: fractional bounds shared a frame, drawn twice in 29 % of the clips of a
    # 45-frame video (97 % at 17 frames); now none repeats, and every frame, the last among them, is drawn
    for frames, track_length in ((17, 0), (45, 0), (45, 4), (16, 0)):
        split = frames - track_length
        clips = np.array([sample_segments(frames, 16, 2, rng, track_length).clip for _ in range(400)])
        assert (np.diff(clips, axis=1) > 0).all(), (frames, clips[(np.diff(clips, axis=1) <= 0).any(1)][:2])
        assert np.unique(clips).tolist() == list(range(split)), frames
        bounds = np.arange(17) * split // 16
        assert ((bounds[:-1] <= clips) & (clips < bounds[1:])).all()
    np.testing.assert_array_equal(sample_segments(100, 8, 2, None).clip, np.floor((np.arange(8) + 0.5) * 12.5))
    clips = sample_test_clips(100, 8, 4, 2, 3)
    assert [int(c.clip[0]) for c in clips] == [0, 35, 71] and clips[-1].clip[-1] == 99
    # VideoMAE's SSv2 views: every segment's first frame and its centre (were the frames at 1/4 and 3/4)
    seg = sample_test_clips(48, 16, 4, 2, 2, segments=True)
    assert [list(c.clip[:3]) for c in seg] == [[0, 3, 6], [1, 4, 7]] and seg[1].clip[-1] == 46
    assert list(sample_test_clips(48, 16, 4, 2, 1, segments=True)[0].clip) == list(seg[1].clip)
    # with tracks, the segments leave the last L frames to the last tracks (34 % of draws at 48 frames ran on
    # copies of the last frame); a video too short for that keeps its clamp
    for _ in range(50):
        c = sample_segments(48, 16, 2, rng, track_length=4)
        assert c.starts.max() + 4 <= 47 and c.needed.max() <= 47
    assert sample_segments(18, 16, 2, rng, track_length=4).needed.max() == 17



def test_segment_test_views_take_exactly_the_frame_at_their_fraction_of_each_segment():
    """evaluation.md's rule, ⌊(i + k/N)·F/T⌋ (N = 1: the centre, ⌊(i + 1/2)·F/T⌋), was computed as a float product
    that fell just under some whole numbers: 72 frames, T = 8, the view at 2/3 took frame 14 for 15. Now exact for
    every video length, clip length and number of views; with tracks, of the first F − L frames."""
    for T in (8, 12, 16, 24, 32):
        for F in range(T, 601):
            for N in range(1, 6):
                fractions = [Fraction(1, 2)] if N == 1 else [Fraction(k, N) for k in range(N)]
                views = sample_test_clips(F, T, 4, 2, N, segments=True)
                assert [v.clip.tolist() for v in views] == [[(i + o) * F // T for i in range(T)] for o in fractions]
    assert sample_test_clips(72, 8, 4, 2, 3, segments=True)[2].clip.tolist() == [6, 15, 24, 33, 42, 51, 60, 69]
    assert sample_segments(76, 8, 2, None, track_length=4, offset=Fraction(2, 3)).clip.tolist() == \
        [6, 15, 24, 33, 42, 51, 60, 69]


# ---- config --------------------------------------------------------------------------------------------------

def test_data_config_validation_names_the_key():
    assert from_dict(DataConfig, {"stride": "2", "scales": "1,0.5"}).scales == (1.0, 0.5)
    with pytest.raises(ConfigError, match="data.stride"):
        from_dict(DataConfig, {"stride": 0})
    with pytest.raises(ConfigError, match="data.crop"):
        DataConfig(crop="random")
    with pytest.raises(ConfigError, match="data.num_frames 5 is not a multiple of data.tubelet"):
        DataConfig(num_frames=5)
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(DataConfig, {"frames": 8})


def test_data_flip_flips_half_the_clips_of_every_crop():
    """``data.flip`` flips half the clips whichever the crop (the dataset draws it, for every crop alike)."""
    from types import SimpleNamespace

    from mme.data.dataset import PretrainDataset

    for crop in ("random_resized", "multiscale", "center"):
        data = SimpleNamespace(cfg=DataConfig(crop=crop, flip=True, img_size=64))
        rng = np.random.default_rng(0)
        flips = [PretrainDataset._train_geometry(data, (160, 120), rng).flip for _ in range(400)]
        assert 0.4 <= np.mean(flips) <= 0.6, (crop, np.mean(flips))
        data.cfg = DataConfig(crop=crop, flip=False, img_size=64)
        assert not any(PretrainDataset._train_geometry(data, (160, 120), rng).flip for _ in range(50))


@pytest.fixture(scope="module")
def textured_video(tmp_path_factory):
    """Two textured 640x360 frames."""
    return write_video(tmp_path_factory.mktemp("textured") / "t.mp4", np.stack([texture(360, 640, s) for s in (0, 1)]))


@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flipped"])
@pytest.mark.parametrize("crop", [Geometry(100.0, 30.0, 300.0, 300.0, 105, 105),
                                  Geometry(60.0, 20.0, 300.0, 240.0, 225, 180)], ids=["x0.35", "x0.75"])
def test_a_flow_margin_holds_the_clips_own_frames_in_the_crops_place(textured_video, crop, flip):
    """The frames a worker's flow reads with target.flow_margin hold the clip's frames bitwise in the crop's place,
    whatever the scale and the margin: a scaled crop's widened box has edges between source pixels and is
    resampled otherwise than the crop (on this video 0.30 levels of 255 apart on average, up to 3, at x0.75, m = 8;
    1.52, up to 9, at x0.35, m = 5), so the crop is pasted into it."""
    geom = dataclasses.replace(crop, flip=flip)
    with open_video(textured_video) as reader:
        clip = apply_geometry(reader.read(np.arange(2)), geom)
        for margin in (1, 4, 5, 8, 12):
            frames, flow_frames, (ox, oy) = read_with_margin(reader, np.arange(2), geom, margin)
            assert flow_frames.shape[2] == geom.out_w + 2 * margin
            np.testing.assert_array_equal(frames, clip)
            np.testing.assert_array_equal(flow_frames[:, oy:oy + geom.out_h, ox:ox + geom.out_w], clip,
                                          err_msg=f"margin {margin}")


# ---- pre-training ------------------------------------------------------------------------------------------

def record_target_fn(sample):
    """A target_fn that hands back what it saw (picklable for spawn)."""
    return {"first": torch.tensor(sample.frame_ids[:1], dtype=torch.float32)[None]}


def test_pretrain_item_follows_the_sample_contract(videos):
    cfg = config(videos, ["coord.mkv"] * 3)
    ds = PretrainDataset(cfg, target_fn=record_target_fn, track_length=3, seed=5)
    rng = np.random.default_rng([5, 0, 1, 0])
    sample = ds.sample(1, rng)
    assert sample.path == str(videos / "coord.mkv") and sample.track_length == 3
    np.testing.assert_array_equal(sample.starts, sample.clip[::2])
    assert set(sample.clip) <= set(sample.frame_ids) and sample.frame_ids[-1] == sample.starts[-1] + 3
    np.testing.assert_array_equal(frame_index(sample.frames), sample.frame_ids)  # decoded the right frames
    with open_video(sample.path) as reader:
        raw = reader.read(sample.frame_ids)
    np.testing.assert_array_equal(sample.frames, apply_geometry(raw, sample.geometry))
    item = ds[1]  # same (seed, epoch, index, attempt) -> the same draws as above
    assert torch.equal(item["video"], to_clip(sample.frames_at(sample.clip)))  # uint8: the step normalises it
    assert item["index"] == 1 and item["motion"]["first"].item() == sample.frame_ids[0]
    assert item["video"].shape == (3, 4, 24, 24)
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 4, 24, 24) and batch["motion"]["first"].shape == (2, 1, 1)
    assert batch["index"].tolist() == [0, 1]
    assert PretrainDataset(cfg)[0]["motion"] == {}


def test_videos_too_small_to_train_on_are_skipped_and_counted_as_unreadable(tmp_path):
    """A 64x1 and a 2x2 video were trained on as blank clips (a crop of one source pixel stretched to the clip: no
    pixel varied within a frame); they are failed videos, counted, and their items replaced by a readable one's."""
    write_video(tmp_path / "line.mkv", affine_video(8, 1, 64, dx=1.0)[0])
    write_video(tmp_path / "dot.mkv", affine_video(8, 2, 2, dx=1.0)[0])
    write_video(tmp_path / "good.mkv", affine_video(8, 32, 48, dx=1.0)[0])
    ds = PretrainDataset(config(tmp_path, ["line.mkv 0", "dot.mkv 0", "good.mkv 1"]))
    items = [ds[i] for i in range(len(ds))]
    assert [it["index"] for it in items] == [2, 2, 2]
    assert ds.failures == {str(tmp_path / "line.mkv"): "unreadable", str(tmp_path / "dot.mkv"): "unreadable"}
    assert ds.failure_counts() == {"unreadable": 2}
    assert all(it["video"].float().std(dim=(-2, -1)).min() > 0 for it in items)  # the clips have content


def test_ffmpeg_out_of_memory_is_no_failure_of_the_video(videos, monkeypatch):
    """FFmpeg's refused allocation (ENOMEM, PyAV's av.error.MemoryError) as it opened or decoded a sound video was the
    video's 'unreadable' or 'decode error': skipped for good (carried over a resume), counted against
    data.max_failure_fraction. It is the machine's: an OutOfMemory (a data stop of a run), no VideoError, no failure
    recorded, and the video reads once memory is back."""
    memory_back = False
    out_of_memory_opening(monkeypatch, lambda path: not memory_back)
    ds = PretrainDataset(config(videos, ["good.mp4 0", "coord.mkv 1"]))
    with pytest.raises(OutOfMemory, match=r"good\.mp4: out of memory while reading it \(.*Cannot allocate memory.*"
                                          r"the video is not at fault") as raised:
        ds[0]
    assert not isinstance(raised.value, VideoError)
    assert ds.failures == {} and ds.failure_counts() == {}
    memory_back = True
    assert ds[0]["index"] == 0


@pytest.mark.parametrize("workers", [0, 1])
def test_ffmpeg_out_of_memory_stops_a_test_pass_and_fails_no_row(videos, monkeypatch, workers):
    """A test pass (fine-tuning's tests, mme embed, the probe's features, the demo) recorded FFmpeg out of memory on
    a sound video as that video's failed row, left out of the predictions; it is the machine's: the pass stops, in
    one line with what to lower, as a loader worker's failed allocation (in this process or a worker)."""
    from mme.eval.testing import iter_test_batches

    out_of_memory_opening(monkeypatch, lambda path: path.endswith("good.mp4"))
    data = ClassificationDataset(config(videos, ["coord.mkv 0", "good.mp4 1"]), mode="test")
    with pytest.raises(OutOfMemory) as info:
        list(iter_test_batches(data, batch_size=2, num_workers=workers, progress=False))
    assert str(info.value) == (f"{videos / 'good.mp4'}: out of memory while reading it ([Errno 12] Cannot allocate "
                               "memory): the machine's memory ran short, the video is not at fault; lower "
                               "data.num_workers or train.batch_size, or the clips' size (data.img_size with "
                               "model.img_size, data.num_frames with model.num_frames)")


def test_items_are_deterministic_per_epoch(videos):
    ds = PretrainDataset(config(videos, ["coord.mkv"] * 8), seed=1)
    first = [ds[i]["video"] for i in range(8)]
    assert all(torch.equal(a, ds[i]["video"]) for i, a in enumerate(first))
    assert all(torch.equal(a, ds[0, i]["video"]) for i, a in enumerate(first))  # an index alone is epoch 0
    assert not all(torch.equal(a, ds[1, i]["video"]) for i, a in enumerate(first))


def test_an_items_first_try_makes_no_generator_to_find_its_own_video(videos, monkeypatch):
    """Each item's first try made a generator only to find the item's own video, besides the one its clip is
    drawn from: one generator an item now, and a finished step's items that read their own video make none."""
    from mme.data import dataset

    ds = PretrainDataset(config(videos, ["coord.mkv"] * 2), seed=1)
    real, made = np.random.default_rng, []
    monkeypatch.setattr(dataset.np.random, "default_rng", lambda seed: made.append(seed) or real(seed))
    item = ds[1, 0]
    assert made == [[1, 1, 0, 0]]
    ds.note_trained([(1, 0)], torch.tensor([item["index"]]))
    assert made == [[1, 1, 0, 0]]


def test_bad_inputs_are_skipped_counted_and_bounded(videos):
    lines = ["coord.mkv 0", "missing.mp4 1", "empty.mp4 0", "truncated.mp4 1", "text.mp4 0", "good.mp4 one",
             "good.mp4 1", "coord.mkv 1"]
    ds = PretrainDataset(config(videos, lines))
    items = [ds[i] for i in range(len(ds))]
    assert {it["index"] for it in items} <= {0, 5, 6}  # the good entries (the bad-label line is not an entry)
    assert ds.failures == {
        f"{videos / 'list.txt'}:6": "bad label 'one' (expected a class id >= 0 at the end of the line)",
        str(videos / "missing.mp4"): "missing", str(videos / "empty.mp4"): "empty",
        str(videos / "truncated.mp4"): "unreadable", str(videos / "text.mp4"): "unreadable"}
    assert ds.failure_counts() == {"missing": 1, "empty": 1, "unreadable": 2, "bad list line": 1}
    # Replacements do not depend on the order in which bad files were found (e.g. by different workers).
    backwards = PretrainDataset(config(videos, lines))
    assert [backwards[i]["index"] for i in reversed(range(len(ds)))][::-1] == [it["index"] for it in items]
    with pytest.raises(DataError, match="no readable video for item 0"):
        PretrainDataset(config(videos, ["missing.mp4", "empty.mp4"]))[0]
    strict = PretrainDataset(config(videos, lines, max_failure_fraction=0.2))  # 1 bad line of 8 is fine
    strict[0]
    with pytest.raises(DataError, match=r"2 of 8 videos in .*list.txt failed, more than "
                                        r"data.max_failure_fraction=0.2 .*missing.mp4: missing.*; `mme check "
                                        rf".*list.txt --root {videos}` names every video a run cannot read: leave "
                                        r"them out"):
        strict[1]
    with pytest.raises(DataError, match=rf"2 of 3 videos .*; is data.root \({videos / 'elsewhere'}\) the folder its "
                                        r"relative paths start from\? If so, these videos are gone: leave them out "
                                        rf"of the list \(`mme check .*list.txt --root {videos / 'elsewhere'}` names "
                                        r"each, as missing, in its report; a list of `mme lists` is built again "
                                        r"without them by `mme lists KIND SOURCE --root "
                                        rf"{videos / 'elsewhere'} --skip-missing`\), or raise "
                                        r"data.max_failure_fraction$"):  # every video missing
        PretrainDataset(config(videos, ["good.mp4", "coord.mkv", "a.mp4"], root=str(videos / "elsewhere"),
                               max_failure_fraction=0.5))[0]
    with pytest.raises(DataError, match=r"; are the folders of the listed absolute paths here \(a volume not "
                                        r"mounted\)\? If so, these videos are gone: leave them out of the list "
                                        rf"\(`mme check .*list.txt --root {videos}` names each, as missing, in its "
                                        r"report\), or raise data.max_failure_fraction$"):  # (not mme lists')
        PretrainDataset(config(videos, ["/mnt/gone/a.mp4", "/mnt/gone/b.mp4", "good.mp4"], max_failure_fraction=0.5))[0]


def test_a_windows_lists_missing_videos_are_advised_to_be_written_with_slashes(videos, tmp_path):
    """A list written on Windows (``sub\\good.mp4``): each video's warning said that with '/' for its '\\' it exists,
    but the error that stops the run asked whether data.root was the folder its relative paths start from, which it
    is. Where the first missing videos tell why they look missing, the error says that instead."""
    (tmp_path / "sub").mkdir()
    for name in ("good.mp4", "coord.mkv"):
        (tmp_path / "sub" / name).write_bytes((videos / name).read_bytes())
    lines = ["sub\\good.mp4", "sub\\coord.mkv", "sub/good.mp4"]
    with pytest.raises(DataError) as e:
        PretrainDataset(config(tmp_path, lines, root=str(tmp_path), max_failure_fraction=0.5))[0]
    assert str(e.value).endswith(f"; {tmp_path}/sub\\good.mp4: with '/' for its '\\' it exists: write list paths "
                                 "with '/'")
    with pytest.raises(DataError, match=r"; is data.root \(.*\) the folder its relative paths start from\? If so, "
                                        r"these videos are gone: .*$"):
        PretrainDataset(config(tmp_path, lines, root=str(tmp_path / "sub"), max_failure_fraction=0.5))[0]

def test_a_rank_out_of_replacements_says_the_fraction_that_failed(videos, monkeypatch):
    """Under torchrun the fraction is checked where the ranks join their failures; a rank whose item found no
    readable video before that said only 'no readable video ... after 10 tries' (one process: the fraction)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DataError, match=r"2 of 2 videos in .*list.txt failed, more than data.max_failure_fraction"):
        PretrainDataset(config(videos, ["missing.mp4", "empty.mp4"], max_failure_fraction=0.5))[0]


def test_the_failure_fraction_of_joined_failures_names_examples_of_those(tmp_path):
    """Under torchrun the ranks join their failure codes and check the fraction on them; the message's examples came
    from the rank's own table, which may hold failures its workers found since the join: a video named that the
    count left out, and another example on each rank. Counts and examples are now of the joined codes alone."""
    from mme.data.dataset import REASONS

    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4\n" for i in range(10)))
    cfg = from_dict(DataConfig, {"list_file": str(tmp_path / "list.txt"), "root": str(tmp_path),
                                 "max_failure_fraction": 0.1})
    joined = torch.zeros(10, dtype=torch.int8)
    joined[[5, 6]] = REASONS.index("unreadable")
    said = []
    for found_since in (0, 8):  # two ranks, whose workers each found another failure since the join
        rank = PretrainDataset(cfg)
        rank.failure_codes[found_since] = REASONS.index("empty")
        with pytest.raises(DataError) as failed:
            rank.join_failures(joined)
        said.append(str(failed.value))
    assert said[0] == said[1]
    assert said[0].startswith(f"2 of 10 videos in {tmp_path / 'list.txt'} failed, more than "
                              f"data.max_failure_fraction=0.1 ({{'unreadable': 2}}); e.g. {tmp_path / 'v5.mp4'}: "
                              f"unreadable; {tmp_path / 'v6.mp4'}: unreadable; `mme check "), said[0]


def test_failures_a_resumed_run_carried_are_said_as_recorded_before_its_resume(tmp_path):
    """A resumed run counts the failures its checkpoint recorded without opening their files again: a video
    repaired since stopped the resume with its failure called 'unreadable' and `mme check` advised, which found
    nothing wrong. The message says where they come from and what goes on; a failure of the run's own beside them
    keeps the advice of any failure, which a run without carried failures gives unchanged."""
    from mme.data.dataset import REASONS

    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4\n" for i in range(10)))
    cfg = from_dict(DataConfig, {"list_file": str(tmp_path / "list.txt"), "root": str(tmp_path),
                                 "max_failure_fraction": 0.1})
    recorded = torch.zeros(10, dtype=torch.int8)
    recorded[[5, 6]] = REASONS.index("unreadable")
    counts = (f"2 of 10 videos in {tmp_path / 'list.txt'} failed, more than data.max_failure_fraction=0.1 "
              f"({{'unreadable': 2}}); e.g. {tmp_path / 'v5.mp4'}: unreadable; {tmp_path / 'v6.mp4'}: unreadable; ")
    with pytest.raises(DataError) as failed:
        PretrainDataset(cfg).carry_failures(recorded)
    assert str(failed.value) == counts + (
        "the run recorded them as failed before it resumed (up to its checkpoint), and a resumed run counts them "
        "without opening their files again: raise data.max_failure_fraction to go on without them, or, where they "
        "were repaired since, start the run afresh (another train.out_dir; train.init=CHECKPOINT starts it from the "
        "weights of the checkpoint resumed) to train on them")
    check = (f"`mme check {tmp_path / 'list.txt'} --root {tmp_path}` names every video a run cannot read: leave them "
             "out of the list, or raise data.max_failure_fraction")
    resumed, fresh = PretrainDataset(cfg), PretrainDataset(cfg)
    resumed.carry_failures(torch.where(torch.arange(10) == 5, recorded, 0))  # (1 of 10: within the fraction)
    said = []
    for data in (resumed, fresh):
        with pytest.raises(DataError) as failed:
            data.join_failures(recorded)  # v6 failed in this run
        said.append(str(failed.value))
    assert said == [counts + "1 of them, recorded as failed by the run before it resumed (up to its checkpoint), is "
                             "counted without opening its file again; " + check, counts + check]


def test_the_advice_beside_carried_failures_is_of_the_runs_own_failures(tmp_path):
    """Carried 'missing' videos (restored since: their files are there) beside one unreadable in this run: the advice
    was of every failure, the carried ones most, and asked whether data.root was the folder of the relative paths."""
    from mme.data.dataset import REASONS

    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4\n" for i in range(10)))
    cfg = from_dict(DataConfig, {"list_file": str(tmp_path / "list.txt"), "root": str(tmp_path),
                                 "max_failure_fraction": 0.3})
    data = PretrainDataset(cfg)
    carried = torch.zeros(10, dtype=torch.int8)
    carried[[0, 1, 2]] = REASONS.index("missing")
    data.carry_failures(carried)
    with pytest.raises(DataError) as failed:
        data.join_failures(torch.where(torch.arange(10) == 5, REASONS.index("unreadable"), carried).to(torch.int8))
    assert str(failed.value).endswith(
        f"{tmp_path / 'v5.mp4'}: unreadable; 3 of them, recorded as failed by the run before it resumed (up to its "
        f"checkpoint), are counted without opening their files again; `mme check {tmp_path / 'list.txt'} --root "
        f"{tmp_path}` names every video a run cannot read: leave them out of the list, or raise "
        "data.max_failure_fraction"), str(failed.value)


@pytest.mark.parametrize("context,workers", [("fork", 2), ("spawn", 1)])  # spawn: a fresh interpreter per worker
def test_dataloader_workers_and_distributed_sampler(videos, context, workers):
    ds = PretrainDataset(config(videos, ["coord.mkv", "missing.mp4", "good.mp4", "coord.mkv", "good.mp4",
                                         "coord.mkv"]), target_fn=record_target_fn, track_length=2)
    seen, asked = [], []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        asked += list(sampler)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=collate,
                            multiprocessing_context=context, persistent_workers=True)
        for batch in loader:
            assert batch["video"].shape[1:] == (3, 4, 24, 24) and batch["motion"]["first"].shape[1:] == (1, 1)
            seen += batch["index"].tolist()
        if context == "spawn":
            break  # one rank proves it; each spawned worker re-imports torch (seconds)
    assert len(seen) == len(asked) == (6 if context == "fork" else 3) and 1 not in seen
    # A failure recorded in a worker process is visible here.
    assert ds.failures == ({str(videos / "missing.mp4"): "missing"} if 1 in asked else {})


def test_a_gpu_backend_that_cannot_open_a_device_is_refused_before_any_work(videos):
    try:
        require_backend("pyav-cuda")
        pytest.skip("FFmpeg can decode on a GPU here")
    except ConfigError:
        pass
    with pytest.raises(ConfigError, match=r"data.backend=pyav-cuda: FFmpeg cannot decode on CUDA device 0 \("):
        PretrainDataset(config(videos, ["good.mp4"], backend="pyav-cuda"))


def test_workers_start_by_spawn_where_this_process_decodes_on_a_gpu(videos, monkeypatch):
    """A CUDA context does not survive a fork: once this process has opened a device to decode on
    (``data.backend=pyav-cuda``), ``start_workers`` starts the loader's workers by spawn, and they deliver the
    items."""
    ds = PretrainDataset(config(videos, ["good.mp4", "coord.mkv"]), track_length=2)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    monkeypatch.setitem(pyav_reader._CUDA_DECODERS, 0, None)  # as cuda_decoder(0) leaves it
    batch = next(start_workers(loader))
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    assert batch["video"].shape == (2, 3, 4, 24, 24) and sorted(batch["index"].tolist()) == [0, 1]


class _ReadOnlyHere(torch.utils.data.Dataset):
    """Item: the index folders the worker process that reads it takes as read-only."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return sorted(pyav_reader._read_only)


def test_spawned_workers_take_the_index_folders_this_process_reads_only_as_read_only(tmp_path, monkeypatch,
                                                                                     read_only):
    """Loader workers started by spawn (``data.backend=pyav-cuda``) inherit nothing of this process: a read-only
    index folder was not known so there, and each tried to save the indices it made and said `cannot keep frame
    indices in DIR (Read-only file system)`. They take those of this process too; forked ones inherit them."""
    read_only(tmp_path)
    pyav_reader.take_index_dir(tmp_path, "data.index_dir")
    monkeypatch.setitem(pyav_reader._CUDA_DECODERS, 0, None)  # (decodes on a GPU: the workers spawned)
    loader = DataLoader(_ReadOnlyHere(), batch_size=None, num_workers=1)
    assert list(start_workers(loader)) == [[os.path.realpath(tmp_path)]]
    assert loader.multiprocessing_context.get_start_method() == "spawn"


class _OpenLocks(torch.utils.data.Dataset):
    """Item: the ``.lock`` files the worker process that reads it has open."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        fds = [os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd")]
        return [target for target in map(_link_target, fds) if target.endswith("/.lock")]


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the listing's own descriptor, closed by now
        return ""


def test_a_forked_loader_worker_holds_no_folder_lock_of_its_parent(tmp_path):
    """A worker shared the parent's open ``.lock``, and with it the ``flock``: workers orphaned by a kill -9 of their
    run kept its folder locked for a while, and ``--resume auto`` at once was refused as "in use by another job"
    (``mme embed``'s workers start alike)."""
    from mme.utils import held_folders, lock_folder, unlock_folder

    assert lock_folder(tmp_path, "train.out_dir")
    try:
        loader = DataLoader(_OpenLocks(), batch_size=None, num_workers=1, multiprocessing_context="fork")
        assert list(start_workers(loader)) == [[]]
        assert tmp_path.resolve() in held_folders()  # the parent keeps its lock
        assert os.path.realpath(tmp_path / ".lock") in _OpenLocks()[0]
    finally:
        unlock_folder(tmp_path)


def _running_the_script_again(worker_id: int) -> None:
    raise SystemExit(SCRIPT_RERUN_EXIT)  # (as exit_if_script_rerun ends a spawned worker that runs its parent's script)


@pytest.fixture
def short_poll(monkeypatch):
    """Torch's loader looks for a dead worker every 5 s while it waits for a batch (``_try_get_data``'s timeout,
    ``MP_STATUS_CHECK_INTERVAL``): every 0.1 s, so that a test of a worker that ended takes no 5 s."""
    monkeypatch.setattr(_MultiProcessingDataLoaderIter._try_get_data, "__defaults__", (0.1,))


def test_a_loader_worker_that_ran_the_calling_script_again_says_to_guard_it(short_poll):
    """A script calling mme at its top level, its loader workers spawned (macOS's and Windows' default, pyav-cuda):
    each worker ran the script again and ended (exit status 86), said as a dead worker, `the same command with
    --resume auto continues`, which failed the same way every time. It is said as the other jobs' workers say it:
    guard the script with ``if __name__ == "__main__":``."""
    loader = DataLoader(range(4), batch_size=2, num_workers=1, worker_init_fn=_running_the_script_again,
                        multiprocessing_context="fork")  # (fork: the exit status alone is what is said)
    with pytest.raises(UnguardedScript) as info:
        list(start_workers(loader))
    assert str(info.value) == ('worker processes ran the calling script again (spawned workers import it): call mme '
                               'in a script under `if __name__ == "__main__":`, or, to load data in this process: '
                               'data.num_workers=0')


@pytest.mark.parametrize(("main", "flags", "why", "printed"), [
    ("gone.py", {}, r"the calling script \S+/gone\.py is not there for spawned workers to import again: set "
     r"data\.num_workers=0", "No such file or directory"),
    ("mme_no_such_module", {"data.num_workers": "--workers"}, r"see the error printed above, or set --workers=0",
     "No module named mme_no_such_module"),
])
def test_a_spawned_loader_worker_that_could_not_start_says_so_and_why(main, flags, why, printed, tmp_path,
                                                                      monkeypatch, capfd, short_poll):
    """A loader worker started by spawn or forkserver imports the calling script (or module) again before it
    starts; one whose import failed there (a script read from stdin or removed since, a module or library the
    worker lacks) was said as a worker that died, `data loader worker 0 (pid N) died (exit status 1)`, a resume
    advised that fails alike. It could not start: said so, with the reason where this process can tell, else
    pointing at the traceback the worker printed, and the way without workers as the command takes it (``mme
    pretrain``'s key, ``--workers`` in a command that takes that flag: :func:`mme.utils.workers_option`)."""
    import importlib.machinery
    import types

    from mme.errors import MMEError, ProcessLost
    from mme.utils import keys_as_flags

    gone = types.ModuleType("__main__")  # (a main that fails the worker's import before torch's, as a gone one does)
    if main.endswith(".py"):
        gone.__file__, gone.__spec__ = str(tmp_path / main), None
    else:
        gone.__spec__ = importlib.machinery.ModuleSpec(main, None)  # (``python -m`` of a module the worker lacks)
    monkeypatch.setitem(sys.modules, "__main__", gone)
    with keys_as_flags(flags, overrides=not flags), pytest.raises(MMEError) as info:
        list(start_workers(DataLoader(range(1), batch_size=None, num_workers=1, multiprocessing_context="spawn")))
    assert not isinstance(info.value, ProcessLost), info.value
    assert re.fullmatch(rf"data loader worker 0 \(pid \d+\) could not start \(exit status 1\): {why}",
                        str(info.value)), info.value
    assert printed in capfd.readouterr().err


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_loader_worker_that_exits_after_its_init_ran_died(context, short_poll):
    """A worker whose exit status is 0 or more is one that could not start only where it ended before its init ran
    (its PID not in ``started``); one that exits 1 reading an item, its init done, died, as a killed one does."""
    from mme.errors import ProcessLost

    loader = DataLoader(EndsItsWorker(), batch_size=None, num_workers=1, multiprocessing_context=context)
    with pytest.raises(ProcessLost) as info:
        list(start_workers(loader))
    assert re.fullmatch(r"data loader worker 0 \(pid \d+\) died \(exit status 1\)", str(info.value)), info.value


def _own_init(worker_id: int) -> None:
    """A loader's own ``worker_init_fn``."""


def test_a_loader_started_again_and_again_holds_one_wrapper_of_its_init_and_no_more_shared_memory():
    """``start_workers`` wraps the loader's ``worker_init_fn`` in its own (``_worker_start``, holding tensors in
    shared memory); on the same loader again (each epoch, each periodic evaluation) it wrapped its earlier wrapper:
    each worker ran that init once per earlier call, and this process held one more shared-memory descriptor per
    call (300 calls: 307 open). It wraps the loader's own init once."""
    loader = DataLoader(range(2), batch_size=None, num_workers=1, multiprocessing_context="fork",
                        worker_init_fn=_own_init, persistent_workers=True)
    open_fds = []
    for _ in range(5):
        assert list(start_workers(loader)) == [0, 1]
        open_fds.append(len(os.listdir("/proc/self/fd")))
    assert loader.worker_init_fn.keywords["then"] is _own_init
    assert open_fds[1:] == open_fds[1:2] * 4, open_fds  # (the persistent workers' iterator keeps the first's)


def test_start_workers_leaves_the_objects_its_caller_froze_frozen(monkeypatch):
    """``start_workers`` froze this process's objects while its workers forked and unfroze them after, releasing
    those a caller (a server, a notebook) had frozen itself before. It freezes only where nothing is frozen and the
    workers start by fork, and unfreezes only what it froze."""
    froze, freeze = [], gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: froze.append(gc.get_freeze_count()) or freeze())
    numbers = TensorDataset(torch.arange(4))
    forking = DataLoader(numbers, batch_size=2, num_workers=1, multiprocessing_context="fork")
    assert gc.get_freeze_count() == 0
    assert [b.tolist() for (b,) in start_workers(forking)] == [[0, 1], [2, 3]]
    assert froze == [0] and gc.get_freeze_count() == 0  # frozen while the worker forked, unfrozen after
    froze.clear()
    assert [b.tolist() for (b,) in start_workers(DataLoader(numbers, batch_size=2))] == [[0, 1], [2, 3]]
    assert froze == []  # no worker: nothing to freeze for
    callers = [[i] for i in range(1000)]
    freeze()  # as a caller does before forking processes of its own
    try:
        frozen = gc.get_freeze_count()
        assert frozen >= len(callers)
        assert [b.tolist() for (b,) in start_workers(forking)] == [[0, 1], [2, 3]]
        # (the caller's objects, alive, still frozen: the count falls only by frozen objects freed meanwhile)
        assert froze == [] and gc.get_freeze_count() >= len(callers) and callers
    finally:
        gc.unfreeze()


def test_an_index_folder_serves_loader_workers_and_changes_no_item(videos, tmp_path):
    """``data.index_dir``: loader workers keep each readable video's index there (one file per video) and the
    items are bitwise those made without it; a folder that cannot be made is refused before any work."""
    lines = ["coord.mkv", "good.mp4", "coord.mkv", "good.mp4", "text.mp4"]
    plain = PretrainDataset(config(videos, lines), track_length=2)
    kept = PretrainDataset(config(videos, lines, index_dir=str(tmp_path / "index")), track_length=2)
    loader = DataLoader(kept, batch_size=1, num_workers=2, collate_fn=collate, multiprocessing_context="fork")
    for _ in range(2):  # the second time, the workers read the indices the first ones kept
        for k, batch in zip(range(len(lines)), start_workers(loader)):
            want = plain[(0, k)]
            assert batch["index"].item() == want["index"] and torch.equal(batch["video"][0], want["video"]), k
    assert len(list((tmp_path / "index").rglob("*.json"))) == 2  # coord.mkv and good.mp4; text.mp4 is no video
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="data.index_dir"):
        PretrainDataset(config(videos, lines, index_dir=str(tmp_path / "file")), track_length=2)


def test_an_index_folder_that_holds_none_of_the_lists_videos_is_said(videos, tmp_path, caplog, read_only):
    """An index folder filled by `mme check --index-dir` keeps each video's index by its absolute path, size, times
    and inode: the videos staged elsewhere (a copy keeping size and mtime, as cp -a, rsync -a), or reached through
    another spelling of the root, miss every one, and the run indexed each again (seconds a long video), unsaid.
    Now the dataset says it, naming the folder and the `mme check` to run on the paths it reads; nothing where the
    list is read as checked. Where the folder is read-only here, which `mme check` refuses, it says to run that
    check where the folder can be written (it said the check fills it)."""
    checked, staged = tmp_path / "checked", tmp_path / "staged"
    checked.mkdir(), staged.mkdir()
    shutil.copy2(videos / "good.mp4", checked / "a.mp4")
    shutil.copy2(checked / "a.mp4", staged / "a.mp4")  # (another inode and ctime; its size and mtime kept)
    (tmp_path / "alias").symlink_to(checked)
    (tmp_path / "list.txt").write_text("a.mp4\n")
    index = tmp_path / "index"
    assert cli_main(["check", str(tmp_path / "list.txt"), "--root", str(checked), "--out", str(tmp_path / "c.json"),
                     "--index-dir", str(index)]) == 0
    for root, said in [(checked, False), (staged, True), (tmp_path / "alias", True)]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.dataset"):
            PretrainDataset(from_dict(DataConfig, dict(list_file=str(tmp_path / "list.txt"), root=str(root),
                                                       index_dir=str(index))), track_length=2)
        warned = [r.getMessage() for r in caplog.records if str(index) in r.getMessage()]
        assert len(warned) == said, (root, warned)
        if said:
            assert warned[0].startswith(f"data.index_dir={index} holds the frame index of none of the 1 video of "
                                        f"{tmp_path / 'list.txt'} --root {root} looked up there")
            assert "copies of the videos, cp -a, rsync -a," in warned[0] and warned[0].endswith(
                f"`mme check {tmp_path / 'list.txt'} --root {root} --index-dir {index}`, run on the paths as this "
                "run reads them, fills it")
    read_only(index)
    _warn_index_missed.cache_clear()  # (said once per process: a process of its own)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.dataset"):
        PretrainDataset(from_dict(DataConfig, dict(list_file=str(tmp_path / "list.txt"), root=str(staged),
                                                   index_dir=str(index))), track_length=2)
    assert [r.getMessage() for r in caplog.records if "holds the frame index of none" in r.getMessage()][0].endswith(
        f"`mme check {tmp_path / 'list.txt'} --root {staged} --index-dir {index}` where the folder can be written "
        "(not here), run on the paths as this run reads them, fills it")
    other = tmp_path / "other_versions"  # an earlier mme's index folder and a stray file: none of this version's
    (other / "v1" / "ab").mkdir(parents=True)
    (other / "v1" / "ab" / "cd.json").write_text("{}")
    (other / "README").write_text("indices")
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.dataset"):
        PretrainDataset(from_dict(DataConfig, dict(list_file=str(tmp_path / "list.txt"), root=str(staged),
                                                   index_dir=str(other))), track_length=2)
    assert not [r for r in caplog.records if "holds the frame index of none" in r.getMessage()]


def test_an_index_folder_is_judged_by_its_videos_where_a_check_filled_it_once_a_node(videos, tmp_path, caplog,
                                                                                     monkeypatch):
    """A folder filled by a run's own reads (a resumed run's, or a second run's, that had not read the videos looked
    up) was said to hold none of the list's videos, blaming the folder; and every rank said it, 8 lines a node. Now
    a run judges a folder `mme check` filled (its mark in ``v<INDEX_VERSION>/``) and holding indices (a check that
    indexed nothing, its videos missing, left the mark alone, which was judged), on the first rank of each node."""
    import mme.data.dataset as dataset

    monkeypatch.setattr(dataset, "INDEX_SAMPLE", 2)  # (of 3 videos, the first and last are looked up)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mp4").symlink_to(videos / "good.mp4")  # (three files to the index: three paths)
    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\nc.mp4\n")
    index = tmp_path / "index"
    data = dict(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=4, stride=2, img_size=24,
                index_dir=str(index))

    def said(**changed: str) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.dataset"):
            PretrainDataset(from_dict(DataConfig, {**data, **changed}), track_length=2)
        return [r.getMessage() for r in caplog.records if "holds the frame index of none" in r.getMessage()]

    PretrainDataset(from_dict(DataConfig, data), track_length=2)[(0, 1)]  # an earlier run's reads: b.mp4 alone
    assert pyav_reader.holds_indices(index) and not pyav_reader.filled_by_check(index)
    assert said() == []
    (tmp_path / "other.txt").write_text("good.mp4\n")  # a check of another list fills the folder
    assert cli_main(["check", str(tmp_path / "other.txt"), "--root", str(videos), "--out", str(tmp_path / "c.json"),
                     "--index-dir", str(index)]) == 0
    assert (index / f"v{pyav_reader.INDEX_VERSION}" / pyav_reader.CHECKED_MARK).is_file()
    # a check that indexed nothing (its videos missing: another --root) leaves the mark alone, which is no index
    # (`mme embed` says the folder empty) and is not judged
    (tmp_path / "elsewhere").mkdir()
    assert cli_main(["check", str(tmp_path / "list.txt"), "--root", str(tmp_path / "elsewhere"), "--out",
                     str(tmp_path / "m.json"), "--index-dir", str(tmp_path / "marked")]) == 1
    assert pyav_reader.filled_by_check(tmp_path / "marked") and not pyav_reader.holds_indices(tmp_path / "marked")
    assert said(index_dir=str(tmp_path / "marked")) == []
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert said() == []
    monkeypatch.setenv("LOCAL_RANK", "0")
    warned = said()
    assert len(warned) == 1 and warned[0].startswith(
        f"data.index_dir={index} holds the frame index of none of the 2 videos of {tmp_path / 'list.txt'} --root "
        f"{tmp_path} looked up there, so each is indexed at its first read (seconds for a long video): they were not "
        "indexed there (its `mme check` was of another list)"), warned



def test_a_check_into_an_index_folder_that_cannot_be_written_warns_once(videos, tmp_path, caplog, capsys):
    """`mme check --index-dir DIR`, where ``DIR/v<INDEX_VERSION>`` cannot be made (a file), warned twice: on leaving
    its mark ("File exists") and on its read ("Not a directory"). Its read alone says it, and the check's last line
    that the folder is not filled."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / f"v{pyav_reader.INDEX_VERSION}").write_text("")
    (tmp_path / "list.txt").write_text("good.mp4\n")
    with caplog.at_level("WARNING", logger="mme.data.pyav_reader"):
        assert cli_main(["check", str(tmp_path / "list.txt"), "--root", str(videos), "--out",
                         str(tmp_path / "c.json"), "--index-dir", str(blocked), "--workers", "1"]) == 1
    assert [r.getMessage() for r in caplog.records if "frame indices" in r.getMessage()] == [
        f"cannot keep frame indices in {blocked} (Not a directory); each process indexes for itself"]
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"mme check: error: --index-dir {blocked}: not filled: the frame indices of 1 of the 1 videos a run reads "
        "could not be kept there (Not a directory)")

def test_a_read_only_index_folder_is_read_said_once_a_node_and_left_as_it_was(videos, tmp_path, caplog, monkeypatch,
                                                                             read_only):
    """An index folder `mme check` filled, then mounted read-only (or made so by its mode), was refused by every run
    that only reads it: `data.index_dir DIR: cannot be written (Read-only file system)`. Now it is read: the index
    it holds is used (the video not indexed again), one it lacks made in memory and not kept there (no write tried,
    nor a warning per process); said once per process and folder, by each node's first rank. A missing folder that
    cannot be made there is refused as before."""
    (tmp_path / "checked.txt").write_text("good.mp4\n")
    index = tmp_path / "index"
    assert cli_main(["check", str(tmp_path / "checked.txt"), "--root", str(videos), "--out",
                     str(tmp_path / "c.json"), "--index-dir", str(index)]) == 0
    read_only(index)
    held = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    (tmp_path / "list.txt").write_text("good.mp4\ncoord.mkv\n")  # (coord.mkv: not indexed there)
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(videos), num_frames=4, stride=2, img_size=24,
                     index_dir=str(index))
    made, make = [], pyav_reader._make_index
    monkeypatch.setattr(pyav_reader, "_make_index", lambda path: made.append(os.path.basename(path)) or make(path))
    said = f"data.index_dir={index} cannot be written (Read-only file system): the frame indices it holds are read, " \
           "and those it lacks are made in memory by each process, not kept there"
    for rank, warned in (("0", [said]), ("0", []), ("1", [])):  # (a node's first rank, twice; its second)
        if rank == "1":
            monkeypatch.setattr(pyav_reader, "_read_only", set())  # (a process of its own)
        monkeypatch.setenv("LOCAL_RANK", rank)
        pyav_reader._pyav_index.cache_clear()  # (the check's, kept by this process)
        caplog.clear()
        with caplog.at_level("WARNING"):
            dataset = PretrainDataset(cfg, track_length=2)
            for i in range(2):
                assert dataset[(0, i)]["video"].shape[1] == 4
        assert [r.getMessage() for r in caplog.records if "cannot" in r.getMessage()] == warned, rank
    assert made == ["coord.mkv"] * 3  # good.mp4's index read from the folder each time
    assert {p: p.read_bytes() for p in index.rglob("*") if p.is_file()} == held
    with pytest.raises(ConfigError, match=rf"^data.index_dir {index / 'new'}: cannot be written \(Read-only file "
                                          r"system\)$"):
        PretrainDataset(dataclasses.replace(cfg, index_dir=str(index / "new")), track_length=2)


def test_an_index_folder_whose_version_folder_is_read_only_is_read_as_read_only(videos, tmp_path, caplog,
                                                                               read_only):
    """An index folder that takes files but whose v<INDEX_VERSION>/, which holds the indices, takes none (made
    read-only alone, or another user's) was taken as writable: each process's first save there failed and said
    `cannot keep frame indices in DIR`. It is now read as a read-only folder is, said once, naming the version
    folder, and nothing is written there."""
    (tmp_path / "checked.txt").write_text("good.mp4\n")
    index = tmp_path / "index"
    assert cli_main(["check", str(tmp_path / "checked.txt"), "--root", str(videos), "--out",
                     str(tmp_path / "c.json"), "--index-dir", str(index)]) == 0
    version = index / f"v{pyav_reader.INDEX_VERSION}"
    read_only(version)
    held = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    (tmp_path / "list.txt").write_text("good.mp4\ncoord.mkv\n")  # (coord.mkv: not indexed there)
    pyav_reader._pyav_index.cache_clear()  # (the check's, kept by this process)
    caplog.clear()
    with caplog.at_level("WARNING"):
        dataset = PretrainDataset(DataConfig(list_file=str(tmp_path / "list.txt"), root=str(videos), num_frames=4,
                                             stride=2, img_size=24, index_dir=str(index)), track_length=2)
        for i in range(2):
            assert dataset[(0, i)]["video"].shape[1] == 4
    assert [r.getMessage() for r in caplog.records if "cannot" in r.getMessage()] == [
        f"data.index_dir={index} cannot be written ({version}: Read-only file system): the frame indices it holds "
        "are read, and those it lacks are made in memory by each process, not kept there"]
    assert {p: p.read_bytes() for p in index.rglob("*") if p.is_file()} == held


def test_an_item_does_not_depend_on_what_the_process_read_before(tmp_path, monkeypatch):
    """Files with fewer frames than packets: an MPEG-TS capture that starts inside a GOP (90 packets, 60 frames) and
    an HEVC file joined at an open GOP's CRA, whose leading frames FFmpeg drops (40, 37). A process that had not
    read them drew from the packets' count, and a read that found the true count within range returned normally: the
    same item (seed, epoch, index) and the same test views differed between a fresh loader worker and one that had
    read the file, and with an index folder (`mme embed` gave other features with `--index-dir`). Now the count is
    known when the file is indexed, and an index folder holds it. A read that still finds it (a cause the index does
    not foresee: here its checks turned off) says so, and the item is drawn again from it, as a process that knew it
    draws."""
    frames, _ = affine_video(120, 48, 64, dx=0.7, seed=3)
    capture_mid_gop(write_keyint_video(tmp_path / "full.ts", frames, "60"), tmp_path / "capture.ts")
    hevc_restarted(write_open_gop_hevc(tmp_path / "full.mkv", frames[:40]), tmp_path / "joined.mkv", "end_of_sequence")
    (tmp_path / "list.txt").write_text("capture.ts 0\njoined.mkv 1\n")
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=4, stride=2, img_size=32,
                     crop="center", test_clips=2, test_crops=1, num_workers=0)

    def items(cfg: DataConfig, indices=(0, 1)) -> list[torch.Tensor]:
        """The test views and the training items of epochs 0-5 of the videos at ``indices``, each made by a process
        that has not read its file, which must make it as it does once it has."""
        made = []
        for epoch, i in [(epoch, i) for epoch in ("test", *range(6)) for i in indices]:
            data = ClassificationDataset(cfg, mode="test") if epoch == "test" else PretrainDataset(cfg)
            key = i if epoch == "test" else (epoch, i)
            pyav_reader._pyav_index.cache_clear()  # a loader worker that has not read the file
            fresh = data[key]["video"]
            assert torch.equal(fresh, data[key]["video"]), (epoch, i)  # the same item, the process now knowing
            made.append(fresh)
        return made

    plain = items(cfg)
    with open_video(tmp_path / "capture.ts") as reader, open_video(tmp_path / "joined.mkv") as other:
        assert (reader.num_frames, other.num_frames) == (60, 37)
    pyav_reader._pyav_index.cache_clear()
    index_dir = tmp_path / "index"
    for name in ("capture.ts", "joined.mkv"):
        assert check_video(tmp_path / name, index_dir=index_dir)["status"] == "suspicious"  # as `mme check` fills it
    assert sorted(json.loads(p.read_text())["num_frames"] for p in index_dir.rglob("*.json")) == [37, 60]
    with_index = items(dataclasses.replace(cfg, index_dir=str(index_dir)))
    assert all(torch.equal(a, b) for a, b in zip(plain, with_index, strict=True))
    stale = tmp_path / "stale"  # an index that an earlier mme kept: the packets' count, until a read found out
    with monkeypatch.context() as earlier:
        earlier.setattr(pyav_reader, "_why_recount", lambda *args: "")
        with open_video(tmp_path / "joined.mkv", index_dir=stale) as reader:
            assert reader.num_frames == 40
    store = next(stale.rglob("*.json"))
    store.write_text(store.read_text().replace(f'"version": {pyav_reader.INDEX_VERSION}', '"version": 3'))
    pyav_reader._pyav_index.cache_clear()
    with open_video(tmp_path / "joined.mkv", index_dir=stale) as reader:
        assert reader.num_frames == 37  # made again

    monkeypatch.setattr(pyav_reader, "_why_recount", lambda *args: "")  # counted by the reads that find out
    unforeseen = items(cfg, indices=(0,))  # capture.ts: every first read finds its first frames missing
    assert all(torch.equal(a, b) for a, b in zip(plain[::2], unforeseen, strict=True))



def test_an_index_folder_keeps_the_index_of_a_video_whose_path_is_not_utf8(videos, tmp_path):
    """``--index-dir`` over ``root$'\\xe9'/good.mp4`` (a Latin-1 byte, read by Python with a surrogate escape): the
    index's key raised UnicodeEncodeError (mme check, pretrain, embed, probe). The path is keyed as its bytes on disk,
    a UTF-8 one as before (its kept indices stay found)."""
    import hashlib

    import av

    root = tmp_path / os.fsdecode(b"root\xe9")
    root.mkdir()
    video = root / "good.mp4"
    video.write_bytes((videos / "good.mp4").read_bytes())
    assert check_video(video, index_dir=tmp_path / "index")["status"] == "ok"
    assert len(list((tmp_path / "index").rglob("*.json"))) == 1
    key = hashlib.sha1(b"\0".join([b"/data/root\xe9/a.mp4", b"1", b"2", av.__version__.encode()])).hexdigest()
    assert pyav_reader._index_store("i", os.fsdecode(b"/data/root\xe9/a.mp4"), (1, 2)).name == f"{key[2:]}.json"
    utf8 = hashlib.sha1("\0".join(["/data/caf\xe9/a.mp4", "1", "2", av.__version__]).encode()).hexdigest()
    assert pyav_reader._index_store("i", "/data/caf\xe9/a.mp4", (1, 2)).name == f"{utf8[2:]}.json"

# ---- classification ------------------------------------------------------------------------------------------

def test_track_cache_failures_joined_by_a_classification_dataset_are_advised_as_any_failures(videos):
    """Only a pre-training dataset reads a track cache, but the advice for track cache failures lived in the datasets'
    shared failure check, which called PretrainDataset.extract_advice: a classification dataset that took in such
    codes (a failure table joined from elsewhere) ended in an AttributeError. It gives the advice of any dataset."""
    from mme.data.dataset import REASONS

    data = ClassificationDataset(config(videos, ["coord.mkv 3", "coord.mkv 1"], max_failure_fraction=0.0), "train")
    codes = torch.tensor([REASONS.index("track cache"), 0], dtype=torch.int8)
    with pytest.raises(DataError) as stopped:  # before: AttributeError, no attribute 'extract_advice'
        data.join_failures(codes)
    assert str(stopped.value) == (
        f"1 of 2 videos in {videos / 'list.txt'} failed, more than data.max_failure_fraction=0.0 "
        f"({{'track cache': 1}}); e.g. {videos / 'coord.mkv'}: track cache; `mme check {videos / 'list.txt'} --root "
        f"{videos}` names every video a run cannot read: leave them out of the list, or raise "
        "data.max_failure_fraction")


def test_classification_train_and_multi_view_test(videos):
    cfg = config(videos, ["coord.mkv 3", "coord.mkv 1"], crop="random_resized", flip=True, test_clips=2,
                 test_crops=3)
    train = ClassificationDataset(cfg, "train")
    item = train[0]
    assert item["video"].shape == (3, 4, 24, 24) and item["label"] == 3
    test = ClassificationDataset(cfg, "test")
    item = test[1]
    assert item["video"].shape == (6, 3, 4, 24, 24) and item["label"] == 1
    frames = item["video"].permute(0, 2, 3, 4, 1).numpy()  # uint8 (V, T, H, W, 3)
    clips = sample_test_clips(16, 4, 2, 2, 2)
    for v in range(6):
        np.testing.assert_array_equal(frame_index(frames[v]), clips[v // 3].clip)
    with open_video(videos / "coord.mkv") as reader:  # each view is its crop of the whole frames (made as decoded)
        raw, geoms = reader.read(np.arange(16)), view_crops(reader.size, 24, 3)
    expected = [to_clip(apply_geometry(raw[c.clip], g)) for c in clips for g in geoms]
    assert torch.equal(item["video"], torch.stack(expected))
    left_x = frames[:, 0, 12, 2, 0] / 4  # source x near the left edge of each crop
    assert left_x[0] < left_x[1] < left_x[2] and left_x[3] == left_x[0]  # crops go left -> right per clip
    seg = ClassificationDataset(config(videos, ["coord.mkv 0"], sampling="segments", test_clips=1, test_crops=1),
                                "test")[0]["video"]
    seg_frames = seg.permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_array_equal(frame_index(seg_frames[0]), [2, 6, 10, 14])  # segment centres of 16 frames
    with pytest.raises(DataError, match="needs a label"):
        ClassificationDataset(config(videos, ["coord.mkv"]))


def test_repeated_clips_open_a_failed_video_once(videos, caplog):
    """Repeated augmentation's copies keep one failure table: a video that failed is opened, and warned about, once
    (before: once per copy), and each copy still draws its own replacement, as without the shared table."""
    from mme.train.finetune import RepeatedClips

    cfg = config(videos, ["text.mp4 0", "coord.mkv 1", "good.mp4 2"])
    alone = [ClassificationDataset(cfg, "train", seed=3 * 5 + k)[0]["index"] for k in range(3)]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme"):
        item = RepeatedClips(cfg, repeats=3, seed=5)[0]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"skipping {videos / 'text.mp4'}"]
    assert item["index"].tolist() == alone and 0 not in alone



@pytest.mark.parametrize("repeats", [1, 2, 4])
def test_repeated_clips_read_their_list_once_and_share_its_entries(videos, monkeypatch, repeats):
    """Fine-tuning's repeated augmentation read the training list once per copy and held a copy of its entries each
    (111 MiB at repeated_aug=2 for 240k lines, copied again into every loader worker); the copies share one list,
    read once, of slotted entries (no ``__dict__`` each), which pickle as before."""
    import pickle

    import mme.data.dataset as dataset
    from mme.train.finetune import RepeatedClips

    reads, read_list = [], dataset.read_list
    monkeypatch.setattr(dataset, "read_list", lambda *a, **k: reads.append(a[0]) or read_list(*a, **k))
    cfg = config(videos, ["good.mp4 2", "coord.mkv 1"])
    clips = RepeatedClips(cfg, repeats=repeats, seed=5)
    assert reads == [cfg.list_file]
    assert {id(c.entries) for c in clips.copies} == {id(clips.copies[0].entries)}
    assert [c.seed for c in clips.copies] == [5 * repeats + k for k in range(repeats)]
    entry = clips.copies[0].entries[0]
    assert not hasattr(entry, "__dict__") and pickle.loads(pickle.dumps(entry)) == entry == ListEntry("good.mp4", 2)


def test_a_datasets_packed_list_gives_the_lists_entries_items_and_digests(videos):
    """A dataset holds its list packed (:mod:`mme.data.packed`): its entries, by index (from the end too) and in
    order, are those :func:`read_list` reads, their line numbers too, and so is a spawned worker's pickled copy; its
    items are of their videos and labels; its digests, by which a resumed run judges its list and a carried failure
    table, are those of the list of entries it held before (pinned)."""
    import pickle

    lines = ["# a comment", "good.mp4 2", "", "caf\u00e9/\u00fc v.mp4 0", "coord.mkv 1", "./# misc/x.mp4 12",
             "../up.mp4 1"]
    data = ClassificationDataset(config(videos, lines))
    read = read_list(videos / "list.txt")[0]
    held = [(e.path, e.label, e.line_no) for e in data.entries]
    assert held == [("good.mp4", 2, 2), ("caf\u00e9/\u00fc v.mp4", 0, 4), ("coord.mkv", 1, 5),
                    ("./# misc/x.mp4", 12, 6), ("../up.mp4", 1, 7)] == [(e.path, e.label, e.line_no) for e in read]
    assert data.entries == read and [data.entries[i] for i in range(-5, 5)] == read * 2 and len(data.entries) == 5
    assert pickle.loads(pickle.dumps(data.entries)) == read and data.entries != read[:-1]
    assert [data.path(i) for i in range(5)] == [os.path.join(videos, e.path) for e in read]
    assert [(data[i]["index"], data[i]["label"]) for i in (0, 2)] == [(0, 2), (2, 1)]
    with pytest.raises(IndexError, match="^index 5 is out of range for 5 items$"):
        data.entries[5]
    assert (data.list_digest, data.content_digest[0]) == ("c15af9d91ac41f82", "7ab77d135c37ce0d")
    unlabelled = PretrainDataset(config(videos, ["good.mp4", "/abs/v.mp4", "caf\u00e9/\u00fc v.mp4"]))
    assert [e.label for e in unlabelled.entries] == [None] * 3
    assert (unlabelled.list_digest, unlabelled.content_digest[0]) == ("1b5a7183c3441e2f", "1b5a7183c3441e2f")


def test_a_label_past_int64_is_held_as_the_list_gives_it(videos):
    """A list's labels are whole numbers of any size (:func:`read_list`), which a pre-training run reads and never
    uses: one past int64 is held packed as the int it is, the dataset's entries, items and digests those of the list
    as read (it was an OverflowError as the dataset packed its list)."""
    data = PretrainDataset(config(videos, ["good.mp4 9223372036854775808", "coord.mkv 1"]))
    assert [e.label for e in data.entries] == [2**63, 1] and data.entries == read_list(videos / "list.txt")[0]
    assert data.entries[0] == ListEntry("good.mp4", 2**63) and data[0]["index"] == 0
    assert (data.list_digest, data.content_digest[0]) == ("ee4c6d1745c922f1", "ee4c6d1745c922f1")


def test_packed_strings_give_back_each_string_or_none_as_it_went_in():
    """A track cache's file names, packed as the run holds them (:class:`PackedStrings`): None (no file), a name of
    bytes that are not UTF-8 (``os.fsdecode``'s surrogates) and any other str come back as they went in."""
    import pickle

    names = ["/cache/my videos/a b.mp4.tracks", None, "", "caf\u00e9.tracks", os.fsdecode(b"bad\xff.tracks"),
             "\U0001f3a5"]
    packed = PackedStrings(names)
    assert list(packed) == names and [packed[i] for i in range(-6, 6)] == names * 2 and len(packed) == 6
    assert packed == names == packed and pickle.loads(pickle.dumps(packed)) == names and packed != names[::-1]
    with pytest.raises(IndexError, match="^index -7 is out of range for 6 items$"):
        packed[-7]


def _private_kb() -> int:
    """This process's private memory: what it does not share with its parent (kB)."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's /proc/self/smaps_rollup")
def test_a_forked_worker_reading_every_entry_and_cache_file_copies_none_of_the_list(tmp_path):
    """Each forked loader worker came to hold its own copy of the list: an object per entry and per track cache file
    name, whose reference counts its reads wrote, so that copy-on-write copied their pages into it (9 MB for these
    30k lines; 46 MB at 240k lines without a cache). Packed, a worker (forked with this process's objects
    frozen, as :func:`start_workers` forks them) that reads every item's path, label and cache file grows by less than
    2 MB."""
    from mme.models.config import ModelConfig
    from mme.motion.cache import cache_file
    from mme.motion.targets import TargetConfig, make_target_fn

    paths = [f"class {n % 100}/v{n:06d} \u00e9.mp4" for n in range(30_000)]
    (tmp_path / "list.txt").write_text("".join(f"{path} {n % 100}\n" for n, path in enumerate(paths)))
    for k in range(100):
        (tmp_path / "cache" / f"class {k}").mkdir(parents=True)
    for path in paths:
        os.close(os.open(cache_file(tmp_path / "cache", path), os.O_CREAT | os.O_WRONLY))
    model = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    target = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(tmp_path / "cache")), model)
    data = PretrainDataset(DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path)), target, 2)
    assert data.cache_lookup.lacking == [] and data._found_cache_file(29_999) == str(cache_file(tmp_path / "cache",
                                                                                               paths[-1]))
    gc.collect()
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            before = _private_kb()
            for i in range(len(data)):
                data.path(i), data.entries[i].label, data._found_cache_file(i)
            os.write(write, str(_private_kb() - before).encode())
        finally:
            os._exit(0)
    gc.unfreeze()
    os.close(write)
    grown = int(os.read(read, 64) or -1)
    os.close(read)
    os.waitpid(pid, 0)
    assert 0 <= grown < 2048, f"the worker grew by {grown} kB"


WORKERS = {"fork": 2, "spawn": 1}
"""The loader workers of the scripts below, by start method: each spawned one imports torch anew (seconds)."""

WORKERS_SCRIPT = """
import json, os, sys
import cv2, numpy as np, torch
from torch.utils.data import DataLoader, Dataset
from mme.data.dataset import start_workers

frame = np.random.default_rng(0).integers(0, 255, (224, 224), np.uint8)


class Flow(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(frame, np.roll(frame, i, 1), None)
        return torch.tensor([cv2.getNumThreads(), float(np.median(flow[..., 0])), float(os.environ["OWN_INIT"])])


def own_init(worker_id):
    os.environ["OWN_INIT"] = "7"


if __name__ == "__main__":
    cv2.setNumThreads(2)
    for _ in range(10):  # this process's OpenCV thread pool has run
        cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(frame, np.roll(frame, 1, 1), None)
    loader = DataLoader(Flow(), batch_size=None, num_workers=int(sys.argv[2]), worker_init_fn=own_init,
                        multiprocessing_context=sys.argv[1])
    print(json.dumps({"rows": [b.tolist() for b in start_workers(loader)], "main": cv2.getNumThreads()}))
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_loader_workers_run_opencv_on_one_thread_and_do_not_hang(tmp_path, context):
    """A forked worker that set OpenCV's threads itself hung for good (pthread_cond_destroy) once the main process
    had used OpenCV's pool: the pre-training run stood at step 0. Workers get one thread, the flow is right, the
    loader's own worker init still runs, and the main process keeps its own threads."""
    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    done = subprocess.run([sys.executable, str(script), context, str(WORKERS[context])], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    rows = printed["rows"]
    assert [r[0] for r in rows] == [1, 1, 1, 1] and printed["main"] == 2
    assert [round(r[1]) for r in rows] == [0, 1, 2, 3]  # the frame moved i px to the right
    assert [r[2] for r in rows] == [7, 7, 7, 7]


FAULTS_SCRIPT = """
import json, resource, sys
import numpy as np, torch
from torch.utils.data import DataLoader, Dataset


def item():  # what a worker does per item: a few frame-sized arrays, written, then freed
    arrays = [np.ones(10 << 20, np.uint8) for _ in range(3)]
    return sum(int(a[::4096].sum()) for a in arrays)


class Faults(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        item(), item()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        item()
        return torch.tensor(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)


if __name__ == "__main__":  # (mme imported here: a spawned worker imports this file, and a plain one needs no mme)
    def loader():
        return DataLoader(Faults(), batch_size=None, num_workers=int(sys.argv[2]), multiprocessing_context=sys.argv[1])

    faults = {"plain": [int(b) for b in loader()]}  # first: this process as a plain run's, start_workers not yet called
    from mme.data.dataset import start_workers

    faults["start_workers"] = [int(b) for b in start_workers(loader())]  # new workers, of a new loader
    print(json.dumps(faults))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_loader_workers_reuse_the_memory_of_the_last_item(tmp_path, context):
    """Three 10 MB arrays per item: glibc by default hands part of its freed heap back, and each item faults
    about 1,000 of its 7,680 pages in again (a page fault per 4 KB); workers started by start_workers keep it."""
    script = tmp_path / "faults.py"
    script.write_text(FAULTS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, str(script), context, str(WORKERS[context])], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    faults = json.loads(done.stdout.strip().splitlines()[-1])
    assert max(faults["start_workers"]) < 100 and min(faults["plain"]) > 500, faults


Pair = collections.namedtuple("Pair", "first second")


class Extra(dict):
    """A dict of its own type, in an item."""


class _Items(Dataset):
    """Four items as a dataset with motion frames gives them (uint8 video and frames, 2 or 3 frames each), with a
    namedtuple and a dict of its own type beside."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"video": torch.full((3, 4, 8, 8), i, dtype=torch.uint8), "index": i,
                "pair": Pair(torch.full((2,), float(i)), torch.zeros(2)), "extra": Extra(x=torch.ones(3) * i),
                "motion": {"frames": torch.full((2 + i % 2, 2, 8, 8), i, dtype=torch.uint8),
                           "pair_index": np.arange(2)}}


def _collate_telling_copies(items):
    """``collate(items)``, the shapes of the tensors it copied into shared memory, and whether each tensor of the
    batch is in shared memory as the worker made it (the main process sees every tensor of a worker's there: torch's
    pickling puts it there)."""
    copied, share = [], torch.Tensor.share_memory_

    def telling(tensor):
        if not tensor.is_shared():
            copied.append(tuple(tensor.shape))
        return share(tensor)

    torch.Tensor.share_memory_ = telling
    try:
        batch = collate(items)
    finally:
        torch.Tensor.share_memory_ = share

    def tensors(x):
        if isinstance(x, torch.Tensor):
            return [x]
        values = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else []
        return [t for v in values for t in tensors(v)]
    return batch, copied, [t.is_shared() for t in tensors(batch)]


def test_a_workers_batch_is_made_in_shared_memory_as_default_collate_makes_it():
    """A loader worker's batch goes out in shared memory, made there by the worker (so that a /dev/shm too small is
    the worker's error, not its queue thread's). Its clips and motion frames were stacked into a private buffer moved
    to shared memory by a copy (``new_empty(...).share_memory_()``); they are made in shared storage, as
    default_collate makes its batches, the dtype kept: only small tensors default_collate makes in private memory
    (the indices) are moved. A namedtuple in the batch failed it (TypeError), a dict of its own type came back a
    dict: they are as default_collate gives them."""
    loader = DataLoader(_Items(), batch_size=2, num_workers=1, collate_fn=_collate_telling_copies)
    for k, (batch, copied, shared) in enumerate(start_workers(loader)):
        i = (2 * k, 2 * k + 1)
        assert copied == [(2,)], copied  # the indices alone
        assert batch["video"].dtype == batch["motion"]["frames"].dtype == torch.uint8
        assert torch.equal(batch["video"], torch.stack([torch.full((3, 4, 8, 8), j, dtype=torch.uint8) for j in i]))
        assert torch.equal(batch["motion"]["frames"], torch.cat([torch.full((2 + j % 2, 2, 8, 8), j, dtype=torch.uint8)
                                                                 for j in i]))
        assert type(batch["pair"]) is Pair and type(batch["extra"]) is Extra
        assert torch.equal(batch["pair"].first, torch.tensor([[i[0]] * 2, [i[1]] * 2], dtype=torch.float32))
        assert torch.equal(batch["extra"]["x"], torch.tensor([[i[0]] * 3, [i[1]] * 3], dtype=torch.float32))
        assert torch.equal(batch["index"], torch.tensor(i))
        assert len(shared) == 7 and all(shared), shared  # (as the worker made them)


SHM_FRAMES = """\
import torch
from torch.utils.data import Dataset
from mme.data.dataset import collate, make_loader, start_workers
from mme.errors import ProcessLost
class Items(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):  # (a small clip, 192 KiB of motion frames)
        return {"video": torch.zeros(4, dtype=torch.uint8),
                "motion": {"frames": torch.zeros(3, 64, 1024, dtype=torch.uint8), "frame_index": torch.arange(3)}}
try:
    for batch in start_workers(make_loader(Items(), batch_size=2, num_workers=1, collate_fn=collate)):
        pass
except ProcessLost as e:
    print(e)
"""


def test_motion_frames_too_large_for_shared_memory_are_the_one_line_of_a_full_dev_shm(tmp_path):
    """Pre-training's motion frames (concatenated, :func:`mme.data.dataset.stacked` with ``cat``) that do not fit
    in a /dev/shm of 256 KiB, the clips fitting: the worker's error, one line naming what shared memory holds and
    what to lower (the test of ``mme pretrain`` under a small /dev/shm fails at its clips first)."""
    script = tmp_path / "frames.py"
    script.write_text(SHM_FRAMES)
    done = subprocess.run(with_small_shm([sys.executable, str(script)]), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "data loader worker 0: a batch does not fit in shared memory (/dev/shm, 0.25 MiB in all), which holds the "
        "batches of the loader's 1 worker at once, 2 each: give it more, or lower data.num_workers or "
        "train.batch_size"), done.stderr[-2000:]


FILL_SHM = """\
import os
fd = os.open("/dev/shm/fill", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, bytes(4096))
except OSError:  # (full)
    os.close(fd)
"""


@pytest.mark.parametrize("full,size,said", [
    (False, "16k", "0.02 MiB in all) for their queues, locks and shared tensors: give it more"),
    (True, "16k", "0.02 MiB in all) for their queues, locks and shared tensors: give it more"),
    (True, "2m", "2 MiB in all, full) for their queues, locks and shared tensors: free what other jobs left in it, or "
                 "give it more")])
def test_a_dev_shm_without_room_for_the_loader_workers_queues_is_the_one_line_of_their_start(tmp_path, full, size,
                                                                                             said):
    """A /dev/shm of 16 KiB has no room for the semaphores of the loader workers' queues and locks (multiprocessing
    makes each there, about a page each, a few per worker), and one already full none for the flag the workers share:
    the loader's start failed with a traceback (multiprocessing's SemLock's OSError, torch's RuntimeError), where a
    larger one too small for the batches gives one line. It is one line too, and torch's iterator left half-made goes
    quietly. Its advice names the workers' count alone, what the room needed grows with (the batch size does not
    change it). One of a MiB or more that other files filled (Docker's 64 MB, of other jobs' leftovers) is said
    full, freeing it advised first (before: said as too small)."""
    script = tmp_path / "frames.py"
    script.write_text((FILL_SHM if full else "") + SHM_FRAMES)
    done = subprocess.run(with_small_shm([sys.executable, str(script)], size), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.strip() == (
        f"data loader: its workers cannot start: no room in shared memory (/dev/shm, {said}, or lower "
        "data.num_workers")


def test_a_full_dev_shm_stops_no_loader_without_workers(tmp_path):
    """The flag the loader workers share (mme.data.video.anamorphic_said) was put in shared memory at every loader's
    start, one without workers too, whose batches never go there: a full /dev/shm stopped it, said as its workers
    (that it has none of) unable to start. It runs its batches."""
    script = tmp_path / "frames.py"
    script.write_text(FILL_SHM + SHM_FRAMES.replace("num_workers=1", "num_workers=0") + 'print("ran its batches")\n')
    done = subprocess.run(with_small_shm([sys.executable, str(script)], "16k"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.strip() == "ran its batches"


def test_a_dead_loader_workers_advice_names_what_the_command_running_takes():
    """A loader worker killed (the out-of-memory killer's SIGKILL) or short of shared memory (SIGBUS) advised "lower
    data.num_workers (mme embed and probe: --workers) or the batch size" in every command: keys mme demo refuses
    (its batch is fixed) and mme bench pipeline and mme embed do not take. Each is told its own flags
    (mme.utils.memory_advice, said_as), and a command that takes none of them is told so. Shared memory holds the
    batches of every worker at once: its advice names the batch size too, where the command takes it."""
    import signal

    from mme.data import bench
    from mme.data.dataset import worker_death_guess
    from mme.demo import DEMO_KEYS
    from mme.eval.features import EMBED_KEYS
    from mme.train.bench_pipeline import FLAGS
    from mme.utils import keys_as_flags

    killed, bus = -signal.SIGKILL, -signal.SIGBUS
    told = "most likely killed by the out-of-memory killer: "
    shm = "most likely for want of shared memory (/dev/shm): give it more"
    sizes = "the clips' size (data.img_size with model.img_size, data.num_frames with model.num_frames)"
    assert (worker_death_guess(killed), worker_death_guess(bus)) == (
        f"{told}lower data.num_workers or train.batch_size, or {sizes}",
        f"{shm}, or lower data.num_workers or train.batch_size")
    for flags, overrides, said, lowered in (
            (DEMO_KEYS, True, f"lower --workers, or {sizes}", "--workers"),
            (FLAGS, False, "lower --workers, or the clips' size (--size, --frames)", "--workers"),
            (EMBED_KEYS, False, "lower --workers or --batch-size", "--workers or --batch-size"),
            (bench.FLAGS, False, "lower --workers or --batch, or the clips' size (--size, --frames)",
             "--workers or --batch")):
        with keys_as_flags(flags, overrides=overrides):
            assert (worker_death_guess(killed), worker_death_guess(bus)) == (
                f"{told}{said}", f"{shm}, or lower {lowered}"), flags
    with keys_as_flags({}, overrides=False):
        assert (worker_death_guess(killed), worker_death_guess(bus)) == (
            f"{told}this command takes none of the settings that would lower it", shm)
    assert worker_death_guess(1) is None


@pytest.mark.parametrize("text, said", [
    ("DataLoader worker (pid(s) 4242) exited unexpectedly", True),
    ("DataLoader worker (pid(s) 4242, 4243) exited unexpectedly", True),
    ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):", False)])
def test_a_dead_loader_worker_is_one_line_where_torch_lists_no_worker_processes(text, said):
    """How a dead worker ended is read from torch's private ``_workers`` of the loader's iterator; an iterator without
    that list (another torch version) left torch's own error of the death as it was, a traceback: it is one line now,
    and an error that is no death (a worker's own) still passes as it is."""
    from mme.data.dataset import _batches
    from mme.errors import ProcessLost

    class Batches:  # a multi-process loader's iterator of a torch that keeps its workers elsewhere
        def __iter__(self):
            return self

        def __next__(self):
            raise RuntimeError(text)

    with pytest.raises(ProcessLost if said else RuntimeError) as info:
        next(_batches(Batches(), persistent_workers=False))
    if said:
        assert str(info.value) == (
            f"{text} (how, this version of torch does not say): where the out-of-memory killer ended it, lower "
            "data.num_workers or train.batch_size, or the clips' size (data.img_size with model.img_size, "
            "data.num_frames with model.num_frames)")
        assert str(info.value.__cause__) == text
    else:
        assert str(info.value) == text


def test_a_loader_with_persistent_workers_serves_every_epoch_under_start_workers():
    """A loader's ``persistent_workers`` serve its next ``iter()`` through the same iterator: start_workers stopped
    them at the end of each pass (or a pass left early), so the next epoch failed ("Queue ... is closed")."""
    loader = DataLoader(list(range(8)), batch_size=2, num_workers=1, persistent_workers=True,
                        multiprocessing_context="fork")
    whole = [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [b.tolist() for b in start_workers(loader)] == whole
    for batch in start_workers(loader):  # left after its first batch: the generator closed early
        assert batch.tolist() == [0, 1]
        break
    assert [b.tolist() for b in start_workers(loader)] == whole
    assert [b.tolist() for b in start_workers(loader)] == whole


def test_a_persistent_loaders_next_epoch_needs_no_room_in_shared_memory(monkeypatch):
    """A loader's running ``persistent_workers`` keep the init they began with: start_workers put a new ``started``
    tensor in shared memory on each call all the same, so a /dev/shm filled after the first epoch refused the next
    one, "its workers cannot start: no room in shared memory", though no worker starts. Only workers that start have
    their tensors made."""
    from mme.errors import ProcessLost

    loader = DataLoader(range(4), batch_size=None, num_workers=1, persistent_workers=True,
                        multiprocessing_context="fork")
    assert list(start_workers(loader)) == [0, 1, 2, 3]
    first = loader.worker_init_fn

    def no_room(tensor):
        raise RuntimeError("unable to write to file </torch_1_2_3>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_room)
    assert list(start_workers(loader)) == [0, 1, 2, 3]
    assert loader.worker_init_fn is first
    with pytest.raises(ProcessLost, match="its workers cannot start: no room in shared memory"):
        start_workers(DataLoader(range(4), batch_size=None, num_workers=1, persistent_workers=True))


def test_a_data_root_whose_name_is_not_utf8_has_its_content_digest():
    """``data.root=$'root\\xe9'`` (a Latin-1 byte, read by Python with a surrogate escape): the list's digest raised
    UnicodeEncodeError before step 1. The path is digested as its bytes on disk (a UTF-8 one as before)."""
    import hashlib
    from types import SimpleNamespace

    root = os.fsdecode(b"/data/root\xe9")
    digests = PretrainDataset.content_digest.func(SimpleNamespace(
        cfg=SimpleNamespace(root=root), entries=[ListEntry("a.mp4", 0), ListEntry("/elsewhere/b.mp4", 0)],
        need_labels=False))
    assert digests == (hashlib.sha256(b"a.mp4\n/elsewhere/b.mp4").hexdigest()[:16],
                       hashlib.sha256(b"/data/root\xe9/a.mp4\n/elsewhere/b.mp4").hexdigest()[:16])


def test_a_lists_digests_index_keys_and_extract_locks_are_the_same_under_a_latin1_locale(monkeypatch):
    """A Latin-1 locale names the file ``caf\u00e9`` (UTF-8 bytes) ``caf\u00c3\u00a9``: digested as UTF-8 text, a
    list's digests (a run's list identity, which its resume compares), a video's index key and extract's lock and
    share names were other than a UTF-8 locale's, so a run resumed under the other locale read a changed list, and two
    extracts sharing a folder took other locks for one file. Each takes the name's bytes on disk, whatever the
    locale."""
    from pathlib import Path
    from types import SimpleNamespace

    from mme.data.dataset import content_digest
    from mme.data.pyav_reader import _index_store
    from mme.motion.extract import _Job, share_name

    def named(utf8: str) -> dict:
        root, video = f"/data/{utf8}", f"{utf8}/v.mp4"
        return {"content": content_digest([ListEntry(video, 0), ListEntry(f"/x/{video}", 1)], root, True),
                "index": _index_store("/idx", f"{root}/{video}", (5, 7)),
                "lock": _Job.lock.fget(SimpleNamespace(out=root, target=Path(root, video))).name,
                "share": share_name(f"{root}/train.txt", 1, 2)}

    under_utf8 = named("caf\u00e9")
    monkeypatch.setattr(os, "fsencode", lambda name: os.fspath(name).encode("latin-1", "surrogateescape"))
    assert named("caf\u00e9".encode().decode("latin-1")) == under_utf8


STALLED_LOADER = """
import os, time
from torch.utils.data import DataLoader, Dataset
from mme.data.dataset import start_workers

class Stalls(Dataset):  # a read that never returns (a hung mount)
    def __len__(self):
        return 1

    def __getitem__(self, i):
        print(os.getpid(), flush=True)
        time.sleep(600)

list(start_workers(DataLoader(Stalls(), batch_size=None, num_workers=1, multiprocessing_context="fork")))
"""


def test_a_loader_worker_ends_with_its_process_killed_mid_read():
    """The process of a run killed with SIGKILL (the out-of-memory killer, a supervisor's kill -9) left its loader
    workers running, one blocked in a read an orphan for minutes with its memory (torch's watch of its parent runs
    between items only). They end with it now, as mme extract's workers do."""
    proc = subprocess.Popen([sys.executable, "-c", STALLED_LOADER], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(proc.stdout.readline())
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while alive(worker) and time.monotonic() < killed + 10:
            time.sleep(0.1)
        assert not alive(worker) and time.monotonic() - killed < 5, "the worker outlived its killed parent"
    finally:
        proc.kill()
        if worker is not None and alive(worker):  # (before the wait for the pipe it holds too)
            os.kill(worker, signal.SIGKILL)
        proc.communicate()


@pytest.mark.parametrize("files", [0, 1100])
def test_a_worker_another_process_started_ends_with_the_process_it_works_for(files):
    """A loader worker of the forkserver start method (Python 3.14's default on Linux) is the fork server's child:
    end_with_parent, given the run's PID, took its parent for the run and ended it at its start; it waits for the
    run's end instead. Here a child of this test stands for the worker, another for the run. With over 1024 files
    open (a raised ulimit -n, many videos open; a worker inherits the run's), its wait on the run's pidfd, a select()
    then, failed ('filedescriptor out of range in select()') and it outlived the run."""
    import resource

    if files and resource.getrlimit(resource.RLIMIT_NOFILE)[1] < files + 64:
        pytest.skip(f"{files} files cannot be open at once here (ulimit -Hn)")
    the_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen([sys.executable, "-c", f"""
import os, resource, time
from mme.utils import end_with_parent
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
held = [os.open(os.devnull, os.O_RDONLY) for _ in range({files})]
end_with_parent({the_run.pid}, True)
print("up", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == "up\n"  # (not ended at its start)
        the_run.kill()
        the_run.wait()
        assert worker.wait(timeout=5) == 1  # (its os._exit(1))
    finally:
        for proc in (the_run, worker):
            proc.kill()
            proc.wait()


class RunsOutOfMemory(Dataset):
    """Item 0's allocation fails: numpy's own error (``_ArrayMemoryError``), torch's allocator's (a RuntimeError), or
    Python's bare MemoryError."""

    def __init__(self, kind: str):
        self.kind = kind

    def __len__(self):
        return 1

    def __getitem__(self, i):
        if self.kind == "numpy":
            np.empty((1 << 46,), np.uint8)
        if self.kind == "torch":
            torch.empty(1 << 46, dtype=torch.uint8)
        raise MemoryError


@pytest.mark.parametrize("kind, said", [
    ("numpy", "Unable to allocate 64.0 TiB for an array with shape (70368744177664,) and data type uint8"),
    ("torch", "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
              "allocate 70368744177664 bytes. Error code 12 (Cannot allocate memory)"),
    ("bare", "MemoryError")])
def test_a_failed_allocation_in_a_loader_worker_is_one_line_with_its_message_and_advice(kind, said):
    """numpy's failed allocation in a loader worker reached this process as torch's RuntimeError ('Caught
    _ArrayMemoryError in DataLoader worker process 1', its traceback), which torch cannot re-create: a run ended in an
    80-line traceback where without workers it says one line, 'out of memory (...)'; a bare MemoryError said
    'Caught MemoryError in DataLoader worker process 1.' for its message. Each is an OutOfMemory where the batch
    is fetched, with the worker's message and what to lower: an MMEError, which every rank of a training run stops
    with and whose steps it keeps (it was a plain MemoryError, made one only in a training step's handler: under
    torchrun the other ranks stopped on 'another rank ended', nothing kept; a periodic validation's, a traceback)."""
    with pytest.raises(OutOfMemory) as info:
        list(start_workers(DataLoader(RunsOutOfMemory(kind), batch_size=None, num_workers=1)))
    assert str(info.value) == (f"out of memory ({said} (in DataLoader worker process 0)); lower data.num_workers or "
                               "train.batch_size, or the clips' size (data.img_size with model.img_size, "
                               "data.num_frames with model.num_frames)")


def test_a_failed_allocation_in_a_loader_worker_under_a_memory_limit_names_the_limit(monkeypatch):
    """Under ``ulimit -v`` (which the workers inherit) a worker's failed allocation advised "lower data.num_workers or
    train.batch_size", where the limit is the cause (torch and its libraries reserve gigabytes of address space they
    never touch): its line names the limit and its remedy, as any command's out of memory under it does."""
    import resource

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1000000 * 1024, real(kind)[1])
                        if kind == resource.RLIMIT_AS else real(kind))
    with pytest.raises(OutOfMemory) as info:
        list(start_workers(DataLoader(RunsOutOfMemory("bare"), batch_size=None, num_workers=1)))
    assert str(info.value) == (
        "out of memory under this process's address space limit, 977 MiB (ulimit -v 1000000): MemoryError (in "
        "DataLoader worker process 0); raise it (ulimit -v unlimited: torch and its libraries reserve gigabytes of "
        "address space they do not use; a scheduler's --mem limits what a job uses instead)")


def test_the_failure_fractions_message_reads_the_shared_failure_table_once(videos, monkeypatch):
    """The loader workers write the failure table while the fraction's message is made: it counted the table, then
    read it again for the counts, which said more failures than the count ('6 of 500 videos ... failed ...
    ({'missing': 7})'). Here a worker's failure is recorded between the two."""
    from mme.data.dataset import REASONS

    ds = PretrainDataset(config(videos, ["missing.mp4 0", "empty.mp4 0", "good.mp4 0", "coord.mkv 0"],
                                max_failure_fraction=0.3))
    ds._reason[0], ds._reason[1] = REASONS.index("missing"), REASONS.index("empty")
    failed_of = ds.failed_of

    def a_worker_fails_meanwhile(videos: int) -> tuple[int, int]:
        ds._reason[3] = REASONS.index("unreadable")
        return failed_of(videos)

    monkeypatch.setattr(ds, "failed_of", a_worker_fails_meanwhile)
    with pytest.raises(DataError, match=r"^2 of 4 videos in .* failed, more than data.max_failure_fraction=0.3 "
                                        r"\({'missing': 1, 'empty': 1}\); "):
        ds._check_failures()
