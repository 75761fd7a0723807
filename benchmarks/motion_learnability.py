"""How fast does a from-scratch tiny ViT learn to *see* motion? Two experiments behind docs/results.md.

``ideal``: supervised regression of a whole-frame velocity (integer px per frame, -3..3) from clips of
Gaussian-blurred noise, generated in memory (no video, no flow). ``--contrast`` scales the texture (std in
normalised input units) and ``--offset`` adds a random per-clip colour (std in the same units), which is what
separates the faint two-colour textures of ``mme synth`` from a clean pattern.

    python benchmarks/motion_learnability.py ideal --steps 300                       # contrast 1, no offset
    python benchmarks/motion_learnability.py ideal --steps 150 --contrast 0.25 --offset 1

``bank``: masked pre-training of a recipe from a bank of K augmented views per training video, decoded and
with targets computed once (so the loop is compute-bound: ~5x the clips/s of the streaming pipeline on a
2-core CPU), printing each loss term next to its mean-prediction level and, every ``--probe-every`` steps, the
demo's linear probe and kNN on ``val``/``test`` of the same folder.

    mme synth /tmp/syn --classes 8 --videos-per-class 40
    python benchmarks/motion_learnability.py bank /tmp/syn --recipe tiny_cpu_mme --steps 1000 --batch 16
    python benchmarks/motion_learnability.py bank /tmp/syn --recipe tiny_cpu_mme target.patch_norm=false

Both print the CPU and thread count they ran on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mme.config import load_config
from mme.train.config import PretrainConfig
from mme.train.precision import cpu_name


def shifted_noise(batch: int, size: int, frames: int, blur: float, contrast: float, offset: float,
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``(B, 3, T, size, size)`` of one noise image translated by an integer velocity ``(B, 2)``."""
    pad = 3 * frames
    side = size + 2 * pad
    n = torch.randn(batch * 3, 1, side, side, generator=g)
    k = torch.exp(-torch.arange(-8, 9.0) ** 2 / (2 * blur ** 2))
    k = k / k.sum()
    n = F.conv2d(F.conv2d(n, k.view(1, 1, 1, -1), padding=(0, 8)), k.view(1, 1, -1, 1), padding=(8, 0))
    n = n.reshape(batch, 3, side, side)
    n = n / n.std() * contrast + torch.randn(batch, 3, 1, 1, generator=g) * offset
    v = torch.randint(-3, 4, (batch, 2), generator=g)
    clips = torch.stack([torch.stack([n[b, :, pad + v[b, 1] * t: pad + v[b, 1] * t + size,
                                       pad + v[b, 0] * t: pad + v[b, 0] * t + size] for t in range(frames)], 1)
                         for b in range(batch)])
    return clips, v.float()


def run_ideal(args) -> None:
    from mme.models.vit import VisionTransformer

    cfg = load_config(PretrainConfig, args.recipe, args.overrides).model
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    encoder, head = VisionTransformer(cfg), torch.nn.Linear(cfg.embed_dim, 2)
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=args.lr)
    val_x, val_y = shifted_noise(64, cfg.img_size, cfg.num_frames, args.blur, args.contrast, args.offset, g)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = shifted_noise(args.batch, cfg.img_size, cfg.num_frames, args.blur, args.contrast, args.offset, g)
        loss = F.mse_loss(head(encoder(x).mean(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                val = F.mse_loss(head(encoder(val_x).mean(1)), val_y).item()
            print(f"step {step}  {time.perf_counter() - t0:.0f}s  train {loss.item():.3f}  held-out {val:.3f}  "
                  f"(predicting the mean: {val_y.var(0).mean().item():.3f})", flush=True)


def build_bank(cfg: PretrainConfig, views: int) -> dict:
    """``views`` augmented clips per training video, with their targets (the dataset's epochs 0..views-1)."""
    from mme.data.dataset import PretrainDataset, collate
    from mme.motion.targets import make_target_fn

    target_fn = make_target_fn(cfg.target, cfg.model)
    ds = PretrainDataset(cfg.data, target_fn, target_fn.track_length, seed=0)
    videos, targets, valid = [], {}, {}
    for epoch in range(views):
        ds.set_epoch(epoch)
        for b in torch.utils.data.DataLoader(ds, batch_size=16, num_workers=cfg.data.num_workers, collate_fn=collate):
            videos.append(b["video"].half())
            for name, t in b["targets"].items():
                targets.setdefault(name, []).append(t)
            for name, v in b["valid"].items():
                valid.setdefault(name, []).append(v)
    return {"video": torch.cat(videos), "targets": {n: torch.cat(t) for n, t in targets.items()},
            "valid": {n: torch.cat(v) for n, v in valid.items()}}


def run_bank(args) -> None:
    from mme.demo import _probe, decode_probe_clips
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import head_specs, step_targets
    from mme.train.optim import build_optimizer, cosine_schedule

    root = Path(args.root)
    cfg = load_config(PretrainConfig, args.recipe, [f"data.list_file={root / 'train.txt'}", f"data.root={root}",
                                                    *args.overrides])
    t0 = time.perf_counter()
    bank = build_bank(cfg, args.views)
    n = len(bank["video"])
    print(f"bank: {n} clips in {time.perf_counter() - t0:.0f}s", flush=True)
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
    reduce = {s.name: s.reduction for s in model.head_specs}
    for name, t in bank["targets"].items():  # the loss of always predicting the bank's mean target
        v = bank["valid"].get(name, torch.ones(t.shape[:2])).float()
        t = t.float()
        mean = (t * v[..., None]).sum((0, 1)) / v.sum()
        err = (t - mean) ** 2
        err = err.mean(-1) if reduce[name] == "mean" else err.sum(-1)
        print(f"target {name}: {t.shape[-1]} dims, mean-prediction loss {(err * v).mean().item():.4f}")
    clips = decode_probe_clips(cfg.data, {s: root / f"{s}.txt" for s in ("train", "val", "test")})
    print("random init", _probe(model.encoder, clips, "cpu"), flush=True)
    model.train()
    opt = build_optimizer(model, cfg.optim, torch.device("cpu"))
    peak, final = cfg.optim.scaled_lr(args.batch)
    warmup = cfg.optim.warmup_steps if cfg.optim.warmup_steps is not None else 20
    g = torch.Generator().manual_seed(0)
    history, t0 = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = cosine_schedule(step - 1, args.steps, warmup, peak, final)
        idx = torch.randint(0, n, (args.batch,), generator=g)
        video = bank["video"][idx].float()
        targets = {k: t[idx] for k, t in bank["targets"].items()}
        targets.update(step_targets(video, cfg.target, cfg.model))
        loss, _, terms = model(video, model.make_mask(args.batch, g), targets,
                               {k: v[idx] for k, v in bank["valid"].items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
        opt.step()
        history.append({k: v.item() for k, v in terms.items()})
        if step % 100 == 0:
            last = {k: float(np.mean([h[k] for h in history[-100:]])) for k in history[-1]}
            print(f"step {step}  {time.perf_counter() - t0:.0f}s  "
                  + "  ".join(f"{k} {v:.4f}" for k, v in last.items()), flush=True)
        if args.probe_every and step % args.probe_every == 0:
            print(f"probe at step {step}", _probe(model.encoder, clips, "cpu"), flush=True)
            model.train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="experiment", required=True)
    ideal = sub.add_parser("ideal")
    ideal.add_argument("--contrast", type=float, default=1.0)
    ideal.add_argument("--offset", type=float, default=0.0)
    ideal.add_argument("--blur", type=float, default=1.5)
    ideal.add_argument("--lr", type=float, default=3e-4)
    bank = sub.add_parser("bank")
    bank.add_argument("root", help="a folder made by `mme synth` (train/val/test lists)")
    bank.add_argument("--views", type=int, default=4, help="augmented clips per training video")
    bank.add_argument("--probe-every", type=int, default=500)
    for q in (ideal, bank):
        q.add_argument("--recipe", default="tiny_cpu_mme")
        q.add_argument("--steps", type=int, default=300)
        q.add_argument("--batch", type=int, default=16)
        q.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    args, extra = p.parse_known_args()  # key=value overrides may follow the options
    unknown = [e for e in extra if "=" not in e or e.startswith("-")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides += extra
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32", flush=True)
    (run_ideal if args.experiment == "ideal" else run_bank)(args)


if __name__ == "__main__":
    main()
