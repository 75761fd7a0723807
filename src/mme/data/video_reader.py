"""The interface every video backend implements: :class:`VideoReader` (frame count, fps, size, frames at indices)
and :func:`video_error`, the one error its readers raise. Frame i is defined in :mod:`mme.data.video`.

**Orientation.** Frame i is the coded frame. A file's display matrix (phone videos; the MP4 track header's)
tells players how to turn or mirror it for display; :func:`display_turn` reads the matrix as the axis swaps and
flips that make the frame look as it is displayed, and :meth:`VideoReader.orient` makes a reader return its frames
that way (``data.orientation=display``), for every backend alike.
"""

from __future__ import annotations

import functools
import math
import stat
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from mme.errors import ConfigError, OutOfMemory, VideoError, allocation_refused
from mme.utils import MAX_INT, VersionOfFile


def video_error(path: str | Path, reason: str, detail: object = "", kind: type[VideoError] = VideoError,
                cause: BaseException | None = None) -> VideoError | OutOfMemory:
    """A VideoError (or its subclass ``kind``) naming ``path`` with a short ``reason`` ('missing', 'empty',
    'unreadable', ...) and its ``detail`` (kept as text, for a message that quotes it). Where its ``cause`` (the error
    of the read) is the system's refusal of an allocation (:func:`~mme.errors.allocation_refused`: FFmpeg out of
    memory as it opened or decoded the file), an :class:`~mme.errors.OutOfMemory` instead: no failure of the file,
    which a run would skip for good and a check report as the video's. Where it is a FileNotFoundError (PyAV's, of
    a file gone as FFmpeg opened it: moved, its volume unmounted), the VideoError is 'missing' (:data:`GONE`), which
    a run skips and counts, whatever ``reason`` the read gave its failure."""
    if allocation_refused(cause):
        return OutOfMemory(f"{path}: out of memory while reading it ({detail or reason}): the machine's memory ran "
                           "short, the video is not at fault")
    if isinstance(cause, FileNotFoundError):
        reason, detail = "missing", GONE
    err = kind(f"{path}: {reason}" + (f" ({detail})" if detail != "" else ""))
    err.reason, err.detail = reason, str(detail)
    return err


def not_regular(mode: int) -> str | None:
    """Why a file of stat mode ``mode`` is no video file to read: a folder; a named pipe, socket or device (an open
    of a named pipe waits for a writer, for good); None for a regular file."""
    if stat.S_ISDIR(mode):
        return "is a folder (mme reads video files, not folders of frames)"
    if not stat.S_ISREG(mode):
        return "not a regular file (a named pipe, a socket or a device)"
    return None


GONE = "no such file: gone as it was opened (moved, or its volume unmounted)"
"""The detail of the VideoError 'missing' of a file there when it was listed or looked up, and gone as it was opened."""


def no_frames(packets: int | None) -> str:
    """Why a file that decodes to no frame is unreadable, with its packets where the backend counts them."""
    return "no decodable video frames" + (f" ({packets} packets)" if packets is not None else "")


def _whole(arr: np.ndarray) -> np.ndarray:
    """Which entries of the integer or float array ``arr`` are frame indices: whole numbers from 0 to
    :data:`~mme.utils.MAX_INT`; floats compared in float64 (``2.0**63`` overflows float16, with numpy's warning)."""
    if arr.dtype.kind in "iu":
        return (arr >= 0) & (arr <= MAX_INT)
    f = arr.astype(np.float64)
    return (f == np.floor(f)) & (f >= 0) & (f < 2.0**63)  # NaN and inf fail each


def frame_indices(values, given: str) -> np.ndarray:
    """``values`` (ints, or floats that are whole: ``np.linspace``'s) as int64 frame indices ``(N,)``; a fraction,
    NaN, a negative index, one past int64, a bool or text refused in one line naming the wrong ones as ``given`` (an
    int64 cast took 5.75 for frame 5 and -0.5 for frame 0, unsaid)."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "iuf":
        fits = _whole(arr)
    else:  # entry by entry (``[1, None]``, ``[1, 10**20]``, ``[1, "a"]``), so that the wrong ones alone are named
        arr = np.asarray(values, dtype=object).reshape(-1)
        fits = np.array([(one := np.asarray(v)).ndim == 0 and one.dtype.kind in "iuf" and bool(_whole(one))
                         for v in arr], bool)
    if not fits.all():
        wrong = arr[~fits]
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        raise ConfigError(f"{given} must be raw frame indices (whole numbers from 0 to 2**63 - 1), got "
                          f"{wrong[:5].tolist()}{more}")
    return arr.astype(np.int64)


ORIENTATIONS = ("coded", "display")
"""How frames are returned: as coded (frame i, the default), or as displayed (the display matrix applied)."""


def display_turn(matrix, path: str | Path = "") -> tuple[bool, bool, bool]:
    """``(transpose, flip_rows, flip_cols)`` that turn a coded frame (H, W, ...) into the frame ``matrix`` displays.

    ``matrix``: FFmpeg's display matrix, 9 int32 ``a b u c d v x y w`` (a..d in 16.16 fixed point), None for none.
    It maps a coded pixel (p, q) to ``x' = a p + c q``, ``y' = b p + d q`` (FFmpeg's libavutil/display.h; the
    offsets only move the image). Right-angle turns and mirrors are applied; any other matrix (an oblique
    rotation, a shear, a stretch) is a VideoError naming ``path``."""
    if matrix is None:
        return False, False, False
    a, b, _, c, d = (int(v) for v in list(matrix)[:5])
    big = max(abs(a), abs(b), abs(c), abs(d))
    a, b, c, d = (0 if abs(v) * 100 < big else v for v in (a, b, c, d))  # cos 90 degrees, rounded
    if a and d and not (b or c):  # a scale (QuickTime's anamorphic matrices) is left out, as non-square pixels are
        return False, d < 0, a < 0
    if b and c and not (a or d):
        return True, b < 0, c < 0
    raise video_error(path, "unreadable", f"its display matrix {list(matrix)} is not a turn by a right angle or a "
                                          f"mirror, which data.orientation=display applies")


def display_angle(matrix) -> int | None:
    """The degrees by which ``matrix`` turns frames counterclockwise, as FFmpeg's av_display_rotation_get
    reports them (PyAV's ``VideoFrame.rotation``); 0 without a matrix. None for a matrix that mirrors them (a
    negative determinant), which no angle describes (FFmpeg's reads -180 for a mirror left to right, 0 top to
    bottom: turning the frames by it would not show them as displayed)."""
    if matrix is None:
        return 0
    a, b, _, c, d = (int(v) for v in list(matrix)[:5])
    return None if a * d - b * c < 0 else round(-math.degrees(math.atan2(b, a)))


TURN_NAMES = {(False, True, True): "turns its frames by 180 degrees",
              (False, False, True): "mirrors its frames left to right",
              (False, True, False): "mirrors its frames top to bottom",
              (True, True, False): "turns its frames 90 degrees counterclockwise",
              (True, False, True): "turns its frames 90 degrees clockwise",
              (True, False, False): "mirrors its frames across their diagonal",
              (True, True, True): "mirrors its frames across their anti-diagonal"}
"""What each :func:`display_turn` does to a frame, in words (the identity is left out)."""


class VideoReader:
    """Random access to the frames of one video file. Use as a context manager or call :meth:`close`.

    ``num_frames`` (int), ``fps`` (float), ``size`` ``(W, H)``; :meth:`read` returns uint8 RGB ``(N, H, W, 3)``
    for any (unsorted, repeated) frame indices. ``exact``: whether they are frame i as :mod:`mme.data.video`
    defines it, on every file (only PyAV's are). A backend reads coded frames (:meth:`_read_sorted`);
    :meth:`orient` turns what :meth:`read` returns, and ``size`` with it.
    """

    exact = False
    turn = (False, False, False)
    """``(transpose, flip_rows, flip_cols)`` applied to every frame :meth:`read` returns (:func:`display_turn`)."""
    path: str
    num_frames: int
    fps: float
    size: tuple[int, int]
    packets: int | None = None
    """Packets of the video stream, where the backend counts them (PyAV's)."""
    count_may_change = False
    """Whether a read may still find ``num_frames`` wrong and raise FrameCountChanged (PyAV's count of packets that
    no decode has proven yet); other backends' counts are their own, never corrected."""
    closed = False
    """Whether :meth:`close` has released the file: a read after it is refused (:meth:`_check_open`)."""

    def __new__(cls, *args, **kwargs):
        reader = super().__new__(cls)
        # held by each read, orientation and close: one reader used from several threads reads once at a time (its
        # decoder, container and position are one; two reads at once crashed the process, or gave other frames)
        reader._lock = threading.RLock()
        return reader

    def read(self, indices, each: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Frames at ``indices`` in the given order, uint8 ``(N, H, W, 3)``; ``each``: applied to every frame as it
        is decoded, its results returned instead, ``(N, ...)``: a read then holds its frames at the size ``each``
        makes (a crop, a resize), not at the video's (56 frames of a 4K video: 1.3 GB)."""
        idx = frame_indices(indices, f"{self.path}: the frames to read")
        with self._lock:
            self._check_open()
            if idx.size == 0:
                W, H = self.size
                return np.zeros((0, H, W, 3), np.uint8)
            if idx.max() >= self.num_frames:
                raise video_error(self.path, "index out of range",
                                  f"asked for {idx.min()}..{idx.max()}, the video has {self.num_frames} frames")
            unique, inverse = np.unique(idx, return_inverse=True)
            frames = self._read_sorted(unique, self._each_turned(each))  # (U, ...)
        return frames if len(unique) == len(idx) and np.array_equal(unique, idx) else frames[inverse]

    def display_matrix(self) -> tuple[int, ...] | None:
        """The file's display matrix (9 int32; None without), read by PyAV from its first decoded frame, once per
        file and process while it is unchanged (by :class:`~mme.utils.VersionOfFile`; the PyAV reader keeps it with
        its frame index instead)."""
        return _probed_display_matrix(VersionOfFile.of(self.path))

    def sample_aspect(self) -> Fraction:
        """The file's sample (pixel) aspect ratio (1: square), read by PyAV from its header, once per file and process
        while it is unchanged (the PyAV reader reads its own stream's)."""
        return _probed_sample_aspect(VersionOfFile.of(self.path))

    def orient(self, turn: tuple[bool, bool, bool]) -> None:
        """Return frames turned by ``turn`` from now on (:func:`display_turn`); ``size`` becomes the turned one."""
        with self._lock:
            if turn[0] != self.turn[0]:
                self.size = self.size[::-1]
            self.turn = turn

    def _each_turned(self, each: Callable[[np.ndarray], np.ndarray] | None
                     ) -> Callable[[np.ndarray], np.ndarray] | None:
        """What a read applies to each decoded frame: the reader's turn, then ``each``."""
        transpose, flip_rows, flip_cols = self.turn
        if not (transpose or flip_rows or flip_cols):
            return each

        def turned(frame: np.ndarray) -> np.ndarray:
            frame = frame.swapaxes(0, 1) if transpose else frame
            frame = np.ascontiguousarray(frame[::-1 if flip_rows else 1, ::-1 if flip_cols else 1])
            return frame if each is None else each(frame)
        return turned

    def _read_sorted(self, indices: np.ndarray, each: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Coded frames at sorted unique ``indices``, each passed through ``each`` as it is decoded (a
        :class:`FrameBuffer`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; the reader reads no more (:meth:`_check_open`)."""
        with self._lock:
            self.closed = True
            self._release()

    def _release(self) -> None:
        """Release what the backend holds of the file (a reopen releases it too)."""

    def _check_open(self) -> None:
        """Refuse a use of the file after :meth:`close` (PyAV's freed decoder, read again, crashed the process)."""
        if self.closed:
            raise ValueError(f"{self.path}: the reader of this video was closed (open it again to read it)")

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameBuffer:
    """The frames one read returns, each written into one array as it is decoded, through ``each`` if given (a
    list of frames stacked at the end held every frame twice: 2.8 GB for the 56 frames of a 4K video)."""

    def __init__(self, indices: np.ndarray, each: Callable[[np.ndarray], np.ndarray] | None = None):
        self.indices = indices
        self.each = each
        self.slot = {int(i): k for k, i in enumerate(indices)}
        """Where each wanted frame goes."""
        self.filled = np.zeros(len(indices), bool)
        self.frames: np.ndarray | None = None

    def put(self, index: int, rgb: np.ndarray) -> None:
        """Frame ``index`` (one the read wants) decoded as ``rgb``."""
        if self.each is not None:
            rgb = self.each(rgb)
        if self.frames is None:
            self.frames = np.empty((len(self.indices), *rgb.shape), rgb.dtype)
        k = self.slot[index]
        self.frames[k] = rgb
        self.filled[k] = True

    def missing(self) -> list[int]:
        """The wanted frames not decoded."""
        return [int(i) for i in self.indices[~self.filled]]


@functools.lru_cache(maxsize=4096)
def _probed_display_matrix(file: VersionOfFile) -> tuple[int, ...] | None:
    from mme.data.pyav_reader import read_display_matrix  # PyAV reads it: the other backends do not say

    return read_display_matrix(file.path)


@functools.lru_cache(maxsize=4096)
def _probed_sample_aspect(file: VersionOfFile) -> Fraction:
    from mme.data.pyav_reader import read_sample_aspect  # PyAV reads it for every backend

    return read_sample_aspect(file.path)
