"""The multi-node start-up check: every rank must see the marker rank 0 writes in output_dir, else all stop
together with one error naming who cannot see it. Two real ranks (gloo over TCP) stand in for two nodes;
giving rank 1 its own folder is a node-local output_dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from trainkit import REPO, TINY, free_port, launcher_env, release_shm

from training.shared_output import MARKER

RANK = """
import sys
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from training.shared_output import SharedOutputError, check_shared_output

rank, port, folders = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
dist.init_process_group("gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60))
for folder in folders:  # one launch after another
    try:
        check_shared_output(Path(folder), rank, 2)
        print("ok")
    except SharedOutputError as error:
        print(f"error: {error}")
dist.destroy_process_group()
"""


def run_ranks(launches: list[tuple[Path, Path]]) -> list[tuple[str, str]]:
    """The check on two ranks (two processes, started once: importing torch is most of the cost) for each
    launch's (rank 0's output_dir, rank 1's); per launch, each rank's one line of output."""
    port = str(free_port())
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", RANK, str(rank), port, *(str(launch[rank]) for launch in launches)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [rank.communicate(timeout=120)[0].strip().splitlines() for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    return list(zip(*outputs, strict=True))


def test_only_a_shared_output_dir_passes_and_a_node_local_one_stops_every_rank(tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "run"  # rank 0 creates it
    missing = (tmp_path / "node0" / "run", tmp_path / "node1" / "run")
    stale = (tmp_path / "node0" / "again", tmp_path / "node1" / "again")
    stale[1].mkdir(parents=True)
    (stale[1] / MARKER).write_text("another host pid 1 0123")  # node 1's disk holds an earlier launch's marker
    (tmp_path / "a_file").write_text("")
    unwritable = tmp_path / "a_file" / "run"  # rank 0 cannot create it: the others must not wait for it
    outcomes = run_ranks([(shared, shared), missing, stale, (shared, shared), (unwritable, unwritable)])
    assert outcomes[0] == outcomes[3] == ("ok", "ok")
    assert outcomes[4][0] == outcomes[4][1]
    assert outcomes[4][0].startswith(f"error: output_dir {unwritable}: rank 0 cannot write {unwritable / MARKER}: ")
    assert shared.is_dir() and not (shared / MARKER).exists()
    for (rank0, rank1), (message, other), problem in zip(
        (missing, stale),
        outcomes[1:3],
        ("no such file", "it holds another launch's token ('another host pid 1 0123')"),
        strict=True,
    ):
        assert message.startswith(f"error: output_dir {rank0}: the marker rank 0 (on {socket.gethostname()})")
        assert f"{rank0 / MARKER} is not seen by rank 1 on {socket.gethostname()}: {problem}. " in message
        assert "rank 0 on" not in message and "one shared filesystem" in message
        assert other.replace(str(rank1), str(rank0)) == message  # rank 1 stops with the same error


@pytest.mark.slow
def test_training_on_node_local_disks_stops_both_ranks_at_start(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    """train.py itself, as two nodes would start it (the launcher's environment per rank), each with its own
    output_dir: both exit with the configuration error's status instead of hanging, rank 0 saying why."""
    port = free_port()
    env = {**launcher_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    ranks = []
    for rank in range(2):
        command = [sys.executable, str(REPO / "training" / "train.py"), "--config", str(TINY)]
        command += [
            f"output_dir={tmp_path / f'node{rank}' / 'run'}",
            f"data.build_dir={build_dir}",
            f"vae.path={vae_dir}",
        ]
        rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        ranks.append(subprocess.Popen(command, cwd=REPO, env=rank_env, stderr=subprocess.PIPE, text=True))
    try:
        errors = [rank.communicate(timeout=300)[1] for rank in ranks]
    finally:
        for rank in ranks:
            if rank.poll() is None:
                os.kill(rank.pid, 9)
        release_shm(port)
    assert [rank.returncode for rank in ranks] == [2, 2], errors
    assert f"is not seen by rank 1 on {socket.gethostname()}: no such file" in errors[0], errors[0][-3000:]
    assert not (tmp_path / "node0" / "run" / "stage1").exists()  # stopped before any stage began
