"""Decoding is frame-accurate: frames read at arbitrary indices equal a full sequential decode."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import importlib.util
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
import warnings
import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter
from os_fakes import ffmpeg_out_of_memory, unenterable
from videos import (
    CORPUS,
    DecodedFrames,
    affine_video,
    cut_mid_gop,
    decode_all,
    decode_as_ffmpeg,
    texture,
    with_end_of_sequence,
    with_nals_before_keyframes,
    write_corpus_file,
    write_hdr_video,
    write_keyint_video,
    write_video,
    write_with_audio,
)

from mme.data import pyav_reader
from mme.data.lists import USABLE, ListEntry, resolve
from mme.data.pyav_reader import rgb24
from mme.data.video import GRAB_TRIES, check_video, open_video
from mme.data.video_reader import display_turn
from mme.errors import ConfigError, FrameCountChanged, OutOfMemory, VideoError
from mme.utils import absolute_path


def write_gop_video(path, frames, codec: str, options: dict) -> None:
    """Like write_video, with encoder options (short GOPs and B-frames make seeking non-trivial)."""
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=25, options=options)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())


@pytest.fixture(scope="module")
def clip_frames():
    frames, _ = affine_video(50, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    return frames


CASES = [
    ("h264_bframes.mp4", "libx264", {"preset": "medium", "g": "8", "bf": "3", "crf": "20"}),
    ("mpeg4.avi", "mpeg4", {"g": "10", "b": "2000000"}),
    ("vp9.webm", "libvpx-vp9", {"g": "12", "deadline": "realtime", "cpu-used": "8"}),
]


@pytest.mark.parametrize("name,codec,options", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_random_indices_equal_sequential_decode(tmp_path, clip_frames, name, codec, options, backend):
    path = tmp_path / name
    write_gop_video(path, clip_frames, codec, options)
    ref = decode_all(path)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.integers(0, len(ref), 12), [len(ref) - 1, 0, 17, 17, 9]])
    with open_video(path, backend) as reader:
        assert reader.num_frames == len(ref) == 50
        assert reader.size == (64, 48)
        assert reader.fps == pytest.approx(25.0, rel=1e-3)
        got = reader.read(idx)
        again = reader.read(idx[::-1])  # a second read on the same reader seeks back correctly
    assert got.shape == (len(idx), 48, 64, 3) and got.dtype == np.uint8
    if backend == "pyav":
        np.testing.assert_array_equal(got, ref[idx])
    else:  # OpenCV's YUV->RGB conversion may differ from FFmpeg's by rounding; frames must still be the right ones
        assert np.abs(got.astype(int) - ref[idx]).mean() < 2.0
        nearest = np.abs(got[:, None].astype(int) - ref[None].astype(int)).mean(axis=(2, 3, 4)).argmin(1)
        np.testing.assert_array_equal(nearest, idx)
    np.testing.assert_array_equal(again, got[::-1])


def test_the_opencv_reader_decodes_on_the_threads_asked(tmp_path, clip_frames):
    """``data.decode_threads`` (``--decode-threads``) reached the OpenCV reader, which ignored it: its decoder ran
    on every core in each loader worker."""
    import cv2

    path = write_video(tmp_path / "a.mp4", clip_frames[:11])
    for threads in (1, 3):
        with open_video(path, "opencv", threads) as reader:
            assert reader._cap.get(cv2.CAP_PROP_N_THREADS) == threads
            np.testing.assert_array_equal(reader.read([10, 3]).shape, (2, 48, 64, 3))


def test_the_opencv_reader_reads_the_frames_asked_where_the_header_miscounts_them(tmp_path, clip_frames):
    """OpenCV's seek goes no further than the frame count of the container's header, and not at all where that count
    is under 2, though CAP_PROP_POS_FRAMES says it did: the opencv backend read frames [0, 5, 19] for [25, 30, 44]
    of an AVI whose header counts 0 frames (a recording killed before it was finalised) or a WebM written live (no
    duration), [20, 25, 39] where it counts 20, silently; it reads the frames a sequential decode gives."""
    avi = tmp_path / "full.avi"
    write_gop_video(avi, clip_frames, "mpeg4", {"g": "12", "b": "2000000"})
    paths = []
    for total in (0, 20):  # avih's dwTotalFrames and the video strh's dwLength
        data = bytearray(avi.read_bytes())
        struct.pack_into("<I", data, data.find(b"avih") + 24, total)
        struct.pack_into("<I", data, data.find(b"strh") + 40, total)
        paths.append(tmp_path / f"header{total}.avi")
        paths[-1].write_bytes(data)
    paths.append(tmp_path / "live.webm")
    with av.open(str(paths[-1]), "w", options={"live": "1"}) as c:  # no duration, no cues
        s = c.add_stream("libvpx", rate=25, options={"crf": "4", "b": "0", "g": "12"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in clip_frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    for path, header in zip(paths, (0, 20, None)):
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        assert (cap.get(cv2.CAP_PROP_FRAME_COUNT) == header) if header is not None else \
            (cap.get(cv2.CAP_PROP_FRAME_COUNT) < 2), (path.name, cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        ref = decode_all(path)
        assert len(ref) == 50
        with open_video(path, "opencv") as reader:
            assert reader.num_frames == 50
            for idx in ([25, 30, 44], [2, 3, 49], [0, 1], [21, 22]):  # again on the same reader, back and forth
                got = reader.read(idx)
                nearest = np.abs(got[:, None].astype(int) - ref[None].astype(int)).mean(axis=(2, 3, 4)).argmin(1)
                np.testing.assert_array_equal(nearest, idx, err_msg=path.name)
                assert np.abs(got.astype(int) - ref[idx]).mean() < 2.0, path.name


@pytest.mark.parametrize("name", ["h264.ts", "mpeg2.ts"])
def test_the_opencv_reader_decodes_on_without_a_seek_from_where_its_capture_stands(tmp_path, clip_frames, name):
    """OpenCV's seek to frame 0 of an MPEG-TS lands frames later though it says it landed there: a fresh opencv
    reader's read of frames 0, 1, 18 gave 8, 9, 26 of the corpus's H.264 .ts (12, 13, 30 of its MPEG-2 one), and the
    next clip, read from where the last ended, was as far off. A read that starts where the capture stands, or a few
    frames on, decodes on without a seek."""
    path = write_corpus_file(tmp_path / name, clip_frames, *CORPUS[name])
    ref = decode_all(path)
    with open_video(path, "opencv") as reader:
        for idx in ([0, 1, 18], [20, 25], [30, 31]):  # from frame 0, then each a few frames after the last read
            got = reader.read(idx)
            nearest = np.abs(got[:, None].astype(int) - ref[None].astype(int)).mean(axis=(2, 3, 4)).argmin(1)
            np.testing.assert_array_equal(nearest, idx)


def test_the_opencv_reader_reopens_the_file_it_opened_after_a_chdir(tmp_path, clip_frames, monkeypatch):
    """The opencv reader reopens its file where OpenCV does not seek (a header counting 0 frames): it looked its
    path up again against the working folder, so a reader opened with a relative name, after os.chdir, read another
    file of that name (or failed where there was none). It reopens the absolute path resolved when it was opened."""
    avi = tmp_path / "full.avi"
    write_gop_video(avi, clip_frames, "mpeg4", {"g": "12", "b": "2000000"})
    data = bytearray(avi.read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 24, 0)  # header counts 0 frames: every read reopens
    struct.pack_into("<I", data, data.find(b"strh") + 40, 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "a" / "v.avi").write_bytes(data)
    write_gop_video(tmp_path / "c" / "v.avi", clip_frames[::-1].copy(), "mpeg4", {"g": "12", "b": "2000000"})
    ref, other = decode_all(tmp_path / "a" / "v.avi"), decode_all(tmp_path / "c" / "v.avi")
    idx = [10, 30, 45]
    assert np.abs(ref[idx].astype(int) - other[idx]).mean() > 10  # the other file's frames differ
    monkeypatch.chdir(tmp_path / "a")
    with open_video("v.avi", "opencv") as reader:
        assert reader.num_frames == 50
        for folder in ("a", "c", "."):  # the same name elsewhere, then none
            monkeypatch.chdir(tmp_path / folder)
            got = reader.read(idx)
            assert np.abs(got.astype(int) - ref[idx]).mean() < 2.0, folder


def test_count_and_size_of_plain_h264(tmp_path, clip_frames):
    path = write_video(tmp_path / "a.mp4", clip_frames[:11])
    with open_video(path) as reader:
        assert (reader.num_frames, reader.size) == (11, (64, 48))
        assert reader.read([]).shape == (0, 48, 64, 3)
        with pytest.raises(VideoError, match=r"a\.mp4: index out of range"):
            reader.read([11])


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_read_refuses_indices_that_are_no_frames_and_takes_whole_floats(tmp_path, clip_frames, backend):
    """A read cast its indices to int64: ``np.linspace(0, 10, 5)``'s 2.5 and 7.5 read frames 2 and 7, -0.5 frame 0,
    unsaid (``track`` refused such starts, by the same check now). The refusal names the wrong indices alone (``[1,
    None]`` was "got [1, None]") and the range (2**63 was refused as no whole number >= 0); float16 indices are read
    without numpy's overflow warning (2.0**63 cast to float16)."""
    path = str(write_video(tmp_path / "a.mp4", clip_frames[:11]))
    with open_video(path, backend=backend) as reader:
        np.testing.assert_array_equal(reader.read(np.linspace(0, 10, 6)), reader.read([0, 2, 4, 6, 8, 10]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(reader.read(np.float16([1, 2])), reader.read([1, 2]))
            np.testing.assert_array_equal(reader.read(np.array([1, 2], object)), reader.read([1, 2]))
        for indices, wrong in ((np.linspace(0, 10, 5), "[2.5, 7.5]"), ([-0.5], "[-0.5]"), ([-1, 3], "[-1]"),
                               ([np.nan], "[nan]"), ([True], "[True]"), (np.float16([1, np.inf]), "[inf]"),
                               ([2**63], "[9223372036854775808]"), ([1, 10**20], "[100000000000000000000]"),
                               ([1, None], "[None]"), ([1, "a", 2.5], "['a', 2.5]")):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with pytest.raises(ConfigError) as info:
                    reader.read(indices)
            assert str(info.value) == (f"{path}: the frames to read must be raw frame indices (whole numbers from 0 "
                                       f"to 2**63 - 1), got {wrong}")


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_bad_files_raise_video_error_naming_the_file(tmp_path, clip_frames, backend):
    good = write_video(tmp_path / "good.mp4", clip_frames[:20])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    os.mkfifo(tmp_path / "pipe.mp4")  # (was 'empty (zero-byte file)')
    cases = {"missing.mp4": "missing", "empty.mp4": "empty", "notes.mp4": "unreadable",
             "truncated.mp4": "unreadable", "pipe.mp4": r"unreadable \(not a regular file \(a named pipe"}
    for name, reason in cases.items():
        with pytest.raises(VideoError, match=f"{name}: {reason}") as info:
            with open_video(tmp_path / name, backend) as reader:
                reader.read([0])
        assert info.value.reason == reason.split()[0]
    with pytest.raises(VideoError, match="unknown video backend"):
        open_video(good, "nope")


def test_a_videos_own_fault_met_while_an_unrelated_failed_allocation_is_handled_is_the_videos(tmp_path):
    """A video's error was an OutOfMemory ('the video is not at fault') wherever an ENOMEM was being handled, the
    read's or not: a zero-byte file opened in the handler of a caller's own refused allocation. Only the read's own
    error is taken as its cause."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    try:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")
    except OSError:
        for name, reason in [("empty.mp4", "empty"), ("notes.mp4", "unreadable")]:
            with pytest.raises(VideoError) as info:
                open_video(tmp_path / name)
            assert (type(info.value), info.value.reason) == (VideoError, reason)


@pytest.mark.parametrize("gone", ["before FFmpeg opens it", "after FFmpeg opened it"])
def test_a_video_moved_away_as_it_is_opened_is_missing(tmp_path, clip_frames, monkeypatch, gone):
    """A video moved away (its volume unmounted) between open_video's look at it and FFmpeg's open, or after FFmpeg's
    open and before the reader's stat of it, raised a raw FileNotFoundError (a traceback in a loader worker) or was
    'unreadable'; it is 'missing', which a run skips and counts."""
    path = write_video(tmp_path / "v.mp4", clip_frames[:4])
    real = pyav_reader.av.open

    def moving(name, **options):
        if gone.startswith("before"):
            path.unlink()
        container = real(name, **options)
        path.unlink(missing_ok=True)
        return container

    monkeypatch.setattr(pyav_reader.av, "open", moving)
    with pytest.raises(VideoError, match=r"v\.mp4: missing \(no such file: gone as it was opened") as info:
        open_video(path)
    assert info.value.reason == "missing"


def test_a_probe_out_of_memory_stops_and_is_not_kept_as_the_files(tmp_path, clip_frames, monkeypatch):
    """FFmpeg out of memory as PyAV's probe (of a file for the OpenCV and decord backends) or the read of its sample
    aspect opened the file was taken for the file's own failure to open, and cached for the process's life: the
    video read as no video, and unstretched. It stops the read (OutOfMemory); a later probe opens the file."""
    path = str(write_video(tmp_path / "v.mp4", clip_frames[:4]))
    real = av.open

    def refused(name, *args, **options):
        raise ffmpeg_out_of_memory()

    monkeypatch.setattr(av, "open", refused)
    for probe in (pyav_reader.probe_video, pyav_reader.read_sample_aspect):
        with pytest.raises(OutOfMemory, match=r"v\.mp4: out of memory while reading it"):
            probe(path)
    monkeypatch.setattr(av, "open", real)
    assert pyav_reader.probe_video(path) == (pyav_reader.MP4_DEMUXER, "")


def test_a_video_moved_away_before_the_opencv_count_opens_it_is_missing(tmp_path, clip_frames, monkeypatch):
    """The OpenCV reader's frame count opens a capture of its own, unchecked: a video moved away (its volume
    unmounted) after the reader's capture opened and before the count's counted 0 frames, 'unreadable (no decodable
    video frames)'. It is 'missing', as where the reader's own capture finds it gone."""
    import mme.data.video as video

    path, opened = write_video(tmp_path / "v.mp4", clip_frames[:4]), []
    real = cv2.VideoCapture

    def capture(name, *args):
        opened.append(name)
        if len(opened) == 2:  # the count's, after the reader's
            path.unlink()
        return real(name, *args)

    monkeypatch.setattr(video.cv2, "VideoCapture", capture)
    with pytest.raises(VideoError, match=r"v\.mp4: missing \(no such file: gone as it was opened") as info:
        open_video(path, "opencv")
    assert (info.value.reason, len(opened)) == ("missing", 2)


def test_a_video_whose_folder_becomes_unenterable_before_the_opencv_count_opens_it_is_unreadable(tmp_path, clip_frames,
                                                                                               monkeypatch):
    """The OpenCV reader's count opens a capture of its own, which said a video it could not open 'missing' where
    ``os.path.exists`` answered False: so too where a folder on the way became one this user may not enter (a
    teammate's, mode 0700) after the reader's capture opened. It is 'unreadable', with the reason and the folder."""
    import mme.data.video as video

    folder = tmp_path / "theirs"
    folder.mkdir()
    path, opened = write_video(folder / "v.mp4", clip_frames[:4]), []
    real = cv2.VideoCapture
    with contextlib.ExitStack() as shut:
        def capture(name, *args):
            opened.append(name)
            if len(opened) == 2:  # the count's, after the reader's: not opened (root's opens its file all the same)
                shut.enter_context(unenterable(folder))
                return real()
            return real(name, *args)

        monkeypatch.setattr(video.cv2, "VideoCapture", capture)
        with pytest.raises(VideoError) as info:
            open_video(path, "opencv")
    assert (str(info.value), info.value.reason, len(opened)) == (
        f"{path}: unreadable (Permission denied: this user may not enter {folder})", "unreadable", 2)


def test_a_video_in_a_folder_this_user_may_not_enter_is_unreadable_not_missing(tmp_path, clip_frames):
    """``os.path.exists`` answers False where a folder on the way cannot be entered (a teammate's of mode 0700):
    such a video was 'missing (no such file)', and `mme check` reported it missing; it is 'unreadable', with the
    reason and the folder."""
    folder = tmp_path / "theirs"
    folder.mkdir()
    video = write_video(folder / "v.mp4", clip_frames[:4])
    said = f"{video}: unreadable (Permission denied: this user may not enter {folder})"
    with unenterable(folder):
        with pytest.raises(VideoError) as info:
            open_video(video)
        checked = check_video(video)
    assert (str(info.value), info.value.reason) == (said, "unreadable")
    assert (checked["status"], checked["reason"]) == ("unreadable", said)


def test_truncated_streamable_file_reads_as_a_shorter_video(tmp_path, clip_frames):
    """Matroska has no index at the end: a cut file keeps its complete frames, and they decode exactly."""
    data = write_video(tmp_path / "full.mkv", clip_frames).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    ref = decode_all(tmp_path / "cut.mkv")
    with open_video(tmp_path / "cut.mkv") as reader:
        assert 0 < reader.num_frames == len(ref) < 50
        np.testing.assert_array_equal(reader.read([reader.num_frames - 1, 1]), ref[[-1, 1]])


def test_a_cut_mp4_with_its_index_in_front_reads_as_a_shorter_video_whatever_the_threads(tmp_path, clip_frames):
    """An MP4 written for streaming (faststart: its index before the frames), cut inside a packet (an interrupted
    download): the demux finds the packets up to the cut, the last one's data short, and FFmpeg's decoder stops
    there, raising on one thread, silently on several. With one (data.decode_threads' default) the file was a
    decode error for the whole run; then the packets' count held until a read past the end found the shorter one,
    so a process that had not read so far drew other clips (and refused the file's track cache); now the file's
    cut last packet has it counted by a decode from the start, which passes over the cut packet's error and flushes
    the frames the decoder holds for reordering, as ``ffmpeg`` does (on one thread: frame threads lose them). The
    same short packet with packets after it stays a decode error, which says after how many frames and in which
    packet the decode failed (on several threads: among which packets, the ones last sent to them)."""
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25, options={"g": "8", "bf": "3"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in clip_frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    with av.open(str(full)) as c, av.open(str(tmp_path / "mid.mp4"), "w") as out:
        packets = [p for p in c.demux(video=0) if p.size]
        stream = out.add_stream_from_template(c.streams.video[0])
        for k, p in enumerate(packets):
            if k == 8:  # the packet the cut below goes through, as short, but with the rest after it
                short = av.Packet(bytes(p)[: p.size // 2])
                short.pts, short.dts, short.time_base = p.pts, p.dts, p.time_base
                p = short
            p.stream = stream
            out.mux(p)
    (tmp_path / "cut.mp4").write_bytes(full.read_bytes()[: packets[8].pos + packets[8].size // 2])
    plain = []  # PyAV's plain decode stops at the error, before the frames held for reordering
    with av.open(str(tmp_path / "cut.mp4")) as c, pytest.raises(av.error.InvalidDataError):
        plain.extend(c.decode(video=0))
    ref = decode_as_ffmpeg(tmp_path / "cut.mp4")  # frame i: the error passed over, the decoder flushed
    assert (len(plain), len(ref)) == (6, 8)
    for threads in (1, 0):
        path = tmp_path / f"cut{threads}.mp4"  # a copy each: no index known to the process
        path.write_bytes((tmp_path / "cut.mp4").read_bytes())
        with open_video(path, threads=threads) as reader:  # counted from the start, not the packets' 9 until a
            assert reader.num_frames == len(ref) < 9  # read past the end (other clips drawn before and after)
            np.testing.assert_array_equal(reader.read(np.arange(len(ref))), ref)
        assert check_video(path)["status"] == "suspicious" and "cut short" in check_video(path)["reason"]
    index_dir = tmp_path / "index"  # an index stored before (version 1: the packets' count, read by seek) is not used
    store = pyav_reader._pyav_index(_version_of(path), str(index_dir)).store
    record = json.loads(store.read_text())
    store.write_text(json.dumps({**record, "version": 1, "mode": "seek", "reason": "", "num_frames": 9}))
    pyav_reader._pyav_index.cache_clear()  # another process
    with open_video(path, index_dir=index_dir) as reader:
        assert reader.num_frames == len(ref)
    short_at = float(packets[8].pts * packets[8].time_base)
    for threads in (1, 2, 0):
        path = tmp_path / f"mid{threads}.mp4"
        path.write_bytes((tmp_path / "mid.mp4").read_bytes())
        with open_video(path, threads=threads) as reader, pytest.raises(VideoError) as info:
            reader.read([reader.num_frames - 1])
        assert info.value.reason == "decode error" and not isinstance(info.value, FrameCountChanged)
        where = re.search(rf"\(the decode failed after {len(plain)} frames, in (the packet at ([\d.]+) s|one of the "
                          r"(\d+) packets last sent to its threads, at ([\d.]+) to ([\d.]+) s)", str(info.value))
        if where[2] is not None:  # the damaged packet, on one thread (0 resolves to 1 on one core)
            assert float(where[2]) == round(short_at, 3) and threads != 2
        else:  # on threads, the packets that may be it (its error is reported later)
            assert threads != 1 and float(where[4]) <= round(short_at, 3) <= float(where[5])


def _write_faststart_h264(path: Path, frames: np.ndarray) -> list[int]:
    """An H.264 MP4 of ``frames`` (B-frames, a keyframe every 12) with its index before them, as streamed: where
    each packet's data starts in the file."""
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=25, options={"bf": "3", "b-adapt": "0", "g": "12",
                                                      "x264-params": "scenecut=0"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    with av.open(str(path)) as c:
        return [p.pos for p in c.demux(video=0) if p.size]


def test_the_opencv_reader_refuses_a_file_damaged_in_its_middle_and_reads_every_frame_of_a_cut_one(tmp_path,
                                                                                                   clip_frames):
    """OpenCV's grab fails on a packet its decoder refuses and goes on at the next; the opencv backend took its first
    failure for the file's end. An H.264 MP4 with bytes damaged in its middle read as a video of the frames before
    the damage, silently (a read of a frame past it: 'index out of range', where the pyav backend and `mme check`
    say 'decode error'); one cut short (an interrupted download) lacked the frames its decoder held for reordering,
    which the flush after the cut packet gives. The damaged one is refused as a decode error naming where OpenCV's
    decode failed; the cut one has every frame FFmpeg's decode gives, each pyav's bytes (8-bit 4:2:0 H.264)."""
    full = tmp_path / "full.mp4"
    starts = _write_faststart_h264(full, clip_frames)
    data = full.read_bytes()
    damaged = bytearray(data)  # packets 20 to 22 overwritten, their NAL units' lengths too
    damaged[starts[20]:starts[23]] = np.random.default_rng(1).bytes(starts[23] - starts[20])
    (tmp_path / "damaged.mp4").write_bytes(damaged)
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) * 55 // 100])
    with open_video(full, "opencv") as reader:
        assert reader.num_frames == 50
    with pytest.raises(VideoError) as info:
        open_video(tmp_path / "damaged.mp4", "opencv")
    assert info.value.reason == check_video(tmp_path / "damaged.mp4")["status"] == "decode error"
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'damaged.mp4'))}: decode error \(OpenCV's decode failed at frame "
                        r"\d+ and went on after it; FFmpeg's decode from the start failed after \d+ frames, in the "
                        r"packet at \d+\.\d{3} s: .*\)", str(info.value))
    ref = decode_as_ffmpeg(tmp_path / "cut.mp4")
    with open_video(tmp_path / "cut.mp4") as pyav, open_video(tmp_path / "cut.mp4", "opencv") as reader:
        assert reader.num_frames == pyav.num_frames == len(ref) < 50
        last = np.arange(len(ref) - 3, len(ref))
        np.testing.assert_array_equal(reader.read(last), ref[last])  # by seek, then decoding on past the cut packet
        np.testing.assert_array_equal(reader.read(np.arange(len(ref))), ref)
        np.testing.assert_array_equal(pyav.read(last), ref[last])


def test_the_opencv_reader_refuses_a_file_damaged_over_more_packets_in_a_row_than_it_grabs_past(tmp_path):
    """Damage over more than GRAB_TRIES packets in a row ends OpenCV's grabs as the end of the file does: an H.264
    MP4 damaged so read as a video of the frames before the damage, silently, where the container's header counts
    every frame (the pyav backend and `mme check` say 'decode error'). Where the grabs end before the header's
    count, FFmpeg's decode from the start decides, as after a grab that failed where frames followed."""
    path = tmp_path / "damaged.mp4"
    image = np.random.default_rng(0).integers(100, 164, (48, 64, 3), dtype=np.uint8)
    starts = _write_faststart_h264(path, np.stack([np.roll(image, t, 1) for t in range(GRAB_TRIES + 40)]))
    damaged = bytearray(path.read_bytes())  # every packet from 12 to the last 8 overwritten
    damaged[starts[12]:starts[-8]] = np.random.default_rng(1).bytes(starts[-8] - starts[12])
    path.write_bytes(damaged)
    with pytest.raises(VideoError) as info:
        open_video(path, "opencv")
    assert info.value.reason == check_video(path)["status"] == "decode error"
    assert re.fullmatch(rf"{re.escape(str(path))}: decode error \(OpenCV's decode ended at frame \d+, where the "
                        rf"container's header counts {GRAB_TRIES + 40} frames; FFmpeg's decode from the start "
                        r"failed after \d+ frames, in the packet at \d+\.\d{3} s: .*\)", str(info.value))


def test_a_cut_mpeg_ps_whose_last_packet_is_not_flagged_is_counted_from_the_start(tmp_path, monkeypatch):
    """A cut MPEG-PS file: its demuxer flags the packets before the last one as corrupt, not the last, so the file
    kept its read by seek, `mme check` said 'ok', and frame 37, concealed after other references than in the
    decode from the start, came out 41 levels off it. Any packet flagged corrupt now has the file counted."""
    monkeypatch.chdir(tmp_path)
    frames, _ = affine_video(60, 48, 64, dx=0.7, rot_deg=1.0, seed=4)
    full = write_corpus_file("full.mpg", frames, *CORPUS["mpeg2.mpg"])
    data = full.read_bytes()
    (tmp_path / "cut.mpg").write_bytes(data[: int(len(data) * 0.65)])
    ref = decode_all(tmp_path / "cut.mpg")
    report = check_video(tmp_path / "cut.mpg")
    assert (report["status"], report["seeking"], report["frames"]) == ("suspicious", "sequential", len(ref)), report
    assert "flags" in report["reason"] and "corrupt" in report["reason"]
    for i in range(len(ref) - 4, len(ref)):
        with open_video(tmp_path / "cut.mpg", threads=1) as reader:  # each frame read alone
            np.testing.assert_array_equal(reader.read([i])[0], ref[i])


def test_a_file_cut_at_a_block_whose_header_gives_the_whole_duration_is_suspicious(tmp_path):
    """A Matroska file cut partway (a copy stopped: disk full, an interrupted rsync --inplace, a download saved
    without .part): FFmpeg's demuxer drops the partial block without flagging a packet corrupt and its header keeps
    the whole duration, so `mme check` said 'ok' and a run trained on a third of the video. Frames ending under 90 %
    of the duration the header gives the video now make it 'suspicious', saying both; a whole file does not, nor one
    whose audio runs on past its video or stops before it (the video's own duration: an MP4's track, a Matroska
    track's DURATION tag; the container's, its longest stream's, only where the video is the only stream: an FLV or
    a Matroska file without DURATION tags whose audio ran a tenth past its video was called cut), and a file without
    a duration (a Matroska file written live) is not judged. The frames' end is the latest frame's, not the last
    one's: two MPEG-TS recordings joined, 2 s then 1 s, their timestamps starting again, were called cut at 1 s."""
    frames = np.random.default_rng(0).integers(0, 256, (100, 48, 64, 3), np.uint8)  # 4 s at 25 fps

    def cut(path: Path) -> Path:  # its first third
        data, out = path.read_bytes(), tmp_path / f"cut_{path.name}"
        out.write_bytes(data[: len(data) // 3])
        return out

    def untagged(path: Path) -> Path:  # its tracks without DURATION tags, as muxers other than FFmpeg's write them
        out = tmp_path / f"untagged_{path.name}"
        out.write_bytes(path.read_bytes().replace(b"DURATION", b"DURATIOX"))
        return out

    for whole in (write_video(tmp_path / "v.mkv", frames, quality="low"), write_video(tmp_path / "v.mp4", frames),
                  write_with_audio(tmp_path / "long.mkv", frames, 8.0), write_with_audio(tmp_path / "short.mkv",
                  frames, 3.0), write_with_audio(tmp_path / "long.mp4", frames, 8.0),
                  write_with_audio(tmp_path / "short.mp4", frames, 3.0), untagged(tmp_path / "long.mkv"),
                  write_with_audio(tmp_path / "long.flv", frames, 5.0), untagged(tmp_path / "v.mkv")):
        report = check_video(whole)
        assert (report["status"], report["reason"]) == ("ok", ""), whole
    for whole in (tmp_path / "v.mkv", tmp_path / "long.mkv", tmp_path / "short.mkv", tmp_path / "untagged_v.mkv"):
        ref = decode_all(cut(whole))
        report = check_video(tmp_path / f"cut_{whole.name}", min_frames=16)
        assert (report["status"], report["frames"], report["packets"], report["seeking"]) == (
            "suspicious", len(ref), len(ref), "seek"), report  # nothing flagged corrupt: read by seek, as before
        assert 16 < len(ref) < 50
        assert report["reason"] == (f"cut short? its header says 4.00 s, its frames end at {len(ref) / 25:.2f} s (a "
                                    f"copy or download stopped partway): the rest is missing from every read")
    live = cut(write_corpus_file(tmp_path / "live.mkv", frames, *CORPUS["h264_nocues.mkv"]))
    assert check_video(live)["status"] == "ok"  # no duration in its header: nothing to compare
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(write_video(tmp_path / f"{i}.ts", part, quality="low").read_bytes()
                                for i, part in enumerate((frames[:50], frames[50:75]))))
    report = check_video(joined)
    assert (report["status"], report["frames"], report["reason"]) == (
        "suspicious", 75, "75 packets share 50 timestamps"), report  # read by counting, whole


def test_an_avi_cut_at_a_chunk_is_suspicious_by_the_frame_count_its_header_gives(tmp_path):
    """An AVI cut at a chunk boundary (a copy stopped partway: UCF101's and HMDB51's Xvid files) loses its index
    (idx1, at the file's end), and FFmpeg gives a file shorter than its RIFF header says the header's frame count
    scaled by the share of it the file holds: `mme check` said 'ok' of 50 frames of 60, and of 20 'its header says
    1.40 s' where the header says 60 frames, 2.40 s. An AVI's
    header duration is its frame count at its rate; no whole AVI is called cut (Xvid with B-frames, packed DivX with
    its placeholder chunks, MJPEG, variable frame rate written with empty chunks for the dropped frames, audio
    running on past the video or stopping before it)."""
    frames, _ = affine_video(60, 48, 64, dx=0.7, rot_deg=1.0, seed=4)
    xvid = write_corpus_file(tmp_path / "xvid.avi", frames, *CORPUS["mpeg4_xvid.avi"])
    mjpeg = write_corpus_file(tmp_path / "mjpeg.avi", frames, *CORPUS["mjpeg.avi"])
    for whole in (xvid, mjpeg, write_corpus_file(tmp_path / "divx.avi", frames, *CORPUS["mpeg4_packed_divx.avi"]),
                  write_corpus_file(tmp_path / "vfr.avi", frames, "mjpeg", {}, "vfr", "yuvj420p"),
                  write_with_audio(tmp_path / "long.avi", frames, 4.0),
                  write_with_audio(tmp_path / "short.avi", frames, 1.0)):
        assert "cut short" not in check_video(whole)["reason"], whole
    for whole in (xvid, mjpeg):
        with av.open(str(whole)) as c:
            chunks = [p.pos for p in c.demux(video=0) if p.size]
        for k in (20, 50):
            cut = tmp_path / f"cut{k}_{whole.name}"
            cut.write_bytes(whole.read_bytes()[: chunks[k]])
            report = check_video(cut)
            assert (report["status"], report["frames"]) == ("suspicious", k), report  # before: 'ok' of 50 frames
            said = re.fullmatch(r"cut short\? its header says 2\.40 s, its frames end at (\d\.\d\d) s \(a copy or "
                                r"download stopped partway\): the rest is missing from every read", report["reason"])
            assert said and float(said[1]) in (k / 25, (k + 1) / 25), report  # (Xvid's B-frames: a frame later)


def test_a_file_none_of_whose_packets_decodes_is_unreadable_to_check_as_to_a_run(tmp_path):
    """An H.264 stream cut before its only keyframe: `mme check` called it 'short' ("0 frames, fewer than 1"),
    where a run's open of it says 'unreadable' (no decodable video frames). Its decode gives no first frame when
    it is indexed, so it is counted there, and the open says so."""
    frames = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), np.uint8)
    cut = cut_mid_gop(write_keyint_video(tmp_path / "one.mp4", frames, "infinite"), tmp_path / "nokey.mkv", drop=1)
    report = check_video(cut)
    assert (report["status"], report["frames"]) == ("unreadable", 0), report
    assert report["reason"] == f"{cut}: unreadable (no decodable video frames (19 packets))"
    with pytest.raises(VideoError, match=r"no decodable video frames \(19 packets\)"):
        open_video(cut)


def test_a_file_that_ends_before_any_frame_as_it_is_opened_says_so_plainly(tmp_path):
    """A Matroska file of a video track and no frame (or one cut inside its header, where FFmpeg meets its end: 40
    bytes here) was `unreadable ([Errno 541478725] End of file: '/v/zero.mkv')`: PyAV's EOFError as it is. It says
    there is no frame, and why."""
    header = tmp_path / "zero.mkv"
    with av.open(str(header), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # (the header written, no packet)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(write_video(tmp_path / "whole.mkv", affine_video(4, 32, 32)[0]).read_bytes()[:40])
    for path in (header, cut):
        report = check_video(path)
        assert (report["status"], report["reason"]) == ("unreadable", (
            f"{path}: unreadable (no decodable video frames: FFmpeg met the file's end as it opened it, before any "
            "frame; its video track is empty, or it is cut short)")), report


@pytest.mark.parametrize("frames", [1, 5])
def test_check_counts_a_short_video_in_words(tmp_path, frames):
    """`mme check` of a video under --min-frames: 'short', its count in words ("1 frames, fewer than 16" before)."""
    path = write_video(tmp_path / "v.mkv", affine_video(frames, 32, 32, dx=1.0)[0])
    report = check_video(path, min_frames=16)
    assert (report["status"], report["frames"]) == ("short", frames), report
    assert report["reason"] == f"{frames} frame{'s' * (frames > 1)}, fewer than 16"


def test_check_of_a_short_file_reports_its_damage_rotation_or_suspicion_and_its_count(tmp_path, monkeypatch):
    """`mme check --min-frames N` reported a file under N frames 'short' whatever else it found: a file with a frame
    FFmpeg concealed, a phone video turned by its display matrix or a cut file read sequentially was 'short' alone
    (its damage, its turn, its cut unsaid), though the default check reports them. The more serious status wins, its
    reason ending with the count; a file that is only short stays 'short'."""
    monkeypatch.chdir(tmp_path)
    frames, _ = affine_video(30, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_corpus_file(tmp_path / "a.mp4", frames, "libx264",
                             {"x264-params": "keyint=20:bframes=0:scenecut=0", "crf": "20"}, "cfr", "yuv420p", None)
    with av.open(str(path)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(video=0) if p.size][5]
    data = bytearray(path.read_bytes())
    data[pos + size // 2:pos + size // 2 + 8] = bytes(8)  # P-frame 5 damaged: FFmpeg conceals it
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    phone = write_video(tmp_path / "phone.mp4", frames, display=matrix(*TURNS["cw 90"]))
    full = write_corpus_file("full.mpg", affine_video(60, 48, 64, dx=0.7, rot_deg=1.0, seed=4)[0], *CORPUS["mpeg2.mpg"])
    (tmp_path / "cut.mpg").write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.65)])  # read sequentially
    for file, status, start in ((damaged, "damaged", "FFmpeg decoded 1 frame with errors and concealed them: [5]"),
                                (phone, "rotated", "its display matrix turns"),
                                (tmp_path / "cut.mpg", "suspicious", "the demuxer flags")):
        alone = check_video(file)
        assert (alone["status"], alone["reason"][:len(start)]) == (status, start), alone
        n = alone["frames"]
        report = check_video(file, min_frames=61)
        assert (report["status"], report["frames"]) == (status, n), report
        assert report["reason"] == f"{alone['reason']}; {n} frames, fewer than 61"
    assert check_video(path, min_frames=61)["status"] == "short"


@pytest.mark.parametrize("width, height, why", [
    (64, 1, "its frames are 64x1, whose short side is under 16 px"), (2, 2, "its frames are 2x2, whose short side is "
     "under 16 px"), (5, 7, "its frames are 5x7, whose short side is under 16 px"), (40, 15, "its frames are 40x15, "
     "whose short side is under 16 px"), (16, 64, ""), (320, 16, "")])
def test_frames_too_small_to_train_on_are_unreadable_to_check_as_to_a_run(tmp_path, width, height, why):
    """A video 1-2 px on a side passed `mme check` as 'ok' and was trained on as blank clips (every crop one source
    pixel stretched to the clip); `mme extract` made a 14336x224 working frame of a 64x1 one. A short side under
    MIN_SHORT_SIDE is refused at the open, by every reader of the file; a wide frame is not."""
    path = write_video(tmp_path / "v.mkv", affine_video(4, height, width, dx=1.0)[0])
    report = check_video(path)
    if not why:
        assert report["status"] == "ok", report
        with open_video(path) as reader:
            assert reader.size == (width, height)
        return
    assert (report["status"], report["reason"]) == ("unreadable", f"{path}: unreadable ({why})"), report
    with pytest.raises(VideoError, match=re.escape(why)) as raised:
        open_video(path)
    assert raised.value.reason == "unreadable"


@pytest.mark.skipif(importlib.util.find_spec("decord") is None, reason="decord not installed (optional backend)")
def test_decord_backend_when_installed(tmp_path, clip_frames):
    path = write_video(tmp_path / "a.mp4", clip_frames)
    ref = decode_all(path)
    with open_video(path, "decord") as reader:
        assert (reader.num_frames, reader.size) == (50, (64, 48))
        np.testing.assert_array_equal(reader.read([49, 3, 17]), ref[[49, 3, 17]])
    (tmp_path / "bad.mp4").write_text("not a video" * 20)
    with pytest.raises(VideoError, match="bad.mp4: unreadable"):
        open_video(tmp_path / "bad.mp4", "decord")


PIXEL_FORMATS = [("libx264", "yuv420p", (198, 334)), ("ffv1", "yuv420p", (197, 333)), ("libx264", "yuvj420p", (48, 64)),
                 ("libx264", "yuv422p10le", (48, 66)), ("libx264", "gray", (50, 64)), ("ffv1", "yuv444p", (45, 61)),
                 ("ffv1", "bgr0", (48, 64)), ("libvpx-vp9", "yuv440p", (480, 640))]


@pytest.mark.parametrize("codec,pix_fmt,size", PIXEL_FORMATS, ids=[f"{c}-{p}" for c, p, _ in PIXEL_FORMATS])
def test_rgb_conversion_equals_to_ndarray_on_any_thread_count(tmp_path, codec, pix_fmt, size):
    """The reader converts frames with one swscale context for all of them, on its decoder's threads: the bytes are
    PyAV's ``to_ndarray(format="rgb24")`` of each frame, for every pixel format, range and odd size."""
    H, W = size
    frames, _ = affine_video(6, H, W, dx=1.3, rot_deg=2.0, seed=5)
    path = tmp_path / f"{pix_fmt}.mkv"
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, pix_fmt
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    ref = decode_all(path)
    assert ref.shape == (6, H, W, 3)
    for threads in (1, 0, 3):
        with open_video(path, threads=threads) as reader:
            np.testing.assert_array_equal(reader.read(np.arange(6)), ref, err_msg=f"{threads} threads")
            np.testing.assert_array_equal(reader.read([4, 1]), ref[[4, 1]], err_msg=f"{threads} threads, seeking")


@pytest.mark.parametrize("matrix,name", [(8, "YCgCo"), (10, "BT.2020 CL"), (14, "ICtCp")])
def test_a_colour_matrix_ffmpeg_cannot_convert_to_rgb_is_refused_naming_it_not_as_a_decode_error(tmp_path,
                                                                                                clip_frames,
                                                                                                matrix, name,
                                                                                                monkeypatch):
    """An H.264 stream tagged with a colour matrix swscale does not convert to RGB decodes, and its conversion fails
    (ENOTSUP): the file is unreadable, naming the matrix, in a read and in `mme check` (before: "decode error
    ([Errno 95] Operation not supported)"). No other matrix is put in its place: that would give wrong colours. The
    opencv backend says the same (before: "decode error (frame 0 could not be decoded)", OpenCV giving no why)."""
    path = tmp_path / "tagged.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.colorspace = matrix
        for f in clip_frames[:4]:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))  # the decode works
        assert (frame.colorspace, frame.width, frame.height) == (matrix, 64, 48)
        with pytest.raises(av.error.FFmpegError) as raised:
            frame.to_ndarray(format="rgb24")
        assert raised.value.errno == errno.ENOTSUP
    reason = f"unreadable (FFmpeg cannot convert its colour matrix {name} (yuv420p) to RGB)"
    for backend in ("pyav", "opencv"):
        with open_video(path, backend) as reader, pytest.raises(VideoError) as refused:
            reader.read([0])
        assert (str(refused.value), refused.value.reason) == (f"{path}: {reason}", "unreadable"), backend
    check = check_video(path)
    assert (check["status"], check["reason"]) == ("unreadable", f"{path}: {reason}")
    monkeypatch.chdir(tmp_path)  # opened by a relative name, read from another working folder: the same refusal
    with open_video(path.name, "opencv") as reader:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        with pytest.raises(VideoError) as refused:
            reader.read([0])
    assert str(refused.value) == f"{path.name}: {reason}"  # (was: decode error, its first frame looked for here)


def test_a_video_whose_frame_size_changes_is_refused_naming_both_sizes(tmp_path, clip_frames):
    """Two H.264 streams of other sizes joined into one Matroska file (concatenated recordings, captures): every
    read that meets the second size is a VideoError naming the file and both sizes, never frames of a size the
    crop was not made for; `mme check` lists the file as unreadable."""

    parts = []
    for k, (H, W) in enumerate([(48, 64), (64, 80)]):
        with av.open(str(tmp_path / f"{k}.h264"), "w", format="h264") as c:
            s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            for f in clip_frames[:10]:  # PyAV scales each to the stream's size
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            c.mux(s.encode())
        parts.append((tmp_path / f"{k}.h264").read_bytes())
    (tmp_path / "joined.h264").write_bytes(b"".join(parts))
    path = tmp_path / "joined.mkv"
    with av.open(str(tmp_path / "joined.h264")) as i, av.open(str(path), "w") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for n, packet in enumerate(p for p in i.demux(video=0) if p.size):
            packet.stream, packet.pts, packet.dts, packet.time_base = out, n, n, Fraction(1, 25)
            o.mux(packet)
    for idx in ([2, 15], [15], [19]):
        with open_video(path) as reader, pytest.raises(VideoError, match=r"joined\.mkv: unreadable \(its frame "
                                                                          r"size changes from 64x48 to 80x64\)"):
            reader.read(idx)
    with open_video(path) as reader:
        assert reader.read([0, 9]).shape == (2, 48, 64, 3)
    assert check_video(path)["status"] == "unreadable"


def test_a_read_refused_part_way_leaves_the_next_read_its_frame(tmp_path, clip_frames):
    """A raw H.264 stream (read by counting) joined from recordings of 64x48, 80x64 and 64x48 again: the read of
    frame 10 is refused at its size, and the next read on that reader decoded on from there, one frame behind its
    count: frame 21 came back as frame 20. A read that fails leaves the next one to reopen the file."""
    parts = []
    for k, (H, W) in enumerate([(48, 64), (64, 80), (48, 64)]):
        with av.open(str(tmp_path / f"{k}.h264"), "w", format="h264") as c:
            s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            for f in clip_frames[10 * k: 10 * k + 10]:
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            c.mux(s.encode())
        parts.append((tmp_path / f"{k}.h264").read_bytes())
    path = tmp_path / "joined.h264"
    path.write_bytes(b"".join(parts))
    with av.open(str(path)) as c:
        ref = [frame.to_ndarray(format="rgb24") for frame in c.decode(video=0)]
    with open_video(path, threads=1) as reader:
        assert reader.seeking == "sequential"
        with pytest.raises(VideoError, match="frame size changes"):
            reader.read([10])
        np.testing.assert_array_equal(reader.read([20])[0], ref[20])


GPU_LAYOUTS = [("libx264", "yuv420p", "nv12"), ("libx264", "yuvj420p", "nv12"), ("mpeg4", "yuv420p", "nv12"),
               ("libx264", "yuv422p", "nv16"), ("libx264", "yuv444p", "nv24"), ("libx264", "yuv420p10le", "p010le")]


@pytest.mark.parametrize("codec,pix_fmt,downloaded", GPU_LAYOUTS, ids=[f"{c}-{p}" for c, p, _ in GPU_LAYOUTS])
def test_frames_decoded_on_a_gpu_convert_to_the_bytes_of_the_cpu_decode(tmp_path, codec, pix_fmt, downloaded):
    """NVDEC's frames come back to system memory as NV12 (8-bit 4:2:0), NV16 (4:2:2), NV24 (4:4:4) or P010 (10-bit).
    A reader that decodes on a GPU (``data.backend=pyav-cuda``) first makes the semi-planar ones the CPU decoder's
    planar layout (yuv420p, yuv422p, yuv444p), so that a bit-exact decode gives the CPU decode's bytes; straight to
    RGB they differ (here by up to tens of levels; NV16 was converted straight, up to 61 levels). Simulated on the
    CPU: each frame of the CPU decode, in the layout a GPU downloads, through the reader's conversion."""
    frames, _ = affine_video(6, 48, 64, dx=1.3, rot_deg=2.0, seed=5)
    path = tmp_path / f"{pix_fmt}.mkv"
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    straight = []
    rgb, planar = VideoReformatter(), VideoReformatter()  # as a reader made with PyAVReader(gpu=...) holds them
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            ref = frame.to_ndarray(format="rgb24")
            down = frame.reformat(format=downloaded)
            np.testing.assert_array_equal(rgb24(down, rgb, planar), ref)
            straight.append(int(np.abs(down.to_ndarray(format="rgb24").astype(np.int16) - ref).max()))
    subsampled = downloaded in ("nv12", "nv16")  # (NV24's chroma, not upsampled, converts alike either way)
    assert len(straight) == 6 and (max(straight) > 0) == subsampled, straight


THREADED_READS = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from mme.data.video import open_video
path, index_dir, ref = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
reader = open_video(path, threads=1, index_dir=index_dir)
rng = np.random.default_rng(0)
reads = [np.sort(rng.choice(len(ref), 8, replace=False)) for _ in range(48)]
with ThreadPoolExecutor(4) as pool:
    same = list(pool.map(lambda idx: bool(np.array_equal(reader.read(idx), ref[idx])), reads))
print(json.dumps({"same": same, "seeking": reader.seeking, "reason": reader.seeking_reason}))
"""


def test_one_reader_read_from_four_threads_gives_the_frames_of_a_sequential_decode_and_keeps_seeking(tmp_path,
                                                                                                     clip_frames):
    """A reader shared by threads (a thread pool's reads) reads once at a time: before, the reads decoded from one
    container at once, which crashed the process (SIGSEGV) or gave other frames, and the disagreement turned the file
    sequential in the index folder for good. Run in a process of its own, which a crash ends alone."""
    path = tmp_path / "gop.mp4"
    write_gop_video(path, clip_frames, "libx264", {"preset": "medium", "g": "8", "bf": "3", "crf": "20"})
    np.save(tmp_path / "ref.npy", decode_all(path))
    index_dir = tmp_path / "index"
    done = subprocess.run([sys.executable, "-c", THREADED_READS, str(path), str(index_dir), str(tmp_path / "ref.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["same"] == [True] * 48 and result["seeking"] == "seek", result
    pyav_reader._pyav_index.cache_clear()
    with open_video(path, index_dir=index_dir) as reader:  # the stored verdict
        assert reader.seeking == "seek" and reader.seeking_reason == ""
        np.testing.assert_array_equal(reader.read([49, 3, 20]), decode_all(path)[[49, 3, 20]])


def test_a_reader_is_freed_when_its_last_reference_goes(tmp_path, clip_frames):
    """No reference cycle keeps a reader (its decode included) for the garbage collector: run in a forked loader
    worker, the collector would free a reader made before the fork, and freeing its swscale context there hangs
    on a thread pool that did not survive the fork."""
    path = tmp_path / "a.mp4"
    write_gop_video(path, clip_frames, *CASES[0][1:])
    gc.disable()
    try:
        for threads in (0, 1):
            reader = open_video(path, threads=threads)
            reader.read([40, 3])
            reader.read([49])  # proven frames left to the decoder to drop, then a decode past them
            gone = weakref.ref(reader)
            del reader
            assert gone() is None, f"{threads} threads"
    finally:
        gc.enable()


F = 1 << 16  # 1.0 in a display matrix's 16.16 fixed point
TURNS = {"ccw 90": (0, -F, F, 0), "cw 90": (0, F, -F, 0), "180": (-F, 0, 0, -F), "left to right": (-F, 0, 0, F),
         "top to bottom": (F, 0, 0, -F), "transpose": (0, F, F, 0), "anti-transpose": (0, -F, -F, 0)}
"""(a, b, c, d) of display matrices: the right-angle turns and mirrors."""


def matrix(a, b, c, d):
    return [a, b, 0, c, d, 0, 0, 0, 1 << 30]


def displayed(coded: np.ndarray, a, b, c, d) -> np.ndarray:
    """Frames as a display matrix shows them, pixel by pixel from FFmpeg's definition (libavutil/display.h): the
    coded pixel (p, q) goes to (a p + c q, b p + d q), shifted to start at 0."""
    H, W = coded.shape[1:3]
    q, p = np.mgrid[0:H, 0:W]
    x, y = np.sign(a) * p + np.sign(c) * q, np.sign(b) * p + np.sign(d) * q
    x, y = x - x.min(), y - y.min()
    out = np.zeros((len(coded), y.max() + 1, x.max() + 1, 3), np.uint8)
    out[:, y, x] = coded[:, q, p]
    return out


@pytest.mark.parametrize("turn", list(TURNS))
@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_display_orientation_shows_frames_as_the_display_matrix_maps_them(tmp_path, clip_frames, turn, backend):
    """A phone video's display matrix turns or mirrors its frames for display. Every backend reads the coded
    frames (OpenCV's own turning, which it applies by default, is off), and ``orientation='display'`` returns them
    as the matrix maps them, with the size to match."""
    path = write_video(tmp_path / "phone.mp4", clip_frames[:12], display=matrix(*TURNS[turn]))
    ref = decode_all(path)
    idx = [11, 0, 5, 5]
    with open_video(path, backend) as reader:
        assert reader.size == (64, 48)
        coded = reader.read(idx)
    with open_video(path, backend, orientation="display") as reader:
        size, shown = reader.size, reader.read(idx)
        corner = reader.read(idx, each=lambda f: f[:8, :16])  # applied to each frame as shown, as it is decoded
    expected = displayed(ref[idx], *TURNS[turn])
    assert size == (expected.shape[2], expected.shape[1]) and shown.shape == expected.shape
    np.testing.assert_array_equal(corner, shown[:, :8, :16])
    if backend == "pyav":
        np.testing.assert_array_equal(coded, ref[idx])
        np.testing.assert_array_equal(shown, expected)
    else:  # OpenCV's YUV->RGB conversion rounds its own way
        assert np.abs(coded.astype(int) - ref[idx]).mean() < 2 and np.abs(shown.astype(int) - expected).mean() < 2


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_display_orientation_turns_as_opencv_does(tmp_path, clip_frames, degrees):
    """OpenCV turns frames by the display matrix's angle on its own (it ignores mirrors): for pure turns it shows
    what ``orientation='display'`` returns."""
    path = tmp_path / "phone.mp4"
    write_video(path, clip_frames[:4], display=matrix(*{90: TURNS["ccw 90"], -90: TURNS["cw 90"],
                                                        180: TURNS["180"]}[degrees]))
    cap = cv2.VideoCapture(str(path))
    theirs = np.stack([cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(4)])
    cap.release()
    with open_video(path, orientation="display") as reader:
        ours = reader.read(range(4))
    assert ours.shape == theirs.shape == ((4, 64, 48, 3) if degrees != 180 else (4, 48, 64, 3))
    assert np.abs(ours.astype(int) - theirs).mean() < 2


def test_a_display_matrix_that_is_no_right_angle_turn_is_refused(tmp_path, clip_frames):
    """An oblique turn (45 degrees) cannot be shown as a frame of whole pixels: ``orientation='display'`` refuses
    the file, naming it and the matrix; its coded frames still read."""
    k = round(F * 0.5 ** 0.5)
    path = write_video(tmp_path / "tilted.mp4", clip_frames[:4], display=matrix(k, -k, k, k))
    with pytest.raises(VideoError, match=r"tilted\.mp4: unreadable \(its display matrix \[.*\] is not a turn by a "
                                         r"right angle or a mirror, which data.orientation=display applies\)"):
        open_video(path, orientation="display")
    with open_video(path) as reader:
        assert reader.read([3]).shape == (1, 48, 64, 3)


def test_the_display_matrix_is_kept_with_the_index(tmp_path, clip_frames, monkeypatch):
    """The matrix is read from a decoded frame once per file and kept with its frame index (``data.index_dir``),
    so another process opens the file turned without decoding a frame first."""
    path = write_video(tmp_path / "phone.mp4", clip_frames[:4], display=matrix(*TURNS["cw 90"]))
    with open_video(path, orientation="display", index_dir=tmp_path / "index") as reader:
        first = reader.read([2])
    pyav_reader._pyav_index.cache_clear()  # as in a new process

    def no_decode(path):
        raise AssertionError("the display matrix was read again")

    monkeypatch.setattr(pyav_reader, "read_display_matrix", no_decode)
    with open_video(path, orientation="display", index_dir=tmp_path / "index") as reader:
        assert reader.size == (48, 64)
        np.testing.assert_array_equal(reader.read([2]), first)


def test_the_display_matrix_is_the_one_of_the_first_frame_the_index_decodes(tmp_path, clip_frames, monkeypatch):
    """The index's demux decodes the file's first frame (to find where its decode starts); its display matrix was
    dropped there and read by a decode of its own, which opened the file once more, for every file a process opened
    turned (``data.orientation=display``) and every file `mme check` reported on. Now the index keeps it: a phone
    video opened turned is opened twice (the index's demux, the reader's decode), and `mme check` reports its
    rotation with no decode of the matrix's own."""
    path = write_video(tmp_path / "phone.mp4", clip_frames[:12], display=matrix(*TURNS["cw 90"]))
    ref = decode_all(path)
    opened = []
    plain = pyav_reader.open_container
    monkeypatch.setattr(pyav_reader, "open_container", lambda p, **options: opened.append(p) or plain(p, **options))
    with open_video(path, orientation="display") as reader:
        assert reader.size == (48, 64)
        np.testing.assert_array_equal(reader.read([0, 11]), displayed(ref[[0, 11]], *TURNS["cw 90"]))
    assert opened == [str(path)] * 2

    def no_decode(path):
        raise AssertionError("the display matrix was read by a decode of its own")

    monkeypatch.setattr(pyav_reader, "read_display_matrix", no_decode)
    pyav_reader._pyav_index.cache_clear()  # as in another process
    check = check_video(path)
    assert (check["status"], check["rotation"], check["display"]) == ("rotated", -90, tuple(matrix(*TURNS["cw 90"])))


def test_a_process_saving_its_index_keeps_what_another_one_stored(tmp_path, clip_frames):
    """Two processes that loaded a file's index: the one that saves last (after proving fewer frames) keeps the
    other's proven frames and the display matrix in the store."""
    path = write_video(tmp_path / "phone.mp4", clip_frames[:12], display=matrix(*TURNS["cw 90"]))
    index_dir = tmp_path / "index"
    with open_video(path, index_dir=index_dir):
        pass  # the index is stored, with the display matrix of the first frame its demux decoded
    older = pyav_reader._pyav_index(_version_of(path), str(index_dir))
    pyav_reader._pyav_index.cache_clear()  # another process
    with open_video(path, orientation="display", index_dir=index_dir) as reader:
        reader.read([11])
    stored = pyav_reader._load_index(older.store)
    assert stored.display is not None and stored.proven == 12
    older.proven = 3  # the older process proved a few frames and saves
    older.save()
    stored = pyav_reader._load_index(older.store)
    assert stored.display == tuple(matrix(*TURNS["cw 90"])) and stored.proven == 12


@pytest.mark.parametrize("other", ["turns sequential", "proves more"])
def test_a_save_waits_for_another_process_writing_the_index_and_keeps_what_it_wrote(tmp_path, clip_frames,
                                                                                    monkeypatch, other):
    """A save read the stored index, joined it and replaced it without a lock: another process's write landing
    between the read and the replace was lost (a sequential verdict turned back to seek, proven frames lowered).
    Here the first save pauses before its write, standing for any scheduling delay, while the other process saves."""
    path = write_video(tmp_path / "v.mp4", clip_frames[:12])
    index_dir = tmp_path / "index"
    with open_video(path, index_dir=index_dir):
        pass  # the index is stored, seek, proven 0
    first = pyav_reader._pyav_index(_version_of(path), str(index_dir))
    second = pyav_reader._load_index(first.store)  # another process's copy
    first.proven, writing = 3, threading.Event()
    real = pyav_reader.atomic_write_text

    def paused(file, text):
        if threading.current_thread() is not threading.main_thread():
            writing.set()  # the first save has read the store
            time.sleep(0.5)
        real(file, text)

    monkeypatch.setattr(pyav_reader, "atomic_write_text", paused)
    saving = threading.Thread(target=first.save)
    saving.start()
    assert writing.wait(10)
    if other == "turns sequential":
        second.mode, second.reason = "sequential", "found out by the other process"
    else:
        second.proven = 12
    second.save()
    saving.join()
    stored = pyav_reader._load_index(first.store)
    if other == "turns sequential":
        assert (stored.mode, stored.reason) == ("sequential", "found out by the other process")
    else:
        assert (stored.mode, stored.proven) == ("seek", 12)


CLOSED_READS = """
import json, sys
from mme.data.video import open_video
said = {}
for backend in ("pyav", "opencv"):
    reader = open_video(sys.argv[1], backend=backend)
    first = reader.read([5, 39]).shape
    reader.read([0, 1])
    reader.close()
    reader.close()  # (twice: nothing more)
    uses = {"read": lambda: reader.read([2])}  # (the next frame: PyAV's freed decoder went on, SIGSEGV)
    if backend == "pyav":
        uses.update(check=reader.check, sample_aspect=reader.sample_aspect, other_videos=reader.other_videos,
                    hdr_colours=reader.hdr_colours)
    for name, use in uses.items():
        try:
            use()
            said[backend + " " + name] = None
        except ValueError as e:
            said[backend + " " + name] = str(e)
    with open_video(sys.argv[1], backend=backend) as again:
        said[backend + " again"] = list(again.read([5, 39]).shape) == list(first)
print(json.dumps(said))
"""


def test_a_closed_reader_refuses_a_read_in_a_line_instead_of_crashing_the_process(tmp_path, clip_frames):
    """A read of a closed reader (a script's reader used after its ``with`` block): before, PyAV's read of the
    frame after the last one decoded crashed the process (SIGSEGV; others reopened and read without a word), and
    OpenCV's gave a decode error or frames. Run in a process of its own, which a crash ends alone."""
    path = tmp_path / "gop.mp4"
    write_gop_video(path, clip_frames, "libx264", {"g": "8", "bf": "3"})
    done = subprocess.run([sys.executable, "-c", CLOSED_READS, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    said = json.loads(done.stdout)
    refusal = f"{path}: the reader of this video was closed (open it again to read it)"
    assert said == {"pyav read": refusal, "pyav check": refusal, "pyav sample_aspect": refusal,
                    "pyav other_videos": refusal, "pyav hdr_colours": refusal, "pyav again": True,
                    "opencv read": refusal, "opencv again": True}


def test_a_lock_file_of_another_user_in_a_shared_index_folder_still_locks_a_save(tmp_path, clip_frames, monkeypatch):
    """An index folder shared by users (made writable to all): the lock a save takes was opened for writing, so one
    user's .lock (0644, another owner: refused as for any user but root, which the test stands in for by refusing a
    write open of it) dropped every other user's saves, 'cannot keep frame indices', though the folder is theirs to
    write. A lock needs the file open for reading alone."""
    path = write_video(tmp_path / "v.mp4", clip_frames[:12])
    index_dir = tmp_path / "index"
    with open_video(path, index_dir=index_dir):
        pass
    [stored] = index_dir.rglob("*.json")
    [lock] = index_dir.rglob(".lock")
    stored.unlink()  # as if another user had made only the folder's lock
    real_open = os.open

    def as_another_user(file, flags, *args):
        if Path(file) == lock and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", as_another_user)
    pyav_reader._pyav_index.cache_clear()  # as in a new process
    with open_video(path, index_dir=index_dir):
        pass
    assert [p.name for p in index_dir.rglob("*.json")] == [stored.name]


def _read_in_a_forked_child(path, index_dir, frames, before_join=lambda: None) -> dict | None:
    """Open ``path`` and read ``frames`` in a child forked now (as a DataLoader worker forks on Linux): its frames
    and verdict, None where it did not end within 30 s (killed) of ``before_join()``, called once it is forked."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    results = fork.SimpleQueue()

    def child():
        with open_video(path, index_dir=index_dir) as reader:
            results.put({"frames": reader.read(frames), "seeking": reader.seeking})

    worker = fork.Process(target=child, daemon=True)
    # Forked as start_workers forks loader workers, this process's objects frozen: the child's collections would free
    # the garbage earlier tests left here (a decoder, a reader's or PyAV's own, in a reference cycle with a
    # pytest.raises ExceptionInfo), and freeing its swscale context in the child hangs on a thread pool that did not
    # survive the fork (pthread_cond_destroy in avpriv_slicethread_free).
    gc.freeze()
    try:
        worker.start()
    finally:
        gc.unfreeze()
    before_join()
    worker.join(30)
    if worker.is_alive():
        worker.kill()
        worker.join()
        return None
    return results.get() if not results.empty() else {"exitcode": worker.exitcode}


@pytest.mark.parametrize("paused", ["waiting for the folder's lock", "holding the folder's lock"])
def test_a_child_forked_while_a_thread_saves_the_index_reads_the_file(tmp_path, clip_frames, monkeypatch, paused):
    """A thread of the parent changing a file's index (here a save, waiting for another process's save to end, or
    inside its own, under the index folder's lock file; a read proving frames or turning the verdict alike) held its
    lock at the moment a loader worker forked: the child's copy of the lock was held for good, by a thread that does
    not exist there, and the child hung at its first read of the file. Forked inside the save, the child's copy of
    the parent's descriptor of the lock file held that ``flock`` after the parent's save ended, so the child's own
    save waited for it forever (and the parent's next save there, until the child ended)."""
    path = write_video(tmp_path / "v.mp4", clip_frames[:12])
    index_dir = tmp_path / "index"
    with open_video(path, index_dir=index_dir):
        pass  # the index is stored and cached in this process
    index = pyav_reader._pyav_index(_version_of(path), str(index_dir))
    saving, go_on = threading.Event(), threading.Event()
    owner, name = (pyav_reader, "exclusive_lock") if paused.startswith("waiting") else (pyav_reader._Index,
                                                                                         "_join_and_write")
    real = getattr(owner, name)

    def waited(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            saving.set()
            go_on.wait(120)
        return real(*args, **kwargs)

    def parents_save_ends():
        time.sleep(0.5)  # (the child reads meanwhile; its save waits for the parent's, held)
        if paused.startswith("holding"):  # the child's copy of the descriptor left the parent its lock
            fd = os.open(index.store.parent / pyav_reader.INDEX_LOCK, os.O_RDONLY)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        go_on.set()
        thread.join()

    monkeypatch.setattr(owner, name, waited)
    index.proven = 3
    thread = threading.Thread(target=index.save)
    thread.start()
    try:
        assert saving.wait(10)  # the thread holds the index's lock
        result = _read_in_a_forked_child(path, index_dir, [11, 0, 5], parents_save_ends)
    finally:
        go_on.set()
        thread.join()
    assert result is not None, "the forked child hung at its first read of the file, or at its save"
    np.testing.assert_array_equal(result["frames"], decode_all(path)[[11, 0, 5]])
    assert result["seeking"] == "seek"
    assert pyav_reader._load_index(index.store).proven == 12  # the child's read proved them all, the save joined it


def test_processes_of_two_index_versions_sharing_a_folder_keep_an_index_each(tmp_path, clip_frames, monkeypatch):
    """An mme of another index version (one that indexes files otherwise) sharing data.index_dir: both stored the
    file's index in one file, each taking the other's as not of its version, so each process indexed the file
    again and overwrote the other's. Now each version keeps its own, read by its later processes, in a folder of
    its version (the version was in the hashed file name alone: an older version's files could not be told apart
    from the current one's, to remove them)."""
    path = write_video(tmp_path / "a.mp4", clip_frames[:12])
    made, make = [], pyav_reader._make_index
    monkeypatch.setattr(pyav_reader, "_make_index", lambda p: made.append(pyav_reader.INDEX_VERSION) or make(p))
    version = pyav_reader.INDEX_VERSION
    for each in (version, version - 1, version, version - 1):  # processes of either version, by turns
        monkeypatch.setattr(pyav_reader, "INDEX_VERSION", each)
        pyav_reader._pyav_index.cache_clear()
        with open_video(path, index_dir=tmp_path / "index") as reader:
            np.testing.assert_array_equal(reader.read([7]), decode_all(path)[[7]])
    assert made == [version, version - 1]
    stored = {(p.relative_to(tmp_path / "index").parts[0], json.loads(p.read_text())["version"])
              for p in (tmp_path / "index").rglob("*.json")}
    assert len(list((tmp_path / "index").rglob("*.json"))) == 2
    assert stored == {(f"v{version - 1}", version - 1), (f"v{version}", version)}


def test_an_index_folder_holding_another_index_version_says_so_once(tmp_path, clip_frames, caplog):
    """data.index_dir / --index-dir holding the indices of an earlier mme (DIR/v12/ beside this version's folder)
    re-indexed every file in silence. It is said once per process and folder (INFO), naming the versions this mme
    does not read and their folders to remove, where a job takes the folder (mme check, a dataset: in the main
    process, not by each loader worker's reads, once per worker); a folder of this version alone says nothing. The
    indices of an mme before the v<N>/ folders (index versions 1 to 6: DIR/<2 hex>/<38 hex>.json) were not said: they
    are, and a folder of the user's named by two hex digits that holds no such file is not taken for them."""
    from mme.data.lists import check_lists

    version = pyav_reader.INDEX_VERSION
    a = write_video(tmp_path / "a.mp4", clip_frames[:6])
    write_video(tmp_path / "b.mp4", clip_frames[:8])
    old = tmp_path / "index" / f"v{version - 2}" / "ab"
    old.mkdir(parents=True)
    (tmp_path / "several" / f"v{version - 2}").mkdir(parents=True)  # (several versions: "those versions")
    (tmp_path / "several" / f"v{version - 1}").mkdir()
    (old / "cd.json").write_text(json.dumps({"version": version - 2}))
    (tmp_path / "index" / "v1x").mkdir()  # not a version's folder
    for name in ("3f", "0a"):  # an mme before the v<N>/ folders kept its indices so
        (tmp_path / "index" / name).mkdir()
        (tmp_path / "index" / name / f"{'e' * 38}.json").write_text(json.dumps({"version": 3}))
    (tmp_path / "index" / "ee").mkdir()  # the user's folders of such names
    (tmp_path / "index" / "ee" / "notes.json").write_text("{}")
    (tmp_path / "index" / "ff").write_text("")
    (tmp_path / "own" / f"v{version}").mkdir(parents=True)
    (tmp_path / "own" / "ab").mkdir()
    (tmp_path / "own" / "ab" / f"{'e' * 38}.json.bak").write_text("{}")
    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\n")
    (tmp_path / "link").symlink_to(tmp_path / "index")
    with caplog.at_level(logging.INFO, logger="mme"):
        for index_dir in ("index", "own", "link"):  # (link: the same folder)
            report = check_lists([tmp_path / "list.txt"], tmp_path, tmp_path / f"{index_dir}.json",
                                 min_frames=4, index_dir=tmp_path / index_dir, overwrite=True)
            assert report["counts"] == {"ok": 2}, report
        with open_video(a, index_dir=tmp_path / "index") as reader:  # (a read alone: not said again)
            assert reader.num_frames == len(decode_all(a))
        pyav_reader._note_other_versions(str(tmp_path / "several"))
    *said, several = [r.getMessage() for r in caplog.records if "index version" in r.getMessage()]
    assert several == (f"{tmp_path / 'several'} holds frame indices of index versions {version - 2}, {version - 1}, "
                       f"which this mme (index version {version}) does not read: v{version - 2}/, v{version - 1}/ can "
                       "be removed where no mme of those versions shares the folder"), several
    assert said == [f"{tmp_path / 'index'} holds frame indices of index version {version - 2}, which this mme "
                    f"(index version {version}) does not read: v{version - 2}/ can be removed where no mme of that "
                    f"version shares the folder",
                    f"{tmp_path / 'index'} holds frame indices of an mme before index version 7, in 2 folders of "
                    f"two hex digits (0a/, 3f/), which this mme (index version {version}, in "
                    f"v{version}/) does not read: they can be removed where no such mme shares the folder"]
    assert all(r.levelno == logging.INFO for r in caplog.records if "index version" in r.getMessage())


def _version_of(path):
    from mme.utils import VersionOfFile  # (imported here: the module's tests collect on an mme without it)

    return VersionOfFile.of(str(path))


def _stored_by_an_earlier_version(index_dir, path, src, **record) -> tuple[Path, dict]:
    """Store, as an mme of INDEX_VERSION ``record["version"]`` kept it in ``index_dir``, the index of ``path``
    (``src`` remuxed with packets without a picture: its pictures' timestamps and keyframes) holding ``record``.
    Returns the file and the record written."""
    with av.open(str(src)) as container:
        pictures = [(packet.pts, packet.is_keyframe) for packet in container.demux(video=0) if packet.size]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyav_reader, "INDEX_VERSION", record["version"])
        store = pyav_reader._index_store(str(index_dir), str(path), _version_of(path).version)
    record = {"version": record.pop("version"), "pts": sorted(pts for pts, _ in pictures),
              "key_pts": [pts for pts, key in pictures if key], **record, "display": []}
    store.parent.mkdir(parents=True)
    store.write_text(json.dumps(record))
    return store, record


def _write_gray_mjpeg(path, stamps, display: list[int] | None = None) -> None:
    """An MP4 of 32x32 Motion JPEG frames, each at its timestamp ``t`` (in frames) and of gray level 12 t + 20;
    ``display``: its display matrix."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width = stream.height = 32
        if display is not None:
            stream.set_display_matrix(display)
        stream.pix_fmt, stream.time_base = "yuvj420p", Fraction(1, 25)
        for t in stamps:
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 12 * t + 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def test_a_file_replaced_keeping_its_size_and_mtime_is_indexed_again(tmp_path):
    """A damaged copy (frames 3-6 lost, padded to the good file's size by a trailing ``free`` box) is indexed in an
    index folder, then repaired in place by the good file keeping its size and mtime (``cp -p``, ``rsync -a``, a
    re-extracted archive). Its index, kept by size and mtime only, was taken for the repaired file, in the process
    and in the folder: 12 frames, and frame 5 read by seek as the file's frame 9 (its timestamps a subset of the
    new file's, so every check passed). The ctime, which a copy cannot carry over, now keys both."""
    good, path, index_dir = tmp_path / "good.mp4", tmp_path / "clip.mp4", tmp_path / "index"
    _write_gray_mjpeg(good, range(16))
    _write_gray_mjpeg(path, [0, 1, 2, *range(7, 16)])
    pad = good.stat().st_size - path.stat().st_size
    with open(path, "ab") as f:
        f.write(struct.pack(">I4s", pad, b"free") + bytes(pad - 8))
    mtime = good.stat().st_mtime_ns
    os.utime(path, ns=(mtime, mtime))
    with open_video(path, threads=1, index_dir=index_dir) as reader:
        assert reader.num_frames == 12
        got = reader.read([3, 5])  # frames 7 and 9 of the good file
    assert np.abs(got.astype(int) - np.array([104, 128])[:, None, None, None]).max() <= 2
    with open(path, "r+b") as f:  # the repair, in place: the same inode, size and mtime
        f.write(good.read_bytes())
    os.utime(path, ns=(mtime, mtime))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (good.stat().st_size, mtime)
    for other_process in (False, True):
        if other_process:
            pyav_reader._pyav_index.cache_clear()
        with open_video(path, threads=1, index_dir=index_dir) as reader:
            assert reader.num_frames == 16
            got = reader.read([5, 9, 15])
        assert np.abs(got.astype(int) - np.array([80, 128, 200])[:, None, None, None]).max() <= 2


def _replace_in_place(path, data: bytes, mtime: int) -> None:
    """Write ``data`` over ``path`` in place and give it back ``mtime`` (``cp -p``, ``rsync -a --inplace``): the same
    inode, size and mtime, only the ctime changed (after a pause: a kernel's coarse clock may stamp two changes
    within one tick alike)."""
    time.sleep(0.02)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(mtime, mtime))


def test_a_file_replaced_keeping_its_size_and_mtime_is_probed_counted_and_turned_again(tmp_path):
    """The caches a process keeps of a file besides its frame index: PyAV's probe (of the files the other backends
    open without saying how), OpenCV's count and the display matrix read for the backends that do not say it. A file
    of zeros (a download preallocated), then a damaged copy (frames 3-6 lost, padded to the size), each replaced in
    place keeping its size and mtime, were taken for the file they had probed, counted and turned, kept by path,
    size and mtime: a notebook's or a long job's later reads took the repaired video for no video, counted 12 of its
    16 frames and turned them the other way. They are keyed by ``mme.utils.file_version``, as the index is."""
    good, damaged, path = tmp_path / "good.mp4", tmp_path / "damaged.mp4", tmp_path / "clip.mp4"
    _write_gray_mjpeg(good, range(16), display=matrix(*TURNS["ccw 90"]))
    _write_gray_mjpeg(damaged, [0, 1, 2, *range(7, 16)], display=matrix(*TURNS["cw 90"]))
    pad = good.stat().st_size - damaged.stat().st_size
    with open(damaged, "ab") as f:
        f.write(struct.pack(">I4s", pad, b"free") + bytes(pad - 8))
    mtime = good.stat().st_mtime_ns
    path.write_bytes(bytes(good.stat().st_size))
    os.utime(path, ns=(mtime, mtime))
    assert pyav_reader.probe_video(str(path)) == ("", "")
    _replace_in_place(path, damaged.read_bytes(), mtime)
    assert pyav_reader.probe_video(str(path)) == (pyav_reader.MP4_DEMUXER, "")
    for data, frames, turn in ((None, 12, "cw 90"), (good.read_bytes(), 16, "ccw 90")):
        if data is not None:
            _replace_in_place(path, data, mtime)
            assert (path.stat().st_size, path.stat().st_mtime_ns) == (good.stat().st_size, mtime)
        with open_video(path, "opencv", orientation="display") as reader:
            assert (reader.num_frames, reader.display_matrix()) == (frames, tuple(matrix(*TURNS[turn])))
            assert reader.turn == display_turn(matrix(*TURNS[turn]))


def test_an_index_stored_as_version_7_is_made_again(tmp_path):
    """Two mme versions that indexed otherwise stored indices as version 7, and the H.264 end of sequence alone,
    which no decode passes over now, changes again what the index of such a file holds: H.264 with B-frames without
    pyramid and an end of sequence alone before each IDR, whose index the last of them stored as read by seek with
    its 48 pictures, proven, was taken, and its count changed at the first read (FrameCountChanged: 18 frames). It is
    indexed again, in a folder of the current version, the stored one left as it was."""
    src = write_keyint_video(tmp_path / "src.mkv", affine_video(48, 48, 64, dx=0.7, seed=3)[0], "8", "bframes=1")
    path = with_nals_before_keyframes(src, tmp_path / "joined.mkv", [b"\x0a"])  # an end of sequence
    stale, record = _stored_by_an_earlier_version(tmp_path / "index", path, src, version=7, num_frames=48, packets=48,
                                                  mode="seek", reason="", proven=48)
    with open_video(path, index_dir=tmp_path / "index") as reader:
        assert (reader.num_frames, reader.seeking) == (18, "sequential")
        np.testing.assert_array_equal(reader.read(np.arange(18)), decode_all(path))
    assert json.loads(stale.read_text()) == record
    stored = [p.relative_to(tmp_path / "index").parts[0] for p in (tmp_path / "index").rglob("*.json")]
    assert set(stored) == {"v7", f"v{pyav_reader.INDEX_VERSION}"}


def test_an_index_stored_as_version_8_is_made_again(tmp_path):
    """Version 8 let FFmpeg's decoder skip frames on an H.264 packet of an end of sequence of nal_ref_idc 3 then an
    access unit delimiter, where it reads the end of sequence as the packet's last NAL unit and gives the frames it
    holds for reordering, which ``ffmpeg`` does not: with B-frames without pyramid and such a packet before each
    IDR, it stored the file as read by counting 18 frames, 10 of them not ``ffmpeg``'s, which was taken, the file
    opened so. It is indexed again: such a packet goes to the decoder as it is now, whose error at indexing makes
    the file unreadable; the stored index is left as it was."""
    src = write_keyint_video(tmp_path / "src.mkv", affine_video(48, 48, 64, dx=0.7, seed=3)[0], "8", "bframes=1")
    path = with_nals_before_keyframes(src, tmp_path / "joined.mkv", [b"\x6a", b"\x09\xf0"])
    stale, record = _stored_by_an_earlier_version(
        tmp_path / "index", path, src, version=8, num_frames=18, packets=48, mode="sequential", proven=0,
        reason="the 18 decoded frames do not carry the 48 packets' timestamps in order (5 packets without a picture)")
    with pytest.raises(VideoError, match=r"joined\.mkv: unreadable \(.*Invalid data found"):
        open_video(path, index_dir=tmp_path / "index")
    assert json.loads(stale.read_text()) == record


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_name_ffmpeg_would_read_as_a_protocol_opens_the_file(tmp_path, clip_frames, monkeypatch, backend):
    """FFmpeg reads the part of a name before a colon as a protocol ('2020-01-01T10' of a time-stamped recording;
    'pipe' of 'pipe:0' would read standard input): files are opened by their absolute paths, so a list that names
    them relative to the working folder reads them (before, each was 'unreadable (Protocol not found)')."""
    monkeypatch.chdir(tmp_path)
    ref = decode_all(write_video(tmp_path / "plain.mp4", clip_frames[:10]))
    for name in ("2020-01-01T10:00:00.mp4", "pipe:0"):
        (tmp_path / name).write_bytes((tmp_path / "plain.mp4").read_bytes())
        with open_video(name, backend) as reader:
            assert reader.num_frames == 10
            got = reader.read([9, 2])
        assert np.abs(got.astype(int) - ref[[9, 2]]).mean() < (1e-9 if backend == "pyav" else 2)


def test_a_file_whose_only_picture_is_its_cover_is_no_video(tmp_path):
    """An audio file with its cover art (an attached picture, which FFmpeg lists as a one-frame video stream) is
    not a one-frame video: it is unreadable, saying so. A video with a cover reads its video."""
    cover = np.zeros((48, 64, 3), np.uint8)
    cover[..., 0] = 200
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        audio = c.add_stream("aac", rate=16000)
        cs = c.add_stream("mjpeg", rate=1)
        cs.width, cs.height, cs.pix_fmt = 64, 48, "yuvj420p"
        cs.disposition = av.stream.Disposition.attached_pic
        for p in cs.encode(av.VideoFrame.from_ndarray(cover, format="rgb24").reformat(format="yuvj420p")):
            c.mux(p)
        for p in cs.encode():
            c.mux(p)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in audio.encode(f):
                c.mux(p)
        for p in audio.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio", "video"]  # the cover, as FFmpeg lists it
    with pytest.raises(VideoError, match=r"song\.m4a: unreadable \(no video stream, only 1 attached picture"):
        open_video(path)


def test_check_names_hdr_videos_whose_frames_the_backends_read_otherwise(tmp_path):
    """An HDR phone video (HLG or PQ transfer, BT.2020 primaries) checked 'ok', though the pyav backend returns its
    signal's values and the opencv backend converts its colours to SDR itself (tens of levels apart). `mme check`
    names it now, as it names a rotated file: 'hdr' where the file is otherwise ok (a run reads it), and in the reason
    of another status; a file tagged BT.709 is ok."""
    frames = np.stack([texture(48, 64, seed=i) for i in range(20)])
    hlg, pq = write_hdr_video(tmp_path / "hlg.mp4", frames), write_hdr_video(tmp_path / "pq.mp4", frames, "smpte2084")
    sdr = write_hdr_video(tmp_path / "sdr.mp4", frames, "bt709", "bt709", "bt709")
    backends_apart = np.abs(open_video(hlg, backend="pyav").read(range(20)).astype(int)
                            - open_video(hlg, backend="opencv").read(range(20)).astype(int)).mean()
    assert backends_apart > 10, backends_apart  # (why it is said)
    advice = ("the pyav backend reads their values as coded, with no conversion to SDR BT.709 colours, the opencv "
              "backend converts them itself (other frames): train, extract and embed with one backend")
    for path, transfer in ((hlg, "HLG (ARIB STD-B67)"), (pq, "PQ (SMPTE 2084)")):
        report = check_video(path)
        assert (report["status"], report["frames"]) == ("hdr", 20), report  # (was ok)
        assert report["reason"] == f"its colours are tagged with an HDR transfer, {transfer} and BT.2020 primaries: " \
                                   f"{advice}"
    short = check_video(hlg, min_frames=30)
    assert (short["status"], short["reason"]) == ("short", f"20 frames, fewer than 30; {check_video(hlg)['reason']}")
    assert (check_video(sdr)["status"], check_video(sdr)["reason"]) == ("ok", "")
    assert "hdr" in USABLE  # a run reads it


def write_sar_video(path: Path, sar: Fraction | None) -> Path:
    """A 20-frame 96x64 H.264 video whose pixels have the sample aspect ratio ``sar`` (None: none written)."""
    frames, _ = affine_video(20, 64, 96, dx=1.0, seed=3)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def test_check_names_anamorphic_videos_and_a_read_warns_of_the_first(tmp_path, monkeypatch, caplog):
    """A DV/DVD/broadcast-style file stored 96x64 with a sample aspect ratio of 2:1 displays 192x64; every backend
    reads the stored frames (the scene and its motion across halved) and `mme check` said 'ok', nothing found of it
    anywhere. `mme check` names it 'anamorphic' where the file is otherwise ok (a run reads it), in the reason of
    another status, with the stored and displayed sizes; a read warns of the first such video of its process, on
    every backend; square pixels say nothing."""
    from mme.data import video

    write = write_sar_video
    wide, narrow = write(tmp_path / "wide.mp4", Fraction(2)), write(tmp_path / "narrow.mp4", Fraction(8, 9))
    square, unsaid = write(tmp_path / "square.mp4", Fraction(1)), write(tmp_path / "unsaid.mp4", None)
    advice = "make them square first (ffmpeg -i in -vf scale=iw*sar:ih,setsar=1 out)"
    report = check_video(wide)
    assert (report["status"], report["frames"]) == ("anamorphic", 20), report  # (was ok)
    assert report["reason"] == ("its pixels are not square (sample aspect ratio 2:1: stored 96x64, displayed 192x64): "
                                "every backend reads the stored frames, the scene and its motion across 2 times "
                                f"narrower than displayed; {advice}")
    assert check_video(narrow)["reason"].startswith("its pixels are not square (sample aspect ratio 8:9: stored 96x64, "
                                                    "displayed 85x64): every backend reads the stored frames, the "
                                                    "scene and its motion across 1.12 times wider than displayed")
    short = check_video(wide, min_frames=30)
    assert (short["status"], short["reason"]) == ("short", f"20 frames, fewer than 30; {report['reason']}")
    for path in (square, unsaid):
        assert (check_video(path)["status"], check_video(path)["reason"]) == ("ok", "")
    assert "anamorphic" in USABLE  # a run reads it
    for backend in ("pyav", "opencv"):
        monkeypatch.setattr(video, "_SAID_ANAMORPHIC", [0])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme"):
            for path in (square, wide, narrow, wide):
                with open_video(path, backend) as reader:
                    assert reader.size == (96, 64) and reader.read([0]).shape == (1, 64, 96, 3)
        said = [r.getMessage() for r in caplog.records]
        assert said == [f"{wide}: {report['reason']} (said for the first such video; `mme check` names every one)"], \
            said


def test_a_job_warns_of_its_first_anamorphic_video_once_not_in_each_loader_worker(tmp_path, monkeypatch, capfd):
    """The warning of a video's non-square pixels was said once per process: every loader worker's first such video,
    again at each new loader (a test set's at each evaluation, each probe split, each embed): 6 lines for one video
    over 3 evaluations of 2 workers. The job's loader workers share what it said (mme.data.video.anamorphic_said):
    one line, and none from this process's reads after."""
    from mme.data import video
    from mme.eval.testing import build_test_set, iter_test_batches
    from mme.models.config import ModelConfig

    wide = write_sar_video(tmp_path / "wide.mp4", Fraction(2))
    (tmp_path / "list.txt").write_text(f"{wide} 0\n" * 4)
    monkeypatch.setattr(video, "_SAID_ANAMORPHIC", [0])
    handler = logging.StreamHandler(sys.stderr)  # (the forked workers' lines reach fd 2, not caplog)
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
    monkeypatch.setattr(video.log, "handlers", [handler])
    data = build_test_set(tmp_path / "list.txt", ModelConfig(), clips=1, crops=1, stride=1)
    capfd.readouterr()
    for _ in range(3):
        labels = [b["label"].tolist() for b in iter_test_batches(data, batch_size=1, num_workers=2, progress=False)]
        assert labels == [[0]] * 4
    with open_video(wide) as reader:
        assert reader.size == (96, 64)
    said = [line for line in capfd.readouterr().err.splitlines() if "its pixels are not square" in line]
    assert len(said) == 1 and int(said[0].split()[0]) != os.getpid(), said  # (was 6, one per worker per loader)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_check_names_the_video_streams_besides_the_first_which_is_read(tmp_path, ext):
    """Frame i is the first video stream's (mme.data.video). `mme check` of a file with more said nothing of the
    others: a 64x48 copy before the 96x64 video checked 'ok' (a run trained on the copy), a one-frame MJPEG track
    not flagged as an attached picture before the video 'short (1 frames, fewer than 16)', as if the file held no
    more. Its report names the others now: 'several videos' where the file is otherwise ok, and in the reason of
    any other status; a cover flagged as an attached picture is no video, nothing said."""
    small, _ = affine_video(20, 48, 64, dx=1.0, seed=1)
    large, _ = affine_video(20, 64, 96, dx=1.0, seed=2)

    def write(path, tracks, cover=None):
        with av.open(str(path), "w") as c:
            streams = []
            for codec, frames, pix_fmt in tracks:
                s = c.add_stream(codec, rate=25)
                s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
                if codec == "mjpeg" and cover:
                    s.disposition = av.stream.Disposition.attached_pic
                streams.append(s)
            for s, (_, frames, pix_fmt) in zip(streams, tracks):
                for frame in frames:
                    for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
        return path

    two = write(tmp_path / f"two.{ext}", [("libx264", small, "yuv420p"), ("libx264", large, "yuv420p")])
    report = check_video(two, min_frames=16)
    assert (report["status"], report["frames"]) == ("several videos", 20), report
    assert report["reason"] == ("the file has 1 more video stream (stream 1: h264, 96x64); frame i is read from the "
                                "first (stream 0: h264, 64x48)")
    with open_video(two) as reader:
        assert reader.size == (64, 48)
        np.testing.assert_array_equal(reader.read([0, 19]), decode_all(two)[[0, 19]])
    still = write(tmp_path / f"still.{ext}", [("mjpeg", small[:1], "yuvj420p"), ("libx264", large, "yuv420p")])
    report = check_video(still, min_frames=16)
    assert (report["status"], report["frames"]) == ("short", 1), report
    assert report["reason"] == ("1 frame, fewer than 16; the file has 1 more video stream (stream 1: h264, 96x64); "
                                "frame i is read from the first (stream 0: mjpeg, 64x48)")
    if ext == "mp4":  # (Matroska keeps no attached-picture flag on a track)
        cover = write(tmp_path / "cover.mp4", [("mjpeg", small[:1], "yuvj420p"), ("libx264", large, "yuv420p")], True)
        report = check_video(cover, min_frames=16)
        assert (report["status"], report["frames"], report["reason"]) == ("ok", 20, ""), report


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_text_and_still_pictures_are_no_videos_though_ffmpeg_opens_them(tmp_path, clip_frames, backend):
    """FFmpeg's tty demuxer opens any .txt (a list file, a README) as a video of ANSI-art frames, and its picture
    demuxers a PNG or JPEG as a one-frame one: each is unreadable, naming the demuxer, to a run as to mme check.
    Other non-videos stay unreadable as FFmpeg says, and an animated GIF is a clip, read."""
    (tmp_path / "train.txt").write_text("videos/a.mp4 0\nvideos/b.mp4 1\n" * 20)
    (tmp_path / "README.txt").write_text("These videos are kept for the tests, one folder a class.\n" * 10)
    (tmp_path / "classes.json").write_text(json.dumps({"run": 0, "jump": 1}))
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "script.py").write_text("print('hello')\n")
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
    cv2.imwrite(str(tmp_path / "frame.png"), clip_frames[0])
    cv2.imwrite(str(tmp_path / "frame.jpg"), clip_frames[0])
    with av.open(str(tmp_path / "train.txt")) as c:  # FFmpeg's own reading, which a run took for a video
        assert c.format.name == "tty" and sum(1 for _ in c.decode(video=0)) > 0
    refused = {"train.txt": "tty, text drawn as frames", "README.txt": "tty, text drawn as frames",
               "frame.png": "png_pipe, a still picture", "frame.jpg": "jpeg_pipe, a still picture"}
    for name, how in refused.items():
        with pytest.raises(VideoError, match=rf"/{name}: unreadable \(not a video: FFmpeg read it as {how}\)$"):
            open_video(str(tmp_path / name), backend)
        report = check_video(tmp_path / name)
        assert (report["status"], report["frames"]) == ("unreadable", 0)
        assert report["reason"].endswith(f"not a video: FFmpeg read it as {how})")
    for name in ("classes.json", "table.csv", "script.py", "paper.pdf"):
        with pytest.raises(VideoError, match=rf"{name}: unreadable") as info:
            open_video(tmp_path / name, backend)
        assert info.value.reason == "unreadable"
    gif = tmp_path / "clip.gif"
    with av.open(str(gif), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb8"
        for f in clip_frames[:6]:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="rgb8")))
        c.mux(s.encode())
    with open_video(gif, backend) as reader:
        assert (reader.num_frames, reader.size) == (6, (64, 48))
        assert reader.read([5]).shape == (1, 48, 64, 3)


def _one_frame_apng(png: bytes) -> bytes:
    """The PNG ``png`` as an APNG of one frame: an animation control chunk (acTL) saying so, and the frame's control
    chunk (fcTL) before its image data, after the header (IHDR, the first 33 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    width, height = struct.unpack(">II", png[16:24])
    return (png[:33] + chunk(b"acTL", struct.pack(">II", 1, 0))
            + chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 25, 0, 0)) + png[33:])


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_gif_or_an_apng_of_one_frame_is_a_still_picture(tmp_path, clip_frames, backend):
    """FFmpeg opens a GIF with its gif demuxer and an APNG with its apng demuxer, whatever their frames: one of one
    frame named .mp4 was read as a one-frame video by both backends. Each is a still picture now, as a PNG is; an
    animated GIF or APNG is a clip, read, each frame as FFmpeg decodes it."""
    from PIL import Image

    with av.open(str(tmp_path / "gif.mp4"), "w", format="gif") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb8"
        c.mux(s.encode(av.VideoFrame.from_ndarray(clip_frames[0], format="rgb24").reformat(format="rgb8")))
        c.mux(s.encode())
    (tmp_path / "apng.mp4").write_bytes(_one_frame_apng(cv2.imencode(".png", clip_frames[0])[1].tobytes()))
    frames = [Image.fromarray(f) for f in clip_frames[:3]]
    frames[0].save(tmp_path / "clip.png", save_all=True, append_images=frames[1:], duration=40)
    os.replace(tmp_path / "clip.png", tmp_path / "clip.mp4")
    for name, demuxer, n in (("gif.mp4", "gif", 1), ("apng.mp4", "apng", 1), ("clip.mp4", "apng", 3)):
        with av.open(str(tmp_path / name)) as c:  # FFmpeg's own reading
            assert c.format.name == demuxer and sum(1 for _ in c.decode(video=0)) == n
    for name, demuxer in (("gif.mp4", "gif"), ("apng.mp4", "apng")):
        with pytest.raises(VideoError, match=rf"/{name}: unreadable \(not a video: FFmpeg read it as {demuxer}, a "
                                             rf"still picture\)$"):
            open_video(tmp_path / name, backend)
    with open_video(tmp_path / "clip.mp4", backend) as reader:
        assert reader.num_frames == 3
        np.testing.assert_array_equal(reader.read([2, 0, 1]), np.stack(clip_frames[:3])[[2, 0, 1]])


def test_an_animated_webp_is_read_where_the_backend_decodes_its_frames(tmp_path, clip_frames):
    """FFmpeg opens an animated WebP with webp_pipe, a picture demuxer: the opencv backend, which reads its frames,
    refused it as "a still picture". A picture is refused where the backend reading it counts one frame: the
    opencv backend reads the animated file's frames as Pillow wrote them (lossless); PyAV reads them too where its
    FFmpeg decodes them (PyAV 19's), and where that decodes none (an InvalidDataError: PyAV 17 and 18's) names it an
    animated WebP, not a still; a one-frame WebP is a still picture to both."""
    from PIL import Image

    frames = [Image.fromarray(f) for f in clip_frames[:6]]
    frames[0].save(tmp_path / "clip.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    frames[0].save(tmp_path / "still.webp", lossless=True)
    with av.open(str(tmp_path / "clip.webp")) as container:
        try:
            decoded = sum(1 for _ in container.decode(video=0))
        except av.error.InvalidDataError:
            decoded = 0
    for backend in ("opencv", "pyav") if decoded == 6 else ("opencv",):
        with open_video(tmp_path / "clip.webp", backend) as reader:
            assert reader.num_frames == 6
            np.testing.assert_array_equal(reader.read(list(range(6))), np.stack(clip_frames[:6]))
    if decoded != 6:
        with pytest.raises(VideoError, match=r"clip\.webp: unreadable \(FFmpeg read it as webp_pipe: an animated "
                                             r"WebP, whose frames this backend does not decode\)$"):
            open_video(tmp_path / "clip.webp", "pyav")
    for backend in ("pyav", "opencv"):
        with pytest.raises(VideoError, match=r"still\.webp: unreadable \(not a video: FFmpeg read it as webp_pipe, a "
                                             r"still picture\)$"):
            open_video(tmp_path / "still.webp", backend)


def write_avif(path: Path, frames: np.ndarray) -> Path:
    """``frames`` as an AVIF by FFmpeg's muxer: a still picture of one frame, else an animated AVIF (brand avis),
    which FFmpeg opens as two video streams: the still main image (the first frame) and the sequence."""
    with av.open(str(path), "w", format="avif") as c:
        s = c.add_stream("libsvtav1" if "libsvtav1" in av.codecs_available else "libaom-av1", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(s.encode())
    return path


STILL_AVIF = (r"unreadable \(not a video: a still picture \(a HEIF image item: AVIF, HEIC\), which FFmpeg reads as "
              r"one frame\)")
"""How a still AVIF is refused, as a pattern."""


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_an_ico_or_a_still_avif_named_as_a_video_is_no_video(tmp_path, clip_frames, backend):
    """FFmpeg opens an ICO with its ico demuxer (a one-frame stream per size) and a still AVIF with its MP4 demuxer
    (one AV1 frame), so either named .mp4 was read as a one-frame video: a run trained on it, `mme embed` gave it a
    row. Both are refused as still pictures now, with either backend; a real one-frame video (an MP4 of one H.264
    frame) is still read."""
    from PIL import Image

    Image.fromarray(clip_frames[0]).save(tmp_path / "icon.ico")  # four sizes, up to 64x48
    (tmp_path / "icon.mp4").write_bytes((tmp_path / "icon.ico").read_bytes())
    write_avif(tmp_path / "still.mp4", clip_frames[:1])
    for name, demuxer in (("icon.mp4", "ico"), ("still.mp4", "mov,mp4,m4a,3gp,3g2,mj2")):
        with av.open(str(tmp_path / name)) as c:  # FFmpeg's own reading: one frame
            assert c.format.name == demuxer and sum(1 for _ in c.decode(video=0)) == 1
    with pytest.raises(VideoError, match=r"/icon\.mp4: unreadable \(not a video: FFmpeg read it as ico, a still "
                                         r"picture\)$"):
        open_video(tmp_path / "icon.mp4", backend)
    with pytest.raises(VideoError, match=rf"/still\.mp4: {STILL_AVIF}$"):
        open_video(tmp_path / "still.mp4", backend)
    assert check_video(tmp_path / "still.mp4")["status"] == "unreadable"
    one = write_video(tmp_path / "one.mp4", clip_frames[:1])
    with open_video(one, backend) as reader:
        assert reader.num_frames == 1
        np.testing.assert_array_equal(reader.read([0]), decode_all(one))


def test_an_animated_avif_is_read_as_its_sequence_not_its_still_picture(tmp_path, clip_frames):
    """FFmpeg opens an animated AVIF (named .mp4) with its MP4 demuxer as two video streams, the still main image
    first (one frame, no duration), then the 8-frame sequence: the first was read, a one-frame video that mme check
    called ok. The pyav backend reads the sequence, each frame i as PyAV's plain decode of that stream gives it;
    OpenCV, which reads the first video stream, refuses it, naming pyav. A still AVIF whose major brand is mif1
    (avif among its compatible brands) is a still picture too, and an MP4 of one H.264 frame whose major brand says
    avif is a video."""
    path = write_avif(tmp_path / "animated.mp4", clip_frames[:8])
    with av.open(str(path)) as c:
        assert [s.frames for s in c.streams.video] == [1, 8]
        sequence = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=1)])
    with open_video(path) as reader:
        assert reader.num_frames == 8
        np.testing.assert_array_equal(reader.read([7, 2, 5, 0]), sequence[[7, 2, 5, 0]])
        np.testing.assert_array_equal(reader.read(list(range(8))), sequence)
    report = check_video(path)
    assert (report["status"], report["frames"]) == ("ok", 8)
    with pytest.raises(VideoError, match=r"animated\.mp4: unreadable \(its first video stream is a still picture, "
                                         r"before its image sequence \(an animated AVIF\), and this backend reads that "
                                         r"one frame: read it with the pyav backend\)$"):
        open_video(path, "opencv")
    still = write_avif(tmp_path / "still.mp4", clip_frames[:1]).read_bytes()
    assert still[8:12] == b"avif" and b"mif1" in still[16:32]
    (tmp_path / "mif1.mp4").write_bytes(still[:8] + b"mif1" + still[12:])
    h264 = write_video(tmp_path / "h264.mp4", clip_frames[:1]).read_bytes()
    (tmp_path / "h264_avif.mp4").write_bytes(h264[:8] + b"avif" + h264[12:])
    for backend in ("pyav", "opencv"):
        with pytest.raises(VideoError, match=rf"mif1\.mp4: {STILL_AVIF}$"):
            open_video(tmp_path / "mif1.mp4", backend)
        with open_video(tmp_path / "h264_avif.mp4", backend) as reader:
            np.testing.assert_array_equal(reader.read([0]), decode_all(tmp_path / "h264.mp4"))


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_picture_is_refused_only_where_the_backend_counts_one_frame(tmp_path, clip_frames, backend):
    """The PyAV reader asked whether a file was a still picture before it counted its frames, as if it had one:
    four PNGs one after another (FFmpeg's png_pipe reads them as four frames) and an 8-frame H.264 MP4 whose
    ftyp's major brand says avif were refused as still pictures by pyav, and read by opencv. Both backends read
    them now, each frame i; a single PNG stays a still picture."""
    pngs = tmp_path / "pngs.mp4"
    pngs.write_bytes(b"".join(cv2.imencode(".png", f[..., ::-1])[1].tobytes() for f in clip_frames[:4]))
    h264 = write_video(tmp_path / "h264.mp4", clip_frames[:8]).read_bytes()
    (tmp_path / "avif.mp4").write_bytes(h264[:8] + b"avif" + h264[12:])
    with av.open(str(pngs)) as c:
        assert c.format.name == "png_pipe"
    for path, n in ((pngs, 4), (tmp_path / "avif.mp4", 8)):
        with open_video(path, backend) as reader:
            assert reader.num_frames == n
            got = reader.read(list(range(n)))
        np.testing.assert_array_equal(got, decode_all(path))
    np.testing.assert_array_equal(decode_all(pngs), np.stack(clip_frames[:4]))
    pngs.write_bytes(cv2.imencode(".png", clip_frames[0])[1].tobytes())
    with pytest.raises(VideoError, match=r"pngs\.mp4: unreadable \(not a video: FFmpeg read it as png_pipe, a still "
                                         r"picture\)$"):
        open_video(pngs, backend)


def _picture(codec: str, pix_fmt: str, frame: np.ndarray) -> bytes:
    """``frame`` (RGB) as a picture file of FFmpeg's ``codec`` (dpx, sgi, pcx, xwd, ...)."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
    picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(packet) for packet in [*context.encode(picture), *context.encode(None)])


def test_the_opencv_backend_probes_with_pyav_every_file_but_a_video_container(tmp_path, clip_frames, monkeypatch):
    """The opencv (and decord) backend asked PyAV's probe how FFmpeg opens every file it opened (several ms: paid
    per item on a big list read in random order), then only files whose name or first bytes said a picture of a
    short list or text, so a still picture of another of FFmpeg's picture demuxers named .mp4 (Sun raster,
    Radiance HDR, PFM, DPX, SGI, PCX, XWD) was read as a one-frame video. Every file is probed now but one whose
    first bytes are a video container's or a raw stream's: those never, while a list file and every picture are
    refused, each after its probe."""
    import mme.data.video as video

    probed = []
    probe = video.probe_video
    monkeypatch.setattr(video, "probe_video", lambda path, *args: probed.append(os.path.basename(path))
                        or probe(path, *args))
    for name, codec in (("h264.mp4", "libx264"), ("h264.mkv", "libx264"), ("h264.ts", "libx264"),
                        ("mpeg4.avi", "mpeg4"), ("vp9.webm", "libvpx-vp9"), ("h264.m2ts", "libx264"),
                        ("h264.h264", "libx264"), ("mpeg2.mpg", "mpeg2video"), ("wmv2.wmv", "wmv2")):
        write_video(tmp_path / name, clip_frames[:8], codec=codec, quality="low")
        with open_video(tmp_path / name, "opencv") as reader:
            assert reader.num_frames == 8 and reader.read([7]).shape == (1, 48, 64, 3)
    assert probed == []
    (tmp_path / "list.txt").write_text("videos/a.mp4 0\nvideos/b.mp4 1\n" * 20)
    cv2.imwrite(str(tmp_path / "frame.jpg"), clip_frames[0])
    refused = {"list.txt": "tty, text drawn as frames", "frame.jpg": "jpeg_pipe, a still picture"}
    for suffix, demuxer in ((".png", "png_pipe"), (".ras", "sunrast_pipe"), (".hdr", "hdr_pipe"), (".pfm", "pfm_pipe")):
        cv2.imwrite(str(tmp_path / f"frame{suffix}"), clip_frames[0] / np.float32(255) if suffix in (".hdr", ".pfm")
                    else clip_frames[0])
        os.replace(tmp_path / f"frame{suffix}", tmp_path / f"{demuxer}.mp4")
        refused[f"{demuxer}.mp4"] = f"{demuxer}, a still picture"
    for codec, pix_fmt in (("dpx", "rgb24"), ("sgi", "rgb24"), ("pcx", "rgb24"), ("xwd", "rgb24")):
        (tmp_path / f"{codec}.mp4").write_bytes(_picture(codec, pix_fmt, clip_frames[0]))
        refused[f"{codec}.mp4"] = f"{codec}_pipe, a still picture"
    for name, how in refused.items():
        with pytest.raises(VideoError, match=rf"/{name}: unreadable \(not a video: FFmpeg read it as {how}\)$"):
            open_video(tmp_path / name, "opencv")
    assert probed == list(refused)


def test_a_missing_file_that_is_there_under_another_spelling_says_so(tmp_path, clip_frames):
    """A list written on Windows ('\') or with accents composed otherwise than on this disk (macOS writes
    decomposed names) names files that look missing: the error says which spelling exists."""
    import unicodedata

    name = unicodedata.normalize("NFD", "café.mp4")
    (tmp_path / "sub").mkdir()
    write_video(tmp_path / "sub" / name, clip_frames[:3])
    with pytest.raises(VideoError, match=r"missing \(no such file; with '/' for its '\\' it exists"):
        open_video(str(tmp_path) + "\\sub\\" + name)
    with pytest.raises(VideoError, match=r"missing \(no such file; its name exists with its accents in Unicode NFD"):
        open_video(tmp_path / "sub" / unicodedata.normalize("NFC", name))


def test_a_listed_path_from_the_home_folder_is_said_not_to_be_expanded(tmp_path, clip_frames, monkeypatch):
    """A list line '~/v.mp4' (joined to data.root or not, one holding a folder whose name begins with '~' too) was said
    to be missing (no such file), with no word of the file under the home folder: list paths are not ~-expanded, and
    the error says so, naming the file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    write_video(tmp_path / "home" / "v.mp4", clip_frames[:3])
    said = re.escape(f"missing (no such file; '{tmp_path}/home/v.mp4' exists: list paths are not ~-expanded: write "
                     "it absolute)")
    for listed in ("~/v.mp4", f"{tmp_path}/root/~/v.mp4", f"{tmp_path}/~old/~/v.mp4"):  # (a data.root of '~old')
        with pytest.raises(VideoError, match=said):
            open_video(listed)
    with pytest.raises(VideoError, match=r"missing \(no such file\)$"):
        open_video("~/other.mp4")


def test_a_link_whose_target_is_not_there_names_it(tmp_path, clip_frames):
    """A video that is a link to a file not there (a volume not mounted, a dataset moved) was said to be missing (no
    such file), though its name is there: the error names where it points, as does the run's stop. A link to itself
    (ln -s loop.mp4 loop.mp4) was said to be 'a link to 'loop.mp4', which is not there': it is a loop, said as
    mme.utils.broken_link says any (lists, --out)."""
    (tmp_path / "v.mp4").symlink_to("/mnt/gone/v.mp4")
    with pytest.raises(VideoError, match=r"v\.mp4: missing \(no such file; a link to '/mnt/gone/v\.mp4', which leads "
                                         r"to nothing\)$"):
        open_video(tmp_path / "v.mp4")
    (tmp_path / "loop.mp4").symlink_to("loop.mp4")
    with pytest.raises(VideoError, match=r"loop\.mp4: missing \(no such file; a link to 'loop\.mp4', which leads back "
                                         r"to itself through links\)$"):
        open_video(tmp_path / "loop.mp4")


def test_a_list_of_frame_folders_is_named_as_such(tmp_path, clip_frames):
    """VideoMAE's lists of extracted frames ('folder num_frames label') read as a path with a space: the error says
    what the line is, and a folder given as a video says mme reads video files."""
    from mme.data.lists import read_list, resolve

    (tmp_path / "frames" / "v1").mkdir(parents=True)
    (tmp_path / "list.txt").write_text("frames/v1 120 3\n")
    entry = read_list(tmp_path / "list.txt")[0][0]
    with pytest.raises(VideoError, match=r"missing \(no such file; '.*frames/v1' is a folder and 120 its frame count: "
                                         r"a list of frame folders \('path num_frames label'\), which mme does not "
                                         r"read; list the video files"):
        open_video(resolve(entry, tmp_path))
    with pytest.raises(VideoError, match=r"v1: unreadable \(is a folder \(mme reads video files, not folders of "
                                         r"frames\)\)"):
        open_video(tmp_path / "frames" / "v1")


@pytest.mark.parametrize("line", ["Run/a b.mp4 Run", "Run/a b.mp4,1", "Run/a b.mp4\tRun"])
def test_a_label_read_as_part_of_the_name_is_named_as_such(tmp_path, clip_frames, line):
    """Labels written as class names (a list none of whose lines ends in a number) or after a comma are read as part
    of the path, and every video was 'missing (no such file)' without a word on why."""
    from mme.data.lists import read_list, resolve

    (tmp_path / "Run").mkdir()
    write_video(tmp_path / "Run" / "a b.mp4", clip_frames[:3])
    (tmp_path / "list.txt").write_text(line + "\n")
    entry = read_list(tmp_path / "list.txt")[0][0]
    with pytest.raises(VideoError, match=r"missing \(no such file; '.*Run/a b.mp4' exists: '(.*Run|,1)' was read as "
                                         r"part of its name, not as a label"):
        open_video(resolve(entry, tmp_path))


def test_a_read_seeks_again_at_a_keyframe_past_the_frame_before(tmp_path, monkeypatch):
    """One read decoded every frame from its first wanted frame to its last: segment sampling and the test clips of
    a 10-minute video took 2.4-2.7 s per item against 0.3-0.4 s."""
    frames = np.random.default_rng(0).integers(0, 256, (300, 48, 64, 3), np.uint8)
    path = write_keyint_video(tmp_path / "long_gop.mp4", frames, "100")
    ref = decode_all(path)
    decoded = DecodedFrames(monkeypatch)
    idx = np.concatenate([np.arange(5, 15), np.arange(150, 160), np.arange(290, 300)])  # keyframes at 0, 100, 200
    with open_video(path) as reader:
        reader.read([299])  # proves the index: reads after it seek
        decoded.count = 0
        got = reader.read(idx)
    np.testing.assert_array_equal(got, ref[idx])
    assert decoded.count == 15 + 60 + 100, decoded.count  # from each run's keyframe to its last frame (was 300)


def test_check_reads_alone_only_the_frames_a_seek_reaches(tmp_path, monkeypatch):
    """`mme check` read each of its probes alone from a reader of its own, also where the probe's keyframe is the
    file's first frame: a decode from the start, as its counting decode was, so a file of one keyframe was decoded
    about four times over (3.7 s against 2.5 for 6,000 frames); and it decoded the whole file twice, once to prove
    the index and once to count the frames and find the damaged ones: one decode does both now."""
    frames = np.random.default_rng(0).integers(0, 256, (120, 32, 32, 3), np.uint8)
    path = write_keyint_video(tmp_path / "one_keyframe.mp4", frames, "infinite")
    decoded = DecodedFrames(monkeypatch)
    report = check_video(str(path))
    assert report["status"] == "ok" and report["seeking"] == "seek", report
    assert decoded.count == 120, decoded.count  # counting frames proves the index (was 240; before, 482)


def test_check_stores_the_verdict_of_its_reads_by_seeking_in_the_index_folder(tmp_path, monkeypatch):
    """`mme check --index-dir` saved the index before its reads by seeking: where a frame read alone by seeking
    differed from the decode from the start, the report said sequential and the stored index kept 'seek', so a run
    with that data.index_dir read the file by the seeks the check had caught. The difference is simulated."""
    path = write_keyint_video(tmp_path / "v.mp4", affine_video(48, 48, 64, dx=0.7, seed=3)[0], "8")
    real = pyav_reader.PyAVReader._read_sorted

    def other_frame_by_seek(self, indices, each=None):
        out = real(self, indices, each)
        return out ^ 1 if len(indices) == 1 and self._seeked else out  # a probe read alone, after a seek

    monkeypatch.setattr(pyav_reader.PyAVReader, "_read_sorted", other_frame_by_seek)
    report = check_video(str(path), index_dir=tmp_path / "index")
    assert report["status"] == "suspicious" and report["seeking"] == "sequential", report
    stored = json.loads(next((tmp_path / "index").rglob("*.json")).read_text())
    assert (stored["mode"], stored["reason"]) == ("sequential", report["reason"])
    assert report["reason"] == "frame 47 read by seeking differs from frame 47 decoded from the start"  # the last first


def test_every_reader_of_a_clip_draws_it_again_from_the_count_its_read_corrects(tmp_path, monkeypatch):
    """An H.264 file with an end-of-sequence packet (41 packets, 40 frames), the index's check of such packets
    turned off, as for a cause it does not foresee: the first read corrects the count and raises FrameCountChanged.
    `mme viz` (read_clip), the real footage of the motion probe (load_footage) and the bench commands let it out:
    viz failed on every run of such a file, the footage was skipped. Now each reads again, choosing its frames by
    the true count (with_true_count), as a dataset item and `mme extract` did. A viz start too late even for the
    packets' count was refused by it, naming as the last that fits a start that failed too (41 frames; --start
    28); now the last frame is read first, so the refusal names the true count."""
    from mme.data.bench import _stages
    from mme.data.dataset import DataConfig
    from mme.data.real_motion import load_footage
    from mme.data.sampling import sample_pretrain
    from mme.data.transforms import apply_geometry
    from mme.motion.bench import run as bench_targets_run
    from mme.motion.viz import read_clip

    frames = affine_video(40, 48, 64, dx=0.7, seed=3)[0]
    video = with_end_of_sequence(write_keyint_video(tmp_path / "full.mkv", frames, "8"), tmp_path / "joined.mkv", 10)
    ref = decode_all(video)
    monkeypatch.setattr(pyav_reader, "_nal_scan", lambda stream: None)

    def unaware() -> None:
        """As a process that has not read the file: its count is the packets'."""
        pyav_reader._pyav_index.cache_clear()
        with open_video(video) as reader:
            assert (reader.num_frames, len(ref)) == (41, 40)

    unaware()
    clip = read_clip(str(video), 20, 4, 4, 48, 0)
    np.testing.assert_array_equal(clip.frame_ids, np.arange(20, 33))
    np.testing.assert_array_equal(clip.frames, apply_geometry(ref[20:33], clip.geometry))
    unaware()
    with pytest.raises(VideoError, match=r"joined\.mkv: too short \(40 frames; 4 frames at stride 4 from frame 28 "
                                         r"need 41; --start 27 is the last that fits\)"):
        read_clip(str(video), 28, 4, 4, 48, 0)  # fits the packets' count, not the frames'
    unaware()
    with pytest.raises(VideoError, match=r"joined\.mkv: too short \(40 frames; 4 frames at stride 4 from frame 29 "
                                         r"need 42; --start 27 is the last that fits\)"):
        read_clip(str(video), 29, 4, 4, 48, 0)  # fits neither: refused by the frames' count, not the packets'
    unaware()
    np.testing.assert_array_equal(load_footage(video, 8, 48).frames, ref)
    unaware()
    cfg = DataConfig(num_frames=8, stride=4, img_size=32)
    assert _stages(str(video), cfg, 2, repeat=1)["decoded_frames"] > 0
    unaware()
    drawn = sample_pretrain(40, 8, 4, 2, 2, np.random.default_rng(0))
    figures = bench_targets_run(str(video), frames=8, stride=4, size=32, length=2, repeat=1)
    assert figures["frames_decoded"] == len(drawn.needed)


def test_a_bench_read_again_on_a_corrected_count_draws_the_clip_a_process_that_knew_it_draws(tmp_path, monkeypatch):
    """A file whose first read corrects its count (41 packets, 40 frames) is read again by the true count; the
    benchmarks drew that read's clip from a generator the first read had advanced, so they measured another clip
    than a process that knew the count: `mme bench data`'s stages another window and crop, each of its rounds yet
    another; the target-feature probe of `mme bench flow` another window for that video and for every one after
    it in its lists. Now the read again, and every round of the stages, draws as the first read did."""
    from mme.data import bench
    from mme.data.dataset import DataConfig
    from mme.data.sampling import sample_pretrain
    from mme.data.transforms import multiscale_crop
    from mme.motion import bench_flow

    frames = affine_video(40, 48, 64, dx=0.7, seed=3)[0]
    video = with_end_of_sequence(write_keyint_video(tmp_path / "full.mkv", frames, "8"), tmp_path / "joined.mkv", 10)
    write_keyint_video(tmp_path / "other.mkv", affine_video(40, 48, 64, dx=-0.5, seed=4)[0], "8")
    monkeypatch.setattr(pyav_reader, "_nal_scan", lambda stream: None)
    needed, crops = [], []

    def sampled(n, *args):
        idx = sample_pretrain(n, *args)
        needed.append((n, idx.needed.tolist()))
        return idx

    def cropped(*args):
        crops.append(multiscale_crop(*args))
        return crops[-1]

    monkeypatch.setattr(bench, "sample_pretrain", sampled)
    monkeypatch.setattr(bench, "multiscale_crop", cropped)
    cfg = DataConfig(num_frames=8, stride=2, img_size=32)
    pyav_reader._pyav_index.cache_clear()  # as a process that has not read the file: its count is the packets'
    bench._stages(str(video), cfg, 2, repeat=3)
    rng = np.random.default_rng(0)
    clip = sample_pretrain(40, 8, 2, 2, 2, rng).needed.tolist()
    crop = multiscale_crop((64, 48), 32, rng, cfg.scales, cfg.max_distort)
    first = sample_pretrain(41, 8, 2, 2, 2, np.random.default_rng(0)).needed.tolist()
    assert needed == [(41, first)] + [(40, clip)] * 3 and crops == [crop] * 3, (needed, crops)

    (tmp_path / "train.txt").write_text("joined.mkv 0\nother.mkv 1\n")
    (tmp_path / "val.txt").write_text("full.mkv 0\n")
    pyav_reader._pyav_index.cache_clear()
    unaware = bench_flow.target_features(tmp_path, ["dis"])[0]
    aware = bench_flow.target_features(tmp_path, ["dis"])[0]  # (this process's index now holds the true count)
    for split in ("train", "val"):
        np.testing.assert_array_equal(unaware[split]["dis"]["px"], aware[split]["dis"]["px"])


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_a_path_through_a_symlinked_root_and_up_opens_the_file_the_os_names(tmp_path, clip_frames, monkeypatch,
                                                                             backend):
    """A list line '../other/x.mp4' under a data.root that is a symlink (R -> real/deep/root) names, to the OS,
    real/deep/other/x.mp4 ('..' after the link is followed). It is what is opened, and its frame index is kept
    apart from other/x.mp4's (before, '..' was removed by text: other/x.mp4 was decoded, or called missing). A
    path without '..' keeps the index key it had (no file indexed again)."""
    monkeypatch.chdir(tmp_path)
    for folder in ("real/deep/root", "real/deep/other", "other"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "R").symlink_to("real/deep/root")
    named = write_video(tmp_path / "real/deep/other/x.mp4", clip_frames[:10])
    write_video(tmp_path / "other" / "x.mp4", clip_frames[::-1][:6])
    path = resolve(ListEntry("../other/x.mp4"), "R")
    with open_video(path, backend, index_dir=tmp_path / "index") as reader:
        assert reader.num_frames == 10
        got = reader.read([9, 2])
    assert np.abs(got.astype(int) - decode_all(named)[[9, 2]]).mean() < (1e-9 if backend == "pyav" else 2)
    for plain in ("real/./deep//other/x.mp4", "real/deep/root/../other/x.mp4", f"../{tmp_path.name}/other/x.mp4"):
        # (the last two with '..' that names the same file either way: data.root=../data keeps its key too)
        key = hashlib.sha1(f"{os.path.abspath(plain)}\0{1}\0{2}\0{3}\0{4}\0{av.__version__}".encode()).hexdigest()
        assert pyav_reader._index_store("ix", absolute_path(plain), (1, 2, 3, 4)) == \
            Path("ix") / f"v{pyav_reader.INDEX_VERSION}" / key[:2] / f"{key[2:]}.json"


def test_a_reader_with_an_index_folder_spells_a_path_through_a_link_and_up_once(tmp_path, clip_frames, monkeypatch):
    """A path with '..' is spelled (:func:`mme.utils.absolute_path`: two realpaths) once by a PyAV reader with an
    index folder, for its opens and its index's key; the container open and the index key each spelled it."""
    (tmp_path / "real/root").mkdir(parents=True)
    (tmp_path / "R").symlink_to("real/root")
    named = write_video(tmp_path / "real/x.mp4", clip_frames[:6])
    spelled = []
    monkeypatch.setattr(pyav_reader, "absolute_path", lambda p: spelled.append(p) or absolute_path(p))
    pyav_reader._pyav_index.cache_clear()
    path = str(tmp_path / "R" / ".." / "x.mp4")
    with open_video(path, index_dir=tmp_path / "index") as reader:
        np.testing.assert_array_equal(reader.read([5, 0]), decode_all(named)[[5, 0]])
    assert spelled == [path]


def test_a_file_named_otherwise_in_one_process_is_indexed_once_and_keeps_its_corrected_count(tmp_path, monkeypatch):
    """'joined.mkv', './joined.mkv', its absolute path and one up and back name one file. A process cached its index
    by the path as given too: each spelling demuxed it again, and the count a reader's read corrected (41 packets, 40
    frames: an end-of-sequence packet, the index's check of such packets turned off) was the packets' again for a
    reader of another spelling, which drew its clips from it and had its read refused again (FrameCountChanged).
    Keyed by the absolute path (:func:`mme.utils.absolute_path`), the file is indexed once and its readers share
    what a read proved; each names the path as it was given."""
    frames = affine_video(40, 48, 64, dx=0.7, seed=3)[0]
    video = with_end_of_sequence(write_keyint_video(tmp_path / "full.mkv", frames, "8"), tmp_path / "joined.mkv", 10)
    ref = decode_all(video)
    monkeypatch.setattr(pyav_reader, "_nal_scan", lambda stream: None)
    demuxed, demux = [], pyav_reader._demux_index
    monkeypatch.setattr(pyav_reader, "_demux_index", lambda path, first: demuxed.append(path) or demux(path, first))
    monkeypatch.chdir(tmp_path)
    pyav_reader._pyav_index.cache_clear()
    with open_video("joined.mkv") as reader:
        assert reader.num_frames == 41
        with pytest.raises(FrameCountChanged, match=r"^joined\.mkv: "):
            reader.read([40])
    for spelled in ("./joined.mkv", str(video), f"../{tmp_path.name}/joined.mkv"):
        with open_video(spelled) as reader:
            assert reader.num_frames == 40
            np.testing.assert_array_equal(reader.read([39, 0]), ref[[39, 0]])
            with pytest.raises(VideoError, match=f"^{re.escape(spelled)}: index out of range"):
                reader.read([40])
    assert demuxed == ["joined.mkv"]


def test_the_frame_indices_a_process_keeps_are_bounded_by_their_memory(tmp_path, monkeypatch, caplog, read_only):
    """Each process kept the frame index of up to 4,096 files, whatever their length: 8 bytes a frame, 650 MB in
    each loader worker on a list of ten-minute videos (10 GB for 16 workers). The cache lets the least recently
    used go past a bound of memory too, by each index's measured size (``_Index.nbytes``, which tracemalloc
    confirms), keeping the count's cap (INDEX_CACHE_FILES) and the one just used; one let go is made again when
    read. The bound is INDEX_CACHE_BYTES for indices of an index folder (read again in milliseconds) and the larger
    INDEX_CACHE_BYTES_UNSAVED without one, where one let go is made again by a demux and its next read decodes from
    the start (seconds for a long video): a bound of 64 MB there made training on a few hundred ten-minute videos
    hundreds of times slower, silently. The first time a process needs again such an index it let go, past either
    bound, it warns, once (past the count alone, a list of over 4,096 short videos, it was silent; a list each of
    whose videos is read once is not slowed and not warned of). An index kept
    nowhere though the run has an index folder (one read-only, or that a save failed in) is bounded and said as one
    without: under INDEX_CACHE_BYTES, a read-only folder made a list's reads demux each video again every epoch
    (48 demuxes of 16 videos over 3 epochs, against 16 without a folder), unsaid."""
    import tracemalloc

    frames = np.zeros((600, 16, 16, 3), np.uint8)
    frames[..., 0] = (np.arange(600) % 256)[:, None, None]
    videos = [write_keyint_video(tmp_path / f"v{i}.mp4", frames[: 600 - 60 * i], "30") for i in range(4)]
    pyav_reader._pyav_index.cache_clear()
    pyav_reader._warn_index_let_go.cache_clear()
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_FILES", 2)  # the count's cap
    kept = {i: pyav_reader._pyav_index(_version_of(v)) for i, v in enumerate(videos[:3])}
    assert pyav_reader._pyav_index(_version_of(videos[1])) is kept[1]
    assert "frame indices" not in caplog.text  # (each read once: none needed again, nothing slower)
    assert pyav_reader._pyav_index(_version_of(videos[0])) is not kept[0]  # let go for v2, made again
    assert "passed 2 videos or 512 MB: the least recently used" in caplog.text  # (before: said past the bytes only)
    caplog.clear()
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_FILES", 4096)
    pyav_reader._pyav_index.cache_clear()
    assert pyav_reader._pyav_index(_version_of(videos[0])).key_set  # (what a first index makes once in a process)
    pyav_reader._pyav_index.cache_clear()
    tracemalloc.start()
    try:
        index = pyav_reader._pyav_index(_version_of(videos[0]))
        assert index.key_set  # (made by a read's first seek)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (index.num_frames, len(index.key_pts)) == (600, 20)
    assert 0.8 < held / index.nbytes < 1.25, (held, index.nbytes)
    sizes = [pyav_reader._pyav_index(_version_of(v)).nbytes for v in videos]
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3], sizes  # (8 bytes a frame, 140 a keyframe)
    del index
    assert pyav_reader.INDEX_CACHE_BYTES_UNSAVED >= 8 * pyav_reader.INDEX_CACHE_BYTES
    pyav_reader._warn_index_let_go.cache_clear()
    caplog.set_level(logging.WARNING, logger="mme")

    def let_go_of_the_oldest(index_dir=None):
        """Read v0, v1, v2 where any two fit; v0 is let go for v2, then v2 (the oldest used) for v0."""
        pyav_reader._pyav_index.cache_clear()
        kept = {i: pyav_reader._pyav_index(_version_of(v), index_dir) for i, v in enumerate(videos[:3])}
        assert pyav_reader._pyav_index(_version_of(videos[1]), index_dir) is kept[1]  # (now the newest used)
        assert pyav_reader._pyav_index(_version_of(videos[0]), index_dir) is not kept[0]  # made again
        assert pyav_reader._pyav_index(_version_of(videos[1]), index_dir) is kept[1]
        assert pyav_reader._pyav_index(_version_of(videos[2]), index_dir) is not kept[2]

    def let_go_of_none(index_dir=None):
        pyav_reader._pyav_index.cache_clear()
        kept = {i: pyav_reader._pyav_index(_version_of(v), index_dir) for i, v in enumerate(videos)}
        assert all(pyav_reader._pyav_index(_version_of(v), index_dir) is kept[i] for i, v in enumerate(videos))

    said = lambda: [r.getMessage() for r in caplog.records if "frame indices" in r.getMessage()]  # noqa: E731
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES", sizes[0] + sizes[1] + 1)  # any two, with an index folder
    let_go_of_none()  # without one, INDEX_CACHE_BYTES_UNSAVED
    index_dir = str(tmp_path / "indices")
    let_go_of_the_oldest(index_dir)
    assert said() == []  # (read again from the folder in milliseconds)
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES", 1)
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES_UNSAVED", sizes[0] + sizes[1] + 1)
    let_go_of_the_oldest()
    assert len(said()) == 1, said()
    assert all(w in said()[0] for w in ("let go", "decode from their start", "data.index_dir", "--index-dir")), said()
    let_go_of_the_oldest()
    assert len(said()) == 1, said()  # once per process
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES_UNSAVED", 1)  # the one just used is kept
    last = pyav_reader._pyav_index(_version_of(videos[3]))
    assert pyav_reader._pyav_index(_version_of(videos[3])) is last
    pyav_reader._warn_index_let_go.cache_clear()
    with open_video(videos[3]) as reader:
        np.testing.assert_allclose(reader.read([419, 0])[..., 0].mean(axis=(1, 2)), [419 % 256, 0], atol=3)
    unkept = tmp_path / "read_only"
    unkept.mkdir()
    read_only(unkept)
    pyav_reader.take_index_dir(unkept, "data.index_dir")
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES", 1)
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES_UNSAVED", sum(sizes) + 1)
    let_go_of_none(str(unkept))  # made here, kept nowhere: INDEX_CACHE_BYTES_UNSAVED
    monkeypatch.setattr(pyav_reader, "INDEX_CACHE_BYTES_UNSAVED", sizes[0] + sizes[1] + 1)
    caplog.clear()
    let_go_of_the_oldest(str(unkept))
    assert said() == [f"the frame indices of this process's videos passed 4096 videos or 0 MB: the least recently "
                      f"used are let go, and their files' next reads demux them again and decode from their start "
                      f"(seconds for long videos); the index folder {unkept} keeps none of them (it cannot be "
                      f"written): fill it with mme check LISTS --index-dir where it can be written"]
    assert list(unkept.iterdir()) == []
    pyav_reader._pyav_index.cache_clear()


def test_the_declared_torch_and_pyav_floors_are_the_ones_the_docs_state():
    """pip installs what pyproject.toml declares; README.md and docs/reliability.md state the same floors. PyAV's
    is 17.0, the first whose ``VideoReformatter.reformat`` takes ``threads=`` (rgb24 passes it): with 14.2-16.1,
    what the floor was, every video read was a TypeError. Every package mme imports is declared (Pillow, which
    mme viz imports, came only as matplotlib's), its module known to the CLI's missing-dependency line, and the
    README's list of them names each (it said four of eight)."""
    import ast

    from mme.cli import DEPENDENCIES

    tomllib = pytest.importorskip("tomllib")
    repo = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = dict(re.fullmatch(r"([\w-]+)>=([\d.]+)", d).groups() for d in deps)
    readme = (repo / "README.md").read_text()
    reliability = (repo / "docs" / "reliability.md").read_text()
    assert declared["av"] == "17"
    assert re.findall(r"PyTorch \(≥ ([\d.]+)\)", readme) == [declared["torch"]]
    assert re.findall(r"PyAV \(≥ ([\d.]+)\)", readme) == [declared["av"]]
    assert re.findall(r"torch older than the declared floor \(([\d.]+):", reliability) == [declared["torch"]]
    assert re.findall(r"PyAV older than ([\d.]+)", reliability) == [declared["av"]]
    imported = set()
    for f in (repo / "src" / "mme").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported.add(node.module.partition(".")[0])
    optional = {"transformers", "decord"}  # pyproject.toml's hf extra; the decord backend, which says how to install it
    assert imported - set(sys.stdlib_module_names) - {"mme", "__future__"} - optional == set(DEPENDENCIES)
    assert sorted(DEPENDENCIES.values()) == sorted(declared)
    listed = re.search(r"\*\*pip-installable on CPU and GPU\*\*: (.*?); no timm", readme, re.S)[1]
    names = {"torch": "PyTorch", "numpy": "NumPy", "opencv-python-headless": "OpenCV", "av": "PyAV", "pyyaml": "PyYAML",
             "safetensors": "safetensors", "tqdm": "tqdm", "matplotlib": "Matplotlib", "pillow": "Pillow"}
    listed = re.split(r", | and ", re.sub(r" \([^)]*\)", "", " ".join(listed.split())))  # the floors left out
    assert sorted(listed) == sorted(names[d] for d in declared)
