"""Parallel ControlNet over the motion features: copies of the backbone's first blocks.

Each ControlNet block processes the target frames (no reference: motion carries no appearance)
from the noisy latent plus the motion features; its output enters the matching backbone block's
output through a zero-initialised linear projection. At initialisation the ControlNet therefore adds
exactly nothing, so training starts from the backbone's behaviour (the ControlNet recipe), and the
copied blocks start from weights that already understand the latent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from model.embeddings import PatchEmbed3D
from model.stdit2 import Conditioning, ContextCache, STDiT2, STDiT2Block, checkpoint_call


class MotionControlNet(nn.Module):
    """`depth` STDiT2 blocks + a motion patch embedding + zero-initialised output projections."""

    def __init__(
        self,
        *,
        depth: int,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float,
        qk_norm: bool,
        qk_norm_legacy: bool,
        patch_size: tuple[int, int, int],
        latent_channels: int,
        motion_channels: int,
    ) -> None:
        super().__init__()
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func: Callable[..., torch.Tensor] = checkpoint_call
        self.x_embedder = PatchEmbed3D(patch_size, latent_channels, hidden_size)
        self.motion_embedder = PatchEmbed3D(patch_size, motion_channels, hidden_size)
        self.blocks = nn.ModuleList(
            STDiT2Block(hidden_size, num_heads, mlp_ratio, qk_norm=qk_norm, rotary_before_norm=qk_norm_legacy)
            for _ in range(depth)
        )
        self.projections = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(depth))
        # Zero at both ends, as in ControlNet: the copy first sees the plain latent, and adds nothing.
        for zero_module in (self.motion_embedder.proj, *self.projections):
            nn.init.zeros_(zero_module.weight)
            nn.init.zeros_(zero_module.bias)

    @torch.no_grad()
    def copy_from_backbone(self, backbone: STDiT2) -> None:
        """Initialise the latent embedding and the blocks from the backbone's first blocks."""
        if len(self.blocks) > len(backbone.blocks):
            raise ValueError(f"ControlNet depth {len(self.blocks)} exceeds the backbone's {len(backbone.blocks)}")
        self.x_embedder.load_state_dict(backbone.x_embedder.state_dict())
        for control_block, backbone_block in zip(self.blocks, backbone.blocks, strict=False):
            control_block.load_state_dict(backbone_block.state_dict())

    def forward(
        self,
        noisy: torch.Tensor,
        motion_features: torch.Tensor,
        cond: Conditioning,
        *,
        scale: float = 1.0,
        keep: torch.Tensor | None = None,
        context: ContextCache | None = None,
    ) -> Sequence[torch.Tensor]:
        """noisy: [B, C, L, h, w]; motion_features: [B, C_m, L, h, w] -> per-block residuals [B, L, S, C].

        `scale` is the inference-time conditioning scale; `keep` (bool [B]) zeroes the residuals of
        samples whose motion is dropped (classifier-free guidance training); `context` holds this
        ControlNet's cross-attention keys and values of `cond.context`, if precomputed.
        """
        dtype = self.x_embedder.proj.weight.dtype
        x = self.x_embedder(noisy.to(dtype)) + cond.position + self.motion_embedder(motion_features.to(dtype))
        factor = torch.full((x.shape[0],), float(scale), dtype=dtype, device=x.device)
        if keep is not None:
            factor = factor * keep.to(device=x.device, dtype=dtype)
        factor = factor[:, None, None, None]
        residuals = []
        for index, (block, projection) in enumerate(zip(self.blocks, self.projections, strict=True)):
            block_context = None if context is None else context.keys_values[index]
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, cond, False, None, None, block_context)
            else:
                x = block(x, cond, False, None, None, block_context)
            residuals.append(projection(x) * factor)
        return residuals
