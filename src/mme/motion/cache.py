"""The track cache: one file per video, readable for any crop.

What a file holds (written by ``mme extract``, :mod:`mme.motion.extract`): tracks started at EVERY raw frame
of the video, on the FULL frame resized to a working size, on a seed grid of stride ``seed_stride`` working px.
For each start ``s`` of the T, one zlib-compressed record, so that a sample reads and decompresses only the starts
it needs (the cost of a read grows neither with the video's length nor with how far apart its starts are):

- the displacements, int16 ``(L, gh, gw, 2)`` quantised at ``QUANT`` = 0.05 px (x, y);
- the validity, bool ``(gh, gw)``;
- for compensated caches, the camera homographies of the pairs ``(s + j, s + j + 1)``, float32 ``(L, 3, 3)``
  (the identity past the last frame).

Layout (little-endian): ``MAGIC``, the header's length (uint64), the header (JSON: format version, source and
working size, seed stride and grid, L, flow method, compensation, bound, T, decoder, the video file's fingerprint,
the resize's interpolation, the tracker's revision, the video's absolute path), T + 1 uint64 offsets of the records
from the end of the checksum, a CRC-32 of the length, header and offsets (uint32: a damaged header would change
the tracks silently, where a damaged record fails zlib's own check), the records. Version 2 files (the same
without the checksum, their quantum checked) and version 1 files (``.tracks.npz``: a zip of 32-start blocks,
checked by the zip's CRCs) are still read. A later format keeps the magic, the length and a JSON object header
with its ``version``, so that this mme tells a later mme's file from a damaged one (:func:`made_later`).

Tracks that run past the last frame see zero motion there (the dataset's convention for short videos; a video of
one frame is one start whose tracks stand still). To
serve a sample, :func:`resample` applies the sample's crop/resize/flip to the cached maps: the output seed grid
is mapped into working coordinates and the maps are read there bilinearly (exact sub-cell positions, not the
release's crop floored to the 1/8 grid, §12 D12), displacements are rescaled to output pixels, homographies
are conjugated into output coordinates, and a point is valid if the positions where its track reads the flow
stay inside the crop (all but the last, as :func:`mme.motion.tracks.track`).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import json
import math
import operator
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from mme.data.video import video_error, whole_frame_refusal
from mme.data.video_reader import TURN_NAMES, not_regular
from mme.errors import ConfigError, LaterCacheFile, VideoError
from mme.motion.tracks import (
    TRACKER,
    Tracks,
    default_max_disp,
    in_frame,
    prune_tracks,
    seed_grid,
    tracks_changed,
)
from mme.utils import NAME_MAX, absolute_path, atomic_path, fitting_name, npy_header

VERSION = 3
QUANT = 0.05  # px per int16 step: well under the flow's own noise (median 0.02 px, p90 < 0.1 px)
MAGIC = b"MMETRAKS"
SUFFIX = ".tracks"
V1_SUFFIX = ".tracks.npz"
_V1_BLOCK = 32  # starts per zip member in version 1
_V1_META_MOST = 1 << 20
"""The most bytes a version 1 file's ``meta`` member holds (a JSON object of a few hundred bytes)."""
_NPY_HEADER_MOST = 10_000 + 12
"""The most bytes an .npy header takes where numpy reads it (its ``max_header_size``), with its magic and length."""
_READ_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, MemoryError, OverflowError,
                zipfile.BadZipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError)
FINGERPRINT_BYTES = 1 << 16
"""Bytes read at each end of a video for its fingerprint."""
SHORT_SIDE = 224
"""``mme extract``'s default working short side (``--short-side``)."""
RESIZE = "area shrinking, else linear"
"""How a file's working frames were resized (``resize`` in its header: :func:`mme.data.transforms.resize`)."""


@dataclass
class CachedTracks:
    """The starts read from one cache file: float32 ``disp (S, L, gh, gw, 2)`` in working px of the raw start
    frames ``starts (S,)`` (all ``num_starts`` of the video, or those a sample needs), ``valid (S, gh, gw)``,
    ``homs (S, L, 3, 3)`` (pair ``(s + j, s + j + 1)``'s camera homography) or None, and ``meta``."""

    disp: np.ndarray
    starts: np.ndarray
    valid: np.ndarray
    homs: np.ndarray | None
    meta: dict
    num_starts: int


def cache_file(out_dir: str | Path, video: str, suffix: str = SUFFIX) -> Path:
    """Where the cache of ``video`` (its path as written in the list) lives under ``out_dir`` (``suffix``
    ``V1_SUFFIX``: where a version 1 file of it would be); that of a path of no parts (``.``) is ``..tracks``, not
    the folder."""
    return Path(out_dir, *_cache_parts(_under_cache(video) or (".",), suffix))


def _cache_parts(under: tuple[str, ...], suffix: str = SUFFIX) -> tuple[str, ...]:
    """The parts of a cache file's path under the cache folder, of the parts ``under`` of its video's path
    (:func:`_under_cache`): its folders, then its name with ``suffix``, each too long for a file name (a long title
    with the suffix; a folder of a video that cannot be there) shortened to one that fits
    (:func:`~mme.utils.fitting_name`: its first bytes and a hash), which is looked up without an ENAMETOOLONG."""
    if under and 4 * (max(map(len, under)) + len(suffix)) <= NAME_MAX:  # (none too long, seen without encoding)
        return (*under[:-1], under[-1] + suffix)
    return (*map(fitting_name, under[:-1]), fitting_name(under[-1], suffix)) if under else ()


def _under_cache(video: str | Path) -> tuple[str, ...]:
    """The parts of the path of ``video``'s cache file under the cache folder, but for the suffix: its anchor
    dropped, '..' escaped ('../x.mp4' stays under the folder)."""
    path = video if isinstance(video, Path) else Path(video)  # (a Path made again costs a parse)
    return tuple(part if part != ".." else "%2E%2E" for part in path.parts[path.is_absolute():])


def cache_backend(meta: dict) -> str | None:
    """The decoder whose frames a cache file's tracks follow (``mme extract --backend``); None for files made
    before it was recorded."""
    return meta.get("backend")


def same_frames(backend: str | None, other: str) -> bool:
    """Whether two decoders read the same frames: the PyAV reader's on the CPU and on the GPU are one (OpenCV's
    differ on some files, docs/data.md); a cache's decoder not recorded (None) is not held against it."""
    pyav = ("pyav", "pyav-cuda")
    return backend is None or backend == other or (backend in pyav and other in pyav)


def source_identity(path: str | Path) -> dict:
    """What a cache file records of the video it was made from: ``source_stat``, its size and mtime (ns), and
    ``fingerprint``, the identity of its content, unchanged by a copy (unlike its mtime): its size and a hash of
    its first and last ``FINGERPRINT_BYTES`` (a re-encode or another download of the same name changes them). Its
    limit, documented in docs/targets.md: a file changed only between those ends, its byte size kept (an uncompressed
    file re-rendered in place in its middle), is taken as the same; blocks hashed between them would only move it."""
    stat = _source_stat(path)
    return {"fingerprint": _fingerprint(os.path.realpath(path), *stat), "source_stat": stat}


def same_source(meta: dict, path: str | Path) -> bool:
    """Whether the cache of ``meta`` was made from the file now at ``path``: the same size and mtime as recorded
    (no hash needed), else the same fingerprint (a copy has another mtime and the same content). Caches made
    before fingerprints were recorded: True."""
    if meta.get("fingerprint") is None:
        return True
    stat = _source_stat(path)
    return meta.get("source_stat") == stat or meta["fingerprint"] == _fingerprint(os.path.realpath(path), *stat)


def made_elsewhere(meta: dict, video: str | Path) -> str | None:
    """The path the cache file of ``meta`` records of the video it was made from (absolute: an older cache's, as
    listed, is not judged) where it names another file than ``video``, else None: of a cache not made from ``video``
    (:func:`same_source`), another dataset's video of the same name in a shared cache, or this dataset's video at its
    old place, moved with its cache and changed since, which cannot be told apart where that path is gone (a volume
    not mounted). ``mme extract`` refuses to make such a file again; it is deleted where it is this dataset's."""
    recorded = meta.get("video")
    if recorded and os.path.isabs(recorded) and os.path.realpath(recorded) != os.path.realpath(video):
        return recorded
    return None


def said_made_from(recorded: str) -> str:
    """'made from ``recorded``', the video path a cache file records (:func:`made_elsewhere`), said to be gone where
    it is."""
    return f"made from {recorded}" + ("" if os.path.isfile(recorded) else
                                      " (not there now: moved, or on a volume not mounted)")


def _source_stat(path: str | Path) -> list[int]:
    """The size and mtime (ns) of the video at ``path``; a VideoError 'unreadable' where it is no regular file, whose
    read for its fingerprint would wait for good (a named pipe)."""
    st = os.stat(path)
    if why := not_regular(st.st_mode):
        raise video_error(path, "unreadable", why)
    return [st.st_size, st.st_mtime_ns]


@functools.lru_cache(maxsize=4096)
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        f.seek(max(size - FINGERPRINT_BYTES, 0))
        h.update(f.read(FINGERPRINT_BYTES))
    return f"{size}:{h.hexdigest()}"


def tracker_revision(meta: dict) -> int:
    """The revision of the tracker that made a cache file's tracks (``tracker``, :data:`mme.motion.tracks.TRACKER`).
    Files made before it was recorded are of revision 1 where they lack ``orientation`` too: all files of revision 1
    do, as do a few of revision 2, made in between, which are then made again."""
    return int(meta.get("tracker", 2 if "orientation" in meta else 1))


def _later_format(meta: dict) -> bool:
    """Whether the header ``meta`` is of a file format above this mme's (laid out past its header, checksum and all,
    as a later mme lays it)."""
    version = meta.get("version")
    return isinstance(version, int) and version > VERSION


def made_later(meta: dict) -> str | None:
    """That a later mme made the cache file of ``meta``, whose tracker revision or file format is above this mme's,
    with what to do, else None: such a file is neither read nor made again by this mme (:class:`LaterCacheFile`)."""
    revision, version = tracker_revision(meta), meta.get("version")
    if revision <= TRACKER and not _later_format(meta):
        return None
    return (f"made by a later mme (tracker revision {revision}, this mme's {TRACKER}; file format {version}, this "
            f"mme's {VERSION}): upgrade mme to read it")


def stale(meta: dict, video: str | None = None) -> str | None:
    """Why a cache file's tracks are not those this mme makes of its video (``video``, the path the list resolves to,
    where known), else None: its working frames were enlarged with INTER_AREA, as before ``resize`` was recorded
    (files of frames only shrunk or kept are as this mme makes them), an earlier revision of the tracker made them (a
    later one's file is refused as its header is read: :func:`made_later`), or
    they are of another file than ``video`` (:func:`_decoded_another_file`). Training refuses such a file, and a
    resumed ``mme extract`` makes it again."""
    if video is not None and (decoded := _decoded_another_file(meta, video)) is not None:
        return (f"its tracks are of {decoded}, the file an earlier mme opened for {video} (it removed '..' by text "
                f"where a symlink before it leads elsewhere)")
    (w0, h0), (w, h) = meta["src_size"], meta["work_size"]
    if meta.get("resize") != RESIZE and min(w, h) > min(w0, h0):
        return (f"its frames were enlarged from {w0}x{h0} to {w}x{h} by an mme that copied pixels (INTER_AREA), so "
                f"its tracks read less motion than there is")
    if (changed := tracks_changed(tracker_revision(meta), meta["flow"])) is not None:
        return f"its tracks were made by tracker {changed}"
    return None


def _decoded_another_file(meta: dict, video: str) -> str | None:
    """The file whose frames the cache of ``meta`` tracks where it is not ``video``, else None: the video it records
    is ``video`` with '..' removed by text (``os.path.abspath``'s spelling, which an earlier mme recorded and opened),
    that names another file than ``video`` does (:func:`mme.utils.absolute_path`: a symlink before the '..'), and
    that file is not the one the cache's fingerprint, taken of ``video`` itself, describes (:func:`same_source`). The
    current mme records the file it opened with that file's fingerprint, so its cache of a dataset moved since and
    reached through a symlink (the recorded path gone, or a copy of the same file) is kept."""
    if ".." not in Path(video).parts:  # (every read of a cached item: the usual path costs no more)
        return None
    recorded = meta.get("video")
    if recorded != os.path.abspath(video) or recorded == absolute_path(video):
        return None
    return recorded if os.path.isfile(recorded) and not same_source(meta, recorded) else None


def listed_files(cache_dir: str | Path) -> tuple[frozenset[tuple[str, ...]], bool]:
    """The parts of the path of every file under ``cache_dir`` (a link only where it leads to a file), from one walk of
    it, and whether the walk listed every folder it met: where :func:`find_cache_file` looks a whole list's videos up
    first (10,000 lookups on disk, each of a path of each length, take seconds). A hit only: a folder that cannot be
    listed (a shared cache's, mode 0711), or cannot be at all (``cache_dir`` not a folder), is passed over, and a name
    cased otherwise on a case-insensitive disk is missed, where a lookup on disk finds the file. A folder met again
    through a link (``latest -> .``) is walked once."""
    listed: set[tuple[str, ...]] = set()
    walked: set[tuple[int, int]] = set()
    folders: list[tuple[str, ...]] = [()]
    whole = True
    while folders:
        parts = folders.pop()
        try:
            st = os.stat(os.path.join(cache_dir, *parts))
            if (st.st_dev, st.st_ino) in walked:
                continue
            walked.add((st.st_dev, st.st_ino))
            with os.scandir(os.path.join(cache_dir, *parts)) as entries:
                for entry in entries:
                    if entry.is_dir():
                        folders.append((*parts, entry.name))
                    elif entry.is_file():
                        listed.add((*parts, entry.name))
        except OSError:
            whole = False
    return frozenset(listed), whole


def find_cache_file(cache_dir: str | Path, video_path: str, listed: frozenset[tuple[str, ...]] | None = None) -> Path:
    """The cache file of a video given its full path: the longest path suffix that exists under ``cache_dir``
    (the list's root is not part of the cache layout), a version 1 file where that suffix has no current one.
    ``listed``: the files under ``cache_dir`` (:func:`listed_files`'s), looked up there rather than on disk; where no
    suffix is there, the one file that ends with the longest tail of the path (:func:`moved_cache_file`: a dataset
    of absolute paths moved since)."""
    path = Path(video_path)
    parts, under = path.parts, _under_cache(path)  # under: parts without the anchor, '..' escaped
    anchored, last_up = int(path.is_absolute()), max((k for k, p in enumerate(parts) if p == ".."), default=-1)
    fitted = {suffix: _cache_parts(under, suffix) for suffix in (SUFFIX, V1_SUFFIX)}  # (once: a tail's, their end)
    for k in range(len(parts)):
        tail = under[max(k - anchored, 0):]  # (:func:`cache_file` of parts[k:], as tuples: no Path per suffix)
        for suffix in (SUFFIX, V1_SUFFIX) if tail and not (anchored and k == 1) else ():  # (k = 1: k = 0's tail)
            candidate = fitted[suffix][-len(tail):]
            if Path(cache_dir, *candidate).is_file() if listed is None else candidate in listed:
                return Path(cache_dir, *candidate)
        if k <= last_up:  # where extractions before '..' was kept under cache_dir wrote it (maybe outside it)
            legacy = Path(cache_dir, *_cache_parts(parts[k:]))
            if legacy.is_file():
                return legacy
    if listed is not None and (moved := moved_cache_file(cache_dir, video_path, listed)) is not None:
        return moved
    raise video_error(video_path, "track cache", f"no track cache for it under {cache_dir} (mme extract writes "
                      f"<cache>/<the list's path>{SUFFIX}); run mme extract for it")


def moved_cache_file(cache_dir: str | Path, video_path: str, listed: frozenset[tuple[str, ...]]) -> Path | None:
    """The cache file of the video at ``video_path`` that its dataset, moved since, left under its old path in
    ``cache_dir``: the one file of ``listed`` (:func:`listed_files`) that ends with the longest tail of its path
    (:func:`_moved_file`), where that file records the video's fingerprint (:func:`_made_of`); else None. Where a run
    (:func:`find_cache_file`) and a resumed ``mme extract`` find a file no tail of the path names."""
    moved = _moved_file(_under_cache(Path(video_path)), listed)
    return Path(cache_dir, *moved) if moved is not None and _made_of(Path(cache_dir, *moved), video_path) else None


def _moved_file(under: tuple[str, ...], listed: frozenset[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The file in ``listed`` (:func:`listed_files`) that ends with the longest tail of the parts ``under`` of a video's
    path (:func:`_under_cache`), where one alone does: the cache of a list of absolute paths whose dataset was moved
    since (``/data/old/c/v.mp4``'s file, ``<cache>/data/old/c/v.mp4.tracks``, for ``/new/place/c/v.mp4``), which no
    tail of the new path under the cache names. :func:`find_cache_file` takes it where it was made from the video at
    that path (:func:`_made_of`). One search of the listing's files by their parts from the last
    (:func:`_by_tail`): the files sharing the longest tail are next to each other there, so a list of many videos of
    one name (``<id>/clip.mp4``) costs no more per video."""
    if not under:
        return None
    key, tails = _cache_parts(under)[::-1], _by_tail(listed)
    at = bisect.bisect_left(tails, key)
    common = {i: _common(key, tails[i]) for i in (at - 1, at) if 0 <= i < len(tails)}  # the longest is beside key
    best = max(common.values(), default=0)
    ends = [i for i, n in common.items() if n == best]
    if not best or len(ends) > 1:  # (none of its name, or two files as long a tail)
        return None
    i = ends[0]
    others = (j for j in (i - 1, i + 1) if 0 <= j < len(tails))
    return None if any(_common(key, tails[j]) >= best for j in others) else tails[i][::-1]


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many parts ``a`` and ``b`` share from the first."""
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _made_of(path: Path, video: str) -> bool:
    """Whether the cache file at ``path`` records the fingerprint of the file ``video`` (its content, not its size and
    mtime, which another video may share): one that records none (an earlier mme's), or that cannot be read, is not
    taken as another path's; a later mme's (:class:`LaterCacheFile`) is judged by its header, so that the run and
    ``mme extract`` refuse it as such, not as missing."""
    try:
        try:
            meta = cache_meta(path)
        except LaterCacheFile as e:
            meta = e.meta
        # (not same_source's size and mtime alone: another video's file may share them)
        return meta.get("fingerprint") is not None and os.path.isfile(video) and \
            meta["fingerprint"] == source_identity(video)["fingerprint"]
    except (VideoError, OSError):
        return False


@functools.lru_cache(maxsize=1)
def _by_tail(listed: frozenset[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The files of a cache listing (:func:`listed_files`), each its parts from the last, in order: made once for a
    whole list's lookups (:func:`_moved_file`)."""
    return sorted(parts[::-1] for parts in listed)


def quantise(disp: np.ndarray) -> np.ndarray:
    """Displacements in px -> int16 steps of QUANT px (what a cache file stores)."""
    return np.clip(np.round(np.asarray(disp, np.float32) / QUANT), -32767, 32767).astype(np.int16)


def start_homs(pair_homs: np.ndarray, length: int, starts: np.ndarray | None = None) -> np.ndarray:
    """Per-pair homographies ``(T-1, 3, 3)`` -> each start's ``(S, L, 3, 3)`` (``starts``, default all ``T``):
    pair ``s + j``, the identity past the last frame."""
    T = len(pair_homs) + 1
    starts = np.arange(T) if starts is None else np.asarray(starts)
    pairs = starts[:, None] + np.arange(length)[None]  # (S, L)
    eye = np.eye(3, dtype=np.float32)
    if T < 2:
        return np.broadcast_to(eye, (len(starts), length, 3, 3)).copy()
    return np.where((pairs < T - 1)[..., None, None], pair_homs[np.minimum(pairs, T - 2)], eye).astype(np.float32)


def save_tracks(path: str | Path, disp: np.ndarray, valid: np.ndarray, pair_homs: np.ndarray | None,
                meta: dict) -> None:
    """Write one cache file atomically (:func:`track_writer`). ``disp``: float px, or int16 already
    :func:`quantise`-d."""
    q = disp if disp.dtype == np.int16 else quantise(disp)
    homs = None if pair_homs is None else start_homs(np.asarray(pair_homs, np.float32), q.shape[1])
    with track_writer(path, meta, len(q), q.shape[2:4], homs is not None) as write:
        write(q, valid, homs)


@contextlib.contextmanager
def track_writer(path: str | Path, meta: dict, starts: int, grid: tuple[int, int], homs: bool
                 ) -> Iterator[Callable[[np.ndarray, np.ndarray, np.ndarray | None], None]]:
    """Write one cache file atomically (temporary file, then ``os.replace``), its records as they come:
    ``write(q, valid, homs)`` for the next starts in order (``q`` :func:`quantise`-d), so that a long video's
    tracks are not held whole (25 KB a frame at the default settings: 2.7 GB for an hour). The header and the
    offsets, which lead the file, are written once the last record is in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # (mme extract's class folders: no output job removes them)
    header = json.dumps({**meta, "version": VERSION, "quant": QUANT, "starts": starts, "grid": list(grid),
                         "homs": homs}).encode()
    sizes: list[int] = []
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.seek(len(MAGIC) + 8 + len(header) + 8 * (starts + 1) + 4)

        def write(q: np.ndarray, valid: np.ndarray, homs: np.ndarray | None = None) -> None:
            valid = np.asarray(valid, bool)
            for k in range(len(q)):
                record = zlib.compress(q[k].astype("<i2").tobytes() + valid[k].tobytes()
                                       + (b"" if homs is None else homs[k].astype("<f4").tobytes()))
                f.write(record)
                sizes.append(len(record))

        yield write
        if len(sizes) != starts:
            raise ValueError(f"{path}: {len(sizes)} records written for {starts} starts")
        offsets = np.cumsum([0] + sizes).astype("<u8")
        head = len(header).to_bytes(8, "little") + header + offsets.tobytes()
        f.seek(0)
        f.write(MAGIC + head + zlib.crc32(head).to_bytes(4, "little"))


def _read_header(f, path: Path) -> tuple[dict, np.ndarray]:
    """The header and the record offsets of an open file of version 2 or 3 (after its magic), checked against their
    checksum (version 3; version 2, without one, is held to the quantum this mme writes); a version this mme does
    not know is refused, a later mme's file (:func:`made_later`) as a :class:`LaterCacheFile`: at once where its file
    format is a later one, whose checksum this mme cannot judge, and where its tracker revision is a later one, once
    the checksum has passed (a damaged byte of the revision is a damaged header, not a later mme's)."""
    length_bytes = f.read(8)
    length = int.from_bytes(length_bytes, "little")
    if length > os.fstat(f.fileno()).st_size:
        raise ValueError(f"a header of {length} bytes in a file of {os.fstat(f.fileno()).st_size}")
    header = f.read(length)
    meta = json.loads(header)
    if not isinstance(meta, dict):
        raise ValueError("the header is not a JSON object")
    if _later_format(meta):
        _refuse_later(meta, path)
    if meta.get("version") not in (2, VERSION):
        raise video_error(path, "track cache", f"track cache version {meta.get('version')}, expected {VERSION}; "
                                              f"re-run mme extract")
    offsets = f.read(8 * (int(meta["starts"]) + 1))
    if meta["version"] == 2:
        if meta["quant"] != QUANT:
            raise ValueError(f"a quantum of {meta['quant']} px, where mme writes {QUANT} (a damaged header)")
    elif zlib.crc32(length_bytes + header + offsets) != int.from_bytes(f.read(4), "little"):
        raise ValueError("the header and offsets do not match their checksum (a damaged header)")
    _refuse_later(meta, path)
    return meta, np.frombuffer(offsets, "<u8").astype(np.int64)


def _refuse_later(meta: dict, path: Path) -> None:
    """Raise the :class:`LaterCacheFile` of the file at ``path`` whose header ``meta`` a later mme wrote
    (:func:`made_later`), ``meta`` attached."""
    if (later := made_later(meta)) is not None:
        err = video_error(path, "track cache", later, kind=LaterCacheFile)
        err.meta = meta
        raise err


def cache_meta(path: str | Path) -> dict:
    """The meta of one cache file, checked as :func:`read_cache` checks it (its header, offsets and length), no
    record read (a version 1 file's meta): what a resumed extraction and a run's check compare."""
    path = Path(path)
    with _opened_cache(path) as (f, version_1):
        if not version_1:
            return _checked_header(f, path).meta
        with zipfile.ZipFile(f) as z:
            return _v1_meta(z, path)[0]


REFUSALS = {"unreadable": "are unreadable", "stale": "were made by an earlier mme", "later": "were made by a later mme",
            "changed": "were made from another version of their video",
            "elsewhere": "were made from other files of the same name"}
"""The kinds of cache file each training read fails as its video's failure before its settings count
(:func:`cache_meta_and_refusal`), with what the start check says of such files
(:func:`mme.train.pretrain._check_refused_files`)."""


def cache_meta_and_refusal(path: str | Path, video: str) -> tuple[dict | None, str | None, str | None]:
    """The meta of one cache file (:func:`cache_meta`; None where it is unreadable) of the file ``video``, and the
    kind (of :data:`REFUSALS`) and why of each training read's failing it as its video's failure before its settings
    count (:func:`cached_tracks`): unreadable (damaged, truncated), made by an earlier mme (:func:`stale`) or a
    later one (:func:`made_later`), or made from another version of ``video`` than the file there now
    (:func:`same_source`: re-encoded, replaced; a video that cannot be read is its own failure, judged at its open),
    or from another file of its name (:func:`made_elsewhere`); None, None where the read goes on to its settings. A
    resumed ``mme extract`` makes such a file again, but a later mme's, which it refuses without ``--overwrite``, and
    one made from another file of its name, which it refuses."""
    try:
        meta = cache_meta(path)
    except LaterCacheFile as e:
        return None, "later", e.detail
    except VideoError as e:
        return None, "unreadable", f"unreadable ({e.__cause__ or e})"
    if (why := stale(meta, video)) is not None:
        return meta, "stale", why
    with contextlib.suppress(OSError, VideoError):  # (gone, or no regular file: open_video says so)
        if not same_source(meta, video):
            if (recorded := made_elsewhere(meta, video)) is not None:
                return meta, "elsewhere", f"{said_made_from(recorded)}, this run's is {absolute_path(video)}"
            return meta, "changed", f"made from another version of {video} (its content changed since)"
    return meta, None, None


def read_cache(path: str | Path, starts=None) -> CachedTracks:
    """Read and check one cache file, the records of ``starts`` only (clamped to the video; default all).
    A missing, truncated or foreign file is a VideoError naming it (so a dataset skips that video and reports
    it, as for an undecodable video)."""
    path = Path(path)
    with _opened_cache(path) as (f, version_1):
        if version_1:
            return _read_v1(f, path, starts)
        head = _checked_header(f, path)
        meta, T, L, (gh, gw) = head.meta, head.starts, head.length, head.grid
        st = _starts(starts, T)
        nd, nv = L * gh * gw * 2 * 2, gh * gw
        disp = np.empty((len(st), L, gh, gw, 2), np.int16)
        valid = np.empty((len(st), gh, gw), bool)
        homs = np.empty((len(st), L, 3, 3), np.float32) if head.homs else None
        for i, record in enumerate(_records(f, head, f.tell(), st)):
            disp[i] = np.frombuffer(record, "<i2", L * gh * gw * 2).reshape(L, gh, gw, 2)
            valid[i] = np.frombuffer(record, bool, nv, nd).reshape(gh, gw)
            if homs is not None:
                homs[i] = np.frombuffer(record, "<f4", L * 9, nd + nv).reshape(L, 3, 3)
    return CachedTracks(disp.astype(np.float32) * head.quant, st, valid, homs, meta, T)


def _records(f: BinaryIO, head: _Header, base: int, starts: np.ndarray) -> Iterator[bytes]:
    """The records of ``starts`` of an open version 2 or 3 file of header ``head`` (:func:`_checked_header`), whose
    first record is at ``base``, one at a time: decompressed (zlib's check) and held to the size of one."""
    size = (4 * head.length + 1) * head.grid[0] * head.grid[1] + (head.length * 36 if head.homs else 0)  # disp, valid
    for s in starts.tolist():
        f.seek(base + head.offsets[s])
        record = zlib.decompress(f.read(head.offsets[s + 1] - head.offsets[s]))
        if len(record) != size:
            raise ValueError(f"record of start {s} holds {len(record)} bytes, expected {size}")
        yield record


def damaged(path: str | Path) -> str | None:
    """Why the cache file at ``path`` cannot be read whole (a record that fails zlib's check or holds another size, a
    version 1 file's member that fails its CRC or is not one mme wrote (:func:`_v1_member`), a header or offsets
    damaged), else None: every record is read, one at a time and none kept (an hour-long video's tracks are GBs). A
    resumed ``mme extract`` reads headers only (:func:`cache_meta`), so it keeps a file whose damage is past its
    header: such a file is to be deleted before the re-run (one whose header fails it makes again)."""
    path = Path(path)
    try:
        with _opened_cache(path) as (f, version_1):
            if version_1:
                with zipfile.ZipFile(f) as z:
                    most = _v1_meta(z, path)[1]
                    for name in z.namelist():
                        if not name.endswith(".npy"):
                            raise ValueError(f"its member {name} is not an array mme writes")
                        with _v1_member(z, name.removesuffix(".npy"), most) as member:
                            while member.read(1 << 20):  # (zipfile's check of its CRC at its end)
                                pass
            else:
                head = _checked_header(f, path)
                for _ in _records(f, head, f.tell(), np.arange(head.starts)):
                    pass
    except VideoError as e:
        return str(e.__cause__ or e)
    return None


@contextlib.contextmanager
def _opened_cache(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """A cache file open past its magic, and whether it is a version 1 file (a zip, which :func:`_read_v1` reads from
    its start); a missing or foreign file, or a read error inside the block, is a VideoError naming it
    (:func:`_unreadable`; a missing one's cause its FileNotFoundError). What is there is judged by the file opened, its
    path looked up once (a resumed extraction's look at each finished file); a FIFO opens without waiting for a
    writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise video_error(path, "track cache", "no such file") from e
    except OSError as e:
        raise _unreadable(path, e) from e
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise _unreadable(path, e) from e
    if not stat.S_ISREG(mode):  # (before open(): it refuses a folder's descriptor itself, as an unreadable file)
        os.close(fd)
        raise video_error(path, "track cache", "a folder, not a cache file" if stat.S_ISDIR(mode) else
                          "not a regular file")
    try:
        with open(fd, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic[:4] != b"PK\x03\x04" and magic != MAGIC:
                raise ValueError("unknown file type")
            yield f, magic[:4] == b"PK\x03\x04"
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e


class _Header(NamedTuple):
    """The header of a version 2 or 3 file as :func:`read_cache` reads its records by it: ``meta`` and the fields
    of it :func:`_checked_header` checks."""
    meta: dict
    offsets: np.ndarray
    starts: int
    length: int
    grid: tuple[int, int]
    homs: bool
    quant: float


def _checked_header(f: BinaryIO, path: Path) -> _Header:
    """:func:`_read_header` of an open file, every field :func:`read_cache` reads by taken (none missing, none
    negative) and the offsets held to the file's length (a truncated file): the file positioned at its first record.
    A version 2 file has no checksum, so a damaged header is found here alone, before any record is read."""
    meta, offsets = _read_header(f, path)
    quant = float(meta["quant"])  # a quantum missing or not a number is a damaged header
    gh, gw = (operator.index(n) for n in meta["grid"])
    head = _Header(meta, offsets, int(meta["starts"]), int(meta["length"]), (gh, gw), bool(meta["homs"]), quant)
    if min(head.starts, head.length, gh, gw) < 0:
        raise ValueError(f"negative dimensions in the header: {head.starts} starts of {head.length} steps on a "
                         f"{gh}x{gw} grid")
    size = os.fstat(f.fileno()).st_size
    if len(offsets) != head.starts + 1 or size != f.tell() + offsets[-1] or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{size} bytes, which the header's {head.starts} starts and the offsets do not describe")
    return head


def _unreadable(path: Path, err: Exception) -> VideoError:
    """A cache file that cannot be read; one not named as a cache file (a video, a list, given in its place) is not
    to be deleted."""
    if not path.name.endswith((SUFFIX, V1_SUFFIX)):
        return video_error(path, "track cache", f"not a track cache file ({err}): give a {SUFFIX} file of mme extract")
    return video_error(path, "track cache", f"not a valid mme track cache: {err}; delete it and re-run mme extract")


def _starts(starts, T: int) -> np.ndarray:
    """The distinct starts to read, clamped to the video's T (all T by default)."""
    return np.arange(T) if starts is None else np.unique(np.clip(np.asarray(starts, np.int64), 0, T - 1))


def _v1_member(z: zipfile.ZipFile, key: str, most: int) -> BinaryIO:
    """The array ``key`` of a version 1 file's zip ``z`` (its member ``<key>.npy``), open, once it is seen to be a
    member numpy's ``savez`` writes (stored or deflated: another method, which mme never wrote, bzip2's, makes GBs of
    a few bytes) of at most ``most`` bytes (what the file's meta implies: :func:`_v1_most`), which bounds what is
    decompressed: a member that claims more is refused before a byte of it is read."""
    info = z.getinfo(f"{key}.npy")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"its member {info.filename} is compressed by zip method {info.compress_type}, which mme "
                         f"never writes")
    if info.file_size > most:
        raise ValueError(f"its member {info.filename} holds {info.file_size} bytes, more than its meta allows "
                         f"({most})")
    return z.open(info)


def _v1_array(z: zipfile.ZipFile, key: str, most: int) -> np.ndarray:
    """The array ``key`` of a version 1 file's zip ``z`` (:func:`_v1_member`)."""
    with _v1_member(z, key, most) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _v1_most(meta: dict) -> int:
    """The most bytes a member of a version 1 file of ``meta`` holds: its largest array's (a block of 32 starts'
    int16 displacements, the validity of every start or the homographies of every pair of frames), with its .npy
    header."""
    if missing := [key for key in ("work_size", "seed_stride", "num_frames", "length") if key not in meta]:
        raise ValueError(f"its meta lacks {', '.join(missing)}")
    (w, h), stride = meta["work_size"], float(meta["seed_stride"])
    if not stride >= 1:  # (a stride of a pixel or more: 0 or 0.5 would divide by zero or claim more cells than pixels)
        raise ValueError(f"its meta's seed_stride is {meta['seed_stride']!r}, where mme writes one of at least 1")
    cells = math.ceil(int(h) / stride) * math.ceil(int(w) / stride)
    T, L = int(meta["num_frames"]), int(meta["length"])
    return _NPY_HEADER_MOST + max(_V1_BLOCK * L * cells * 4, T * cells, T * 9 * 4)


def _v1_meta(z: zipfile.ZipFile, path: Path) -> tuple[dict, int]:
    """The meta of a version 1 file's zip ``z`` and the most bytes a member of it holds (:func:`_v1_most`), once
    the .npy header of its validity, alone, is seen to be a ``(T, gh, gw)`` bool array of that size at most."""
    meta = json.loads(_v1_array(z, "meta", _V1_META_MOST).tobytes().decode())
    if not isinstance(meta, dict):
        raise ValueError("its meta is not a JSON object")
    if meta.get("version") != 1:
        raise video_error(path, "track cache", f"track cache version {meta.get('version')} in a version 1 file")
    most = _v1_most(meta)
    with _v1_member(z, "valid", most) as member:
        shape, _, dtype = npy_header(member)
    if len(shape) != 3 or dtype != np.dtype(bool) or math.prod(shape) > most:
        raise ValueError(f"its validity is a {shape} array of {dtype}, where its meta implies a (T, gh, gw) bool "
                         f"array of at most {most} bytes")
    return meta, most


def _read_v1(f: BinaryIO, path: Path, starts) -> CachedTracks:
    """A version 1 file (zip: ``disp_<k>`` int16 blocks of 32 starts, ``valid (T, gh, gw)``, ``pair_homs``,
    ``meta``), open as ``f``, as :func:`read_cache` returns it: each member held to what its meta implies
    (:func:`_v1_member`)."""
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as z:
            meta, most = _v1_meta(z, path)
            valid = _v1_array(z, "valid", most)  # (bool: _v1_meta saw its header)
            T = len(valid)
            st = _starts(starts, T)
            blocks = {int(b): _v1_array(z, f"disp_{b:05d}", most) for b in np.unique(st // _V1_BLOCK)}
            pair_homs = _v1_array(z, "pair_homs", most) if "pair_homs.npy" in z.namelist() else None
        L, grid = int(meta["length"]), valid.shape[1:]
        rows = [blocks[int(s) // _V1_BLOCK][int(s) % _V1_BLOCK] for s in st]
        disp = np.stack(rows) if rows else np.zeros((0, L, *grid, 2), np.int16)
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e
    if disp.ndim != 5 or disp.shape[2:4] != grid:
        raise video_error(path, "track cache", f"inconsistent arrays disp {disp.shape}, valid {valid.shape}")
    if disp.shape[1] != L:
        raise video_error(path, "track cache", f"inconsistent arrays: its meta says {L} steps, its arrays hold "
                                               f"{disp.shape[1]}")
    homs = None if pair_homs is None else start_homs(pair_homs, L)[st]
    return CachedTracks(disp.astype(np.float32) * float(meta["quant"]), st, valid[st], homs, meta, T)


def load_tracks(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(disp (S, L, Gh, Gw, 2) float32 px, valid (S, Gh, Gw) bool)`` of one cache file, S = every raw frame,
    at the cache's working size: the arrays :func:`mme.motion.compute_tracks` returns for those frames."""
    c = read_cache(path)
    return c.disp, c.valid


def resample(cached: CachedTracks, starts, length: int, geom, seed_stride: float,
             max_disp: float | None = None, source: str = "cache") -> Tracks:
    """Tracks of ``starts`` for ``length`` steps in the output frame of ``geom`` (a mme.data Geometry); ``length`` at
    most the steps the cache holds, as :func:`check_settings` checks before."""
    meta = cached.meta
    T, (_, _, gh, gw, _) = cached.num_starts, cached.disp.shape
    st = np.clip(np.asarray(starts, np.int64), 0, T - 1)
    rows = np.searchsorted(cached.starts, st)
    if np.any(rows >= len(cached.starts)) or np.any(cached.starts[np.minimum(rows, len(cached.starts) - 1)] != st):
        raise ValueError(f"starts {st.tolist()} were not all read from {source}")
    S = len(st)
    k = (meta["work_size"][0] / meta["src_size"][0], meta["work_size"][1] / meta["src_size"][1])
    A = geom.affine(k)  # working-frame pixel centres -> output-frame pixel centres
    Ainv = np.linalg.inv(A)
    seeds = seed_grid(geom.out_h, geom.out_w, seed_stride)  # (Gh, Gw, 2) output px
    Gh, Gw = seeds.shape[:2]
    work = seeds @ Ainv[:2, :2].T + Ainv[:2, 2]  # output seeds in working px
    ws = meta["seed_stride"]
    g = (work - ws / 2) / ws  # fractional cache-grid index
    grid = torch.from_numpy(np.stack([g[..., 0] * 2 / max(gw - 1, 1) - 1, g[..., 1] * 2 / max(gh - 1, 1) - 1], -1))
    grid = grid.float()[None].expand(S * length, -1, -1, -1)  # (S*L, Gh, Gw, 2), align_corners=True
    d = torch.from_numpy(np.ascontiguousarray(cached.disp[rows, :length])).reshape(S * length, gh, gw, 2)
    d = F.grid_sample(d.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=True)
    d = d.permute(0, 2, 3, 1).numpy().reshape(S, length, Gh, Gw, 2)
    d = d * np.array([A[0, 0], A[1, 1]], np.float32)  # working px -> output px (x negated by a flip)
    bound = default_max_disp(geom.out_h, geom.out_w) if max_disp is None else max_disp
    d = np.clip(d, -bound, bound).astype(np.float32)
    homs = None
    if cached.homs is not None:  # conjugated into output coordinates
        homs = (A @ cached.homs[rows, :length] @ Ainv).astype(np.float32)
    # Valid: inside the output frame for the ``length`` steps, as online (the crop lies in the frame). The file's
    # validity covers all of its steps, so a cache of a longer L would drop points that leave after ``length``.
    tracks = Tracks(d, np.ones((S, Gh, Gw), bool), homs, seeds, (geom.out_h, geom.out_w))
    tracks.valid = in_frame(tracks.positions()[:, :-1], geom.out_h, geom.out_w).all(1)  # not the last: as track()
    return tracks


REMADE = "re-run mme extract (it redoes such files)"
"""What makes a cache file of a changed video, or a :func:`stale` one, again: a plain re-run of the extraction, which
redoes such files alone (``--overwrite`` would redo every file of its share)."""


def _remaking(meta: dict, video: str | Path) -> str:
    """What makes again the cache file of ``meta`` made from another version of its ``video``: :data:`REMADE`, but for
    a file that records no fingerprint of its video (made before they were), which a re-run takes as made from any
    file of its path, so keeps, and one made from another file of its name (:func:`made_elsewhere`), which a re-run
    refuses as another dataset's."""
    if meta.get("fingerprint") is None:
        return "delete it and re-run mme extract (the file records no fingerprint of its video: a re-run keeps it)"
    if (recorded := made_elsewhere(meta, video)) is not None:
        return (f"it was {said_made_from(recorded)}, which a re-run of mme extract refuses as another dataset's video "
                f"of the same name: where it is this dataset's (moved with its cache, the video changed since), delete "
                f"it and re-run mme extract")
    return REMADE


def _coded(width: int, height: int, frames: int, turn) -> tuple[int, int, int]:
    """The coded frame size and count of a video whose frames, turned by ``turn``
    (:func:`~mme.data.video_reader.display_turn`), are ``width`` x ``height``."""
    return (height, width, frames) if turn[0] else (width, height, frames)


def _shape_of(coded, read) -> str:
    """A video's ``coded`` frame size and count (:func:`_coded`), with the size its frames were ``read`` at where
    turned otherwise (a display matrix of 90 degrees under ``--orientation display``): '96x72 coded (72x96 as read),
    12 frames'."""
    turned = f" coded ({read[0]}x{read[1]} as read)" if tuple(read[:2]) != tuple(coded[:2]) else ""
    return f"{coded[0]}x{coded[1]}{turned}, {coded[2]} frames"


def _extract_again(remake: str | None, otherwise: str = "") -> str:
    """The advice of a track cache's refusal: ``remake``, the whole ``mme extract`` that makes it again (where the
    caller knows it), else what ``otherwise`` says."""
    return f"extract again with `{remake}`" if remake else otherwise


def check_orientation(meta: dict, path: str | Path, turn, remake: str | None = None) -> None:
    """Refuse (ConfigError) the cache file of ``meta`` at ``path`` where its frames were turned otherwise than
    ``turn``, the run's of the video (:attr:`mme.data.video_reader.VideoReader.turn`: ``--orientation`` and
    ``data.orientation`` differ, and the video has a display matrix), advising ``remake`` as :func:`check_settings`."""
    made = tuple(meta.get("turn", (False, False, False)))
    if tuple(turn) != made:
        again = _extract_again(remake, "extract it with the run's")
        raise ConfigError(f"the track cache {path} was extracted with --orientation "
                          f"{meta.get('orientation', 'coded')}, which read this video's frames {_turned(made)}, where "
                          f"this run's data.orientation reads them {_turned(tuple(turn))}; {again}")


def _turned(turn: tuple[bool, bool, bool]) -> str:
    """How frames turned by ``turn`` (:func:`~mme.data.video_reader.display_turn`) are read, in words."""
    return f"as displayed (its display matrix {TURN_NAMES[turn]})" if turn in TURN_NAMES else "as coded"


def bound_in_run_px(meta: dict, img_size: int) -> float:
    """The displacement bound of the cache file of ``meta`` (``mme extract --max-disp``, in its working px) in a run's
    ``img_size`` px clips of a crop of a frame's whole short side. That is a run's largest crop (but for a
    random-resized box wider than the short side, docs/targets.md), the one that enlarges the working px least."""
    return float(meta["max_disp"]) * img_size / min(meta["work_size"])


def extract_max_disp(run_max_disp: float, short_side: int, img_size: int) -> int:
    """The ``mme extract --max-disp`` at ``--short-side short_side`` that bounds a run's ``img_size`` px clips at
    ``run_max_disp`` px or more (:func:`bound_in_run_px`), rounded up to a whole px."""
    return math.ceil(round(run_max_disp * short_side / img_size, 6))


def command_flags(length: int, short_side: int, seed_stride: int, flow: str, compensate: bool,
                   max_disp: float | None, orientation: str, backend: str, overwrite: bool) -> str:
    """The ``mme extract`` flags of these settings, ``--max-disp`` only where given (else extract's default bound)."""
    flags = [f"--length {length}", f"--short-side {short_side}", f"--seed-stride {seed_stride}", f"--flow {flow}"]
    flags += ["--compensate"] if compensate else []
    flags += [f"--max-disp {max_disp:.10g}"] if max_disp is not None else []
    flags += [f"--orientation {orientation}", f"--backend {backend}"]
    return " ".join(flags + ["--overwrite"] * overwrite)


def extract_flags(target, data, short_side: int, seed_stride: int, overwrite: bool = True) -> str:
    """The ``mme extract`` flags that make, at ``short_side`` and ``seed_stride``, a track cache that a run of
    ``target`` and ``data`` (its TargetConfig and DataConfig) reads: every setting its checks read
    (:func:`check_settings`, :func:`check_orientation`, :func:`same_frames`), from the run's own: its track length,
    flow, compensation, displacement bound (in the working px of ``short_side``), orientation and decoder; with
    ``--overwrite`` where ``overwrite`` (a cache there made again). Advice that named only some of them made, followed
    as given, a cache of extract's defaults for the others, which the run refuses."""
    max_disp = None if target.max_disp is None else extract_max_disp(target.max_disp, short_side, data.img_size)
    return command_flags(target.track_length, short_side, seed_stride, target.flow, target.compensate, max_disp,
                          data.orientation, data.backend, overwrite)


def made_settings(meta: dict) -> dict:
    """The extraction settings the cache file of ``meta`` was made with: ``length``, ``short_side`` (of its working
    frames), ``seed_stride``, ``flow``, ``compensate``, ``max_disp`` (as held), ``orientation`` (older files:
    coded) and ``backend`` (:func:`cache_backend`). A KeyError, TypeError or ValueError where ``meta`` lacks one."""
    w, h = meta["work_size"]
    return dict(length=int(meta["length"]), short_side=min(w, h), seed_stride=int(meta["seed_stride"]),
                flow=meta["flow"], compensate=bool(meta["compensate"]), max_disp=float(meta["max_disp"]),
                orientation=meta.get("orientation", "coded"), backend=cache_backend(meta))


def resume_settings(meta: dict, backend: str) -> dict:
    """The settings the cache file of ``meta`` was made with, as :func:`command_flags` takes them, which a resumed
    extraction into its cache takes (it refuses files made with others): ``max_disp`` None where the file's is
    extract's default for its working frames; the decoder ``backend`` (the run's) where it reads the file's frames
    (:func:`same_frames`: a file made with pyav-cuda on a GPU is resumed with pyav on a machine without one), else
    the file's."""
    made = made_settings(meta)
    w, h = meta["work_size"]
    if round(made["max_disp"], 4) == round(default_max_disp(h, w), 4):
        made["max_disp"] = None
    if same_frames(made["backend"], backend):
        made["backend"] = backend
    return made


def extract_flags_as_fine(target, data, run_seed_stride: int, short_side: int = SHORT_SIDE,
                          overwrite: bool = True) -> str:
    """:func:`extract_flags` at ``short_side``, or ``data.img_size`` where larger, with seeds no farther apart in the
    run's clips of a frame's whole short side than its targets' (``run_seed_stride``): a cache the run does not find
    coarser than its targets."""
    wanted = max(short_side, data.img_size)
    return extract_flags(target, data, wanted, max(1, int(run_seed_stride * wanted / data.img_size)), overwrite)


def check_settings(meta: dict, path: str | Path, cfg, length: int, img_size: int, remake: str | None = None) -> None:
    """Refuse (ConfigError) the cache file of ``meta`` at ``path`` where it was extracted with settings the run's
    target ``cfg`` (a TargetConfig) cannot read for tracks of ``length`` steps in ``img_size`` px clips: a
    displacement bound below the run's in the run's px (:func:`bound_in_run_px`), another compensation, fewer steps.
    A run checks each probed file's before any work (:meth:`mme.data.dataset.PretrainDataset.cache_file_refusal`),
    and each read its own. Each refusal advises ``remake``, the whole ``mme extract`` that makes the cache again with
    the run's settings, where the caller knows them (a run before any work); else the bound's says the
    ``--max-disp`` that meets it."""
    bound = default_max_disp(img_size, img_size) if cfg.max_disp is None else cfg.max_disp
    held = bound_in_run_px(meta, img_size)
    if held < bound * 0.999:
        short = min(meta["work_size"])
        needed = extract_max_disp(bound, short, img_size)
        runs = (f"{bound:g} (target.max_disp)" if cfg.max_disp is not None else
                f"default bound {bound:g} (target.max_disp unset: the release's, scaled to its clips)")
        again = _extract_again(remake, f"extract again with --max-disp {needed} at --short-side {short}")
        raise ConfigError(f"the track cache {path} holds displacements bounded at {meta['max_disp']:g} px per frame "
                          f"in its {short} px working frames (mme extract --max-disp), {held:g} px in this run's "
                          f"{img_size} px clips of a frame's whole short side, below this run's {runs}; {again}, or "
                          f"set target.max_disp={held:g}")
    remade = f"; {_extract_again(remake)}" if remake else ""
    if bool(meta.get("compensate")) != bool(cfg.compensate):
        raise ConfigError(f"target.compensate={cfg.compensate} but the track cache {path} was extracted with "
                          f"compensate={meta.get('compensate')}{remade}")
    if length > int(meta["length"]):
        raise ConfigError(f"target.track_length={length} but the track cache {path} holds only {int(meta['length'])} "
                          f"steps{remade}")


def cached_tracks(cache_dir: str | Path, sample, length: int, seed_stride: float, cfg) -> Tracks:
    """The tracks of a dataset Sample from the cache under ``cache_dir`` (its geometry applied), read from the file
    the dataset found (``sample.cache_file``), else the one :func:`find_cache_file` finds. A cache made from
    another version of the video (another size, frame count or content fingerprint: a resized, trimmed,
    re-encoded or re-downloaded copy) is a VideoError naming both, as is one whose tracks this mme would make
    otherwise (:func:`stale`, judged first: a re-run of ``mme extract`` makes such a file again whatever else it
    holds, so it is its video's failure, as the run's start check counts it); one of the video as it is whose frames
    were turned otherwise than this run turns them (:func:`check_orientation`: judged after the versions: a
    video that gained or lost a display matrix is another version), or extracted with settings this run cannot read
    (:func:`check_settings`: a lower displacement bound, another compensation, fewer steps), a ConfigError. A video
    whose frames ``mme extract`` does not track whole (:func:`~mme.data.video.whole_frame_refusal`) is unreadable
    here where it has no cache file, as to it, and named so (a run without the cache trains on it; an earlier
    mme's cache file of it is read)."""
    if not cfg.interpolate:
        raise ConfigError("target.interpolate=false is computed online only (the cache holds raw-rate tracks); "
                          "unset target.cache_dir")
    try:
        path = Path(sample.cache_file) if sample.cache_file is not None else find_cache_file(cache_dir,
                                                                                            str(sample.path))
    except VideoError:  # (none: a video mme extract refuses, whose advice to run it would loop, said as what it is)
        if sample.source is not None and (why := whole_frame_refusal(*sample.source[:2])):
            raise video_error(sample.path, "unreadable", why) from None
        raise
    cached = read_cache(path, sample.starts)
    # Judged before the checks of what it records (revision 1: no orientation).
    if (why := stale(cached.meta, str(sample.path))) is not None:
        raise video_error(path, "track cache", f"{why}; {REMADE}")
    # The video's coded size and frames (as the sample read them, its turn undone), then its content: another version
    # of it (one that gained or lost a display matrix too) is its failure, judged before the turn, which differs for
    # the same file only where the cache's --orientation is not the run's.
    made_from = _coded(*cached.meta["src_size"], cached.num_starts, cached.meta.get("turn", (False,) * 3))
    if sample.source is not None and (now := _coded(*sample.source)) != made_from:
        raise video_error(path, "track cache", f"made from another version of {sample.path}: "
                                              f"{_shape_of(made_from, cached.meta['src_size'])} there, "
                                              f"{_shape_of(now, sample.source)} now; "
                                              f"{_remaking(cached.meta, sample.path)}")
    if not same_source(cached.meta, sample.path):
        raise video_error(path, "track cache", f"made from another version of {sample.path} (same frame size and "
                                              f"frame count, other content); {_remaking(cached.meta, sample.path)}")
    if sample.source is not None:
        check_orientation(cached.meta, path, sample.source[3])
    check_settings(cached.meta, path, cfg, length, min(sample.geometry.out_w, sample.geometry.out_h))
    tracks = resample(cached, sample.starts, length, sample.geometry, seed_stride, cfg.max_disp, str(path))
    if cfg.prune:
        tracks.valid = prune_tracks(tracks)
    return tracks
