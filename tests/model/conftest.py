"""Shared fixtures for the model tests: tiny models with non-trivial weights, clips, the shared folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from model.realportrait import RealPortrait

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's reference folder beside the repository (CI checks it out there): it holds the key names
    and shapes of the released STDiT2 checkpoint. A clone without it skips the tests that read them."""
    path = (REPO_ROOT / ".." / "shared").resolve()
    if not (path / "stdit2_keys.tsv").is_file():
        pytest.skip(f"needs the released STDiT2 key list from the reference folder beside the repository ({path})")
    return path


def randomize_zero_initialised(module: nn.Module, *, skip: tuple[str, ...] = (), seed: int = 0) -> None:
    """Give zero-initialised parameters small random values (except names starting with `skip`).

    A fresh backbone predicts exactly 0 (zero output layer, zero cross/temporal projections), which
    would make every "does this input move the output" test pass or fail vacuously.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.startswith(skip) or parameter.abs().sum() != 0:
                continue
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


@pytest.fixture
def tiny_model() -> Callable[..., RealPortrait]:
    """Factory: the `tiny` preset, seeded, with the backbone's zero outputs randomised.

    The ControlNet is re-copied from the randomised backbone, as at construction; its zero
    projections and motion embedding stay zero unless `control=True`.
    """

    def build(*, control: bool = False, seed: int = 0, **overrides: object) -> RealPortrait:
        torch.manual_seed(seed)
        model = RealPortrait.from_preset("tiny", **overrides).eval()
        randomize_zero_initialised(model, skip=("controlnet.",), seed=seed)
        model.controlnet.copy_from_backbone(model.backbone)
        if control:
            randomize_zero_initialised(model.controlnet, seed=seed + 1)
        return model

    return build


@pytest.fixture
def clip() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: random latents, reference latent, driving frames and timesteps for B clips of L frames."""

    def make(batch: int = 2, frames: int = 3, size: tuple[int, int] = (16, 16), seed: int = 1) -> dict:
        generator = torch.Generator().manual_seed(seed)
        height, width = size
        return {
            "latents": torch.randn(batch, 4, frames, height, width, generator=generator),
            "reference": torch.randn(batch, 4, height, width, generator=generator),
            "driving": torch.rand(batch, 3, frames, 8 * height, 8 * width, generator=generator) * 2 - 1,
            "timesteps": torch.randint(0, 1000, (batch,), generator=generator),
        }

    return make
