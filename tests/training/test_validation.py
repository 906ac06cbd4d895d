"""Validation that never stalls training: a budget on clips x frames x steps, the clips dealt to the ranks,
a default that adds under 5% to training time at the paper's settings, and clips chosen from the build's
record so that a stage's start reads only their samples."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.validation_cost import validation_shares
from bench.validation_startup import scan_cost, write_split_build
from model.realportrait import RealPortrait
from model.vae import FrameVAE
from training.config import CONFIG_DIR, ConfigError, StageConfig, ValidationConfig, load_config
from training.validation import ValidationClip, generate, load_clips, rank_share
from training.validation_picks import ReadCost


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


def test_validation_clips_are_read_from_their_own_tars_alone(tmp_path: Path) -> None:
    """1,000 unsplit clips sort before the validation clips: the replaced scan read every tar; the choice
    from the build's parquet opens only the tars that hold the validation clips, and skips their other samples."""
    build = write_split_build(tmp_path / "build", unsplit=1000, pairs=3, frames=4, size=16, train=3)
    settings = ValidationConfig(pairs=3, frames=4, num_steps=1)
    cost = ReadCost()
    clips = load_clips(build.build_dir, settings, frames=4, stride=1, resolution=16, cost=cost)
    assert [clip.key for clip in clips] == build.validation_keys
    assert cost.tars == build.validation_tars
    others, size = 0, 0
    for tar in build.validation_tars:  # the first also holds the training clips
        size += tar.stat().st_size
        with tarfile.open(tar) as archive:
            others += sum(m.size for m in archive.getmembers() if m.name.split(".")[0] not in build.validation_keys)
    assert len(cost.tars) == 2 and others > 0 and cost.bytes <= size - others  # no byte of another sample read
    for index, clip in enumerate(clips):  # validation clip i is grey level 40 * (i + 1): the right samples
        assert clip.driving.shape == (4, 16, 16, 3) and clip.fps == 25.0
        assert np.abs(clip.driving.astype(float) - 40 * (index + 1)).max() <= 3
        assert (clip.reference == clip.driving[0]).all()
    scanned = scan_cost(build.build_dir, settings.splits, 4, 3)
    assert len(scanned.tars) == 6 and scanned.bytes > 100 * cost.bytes  # what the bench's ratio stands on


def test_validation_clips_need_the_builds_splits_and_enough_frames(tmp_path: Path) -> None:
    build = write_split_build(tmp_path / "build", unsplit=2, pairs=2, frames=4, size=16, train=1)
    too_long = ValidationConfig(pairs=2, frames=5, num_steps=1)
    cost = ReadCost()
    assert load_clips(build.build_dir, too_long, frames=5, stride=1, resolution=16, cost=cost) == []
    assert cost.tars == []  # nothing fits, so no tar is opened
    for manifest in (build.build_dir / "sources").glob("*.parquet"):
        manifest.unlink()
    with pytest.raises(ConfigError, match=r"sources/ has no source manifest .*\['val', 'test'\]"):
        load_clips(build.build_dir, ValidationConfig(pairs=2, frames=4, num_steps=1), frames=4, stride=1, resolution=16)
