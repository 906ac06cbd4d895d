"""A training checkpoint -> a `save_pretrained` folder that `RealPortrait.from_pretrained` (and `rp-animate`,
`rp-eval --checkpoint`) loads.

    python -m training.export RUN/STAGE/checkpoints --out DIR [--tag step_N] [--weights ema|live] [--vae PATH]

A checkpoint holds two models. `ema/` is already a `save_pretrained` folder (the EMA weights every export
uses); `--weights ema` re-exports it after loading it. The live weights exist only as DeepSpeed's files:
the fp32 master weights, partitioned over the ranks under ZeRO. `--weights live` consolidates them with
DeepSpeed's own function (`get_fp32_state_dict_from_zero_checkpoint`, which reads DeepSpeed's pickled files:
export only checkpoints your own runs wrote) and takes the model's configuration from the checkpoint's
`ema/` (the same architecture). Either way the export carries the checkpoint's `heldout_split.json`, and
the VAE the run trained with (`model.export_folder`: `vae/` and `vae_source.json`), taken from `--vae` or else
from `vae.path` of the run's `config.yaml` (written by training/train.py two folders above `checkpoints/`),
so the export is all `rp-animate --checkpoint` needs. Training's own exports carry it too (`export_model`).

DeepSpeed names the weights after the module it trained, the training wrapper (`training.engine.Objective`),
so every key of `zero_to_fp32.py`'s output starts with `model.`. `load_consolidated` loads that output:

    model = load_consolidated("consolidated/", config="RUN/STAGE/checkpoints/step_N/ema")
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import torch
import yaml
from safetensors.torch import load_file

from model.realportrait import RealPortrait
from training.checkpoints import EMA_DIR, LATEST, STATE_FILE, export_model
from training.heldout import read_record

WRAPPER_PREFIX = "model."  # training.engine.Objective holds the RealPortrait as `.model`
# What `zero_to_fp32.py OUT` writes into OUT: one file, or shards listed by an index (weight_map)
CONSOLIDATED_FILES = ("model.safetensors", "pytorch_model.bin")
RUN_CONFIG = "config.yaml"  # <output_dir>/config.yaml, the resolved config training/train.py ran with


class ExportError(ValueError):
    """A checkpoint or consolidated file that cannot be exported; the message names the path."""


def strip_wrapper(state: dict[str, torch.Tensor], source: Path | str) -> dict[str, torch.Tensor]:
    """RealPortrait's names for the wrapper's keys (`model.x` -> `x`); any other key is refused by name."""
    strays = sorted(key for key in state if not key.startswith(WRAPPER_PREFIX))
    if strays:
        raise ExportError(
            f"{source}: {len(strays)} key(s) without the training wrapper's {WRAPPER_PREFIX!r} prefix "
            f"(e.g. {strays[:3]}): not a consolidated RealPortrait training checkpoint"
        )
    return {key[len(WRAPPER_PREFIX) :]: value for key, value in state.items()}


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        return load_file(file)
    return torch.load(file, map_location="cpu", weights_only=True)


def read_consolidated(path: Path) -> dict[str, torch.Tensor]:
    """The state dict `zero_to_fp32.py` wrote: a file, or its output folder (one file or index-listed shards)."""
    path = Path(path)
    if path.is_file():
        return _read_weights(path)
    for name in CONSOLIDATED_FILES:
        if (path / name).is_file():
            return _read_weights(path / name)
        index = path / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {key: value for shard in shards for key, value in _read_weights(path / shard).items()}
    raise ExportError(f"{path}: no consolidated weights ({', '.join(CONSOLIDATED_FILES)}, or their .index.json)")


def _load_into(state: dict[str, torch.Tensor], config: Path, source: Path | str) -> RealPortrait:
    """A RealPortrait of the configuration in `config` (a save_pretrained folder) holding `state`, all of it."""
    model = RealPortrait.from_config(RealPortrait.load_config(config))
    missing, unexpected = model.load_state_dict(strip_wrapper(state, source), strict=False)
    if missing or unexpected:
        raise ExportError(
            f"{source}: does not fit the model of {config}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    return model.eval()


def load_consolidated(path: Path | str, config: Path | str) -> RealPortrait:
    """The model of `zero_to_fp32.py`'s output at `path` (the wrapper's `model.` prefix removed); `config` is
    a save_pretrained folder of the same run, e.g. the checkpoint's `ema/`, for the architecture."""
    return _load_into(read_consolidated(Path(path)), Path(config), path)


def run_vae(checkpoints: Path) -> Path:
    """`vae.path` of the run that wrote `checkpoints` (<output_dir>/<stage>/checkpoints), from its config.yaml."""
    config = Path(checkpoints).parent.parent / RUN_CONFIG
    if not config.is_file():
        raise ExportError(f"{checkpoints}: no {config} to take the run's vae.path from; pass --vae PATH")
    path = Path(yaml.safe_load(config.read_text())["vae"]["path"])
    if not path.exists():
        raise ExportError(
            f"{config} names vae.path {path}, which is not found from {Path.cwd()}; pass --vae PATH "
            "(the VAE this run trained with)"
        )
    return path


def checkpoint_tag(checkpoints: Path, tag: str | None) -> tuple[Path, str]:
    """(the checkpoints folder, the tag): a step folder given directly, `--tag`, or the `latest` file."""
    checkpoints = Path(checkpoints)
    if tag is None and (checkpoints / STATE_FILE).is_file():
        return checkpoints.parent, checkpoints.name
    if tag is None:
        marker = checkpoints / LATEST
        if not marker.is_file():
            raise ExportError(f"{checkpoints}: no {LATEST} file; give --tag step_N or a step folder")
        tag = marker.read_text().strip()
    if not (checkpoints / tag / STATE_FILE).is_file():
        raise ExportError(f"{checkpoints / tag}: not a complete checkpoint (no {STATE_FILE})")
    return checkpoints, tag


def export_checkpoint(
    checkpoints: Path,
    out: Path,
    *,
    weights: Literal["ema", "live"] = "ema",
    tag: str | None = None,
    vae: Path | None = None,
) -> Path:
    """Writes the chosen weights of one checkpoint and the VAE (`vae`, default the run's `vae.path`) to `out`
    as a save_pretrained folder; returns the step folder."""
    checkpoints, tag = checkpoint_tag(checkpoints, tag)
    step = checkpoints / tag
    vae = Path(vae) if vae is not None else run_vae(checkpoints)
    ema = step / EMA_DIR
    if weights == "ema":
        model = RealPortrait.from_pretrained(ema, low_cpu_mem_usage=False)
    else:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        model = _load_into(get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag=tag), ema, step)
    export_model(model, Path(out), read_record(ema), vae)
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", type=Path, help="a stage's checkpoints/ folder, or one step_N folder in it")
    parser.add_argument("--out", type=Path, required=True, help="the save_pretrained folder to write")
    parser.add_argument("--tag", help="the step folder to export (default: the one `latest` names)")
    parser.add_argument("--weights", choices=("ema", "live"), default="ema", help="EMA (default) or live weights")
    parser.add_argument(
        "--vae", type=Path, help="the VAE the run trained with (default: vae.path of the run's config.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        step = export_checkpoint(args.checkpoints, args.out, weights=args.weights, tag=args.tag, vae=args.vae)
    except (ExportError, FileNotFoundError) as error:  # a missing VAE: model.export_folder.VAENotFound
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported the {args.weights} weights of {step} to {args.out}, with the VAE in {args.out / 'vae'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
