"""The step's analytic FLOP count (the MFU of ``mme bench train``) against the matmuls a forward and backward pass
run, and the matmul peak it is measured against."""

import time

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mme.models import MaskedAutoencoder, ModelConfig
from mme.motion.targets import TargetConfig, head_specs
from mme.train.flops import LAYOUTS, matmul_peak, step_flops


@pytest.mark.parametrize("target, mask_type", [("pixel", "tube"), ("mme", "random"), ("pixel", "cube")])
def test_step_flops_are_the_matmul_flops_of_a_forward_and_backward(target, mask_type):
    """The backward was counted as twice the forward everywhere, the patch embedding's too, which computes no
    gradient of its input (the clip): MFU 0.1-3 % high."""
    cfg = ModelConfig(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4, decoder_dim=32,
                      decoder_heads=2, mask_type=mask_type, mask_ratio=0.75)
    heads = head_specs(TargetConfig(kind=target), cfg)  # mme: two heads with a hidden layer
    model = MaskedAutoencoder(cfg, heads)
    targets = {h.name: torch.randn(2, cfg.num_tokens, h.dim) for h in heads}
    # the math backend's attention is made of matmuls the counter sees (it does not count the CPU flash kernel)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(torch.randn(2, 3, 4, 32, 32), model.make_mask(2), targets)[0].backward()
    assert step_flops(cfg, heads, batch=2) == counter.get_total_flops()


def test_the_matmul_peak_times_every_layout_the_layers_matmuls_run():
    """A training step's matmuls run three operand layouts (a linear layer: x·Wᵀ forward, g·W and gᵀ·x backward),
    which an emulated dtype runs at rates more than 10x apart: a peak of one layout is no peak of the step's."""
    def layouts_of(fn) -> set[tuple[bool, bool]]:  # (a transposed, b transposed) of every mm / addmm ``fn`` runs
        seen = set()

        class Layouts(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                    seen.add(tuple(t.stride(-1) != 1 for t in args[-2:]))
                return func(*args, **(kwargs or {}))

        with Layouts():
            fn()
        return seen

    cfg = ModelConfig(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=1, num_heads=4, decoder_dim=32,
                      decoder_heads=2, mask_ratio=0.75)
    heads = head_specs(TargetConfig(kind="pixel"), cfg)
    model = MaskedAutoencoder(cfg, heads)
    targets = {h.name: torch.randn(2, cfg.num_tokens, h.dim) for h in heads}

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(torch.randn(2, 3, 4, 32, 32), model.make_mask(2), targets)[0]
        loss.backward()

    a, b = torch.randn(4, 4), torch.randn(4, 4)
    timed = layouts_of(lambda: [layout(a, b) for layout in LAYOUTS.values()])
    assert len(timed) == len(LAYOUTS) and layouts_of(step) <= timed


def test_the_matmul_peak_is_its_fastest_layouts(monkeypatch):
    slow = LAYOUTS["a·bᵀ"]
    monkeypatch.setitem(LAYOUTS, "a·bᵀ", lambda a, b: (time.sleep(0.05), slow(a, b))[1])
    gflops, n, layout = matmul_peak(torch.float32, torch.device("cpu"), size=64, seconds=0.5)
    assert n == 64 and layout != "a·bᵀ" and gflops > 2 * 64 ** 3 / 0.05 / 1e9  # best of many, on a busy machine too


def _modelled_layouts(monkeypatch, gflops_at) -> dict[int, int]:
    """Each layout's product of two n × n matrices takes 2 n³ / ``gflops_at(n, layout)`` seconds of a clock
    :func:`matmul_peak` reads; returns the products it times at each n."""
    from mme.train import flops

    clock, calls = [0.0], {}

    def product(layout):
        def run(a, b):
            n = a.shape[0]
            calls[n] = calls.get(n, 0) + 1
            clock[0] += 2 * n ** 3 / gflops_at(n, layout) / 1e9
        return run

    monkeypatch.setattr(flops, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    for layout in LAYOUTS:
        monkeypatch.setitem(LAYOUTS, layout, product(layout))
    return calls


def test_the_matmul_peak_is_timed_at_the_largest_size_whose_products_are_short_enough_to_time_many_times(monkeypatch):
    """The size grew until one product of each layout took 0.5 s (2048² on a CPU, 0.12-0.18 s each in fp32 at 1
    thread), so each 0.5 s call timed each layout two or three times and its best swung twofold on a loaded machine
    (fp32 74-148 GFLOP/s, bf16 178-1,013, back to back). It doubles while the fastest layout's product at twice the
    size fits in seconds / 4, and slow layouts do not stop it (bf16 on a 2-core AMX Xeon at 2 threads runs 1.5x
    faster at 2048² than at 1024², after a flat stretch from 512²)."""
    cpu = torch.device("cpu")
    rates = {512: 100, 1024: 103, 2048: 104}  # GFLOP/s: flat, then the largest size (a product 165 ms: fits 0.5 s)
    calls = _modelled_layouts(monkeypatch, lambda n, layout: rates[n])
    assert matmul_peak(torch.float32, cpu, seconds=2.0) == (pytest.approx(104), 2048, "a·bᵀ")
    assert set(calls) == {512, 1024, 2048} and calls[2048] >= 3 * len(LAYOUTS)

    # it stops where the fastest layout's product at twice the size would take over seconds / 4 (8 x 210 ms at
    # 1024², 10.24 GFLOP/s: 1.68 s > 0.5)
    calls = _modelled_layouts(monkeypatch, lambda n, layout: n / 100)
    assert matmul_peak(torch.float32, cpu, seconds=2.0)[:2] == (pytest.approx(10.24), 1024)
    assert set(calls) == {512, 1024}

    # a flat stretch does not stop it (1024² no faster than 512², 2048² 1.5x), nor a layout 20x slower than the
    # others, which is not timed past the first size
    flat = {512: 100, 1024: 101, 2048: 150}
    calls = _modelled_layouts(monkeypatch, lambda n, layout: flat[n] / (20 if layout == "a·b" else 1))
    assert matmul_peak(torch.bfloat16, cpu, seconds=2.0) == (pytest.approx(150), 2048, "a·bᵀ")
    assert set(calls) == {512, 1024, 2048} and calls[2048] >= 6  # 2 layouts, 3 turns at least

    # emulated bf16 on AVX2 (measured on the AMX Xeon with ATEN_CPU_CAPABILITY=avx2): a·bᵀ ~ 17 GFLOP/s as in the
    # layers' shapes (13-16), aᵀ·b 28 at 512² in cache but 14 at 1024², a·b 2: the larger size, a·bᵀ, is the peak
    emulated = {"a·bᵀ": {512: 16, 1024: 17}, "aᵀ·b": {512: 28, 1024: 14}, "a·b": {512: 2, 1024: 1}}
    calls = _modelled_layouts(monkeypatch, lambda n, layout: emulated[layout][n])
    assert matmul_peak(torch.bfloat16, cpu, seconds=2.0) == (pytest.approx(17), 1024, "a·bᵀ")
    assert set(calls) == {512, 1024}

    calls = _modelled_layouts(monkeypatch, lambda n, layout: rates[n])  # a given size is timed alone
    assert matmul_peak(torch.float32, cpu, size=512, seconds=0.5)[:2] == (pytest.approx(100), 512)
    assert set(calls) == {512}
