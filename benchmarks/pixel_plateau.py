"""Why the pixel target stays at its mean-prediction level in `mme demo` (docs/results.md, "Why pixel and HOG
stay below a random encoder", and docs/experiments.md). Helpers for the experiments there:

``data``: the demo's dataset as these experiments measured it (``mme synth --preset demo --texture high_contrast
--objects 0``: 8 classes x 100 videos, 112², 40 frames, whole-view motion, splits 0.7/0.1/0.2, seed 0), as is or
with another texture, made in this process (single-threaded; it swaps synth's texture function here only).
``noise``: synth's high-contrast texture with its blur scale drawn from ``--scale`` px instead of 1.5-6. ``plaid``:
the sum of two gratings, each of random orientation, phase and a period drawn from ``--scale`` px, through the same
high-contrast colouring: a pattern whose every patch follows from its neighbours. Then pre-train on it with the
``bank`` loop:

    python benchmarks/pixel_plateau.py data /tmp/plaid --texture plaid --scale 10 30
    python benchmarks/motion_learnability.py bank /tmp/plaid --views 2 --probe-every 250 --steps 500 --batch 8 \\
        --recipe tiny_cpu_pixel model.input_norm=clip

``overfit``: fit the pixel MAE of a recipe to ONE fixed batch of training clips with fixed masks (AdamW, no
weight decay), printing the loss: whether the model and loss can fit pixels at all when the task is
memorisation.

``copy``: the same model on fresh *static* plaid clips at every step (every frame the same) with random
masking, so about half of the masked tokens are visible unchanged one tubelet away: whether it learns to copy.

``drift``: how far each pre-trained encoder of a demo seed folder moved from its initial weights (rebuilt from
the run's config and seed): the relative Frobenius distance over the weight matrices.

    python benchmarks/pixel_plateau.py overfit /tmp/plaid --steps 300 --lr 1e-3
    python benchmarks/pixel_plateau.py copy --steps 400 --lr 1e-3
    python benchmarks/pixel_plateau.py drift demo_out/seed0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mme.data import synth
from mme.data.transforms import normalize_clip
from mme.demo import DemoSettings
from mme.utils import cpu_name

MEASURED_DESIGN = {"texture": "high_contrast", "objects": 0}
"""The texture and distractors these experiments were measured with (the demo preset now draws dead leaves with 2
distractors; docs/experiments.md, "Natural-statistics textures and distractors")."""


def plaid(h: int, w: int, rng: np.random.Generator, periods: tuple[float, float], gratings: int = 2) -> np.ndarray:
    """The sum of ``gratings`` sinusoidal gratings (h, w): orientation, period (px) and phase drawn per grating."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = np.zeros((h, w), np.float32)
    for _ in range(gratings):
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(*periods)
        pattern += np.cos(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period
                          + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return pattern


def make_data(args) -> None:
    t0 = time.perf_counter()
    if args.texture is None:
        synth.generate_synth(args.out, preset="demo", **MEASURED_DESIGN)
        print(f"the demo's data: {args.out} in {time.perf_counter() - t0:.0f} s")
        return
    if args.scale is None:
        raise SystemExit("--texture needs --scale LO HI")
    lo, hi = args.scale

    def texture(h: int, w: int, rng: np.random.Generator, _name: str = "high_contrast") -> np.ndarray:
        pattern = plaid(h, w, rng, (lo, hi)) if args.texture == "plaid" else \
            synth.smooth_noise(h, w, rng, rng.uniform(lo, hi))
        return synth.two_colours(pattern, rng, "high_contrast")

    synth._texture = texture  # this process only: hence workers=1
    synth.generate_synth(args.out, preset="demo", workers=1, **MEASURED_DESIGN)
    print(f"{args.texture} textures, scale {lo}-{hi} px: {args.out} in {time.perf_counter() - t0:.0f} s")


def fit(model, cfg, batches, steps: int, lr: float) -> None:
    """AdamW without weight decay on ``batches(step) -> (video, mask)``, printing the mean loss every 50 steps."""
    from mme.motion.targets import step_targets

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(1, steps + 1):
        video, mask = batches(step)
        loss, _, _ = model(video, mask, step_targets(video, cfg.target, cfg.model))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"steps {step - 49}-{step}: loss {np.mean(losses[-50:]):.4f}", flush=True)


def overfit(args) -> None:
    from mme.config import layered, load_config
    from mme.train.config import PretrainConfig
    from mme.train.pretrain import setup

    root = Path(args.root)
    cfg = load_config(PretrainConfig, args.recipe, layered([
        f"data.list_file={root / 'train.txt'}", f"data.root={root}", "data.num_workers=0", "train.device=cpu",
        f"train.out_dir={args.out}", *DemoSettings().overrides], args.overrides))
    run = setup(cfg)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; recipe {args.recipe}, {args.batch} clips", flush=True)
    video = normalize_clip(torch.stack([run.data[i]["video"] for i in range(args.batch)]))
    mask = run.model.make_mask(args.batch, torch.Generator().manual_seed(0))
    fit(run.model, cfg, lambda step: (video, mask), args.steps, args.lr)


def copy(args) -> None:
    from mme.config import load_config
    from mme.data.transforms import to_video_tensor
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import head_specs
    from mme.train.config import PretrainConfig

    cfg = load_config(PretrainConfig, args.recipe, [*DemoSettings().overrides, "model.mask_type=random"])
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; recipe {args.recipe}, {args.batch} static clips per "
          f"step, random masking", flush=True)
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    size, frames = cfg.model.img_size, cfg.model.num_frames

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        textures = [synth.two_colours(plaid(size, size, rng, (10, 30)), rng, "high_contrast")
                    for _ in range(args.batch)]
        video = torch.stack([to_video_tensor(np.stack([t] * frames)) for t in textures])
        return video, model.make_mask(args.batch, g)

    fit(model, cfg, batches, args.steps, args.lr)


def drift(args) -> None:
    from mme.config import load_config
    from mme.models.checkpoint import load_encoder
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import head_specs
    from mme.train.checkpoint import list_checkpoints
    from mme.train.config import PretrainConfig

    for run_dir in sorted(p for p in Path(args.seed_dir).iterdir() if (p / "config.yaml").exists()):
        cfg = load_config(PretrainConfig, str(run_dir / "config.yaml"))
        torch.manual_seed(cfg.train.seed)  # as pre-training builds its model
        initial = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model)).encoder.state_dict()
        trained = load_encoder(list_checkpoints(run_dir)[-1]).state_dict()
        names = [k for k, w in initial.items() if w.dim() >= 2]
        moved = sum((trained[k].float() - initial[k].float()).square().sum() for k in names).sqrt()
        norm = sum(initial[k].float().square().sum() for k in names).sqrt()
        print(f"{run_dir.name}: the encoder's weight matrices moved {100 * moved / norm:.1f} % of their norm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="the demo's dataset, or the same with another texture")
    d.add_argument("out")
    d.add_argument("--texture", choices=("noise", "plaid"), help="default: the demo's own texture")
    d.add_argument("--scale", type=float, nargs=2, metavar=("LO", "HI"),
                   help="noise: blur scale (px); plaid: grating period (px); drawn uniformly per texture")
    d.set_defaults(func=make_data)
    o = sub.add_parser("overfit", help="fit one fixed batch with fixed masks")
    o.add_argument("root", help="a folder made by `mme synth` (its train list)")
    o.add_argument("--recipe", default="tiny_cpu_pixel")
    o.add_argument("--batch", type=int, default=8)
    o.add_argument("--steps", type=int, default=300)
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--out", default="runs/pixel_plateau")
    o.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    o.set_defaults(func=overfit)
    c = sub.add_parser("copy", help="fresh static plaid clips, random masking")
    c.add_argument("--recipe", default="tiny_cpu_pixel")
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--steps", type=int, default=400)
    c.add_argument("--lr", type=float, default=1e-3)
    c.set_defaults(func=copy)
    r = sub.add_parser("drift", help="how far each encoder of a demo seed folder moved from its initial weights")
    r.add_argument("seed_dir", help="e.g. demo_out/seed0")
    r.set_defaults(func=drift)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
