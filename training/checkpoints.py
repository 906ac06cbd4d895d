"""DeepSpeed checkpoints with rotation and resume, and the exported model.

A checkpoint `<stage>/checkpoints/step_NNNNNNNN/` holds DeepSpeed's files (module, ZeRO-partitioned
optimizer, LR schedule), `ema/` (the EMA model as `save_pretrained`: safetensors + config.json + heldout_split.json,
also a usable export) and `trainer_state.json` (step, samples, skip counts, EMA updates). The `latest` file
names the newest complete one and is written last, after every rank has saved: a kill at any moment
leaves `latest` on a complete checkpoint, and folders newer than it are leftovers, removed on resume.

Resuming restores DeepSpeed's state (step, optimizer, LR schedule), the EMA from safetensors (never
unpickled) and the trainer state; DeepSpeed's own files are ours and loaded by DeepSpeed. The EMA is saved
whole (gathered from the ranks' partitions); every rank loads it and averages its own part from there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist
from safetensors.torch import load_file

from model.export_folder import bundle_vae
from model.realportrait import RealPortrait
from training.ema import EMA
from training.heldout import write_record

STATE_FILE = "trainer_state.json"
EMA_DIR = "ema"
LATEST = "latest"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def export_model(
    model: RealPortrait, out: Path, heldout: dict[str, Any] | None = None, vae: Path | None = None
) -> None:
    """`save_pretrained` (safetensors + config.json) to a temporary folder renamed into place, so a folder
    at `out` is always complete; `heldout` (`training.heldout.stage_record`) is written beside the weights,
    and `vae`, the VAE the model was trained with, is bundled in (`model.export_folder.bundle_vae`): an
    export is never seen without its VAE, which a rerun of training would take as done. Checkpoints' `ema/`
    folders are written without one (the run's config names it)."""
    out = Path(out)
    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if heldout is not None:
        write_record(tmp, heldout)
    if vae is not None:
        bundle_vae(tmp, vae)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def is_exported(path: Path) -> bool:
    return (Path(path) / "config.json").exists() and (Path(path) / WEIGHTS).exists()


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Checkpoints:
    """One stage's checkpoint folder; every rank calls `save`/`resume` (DeepSpeed's are collective)."""

    def __init__(self, directory: Path, keep: int, rank: int, heldout: dict[str, Any] | None = None) -> None:
        self.dir = Path(directory)
        self.keep = keep
        self.rank = rank
        self.heldout = heldout  # the held-out split record every `ema/` carries

    def latest(self) -> str | None:
        marker = self.dir / LATEST
        if not marker.exists():
            return None
        tag = marker.read_text().strip()
        return tag if (self.dir / tag / STATE_FILE).exists() else None

    def _tags(self) -> list[str]:
        return sorted(p.name for p in self.dir.glob("step_*") if p.is_dir()) if self.dir.exists() else []

    def save(self, engine: Any, ema: EMA, state: dict[str, Any]) -> str:
        tag = f"step_{state['step']:08d}"
        engine.save_checkpoint(str(self.dir), tag=tag, save_latest=False)
        average = ema.gathered()  # collective: every rank assembles it, rank 0 writes it
        if self.rank == 0:
            export_model(average, self.dir / tag / EMA_DIR, self.heldout)
            _atomic_text(self.dir / tag / STATE_FILE, json.dumps({**state, "ema_updates": ema.updates}, indent=1))
        dist.barrier()
        if self.rank == 0:
            _atomic_text(self.dir / LATEST, tag)
            committed = [t for t in self._tags() if t <= tag]
            for old in committed[: -self.keep]:
                shutil.rmtree(self.dir / old, ignore_errors=True)
        return tag

    def resume(self, engine: Any, ema: EMA) -> dict[str, Any] | None:
        """Restores the latest complete checkpoint; returns its trainer state (None: a fresh start)."""
        tag = self.latest()
        if self.rank == 0:
            for leftover in self._tags():
                if tag is None or leftover > tag:
                    shutil.rmtree(self.dir / leftover, ignore_errors=True)
        if tag is None:
            dist.barrier()
            return None
        path, _ = engine.load_checkpoint(
            str(self.dir), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint {self.dir / tag}")
        state = json.loads((self.dir / tag / STATE_FILE).read_text())
        ema.load(load_file(self.dir / tag / EMA_DIR / WEIGHTS), state["ema_updates"])
        dist.barrier()
        return state
