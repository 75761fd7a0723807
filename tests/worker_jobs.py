"""Processes for the tests: the jobs of :func:`mme.utils.in_workers`' tests and a spawned loader worker's dataset, in
a module of their own (its spawned workers import the module of their job, and this one imports nothing heavy: a test
module's torch and OpenCV took each new worker seconds), a PID no process has, and a loader worker killed."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from mme.utils import process_state


class TwoArguments(Exception):
    def __init__(self, message: str, code: int):  # pickles, but does not unpickle as itself
        super().__init__(f"{message} ({code})")


def fails_on(job: str) -> str:
    """A worker's job that raises what a check of an unreadable index could, or ends its worker (``exit…``)."""
    if job == "denied":
        raise PermissionError(13, "Permission denied", "/index/v.json")
    if job == "cut":
        raise EOFError("cut short")
    if job == "odd":
        raise TwoArguments("odd", 7)
    if job.startswith("exit"):
        os._exit(3)
    return job.upper()


def says_and_waits(job: tuple[str, str]) -> str:
    """A worker's job ``(folder, name)``: writes its worker's PID to ``folder/name.pid``, then, where ``name`` starts
    with ``wait``, sleeps two minutes (a long video's extraction)."""
    folder, name = job
    with open(os.path.join(folder, f"{name}.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.replace(os.path.join(folder, f"{name}.tmp"), os.path.join(folder, f"{name}.pid"))
    if name.startswith("wait"):
        time.sleep(120)
    return name


def held_until(path: str) -> tuple[str, int]:
    """A worker's job held until ``path`` is there, 10 s at most (a read of a stalled mount; '': none): it, and its
    worker's PID."""
    end = time.monotonic() + 10
    while path and not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
    return path, os.getpid()


def held_then(job: tuple[str, str]) -> str:
    """A worker's job ``(path, name)``: :func:`held_until` ``path``, then :func:`fails_on` ``name``, its start
    marked by the file ``path.name`` (where ``path``)."""
    path, name = job
    held_until(path)
    if path:
        open(f"{path}.{name}", "w").close()
    return fails_on(name)


def says(kind: str) -> str:
    """A worker's job: mme's warning, info and debug lines and a library's info line (which the CLI's log leaves
    out), each naming ``kind``."""
    log = logging.getLogger("mme.data.dataset")
    log.warning("warned by %s", kind)
    log.info("said by %s", kind)
    log.debug("debugged by %s", kind)
    logging.getLogger("matplotlib").info("a library's info line, by %s", kind)
    return kind


class Says:
    """A loader's dataset of one item, ``kind``, read by :func:`says` in the worker that reads it."""

    def __init__(self, kind: str):
        self.kind = kind

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> str:
        return says(self.kind)


class EndsItsWorker:
    """A loader's dataset of one item, whose read ends the worker process reading it, exit status 1: after its init
    ran (a crash in a library's own exit path, a ``sys.exit`` deep in a decoder)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> None:
        os._exit(1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is there and not a zombie (one ended, waiting for a reaper)."""
    return process_state(pid) not in ("", "Z")


def dead_pid() -> int:
    """The PID of a process that has ended (a fixed one, 999, may be any live process's)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def killing_a_worker_after(write: Callable, when: Callable[..., bool], killed: list[int]) -> Callable:
    """``write`` (a function of the run), then, the first time ``when`` holds of its arguments, SIGKILL to a worker
    process this process started since (a loader's: the out-of-memory killer's kill), its PID appended to
    ``killed``, and a second's wait, in which torch's SIGCHLD handler runs."""
    others = set(multiprocessing.active_children())

    def killing(*args, **kwargs):
        result = write(*args, **kwargs)
        if not killed and when(*args, **kwargs):
            worker = next(p for p in multiprocessing.active_children() if p not in others)
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
            time.sleep(1)
        return result

    return killing


def with_small_shm(command: list[str], size: str = "256k") -> list[str]:
    """``command`` run with a /dev/shm of ``size`` (a tmpfs of its own, in a mount namespace of its own: as root, or
    in a user namespace of its own where unprivileged ones are allowed), as a container's default one (Docker's 64
    MB) too small for the loader workers' batches; the test skipped where neither can be made here."""
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    prefix += ["sh", "-c", f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$@"', "sh"]
    try:
        made = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):  # (no unshare; one that hangs)
        made = False
    if not made:
        import pytest

        pytest.skip("no /dev/shm of its own can be made here (unshare -m)")
    return [*prefix, *command]
