"""Self-contained exports (issue 21): an export carries the VAE it was trained with (`vae/`, a copy) and records
where it came from (`vae_source.json`: absolute path, sha256 per file); a VAE that is gone is named."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from model.export_folder import VAE_RECORD, NotAnExport, VAENotFound, require_export, resolve_vae
from model.realportrait import RealPortrait
from model.vae import SD15_VAE_CONFIG, load_vae
from training.checkpoints import export_model
from training.export import ExportError, run_vae


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_of(call: Callable[[], object], kind: type[Exception]) -> str:
    """The message of the `kind` error `call` raises (compared as text: paths hold regex metacharacters)."""
    with pytest.raises(kind) as error:
        call()
    return str(error.value)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture
def vae_copy(vae_dir: Path, tmp_path: Path) -> Path:
    """The session's test VAE in a folder this test may move or delete."""
    return Path(shutil.copytree(vae_dir, tmp_path / "weights" / "sd-vae"))


def test_an_export_carries_a_copy_of_its_vae_and_its_origin(vae_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_model(RealPortrait.from_preset("tiny"), out, None, vae_copy)
    assert require_export(out) == out and resolve_vae(out) == out / "vae"
    files = ("config.json", "diffusion_pytorch_model.safetensors")
    assert sorted(path.name for path in (out / "vae").iterdir()) == sorted(files)
    for name in files:
        assert (out / "vae" / name).read_bytes() == (vae_copy / name).read_bytes()
        assert (out / "vae" / name).stat().st_ino != (vae_copy / name).stat().st_ino  # a copy, not a link
    record = json.loads((out / VAE_RECORD).read_text())
    assert record["source"] == str(vae_copy.resolve()) and record["bundled"] == "copied"
    assert record["sha256"] == {name: sha256(vae_copy / name) for name in files}
    assert same_weights(load_vae(out / "vae"), load_vae(vae_copy))
    assert not list(tmp_path.glob(".export*"))  # no staging folder left behind


def test_a_rewritten_export_is_replaced_whole(vae_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    export_model(RealPortrait.from_preset("tiny"), out, None, vae_copy)
    assert not (out / "stale.txt").exists() and (out / "vae" / "config.json").is_file()


def test_a_missing_or_moved_vae_is_named(vae_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_model(RealPortrait.from_preset("tiny"), out, None, vae_copy)
    shutil.rmtree(out / "vae")  # e.g. the weights were copied without it
    message = error_of(lambda: resolve_vae(out), VAENotFound)
    assert message.startswith(f"argument --checkpoint: {out}: {out / 'vae'} is missing")
    assert f"it is still there: pass --vae {vae_copy.resolve()}" in message
    moved = vae_copy.rename(tmp_path / "elsewhere")
    message = error_of(lambda: resolve_vae(out), VAENotFound)
    assert f"made with the VAE at {vae_copy.resolve()}; it is no longer there" in message
    assert sha256(moved / "config.json") in message  # what to look for
    assert resolve_vae(out, moved) == moved  # --vae still works
    (out / VAE_RECORD).unlink()  # an export written before exports carried their VAE
    message = error_of(lambda: resolve_vae(out), VAENotFound)
    assert "the export carries no VAE" in message and "Pass --vae" in message
    message = error_of(lambda: resolve_vae(out, tmp_path / "nowhere"), VAENotFound)
    assert message.startswith(f"argument --vae: {tmp_path / 'nowhere'}: not found")


def test_a_folder_that_is_no_export_is_named(tmp_path: Path) -> None:
    message = error_of(lambda: require_export(tmp_path / "nothing"), NotAnExport)
    assert message.startswith(f"argument --checkpoint: {tmp_path / 'nothing'}: not a RealPortrait checkpoint")
    assert "(no such folder)" in message
    message = error_of(lambda: require_export(tmp_path), NotAnExport)
    assert "(no config.json and no diffusion_pytorch_model.safetensors in it)" in message


def test_the_vae_of_a_run_comes_from_its_config(vae_copy: Path, tmp_path: Path) -> None:
    """`python -m training.export` without --vae reads `vae.path` of `<output_dir>/config.yaml`."""
    checkpoints = tmp_path / "run" / "stage2" / "checkpoints"
    checkpoints.mkdir(parents=True)
    message = error_of(lambda: run_vae(checkpoints), ExportError)
    assert f"no {tmp_path / 'run' / 'config.yaml'} to take the run's vae.path from; pass --vae PATH" in message
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"vae": {"path": str(vae_copy)}}))
    assert run_vae(checkpoints) == vae_copy
    vae_copy.rename(tmp_path / "moved")
    assert f"names vae.path {vae_copy}, which is not found" in error_of(lambda: run_vae(checkpoints), ExportError)


@pytest.mark.slow
def test_a_single_safetensors_vae_becomes_a_diffusers_folder(tmp_path: Path) -> None:
    """The SD1.5 VAE as one file (the size of the real one: single files carry no config) is converted."""
    torch.manual_seed(0)
    vae = AutoencoderKL(**SD15_VAE_CONFIG)
    single = tmp_path / "vae-ft-ema.safetensors"
    save_file({key: value.contiguous() for key, value in vae.state_dict().items()}, single)
    del vae
    out = tmp_path / "export"
    export_model(RealPortrait.from_preset("tiny"), out, None, single)
    record = json.loads((out / VAE_RECORD).read_text())
    assert record["bundled"] == "converted to a diffusers folder"
    assert record["sha256"] == {single.name: sha256(single)} and record["source"] == str(single.resolve())
    assert same_weights(load_vae(out / "vae"), load_vae(single))
