"""Validation that never stalls training: a budget on clips x frames x steps, the clips dealt to the ranks,
and a default that adds under 5% to training time at the paper's settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.validation_cost import validation_shares
from model.realportrait import RealPortrait
from model.vae import FrameVAE
from training.config import CONFIG_DIR, ConfigError, StageConfig, ValidationConfig, load_config
from training.validation import ValidationClip, generate, rank_share


def test_a_validation_over_its_budget_is_refused() -> None:
    assert ValidationConfig(pairs=4, frames=8, num_steps=50).budget == 1600  # the default fits it exactly
    with pytest.raises(ValueError, match=r"4 x 16 x 50 = 3200 exceeds budget 1600"):
        ValidationConfig(pairs=4, frames=16, num_steps=50)
    stage1 = CONFIG_DIR / "stage1.yaml"
    with pytest.raises(ConfigError) as error:
        load_config(stage1, ["validation.frames=16"])
    assert str(stage1) in str(error.value) and "field 'validation'" in str(error.value)
    assert load_config(stage1, ["validation.frames=16", "validation.budget=3200"]).validation.frames == 16


def test_the_clips_are_dealt_to_every_rank() -> None:
    shares = [rank_share(5, rank, 2) for rank in range(2)]
    assert shares == [[0, 2, 4], [1, 3]]
    assert [rank_share(2, rank, 4) for rank in range(4)] == [[0], [1], [], []]  # more ranks than clips


def test_the_paper_validation_adds_under_5_percent_to_training() -> None:
    shares = {name: share for name, _, share in validation_shares()}
    assert set(shares) == {"stage1", "stage2"}
    assert all(0 < share < 0.05 for share in shares.values()), shares


def test_sampling_a_share_stays_within_the_budget(vae_dir: Path) -> None:
    """Counts what the model really denoises: per DDIM timestep, the frames of its fullest pass."""
    torch.manual_seed(0)
    settings = ValidationConfig(pairs=3, frames=2, num_steps=3, budget=18)
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=1, resolution=64)
    rng = np.random.default_rng(0)
    clips = [
        ValidationClip(f"c{i}", frames[0], frames, 25.0)
        for i, frames in enumerate(rng.integers(0, 256, (settings.pairs, settings.frames, 64, 64, 3), np.uint8))
    ]
    model = RealPortrait.from_preset("tiny").eval()
    vae = FrameVAE.from_path(vae_dir)
    frames_at: dict[int, int] = {}

    def count(_: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        latents, timesteps = args[0], args[1]
        step = int(timesteps[0])
        frames_at[step] = max(frames_at.get(step, 0), latents.shape[0] * latents.shape[2])

    model.register_forward_pre_hook(count)  # passes without the sampling cache
    cached_prediction = model.cached_prediction

    def counted(noisy: torch.Tensor, timesteps: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        count(model, (noisy, timesteps))
        return cached_prediction(noisy, timesteps, *args, **kwargs)

    model.cached_prediction = counted  # passes with it (sampling builds the reference cache once per call)
    per_rank = []
    for rank in range(2):
        frames_at.clear()
        mine = [clips[index] for index in rank_share(len(clips), rank, 2)]
        generated = generate(model, vae, mine, stage, settings, autocast=torch.bfloat16)  # bf16 autocast on CPU
        assert generated.dtype == torch.float32 and generated.shape == (len(mine), 3, 2, 64, 64)
        assert generated.isfinite().all()
        assert len(frames_at) == settings.num_steps
        per_rank.append(sum(frames_at.values()))
    assert per_rank == [2 * 2 * 3, 1 * 2 * 3]  # rank 0: clips 0 and 2; rank 1: clip 1
    assert sum(per_rank) == settings.pairs * settings.frames * settings.num_steps <= settings.budget
