"""STDiT2 backbone (Open-Sora 1.1 structure) with reference attention inside the blocks.

Tokens are kept as [B, F, S, C]: F frames of S = (h/2)(w/2) patch tokens. When a reference is given,
frame 0 is the reference frame's clean latent, carried through every block at timestep 0 (Open-Sora's
`x_mask` mechanism for clean frames); frames 1..L are the noisy targets. Per block:

- spatial self-attention with adaLN-single modulation: the reference attends to itself, each target
  frame attends to its own tokens and the reference tokens (`SpatialAttention`);
- temporal self-attention with rotary frame positions over the target frames only;
- cross-attention to the condition tokens (the learned null caption unless tokens are given);
- modulated MLP.

The final layer and unpatchify produce the targets' prediction; the reference yields no output.

Two things a block reads do not change during sampling, so sampling computes them once per call
(`ReferenceCache`, `ContextCache`): the reference frame's spatial keys and values, and the
cross-attention keys and values of the fixed condition.

Module names and shapes match the released STDiT2-XL/2 checkpoint (hpcai-tech/OpenSora-STDiT-v2-stage3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from model.attention import CrossAttention, KeysValues, SpatialAttention, TemporalAttention
from model.embeddings import (
    CaptionEmbedder,
    GeluMLP,
    PatchEmbed3D,
    RotaryEmbedding,
    ScalarEmbedder,
    spatial_position_embedding,
)


@dataclass
class Conditioning:
    """Everything the blocks need besides the tokens, computed once per forward by `STDiT2.condition`."""

    spatial: torch.Tensor  # [B, 6C] t_block(t + size info): spatial-attention and MLP modulation
    temporal: torch.Tensor  # [B, 3C] t_block_temp(t + frame count/fps info): temporal modulation
    reference_spatial: torch.Tensor  # [B, 6C] `spatial` at timestep 0, for the clean reference frame
    final: torch.Tensor  # [B, C] the bare timestep embedding, which Open-Sora's final layer uses
    context: torch.Tensor  # [1 or B, M, C] cross-attention condition tokens
    rotary: tuple[torch.Tensor, torch.Tensor]  # [L, head_dim] cos/sin tables over target frames
    position: torch.Tensor  # [S, C] 2D position embedding of one frame's tokens


@dataclass(frozen=True)
class ContextCache:
    """The cross-attention keys and values of one fixed condition at every block of a stack.

    They are a function of the condition tokens and the weights alone; the condition RealPortrait
    samples with (the learned null caption) is the same at every step, guidance pass and window.
    """

    keys_values: tuple[KeysValues, ...]  # per block, [1 or B, heads, M, head_dim] each

    @classmethod
    def for_blocks(cls, blocks: Sequence[STDiT2Block], tokens: torch.Tensor) -> ContextCache:
        """The keys and values of condition `tokens` [1 or B, M, C] (embedded) for each block."""
        return cls(tuple(block.cross_attn.keys_values(tokens) for block in blocks))


@dataclass(frozen=True)
class ReferenceCache:
    """The clean reference frame's spatial keys and values at every backbone block (`STDiT2.reference_cache`).

    Why reusing them is exact: the reference frame is modulated with `Conditioning.reference_spatial`
    (timestep 0 and the size embedding, no fps or frame count), its queries attend to its own tokens
    only, it skips temporal attention, no ControlNet residual reaches it, and its cross-attention and
    MLP act token by token. So its tokens at every block, and the keys and values the targets attend
    to, are a function of the reference latent, the latent size and the condition alone: the same at
    every denoising step, every guidance pass that has the reference, and every window. A cache holds
    for the reference, the latent size and the condition it was built from.
    """

    keys_values: tuple[KeysValues, ...]  # per block, [B, heads, S, head_dim] each

    def check(self, batch: int, tokens: int) -> None:
        """Refuse a cache built for another batch size or latent size (its shapes would not fit)."""
        keys = self.keys_values[0][0]
        if keys.shape[0] != batch or keys.shape[2] != tokens:
            raise ValueError(
                f"model/stdit2.py: this ReferenceCache holds {keys.shape[0]} reference(s) of {keys.shape[2]} tokens, "
                f"but the latents are {batch} of {tokens} tokens a frame; build the cache from the same reference"
            )


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN-single modulation of a normalised tensor."""
    return x * (1 + scale) + shift


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine weights (the released blocks have none)."""
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def checkpoint_call(module: nn.Module, *args: Any) -> torch.Tensor:
    """Non-reentrant activation checkpointing of one block (the same as diffusers' default)."""
    return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)


class STDiT2Block(nn.Module):
    """Spatial attention (+reference) -> temporal attention (targets) -> cross-attention -> MLP."""

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, *, qk_norm: bool, rotary_before_norm: bool
    ) -> None:
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)
        self.scale_shift_table_temporal = nn.Parameter(torch.randn(3, hidden_size) / hidden_size**0.5)
        self.attn = SpatialAttention(hidden_size, num_heads, qk_norm=qk_norm)
        self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.mlp = GeluMLP(hidden_size, int(hidden_size * mlp_ratio), hidden_size)
        self.attn_temp = TemporalAttention(
            hidden_size, num_heads, qk_norm=qk_norm, rotary_before_norm=rotary_before_norm
        )

    def forward(
        self,
        x: torch.Tensor,
        cond: Conditioning,
        has_reference: bool,
        reference_keep: torch.Tensor | None = None,
        reference: KeysValues | None = None,
        context: KeysValues | None = None,
    ) -> torch.Tensor:
        """x: [B, F, S, C] -> [B, F, S, C].

        With `has_reference`, frame 0 is the reference frame: the block advances it and the targets
        attend to its keys and values. `reference` gives those keys and values precomputed instead (a
        `ReferenceCache` entry; x then holds the targets only). `context` gives the cross-attention
        keys and values of `cond.context` precomputed (a `ContextCache` entry).
        """
        if context is None:
            context = self.cross_attn.keys_values(cond.context)
        if not has_reference:
            return self.advance_targets(x, cond, reference, reference_keep, context)
        if reference is not None:
            raise ValueError("model/stdit2.py: give the reference frame's tokens or its cached keys and values")
        reference_tokens, reference = self.advance_reference(x[:, :1], cond, context)
        targets = self.advance_targets(x[:, 1:], cond, reference, reference_keep, context)
        return torch.cat([reference_tokens, targets], dim=1)

    def advance_reference(
        self, x: torch.Tensor, cond: Conditioning, context: KeysValues
    ) -> tuple[torch.Tensor, KeysValues]:
        """The reference frame [B, 1, S, C] through this block at timestep 0 -> (its tokens after the
        block, its spatial keys and values). Nothing here reads the timestep or the target frames."""
        batch, _, _, channels = x.shape
        modulation = self.scale_shift_table[None] + cond.reference_spatial.view(batch, 6, channels)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation[:, :, None, None].unbind(1)
        attended, keys_values = self.attn.encode_reference(modulate(layer_norm(x), shift_msa, scale_msa))
        x = x + gate_msa * attended
        return self.cross_attention_and_mlp(x, context, shift_mlp, scale_mlp, gate_mlp), keys_values

    def advance_targets(
        self,
        x: torch.Tensor,
        cond: Conditioning,
        reference: KeysValues | None,
        reference_keep: torch.Tensor | None,
        context: KeysValues,
    ) -> torch.Tensor:
        """The target frames [B, L, S, C] through this block: spatial attention (with the reference's
        keys and values if given), temporal attention, cross-attention and MLP."""
        batch, _, tokens, channels = x.shape
        modulation = self.scale_shift_table[None] + cond.spatial.view(batch, 6, channels)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation[:, :, None, None].unbind(1)
        x = x + gate_msa * self.attn(modulate(layer_norm(x), shift_msa, scale_msa), reference, reference_keep)

        temporal = self.scale_shift_table_temporal[None] + cond.temporal.view(batch, 3, channels)
        shift_tmp, scale_tmp, gate_tmp = temporal[:, :, None, None].unbind(1)
        per_position = modulate(layer_norm(x), shift_tmp, scale_tmp).transpose(1, 2).flatten(0, 1)
        mixed = self.attn_temp(per_position, cond.rotary).unflatten(0, (batch, tokens)).transpose(1, 2)
        x = x + gate_tmp * mixed
        return self.cross_attention_and_mlp(x, context, shift_mlp, scale_mlp, gate_mlp)

    def cross_attention_and_mlp(
        self, x: torch.Tensor, context: KeysValues, shift: torch.Tensor, scale: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        """The token-wise end of the block, shared by the reference and the targets: x [B, F, S, C]."""
        x = x + self.cross_attn(x.flatten(1, 2), context).view_as(x)
        return x + gate * self.mlp(modulate(layer_norm(x), shift, scale))


class FinalLayer(nn.Module):
    """adaLN-modulated projection of each token to its patch of output channels (PixArt's T2I layer)."""

    def __init__(self, hidden_size: int, patch_numel: int, out_channels: int) -> None:
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.linear = nn.Linear(hidden_size, patch_numel * out_channels)

    def forward(self, x: torch.Tensor, timestep_embedding: torch.Tensor) -> torch.Tensor:
        """x: [B, L, S, C] -> [B, L, S, patch * out]."""
        batch, channels = timestep_embedding.shape
        shift, scale = (
            (self.scale_shift_table[None] + timestep_embedding[:, None]).view(batch, 2, 1, 1, channels).unbind(1)
        )
        return self.linear(modulate(layer_norm(x), shift, scale))


class STDiT2(nn.Module):
    """The STDiT2 backbone. With `pred_sigma=True, caption_channels=4096, caption_tokens=200` and the XL
    sizes it is key-for-key and shape-for-shape the released Open-Sora 1.1 STDiT2-XL/2."""

    def __init__(
        self,
        *,
        in_channels: int = 4,
        patch_size: Sequence[int] = (1, 2, 2),
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        qk_norm_legacy: bool = True,
        pred_sigma: bool = False,
        caption_channels: int = 4096,
        caption_tokens: int = 200,
        input_sq_size: int = 512,
        vae_scale_factor: int = 8,
    ) -> None:
        super().__init__()
        if hidden_size % 12:
            raise ValueError("hidden_size must be divisible by 12 (3 size embeddings, 4 position sin-cos parts)")
        self.patch_size = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if pred_sigma else in_channels
        self.hidden_size = hidden_size
        self.input_sq_size = input_sq_size
        self.vae_scale_factor = vae_scale_factor
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func: Callable[..., torch.Tensor] = checkpoint_call

        self.x_embedder = PatchEmbed3D(self.patch_size, in_channels, hidden_size)
        self.t_embedder = ScalarEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.t_block_temp = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 3 * hidden_size))
        self.y_embedder = CaptionEmbedder(caption_channels, hidden_size, caption_tokens)
        self.rope = RotaryEmbedding(hidden_size // num_heads)
        self.blocks = nn.ModuleList(
            STDiT2Block(hidden_size, num_heads, mlp_ratio, qk_norm=qk_norm, rotary_before_norm=qk_norm_legacy)
            for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, math.prod(self.patch_size), self.out_channels)
        self.csize_embedder = ScalarEmbedder(hidden_size // 3)
        self.ar_embedder = ScalarEmbedder(hidden_size // 3)
        self.fl_embedder = ScalarEmbedder(hidden_size)
        self.fps_embedder = ScalarEmbedder(hidden_size)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Open-Sora's initialisation: Xavier linears, N(0, 0.02) embedding MLPs, and zero output
        projections for cross-attention, temporal attention and the final layer, so that a fresh
        backbone starts as an identity-like residual stack whose prediction is 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.x_embedder.proj.weight.view(self.hidden_size, -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        for linear in (self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1], self.t_block_temp[1]):
            nn.init.normal_(linear.weight, std=0.02)
        for linear in (self.y_embedder.y_proj.fc1, self.y_embedder.y_proj.fc2):
            nn.init.normal_(linear.weight, std=0.02)
        zero_outputs = [self.final_layer.linear]
        for block in self.blocks:
            zero_outputs += [block.cross_attn.proj, block.attn_temp.proj]
        for linear in zero_outputs:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def condition(
        self,
        timesteps: torch.Tensor,
        *,
        latent_size: tuple[int, int],
        num_frames: int,
        fps: torch.Tensor,
        context: torch.Tensor | None = None,
    ) -> Conditioning:
        """Timestep, size and frame-rate conditioning for a batch of clips of one size.

        Size conditioning follows Open-Sora: `csize` embeds [height, width] in pixels (in that order)
        and `ar` is height / width; the pixel size is the latent size times the VAE factor.
        """
        batch = timesteps.shape[0]
        device, dtype = self.t_block[1].weight.device, self.t_block[1].weight.dtype
        height, width = (side * self.vae_scale_factor for side in latent_size)
        # filled on the device: a tensor made from a Python list would be a blocking copy from host memory
        size = torch.stack(
            [torch.full((batch,), float(height), device=device), torch.full((batch,), float(width), device=device)], 1
        )
        aspect = torch.full((batch,), height / width, dtype=torch.float32, device=device)
        size_info = torch.cat([self.csize_embedder(size), self.ar_embedder(aspect)], dim=1)
        frame_count = torch.full((batch,), float(num_frames), device=device)
        frames_info = self.fl_embedder(frame_count) + self.fps_embedder(fps.to(device))
        t = self.t_embedder(timesteps.to(device))
        t0 = self.t_embedder(torch.zeros_like(timesteps, device=device))

        grid = (latent_size[0] // self.patch_size[1], latent_size[1] // self.patch_size[2])
        position = spatial_position_embedding(
            *grid,
            self.hidden_size,
            scale=math.sqrt(height * width) / self.input_sq_size,
            base_size=round(math.sqrt(grid[0] * grid[1])),
            device=device,
        )
        return Conditioning(
            spatial=self.t_block(t + size_info),
            temporal=self.t_block_temp(t + frames_info),
            reference_spatial=self.t_block(t0 + size_info),
            final=t,
            context=self.y_embedder(context),
            rotary=self.rope.cos_sin(num_frames),
            position=position.to(dtype),
        )

    def embed(self, latents: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """[B, C_in, T, h, w] -> tokens [B, T, S, C] with the spatial position embedding added."""
        return self.x_embedder(latents) + cond.position

    def context_cache(self, context: torch.Tensor | None = None) -> ContextCache:
        """The cross-attention keys and values of condition tokens [B, M, caption_channels] (the learned
        null caption by default) at every block, to reuse while the condition stays the same."""
        return ContextCache.for_blocks(self.blocks, self.y_embedder(context))

    def reference_cache(self, reference: torch.Tensor, context: ContextCache | None = None) -> ReferenceCache:
        """Run the clean reference latent [B, C_in, h, w] through the blocks once and keep its spatial
        keys and values at every block (see `ReferenceCache`). `context` is the condition the passes
        that use the cache attend to (the null caption's by default)."""
        context = context if context is not None else self.context_cache()
        batch = reference.shape[0]
        dtype = self.t_block[1].weight.dtype
        # The reference frame reads neither the timestep nor the frame count nor the fps: any values do.
        zeros = torch.zeros(batch, device=reference.device)
        cond = self.condition(zeros, latent_size=tuple(reference.shape[-2:]), num_frames=1, fps=zeros)
        x = self.embed(reference.to(dtype)[:, :, None], cond)
        keys_values = []
        for block, block_context in zip(self.blocks, context.keys_values, strict=True):
            x, block_keys_values = block.advance_reference(x, cond, block_context)
            keys_values.append(block_keys_values)
        return ReferenceCache(tuple(keys_values))

    def denoise(
        self,
        noisy: torch.Tensor,
        reference: torch.Tensor | ReferenceCache | None,
        cond: Conditioning,
        *,
        reference_keep: torch.Tensor | None = None,
        block_residuals: Sequence[torch.Tensor] = (),
        context: ContextCache | None = None,
    ) -> torch.Tensor:
        """Run the blocks and the final layer.

        noisy: [B, C_in, L, h, w]; reference: clean latent [B, C_in, h, w], its `ReferenceCache`, or
        None; block_residuals: up to depth tensors [B, L, S, C] added to the targets after the matching
        block (the ControlNet's contribution); context: the keys and values of `cond.context`, if
        precomputed. Returns the prediction [B, C_out, L, h, w] in float32.
        """
        dtype = self.t_block[1].weight.dtype
        x = self.embed(noisy.to(dtype), cond)
        cached = reference if isinstance(reference, ReferenceCache) else None
        if cached is not None:
            cached.check(x.shape[0], x.shape[2])
        has_reference = isinstance(reference, torch.Tensor)
        if has_reference:
            x = torch.cat([self.embed(reference.to(dtype)[:, :, None], cond), x], dim=1)
        for index, block in enumerate(self.blocks):
            args = (
                x,
                cond,
                has_reference,
                reference_keep,
                None if cached is None else cached.keys_values[index],
                None if context is None else context.keys_values[index],
            )
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, *args)
            else:
                x = block(*args)
            if index < len(block_residuals):
                x = add_to_targets(x, block_residuals[index], has_reference)
        targets = x[:, 1:] if has_reference else x
        return self.unpatchify(self.final_layer(targets, cond.final), noisy.shape[-2:]).float()

    def unpatchify(self, x: torch.Tensor, latent_size: Sequence[int]) -> torch.Tensor:
        """[B, L, S, (pt ph pw C_out)] -> [B, C_out, L, h, w]."""
        batch, frames = x.shape[:2]
        _, ph, pw = self.patch_size
        grid_h, grid_w = latent_size[0] // ph, latent_size[1] // pw
        x = x.reshape(batch, frames, grid_h, grid_w, ph, pw, self.out_channels)
        return x.permute(0, 6, 1, 2, 4, 3, 5).reshape(batch, self.out_channels, frames, grid_h * ph, grid_w * pw)

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        reference: torch.Tensor | ReferenceCache | None = None,
        *,
        fps: torch.Tensor,
        context: torch.Tensor | None = None,
        reference_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Backbone alone: noisy [B, C_in, L, h, w], timesteps [B], reference [B, C_in, h, w], its
        `ReferenceCache` (built with the same `context`), or None."""
        cond = self.condition(
            timesteps, latent_size=tuple(noisy.shape[-2:]), num_frames=noisy.shape[2], fps=fps, context=context
        )
        return self.denoise(noisy, reference, cond, reference_keep=reference_keep)


def add_to_targets(x: torch.Tensor, update: torch.Tensor, has_reference: bool) -> torch.Tensor:
    """Add [B, L, S, C] to the target frames of [B, F, S, C], leaving a reference frame 0 untouched."""
    if not has_reference:
        return x + update
    return torch.cat([x[:, :1], x[:, 1:] + update], dim=1)
