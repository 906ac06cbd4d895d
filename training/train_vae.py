"""Train a small VAE on the sample build's frames: a CPU stand-in for the demo, NOT the paper's SD1.5 VAE.

The paper's model encodes frames with the SD1.5 VAE (`stabilityai/sd-vae-ft-ema`), and training uses it
whenever `vae.path` points to one. It cannot be downloaded here, and a randomly initialised VAE makes
the demo meaningless (`rp-animate` shows noise, `rp-eval` finds no face). This script trains a diffusers
`AutoencoderKL` of the same architecture (SD1.5 blocks, 4 latent channels; 8x downsampling, or 4x with
three blocks) at narrow widths, on the frames of an `rp-data build --sample` build, in minutes on a CPU:

- frames: every frame of the build's clips and a few random face crops of its images, decoded once at
  `resolution`; the samples of the evaluation split (`heldout_split`, matched against the build by
  `training.heldout`: its clips, their videos and identities) are never trained on, and neither are
  samples whose `split` label is in `exclude_splits` (as the demo's training config does);
- loss: reconstruction (L1 or MSE per pixel) plus `kl_weight` times the posterior's KL per pixel;
- after training, `scaling_factor` is set to 1 / std of the posterior samples of the training frames,
  so `model.vae.FrameVAE` (which reads the config's scaling factor) gives the diffusion model latents of
  about unit variance, as 0.18215 does for the SD1.5 VAE on its data;
- the reconstruction PSNR on the held-out frames (and, for comparison, on training frames) is printed
  and written to `reconstruction.json` beside the weights (`save_pretrained`: config.json + safetensors).

    python -m training.train_vae --config training/configs/demo_vae.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import AutoencoderKL
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from manifests.yaml_files import apply_override, read_mapping, validate
from model.vae import SD15_VAE_CONFIG
from pipeline.tar_stream import tar_samples
from pipeline.video_file import VideoFile
from training.config import BUILD_HELP, CONFIG_DIR, BuildLocation, ConfigError, DataConfig
from training.data import read_index
from training.examples import Framing, image_pair
from training.heldout import file_sha256, plan_heldout

DEFAULT_CONFIG = CONFIG_DIR / "demo_vae.yaml"
RESULT = "reconstruction.json"
STAND_IN = (
    "a CPU stand-in VAE for the demo, trained on the sample build: NOT the paper's SD1.5 VAE "
    "(stabilityai/sd-vae-ft-ema), which training uses whenever vae.path points to it"
)


class VAETrainConfig(BaseModel):
    """What the stand-in VAE is trained on, its size and its schedule (training/configs/demo_vae.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    build_dir: BuildLocation = Field(description=f"{BUILD_HELP} (the sample build of `make demo`)")
    out: Path = Field(description="the save_pretrained folder written (refused if it exists, unless --overwrite)")
    heldout_split: Path | None = Field(
        description="the evaluation split file: its clips, videos and identities are never trained and give "
        "the held-out PSNR; null trains on everything and reports no held-out PSNR"
    )
    exclude_splits: list[str] = Field(default_factory=lambda: ["test"], description="json `split` values not trained")
    validation_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the trainable clips (by a hash of their key) set aside and scored as validation "
        "PSNR: settings are chosen on it, never on the held-out split",
    )
    resolution: int = Field(64, ge=8, description="frame side in pixels, a multiple of the VAE's factor (the demo's)")
    block_out_channels: list[int] = Field(
        default_factory=lambda: [16, 32, 64, 64],
        min_length=2,
        max_length=4,
        description="one encoder block per width, each after the first halving the side: 4 widths downsample 8x "
        "(SD1.5: 128, 256, 512, 512), 3 widths 4x",
    )
    layers_per_block: int = Field(2, ge=1, description="resnet layers per encoder block (SD1.5: 2)")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; divides every width (SD1.5: 32)")
    steps: int = Field(1200, ge=1, description="optimizer steps")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0, description="AdamW peak learning rate (cosine decay to lr / 20)")
    warmup_steps: int = Field(20, ge=0)
    reconstruction: Literal["l1", "mse"] = "l1"
    kl_weight: float = Field(1e-4, ge=0, description="weight of the KL per pixel against the reconstruction per pixel")
    crops_per_image: int = Field(8, ge=1, description="random face crops drawn from each still image")
    crop_scale: tuple[float, float] = Field((0.8, 1.2), description="crop side / the json crop_side, as training")
    seed: int = 0

    @property
    def factor(self) -> int:
        """How much the VAE downsamples each side (the model's `vae_scale_factor`)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @model_validator(mode="after")
    def _shapes(self) -> VAETrainConfig:
        if self.resolution % self.factor:
            raise ValueError(f"resolution must be a multiple of the VAE's factor {self.factor}, got {self.resolution}")
        bad = [width for width in self.block_out_channels if width % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not multiples of norm_num_groups {self.norm_num_groups}")
        return self

    def vae_config(self) -> dict[str, object]:
        """SD1.5's AutoencoderKL configuration at these widths (same blocks and 4 latent channels; factor 8 with
        SD1.5's four widths)."""
        blocks = len(self.block_out_channels)
        return {
            **SD15_VAE_CONFIG,
            "down_block_types": ["DownEncoderBlock2D"] * blocks,
            "up_block_types": ["UpDecoderBlock2D"] * blocks,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": self.norm_num_groups,
            "sample_size": self.resolution,
        }


def load_config(path: Path, overrides: list[str]) -> VAETrainConfig:
    """The YAML file with `key=value` overrides, validated; errors name the file and the field."""
    data = read_mapping(path, "VAE training config", ConfigError)
    for override in overrides:
        apply_override(data, override, ConfigError)
    return validate(VAETrainConfig, data, str(path), "VAE training config", ConfigError)


# -- frames ---------------------------------------------------------------------------------------


@dataclass
class FrameSet:
    """uint8 frames [N, H, W, 3] at the training resolution and the sample keys they came from."""

    frames: list[np.ndarray] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def add(self, key: str, frames: np.ndarray) -> None:
        self.frames.append(frames)
        self.keys.add(key)

    def stacked(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros((0, 0, 0, 3), np.uint8)


@dataclass
class SampleFrames:
    """The build split for the VAE: what it trains on, the held-out frames it is scored on, what it skipped."""

    train: FrameSet
    heldout: FrameSet
    validation: FrameSet
    excluded: set[str]


def in_validation(key: str, fraction: float) -> bool:
    """A stable draw per sample key, so the set-aside is the same in every run and on every machine."""
    digest = hashlib.sha256(f"vae-validation:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def held_out_keys(config: VAETrainConfig) -> frozenset[str]:
    """The build's samples of the evaluation split, matched as training matches them (`training.heldout`)."""
    data = DataConfig(build_dir=config.build_dir, heldout_split=config.heldout_split)
    plan = plan_heldout(data)
    if plan is not None:
        print(plan.describe())
    return frozenset() if plan is None else plan.keys


def read_frames(config: VAETrainConfig, held_out: frozenset[str]) -> SampleFrames:
    """Every frame of every clip, and `crops_per_image` face crops of every image, from the committed tars."""
    rng = np.random.default_rng(config.seed)
    side = config.resolution
    framing = Framing(mode="image", resolution=side, crop_scale=config.crop_scale)
    result = SampleFrames(FrameSet(), FrameSet(), FrameSet(), set())
    for entry in read_index(config.build_dir):
        for sample in tar_samples([{"url": str(entry.path)}]):
            meta = json.loads(sample["json"])
            key = meta["key"]
            target = result.heldout if key in held_out else result.train
            if target is result.train and meta["split"] in config.exclude_splits:
                result.excluded.add(key)
                continue
            if target is result.train and meta["kind"] == "clip" and in_validation(key, config.validation_fraction):
                target = result.validation
            if meta["kind"] == "clip":
                video = VideoFile(sample["mp4"], name=key)
                target.add(key, video.frames(range(len(video)), side, side))
            else:
                bbox = np.load(io.BytesIO(sample["bbox.npy"]), allow_pickle=False)
                crops = [
                    image_pair(sample["jpg"], meta, bbox, framing, rng)
                    for _ in range(math.ceil(config.crops_per_image / 2))
                ]
                target.add(key, np.stack([crop for pair in crops for crop in pair][: config.crops_per_image]))
    if not result.train.frames:
        raise ConfigError(
            f"{config.build_dir}: no trainable frame (every sample is held out or in {config.exclude_splits})"
        )
    return result


def to_model(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


# -- training and scoring -------------------------------------------------------------------------


def vae_loss(vae: AutoencoderKL, batch: torch.Tensor, config: VAETrainConfig) -> torch.Tensor:
    """Reconstruction per pixel + kl_weight x KL per pixel (the KL is summed over the latent, LDM's way)."""
    posterior = vae.encode(batch).latent_dist
    decoded = vae.decode(posterior.sample()).sample
    error = (decoded - batch).abs() if config.reconstruction == "l1" else (decoded - batch).pow(2)
    pixels = batch[0].numel()
    return error.mean() + config.kl_weight * posterior.kl().mean() / pixels


def learning_rate(step: int, config: VAETrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1/20 of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(vae: AutoencoderKL, frames: torch.Tensor, config: VAETrainConfig, *, progress: bool) -> list[float]:
    """AdamW on random batches (random horizontal flips); returns the loss of every step."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    losses: list[float] = []
    vae.train()
    columns = (
        TextColumn("[bold]training the VAE"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("steps", total=config.steps, loss="-")
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            batch = frames[torch.randint(len(frames), (config.batch_size,), generator=generator)]
            flip = torch.rand(config.batch_size, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            loss = vae_loss(vae, batch, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            bar.update(task, advance=1, loss=f"{np.mean(losses[-20:]):.4f}")
    vae.eval()
    return losses


@torch.no_grad()
def psnr(vae: AutoencoderKL, frames: torch.Tensor, chunk: int = 64) -> float:
    """Mean per-frame PSNR (dB, pixel range [0, 1]) of the posterior mean's reconstruction."""
    values = []
    for part in frames.split(chunk):
        decoded = vae.decode(vae.encode(part).latent_dist.mode()).sample.clamp(-1, 1)
        mse = ((decoded - part) / 2).pow(2).flatten(1).mean(1)
        values.append(-10 * torch.log10(mse.clamp_min(1e-10)))
    return float(torch.cat(values).mean())


@torch.no_grad()
def latent_std(vae: AutoencoderKL, frames: torch.Tensor, seed: int, chunk: int = 64) -> float:
    """Std of posterior samples over the frames (what FrameVAE.encode draws during training)."""
    generator = torch.Generator().manual_seed(seed)
    latents = [vae.encode(part).latent_dist.sample(generator) for part in frames.split(chunk)]
    return float(torch.cat(latents).std())


def evenly(frames: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` frames spread over the set (scoring the training frames is only a comparison)."""
    if len(frames) <= count:
        return frames
    return frames[torch.linspace(0, len(frames) - 1, count).round().long()]


def run(config: VAETrainConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, object]:
    """Train, set the scaling factor, save to `config.out` with its `reconstruction.json`; returns that record."""
    if config.out.exists() and not overwrite:
        raise ConfigError(f"out: {config.out} already exists; pass --overwrite to replace it")
    torch.manual_seed(config.seed)
    started = time.monotonic()
    held_out = held_out_keys(config)
    split = read_frames(config, held_out)
    train_frames = to_model(split.train.stacked())
    heldout_frames = to_model(split.heldout.stacked()) if split.heldout.frames else None
    validation_frames = to_model(split.validation.stacked()) if split.validation.frames else None
    print(
        f"frames at {config.resolution}px: {len(train_frames)} to train on from {len(split.train.keys)} samples, "
        f"{0 if validation_frames is None else len(validation_frames)} set aside for validation from "
        f"{len(split.validation.keys)} training clips, "
        f"{0 if heldout_frames is None else len(heldout_frames)} held out from {len(split.heldout.keys)} samples, "
        f"{len(split.excluded)} samples skipped for split labels {config.exclude_splits}"
    )
    vae = AutoencoderKL(**config.vae_config())
    loading = time.monotonic() - started
    losses = train(vae, train_frames, config, progress=progress)
    seconds = time.monotonic() - started - loading
    std = latent_std(vae, train_frames, config.seed)
    vae.register_to_config(scaling_factor=1.0 / std)
    record: dict[str, object] = {
        "note": STAND_IN,
        "resolution": config.resolution,
        "steps": config.steps,
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "psnr_heldout_db": None if heldout_frames is None else round(psnr(vae, heldout_frames), 2),
        "psnr_validation_db": None if validation_frames is None else round(psnr(vae, validation_frames), 2),
        "psnr_train_db": round(psnr(vae, evenly(train_frames, 256)), 2),
        "heldout_frames": 0 if heldout_frames is None else len(heldout_frames),
        "train_frames": len(train_frames),
        "latent_std": std,
        "scaling_factor": 1.0 / std,
        "loss_first": float(np.mean(losses[: max(1, len(losses) // 10)])),
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        "heldout_split": None
        if config.heldout_split is None
        else {"path": str(config.heldout_split), "sha256": file_sha256(config.heldout_split)},
        "heldout_keys": sorted(split.heldout.keys),
        "validation_keys": sorted(split.validation.keys),
        "train_keys": sorted(split.train.keys),
        "excluded_keys": sorted(split.excluded),
        "config": json.loads(config.model_dump_json()),
    }
    save(vae, record, config.out)
    return record


def save(vae: AutoencoderKL, record: dict[str, object], out: Path) -> None:
    """save_pretrained into a sibling folder, then moved into place: a crash leaves no half-written VAE."""
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    vae.save_pretrained(staging, safe_serialization=True)
    (staging / RESULT).write_text(json.dumps(record, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.train_vae",
        description=f"Train {STAND_IN}. Prints its reconstruction PSNR on the held-out split's frames and writes "
        f"it to {RESULT} beside the weights.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the YAML settings (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="key=value settings over the file's, e.g. steps=20 out=/tmp/vae")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        record = run(config, overwrite=args.overwrite, progress=not args.no_progress)
    except ConfigError as error:
        print(f"train_vae: error: {error}", file=sys.stderr)
        return 2
    heldout = record["psnr_heldout_db"]
    print(
        f"wrote {config.out} ({record['parameters']:,} parameters, {record['steps']} steps in "
        f"{record['train_seconds']} s, scaling_factor {record['scaling_factor']:.4f}): reconstruction PSNR "
        + (f"{heldout} dB on {record['heldout_frames']} held-out frames, " if heldout is not None else "")
        + (
            f"{record['psnr_validation_db']} dB on the training clips set aside for validation, "
            if record["psnr_validation_db"] is not None
            else ""
        )
        + f"{record['psnr_train_db']} dB on training frames; {config.out / RESULT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
