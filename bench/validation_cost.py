"""The time validation adds to training at the paper's settings, computed analytically (`model.costs`).

The shipped stage configs give the validation (clips, frames, DDIM steps, guidance scales, how often)
and the training steps (global batch, frames); the paper trained on 4 A100. Validation clips are
split over the GPUs, so one GPU samples ceil(clips / GPUs) of them. The training step counts the
checkpointed forward and backward of the model but not the VAE encode, so the share is an upper bound.
"""

from __future__ import annotations

import math

import torch

from model.costs import ClipShape, ModelSizes, training_step_flops, validation_flops, validation_share
from model.realportrait import PRESETS, RealPortrait
from training.config import CONFIG_DIR, load_config

PAPER_GPUS = 4


def validation_shares(gpus: int = PAPER_GPUS) -> list[tuple[str, float, float]]:
    """(stage name, validation TFLOP per GPU, share of training time) for stage1.yaml and stage2.yaml."""
    with torch.device("meta"):
        model = RealPortrait.from_preset("paper")
    sizes = ModelSizes.from_config(model.config)
    latent = PRESETS["paper"].latent_size
    shares = []
    for name in ("stage1.yaml", "stage2.yaml"):
        config = load_config(CONFIG_DIR / name)
        settings = config.validation
        for stage in config.stages:
            shape = ClipShape(stage.global_batch // gpus, stage.frames_per_sample, latent, latent)
            step = training_step_flops(sizes, shape, checkpointing=config.model.gradient_checkpointing)
            validation = validation_flops(
                sizes,
                clips=math.ceil(settings.pairs / gpus),
                frames=settings.frames,
                steps=settings.num_steps,
                video=stage.mode == "video",
                latent_size=latent,
                reference_guidance=settings.reference_guidance,
                motion_guidance=settings.motion_guidance,
            )
            shares.append((stage.name, validation / 1e12, validation_share(validation, settings.every, step)))
    return shares


def validation_report() -> str:
    """Lines for bench/model.py: per stage, one validation's cost per GPU and the time it adds to training."""
    lines = [f"validation at the paper's settings ({PAPER_GPUS} GPUs, clips split over them; budget < 5%):"]
    for name, tflop, share in validation_shares():
        lines.append(f"  {name}: {tflop:.0f} TFLOP per GPU per validation, adds {share:.2%} to training time")
    return "\n".join(lines)
