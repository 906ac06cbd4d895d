"""Attention layers of the STDiT2 block, all through `torch.nn.functional.scaled_dot_product_attention`.

Parameter names (`qkv`, `q_norm`, `k_norm`, `proj`; `q_linear`, `kv_linear`, `proj`) and the packing
of heads inside the projections match Open-Sora 1.1, so its weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.embeddings import apply_rotary

KeysValues = tuple[torch.Tensor, torch.Tensor]
"""The keys and values of one attention layer, each [batch (or 1), heads, tokens, head_dim]."""


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

    The reference frame's queries attend to its own tokens only (`encode_reference`), so the reference
    is encoded like a clean image and never sees the targets. Every target frame's queries attend to
    [its own tokens; the reference tokens] (`forward` given the reference's keys and values), so
    appearance flows reference -> targets through this layer and nowhere else. `reference_keep` (bool
    [B]) masks the reference keys per sample, which makes a target's computation exactly that of a
    model without reference: the training-time dropout for classifier-free guidance.

    The targets take the reference as keys and values rather than as tokens, so that sampling can
    compute them once and reuse them at every step (`model.stdit2.ReferenceCache`).
    """

    def encode_reference(self, x: torch.Tensor) -> tuple[torch.Tensor, KeysValues]:
        """Reference frame [B, 1, S, C] -> (its attention over its own tokens [B, 1, S, C], its keys and
        values [B, heads, S, head_dim], which the target frames attend to)."""
        q, k, v = (part[:, 0] for part in self.project(x))
        return self.merge(F.scaled_dot_product_attention(q, k, v))[:, None], (k, v)

    def forward(
        self, x: torch.Tensor, reference: KeysValues | None = None, reference_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, L, S, C] target frames -> [B, L, S, C]; each frame attends to its own tokens and, given
        the `reference` keys and values ([B, heads, S_ref, head_dim] each), to the reference's tokens."""
        batch, frames, tokens, _ = x.shape
        q, k, v = (part.flatten(0, 1) for part in self.project(x))  # [B * L, H, S, d]
        if reference is None:
            return self.merge(F.scaled_dot_product_attention(q, k, v).unflatten(0, (batch, frames)))
        reference_keys, reference_values = (
            part.to(k.dtype)[:, None].expand(-1, frames, -1, -1, -1).flatten(0, 1) for part in reference
        )
        keys = torch.cat([k, reference_keys], dim=-2)
        values = torch.cat([v, reference_values], dim=-2)
        mask = None
        if reference_keep is not None:
            own = torch.ones(batch, tokens, dtype=torch.bool, device=x.device)
            kept = reference_keep.to(device=x.device, dtype=torch.bool)[:, None].expand(batch, reference_keys.shape[-2])
            mask = torch.cat([own, kept], dim=1)[:, None, None, None, :].expand(batch, frames, 1, 1, keys.shape[-2])
            mask = mask.flatten(0, 1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.merge(out.unflatten(0, (batch, frames)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from tokens to a condition sequence (no qk-norm, as released).

    Open-Sora packs the batch into one sequence with a block-diagonal mask; a batched attention over
    a per-sample (or shared, batch-1) condition is the same computation without the packing. The
    condition enters as its keys and values (`keys_values`): they depend on the condition alone, so
    a fixed condition's are computed once per sampling call (`model.stdit2.ContextCache`).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def keys_values(self, context: torch.Tensor) -> KeysValues:
        """Condition tokens [B or 1, M, C] -> keys and values [B or 1, heads, M, head_dim]."""
        kv = self.kv_linear(context).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        keys, values = kv.unbind(0)
        return keys, values

    def forward(self, x: torch.Tensor, context: KeysValues) -> torch.Tensor:
        """x: [B, N, C]; context: the condition's `keys_values` -> [B, N, C]."""
        q = self.q_linear(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        k, v = (part.to(q.dtype).expand(x.shape[0], -1, -1, -1) for part in context)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(-2))
