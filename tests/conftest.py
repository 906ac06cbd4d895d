"""Shared fixtures: the embedded sample, its shards built by the CLI (one build, `sample_build`), a small VAE,
the tiny model trained on those shards (all session-wide, made once), and the shared reference folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from s3kit import S3Endpoint, s3_endpoint
from trainkit import BIN, TINY, launch, run_overrides

from model.vae import SD15_VAE_CONFIG

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def eval_ground_truth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rp-eval's ground-truth cache in this session's own folder, never the user's: features cached by an
    earlier session, from older code with the same version key, must not stand in for what is tested."""
    import os

    from eval.ground_truth import ENV_VAR

    folder = tmp_path_factory.mktemp("gt_cache")
    os.environ[ENV_VAR] = str(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def user_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's own dataset specs (folder sources) in this session's folder, never ~/.config: a spec the
    user made must not change what the tests see, nor a test write into the user's registry."""
    import os

    from manifests.schema import USER_REGISTRY_ENV

    folder = tmp_path_factory.mktemp("user_registry")
    os.environ[USER_REGISTRY_ENV] = str(folder)
    return folder


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.sample import write_sample

    root = tmp_path_factory.mktemp("sample")
    write_sample(root)
    return root


@pytest.fixture(scope="session")
def hdtf_fixture() -> Path:
    """HDTF's real annotation files, from the project's reference folder that CI checks out beside the
    repository; a clone without it skips the tests that read them (the sample's own HDTF files are synthetic)."""
    path = SHARED / "fixtures" / "hdtf_annotations"
    if not path.is_dir():
        pytest.skip(f"needs HDTF's real annotation files from the reference folder beside the repository ({path})")
    return path


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The main job on the embedded sample, built by the CLI exactly as `make demo` runs it, undisturbed:
    its folder and what the build printed. One build for the session: the build tests check it (and resume
    it in place, a no-op), the training, demo and help-example tests read its shards, nothing writes into it."""
    root = tmp_path_factory.mktemp("sample_build")
    command = [str(BIN / "rp-data"), "build", "--sample", "--sample-dir", str(root / "sample"), "--out"]
    result = subprocess.run([*command, str(root / "out"), "--workers", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "out", result.stdout


@pytest.fixture(scope="session")
def build_dir(sample_build: tuple[Path, str]) -> Path:
    """The shards of the embedded sample (`sample_build`'s folder; the sample it wrote is beside it, in sample/)."""
    return sample_build[0]


@pytest.fixture(scope="session")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers-format VAE with the SD1.5 architecture, small widths and random weights: the real
    stabilityai/sd-vae-ft-ema cannot be downloaded here (the model tests do the same)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae") / "sd-vae-small"
    AutoencoderKL(**{**SD15_VAE_CONFIG, "block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}).save_pretrained(
        path
    )
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, build_dir: Path, vae_dir: Path) -> tuple[Path, str]:
    """`training/configs/tiny.yaml` as shipped (stage 1 then stage 2) with 2 CPU processes under ZeRO-2."""
    output = tmp_path_factory.mktemp("tiny_run") / "run"
    result = launch(TINY, *run_overrides(output, build_dir, vae_dir))
    return output, result.stdout


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """An S3 endpoint on 127.0.0.1 (moto's server, tests/s3kit.py), set in this process's environment and so
    in every command and Ray worker a test starts."""
    with s3_endpoint(tmp_path_factory.mktemp("s3") / "server.log") as endpoint:
        yield endpoint
