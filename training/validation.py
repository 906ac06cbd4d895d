"""Validation samples for fixed clips: the EMA model animates each clip's first frame with the clip's
own frames as the driving motion (self-reenactment), so the driving frames are also the ground truth.

The clips are the first `pairs` clips of the validation splits in the build's committed tars, in
tar order, chosen from the build's parquet record (not by scanning tars) and decoded once per stage on
every rank before the first step; the sampler's noise is seeded the same at every validation, so the
images of two steps differ only by the weights. In image mode (stage 1) each driving frame is animated
on its own (L = 1, as a batch), in video mode the frames form one clip.

Validation must not stall training: its cost (clips x frames x steps) is bounded by
`validation.budget`, the clips are dealt round-robin to the ranks (each samples its share, rank 0
gathers the frames), and sampling runs under bf16 autocast when training is bf16. Every rank does
about the same work, so all reach the gather, and the next training collective, together.

Logged: `val/mse` against the driving frames (and `val/mse_source_copy`, the reference repeated), one
video per clip (driving | generated, side by side) and a frame grid (per clip: the reference then
driving frames, the reference then generated frames).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from model.realportrait import RealPortrait
from model.vae import FrameVAE
from pipeline.storage import Location
from pipeline.video_file import VideoFile
from training.config import StageConfig, ValidationConfig
from training.monitor import Monitor
from training.validation_picks import ReadCost, pick_clips, read_picks

GRID_FRAMES = 4


@dataclass(frozen=True)
class ValidationClip:
    key: str
    reference: np.ndarray  # uint8 [H, W, 3], the clip's first frame
    driving: np.ndarray  # uint8 [V, H, W, 3]
    fps: float


def load_clips(
    build_dir: Location,
    settings: ValidationConfig,
    *,
    frames: int,
    stride: int,
    resolution: int,
    cost: ReadCost | None = None,
) -> list[ValidationClip]:
    """The first `settings.pairs` clips of the validation splits long enough for `frames` frames, chosen from
    the build's record and read from their tars alone (`training.validation_picks`); `cost` hears the reads."""
    span = (frames - 1) * stride + 1
    picks = pick_clips(build_dir, settings.splits, span=span, count=settings.pairs)
    samples = read_picks(picks, ReadCost() if cost is None else cost)
    clips = []
    for pick in picks:
        sample = samples[pick.key]
        meta = json.loads(sample["json"])
        driving = VideoFile(sample["mp4"], name=pick.key).frames(range(0, span, stride), resolution, resolution)
        clips.append(ValidationClip(pick.key, driving[0], driving, float(meta["fps"]) / stride))
    return clips


def _to_model(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    tensor = torch.from_numpy(frames).to(device).float() / 127.5 - 1
    return tensor.movedim(-1, -3)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3]."""
    return ((frames.movedim(-3, -1).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def rank_share(count: int, rank: int, world: int) -> list[int]:
    """The indices of the clips `rank` samples: round-robin, so shares differ by at most one clip."""
    return list(range(rank, count, world))


@torch.no_grad()
def generate(
    model: RealPortrait,
    vae: FrameVAE,
    clips: list[ValidationClip],
    stage: StageConfig,
    settings: ValidationConfig,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """Generated frames [N, 3, V, H, W] in [-1, 1], float32, for the clips (see the module docstring)."""
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        return _generate(model, vae, clips, stage, settings, device).float()


def _generate(
    model: RealPortrait,
    vae: FrameVAE,
    clips: list[ValidationClip],
    stage: StageConfig,
    settings: ValidationConfig,
    device: torch.device,
) -> torch.Tensor:
    reference = _to_model(np.stack([c.reference for c in clips]), device)  # [N, 3, H, W]
    driving = _to_model(np.stack([c.driving for c in clips]), device).transpose(1, 2)  # [N, 3, V, H, W]
    reference_latents = vae.encode(reference[:, :, None], sample=False)[:, :, 0]
    generator = torch.Generator(device).manual_seed(0)
    options = {
        "num_steps": settings.num_steps,
        "reference_guidance": settings.reference_guidance,
        "motion_guidance": settings.motion_guidance,
        "generator": generator,
    }
    count, _, length = driving.shape[:3]
    if stage.mode == "video":
        fps = torch.tensor([c.fps for c in clips], device=device)
        latents = model.sample(reference_latents, driving, fps=fps, **options)
    else:
        singles = driving.transpose(1, 2).flatten(0, 1)[:, :, None]  # [N * V, 3, 1, H, W]
        latents = model.sample(reference_latents.repeat_interleave(length, 0), singles, **options)
        latents = latents[:, :, 0].unflatten(0, (count, length)).transpose(1, 2)
    return vae.decode(latents)


@dataclass(frozen=True)
class SharedResult:
    """What a rank sends rank 0 for its share: its clip indices, their frames and their squared error, and
    how long it sampled before reaching the gather (the slowest rank decides when all reach the next
    collective, so rank 0 logs and checks it against the collective timeout)."""

    indices: list[int]
    frames: np.ndarray  # uint8 [n, V, H, W, 3]
    squared_error: float  # summed over every element of the float frames
    elements: int
    seconds: float = 0.0


def score_share(indices: list[int], clips: list[ValidationClip], generated: torch.Tensor) -> SharedResult:
    """This rank's frames as uint8 and their squared error against the driving frames (the ground truth)."""
    truth = _to_model(np.stack([c.driving for c in clips]), generated.device).transpose(1, 2)
    squared = float((generated - truth).pow(2).sum())
    return SharedResult(indices, _to_uint8(generated.transpose(1, 2)), squared, generated.numel())


def log_validation(
    monitor: Monitor, step: int, clips: list[ValidationClip], shares: list[SharedResult], source_copy: float
) -> float:
    """Logs the MSE against the driving frames, a video per clip and the frame grid; returns the MSE."""
    by_index = {index: frames for share in shares for index, frames in zip(share.indices, share.frames, strict=True)}
    if sorted(by_index) != list(range(len(clips))):
        raise RuntimeError(f"validation shares cover clips {sorted(by_index)}, expected 0..{len(clips) - 1}")
    frames = np.stack([by_index[index] for index in range(len(clips))])  # [N, V, H, W, 3]
    mse = sum(share.squared_error for share in shares) / sum(share.elements for share in shares)
    rows = []
    for index, clip in enumerate(clips):
        monitor.video(f"val/clip{index}", np.concatenate([clip.driving, frames[index]], axis=2), clip.fps, step)
        shown = np.linspace(0, len(clip.driving) - 1, min(GRID_FRAMES, len(clip.driving))).round().astype(int)
        rows.append(np.concatenate([clip.reference, *clip.driving[shown]], axis=1))
        rows.append(np.concatenate([clip.reference, *frames[index][shown]], axis=1))
    monitor.image("val/grid", np.concatenate(rows, axis=0), step)
    monitor.scalars(step, {"val/mse": mse, "val/mse_source_copy": source_copy})
    return mse


def source_copy_mse(clips: list[ValidationClip]) -> float:
    """The MSE of repeating each clip's reference frame: what a model that ignores the motion scores, the
    line `val/mse` must go below for the model to move the face rather than copy it."""
    reference = np.stack([np.broadcast_to(clip.reference, clip.driving.shape) for clip in clips])
    driving = np.stack([clip.driving for clip in clips])
    return float(np.mean(((reference.astype(np.float64) - driving) / 127.5) ** 2))
