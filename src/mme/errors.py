"""User-facing errors: the message names the thing (file, key, checkpoint) and the reason."""

import errno
import importlib.util
import signal


class MMEError(Exception):
    """Base class of errors reported to the user without a traceback.

    A DataLoader worker's error reaches the main process re-created from a text that buries the message under
    "Caught ... in DataLoader worker process N" and the worker's traceback; the message is recovered from it, so
    the user sees the same one line as without workers."""

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught ") \
                and "\nOriginal Traceback" in args[0]:
            text = args[0].rstrip()
            start = text.rfind("\nmme.errors.")
            args = (text[text.index(": ", start) + 2:],) if start >= 0 else args
        super().__init__(*args)


class VideoError(MMEError):
    """A video cannot be opened or decoded (missing, empty, truncated, not a video, too short, frames
    too small to train on)."""

    detail = ""
    """What ``mme.data.video_reader.video_error`` gives after the path and reason, for a message that quotes it."""


class FrameCountChanged(VideoError):
    """A read found that a video has another number of frames than the count its indices were drawn from (the
    packets', until a decode proves it otherwise), whether or not they are in range of the new one: the caller
    draws again from the corrected ``num_frames`` of its reader, as a process that knew the count draws
    (:func:`mme.data.video.with_true_count`)."""


class LaterCacheFile(VideoError):
    """A track cache file made by a later mme (a tracker revision or a file format above this mme's): that mme reads
    it; this one reads none of it and makes it again only where told to (``mme extract --overwrite``), as its older
    tracks would take the later ones' place. ``meta``: its header, by which a moved dataset's file is still found
    (:func:`mme.motion.cache.moved_cache_file`)."""

    meta: dict


class OutOfMemory(MMEError):
    """An allocation on the data side failed: FFmpeg's as a file was read (ENOMEM), or a data loader worker's as it
    made a batch (a MemoryError there, torch's allocator's error). The machine's memory ran short, the data is not at
    fault: no VideoError, none counted among a run's failed videos. Raised where a batch is fetched with what to lower,
    or the limit of this process's memory that explains it (:func:`mme.data.dataset._batches`, in this process or a
    worker); in a training run one of the data side's stops
    (:data:`mme.train.loop.DATA_STOPS`), the model and optimizer as the step before left them: every rank stops with
    it and the steps are kept, as for a worker killed. Not a MemoryError, which a training step's handler takes for
    the step's own (the model's) and keeps no step of; an MMEError, said in one line by a command."""


class CheckpointError(MMEError):
    """A checkpoint cannot be read or does not fit the model."""


class CheckpointUnreadable(CheckpointError):
    """A checkpoint file cannot be opened (permissions, an I/O error): its contents may be whole, so a resumption
    does not pass it over for an older one."""


class DataError(MMEError):
    """A list file line, a dataset, or a cache file is invalid."""


class TooManyFailures(DataError):
    """More of a list's videos failed than ``data.max_failure_fraction`` lets a run skip."""


class NoReadableVideo(TooManyFailures):
    """An item none of whose tries read (its video, then replacements): on a list of over a thousand videos the stop
    for videos that cannot be read (a storage outage, a wrong ``data.root``) before the fraction is reached."""


class ConfigError(MMEError, ValueError):
    """A configuration key or value is invalid."""


class UnknownConfigKeys(ConfigError):
    """A config mapping has keys its section lacks: a typo, or a file (a checkpoint's config) of a later mme."""


class ClipNotDivisible(ConfigError):
    """A model's clip side or length (``field``: img_size, num_frames, of ``value``) that its patch or tubelet does
    not divide, ``<key> <value> <reason>`` (``key``: how what gave it names the field, by default ``model.<field>``;
    ``image_size`` of a Hugging Face config); a reader that took the value from a command's flag names it so
    (``read_checkpoint``'s ``given_as``: ``--num-frames 5``)."""

    def __init__(self, field: str, value: int, reason: str, key: str | None = None):
        self.field, self.value, self.reason, self.key = field, value, reason, key or f"model.{field}"
        super().__init__(f"{self.key} {value} {reason}")


class NoSpaceError(MMEError):
    """A file could not be written for lack of space (a full disk, a quota, a file-size limit): every later write
    would fail alike, so the job stops (:func:`mme.utils.space_for`)."""


class FolderReplaced(MMEError):
    """The folder a job locked (:func:`mme.utils.lock_folder`) was removed or replaced while it ran (``rm -rf``, then
    another job made one of that name and locked it): the job writes nothing more there, where it would mix its
    files with the other's and delete the other's in its rotation."""


class NonFiniteLossError(MMEError):
    """Too many non-finite steps (loss or gradient) in a row: the run diverged; or every step of a run skipped, at
    least one for a non-finite loss or gradient: its weights were never updated."""


class ProcessLost(MMEError):
    """A process the command depends on ended under it (another rank of a torchrun job, a data loader worker):
    killed (the out-of-memory killer's SIGKILL) or crashed, or, a loader worker, lost a batch it could not hand over
    (shared memory full) or could not start (shared memory without room for its queues). The CLI says what the
    command keeps of what it wrote, and what continues it."""


NOTHING_KEPT = "nothing is kept: run it again"
"""The end of the line of a command stopped mid-way that keeps nothing (``mme bench``: its figures are written at its
end, and ``mme bench pipeline`` removes its run's folder on the way out)."""

WRITTEN_KEPT = (ProcessLost, OutOfMemory)
"""The stops of a command mid-way that are no fault of its input nor of what it wrote (a process it needed lost, the
machine's memory short): the CLI's line ends with what the command keeps of what it wrote (``mme bench``: nothing),
and what continues it."""


class UnguardedScript(MMEError):
    """A script started worker processes from its top level: each spawned worker imports the script, so it ran
    the script again. ``instead``: how to run without those workers."""

    def __init__(self, instead: str = "where the call takes workers, pass workers=1") -> None:
        super().__init__('worker processes ran the calling script again (spawned workers import it): call mme in a '
                         f'script under `if __name__ == "__main__":`, or, {instead}')


class Interrupted(KeyboardInterrupt):
    """A run stopped on a signal after saving what it had done; ``exit_code`` = 128 + the signal number.
    ``finished``: the result of a run stopped on its last step (it did all its steps), for a caller that keeps it
    before it stops too (the demo's row); else None. Every signal ends the command so, with 130 or 143: a script's
    next command must not run after the user's Ctrl-C. A KeyboardInterrupt, not an :class:`MMEError`, so that a
    caller's ``except Exception`` (a notebook's sweep going on past a failed run) does not take it, as it takes
    neither the KeyboardInterrupt of a second Ctrl-C nor that of a Ctrl-C outside training; the CLI says its message
    as an error's, with its ``exit_code``."""

    def __init__(self, message: str, exit_code: int, finished: object = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.finished = finished

    @property
    def signal(self) -> signal.Signals:
        """The signal that stopped the run."""
        return signal.Signals(self.exit_code - 128)


def installed(module: str) -> bool:
    """Whether the package of ``module`` is there to import, for what a failed import of it asks of the user: ``pip
    install`` where it is not, a reinstall where it is and fails to load (a missing system library, a build against
    another numpy), which ``pip install`` would leave as it is."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # (a parent package that fails, a module without its spec)
        return False


def import_advice(module: str, pip: str | None = None, error: BaseException | None = None) -> str:
    """What a failed import of ``module`` asks of the user (:func:`installed`): ``pip install <pip>`` (``pip``: its
    package's name, else the module's), or where it is there and fails to load, a reinstall; where its ``error`` is
    an allocation a memory limit explains (a library the loader could not map), that limit raised
    (:func:`_memory_limit`; the caller says the error itself)."""
    if error is not None and (limited := _memory_limit(error)) is not None:
        return "{}: {}".format(*limited)
    pip = pip or module
    return f"reinstall {pip} (it is installed but fails to load)" if installed(module) else f"pip install {pip}"


_MAP_FAILED = ("failed to map segment", "cannot map zero-fill pages", "Cannot allocate memory")
"""What the dynamic loader says of a library it could not map into memory (an ImportError's message)."""


OUT_OF_MEMORY = ("DefaultCPUAllocator: can't allocate memory", "out of memory", "_STATUS_ALLOC_FAILED")
"""What the RuntimeErrors of a failed allocation say, which have no class of their own: torch's CPU allocator's; a
GPU's as older torch and the paths outside its caching allocator raise it (``CUDA out of memory``, ``CUDA error: out
of memory`` of a kernel's launch, ``HIP out of memory``, ``MPS backend out of memory``); a GPU library's that cannot
allocate its workspace (``CUBLAS_STATUS_ALLOC_FAILED``, cuDNN's, cuSOLVER's, cuSPARSE's)."""


def out_of_memory(kind: type, said: str) -> bool:
    """Whether an error of class ``kind`` saying ``said`` is an allocation that failed: a MemoryError (numpy's
    ``_ArrayMemoryError`` among them), torch's OutOfMemoryError, or a RuntimeError that says so
    (:data:`OUT_OF_MEMORY`). By class and message, as a loader worker's error is told in this process."""
    import torch  # (loaded already wherever such an error is raised)

    return issubclass(kind, (MemoryError, torch.OutOfMemoryError)) or any(s in said for s in OUT_OF_MEMORY)


def first_line(error: BaseException, otherwise: str | None = None) -> str:
    """The first non-empty line of ``error``'s message, stripped; else ``otherwise`` (None: the error's type name)."""
    return next((ln.strip() for ln in str(error).splitlines() if ln.strip()),
                type(error).__name__ if otherwise is None else otherwise)


def memory_limit_said(error: BaseException) -> str | None:
    """Where ``error`` is a failed allocation (MemoryError, an OSError of ENOMEM, an ImportError of a library the
    loader could not map: :data:`_MAP_FAILED`) and this process runs under a limit of its memory that explains it (its
    address space, ``ulimit -v``, or its data segment, ``ulimit -d``), one line saying so and what to do: torch and its
    libraries reserve gigabytes of address space they never touch, so a limit that leaves room for the data may still
    leave none for them. None for another error, or without such a limit (a traceback-worthy error stays one)."""
    limited = _memory_limit(error)
    return None if limited is None else said_under(limited, first_line(error))


def said_under(limited: tuple[str, str], failed: str) -> str:
    """The line of an allocation ``failed`` under a limit of this process's memory, ``(the limit, its remedy)``
    (:func:`memory_limit`)."""
    return f"{limited[0]}: {failed}; {limited[1]}"


def allocation_refused(error: BaseException | None) -> bool:
    """Whether ``error`` is the system's refusal of an allocation, errno ENOMEM (an OSError; FFmpeg's, which PyAV
    raises as its ``av.error.MemoryError``), which says nothing of the file being read. A MemoryError without it may
    be a file's own (a corrupt header's huge size), as a track cache file's read takes it."""
    return isinstance(error, (OSError, MemoryError)) and getattr(error, "errno", None) == errno.ENOMEM


def _memory_limit(error: BaseException) -> tuple[str, str] | None:
    """``(the limit, its remedy)`` where ``error`` is a failed allocation that a limit of this process's memory
    explains (:func:`memory_limit_said`), else None."""
    failed = isinstance(error, MemoryError) or allocation_refused(error) \
        or isinstance(error, (ImportError, OSError, RuntimeError)) and any(said in str(error) for said in _MAP_FAILED)
    # (OSError: ctypes' load of a library, as torch loads its CUDA ones; RuntimeError: torch's "unable to mmap ...:
    # Cannot allocate memory (12)" of a loader worker's batch in shared memory)
    return memory_limit() if failed else None


def memory_limit() -> tuple[str, str] | None:
    """``(the limit, its remedy)`` where this process (and so each worker it starts) runs under a limit of its memory,
    its address space (``ulimit -v``) or its data segment (``ulimit -d``), which then explains an allocation that
    failed; else None."""
    import resource

    for limit, flag, name in ((resource.RLIMIT_AS, "-v", "address space"), (resource.RLIMIT_DATA, "-d", "data")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            return (f"out of memory under this process's {name} limit, {soft / 2**20:.0f} MiB (ulimit {flag} "
                    f"{soft // 1024})", f"raise it (ulimit {flag} unlimited: torch and its libraries reserve "
                    "gigabytes of address space they do not use; a scheduler's --mem limits what a job uses instead)")
    return None
