"""Analytic cost model of RealPortrait: FLOPs, activation memory, ZeRO-2 model states, training time.

FLOPs count multiply-adds as 2 and cover every matmul, convolution and attention product (what
`torch.utils.flop_counter` counts); element-wise work is left out, as is usual. A training step costs
3x the forward (backward = 2x forward), plus one more forward when blocks are checkpointed.

Activation memory counts the tensors autograd keeps for the backward pass, enumerated per token from
the block implementation (`model/stdit2.py`), in units of the hidden size C:
- backbone block, per token of every frame: spatial attention 13 (norm input, normalised, modulated,
  qkv 3, qk-norm 4, attention output, merged heads, projection), temporal norm input 1, cross-attention
  3, MLP 4 + 2 * mlp_ratio; per target token: reference keys/values 4 (with a reference), temporal
  attention 13 (normalised, transposed, qkv 3, rotated q/k 2, qk-norm 4, output, mixed);
- ControlNet block (targets only, no reference): 12 + 14 + 3 + MLP + 1 for its output projection.
`bench/model.py` prints this estimate beside the bytes autograd actually saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from model.motion import INPUT_CHANNELS

A100_BF16_FLOPS = 312e12  # dense bf16 tensor-core peak of an A100


@dataclass(frozen=True)
class ClipShape:
    """One batch: B clips of L target frames of an h x w latent, with or without each condition."""

    batch: int
    num_frames: int
    latent_height: int
    latent_width: int
    reference: bool = True
    motion: bool = True


@dataclass(frozen=True)
class ModelSizes:
    """The dimensions of a RealPortrait configuration that costs depend on."""

    hidden: int
    depth: int
    mlp_inner: int
    patch: tuple[int, int]
    latent_channels: int
    caption_channels: int
    caption_tokens: int
    controlnet_depth: int
    motion_in_channels: int
    motion_encoder_channels: tuple[int, ...]
    motion_channels: int
    vae_scale_factor: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSizes:
        return cls(
            hidden=config["hidden_size"],
            depth=config["depth"],
            mlp_inner=int(config["hidden_size"] * config["mlp_ratio"]),
            patch=(config["patch_size"][1], config["patch_size"][2]),
            latent_channels=config["latent_channels"],
            caption_channels=config["caption_channels"],
            caption_tokens=config["caption_tokens"],
            controlnet_depth=config["controlnet_depth"],
            motion_in_channels=INPUT_CHANNELS[config["motion_input"]],
            motion_encoder_channels=tuple(config["motion_encoder_channels"]),
            motion_channels=config["motion_channels"],
            vae_scale_factor=config["vae_scale_factor"],
        )


def _tokens(sizes: ModelSizes, shape: ClipShape) -> tuple[int, int, int]:
    """(tokens per frame S, backbone tokens B*F*S, target tokens B*L*S)."""
    per_frame = (shape.latent_height // sizes.patch[0]) * (shape.latent_width // sizes.patch[1])
    frames = shape.num_frames + int(shape.reference)
    return per_frame, shape.batch * frames * per_frame, shape.batch * shape.num_frames * per_frame


def _block_flops(sizes: ModelSizes, shape: ClipShape, *, reference: bool, all_tokens: int) -> float:
    """One STDiT2 block's forward FLOPs (linears + attention)."""
    c, b, length = sizes.hidden, shape.batch, shape.num_frames
    s = all_tokens // (b * (length + int(reference)))
    targets = b * length * s
    linear = 2 * all_tokens * 4 * c * c  # spatial qkv + proj
    linear += 2 * targets * 4 * c * c  # temporal qkv + proj
    linear += 2 * all_tokens * 2 * c * c + 2 * sizes.caption_tokens * 2 * c * c  # cross q, proj; kv
    linear += 2 * all_tokens * 2 * c * sizes.mlp_inner
    # with a reference: its own S x S attention, and targets attending to 2S keys
    spatial = 4 * b * s * s * c + 4 * targets * (2 * s) * c if reference else 4 * targets * s * c
    temporal = 4 * b * s * length * length * c
    cross = 4 * all_tokens * sizes.caption_tokens * c
    return linear + spatial + temporal + cross


def motion_encoder_flops(sizes: ModelSizes, shape: ClipShape) -> float:
    """Convolution FLOPs of the motion encoder over the B * L driving frames."""
    channels = sizes.motion_encoder_channels
    height = shape.latent_height * sizes.vae_scale_factor
    width = shape.latent_width * sizes.vae_scale_factor
    flops = 2 * sizes.motion_in_channels * channels[0] * 9 * height * width
    for stage, (c_in, c_out) in enumerate(pairwise(channels), start=1):
        pixels = (height >> stage) * (width >> stage)
        flops += 2 * (c_in * c_out + c_out * c_out) * 9 * pixels
    flops += 2 * channels[-1] * sizes.motion_channels * 9 * shape.latent_height * shape.latent_width
    return flops * shape.batch * shape.num_frames


def forward_flops(sizes: ModelSizes, shape: ClipShape) -> dict[str, float]:
    """Forward FLOPs by component: conditioning, backbone, controlnet, motion_encoder."""
    c, b = sizes.hidden, shape.batch
    patch = sizes.patch[0] * sizes.patch[1]
    _, all_tokens, targets = _tokens(sizes, shape)
    third = c // 3
    conditioning = 2 * 2 * b * (256 * c + c * c)  # t_embedder at t and at 0
    conditioning += 2 * 2 * b * c * 6 * c + 2 * b * c * 3 * c  # t_block (t, 0), t_block_temp
    conditioning += 2 * 3 * b * (256 * third + third * third)  # csize (height, width), ar
    conditioning += 2 * 2 * b * (256 * c + c * c)  # fl, fps
    conditioning += 2 * sizes.caption_tokens * (sizes.caption_channels * c + c * c)  # y_proj
    backbone = 2 * all_tokens * sizes.latent_channels * patch * c
    backbone += sizes.depth * _block_flops(sizes, shape, reference=shape.reference, all_tokens=all_tokens)
    backbone += 2 * targets * c * patch * sizes.latent_channels
    costs = {"conditioning": float(conditioning), "backbone": float(backbone), "controlnet": 0.0}
    costs["motion_encoder"] = 0.0
    if shape.motion:
        control = 2 * targets * (sizes.latent_channels + sizes.motion_channels) * patch * c
        control += sizes.controlnet_depth * (
            _block_flops(sizes, shape, reference=False, all_tokens=targets) + 2 * targets * c * c
        )
        costs["controlnet"] = float(control)
        costs["motion_encoder"] = float(motion_encoder_flops(sizes, shape))
    return costs


def training_step_flops(sizes: ModelSizes, shape: ClipShape, *, checkpointing: bool) -> float:
    """Forward + backward (3x forward), + one recomputed forward of the blocks when checkpointing."""
    forward = sum(forward_flops(sizes, shape).values())
    return forward * (4 if checkpointing else 3)


def _block_activations(sizes: ModelSizes, shape: ClipShape) -> tuple[float, float]:
    """Elements kept by one backbone block and by one ControlNet block (module docstring)."""
    _, all_tokens, targets = _tokens(sizes, shape)
    mlp = 4 + 2 * sizes.mlp_inner / sizes.hidden
    backbone = all_tokens * (13 + 1 + 3 + mlp) + targets * (4 * int(shape.reference) + 13)
    control = targets * (12 + 14 + 3 + mlp + 1) if shape.motion else 0.0
    return backbone * sizes.hidden, control * sizes.hidden


def activation_elements(sizes: ModelSizes, shape: ClipShape, *, checkpointing: bool) -> float:
    """Elements autograd holds at the end of a training forward (see the module docstring).

    With checkpointing only each block's input stays (and each ControlNet block's output, which the
    backbone consumes); the backward then recomputes one block at a time, adding
    `recompute_peak_elements` at its peak.
    """
    c = sizes.hidden
    _, all_tokens, targets = _tokens(sizes, shape)
    patch = sizes.patch[0] * sizes.patch[1]
    outside = all_tokens * sizes.latent_channels * patch + targets * 3 * c  # patch inputs, final layer
    control_depth = sizes.controlnet_depth if shape.motion else 0
    if shape.motion:
        outside += targets * (sizes.latent_channels + sizes.motion_channels) * patch
        outside += motion_encoder_activation_elements(sizes, shape)
    if checkpointing:
        return outside + c * (sizes.depth * all_tokens + control_depth * targets * 2)
    backbone_block, control_block = _block_activations(sizes, shape)
    return outside + sizes.depth * backbone_block + control_depth * control_block


def recompute_peak_elements(sizes: ModelSizes, shape: ClipShape) -> float:
    """The extra elements of the largest block recomputed during a checkpointed backward."""
    return max(_block_activations(sizes, shape))


def motion_encoder_activation_elements(sizes: ModelSizes, shape: ClipShape) -> float:
    """Each conv keeps its input and each SiLU its output (the next conv's input): 2x per hidden map."""
    channels = sizes.motion_encoder_channels
    height = shape.latent_height * sizes.vae_scale_factor
    width = shape.latent_width * sizes.vae_scale_factor
    elements = sizes.motion_in_channels * height * width + 2 * channels[0] * height * width
    for stage, c_out in enumerate(channels[1:], start=1):
        elements += 2 * 2 * c_out * (height >> stage) * (width >> stage)
    return elements * shape.batch * shape.num_frames


def zero2_model_state_bytes(trainable: int, frozen: int, gpus: int) -> dict[str, float]:
    """Per-GPU model states for bf16 mixed precision + Adam under ZeRO stage 2 (Rajbhandari et al.).

    Every GPU holds the bf16 parameters (2 bytes each, frozen ones included); gradients (bf16, 2) and
    the fp32 master copy with Adam's two moments (12) are partitioned over the GPUs.
    """
    parameters = 2 * (trainable + frozen)
    gradients = 2 * trainable / gpus
    optimizer = 12 * trainable / gpus
    return {
        "parameters": parameters,
        "gradients": gradients,
        "optimizer": optimizer,
        "total": parameters + gradients + optimizer,
    }


def step_seconds(flops_per_gpu: float, utilisation: float, peak_flops: float = A100_BF16_FLOPS) -> float:
    """Time of a step's FLOPs at a fraction of the GPU's peak."""
    return flops_per_gpu / (peak_flops * utilisation)


def guidance_shapes(shape: ClipShape, reference_guidance: float, motion_guidance: float) -> list[ClipShape]:
    """The forward passes of one guided denoising step, as `RealPortrait.guided_prediction` runs them:
    both conditions; reference only (unless both scales are 1); neither (when reference guidance is not 1)."""
    passes = [shape]
    if reference_guidance != 1 or motion_guidance != 1:
        passes.append(replace(shape, motion=False))
    if reference_guidance != 1:
        passes.append(replace(shape, reference=False, motion=False))
    return passes


def validation_flops(
    sizes: ModelSizes,
    *,
    clips: int,
    frames: int,
    steps: int,
    video: bool,
    latent_size: int,
    reference_guidance: float,
    motion_guidance: float,
) -> float:
    """Denoiser FLOPs of one validation: `clips` clips of `frames` driving frames, `steps` guided DDIM steps.
    Image mode samples each frame on its own (L = 1), video mode each clip as one L = frames sample. The VAE
    (one encode per clip, one decode per frame) is left out: under 1% of the denoiser at 50 steps."""
    shape = (
        ClipShape(clips, frames, latent_size, latent_size)
        if video
        else ClipShape(clips * frames, 1, latent_size, latent_size)
    )
    passes = guidance_shapes(shape, reference_guidance, motion_guidance)
    return steps * sum(sum(forward_flops(sizes, one).values()) for one in passes)


def validation_share(validation_flops_per_gpu: float, every: int, step_flops_per_gpu: float) -> float:
    """The time validation adds to training, as a fraction of the training time: one validation per `every`
    steps, both at the same utilisation."""
    return validation_flops_per_gpu / (every * step_flops_per_gpu)
