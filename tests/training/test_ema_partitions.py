"""The EMA averages each rank's own fp32 master partition: no collective per step, and a saved average equal to
the full-parameter one. Real DeepSpeed (ZeRO-2 and ZeRO-3, bf16) on 2 CPU ranks, in the trainer's own stage run
(tests/training/ema_partition_run.py, which counts every torch.distributed collective)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from trainkit import BIN, REPO, free_port, launcher_env, release_shm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(build_dir: Path, vae_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("ema_partitions")
    port = free_port()
    script = Path(__file__).with_name("ema_partition_run.py")
    command = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port), str(script)]
    arguments = ["--build", str(build_dir), "--vae", str(vae_dir), "--out", str(folder / "runs")]
    try:
        result = subprocess.run(
            [*command, *arguments, "--result", str(folder / "result.json")],
            cwd=REPO,
            env=launcher_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        release_shm(port)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    figures = json.loads((folder / "result.json").read_text())
    print(json.dumps({zero: figures[zero]["counts"] for zero in figures}))  # the before/after counts, with -s
    return figures


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_the_ema_adds_no_collective_to_a_step(measured: dict, zero: str) -> None:
    counts = measured[zero]["counts"]
    assert all(n > 0 for n in counts["train_step"])  # the counter sees ZeRO's own reductions
    assert counts["ema_update"] == [0] * len(counts["train_step"])
    # the update it replaces read every trained parameter whole: one collective each (the tiny stage 1 trains 149)
    assert counts["full_parameter_ema_update"] == [149] * len(counts["train_step"])


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_a_saved_ema_is_the_full_parameter_ema(measured: dict, zero: str) -> None:
    saved = measured[zero]["saved"]
    assert saved["moved"] > 1e-4  # the weights moved, so equal averages are not just equal starting points
    assert saved["max_abs_diff"] <= 1e-6 * saved["max_abs_value"]  # fp32 rounding (measured: identical)
    assert saved["frozen_kept"] == 1.0


def test_a_resumed_ema_continues_from_the_saved_one(measured: dict) -> None:
    zero2 = measured["zero2"]
    assert zero2["resumed_at"] == 2
    assert zero2["resumed"]["moved"] > zero2["saved"]["moved"]  # 2 more steps away from the start
    assert zero2["resumed"]["max_abs_diff"] <= 1e-6 * zero2["resumed"]["max_abs_value"]
