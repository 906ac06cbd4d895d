"""The SD1.5 VAE (diffusers `AutoencoderKL`), frozen, encoding and decoding clips in frame chunks.

512x512 frames become 4x64x64 latents scaled by 0.18215. Weights come from a local path only (nothing
is downloaded): a diffusers-format folder (`config.json` + `diffusion_pytorch_model.safetensors`, e.g.
the `stabilityai/sd-vae-ft-ema` repository) or a single `.safetensors` file, either in diffusers key
names or in the original LDM layout (`vae-ft-ema-560000-ema-pruned.safetensors`, or a whole SD1.5
checkpoint whose `first_stage_model.` keys are used).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import load_file
from torch import nn

SCALING_FACTOR = 0.18215
SD15_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": SCALING_FACTOR,
}
VAE_HINT = (
    "expected a diffusers folder (config.json + diffusion_pytorch_model.safetensors, e.g. Hugging Face "
    "stabilityai/sd-vae-ft-ema) or a .safetensors file; download it and pass its local path"
)
LDM_MARKERS = ("encoder.down.", "first_stage_model.", "vae.encoder.")


def load_vae(path: str | Path, *, config: dict[str, Any] | None = None) -> AutoencoderKL:
    """Load an SD1.5-configured AutoencoderKL from a local folder or single file.

    `config` overrides the SD1.5 configuration for single files (e.g. a smaller test model);
    folders carry their own `config.json`.
    """
    path = Path(path)
    if path.is_dir():
        return AutoencoderKL.from_pretrained(path, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False)
    if path.is_file() and path.suffix == ".safetensors":
        full_config = {**SD15_VAE_CONFIG, **(config or {})}
        state = load_file(path)
        if any(key.startswith(LDM_MARKERS) for key in state):
            state = convert_ldm_vae_checkpoint(state, full_config)
        vae = AutoencoderKL(**full_config)
        vae.load_state_dict(state)
        return vae
    raise FileNotFoundError(f"SD1.5 VAE not found at {path}: {VAE_HINT}")


class FrameVAE(nn.Module):
    """Frozen VAE for clips: [B, 3, L, H, W] in [-1, 1] <-> scaled latents [B, 4, L, H/8, W/8].

    Frames go through the VAE `chunk_size` at a time, so peak memory is that of one chunk whatever
    the clip length (a 16-frame 512px clip at once needs several GB of activations in the decoder).
    """

    def __init__(self, vae: AutoencoderKL, chunk_size: int = 4) -> None:
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        self.chunk_size = chunk_size
        self.scaling_factor = float(vae.config.scaling_factor)

    @classmethod
    def from_path(cls, path: str | Path, *, chunk_size: int = 4, config: dict[str, Any] | None = None) -> FrameVAE:
        return cls(load_vae(path, config=config), chunk_size)

    @property
    def factor(self) -> int:
        """How much the VAE downsamples each side: one halving per encoder block after the first (SD1.5: 8)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def check_matches(self, model_factor: int, path: str | Path) -> None:
        """A model built for another factor fails deep in its forward with a shape error; say it first."""
        if self.factor != model_factor:
            raise ValueError(
                f"the VAE at {path} downsamples {self.factor}x, but the model expects {model_factor}x: set the "
                f"model's vae_scale_factor to {self.factor} (and motion_encoder_channels to one entry per halving "
                f"plus one), or use a {model_factor}x VAE"
            )

    def train(self, mode: bool = True) -> FrameVAE:
        """Stay in eval mode: the VAE is frozen during training."""
        return super().train(False)

    @torch.no_grad()
    def encode(
        self, frames: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Frames -> latents. `sample` draws from the posterior (training); False takes its mean."""
        batch, _, length = frames.shape[:3]
        flat = frames.transpose(1, 2).flatten(0, 1).to(self.vae.dtype)
        latents = []
        for chunk in flat.split(self.chunk_size):
            posterior = self.vae.encode(chunk).latent_dist
            latents.append(posterior.sample(generator) if sample else posterior.mode())
        stacked = torch.cat(latents) * self.scaling_factor
        return stacked.unflatten(0, (batch, length)).transpose(1, 2).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> frames in [-1, 1] (float32)."""
        return torch.cat(list(self.decode_chunks(latents)), dim=2)

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Latents [B, 4, L, h, w] -> frames [B, 3, n, H, W] in [-1, 1] (float32), about `chunk_size` frames a chunk.

        A caller that stores each chunk compactly (uint8) holds one chunk of float frames at a time, so the
        decoded video's float copy never exists whole (a 1000-frame 512 px clip would be 3 GB of it).
        """
        for part in latents.split(max(1, self.chunk_size // latents.shape[0]), dim=2):
            batch, _, length = part.shape[:3]
            flat = part.transpose(1, 2).flatten(0, 1).to(self.vae.dtype) / self.scaling_factor
            frames = self.vae.decode(flat).sample
            yield frames.unflatten(0, (batch, length)).transpose(1, 2).float().clamp(-1, 1)
