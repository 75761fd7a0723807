"""Open a video and answer: frame count, fps, size, frames at indices (PyAV default, OpenCV, decord).

Frame ``i`` is the i-th frame in presentation order, exactly as a full sequential decode yields it. The PyAV
reader gets there without decoding the whole file: it indexes the packets' presentation timestamps once per
file (a demux, no decoding; cached per process), then for each read seeks to the keyframe at or before the
first wanted frame and decodes forward only up to the last wanted one, mapping decoded frames to indices by
their timestamps. Files whose packets carry no usable timestamps are counted by decoding once and then read
sequentially. Every failure is a :class:`VideoError` whose message names the file and the reason, with the
short reason in ``error.reason`` (used to count skipped videos in a dataset).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import av
import cv2
import numpy as np

from mme.errors import VideoError

BACKENDS = ("pyav", "opencv", "decord")


def video_error(path: str | Path, reason: str, detail: object = "") -> VideoError:
    """A VideoError naming ``path`` with a short ``reason`` ('missing', 'empty', 'unreadable', ...)."""
    err = VideoError(f"{path}: {reason}" + (f" ({detail})" if detail != "" else ""))
    err.reason = reason
    return err


class VideoReader:
    """Random access to the frames of one video file. Use as a context manager or call :meth:`close`.

    ``num_frames`` (int), ``fps`` (float), ``size`` ``(W, H)``; :meth:`read` returns uint8 RGB ``(N, H, W, 3)``
    for any (unsorted, repeated) frame indices.
    """

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


class _PyAVReader(VideoReader):
    """Frame-accurate seeking with PyAV (FFmpeg), threaded decoding."""

    def __init__(self, path: str, threads: int = 0):
        self.path = path
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise video_error(path, "unreadable", e) from e
        try:
            if not self._container.streams.video:
                raise video_error(path, "unreadable", "no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = threads
            ctx = self._stream.codec_context
            self.size = (int(ctx.width), int(ctx.height))
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            self.fps = float(rate) if rate else 0.0
            st = os.stat(path)
            self._pts, self._key_pts = _pyav_index(path, st.st_size, st.st_mtime_ns)
            self.num_frames = len(self._pts)
        except BaseException:
            self._container.close()
            raise

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        try:
            if self._pts.dtype != np.int64:  # no usable timestamps: count from the start
                return self._decode_sequential(indices)
            return self._decode_seek(indices)
        except av.error.FFmpegError as e:
            raise video_error(self.path, "decode error", e) from e

    def _decode_seek(self, indices: np.ndarray) -> np.ndarray:
        want = {int(self._pts[i]): k for k, i in enumerate(indices)}
        first, last = int(self._pts[indices[0]]), int(self._pts[indices[-1]])
        keys = self._key_pts[self._key_pts <= first]
        seek_to = int(keys[-1]) if len(keys) else int(self._pts[0])
        self._container.seek(seek_to, stream=self._stream, backward=True, any_frame=False)
        out: list[np.ndarray | None] = [None] * len(indices)
        for frame in self._container.decode(self._stream):
            if frame.pts is None:
                return self._decode_sequential(indices)
            k = want.get(int(frame.pts))
            if k is not None:
                out[k] = frame.to_ndarray(format="rgb24")
            if frame.pts >= last:
                break
        if any(f is None for f in out):  # decoded timestamps differ from the packets': count frames instead
            return self._decode_sequential(indices)
        return np.stack(out)

    def _decode_sequential(self, indices: np.ndarray) -> np.ndarray:
        self._container.seek(0)
        wanted = {int(i): k for k, i in enumerate(indices)}
        out: list[np.ndarray | None] = [None] * len(indices)
        for i, frame in enumerate(self._container.decode(self._stream)):
            k = wanted.get(i)
            if k is not None:
                out[k] = frame.to_ndarray(format="rgb24")
            if i >= indices[-1]:
                break
        missing = [int(indices[k]) for k, f in enumerate(out) if f is None]
        if missing:
            raise video_error(self.path, "decode error", f"frames {missing[:5]} could not be decoded")
        return np.stack(out)

    def close(self) -> None:
        self._container.close()


@functools.lru_cache(maxsize=4096)
def _pyav_index(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted presentation timestamps of every frame and of the keyframes, by demuxing (no decoding).

    Cached per (path, size, mtime). If any packet lacks a timestamp or two share one, the frames are counted by
    decoding once and the pts array is returned as float NaNs (the reader then decodes sequentially).
    """
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue  # flush packets / frames cut by an edit list
                if packet.pts is None:
                    pts = None
                    break
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            if pts is not None and len(set(pts)) == len(pts):
                return np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64))
            container.seek(0)
            count = sum(1 for _ in container.decode(stream))
            return np.full(count, np.nan), np.zeros(0, np.int64)
    except av.error.FFmpegError as e:
        raise video_error(path, "unreadable", e) from e


class _OpenCVReader(VideoReader):
    """OpenCV's FFmpeg backend; the count is verified by grabbing every frame once (cached per process)."""

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
