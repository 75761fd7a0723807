"""How fast does a from-scratch tiny ViT learn to *see* motion? Three experiments behind docs/experiments.md.

``ideal``: supervised regression of a whole-frame velocity (integer px per frame, -3..3) from clips of
Gaussian-blurred noise, generated in memory (no video, no flow). ``--contrast`` scales the texture (std in
normalised input units) and ``--offset`` adds a random per-clip colour (std in the same units), which is what
separates the faint two-colour textures of ``mme synth`` from a clean pattern.

    python benchmarks/motion_learnability.py ideal --steps 300                       # contrast 1, no offset
    python benchmarks/motion_learnability.py ideal --steps 150 --contrast 0.25 --offset 1

``bank``: pre-training's own setup and loop on a bank of K augmented views per training video, decoded and
with targets computed once by the run's dataset (so the loop is compute-bound: ~5x the clips/s of the
streaming pipeline on a 2-core CPU), printing each loss term next to the loss of predicting the mean target
and, every ``--probe-every`` steps, the demo's linear probe and kNN on ``val``/``test`` of the same folder.

    mme synth /tmp/syn --classes 8 --videos-per-class 40
    python benchmarks/motion_learnability.py bank /tmp/syn --recipe tiny_cpu_mme --steps 1000 --batch 16
    python benchmarks/motion_learnability.py bank /tmp/syn --recipe tiny_cpu_mme target.patch_norm=false

``--shuffle-targets`` (the config key `target.shuffled=true`): a control. Each clip is trained on the targets of
the previous clip of its batch (the first on the last's), so the targets keep their statistics but carry nothing
about the input: the probe then shows what pre-training does to an encoder when the loss gives it no signal.

``clips``: the same supervised loop as ``ideal`` on real decoded clips: one centred clip per video of a
``mme synth`` folder (the demo's probe clips), classifying its motion class; ``model.input_norm=clip``
standardises each clip first.

    mme synth /tmp/pan --classes 4 --videos-per-class 240 --splits 0.9 0 0.1 --motion scene --texture high_contrast
    python benchmarks/motion_learnability.py clips /tmp/pan --lr 1e-3 model.input_norm=clip

All print the CPU and thread count they ran on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mme.config import layered, load_config
from mme.data.transforms import normalize_clip
from mme.train.config import PretrainConfig
from mme.train.precision import choose_device
from mme.utils import cpu_name

DIRECTIONS = torch.tensor([[1, 0], [-1, 0], [0, -1], [0, 1]])  # right, left, up, down (as mme synth's classes)


def shifted_noise(batch: int, size: int, frames: int, blur: float, contrast: float, offset: float,
                  g: torch.Generator, classes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``(B, 3, T, size, size)`` of one noise image translated by an integer velocity: ``(B, 2)`` in
    -3..3 px/frame, or with ``classes`` one of 4 directions at 2 or 3 px/frame and the direction ``(B,)``."""
    pad = 3 * frames
    side = size + 2 * pad
    n = torch.randn(batch * 3, 1, side, side, generator=g)
    k = torch.exp(-torch.arange(-8, 9.0) ** 2 / (2 * blur ** 2))
    k = k / k.sum()
    n = F.conv2d(F.conv2d(n, k.view(1, 1, 1, -1), padding=(0, 8)), k.view(1, 1, -1, 1), padding=(8, 0))
    n = n.reshape(batch, 3, side, side)
    n = n / n.std() * contrast + torch.randn(batch, 3, 1, 1, generator=g) * offset
    label = torch.randint(0, 4, (batch,), generator=g)
    v = DIRECTIONS[label] * torch.randint(2, 4, (batch, 1), generator=g) if classes else \
        torch.randint(-3, 4, (batch, 2), generator=g)
    clips = torch.stack([torch.stack([n[b, :, pad + v[b, 1] * t: pad + v[b, 1] * t + size,
                                       pad + v[b, 0] * t: pad + v[b, 0] * t + size] for t in range(frames)], 1)
                         for b in range(batch)])
    return clips, (label if classes else v.float())


def fit_supervised(model_cfg, classes: int, draw, val: tuple[torch.Tensor, torch.Tensor], args) -> None:
    """Train the encoder + a linear head on mean-pooled tokens from scratch (AdamW, constant lr), ``draw(n)``
    giving each batch; print the held-out loss (and top-1 when ``classes``) every ``--eval-every`` steps.
    ``classes`` = 0: regress a 2-d velocity (MSE) instead."""
    from mme.models.vit import VisionTransformer

    dev = choose_device(args.device)
    torch.manual_seed(0)
    encoder = VisionTransformer(model_cfg).to(dev)
    head = torch.nn.Linear(model_cfg.embed_dim, classes or 2).to(dev)
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=args.lr)
    loss_fn = F.cross_entropy if classes else F.mse_loss
    val_x, val_y = (v.to(dev) for v in val)
    chance = f"chance {100 / classes:.1f} %" if classes else f"predicting the mean: {val_y.var(0).mean().item():.3f}"
    print(f"device {dev}, fp32, input_norm {model_cfg.input_norm}, {len(val_y)} held-out clips", flush=True)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = draw(args.batch)
        loss = loss_fn(head(encoder(x.to(dev)).mean(1)), y.to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0:
            with torch.no_grad():
                out = head(encoder(val_x).mean(1))
            val_text = f"held-out {loss_fn(out, val_y).item():.3f}" + \
                (f", top-1 {100 * (out.argmax(1) == val_y).float().mean().item():.1f} %" if classes else "")
            print(f"step {step}  {time.perf_counter() - t0:.0f}s  train {loss.item():.3f}  {val_text}  ({chance})",
                  flush=True)


def run_ideal(args) -> None:
    cfg = load_config(PretrainConfig, args.recipe, args.overrides).model
    g = torch.Generator().manual_seed(0)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return shifted_noise(n, cfg.img_size, cfg.num_frames, args.blur, args.contrast, args.offset, g, args.classify)

    val = draw(64)
    fit_supervised(cfg, 4 if args.classify else 0, draw, val, args)


def run_clips(args) -> None:
    """Supervised classification of a synth folder's decoded clips: one centred clip per video (the demo's probe
    clips), train list for training, test list held out."""
    from mme.demo import decode_probe_clips

    root = Path(args.root)
    cfg = load_config(PretrainConfig, args.recipe, args.overrides)
    clips = decode_probe_clips(cfg.data, {s: root / f"{s}.txt" for s in ("train", "test")})
    (tx, ty), val = ((normalize_clip(torch.cat([b["video"][:, 0] for b in bs])), torch.cat([b["label"] for b in bs]))
                     for bs in (clips["train"], clips["test"]))
    g = torch.Generator().manual_seed(0)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, len(ty), (n,), generator=g)
        return tx[i], ty[i]

    fit_supervised(cfg.model, int(max(ty.max(), val[1].max())) + 1, draw, val, args)


class Bank(torch.utils.data.Dataset):
    """``views`` augmented clips per training video with their targets, made once by the run's own dataset
    (its epochs 0..views-1); item ``(epoch, index)`` is view epoch % views, so pre-training's loop runs on it
    unchanged."""

    def __init__(self, data, views: int, workers: int):
        self.list_digest, self.content_digest = data.list_digest, data.content_digest  # what checkpoints record
        self.failure_codes = data.failure_codes
        self.trained_failures = data.failure_codes  # (its clips made before the run: no fetch ahead)
        self.items = [list(torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers,
                                                       sampler=[(epoch, i) for i in range(len(data))]))
                      for epoch in range(views)]  # items[view][video]

    def __len__(self) -> int:
        return len(self.items[0])

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return self.items[epoch % len(self.items)][i]

    def failure_counts(self) -> dict:
        return {}

    def note_trained(self, keys, read) -> None:
        """None to note: its clips were made before the run, every failure with them."""


def run_bank(args) -> None:
    """Pre-training's own setup and loop (lr/wd schedule, masks, loss, clipping, logging) on a precomputed bank."""
    from mme.demo import decode_probe_clips, probe_encoder
    from mme.train.loop import train
    from mme.train.pretrain import mean_prediction_loss, setup

    root = Path(args.root)
    cfg = load_config(PretrainConfig, args.recipe, layered([
        f"data.list_file={root / 'train.txt'}", f"data.root={root}", "data.num_workers=0",
        f"train.batch_size={args.batch}", f"train.steps={args.steps}", f"train.out_dir={args.out}",
        f"train.ckpt_every={args.steps}", "train.keep_last=1", "train.log_every=1", f"train.device={args.device}",
        f"target.shuffled={args.shuffle_targets}"], args.overrides))
    run = setup(cfg)
    print(f"device {run.device}, precision {run.precision}", flush=True)
    t0 = time.perf_counter()
    run.data = Bank(run.data, args.views, args.workers)
    print(f"bank: {args.views} views x {len(run.data)} videos in {time.perf_counter() - t0:.0f}s", flush=True)
    level = mean_prediction_loss(run.model, cfg, [it for view in run.data.items for it in view])
    print("loss of predicting the mean target:", {n: round(v, 4) for n, v in level.items() if n != "loss"},
          flush=True)
    clips = decode_probe_clips(cfg.data, {s: root / f"{s}.txt" for s in ("train", "val", "test")})
    print("random init", probe_encoder(run.model.encoder, clips, run.device), flush=True)
    every = args.probe_every or args.steps
    for stop in range(every, args.steps + every, every):
        cfg.train.stop_after = min(stop, args.steps)
        history = train(run).history
        for k in range(0, len(history), 100):
            chunk = history[k:k + 100]
            print(f"steps {chunk[0]['step']}-{chunk[-1]['step']}: " + "  ".join(
                f"{key} {np.mean([h[key] for h in chunk]):.4f}" for key in chunk[0] if key.startswith("loss_")),
                flush=True)
        print(f"probe at step {run.step}", probe_encoder(run.model.encoder, clips, run.device), flush=True)
        run.model.train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="experiment", required=True)
    ideal = sub.add_parser("ideal")
    ideal.add_argument("--contrast", type=float, default=1.0)
    ideal.add_argument("--offset", type=float, default=0.0)
    ideal.add_argument("--blur", type=float, default=1.5)
    ideal.add_argument("--classify", action="store_true",
                       help="classify 4 directions at 2-3 px/frame (cross-entropy) instead of regressing velocity")
    clips = sub.add_parser("clips")
    clips.add_argument("root", help="a folder made by `mme synth` (train/test lists)")
    bank = sub.add_parser("bank")
    bank.add_argument("root", help="a folder made by `mme synth` (train/val/test lists)")
    bank.add_argument("--views", type=int, default=4, help="augmented clips per training video")
    bank.add_argument("--probe-every", type=int, default=500)
    bank.add_argument("--workers", type=int, default=2, help="processes that build the bank")
    bank.add_argument("--out", default="runs/motion_learnability", help="the run's out dir (checkpoint, logs)")
    bank.add_argument("--shuffle-targets", action="store_true",
                      help="control: train every clip on the targets of the previous clip in its batch")
    for q in (ideal, clips):
        q.add_argument("--lr", type=float, default=3e-4)
        q.add_argument("--eval-every", type=int, default=50)
    for q in (ideal, clips, bank):
        q.add_argument("--recipe", default="tiny_cpu_mme")
        q.add_argument("--steps", type=int, default=300)
        q.add_argument("--batch", type=int, default=16)
        q.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
        q.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    args, extra = p.parse_known_args()  # key=value overrides may follow the options
    unknown = [e for e in extra if "=" not in e or e.startswith("-")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides += extra
    print(f"{cpu_name()}, {torch.get_num_threads()} threads", flush=True)
    {"ideal": run_ideal, "clips": run_clips, "bank": run_bank}[args.experiment](args)


if __name__ == "__main__":
    main()
