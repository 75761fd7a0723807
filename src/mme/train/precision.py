"""Device and numeric precision: what runs where, chosen from the hardware and from measurement.

``auto`` resolves to:

- fp32 where bf16 is not native (an AVX2-only CPU emulates bf16, and a ViT step runs ~18x slower than fp32,
  platform-notes.md);
- bf16 on a GPU with native bf16 (a CUDA GPU of compute capability 8.0 or above: Ampere on; ROCm);
- on a CPU with native bf16 (AVX512-BF16 / AMX; an Arm CPU's BF16: Graviton3/4), the faster of fp32 and bf16 for
  *this* model and clip shape, timed at setup on forward and backward passes of up to :data:`TIMED_CLIPS` clips:
  bf16 autocast on such CPUs gains little or loses on small models (casts dominate), so native support alone does
  not decide it.

``MME_AUTO_PRECISION=fp32|bf16|fp16`` in the environment makes ``auto`` resolve to that precision without
measuring: to run a job (or the test suite, see tests/conftest.py) as it runs on the other kind of CPU, or to pin
one precision across a heterogeneous cluster. fp16 always comes with a gradient scaler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from mme.errors import ConfigError
from mme.utils import (
    BF16_FEATURES,
    caller_generator_kept,
    core_share,
    counted,
    cpu_features,
    cpu_fp16_native,
    error_reason,
    plural,
    usable_cores,
    warn_if_mkl_not_strict,
    workers_advice,
)

log = logging.getLogger(__name__)
node_log = logging.getLogger("mme.node")
"""The warnings of what depends on the node a rank runs on (its CPU's bf16), shown by every rank under torchrun: not
among the CLI's loggers whose warnings every rank raises alike (``mme.cli.ALIKE_ON_EVERY_RANK``)."""

CHOSEN_PRECISIONS = ("fp32", "bf16", "fp16")
"""The precisions a job runs in: those ``auto`` chooses among, which :data:`AUTO_ENV` may force."""
PRECISIONS = ("auto", *CHOSEN_PRECISIONS)
AUTO_ENV = "MME_AUTO_PRECISION"
BF16_MIN_SPEEDUP = 1.1
"""On a CPU, ``auto`` takes bf16 only when its measured step is at least this much faster than fp32's."""
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
KEPT = "auto: the resumed run's, on the same device"
"""The reason of a precision kept from the run being resumed."""
NATIVE = "auto: native bf16 on this"
"""The start of the reason of bf16 taken where it is native, untimed (a GPU's; a CPU's without a step to time)."""
NO_NATIVE = "auto: no native bf16 on this"
"""The start of the reason of fp32 taken where bf16 is emulated."""
MEASURED = "auto: measured here"
"""The start of the reason of a precision timed against the other (:func:`faster_precision`: a CPU with native bf16)."""
TIMED_CLIPS = 4
"""The most clips of a run's batch that auto's timing passes through its model."""
CLOSE = 1.2
"""How near (a factor, either side) :data:`BF16_MIN_SPEEDUP` a measured fp32/bf16 ratio gets further rounds
(:func:`faster_precision`)."""
MIN_ROUNDS = 5
"""The rounds auto times each precision in (after one warm-up round), best of them taken (:func:`faster_precision`)."""
MAX_ROUNDS = 20
MAX_TIMING_S = 3.0
"""Where the two are close, auto times further rounds until :data:`MAX_ROUNDS` rounds or until its passes took this
long on :func:`_pass_clock` (checked before each round, so a round may take it past this)."""


class TimedLoss(NamedTuple):
    """What auto times (:func:`faster_precision`): ``loss()``, the job's model's loss on ``clips`` clips of the run's
    shape (its backward is timed too)."""

    loss: Callable[[], torch.Tensor]
    clips: int


def choose_device(name: str = "auto", local_rank: int = 0, option: str = "train.device") -> torch.device:
    """'auto' = this rank's CUDA device when there is one, else CPU; 'cuda' = this rank's CUDA device; 'cuda:N' that
    one. A name that is not a device, ``meta`` (shapes without data: nothing trains on it), a CUDA device torch does
    not see (none, or an index past its count), a device whose backend says it is not available (torch's
    ``is_available`` of ``mps``, ``xpu``, ...), or another a tiny allocation fails on (the reason's first sentence)
    is a ConfigError naming ``option`` (the config key, or a command's flag), before any work."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"{option}: {name!r} is not a device ('auto', 'cpu', 'cuda', 'cuda:1', ...)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}: {name!r} requested but torch sees no CUDA device")
        count = torch.cuda.device_count()
        if device.index is None:
            return torch.device("cuda", rank_gpu(local_rank))
        if device.index >= count:
            raise ConfigError(f"{option}: {name!r} requested but torch sees {counted(count, 'CUDA device')}, cuda:0 to "
                              f"cuda:{count - 1}")
    elif device.type == "meta":
        raise ConfigError(f"{option}: {name!r} holds shapes without data, which no run trains on; use 'auto', 'cpu' "
                          "or 'cuda'")
    elif device.type != "cpu":
        available = getattr(getattr(torch, device.type, None), "is_available", None)
        if available is not None and not available():
            raise ConfigError(f"{option}: {name!r} requested but torch sees no {device.type} device")
        try:
            torch.empty(1, device=device)
        except Exception as e:  # each backend fails its own way: AssertionError, NotImplementedError, ImportError
            reason = error_reason(e).split(". ")[0]  # torch's dispatcher goes on for ~1,200 characters
            raise ConfigError(f"{option}: {name!r} cannot be used here ({reason})") from e
    return device


def rank_gpu(local_rank: int) -> int:
    """The CUDA device of the rank ``local_rank`` on its node: that index among the devices torch sees, modulo their
    count (ranks share the GPUs of a node that has fewer; a rank that sees one, ``CUDA_VISIBLE_DEVICES`` set per task,
    takes it); ``local_rank`` where torch sees none."""
    return local_rank % (torch.cuda.device_count() or local_rank + 1)


def check_compiler(device: torch.device, option: str = "train.compile") -> None:
    """torch.compile on CPU builds its kernels in C++: without the compiler torch runs (``$CXX``, else g++; torch's
    own lookup) the run failed at its first step (inductor's InvalidCxxCompiler), after its folder was made. A
    ConfigError naming ``option`` (the config key, or a command's flag), before any work."""
    if device.type != "cpu":
        return
    try:
        from torch._inductor import config, exc
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch that builds otherwise: its own error, at the first step
        return
    try:
        get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        cxx = config.cpp.cxx[-1] if isinstance(config.cpp.cxx, (list, tuple)) else config.cpp.cxx
        raise ConfigError(f"{option} needs a C++ compiler on CPU, and torch finds none ({cxx!r} cannot be run; it runs "
                          f"$CXX, else g++): install g++ or clang++ (CXX=clang++), or drop {option}") from None


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (not emulated) on ``device``: a ROCm GPU, a CUDA GPU of compute capability
    8.0 or above (Ampere on), judged for ``device`` itself. torch's ``cuda.is_bf16_supported()`` judges the current
    device, and by default counts emulated bf16 as supported: a V100 or T4 (7.x) makes bf16 tensors, slowly."""
    if device.type == "cuda":
        return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(set(BF16_FEATURES) & set(cpu_features()))
    return False


def choose_threads(threads: int | None, device: torch.device, workers: int) -> tuple[int, str]:
    """``(intra-op threads of the training process, reason)``: ``threads`` if set; on a CPU device the usable cores
    less the loader workers, which work beside the step (at least 1, at most torch's current count). A step split
    over more threads than the workers leave free waits for the thread a worker displaced: in the demo on 2 cores
    with 2 workers, one thread pre-trains MME 1.6x and pixels 1.08x as fast as two (docs/performance.md). On a GPU
    the step runs on the device and torch's count stays."""
    current = torch.get_num_threads()
    if threads is not None:
        cores = usable_cores()
        return threads, "train.threads" + (f", more than the {cores} usable cores" if threads > cores else "")
    if device.type != "cpu":
        return current, f"torch's; the step runs on {device.type}"
    cores, how = core_share()
    capped = (f", capped at torch's {current} (its physical cores, or OMP_NUM_THREADS: torchrun's is 1)"
              if current < cores - workers else "")
    if cores - workers < 1:
        advice = workers_advice(workers, cores)
        leave = plural(workers, "leaves", "leave")
        return 1, (f"auto: at least 1: the {counted(workers, 'loader worker')} {leave} none of "
                   f"{counted(cores, 'core')}{how}" + (f"; {advice}" if advice else ""))
    return min(current, cores - workers), (f"auto: {counted(cores, 'core')}{how} less "
                                           f"{counted(workers, 'loader worker')}{capped}")


@contextlib.contextmanager
def run_threads(device: torch.device, workers: int) -> Iterator[None]:
    """torch's intra-op threads as a run's for the block (:func:`choose_threads`: the usable cores, a cgroup's CPU
    quota among them, less ``workers``; torch's own count follows the CPU affinity alone), the caller's given back
    after it: work outside a training run (embedding, the probe's fits) on 2 threads in a 1-CPU cgroup ran
    1.7-3x slower."""
    callers = torch.get_num_threads()
    torch.set_num_threads(choose_threads(None, device, workers)[0])
    try:
        yield
    finally:
        torch.set_num_threads(callers)


def choose_precision(requested: str, device: torch.device, timed: TimedLoss | None = None,
                     resumed: str | None = None, ranks: bool = False) -> tuple[str, str]:
    """``(precision, reason)``: ``requested`` itself, or what ``auto`` resolves to (module docstring).

    ``timed``: the job's loss that auto times; without it, a CPU with native bf16 gets bf16. ``resumed``: what
    'auto' chose for the run being resumed on this kind of device, kept unless the environment forces another
    or it is bf16 where bf16 is not native (an mme that took a GPU before Ampere for native).
    ``ranks``: one choice for every rank of a DDP job (each calls it): auto resolves fp32 where any rank lacks native
    bf16 (the reason names those ranks), else every rank takes rank 0's (its timing, its environment). Warns when a
    precision asked for (or forced) will be emulated (on this rank; under ``ranks``, by rank 0 alone where every rank
    emulates it alike: :func:`_warn_if_emulated`), and on a CPU where MKL is not in the strict mode ``import mme``
    asks for (:func:`~mme.utils.warn_if_mkl_not_strict`)."""
    if device.type == "cpu":
        warn_if_mkl_not_strict()
    native = bf16_native(device)
    if not ranks:
        precision, why = _chosen(requested, device, native, timed, resumed)
    else:
        from mme.train import distributed as dist

        natives = dist.all_gather_objects(native)
        lacking = [rank for rank, has in enumerate(natives) if not has] if not all(natives) and any(natives) else []
        precision, why = dist.on_main(_chosen, requested, device, all(natives), timed, resumed, lacking)
    if why == "requested" or why.startswith(f"auto: {AUTO_ENV}="):
        _warn_if_emulated(precision, device, native, "requested" if why == "requested" else f"forced by {AUTO_ENV}",
                          ranks)
    return precision, why


def _chosen(requested: str, device: torch.device, native: bool, timed: TimedLoss | None, resumed: str | None,
            lacking: list[int] = ()) -> tuple[str, str]:
    """:func:`choose_precision`'s choice where bf16 is ``native``; ``lacking``: the ranks without native bf16 of a
    job whose other ranks have it, named in the reason of auto's fp32 (a resumed run's bf16 is not kept there)."""
    settled = _settled(requested, device, native, None if lacking else resumed)
    if settled is None:
        return ("bf16", f"{NATIVE} {device.type}") if timed is None else faster_precision(timed, device)
    if lacking and settled[1].startswith(NO_NATIVE):
        return "fp32", (f"auto: no native bf16 on the {device.type} of {plural(len(lacking), 'rank')} "
                        f"{', '.join(map(str, lacking))}, where emulated bf16 is far slower than fp32; every rank "
                        "runs one precision")
    return settled


def _settled(requested: str, device: torch.device, native: bool,
             resumed: str | None = None) -> tuple[str, str] | None:
    """:func:`choose_precision`'s ``(precision, reason)`` where no timing decides it, None where auto times the two
    on the run's model (a CPU with native bf16, ``native``)."""
    if requested not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "requested"
    if forced := _forced():
        return forced, f"auto: {AUTO_ENV}={forced} in the environment"
    if resumed is not None and (native or resumed != "bf16"):  # (a bf16 an mme took as native where it is not: no)
        return resumed, KEPT
    if not native:
        return "fp32", f"{NO_NATIVE} {device.type}, where emulated bf16 is far slower than fp32"
    if device.type != "cpu":
        return "bf16", f"{NATIVE} {device.type}"
    return None


def bf16_said(reason: str | None) -> bool | None:
    """What a precision's ``reason`` (:func:`choose_precision`'s, a run's ``precision_reason``) says of the device it
    was chosen on: True where it had native bf16 (auto timed the two there, or took bf16 as native), False where it
    had none (auto's fp32 for that), None where the reason does not say (a precision asked for, or forced by
    :data:`AUTO_ENV`). A precision kept on resuming (:data:`KEPT`) says what the one it kept says."""
    reason = str(reason or "").removeprefix(f"{KEPT}: ")
    if reason.startswith((NATIVE, MEASURED)):
        return True
    return False if reason.startswith(NO_NATIVE) else None


def _forced() -> str:
    """The precision :data:`AUTO_ENV` forces on auto ('' where unset), refused in one line where it names none."""
    forced = os.environ.get(AUTO_ENV, "")
    if forced and forced not in CHOSEN_PRECISIONS:
        raise ConfigError(f"{AUTO_ENV}={forced!r} in the environment: choose one of {list(CHOSEN_PRECISIONS)}")
    return forced


def settled_precision(requested: str, device: torch.device) -> str | None:
    """What :func:`choose_precision` resolves ``requested`` to for a fresh run on ``device``, where that is settled
    before the run (asked for, forced by :data:`AUTO_ENV`, auto without native bf16 or off a CPU); None where auto
    times the two on the run's model (a CPU with native bf16)."""
    settled = _settled(requested, device, bf16_native(device))
    return None if settled is None else settled[0]


def fp16_native(device: torch.device) -> bool | None:
    """Whether fp16 matmuls run natively on ``device``: on a GPU; on a CPU by its instructions
    (:func:`~mme.utils.cpu_fp16_native`), None where its probes do not tell."""
    return cpu_fp16_native() if device.type == "cpu" else True


def emulation(precision: str, device: torch.device, native: bool | None = None) -> str:
    """What the run's warning and ``mme bench train``'s row say of ``precision`` on ``device`` (``native``: its
    bf16's, where known): '' where it runs natively, 'emulated', or 'not known native' where the probes do not tell
    (fp16 on a CPU: :func:`~mme.utils.cpu_fp16_native`)."""
    if precision == "fp16":
        known = fp16_native(device)
        return "" if known else "emulated" if known is False else "not known native"
    return "emulated" if precision == "bf16" and not (bf16_native(device) if native is None else native) else ""


def _warn_if_emulated(precision: str, device: torch.device, native: bool, how: str, ranks: bool = False) -> None:
    """The warning that ``precision`` (``how``: requested, forced) runs emulated here (``native``: its bf16's).
    ``ranks``: under torchrun, every rank calls it (it gathers whether each emulates it): where some ranks emulate it
    (their nodes' CPUs), each of those warns (:data:`node_log`); where every rank does alike (bf16 on AVX2-only nodes,
    fp16 on CPUs without AVX512-FP16), rank 0 alone."""
    from mme.train import distributed as dist

    here = emulation(precision, device, native)
    alike = ranks and len(set(dist.all_gather_objects(bool(here)))) == 1
    if here:
        if here == "not known native":
            message = "%s %s on %s, not known to compute %s natively: it may be emulated and slow (fp32 then is faster)"
        else:
            message = "%s %s on %s without native %s support: it will be emulated and slow (fp32 is faster)"
        (log if alike else node_log).warning(message, precision, how, device, precision)


def faster_precision(timed: TimedLoss, device: torch.device) -> tuple[str, str]:
    """Time forward + backward of ``timed.loss`` in fp32 and under bf16 autocast (best of :data:`MIN_ROUNDS` after one
    warm-up round) and pick bf16 only if it is :data:`BF16_MIN_SPEEDUP` times faster. A pass is timed on
    :func:`_pass_clock`, CPU time (timed on the wall clock, the turns of other processes on the cores counted: at a load
    of 2.6 to 3.6 on 2 cores, at one thread, a model 1.4x faster in bf16 took fp32 in 2 to 4 runs of 20). The two take
    turns, which comes first alternating from round to round: a burst of load slows both alike. Where the two bests are
    :data:`CLOSE` to the threshold, further rounds follow, up to :data:`MAX_ROUNDS` or until the passes took about
    :data:`MAX_TIMING_S` on that clock (on the wall clock, load spent it in the first rounds). The global RNG is left as
    it was."""
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    clock = _pass_clock()
    with caller_generator_kept():
        for round_ in range(MAX_ROUNDS + 1):
            timed_s = sum(map(sum, times.values())) / 1000
            if round_ > MIN_ROUNDS and (not _close(_best(times)) or timed_s >= MAX_TIMING_S):
                break
            for precision in ("fp32", "bf16") if round_ % 2 else ("bf16", "fp32"):
                tic = clock()
                with autocast(precision, device):
                    loss = timed.loss()
                loss.backward()
                times[precision].append(1000 * (clock() - tic))
    ms = _best(times)
    faster = ms["fp32"] >= BF16_MIN_SPEEDUP * ms["bf16"]
    return ("bf16" if faster else "fp32"), (
        f"{MEASURED}, forward and backward of {counted(timed.clips, 'clip')} take {ms['bf16']:.1f} ms in bf16 vs "
        f"{ms['fp32']:.1f} ms in fp32, best of {counted(len(times['fp32']) - 1, 'round')} (bf16 needs "
        f"{BF16_MIN_SPEEDUP}x)")


def _pass_clock() -> Callable[[], float]:
    """The clock of auto's passes, CPU time, which the other processes of the machine do not lengthen: where torch
    computes on one thread (this one), the thread's; on several, the process's, all its threads' work (the thread's
    misses the other torch threads' share). At more threads than free cores the passes stall, and OpenMP's
    spin-wait counts in CPU time: docs/performance.md gives what the 2-core Zen 4 measured."""
    return time.thread_time if torch.get_num_threads() == 1 else time.process_time


def _best(times: dict[str, list[float]]) -> dict[str, float]:
    """Each precision's fastest pass, past the warm-up round."""
    return {precision: min(t[1:]) for precision, t in times.items()}


def _close(ms: dict[str, float]) -> bool:
    """Whether the fp32/bf16 ratio of the bests ``ms`` lies within :data:`CLOSE` times of :data:`BF16_MIN_SPEEDUP`,
    either side: near enough that load on the machine may have made it."""
    return BF16_MIN_SPEEDUP / CLOSE < ms["fp32"] / ms["bf16"] < BF16_MIN_SPEEDUP * CLOSE


def autocast(precision: str, device: torch.device):
    """The forward pass's autocast context: for fp32, autocast off (a caller's autocast, around, would run it in
    bf16)."""
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
