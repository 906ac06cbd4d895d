"""End-to-end training sanity: the tiny model overfits one clip through `training_loss`."""

from __future__ import annotations

import torch

from model.realportrait import RealPortrait


def test_tiny_model_overfits_one_clip(clip):
    """Classic single-batch overfit: one clip, one fixed draw of timesteps/noise/augmentation (the
    same generator seed every step), guidance dropout off. The loss must fall at least 10x."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny", reference_dropout=0.0, motion_dropout=0.0).train()
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
    model = RealPortrait.from_preset("tiny", reference_dropout=1.0, motion_dropout=1.0)
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
