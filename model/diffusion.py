"""Diffusion objective and sampler: Open-Sora 1.1's 1000-step DDPM schedule, DDIM sampling.

Decisions, against Open-Sora's IDDPM:
- Same schedule (1000 linear betas from 1e-4 to 0.02, float64) and the same integer timesteps fed
  to the timestep embedder, so imported weights see the noise levels they were trained on.
- No learned variance. Open-Sora predicts 8 channels (epsilon + a variance interpolation) and adds
  a variational-bound loss for them; deterministic DDIM never uses the variance, so RealPortrait
  predicts the 4 epsilon (or v) channels only and the import keeps the epsilon half of the released
  output layer (see `model.opensora_import`).
- Guidance applies to every predicted channel. Open-Sora's `cfg_channel=3` guides 3 of its 8 channels,
  a DiT inheritance; with no variance channels there is nothing to leave unguided.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

PredictionType = Literal["epsilon", "v_prediction"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction")


class NoiseSchedule(nn.Module):
    """The DDPM forward process: linear betas (1e-4 .. 0.02, scaled by 1000/T as in IDDPM).

    `alphas_cumprod` (float64, on the host) defines the schedule; what the training step and the sampler
    read per timestep lives in float32 buffers that move with the model, computed once from the float64
    values: a lookup is then an index on the device, never a copy to the host and back (a host sync per
    step). They are not part of the state dict (they follow from `num_train_timesteps`), and they stay
    float32 when the model is cast (as `RotaryEmbedding.freqs` does): bf16 would round sqrt(alpha_bar) by
    up to 0.4 %.
    """

    signal_table: torch.Tensor
    sigma_table: torch.Tensor
    snr_table: torch.Tensor

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        super().__init__()
        scale = 1000 / num_train_timesteps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps, dtype=torch.float64, device="cpu")
        self.num_train_timesteps = num_train_timesteps
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        for name, table in self._tables().items():
            self.register_buffer(name, table, persistent=False)

    def _tables(self) -> dict[str, torch.Tensor]:
        """The per-timestep lookups, computed in float64 and rounded once to float32."""
        alpha_bar = self.alphas_cumprod
        return {
            "signal_table": alpha_bar.sqrt().float(),
            "sigma_table": (1 - alpha_bar).sqrt().float(),
            "snr_table": (alpha_bar / (1 - alpha_bar)).float(),
        }

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> NoiseSchedule:
        """nn.Module's cast/move hook: moves apply, casts do not (a cast table is replaced by the float32 one)."""
        super()._apply(fn, recurse)
        for name, exact in self._tables().items():
            table = getattr(self, name)
            if table.dtype != torch.float32:
                setattr(self, name, exact.to(table.device))
        return self

    def _coefficients(self, timesteps: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) as float32, shaped to broadcast over [B, ...]."""
        index = timesteps.to(self.signal_table.device).long()
        shape = (-1,) + (1,) * (ndim - 1)
        return self.signal_table[index].view(shape), self.sigma_table[index].view(shape)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        signal, sigma = self._coefficients(timesteps, x0.ndim)
        return signal * x0.float() + sigma * noise.float()

    def training_target(
        self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: PredictionType
    ) -> torch.Tensor:
        """epsilon, or v = sqrt(ab) * eps - sqrt(1 - ab) * x0."""
        if prediction_type == "epsilon":
            return noise.float()
        signal, sigma = self._coefficients(timesteps, x0.ndim)
        return signal * noise.float() - sigma * x0.float()

    def split_prediction(
        self, prediction: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor, prediction_type: PredictionType
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output at x_t -> (x0 estimate, epsilon estimate)."""
        signal, sigma = self._coefficients(timesteps, noisy.ndim)
        prediction, noisy = prediction.float(), noisy.float()
        if prediction_type == "epsilon":
            return (noisy - sigma * prediction) / signal, prediction
        return signal * noisy - sigma * prediction, sigma * noisy + signal * prediction

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) per timestep, float32."""
        return self.snr_table[timesteps.to(self.snr_table.device).long()]

    def ddim_table(self, steps: list[int], eta: float, device: torch.device) -> torch.Tensor:
        """[len(steps), 3] float32 on `device`: per DDIM step, the update's factors of the x0 estimate, of the
        epsilon estimate and of fresh noise. Computed in float64 on the host once per sampling call and
        copied in one transfer, so the steps themselves read the schedule on the device."""
        alpha_bar = self.alphas_cumprod[steps]
        alpha_bar_prev = torch.cat([alpha_bar[1:], torch.ones(1, dtype=torch.float64)])
        sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
        table = torch.stack([alpha_bar_prev.sqrt(), (1 - alpha_bar_prev - sigma**2).sqrt(), sigma], dim=1).float()
        if device.type == "cuda":
            table = table.pin_memory()
        return table.to(device, non_blocking=True)


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    snr: torch.Tensor,
    *,
    prediction_type: PredictionType,
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """Mean-squared error per sample, optionally Min-SNR-gamma weighted (Hang et al. 2023), averaged.

    The Min-SNR weight min(SNR, gamma) / SNR (epsilon) or / (SNR + 1) (v) is the x0-loss weight
    clamped at gamma, re-expressed for the predicted quantity; it stops easy low-noise steps from
    dominating.
    """
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
    if min_snr_gamma is None:
        return per_sample.mean()
    clamped = snr.clamp(max=min_snr_gamma)
    weight = clamped / snr if prediction_type == "epsilon" else clamped / (snr + 1)
    return (per_sample * weight).mean()


def sampling_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """`num_steps` timesteps evenly spread from T-1 down to 0, both ends included (IDDPM respacing)."""
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be in 1..{num_train_timesteps}, got {num_steps}")
    if num_steps == 1:
        return [num_train_timesteps - 1]
    stride = (num_train_timesteps - 1) / (num_steps - 1)
    return [round(i * stride) for i in reversed(range(num_steps))]


@torch.no_grad()
def ddim_sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: PredictionType,
    num_steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) from pure noise; `denoise(x_t, t[B])` returns the (guided) prediction.

    The last step jumps to alpha_bar = 1 (the clean sample); eta = 0 is deterministic. The step's
    coefficients come from a table made before the loop, so no step waits for the host.
    """
    x = noise.float()
    steps = sampling_timesteps(schedule.num_train_timesteps, num_steps)
    table = schedule.ddim_table(steps, eta, x.device)
    for index, step in enumerate(steps):
        timesteps = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x0, eps = schedule.split_prediction(denoise(x, timesteps), x, timesteps, prediction_type)
        x0_factor, eps_factor, noise_factor = table[index]
        x = x0_factor * x0 + eps_factor * eps
        if eta > 0:  # the last step's noise factor is 0: its draw changes nothing
            x = x + noise_factor * torch.randn(x.shape, device=x.device, generator=generator)
    return x
