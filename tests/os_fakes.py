"""File-system and memory faults made for the tests, where every Python the project supports (3.10-3.13) looks them
up."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest


def ffmpeg_out_of_memory() -> av.error.MemoryError:
    """FFmpeg's refused allocation (ENOMEM) as PyAV raises it, from an open or a decode."""
    return av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory")


def out_of_memory_opening(patch: pytest.MonkeyPatch, refused: Callable[[str], bool]) -> None:
    """Make the PyAV reader's open of each path that ``refused`` names fail as FFmpeg out of memory
    (:func:`ffmpeg_out_of_memory`); the others open as they do."""
    from mme.data import pyav_reader

    real = pyav_reader.open_container

    def opening(path, **options):
        if refused(str(path)):
            raise ffmpeg_out_of_memory()
        return real(path, **options)

    patch.setattr(pyav_reader, "open_container", opening)


def swap_stat(patch: pytest.MonkeyPatch, fake: Callable[[Callable], Callable]) -> None:
    """Make ``os.stat`` and ``os.lstat`` ``fake(os.stat)`` and ``fake(os.lstat)``, for pathlib too: Python 3.10's
    ``Path.stat`` (and so its ``lstat``, ``exists``, ``is_dir``, ...) calls the ``os.stat`` pathlib bound at its
    import, not the ``os`` module's, and is made to call the ``os`` module's, as 3.11 to 3.13's does."""
    patch.setattr(os, "stat", fake(os.stat))
    patch.setattr(os, "lstat", fake(os.lstat))
    patch.setattr(Path, "stat", lambda self, *, follow_symlinks=True: os.stat(self, follow_symlinks=follow_symlinks))


def swap_listing(patch: pytest.MonkeyPatch, fake: Callable[[Callable], Callable]) -> None:
    """Make ``os.listdir`` and ``os.scandir`` ``fake(os.listdir)`` and ``fake(os.scandir)``, for pathlib too: Python
    3.10's ``Path.iterdir`` calls the ``os.listdir`` pathlib bound at its import, and is made to call the ``os``
    module's, as 3.11 and 3.12's does (3.13's calls ``os.scandir``)."""
    patch.setattr(os, "listdir", fake(os.listdir))
    patch.setattr(os, "scandir", fake(os.scandir))
    patch.setattr(Path, "iterdir", lambda self: (self / name for name in os.listdir(self)))


@contextlib.contextmanager
def unenterable(folder: Path) -> Iterator[None]:
    """``folder`` as a teammate's run or data folder of mode 0700 is to this user: neither entered nor listed. Mode
    000 for a user that is not root; root enters any folder, so for root its listing and the look-ups and opens of
    what is in it raise EACCES, and ``os.access`` refuses it (as for another user)."""
    if os.geteuid() != 0:
        folder.chmod(0)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    shut = os.path.abspath(folder)

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(path).startswith(shut + os.sep)

    def refused(real: Callable, listing: bool = False) -> Callable:
        def call(path=".", *args, **kwargs):
            if inside(path) or (listing and os.path.abspath(path) == shut):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    access = os.access
    with pytest.MonkeyPatch.context() as m:
        swap_stat(m, refused)
        swap_listing(m, lambda real: refused(real, listing=True))
        m.setattr(os, "access", lambda path, mode, *a, **k: not (inside(path) or os.path.abspath(path) == shut)
                  and access(path, mode, *a, **k))
        m.setattr(os, "open", refused(os.open))
        m.setattr(builtins, "open", refused(builtins.open))
        m.setattr(io, "open", refused(io.open))
        yield
