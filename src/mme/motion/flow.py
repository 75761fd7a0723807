"""Optical flow of one frame pair behind one interface, with optional camera-motion compensation.

Methods: OpenCV DIS (``dis`` = preset MEDIUM; the default ``dis-balanced``: MEDIUM with sparser patches and fewer
iterations; ``dis-fast`` and ``dis-ultrafast``: a quarter of the resolution), Farneback, TV-L1 when the
opencv-contrib build provides ``cv2.optflow`` (0.5 s per pair: offline only), and ``torch-lk``
(:mod:`mme.motion.torch_flow`), which online targets run batched in the training step on the accelerator. Track
accuracy, time and target information of each: ``mme bench flow`` (docs/performance.md).
Compensation follows improved dense trajectories (mme-method.md §7.2) without SURF: correspondences sampled
from the flow itself plus ORB matches, a RANSAC homography (1 px), used only with enough inliers; frame b is
warped onto frame a and the flow recomputed, so what is left is the motion relative to the camera.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mme.errors import ConfigError
from mme.motion.torch_flow import grey, lk_flow
from mme.utils import opencv_settings

DIS_PRESETS = {"dis": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "dis-balanced": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
               "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}
DIS_SETTINGS = {"dis-balanced": {"PatchStride": 5, "GradientDescentIterations": 12}}
"""Settings over a preset (OpenCV's DIS setters, set<Name>): ``dis-balanced`` is MEDIUM (finest scale 1, 8-px
patches at stride 3, 25 descent and 5 refinement iterations) with patches at stride 5 and 12 descent iterations."""
STEP_FLOWS = ("torch-lk",)
"""Flows that online targets compute in the training step, batched on its device, instead of in the data workers."""
METHODS = (*DIS_PRESETS, "farneback", "tvl1", *STEP_FLOWS)
DEFAULT_FLOW = "dis-balanced"
"""The flow of the targets and the track cache unless configured: of the methods that keep the flow's detail
inside a patch (PatchStd's information), the best accuracy per ms (`mme bench flow`, docs/performance.md): MEDIUM's
step error within 4 % at 0.6x its CPU per pair. The quarter-resolution presets cost less but lose that detail."""


class _PerThread(threading.local):
    """The OpenCV objects of this thread (:func:`_engine`'s, :func:`_orb_matches`'): one object's buffers are not
    safe to share between threads, which OpenCV runs without the GIL (two threads tracking videos of one size gave
    tracks up to 17 px off, or crashed the process)."""

    def __init__(self):
        self.engines: OrderedDict[tuple, object] = OrderedDict()
        self.orb: dict[int, tuple[object, object]] = {}


_THREAD = _PerThread()

ENGINES_KEPT = 16
"""The most flow engines a thread keeps, the least recently used let go past it (about 4 MiB each at `mme extract`'s
224-px working size, 12 MiB at 640x360): an extraction tracks each video at its own size, so a folder of many sizes
would otherwise add one for each for the worker's life (hundreds of MiB over a few hundred sizes). One made again
costs about one flow."""


def flow_available(method: str) -> bool:
    """Whether this OpenCV build has ``method``: TV-L1 needs the opencv-contrib build (``cv2.optflow``)."""
    return method != "tvl1" or hasattr(cv2, "optflow")


def require_flow(method: str, key: str = "target.flow") -> None:
    """Refuse a flow this OpenCV build lacks, naming the setting ``key`` that asks for it."""
    if not flow_available(method):
        raise ConfigError(f"{key}='tvl1' needs the opencv-contrib build (cv2.optflow): both wheels install cv2, so "
                          "swap them (pip uninstall -y opencv-python-headless opencv-contrib-python-headless, then "
                          "pip install opencv-contrib-python-headless; a later pip install of mme's requirements "
                          "brings the plain wheel back), or use 'dis'")


def _engine(method: str, shape: tuple[int, ...]):
    """One flow object per process, thread (:class:`_PerThread`), method and frame size (the last
    :data:`ENGINES_KEPT` used): DIS allocates its pyramids
    once and reuses them, but after frames of another size it returns other flow for the same frames (up to 0.1 px),
    so an engine only ever sees one size; and its first flow differs from its later ones for the same frames (0.04 px
    in the test), so a new engine computes one flow of blank frames first. The flow is a function of the frames
    alone."""
    engines, key = _THREAD.engines, (os.getpid(), method, shape)
    if key in engines:
        engines.move_to_end(key)
    else:
        if len(engines) >= ENGINES_KEPT:
            engines.popitem(last=False)
        if method in DIS_PRESETS:
            engines[key] = cv2.DISOpticalFlow_create(DIS_PRESETS[method])
            for name, value in DIS_SETTINGS.get(method, {}).items():
                getattr(engines[key], f"set{name}")(value)
            blank = np.zeros(shape[:2], np.uint8)
            engines[key].calc(blank, blank, None)
        elif method == "tvl1":
            require_flow(method)
            engines[key] = cv2.optflow.DualTVL1OpticalFlow_create()
        else:
            raise ConfigError(f"target.flow: unknown optical-flow method {method!r}; choose one of {list(METHODS)}")
    return engines[key]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def raw_flow(a: np.ndarray, b: np.ndarray, method: str = DEFAULT_FLOW) -> np.ndarray:
    """Flow from frame ``a`` to frame ``b`` (uint8 RGB ``(H, W, 3)`` or grey): float32 ``(H, W, 2)`` (dx, dy) px."""
    if method == "torch-lk":  # the step's grey frames (torch_flow.grey), so both paths see the same pixels
        pair = torch.from_numpy(np.stack([a, b]))
        pair = grey(pair) if pair.ndim == 4 else pair.float()
        return lk_flow(pair[:1], pair[1:])[0].permute(1, 2, 0).contiguous().numpy()
    ga, gb = _gray(a), _gray(b)
    if method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        flow = _engine(method, ga.shape).calc(ga, gb, None)
    return flow.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Compensation:
    """Camera-motion compensation settings (improved dense trajectories, without SURF).

    sample_stride: px between flow-sampled correspondences. orb: also match ORB keypoints.
    min_matches / min_inliers / min_inlier_ratio: the homography is used only with more matches and inliers than
    the first two and at least that share of inliers (the paper's extractor uses > 50 matches and > 25 inliers; the
    share guards against a homography fitted to a minority).
    """

    sample_stride: int = 8
    orb: bool = True
    min_matches: int = 50
    min_inliers: int = 25
    min_inlier_ratio: float = 0.25
    ransac_px: float = 1.0


def _orb_matches(ga: np.ndarray, gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found, key = _THREAD.orb, os.getpid()
    if key not in found:
        found[key] = (cv2.ORB_create(nfeatures=500), cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True))
    orb, matcher = found[key]
    ka, da = orb.detectAndCompute(ga, None)
    kb, db = orb.detectAndCompute(gb, None)
    if da is None or db is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    matches = matcher.match(da, db)
    pa = np.array([ka[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 2)
    pb = np.array([kb[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 2)
    return pa, pb


def camera_homography(a: np.ndarray, b: np.ndarray, flow: np.ndarray,
                      comp: Compensation = Compensation()) -> np.ndarray | None:
    """Homography ``(3, 3)`` mapping frame-a pixels to frame-b pixels for the camera, or None if unreliable."""
    H, W = flow.shape[:2]
    s = comp.sample_stride
    ys, xs = np.mgrid[s // 2:H:s, s // 2:W:s]
    pa = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)  # (P, 2) flow-sampled correspondences
    pb = pa + flow[ys.ravel(), xs.ravel()]
    if comp.orb:
        oa, ob = _orb_matches(_gray(a), _gray(b))
        pa, pb = np.concatenate([pa, oa]), np.concatenate([pb, ob])
    if len(pa) <= comp.min_matches:
        return None
    hom, inliers = cv2.findHomography(pa, pb, cv2.RANSAC, comp.ransac_px)
    if hom is None:
        return None
    n_in = int(inliers.sum())
    if n_in <= comp.min_inliers or n_in < comp.min_inlier_ratio * len(pa):
        return None
    return hom


def pair_flow(a: np.ndarray, b: np.ndarray, method: str = DEFAULT_FLOW,
              compensation: Compensation | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Flow from ``a`` to ``b`` and the camera homography used (None: none).

    Without compensation (or when no reliable homography is found) the flow is the plain ``a -> b`` flow.
    With one, frame b is warped into frame a's camera (``b(H x)``) and the flow recomputed: the result is the
    residual motion ``r`` and a point ``x`` of frame a lands at ``H (x + r(x))`` in frame b.

    Computed with OpenCV's IPP on, its default, whatever the calling thread set (``cv2.ipp.setUseIPP`` is per
    thread, and DIS flow and ``warpPerspective`` round otherwise without it), so the targets of a process that
    turned it off are those of ``mme extract`` in a fresh one; the caller's switch is put back.
    """
    with opencv_settings(ipp=True):
        flow = raw_flow(a, b, method)
        if compensation is None:
            return flow, None
        hom = camera_homography(a, b, flow, compensation)
        if hom is None:
            return flow, None
        H, W = flow.shape[:2]
        warped = cv2.warpPerspective(b, hom, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE)
        return raw_flow(a, warped, method), hom
