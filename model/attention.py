"""Attention layers of the STDiT2 block, all through `torch.nn.functional.scaled_dot_product_attention`.

Parameter names (`qkv`, `q_norm`, `k_norm`, `proj`; `q_linear`, `kv_linear`, `proj`) and the packing
of heads inside the projections match Open-Sora 1.1, so its weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.embeddings import apply_rotary


class RMSNorm(nn.Module):
    """RMS normalisation over the head dimension (qk-norm), computed in float32 for bf16 safety."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention projections with optional qk-norm and rotary positions.

    Subclasses decide which tokens attend to which. `rotary_before_norm` reproduces Open-Sora's
    `qk_norm_legacy=True`: the released STDiT2 weights were trained rotating q and k *before* their
    RMSNorm, so imported weights need that order; new models may use the usual normalise-then-rotate
    order. Without rotary the two orders coincide.
    """

    def __init__(self, dim: int, num_heads: int, *, qk_norm: bool, rotary_before_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rotary_before_norm = rotary_before_norm
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def project(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[..., N, C] -> q, k, v as [..., heads, N, head_dim], normalised and rotated."""
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).movedim(-4, -2)
        q, k, v = qkv.unbind(-4)
        if rotary is not None and self.rotary_before_norm:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None and not self.rotary_before_norm:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        return q, k, v

    def merge(self, heads: torch.Tensor) -> torch.Tensor:
        """[..., heads, N, head_dim] -> output projection [..., N, C]."""
        return self.proj(heads.transpose(-3, -2).flatten(-2))


class TemporalAttention(SelfAttention):
    """Attention across the frames at each token position, with rotary frame positions."""

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x: [batch, frames, C] -> [batch, frames, C]."""
        q, k, v = self.project(x, rotary)
        return self.merge(F.scaled_dot_product_attention(q, k, v))


class SpatialAttention(SelfAttention):
    """Spatial self-attention in which target frames also attend to a reference frame's tokens.

    Frame 0 of the input is the reference: its queries attend to its own tokens only, so the
    reference is encoded like a clean image and never sees the targets. Every target frame's
    queries attend to [its own tokens; the reference tokens], so appearance flows reference ->
    targets through this layer and nowhere else. `reference_keep` (bool [B]) masks the reference
    keys per sample, which makes a target's computation exactly that of a model without reference:
    the training-time dropout for classifier-free guidance.
    """

    def forward(
        self, x: torch.Tensor, *, has_reference: bool, reference_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, F, S, C] (frame 0 the reference if `has_reference`) -> [B, F, S, C]."""
        batch, frames, tokens, _ = x.shape
        q, k, v = self.project(x)  # [B, F, H, S, d]
        if not has_reference:
            out = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1))
            return self.merge(out.unflatten(0, (batch, frames)))
        targets = frames - 1
        reference_out = F.scaled_dot_product_attention(q[:, 0], k[:, 0], v[:, 0])
        keys = torch.cat([k[:, 1:], k[:, :1].expand(-1, targets, -1, -1, -1)], dim=-2)
        values = torch.cat([v[:, 1:], v[:, :1].expand(-1, targets, -1, -1, -1)], dim=-2)
        mask = None
        if reference_keep is not None:
            own = torch.ones(batch, tokens, dtype=torch.bool, device=x.device)
            ref = reference_keep.to(device=x.device, dtype=torch.bool)[:, None].expand(batch, tokens)
            mask = torch.cat([own, ref], dim=1)[:, None, None, None, :].expand(batch, targets, 1, 1, 2 * tokens)
            mask = mask.flatten(0, 1)
        target_out = F.scaled_dot_product_attention(
            q[:, 1:].flatten(0, 1), keys.flatten(0, 1), values.flatten(0, 1), attn_mask=mask
        )
        out = torch.cat([reference_out[:, None], target_out.unflatten(0, (batch, targets))], dim=1)
        return self.merge(out)


class CrossAttention(nn.Module):
    """Multi-head cross-attention from tokens to a condition sequence (no qk-norm, as released).

    Open-Sora packs the batch into one sequence with a block-diagonal mask; a batched attention over
    a per-sample (or shared, batch-1) condition is the same computation without the packing.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: [B, N, C]; context: [B or 1, M, C] -> [B, N, C]."""
        q = self.q_linear(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        kv = self.kv_linear(context).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        k, v = (t.expand(x.shape[0], -1, -1, -1) for t in kv.unbind(0))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(-2))
