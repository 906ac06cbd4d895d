"""`compile: true`: the backbone's and the ControlNet's blocks compiled by inductor train as the eager model does."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from model.realportrait import RealPortrait
from training.config import CONFIG_DIR, ConfigError, StageConfig, load_config
from training.engine import compile_networks, deepspeed_config


def loss_and_gradients(model: RealPortrait, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    latents, reference = torch.randn(2, 4, 2, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    driving = torch.rand(2, 3, 2, 64, 64, generator=generator) * 2 - 1
    model.zero_grad()
    torch.manual_seed(seed)  # the same timesteps, noise and augmentation draws in both models
    loss = model.training_loss(latents, reference, driving, fps=torch.tensor([25.0, 12.5]))
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
def test_the_compiled_model_trains_as_the_eager_one() -> None:
    torch.manual_seed(0)
    eager = RealPortrait.from_preset("tiny", drop_motion_rate=0.0, drop_both_rate=0.0).train()
    with torch.no_grad():  # the zero-initialised output layers would hide every gradient behind them
        for parameter in eager.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    eager.enable_gradient_checkpointing()  # as the paper's stages train: each compiled block checkpointed
    compiled = copy.deepcopy(eager)
    compile_networks(compiled)
    counters.clear()
    loss, gradients = loss_and_gradients(compiled, seed=1)
    expected_loss, expected = loss_and_gradients(eager, seed=1)
    assert torch.allclose(loss, expected_loss, rtol=1e-5), (loss, expected_loss)
    assert gradients.keys() == expected.keys()
    assert any(name.startswith("controlnet.blocks.") for name in gradients)
    for name, gradient in expected.items():
        scale = gradient.abs().max().item()
        assert scale > 0, name
        assert (gradients[name] - gradient).abs().max().item() <= 1e-4 * scale + 1e-7, name
    assert counters["stats"]["unique_graphs"] > 0  # inductor compiled, not an eager fall-back


def test_compile_refuses_zero3() -> None:
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=2)
    assert (
        deepspeed_config(CONFIG_DIR / "zero2.json", stage, world=2, bf16=False, compiled=True)["train_batch_size"] == 2
    )
    with pytest.raises(ConfigError, match=r"compile: true cannot run with .*zero3.json \(ZeRO stage 3\)"):
        deepspeed_config(CONFIG_DIR / "zero3.json", stage, world=2, bf16=False, compiled=True)


def test_compile_is_off_unless_asked(tmp_path: Path) -> None:
    assert load_config(CONFIG_DIR / "tiny.yaml").compile is False
    assert load_config(CONFIG_DIR / "tiny.yaml", ["compile=true"]).compile is True
