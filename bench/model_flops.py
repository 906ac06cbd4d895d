"""The FLOPs a training step needs, for model FLOP utilisation (MFU): what autograd actually runs.

The usual "3x the forward" assumes every layer computes both gradients. A frozen layer computes only the
gradient of its input (1x its forward), and only when something before it trains; a trained layer whose
input needs no gradient (the first patch embedding, the motion encoder's first convolution) computes only
its weight gradient. So the step is counted as torch counts it: one forward and its backward under
`FlopCounterMode`, on the meta device (no memory, no time), with the stage's trainable parameters set and
gradient checkpointing off. Recomputation by checkpointing is work the hardware does but the model does not
need, so MFU leaves it out. The frozen VAE's encode (forward only) is part of a training step that encodes
its latents on the fly, and is counted beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.utils.flop_counter import FlopCounterMode

from model.realportrait import RealPortrait
from training.config import StageConfig
from training.engine import select_trainable


def step_flops(step: Callable[[], torch.Tensor]) -> float:
    """FLOPs of `step()`'s forward plus the backward autograd runs from the scalar it returns."""
    with FlopCounterMode(display=False) as counter:
        step().backward()
    return float(counter.get_total_flops())


def denoiser_step_flops(preset: str, stage: StageConfig, batch: int, frames: int, latent: int) -> float:
    """One training step of the RealPortrait `preset` with `stage`'s trainable parameters, counted on meta.

    The motion augmentation and the loss are element-wise (uncounted) and left out, so the forward is the
    denoiser's on an already encoded motion input."""
    with torch.device("meta"):
        model = RealPortrait.from_preset(preset).train()
        select_trainable(model, stage)
        latents = torch.empty(batch, 4, frames, latent, latent)
        reference = torch.empty(batch, 4, latent, latent)
        driving = torch.empty(batch, 3, frames, 8 * latent, 8 * latent)
        timesteps = torch.zeros(batch, dtype=torch.long)

    def step() -> torch.Tensor:
        motion = model.encode_motion(driving, augment=False)
        return model(latents, timesteps, reference, motion).float().square().mean()

    return step_flops(step)


def vae_encode_flops(vae_dir: Path, images: int, side: int) -> float:
    """Forward FLOPs of encoding `images` frames of side `side` with the diffusers VAE in `vae_dir`."""
    config = AutoencoderKL.load_config(vae_dir)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
        frames = torch.empty(images, 3, side, side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.encode(frames)
    return float(counter.get_total_flops())
