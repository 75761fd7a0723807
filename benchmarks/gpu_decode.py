"""Decoding on the GPU through PyAV (FFmpeg's NVDEC, its CUDA hwaccel) against PyAV's CPU decode: what an optional
GPU decoding backend would save the loader workers (issue #20, item 3), and whether its frames are the CPU's.

    python benchmarks/gpu_decode.py                 # the bench video (340x256 H.264, 300 frames), GPU 0
    python benchmarks/gpu_decode.py --video V --device 1 --repeat 5 --json out.json

PyAV's wheels (18.x) carry FFmpeg's CUDA hardware device. Frames decoded on the GPU come back to system memory as
NV12 (8-bit 4:2:0; P010 for 10-bit). Converted to RGB straight from NV12 they are not the CPU decode's frames even
where the decode is bit-exact: swscale converts NV12 by another path than the yuv420p the CPU decoder gives.
NV12 -> yuv420p is an exact copy of the planes, after which the same conversion gives the same bytes. The script
measures both on the CPU first (CPU-decoded frames converted to NV12 and back: ``simulated``), then, where FFmpeg
can open a CUDA device, on the GPU's own frames. Per pass, one sequential decode of the whole file on one thread:
CPU time (``time.process_time``, this process) and wall time per frame; the first GPU open, which makes the CUDA
context, is timed apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available
from av.video.reformatter import VideoReformatter

from mme.data.bench import generated_video
from mme.data.pyav_reader import rgb24
from mme.utils import atomic_write_text, cpu_name


def decode(path: str, hwaccel: HWAccel | None, convert) -> tuple[list[np.ndarray], float, float, bool]:
    """Every frame of one sequential decode on one thread, each through ``convert(frame)``; (frames, CPU s, wall s,
    whether the decoder ran on the device)."""
    c0, w0 = time.process_time(), time.perf_counter()
    with av.open(path, hwaccel=hwaccel) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        frames = [convert(frame) for frame in container.decode(stream)]
        on_device = stream.codec_context.is_hwaccel
    return frames, time.process_time() - c0, time.perf_counter() - w0, on_device


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(np.int16) - y).max()) for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=None, help="video to decode (default: the bench's 340x256 H.264)")
    ap.add_argument("--device", default="0", help="CUDA device index")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes of each decoder (the best is kept)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(args.video or generated_video(Path(tmp)))
        rgb, planar = VideoReformatter(), VideoReformatter()

        def to_rgb(frame: av.VideoFrame) -> np.ndarray:  # the reader's conversion of a GPU's frames
            return rgb24(frame, rgb, planar)

        def direct(frame: av.VideoFrame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24")

        cpu = [decode(path, None, to_rgb) for _ in range(args.repeat)]
        ref = cpu[0][0]
        nv12 = VideoReformatter()
        simulated = decode(path, None, lambda f: nv12.reformat(f, format="nv12"))[0]
        out = {"cpu": cpu_name(), "video": path, "frames": len(ref), "av": av.__version__,
               "cpu_decode_ms_per_frame": {"cpu": 1e3 * min(c for _, c, _, _ in cpu) / len(ref),
                                           "wall": 1e3 * min(w for _, _, w, _ in cpu) / len(ref)},
               "simulated": {"nv12_direct_max_diff": max_diff([direct(f) for f in simulated], ref),
                             "nv12_via_yuv420p_max_diff": max_diff([to_rgb(f) for f in simulated], ref)}}
        print(f"gpu_decode | {out['cpu']} | {path}: {len(ref)} frames | PyAV {av.__version__}")
        print(f"CPU decode, one thread: {out['cpu_decode_ms_per_frame']['cpu']:.2f} ms of CPU per frame "
              f"({out['cpu_decode_ms_per_frame']['wall']:.2f} wall)")
        print(f"CPU frames as NV12 and back (simulated): RGB straight from NV12 up to "
              f"{out['simulated']['nv12_direct_max_diff']} levels off, through yuv420p "
              f"{out['simulated']['nv12_via_yuv420p_max_diff']}")
        hw = HWAccel("cuda", device=args.device, allow_software_fallback=False, options={"primary_ctx": "1"})
        try:
            if "cuda" not in hwdevices_available():
                raise RuntimeError(f"this PyAV's FFmpeg has no CUDA device type ({hwdevices_available()})")
            t0 = time.perf_counter()
            first = decode(path, hw, direct)
            out["first_open_s"] = time.perf_counter() - t0
        except (av.error.FFmpegError, OSError, RuntimeError, NotImplementedError) as e:
            out["gpu"] = f"skipped: no CUDA device for FFmpeg ({e})"
            print(out["gpu"])
        else:
            gpu = [decode(path, hw, to_rgb) for _ in range(args.repeat)]
            frames, on_device = gpu[0][0], gpu[0][3]
            out["gpu"] = {"on_device": on_device, "frames": len(frames),
                          "ms_per_frame": {"cpu": 1e3 * min(c for _, c, _, _ in gpu) / len(frames),
                                           "wall": 1e3 * min(w for _, _, w, _ in gpu) / len(frames)},
                          "exact_frames": sum(np.array_equal(a, b) for a, b in zip(frames, ref)),
                          "via_yuv420p_max_diff": max_diff(frames, ref) if len(frames) == len(ref) else None,
                          "direct_max_diff": max_diff(first[0], ref) if len(first[0]) == len(ref) else None}
            g = out["gpu"]
            print(f"GPU decode (on the device: {on_device}), first open {out['first_open_s']:.2f} s: "
                  f"{g['ms_per_frame']['cpu']:.2f} ms of CPU per frame ({g['ms_per_frame']['wall']:.2f} wall), "
                  f"{out['cpu_decode_ms_per_frame']['cpu'] / g['ms_per_frame']['cpu']:.1f}x less CPU")
            print(f"its frames: {g['frames']} ({len(ref)} on the CPU), {g['exact_frames']} equal to the CPU's; "
                  f"max difference through yuv420p {g['via_yuv420p_max_diff']}, straight from NV12 "
                  f"{g['direct_max_diff']}")
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
