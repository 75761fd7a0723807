"""Jobs for the tests of :func:`mme.utils.in_workers`, in a module of their own: its spawned workers import the
module of their job, and this one imports nothing heavy (a test module's torch and OpenCV took each new worker
seconds)."""

from __future__ import annotations

import os


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
