"""Processes for the tests: the jobs of :func:`mme.utils.in_workers`' tests, in a module of their own (its spawned
workers import the module of their job, and this one imports nothing heavy: a test module's torch and OpenCV took
each new worker seconds), and a PID no process has."""

from __future__ import annotations

import os
import subprocess
import sys


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


def dead_pid() -> int:
    """The PID of a process that has ended (a fixed one, 999, may be any live process's)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid
