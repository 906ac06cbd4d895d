"""bench/gpu_smoke.py's numbers: the datasheet lookup, the driver check, the MFU FLOP count, no silent CPU run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.bf16_peak import A100_40GB, A100_80GB, H100_NVL, H100_PCIE, H100_SXM, H200, H200_NVL, L40S, datasheet_for
from bench.cuda_setup import minimum_driver, no_cuda_reason
from bench.gpu_smoke import main, median_rate
from bench.model_flops import denoiser_step_flops, step_flops
from training.config import StageConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("NVIDIA A100-SXM4-40GB", A100_40GB),
        ("NVIDIA A100-PCIE-40GB", A100_40GB),
        ("NVIDIA A100-SXM4-80GB", A100_80GB),
        ("NVIDIA A100 80GB PCIe", A100_80GB),
        ("NVIDIA H100 80GB HBM3", H100_SXM),
        ("NVIDIA H100 PCIe", H100_PCIE),
        ("NVIDIA H100 NVL", H100_NVL),
        ("NVIDIA H200", H200),
        ("NVIDIA H200 NVL", H200_NVL),
        ("NVIDIA L40S", L40S),
        ("NVIDIA GH200 480GB", None),  # a superchip, not an H200 card
        ("NVIDIA L40", None),  # not an L40S
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_datasheet_matches_the_names_drivers_report(name: str, entry: object) -> None:
    assert datasheet_for(name) == entry


def test_datasheet_peaks_are_the_dense_bf16_figures() -> None:
    assert (A100_80GB.bf16_flops, H100_SXM.bf16_flops, H100_PCIE.bf16_flops) == (312e12, 989e12, 756e12)
    assert (H100_NVL.bf16_flops, H200.bf16_flops, L40S.bf16_flops) == (835e12, 989e12, 362e12)


def test_driver_requirement_comes_from_torchs_cuda_version() -> None:
    assert minimum_driver("13.0") == "580"
    assert minimum_driver("12.4") == "525.60.13"
    assert minimum_driver("9.2") is None
    old = no_cuda_reason("13.0", "550.54.14")
    assert "CUDA 13.0" in old and "580 or newer" in old and "550.54.14" in old and "update it" in old
    assert "no NVIDIA driver answered" in no_cuda_reason("13.0", None)
    recent = no_cuda_reason("13.0", "580.65.06")
    assert "580.65.06" in recent and "CUDA_VISIBLE_DEVICES" in recent and "update" not in recent
    assert "CPU-only build" in no_cuda_reason(None, None)


def test_refuses_the_cpu_unless_asked(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_smoke.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    assert "torch sees no CUDA device" in result.stderr
    assert f"CUDA {torch.version.cuda}" in result.stderr or "CPU-only build" in result.stderr
    assert "pass --device cpu" in result.stderr
    assert not (tmp_path / "out").exists()  # it stopped before any work


def test_mfu_counts_a_frozen_layers_backward_once() -> None:
    """trainable a->b, frozen b->c, trainable c->d on n rows: each forward 2*n*in*out. Backward: the first
    layer's weight gradient only (its input needs none), the frozen layer's input gradient only, the last
    layer both; 3x the forward would overcount by the first's input and the frozen one's weight gradient."""
    n, a, b, c, d = 4, 3, 5, 7, 2
    net = nn.Sequential(nn.Linear(a, b, bias=False), nn.Linear(b, c, bias=False), nn.Linear(c, d, bias=False))
    net[1].requires_grad_(False)
    x = torch.randn(n, a)
    first, frozen, last = 2 * n * a * b, 2 * n * b * c, 2 * n * c * d
    assert step_flops(lambda: net(x).sum()) == (first + frozen + last) + first + frozen + 2 * last
    net[1].requires_grad_(True)
    assert step_flops(lambda: net(x).sum()) == (first + frozen + last) + first + 2 * frozen + 2 * last


def test_model_flops_leave_out_frozen_weight_gradients() -> None:
    every = StageConfig(name="all", mode="image", steps=1, global_batch=1)
    temporal_frozen = StageConfig(
        name="stage1", mode="image", steps=1, global_batch=1, frozen=["backbone.blocks.*.attn_temp.*"]
    )
    full = denoiser_step_flops("tiny", every, batch=2, frames=4, latent=16)
    reduced = denoiser_step_flops("tiny", temporal_frozen, batch=2, frames=4, latent=16)
    # each frozen temporal qkv and proj saves its weight gradient: its forward, 2 * tokens * in * out
    config = {"hidden": 96, "depth": 4, "tokens": 2 * 4 * (16 // 2) ** 2}
    saved = config["depth"] * 2 * config["tokens"] * (3 + 1) * config["hidden"] ** 2
    assert full - reduced == saved


def test_steps_one_reports_its_only_step_and_says_so() -> None:
    rate, which = median_rate([3.0])
    assert rate == 3.0 and "warm-up included" in which
    rate, which = median_rate([1.0, 5.0, 7.0, 6.0])
    assert rate == 6.0 and "after the first" in which
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--steps", "0"])
    assert exit_info.value.code == 2
