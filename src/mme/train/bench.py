"""``mme bench train``: speed, MFU (and GPU memory) of the pre-training step on this machine, against Hugging Face.

    mme bench train                                   # ViT-S, 8x112², batch 4, pixel target
    mme bench train --img-size 224 --frames 16 --mask-ratio 0.9 --batch 2     # the 16x224² step of issue #20
    mme bench train --preset base --img-size 224 --frames 16 --batch 32 --compile --checkpointing
    mme bench train --recipe tiny_cpu_pixel --profile           # the demo's model; where the step's time goes

Each variant (fp32 eager = the reference, bf16 where native or with --all-precisions, fp16 on CUDA, compiled,
activation checkpointing) runs the real step (forward under autocast, backward, clip, AdamW) on a random
clip, with the recipe's optim section (its AdamW groups and ``clip_grad``, printed in the header); every target of
--target is made in the step as in training: pixel / HOG from the clip, the motion targets (traj, shape: HOG
along the tracks, PatchStd) from random tracks and frames of the shapes data workers ship. With
the pixel target, ``transformers.VideoMAEForPreTraining`` (the peer) runs the same step in each eager
precision: the same sizes, tubelet, patch, mask kind and ratio, pixel target with norm_pix, SDPA attention, our
weights (so the same loss, checked before timing with the parameter and token counts), the same AdamW groups and
clipping, batch and clip (in its own ``(B, T, C, H, W)`` layout). The variants take turns for ``--rounds``
rounds of ``--steps`` steps each, and each reports its best round, so load from other jobs on the machine hits
all alike. Ratios are against our fp32 eager step, and ours against the peer's at each precision, measured in
the same run: of the best rounds, and (in brackets, ``*_in_rounds`` in the JSON) the median over rounds of each
round's own ratio, which holds better where the machine's speed drifts from round to round (a shared VM's AMX
ran at 667 to 2,219 GFLOP/s within two hours, docs/performance.md), with the lowest and highest of those rounds
(each round's in the JSON, ``*_rounds``; and beside each ms/step the spread of its rounds): the digits a figure
can be read to.

MFU: the step's FLOPs (:func:`mme.train.flops.step_flops`) per second over the matmul peak of the variant's
precision (:func:`mme.train.flops.matmul_peak`: the fastest of the operand layouts the layers' matmuls run), which
takes its turn in every round too (its best round; each round's in the JSON, ``peaks.<precision>.rounds``, and
printed as their min, median and max: where they differ by more than :data:`PEAK_SPREAD`, or with ``--rounds 1``,
the bench says that MFU is uncertain); the peer is credited with the same FLOPs (its rows' GFLOP/s, labelled
"(our FLOPs)", are our step's FLOPs over its time), though it embeds all the clip's patches, not only the visible
ones: its step, counted by torch's ``FlopCounterMode`` per 16x224² clip at mask 0.9, is 37.89 GFLOP at ViT-S
against our 34.57 (+9.6 %) and 104.2 at ViT-B against our 97.6 (+6.8 %), the masked patches' embedding and its
weight gradient, so its GFLOP/s and MFU read that much low.

Memory (CUDA): each variant's own peak, its weights, gradients, optimizer state and its step's activations, over
its warm-up steps (none with ``--warmup 0``), with what the variants built before it hold counted out.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from mme.config import from_dict, load_recipe, merge_layer
from mme.errors import MMEError, import_advice, memory_limit_said
from mme.models.config import ModelConfig
from mme.models.convert import HF_ALIASES, to_hf
from mme.models.convert_config import config_to_hf
from mme.models.mae import MaskedAutoencoder
from mme.models.masking import make_mask
from mme.models.vit import checkpoint_blocks, count_parameters
from mme.motion.targets import (
    KIND_ONCE,
    TargetConfig,
    batch_targets,
    head_specs,
    step_targets,
    token_geometry,
)
from mme.train.config import PretrainConfig, TrainConfig, check_masks_a_token
from mme.train.flops import LAYOUTS, matmul_peak, step_flops
from mme.train.loop import update
from mme.train.optim import OptimConfig, build_optimizer, set_schedule
from mme.train.precision import (
    _DTYPES,
    autocast,
    bf16_native,
    check_compiler,
    choose_device,
    emulation,
    make_scaler,
)
from mme.utils import (
    check_bench_json,
    check_given_once,
    counted,
    cpu_name,
    in_turns,
    keys_as_flags,
    no_tf32,
    ratios_in_rounds,
    round_range,
    sets_threads,
    spread,
    write_bench_json,
)

PEER = "HF"
"""Name prefix of the peer's variants (``transformers.VideoMAEForPreTraining``)."""


def _variants(device: torch.device, all_precisions: bool, compiled: bool, checkpointing: bool,
              peer: bool) -> list[tuple[str, str, bool, bool, bool]]:
    """(name, precision, compile, activation checkpointing, is the peer); the first is the reference."""
    eager = [(p + (f" ({said})" if said else ""), p) for p in ("fp32", "bf16", "fp16")
             if not (said := emulation(p, device)) or p == "fp32" or all_precisions]
    out = [(f"{label} eager", precision, False, False, False) for label, precision in eager]
    if peer:
        out += [(f"{PEER} {label} eager", precision, False, False, True) for label, precision in eager]
    best = "bf16" if bf16_native(device) else "fp32"
    if compiled:
        out.append((f"{best} compiled", best, True, False, False))
    if checkpointing:
        out.append((f"{best} act. checkpointing", best, False, True, False))
    return out


def _peer_model(model: MaskedAutoencoder, norm_pix: bool) -> nn.Module:
    """``transformers.VideoMAEForPreTraining`` with SDPA attention, the configuration and weights of ``model``
    (one linear pixel head), and ``model``'s decoder-norm eps (its own default is 1e-5)."""
    import transformers

    hf_cfg = config_to_hf(model.cfg, "VideoMAEForPreTraining", use_mean_pooling=False, norm_pix=norm_pix)
    hf = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**hf_cfg, attn_implementation="sdpa"))
    names = set(hf.state_dict())
    state = to_hf(model.state_dict(), "mae")
    for alias, name in HF_ALIASES.items():  # transformers 5 names q/v biases in memory as their aliases
        state = {(k.replace(name, alias) if k not in names else k): v for k, v in state.items()}
    hf.load_state_dict(state)
    hf.decoder.norm.eps = model.cfg.decoder_norm_eps
    return hf


def _peer_missing() -> str | None:
    """Why transformers' VideoMAEForPreTraining cannot be the peer here, else None: transformers not installed, or
    the model not loaded (transformers' lazy module imports it at first use: a torchvision that does not match torch
    fails there, a ModuleNotFoundError in transformers 5, a RuntimeError in 4.x)."""
    try:
        import transformers
    except ImportError as e:
        return f"transformers cannot be imported ({' '.join(str(e).split())}; " \
               f"{import_advice('transformers', error=e)}), so no {PEER} VideoMAEForPreTraining to compare with"
    try:
        transformers.VideoMAEForPreTraining, transformers.VideoMAEConfig  # noqa: B018 (loaded on first use)
    except (ImportError, RuntimeError) as e:  # its lines (its cause last) as one; a memory limit named if it explains
        return ("transformers cannot load VideoMAEForPreTraining "
                f"({memory_limit_said(e) or ' '.join(str(e).split()) or type(e).__name__})")
    return None


def _check_peer(model: MaskedAutoencoder, hf: nn.Module, video: torch.Tensor, mask: torch.Tensor,
                targets: dict[str, torch.Tensor]) -> dict:
    """Parameters, tokens through the encoder, masked tokens predicted and the loss of ours and the peer on one
    clip and mask; raises when the configurations differ."""
    with torch.no_grad():
        loss, preds, _ = model(video, mask, targets)
        out = hf(video.transpose(1, 2), bool_masked_pos=mask)
        check = {
            "params": [count_parameters(model), count_parameters(hf)],
            "encoder_tokens": [model.encoder(video, mask).shape[1],
                               hf.videomae(video.transpose(1, 2), bool_masked_pos=mask).last_hidden_state.shape[1]],
            "masked_tokens": [preds["pixel"].shape[1], out.logits.shape[1]],
            "loss": [loss.item(), out.loss.item()],
            "attention": ["sdpa", hf.config._attn_implementation],
        }
    rel = abs(check["loss"][0] - check["loss"][1]) / abs(check["loss"][1])
    if any(a != b for k, (a, b) in check.items() if k != "loss") or rel > 1e-4:
        raise MMEError(f"the peer's configuration differs from ours: {check}")
    return {**check, "loss_rel_diff": rel}


def random_motion(target_cfg: TargetConfig, model_cfg: ModelConfig, batch: int,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """What data workers ship for the motion targets of ``batch`` clips, random but of the real shapes (tracks,
    and for ``shape`` S × L distinct uint8 frames per clip), so the step makes its targets as in training."""
    if not target_cfg.tracked:
        return {}
    g, c, L = token_geometry(target_cfg, model_cfg), model_cfg, target_cfg.track_length
    S, G = c.num_frames // c.tubelet_size, c.img_size // g.seed_stride
    gen = torch.Generator().manual_seed(0)
    out = {"disp": torch.randn(batch, S, L, G, G, 2, generator=gen),
           "track_valid": torch.ones(batch, S, G, G, dtype=torch.bool)}
    if "shape" in target_cfg.heads:
        out["shape_pos"] = torch.rand(batch, S, L, G, G, 2, generator=gen) * (c.img_size - 1)
        out["frames"] = torch.randint(0, 256, (batch * S * L, c.img_size, c.img_size, 3), generator=gen,
                                      dtype=torch.uint8)
        out["shape_index"] = torch.arange(batch * S * L).view(batch, S, L)
    return {k: v.to(device) for k, v in out.items()}


def step_fn(model_cfg: ModelConfig, target_cfg: TargetConfig, optim: OptimConfig, batch: int, precision: str,
             compile_: bool, checkpointing: bool, peer: bool, device: torch.device, video: torch.Tensor,
             peer_clip: torch.Tensor | None,
             motion: dict[str, torch.Tensor] | None = None) -> tuple[Callable[[], None], MaskedAutoencoder, nn.Module]:
    """One variant's step as a closure, with its model (ours; and the peer's when ``peer``, whose clip is
    ``peer_clip``: ``video`` as its data pipeline delivers it), its AdamW groups, weight decay and gradient clipping
    those of ``optim``. ``motion``: what the data workers shipped with ``video`` (a real batch's, on ``device``;
    default :func:`random_motion`). The closure holds its variant's model alone, so that a variant's memory is its
    own."""
    torch.manual_seed(0)
    model = MaskedAutoencoder(model_cfg, head_specs(target_cfg, model_cfg)).to(device)
    net = _peer_model(model, target_cfg.norm_pix).to(device) if peer else model
    if checkpointing:
        checkpoint_blocks(model.encoder)
    step_model = torch.compile(net) if compile_ else net
    optimizer = build_optimizer(net, optim, device)
    set_schedule(optimizer, 1e-4, optim.weight_decay)
    scaler = make_scaler(precision, device)
    motion = random_motion(target_cfg, model_cfg, batch, device) if motion is None else motion
    c = model_cfg
    # drawn before timing, as the loader workers draw a run's masks off the step's path (a cube mask's loop costs
    # tens of ms a batch); a few, taken in turn, so the step does not see one mask only
    masks = itertools.cycle([make_mask(c.mask_type, batch, c.grid, c.mask_ratio).to(device) for _ in range(4)])

    def step():
        optimizer.zero_grad(set_to_none=True)
        mask = next(masks)
        with autocast(precision, device):
            if peer:
                loss = step_model(peer_clip, bool_masked_pos=mask).loss
            else:
                with torch.autocast(device.type, enabled=False):  # as the training step: targets in fp32
                    targets, valid = batch_targets(video, motion, target_cfg, model_cfg)
                loss = step_model(video, mask, targets, valid)[0]
        scaler.scale(loss).backward()
        update(net, optimizer, scaler, optim.clip_grad, True)

    return step, model, net


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Wall seconds per call of ``step`` over ``steps`` calls, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - tic) / steps


PROFILE_PARTS = (  # (part, marks): an op counts in the first part with a mark in its name or a caller's
    ("optimizer", ("Optimizer.step",)),
    ("gradient clipping", ("_foreach_norm", "linalg_vector_norm", "_foreach_mul")),
    ("attention (SDPA)", ("scaled_dot_product",)),
    ("linear layers, patch embedding", ("aten::mm", "aten::addmm", "AddmmBackward", "aten::bmm", "convolution")),
    ("layer norm", ("layer_norm",)),
    ("copies, gathers, casts, fills", ("copy_", "aten::cat", "aten::stack", "aten::index", "fill_", "zero_",
                                       "_to_copy", "clone")),
    ("the rest (GELU, residual adds, loss, targets, ...)", ("",)),
)
"""How ``--profile`` splits the step's time."""


def profiled_time(device: torch.device) -> str:
    """What :func:`profile_step` measures on ``device``."""
    return "GPU time of the kernels each op launched" if device.type == "cuda" else "self CPU time of each op"


def profile_step(step: Callable[[], None], device: torch.device) -> dict[str, float]:
    """Milliseconds of one ``step`` in each of :data:`PROFILE_PARTS`: torch.profiler's self time of every op
    (:func:`profiled_time`: on CUDA the device time of its kernels, as the CPU only queues them), counted in the
    first part with a mark in the op's name or one of its callers'."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *[ProfilerActivity.CUDA] * cuda]) as prof:
        step()
    ms = dict.fromkeys([part for part, _ in PROFILE_PARTS], 0.0)
    for event in prof.events():
        if event.device_type != DeviceType.CPU:  # a kernel: counted in the op that launched it
            continue
        names, e = [], event
        while e is not None:
            names.append(e.name)
            e = e.cpu_parent
        part = next(part for part, marks in PROFILE_PARTS if any(m in n for n in names for m in marks))
        ms[part] += (event.self_device_time_total if cuda else event.self_cpu_time_total) / 1000
    return ms


def profile_table(profiled: dict[str, dict[str, float]], device: torch.device) -> list[str]:
    """The lines of ``--profile``'s table: a column of ms per step for each variant of ``profiled``."""
    w = max([16, *(len(name) + 2 for name in profiled)])
    rows = [(part, [ms[part] for ms in profiled.values()]) for part, _ in PROFILE_PARTS]
    rows.append(("sum of the parts", [sum(ms.values()) for ms in profiled.values()]))
    return [f"  where the step goes (torch.profiler: {profiled_time(device)}), ms per step",
            f"    {'':<52}" + "".join(f"{name:>{w}}" for name in profiled),
            *(f"    {part:<52}" + "".join(f"{v:{w}.1f}" for v in values) for part, values in rows)]


PEAK = "matmul peak"
"""The key of a precision's matmul peak among the figures timed in turns with the steps (beside the variants' names)."""

PEAK_SPREAD = 0.2
"""The matmul peak's spread over rounds (:func:`mme.utils.spread`) past which ``mme bench train`` says MFU is
uncertain."""


DEFAULT = {"model": {"preset": "small", "img_size": 112, "num_frames": 8, "mask_ratio": 0.7},
           "target": {"kind": "pixel"}, "train": {"batch_size": 4}}
"""The step timed without a recipe: ViT-S, 8x112², mask 0.7, pixel target, batch 4."""


FLAGS = {"preset": "--preset", "img_size": "--img-size", "num_frames": "--frames", "mask_ratio": "--mask-ratio",
         "kind": "--target"}
"""The flag of ``mme bench train`` that gives each model setting (and the target's kind) :func:`_configs` replaces."""


def _configs(recipe: str | None, preset: str | None, img_size: int | None, frames: int | None,
             mask_ratio: float | None, target: str | None,
             batch: int | None) -> tuple[ModelConfig, TargetConfig, OptimConfig, int]:
    """The model, target, optimizer settings and batch of ``recipe`` (else :data:`DEFAULT`; batch 4 where the
    recipe's files set none, not TrainConfig's 64: a timing, not a run), with the given values in their place."""
    data = load_recipe(recipe, PretrainConfig) if recipe is not None else DEFAULT
    given = {"preset": preset, "img_size": img_size, "num_frames": frames, "mask_ratio": mask_ratio}
    given = {k: v for k, v in given.items() if v is not None}
    flags = {f"model.{k}": FLAGS[k] for k in given} | ({"target.kind": FLAGS["kind"]} if target is not None else {})
    with keys_as_flags(flags):  # (a value of the recipe's own, not replaced by a flag, is named by its key)
        model = merge_layer(ModelConfig, data.get("model", {}), given, "model.")
        target_cfg = from_dict(TargetConfig, merge_layer(TargetConfig, data.get("target", {}),
                                                         {"kind": target} if target is not None else {}, "target."))
        optim = from_dict(OptimConfig, data.get("optim", {}), "optim.")
        batch = batch or from_dict(TrainConfig, {"batch_size": 4, **data.get("train", {})}).batch_size
        model_cfg = from_dict(ModelConfig, model)
        check_masks_a_token(model_cfg)
    if target is not None:
        check_given_once("--target", target_cfg.kinds, KIND_ONCE, "kind", shown=target)
    return model_cfg, target_cfg, optim, batch


@sets_threads
@no_tf32()  # the fp32 variants in fp32 on CUDA, ours and the peer's (whose patch embedding is a convolution)
def bench_train(recipe: str | None = None, preset: str | None = None, img_size: int | None = None,
                frames: int | None = None, batch: int | None = None, mask_ratio: float | None = None,
                target: str | None = None, device: str = "auto", steps: int = 5, warmup: int = 2, rounds: int = 3,
                compiled: bool = False, checkpointing: bool = False, all_precisions: bool = False, peer: bool = True,
                profile: bool = False, threads: int | None = None, json_path: str | None = None) -> list[dict]:
    """``mme bench train``: time each variant in interleaved rounds (module docstring) and print it against our
    fp32 eager step and the peer (and write the machine, the settings, rows, peaks, FLOPs and checks to
    ``json_path``); returns the rows. The step is the model, target and batch of ``recipe`` (else
    :data:`DEFAULT`), with the given values in their place. ``profile``: then where the time of each eager step,
    ours and the peer's at each precision, goes (:func:`profile_step`, one step each per round in turns, each
    part's best round)."""
    check_bench_json(json_path, [("the recipe timed", recipe)])  # before the benchmark, not after it
    dev = choose_device(device, option="--device")
    if compiled:
        check_compiler(dev, "--compile")
    model_cfg, target_cfg, optim, batch = _configs(recipe, preset, img_size, frames, mask_ratio, target, batch)
    c = model_cfg
    heads = head_specs(target_cfg, model_cfg)
    flops = step_flops(model_cfg, heads, batch)
    params = count_parameters(MaskedAutoencoder(model_cfg, heads))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    print(f"train step: {recipe or 'ViT-' + c.preset} (encoder {c.embed_dim}x{c.depth}, decoder {c.decoder_dim}x"
          f"{c.decoder_depth}, {params / 1e6:.1f}M params), {c.num_frames}x{c.img_size}², batch {batch}, mask "
          f"{c.mask_ratio}, target {target_cfg.kind}, clip_grad {optim.clip_grad}, device {dev} ({gpu or cpu_name()}), "
          f"{counted(torch.get_num_threads(), 'thread')}, bf16 native: {bf16_native(dev)}; "
          f"{flops / batch / 1e9:.2f} GFLOP per clip (forward and backward); {counted(rounds, 'round')} of "
          f"{counted(steps, 'step')} after {counted(warmup, 'warm-up step')}")
    if peer and (target_cfg.heads != ["pixel"] or c.input_norm != "dataset"):
        peer = False
        print(f"  peer skipped: {PEER} VideoMAEForPreTraining predicts pixels only, from dataset-normalised clips")
    elif peer and (why := _peer_missing()):
        peer = False
        print(f"  peer skipped: {why}")
    video = torch.randn(batch, 3, c.num_frames, c.img_size, c.img_size, device=dev)
    peer_clip = video.transpose(1, 2).contiguous() if peer else None  # (B, T, C, H, W), before any variant
    variants = _variants(dev, all_precisions, compiled, checkpointing, peer)
    check = None
    steps_of = {}
    mem: dict[str, float] = {}  # GiB: each variant's own peak (its state and its step's), over its warm-up
    for name, precision, compile_, ckpt, is_peer in variants:
        if dev.type == "cuda":  # what the variants built before hold stays allocated: counted out
            torch.cuda.synchronize(dev)
            before = torch.cuda.memory_allocated(dev)
        step, model, net = step_fn(model_cfg, target_cfg, optim, batch, precision, compile_, ckpt, is_peer, dev,
                                    video, peer_clip)
        if is_peer and check is None:
            mask = model.make_mask(batch).to(dev)
            check = _check_peer(model, net, video, mask, step_targets(video, target_cfg, model_cfg))
            print(f"  {PEER} peer check: params {check['params'][0]:,} vs {check['params'][1]:,}, encoder tokens "
                  f"{check['encoder_tokens'][0]} vs {check['encoder_tokens'][1]}, masked tokens "
                  f"{check['masked_tokens'][0]} vs {check['masked_tokens'][1]}, loss {check['loss'][0]:.6f} vs "
                  f"{check['loss'][1]:.6f} (rel. diff {check['loss_rel_diff']:.1e}), attention "
                  f"{check['attention'][1]}", flush=True)
        model = net = None  # the step holds its own model: the copy of ours a peer was made from is freed
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)  # after the peer check's temporaries
        for _ in range(warmup):
            step()
        if dev.type == "cuda" and warmup:
            torch.cuda.synchronize(dev)
            mem[name] = (torch.cuda.max_memory_allocated(dev) - before) / 2**30
        steps_of[name] = step
    precisions = dict.fromkeys(v[1] for v in variants)  # the matmul peaks take their turns too, before the steps
    timed = in_turns({**{(PEAK, p): functools.partial(matmul_peak, _DTYPES.get(p, torch.float32), dev, seconds=0.5)
                         for p in precisions},
                      **{name: functools.partial(seconds_per_step, step, steps, dev)
                         for name, step in steps_of.items()}}, rounds)
    peaks: dict[str, dict] = {}
    for precision in precisions:  # the best round's; each round's
        each = timed.pop((PEAK, precision))
        gflops, n, layout = max(each, key=lambda measured: measured[0])
        peaks[precision] = {"gflops": gflops, "rounds": [g for g, _, _ in each], "size": n, "layout": layout}
    for precision, peak in peaks.items():
        each = peak["rounds"]
        print(f"  matmul peak {precision}: {peak['gflops']:,.0f} GFLOP/s ({peak['size']}² matmul {peak['layout']}, "
              f"the fastest of {len(LAYOUTS)} operand layouts; {counted(torch.get_num_threads(), 'thread')})"
              + (f"; its {len(each)} rounds: min {min(each):,.0f}, median {statistics.median(each):,.0f}, max "
                 f"{max(each):,.0f} (spread {100 * spread(each):.0f} %)" if len(each) > 1 else ""))
    best = {name: min(s) for name, s in timed.items()}
    several = rounds > 1  # (one round has no spread to show)

    def beside(ratios: list[float]) -> str:  # a ratio's median over rounds, and its rounds' range
        return f"{statistics.median(ratios):.2f}" + (f"; rounds {round_range(ratios)}" if several else "")

    rows = []
    for name, precision, _, _, is_peer in variants:
        sec = best[name]
        gflops = flops / sec / 1e9
        own = ratios_in_rounds(timed[variants[0][0]], timed[name])  # each round's speed over fp32 eager's
        r = {"variant": name, "precision": precision, "ms_per_step": 1000 * sec, "steps_per_s": 1 / sec,
             "clips_per_s": batch / sec, "gflops": gflops, "mfu": gflops / peaks[precision]["gflops"],
             "peak_gib": mem.get(name), "ratio": best[variants[0][0]] / sec,
             "ratio_in_rounds": statistics.median(own), "ms_per_step_rounds": [1000 * t for t in timed[name]],
             "ratio_rounds": own}
        if is_peer:  # our step's speed over the peer's, at this precision
            ours = ratios_in_rounds(timed[name], timed[name.removeprefix(f"{PEER} ")])
            r.update(ours_vs_peer=sec / best[name.removeprefix(f"{PEER} ")],
                     ours_vs_peer_in_rounds=statistics.median(ours), ours_vs_peer_rounds=ours)
        rows.append(r)
        vs_peer = f"  ours {r['ours_vs_peer']:.2f}x this ({beside(ours)}x)" if is_peer else ""
        gib = f"  peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
        unit = "GFLOP/s (our FLOPs)" if is_peer else "GFLOP/s"  # the peer is credited with our step's FLOPs
        ms = f"{r['ms_per_step']:9.1f} ms/step" + (f" (spread {100 * spread(timed[name]):3.0f} %)" if several else "")
        print(f"  {name:<28} {ms} {r['clips_per_s']:8.2f} clips/s  x{r['ratio']:.2f} "
              f"({beside(own):<{22 if several else 4}}) vs fp32 eager  {gflops:8.1f} {unit:<{19 if peer else 7}}  "
              f"MFU {100 * r['mfu']:5.1f} %{gib}{vs_peer}", flush=True)
    print(f"  (best of {counted(rounds, 'interleaved round')} of {counted(steps, 'step')} each, after "
          f"{counted(warmup, 'warm-up step')}; in brackets the median over rounds of each round's own ratio, which a "
          "machine whose speed drifts between rounds moves less" + (
              ", and the lowest and highest of those rounds; a step's spread: its slowest round over its fastest, "
              "less 1: digits finer than the rounds' range are noise)" if several else ")"))
    above = [r["variant"] for r in rows if r["mfu"] > 1]
    if above:  # a step cannot beat the matmuls it is made of: the peak was timed on a busier machine
        print(f"  MFU above 100 % ({', '.join(above)}): the matmul peak was timed while the machine was busier than "
              "during the step's best round; more --rounds (each times the peak again) or an idle machine give its "
              "true figure", flush=True)
    drifted = {p: drift for p, peak in peaks.items() if (drift := spread(peak["rounds"])) > PEAK_SPREAD}
    if rounds == 1:
        print("  MFU is uncertain: the matmul peak was timed in one round only, so a busy moment of the machine goes "
              "unseen; --rounds 3 or more time it again in each and show its spread", flush=True)
    elif drifted:
        print(f"  MFU is uncertain: the matmul peak's rounds differ by more than {100 * PEAK_SPREAD:.0f} % ("
              + ", ".join(f"{p} {100 * drift:.0f} %" for p, drift in drifted.items())
              + "): the machine's speed drifted during the bench; MFU is against the best round's peak, and an idle "
              "machine gives its true figure", flush=True)
    profiled: dict[str, dict[str, float]] = {}
    if profile:  # one profiled step per eager variant and round, in turns; each part's best round
        eager = [name for name, _, compile_, ckpt, _ in variants if not (compile_ or ckpt)]
        each = in_turns({name: functools.partial(profile_step, steps_of[name], dev) for name in eager}, rounds)
        profiled = {name: {part: min(ms[part] for ms in each[name]) for part in each[name][0]} for name in eager}
        print("\n".join(profile_table(profiled, dev)))
        print(f"  (each part: its best of {rounds} profiled steps, ours and the peer's in turns)")
    if json_path:
        write_bench_json(json_path, {"device": str(dev), "gpu": gpu, "cpu": cpu_name(),
                                     "bf16_native": bf16_native(dev), "torch": torch.__version__, "recipe": recipe,
                                     "model": dataclasses.asdict(c), "target": dataclasses.asdict(target_cfg),
                                     "optim": dataclasses.asdict(optim),
                                     "batch": batch, "threads": torch.get_num_threads(), "steps": steps,
                                     "warmup": warmup, "rounds": rounds, "flops_per_step": flops, "peaks": peaks,
                                     "peer_check": check, "rows": rows, "profile_ms_per_step": profiled,
                                     "profile_time": profiled_time(dev) if profile else None})
    return rows
