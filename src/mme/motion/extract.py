"""``mme extract``: precompute the track cache of a list of videos (mme.motion.cache has the format).

    mme extract train.txt --root /data/k400 --out cache/k400 --length 6 --workers 8
    torchrun --nproc_per_node=4 -m mme.cli extract train.txt --root R --out C      # one share per rank
    mme extract train.txt --root R --out C --shard 3/16                             # one of 16 machines

Each file is written atomically, so an interrupted run resumes by skipping the files that are already there
and complete (same settings, readable). An interrupted ``--overwrite`` run again keeps the files it made, by the
marker it keeps under ``--out`` until a run makes every video (:func:`_overwrite_made`), and makes the others
again, those made before it began among them. Videos that fail are listed with their reason in
``<out>/failed-<list>-<hash>[-<k>-of-<n>].json`` (:func:`share_name`; a run of the whole list removes those of
another number of shares); the others are unaffected. List lines that are not ``path [label]`` are skipped, as
training skips them, and listed in share 0's report as ``<list>:<line>``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mme.data import MIN_SHORT_SIDE
from mme.data.lists import SHOWN, BadLine, ListEntry, check_root, left_out, read_list, resolve
from mme.data.transforms import resize
from mme.data.video import decode_on, open_video, require_backend, whole_frame_refusal, with_true_count
from mme.data.video_reader import ORIENTATIONS, video_error
from mme.errors import ConfigError, LaterCacheFile, MMEError, NoSpaceError, OutOfMemory, VideoError
from mme.motion.cache import (
    RESIZE,
    SHORT_SIDE,
    V1_SUFFIX,
    cache_file,
    cache_meta,
    listed_files,
    made_elsewhere,
    made_settings,
    moved_cache_file,
    quantise,
    said_made_from,
    same_frames,
    same_source,
    source_identity,
    stale,
    start_homs,
    track_writer,
)
from mme.motion.flow import DEFAULT_FLOW, METHODS, STEP_FLOWS, require_flow
from mme.motion.tracks import TRACKER, default_max_disp, track, track_frames, track_in_step
from mme.train.distributed import (
    all_gather_objects,
    get_world_size,
    init_distributed,
    is_main,
    raise_together,
    rank_on_node,
    wait_for_ranks,
)
from mme.train.precision import choose_device
from mme.utils import (
    LOCKS,
    TEXT,
    Tally,
    absolute_path,
    atomic_write_text,
    check_folder_held,
    check_output,
    counted,
    exclusive_lock,
    in_workers,
    launch_ranks,
    lock_folder,
    make_side_locks,
    open_regular,
    plural,
    progress_bar,
    remove_stale_temps,
    removing,
    replacing_read_files,
    space_for,
    stat_identity,
    stat_or_none,
    torch_as_mme,
    unlock_folder,
    write_all,
    writing,
)

log = logging.getLogger("mme.extract")


@dataclass(frozen=True)
class ExtractOptions:
    """What the cache holds: tracks of ``length`` steps from every raw frame, on the full frame resized to
    ``short_side``, seeds every ``seed_stride`` working px."""

    length: int = 6
    short_side: int = SHORT_SIDE
    seed_stride: int = 8
    flow: str = DEFAULT_FLOW
    compensate: bool = False
    max_disp: float | None = None
    chunk: int = 64
    backend: str = "pyav"
    orientation: str = "coded"
    """The frames tracked: 'coded' or turned as 'display'ed (``data.orientation``, which training must match)."""
    device: str = "cpu"
    """Where a flow of the training step (torch-lk) runs, batched over a chunk's frame pairs: auto, cpu, cuda,
    cuda:1.., checked as training's ``train.device`` (:func:`~mme.train.precision.choose_device`; cuda: a torchrun
    rank's own GPU, as in training, :func:`run`); the other flows, and torch-lk with compensation, run one pair at a
    time on the CPU."""

    def __post_init__(self):
        for name, value, least in (("--length", self.length, 1), ("--short-side", self.short_side, MIN_SHORT_SIDE),
                                   ("--seed-stride", self.seed_stride, 1), ("chunk", self.chunk, 1)):
            if value < least:
                raise ConfigError(f"{name} must be at least {least}, got {value}")
        if self.max_disp is not None and not (self.max_disp > 0 and math.isfinite(self.max_disp)):
            raise ConfigError(f"--max-disp must be a positive number of pixels, got {self.max_disp}")
        if self.orientation not in ORIENTATIONS:
            raise ConfigError(f"--orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.flow not in METHODS:
            raise ConfigError(f"--flow must be one of {list(METHODS)}, got {self.flow!r}")
        require_flow(self.flow, "--flow")
        choose_device(self.device, option="--device")  # checked here, resolved by run (a bare cuda: the rank's GPU)

    @property
    def torch_device(self) -> torch.device:
        """``device`` as torch's: one device named (run's resolved one) is taken as checked at construction, so a
        job's videos do not check it again; 'auto' or a bare 'cuda' (a caller other than run) is resolved."""
        if self.device != "auto" and ((named := torch.device(self.device)).type != "cuda" or named.index is not None):
            return named
        return choose_device(self.device, option="--device")

    @property
    def batched(self) -> bool:
        """Whether the tracks are made batched on ``device`` (:func:`mme.motion.tracks.track_in_step`)."""
        return self.flow in STEP_FLOWS and not self.compensate


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) of the full frame resized so that its short side is ``short_side``."""
    k = short_side / min(width, height)
    return max(1, round(width * k)), max(1, round(height * k))


def extract_video(path: str, out_path: str | Path, opts: ExtractOptions) -> None:
    """Track every raw start frame of one video and write its cache file (raises MMEError on a bad video). A file
    that has fewer frames than packets, found by a read, is tracked again with the count it has. Frames past the last
    read as the last, as online: a video of one frame has one start, whose tracks stand still."""
    with_true_count(lambda: _extract_video(path, out_path, opts))


KEPT = "the finished cache files are kept, and the same command continues once there is space"
"""What a full disk leaves, said as an extraction stops for it."""


def _extract_video(path: str, out_path: str | Path, opts: ExtractOptions) -> None:
    made_of = source_identity(path) if os.path.isfile(path) else {}  # (missing, a name too long: open_video says so)
    with open_video(path, opts.backend, threads=1, orientation=opts.orientation) as reader, space_for(out_path, KEPT):
        n, (W0, H0), turn = reader.num_frames, reader.size, reader.turn
        if why := whole_frame_refusal(W0, H0):  # before a working frame of it is made
            raise video_error(path, "unreadable", why)
        w, h = working_size(W0, H0, opts.short_side)
        bound = default_max_disp(h, w) if opts.max_disp is None else opts.max_disp
        meta = dict(src_size=[W0, H0], work_size=[w, h], seed_stride=opts.seed_stride, length=opts.length,
                    flow=opts.flow, compensate=opts.compensate, max_disp=bound, num_frames=n,
                    video=absolute_path(path), orientation=opts.orientation, turn=list(turn), backend=opts.backend,
                    resize=RESIZE, tracker=TRACKER, **made_of)
        pair_homs = np.tile(np.eye(3, dtype=np.float32), (n - 1, 1, 1)) if opts.compensate else None
        flows: dict = {}
        dev = opts.torch_device
        grid = (h // opts.seed_stride, w // opts.seed_stride)
        with track_writer(out_path, meta, n, grid, opts.compensate) as write:  # chunk by chunk: not held whole
            for a in range(0, n, opts.chunk):
                b = min(n, a + opts.chunk)  # starts a .. b-1
                ids = np.arange(a, min(n, b + opts.length))
                frames = reader.read(ids, each=lambda f: resize(f, (w, h)))  # held at the working size
                if opts.batched:  # every start's frame after each step, as a position in `frames` (clamped at the end)
                    at = track_frames(ids.tolist(), list(range(a, b)), opts.length, 1, n - 1, path) - a
                    d, v, _ = track_in_step(torch.from_numpy(frames).to(dev), torch.from_numpy(at).to(dev),
                                            opts.seed_stride, bound)
                    write(quantise(d.cpu().numpy()), v.cpu().numpy())
                    continue
                tr = track(frames, ids, np.arange(a, b), opts.length, 1, opts.seed_stride, opts.flow,
                           opts.compensate, bound, source=path, flow_cache=flows, clamp=True)
                homs = None
                if pair_homs is not None:
                    for (first, _), (_, hom) in flows.items():  # every pair these starts' tracks took
                        if hom is not None:
                            pair_homs[first] = hom
                    homs = start_homs(pair_homs, opts.length, np.arange(a, b))
                write(quantise(tr.disp), tr.valid, homs)
                for pair in [p for p in flows if p[0] < b]:  # the next chunk starts at b: drop older pairs
                    del flows[pair]


def other_settings(out_path: Path, opts: ExtractOptions, video: str | None = None) -> dict | None:
    """``{setting: (the file's, this run's)}`` where a readable cache at ``out_path`` was made with settings other
    than ``opts`` (an empty dict: complete with these settings, so a resumed run skips it); None where there is
    no readable cache there (its header, offsets and length checked: a damaged one is warned about; a damaged record
    is found by the training read that needs it, which names the file), one made from another version of the file
    ``video`` (its fingerprint differs), or one whose tracks this mme would make otherwise
    (:func:`mme.motion.cache.stale`: frames enlarged by INTER_AREA, another tracker): these are made again. A cache
    made from another file than ``video`` (another path, other content) differs in ``video``: another dataset's video
    of the same name, also when that file is gone now (a volume not mounted, which a moved dataset with this video
    changed cannot be told from); one a later mme made (:func:`~mme.motion.cache.made_later`) in ``later``: (why,
    None). The file is looked up by its open alone (a resumed run's look has looked at it already)."""
    try:
        meta = cache_meta(out_path)
        have = made_settings(meta)
    except LaterCacheFile as e:  # (never made again unless told: the later tracks would be lost)
        return {"later": (f"its cache file {out_path} was {e.detail}", None)}
    except (MMEError, KeyError, TypeError, ValueError) as e:
        if isinstance(e.__cause__, FileNotFoundError | NotADirectoryError):  # (no cache there)
            return None
        why = e.__cause__ if isinstance(e, MMEError) and e.__cause__ is not None else e  # (not the advice to re-run)
        log.warning("extract: %s: not a valid mme track cache (%s: %s); made again", out_path, type(why).__name__, why)
        return None
    if video is not None and os.path.isfile(video) and not same_source(meta, video):
        if (made_from := made_elsewhere(meta, video)) is not None:
            return {"video": (made_from, absolute_path(video))}
        log.info("extract: %s was made from another version of %s: made again", out_path, video)
        return None
    if (why := stale(meta, video)) is not None:
        log.info("extract: %s: %s: made again", out_path, why)
        return None
    work_w, work_h = meta["work_size"]
    bound = default_max_disp(work_h, work_w) if opts.max_disp is None else opts.max_disp
    have["max_disp"] = round(have["max_disp"], 4)
    want = dict(short_side=opts.short_side, seed_stride=opts.seed_stride, flow=opts.flow, compensate=opts.compensate,
                orientation=opts.orientation, max_disp=round(bound, 4))
    differ = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
    if have["length"] < opts.length:
        differ["length"] = (have["length"], opts.length)
    if not same_frames(have["backend"], opts.backend):
        differ["backend"] = (have["backend"], opts.backend)
    return differ


class _Job(NamedTuple):
    """One video to extract: its file, its path as the list gives it (``listed``), its cache file ``target`` under
    ``out`` (:func:`~mme.motion.cache.cache_file`) and the settings; ``recheck``: whether to look at ``target`` again
    (the file a run reads; no job writes a version 1 file beside it, which the start judged) just before the video
    is made (not with ``--overwrite``), where it is another file than the start looked at
    (``seen``, its device and inode; None: none there), so that a file the start read (and warned about) is not read
    again. ``wait``: whether to wait for the lock of its making where another job holds it (else it is left for later:
    :func:`_held_last`)."""

    video: str
    listed: str
    out: str
    target: Path
    opts: ExtractOptions
    recheck: bool
    seen: tuple[int, int] | None
    wait: bool = True

    @property
    def lock(self) -> Path:
        """The lock of :attr:`target`'s making, in ``out``'s ``.locks`` (beside the file, a video that fails before
        its file is made would leave its folders made, empty: a wrong --root the list's whole tree)."""
        which = hashlib.blake2b(os.fsencode(self.target.relative_to(self.out)), digest_size=12).hexdigest()
        return Path(self.out) / LOCKS / "videos" / f"{which}.lock"


DIED = "a worker process died extracting it"
"""What a report of failures says, after the video's path, of one whose worker died (:func:`_died`)."""


class _Done(NamedTuple):
    """What one job did (:func:`_work`). ``target``: the file made (a video listed twice, by a relative and an
    absolute path, has a job of each file); ``made``: None where not tried, its lock held by another job and
    ``job.wait`` False; ``lasting``: where it failed of itself, a VideoError of the file there (unreadable,
    undecodable, a frame over 8:1), the file's :func:`~mme.motion.cache.source_identity`, else None (a run fails
    that file again, where one that was missing, whose worker died, or that met another error, may pass)."""

    video: str
    target: Path
    error: str | None
    made: bool | None
    lasting: dict | None = None


def _died(job: _Job, how: str) -> _Done:
    return _Done(job.video, job.target, f"{job.video}: {DIED} ({how})", False)


def _work(job: _Job) -> _Done:
    """Make one video's cache file. Another job on the same ``--out`` (another list sharing videos) may
    have made the file since this one's start: one made with these settings is skipped, one made otherwise fails the
    video with the start's refusal. The look and the making hold the file's lock (:func:`mme.utils.exclusive_lock`),
    so that a job that starts the video while another makes it waits, then finds it made."""
    target = job.target
    try:
        with exclusive_lock(job.lock, remove=True, wait_s=None if job.wait else 0) as held:
            if not held:
                return _Done(job.video, target, None, None)
            if (job.recheck and (st := stat_or_none(target)) is not None and stat_identity(st) != job.seen
                    and stat.S_ISREG(st.st_mode)):
                differ = other_settings(target, job.opts, job.video)
                if differ == {}:
                    return _Done(job.video, target, None, False)
                if differ:
                    return _Done(job.video, target, _refusal(job.out, {job.listed: differ}), False)
            extract_video(job.video, target, job.opts)
        return _Done(job.video, target, None, True)
    except (NoSpaceError, OutOfMemory):  # not this video's fault: the job stops
        raise
    except VideoError as e:
        lasting = None
        with contextlib.suppress(OSError, VideoError):  # (missing: it may be back; no regular file: none to record)
            lasting = source_identity(job.video)
        return _Done(job.video, target, str(e), False, lasting)
    except MMEError as e:
        return _Done(job.video, target, str(e), False)
    except Exception as e:  # one bad video must not end a long extraction: report it and go on
        return _Done(job.video, target, f"{type(e).__name__}: {e}", False)


def _held_last(jobs: list[_Job], workers: int) -> Iterator[_Done]:
    """:func:`_work` of each job, in ``workers``, as they end: a video whose making another job holds (another list's
    extraction sharing it, a job stopped with Ctrl-Z) is left until the others are done, then tried again and, still
    held, waited for, said once at info level with the lock held, so that the others are made meanwhile (one worker
    waited for it first, without end and silently, where its holder was stopped); one whose holder is done by then
    is made without a word."""
    later = yield from _free_first(jobs, workers)
    if later:
        later = yield from _free_first(later, workers)
    if later:
        more = f" and {counted(len(later) - 1, 'more video')}" if len(later) > 1 else ""
        log.info("extract: waiting for %s%s, being made by another job (it holds %s)", later[0].video, more,
                 later[0].lock)
        yield from in_workers(_work, later, workers, _died, attrgetter("video"))


def _free_first(jobs: list[_Job], workers: int) -> Generator[_Done, None, list[_Job]]:
    """:func:`_work` of each of ``jobs`` whose lock no other job holds, in ``workers``, as they end; returns the
    others (:func:`_try`)."""
    held = []
    for job, result in in_workers(_try, jobs, workers, _died_trying, attrgetter("video")):
        if result is None:
            held.append(job)
        else:
            yield result
    return held


def _try(job: _Job) -> tuple[_Job, _Done | None]:
    """``job`` and its :func:`_work` without waiting for its lock: None where another job holds it."""
    result = _work(job._replace(wait=False))
    return job, None if result.made is None else result


def _died_trying(job: _Job, how: str) -> tuple[_Job, _Done]:
    return job, _died(job, how)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'k/n' (0-based k) -> (k, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like k/n (e.g. 3/16), got {text!r}") from None
    if not 0 <= k < n:
        raise ConfigError(f"--shard {text}: need 0 <= k < n")
    return k, n


SHARE = "-{part}-of-{parts}"
"""What :func:`share_name` adds for one share of a list shared in several; no character of it is special in a regular
expression, so that :func:`shares_named` reads it back from the same text."""


def share_name(list_file: str, part: int, parts: int) -> str:
    """What names one share of a list's extraction under ``--out``, its lock and its report of failures: the list's
    stem and a hash of its real path, as its bytes on disk whatever the locale (lists of one name in other folders
    differ), then ``-<part>-of-<parts>`` (:data:`SHARE`) where the list is shared."""
    which = hashlib.blake2b(os.fsencode(os.path.realpath(list_file)), digest_size=6).hexdigest()
    return f"{Path(list_file).stem}-{which}" + (SHARE.format(part=part, parts=parts) if parts > 1 else "")


def shares_named(name: str, list_file: str, prefix: str = "", suffix: str = "") -> int | None:
    """The number of shares of ``list_file``'s extraction in which ``name`` is one share's :func:`share_name` between
    ``prefix`` and ``suffix`` (1 for the unshared list's); None where it names none of its shares."""
    share = SHARE.format(part=r"\d+", parts=r"(\d+)")
    named = re.fullmatch(re.escape(prefix + share_name(list_file, 0, 1)) + f"(?:{share})?" + re.escape(suffix), name)
    return None if named is None else int(named[1] or 1)


def reported_failures(out: str | Path) -> dict[str, tuple[str, str, dict]]:
    """The videos the reports of failures under ``out`` name as failed of themselves (``failed-*.json``: every list's
    and share's, as :func:`_run_share` writes them; one that cannot be read is passed over): those of its ``lasting``,
    a VideoError of the file there, which a run fails again, each by its real path then (whatever the folder and the
    spelling of ``--root`` it was extracted from and is read with) with its reason, the report and the file's
    :func:`~mme.motion.cache.source_identity` then; a video named by two reports, with the newer's. Those failed
    otherwise (missing then, its worker died, another error: a run may pass them) are not among them. A report of an
    earlier mme, which records no ``lasting``, has its videos judged now (:func:`_lasting_now`)."""
    reports = []
    for report in Path(out).glob("failed-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            told, written = json.loads(report.read_text()), report.stat().st_mtime_ns
            failed = dict(told["failed"])
            kept = dict(told["lasting"]) if "lasting" in told else _lasting_now(failed, written)
            reports.append((written, {real: (str(failed[lasting["video"]]), str(report), lasting)
                                      for real, lasting in kept.items() if "video" in lasting}))
    return {real: said for _, named in sorted(reports, key=lambda r: r[0]) for real, said in named.items()}


def _lasting_now(failed: dict[str, str], written_ns: int) -> dict[str, dict]:
    """The ``lasting`` of a report of failures written (at ``written_ns``) by an mme that recorded none: each video
    of its ``failed`` that it says failed of itself (its path, then a reason that is neither missing nor its worker
    dying: :data:`DIED`) and whose file is there, unchanged since (its inode last changed before the report:
    ``st_ctime``, which a copy, ``mv`` or ``utime`` that keeps an old mtime does not set back), with its
    :func:`~mme.motion.cache.source_identity` now, by its real path from this working folder (the report names it
    as the extraction's ``--root`` made it). Otherwise the mme extract advised for it would fail it again before its
    report said so."""
    lasting = {}
    for video, why in failed.items():
        passing = (f"{video}: missing", f"{video}: {DIED}")
        with contextlib.suppress(OSError, VideoError):  # (gone, a bad line's 'list:line', or no regular file)
            if why.startswith(f"{video}: ") and not why.startswith(passing) and \
                    os.stat(video).st_ctime_ns <= written_ns:
                lasting[os.path.realpath(video)] = {**source_identity(video), "video": video}
    return lasting


@torch_as_mme()  # (as every job: the GPU it decodes on, decode_on's, is the caller's again when it ends)
def run(list_file: str, root: str, out: str, opts: ExtractOptions, workers: int = 1, shard: str | None = None,
        overwrite: bool = False) -> dict:
    """Extract this job's share of a list; returns the report ``{done, skipped, failed: {path: reason}, reports,
    overwriting}`` (``reports``: the report files of its shares that list failures; ``overwriting``: the markers of
    its shares' ``--overwrite`` kept for the videos that failed, :func:`_run_share`).

    The share: ``--shard k/n`` times the torchrun ranks (``RANK``/``WORLD_SIZE``), entries ``i`` with
    ``i % (n * world) == k * world + rank``, counting a video listed twice (one cache file) once. One job per list,
    share and ``out`` at a time: a second is refused, naming the holder (it would do the same work again). Under
    torchrun, which stops every rank when the first ends with an error, the ranks join a process group: a share
    refused stops every rank before any work, and each rank waits for the others' shares to end and returns the
    report of them all. ``opts.device`` cuda is the rank's GPU, of its ``LOCAL_RANK`` (every rank used the first).
    """
    check_root(root, "--root")
    entries, bad_lines = read_list(list_file, strict=False)
    k, n = parse_shard(shard)
    check_output(out, "--out", folder=True, make=False)  # made once the ranks and the device are known
    rank, world = launch_ranks()
    part, parts = k * world + rank, n * world
    device = choose_device(opts.device, rank_on_node(), "--device")
    decode_on(device)  # (--backend pyav-cuda decodes on the flow's GPU, else on the rank's)
    require_backend(opts.backend, "--backend")
    init_distributed(torch.device("cpu"))  # (gloo: the ranks exchange reports, whatever device flows on)
    opts = replace(opts, device=str(device))
    check_output(out, "--out", folder=True)
    lock = Path(out) / LOCKS / share_name(list_file, part, parts)
    with contextlib.ExitStack() as held:
        # --overwrite replaces files a run may be reading: refused while one does (it trained on other tracks
        # mid-way, unsaid), and a run started meanwhile is refused; held by every rank in its --out (the ranks' one,
        # or each node's own), until every share is done; the writers' side is shared, so the ranks and the shares
        # of one overwrite go on together. Adding the files a cache lacks goes on beside a run (it refused them
        # missing at its start, and reads none of them)
        refused = None
        if overwrite:
            try:
                held.enter_context(replacing_read_files(out, "--out"))
            except ConfigError as e:
                refused = e
        raise_together(refused)
        try:
            report_file, report, marker = _run_share(entries, bad_lines if part == 0 else [], part, parts, list_file,
                                                     root, out, opts, workers, overwrite, lock)
        finally:
            unlock_folder(lock)
        shares = all_gather_objects((str(report_file), report, marker))  # once the slowest share is done
    if n == 1:  # (each rank in its --out: a node's own, or one shared)
        _remove_other_reports(out, list_file, parts)
    return {"done": sum(r["done"] for _, r, _ in shares), "skipped": sum(r["skipped"] for _, r, _ in shares),
            "failed": {path: why for _, r, _ in shares for path, why in r["failed"].items()},
            "reports": [file for file, r, _ in shares if r["failed"]],
            "overwriting": [marker for _, _, marker in shares if marker is not None]}


def _remove_other_reports(out: str, list_file: str, parts: int) -> None:
    """Remove the reports of failures in ``out`` of earlier extractions of ``list_file`` in another number of shares
    than ``parts`` (on other ranks, or ``--shard``), once a run of the whole list in ``parts`` shares has written its
    own: they named videos as failed that this run looked at again (made since, or failed again, in its reports)."""
    for report in Path(out).glob("failed-*.json"):
        if (shares := shares_named(report.name, list_file, "failed-", ".json")) not in (None, parts):
            earlier = f"the report of an earlier extraction of the list in {counted(shares, 'share')}"
            with removing(report, f"{earlier}, which this run's reports replace: remove it", warn=True):
                report.unlink(missing_ok=True)  # (another rank may have removed it from a shared --out)
                log.info("extract: removed %s, %s, whose videos this run looked at again", report, earlier)


def _cache_there(target: Path, there: bool, out: str, listed: str, opts: ExtractOptions, video: str,
                 files: Callable[[], frozenset[tuple[str, ...]]]) -> dict | None:
    """:func:`other_settings` of the cache of ``video`` (``listed`` in the list) that a run reads: the current file
    ``target`` where ``there`` (the caller's look-up found a regular file there: a folder or FIFO is passed over),
    else a version 1 one beside it in ``out``, else the file its dataset, moved since, left under its old path
    (:func:`~mme.motion.cache.moved_cache_file` in ``files()``, the listing of ``out``; as
    :func:`~mme.motion.cache.find_cache_file`), else None: a current file made again (damaged, stale: None) is made
    again whatever other file is there. ``target`` is ``cache_file(out, listed)`` as the caller built it (a resumed
    look builds each path once); ``out`` and ``listed`` build the version 1 path, only where the current file is not
    there."""
    if there:
        return other_settings(target, opts, video)
    if (v1 := cache_file(out, listed, V1_SUFFIX)).is_file():
        return other_settings(v1, opts, video)
    return None if (moved := moved_cache_file(out, video, files())) is None else other_settings(moved, opts, video)


def _refusal(out: str, clashes: dict[str, dict]) -> str | None:
    """Why caches in ``out`` of videos ``clashes`` ({listed path: :func:`other_settings`'s differences}), made from
    other files, by a later mme or with other settings, are not made again; None where there are none."""
    taken = {path: differ["video"] for path, differ in clashes.items() if "video" in differ}
    if taken:  # two datasets in one --out would replace each other's files of the same name
        path, (theirs, ours) = next(iter(taken.items()))
        files = [str(cache_file(out, p)) for p in list(taken)[:5]] + ["..."] * (len(taken) > 5)
        have = plural(len(taken), "has", "have")
        return (f"{counted(len(taken), 'video')} already {have} caches in {out} made from other files of the "
                f"same name, e.g. {path}: {said_made_from(theirs)}, this run's is {ours}. Extract each dataset into "
                f"its own --out; where this dataset is a copy of that one with these videos changed, delete their "
                f"cache files ({' '.join(files)}) and run again, or pass --overwrite to make every video again")
    later = {path: differ["later"][0] for path, differ in clashes.items() if "later" in differ}
    if later:  # this mme's tracks would silently take the place of a later mme's
        path, why = next(iter(later.items()))
        have = plural(len(later), "has", "have")
        return (f"{counted(len(later), 'video')} already {have} caches in {out} that this mme does not make "
                f"again, e.g. {path}: {why}; or pass --overwrite to make them again with this mme")
    if clashes:  # resuming with other settings (e.g. a changed default) would silently redo finished work
        path, differ = next(iter(clashes.items()))
        said = ", ".join(f"{k} {a} (this run: {b})" for k, (a, b) in differ.items())
        have = plural(len(clashes), "has", "have")
        return (f"{counted(len(clashes), 'video')} already {have} caches in {out} made with other settings, "
                f"e.g. {path}: "
                f"{said}. Resume with the settings they were made with, or pass --overwrite to make them again")
    return None


def _share_jobs(mine: dict[Path, ListEntry], root: str, out: str, opts: ExtractOptions,
                made_by_overwrite: dict[str, tuple[int, int]] | None) -> tuple[list, int]:
    """The jobs of entries ``mine`` (by their cache files) and how many of them are complete; a
    ConfigError where caches made from other files or with other settings are there. Each file's header is read
    (minutes for a finished cache of a large list): a progress bar counts them. Under ``--overwrite``
    (``made_by_overwrite``: the files an interrupted overwrite of these settings made, :func:`_overwrite_made`) every
    file is made again but those that overwrite made, complete and of their video as it is now."""
    overwrite = made_by_overwrite is not None
    jobs, skipped, clashes = [], 0, {}
    files = functools.cache(lambda: listed_files(out)[0])  # (listed at the first video without a file, once)
    for target, e in progress_bar(mine.items(), len(mine), "look", "video", show=is_main() and
                                  (not overwrite or bool(made_by_overwrite)), keep=False):
        video = resolve(e, root)
        st = stat_or_none(target)  # (the file's one look-up, before the look: a file made after it is another,
        # looked at again; at 240k finished files four look-ups each took 53 s)
        seen = None if st is None else stat_identity(st)
        if overwrite:
            made = made_by_overwrite.get(str(target.relative_to(out)))
            differ = None if made is None or _size_and_mtime(st) != made else other_settings(target, opts, video)
        else:
            differ = _cache_there(target, st is not None and stat.S_ISREG(st.st_mode), out, e.path, opts, video, files)
        if differ == {}:
            skipped += 1
            continue
        if differ and not overwrite:
            clashes[e.path] = differ
        jobs.append(_Job(video, e.path, out, target, opts, not overwrite, seen))
    if (why := _refusal(out, clashes)) is not None:
        raise ConfigError(why)
    return jobs, skipped


def _size_and_mtime(st: os.stat_result | None) -> tuple[int, int] | None:
    """What tells the file an overwrite made (``st``, its stat) from any other put there since (a copy keeping its
    mtime is the same file); None where there is none. No time is compared with another, so a clock set back or ahead
    does not count an older file as made since."""
    return None if st is None else (st.st_size, st.st_mtime_ns)


def _overwrite_settings(opts: ExtractOptions) -> dict:
    """The settings an overwrite's marker records, which another overwrite must share to continue it: those of the
    tracks (the device, on which torch-lk runs, is no more a part of them than in a plain resume)."""
    return {k: v for k, v in asdict(opts).items() if k != "device"}


def _overwrite_made(marker: Path, settings: dict) -> dict[str, tuple[int, int]]:
    """The files (by path under ``--out``: :func:`_size_and_mtime` as made) that an overwrite of this share with
    ``settings`` made before it stopped, by its ``marker``: a first line of its settings, written as it began, then
    a line per file made (:func:`_made_line`; a line cut short by a kill is passed over, its file made again); none
    where no overwrite of these settings stopped (no marker, one of other settings, or unreadable)."""
    try:
        begun, *made = marker.read_text(**TEXT).splitlines()
        if json.loads(begun).get("settings") != settings:
            return {}
    except (OSError, ValueError, AttributeError):
        return {}
    files = {}
    for line in made:
        with contextlib.suppress(ValueError, TypeError):
            name, size, mtime = json.loads(line)
            files[name] = (size, mtime)
    return files


def _made_line(name: str, made: tuple[int, int]) -> str:
    """The line of an overwrite's marker of the file ``name`` (its path under ``--out``) it made, ``made`` its
    :func:`_size_and_mtime`."""
    return json.dumps([name, *made]) + "\n"


def _begin_marker(marker: Path, settings: dict, made: dict[str, tuple[int, int]]) -> None:
    """Write the ``marker`` of an overwrite with ``settings`` as it begins, or continues one that stopped having made
    the files ``made`` (:func:`_overwrite_made`): written whole again, so that a last line a kill cut short is not
    joined to the first this run adds."""
    lines = [json.dumps({"settings": settings}) + "\n", *(_made_line(name, m) for name, m in made.items())]
    with space_for(marker, KEPT):
        atomic_write_text(marker, "".join(lines))


def _mark_made(marker: Path, target: Path, out: str) -> None:
    """Add the file ``target`` an overwrite made to its ``marker`` (a whole line, appended)."""
    if (made := _size_and_mtime(stat_or_none(target))) is None:  # (gone already: made again)
        return
    with writing(marker), space_for(marker, KEPT):  # (a full disk said as such, any other write error naming it)
        fd = open_regular(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # (not through a link put there)
        try:
            write_all(fd, _made_line(str(target.relative_to(out)), made).encode())
        finally:
            os.close(fd)


def _run_share(entries: list, bad_lines: list[BadLine], part: int, parts: int, list_file: str, root: str, out: str,
               opts: ExtractOptions, workers: int, overwrite: bool, lock: Path) -> tuple[Path, dict, str | None]:
    """Lock share ``part`` of ``parts`` and check its cache files (every rank refuses where one does), then extract it
    and write its report, which lists ``bad_lines`` (the list's lines that are no entry, skipped: share 0's) as
    failed; returns the report's file, the report, and the marker of its ``--overwrite`` where a video failed (kept:
    the same command makes again those alone, their files of before it left as they were), else None (removed)."""
    unique: dict[Path, ListEntry] = {}
    for e in entries:  # a video listed twice is extracted once, by one share
        unique.setdefault(cache_file(out, e.path), e)
    mine = {target: e for i, (target, e) in enumerate(unique.items()) if i % parts == part}
    refused = None
    share = share_name(list_file, part, parts)
    marker = Path(out) / f"overwriting-{share}.jsonl"  # (each share's own: shares on other machines keep theirs)
    settings = _overwrite_settings(opts)
    made_by_overwrite = None  # (under --overwrite, the files one that stopped made: {} where none did)
    try:
        lock_folder(lock, f"--out (share {part}/{parts} of its extraction)")
        make_side_locks(out)  # (a run of another user, who cannot make them, holds the cache on them; once the share
        # is held: a refused extraction leaves no folder behind)
        if not overwrite:
            log.info("extract: looking at the cache files of the %d videos of share %d/%d in %s", len(mine), part,
                     parts, out)
        elif made_by_overwrite := _overwrite_made(marker, settings):
            log.info("extract: continuing the --overwrite of share %d/%d that stopped, keeping the %s it made (%s "
                     "lists each; delete it to make them again too)", part, parts,
                     counted(len(made_by_overwrite), "file"), marker)
        jobs, skipped = _share_jobs(mine, root, out, opts, made_by_overwrite)
    except ConfigError as e:
        refused = e
    raise_together(refused)
    report_file = Path(out) / f"failed-{share}.json"
    # This share's files only, and of writers no longer alive: the other shares of its list and other lists'
    # extractions on this --out may be writing now.
    remove_stale_temps({*mine, report_file, marker})
    if overwrite:  # (begun: the files made before it are made again, however they look)
        _begin_marker(marker, settings, made_by_overwrite)
    log.info("extract: %d of %d videos in share %d/%d, %d already done, %d to do, %s", len(mine), len(unique), part,
             parts, skipped, len(jobs), counted(workers, "worker"))
    if bad_lines:  # as training and mme check skip and count them
        log.warning("%s", left_out(bad_lines, list_file))
    failed: dict[str, str] = {}
    lasting: dict[str, dict] = {}  # (of those failed, the ones a run fails again, by real path: :func:`_work`)
    made, tally = 0, Tally(SHOWN)
    done = _held_last(jobs, workers)
    for path, target, err, written, identity in progress_bar(done, len(jobs), "extract", "video", show=is_main()):
        # (--out removed: the next videos' files would go into another job's; the workers, other processes, lock none)
        check_folder_held(lock)
        made += written
        if written and overwrite:
            _mark_made(marker, target, out)
        if err is not None:  # the first said as they come (a run stopped later, disk full, has still named them)
            failed[path] = err
            if identity is not None:  # by its real path: a run from another folder or --root finds it
                lasting[os.path.realpath(path)] = {**identity, "video": path}
            since = tally.add()
            if since == 0:
                log.warning("failed: %s%s", err, tally.later)
            elif since:
                log.warning("extract: %d more videos failed: %d so far", since, tally.seen)
    if tally.unsaid:
        log.warning("extract: %d more videos failed: %d in all, each in %s", tally.unsaid, tally.seen, report_file)
    report = {"list": str(list_file), "share": f"{part}/{parts}", "done": made,
              "skipped": skipped + len(jobs) - made - len(failed),
              "failed": {**{f"{b.list_file}:{b.line_no}": str(b) for b in bad_lines}, **failed},
              "lasting": lasting, "options": asdict(opts)}
    check_folder_held(lock)  # (the report is outside the share's lock folder; every video may have been done)
    with space_for(report_file):
        atomic_write_text(report_file, json.dumps(report, indent=1))
    if overwrite and failed:  # (their files of before the overwrite are there still: made again by the same command)
        return report_file, report, str(marker)
    if not failed:  # every video made, by this run or the overwrite it continued: another --overwrite makes every
        # file again (a plain run ends one whose failed videos had no file before: it refuses a cache of mixed settings)
        with removing(marker, "the marker of an --overwrite that ended: delete it, or the next --overwrite of these "
                              "settings keeps the files it lists", warn=True):
            marker.unlink(missing_ok=True)
    return report_file, report, None


def extract_cache(list_file: str, out: str, root: str = "", length: int = 6, short_side: int = SHORT_SIDE,
                  seed_stride: int = 8, flow: str | None = None, compensate: bool = False,
                  max_disp: float | None = None, backend: str = "pyav", orientation: str = "coded", workers: int = 1,
                  shard: str | None = None, overwrite: bool = False, device: str = "cpu") -> dict:
    """``mme extract``: :func:`run` with these :class:`ExtractOptions` (``flow`` None: DEFAULT_FLOW); returns the
    report, which the command says in a line of counts (:func:`say_counts`; a library caller gets none)."""
    opts = ExtractOptions(length=length, short_side=short_side, seed_stride=seed_stride, flow=flow or DEFAULT_FLOW,
                          compensate=compensate, max_disp=max_disp, backend=backend, orientation=orientation,
                          device=device)
    return run(list_file, root, out, opts, workers, shard, overwrite)


def say_counts(report: dict) -> bool:
    """``mme extract``'s outcome: the line of counts of :func:`extract_cache`'s ``report``, said by rank 0 for the
    shares of every rank; whether a video failed (the command's exit status 1)."""
    if is_main():  # under torchrun, for the shares of every rank (on other nodes, in their node's --out)
        ranks = get_world_size()
        print(f"extract: {report['done']} written, {report['skipped']} already complete, {len(report['failed'])} "
              "failed" + (f", counted over the {ranks} ranks' shares" if ranks > 1 else "")
              + (f" (see {', '.join(report['reports'])})" if report["failed"] else "")
              + (f"; the same command makes again only the videos that failed, keeping the files it made (listed in "
                 f"{', '.join(report['overwriting'])})" if report["overwriting"] else ""))
    wait_for_ranks()  # torchrun stops every rank when the first exits 1: none does before rank 0 has printed
    return bool(report["failed"])
