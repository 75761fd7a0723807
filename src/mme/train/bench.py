"""``mme bench train``: speed (and GPU memory) of the pre-training step on this machine.

    mme bench train                                   # ViT-S, 8x112², batch 4, pixel target, fp32 vs bf16
    mme bench train --preset base --img-size 224 --frames 16 --batch 32 --compile --checkpointing

Each variant (fp32 eager = the reference, bf16 where native or with --all-precisions, fp16 on CUDA, compiled,
activation checkpointing) runs the real step (forward under autocast, backward, clip, AdamW) on a random
clip; targets are the step-computed ones of --target plus random worker-side targets. Ratios are against the
fp32 eager reference measured in the same run.
"""

from __future__ import annotations

import time

import torch

from mme.config import from_dict
from mme.models.config import ModelConfig
from mme.models.mae import MaskedAutoencoder
from mme.models.vit import count_parameters
from mme.motion.targets import TargetConfig, head_specs, step_targets
from mme.train.loop import update
from mme.train.optim import OptimConfig, build_optimizer, set_schedule
from mme.train.precision import autocast, bf16_native, choose_device, make_scaler
from mme.train.pretrain import checkpoint_blocks
from mme.utils import atomic_write_json


def _variants(device: torch.device, all_precisions: bool, compiled: bool,
              checkpointing: bool) -> list[tuple[str, str, bool, bool]]:
    """(name, precision, compile, activation checkpointing); the first is the reference."""
    out = [("fp32 eager", "fp32", False, False)]
    if bf16_native(device) or all_precisions:
        out.append(("bf16 eager" + ("" if bf16_native(device) else " (emulated)"), "bf16", False, False))
    if device.type == "cuda" or all_precisions:
        out.append(("fp16 eager", "fp16", False, False))
    best = "bf16" if bf16_native(device) else "fp32"
    if compiled:
        out.append((f"{best} compiled", best, True, False))
    if checkpointing:
        out.append((f"{best} act. checkpointing", best, False, True))
    return out


def _measure(model_cfg: ModelConfig, target_cfg: TargetConfig, batch: int, precision: str, compile_: bool,
             checkpointing: bool, device: torch.device, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = MaskedAutoencoder(model_cfg, head_specs(target_cfg, model_cfg)).to(device)
    if checkpointing:
        checkpoint_blocks(model)
    step_model = torch.compile(model) if compile_ else model
    optimizer = build_optimizer(model, OptimConfig(), device)
    set_schedule(optimizer, 1e-4, 0.05)
    scaler = make_scaler(precision, device)
    c = model_cfg
    video = torch.randn(batch, 3, c.num_frames, c.img_size, c.img_size, device=device)
    worker = {h.name: torch.randn(batch, c.num_tokens, h.dim, device=device) for h in model.head_specs}
    valid = {n: torch.ones(batch, c.num_tokens, dtype=torch.bool, device=device) for n in worker}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        mask = model.make_mask(batch).to(device)
        targets = {**worker, **step_targets(video, target_cfg, model_cfg)}
        with autocast(precision, device):
            loss = step_model(video, mask, targets, valid)[0]
        scaler.scale(loss).backward()
        update(model, optimizer, scaler, None, True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    sec = (time.perf_counter() - tic) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"ms_per_step": 1000 * sec, "steps_per_s": 1 / sec, "clips_per_s": batch / sec, "peak_gib": mem}


def bench_train(preset: str = "small", img_size: int = 112, frames: int = 8, batch: int = 4,
                mask_ratio: float = 0.7, target: str = "pixel", device: str = "auto", steps: int = 5, warmup: int = 2,
                compiled: bool = False, checkpointing: bool = False, all_precisions: bool = False,
                threads: int | None = None, json_path: str | None = None) -> list[dict]:
    """``mme bench train``: time each variant (module docstring) and print it against fp32 eager (and write the
    rows to ``json_path``); returns the rows."""
    if threads:
        torch.set_num_threads(threads)
    dev = choose_device(device)
    model_cfg = from_dict(ModelConfig, {"preset": preset, "img_size": img_size, "num_frames": frames,
                                        "mask_ratio": mask_ratio})
    target_cfg = from_dict(TargetConfig, {"kind": target})
    params = count_parameters(MaskedAutoencoder(model_cfg, head_specs(target_cfg, model_cfg)))
    print(f"train step: ViT-{preset} ({params / 1e6:.1f}M params with decoder), {frames}x{img_size}²,"
          f" batch {batch}, mask {mask_ratio}, target {target}, device {dev}, "
          f"{torch.get_num_threads()} threads, bf16 native: {bf16_native(dev)}")
    rows = []
    for name, precision, compile_, ckpt in _variants(dev, all_precisions, compiled, checkpointing):
        r = _measure(model_cfg, target_cfg, batch, precision, compile_, ckpt, dev, steps, warmup)
        r = {"variant": name, **r, "ratio": r["clips_per_s"] / rows[0]["clips_per_s"] if rows else 1.0}
        rows.append(r)
        mem = f"  peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
        print(f"  {name:<28} {r['ms_per_step']:9.1f} ms/step {r['steps_per_s']:7.2f} steps/s "
              f"{r['clips_per_s']:8.2f} clips/s  x{r['ratio']:.2f} vs fp32 eager{mem}", flush=True)
    if json_path:
        atomic_write_json(json_path, {"device": str(dev), "preset": preset, "rows": rows})
    return rows
