"""The step's analytic FLOP count (the MFU of ``mme bench train``) against the matmuls a forward pass runs."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mme.models import MaskedAutoencoder, ModelConfig
from mme.motion.targets import TargetConfig, head_specs
from mme.train.flops import step_flops


@pytest.mark.parametrize("target, mask_type", [("pixel", "tube"), ("mme", "random")])
def test_step_flops_are_three_times_the_forwards_matmul_flops(target, mask_type):
    cfg = ModelConfig(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4, decoder_dim=32,
                      decoder_heads=2, mask_type=mask_type, mask_ratio=0.75)
    heads = head_specs(TargetConfig(kind=target), cfg)  # mme: two heads with a hidden layer
    model = MaskedAutoencoder(cfg, heads)
    targets = {h.name: torch.randn(2, cfg.num_tokens, h.dim) for h in heads}
    # the math backend's attention is made of matmuls the counter sees (it does not count the CPU flash kernel)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(torch.randn(2, 3, 4, 32, 32), model.make_mask(2), targets)
    assert step_flops(cfg, heads, batch=2) == 3 * counter.get_total_flops()
