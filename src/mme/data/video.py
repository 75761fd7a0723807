"""Open a video and answer: frame count, fps, size, frames at indices (PyAV default, OpenCV, decord).

**Frame i** is the i-th frame of FFmpeg's sequential decode of the file's first video stream, in presentation
order: ``list(av.open(path).decode(video=0))[i]``; a stream that is an attached picture (cover art) is not a
video and is passed over, and so is a still image beside an image sequence (an animated AVIF's main image, which
FFmpeg's MP4 demuxer lists first: :func:`mme.data.pyav_reader.still_image`). ``num_frames`` is the length of that
decode. An H.264 packet without a picture gives no frame, which FFmpeg's decoder says with an error that
``ffmpeg`` passes over and PyAV's plain decode stops at (:func:`mme.data.pyav_reader._decode_packet`), but one
that ends with an end of sequence, which gives the frames the decoder holds for reordering; and a decode error
on the last packet with data (a file cut short, or its last packet damaged), which ``ffmpeg`` passes over too,
flushing the frames the decoder holds (:func:`mme.data.pyav_reader._decode`). The default
PyAV reader returns exactly those frames for any index set, in any order, on every file it opens
(``VideoReader.exact``). The OpenCV reader is not exact: its seeking (CAP_PROP_POS_FRAMES) returns wrong frames
on MPEG-PS/TS, where it does not seek, and on files whose timestamps are not at the frame rate, where it is trusted
only up to the first such frame (:func:`_seeks_to`); decord is not checked. Neither is the default.

How the PyAV reader stays exact (its index of each file and the verdict on its timestamps) is told in
:mod:`mme.data.pyav_reader`. Every backend reads the coded frame; ``orientation='display'`` turns it as the file's
display matrix says (:mod:`mme.data.video_reader`).

Every failure is a :class:`VideoError` whose message names the file and the reason, with the short reason in
``error.reason`` (used to count skipped videos in a dataset).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import unicodedata
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from mme.data import MAX_ASPECT, MIN_SHORT_SIDE
from mme.data.pyav_reader import (
    PyAVReader,
    colour_refusal,
    cuda_decoder,
    decoded_count,
    mpeg_program_or_transport_stream,
    not_a_video,
    probe_video,
    video_by_its_bytes,
)
from mme.data.video_reader import (
    GONE,
    ORIENTATIONS,
    TURN_NAMES,
    FrameBuffer,
    VideoReader,
    display_angle,
    display_turn,
    no_frames,
    not_regular,
    video_error,
)
from mme.errors import ConfigError, FrameCountChanged, VideoError
from mme.utils import (
    DECODE_GPU_ENV,
    MISSING,
    NOT_THERE,
    VersionOfFile,
    absolute_path,
    as_given,
    broken_link,
    counted,
    why_absent,
    why_unreadable,
)

log = logging.getLogger(__name__)

BACKENDS = ("pyav", "pyav-cuda", "opencv", "decord")
"""'pyav-cuda' is the PyAV reader decoding on the GPU of this process (:func:`decode_gpu`) with FFmpeg's NVDEC."""


INDEXING_BACKENDS = ("pyav", "pyav-cuda")
"""The backends whose reader keeps frame indices in an index folder (``data.index_dir``, ``--index-dir``)."""


def check_index_dir(backend: str, index_dir: str | Path | None, backend_option: str = "data.backend",
                    index_option: str = "data.index_dir") -> None:
    """Refuse an index folder beside a backend that keeps no index (it would be taken and never used): ConfigError
    naming both options, the config keys or a command's flags."""
    if index_dir is not None and backend not in INDEXING_BACKENDS:
        raise ConfigError(f"{as_given(index_option, index_dir)} with {as_given(backend_option, backend)}: only the "
                          f"PyAV reader ({', '.join(INDEXING_BACKENDS)}) keeps frame indices; leave out {index_option} "
                          "or read with pyav")


def decode_on(device) -> None:
    """Make the job's ``device`` (a torch.device: ``train.device``, a command's ``--device``, as chosen) the GPU the
    'pyav-cuda' backend decodes on where it is a CUDA one; on another device, this rank's (:func:`decode_gpu`). Called
    inside the job's :func:`~mme.utils.torch_as_mme` block, which puts the caller's choice back as the job ends."""
    if device.type == "cuda":
        os.environ[DECODE_GPU_ENV] = str(device.index)
    else:
        os.environ.pop(DECODE_GPU_ENV, None)


def decode_gpu() -> int:
    """The CUDA device the 'pyav-cuda' backend decodes on: the job's (:func:`decode_on`), else this rank's, as
    ``train.device=cuda`` picks it (:func:`mme.train.precision.rank_gpu` of
    :func:`mme.train.distributed.rank_on_node`)."""
    from mme.train.distributed import rank_on_node
    from mme.train.precision import rank_gpu

    chosen = os.environ.get(DECODE_GPU_ENV)
    return int(chosen) if chosen is not None else rank_gpu(rank_on_node())


def require_backend(backend: str, option: str = "data.backend") -> None:
    """Refuse, before any work, a backend this process cannot use: ConfigError naming ``option`` (the config key, or
    a command's flag) and the reason."""
    if backend == "pyav-cuda":
        cuda_decoder(decode_gpu(), option)
    elif backend == "decord" and (missing := _decord_missing()):
        raise ConfigError(f"{as_given(option, backend)}: {missing}")


def _decord_missing() -> str | None:
    """Why the optional decord backend cannot be used here (it is not installed), else None."""
    return None if importlib.util.find_spec("decord") else "the 'decord' backend is not installed (pip install decord)"


def open_video(path: str | Path, backend: str = "pyav", threads: int = 0,
               index_dir: str | Path | None = None, orientation: str = "coded", warn: bool = True) -> VideoReader:
    """Open ``path`` with ``backend`` (:data:`BACKENDS`); ``threads`` = decoder threads (0 = auto); ``index_dir``:
    where the PyAV reader keeps frame indices for every process (``data.index_dir``); ``orientation``
    (``data.orientation``): 'coded' frames, or turned as 'display'ed (:mod:`mme.data.video_reader`).

    Raises VideoError for a missing, empty, unreadable or frameless file, for one FFmpeg reads as text or a
    still picture (:func:`mme.data.pyav_reader.not_a_video`), and for frames too small to train on
    (:func:`frame_size_refusal`). A video whose pixels are not square (:func:`anamorphic`) is read as stored, and
    warned of, the first of a job alone (:func:`anamorphic_said`), where ``warn``.
    """
    path = str(path)
    if backend not in BACKENDS:
        raise VideoError(f"{path}: unknown video backend {backend!r}; choose one of {BACKENDS}")
    if orientation not in ORIENTATIONS:
        raise VideoError(f"{path}: unknown orientation {orientation!r}; choose one of {ORIENTATIONS}")
    try:  # (one stat: a file moved between an existence check and a size check raised a FileNotFoundError)
        kind = os.stat(path)
    except ValueError:  # (an embedded NUL, as os.path.exists answers it)
        raise video_error(path, "missing", "no such file" + missing_hint(path)) from None
    except OSError as e:
        if e.errno in NOT_THERE:  # (a broken link, a name not there)
            raise video_error(path, "missing", "no such file" + missing_hint(path)) from None
        raise video_error(path, "unreadable", why_unreadable(path, e)) from e  # (EACCES: not "missing")
    if why := not_regular(kind.st_mode):
        raise video_error(path, "unreadable", why)
    if kind.st_size == 0:
        raise video_error(path, "empty", "zero-byte file")
    demuxer = still = ""
    try:
        if backend in ("pyav", "pyav-cuda"):
            reader = PyAVReader(path, threads, index_dir, gpu=decode_gpu() if backend == "pyav-cuda" else None)
        else:  # their FFmpeg opens text and pictures as PyAV's does, without saying how
            if not video_by_its_bytes(path):
                demuxer, still = probe_video(path)
            not_a_video(path, demuxer)  # text, refused before the backend opens it
            reader = {"opencv": _OpenCVReader, "decord": _DecordReader}[backend](path, threads)
    except FileNotFoundError as e:  # (the readers' stat of the file they opened, for its version)
        raise video_error(path, "missing", GONE) from e
    try:
        not_a_video(path, demuxer, reader.num_frames, still)  # a picture: refused where this backend reads one frame
        if reader.num_frames <= 0:
            raise video_error(path, "unreadable", no_frames(reader.packets))
        if why := frame_size_refusal(*reader.size):
            raise video_error(path, "unreadable", why)
        if warn and not _SAID_ANAMORPHIC[0] and (why := anamorphic(*reader.size, reader.sample_aspect())):  # (stored)
            _SAID_ANAMORPHIC[0] = 1  # once per job (its loader workers share the flag): `mme check` names them all
            log.warning("%s: %s (said for the first such video; `mme check` names every one)", path, why)
        if orientation == "display":
            reader.orient(display_turn(reader.display_matrix(), path))
    except BaseException:
        reader.close()
        raise
    return reader


T = TypeVar("T")


def with_true_count(read: Callable[[], T]) -> T:
    """``read()``, a function that opens a video and reads frames it chose by the reader's ``num_frames``, done once
    more where its read found that count wrong (FrameCountChanged): this process's index of the file holds the
    true count from then on, so the second ``read()`` chooses as one that knew it (the same dataset item, clip or
    picture in every process). A second change is the file's error."""
    try:
        return read()
    except FrameCountChanged:
        return read()


def frame_size_refusal(width: int, height: int) -> str:
    """Why frames of ``width`` x ``height`` cannot be trained on (:data:`MIN_SHORT_SIDE`), or ''. A wide frame is
    not refused (1280x72 trains right: its crops are squares of the short side)."""
    if min(width, height) < MIN_SHORT_SIDE:
        return f"its frames are {width}x{height}, whose short side is under {MIN_SHORT_SIDE} px"
    return ""


def anamorphic(width: int, height: int, sar: Fraction) -> str:
    """What `mme check` and a read say of frames of ``width`` x ``height`` stored pixels whose sample aspect ratio
    ``sar`` is not square (DV, DVD, broadcast: displayed wider or narrower than stored), '' where it is: every backend
    reads the stored frames, the scene and its motion across squeezed or stretched against the displayed ones."""
    if sar == 1:
        return ""
    shown = f"{round(width * sar)}x{height}"
    how = f"{float(sar):.3g} times narrower" if sar > 1 else f"{float(1 / sar):.3g} times wider"
    return (f"its pixels are not square (sample aspect ratio {sar.numerator}:{sar.denominator}: stored {width}x{height}"
            f", displayed {shown}): every backend reads the stored frames, the scene and its motion across {how} than "
            f"displayed; make them square first (ffmpeg -i in -vf scale=iw*sar:ih,setsar=1 out)")


_SAID_ANAMORPHIC = [0]
"""1 once this job warned of a video's non-square pixels (:func:`open_video`): this process's, until it starts loader
workers (:func:`anamorphic_said`)."""


def anamorphic_said(said=None):
    """This job's :data:`_SAID_ANAMORPHIC`, moved into shared memory (a one-element torch tensor, which a loader hands
    its workers whether they fork or spawn), for :func:`mme.data.dataset.start_workers` to give each worker, which
    takes it as ``said``: the job warns of its first anamorphic video once, not once in every worker of every loader
    (a test set's at each evaluation, each probe split, each embed). Two workers that meet their first such video at
    the same instant may both say it."""
    global _SAID_ANAMORPHIC
    if said is not None:
        _SAID_ANAMORPHIC = said
    elif isinstance(_SAID_ANAMORPHIC, list):
        import torch  # (this module reads videos without it)

        _SAID_ANAMORPHIC = torch.tensor(_SAID_ANAMORPHIC, dtype=torch.int8).share_memory_()
    return _SAID_ANAMORPHIC


def whole_frame_refusal(width: int, height: int) -> str:
    """Why frames of ``width`` x ``height`` are not tracked whole (``mme extract``'s track cache), or '': a long side
    over :data:`MAX_ASPECT` times the short side. The cache's working frame has the short side at ``--short-side``."""
    if max(width, height) > MAX_ASPECT * min(width, height):
        return (f"its frames are {width}x{height}, whose long side is over {MAX_ASPECT} times the short side, too "
                f"elongated for a track cache (its working frame is the whole frame at --short-side); crop the "
                f"video, or train on it online, without target.cache_dir")
    return ""


def missing_hint(path: str) -> str:
    """Why a listed file may look missing though it is there: a list of frame folders, a label that is not a class
    id or follows a comma (both read as part of the name), a Windows path, a path from the home folder ('~/x.mp4',
    which a list does not expand; joined to ``data.root``: 'root/~/x.mp4'), or a name whose accents are composed
    otherwise than on this disk (macOS writes decomposed ones); or a link whose target is not there (a volume not
    mounted) or that leads back to itself, named (:func:`mme.utils.broken_link`)."""
    try:
        return f"; {broken_link(path)}"
    except OSError:  # (not a link)
        pass
    folder, _, frames = path.rpartition(" ")
    if frames.isdigit() and os.path.isdir(folder):
        return (f"; {folder!r} is a folder and {frames} its frame count: a list of frame folders ('path num_frames "
                f"label'), which mme does not read; list the video files (mme lists)")
    for sep in (" ", ",", ";", "\t"):
        name, _, label = path.rpartition(sep)
        if name and os.path.isfile(name):
            return (f"; {name!r} exists: {sep + label!r} was read as part of its name, not as a label (a list line "
                    f"is 'path label', the label a class id, an integer, after a space)")
    if "\\" in path and os.path.exists(path.replace("\\", "/")):
        return "; with '/' for its '\\' it exists: write list paths with '/'"
    from mme.config import home

    for tilde in re.finditer("/~", f"/{path}"):  # where a list line '~/x.mp4' may begin, joined to data.root or not
        listed = path[tilde.start():]  # (data.root may hold a folder '~old' of its own)
        with contextlib.suppress(ConfigError):  # (no home folder: no hint)
            if (expanded := home(listed)) != listed and os.path.exists(expanded):
                return f"; {expanded!r} exists: list paths are not ~-expanded: write it absolute"
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, path)
        if other != path and os.path.exists(other):
            return f"; its name exists with its accents in Unicode {form} form: write the list in that form"
    return ""


def video_check(path: str | Path, status: str = "ok", reason: str = "") -> dict:
    """A :func:`check_video` result of nothing decoded yet."""
    return {"path": str(path), "status": status, "frames": 0, "packets": 0, "seeking": "", "damaged": [],
            "skipped": [], "display": None, "rotation": 0, "reason": reason}


def check_video(path: str | Path, min_frames: int = 1, index_dir: str | Path | None = None, threads: int = 1) -> dict:
    """Open and decode one file as a long run would, before it does (PyAV). Returns ``{"path", "status",
    "frames", "packets", "seeking", "damaged", "skipped", "display", "rotation", "reason"}``; ``status``: 'ok';
    'damaged' when FFmpeg flagged frames as decoded with errors (``damaged``: their indices), which it conceals: those
    frames, and those that reference them, differ with the decoder's threads, or where its demuxer passed over damaged
    data (``skipped``: :func:`~mme.data.pyav_reader.demuxer_skips`), whose frames are missing from every decode;
    'rotated' when the file's display matrix (``display``; phone videos) turns or mirrors its frames (``rotation``:
    FFmpeg's angle, None for a mirror), which are read as coded unless ``data.orientation=display``; 'suspicious'
    when the file must be read sequentially (its timestamps cannot be trusted, or seeking returned another frame
    than counting), its packets and frames differ in number, or its frames end well before the duration its header
    gives (:func:`~mme.data.pyav_reader.cut_short`: a copy cut partway), said in the reason of 'damaged' and 'rotated'
    too; 'short' under ``min_frames`` frames, where it is none
    of these (their reason then ends with its count); 'several videos' when it is otherwise 'ok' but holds video
    streams besides the one read (the first: frame i is that one's), which the reason of the statuses its decode gives
    names too (:func:`~mme.data.pyav_reader.other_videos`; not a VideoError's, whose file failed to open or decode);
    'hdr' when it is otherwise 'ok' but its colours are tagged HDR or BT.2020 (a phone's HLG video), which the
    backends read otherwise (:func:`~mme.data.pyav_reader.hdr_colours`), said likewise in the reason of the others;
    'anamorphic' likewise where its pixels are not square (:func:`anamorphic`: read as stored, squeezed or stretched);
    or the VideoError's reason ('missing', 'empty', 'unreadable', 'decode error', ...). ``index_dir``: where the
    proven index is kept; ``threads``: the decoder's, as the run's ``data.decode_threads`` (concealment depends on
    them)."""
    out = video_check(path)
    try:
        with open_video(path, threads=threads, index_dir=index_dir, warn=False) as reader:
            out.update(reader.check())
            others, hdr, cut = reader.other_videos(), reader.hdr_colours(), reader.cut_short()
            squeezed = anamorphic(*reader.size, reader.sample_aspect())
    except VideoError as e:
        return {**out, "status": getattr(e, "reason", "unreadable"), "reason": str(e)}
    out["rotation"] = display_angle(out["display"])
    turned = _turned_how(out["display"], path)
    frames = out["frames"]
    short = f"{counted(frames, 'frame')}, fewer than {min_frames}" if frames < min_frames else ""
    if frames == 0:  # as a run's open of the file says, once its frames are counted
        out.update(status="unreadable", reason=no_frames(out["packets"]))
    elif out["damaged"] or out["skipped"] or turned:
        n, skips, whys = len(out["damaged"]), out["skipped"], []
        if n:
            whys.append(f"FFmpeg decoded {counted(n, 'frame')} with errors and concealed them: "
                        f"{out['damaged'][:5]}{' ...' * (n > 5)}")
        if skips:
            more = f" (and {counted(len(skips) - 1, 'more place')})" if len(skips) > 1 else ""
            whys.append(f"FFmpeg's demuxer passed over damaged data {skips[0]}{more}: frames there may be missing, "
                        f"frame i then a later frame of the video")
        status, why = ("damaged", "; ".join(whys)) if whys else ("rotated", turned)
        out.update(status=status, reason=why + (f"; read sequentially: {out['reason']}" if out["reason"] else "")
                   + (f"; {cut}" if cut else ""))
    elif out["seeking"] == "sequential" or out["frames"] != out["packets"] or cut:
        why = out["reason"] or (f"{out['packets']} packets decode to {out['frames']} frames"
                                if out["frames"] != out["packets"] else "")
        out.update(status="suspicious", reason="; ".join(filter(None, (why, cut))))
    elif short:
        out.update(status="short", reason=short)
    if short and out["status"] in ("damaged", "rotated", "suspicious"):  # the more serious status, and the count
        out["reason"] += f"; {short}"
    if others and out["status"] == "ok":  # frame i is the first video stream's: said, as the file may be for another
        out.update(status="several videos", reason=others)
    elif others:
        out["reason"] += f"; {others}"
    if hdr and out["status"] == "ok":  # a run reads it, its frames other with another backend: said, as 'rotated'
        out.update(status="hdr", reason=hdr)
    elif hdr:
        out["reason"] += f"; {hdr}"
    if squeezed and out["status"] == "ok":  # a run reads it squeezed or stretched: said, as 'rotated'
        out.update(status="anamorphic", reason=squeezed)
    elif squeezed:
        out["reason"] += f"; {squeezed}"
    return out


def _turned_how(matrix, path) -> str:
    """What a display matrix does to the frames, and what a run does with it ('' for none or the identity)."""
    angle = display_angle(matrix)
    try:
        turn = display_turn(matrix, path)
    except VideoError:
        how = (f"turns its frames by {angle} degrees, not a right angle" if angle is not None else
               "mirrors its frames otherwise than left to right, top to bottom or across a diagonal")
        return f"its display matrix {how}: they are read as coded, and data.orientation=display refuses the file"
    if turn not in TURN_NAMES:
        return ""
    return (f"its display matrix {TURN_NAMES[turn]}{'' if angle is None else f' (rotation {angle})'}; they are read "
            f"as coded unless data.orientation=display")


FORWARD_WITHOUT_SEEK = 16
"""Frames an OpenCV capture decodes on to reach a read's first frame rather than seek to it."""


GRAB_TRIES = 256
"""Grabs in a row that fail before an OpenCV capture is taken to be at the end of its file. OpenCV's grab fails once
on each packet the decoder refuses and goes on at the next: damaged data (300 random bytes in the middle of a
48-frame H.264 MP4 failed 4 grabs in a row, 4 KiB 26), the cut end of a file (1, then the frames the decoder held for
reordering), an H.264 packet without a picture (1). At the end every grab fails, at 1 us (MP4, Matroska, WebM) to
8 us (MPEG-TS) each: the 256 add under 0.1 ms to a count, 1.5 ms on MPEG-TS (whose whole count of a 48-frame 96x64
file takes 3 ms). Damage over more packets in a row is taken for the file's end."""


class _OpenCVReader(VideoReader):
    """OpenCV's FFmpeg backend; the count is verified by grabbing every frame once (cached per process while the file
    is unchanged: :func:`_opencv_count`), past grabs that fail where frames follow only as FFmpeg's sequential decode
    does. Not exact: CAP_PROP_POS_FRAMES seeks by frame-rate arithmetic, no further than :func:`_seeks_to` trusts it
    (not at all on MPEG-PS/TS). Its own turning by the display matrix is off: frames are coded ones, as every
    backend's."""

    def __init__(self, path: str, threads: int = 0):
        self.path, self._threads = path, threads
        self._name = absolute_path(path)  # what it is reopened by: the file opened, whatever the working folder then
        self._cap, self._at = self._capture(), 0  # _at: the frame the capture decodes next, None where unknown
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.num_frames, failed_at, self._seeks_to, refusal = _opencv_count(VersionOfFile.of(path), threads)
        if refusal:
            self._cap.release()
            raise video_error(path, "decode error", refusal)
        self._tries = 1 if failed_at is None else GRAB_TRIES  # a read passes over failed grabs where the count did

    def sample_aspect(self) -> Fraction:
        """The sample aspect ratio OpenCV's FFmpeg read from the file (1 where it says none)."""
        num, den = (int(self._cap.get(prop)) for prop in (cv2.CAP_PROP_SAR_NUM, cv2.CAP_PROP_SAR_DEN))
        return Fraction(num, den) if num > 0 and den > 0 else Fraction(1)

    def _capture(self) -> cv2.VideoCapture:
        """A capture of the file at its first frame, with OpenCV's own turning off (refused where it cannot be)."""
        cap = _opencv_capture(self._name, self._threads, self.path)
        if not cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0) and cap.get(cv2.CAP_PROP_ORIENTATION_META):
            cap.release()
            raise video_error(self.path, "unreadable", "this OpenCV turns frames by the display matrix on its own; "
                                                       "read it with the pyav backend")
        return cap

    def _seek(self, frame: int) -> int:
        """Put the capture at ``frame`` or before it, and return where it is: at most at the frame :func:`_seeks_to`
        trusts a seek to, and at frame 0 by opening the capture again. A capture already at or a few frames before
        ``frame`` (a fresh one read from frame 0, the next clip of a video read in order) decodes on without a seek,
        at most FORWARD_WITHOUT_SEEK decodes; so does one at or past the frame a seek is trusted to, and before
        ``frame``, however far before. CAP_PROP_POS_FRAMES seeks to the keyframe before ``frame`` and decodes
        up to it, and the reads go on from where it landed."""
        if self._at is not None and (0 <= frame - self._at <= FORWARD_WITHOUT_SEEK
                                     or self._seeks_to <= self._at <= frame):
            return self._at
        if frame := min(frame, self._seeks_to):
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            landed = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            if 0 <= landed <= frame:
                return landed
        self._cap.release()
        self._cap = self._capture()
        return 0

    def _read_sorted(self, indices: np.ndarray, each=None) -> np.ndarray:
        # Decode forward from the first wanted frame, or from where the seek to it landed before it.
        out, pos = FrameBuffer(indices, each), self._seek(int(indices[0]))
        self._at = None  # until the reads below are done
        for i in indices:
            while pos <= i:
                if _grab(self._cap, self._tries) is None:
                    raise video_error(self.path, "decode error", f"frame {i} could not be decoded" + (
                        f": the decode towards it stopped at frame {pos}" if pos < i else ""))
                pos += 1
            ok, frame = self._cap.retrieve()
            if not ok:  # (OpenCV says no why: a colour matrix FFmpeg cannot convert is the PyAV reader's refusal)
                if refusal := colour_refusal(self._name):
                    raise video_error(self.path, "unreadable", refusal)
                raise video_error(self.path, "decode error", f"frame {i} could not be decoded")
            out.put(i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        self._at = pos
        return out.frames

    def _release(self) -> None:
        with self._lock:
            self._cap.release()


def _opencv_capture(name: str, threads: int, path: str) -> cv2.VideoCapture:
    """OpenCV's FFmpeg capture of the file ``name`` (not read as a protocol: open_container), decoding on ``threads``
    (OpenCV's default: every core, in each loader worker); a VideoError naming it as ``path`` where it does not open
    (OpenCV says not why: a file gone since it was looked at is 'missing', as the count's own capture of it finds; one
    this user may no longer reach is 'unreadable', with why: :func:`~mme.utils.why_absent`)."""
    cap = cv2.VideoCapture(absolute_path(name), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not cap.isOpened():
        why = why_absent(name)
        raise video_error(path, *(("missing", GONE) if why == MISSING else
                                  ("unreadable", why or "OpenCV cannot open it")))
    return cap


def _grab(cap: cv2.VideoCapture, tries: int) -> int | None:
    """Grab the capture's next frame in up to ``tries`` grabs: how many failed before it, None where all did."""
    for failed in range(tries):
        if cap.grab():
            return failed
    return None


def _frame_number(cap: cv2.VideoCapture, fps: float) -> int:
    """The frame number OpenCV's seek gives the frame the capture grabbed last: its timestamp from the stream's start
    (CAP_PROP_POS_MSEC; 0 where it has none) times the frame rate, rounded as OpenCV rounds it."""
    return int(cap.get(cv2.CAP_PROP_POS_MSEC) * fps / 1000 + 0.5)


def _seeks_to(header: int, count: int, failed_at: int | None, mistimed_at: int | None, mpeg_stream: bool) -> int:
    """The last frame an OpenCV capture's seek (CAP_PROP_POS_FRAMES) is trusted to land on, given the container header's
    frame count (CAP_PROP_FRAME_COUNT), the frames grabbed, the first failed grab, the first frame whose timestamp is
    not where its index puts it (:func:`_opencv_count`) and whether the file is an MPEG program or transport stream
    (:func:`~mme.data.pyav_reader.mpeg_program_or_transport_stream`). None is trusted in those: though every frame's
    timestamp read straight through is its index over the frame rate, a seek there lands 1 to 3 frames from the frame it
    says (MPEG-2 in a .mpg or .vob, frames 30 and 60 of a 120-frame .mpg; MPEG-1 in a .mpg; MPEG-2 in a .ts, a reused
    reader's frames 12, 13, 17): 0, each read decoding from the start or on from where the read before left the capture.
    Elsewhere, OpenCV's seek to frame n seeks to the time n over the frame rate, and takes the frame it lands on for the
    one its timestamp gives (:func:`_frame_number`, less the first frame's), counting on from it by grabs: it lands on
    the frame it says only where frames' timestamps are their indices over the frame rate. At and past a frame whose
    timestamp is elsewhere (a variable-rate file, or one with gaps in its timestamps; an MP4 whose packets without a
    picture take timestamps; the damaged part of a file), a seek lands on another frame than it says, or not where
    asked: the frame before it at most. A frame without a timestamp (the last of an MPEG-4 AVI with B-frames) counts as
    timed at 0, and so is the last trusted. A header counting other frames than there are is no matter where the
    timestamps are right (an MKV whose AAC track outlasts its video by its priming and padding counts 301 for 300, and
    seeks right). What this catches among the files measured: docs/data.md. Where the header's count is under 2 (an
    AVI whose header was never finalised, a WebM written live, without duration) OpenCV does not seek at all, though
    it says it did: none is trusted, 0, a read from the start. Past a grab that failed where frames followed, a seek
    lands on another frame than it says, or where the decode on fails: the failed grab's frame at most."""
    if header < 2 or mpeg_stream:
        return 0
    return min(at for at in (count, failed_at, mistimed_at) if at is not None)


@functools.lru_cache(maxsize=4096)
def _opencv_count(file: VersionOfFile, threads: int) -> tuple[int, int | None, int, str]:
    """Frames by grabbing them all (CAP_PROP_FRAME_COUNT is an estimate from the container header), up to
    :data:`GRAB_TRIES` failed grabs in a row; the frame at which a grab first failed and frames followed (None where
    none did); the last frame a seek is trusted to land on (:func:`_seeks_to`, from the container's kind by the file's
    first bytes and each frame's timestamp as the grabs go); and why the file is refused where one did ('' where not).
    OpenCV says nothing of why a grab failed: damage in the middle of the file (each frame after it would be read at
    another index), or what FFmpeg's sequential decode passes over (:func:`~mme.data.pyav_reader.decoded_count`), the
    cut end of a file, after which the decoder's flush gives the frames it held for reordering, or a packet without a
    picture. So that decode is asked: the count stands where it gives as many frames. It is asked too where the grabs
    end GRAB_TRIES // 2 or more frames before the header's count (damage over more than GRAB_TRIES packets in
    a row ends them). Cached by
    :class:`~mme.utils.VersionOfFile`: one file however named is counted once, a file replaced keeping its size and
    mtime (``cp -p``) again."""
    cap = _opencv_capture(file.name, threads, file.path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    count, failed_at, mistimed_at = 0, None, None
    while (failed := _grab(cap, GRAB_TRIES)) is not None:
        if failed and failed_at is None:
            failed_at = count
        if count == 0:
            first = _frame_number(cap, fps)
        elif mistimed_at is None and _frame_number(cap, fps) - first != count:
            mistimed_at = count
        count += 1
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    seeks_to = _seeks_to(header, count, failed_at, mistimed_at, mpeg_program_or_transport_stream(file.path))
    if failed_at is not None:
        how = f"OpenCV's decode failed at frame {failed_at} and went on after it"
    elif header - count >= GRAB_TRIES // 2:  # grabs that ended on damage over GRAB_TRIES packets in a row, frames
        # the header counts; a header estimated from the duration counts a few more than there are (an MKV whose AAC
        # track outlasts its video: 1-7), which would cost a decode of the whole file for nothing
        how = f"OpenCV's decode ended at frame {count}, where the container's header counts {header} frames"
    else:
        return count, None, seeks_to, ""
    try:
        frames = decoded_count(file.path)
    except VideoError as e:
        return count, failed_at, seeks_to, f"{how}; {e.detail}"
    if frames != count:
        return count, failed_at, seeks_to, f"{how}: {count} frames, where FFmpeg's decode from the start gives {frames}"
    return count, failed_at, seeks_to, ""


class _DecordReader(VideoReader):
    """decord, when installed (optional; unmaintained upstream). It bundles its own FFmpeg: imported before PyAV
    it can shadow PyAV's codecs, so it is imported only here, on first use."""

    def __init__(self, path: str, threads: int = 0):
        if missing := _decord_missing():
            raise VideoError(f"{path}: {missing}")
        import decord

        self.path = path
        try:
            self._vr = decord.VideoReader(absolute_path(path), num_threads=threads)
        except (decord.DECORDError, RuntimeError) as e:  # decord raises RuntimeError for files it cannot open
            raise video_error(path, "unreadable", e) from e
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        H, W = self._vr[0].shape[:2]
        self.size = (int(W), int(H))

    def _read_sorted(self, indices: np.ndarray, each=None) -> np.ndarray:
        frames = self._vr.get_batch(indices.tolist()).asnumpy()  # decord decodes the batch whole
        if each is None:
            return frames
        out = FrameBuffer(indices, each)
        for i, frame in zip(indices, frames):
            out.put(int(i), frame)
        return out.frames
