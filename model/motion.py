"""The dense implicit motion representation: a learned encoder of the driving frames.

RealPortrait feeds its ControlNet a *dense implicit* motion representation rather than landmarks or
3DMM coefficients. We read "implicit" as learned end-to-end (no hand-designed motion parameters:
the features are whatever the denoising loss needs) and "dense" as a per-position feature map at
the latent resolution (64x64 for 512x512 frames), aligned with the latent tokens it steers. So
`MotionEncoder` is a convolutional encoder, trained with the model, from each driving frame to a
[C_m, H/8, W/8] map.

Trained on self-reenactment (driving frame and target from the same clip), such an encoder could
simply copy the target's appearance and face shape. `augment_motion_input` breaks both per clip:
colour jitter, grayscale and blur remove appearance cues; smooth anisotropic and elastic warps change
the face's proportions (identity) while keeping pose and expression readable. The same parameters
apply to every frame of a clip so the motion between frames is untouched.

For the ablation table the input is selectable: `input_kind="landmarks"` encodes rendered landmark
heatmaps (`render_landmarks`) instead of frames, with geometric augmentation only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

MotionInput = Literal["frames", "landmarks"]
INPUT_CHANNELS: dict[str, int] = {"frames": 3, "landmarks": 1}

# RGB -> YIQ: hue is a rotation and saturation a scaling of the (I, Q) chroma plane. The inverse is taken
# here, once: inverting on the device at every step would check the result for singularity on the host.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ.double()).float()
# the five orders of (R, G, B) other than the identity
_SHUFFLES = torch.tensor([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
CONSTANTS = {"rgb_to_yiq": _RGB_TO_YIQ, "yiq_to_rgb": _YIQ_TO_RGB, "shuffles": _SHUFFLES}


@functools.cache
def on_device(name: str, device: torch.device) -> torch.Tensor:
    """A constant of this module on `device`, copied there once: a copy per training step from host memory
    would make the host wait for the device queue each time."""
    return CONSTANTS[name].to(device)


@dataclass(frozen=True)
class MotionAugmentation:
    """Ranges of the per-clip augmentation (our defaults; the paper gives none)."""

    brightness: float = 0.3  # additive shift in [0, 1] image units, drawn from U(-x, x)
    contrast: float = 0.4  # factor around the clip's mean grey, U(1 - x, 1 + x)
    saturation: float = 0.5  # chroma factor, U(1 - x, 1 + x)
    hue: float = 0.05  # chroma rotation, U(-x, x) turns
    grayscale_probability: float = 0.2
    # share of clips whose RGB channels are put in another order. 0 by default, as the paper describes
    # none; a build whose examples have their colours permuted (DataConfig.color_permutation) needs it, or the
    # driving frames, which are the target frames, tell the model the target's colours
    channel_shuffle_probability: float = 0.0
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 2.0)  # pixels at 512 px width, scaled with the width
    aspect_jitter: float = 0.08  # per-axis scale about the centre, U(1 - x, 1 + x): face proportions
    elastic_magnitude: float = 0.03  # peak displacement of the smooth warp, fraction of the image side
    elastic_grid: int = 4  # control points per side of the smooth displacement field

    @classmethod
    def from_config(cls, ranges: dict[str, Any] | None) -> MotionAugmentation:
        """The defaults with the ranges a config names over them (`RealPortrait(motion_augmentation=...)`);
        an unknown name is refused with the known ones, since a misspelt range would silently do nothing."""
        known = {entry.name for entry in fields(cls)}
        unknown = sorted(set(ranges or {}) - known)
        if unknown:
            raise ValueError(f"motion_augmentation: unknown range(s) {unknown}; known: {sorted(known)}")
        return cls(**(ranges or {}))


class MotionEncoder(nn.Module):
    """Driving frames [B, C_in, L, H, W] in [-1, 1] -> motion features [B, C_m, L, H/8, W/8].

    A stem convolution, then one stride-2 stage per entry after the first in `channels` (three
    stages: /8, the SD VAE's factor), each conv -> SiLU -> conv -> SiLU, then a 3x3 projection to
    `out_channels`. Frames are encoded independently; temporal context comes from the ControlNet.
    """

    def __init__(
        self,
        *,
        input_kind: MotionInput = "frames",
        channels: Sequence[int] = (32, 64, 128, 256),
        out_channels: int = 64,
        augmentation: MotionAugmentation | None = None,
    ) -> None:
        super().__init__()
        if input_kind not in INPUT_CHANNELS:
            raise ValueError(f"motion input must be one of {sorted(INPUT_CHANNELS)}, got {input_kind!r}")
        self.input_kind = input_kind
        self.augmentation = augmentation or MotionAugmentation()
        layers: list[nn.Module] = [nn.Conv2d(INPUT_CHANNELS[input_kind], channels[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in pairwise(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(channels[-1], out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, _, length = frames.shape[:3]
        per_frame = frames.transpose(1, 2).flatten(0, 1).to(self.net[0].weight.dtype)
        return self.net(per_frame).unflatten(0, (batch, length)).transpose(1, 2)

    def augment(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training-time augmentation of this encoder's input kind (photometric only for frames)."""
        return augment_motion_input(
            frames, self.augmentation, photometric=self.input_kind == "frames", generator=generator
        )


@torch.no_grad()
def augment_motion_input(
    frames: torch.Tensor,
    augmentation: MotionAugmentation,
    *,
    photometric: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-clip identity-breaking warp (+ appearance jitter) of [B, C, L, H, W] in [-1, 1]."""
    x = warp_clips(frames.float(), augmentation, generator)
    if photometric:
        x = jitter_colours(x, augmentation, generator) * 2 - 1
        x = blur_clips(x, augmentation, generator)
    return x.clamp(-1, 1).to(frames.dtype)


def _uniform(batch: int, low: float, high: float, ref: torch.Tensor, generator: torch.Generator | None):
    return low + (high - low) * torch.rand(batch, device=ref.device, generator=generator)


def warp_clips(frames: torch.Tensor, aug: MotionAugmentation, generator: torch.Generator | None) -> torch.Tensor:
    """Anisotropic scaling about the centre plus a smooth random displacement, one warp per clip."""
    batch, channels, length, height, width = frames.shape
    scale_x = _uniform(batch, 1 - aug.aspect_jitter, 1 + aug.aspect_jitter, frames, generator)
    scale_y = _uniform(batch, 1 - aug.aspect_jitter, 1 + aug.aspect_jitter, frames, generator)
    theta = torch.zeros(batch, 2, 3, device=frames.device)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / scale_x, 1 / scale_y
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    control = torch.rand(batch, 2, aug.elastic_grid, aug.elastic_grid, device=frames.device, generator=generator)
    displacement = (control * 2 - 1) * (2 * aug.elastic_magnitude)  # grid units span 2 per side
    displacement = F.interpolate(displacement, size=(height, width), mode="bicubic", align_corners=True)
    grid = grid + displacement.permute(0, 2, 3, 1)
    flat = frames.reshape(batch, channels * length, height, width)
    warped = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.reshape(frames.shape)


def jitter_colours(frames: torch.Tensor, aug: MotionAugmentation, generator: torch.Generator | None) -> torch.Tensor:
    """Hue, saturation (0 when grayscale is drawn), contrast and brightness per clip; returns [0, 1]."""
    batch = frames.shape[0]
    rgb = shuffle_channels((frames + 1) / 2, aug.channel_shuffle_probability, generator)
    angle = _uniform(batch, -aug.hue, aug.hue, frames, generator) * 2 * math.pi
    saturation = _uniform(batch, 1 - aug.saturation, 1 + aug.saturation, frames, generator)
    gray = torch.rand(batch, device=frames.device, generator=generator) < aug.grayscale_probability
    saturation = torch.where(gray, torch.zeros_like(saturation), saturation)
    to_yiq = on_device("rgb_to_yiq", frames.device)
    chroma = torch.zeros(batch, 3, 3, device=frames.device)
    chroma[:, 0, 0] = 1
    chroma[:, 1, 1], chroma[:, 1, 2] = saturation * angle.cos(), -saturation * angle.sin()
    chroma[:, 2, 1], chroma[:, 2, 2] = saturation * angle.sin(), saturation * angle.cos()
    colour = on_device("yiq_to_rgb", frames.device) @ chroma @ to_yiq
    rgb = torch.einsum("bij,bjlhw->bilhw", colour, rgb)
    contrast = _uniform(batch, 1 - aug.contrast, 1 + aug.contrast, frames, generator)[:, None, None, None, None]
    brightness = _uniform(batch, -aug.brightness, aug.brightness, frames, generator)[:, None, None, None, None]
    mean_grey = torch.einsum("c,bclhw->blhw", to_yiq[0], rgb).mean(dim=(1, 2, 3))[:, None, None, None, None]
    return ((rgb - mean_grey) * contrast + mean_grey + brightness).clamp(0, 1)


def shuffle_channels(frames: torch.Tensor, probability: float, generator: torch.Generator | None) -> torch.Tensor:
    """Each clip's RGB channels in another order with `probability` (one order for all its frames), so that
    the colours of the motion input say nothing about the colours of the target. At 0 it draws nothing, so
    the other augmentations draw what they drew before the shuffle existed."""
    if probability == 0:
        return frames
    batch = frames.shape[0]
    shuffles = on_device("shuffles", frames.device)
    drawn = shuffles[torch.randint(len(shuffles), (batch,), device=frames.device, generator=generator)]
    chosen = torch.rand(batch, device=frames.device, generator=generator) < probability
    order = torch.where(chosen[:, None], drawn, torch.arange(3, device=frames.device))
    index = order[:, :, None, None, None].expand_as(frames)
    return frames.gather(1, index)


def blur_clips(frames: torch.Tensor, aug: MotionAugmentation, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur of a random subset of clips, one sigma per clip (scaled to the frame width)."""
    batch, width = frames.shape[0], frames.shape[-1]
    sigma = _uniform(batch, *aug.blur_sigma, frames, generator) * width / 512
    chosen = torch.rand(batch, device=frames.device, generator=generator) < aug.blur_probability
    radius = max(1, math.ceil(3 * aug.blur_sigma[1] * width / 512))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=frames.device)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    identity = (offsets == 0).float()[None].expand(batch, -1)
    kernels = torch.where(chosen[:, None], kernels / kernels.sum(1, keepdim=True), identity)
    return separable_filter(frames, kernels)


def separable_filter(frames: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter [B, C, L, H, W] with one 1D kernel per clip ([B, K]) along H then W (reflect padding)."""
    batch, channels, length, height, width = frames.shape
    per_clip = channels * length
    radius = kernels.shape[1] // 2
    weight = kernels.repeat_interleave(per_clip, dim=0)[:, None]  # [B * C * L, 1, K]
    x = frames.reshape(1, batch * per_clip, height, width)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), weight[..., None], groups=batch * per_clip)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), weight[:, :, None], groups=batch * per_clip)
    return x.reshape(frames.shape)


def render_landmarks(points: torch.Tensor, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """Landmarks [B, L, K, 2] as (x, y) pixels -> heatmap frames [B, 1, L, H, W] in [-1, 1].

    Each point becomes a Gaussian blob of `sigma` pixels (peak 1); points outside the frame are
    dropped. This is the `input_kind="landmarks"` input for the ablation against implicit motion.
    """
    batch, length, _, _ = points.shape
    height, width = size
    pixels = points.round().long()
    inside = (pixels[..., 0] >= 0) & (pixels[..., 0] < width) & (pixels[..., 1] >= 0) & (pixels[..., 1] < height)
    index = (pixels[..., 1] * width + pixels[..., 0]).clamp(0, height * width - 1)
    canvas = torch.zeros(batch * length, height * width, device=points.device)
    canvas.scatter_reduce_(1, index.flatten(0, 1), inside.flatten(0, 1).float(), reduce="amax")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=points.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))  # peak 1, so a lone point renders at 1
    heat = separable_filter(canvas.reshape(batch, 1, length, height, width), kernel[None].expand(batch, -1))
    return heat.clamp(0, 1) * 2 - 1
