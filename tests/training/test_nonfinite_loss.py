"""A NaN loss on one rank of the 2-rank DeepSpeed run stops both ranks promptly, with one message."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from trainkit import BIN, REPO, TINY, free_port, launcher_env, release_shm, run_overrides

pytestmark = pytest.mark.slow

SCRIPT = REPO / "tests" / "training" / "nan_on_one_rank.py"


def test_a_nan_on_one_rank_stops_every_rank(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    # 2 ranks x micro-batch 1 x 2 accumulation micro-steps per optimizer step
    stage = {"name": "stage1", "mode": "image", "steps": 6, "global_batch": 4, "micro_batch": 1, "resolution": 64}
    config = tmp_path / "nan.yaml"
    settings = {"validation": {"pairs": 0}, "checkpoint": {"every": 2}, "logging": {"every": 100}}
    config.write_text(yaml.safe_dump({"base": str(TINY), "stages": [stage], **settings}))
    output = tmp_path / "run"
    port = free_port()
    rank_logs = tmp_path / "rank_logs"  # each rank's own stdout and stderr, whole, whichever rank fails first
    launcher = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port)]
    command = [*launcher, f"--enable_each_rank_log={rank_logs}", str(SCRIPT)]
    began = time.monotonic()
    try:
        result = subprocess.run(
            [*command, "--config", str(config), *run_overrides(output, build_dir, vae_dir)],
            cwd=REPO,
            env=launcher_env(),
            capture_output=True,
            text=True,
            timeout=600,  # far below the 30-minute collective timeout a waiting rank would sit in
        )
        # every rank released its shared-memory buffer on the way out (the shared `release_shm` is for killed runs)
        leftovers = list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_127.0.0.1_{port}_*"))
    finally:
        release_shm(port)
    seconds = time.monotonic() - began
    ranks = {int(path.stem.rsplit("rank", 1)[1]): path.read_text() for path in rank_logs.glob("*_rank*.log")}
    assert sorted(ranks) == [0, 1], result.stdout[-4000:] + result.stderr[-4000:]
    shown = "".join(f"\n===== rank {rank} =====\n{text[-6000:]}" for rank, text in sorted(ranks.items()))
    log = "\n".join([result.stdout, result.stderr, *ranks.values()])
    assert result.returncode == 3, shown  # train.py's code for a non-finite loss, from the launcher
    errors = [line for line in log.splitlines() if "non-finite loss" in line]
    assert len(errors) == 1, shown  # one message, not one per rank
    (error,) = errors
    # rank 1's 5th micro-step: step 3, the first of its 2 accumulation micro-steps, found at step 4's checkpoint
    assert "error: [stage1] non-finite loss (nan) at step 3 (micro-step 1 of 2) on rank 1, batch [" in error
    assert "every rank stopped" in error and "last checkpoint: step_00000002" in error and "resume" in error
    checkpoints = output / "stage1" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step_00000002"  # the NaN weights of step 4 were not saved
    assert not (checkpoints / "step_00000004").exists() and not (output / "stage1" / "export").exists()
    assert leftovers == []
    print(f"both ranks exited {seconds:.0f} s after the launch")
