"""What every layer uses: atomic file writes, facts about the machine and the code a result came from, and the
process's memory allocator."""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import dataclasses
import decimal
import errno
import fcntl
import functools
import hashlib
import inspect
import json
import logging
import math
import multiprocessing.process
import numbers
import operator
import os
import pickle
import platform
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from multiprocessing import current_process, get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mme import __version__, repository_doc
from mme.errors import (
    ConfigError,
    FolderReplaced,
    MMEError,
    NoSpaceError,
    UnguardedScript,
    first_line,
    import_advice,
)
from mme.train.interrupts import raise_recorded

log = logging.getLogger(__name__)


MAX_INT = 2**63 - 1
"""The largest integer a config key or a flag of ``mme`` takes: a C long (int64), the most that torch's sizes,
numpy's arrays, ``range`` and ``itertools.islice`` hold; a larger one failed with a traceback where it was used
(:func:`outside_int64`)."""


MAX_THREADS = 4096
"""The most threads a config key gives a process or a video's decoder (``train.threads``, ``data.decode_threads``):
beyond the cores of any machine; a larger count failed where it was used (torch's ``set_num_threads`` past an int32,
PyAV's thread count past a C int)."""
THREADS_WHY = "more threads than any machine's cores"


def outside_int64(value: int | decimal.Decimal, written: str | None = None) -> str:
    """Why the whole number ``value`` (an int, or a Decimal not yet made one: ``1e999999999`` as an int is a billion
    digits) is refused as a config key's or a flag's value: it does not fit an int64 (:data:`MAX_INT`), said as
    ``written`` (as the user wrote it: ``1e20``, not Decimal's ``1E+20``; None: ``value``); '' where it fits."""
    if -MAX_INT - 1 <= value <= MAX_INT:
        return ""
    said = value if written is None else written
    return f"{said} does not fit a 64-bit integer (at most 2**63 - 1 = {MAX_INT} in size)"


def plain_int(value: Any) -> int | None:
    """``value`` as a plain int (of a numpy integer too); None for a bool (an int to Python, not a count or a seed to
    whoever wrote it) or anything that is not an integer."""
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError):
            return operator.index(value)
    return None


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``noun`` as a count of ``n`` takes it, plural but for one: itself for 1, else ``many`` (default ``noun`` and
    's'): 'key' for 1, 'keys' for 0 or 2; ``plural(n, 'is', 'are')``, ``plural(n, 'it', 'them')``."""
    return noun if n == 1 else noun + "s" if many is None else many


def counted(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and ``noun``, plural but for one (:func:`plural`, ``many`` its plural where not ``noun`` and 's'): '1
    frame', '0 frames', '24 frames', '2 classes'."""
    return f"{n} {plural(n, noun, many)}"


def as_count(value: Any, least: int) -> int | None:
    """``value`` as a plain int (:func:`plain_int`) of at least ``least`` that fits an int64; None for anything else
    (a bool, a float, text, a smaller or a larger one). The check of :func:`check_count`, and of callers that say its
    refusal in their own words (a Hugging Face config's key)."""
    count = plain_int(value)
    return count if count is not None and least <= count <= MAX_INT else None


def check_count(value: Any, least: int, given: str) -> int:
    """``value`` as a plain int of at least ``least`` (:func:`as_count`); anything else refused in one line naming it
    as ``given`` (its argument or flag), where a comparison or a tensor's shape failed later."""
    if (count := as_count(value, least)) is not None:
        return count
    if (plain := plain_int(value)) is not None and (why := outside_int64(plain)):
        raise ConfigError(f"{given}: {why}")
    raise ConfigError(f"{given} must be an integer of at least {least}, got {value!r}")


def is_positive_number(value: Any) -> bool:
    """Whether a value (read from JSON, or given from Python: a numpy float too) is a number above 0 (not a bool,
    which is an int; not NaN)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and value > 0


def check_seed(seed: Any, given: str) -> int:
    """``seed`` as a plain int (of a numpy integer too, which YAML cannot write into a run's config.yaml); one that
    is not an integer (a bool, a float, a string, None) or is outside [0, :data:`MAX_INT`] is refused in one line
    naming it as ``given`` (its key or flag): numpy or torch would refuse it with a traceback once the work had
    begun, or take True as 1 and 2.5 as 2. (numpy's SeedSequence takes no negative seed, torch's generators none
    past 2**64 - 1, and a training run seeds them with it plus the epoch.)"""
    if (value := plain_int(seed)) is None:
        raise ConfigError(f"{given}: a seed must be an integer, got {seed!r}")
    if not 0 <= value <= MAX_INT:
        raise ConfigError(f"{given}: a seed must be in [0, 2**63 - 1], got {value}")
    return value


PID_MAX = 2**22
"""The largest PID Linux gives (``/proc/sys/kernel/pid_max`` at most): a larger number after ``.tmp`` is a user's
name (a date: ``.notes.tmp20240101``), not a write's."""
TEMP_TAG_HEX = 8
"""The random hex digits after the PID in an :func:`atomic_path` temporary name (``.<stem>.tmp<pid>-<tag><suffix>``),
so that no one can tell the name in advance and put something there."""


def _is_stale_temp(tmp: Path, stems: Collection[str] | None) -> bool:
    """Whether ``tmp`` is the temporary file of an :func:`atomic_path` write (``.<stem>.tmp<pid>-<tag><suffix>``,
    or an earlier mme's ``.<stem>.tmp<pid><suffix>``) whose PID is gone from this machine: not a user's file
    (``.notes.tmpl``). ``stems``: what stands for the files it may be of in their temporary files' names
    (:func:`_temp_names`, made once for a folder's temporary files); None: any file's."""
    name, dot_tmp, rest = tmp.name[1:].rpartition(".tmp")
    suffix = Path(name).suffix  # the rest is the PID and its tag, then the name's suffix
    pid, dash, tag = (rest.removesuffix(suffix) if rest.endswith(suffix) else "").partition("-")
    if not tmp.name.startswith(".") or not dot_tmp or not pid.isdigit() or int(pid) > PID_MAX \
            or (dash and not re.fullmatch(f"[0-9a-f]{{{TEMP_TAG_HEX}}}", tag)) \
            or (stems is not None and name not in stems):
        return False
    try:
        os.kill(int(pid), 0)
        return False  # alive on this machine
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False


class LockUntestable(PermissionError):
    """A temporary file that looks stale by its PID which this user may not open to test its lock (another user's,
    kept to themselves): a live writer elsewhere may hold it, so it is not removed."""


def _remove_stale_temp(tmp: Path, stems: Collection[str] | None) -> bool:
    """Remove ``tmp`` if an :func:`atomic_path` write of a file that ``stems`` stands for (:func:`_temp_names`; any
    with None) left it (:func:`_is_stale_temp`) and no writer holds it: none holds its lock. The lock tells a live
    writer in another PID namespace (a container) or, where the file system shares locks (NFS), on another machine,
    whose PID means nothing here; it is held while the file is removed, so a writer of the same name waits for it
    and writes anew (a file system without locks: by the PID alone). Whether it was removed; one this user may not
    open to test its lock is a :class:`LockUntestable`; a removal that fails (a read-only folder, an immutable file,
    another user's) raises its OSError."""
    return _is_stale_temp(tmp, stems) and _remove_unheld(tmp)


def _remove_unheld(tmp: Path) -> bool:
    """Remove ``tmp`` unless a writer holds its lock, holding it while it is removed (a writer that opened it
    meanwhile finds it gone when it gets the lock, and makes a new one), and only while the name still names the
    file locked (a writer may have renamed that one into place and made a new one under the name since it was
    opened). One that is no write's file as it is not a regular one (a symlink, a FIFO, whose opening may wait
    forever) is removed without it, by its PID alone, as on a file system without locks. One this user may not open
    (another user's, kept to themselves) is a :class:`LockUntestable`, left: its PID, dead here, tells nothing of a
    writer in another container or on another machine. Whether it was removed: not where it is held or gone; a
    failure to remove it raises its OSError."""
    try:
        regular = stat.S_ISREG(os.lstat(tmp).st_mode)
        fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK) if regular else None  # (a FIFO put there since: no wait)
    except PermissionError as e:
        raise LockUntestable(e.errno, e.strerror, e.filename) from e
    except FileNotFoundError:
        return False
    try:
        if fd is not None:
            _flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, tmp)
            if not _names(tmp, stat_identity(os.fstat(fd))):  # another file now: a writer's new one
                return False
        tmp.unlink()
    except (BlockingIOError, FileNotFoundError):  # held by a live writer, or removed meanwhile
        return False
    finally:
        if fd is not None:
            os.close(fd)
    return True


_GENERATOR_SET_ASIDE = threading.RLock()
"""Held by the thread that draws from torch's global CPU generator for mme: a :func:`caller_generator_kept` block
(a load, briefly) or a training job from its start to its end (:func:`generator_for_a_job`)."""
_generator_job: dict = {"held": False}
"""Whether a training job holds :data:`_GENERATOR_SET_ASIDE`."""


def _generator_taken() -> None:
    """Take :data:`_GENERATOR_SET_ASIDE` (at once in the thread that holds it: a job's own loads), waiting while
    another thread's load holds it (a load is short); refused while another thread's training job does (it holds it
    for the whole run, whose draws and re-seedings another thread's would interleave with)."""
    while not _GENERATOR_SET_ASIDE.acquire(timeout=0.05):
        if _generator_job["held"]:
            raise MMEError("an mme training job (pretrain, finetune, demo) is running in another thread of this "
                           "process: torch's global generator, which seeds a run's initial weights and its dropout "
                           "at every step, is shared by the threads of one process, so another job or a model's load "
                           "(load_encoder, load_model, embed(), run_probe()) would draw the run's numbers and the run "
                           "would not be the one its seed records; run them one after another, or in separate "
                           "processes")


@contextlib.contextmanager
def caller_generator_kept() -> Iterator[None]:
    """``torch.random.fork_rng`` of the CPU generator (what the block draws, initial weights, leaves the caller's
    global generator as it was), one block at a time in this process (:func:`_generator_taken`): blocks in several
    threads at once (a notebook's thread pool loading encoders) each put back the state they found, another's drawn
    state among them, so the caller's generator moved; and a block beside a training job drew and rewound the
    generator the run draws its dropout from."""
    import torch

    _generator_taken()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        _GENERATOR_SET_ASIDE.release()


@contextlib.contextmanager
def generator_for_a_job() -> Iterator[None]:
    """Torch's global generator to a training job's thread from its start to its end
    (:class:`mme.train.engine.JobScope`): a job or a load started meanwhile in another thread is refused
    (:func:`_generator_taken`), the job's own loads go on. A process's other processes (a forked child:
    :func:`_after_fork_in_child`) have generators of their own."""
    _generator_taken()
    outer, _generator_job["held"] = _generator_job["held"], True  # (outer: a job of this thread's, no other's)
    try:
        yield
    finally:
        _generator_job["held"] = outer
        _GENERATOR_SET_ASIDE.release()


AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "mtia", "maia", "xla", "ipu", "privateuseone")
"""The device types torch's autocast has a switch of its own for, each turned off by :func:`torch_as_mme` where a
caller turned it on."""


_DEFAULT_DTYPE = threading.RLock()
_dtype_blocks: dict = {"open": 0, "callers": None, "decode_gpu": None}
"""The :func:`torch_as_mme` blocks open in the process, and the default dtype and :data:`DECODE_GPU_ENV` before the
first of them: the caller's."""

DECODE_GPU_ENV = "MME_DECODE_GPU"
"""Where a job leaves the index of the GPU the 'pyav-cuda' backend decodes on (:func:`mme.data.video.decode_on`), for
its process and the loader workers it starts, forked or spawned (they inherit the environment); the caller's value
(none) is put back when the job's :func:`torch_as_mme` block ends."""


@contextlib.contextmanager
def torch_as_mme() -> Iterator[None]:
    """Torch's settings every job of mme runs with (its model built, trained, embedded with), whatever its caller's
    were, and the caller's given back after: no autocast (the job's own precision alone applies: under a caller's bf16
    autocast, a run asked for fp32 trained in bf16 and recorded fp32), gradients on outside inference mode (under a
    caller's ``no_grad`` or ``inference_mode``, training failed at its first backward with torch's traceback), and
    float32 as the default dtype (under a caller's float64, models were built in float64: training, embedding and
    drawing refused the float32 clips, and ``load_encoder`` gave float64 weights). Autocast and grad mode are the
    thread's; the default dtype is the process's: float32 while any block is open, the caller's once the last ends
    (one a thread of the caller set meanwhile is left as it set it). The GPU a job chose to decode on
    (:data:`DECODE_GPU_ENV`) is the caller's again once the last block ends (before: it stayed in the process's
    environment, the decoder's of every later command and of the caller's own datasets)."""
    import torch

    with _DEFAULT_DTYPE:
        if not _dtype_blocks["open"]:
            _dtype_blocks["callers"] = torch.get_default_dtype()
            _dtype_blocks["decode_gpu"] = os.environ.get(DECODE_GPU_ENV)
            torch.set_default_dtype(torch.float32)
        _dtype_blocks["open"] += 1
    try:
        with contextlib.ExitStack() as stack:
            for device_type in AUTOCAST_DEVICES:
                try:
                    on = torch.is_autocast_enabled(device_type)
                except RuntimeError:  # (a device type an older torch's autocast does not know: mtia, maia)
                    continue
                if on:
                    stack.enter_context(torch.autocast(device_type, enabled=False))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            yield
    finally:
        with _DEFAULT_DTYPE:
            _dtype_blocks["open"] -= 1
            if not _dtype_blocks["open"] and _dtype_blocks["decode_gpu"] is None:
                os.environ.pop(DECODE_GPU_ENV, None)
            elif not _dtype_blocks["open"]:
                os.environ[DECODE_GPU_ENV] = _dtype_blocks["decode_gpu"]
            if not _dtype_blocks["open"] and torch.get_default_dtype() == torch.float32:  # (else another thread's)
                torch.set_default_dtype(_dtype_blocks["callers"])


def _sync_folder(folder: Path) -> None:
    """fsync ``folder`` (its entries: a rename in it); where the file system cannot (some network or FUSE ones:
    EINVAL), nothing more than the rename is done, as before."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


NAME_MAX = 255
"""The longest file name, in bytes, that most of Linux's file systems take (ext4, XFS, Btrfs, tmpfs), the limit the
names :func:`fitting_name` makes keep to by default; some take fewer (eCryptfs: 143), as :func:`_name_limit` asks,
to which a temporary file's name is fitted (:func:`_fitting_limit`). Apple's count 255 characters, not bytes (HFS+
stores its names decomposed, a character taking up to 3)."""


def fitting_name(name: str, suffix: str = "", room: int = 0, limit: int = NAME_MAX) -> str:
    """``name + suffix`` where its bytes on disk fit a file name (``limit`` bytes, less ``room`` bytes that a name
    made of it adds), else ``name``'s first bytes (whole characters) then ``~`` and a hash of all of ``name``, then
    ``suffix``: one name that fits to each ``name`` (a long video title's track cache file, a long name's temporary
    file; a CJK title passes the limit at 85 characters)."""
    if 4 * len(name + suffix) <= limit - room or len((name + suffix).encode(**TEXT)) <= limit - room:
        return name + suffix  # (first without encoding it: no character takes more than 4 bytes)
    raw = name.encode(**TEXT)
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
    keep = max(limit - room - len(suffix.encode(**TEXT)) - len(digest) - 1, 0)
    while 0 < keep < len(raw) and raw[keep] & 0xC0 == 0x80:  # (not inside a character: a UTF-8 continuation byte)
        keep -= 1
    return f"{raw[:keep].decode(**TEXT)}~{digest}{suffix}"


def _fitting_limit(folder: Path) -> int:
    """The longest name, in bytes, that a name made to fit in ``folder`` keeps to (:func:`fitting_name`): its file
    system's (:func:`_name_limit`: 143 on eCryptfs) where that is under :data:`NAME_MAX`, else NAME_MAX."""
    return min(NAME_MAX, _name_limit(folder) or NAME_MAX)


def _temp_stem(name: str, limit: int, tagged: bool = True) -> str:
    """What stands for ``name`` in its :func:`atomic_path` temporary file's, ``.<stem>.tmp<pid>-<tag><suffix>``:
    ``name``, or where that temporary name would not fit a file name of ``limit`` bytes (its folder's:
    :func:`_fitting_limit`), a shorter one that keeps its suffix (:func:`fitting_name`), the same in every process
    (room for the longest PID). Not ``tagged``: an earlier mme's, ``.<stem>.tmp<pid><suffix>``, which kept no room
    for the tag."""
    suffix = Path(name).suffix
    tag = f"-{'0' * TEMP_TAG_HEX}" if tagged else ""
    return fitting_name(name.removesuffix(suffix), suffix, room=len(f"..tmp{PID_MAX}{tag}{suffix}".encode(**TEXT)),
                        limit=limit)


def _temp_names(names: Collection[str], limit: int) -> frozenset[str]:
    """What stands for the files ``names`` in their temporary files' names in a folder whose names take ``limit``
    bytes: each :func:`_temp_stem`, today's and an earlier mme's (untagged), and the name itself, which an earlier
    mme's write kept where it fitted with the writer's own PID (not the longest's)."""
    return frozenset((*names, *(_temp_stem(name, limit, tagged) for name in names for tagged in (True, False))))


@contextlib.contextmanager
def atomic_path(path: str | Path, sync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write into; when the block ends without an error it replaces ``path`` (with
    ``sync``, the file fsynced before and its folder after: the rename itself reaches the disk, so a machine that loses
    power right after it keeps the new file under its name, a checkpoint), and it is removed when the block raises or
    the replacing fails, so no reader ever sees a half-written file. The block writes into the file made here, not a
    file of its own renamed onto it (safetensors' ``save_file``: :func:`write_safetensors` instead), which would hold no
    lock and be left behind by a failed write. The temporary name, ``.<stem>.tmp<pid>-<8 random hex digits><suffix>``
    (:func:`_temp_path`), keeps the suffix, for writers that choose the format by it (matplotlib, numpy, PyAV), and
    starts with a dot; a long name's is shortened to fit its folder's file system (:func:`_temp_stem` to
:func:`_fitting_limit`: a name that fits eCryptfs's 143 bytes may leave its temporary name too long there).
    The file is made new (``O_EXCL``, another name drawn where one is taken), with the permissions the umask gives a
    new file. Its name cannot be told in advance, so nothing another user who may write the folder puts there
    beforehand (a symbolic link, a file of theirs) is written through or into, nor stands in the write's way; a name
    swapped for another user's entry or a link while the block writes (by a user who lists the folder and may rename
    in it: a folder its group writes, not sticky) makes the write fail, naming it, and is never put in ``path``'s
    place (what the block wrote by the name may have gone where the entry led); a file of this user's the block put
    there itself (a nested atomic write of the name, ``encode_h264``'s in ``mme viz``) is put in place.

    The temporary file is locked (``flock``) until it is replaced, for :func:`_remove_stale_temp`: a cleaner in
    another PID namespace (a container), where this PID means nothing, leaves it. Writes of one file at once (other
    threads, other jobs) each write their own file, the last replacing ``path`` last. Nothing is written into a
    folder this process locked that was removed or replaced since (:func:`check_path_held`); a folder not locked that
    is not there, or gone before the temporary file opens, is made (:func:`_make_output_folder`), up to
    :data:`_MAKE_TRIES` times: one that :func:`check_output` found at the job's start, made by another job then
    refused, which removed it as its own (:func:`removing_made_folders`), is made again."""
    path = Path(path)
    for tries_left in reversed(range(_MAKE_TRIES)):
        check_path_held(path)
        if not path.parent.is_dir():
            _make_output_folder(path.parent)
        tmp = _temp_path(path)
        try:
            if (fd := _new_locked_file(tmp)) is not None:
                break
        except FileExistsError:  # (the name drawn is taken: another is drawn)
            pass
        except FileNotFoundError:  # (the folder removed again since, maybe made again by a third job since)
            if not tries_left:
                raise
    else:
        raise FileExistsError(errno.EEXIST, f"no temporary name beside it was free in {_MAKE_TRIES} tries",
                              str(path))
    pid = os.getpid()
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if not _own_file_at(tmp):
            if not os.path.lexists(tmp):
                raise FileNotFoundError(errno.ENOENT, "its temporary file was removed while it was written; not put "
                                                      "in its place", str(tmp))
            raise OSError(errno.EEXIST, "its temporary file was replaced by another entry while it was written "
                                        "(a user who may rename files in the folder); not put in its place", str(tmp))
        os.replace(tmp, path)
        if sync:
            _sync_folder(path.parent)
    except BaseException as e:
        limited = file_size_limited(e, fd)  # (measured before the file goes)
        if _own_file_at(tmp):
            tmp.unlink(missing_ok=True)
        if limited is not None:
            raise limited from e
        raise
    finally:
        _close_unlocked(fd, pid)


def _temp_path(path: Path) -> Path:
    """A temporary name beside ``path`` for :func:`atomic_path`: ``.<stem>.tmp<pid>-<tag><suffix>``, the stem
    :func:`_temp_stem`'s, the tag :data:`TEMP_TAG_HEX` random hex digits."""
    return path.with_name(f".{_temp_stem(path.name, _fitting_limit(path.parent))}.tmp{os.getpid()}-"
                          f"{secrets.token_hex(TEMP_TAG_HEX // 2)}{path.suffix}")


def _new_locked_file(tmp: Path) -> int | None:
    """A descriptor of a regular file made new at ``tmp`` (``O_EXCL``: a FileExistsError where the name is taken),
    holding an exclusive ``flock`` on it; None where the name no longer holds it once the lock is had (removed
    meanwhile by a cleaner that took it for a stale one: :func:`_remove_unheld`)."""
    fd = open_regular(tmp, os.O_RDONLY | os.O_CREAT | os.O_EXCL)
    held = False
    try:
        _flock(fd, fcntl.LOCK_EX, tmp)
        held = _names(tmp, stat_identity(os.fstat(fd)))
    finally:
        if not held:
            _close_unlocked(fd, os.getpid())
    return fd if held else None


def _own_file_at(path: Path) -> bool:
    """Whether the entry at ``path`` itself (not followed) is a regular file of this user's: :func:`atomic_path`'s
    temporary file, or one a writer in the block put there in its place (a nested atomic write of the same name, as
    ``encode_h264``'s into ``mme viz``'s), not a link or another user's entry swapped in."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _names(path: Path, identity: tuple[int, int]) -> bool:
    """Whether the entry at ``path`` itself (not followed: a link there is another entry) is the file of
    ``identity`` (:func:`stat_identity`)."""
    try:
        return stat_identity(os.lstat(path)) == identity
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def exclusive_lock(path: str | Path, remove: bool = False, wait_s: float | None = None,
                   own_only: bool = False, waiting: str | None = None, unopened: str | None = None,
                   refused: Callable[[str], str] | None = None) -> Iterator[bool]:
    """An exclusive ``flock`` on the file at ``path`` (made if need be, its folder too) for the block: one holder at
    a time, of any process or thread (each block opens the file anew); on a file system without ``flock``, none
    (:func:`_flock`). The file is left there, or with ``remove`` removed at the block's end while it is held (a
    waiter then makes and locks a new one: :func:`_locked_file`); one a killed holder left locks nothing (the
    kernel releases a dead process's ``flock``). Yields whether the lock is held: with ``wait_s``, a best effort,
    the block runs without it where it is not had within that many seconds (a holder stopped with Ctrl-Z), and
    with ``own_only`` where the file is not this user's own regular file (:func:`_locked_file`). ``waiting``: what a
    wait without end (no ``wait_s``) for another holder is said as, at info level, before it waits. ``unopened``:
    where the lock file cannot be opened, what to do, said in an MMEError naming it and the reason
    (:func:`_unopened_lock`); None: the OSError, for a caller that goes on without the lock. ``refused`` (with
    ``wait_s``, not ``own_only``): where another process holds the lock past ``wait_s``, an MMEError
    ``refused(holder)`` instead of the block, the holder as :func:`_holder_named` says it; the file is then opened for
    writing too where this user may, and the holder's line (:func:`_holder_line`) written in it while it is held,
    as :func:`lock_folder` writes its ``.lock``'s; another user's (0644, left by their killed job in a folder all
    users write, which a sticky one keeps) locks read-only, without this process's line. The removal never
    raises past the block (another user's file in a sticky folder cannot be removed), and the file is closed. Its
    folder removed while this waited (by the holder that made it, failing) is made again
    (:func:`_make_output_folder`, recorded in the open :func:`removing_made_folders` blocks); a link at ``path`` is a
    :class:`NotRegularFile`, never followed (:func:`open_regular`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd, pid = _locked_file(path, wait_s, own_only, waiting, writable=refused is not None), os.getpid()
            except FileNotFoundError:  # its folder removed while this waited: by the holder that made it, failing (an
                _make_output_folder(path.parent)  # export's OUT), made again, as a folder this job made
                continue
            if fd is not None or refused is None:
                break
            if (holder := _holder_named(path)) is not None:  # (None: it ended since: tried again)
                raise MMEError(refused(holder))
    except OSError as e:
        if unopened is None:
            raise
        raise MMEError(_unopened_lock(path, e, unopened)) from e
    if fd is None:
        yield False
        return
    try:
        if refused is not None:
            with contextlib.suppress(OSError):  # (read-only: another user's file; a full disk): it locks without it
                write_all(fd, _holder_line().encode(), truncate=True)
        yield True
    finally:
        try:
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        finally:  # (closed even where a Ctrl-C comes during the unlink)
            _close_unlocked(fd, pid)


def _holder_named(path: Path) -> str | None:
    """The holder of the lock file at ``path`` as a refusal names it (:func:`exclusive_lock`'s ``refused``): its
    line (:func:`holder_of`), or None where no process holds it. Where the file is another user's, a holder of this
    user's could not write its line there, and the line it holds may be an earlier holder's: that is said, not the
    line presented as the holder (a check of this user's holding the lock file another user's killed check left in a
    sticky folder, who cannot remove it, would be said to be that check)."""
    holder = holder_of(path)
    try:
        owner = os.lstat(path).st_uid
    except OSError:
        return holder
    if holder is None or holder == _NO_HOLDER_LINE or owner == os.geteuid():
        return holder
    return (f"held by another process; the lock file is another user's (uid {owner}), where a holder of another user "
            f"cannot write its line: the line there ({holder}) may be an earlier holder's, which may have ended")


def lock_beside(path: str | Path) -> Path:
    """The lock file of the file ``path``, beside it: ``.<name>.lock``, its name shortened where that would not fit
    a file name of its folder's file system (:func:`fitting_name` to :func:`_fitting_limit`, as a temporary file's
    is: :func:`_temp_stem`), where ``path``'s own fits."""
    path = Path(path)
    return path.with_name(f".{fitting_name(path.name, '.lock', room=1, limit=_fitting_limit(path.parent))}")


def _unopened_lock(path: Path, e: OSError, then: str) -> str:
    """What a lock file that cannot be opened is said as: named, with the reason, and where it is another user's (one
    they made 0600, their umask 077), that their job may hold it; ``then``: what to do else."""
    try:
        owner = os.lstat(path).st_uid
    except OSError:
        owner = None
    if owner is not None and owner != os.geteuid():
        then = f"it is another user's, whose job may hold it: remove it once that job has ended, or {then}"
    return f"{path}: the lock file could not be opened ({error_reason(e)}); {then}"


def stat_identity(st: os.stat_result) -> tuple[int, int]:
    """(device, inode) of a stat: what tells one file from another, however it is reached (a link, a hard link)."""
    return st.st_dev, st.st_ino


def file_version(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another for a cache kept by its path (a video's frame index):
    size, mtime, ctime (ns) and inode. A copy keeping the mtime (``cp -p``, ``rsync -a``,
    ``tar``, ``touch -r``) or a rewrite in place that restores it keeps size and mtime, never the ctime, which no
    call sets, nor always the inode. The device is left out: nodes that mount one file system (NFS, whose inodes
    and times are the server's) number it each their own, and share an index folder."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@dataclasses.dataclass(frozen=True)
class VersionOfFile:
    """A file as the in-process caches of what is read from it (a video's frame index, probe, frame count, display
    matrix) key it: by ``name``, its absolute path (:func:`absolute_path`: 'a.mp4', './a.mp4' and '/data/a.mp4' are
    one file, read once), and ``version`` (:func:`file_version`: a file replaced keeping its size and mtime is
    another); ``path`` as given, for messages, is no part of the key."""

    name: str
    version: tuple[int, ...]
    path: str = dataclasses.field(compare=False)

    @classmethod
    def of(cls, path: str) -> VersionOfFile:
        return cls(absolute_path(path), file_version(os.stat(path)), path)


def file_identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, which a rename onto it changes; None where there is none."""
    try:
        return stat_identity(os.stat(path))
    except FileNotFoundError:
        return None


def stat_or_none(path: str | Path) -> os.stat_result | None:
    """The stat of the file at ``path``; None where there is none or the path cannot be searched (through a file, a
    folder it may not search)."""
    try:
        return os.stat(path)
    except OSError:
        return None


def identity_or_none(path: str | Path) -> tuple[int, int] | None:
    """:func:`file_identity`, None also where the path cannot be searched (:func:`stat_or_none`)."""
    st = stat_or_none(path)
    return None if st is None else stat_identity(st)


def same_file_as(path: str | Path) -> Callable[[str | Path | None], bool] | None:
    """A test of whether another path (None: none) names the file at ``path``, however either is reached (a symbolic
    or hard link, another spelling: one :func:`identity_or_none`); None where nothing is at ``path``, so that a
    writer that would replace nothing looks at no other path (a check's thousands of videos)."""
    held = identity_or_none(path)
    if held is None:
        return None
    return lambda other: other is not None and identity_or_none(other) == held


def _locked_file(path: Path, wait_s: float | None = None, own_only: bool = False,
                 waiting: str | None = None, writable: bool = False) -> int | None:
    """A descriptor of ``path``, created if need be, holding an exclusive ``flock`` on it; where another process
    held it and it is gone since (replaced, or removed as stale), a new file's. Opened for reading, as it is first
    (:func:`_open_lock`), which ``flock`` needs alone: another user's lock file (0644) in a folder shared with this
    one, sticky too, locks as this user's. With ``wait_s``, None where the lock is not had within that many seconds
    (:func:`_flock_within`); without, waited for, ``waiting`` said first where another holds it
    (:func:`_flock_waiting`). A link at ``path`` is a :class:`NotRegularFile`, not followed, and so is a pipe put
    there, which does not block the open (:func:`open_regular`). With ``own_only`` (a file of a known name in a
    folder all users write), None where it is not a regular file this user owns (a link: that error). With
    ``writable``, opened for writing too where this user may (a holder's line written in it), else read-only."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        try:
            fd = _open_writable_lock(path) if writable else _open_lock(path)
        except NotRegularFile as e:
            if own_only and e.errno != errno.ELOOP:
                return None
            raise
        held = False
        try:
            if own_only and os.fstat(fd).st_uid != os.geteuid():  # (a regular file: open_regular's)
                return None
            if deadline is None:
                _flock_waiting(fd, path, waiting)
            elif not _flock_within(fd, path, deadline):
                return None
            held = _names(path, stat_identity(os.fstat(fd)))
        finally:
            if not held:
                _close_unlocked(fd, os.getpid())
        if held:
            return fd


def _close_unlocked(fd: int, locked_by: int) -> None:
    """Close ``fd``, a descriptor of :func:`_locked_file` that process ``locked_by`` opened, its ``flock`` released
    first where this is that process: an ``flock`` belongs to the open file, which a child forked meanwhile by
    another thread (a loader worker) shares, and the child's copy, closed by no one, held the lock after the block's
    end (the child's own save of an index, opening the folder's ``.lock`` anew, waited forever, and the parent's next
    save there until the child ended). The release frees every copy. A child forked inside the block (another PID)
    closes its copy alone, leaving the lock to its parent."""
    if os.getpid() == locked_by:
        with contextlib.suppress(OSError):  # (a file system without flock: never locked)
            fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


_LOCK_POLL_S = 0.02  # between tries of a lock waited for with a deadline


def _flock_within(fd: int, path: Path, deadline: float) -> bool:
    """An exclusive ``flock`` on ``fd`` (:func:`_flock`), tried until ``time.monotonic()`` reaches ``deadline``:
    whether it was had. A wait is said once, at info level, with what follows it."""
    said = False
    while True:
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not said:
                said = True
                log.info("%s is held by another process: waiting up to %.2g s for it, then going on without it",
                         path, left)
            time.sleep(min(_LOCK_POLL_S, left))


def _flock_waiting(fd: int, path: Path, waiting: str | None) -> None:
    """An exclusive ``flock`` on ``fd`` (:func:`_flock`), waited for without end; where another holds it,
    ``waiting`` (None: nothing) is said first, at info level."""
    if waiting is not None:
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
            return
        except BlockingIOError:
            log.info("%s", waiting)
    _flock(fd, fcntl.LOCK_EX, path)


_NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
"""What ``flock`` raises on a file system without it (Lustre mounted without ``-o flock``, some FUSE and NFS mounts)."""
_unlocked_devices: set[int] = set()


def _flock(fd: int, how: int, path: Path) -> None:
    """``flock(fd, how)``; on a file system without it (:data:`_NO_FLOCK`), nothing, said once per file system at debug
    level: its temporary files are written and removed unlocked, as before :func:`atomic_path` locked them."""
    try:
        fcntl.flock(fd, how)
    except OSError as e:
        if e.errno not in _NO_FLOCK:
            raise
        if (device := os.fstat(fd).st_dev) not in _unlocked_devices:
            _unlocked_devices.add(device)
            log.debug("%s: its file system takes no flock (%s); temporary files there are written unlocked", path,
                      error_reason(e))


_SHORT_WRITE = re.compile(r"^(\d+) requested and (\d+) written$")
"""numpy's OSError (no errno) for a write the file system took only part of (``ndarray.tofile``, ``np.save``)."""


def error_reason(e: BaseException) -> str:
    """The reason an error gives, for a message that names the thing: an OSError's ``strerror`` (a
    :class:`FileSizeLimited`'s names the limit), else the first non-empty line of the message (numpy's short write
    said plainly), else the error's type."""
    text = getattr(e, "strerror", None) or first_line(e, "")
    if isinstance(e, OSError) and (short := _SHORT_WRITE.match(text)):
        return f"{_short_write_cause()} {_items_written(short)}"
    return text or type(e).__name__


def _file_size_limit() -> int | None:
    """This process's file-size limit in bytes (``ulimit -f``: a write stops at that size however much space is
    free), None where it has none."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def _size_limit_said() -> str:
    return f"this process's file-size limit ({_file_size_limit()} bytes, ulimit -f) reached"


class FileSizeLimited(OSError):
    """A write that this process's file-size limit stopped (``ulimit -f``), however much space is free: its reason
    names the limit, and no MiB free is said with it (:func:`may_want_space`)."""


def file_size_limited(e: BaseException, file: int | str | Path) -> FileSizeLimited | None:
    """``e`` as a :class:`FileSizeLimited` where it is a failed write to ``file`` (a descriptor or a path) whose size
    reached this
    process's file-size limit: the EFBIG the kernel refuses past it with, or numpy's short write (no errno:
    :data:`_SHORT_WRITE`) where one write crossed it; None otherwise: no limit, or a file under it, whose EFBIG is
    the file system's (its largest file: 16 GiB on ext2 of 1 KiB blocks, a write at an offset past it)."""
    if not isinstance(e, OSError) or isinstance(e, FileSizeLimited):  # (said already: a nested write's)
        return None
    short = _SHORT_WRITE.match(str(e)) if e.errno is None else None
    if e.errno != errno.EFBIG and short is None:
        return None
    if (limit := _file_size_limit()) is None:
        return None
    try:
        size = os.fstat(file).st_size if isinstance(file, int) else os.stat(file).st_size
    except OSError:  # (gone)
        return None
    if size < limit:
        return None
    return FileSizeLimited(errno.EFBIG, f"{e.strerror}: {_size_limit_said()}" if short is None
                           else f"{_size_limit_said()} {_items_written(short)}")


def _items_written(short: re.Match) -> str:
    """How much of numpy's short write (:data:`_SHORT_WRITE`) was written."""
    return f"(a short write: {short[2]} of {short[1]} items written)"


def _short_write_cause() -> str:
    """What a short write (no errno) may be for: a full disk or a quota, and this process's file-size limit where
    it has one."""
    if _file_size_limit() is None:
        return "No space left on device, or a quota reached"
    return f"No space left on device, a quota, or {_size_limit_said()}"


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors of a write that wants space: a full disk, a quota, a file-size limit."""


def may_want_space(e: BaseException) -> bool:
    """Whether the failed write ``e`` may be for want of space, so the space free belongs in its message: an OSError
    of :data:`NO_SPACE`, or one without an errno (a bare OSError of a file system layer); not a read-only or missing
    folder, whose free space says nothing, nor a write this process's file-size limit stopped (its reason names the
    limit: :class:`FileSizeLimited`), nor an error that is not the write's (torch.save's own RuntimeError)."""
    return isinstance(e, OSError) and e.errno in (None, *NO_SPACE) and not isinstance(e, FileSizeLimited)


def mib_free(path: str | Path) -> str:
    """``N MiB free`` on the file system of ``path``, as a failed write's message says it: that of the first folder
    at or above it (a folder itself: it may be a mount point, its parent another file system)."""
    return f"{shutil.disk_usage(_nearest_existing(Path(path).absolute(), folder=True)).free / 2**20:.0f} MiB free"


def _nearest_existing(path: Path, folder: bool = False) -> Path | None:
    """``path`` or the nearest folder above it that is there (with ``folder``, the nearest that is a folder, not a
    file); None where none is (a relative path whose working folder was removed). One whose look-up fails (under a
    folder that cannot be searched: EACCES, which Python 3.11's ``is_dir`` raises) is taken for not there."""
    def there(p: Path) -> bool:
        try:
            return p.is_dir() if folder else p.exists()
        except OSError:
            return False

    return next((p for p in (path, *path.parents) if there(p)), None)


@contextlib.contextmanager
def space_for(path: str | Path, then: str = "") -> Iterator[None]:
    """A write of ``path`` in the block that fails for lack of space (:data:`NO_SPACE`) is a NoSpaceError naming the
    file, the reason and the MiB free there (not under a file-size limit the file reached: :func:`may_want_space`),
    and ``then`` (what is kept, how to go on); other errors pass as they are."""
    try:
        yield
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise NoSpaceError(_failed_write(path, e, then)) from e


def _failed_write(path: str | Path, e: OSError, then: str = "", done: str = "written") -> str:
    """What a failed write (or what ``done`` says) of ``path`` is said as: :func:`writing`'s and
    :func:`space_for`'s (one this process's file-size limit stopped names it: :func:`file_size_limited`)."""
    e = file_size_limited(e, path) or e
    free = f"; {mib_free(path)}" if may_want_space(e) else ""
    return f"{path}: could not be {done} ({error_reason(e)}{free})" + (f"; {then}" if then else "")


@contextlib.contextmanager
def writing(path: str | Path, then: str = "", error: type[MMEError] = MMEError, done: str = "written"
            ) -> Iterator[None]:
    """A write of ``path`` in the block that fails (an OSError) is ``error`` naming the file, that it could not be
    ``done`` (a block that reads it too: "read or written"), the reason, the MiB free there where it may be for want
    of space (:func:`may_want_space`), and ``then`` (what is kept, how to go on). Nothing is written into a folder
    this process locked that was removed or replaced since (:func:`check_path_held`)."""
    check_path_held(path)
    try:
        yield
    except OSError as e:
        raise error(_failed_write(path, e, then, done)) from e


NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
"""The errors of a look-up that say no file is there (a link to nothing or to itself among them); any other (this user
not let into a folder above it, a name too long for a file name, an I/O error) says it cannot be read
(:func:`cannot_read`)."""

REFUSED = (errno.EACCES, errno.EPERM)
"""The errors of a look-up or listing this user is not let do (a folder on the way it may not enter: a teammate's of
mode 0700; EPERM where a file system or security module says so)."""

MISSING = "missing"
"""What :func:`why_absent` says of a file its look-up says is not there."""


def why_absent(path: str | Path, shut_in: Callable[[str], Path | None] | None = None) -> str | None:
    """None where a file is at ``path`` (links followed); else :data:`MISSING` where its look-up says none is
    (:data:`NOT_THERE`), else the reason it cannot be read (:func:`why_unreadable`, ``shut_in`` its look-up of the
    folder this user may not enter): ``os.path.exists`` answers False there too, and a file this user may not reach
    was said to be missing."""
    try:
        os.stat(path)
    except OSError as e:
        return MISSING if e.errno in NOT_THERE else why_unreadable(path, e, shut_in)
    return None


def why_absent_each(paths: Mapping[Any, str]) -> tuple[list, dict[Any, str]]:
    """Of the files ``paths`` gives by key, :func:`why_absent` of each apart: ``(the keys of those missing, the
    reason each other one cannot be read by key)``; the folder this user may not enter looked for once per folder the
    files lie in (a list of 240k videos in a teammate's folder of mode 0700 walked the folders above each, and took
    85% longer to check than one of missing videos)."""
    shut_in = functools.cache(unenterable_in)
    missing, unreadable = [], {}
    for key, path in paths.items():
        why = why_absent(path, shut_in)
        if why == MISSING:
            missing.append(key)
        elif why is not None:
            unreadable[key] = why
    return missing, unreadable


def cannot_read(path: str | Path, e: OSError) -> str:
    """What a failed look-up, listing or read of ``path`` is said as: ``<path>: cannot be read (<reason>)``
    (:func:`why_unreadable`)."""
    return f"{path}: cannot be read ({why_unreadable(path, e)})"


def unenterable_in(folder: str) -> Path | None:
    """The first folder on the way to ``folder`` (an absolute path), itself included, that this user may not enter
    (search); None where it may enter each."""
    path = Path(folder)
    return next((p for p in (*reversed(path.parents), path) if not os.access(p, os.X_OK)), None)


def why_unreadable(path: str | Path, e: OSError, shut_in: Callable[[str], Path | None] | None = None) -> str:
    """The reason of a failed look-up, listing or read of ``path``; where this user is not let (:data:`REFUSED`) and
    may not enter a folder above it (a teammate's folder of mode 0700), the first such folder named, as ``shut_in``
    finds it in the folder ``path`` lies in (:func:`unenterable_in`; :func:`why_absent_each` its cached one). (There
    Python's ``exists`` and ``is_dir`` raise, and ``os.path.exists`` answers False, which is not "missing".)"""
    reason = error_reason(e)
    if e.errno in REFUSED and (shut := (shut_in or unenterable_in)(os.path.dirname(os.path.abspath(path)))):
        reason = f"{reason}: this user may not enter {shut}"
    return reason


@contextlib.contextmanager
def reading(path: str | Path, error: type[MMEError] = MMEError, key: str = "") -> Iterator[None]:
    """A look-up, listing or read in the block that fails (an OSError) is ``error`` saying :func:`cannot_read` of the
    file the OS call named, else of ``path``, after ``key`` (the setting that gives ``path``) where given."""
    try:
        yield
    except OSError as e:
        named = e.filename if isinstance(e.filename, (str, os.PathLike)) else path
        raise error(f"{key} {cannot_read(named, e)}" if key else cannot_read(named, e)) from e


@contextlib.contextmanager
def removing(path: str | Path, then: str = "", done: str = "removed", warn: bool = False,
             error: type[MMEError] = MMEError) -> Iterator[None]:
    """A removal in the block (or what ``done`` says: a move, a folder made) that fails (a read-only folder, an
    immutable or busy file, another user's in a shared folder) is ``error`` naming the file the error names (else
    ``path``), the reason and ``then`` (what the file is, what is kept, how to go on); with ``warn``, a warning saying
    the same, the rest of the block skipped. Nothing is removed from a folder this process locked that was removed
    or replaced since (:func:`check_path_held`)."""
    check_path_held(path)
    try:
        yield
    except OSError as e:
        said = f"{e.filename or path}: could not be {done} ({error_reason(e)})" + (f"; {then}" if then else "")
        if not warn:
            raise error(said) from e
        log.warning("%s", said)


PR_SET_PDEATHSIG = 1
"""Linux's ``prctl`` option by which a process asks for a signal when the thread that started it ends."""


def end_with_parent(parent: int, by_main_thread: bool) -> None:
    """End this process, a worker of :func:`in_workers` or a data loader's (:func:`mme.data.dataset.start_workers`),
    when ``parent`` (the PID of the process that started it) dies, also mid-job: a parent killed with SIGKILL (the OOM
    killer, a supervisor's kill -9, a subprocess timeout) runs no cleanup of its own, and a worker would notice only at
    its next send or receive, after its video, its lock held all the while (a rerun waited on it). On Linux, where
    ``parent`` forked or spawned it from its main thread (the one thread that lives as long as its process: the kernel
    signals at the end of the starting thread, not of the process), the kernel sends SIGKILL (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread waits for ``parent``'s end: a worker another thread started, or one the forkserver start
    method's server started on ``parent``'s behalf (Python 3.14's default on Linux), whose own parent is that server,
    not ``parent``. A parent already dead as this runs is not waited for."""
    forked_by_it = os.getppid() == parent  # (not by a fork server, nor reparented: it died before this ran)
    if forked_by_it and by_main_thread and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # (reparented: it died before the signal was asked for)
                    os._exit(1)
                return
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):  # (not Linux, or before 5.3: a look each second)
        pidfd = os.pidfd_open(parent)  # (readable once it ended, a zombie too; no PID taken again mistaken for it)

    def there() -> bool:  # (without a pidfd: its parent, where parent is it, else whether parent still is)
        if forked_by_it:
            return os.getppid() == parent
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # (a process of another user's, that took its PID: rare)
            pass
        return True

    if pidfd is None and not there():
        os._exit(1)

    def watching() -> None:
        if pidfd is not None:  # (poll, not select: a pidfd of 1024 or above, in a process of that many files)
            watch = select.poll()
            watch.register(pidfd, select.POLLIN)
            watch.poll()
        while pidfd is None and there():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watching, name="mme-parent-watch", daemon=True).start()


def log_setup() -> Callable[[], None] | None:
    """How this process's log was set up, for the worker processes it starts fresh (spawn, forkserver), which start
    with none (:func:`take_log_setup`): the ``log_setup`` of the root logger's handler that has one, a picklable
    function that sets it up again (the CLI's, :class:`mme.cli._StderrLog`); None where none has (a Python caller's
    own log: its workers are left as they were)."""
    return next((h.log_setup for h in logging.getLogger().handlers if getattr(h, "log_setup", None)), None)


def take_log_setup(setup: Callable[[], None] | None) -> None:
    """``setup`` (:func:`log_setup` of the process that started this worker) run where this process has no log
    handler, as one started fresh has none: its lines then as its parent's (format, levels, rank), not Python's bare
    warnings (its info and debug lines lost); a forked one has its parent's handlers already."""
    if setup is not None and not logging.getLogger().handlers:
        setup()


def _worker(conn: Connection, work: Callable[[Any], Any], parent: int, by_main_thread: bool,
            setup: Callable[[], None] | None) -> None:
    """A process of :func:`in_workers`: ``work`` of each job ``conn`` sends, one thread each, its log as its parent's
    (``setup``: :func:`take_log_setup`). Ctrl-C, which a terminal sends to the whole process group, and Slurm's
    SIGUSR1, which reaches every process of a job step, are left to the main process, which stops the workers; one
    whose main process dies ends at once (:func:`end_with_parent`: ``parent``, its PID, and whether its main thread
    started this one).

    torch is set to one thread where ``work``'s module imported it (spawn imported that module before this runs);
    elsewhere ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (which torch's default takes first) of 1 have a later import
    start on one thread, and a worker whose job needs no torch (``mme check``'s) does not import it: 1.9 s of CPU
    per worker, and per replacement of a dead one, on the 2-core Intel Xeon (AMX)."""
    end_with_parent(parent, by_main_thread)
    take_log_setup(setup)
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    else:
        os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cv2.setNumThreads(1)
    try:
        conn.send(WORKER_READY)
    except (EOFError, OSError):
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        try:
            result = work(job)
        except Exception as e:  # the main process raises it, as ``work`` run there would have
            result = _raised(e, traceback.format_exc())
        try:
            try:
                conn.send(result)
            except (pickle.PicklingError, TypeError, AttributeError) as e:  # (pickled before any byte is sent)
                conn.send(_raised(e, traceback.format_exc()))
        except (EOFError, OSError):
            return


def _raised(error: Exception, trace: str) -> _Raised:
    """``error`` as sent back, or a RuntimeError of its text where it does not pickle and unpickle as itself."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return _Raised(error, trace)


@dataclasses.dataclass
class _Raised:
    """What ``work`` raised in a worker, and where."""

    error: Exception
    trace: str


class WorkerError(Exception):
    """The traceback of an error raised in a worker process of :func:`in_workers`."""


WORKER_READY = "ready"
"""What a worker of :func:`in_workers` sends first, once started, before it takes a job: one that dies before it
could not start (its parent's script cannot be imported again, :func:`why_workers_cannot_start`), no job's fault."""


def why_workers_cannot_start(instead: str = "pass workers=1") -> str:
    """Why spawned workers that ended before they started could not start, and what to do (``instead``: the call's
    way without them): each imports the ``__main__`` script again from its file, which a script read from stdin
    (``python - < script.py``) or removed since has not; else the error each printed, which this process cannot
    read."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is None and file:  # (``-m``: imported by name; ``-c``, a notebook: no file)
        if file == "<stdin>":
            return (f"the calling script was read from stdin, which spawned workers cannot import again: run it from "
                    f"a file, or {instead}")
        if not os.path.isfile(os.path.join(multiprocessing.process.ORIGINAL_DIR or "", file)):
            return f"the calling script {file} is not there for spawned workers to import again: {instead}"
    return f"see the error printed above, or {instead}"


def how_it_ended(exitcode: int) -> str:
    """How a process that ended with multiprocessing's ``exitcode`` (minus the signal that killed it) ended:
    ``signal 9: Killed``, ``exit status 1``."""
    return f"signal {-exitcode}: {signal.strsignal(-exitcode)}" if exitcode < 0 else f"exit status {exitcode}"


SCRIPT_RERUN_EXIT = 86
"""The exit status of a spawned worker that found itself running its parent's script again
(:func:`exit_if_script_rerun`)."""


def exit_if_script_rerun() -> None:
    """End this process quietly, :data:`SCRIPT_RERUN_EXIT`, where it is a spawned worker still starting: it runs its
    parent's script again (one without ``if __name__ == "__main__":``), which called mme. Its parent's
    :func:`in_workers` then raises :class:`UnguardedScript`. Called by ``in_workers`` and :func:`lock_folder` (the
    script's job locks its folder before it reaches its workers: locked by the parent, so the worker failed there)."""
    if getattr(current_process(), "_inheriting", False):  # (multiprocessing's mark of a spawned worker's start)
        raise SystemExit(SCRIPT_RERUN_EXIT)


LOG_REDRAW_SECONDS = 30.0
"""How often a progress bar is redrawn where stderr is not a terminal (a Slurm or CI log): every redraw there is
kept, a long run's steps at tqdm's 0.1 s making megabytes of one line."""


def progress_bar(items: Iterable | None, total: int, desc: str | None, unit: str, show: bool = True,
                 keep: bool = True, initial: int = 0) -> tqdm:
    """The progress bar on stderr of a long pass over ``items`` (``mme extract``'s videos, ``mme check``'s, a test's
    batches; None: advanced by ``update``, a training's steps from ``initial``), drawn where ``show`` (rank 0 alone
    under torchrun); one not ``keep`` is cleared when done (a step before the work), so drawn on a terminal alone: in
    a file (a CI log) what clearing leaves stood in front of the next line. In a file it is redrawn every
    :data:`LOG_REDRAW_SECONDS`; its postfix is to be set with ``refresh=False``, else each setting redraws it. After
    each item's work (the last one's too), a stop the command recorded whose exception Python dropped is raised
    (:func:`~mme.train.interrupts.raise_recorded`)."""
    on_terminal = getattr(sys.stderr, "isatty", lambda: False)()
    interval = {} if on_terminal else {"mininterval": LOG_REDRAW_SECONDS, "maxinterval": LOG_REDRAW_SECONDS}
    return _StoppableBar(items, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True,
                         disable=not show or not (keep or on_terminal), leave=keep, **interval)


class _StoppableBar(tqdm):
    """:func:`progress_bar`'s tqdm: its pass raises a recorded stop after each item's work (before the next item is
    fetched, or the pass ends)."""

    def __iter__(self) -> Iterator:
        with contextlib.closing(super().__iter__()) as items:  # (closed with this pass: an exception of the items'
            for item in items:                                  # closing reaches its closer, not the garbage collector)
                yield item
                raise_recorded()


class Tally:
    """Counts like events of a long job (failed videos, skipped steps) for a log that stays short however many there
    are: each of the first ``first`` is said in a line of its own, the later ones in one line counting those since
    each time their count doubles (at ``2 * first``, ``4 * first``, ...: about 20 lines for a million), those left
    unsaid at the end in the job's summary (:attr:`unsaid`)."""

    def __init__(self, first: int) -> None:
        self.first, self.seen, self.said = first, 0, 0
        self.next = 2 * first  # the count at which the next line says those since

    def add(self) -> int | None:
        """Count one more: 0 where it is said in a line of its own (the last such where :attr:`seen` is ``first``),
        the number since the last said where a line counting them is due, None where it is left unsaid."""
        self.seen += 1
        if self.seen <= self.first:
            since = 0
        elif self.seen >= self.next:
            since, self.next = self.seen - self.said, 2 * self.next
        else:
            return None
        self.said = self.seen
        return since

    @property
    def unsaid(self) -> int:
        """Those counted since the last said."""
        return self.seen - self.said

    @property
    def later(self) -> str:
        """What the last line of its own ends with (else nothing): how the later ones are said."""
        return (f"; later ones are counted each time their number doubles ({self.next}, ...)"
                if self.seen == self.first else "")


def open_files_for(workers: int, key: str, loader: bool = True, asked: int | None = None) -> None:
    """Raise the process's soft limit of open files to its hard limit where it is lower and ``workers`` worker
    processes are asked for (only up, as many tools do; left so after the job), as every start of them does (a
    loader's, :func:`mme.data.dataset.start_workers`; :func:`in_workers`'): a ``loader``'s workers' batches reach the
    process as file descriptors, one per tensor until it is freed, besides their pipes and the videos they read, so a
    low limit (``ulimit -n 32``) ended a run, ``mme embed`` or ``mme probe`` in a traceback of ``Too many open
    files`` (at 20: a hang), and :func:`in_workers`' start of a worker (``mme check``) in one of ``[Errno 24]``.
    Where even then the limit is below what ``workers`` (``key``: the setting that asks for them) may hold, an
    MMEError naming the limit and ``ulimit -n``. That is a margin over what was measured: a loader run held at most
    ~15 descriptors of the process and 6.5 (pixel targets) to 12.5 (MME targets) of each worker, 441 for 32 workers:
    64, and 16 a worker; ``mme check`` under :func:`in_workers` needed ~10 and 3 a worker (its pipe, its process
    handle, the pipe of the one starting): 24, and 4 a worker. ``asked``: the setting's value where fewer start
    (:func:`in_workers`: one a job at most), which the message names as given."""
    import resource

    if not workers:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):  # (a hard limit past the system's: kept as it is)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    need = 64 + 16 * workers if loader else 24 + 4 * workers
    if soft != resource.RLIM_INFINITY and soft < need:
        limits = "its hard limit, ulimit -Hn" if soft == hard else "ulimit -n"
        held = ("loader workers may hold (the batches they send come as file descriptors)" if loader else
                "worker processes may hold (a pipe and a process handle each)")
        fewer = asked is not None and asked > workers
        raise MMEError(f"{key}={asked if fewer else workers}{f' ({workers} start)' if fewer else ''}: this process "
                       f"may open at most {soft} files ({limits}), below the {need} that {workers} {held}: raise it "
                       f"(ulimit -n {need}; past the hard limit, as root or by the session's limits), or lower {key}"
                       f"{f' below {workers}' if fewer else ''}")


WAIT_WARNING_S = 300.0
"""How long a worker process (or this process, without workers) may hold a job (:func:`in_workers`) or a loader's
next batch (:class:`mme.data.dataset._SlowBatches`) before a warning names it. Only a warning: a read from a slow
network file system may take minutes, and a stop signal ends the wait where it must."""


def in_workers(work: Callable[[Any], Any], jobs: list, workers: int, died: Callable[[Any, str], Any],
               named: Callable[[Any], object] = str) -> Iterator[Any]:
    """``work(job)`` for each job, as ``workers`` spawned processes finish them (in that order); in this process, in
    the jobs' order, where there are fewer than two workers or jobs (no process to spawn). A job a worker (or this
    process) holds for :data:`WAIT_WARNING_S` is warned of, and again each time its wait doubles, naming the PID and
    the job as ``named(job)`` gives it (its video), with the jobs done (:class:`Watch`), and the worker's state where
    it is stopped or hung (:data:`STATES_SAID`): a read hung on a stalled mount held a command without a word.
    Where a job raises, the results the other workers had sent by then are given first (a stopped check reports
    them). A worker that dies (the OOM killer, a crashing decoder) gives ``died(job, how)`` for the job it had, and a
    new one takes its place (a multiprocessing Pool lost that job and waited for it forever). What ``work`` raises
    stops them all and is raised here, as a sequential run raises it (its cause: the worker's traceback). A worker
    says :data:`WORKER_READY` before it takes a job: one that exits before could not start, which is an MMEError, no
    job's death (a script read from stdin, which spawn cannot import again, had every job counted as one whose
    worker died); one killed before (a signal: the OOM killer) gives its job to another worker, once, as one that
    died before the job reached it.

    Called by a script without ``if __name__ == "__main__":``, each spawned worker runs the script again, which
    calls mme again while the worker starts: that call ends the worker quietly (:func:`exit_if_script_rerun`; it
    raised multiprocessing's RuntimeError, and its parent counted every job as one whose worker died), and the
    parent raises :class:`UnguardedScript`."""
    if workers < 2 or len(jobs) < 2:
        held: dict[None, Held] = {}
        done = 0
        with Watch(held, functools.partial(_job_held_long, named, lambda: done, len(jobs)), "mme in_workers watch"):
            for job in jobs:
                held[None] = Held((None, job))
                result = work(job)
                del held[None]
                done += 1
                yield result
        return
    exit_if_script_rerun()
    open_files_for(min(workers, len(jobs)), "--workers", loader=False, asked=workers)  # (one a job at most start)
    ctx = get_context("spawn")
    todo, idle, busy, procs = list(reversed(jobs)), [], {}, []  # busy: connection -> Held((its worker, its job))
    unsent: set[int] = set()  # ids of the jobs whose worker died before taking them
    ready: set[Connection] = set()  # the workers that said WORKER_READY

    def retire(conn: Connection, proc) -> str:
        """Close a dead worker's pipe and process (their descriptors): how it ended. One that exited before it said
        it was ready could not start: an MMEError, no job's."""
        conn.close()
        proc.join()
        code = proc.exitcode
        procs.remove(proc)
        proc.close()
        if code == SCRIPT_RERUN_EXIT:
            raise UnguardedScript()
        if conn not in ready and code >= 0:
            why = why_workers_cannot_start()
            raise MMEError(f"worker processes could not start ({how_it_ended(code)}): {why}") from None
        ready.discard(conn)
        return how_it_ended(code)

    with Watch(busy, functools.partial(_job_held_long, named, lambda: len(jobs) - len(todo) - len(busy), len(jobs)),
               "mme in_workers watch"):
        raised = None  # a job's error, raised once the results already sent with it are given
        try:
            while todo or busy:
                while todo and len(busy) < workers and raised is None:
                    while idle and not idle[-1][1].is_alive():  # died while it waited
                        retire(*idle.pop())
                    if idle:
                        conn, proc = idle.pop()
                    else:
                        conn, there = ctx.Pipe()
                        proc = ctx.Process(target=_worker, daemon=True, args=(
                            there, work, os.getpid(), threading.current_thread() is threading.main_thread(),
                            log_setup()))
                        proc.start()
                        there.close()
                        procs.append(proc)
                    job = todo.pop()
                    try:
                        conn.send(job)
                    except OSError:  # it died before the job reached it: another worker takes the job, once
                        how = retire(conn, proc)
                        if id(job) in unsent:
                            yield died(job, how)
                        else:
                            unsent.add(id(job))
                            todo.append(job)
                        continue
                    busy[conn] = Held((proc, job))
                arrived = wait(list(busy), timeout=0 if raised else None)
                if raised is not None and not arrived:
                    break
                for conn in arrived:
                    proc, job = busy[conn].what
                    try:
                        result = conn.recv()
                    except (EOFError, OSError):  # (ECONNRESET where it died with the job unread)
                        del busy[conn]
                        started = conn in ready
                        how = retire(conn, proc)
                        if started or id(job) in unsent:
                            yield died(job, how)
                        else:  # killed while it started: another worker takes the job, once
                            unsent.add(id(job))
                            todo.append(job)
                        continue
                    if conn not in ready:  # a new worker's WORKER_READY: its job's result comes next
                        ready.add(conn)
                        busy[conn].since = time.monotonic()  # (its job starts now: spawn's start not counted)
                        continue
                    del busy[conn]
                    if isinstance(result, _Raised):
                        raised = raised or result
                        continue
                    idle.append((conn, proc))
                    yield result
            if raised is not None:
                raise raised.error from WorkerError(f"in a worker process:\n{raised.trace}")
        finally:
            for proc in procs:  # done, or stopped (Ctrl-C, SIGTERM): no worker outlives the job (nor a SIGKILL of this
                # process: end_with_parent)
                proc.kill()
                proc.join()


def _job_held_long(named: Callable[[Any], object], done: Callable[[], int], jobs: int, held: tuple[Any, Any],
                   waited: float) -> None:
    """The warning of :func:`in_workers` of a job ``held`` (``(its worker process, the job)``; None for this process)
    for ``waited`` seconds, naming the job (``named``), the process and its state, and the jobs ``done()`` of
    ``jobs``."""
    proc, job = held
    log.warning("%s: no result for %.0f s from %s, still waited for (%d of %d done; a slow read may take this long; "
                "Ctrl-C or SIGTERM ends the wait)", named(job), waited,
                f"this process (pid {os.getpid()})" if proc is None
                else f"worker process {proc.pid}{STATES_SAID.get(process_state(proc.pid), '')}", done(), jobs)


def process_state(pid: int) -> str:
    """The state of process ``pid`` as /proc gives it (``T``: stopped, by SIGSTOP or a job suspended; ``D``: an
    uninterruptible wait, a read of a hung file system; ...); '' where /proc has none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


STATES_SAID = {"T": ", stopped: kill -CONT resumes it", "t": ", stopped by a debugger",
               "D": ", in an uninterruptible wait (a hung file system?)"}
"""How the warning of a wait held long (:class:`Watch`'s) says the :func:`process_state` of the worker process it
waits on, where it says anything."""


@dataclasses.dataclass
class Held:
    """A wait that a :class:`Watch` looks at: ``what`` is waited for (its user's word for it), since when, and the
    wait after which it is warned of next (:data:`WAIT_WARNING_S` first)."""

    what: Any
    since: float = dataclasses.field(default_factory=time.monotonic)
    due: float = dataclasses.field(default_factory=lambda: WAIT_WARNING_S)


class Watch:
    """A thread, ``name``, that while in use (``with``, or :meth:`start` to :meth:`close`) looks every tenth of
    :data:`WAIT_WARNING_S` at the waits ``held`` (a dict of :class:`Held` that its user changes meanwhile) and calls
    ``warn(what, waited)`` of each once it has lasted :data:`WAIT_WARNING_S`, and again each time it doubles: the one
    place of the warnings of a wait held long, a job of :func:`in_workers` (a worker's, or this process's) and a
    loader's next batch (:class:`mme.data.dataset._SlowBatches`). A look costs a clock read a wait."""

    def __init__(self, held: dict[Any, Held], warn: Callable[[Any, float], None], name: str):
        self._held, self._warn = held, warn
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._ended.set()
        self._thread.join()

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _watch(self) -> None:
        while not self._ended.wait(WAIT_WARNING_S / 10):
            for held in list(self._held.values()):  # (a copy: its user changes the dict meanwhile)
                waited = time.monotonic() - held.since
                if waited >= held.due:
                    self._warn(held.what, waited)
                    held.due *= 2


def remove_stale_temps(files: Collection[Path]) -> None:
    """Remove the temporary files that writes of ``files`` killed mid-way left beside them
    (:func:`remove_stale_temps_in` their folders)."""
    names: dict[Path, set[str]] = {}
    for f in files:
        names.setdefault(f.parent, set()).add(f.name)
    for folder, here in names.items():
        remove_stale_temps_in(folder, here)


def remove_stale_temps_in(folder: Path, names: Collection[str] | None = None) -> None:
    """Remove the temporary files that writes killed mid-way left in ``folder`` (``.<name>.tmp<pid>...``, of the
    files named in ``names``, any without), those no live writer holds (:func:`_remove_stale_temp`). One that
    cannot be removed (an immutable file, another user's in a shared folder), or opened to test its lock (another
    user's, kept to themselves), is warned about and left; a folder that is not there has none."""
    try:
        temps = list(folder.glob(".*.tmp*"))
    except FileNotFoundError:  # the folder is gone (removed by another process meanwhile)
        return
    stems = None if names is None or not temps else _temp_names(names, _fitting_limit(folder))  # (once: a share's
    # 220k cache files)
    for tmp in temps:
        with removing(tmp, "it is the temporary file of an interrupted write, left there: nothing reads it",
                      warn=True):
            try:
                removed = _remove_stale_temp(tmp, stems)
            except LockUntestable as e:
                log.warning("%s: could not be opened to test its lock (%s), which a live writer in another container "
                            "or on another machine may hold; it is the temporary file of a write, left there: its "
                            "owner may remove it", tmp, error_reason(e))
                continue
            if removed:
                log.info("removed %s, the temporary file of an interrupted write", tmp)


_SAFETENSORS_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                      "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16",
                      "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e4m3fnuz": "F8_E4M3FNUZ",
                      "float8_e5m2": "F8_E5M2", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
                      "float4_e2m1fn_x2": "F4", "complex64": "C64"}
"""The safetensors names of the torch dtypes :func:`write_safetensors` writes: those safetensors' ``save_file``
writes (not complex128, complex32, the sub-byte ints)."""
SAFETENSORS_HEADER_MAX = 100_000_000
"""The largest JSON header, in bytes, safetensors reads (its ``MAX_HEADER_SIZE``)."""


def _safetensors_entry(name: str, t: Any, offset: int) -> dict[str, Any]:
    """The header entry of tensor ``t`` (named ``name``), its bytes from ``offset``; a dtype safetensors has no name
    for is an MMEError naming the tensor. A float4 tensor's shape counts its 4-bit values, two to each of torch's
    ``float4_e2m1fn_x2`` elements along the last dimension, as safetensors counts them."""
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in _SAFETENSORS_DTYPES:
        raise MMEError(f"tensor {name!r}: safetensors has no {dtype} type; convert it to one of "
                       f"{', '.join(_SAFETENSORS_DTYPES)}")
    shape = list(t.shape)
    if dtype == "float4_e2m1fn_x2":
        if not shape:
            raise MMEError(f"tensor {name!r}: a 0-d {dtype} tensor, whose pair of values safetensors cannot store")
        shape[-1] *= 2
    size = t.numel() * t.element_size()
    return {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": shape, "data_offsets": [offset, offset + size]}


def write_safetensors(path: str | Path, tensors: dict[str, Any],
                      metadata: dict[str, str] | None = None) -> dict[str, int]:
    """Write ``tensors`` (torch tensors or numpy arrays) to ``path`` in the safetensors format, a file safetensors
    reads back: the JSON header padded to 8 bytes, then each tensor's bytes, the widest elements first (so each
    starts aligned), then by name (safetensors' ``save_file`` orders those of one width by dtype before name: the
    same tensors, not the same bytes). Written straight into ``path`` (an :func:`atomic_path` temporary file), one
    tensor at a time: ``save_file`` (0.8) writes a temporary file of its own beside ``path`` first, ``.tmpXXXXXX``,
    which a kill leaves there under a name no cleanup can tell from another program's, and its ``save`` holds the
    file twice in memory. What safetensors would not read is refused before anything is written: a dtype it has
    no name for (an MMEError naming the tensor), a metadata value that is not a string, a tensor named
    ``__metadata__``, a header over :data:`SAFETENSORS_HEADER_MAX` (ValueErrors). A tensor on torch's ``meta``
    device is given its place and not its bytes, for the caller to write there (a grid too large for memory, a part
    at a time); returned: where each tensor's bytes begin in the file."""
    import torch

    if metadata and (bad := next((k for k, v in metadata.items() if not isinstance(v, str)), None)) is not None:
        raise ValueError(f"safetensors metadata {bad!r}: its value is of type {type(metadata[bad]).__name__}; "
                         "safetensors' metadata values are strings")
    if "__metadata__" in tensors:
        raise ValueError("tensor '__metadata__': the name safetensors gives its metadata; rename the tensor")
    tensors = {name: torch.as_tensor(t).detach() for name, t in tensors.items()}
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in order:
        header[name] = _safetensors_entry(name, tensors[name], offset)
        offset = header[name]["data_offsets"][1]
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    if len(text) > SAFETENSORS_HEADER_MAX:
        raise ValueError(f"{path}: a safetensors header of {len(text)} bytes, over the {SAFETENSORS_HEADER_MAX} "
                         "safetensors reads (its metadata, or the names of its tensors)")
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in order:
            if tensors[name].is_meta:
                f.seek(tensors[name].numel() * tensors[name].element_size(), os.SEEK_CUR)
            else:
                f.write(tensors[name].cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        f.truncate()  # (the file's full size, where a tensor given its place alone is last)
    return {name: 8 + len(text) + header[name]["data_offsets"][0] for name in order}


TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}
"""How mme writes and reads its own text files (``open(path, mode, **TEXT)``): UTF-8 whatever the locale (not the
locale's encoding: ASCII under ``LC_ALL=C`` without UTF-8 mode), a file name Python decoded with surrogate escapes
written as its bytes on disk and read back as the same text."""


def npy_header(f: Any) -> tuple[tuple[int, ...], bool, Any]:
    """The shape, Fortran order and dtype of the .npy file open at its start as ``f`` (a zip member of an .npz),
    from its header alone, whose length numpy bounds: its data is not read."""
    import numpy as np

    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return header(f)


def read_text(path: str | Path) -> str:
    """The text of a file mme wrote (:func:`atomic_write_text`: run.json, a report, a list) as it was written, read
    as :data:`TEXT` says, whatever the locale."""
    return Path(path).read_text(**TEXT)


def utf8_name(name: str) -> str:
    """A name read from the file system (a class folder's) as UTF-8 reads it, whatever the locale: under an ASCII
    locale Python decodes ``café`` as ``caf\\udcc3\\udca9`` (a ``classes.json`` so written named another class than
    one written under a UTF-8 locale); a byte that is not UTF-8 keeps its surrogate escape."""
    return name if name.isascii() else os.fsencode(name).decode("utf-8", "surrogateescape")


def utf8_abspath(path: str | os.PathLike) -> str:
    """``path``'s absolute path as UTF-8 text (:func:`utf8_name`), as a report or a job's record names a file: the
    same file is the same text whatever the locale it was written or compared under."""
    return utf8_name(os.path.abspath(path))


def utf8_named(record: dict, said: str) -> dict:
    """``record`` of a file a report names (its ``"path"``, the file system's name) with that path as UTF-8 text
    (:func:`utf8_name`), in its ``said`` text too, as a report written whatever the locale names the file."""
    path = record["path"]
    return {**record, "path": (text := utf8_name(path)), said: record[said].replace(path, text)}


def fs_name(text: str) -> str:
    """The inverse of :func:`utf8_name`: a name as UTF-8 text spells it (a list's line, a path in a recipe) as the file
    system's str, which Python's os calls take: under an ASCII locale ``café`` is ``caf\\udcc3\\udca9`` (``café``
    itself cannot be encoded), under a Latin-1 locale ``cafÃ©``; the name itself under a UTF-8 locale."""
    return text if text.isascii() else os.fsdecode(text.encode("utf-8", "surrogateescape"))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`) in UTF-8, as mme reads its files whatever the
    locale (not the locale's encoding: ASCII under ``LC_ALL=C``), creating its folder if needed. A file name Python
    decoded with surrogate escapes (a UTF-8 name under an ASCII locale) is written as its bytes on disk."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, **TEXT)


def atomic_write_texts(texts: Mapping[Path, str], then: str = "") -> None:
    """Write each text to its path as :func:`atomic_write_text` does, all or none where a write fails: every file is
    written to its temporary file first, and each path is seen to be no folder, before any file is replaced, so a
    failed write (a full disk, a file-size limit) or a folder in the way leaves every one as it was, not new files
    beside old ones that disagree (lists beside an older class map). The files are then replaced in the order given;
    a replace that fails even so (an I/O error) leaves those given before it replaced, those after it (the last: the
    one that says the others are valid, a class map) as they were. A failure is :func:`writing`'s error naming its
    file, with ``then``."""
    with contextlib.ExitStack() as replacing:  # (at its end each temporary file replaces its file; on an error, none)
        for path, text in reversed(texts.items()):  # (its end runs them last first: replaced in the order given)
            replacing.enter_context(writing(path, then))  # the replace at the end too
            replacing.enter_context(atomic_path(path)).write_text(text, **TEXT)
        for path in texts:
            with writing(path, then):
                if os.path.isdir(path) and not os.path.islink(path):  # (os.replace takes the place of a link)
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))


def atomic_write_json(path: str | Path, obj, **dumps) -> None:
    """Write :func:`json_text` of ``obj`` atomically; ``dumps``: more ``json.dumps`` options."""
    atomic_write_text(path, json_text(obj, **dumps))


def read_json_object(path: str | Path, keys: Collection[str]) -> dict | None:
    """The JSON object in the file at ``path`` where it holds every one of ``keys`` (a report of mme's); None where
    there is none, or the file is not such an object (a user's notes). A file that does not begin as an object
    (past JSON's white space: a video, a list) is not read further."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.read(1)
            while first and first in " \t\r\n":
                first = f.read(1)
            if first != "{":
                return None
            f.seek(0)
            found = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and all(key in found for key in keys) else None


def json_nulls(v):
    """``v`` with None for NaN and infinities, in its dicts, lists and tuples too: JSON has none (browsers and jq
    refuse Python's ``NaN``; jq reads ``Infinity`` as 1.8e308). mme's JSON files, reports and logs, are so written."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_nulls(x) for k, x in v.items()}
    return [json_nulls(x) for x in v] if isinstance(v, (list, tuple)) else v


def json_text(obj, **dumps) -> str:
    """``obj`` as indented JSON (a trailing newline), null for NaN and infinities (:func:`json_nulls`: a report of
    no videos, a random init's loss); ``dumps``: more ``json.dumps`` options."""
    return json.dumps(json_nulls(obj), indent=2, allow_nan=False, **dumps) + "\n"


def flag(name: str) -> str:
    """The command-line flag of a parameter or config field: ``num_frames`` -> ``--num-frames``."""
    return "--" + name.replace("_", "-")


def as_given(option: str, value: object) -> str:
    """``option`` set to ``value`` as a user gives it, for messages: a command's flag ``--backend decord``, a config
    key ``data.backend=decord``."""
    return f"{option} {value}" if option.startswith("--") else f"{option}={value}"


TIMED_AGAIN = "a repeated one is timed again and only its last figure kept"
"""Why a benchmark refuses a value given twice (:func:`check_given_once`): ``mme bench data --workers``, ``mme bench
flow --methods`` and ``--sizes``."""


def check_given_once(option: str, values: Collection, why: str, each: str = "", shown: str | None = None) -> None:
    """Refuse ``values`` given to ``option`` (``shown`` as the user gave them; default: joined by spaces) where one is
    given twice: a ConfigError ``OPTION VALUES: give each [EACH ]once (WHY)``, ``why`` saying what a repeat does."""
    if len(set(values)) < len(values):
        shown = " ".join(map(str, values)) if shown is None else shown
        raise ConfigError(f"{option} {shown}: give each {each + ' ' if each else ''}once ({why})")


_FLAGS_OF_KEYS: contextvars.ContextVar[tuple[Mapping[str, str | None], bool] | None] = contextvars.ContextVar(
    "_FLAGS_OF_KEYS", default=None)
"""The flags of the config keys a command's flags set, and whether it takes key=value overrides of the others,
within :func:`keys_as_flags` (:func:`said_as`)."""


def said_as(key: str) -> str | None:
    """How the user sets config key ``key``, for advice: the flag of the command running, within
    :func:`keys_as_flags` (``--workers`` for data.num_workers in ``mme demo`` and ``mme bench pipeline``); None
    where that command gives no way to set it (a key it fixes, as ``mme demo`` its batch, or any other key of a
    command that takes no key=value overrides, as ``mme bench pipeline``), which advice then leaves out; else the
    key."""
    flags, overrides = _FLAGS_OF_KEYS.get() or ({}, True)
    return flags[key] if key in flags else key if overrides else None


def workers_and_batch() -> str:
    """data.num_workers and train.batch_size as the command running takes them (:func:`said_as`), joined by "or", one
    it does not take left out ('' where it takes neither): what sets the memory its loader workers hold at once."""
    return " or ".join(k for k in (said_as("data.num_workers"), said_as("train.batch_size")) if k)


def memory_advice(in_worker: bool) -> str:
    """What to lower where a step (``in_worker``: a loader worker of it, or one the out-of-memory killer ended) ran
    out of memory, each setting as the command running takes it (:func:`said_as`: ``--workers`` in ``mme demo``,
    ``--size`` in ``mme bench pipeline``, ``--workers`` and ``--batch-size`` in ``mme embed``), those it does not take
    left out (the demo's batch; every key but its flags' in ``mme bench pipeline`` and ``mme embed``). The clips'
    size is each data key with its model key, which a run refuses to differ."""
    def said(*keys: str) -> str | None:
        named = [said_as(k) for k in keys]
        return " with ".join(dict.fromkeys(named)) if all(named) else None

    size = [s for s in (said("data.img_size", "model.img_size"), said("data.num_frames", "model.num_frames")) if s]
    size = [f"the clips' size ({', '.join(size)})"] if size else []
    if in_worker:
        lowered = workers_and_batch()
        ways = [f"lower {', or '.join(([lowered] if lowered else []) + size)}"] if lowered or size else []
    else:
        batch, accum, checkpointing = (said_as(k) for k in ("train.batch_size", "train.accum_steps",
                                                             "train.activation_checkpointing"))
        ways = ([f"lower {batch}" + (f" (raising {accum} keeps the clips a step trains on)" if accum else "")]
                if batch else []) + ([f"set {checkpointing}=true"] if checkpointing else [])
        if size:
            ways.append(f"lower {size[0]}")
    if not ways:  # (a command that takes none of these settings)
        return "this command takes none of the settings that would lower it"
    return ", ".join(ways[:-1]) + (", or " if len(ways) > 1 else "") + ways[-1]


@contextlib.contextmanager
def keys_as_flags(flags: dict[str, str | None], overrides: bool = True) -> Iterator[None]:
    """A ConfigError raised within whose message starts with a config key of ``flags`` (the keys a command's flags
    set, ``{"model.num_frames": "--frames"}``), said with the flag the user gave instead of the key: ``--frames 3 is
    not a multiple of tubelet_size 2``, ``--preset: unknown preset 'x'; ...`` (``config key 'model.preset': ...``).
    Advice given within names the flag too (:func:`said_as`), and leaves out a key whose flag is None (one the
    command fixes) and, where ``overrides`` is false (a command without key=value overrides), every key not in
    ``flags``."""
    outer, outer_overrides = _FLAGS_OF_KEYS.get() or ({}, True)
    token = _FLAGS_OF_KEYS.set(({**outer, **flags}, outer_overrides and overrides))
    try:
        yield
    except ConfigError as e:
        text = str(e)
        for key, option in flags.items():
            if option is None:
                continue
            for said in (f"config key '{key}'", key):
                rest = text.removeprefix(said)
                if rest != text and not re.match(r"[\w.]", rest):  # (not model.num_frames_x, model.num_frames.y)
                    raise ConfigError(option + rest) from e
        raise
    finally:
        _FLAGS_OF_KEYS.reset(token)


def absolute_path(path: str | os.PathLike) -> str:
    """``path`` from the root for a library to open, as os.path.abspath spells it (the name frame indexes and track
    caches are keyed and recorded by) unless that removes an 'a/..' by text where the OS follows a symlink 'a' first
    to another file: then with its '..' kept. An absolute name is not read as a protocol by FFmpeg
    ('2020-01-01T10:00:00.mp4', 'pipe:0')."""
    plain = os.path.abspath(path)
    if ".." not in Path(path).parts:
        return plain
    kept = str(Path(path).absolute())
    return plain if os.path.realpath(plain) == os.path.realpath(kept) else kept


def command_option(option: str, value: object) -> str:
    """``option`` and ``value`` as arguments of a command to run, quoted for a shell: ``--root DIR``, or
    ``--root=-DIR`` where the value starts with '-', which argparse would take for an option."""
    text = str(value)
    return f"{option}={shlex.quote(text)}" if text.startswith("-") else f"{option} {shlex.quote(text)}"


def command_path(path: str | Path) -> str:
    """``path`` as a positional argument of a command to run, quoted for a shell: './-train.txt' where it starts
    with '-', which argparse would take for an option."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def file_path(path: str | Path, option: str) -> Path:
    """The file a file option names, as a ``Path``; a ConfigError naming ``option`` where ``Path`` would name another:
    ``path`` given ending in a separator (``reports/``, a folder's name, whose separator ``Path`` drops: a file of the
    folder's name would be written), or empty (an unset shell variable, which ``Path`` takes for the working folder).
    For a command that needs the Path before :func:`check_output` (its suffix), which checks the same."""
    if isinstance(path, str) and path.endswith(("/", os.sep)):
        raise ConfigError(f"{option} {path}: ends in '{path[-1]}', a folder's name; give a file name")
    return given_path(path, option, "file")


def given_path(path: str | Path, option: str, what: str = "folder") -> Path:
    """The ``what`` (folder, file) an option names, as a ``Path``; a ConfigError naming ``option`` where it is empty
    (an unset shell variable, which ``Path`` takes for the working folder; a caller's test of the option not given
    took it for that)."""
    if isinstance(path, str) and not path:
        raise ConfigError(f"{option} is empty; give a {what} name")
    return Path(path)


def check_output(path: str | Path, option: str, folder: bool = False, make: bool = True,
                 beside: Iterable[str | Path] = ()) -> Path:
    """Fail now, not after the work, when ``path`` cannot be written: a ConfigError naming ``option`` and the
    reason (a folder where a file is wanted or the reverse, a place that is not a writable folder, a file name that
    :func:`file_path` refuses: ``reports/``, an empty one; an empty folder name too; on Linux, a name too long for a
    file name there, its own or that of a file the command writes ``beside`` it, a sidecar: :func:`_name_limit`;
    elsewhere the write that fails says it). Creates the folder
    (``folder``) or the file's folder, removed where a :func:`removing_made_folders` block around fails with them
    empty; ``make=False`` checks only what needs nothing made, for a command that makes the folder once its inputs
    are read. A file ``path`` that is there, its links
    followed, is a regular file: a pipe or a link to one (``/dev/stdout``) blocks a read of what it holds, and the
    atomic write replaces it (:func:`atomic_path`)."""
    path = given_path(path, option) if folder else file_path(path, option)
    limit = _name_limit(path.parent)
    for other in (path, *map(Path, beside)):
        if limit is not None and (size := len(os.fsencode(other.name))) > limit:
            which = "its name" if other == path else f"the name of {other.name}, which it writes beside it,"
            raise ConfigError(f"{option} {path}: {which} is {size} bytes, more than a file name takes ({limit}); "
                              f"give a shorter name")
    try:
        if folder and path.exists() and not path.is_dir():
            raise ConfigError(f"{option} {path}: is a file; a folder is needed")
        if not folder and path.is_dir():
            raise ConfigError(f"{option} {path}: is a folder; give a file name")
        if not folder and path.exists() and not path.is_file():
            raise ConfigError(f"{option} {path}: not a regular file (a pipe, terminal or device); give a file name")
    except OSError as e:  # (a folder above it that this user cannot search: EACCES)
        raise ConfigError(f"{option} {path}: cannot be written ({error_reason(e)})") from e
    where = path if folder else path.parent
    if why := _not_reached(where):  # (nothing made: not a stray folder before a '..', nor a link's target)
        raise ConfigError(f"{option} {path}: cannot be written ({why})")
    blocking = _nearest_existing(where)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"{option} {path}: cannot be written ({blocking} is a file, not a folder)")
    if not make:
        return path
    try:
        _make_output_folder(where)
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot be written ({error_reason(e)})") from e
    return path


def _name_limit(folder: Path) -> int | None:
    """The longest file name, in bytes, that the file system of ``folder`` (the nearest folder at or above it that is
    there) takes, on Linux, as it says (``pathconf``: 255 on ext4, XFS, tmpfs, 143 on eCryptfs, a FUSE mount's as its
    program says), :data:`NAME_MAX` where it cannot be asked; None (no name refused up front) where it reports no
    limit (-1), and on other systems: Apple's count characters, not bytes, and a name too long there is said by the
    write that fails."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        limit = os.pathconf(_nearest_existing(folder, folder=True) or ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX
    return limit if limit > 0 else None


def _make_output_folder(where: Path) -> None:
    """Make ``where``, an output's folder (:func:`_make_folder`), as one step to this user's other jobs on the host
    removing what they made (:func:`_folders_made_or_removed`), each folder made recorded in the open
    :func:`removing_made_folders` blocks. A folder that is there is only probed (:func:`_write_probe`), in that order
    where it is free at once, else without it, with no wait: a job of the user stopped in its step (Ctrl-Z) held
    every check of an output 5 s."""
    new: list[Path] = []
    try:
        if where.is_dir():
            with _folders_made_or_removed(where, wait=False), contextlib.suppress(FileNotFoundError):
                _write_probe(where)  # (a folder removed meanwhile by a job refused: made again, below)
                return
        with _folders_made_or_removed(where):
            _make_folder(where, new)
    finally:
        for made in _made.scopes:
            made += [Path(os.path.abspath(p)) for p in new if p.is_dir()]


class _Made(threading.local):
    """The blocks of :func:`removing_made_folders` open in this thread, innermost last: each one's folders made."""

    def __init__(self):
        self.scopes: list[list[Path]] = []


_made = _Made()


@contextlib.contextmanager
def removing_made_folders() -> Iterator[list[Path]]:
    """The folders :func:`check_output` makes for outputs inside the block (the list yielded), removed where the
    block raises, the deepest first, where they hold nothing: a refused or failed command leaves none of the empty
    folders it made before reading its inputs (``figs/run1`` of ``--out figs/run1/x.png``); one that holds its
    output, or what another job wrote there meanwhile, stays. ``mme``'s commands each run in one."""
    made: list[Path] = []
    _made.scopes.append(made)
    try:
        yield made
    except BaseException:
        deepest_first = sorted(set(made), key=lambda p: len(p.parts), reverse=True)
        if deepest_first:
            with _folders_made_or_removed(deepest_first[0]):  # one step to another job's check of the folder
                for folder in deepest_first:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        raise
    finally:
        _made.scopes.pop()


def check_apart(file: str | Path, file_option: str, folder: str | Path, folder_option: str) -> None:
    """Refuse, before either is made, a ``folder`` output that is the ``file`` output or under it (``--index-dir`` the
    report's ``--out``): the folder made would take the file's name, and the file could not be written after the
    work. Each named however it is reached (a link, another spelling)."""
    at, inside = Path(os.path.realpath(file)), Path(os.path.realpath(folder))
    if at == inside or at in inside.parents:
        raise ConfigError(f"{folder_option} {folder}: is {'' if at == inside else 'under '}{file_option} {file}, a "
                          f"file to be written; give another {folder_option}")


def keep_what_is_read(out: Path, option: str, read: Iterable[tuple[str, str | Path | None]], written: str) -> None:
    """Refuse an output ``out`` that is a file the command reads (``read``: what each is, and its path; None where
    not given), the same file however reached (a link, a hard link, another spelling: :func:`same_file_as`): the
    ``written`` would replace it (the video drawn, the video benchmarked)."""
    is_out = same_file_as(out)
    if is_out is None:
        return
    for what, path in read:
        if is_out(path):
            raise ConfigError(f"{option} {out}: is {path}, {what}; write the {written} elsewhere")


def keep_others_file(out: Path, option: str, command: str, ours: Callable[[Path], bool], what: str,
                     overwrite: bool | None = None) -> None:
    """Refuse an output ``out`` that holds a file ``command`` did not write (``ours`` says whether it did; ``what``:
    what its own are), which the output would replace: a user's notes, a video. ``overwrite``: the command's flag,
    given (replaced) or not; None for a command that has none, which never replaces such a file."""
    if overwrite or not out.is_file() or ours(out):
        return
    how = "give --overwrite to replace it, or" if overwrite is not None else "move it, or give"
    raise ConfigError(f"{option} {out}: already holds a file {command} did not write (not {what}); {how} another "
                      f"{option}")


BENCH_KEYS = {"data": ("stages_ms", "cpu"), "targets": ("ratio_total_decode", "cpu"), "flow": ("ranking", "cpu"),
              "train": ("rows", "device"), "pipeline": ("cores_needed", "cpu")}
"""Keys the JSON of each kind of ``mme bench`` has held since its first version, all of them: what tells a
benchmark's figures, an earlier mme's too, from another file at ``--json`` (a demo's results.json holds rows and
cpu, no device)."""


def is_bench_json(path: str | Path) -> bool:
    """Whether ``path`` holds the figures of an ``mme bench`` of any kind (:data:`BENCH_KEYS`)."""
    held = read_json_object(path, ())
    return held is not None and any(all(key in held for key in keys) for keys in BENCH_KEYS.values())


def check_bench_json(json_path: str | Path | None, read: Iterable[tuple[str, str | Path | None]] = ()) -> None:
    """Fail before a benchmark, not after it, where its ``--json`` (None: not given) cannot be written
    (:func:`check_output`), is a file it reads (``read``: :func:`keep_what_is_read`), or holds a file that is not a
    benchmark's figures (:func:`is_bench_json`), which the benches, without --overwrite, never replace; an empty one
    is refused (:func:`given_path`)."""
    if json_path is None:
        return
    out = check_output(json_path, "--json")
    keep_what_is_read(out, "--json", read, "figures")
    keep_others_file(out, "--json", "mme bench", is_bench_json, "a benchmark's figures")


def write_bench_json(json_path: str | Path, figures: dict) -> None:
    """A benchmark's ``figures`` at its ``--json`` (checked before it ran: :func:`check_bench_json`), with the code
    that measured them (:func:`code_version`)."""
    atomic_write_json(json_path, {**figures, **code_version()})


def in_turns(timers: Mapping[Any, Callable[[], Any]], rounds: int) -> dict[Any, list]:
    """What each of ``timers`` measured, round by round: the timers take turns within every round, so that a change
    in the machine's speed (a shared machine's other jobs) falls on all of them alike, and each round's ratios
    between them hold where the rounds differ (``mme bench data``'s worker counts; ``mme bench train``'s variants,
    matmul peaks and profiled steps; ``mme bench pipeline``'s dataset items)."""
    out: dict[Any, list] = {key: [] for key in timers}
    for _ in range(rounds):
        for key, timer in timers.items():
            out[key].append(timer())
    return out


def ratios_in_rounds(a: Iterable[float], b: Iterable[float]) -> list[float]:
    """Each round's own ratio of a figure ``a`` to ``b`` measured in the same rounds (:func:`in_turns`)."""
    return [x / y for x, y in zip(a, b, strict=True)]


def spread(values: Collection[float]) -> float:
    """How far a figure's rounds differ: the largest over the smallest, minus 1 (0 for one round)."""
    return max(values) / min(values) - 1


def round_range(values: Collection[float], digits: int = 2) -> str:
    """A figure's lowest and highest round (:func:`in_turns`), printed beside it, so that a reader sees how many of
    its digits the rounds bear out."""
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def _write_probe(folder: Path) -> None:
    """Make and remove an empty file in ``folder``: an OSError when files cannot be made there. Its name is
    unique: jobs sharing a PID (1 in containers) probe one folder at once."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    os.close(fd)
    os.unlink(probe)


def env_int(name: str, default: int, least: int = 0) -> int:
    """The whole number in environment variable ``name`` (``default`` when unset or empty), at least ``least``;
    anything else is a ConfigError naming the variable (torchrun sets RANK, WORLD_SIZE and the like)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < least:
        raise ConfigError(f"{name}={raw!r} in the environment: expected a whole number >= {least} (torchrun sets it; "
                          f"unset it to run as one process)")
    return value


CGROUP_FS = Path("/sys/fs/cgroup")
"""Where the cgroups are mounted: v2's at the top, v1's a folder per controller (``cpu``,
``cpu,cpuacct``)."""
PROC_CGROUP = Path("/proc/self/cgroup")
"""This process's cgroups: ``0::/path`` (v2), ``N:cpu,cpuacct:/path`` (v1)."""


def _cgroup_dirs(controller: str) -> list[Path]:
    """The folders of this process's cgroup for ``controller`` (v2's, v1's), then those of its ancestors up to the
    mount's top: what a container shows of its own at the top (its namespace) is read too."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return []
    dirs = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers:
            if controller not in controllers.split(","):
                continue
            mounts = [CGROUP_FS / controllers, *([CGROUP_FS / controller] if "," in controllers else [])]
        else:
            mounts = [CGROUP_FS]
        for mount in mounts:
            at = mount / path.strip().lstrip("/")
            dirs += [at, *[p for p in at.parents if p.is_relative_to(mount)]]
    return dirs


def _read_cgroup(folder: Path, name: str) -> str | None:
    try:
        return (folder / name).read_text().strip()
    except OSError:
        return None


def cpu_quota() -> float | None:
    """The CPUs the CPU quota of this process's cgroup allows, the least of its ancestors' too (docker --cpus, a
    Kubernetes limit: v2 ``cpu.max`` "200000 100000" is 2; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
    None without one ("max", -1)."""
    quotas = []
    for folder in _cgroup_dirs("cpu"):
        v2 = _read_cgroup(folder, "cpu.max")
        quota, period = (v2.split() + [""])[:2] if v2 else (_read_cgroup(folder, "cpu.cfs_quota_us"),
                                                             _read_cgroup(folder, "cpu.cfs_period_us"))
        try:
            quota, period = int(quota), int(period)
        except (TypeError, ValueError):  # no file, or "max"
            continue
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    return min(quotas, default=None)


def core_share() -> tuple[int, str]:
    """``(cores, how)``: :func:`usable_cores`, and what decided it where not only the affinity ("" then):
    the cgroup's CPU quota, or the ranks sharing it."""
    try:
        mask = os.sched_getaffinity(0)
    except AttributeError:  # no affinity outside Linux
        mask = set(range(os.cpu_count() or 1))
    ranks = env_int("LOCAL_WORLD_SIZE", 1, least=1)
    cores = max(1, len(mask) // ranks)
    quota = cpu_quota()
    of_quota = max(1, math.ceil(quota / ranks)) if quota is not None else cores
    if of_quota < cores:
        split = f", split between {ranks} ranks" if ranks > 1 else ""
        return of_quota, f" (the cgroup's CPU quota of {quota:g}{split})"
    return cores, ""


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity (a scheduler's share, a container's cpuset), capped by its
    cgroup's CPU quota (docker --cpus, a Kubernetes limit), split between the ranks torchrun starts on this node
    (LOCAL_WORLD_SIZE) (:func:`core_share`). The node's ranks are taken to share the mask (``taskset -c 0-7 torchrun
    --nproc_per_node 4``: 2 each); where each rank is bound to CPUs of its own (torchrun --numa-binding), which the
    mask cannot tell, set train.threads (synth's --workers)."""
    return core_share()[0]


def workers_option() -> str:
    """The loader workers' setting as the command running takes it (:func:`said_as`: ``--workers`` in ``mme demo``,
    ``mme embed``, ``mme probe``, ``mme bench data`` and ``mme bench pipeline``), for a warning of them: else the key,
    data.num_workers."""
    return said_as("data.num_workers") or "data.num_workers"


def workers_advice(workers: int, cores: int) -> str:
    """What suits a machine of ``cores`` usable cores where ``workers`` loader workers outnumber them (their setting
    as :func:`workers_option` names it), each then waiting for the CPU beside the process that reads from them: ""
    where they do not."""
    if workers <= cores:
        return ""
    return f"{workers_option()}={max(0, cores - 1)} suits this machine"


def check_srun_tasks(ranked: bool, shard: str | None = None) -> None:
    """A ConfigError where Slurm's srun started several tasks of this command (``srun -n 2 mme pretrain ...``:
    SLURM_STEP_NUM_TASKS, which srun alone sets, not a batch script) without torchrun's RANK and WORLD_SIZE, whose
    tasks would collide: each would run the whole command alone on the same files (a run of world size 1, the other
    tasks refused as its folder is in use). ``ranked``: the command shares its work over torchrun's ranks, which mme
    runs one process per rank under torchrun only (its docs' scaling.md), else it runs as one process (one task:
    ``srun -n 1``). ``shard``: the command's ``--shard k/n`` (mme extract's), given: each task its own share, as
    scaling.md advises per node, not refused."""
    tasks = env_int("SLURM_STEP_NUM_TASKS", 1, least=1)
    if tasks == 1 or shard is not None or {"RANK", "WORLD_SIZE"} & os.environ.keys():
        return
    started = f"srun started {tasks} tasks of this command (SLURM_STEP_NUM_TASKS={tasks})"
    if not ranked:
        raise ConfigError(f"{started}, which runs as one process: each would do all of it, on the same files. Start "
                          "one task (srun -n 1)")
    raise ConfigError(f"{started} without torchrun, which sets RANK and WORLD_SIZE: each would run all of it alone, "
                      "on the same files. Start one torchrun per node (srun --ntasks-per-node=1 torchrun "
                      "--nnodes=$SLURM_NNODES --nproc_per_node=GPUS --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 "
                      f"-m mme.cli ..., as {repository_doc('scaling.md')} does), or one task (srun -n 1)")


def launch_ranks() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun set them, ``(0, 1)`` without; anything but ``0 <= RANK < WORLD_SIZE``
    is a ConfigError naming the variables (a rank out of range would wait for its group forever)."""
    rank, world = env_int("RANK", 0), env_int("WORLD_SIZE", 1, least=1)
    if rank >= world:
        raise ConfigError(f"RANK={rank} in the environment is not below WORLD_SIZE={world} (torchrun sets both; "
                          f"unset them to run as one process)")
    return rank, world


def process_group_up() -> bool:
    """Whether torch.distributed's process group is up, without importing torch for the commands that need none.
    Taken before a job or command joins the group (under torchrun), it says whether the group is its caller's: the
    job leaves only a group it joined itself."""
    d = sys.modules.get("torch.distributed")
    return d is not None and d.is_available() and d.is_initialized()


FOLDER_LOCK = ".lock"


@dataclasses.dataclass(frozen=True)
class _HeldLock:
    file: Any  # the open .lock, holding the flock
    option: str  # the setting that chose the folder, for messages
    made: Path | None = None  # the outermost folder the lock made
    unmade_if_unused: bool = False  # whether ``made`` is removed at the unlock where it holds nothing else


_locked: dict[Path, _HeldLock] = {}  # folder -> the lock this process holds there


def lock_folder(folder: str | Path, option: str, unmade_if_unused: bool = False) -> bool:
    """Create ``folder`` and hold an ``fcntl`` lock on its ``.lock`` for this process (the OS drops it when the
    process dies, however it dies), recording the holder's PID and host there. False if this process holds it
    already. A ConfigError naming ``option`` (the setting that chose the folder) when it is not writable, or
    locked by another job (naming the holder). On a file system without ``flock`` (:data:`_NO_FLOCK`) the folder is
    used unlocked, with a warning, as :func:`atomic_path` writes its temporary files there. A spawned worker still
    starting, which runs its parent's unguarded script again, ends there (:func:`exit_if_script_rerun`).
    The folder is made and used as resolved, once the path is seen to name it (:func:`_not_reached`). Its ``.lock``
    has a known name, so a symbolic link there (another user's, to have this job write and re-permission the file it
    leads to) or another file than a regular one is a ConfigError naming it, never followed (:func:`open_regular`);
    the lock's mode is set only where it is this user's, under no other name (no hard link).
    ``unmade_if_unused``: the folders this call makes (``folder``, and its parents it makes) are removed again at the
    unlock where they hold nothing but the ``.lock`` (:func:`unlock_folder`): a job refused before it wrote anything
    there (a run's data checks, the demo's footage) leaves no folder behind; a folder that was there is never
    removed."""
    exit_if_script_rerun()
    path = Path(folder)  # as given, for messages
    if why := _not_reached(path):
        raise ConfigError(f"{option} {str(path)!r} is not a writable folder ({why})")
    try:
        whole = path.resolve()  # made and used as resolved, which the path as given then names
    except OSError as e:  # (a folder on the way that cannot be searched)
        raise ConfigError(f"{option} {str(path)!r} is not a writable folder ({why_unreadable(path, e)})") from e
    if whole in _locked:
        return False
    with _folders_made_or_removed(whole):
        held, replaced = _make_and_lock(path, whole, option, unmade_if_unused)
    f = held.file
    if replaced:  # an unused folder removed as this one locked its .lock (by the user, a job elsewhere): anew
        f.close()
        return lock_folder(folder, option, unmade_if_unused)
    _locked[whole] = held
    try:  # unbuffered: a write the disk refuses leaves nothing behind to fail again at the close
        write_all(f.fileno(), _holder_line().encode(), truncate=True)
    except OSError as e:  # (a full disk, a quota, a file-size limit): the folder is let go as this call took it,
        _locked[whole] = dataclasses.replace(held, unmade_if_unused=True)  # what it made removed, whatever asked
        said = file_size_limited(e, f.fileno()) or e
        unlock_folder(whole)
        free = f"; {mib_free(whole)}" if may_want_space(said) else ""
        raise ConfigError(f"{option} {str(path)!r}: its {FOLDER_LOCK} could not be written ({error_reason(said)}"
                          f"{free})") from e
    with contextlib.suppress(OSError):  # on the server of a network file system, where other nodes read the holder
        os.fsync(f.fileno())  # (distributed.check_folder_shared) while this process keeps the file open
    return True


def _holder_line() -> str:
    """What names this process as a holder of a lock, in its lock file: its PID and host, and since when."""
    return f"PID {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


LOCKS = ".locks"
"""The folder of locks inside a folder that several jobs use at once (a track cache): ``mme extract``'s shares'
(:func:`lock_folder` folders), its videos', and the readers' and writers' sides (:func:`_take_side`)."""
_READERS = "readers"
_WRITERS = "writers"
_reading: dict[Path, tuple[int, Any, Path]] = {}  # folder -> (its readers' lock, this process's record, its path)


def holder_of(lock: str | Path) -> str | None:
    """The holder line of the lock file ``lock`` (a :func:`lock_folder` ``.lock``, a :func:`hold_for_reading`
    record) where a live process holds it, else None (none there, none holding it, a file system without
    ``flock``): tried with a shared lock, let go at once (:func:`_try_flock`)."""
    fd = _lock_descriptor(Path(lock), make=False)
    if fd is None:
        return None
    try:
        return _try_flock(fd, fcntl.LOCK_SH)
    except OSError:
        return None
    finally:
        _close_unlocked(fd, os.getpid())


class NotRegularFile(OSError):
    """A file of a known name that mme opens to lock or write (a lock, a reader's record, a temporary file) that is
    not a regular file: a symbolic link, never followed (another user who may write the folder could plant one
    there to have mme's job truncate, write or re-permission the file it leads to), a FIFO, a device."""


def open_regular(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags)`` of a regular file, never through a symbolic link at ``path`` (``O_NOFOLLOW``) nor
    waiting on a FIFO (``O_NONBLOCK``, which a regular file ignores): a :class:`NotRegularFile` naming ``path`` where
    it is a link or another file than a regular one; an IsADirectoryError where it is a folder."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise NotRegularFile(errno.ELOOP, "is a symbolic link (not followed)", str(path)) from e
        if e.errno == errno.ENXIO:  # (a FIFO no one reads, opened to write; a socket; a device without its driver)
            raise NotRegularFile(errno.ENXIO, "is not a regular file", str(path)) from e
        raise
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise NotRegularFile(errno.EINVAL, "is not a regular file", str(path))
    return fd


def _open_lock(path: Path, make: bool = True, flags: int = os.O_RDONLY) -> int:
    """A descriptor of the lock file at ``path`` (:func:`open_regular`: a symbolic link there is refused, not
    followed), opened with ``flags`` (read-only by default: ``flock`` needs no more, and another user's lock file,
    0644, in a folder this user cannot write, locks as this user's; a :func:`lock_folder` ``.lock``, which holds its
    holder's line, for writing too): made (``O_EXCL``) where it is not there and
    ``make`` (its folder is the caller's to make: a FileNotFoundError where it is not there). Opened as it is first:
    an open that may create (O_CREAT) another user's file in a folder all users write, sticky (/tmp), is refused
    (EACCES) where ``fs.protected_regular`` is on, the systemd default. The OSError of opening it, or where it is not
    there, of making it."""
    try:
        return open_regular(path, flags)
    except FileNotFoundError:
        if not make:
            raise
    try:
        return open_regular(path, flags | os.O_CREAT | os.O_EXCL)
    except FileExistsError:  # made meanwhile by another job
        return open_regular(path, flags)


def _open_writable_lock(path: Path) -> int:
    """:func:`_open_lock` for reading and writing, or for reading alone where this user may not write it (another
    user's, 0644), which ``flock`` needs alone."""
    try:
        return _open_lock(path, flags=os.O_RDWR)
    except PermissionError:
        return _open_lock(path)


def _lock_descriptor(path: Path, make: bool = True) -> int | None:
    """:func:`_open_lock`'s descriptor; None where the lock file can be neither opened nor made."""
    try:
        return _open_lock(path, make)
    except OSError:
        return None


_NO_HOLDER_LINE = "another process"
"""A holder as :func:`_try_flock` names one whose lock file holds no line."""


def _try_flock(fd: int, how: int, tries_s: float = 0.0) -> str | None:
    """Try a ``flock`` of kind ``how`` (``fcntl.LOCK_SH``, ``LOCK_EX``) on the lock file ``fd``, not waiting (or
    again for up to ``tries_s`` seconds): None where it is had, else the holder line the file holds
    (:func:`_holder_line`, what :func:`lock_folder` writes), or :data:`_NO_HOLDER_LINE` where it holds none. Any other
    OSError (a file system without it: :data:`_NO_FLOCK`) is the caller's to judge."""
    until = time.monotonic() + tries_s
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            if time.monotonic() >= until:
                return os.pread(fd, 4096, 0).decode(errors="replace").strip() or _NO_HOLDER_LINE
            time.sleep(_LOCK_POLL_S)


def writers_of(folder: str | Path, named: Callable[[str], bool]) -> list[str]:
    """The holder lines of the jobs writing ``folder`` now: those holding a :func:`lock_folder` folder in its
    :data:`LOCKS` whose name ``named`` takes (``mme extract``'s shares of one list:
    :func:`mme.motion.extract.shares_named`, which alone reads a share's name)."""
    found = sorted(lock for lock in (Path(folder) / LOCKS).glob(f"*/{FOLDER_LOCK}") if named(lock.parent.name))
    return [held for lock in found if (held := holder_of(lock))]


def hold_for_reading(folder: str | Path, option: str) -> None:
    """Hold ``folder`` (a track cache a run reads, named by ``option``) for reading until :func:`unlock_folder`
    (the end of the job: :func:`held_folders` names it): the readers' side of the folder (:func:`_take_side`: a
    shared ``flock`` on its ``.locks/readers.lock``, which a job that replaces its files tries alone,
    :func:`replacing_read_files`), and a record of this process (PID, host, since) in ``.locks/readers/``, locked
    while held. A ConfigError naming ``option`` where such a job holds it now. A cache this user cannot write (another
    user's, shared) is held all the same where its lock files are there (every extraction makes them,
    :func:`make_side_locks`: they are opened read-only), unrecorded; a folder that is not there (its check refuses
    it) is read unlocked, and so, with a warning once per node and folder (:func:`_warn_read_unlocked`), is one
    whose lock file neither is there nor can be made, or one on a file system without ``flock``."""
    whole = Path(folder).resolve()
    if whole in _reading or not whole.is_dir():
        return
    shared, other, unlocked = _take_side(whole, _READERS, _WRITERS)
    if other:
        by = said_holders(_recorded(whole, _WRITERS))
        raise ConfigError(f"{option} {str(folder)!r} is being rewritten by an mme extract --overwrite ({by}), "
                          "whose tracks would change under this job; wait for it to end")
    if shared is None:
        _warn_read_unlocked(str(folder), option, unlocked)
        return
    _remove_records(whole, _WRITERS)
    _reading[whole] = (shared, *_record_self(whole, _READERS))


@functools.cache
def _warn_read_unlocked(folder: str, option: str, why: str) -> None:
    """Warn, once per node (its first rank), folder, option and reason, that :func:`hold_for_reading` reads
    ``folder`` unlocked, and ``why`` (:func:`_take_side`)."""
    from mme.train.distributed import rank_on_node

    if rank_on_node() == 0:
        log.warning("%s %r: this job cannot hold its readers' lock (%s), so an mme extract --overwrite there is not "
                    "refused while the job reads it: its tracks could change under the job, unsaid", option, folder,
                    why)


@contextlib.contextmanager
def replacing_read_files(folder: str | Path, option: str) -> Iterator[None]:
    """Hold the writers' side of ``folder`` (:func:`_take_side`: a shared ``flock`` on its ``.locks/writers.lock``)
    for the block, where a job replaces files that a run reads (``mme extract --overwrite``), not waiting: a
    ConfigError naming ``option`` and the jobs reading it (their records' holder lines, :func:`hold_for_reading`)
    where one does. Such jobs go on beside each other (the shares of one extraction, its ranks), each recorded as a
    reader is, in ``.locks/writers/``, for a run refused meanwhile to name. The records of readers gone are
    removed. On a file system without ``flock``, the block runs unlocked."""
    fd, other, _ = _take_side(Path(folder), _WRITERS, _READERS)
    if other:
        raise ConfigError(f"{option} {str(folder)!r} is read by a running job "
                          f"({said_holders(_recorded(Path(folder), _READERS))}), whose tracks "
                          f"would change under it; wait for it to end, or extract into another {option}")
    mine, record = _record_self(Path(folder), _WRITERS) if fd is not None else (None, None)
    try:
        _remove_records(Path(folder), _READERS)
        yield
    finally:
        if mine is not None:
            _unrecord(mine, record)
        if fd is not None:
            _close_unlocked(fd, os.getpid())


def _record_self(folder: Path, side: str) -> tuple[Any, Path]:
    """A record of this process (its holder line, :func:`_holder_line`) in ``folder/.locks/<side>/``, locked while
    this process holds ``side`` of ``folder`` (:func:`_take_side`), for a job of the other side refused meanwhile to
    name (:func:`_recorded`): the open record (None where it cannot be written: a cache this user cannot write, a
    full disk, a symbolic link or another file than a regular one at its name, not followed: :func:`open_regular`;
    held, unnamed) and its path."""
    records = folder / LOCKS / side
    record = records / f"{socket.gethostname()}-{os.getpid()}.lock"
    mine = None
    try:
        records.mkdir(parents=True, exist_ok=True)
        # (emptied once locked: this process's own record, held, is kept)
        mine = os.fdopen(open_regular(record, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a", **TEXT)
        fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write_all(mine.fileno(), _holder_line().encode(), truncate=True)
        return mine, record
    except OSError:
        if mine is not None:
            mine.close()
        return None, record


def _remove_records(folder: Path, side: str) -> None:
    """Remove the records of ``side`` of ``folder`` (:func:`_record_self`) where this process holds the other side:
    none of that side holds it now, so each is of a job gone (killed)."""
    for gone in (folder / LOCKS / side).glob("*.lock"):
        with contextlib.suppress(OSError):
            gone.unlink()


def _unrecord(mine: Any, record: Path) -> None:
    """Remove this process's record ``record`` (:func:`_record_self`), then let go of it (``mine``, the open file)."""
    with contextlib.suppress(OSError):
        record.unlink()
    mine.close()


def _recorded(folder: Path, side: str) -> list[str]:
    """The holder lines of the jobs holding ``side`` of ``folder`` now (their records, :func:`_record_self`), or
    'another process' where none is recorded (a job that could not write its record)."""
    records = sorted((folder / LOCKS / side).glob("*.lock"))
    return [held for record in records if (held := holder_of(record))] or [_NO_HOLDER_LINE]


_SIDE_TRIES_S = 1.0
"""How long a side's try of a lock held for an instant (:func:`_take_side`'s look at the other side) goes on."""

_LOOKED_AT_S = 0.2
"""How long :func:`lock_folder` tries again a ``.lock`` another holds (a refusal comes this much later): a
:func:`holder_of` look holds it for an instant (a run wording its advice looks at the shares of an extraction), and
a share starting then was refused as in use, naming the last job's holder line."""


def said_holders(lines: list[str]) -> str:
    """The jobs holding a lock, by their holder lines: the first, and how many more (one line however many ranks)."""
    return lines[0] + (f", and {len(lines) - 1} more" if len(lines) > 1 else "")


def make_side_locks(folder: str | Path) -> None:
    """Make the lock files of ``folder``'s two sides (:func:`_take_side`), as the job writing it (every ``mme
    extract``): a run of a user who cannot write the folder holds its side on them, opened read-only, and would
    otherwise read unlocked beside a later ``--overwrite``."""
    for side in (_READERS, _WRITERS):
        with contextlib.suppress(OSError):  # (a run that cannot hold its side then says why: _take_side)
            os.close(_open_side_lock(Path(folder), side))


def _open_side_lock(folder: Path, side: str) -> int:
    """:func:`_open_lock`'s descriptor of ``side``'s lock file in ``folder``'s :data:`LOCKS`, that folder made where
    it is not there (and only then: a run on a cache it cannot write makes nothing)."""
    lock = folder / LOCKS / f"{side}.lock"
    try:
        return _open_lock(lock)
    except FileNotFoundError:
        lock.parent.mkdir(parents=True, exist_ok=True)
    return _open_lock(lock)


def _take_side(folder: Path, side: str, other: str) -> tuple[int | None, bool, str]:
    """Take ``side`` of ``folder`` (its readers' or its writers'), excluding the ``other`` side, not each other:
    a shared ``flock`` on ``folder/.locks/<side>.lock`` held, then a look whether the other side holds
    ``<other>.lock`` (an exclusive ``flock`` tried, let go at once). Each side takes its own first, so of two of
    either side started at once one at least sees the other. Returns the descriptor held (None: held unlocked, or not
    held), whether the other side holds its lock now (nothing held then), and where held unlocked, why: its lock file
    can be neither opened nor made (:func:`_open_lock`'s error), or a file system without ``flock``. A lock that one
    of the other side's looks holds alone (for an instant: two readers' looks at the writers' lock at once, the ranks
    of one run) is tried again for up to :data:`_SIDE_TRIES_S`."""
    locks = folder / LOCKS
    try:
        fd = _open_side_lock(folder, side)
    except OSError as e:  # (a folder this user cannot write: its lock files, where there, are opened read-only)
        return None, False, f"its {LOCKS}/{side}.lock can be neither opened nor made: {error_reason(e)}"
    try:
        if _try_flock(fd, fcntl.LOCK_SH, _SIDE_TRIES_S) is None:
            if (look := _lock_descriptor(locks / f"{other}.lock")) is None:  # (none of the other side can hold it)
                return fd, False, ""
            try:
                if _try_flock(look, fcntl.LOCK_EX, _SIDE_TRIES_S) is None:
                    return fd, False, ""
            finally:
                _close_unlocked(look, os.getpid())
    except OSError as e:
        os.close(fd)
        if e.errno in _NO_FLOCK:
            return None, False, f"its file system takes no lock: {error_reason(e)}"
        raise
    _close_unlocked(fd, os.getpid())
    return None, True, ""


def _release_reading(whole: Path) -> None:
    """Let go of :func:`hold_for_reading`'s hold of ``whole``, its record removed."""
    shared, mine, record = _reading.pop(whole)
    if mine is not None:
        _unrecord(mine, record)
    _close_unlocked(shared, os.getpid())


def write_all(fd: int, data: bytes, truncate: bool = False) -> None:
    """Write ``data`` to the file ``fd`` (after emptying it, with ``truncate``), all of it: a short write (a file-size
    limit reached part-way) is written on, so its error is the one the OS gives."""
    if truncate:
        os.ftruncate(fd, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _make_and_lock(path: Path, whole: Path, option: str, unmade_if_unused: bool) -> tuple[_HeldLock, bool]:
    """:func:`lock_folder`'s step under :func:`_folders_made_or_removed`: make ``whole`` (``path`` resolved) and lock
    its ``.lock``; the lock held, and whether the ``.lock`` was replaced as it was locked (to be taken anew)."""
    lock = whole / FOLDER_LOCK
    try:
        f, made = _make_and_open_lock(whole)
    except NotRegularFile as e:
        raise ConfigError(f"{option} {str(path)!r}: {e.filename} {e.strerror}; remove it, or choose another "
                          f"{option}") from e
    except OSError as e:
        held = stat_or_none(lock)  # (None in a folder this user may not enter)
        if isinstance(e, PermissionError) and held is not None and stat.S_ISREG(held.st_mode) \
                and os.access(whole, os.W_OK):
            raise ConfigError(f"{option} {str(path)!r}: its {FOLDER_LOCK} belongs to another user (uid "
                              f"{held.st_uid}) and cannot be opened for writing; make it writable for this "
                              f"user (chmod a+w), or remove it when no job runs there") from e
        raise ConfigError(f"{option} {str(path)!r} is not a writable folder ({why_unreadable(lock, e)})") from e
    st = os.fstat(f.fileno())  # (opened without following a link; a second name of it, which another user who may
    # write the folder could make, is left as it is)
    if st.st_uid == os.geteuid() and st.st_nlink == 1:  # a folder shared for writing shares its lock alike
        with contextlib.suppress(OSError):  # a file system without modes (a mounted share) keeps its own
            os.fchmod(f.fileno(), 0o644 | (whole.stat().st_mode & 0o022))
    try:
        holder = _try_flock(f.fileno(), fcntl.LOCK_EX, _LOOKED_AT_S)  # (a look of holder_of's holds it an instant)
    except OSError as e:
        if e.errno not in _NO_FLOCK:
            f.close()
            raise ConfigError(f"{option} {str(path)!r}: its {FOLDER_LOCK} cannot be locked ({error_reason(e)})") from e
        holder = None
        log.warning("%s %r: its file system takes no lock (%s), so the folder is used unlocked: a second job on "
                    "it would not be refused; run one job at a time there", option, str(path), error_reason(e))
    if holder is not None:
        f.close()
        raise ConfigError(f"{option} {str(path)!r} is in use by another job ({holder}); wait for it to end "
                          f"or choose another {option}")
    held = _HeldLock(f, option, made, unmade_if_unused)
    return held, _lock_replaced(whole, held)


def broken_link(link: str | Path, nothing: str = "", loop: str = "") -> str:
    """What the link ``link``, which leads to nothing that is there, is, with where it leads: links that lead back
    to each other (a loop: ELOOP), "a link to 'loopb', which leads back to itself through links" followed by
    ``loop``; else nothing there (an unmounted share, a file moved), "a link to '/mnt/gone', which leads to
    nothing" followed by ``nothing``."""
    target = os.readlink(link)
    try:
        os.stat(link)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"a link to {target!r}, which leads back to itself through links{loop}"
    return f"a link to {target!r}, which leads to nothing{nothing}"


def _link_unreached(link: Path) -> str:
    """Why the link ``link``, which leads to nothing that is there, leads nowhere (:func:`broken_link`), with what
    to do: point links in a loop at a folder, mount or make what one to nothing leads to."""
    return f"{link} is {broken_link(link, nothing=': mount or make what it leads to', loop=': point it at a folder')}"


def _not_reached(path: Path) -> str:
    """Why the folder ``path`` resolves to, once made, would not be what ``path`` names, or ''. A link on the way that
    leads to nothing (an unmounted share): made where it leads, the run would go to the local disk, under the mount
    point. A folder before a ``..`` that is not there (``new/../mine``): the path names nothing until ``new`` is made,
    so every check that reads the folder by it (another run's checkpoints, ``--resume auto``) would find nothing.
    A folder on the way that cannot be searched: its error's reason."""
    try:
        for i in range(1, len(path.parts) + 1):
            part = Path(*path.parts[:i])
            if part.is_symlink() and not part.exists():
                return _link_unreached(part)
            if path.parts[i:i + 1] == ("..",) and not part.is_dir():
                return f"{part} is not {'a folder' if part.exists() else 'there'}, and its '..' goes back from it"
    except OSError as e:
        return why_unreadable(path, e)
    return ""


_ORDERING_WAIT_S = 5.0  # a step holds it for milliseconds; a job must not wait forever behind a stopped one
_ordering_gone_without: set[Path] = set()  # the ordering locks this process went on without once


@contextlib.contextmanager
def _folders_made_or_removed(folder: Path, wait: bool = True) -> Iterator[None]:
    """This user's lock, on this host, for making, taking and removing locked folders on ``folder``'s file system
    (a file in the temporary folder, removed at the block's end), held for the block: a job's making of a new
    folder, up to the lock on its ``.lock``, and a refused job's removal of what it made (:func:`_remove_unused`)
    are one step each to the other jobs. Else two jobs on one new nested folder, both refused at their start, left
    it with its ``.lock`` (1 pair in about 130 of a stress run): one took the other's folder, made but not yet locked
    (the maker then refused as "in use") or half removed, for one that was there, and each removed only what it
    made. A best effort: where the lock cannot be had (a temporary folder that takes no files; a file of that name
    that is not this user's own: another user's, a link) or is held past :data:`_ORDERING_WAIT_S` (a job of this
    user stopped with Ctrl-Z in its step, any user holding the file, whose name is known), the block runs without
    it, as jobs of other users or hosts do; a lock gone without once is not waited for again by this process (a
    refused job's removal right after its start). Without ``wait``, only a lock free at once is taken (a look at a
    folder that is there), and one held is no lock gone without."""
    with contextlib.ExitStack() as held:
        with contextlib.suppress(OSError):
            device = os.stat(_nearest_existing(folder)).st_dev
            path = Path(tempfile.gettempdir()) / f"mme-folders-{os.geteuid()}-{device}.lock"
            wait_s = _ORDERING_WAIT_S if wait and path not in _ordering_gone_without else 0
            if not held.enter_context(exclusive_lock(path, remove=True, wait_s=wait_s, own_only=True)) and wait:
                _ordering_gone_without.add(path)
        yield


_MAKE_TRIES = 5  # makes of a folder that other jobs, refused at their start, remove again as fast


def _make_and_open_lock(folder: Path) -> tuple[Any, Path | None]:
    """Make ``folder`` (resolved) and open its ``.lock`` (:func:`_make_folder`) for reading and appending, as it is
    first (:func:`_open_lock`: another user's that all may write, in a folder all users write, sticky, is taken; a
    link there is refused), with the outermost folder this call made (None: none)."""
    made: list[Path] = []
    fd = _make_folder(folder, made, lambda: _open_lock(folder / FOLDER_LOCK, flags=os.O_RDWR | os.O_APPEND))
    return os.fdopen(fd, "a+", **TEXT), min(made, key=lambda p: len(p.parts)) if made else None


def _make_folder(folder: Path, made: list[Path], then: Callable[[], Any] = lambda: None) -> Any:
    """Make ``folder``, see that it takes files (:func:`_write_probe`: the ``.lock`` left by an earlier job opens in
    a folder that no longer does) and return ``then()`` (the open of its ``.lock``), adding to ``made`` each folder
    this call made: by its own mkdir, not judged from a look before it, which took a folder that another job made,
    then removed (refused at its start) before this one made it again, for that job's, so it was left behind (with
    its ``.lock``). A folder removed again before ``then`` returns, by another job refused at its start that
    :func:`_folders_made_or_removed` does not order with this one (another user's, another host's), is made again, up
    to :data:`_MAKE_TRIES` times: a valid job started beside it was refused as "not a writable folder (No such file or
    directory)", or its output "cannot be written (No such file or directory)" (:func:`check_output`)."""
    tries_left = _MAKE_TRIES
    while True:
        tries_left -= 1
        try:
            for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):  # outermost first
                with contextlib.suppress(FileExistsError):  # (another job's, made meanwhile)
                    missing.mkdir()
                    made.append(missing)
            _write_probe(folder)
            return then()
        except FileNotFoundError:
            if not tries_left or folder.exists():
                raise


def held_folders() -> set[Path]:
    """The folders this process holds (:func:`lock_folder`) or reads (:func:`hold_for_reading`), resolved."""
    return set(_locked) | set(_reading)


def unlock_folder(folder: str | Path | None = None) -> None:
    """Unlock ``folder`` (every folder this process holds when None; one it reads, :func:`hold_for_reading`, is let go
    alike). Unlocked before it is closed: a child forked
    meanwhile shares the open file, and closing it alone would leave the lock held while the child lived (a fork
    that passes over Python's fork hooks keeps its copy: :func:`_after_fork_in_child`)."""
    for path in [Path(folder).resolve()] if folder is not None else [*_locked, *_reading]:
        if path in _reading:
            _release_reading(path)
        held = _locked.pop(path, None)
        if held is not None:
            if held.made is not None and held.unmade_if_unused:
                _remove_unused(path, held)
            with contextlib.suppress(OSError):  # (a file system without flock: never locked)
                fcntl.flock(held.file, fcntl.LOCK_UN)
            held.file.close()


def _remove_unused(folder: Path, held: _HeldLock) -> None:
    """Remove ``folder`` and the folders above it up to ``held.made`` (those its :func:`lock_folder` made) where
    they hold nothing but its ``.lock`` (which goes first, while locked: a job that opened it meanwhile locks anew)."""
    with _folders_made_or_removed(folder):
        if _lock_replaced(folder, held) or {p.name for p in folder.iterdir()} != {FOLDER_LOCK}:
            return
        chain = (folder, *folder.parents)
        made = chain[:chain.index(held.made) + 1]
        with contextlib.suppress(OSError):
            (folder / FOLDER_LOCK).unlink()
            for path in made:
                path.rmdir()  # (an OSError where another file came meanwhile: kept, with what holds it)


def _after_fork_in_child() -> None:
    """In a forked child (a loader worker, any fork of the process: :func:`os.register_at_fork`), close its copies
    of the ``.lock`` files its parent holds, leaving the locks to the parent: an ``flock`` belongs to the open file,
    which the child shares, so a worker that outlived a killed parent kept the folder locked until it ended, and
    ``--resume auto`` at once was refused. Closed, not unlocked, which would release the parent's lock too. (The
    briefer locks of :func:`exclusive_lock` and :func:`atomic_path` are released by the parent at the block's end,
    for the child's copies too: :func:`_close_unlocked`.) The process's own thread locks that another thread of the
    parent held at the fork are made anew (:func:`held_at_fork`); what they guard is kept as the child found it,
    which is harmless: the global generator as a thread inside :func:`caller_generator_kept` or a training job drew it
    (so a child forked while another thread trains trains too; a loader
    worker seeds its own, and a child's generator is a copy of the parent's at the fork anyway), matplotlib's
    settings and the warning filters as a :func:`literal_text` block set them (those the child's own blocks draw
    with), the default dtype and the count of :func:`torch_as_mme` blocks as the parent's (a job's child runs as
    the job)."""
    global _DEFAULT_DTYPE, _GENERATOR_SET_ASIDE, _LITERAL_TEXT
    for held in _locked.values():
        held.file.close()
    _locked.clear()
    for shared, mine, _ in _reading.values():  # (a reader's holds alike)
        os.close(shared)
        if mine is not None:
            mine.close()
    _reading.clear()
    if held_at_fork(_GENERATOR_SET_ASIDE):  # (by a load or a training job of another thread: not the child's)
        _GENERATOR_SET_ASIDE = threading.RLock()
        _generator_job["held"] = False
    if held_at_fork(_LITERAL_TEXT):
        _LITERAL_TEXT = threading.RLock()
    if held_at_fork(_DEFAULT_DTYPE):
        _DEFAULT_DTYPE = threading.RLock()


def held_at_fork(lock: threading.RLock) -> bool:
    """In a forked child (an ``after_in_child`` hook of :func:`os.register_at_fork`): whether ``lock``, a thread lock
    the child copied from its parent, was held at the fork by another thread than the one that forked. No such thread
    exists in the child, so its copy stays held for good, and the child's first use of it waits forever (a loader
    worker's first read of a file whose frame index a thread of the parent was changing): the caller makes it anew,
    and judges what it guards, which the other thread may have left half changed (the indices of a file are dropped:
    :func:`mme.data.pyav_reader._indices_after_fork`). A lock the forking thread held is its own in the child too,
    held as it was."""
    if not lock.acquire(blocking=False):
        return True
    lock.release()
    return False


os.register_at_fork(after_in_child=_after_fork_in_child)


def folder_replaced(folder: str | Path) -> bool:
    """Whether ``folder``, locked by this process (:func:`lock_folder`), was removed or replaced since: its
    ``.lock`` is gone or another file (device and inode) than the one this process holds; the lock holds only while
    its file is there, so a second job may have made the folder anew and locked it. False for a folder this process
    does not lock (another rank's, a library caller's). One ``stat``: cheap before every write."""
    held = _held_lock(folder)
    return held is not None and _lock_replaced(folder, held)


def _held_lock(folder: str | Path) -> _HeldLock | None:
    """The lock this process holds on ``folder``, None where it holds none (nothing resolved where it holds none)."""
    return _locked.get(Path(folder).resolve()) if _locked else None


def _lock_replaced(folder: str | Path, held: _HeldLock) -> bool:
    """Whether ``folder``'s ``.lock`` is gone or another file than ``held``, the lock this process holds there."""
    try:
        now = os.stat(Path(folder) / FOLDER_LOCK)
    except OSError:
        return True
    return not os.path.samestat(now, os.fstat(held.file.fileno()))


def _refuse_replaced(folder: str | Path, held: _HeldLock) -> None:
    """A :class:`~mme.errors.FolderReplaced` naming ``folder`` where its lock ``held`` was replaced since."""
    if _lock_replaced(folder, held):
        raise FolderReplaced(f"{held.option} {folder} was removed or replaced while this run used it; nothing written "
                             f"there (what this run wrote there before is kept only where the folder still holds it)")


def check_folder_held(folder: str | Path) -> None:
    """Before a write or removal by path in ``folder``: a :class:`~mme.errors.FolderReplaced` when it was removed or
    replaced since this process locked it (:func:`folder_replaced`), so that nothing of this job is written into
    another's folder, nor any of its files removed."""
    if (held := _held_lock(folder)) is not None:
        _refuse_replaced(folder, held)


def check_path_held(path: str | Path) -> None:
    """:func:`check_folder_held` of each folder this process locked that is ``path`` or holds it: what every write
    and removal by path goes through (:func:`atomic_path`, :func:`writing`, :func:`removing`). Nothing is looked up
    where the process locks no folder."""
    if not _locked:
        return
    where = Path(path).resolve()
    for folder, held in list(_locked.items()):
        if folder == where or folder in where.parents:
            _refuse_replaced(folder, held)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Convolutions in full fp32 on CUDA: cuDNN runs fp32 convolutions in TF32 by default (10-bit mantissas; torch's
    matmuls it does not), so an fp32 convolution would not match a matmul of the same numbers. A decorator too."""
    import torch

    b = torch.backends.cudnn
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(b.flags(enabled=b.enabled, benchmark=b.benchmark, benchmark_limit=b.benchmark_limit,
                                        deterministic=b.deterministic, allow_tf32=False))
        except RuntimeError:  # torch >= 2.9 where a caller gave its per-operator setting: the old switch is refused
            before = b.conv.fp32_precision
            b.conv.fp32_precision = "ieee"
            stack.callback(setattr, b.conv, "fp32_precision", before)
        yield


_LITERAL_TEXT = threading.RLock()
"""Held by a :func:`literal_text` block: the settings it changes are the process's (matplotlib's rcParams, the
warnings filters), and a block that began in one thread and ended in another's restored the other's changes."""


@contextlib.contextmanager
def literal_text() -> Iterator[None]:
    """Matplotlib text made and drawn inside the block without LaTeX (a decorator too): a user's matplotlibrc with
    ``text.usetex`` hands all text to LaTeX (without LaTeX installed, every picture failed). Matplotlib's own maths
    text (where a user's ``axes.formatter.use_mathtext`` asks for it) is drawn as maths, whatever the user's
    ``text.parse_math``; a user's text (a name) goes through :func:`literal`.
    A character its fonts lack (DejaVu has no CJK, and matplotlib ships no font that has) is drawn as a box without
    matplotlib's warning of each glyph, which named a line of mme as the fault. One block at a time in the process
    (:data:`_LITERAL_TEXT`).
    A matplotlib that cannot be imported (not installed, or built against another numpy, or a module its figures
    import in the block; any other error of its import) is a RuntimeError, as a failed drawing is: the callers that
    go on without their picture catch that. Its first import reads the environment's ``MPLBACKEND`` as matplotlib
    would, less an invalid one (:func:`_import_matplotlib`)."""
    def unimportable(e: ImportError) -> RuntimeError:
        return RuntimeError(f"matplotlib cannot be imported ({error_reason(e)}); "
                            f"{import_advice('matplotlib', error=e)}")

    with _LITERAL_TEXT:
        try:
            matplotlib = _import_matplotlib()
        except ImportError as e:
            raise unimportable(e) from e
        except Exception as e:  # its rcParams' checks (a ValueError), ...: not mended by installing it
            raise RuntimeError(f"matplotlib cannot be imported ({error_reason(e)})") from e
        with matplotlib.rc_context({"text.parse_math": True, "text.usetex": False}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from (current )?font", UserWarning)
            try:
                yield
            except ImportError as e:  # its figure modules, imported in the block, load more (fontTools, its _image)
                raise unimportable(e) from e


def _import_matplotlib():
    """matplotlib, its first import made with ``MPLBACKEND`` set aside (put back after) and the backend it names
    then given to matplotlib where it is valid here: mme draws on a ``Figure`` and ``FigureCanvasAgg`` of its own,
    never through the backend, and one the environment names that is not installed here
    (``module://matplotlib_inline.backend_inline``, which a notebook's kernel exports to its ``!`` commands) made the
    import a ValueError. Such a one leaves pyplot matplotlib's default; a valid one is pyplot's, as without mme (it
    reads ``MPLBACKEND`` at its first import alone)."""
    if "matplotlib" in sys.modules:
        import matplotlib

        return matplotlib
    backend = os.environ.pop("MPLBACKEND", None)
    try:
        import matplotlib
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    if backend:
        with contextlib.suppress(ValueError):  # (not a backend of this environment)
            matplotlib.rcParams["backend"] = backend
    return matplotlib


def literal(text: str) -> str:
    """``text`` for matplotlib to draw as it is spelt: a name (a video's, a class's, a run folder's) is the user's,
    and matplotlib reads the text between two unescaped '$' as maths (``deal_$5_and_$10.mp4`` was a parse error,
    ``cost $5 vs $6.mp4`` drawn as 'cost 5vs6.mp4'); an escaped '$' is drawn as '$'. A name Python decoded with
    surrogate escapes (bytes that are not UTF-8), which matplotlib's fonts refuse with a TypeError, is drawn with
    U+FFFD for each such byte."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("$", r"\$")


def log_scale_y(ax) -> None:
    """A log-scale y axis of a loss picture, its ticks labelled in plain text (0.1, 1, 10; 0.6 between), not in
    matplotlib's maths text (10^{-1}), whose parsing took half the drawing of a run's loss picture (0.2 s of CPU at a
    run's end, 0.4 s in a new process)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):  # the ticks matplotlib labels on a log axis, each as %g spells it (0.99, 1e-05)
        def __call__(self, x, pos=None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain(10))
    ax.yaxis.set_minor_formatter(Plain(10, labelOnlyBase=False))


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


@contextlib.contextmanager
def opencv_settings(threads: int | None = None, ipp: bool | None = None) -> Iterator[None]:
    """OpenCV's thread count and its IPP switch (None: unchanged) for the ``with`` block, the previous ones restored
    after it. IPP is switched per thread, and its kernels round floats otherwise than OpenCV's own (DIS flow,
    ``warpPerspective``): work whose bytes must not depend on what its process set before sets it here, and leaves
    the caller's settings as it found them."""
    import cv2

    before = cv2.getNumThreads(), cv2.ipp.useIPP()
    if threads is not None:
        cv2.setNumThreads(threads)
    if ipp is not None:
        cv2.ipp.setUseIPP(ipp)
    try:
        yield
    finally:
        if threads is not None:
            cv2.setNumThreads(before[0])
        if ipp is not None:
            cv2.ipp.setUseIPP(before[1])


CPU_FEATURES = {"AVX2": ("_is_avx2_supported", "_is_cpu_support_avx2"),
                "AVX-512": ("_is_avx512_supported", "_is_cpu_support_avx512"),
                "AVX512-BF16": ("_is_avx512_bf16_supported",),
                "AMX": ("_is_amx_tile_supported", "_is_cpu_support_amx_tile"),
                "BF16": ()}
"""The vector instructions mme's choices depend on, each with torch's probes for it (newer name first); ``BF16``,
an Arm CPU's bf16 instructions (FEAT_BF16: Graviton3/4, Neoverse V1/V2), has none: torch's probes are x86's, it is
read from ``/proc/cpuinfo`` (:func:`cpu_features`)."""
ARM_MACHINES = ("aarch64", "arm64")
"""``platform.machine()`` of an Arm CPU."""


def _proc_cpuinfo() -> str:
    """The text of ``/proc/cpuinfo`` ('' where it cannot be read: not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.cache
def cpu_features() -> tuple[str, ...]:
    """Which of :data:`CPU_FEATURES` this CPU has, by torch's cpuinfo (on every OS), on an Arm CPU by the ``Features``
    line of ``/proc/cpuinfo`` (``bf16``; Linux only): what the precision, the attention path, x264's options and
    :func:`cpu_name` depend on. torch renamed its probes across releases; a feature whose probe this torch lacks reads
    as absent."""
    import torch

    if platform.machine().lower() in ARM_MACHINES:  # torch's probes are x86's: all False here
        flags = next((line.split(":", 1)[1].split() for line in _proc_cpuinfo().splitlines()
                      if line.startswith("Features") and ":" in line), [])
        return ("BF16",) if "bf16" in flags else ()

    def has(probes: tuple[str, ...]) -> bool:
        for name in probes:
            probe = getattr(torch.cpu, name, None) or getattr(getattr(torch._C, "_cpu", None), name, None)
            if probe is not None:
                return bool(probe())
        return False

    return tuple(feature for feature, probes in CPU_FEATURES.items() if has(probes))


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``) and :func:`cpu_features`, quoted with every figure a run or benchmark
    prints: "AMD EPYC" alone names both an AVX2-only and an AVX-512-BF16 machine of ours."""
    name = platform.processor() or platform.machine()
    for line in _proc_cpuinfo().splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    features = cpu_features()
    return f"{name} ({', '.join(features)})" if features else name


BF16_FEATURES = ("AVX512-BF16", "AMX", "BF16")
"""The :data:`CPU_FEATURES` that give a CPU native bf16 matmuls."""
FP16_CAPABILITIES = ("avx512_fp16", "amx_fp16")
"""torch's names (``torch.cpu.get_capabilities``) of the x86 instructions that give a CPU native fp16 matmuls
(AVX512-FP16: Sapphire Rapids on; AMX-FP16: Granite Rapids)."""


def cpu_fp16_native() -> bool | None:
    """Whether this CPU computes fp16 natively (:data:`FP16_CAPABILITIES`), by torch's probes; None where they do not
    tell: an Arm CPU (torch's capabilities name its fp16 arithmetic, ``fp16_arith``, which mme does not take for fast
    fp16 matmuls: unmeasured), a torch without ``cpu.get_capabilities`` (its ``_is_amx_fp16_supported`` alone, which
    knows nothing of AVX512-FP16, answers where it says yes)."""
    import torch

    if platform.machine().lower() in ARM_MACHINES:
        return None
    capabilities = getattr(torch.cpu, "get_capabilities", lambda: {})()
    if all(name in capabilities for name in FP16_CAPABILITIES):
        return any(capabilities[name] for name in FP16_CAPABILITIES)
    amx_fp16 = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    return True if amx_fp16 is not None and amx_fp16() else None


def _cpu_parts(name: str) -> tuple[str, set[str] | None]:
    """``(model, features)`` of a :func:`cpu_name`: the features it lists after the model, None where it lists none."""
    model, paren, features = name.rpartition(" (")
    listed = set(features[:-1].split(", ")) if paren and features.endswith(")") else None
    return (model, listed) if listed is not None and listed <= CPU_FEATURES.keys() else (name, None)


def cpu_model(name: str) -> str:
    """The model a :func:`cpu_name` names, its features left out: what an mme before they were listed recorded."""
    return _cpu_parts(name)[0]


def same_device(recorded: str | None, name: str, native_bf16: bool | None = None) -> bool:
    """Whether ``recorded``, the device name a run or record of it recorded (a GPU's, or :func:`cpu_name`), names the
    device ``name`` does: the same name, or one an mme before :func:`cpu_name` listed the CPU's features recorded, the
    CPU's model alone, where ``name`` is that model and its features and ``native_bf16``, what the record says of
    its CPU (whether it had native bf16: :func:`mme.train.precision.bf16_said` of its precision's reason), agrees with
    them ("Intel(R) Xeon(R) Processor" and "Intel(R) Xeon(R) Processor (AVX2, AVX-512, AVX512-BF16, AMX)" where its
    auto timed bf16). The model alone names CPUs of other features (an AVX2-only and an AMX "AMD EPYC"): a record
    that says nothing of them (a precision asked for) is of another device."""
    if recorded == name:
        return True
    model, features = _cpu_parts(name)
    return recorded == model and features is not None and native_bf16 is not None and \
        native_bf16 == bool(features & set(BF16_FEATURES))


MKL_CBWR_STRICT = 0x10000
"""The bit of MKL's strict mode in its conditional-numerical-reproducibility settings (``mkl_cbwr_get``)."""


MKL_BRANCHES = ("AUTO", "COMPATIBLE", "SSE2", "SSE3", "SSSE3", "SSE4_1", "SSE4_2", "AVX", "AVX2", "AVX512",
                "AVX512_E1", "AVX512_MIC", "AVX512_MIC_E1")
"""The code branches ``MKL_CBWR`` may name (MKL's documented values)."""


def mkl_takes_strict(value: str) -> bool:
    """Whether MKL takes ``value`` of ``MKL_CBWR`` as its strict mode: a branch of :data:`MKL_BRANCHES` then
    ``,STRICT``, in capitals (spaces after the comma, which MKL skips, and nothing else: ``auto,strict``,
    ``STRICT`` and `` AUTO,STRICT`` leave MKL in its default mode)."""
    branch, comma, mode = value.partition(",")
    return branch in MKL_BRANCHES and bool(comma) and mode.lstrip(" ") == "STRICT"


def mkl_strict() -> bool | None:
    """Whether MKL, torch's CPU BLAS, runs in its strict reproducible mode, as MKL itself says (``mkl_cbwr_get``
    of all its settings: MKL reads ``MKL_CBWR`` once, at its first call, so the variable alone does not tell);
    None where this torch has no MKL to ask (ARM, builds without MKL, another OS's library names)."""
    import torch

    try:
        get = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    return bool(get(-1) & MKL_CBWR_STRICT)  # -1: MKL_CBWR_ALL


def mkl_mode() -> str | None:
    """The mode MKL runs in, ``"strict"`` or ``"default"`` (:func:`mkl_strict`); None where there is no MKL to ask.
    A run resumed in the other mode goes on the same up to float rounding, not bitwise."""
    strict = mkl_strict()
    return None if strict is None else "strict" if strict else "default"


@functools.cache
def warn_if_mkl_not_strict() -> None:
    """Warn, once a process, where ``MKL_CBWR`` asks for MKL's strict mode (a ``STRICT`` among its values) but MKL
    runs outside it (:func:`mkl_strict`), saying why: where the value is one MKL takes (:func:`mkl_takes_strict`),
    MKL read the variable at its first call, a torch computation before ``import mme`` set it, or before the
    user's script did; else MKL did not take the value (it is case-sensitive and wants a branch: ``AUTO,STRICT``,
    not ``STRICT``). Its results may then follow the alignment of its buffers, and a run not replay bitwise in
    another process. Nothing where the user chose another mode, or where there is no MKL."""
    import mme

    asked = os.environ.get("MKL_CBWR", "")
    if "STRICT" not in (value.strip().upper() for value in asked.split(",")) or mkl_strict() is not False:
        return
    if asked == mme.MKL_CBWR_SET:
        reason = "it read MKL_CBWR at its first call, a torch computation before import mme"
        remedy = "Import mme before any torch computation, or set MKL_CBWR in the environment"
    elif mkl_takes_strict(asked):  # set in the process after a computation (in the environment, MKL would take it)
        reason = "it read MKL_CBWR at its first call, a torch computation before the variable was set"
        remedy = "Set MKL_CBWR in the environment, or leave it unset and import mme before any torch computation"
    else:
        reason = ("MKL did not take that value (MKL reads it once, at its first call, and takes it in capitals with "
                  "a branch before STRICT, as AUTO,STRICT)")
        remedy = "Set MKL_CBWR=AUTO,STRICT in the environment, or leave it unset for import mme to set"
    log.warning("MKL (torch's CPU BLAS) is not in the strict reproducible mode MKL_CBWR=%s asks for: %s; its results "
                "may vary with memory alignment, and a resumed run not replay bitwise. %s", asked, reason, remedy)


def git_sha() -> str | None:
    """The commit of the source tree this package runs from, ``-dirty`` after it where its files differ from it
    (code of no commit); None where the package is not a tracked part of a git checkout (an installed copy, even
    inside another project's repository). Read without writing to the checkout (each rank of a run reads it). Where
    a checkout holds it but git cannot look (a checkout of another user's, which git refuses as of dubious
    ownership; no git on PATH), git's error is warned of once, and the commit is read from ``.git`` itself,
    ``-unchecked`` after it: whether its files differ from it is not known (before: None, an installed copy's)."""
    here = Path(__file__).parent

    def git(*args: str) -> tuple[str | None, str]:
        try:
            out = subprocess.run(["git", "--no-optional-locks", *args], cwd=here, capture_output=True, text=True,
                                 timeout=10)  # (status takes .git/index.lock to refresh it: a user's commit then fails)
        except FileNotFoundError:
            return None, "no git on PATH"
        except (OSError, subprocess.SubprocessError) as e:
            return None, error_reason(e)
        return (out.stdout.strip(), "") if out.returncode == 0 else (None, out.stderr.strip() if out.returncode > 1
                                                                      else "")  # (1: not a file of the checkout)

    tracked, refused = git("ls-files", "--error-unmatch", Path(__file__).name)
    if tracked is None or not (sha := git("rev-parse", "HEAD")[0]):
        return _unchecked_commit(here, refused) if refused else None
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", ".")[0] else "")


def _unchecked_commit(here: Path, refused: str) -> str | None:
    """:func:`git_sha` where git could not look (``refused``: its error): the commit ``HEAD`` names in the ``.git``
    of the checkout ``here`` is the ``src/mme`` of (a checkout's folder, or a worktree's file naming its folder),
    ``-unchecked`` after it, with a warning, once a process, naming git's error; None where ``here`` is not a
    checkout's ``src/mme`` (an installed copy, or one vendored into another project's repository, whose commit is
    that project's), or its ``.git`` cannot be read."""
    checkout = here.parent.parent
    if here.parts[-2:] != ("src", "mme") or not (checkout / ".git").exists():
        return None
    try:
        gitdir = checkout / ".git"
        if gitdir.is_file():  # (a worktree's: 'gitdir: PATH')
            gitdir = checkout / gitdir.read_text().removeprefix("gitdir:").strip()
        common = gitdir / (gitdir / "commondir").read_text().strip() if (gitdir / "commondir").is_file() else gitdir
        head = (gitdir / "HEAD").read_text().strip()
        ref = head.removeprefix("ref:").strip()
        if ref == head:  # (a detached HEAD: the commit itself)
            sha = head
        elif (common / ref).is_file():
            sha = (common / ref).read_text().strip()
        else:
            packed = (common / "packed-refs").read_text().splitlines()
            sha = next(line.split()[0] for line in packed if line.endswith(f" {ref}"))
    except (OSError, StopIteration):
        return None
    _warn_git_refused(str(checkout), refused.splitlines()[0])
    return f"{sha}-unchecked"


@functools.cache
def _warn_git_refused(checkout: str, refused: str) -> None:
    log.warning("the checkout mme runs from, %s, was not read with git (%s): its commit is recorded as .git names "
                "it, '-unchecked' after it (whether its files differ from it is not known)", checkout, refused)


def code_version() -> dict[str, str | None]:
    """The code that made a result, which every file of results records (a run's ``run.json`` and checkpoints, test
    and probe reports, features' sidecars, benchmarks' figures, mme demo's ``results.json``): mme's version and the
    commit it runs from (:func:`git_sha`: None for an installed copy)."""
    return {"mme": __version__, "git": git_sha()}


MALLOC_KEEP = {"M_MMAP_THRESHOLD": (-3, 32 << 20), "M_TRIM_THRESHOLD": (-1, 128 << 20)}
"""glibc ``mallopt`` settings of :func:`keep_freed_memory`: (parameter number, bytes)."""


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory of freed blocks up to 32 MB for reuse, instead of mapping every such
    block afresh and handing it back on free; returns whether the settings took (False off glibc, and when the
    environment sets malloc's thresholds itself: ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
    ``GLIBC_TUNABLES``).

    A data worker allocates and frees the same few frame-sized arrays for every item (decoded frames, resized
    frames, the clip). By default glibc maps blocks above a threshold (128 KB, raised to the largest
    block freed, at most 32 MB) and returns the top of the heap to the system once more than twice that is free:
    every item then faults its arrays' pages in again, one page fault per 4 KB. Measured on a 2-core AMD EPYC
    (16 x 224² clips, one thread, pixel and cached MME items in turns): about 4,800 page faults per item and 79
    ms of CPU per pixel item; with these settings 3 faults and 53 ms. Memory a process has freed stays with it,
    up to its own peak use."""
    if any(os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(param, value) == 1 for param, value in MALLOC_KEEP.values()])
