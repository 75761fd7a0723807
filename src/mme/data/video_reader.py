"""The interface every video backend implements: :class:`VideoReader` (frame count, fps, size, frames at indices)
and :func:`video_error`, the one error its readers raise. Frame i is defined in :mod:`mme.data.video`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mme.errors import VideoError


def video_error(path: str | Path, reason: str, detail: object = "") -> VideoError:
    """A VideoError naming ``path`` with a short ``reason`` ('missing', 'empty', 'unreadable', ...)."""
    err = VideoError(f"{path}: {reason}" + (f" ({detail})" if detail != "" else ""))
    err.reason = reason
    return err


class VideoReader:
    """Random access to the frames of one video file. Use as a context manager or call :meth:`close`.

    ``num_frames`` (int), ``fps`` (float), ``size`` ``(W, H)``; :meth:`read` returns uint8 RGB ``(N, H, W, 3)``
    for any (unsorted, repeated) frame indices. ``exact``: whether they are frame i as :mod:`mme.data.video`
    defines it, on every file (only PyAV's are).
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
        return frames if len(unique) == len(idx) and np.array_equal(unique, idx) else frames[inverse]

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
