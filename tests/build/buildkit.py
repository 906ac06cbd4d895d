"""Helpers for the end-to-end build tests: the CLI run as users run it, and the samples a build wrote."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

RP_DATA = Path(sys.executable).with_name("rp-data")
RAY = Path(sys.executable).with_name("ray")
# Ray 2.60's `ray start` turns on token authentication; a throwaway local cluster needs none
RAY_NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def rp_data(*args: str, timeout: float = 900, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`rp-data ARGS` in a subprocess, which must exit 0 (its output is shown when it does not)."""
    result = subprocess.run([str(RP_DATA), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Every committed sample of a build, by key, read with the webdataset library."""
    tars = [
        out / "shards" / t
        for s in sorted((out / "shards").glob("*.stats.json"))
        for t in json.loads(s.read_text())["tars"]
    ]
    found: dict[str, dict[str, bytes]] = {}
    for tar in tars:
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            key = sample.pop("__key__")
            sample.pop("__url__", None)
            sample.pop("__local_path__", None)
            assert key not in found and "." not in key
            found[key] = sample
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LocalCluster:
    """A Ray cluster of separate node processes on this machine: a head and worker nodes."""

    address: str
    temp_dir: Path
    head: subprocess.Popen[bytes]
    nodes: list[subprocess.Popen[bytes]]


def _ray_start(args: list[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("w") as stream:
        return subprocess.Popen(
            [str(RAY), "start", *args, "--block", "--disable-usage-stats"],
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # each node in its own process group, so a test can take one down whole
            env=os.environ | RAY_NO_AUTH | dict(env or {}),
        )


@contextmanager
def local_cluster(
    logs: Path, head_cpus: int, node_cpus: Sequence[int] = (), node_env: Mapping[int, Mapping[str, str]] | None = None
) -> Iterator[LocalCluster]:
    """Starts `ray start --head` and one `ray start --address` per entry of node_cpus (node i with the
    environment variables node_env[i] added, which its workers inherit); kills them after."""
    port = _free_port()
    # Ray's unix sockets live under its temp dir, whose path must stay short (108 bytes per socket path)
    temp_dir = Path(tempfile.mkdtemp(prefix="rp-ray-", dir="/tmp"))
    address = f"127.0.0.1:{port}"
    common = ["--include-dashboard=false", "--node-ip-address=127.0.0.1"]
    head = _ray_start(
        ["--head", f"--port={port}", f"--num-cpus={head_cpus}", f"--temp-dir={temp_dir}", *common], logs / "head.log"
    )
    cluster = LocalCluster(address, temp_dir, head, [])
    try:
        _wait_for(cluster, 1, logs)
        for index, cpus in enumerate(node_cpus):
            node = [f"--address={address}", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1"]
            cluster.nodes.append(_ray_start(node, logs / f"node{index}.log", (node_env or {}).get(index)))
            # one at a time: two nodes of one address registering at once can miss each other's node info
            _wait_for(cluster, 2 + index, logs)
        yield cluster
    finally:
        for process in [*cluster.nodes, head]:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for(cluster: LocalCluster, nodes: int, logs: Path) -> None:
    """Until `ray status` lists this many live nodes (a minute at most)."""
    for _ in range(120):
        for process, name in [(cluster.head, "head.log"), *((n, f"node{i}.log") for i, n in enumerate(cluster.nodes))]:
            assert process.poll() is None, (logs / name).read_text()[-2000:]
        status = subprocess.run(
            [str(RAY), "status", f"--address={cluster.address}"],
            capture_output=True,
            text=True,
            env=os.environ | RAY_NO_AUTH,
        )
        if status.returncode == 0 and status.stdout.count(" node_") >= nodes:
            return
        time.sleep(0.5)
    raise AssertionError(f"the test's Ray cluster did not reach {nodes} node(s): {status.stdout[-1500:]}")
