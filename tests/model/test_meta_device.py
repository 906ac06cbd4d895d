"""The `paper` preset's training step and a guided sampling step, end to end on the meta device.

A meta tensor has a shape and no values, so any read of a value (`.item()`, `bool()`, a copy to the
host) fails: the step running through proves the paper-sized graph (512 px, L = 16, checkpointing on,
forward and backward) has none, without the memory to hold 1.2 B parameters."""

from __future__ import annotations

import pytest
import torch

from model.realportrait import PRESETS, RealPortrait

pytestmark = pytest.mark.slow

META = torch.device("meta")


@pytest.fixture(scope="module")
def paper_model() -> RealPortrait:
    with META:
        model = RealPortrait.from_preset("paper")
    model.to(META)  # the schedule's tables, computed on the host, too
    model.enable_gradient_checkpointing()
    return model


@pytest.mark.parametrize(("stage", "frames"), [("stage1: image mode", 1), ("stage2: video mode", 16)])
def test_the_paper_training_step_runs_on_meta(paper_model: RealPortrait, stage: str, frames: int) -> None:
    preset = PRESETS["paper"]
    side = preset.latent_size
    assert (side * 8, preset.num_frames) == (512, 16)
    batch = 2
    latents = torch.randn(batch, 4, frames, side, side, device=META)
    reference = torch.randn(batch, 4, side, side, device=META)
    driving = torch.rand(batch, 3, frames, 8 * side, 8 * side, device=META)
    fps = torch.full((batch,), float("nan") if frames == 1 else 25.0, device=META)
    paper_model.train()
    paper_model.zero_grad(set_to_none=True)
    loss = paper_model.training_loss(latents, reference, driving, fps=fps)
    loss.backward()
    assert loss.shape == () and loss.device == META
    grad = paper_model.backbone.blocks[27].mlp.fc2.weight.grad
    assert grad is not None and grad.shape == (1152, 4608)
    assert paper_model.controlnet.projections[12].weight.grad is not None  # the ControlNet's last block


def test_a_guided_paper_sampling_step_runs_on_meta(paper_model: RealPortrait) -> None:
    side = PRESETS["paper"].latent_size
    reference = torch.randn(1, 4, side, side, device=META)
    driving = torch.rand(1, 3, 16, 8 * side, 8 * side, device=META)
    paper_model.eval()
    latents = paper_model.sample(reference, driving, num_steps=1, reference_guidance=2.0, motion_guidance=1.5)
    assert latents.shape == (1, 4, 16, side, side) and latents.device == META
