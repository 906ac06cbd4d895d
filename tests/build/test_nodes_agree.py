"""Nodes that disagree, on a real multi-node Ray cluster: a worker node whose Python sees another version of
a library on the output path (its PYTHONPATH holds another installed distribution of webdataset, as a
node with another install would) stops the build, naming the node and the version on each side."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest
from buildkit import RAY_NO_AUTH, RP_DATA, local_cluster

OTHER_VERSION = "0.0.1"


def _other_install(folder: Path) -> Path:
    """A folder holding webdataset's distribution metadata at another version; first on a node's
    PYTHONPATH, it is the webdataset distribution that node's interpreter reports."""
    info = folder / f"webdataset-{OTHER_VERSION}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: webdataset\nVersion: {OTHER_VERSION}\n")
    (info / "top_level.txt").write_text("webdataset\n")
    (info / "RECORD").write_text("")
    return folder


@pytest.mark.slow
def test_a_node_with_another_library_version_stops_the_build(sample_root: Path, tmp_path: Path) -> None:
    shadow = _other_install(tmp_path / "other_install")
    path = os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))
    out = tmp_path / "out"
    with local_cluster(tmp_path, head_cpus=1, node_cpus=(1,), node_env={0: {"PYTHONPATH": path}}) as cluster:
        command = ["build", "--source", f"ffhq={sample_root / 'ffhq'}", "--out", str(out), "--workers", "2"]
        result = subprocess.run(
            [str(RP_DATA), *command, "--ray-address", cluster.address, "--set", "images_per_shard=1"],
            capture_output=True,
            text=True,
            timeout=600,
            env=os.environ | RAY_NO_AUTH,
        )
    output = " ".join((result.stdout + result.stderr).split())  # the console wraps long lines
    assert result.returncode == 1, output[-3000:]
    ours = importlib.metadata.version("webdataset")
    stated = re.search(
        rf"node (\S+ \(\S+, node [0-9a-f]{{8}}\)) would build other bytes than the driver under the same "
        rf"fingerprint: library webdataset: webdataset {re.escape(ours)} on the driver, webdataset "
        rf"{OTHER_VERSION} on node \1\. Install the same versions",
        output,
    )
    assert stated, output[-3000:]
    assert "Traceback" not in output and "mediapipe" not in output.split("fingerprint:")[1]  # only what differs
