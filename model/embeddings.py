"""Embeddings of the STDiT2 backbone: latent patches, scalar conditions, the caption path, positions.

Module and parameter names follow Open-Sora 1.1 (`x_embedder.proj`, `t_embedder.mlp.{0,2}`,
`y_embedder.y_proj.fc{1,2}`, `y_embedder.y_embedding`, `rope.freqs`) so that its released weights load
by name; the arithmetic is re-derived here from Open-Sora 1.1's description of STDiT2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FREQUENCY_DIM = 256


def sinusoidal_embedding(values: torch.Tensor, dim: int = FREQUENCY_DIM, max_period: float = 10000.0) -> torch.Tensor:
    """[N] scalars -> [N, dim] float32 features, cosines first then sines.

    The cos-then-sin order is the one the released timestep/size MLPs were trained with; swapping it
    silently breaks imported weights.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=values.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbedder(nn.Module):
    """Scalar(s) -> sinusoid -> MLP. Serves the timestep, frame size, aspect ratio, frame count and fps.

    A `[B, k]` input embeds each of the k scalars separately and concatenates them (Open-Sora embeds
    height and width this way), giving `[B, k * hidden]`; a `[B]` input gives `[B, hidden]`.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        batch = values.shape[0]
        features = sinusoidal_embedding(values.reshape(-1)).to(self.mlp[0].weight.dtype)
        return self.mlp(features).reshape(batch, -1)


class PatchEmbed3D(nn.Module):
    """Latent video [B, C, T, H, W] -> tokens [B, T, H/ph * W/pw, hidden] with a (1, ph, pw) patch.

    The weights live in a Conv3d (`proj`), the layout of the released checkpoint, but the forward
    pass unfolds the non-overlapping patches and applies them as one matmul: the same arithmetic,
    about 4x faster than CPU Conv3d kernels and equally fast on GPU.
    """

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int) -> None:
        super().__init__()
        if patch_size[0] != 1:
            raise ValueError(f"only temporal patch size 1 is supported (got {patch_size})")
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        _, ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(f"latent size {height}x{width} is not divisible by the patch {ph}x{pw}")
        patches = x.reshape(batch, channels, frames, height // ph, ph, width // pw, pw)
        patches = patches.permute(0, 2, 3, 5, 1, 4, 6).reshape(batch, frames, -1, channels * ph * pw)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return F.linear(patches.to(weight.dtype), weight, self.proj.bias)


class CaptionEmbedder(nn.Module):
    """The cross-attention condition: caption-like tokens projected by an MLP (`y_proj`).

    Text is not part of RealPortrait, so by default every sample uses `y_embedding`, the null caption
    Open-Sora learned for classifier-free guidance, as a fixed token set; `y_proj` (and the blocks'
    cross-attention) stay trainable, so the condition is learned. A caller may pass its own tokens of
    `caption_channels` features (e.g. an identity embedding) to use the same path later.
    """

    def __init__(self, caption_channels: int, hidden_size: int, num_tokens: int) -> None:
        super().__init__()
        self.y_proj = GeluMLP(caption_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(num_tokens, caption_channels) / caption_channels**0.5)

    def forward(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """-> [1, N, hidden] for the shared null condition, or [B, N, hidden] for given tokens."""
        if tokens is None:
            tokens = self.y_embedding[None]
        return self.y_proj(tokens.to(self.y_proj.fc1.weight.dtype))


class GeluMLP(nn.Module):
    """fc1 -> tanh-GELU -> fc2, named like the released checkpoint (timm's `Mlp`): the blocks' MLP and
    the caption projection are both this shape, with different widths."""

    def __init__(self, in_features: int, inner_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, inner_features)
        self.fc2 = nn.Linear(inner_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def spatial_position_embedding(
    grid_height: int, grid_width: int, dim: int, *, scale: float, base_size: int, device: torch.device
) -> torch.Tensor:
    """2D sin-cos embedding of a token grid, [grid_height * grid_width, dim] float32, row-major.

    Coordinates are divided by `scale` (sqrt of the pixel area over the training square size) and
    stretched to `base_size` tokens per side, as Open-Sora 1.1 does for multi-resolution training.
    The first half of the channels encodes the column, the second half the row: a non-square grid
    would expose a swap.
    """
    rows = torch.arange(grid_height, dtype=torch.float32, device=device) / scale * (base_size / grid_height)
    cols = torch.arange(grid_width, dtype=torch.float32, device=device) / scale * (base_size / grid_width)
    row_grid, col_grid = torch.meshgrid(rows, cols, indexing="ij")
    return torch.cat([_sincos(col_grid.reshape(-1), dim // 2), _sincos(row_grid.reshape(-1), dim // 2)], dim=-1)


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] -> [N, dim]: sines then cosines over dim/2 geometric frequencies (MAE convention)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2))
    angles = positions[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over frames, used by temporal attention only.

    `freqs` is kept as a frozen parameter, as rotary_embedding_torch stores it, so the released
    `rope.freqs` tensor loads and counts as it does in Open-Sora. Pairs of adjacent channels are
    rotated (interleaved layout); the rotation is computed in float32 so bf16 runs keep exact angles.
    For the same reason `freqs` stays float32 when the model is cast (`model.to(torch.bfloat16)`; DeepSpeed's
    bf16 engine casts parameters one by one instead, so the trainer puts them back after it): bf16 keeps 8
    bits of mantissa, so angles of later frames would be off by up to 0.4%. Device moves still apply.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        exponents = torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim
        self.freqs = nn.Parameter(1.0 / theta**exponents, requires_grad=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RotaryEmbedding:
        """nn.Module's cast/move hook: the cast result is replaced by the exact float32 values, moved."""
        exact = self.freqs.data
        super()._apply(fn, recurse)
        if self.freqs.dtype != torch.float32:
            self.freqs.data = exact.to(self.freqs.device)
        return self

    def cos_sin(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation tables for positions 0..length-1: two [length, head_dim] float32 tensors."""
        positions = torch.arange(length, dtype=torch.float32, device=self.freqs.device)
        angles = (positions[:, None] * self.freqs.float()[None]).repeat_interleave(2, dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [..., length, head_dim] by the tables of `RotaryEmbedding.cos_sin(length)`."""
    pairs = x.float().unflatten(-1, (-1, 2))
    rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x.float() * cos + rotated_half * sin).to(x.dtype)
