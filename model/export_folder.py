"""What an export folder holds: the model (`RealPortrait.save_pretrained`: config.json + safetensors), and the
VAE it carries, `<export>/vae/` (a diffusers folder) with `<export>/vae_source.json`.

A RealPortrait model is only meaningful with the VAE whose latents it was trained on, so every export
(`training/train.py`'s stage exports, `python -m training.export`) carries that VAE, and `rp-animate` and
`rp-eval run --method ours` read it from there: an export folder is the whole model, portable on its own.

- The files are copied (~330 MB for the SD1.5 VAE), not hard-linked: a hard link shares its bytes with the
  source, and a tool that rewrites the source in place (`save_pretrained` truncates and rewrites) would
  change every export made from it. A single `.safetensors` file (diffusers or original LDM key names) is
  converted to a diffusers folder, so an export always holds the one layout.
- `vae_source.json` records where the VAE came from (absolute path) and the sha256 of every source file,
  beside `vae/` rather than in it: when `vae/` is lost, the error still names the VAE the export needs.
- Nothing here imports torch or diffusers unless a single file must be converted, so the command-line
  tools check the export and resolve its VAE (and report what is missing) before any model code loads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.fingerprint import sha256_file

VAE_DIR = "vae"
VAE_RECORD = "vae_source.json"
FORMAT = "realportrait-vae/1"
# A diffusers model folder as `from_pretrained` reads it with safetensors, the model's and the VAE's alike:
# other files of a Hugging Face repository (.bin weights, fp16 variants, README) are not needed.
DIFFUSERS_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
EXPECTED = (
    "the SD1.5 VAE: a diffusers folder (config.json + diffusion_pytorch_model.safetensors, e.g. Hugging Face "
    "stabilityai/sd-vae-ft-ema) or a single .safetensors file"
)


class NotAnExport(FileNotFoundError):
    """A --checkpoint folder without a RealPortrait model; the message names the folder."""


class VAENotFound(FileNotFoundError):
    """No VAE where one was asked for or recorded; the message names the path and what to do."""


def require_export(checkpoint: Path) -> Path:
    """`checkpoint` when it holds a RealPortrait model, else NotAnExport naming the missing files."""
    missing = [name for name in DIFFUSERS_FILES if not (Path(checkpoint) / name).is_file()]
    if missing:
        what = "no such folder" if not Path(checkpoint).is_dir() else f"no {' and no '.join(missing)} in it"
        raise NotAnExport(
            f"argument --checkpoint: {checkpoint}: not a RealPortrait checkpoint ({what}); expected the "
            "config.json + diffusion_pytorch_model.safetensors of RealPortrait.save_pretrained, e.g. a training "
            "run's <output_dir>/stage2/export"
        )
    return Path(checkpoint)


def _source_files(source: Path) -> dict[str, Path]:
    """The files that make the VAE at `source` by name (a Hugging Face cache's symlinks followed), or
    VAENotFound naming what is missing."""
    if source.is_dir():
        missing = [name for name in DIFFUSERS_FILES if not (source / name).is_file()]
        if missing:
            raise VAENotFound(f"VAE folder {source} lacks {', '.join(missing)}: expected {EXPECTED}")
        return {name: (source / name).resolve() for name in DIFFUSERS_FILES}
    if source.is_file() and source.suffix == ".safetensors":
        return {source.name: source}
    raise VAENotFound(f"VAE not found at {source}: expected {EXPECTED}")


def bundle_vae(export: Path, source: Path) -> dict[str, Any]:
    """Puts the VAE at `source` into `export/vae/` (complete or absent: written aside, then renamed) and
    writes `export/vae_source.json`; returns the record."""
    export, source = Path(export), Path(source).resolve()
    files = _source_files(source)
    staging = export / f".{VAE_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if source.is_dir():
        staging.mkdir()
        for name, path in files.items():
            shutil.copyfile(path, staging / name)
        bundled = "copied"
    else:
        from model.vae import load_vae  # diffusers: only for the conversion

        load_vae(source).save_pretrained(staging, safe_serialization=True)
        bundled = "converted to a diffusers folder"
    shutil.rmtree(export / VAE_DIR, ignore_errors=True)
    os.replace(staging, export / VAE_DIR)
    record = {
        "format": FORMAT,
        "source": str(source),
        "bundled": bundled,
        "sha256": {name: sha256_file(path) for name, path in files.items()},
    }
    (export / VAE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_vae_record(export: Path) -> dict[str, Any] | None:
    """The export's `vae_source.json`, or None for an export written without one."""
    path = Path(export) / VAE_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_vae(checkpoint: Path, vae: Path | None = None) -> Path:
    """The VAE to load: `vae` when given (`--vae`), else the export's own `vae/`; VAENotFound otherwise,
    naming the VAE the export recorded and where it is now."""
    if vae is not None:
        if not Path(vae).exists():
            raise VAENotFound(f"argument --vae: {vae}: not found; expected {EXPECTED}")
        return Path(vae)
    bundled = Path(checkpoint) / VAE_DIR
    if bundled.is_dir():
        return bundled
    record = read_vae_record(checkpoint)
    if record is None:
        raise VAENotFound(
            f"argument --checkpoint: {checkpoint}: the export carries no VAE ({VAE_DIR}/ is missing and there is no "
            f"{VAE_RECORD}: it predates self-contained exports). Pass --vae with the VAE it was trained with "
            "(vae.path of its training config), or export it again with python -m training.export"
        )
    source = Path(record["source"])
    where = (
        f"it is still there: pass --vae {source}"
        if source.exists()
        else f"it is no longer there either: find that VAE (sha256 {json.dumps(record['sha256'])}) and pass --vae"
    )
    raise VAENotFound(
        f"argument --checkpoint: {checkpoint}: {bundled} is missing. The export was made with the VAE at "
        f"{source}; {where}"
    )
