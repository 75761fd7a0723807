"""What every layer uses: atomic file writes, and facts about the machine and the code a result came from."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

from mme.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | Path, sync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it replaces ``path``
    (after an fsync with ``sync``), and it is removed when the block raises, so no reader ever sees a half-written
    file. The temporary name keeps the suffix, for writers that choose the format by it (matplotlib, numpy,
    PyAV), and starts with a dot."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`), creating its folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj, **dumps) -> None:
    """Write ``obj`` as indented JSON (a trailing newline) atomically; ``dumps``: more ``json.dumps`` options."""
    atomic_write_text(path, json.dumps(obj, indent=2, **dumps) + "\n")


def check_output(path: str | Path, option: str, folder: bool = False) -> Path:
    """Fail now, not after the work, when ``path`` cannot be written: a ConfigError naming ``option`` and the
    reason (a folder where a file is wanted or the reverse, a place that is not a writable folder). Creates the
    folder (``folder``) or the file's folder."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; a folder is needed")
    if not folder and path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    where = path if folder else path.parent
    blocking = next((p for p in (where, *where.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"{option} {path}: cannot be written ({blocking} is a file, not a folder)")
    probe = where / f".write-test-{os.getpid()}"
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot be written ({e.strerror or e})") from e
    return path


def sets_threads(fn):
    """Decorator: ``fn``'s ``threads`` argument (None: unchanged) sets torch's and OpenCV's thread counts for the
    call, and the previous ones are restored after it. A benchmark called as a library function must not leave
    its process with other threads: that changes the process's speed and the rounding of every later reduction
    split over threads."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        import cv2
        import torch

        n = signature.bind(*args, **kwargs).arguments.get("threads", signature.parameters["threads"].default)
        before = torch.get_num_threads(), cv2.getNumThreads()
        if n:
            torch.set_num_threads(n)
            cv2.setNumThreads(n)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before[0])
            cv2.setNumThreads(before[1])

    return call


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), quoted with every figure a run or benchmark prints."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha() -> str | None:
    """The commit of the source tree this package runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
