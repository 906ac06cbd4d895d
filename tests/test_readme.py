"""The README's commands as a reader pastes them, run on the embedded sample.

Every block marked `<!-- runs on the sample -->` runs as written, in order, in a folder where `/data/<NAME>`
is the sample's folder of that dataset (the sample writes each in its official layout) and `/data/shards`
is a fresh build folder; relative paths (`out/...`, `manifests/splits/paper.json`) land in that folder.
Step 3 is the one exception: with the paper's thresholds (VFHQ clips of 200 frames, CelebV-HQ clips of 5 s)
the split selects none of the sample's short clips, so the sample's split is drawn with `rp-data split
--sample --per-dataset 1`, the same selection at the sample's thresholds, one clip per dataset (two
self-reenactments and two cross pairs to evaluate, the clips the --help examples' test evaluates too, whose
ground-truth features the session's cache then holds).
The blocks run in their order, and the evaluation's block (rp-eval only: it reads the dataset folders and
the split) beside the scans and the build, which it does not read, as a second reader would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from kit import DATA_FOLDERS, link_data_folders

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARK = "<!-- runs on the sample -->"


def marked_blocks(text: str) -> list[str]:
    """The bash blocks that directly follow the mark, in the README's order."""
    return re.findall(re.escape(MARK) + r"\n```bash\n(.*?)\n```", text, flags=re.S)


def sample_world(folder: Path, sample_root: Path) -> Path:
    """`folder/data/<NAME>` -> the sample's dataset folders, as `/data/<NAME>` stands in the README (a copy of
    the session's sample, which `rp-data sample` writes byte for byte)."""
    run = lambda *args: subprocess.run([str(BIN / "rp-data"), *args], cwd=folder, capture_output=True, text=True)  # noqa: E731
    shutil.copytree(sample_root, folder / "sample")
    link_data_folders(folder / "data", folder / "sample")
    split = run("split", "--sample", "sample", "--per-dataset", "1", "--out", "manifests/splits/paper.json")
    assert split.returncode == 0, split.stdout + split.stderr
    return folder


def run_blocks(world: Path, blocks: list[str]) -> list[str]:
    """Runs the blocks in order; the failures, each with its output (the first one stops)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for block in blocks:
        script = block.replace("/data/", f"{world}/data/")
        result = subprocess.run(["bash", "-e", "-c", script], cwd=world, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            return [f"{block}\n---\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"]
    return []


def test_the_readme_marks_what_runs_on_the_sample() -> None:
    blocks = marked_blocks((REPO / "README.md").read_text())
    commands = " ".join(blocks)
    for step in ("rp-data scan", "rp-data build", "rp-data report", "rp-eval run", "rp-eval table"):
        assert step in commands, f"no marked README block runs {step!r}"


@pytest.mark.slow
def test_every_marked_readme_block_runs_on_the_sample(tmp_path: Path, sample_root: Path) -> None:
    world = sample_world(tmp_path, sample_root)
    blocks = marked_blocks((REPO / "README.md").read_text())
    lanes = [[b for b in blocks if "rp-data" in b], [b for b in blocks if "rp-data" not in b]]
    with ThreadPoolExecutor(len(lanes)) as pool:
        failures = [failure for done in pool.map(lambda lane: run_blocks(world, lane), lanes) for failure in done]
    assert not failures, "\n\n".join(failures)
    # what the blocks promise is there: a scan, shards of all eight datasets with the split held out, tables
    assert len(pd.read_parquet(world / "out" / "vfhq.parquet")) > 0
    manifest = pd.read_parquet(world / "data" / "shards" / "manifest.parquet")
    assert set(manifest.dataset) >= set(DATA_FOLDERS.values())
    assert (world / "data" / "shards" / "report" / "index.html").is_file()
    assert (world / "out" / "tables" / "table1.md").is_file()
