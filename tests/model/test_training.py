"""Training sanity: the tiny model overfits one clip through `training_loss`; the guidance dropout it draws."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from model.realportrait import RealPortrait
from training.config import CONFIG_DIR, ConditionDropout, load_config


def test_tiny_model_overfits_one_clip(clip):
    """Classic single-batch overfit: one clip, one fixed draw of timesteps/noise/augmentation (the
    same generator seed every step), guidance dropout off. The loss must fall at least 10x."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny", drop_motion_rate=0.0, drop_both_rate=0.0).train()
    data = clip(batch=2, frames=4, size=(16, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)

    def loss() -> torch.Tensor:
        generator = torch.Generator().manual_seed(123)
        return model.training_loss(data["latents"], data["reference"], data["driving"], generator=generator)

    with torch.no_grad():
        initial = loss().item()
    for _ in range(60):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        final = loss().item()
    assert initial > 0.5  # a fresh model predicts 0: the loss starts near E[eps^2] = 1
    assert final < initial / 10, (initial, final)


def test_training_loss_uses_guidance_dropout():
    """With dropout probability 1 no condition reaches the model: the loss equals that of a model
    called without reference and motion."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny", drop_motion_rate=0.0, drop_both_rate=1.0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.normal_(std=0.05)
    latents, reference = torch.randn(2, 4, 2, 8, 8), torch.randn(2, 4, 8, 8)
    driving = torch.rand(2, 3, 2, 64, 64) * 2 - 1
    with torch.no_grad():
        dropped = model.training_loss(latents, reference, driving, generator=torch.Generator().manual_seed(5))
        ignored_reference = model.training_loss(
            latents, reference + 3, driving * -1, generator=torch.Generator().manual_seed(5)
        )
    assert torch.equal(dropped, ignored_reference)


@pytest.mark.parametrize("stage_file", ["stage1.yaml", "stage2.yaml"])
def test_the_shipped_condition_dropout_trains_every_guidance_pass(stage_file: str) -> None:
    """Guidance runs (reference and motion), (reference only) and (neither) at every step: each must be
    drawn for at least 5% of training samples, at the shares the stage config names."""
    stage = load_config(CONFIG_DIR / stage_file).stages[0]
    model = RealPortrait.from_preset("tiny", **stage.condition_dropout.model_rates())
    reference, motion = model.condition_keep(200_000, generator=torch.Generator().manual_seed(0))
    shares = {
        "both": (reference & motion).float().mean().item(),
        "reference only": (reference & ~motion).float().mean().item(),
        "motion only": (~reference & motion).float().mean().item(),
        "neither": (~reference & ~motion).float().mean().item(),
    }
    dropout = stage.condition_dropout
    expected = {
        "both": 1 - dropout.motion - dropout.both - dropout.reference,
        "reference only": dropout.motion,
        "motion only": dropout.reference,
        "neither": dropout.both,
    }
    for name, share in shares.items():
        assert share == pytest.approx(expected[name], abs=0.005), (name, shares)
    assert min(shares["both"], shares["reference only"], shares["neither"]) >= 0.05, shares


def test_condition_dropout_shares_are_exclusive_and_configurable() -> None:
    model = RealPortrait.from_preset("tiny", drop_motion_rate=0.2, drop_both_rate=0.3, drop_reference_rate=0.1)
    reference, motion = model.condition_keep(100_000, generator=torch.Generator().manual_seed(1))
    assert (~reference & motion).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (reference & ~motion).float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert (~reference & ~motion).float().mean().item() == pytest.approx(0.3, abs=0.005)
    with pytest.raises(ValueError, match="sum to at most 1"):
        RealPortrait.from_preset("tiny", drop_motion_rate=0.6, drop_both_rate=0.6)
    with pytest.raises(ValidationError, match="more than 1"):
        ConditionDropout(motion=0.5, both=0.4, reference=0.2)


def test_a_controlnet_scale_of_zero_is_the_motion_dropout_the_model_was_trained_with() -> None:
    """bench/learning.py's motion ablation (`rp-eval run --controlnet-scale 0`) must be exactly the prediction
    the model learned for dropped motion (`motion_keep` False), and the motion must matter otherwise."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.normal_(std=0.05)  # zero-initialised outputs would make every comparison trivial
        noisy, reference = torch.randn(2, 4, 2, 8, 8), torch.randn(2, 4, 8, 8)
        motion = model.encode_motion(torch.rand(2, 3, 2, 64, 64) * 2 - 1)
        timesteps = torch.tensor([10, 500])
        scaled_to_zero = model(noisy, timesteps, reference, motion, controlnet_scale=0.0)
        dropped = model(noisy, timesteps, reference, motion, motion_keep=torch.tensor([False, False]))
        kept = model(noisy, timesteps, reference, motion)
    assert torch.equal(scaled_to_zero, dropped)
    assert not torch.allclose(kept, dropped, atol=1e-4)
