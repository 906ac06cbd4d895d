"""Checkpoints that load anywhere (issue 15 item 5): `python -m training.export` and DeepSpeed's own
consolidation (`zero_to_fp32.py`, `get_fp32_state_dict_from_zero_checkpoint`) on the checkpoints of the
session's tiny run (`tiny_run`: tiny.yaml, 2 CPU processes under ZeRO-2, 4 steps per stage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from safetensors.torch import load_file, save_file
from trainkit import REPO, TINY, launch, run_overrides

from model.export_folder import VAE_RECORD, resolve_vae
from model.realportrait import RealPortrait
from pipeline.split import SAMPLE_SPLIT
from training.checkpoints import WEIGHTS
from training.export import ExportError, export_checkpoint, load_consolidated
from training.heldout import checkpoint_warnings, file_sha256, read_record


def equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].float()) for k in a)


def module_weights(step: Path) -> dict[str, torch.Tensor]:
    """The module DeepSpeed saved with the checkpoint (fp32 on CPU: the weights the optimizer stepped), under
    RealPortrait's names: the reference the consolidated weights must equal."""
    states = torch.load(step / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)
    return {key.removeprefix("model."): value for key, value in states["module"].items()}


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.export", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_the_live_weights_export_loads_with_from_pretrained(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    output, _ = tiny_run
    checkpoints = output / "stage1" / "checkpoints"
    result = export(str(checkpoints), "--weights", "live", "--out", str(tmp_path / "live"))
    assert result.returncode == 0, result.stderr[-3000:]
    step = checkpoints / "step_00000004"  # the one `latest` names
    assert f"exported the live weights of {step}" in result.stdout
    model = RealPortrait.from_pretrained(tmp_path / "live", low_cpu_mem_usage=False)
    live = model.state_dict()
    assert equal(live, module_weights(step))
    ema = load_file(step / "ema" / WEIGHTS)
    assert not equal(live, ema)  # the live weights, not the average
    assert read_record(tmp_path / "live") == read_record(step / "ema")


@pytest.mark.slow
def test_deepspeed_consolidation_loads_through_load_consolidated(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    output, _ = tiny_run
    checkpoints = output / "stage2" / "checkpoints"
    step = checkpoints / "step_00000004"
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoints))
    assert state and all(key.startswith("model.") for key in state)  # the training wrapper's names
    with pytest.raises(RuntimeError, match="Missing key"):  # which do not load as they are
        RealPortrait.from_config(RealPortrait.load_config(step / "ema")).load_state_dict(state)

    # the script DeepSpeed copies beside the checkpoints, run as its users run it
    script = checkpoints / "zero_to_fp32.py"
    command = [sys.executable, str(script), str(checkpoints), str(tmp_path / "fp32"), "--safe_serialization"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_consolidated(tmp_path / "fp32", config=step / "ema")
    assert equal(model.state_dict(), module_weights(step))
    from_file = load_consolidated(tmp_path / "fp32" / "model.safetensors", step / "ema").state_dict()
    assert equal(from_file, {key.removeprefix("model."): value for key, value in state.items()})


@pytest.mark.slow
def test_the_ema_export_carries_the_held_out_split(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    output, stdout = tiny_run
    assert "data.heldout_split manifests/splits/sample.json" in stdout and "filtered out" in stdout
    step = output / "stage2" / "checkpoints" / "step_00000002"  # a step folder names its own tag
    assert export_checkpoint(step, tmp_path / "ema") == step
    model = RealPortrait.from_pretrained(tmp_path / "ema", low_cpu_mem_usage=False)
    assert equal(model.state_dict(), load_file(step / "ema" / WEIGHTS))
    record = read_record(tmp_path / "ema")
    assert record is not None and record["split"]["sha256"] == file_sha256(SAMPLE_SPLIT)
    assert record["init_from"]["record"]["split"] == record["split"]  # stage 2 started from stage 1's export
    stage1_ema = output / "stage1" / "checkpoints" / "step_00000002" / "ema"
    for folder in (tmp_path / "ema", output / "stage2" / "export", stage1_ema):
        assert checkpoint_warnings(folder, SAMPLE_SPLIT) == []


@pytest.mark.slow
def test_a_zero3_checkpoint_exports_its_live_weights(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    """Under ZeRO-3 every parameter is partitioned over the 2 ranks (no rank's module holds it whole). With EMA
    decay 0 the EMA is a copy of the fp32 master weights, gathered by DeepSpeed at every step: the live export,
    consolidated from the partitions on disk, must equal it."""
    stage = {"name": "stage1", "mode": "image", "steps": 2, "global_batch": 2, "resolution": 64, "ema_decay": 0.0}
    settings = {
        "base": str(TINY),
        "deepspeed": "zero3.json",
        "validation": {"pairs": 0},
        "checkpoint": {"every": 2},
        "stages": [{**stage, "optimizer": {"lr": 1e-3, "warmup_steps": 0}}],
    }
    config = tmp_path / "zero3.yaml"
    config.write_text(yaml.safe_dump(settings))
    output = tmp_path / "run"
    launch(config, *run_overrides(output, build_dir, vae_dir))
    checkpoints = output / "stage1" / "checkpoints"
    result = export(str(checkpoints), "--weights", "live", "--out", str(tmp_path / "live"))
    assert result.returncode == 0, result.stderr[-3000:]
    live = RealPortrait.from_pretrained(tmp_path / "live", low_cpu_mem_usage=False).state_dict()
    ema = load_file(checkpoints / "step_00000002" / "ema" / WEIGHTS)
    assert equal(live, ema)


def carries_the_vae(export_dir: Path, vae: Path) -> bool:
    """The export's vae/ holds the files of `vae`, byte for byte, and its record names `vae` and their sha256."""
    record = json.loads((export_dir / VAE_RECORD).read_text())
    names = ("config.json", "diffusion_pytorch_model.safetensors")
    return (
        resolve_vae(export_dir) == export_dir / "vae"
        and record["source"] == str(vae.resolve())
        and record["sha256"] == {name: file_sha256(vae / name) for name in names}
        and all((export_dir / "vae" / name).read_bytes() == (vae / name).read_bytes() for name in names)
    )


@pytest.mark.slow
def test_every_export_carries_the_vae_the_run_trained_with(
    tiny_run: tuple[Path, str], vae_dir: Path, tmp_path: Path
) -> None:
    """Training's stage exports, and `python -m training.export` without --vae (it reads the run's config.yaml)."""
    output, _ = tiny_run
    for stage in ("stage1", "stage2"):
        assert carries_the_vae(output / stage / "export", vae_dir)
    result = export(str(output / "stage2" / "checkpoints"), "--out", str(tmp_path / "ema"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"with the VAE in {tmp_path / 'ema' / 'vae'}" in result.stdout
    assert carries_the_vae(tmp_path / "ema", vae_dir)


def test_weights_without_the_wrapper_prefix_or_a_checkpoint_are_refused(tmp_path: Path) -> None:
    model = RealPortrait.from_preset("tiny")
    model.save_pretrained(tmp_path / "plain")
    with pytest.raises(ExportError, match=r"without the training wrapper's 'model\.' prefix") as error:
        load_consolidated(tmp_path / "plain" / WEIGHTS, tmp_path / "plain")
    assert str(tmp_path / "plain" / WEIGHTS) in str(error.value)
    wrapped = {f"model.{key}": value.contiguous() for key, value in model.state_dict().items()}
    del wrapped["model.backbone.x_embedder.proj.weight"]
    save_file(wrapped, tmp_path / "model.safetensors")
    with pytest.raises(ExportError, match=r"missing \['backbone.x_embedder.proj.weight'\]"):
        load_consolidated(tmp_path, tmp_path / "plain")
    result = export(str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and f"{tmp_path / 'nothing'}: no latest file" in result.stderr
