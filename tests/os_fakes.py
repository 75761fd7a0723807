"""File-system faults made for the tests, where every Python the project supports (3.10-3.13) looks them up."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


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
