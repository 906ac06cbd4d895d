"""Two-stage RealPortrait training with DeepSpeed ZeRO on the shards of an `rp-data build`.

    deepspeed [--num_gpus N] training/train.py --config training/configs/stage1.yaml [key=value ...]

Each stage of the config runs in turn (a stage whose export exists is skipped): it builds its model
(from the preset, Open-Sora STDiT2 weights, or an earlier stage's export), marks its trainable
parameters, wraps the loss in a DeepSpeed engine (ZeRO-2 by default, bf16 on GPU, fp32 on CPU; AdamW,
warm-up, clipping), resumes from its latest checkpoint if one exists, and trains: batches from
`training.data`, latents from the frozen VAE on the fly (or from the shards), the loss of
`RealPortrait.training_loss` (under autocast in bf16), an EMA of the optimizer's fp32 master weights.
A stage that starts from the preset writes what the STDiT2 import did (or `none`) to
`<stage>/stdit2_import.json`. Every N steps it logs, validates, checkpoints; at the end it exports the
EMA model with the VAE it trained with (`<output_dir>/<stage>/export`: save_pretrained + safetensors, and
`vae/`, so the export alone is what rp-animate and rp-eval need).
Touching `<output_dir>/<stage>/EXPORT` asks for an export of the current EMA weights
(`<stage>/exports/step_N`) at the next logging step. Without the launcher it runs as one process.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # Launched as a script, the first path entry is training/ itself: use the repository instead, so that
    # `training` is this checkout's package and no module in training/ shadows a library module.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import deepspeed
import numpy as np
import torch
import torch.distributed as dist
import yaml
from deepspeed.accelerator import get_accelerator

from model.precision import peak_memory_bytes
from model.realportrait import RealPortrait
from model.vae import FrameVAE
from training.checkpoints import Checkpoints, export_model, is_exported
from training.config import ConfigError, StageConfig, TrainConfig, load_config
from training.data import endless, open_loader, read_index
from training.engine import (
    Objective,
    batch_split,
    build_model,
    compile_networks,
    deepspeed_config,
    ema_for_stage,
    make_optimizer,
    require_stdit2_weights,
    resolve_init,
    rotary_restorer,
    select_trainable,
)
from training.heldout import plan_heldout, stage_record
from training.loss_tally import LossTally, MicroStep, NonFiniteLoss
from training.monitor import Monitor, Window
from training.shared_output import SharedOutputError, check_shared_output
from training.validation import (
    SharedResult,
    ValidationClip,
    generate,
    load_clips,
    log_validation,
    rank_share,
    score_share,
    source_copy_mse,
)
from training.validation_picks import ReadCost

# In <output_dir>/<stage>/: the STDiT2 import report (loaded, adapted, initialised keys).
IMPORT_REPORT = "stdit2_import.json"
NO_HELDOUT_SPLIT = (
    "warning: no data.heldout_split: only the samples' split labels keep test clips out (CelebV-HQ's are "
    "unsplit), and the exports record no held-out split"
)
VAE_SOURCE = (
    "the SD1.5 VAE in diffusers format (config.json + diffusion_pytorch_model.safetensors) from Hugging Face "
    "stabilityai/sd-vae-ft-ema (or the vae/ folder of an SD1.5 repository), or its single .safetensors file"
)


@dataclass(frozen=True)
class Context:
    """What every stage shares: the process's place in the job, its device and precision, the VAE."""

    rank: int
    world: int
    device: torch.device
    bf16: bool
    vae: FrameVAE


def write_import_report(path: Path, record: dict[str, Any]) -> None:
    """The run folder's account of where the backbone's weights came from (key by key), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def check_inputs(config: TrainConfig) -> None:
    """Fail before any process group forms when an input is missing."""
    if not config.vae.path.exists():
        raise ConfigError(
            f"vae.path: {config.vae.path} not found. It must hold {VAE_SOURCE}. "
            f"Download it and put it at {config.vae.path}, or pass vae.path=/your/copy"
        )
    if not config.deepspeed.exists():
        raise ConfigError(
            f"deepspeed: {config.deepspeed} not found (a DeepSpeed JSON such as training/configs/zero2.json)"
        )
    require_stdit2_weights(config)
    read_index(config.data.build_dir)
    if config.validation.build_dir is not None:
        read_index(config.validation.build_dir)
    heldout = plan_heldout(config.data)  # refuses a build that holds the evaluation split, if so configured
    if os.environ.get("RANK", "0") == "0":
        print(heldout.describe() if heldout else NO_HELDOUT_SPLIT, flush=True)


def init_process_group(timeout_minutes: float) -> tuple[int, int]:
    """Under the deepspeed launcher its environment is used; a plain `python train.py` is a job of one.
    `timeout_minutes` bounds every collective's wait (validation must fit well inside it)."""
    if "RANK" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    deepspeed.init_distributed(timeout=timedelta(minutes=timeout_minutes))
    return dist.get_rank(), dist.get_world_size()


def release_shm_buffer(rank: int) -> None:
    """Unlink this rank's shared-memory all-reduce buffer (about 70 MB of RAM in /dev/shm), which DeepSpeed's
    CPU communication op creates per rank and master address/port and never removes."""
    name = f"deepspeed_allreduce_buffer_{os.getuid()}_{os.environ['MASTER_ADDR']}_{os.environ['MASTER_PORT']}_{rank}"
    Path("/dev/shm", name).unlink(missing_ok=True)


def model_inputs(batch: dict[str, Any], context: Context, sample_posterior: bool) -> tuple[torch.Tensor, ...]:
    """(latents [B,4,L,h,w], reference latents [B,4,h,w], driving frames [B,3,L,H,W] in [-1,1], fps [B])."""
    device = context.device
    # uint8 and float tensors from (pinned) host memory, copied without waiting; frames become float on the device
    driving = batch["frames"].to(device, non_blocking=True).float() / 127.5 - 1
    if "latents" in batch:
        latents = batch["latents"].to(device, non_blocking=True)
        reference_latents = batch["reference_latents"].to(device, non_blocking=True)
    else:
        reference = batch["reference"].to(device, non_blocking=True).float() / 127.5 - 1
        both = context.vae.encode(torch.cat([reference[:, :, None], driving], dim=2), sample=sample_posterior)
        reference_latents, latents = both[:, :, 0], both[:, :, 1:]
    fps = batch["fps"].to(device, non_blocking=True)  # NaN (a still image) is the model's default rate
    return latents, reference_latents, driving, fps


class StageRun:
    """One stage from start (or its latest checkpoint) to its export."""

    def __init__(self, config: TrainConfig, index: int, stage: StageConfig, context: Context) -> None:
        self.config, self.stage, self.context = config, stage, context
        self.dir = config.output_dir / stage.name
        torch.manual_seed(derive_seed(config.seed, index))  # the same new weights on every rank, run after run
        starting = build_model(config, stage)
        model, origin = starting.model, starting.origin
        context.vae.check_matches(model.config.vae_scale_factor, config.vae.path)
        self.model: RealPortrait = model
        trainable = select_trainable(model, stage)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)  # before ZeRO-3 partitions them
        described = (
            f"{stage.mode} mode, {trained:,} of {sum(p.numel() for p in model.parameters()):,} parameters trained"
        )
        self.ema = ema_for_stage(model, trainable, stage, context.device)
        if config.compile:  # after the EMA's copy: the copy validates and exports uncompiled
            compile_networks(model)
        optimizer, scheduler = make_optimizer(model, stage)
        ds_config = deepspeed_config(
            config.deepspeed, stage, world=context.world, bf16=context.bf16, compiled=config.compile
        )
        restore_rotary = rotary_restorer(model)
        self.engine, *_ = deepspeed.initialize(
            model=Objective(model, autocast=torch.bfloat16 if context.bf16 else None),
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=ds_config,
        )
        restore_rotary()
        parent = None if stage.init_from is None else resolve_init(config.output_dir, stage.init_from)
        self.heldout = stage_record(config.data, parent)
        self.checkpoints = Checkpoints(self.dir / "checkpoints", config.checkpoint.keep, context.rank, self.heldout)
        self.state: dict[str, Any] = {"stage": stage.name, "step": 0, "samples": 0, "skipped": {}}
        resumed = self.checkpoints.resume(self.engine, self.ema)
        if resumed is not None:
            self.state = resumed
        step = self.engine.global_steps
        if step != self.state["step"]:
            raise RuntimeError(f"DeepSpeed restored step {step}, the trainer state says {self.state['step']}")
        self.micro, self.accumulation = batch_split(stage, context.world)
        self.losses = LossTally(context.device, self.accumulation)
        torch.manual_seed(derive_seed(config.seed, index, context.rank, step))
        self.loader = open_loader(
            config.data,
            stage,
            micro_batch=self.micro,
            seed=[config.seed, index, step],
            pin_memory=context.device.type == "cuda",
        )
        self.monitor: Monitor | None = None
        self.clips = self._validation_clips()  # on every rank, before the first step: each samples its share
        self.share = rank_share(len(self.clips), context.rank, context.world)
        # the clips are fixed for the stage, so the line val/mse must go below is computed once
        self.source_copy_mse = source_copy_mse(self.clips) if self.clips else math.nan
        if context.rank == 0:
            if starting.import_record is not None:
                write_import_report(self.dir / IMPORT_REPORT, starting.import_record)
            self.monitor = Monitor(config.output_dir / "tensorboard" / stage.name, stage.name, stage.steps, step)
            start = f"resumed from step {step}" if resumed else f"starting from {origin}"
            print(
                f"[{stage.name}] {start}: {described}, global batch {stage.global_batch} = "
                f"{context.world} rank(s) x {self.micro} x {self.accumulation} accumulation",
                flush=True,
            )

    def _validation_clips(self) -> list[ValidationClip]:
        settings = self.config.validation
        if settings.pairs == 0:
            return []
        cost = ReadCost()
        clips = load_clips(
            settings.build_dir or self.config.data.build_dir,
            settings,
            frames=settings.frames,
            stride=self.stage.frame_stride,
            resolution=self.stage.resolution,
            cost=cost,
        )
        if self.context.rank == 0:
            print(
                f"[{self.stage.name}] validation clips {[clip.key for clip in clips]}: {len(cost.tars)} tar(s) "
                f"opened, {cost.bytes / 1e6:.1f} MB read"
                if clips
                else f"[{self.stage.name}] no clip of splits {settings.splits} for validation: validation is off",
                flush=True,
            )
        return clips

    def train_step(self, batches: Any) -> float:
        """One optimizer step (over the accumulation micro-steps); returns the seconds spent waiting for data.

        Nothing here makes the host wait for the device: the losses go to `self.losses` unread (see
        `training.loss_tally`), and are read, all-reduced and checked at logging and checkpoint steps."""
        waited = 0.0
        step = self.engine.global_steps + 1
        for micro in range(self.accumulation):
            began = time.monotonic()
            batch = next(batches)
            waited += time.monotonic() - began
            skipped = Counter(self.state["skipped"])
            skipped.update(batch["skipped"])
            self.state["skipped"] = dict(skipped)
            loss = self.engine(*model_inputs(batch, self.context, self.config.vae.sample_posterior))
            self.losses.add(loss, MicroStep(step, micro, list(batch["keys"])))
            self.engine.backward(loss)
            self.engine.step()
        return waited

    def stop_if_nonfinite(self) -> None:
        """Collective: every rank stops together, with one message, if any rank's loss was not finite since
        the last check (called before anything logs, validates or saves the weights that loss produced)."""
        latest = self.checkpoints.dir / "latest"
        last = latest.read_text().strip() if latest.exists() else "none yet"
        advice = (
            f"Nothing after that step was checkpointed (last checkpoint: {last}). Check those clips for broken "
            f"inputs (rebuild or remove them in the data build), then resume from the last checkpoint, "
            f"with a lower stages.{self.stage.name}.optimizer.lr if the loss was rising before it"
        )
        self.losses.check_finite(self.stage.name, self.context.rank, advice)

    def log(self, step: int, window: Window, lr: float) -> None:
        """Collective (every rank calls it at the same steps): the loss mean over ranks, summed skip counts."""
        request = self.dir / "EXPORT"
        requested = self.monitor is not None and request.exists()  # rank 0 decides; the all-reduce tells the others
        flag = torch.full((1,), float(requested), dtype=torch.float64, device=self.context.device)
        total = torch.cat([self.losses.sum_and_count(), flag])
        dist.all_reduce(total)
        self.losses.reset_sum()
        counts: list[Any] = [None] * self.context.world
        dist.all_gather_object(counts, self.state["skipped"])
        average = self.ema.gathered() if total[2] > 0 else None  # collective: the EMA's partitions, assembled
        if self.monitor is None:
            return
        values = {
            **window.rates(),
            "loss": float(total[0] / total[1]),
            "lr": lr,
            "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
            "peak_memory_gib": peak_memory_bytes(self.context.device) / 2**30,  # rank 0's device (RSS on CPU)
        }
        self.monitor.scalars(step, {f"train/{name}": value for name, value in values.items()})
        skipped = sum((Counter(c) for c in counts), Counter())
        self.monitor.scalars(step, {f"data/skipped/{reason}": n for reason, n in skipped.items()})
        self.monitor.progress(step, values)
        if average is not None:
            export_model(average, self.dir / "exports" / f"step_{step:08d}", self.heldout, self.config.vae.path)
            request.unlink()
            print(f"[{self.stage.name}] exported the EMA model of step {step} on request", flush=True)

    def validate(self, step: int) -> None:
        """Collective: every rank samples its share of the clips, rank 0 gathers and logs them."""
        if not self.clips:
            return
        began = time.monotonic()
        mine = [self.clips[index] for index in self.share]
        average = self.ema.gathered()  # collective: every rank, whether or not it has clips to sample
        result = SharedResult([], np.zeros((0,), np.uint8), 0.0, 0)
        if mine:
            autocast = torch.bfloat16 if self.context.bf16 else None
            generated = generate(average, self.context.vae, mine, self.stage, self.config.validation, autocast)
            result = score_share(self.share, mine, generated)
        result = replace(result, seconds=time.monotonic() - began)
        shares: list[Any] | None = [None] * self.context.world if self.monitor is not None else None
        dist.gather_object(result, shares, dst=0)
        if self.monitor is None or shares is None:
            return
        copy = self.source_copy_mse
        mse = log_validation(self.monitor, step, self.clips, shares, copy)
        slowest, fastest = max(share.seconds for share in shares), min(share.seconds for share in shares)
        self.monitor.scalars(step, {"val/seconds_slowest_rank": slowest, "val/seconds_fastest_rank": fastest})
        print(
            f"[{self.stage.name}] validation at step {step}: mse {mse:.4f}, source-copy {copy:.4f} "
            f"(ranks reached the gather after {fastest:.1f}-{slowest:.1f} s)",
            flush=True,
        )
        limit = 60 * self.config.collective_timeout_minutes
        if slowest > limit / 4:
            print(
                f"[{self.stage.name}] warning: the slowest rank took {slowest:.0f} s to validate, over a quarter of "
                f"the collective timeout ({limit:.0f} s); lower validation.budget or raise collective_timeout_minutes",
                flush=True,
            )

    def run(self) -> None:
        stage, config = self.stage, self.config
        batches = endless(self.loader)
        window = Window()
        step = self.engine.global_steps
        while step < stage.steps:
            lr = self.engine.get_lr()[0]
            waited = self.train_step(batches)
            step = self.engine.global_steps
            self.ema.update(self.model)
            self.state.update(step=step, samples=self.state["samples"] + stage.global_batch)
            window.add(stage.global_batch, waited)
            last = step == stage.steps
            logged = step % config.logging.every == 0 or last
            validating = step % config.validation.every == 0 or last
            saving = step % config.checkpoint.every == 0 or last
            if logged or validating or saving:  # a NaN model is never logged as fine, validated or saved
                self.stop_if_nonfinite()
            if logged:
                self.log(step, window, lr)
            if validating:
                self.validate(step)
            if saving:
                tag = self.checkpoints.save(self.engine, self.ema, self.state)
                if self.monitor is not None:
                    print(f"[{stage.name}] checkpoint {self.checkpoints.dir / tag}", flush=True)
            if logged:  # the next window measures training only, not this step's validation and checkpoint
                window = Window()
        average = self.ema.gathered()  # collective (a no-op after the last checkpoint's gather)
        if self.context.rank == 0:
            export_model(average, self.dir / "export", self.heldout, self.config.vae.path)
            print(f"[{stage.name}] done: EMA model exported to {self.dir / 'export'}", flush=True)
        dist.barrier()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        del self.loader, self.engine
        gc.collect()


def train(config: TrainConfig) -> None:
    rank, world = init_process_group(config.collective_timeout_minutes)
    accelerator = get_accelerator()
    device = torch.device(accelerator.device_name(int(os.environ.get("LOCAL_RANK", 0))))
    if device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))
    else:
        accelerator.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        check_shared_output(config.output_dir, rank, world)  # before any work: a node-local output_dir would hang
    except SharedOutputError:
        dist.destroy_process_group()
        if device.type == "cpu":
            release_shm_buffer(rank)
        raise
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    vae = FrameVAE.from_path(config.vae.path, chunk_size=config.vae.chunk_size)
    vae = vae.to(device=device, dtype=torch.bfloat16 if bf16 else torch.float32)
    context = Context(rank, world, device, bf16, vae)
    if rank == 0:
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    try:
        for index, stage in enumerate(config.stages):
            if is_exported(config.output_dir / stage.name / "export"):
                if rank == 0:
                    print(f"[{stage.name}] already exported: skipped", flush=True)
                continue
            run = StageRun(config, index, stage, context)
            run.run()
            run.close()
        dist.barrier()
        dist.destroy_process_group()
    except NonFiniteLoss as error:
        # raised on every rank together; rank 0 says it before any rank exits, since the launcher stops every
        # rank as soon as one exits non-zero (and could cut rank 0 off mid-message)
        if rank == 0:
            print(f"error: {error}", file=sys.stderr, flush=True)
        dist.barrier()
        raise
    finally:
        if device.type == "cpu":
            release_shm_buffer(rank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="a training YAML (training/configs/*.yaml); repeat it to merge files in order, e.g. a stage's "
        "file, then your own paths (training/configs/paths.example.yaml)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. stages.stage1.steps=10")
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the launcher
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        check_inputs(config)
        train(config)
    except ConfigError as error:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLoss:  # every rank stops; rank 0 has printed the one message (see `train`)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
