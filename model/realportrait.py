"""The composed RealPortrait model: STDiT2 backbone + motion ControlNet + motion encoder + diffusion.

Shapes (latents as Open-Sora lays out video, [B, C, L, h, w]; L = 1 is image mode):
- `noisy_latents` [B, 4, L, h, w], `timesteps` [B] (integers in [0, 1000)),
- `reference_latents` [B, 4, h, w] (the clean reference frame, VAE-scaled),
- `driving` frames [B, 3, L, 8h, 8w] in [-1, 1] (or rendered landmarks [B, 1, L, 8h, 8w]),
- motion features [B, C_m, L, h, w] from `encode_motion`,
- prediction [B, 4, L, h, w] float32 (epsilon, or v with `prediction_type="v_prediction"`).

Entry points: `training_loss(latents, reference_latents, driving)` for a training step (motion
augmentation, timestep/noise draws and guidance dropout included), `sample(reference_latents, driving)`
for 50-step DDIM with guidance, `encode_motion`, `forward`, `import_opensora_stdit2(path)`.

The checkpoint is diffusers-style: `save_pretrained(dir)` writes `config.json` (the keyword arguments
of `__init__`) and `diffusion_pytorch_model.safetensors`; `from_pretrained(dir)` restores both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from model.controlnet import MotionControlNet
from model.diffusion import PREDICTION_TYPES, NoiseSchedule, PredictionType, ddim_sample, diffusion_loss
from model.motion import MotionAugmentation, MotionEncoder, MotionInput
from model.opensora_import import ImportReport, import_opensora_stdit2
from model.stdit2 import Conditioning, ContextCache, ReferenceCache, STDiT2


@dataclass(frozen=True)
class Preset:
    """A named configuration: `RealPortrait` keyword arguments and the clip shape it is meant for."""

    model: dict[str, Any] = field(default_factory=dict)
    latent_size: int = 64  # latent side; 64 = 512 px through the SD VAE
    num_frames: int = 16  # L, target frames per clip in multi-frame mode


PRESETS: dict[str, Preset] = {
    # The paper: STDiT2-XL/2 backbone (28 blocks, 1152 wide, 16 heads, patch 1x2x2), ControlNet of 13.
    "paper": Preset(),
    # A CPU-sized model for benchmarks: same structure, 8 blocks of width 576 (head dim 72 as in XL).
    "small": Preset(
        model={
            "hidden_size": 576,
            "depth": 8,
            "num_heads": 8,
            "controlnet_depth": 4,
            "caption_channels": 1024,
            "caption_tokens": 50,
            "input_sq_size": 256,
            "motion_encoder_channels": (16, 32, 64, 128),
            "motion_channels": 32,
        },
        latent_size=32,
        num_frames=4,
    ),
    # Tests and smoke runs: a training step in about a second on a laptop CPU.
    "tiny": Preset(
        model={
            "hidden_size": 96,
            "depth": 4,
            "num_heads": 4,
            "controlnet_depth": 2,
            "caption_channels": 32,
            "caption_tokens": 8,
            "input_sq_size": 128,
            "motion_encoder_channels": (8, 16, 32, 32),
            "motion_channels": 16,
        },
        latent_size=16,
        num_frames=16,
    ),
}


@dataclass(frozen=True)
class SamplingCache:
    """What guided sampling computes once per call and reuses at every step, guidance pass and window
    (`RealPortrait.sampling_cache`): the reference frame's keys and values in the backbone, and the null
    condition's cross-attention keys and values in the backbone and in the ControlNet."""

    reference: ReferenceCache
    backbone_context: ContextCache
    controlnet_context: ContextCache


class RealPortrait(ModelMixin, ConfigMixin):
    """Portrait animation: reference frame + driving motion -> denoised latent clip."""

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        qk_norm_legacy: bool = True,
        caption_channels: int = 4096,
        caption_tokens: int = 200,
        input_sq_size: int = 512,
        vae_scale_factor: int = 8,
        controlnet_depth: int = 13,
        motion_input: MotionInput = "frames",
        motion_encoder_channels: tuple[int, ...] = (32, 64, 128, 256),
        motion_channels: int = 64,
        motion_augmentation: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        prediction_type: PredictionType = "epsilon",
        min_snr_gamma: float | None = None,
        drop_motion_rate: float = 0.1,
        drop_both_rate: float = 0.1,
        drop_reference_rate: float = 0.0,
        image_fps: float = 120.0,
        video_fps: float = 25.0,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if 2 ** (len(motion_encoder_channels) - 1) != vae_scale_factor:
            raise ValueError("the motion encoder must downsample by the VAE factor (one stage per factor 2)")
        rates = (drop_motion_rate, drop_both_rate, drop_reference_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"condition dropout rates must be >= 0 and sum to at most 1, got {rates}")
        patch = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
        self.backbone = STDiT2(
            in_channels=latent_channels,
            patch_size=patch,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qk_norm=qk_norm,
            qk_norm_legacy=qk_norm_legacy,
            pred_sigma=False,
            caption_channels=caption_channels,
            caption_tokens=caption_tokens,
            input_sq_size=input_sq_size,
            vae_scale_factor=vae_scale_factor,
        )
        self.controlnet = MotionControlNet(
            depth=controlnet_depth,
            hidden_size=hidden_size,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qk_norm=qk_norm,
            qk_norm_legacy=qk_norm_legacy,
            patch_size=patch,
            latent_channels=latent_channels,
            motion_channels=motion_channels,
        )
        self.controlnet.copy_from_backbone(self.backbone)
        self.motion_encoder = MotionEncoder(
            input_kind=motion_input,
            channels=tuple(motion_encoder_channels),
            out_channels=motion_channels,
            augmentation=MotionAugmentation.from_config(motion_augmentation),
        )
        self.schedule = NoiseSchedule(num_train_timesteps)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RealPortrait:
        """Build a named configuration (`paper`, `small`, `tiny`), with keyword overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name].model, **overrides})

    def import_opensora_stdit2(self, checkpoint: str | Path | dict[str, torch.Tensor]) -> ImportReport:
        """Load Open-Sora 1.1 STDiT2 weights into the backbone and the ControlNet's copied blocks."""
        return import_opensora_stdit2(self, checkpoint)

    def encode_motion(
        self,
        driving: torch.Tensor,
        *,
        augment: bool = False,
        generator: torch.Generator | None = None,
        chunk_frames: int | None = None,
    ) -> torch.Tensor:
        """Driving frames [B, C_in, L, H, W] -> motion features [B, C_m, L, H/8, W/8]. `augment` applies
        the training-time appearance/identity augmentation first (per clip, so before any chunking).

        `chunk_frames` encodes that many frames at a time: frames are encoded independently, so the result
        is the same, and the encoder's full-resolution activations are those of one chunk.
        """
        if augment:
            driving = self.motion_encoder.augment(driving, generator)
        if chunk_frames is None or chunk_frames >= driving.shape[2]:
            return self.motion_encoder(driving)
        return torch.cat([self.motion_encoder(part) for part in driving.split(chunk_frames, dim=2)], dim=2)

    def default_fps(self, num_frames: int, batch: int, device: torch.device) -> torch.Tensor:
        """Open-Sora's convention: still images (L = 1) are conditioned as 120 fps, clips as `video_fps`."""
        value = self.config.image_fps if num_frames == 1 else self.config.video_fps
        return torch.full((batch,), float(value), device=device)

    def fps_condition(
        self, fps: float | torch.Tensor | None, num_frames: int, batch: int, device: torch.device
    ) -> torch.Tensor:
        """The fps condition [B] of a sampling call: the driving video's own rate, as training conditions
        every clip on its real (strided) rate. A single frame is conditioned as a still image and no rate
        (None) as the default clip rate, both as in training (`default_fps`)."""
        if fps is None or num_frames == 1:
            return self.default_fps(num_frames, batch, device)
        return torch.as_tensor(fps, dtype=torch.float32, device=device).expand(batch).clone()

    def _condition(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        fps: torch.Tensor | None,
        context: torch.Tensor | None = None,
    ) -> Conditioning:
        """The backbone's conditioning for these latents: one place for `forward` and `cached_prediction`.
        A NaN fps (a still image's, or an unknown rate) is the default, chosen per sample on the device, so
        that no step asks the host whether the batch has a rate."""
        batch, _, num_frames = noisy_latents.shape[:3]
        default = self.default_fps(num_frames, batch, noisy_latents.device)
        fps = default if fps is None else torch.where(fps.isnan(), default, fps.to(default.device))
        return self.backbone.condition(
            timesteps, latent_size=tuple(noisy_latents.shape[-2:]), num_frames=num_frames, fps=fps, context=context
        )

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        reference_latents: torch.Tensor | None = None,
        motion_features: torch.Tensor | None = None,
        *,
        fps: torch.Tensor | None = None,
        reference_keep: torch.Tensor | None = None,
        motion_keep: torch.Tensor | None = None,
        controlnet_scale: float = 1.0,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict epsilon (or v) for the target frames; see the module docstring for shapes.

        `reference_latents=None` / `motion_features=None` drop that condition for the whole batch
        (the unconditional passes of guidance, at lower cost); `reference_keep` / `motion_keep`
        (bool [B]) drop it per sample (training dropout). `fps` [B] (NaN or None: the default rate, see
        `default_fps`) is the clips' frame rate. `context` replaces the learned null
        condition of the cross-attention with [B, M, caption_channels] tokens.
        """
        cond = self._condition(noisy_latents, timesteps, fps, context)
        residuals = (
            ()
            if motion_features is None
            else self.controlnet(noisy_latents, motion_features, cond, scale=controlnet_scale, keep=motion_keep)
        )
        return self.backbone.denoise(
            noisy_latents, reference_latents, cond, reference_keep=reference_keep, block_residuals=residuals
        )

    def condition_keep(
        self, batch: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, which conditions the model sees in training: (reference kept, motion kept), bool [B].

        One joint draw per sample, because guidance uses the conditions jointly: `sample`'s passes are
        (reference and motion), (reference only) and (neither), so each must be trained on a share of
        its own. Dropping reference and motion independently at 10% each would train the unconditional
        pass on 1% of samples. The rates are exclusive: motion dropped alone (`drop_motion_rate`, the
        reference-only pass), both dropped (`drop_both_rate`), the reference dropped alone
        (`drop_reference_rate`, a pass guidance does not use); the rest sees both.
        """
        config = self.config
        draw = torch.rand(batch, device=device, generator=generator)
        motion_only_end = config.drop_reference_rate
        reference_only_end = motion_only_end + config.drop_motion_rate
        neither_end = reference_only_end + config.drop_both_rate
        reference_keep = (draw >= motion_only_end) & ((draw < reference_only_end) | (draw >= neither_end))
        motion_keep = (draw < motion_only_end) | (draw >= neither_end)
        return reference_keep, motion_keep

    def training_loss(
        self,
        latents: torch.Tensor,
        reference_latents: torch.Tensor,
        driving: torch.Tensor,
        *,
        fps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One diffusion training loss on a batch of clips (image mode when L = 1).

        Draws timesteps uniformly, noise, the per-sample condition dropout for guidance
        (`condition_keep`), and the motion augmentation; all randomness comes from `generator` if given.
        """
        batch, device = latents.shape[0], latents.device
        config = self.config
        motion = self.encode_motion(driving, augment=True, generator=generator)
        timesteps = torch.randint(0, config.num_train_timesteps, (batch,), device=device, generator=generator)
        noise = torch.randn(latents.shape, device=device, generator=generator)
        reference_keep, motion_keep = self.condition_keep(batch, device=device, generator=generator)
        prediction = self(
            self.schedule.add_noise(latents, noise, timesteps),
            timesteps,
            reference_latents,
            motion,
            fps=fps,
            reference_keep=reference_keep,
            motion_keep=motion_keep,
        )
        target = self.schedule.training_target(latents, noise, timesteps, config.prediction_type)
        return diffusion_loss(
            prediction,
            target,
            self.schedule.snr(timesteps),
            prediction_type=config.prediction_type,
            min_snr_gamma=config.min_snr_gamma,
        )

    @torch.no_grad()
    def guided_prediction(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        reference_latents: torch.Tensor,
        motion: torch.Tensor,
        *,
        reference_guidance: float,
        motion_guidance: float,
        controlnet_scale: float = 1.0,
        fps: torch.Tensor | None = None,
        cache: SamplingCache | None = None,
    ) -> torch.Tensor:
        """One denoising step's guided prediction (see `sample`); scales of 1 skip the passes they do not need.

        `cache` (`sampling_cache(reference_latents)`, built once per sampling call under the same
        autocast) lets every pass reuse the reference frame's keys and values and the null condition's
        instead of recomputing them; the prediction is the same.
        """

        def predict(with_reference: bool, motion_features: torch.Tensor | None, scale: float = 1.0) -> torch.Tensor:
            if cache is None:
                reference = reference_latents if with_reference else None
                return self(x, timesteps, reference, motion_features, fps=fps, controlnet_scale=scale)
            return self.cached_prediction(
                x,
                timesteps,
                cache,
                with_reference=with_reference,
                motion_features=motion_features,
                fps=fps,
                controlnet_scale=scale,
            )

        full = predict(True, motion, controlnet_scale)
        if reference_guidance == 1 and motion_guidance == 1:
            return full
        reference_only = predict(True, None)
        prediction = reference_only + motion_guidance * (full - reference_only)
        if reference_guidance == 1:
            return prediction
        unconditional = predict(False, None)
        return prediction + (reference_guidance - 1) * (reference_only - unconditional)

    @torch.no_grad()
    def sampling_cache(self, reference_latents: torch.Tensor) -> SamplingCache:
        """The caches of one sampling call for reference latents [B, 4, h, w] (see `SamplingCache`).

        Sampling always uses the null condition, so its keys and values are built for it. Costs about
        one backbone pass over the reference frame; every guided pass with the reference then skips it.
        """
        tokens = self.backbone.y_embedder(None)
        backbone_context = ContextCache.for_blocks(self.backbone.blocks, tokens)
        return SamplingCache(
            reference=self.backbone.reference_cache(reference_latents, backbone_context),
            backbone_context=backbone_context,
            controlnet_context=ContextCache.for_blocks(self.controlnet.blocks, tokens),
        )

    def cached_prediction(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cache: SamplingCache,
        *,
        with_reference: bool,
        motion_features: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        controlnet_scale: float = 1.0,
    ) -> torch.Tensor:
        """`forward` with the reference (if `with_reference`) and the null condition taken from `cache`:
        the same prediction as `forward` with the latents the cache was built from."""
        cond = self._condition(noisy_latents, timesteps, fps)
        residuals = (
            ()
            if motion_features is None
            else self.controlnet(
                noisy_latents, motion_features, cond, scale=controlnet_scale, context=cache.controlnet_context
            )
        )
        reference = cache.reference if with_reference else None
        return self.backbone.denoise(
            noisy_latents, reference, cond, block_residuals=residuals, context=cache.backbone_context
        )

    @torch.no_grad()
    def sample(
        self,
        reference_latents: torch.Tensor,
        driving: torch.Tensor,
        *,
        num_steps: int = 50,
        reference_guidance: float = 2.0,
        motion_guidance: float = 1.0,
        controlnet_scale: float = 1.0,
        fps: float | torch.Tensor | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        motion_chunk_frames: int | None = 16,
    ) -> torch.Tensor:
        """Generate latents [B, 4, L, h, w] for a reference latent and driving frames (DDIM, 50 steps).

        `fps` is the driving video's frame rate (a float, or [B]); None conditions on the model's default.
        No gradients are kept (sampling is inference), with or without an outer `no_grad`; the motion is
        encoded `motion_chunk_frames` frames at a time. Videos longer than the training clip go through
        `model.animate.sample_windows`, which bounds memory by the window.

        Guidance composes the two conditions (as InstructPix2Pix does for image and text):
        eps = eps(none) + r * (eps(ref) - eps(none)) + m * (eps(ref, motion) - eps(ref)),
        with r = `reference_guidance`, m = `motion_guidance`; scales of 1 skip the passes they do not
        need. The defaults are ours (the paper states none); tune them on the evaluation split.
        """
        motion = self.encode_motion(driving, chunk_frames=motion_chunk_frames)
        batch, _, num_frames = driving.shape[:3]
        fps = self.fps_condition(fps, num_frames, batch, reference_latents.device)
        shape = (batch, self.config.latent_channels, num_frames, *reference_latents.shape[-2:])
        noise = torch.randn(shape, device=reference_latents.device, generator=generator)
        cache = self.sampling_cache(reference_latents)  # the reference's and null condition's K/V, once

        def guided(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return self.guided_prediction(
                x,
                timesteps,
                reference_latents,
                motion,
                reference_guidance=reference_guidance,
                motion_guidance=motion_guidance,
                controlnet_scale=controlnet_scale,
                fps=fps,
                cache=cache,
            )

        return ddim_sample(
            guided,
            noise,
            self.schedule,
            prediction_type=self.config.prediction_type,
            num_steps=num_steps,
            eta=eta,
            generator=generator,
        )
