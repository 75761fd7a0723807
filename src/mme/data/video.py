"""Open a video and answer: frame count, fps, size, frames at indices (PyAV default, OpenCV, decord).

**Frame i** is the i-th frame of FFmpeg's sequential decode of the file's first video stream, in presentation
order: ``list(av.open(path).decode(video=0))[i]``. ``num_frames`` is the length of that decode. The default
PyAV reader returns exactly those frames for any index set, in any order, on every file it opens
(``VideoReader.exact``). The OpenCV reader is not exact: its seeking (CAP_PROP_POS_FRAMES) returns wrong frames
on variable-frame-rate files, MPEG-PS/TS and some Matroska files; decord is not checked. Neither is the
default.

Seeking is only a shortcut to frame i, valid where the container's timestamps are: AVI stores no presentation
times (H.264 or Xvid with B-frames decode to frames whose timestamps come out of order), packets may lack or
repeat timestamps (raw streams, some Matroska), and a packet may hold two frames or none (Xvid's packed B-frames,
not-coded frames, an H.264 end of sequence). So the PyAV reader indexes each file once per process (cached by
path, size and mtime) and keeps its verdict with the index:

- The index is a demux: the sorted packet timestamps and the keyframes. Packets without or sharing timestamps
  make the file *sequential*. AVI and MPEG-4 Part 2 files are also checked against a whole decode right away:
  if the frames do not come out with the packets' timestamps in order, the file is *sequential*.
- Otherwise the file is read by *seek*, from proven keyframes only. A decode from the start proves each frame
  that comes out carrying the index's next timestamp; a read seeks to the last keyframe at or before its first
  frame that is proven (the first frame when none is), decodes on, and checks and proves every frame up to its
  last one. So the first read of a file decodes from the start, and a packet that decodes to no frame cannot
  shift a later read: the read that crosses it finds a timestamp missing.
- *Sequential* files are read by counting frames from the start of the decode (a read continues the previous
  one's decode when it starts at or after where that one stopped). A read that finds the index contradicted
  turns the file sequential (with its count from a decode), warns once with the file's name and the reason,
  and counts. Until then such a file's ``num_frames`` is its packet count.

A container is never seeked once decoded to its end: it is reopened (FFmpeg refuses some such seeks), as it is
to rewind. MPEG-PS/TS seeks that land after their keyframe are retried from earlier keyframes.

Every failure is a :class:`VideoError` whose message names the file and the reason, with the short reason in
``error.reason`` (used to count skipped videos in a dataset).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from mme.errors import VideoError

BACKENDS = ("pyav", "opencv", "decord")

log = logging.getLogger(__name__)


def video_error(path: str | Path, reason: str, detail: object = "") -> VideoError:
    """A VideoError naming ``path`` with a short ``reason`` ('missing', 'empty', 'unreadable', ...)."""
    err = VideoError(f"{path}: {reason}" + (f" ({detail})" if detail != "" else ""))
    err.reason = reason
    return err


class VideoReader:
    """Random access to the frames of one video file. Use as a context manager or call :meth:`close`.

    ``num_frames`` (int), ``fps`` (float), ``size`` ``(W, H)``; :meth:`read` returns uint8 RGB ``(N, H, W, 3)``
    for any (unsorted, repeated) frame indices. ``exact``: whether they are frame i of the module's definition
    on every file (only PyAV's are).
    """

    exact = False
    path: str
    num_frames: int
    fps: float
    size: tuple[int, int]

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` in the given order, uint8 ``(N, H, W, 3)``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            W, H = self.size
            return np.zeros((0, H, W, 3), np.uint8)
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise video_error(self.path, "index out of range",
                              f"asked for {idx.min()}..{idx.max()}, the video has {self.num_frames} frames")
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = self._read_sorted(unique)  # (U, H, W, 3)
        return frames[inverse]

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path: str | Path, backend: str = "pyav", threads: int = 0) -> VideoReader:
    """Open ``path`` with ``backend`` ('pyav', 'opencv' or 'decord'); ``threads`` = decoder threads (0 = auto).

    Raises VideoError for a missing, empty, unreadable or frameless file.
    """
    path = str(path)
    if backend not in BACKENDS:
        raise VideoError(f"{path}: unknown video backend {backend!r}; choose one of {BACKENDS}")
    if not os.path.exists(path):
        raise video_error(path, "missing", "no such file")
    if os.path.isdir(path):
        raise video_error(path, "unreadable", "is a directory")
    if os.path.getsize(path) == 0:
        raise video_error(path, "empty", "zero-byte file")
    reader = {"pyav": _PyAVReader, "opencv": _OpenCVReader, "decord": _DecordReader}[backend](path, threads)
    if reader.num_frames <= 0:
        reader.close()
        raise video_error(path, "unreadable", "no decodable video frames")
    return reader


def check_video(path: str | Path, min_frames: int = 1) -> dict:
    """Open and decode one file as a long run would, before it does (PyAV). Returns ``{"path", "status",
    "frames", "packets", "seeking", "reason"}``; ``status``: 'ok'; 'suspicious' when the file must be read
    sequentially (its timestamps cannot be trusted, or seeking returned another frame than counting) or its
    packets and frames differ in number; 'short' under ``min_frames`` frames; or the VideoError's reason
    ('missing', 'empty', 'unreadable', 'decode error', ...)."""
    out = {"path": str(path), "status": "ok", "frames": 0, "packets": 0, "seeking": "", "reason": ""}
    try:
        with open_video(path) as reader:
            out.update(reader.check())
    except VideoError as e:
        return {**out, "status": getattr(e, "reason", "unreadable"), "reason": str(e)}
    if out["frames"] < min_frames:
        out.update(status="short", reason=f"{out['frames']} frames, fewer than {min_frames}")
    elif out["seeking"] == "sequential" or out["frames"] != out["packets"]:
        out.update(status="suspicious", reason=out["reason"] or f"{out['packets']} packets decode to "
                                                                  f"{out['frames']} frames")
    return out


class _PyAVReader(VideoReader):
    """Frame i exactly (module docstring), seeking where the file's timestamps are proven; threaded decoding."""

    exact = True

    def __init__(self, path: str, threads: int = 0):
        self.path = path
        self._threads = threads
        self._container = None
        self._open()
        try:
            if not self._container.streams.video:
                raise video_error(path, "unreadable", "no video stream")
            ctx = self._stream.codec_context
            self.size = (int(ctx.width), int(ctx.height))
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            self.fps = float(rate) if rate else 0.0
            st = os.stat(path)
            self._index = _pyav_index(path, st.st_size, st.st_mtime_ns)
            self.num_frames = self._index.num_frames
        except BaseException:
            self.close()
            raise

    @property
    def seeking(self) -> str:
        """How the file is read (module docstring): 'seek' or 'sequential'."""
        return self._index.mode

    @property
    def seeking_reason(self) -> str:
        """Why the file is read sequentially ('' otherwise)."""
        return self._index.reason

    def _open(self) -> None:
        """(Re)open the container: its decode starts again at frame 0."""
        self.close()
        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise video_error(self.path, "unreadable", e) from e
        if self._container.streams.video:
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._threads
            self._start_decode(0)

    def _start_decode(self, pos: int | None) -> None:
        """Decode on from the container's current position; ``pos`` = index of the next frame (None right after a
        seek, until the keyframe comes out)."""
        self._frames = self._container.decode(self._stream)
        self._pos = pos
        self._at_end = False  # whether the demuxer may have read the whole file: then reopen, never seek

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        try:
            if self._index.mode == "seek":
                frames = self._read_seeking(indices)
                if frames is not None:
                    return frames
                self._pos = None  # the read stopped part-way: count from the start
            return self._read_counting(indices)
        except av.error.FFmpegError as e:
            raise video_error(self.path, "decode error", e) from e

    def _read_seeking(self, indices: np.ndarray) -> np.ndarray | None:
        """Decode from the last proven keyframe at or before the first wanted frame (the first frame if none is
        proven yet), mapping frames to indices by timestamp and checking that each carries the index's next one,
        which proves it. Returns None (and turns the file sequential) at the first disagreement."""
        index = self._index
        pts = index.pts
        anchor = min(int(indices[0]), max(index.proven - 1, 0))
        keys = index.key_pts[index.key_pts <= pts[anchor]]
        key = int(keys[-1]) if len(keys) else int(pts[0])
        start = int(np.searchsorted(pts, key))
        frames = self._frames
        if self._pos is None or not start <= self._pos <= indices[0]:  # else decoding on is no slower than seeking
            frame = self._seek(key, keys)
            if frame is None or frame.pts != key:
                self._distrust(f"a seek to frame {start} (timestamp {key}) came out at timestamp "
                               f"{'(end)' if frame is None else frame.pts}")
                return None
            frames, self._pos = itertools.chain([frame], self._frames), start
        wanted = {int(i): k for k, i in enumerate(indices)}
        out: list[np.ndarray | None] = [None] * len(indices)
        for frame in frames:
            pos = self._pos
            if pos >= len(pts) or frame.pts != pts[pos]:
                self._distrust(f"frame {pos} came out with timestamp {frame.pts}, the index says "
                               f"{pts[pos] if pos < len(pts) else 'no more frames'}")
                return None
            index.proven = max(index.proven, pos + 1)
            k = wanted.get(pos)
            if k is not None:
                out[k] = frame.to_ndarray(format="rgb24")
            self._pos += 1
            self._at_end = self._pos == len(pts)
            if pos >= indices[-1]:
                return np.stack(out)
        self._at_end = True
        self._distrust(f"the decode ended before frame {indices[-1]} of the {len(pts)} the index lists")
        return None

    def _seek(self, key: int, keys: np.ndarray) -> av.VideoFrame | None:
        """Position the decode at keyframe ``key`` and return the first frame at or after it (None at the end),
        skipping those before it (an open GOP's leading frames, or a seek that landed early). MPEG-PS/TS seeks can
        land after their target: then the seek is retried from the two keyframes before (``keys``: the keyframes
        up to ``key``, sorted)."""
        first = int(self._index.pts[0])
        for target in [int(k) for k in keys[::-1][:3]] or [first]:
            if target == first or self._at_end:
                self._open()
            if target != first:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
                self._start_decode(None)
            frame = next((f for f in self._frames if f.pts is None or f.pts >= key), None)
            self._at_end = frame is None
            if frame is not None and (frame.pts is None or frame.pts <= key):
                break
        return frame

    def _read_counting(self, indices: np.ndarray) -> np.ndarray:
        """Count frames from the start of the decode: the definition of frame i."""
        if self._pos is None or self._pos > indices[0]:
            self._open()
        wanted = {int(i): k for k, i in enumerate(indices)}
        out: list[np.ndarray | None] = [None] * len(indices)
        for frame in self._frames:
            k = wanted.get(self._pos)
            if k is not None:
                out[k] = frame.to_ndarray(format="rgb24")
            self._pos += 1
            if self._pos > indices[-1]:
                break
        else:
            self._at_end = True
        missing = [int(indices[k]) for k, f in enumerate(out) if f is None]
        if missing:
            raise video_error(self.path, "decode error", f"frames {missing[:5]} could not be decoded (the decode "
                                                         f"has {self.num_frames} frames)")
        return np.stack(out)

    def check(self, probes: int = 4) -> dict:
        """Prove the whole index by a decode from the start (or find it contradicted: the file turns sequential),
        then compare ``probes`` frames read alone by seeking with the same frames counted from the start (a
        difference turns the file sequential too). Returns its frames, packets, seeking and reason."""
        if self._index.mode == "seek" and self._index.proven < self.num_frames:
            try:
                self.read([self.num_frames - 1])
            except VideoError:
                if self._index.mode == "seek":
                    raise  # else the count was wrong: it is right now
        if self._index.mode == "seek":
            idx = np.unique(np.linspace(0, self.num_frames - 1, probes).round().astype(np.int64))
            self._pos = None
            counted = self._read_counting(idx)
            for i, frame in zip(idx[::-1], counted[::-1]):  # the last first: each read seeks back
                if not np.array_equal(self.read([i])[0], frame):
                    self._distrust(f"frame {i} read by seeking differs from frame {i} decoded from the start")
                    break
        index = self._index
        return {"frames": index.num_frames, "packets": index.packets, "seeking": index.mode, "reason": index.reason}

    def _distrust(self, why: str) -> None:
        """Turn the file sequential for the rest of this process (the verdict lives in the cached index), with its
        count from a decode; logged once per file."""
        index = self._index
        if index.mode != "sequential":
            log.warning("%s: timestamps unreliable (%s); its frames are counted from the start of the decode",
                        self.path, why)
            index.mode, index.reason, index.num_frames = "sequential", why, len(_decoded_timestamps(self.path))
        self.num_frames = index.num_frames

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


@dataclass
class _Index:
    """What the demux of a file says, and the verdict on its timestamps (module docstring). Cached per process;
    readers update it as their decodes prove or contradict it."""

    pts: np.ndarray
    """(N,) sorted presentation timestamps of the frames, int64; empty when unusable."""
    key_pts: np.ndarray
    """Sorted timestamps of the keyframes."""
    num_frames: int
    packets: int
    """Packets the demux found (empty ones and those an edit list cuts left out)."""
    mode: str
    """'seek' or 'sequential'."""
    reason: str = ""
    """Why the file is read sequentially."""
    proven: int = 0
    """Frames 0 .. proven-1 have come out of a decode from the start (or from a proven keyframe) carrying the
    index's timestamps in order."""


@functools.lru_cache(maxsize=4096)
def _pyav_index(path: str, size: int, mtime_ns: int) -> _Index:
    """Index a file by demuxing it; cached per (path, size, mtime). Packets without a timestamp or sharing one
    make the file sequential, counted by a decode. AVI stores no presentation times (its timestamps number the
    chunks) and MPEG-4 Part 2 packets may hold two frames (packed B-frames) or none (not-coded VOPs), so their
    index is checked against a whole decode at once."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue  # flush packets / frames cut by an edit list
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            check = container.format.name == "avi" or stream.codec_context.name == "mpeg4"
        if None in pts:
            return _sequential_index(path, len(pts), "packets without timestamps")
        if len(set(pts)) < len(pts):
            return _sequential_index(path, len(pts), f"{len(pts)} packets share {len(set(pts))} timestamps")
        index = _Index(np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64)), len(pts), len(pts),
                       "seek")
        if check:
            decoded = _decoded_timestamps(path)
            if decoded != index.pts.tolist():
                return _sequential_index(path, len(pts), f"the {len(decoded)} decoded frames do not carry the "
                                                         f"{len(pts)} packets' timestamps in order", len(decoded))
            index.proven = len(decoded)
        return index
    except av.error.FFmpegError as e:
        raise video_error(path, "unreadable", e) from e


def _sequential_index(path: str, packets: int, reason: str, num_frames: int | None = None) -> _Index:
    """The index of a file read by counting: its frame count from a decode (unless given)."""
    log.debug("%s: %s; its frames are counted from the start of the decode", path, reason)
    if num_frames is None:
        num_frames = len(_decoded_timestamps(path))
    return _Index(np.zeros(0, np.int64), np.zeros(0, np.int64), num_frames, packets, "sequential", reason)


def _decoded_timestamps(path: str) -> list[int | None]:
    """The timestamp of every frame of a full decode, in order, from a container of its own (one demuxed to its
    end may refuse to seek back)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [frame.pts for frame in container.decode(stream)]


class _OpenCVReader(VideoReader):
    """OpenCV's FFmpeg backend; the count is verified by grabbing every frame once (cached per process). Not
    exact: CAP_PROP_POS_FRAMES seeks by frame-rate arithmetic (wrong frames on VFR files, MPEG-PS/TS)."""

    def __init__(self, path: str, threads: int = 0):
        self.path = path
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise video_error(path, "unreadable", "OpenCV cannot open it")
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        st = os.stat(path)
        self.num_frames = _opencv_count(path, st.st_size, st.st_mtime_ns)

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        # Decode forward from the first wanted frame; CAP_PROP_POS_FRAMES seeks to the keyframe before it and
        # decodes up to it.
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, int(indices[0]))
        out, pos = [], int(indices[0])
        for i in indices:
            while pos < i:
                if not self._cap.grab():
                    raise video_error(self.path, "decode error", f"frame {pos} could not be decoded")
                pos += 1
            ok, frame = self._cap.read()
            if not ok:
                raise video_error(self.path, "decode error", f"frame {i} could not be decoded")
            pos += 1
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def close(self) -> None:
        self._cap.release()


@functools.lru_cache(maxsize=4096)
def _opencv_count(path: str, size: int, mtime_ns: int) -> int:
    """Frames by grabbing them all: CAP_PROP_FRAME_COUNT is an estimate from the container header."""
    cap = cv2.VideoCapture(path)
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    return count


class _DecordReader(VideoReader):
    """decord, when installed (optional; unmaintained upstream). It bundles its own FFmpeg: imported before PyAV
    it can shadow PyAV's codecs, so it is imported only here, on first use."""

    def __init__(self, path: str, threads: int = 0):
        if importlib.util.find_spec("decord") is None:
            raise VideoError(f"{path}: the 'decord' backend is not installed (pip install decord)")
        import decord

        self.path = path
        try:
            self._vr = decord.VideoReader(path, num_threads=threads)
        except (decord.DECORDError, RuntimeError) as e:  # decord raises RuntimeError for files it cannot open
            raise video_error(path, "unreadable", e) from e
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        H, W = self._vr[0].shape[:2]
        self.size = (int(W), int(H))

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        return self._vr.get_batch(indices.tolist()).asnumpy()
