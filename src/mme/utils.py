"""What every layer uses: atomic file writes, and facts about the machine and the code a result came from."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path


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
