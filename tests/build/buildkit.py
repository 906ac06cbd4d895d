"""Helpers for the end-to-end build tests: the CLI run as users run it, and the samples a build wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import webdataset as wds

RP_DATA = Path(sys.executable).with_name("rp-data")
RAY = Path(sys.executable).with_name("ray")


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
