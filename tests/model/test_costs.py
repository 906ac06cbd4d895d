"""The analytic cost model against what torch counts and keeps on a real tiny model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from model.costs import (
    ClipShape,
    ModelSizes,
    activation_elements,
    forward_flops,
    training_step_flops,
    zero2_model_state_bytes,
)
from model.saved_tensors import saved_tensor_bytes

aten = torch.ops.aten


def _attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _attention_backward(grad, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad, query, key, value)


# torch counts CUDA attention kernels but not the CPU one; register it with torch's own formulas.
CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: _attention,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward,
}

SHAPES = [
    ClipShape(batch=2, num_frames=4, latent_height=8, latent_width=12),
    ClipShape(batch=1, num_frames=1, latent_height=16, latent_width=16, motion=False),
    ClipShape(batch=2, num_frames=3, latent_height=8, latent_width=8, reference=False),
]


def run(model, shape: ClipShape, *, backward: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    h, w, b, length = shape.latent_height, shape.latent_width, shape.batch, shape.num_frames
    latents = torch.randn(b, 4, length, h, w, generator=generator)
    reference = torch.randn(b, 4, h, w, generator=generator) if shape.reference else None
    driving = torch.rand(b, 3, length, 8 * h, 8 * w, generator=generator) if shape.motion else None
    motion = model.encode_motion(driving) if driving is not None else None
    out = model(latents, torch.randint(0, 1000, (b,), generator=generator), reference, motion)
    if backward:
        out.sum().backward()


@pytest.mark.parametrize("shape", SHAPES, ids=["video", "image-no-motion", "no-reference"])
def test_forward_flops_match_torchs_count(tiny_model, shape):
    model = tiny_model(control=True)
    sizes = ModelSizes.from_config(model.config)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter, torch.no_grad():
        run(model, shape, backward=False)
    assert sum(forward_flops(sizes, shape).values()) == counter.get_total_flops()

    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        run(model, shape, backward=True)
    # 3x forward is the convention; torch's count differs only where inputs need no gradient
    # (first layers) and in its attention-backward formula.
    step = training_step_flops(sizes, shape, checkpointing=False)
    assert step == pytest.approx(counter.get_total_flops(), rel=0.03)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_estimate_matches_what_autograd_keeps(tiny_model, checkpointing):
    model = tiny_model(control=True).train()
    if checkpointing:
        model.enable_gradient_checkpointing()
    shape = ClipShape(batch=2, num_frames=4, latent_height=16, latent_width=16)
    with saved_tensor_bytes(model) as kept:
        run(model, shape, backward=False)
    measured = sum(kept.values()) / 4  # float32 elements
    estimate = activation_elements(ModelSizes.from_config(model.config), shape, checkpointing=checkpointing)
    assert estimate == pytest.approx(measured, rel=0.1)


def test_zero2_partitions_gradients_and_optimizer_but_not_parameters():
    states = zero2_model_state_bytes(trainable=1_000, frozen=200, gpus=4)
    assert states == {"parameters": 2400, "gradients": 500, "optimizer": 3000, "total": 5900}
