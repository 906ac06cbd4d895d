"""Every example in every `--help`, run as written on the embedded sample.

The examples name a fixed set of placeholders, and each is made real here:
- `/data/<NAME>` is the sample's folder of that dataset, and `/data/shards` a build of the sample;
- `manifests/splits/paper.json` is a split of the sample, one clip per dataset (`rp-data split --sample
  --per-dataset 1`: with the paper's thresholds the split selects none of the sample's short clips, and
  two clips make every protocol's tasks: two self-reenactments and two cross pairs);
- `runs/realportrait/stage2/export` is the tiny model trained on the sample through both stages;
- `/data/weights/eval` is an empty weights folder: the metric networks' metrics are reported missing
  once and skipped (the metrics without a network file, dlib's identity and the landmark metrics, are
  scored). The examples are what is tested here; LPIPS, FID and FVD at 512 px on the CPU would take each
  `rp-eval run` minutes, and tests/eval/test_end_to_end.py scores with every network;
- `me.jpg` is a real portrait photo and `driving.mp4` the start of a sample clip;
- `out/other_method` holds another method's outputs: the driving clips themselves, as the driving-copy
  control would make them, at the paths `rp-eval inputs` names.
Relative paths land in the test's working folder. An example is run once even where several help texts
show it, in the order first shown; the one that needs a Ray cluster (`--ray-address HEAD:6379`) is left out.
The examples of each command run in that order, and the two commands' lanes side by side: rp-data's and
rp-eval's then rp-animate's read and write apart (rp-data writes builds, reports and scans; rp-eval reads
the dataset folders and the split made here and writes its inputs, runs and tables; rp-animate reads
me.jpg and driving.mp4), and each lane alone uses about one of a machine's cores.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from kit import DATA_FOLDERS, link_data_folders
from PIL import Image

from pipeline.sample.portraits import load_photo
from pipeline.sample.recording import Recording, write_recording
from pipeline.video_file import VideoFile

BIN = Path(sys.executable).parent
COMMANDS = {
    "rp-data": ("build", "report", "inspect", "split", "datasets", "sample", "scan"),
    "rp-eval": ("weights", "inputs", "run", "table"),
    "rp-animate": (),
}
NEEDS_A_CLUSTER = "HEAD:6379"


def help_text(*command: str) -> str:
    result = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def examples(text: str) -> list[str]:
    """The commands under an epilog's `example:`/`examples:`, continuation lines joined, comments dropped."""
    found: list[str] = []
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() not in ("example:", "examples:"):
            continue
        pending = ""
        for raw in lines[start + 1 :]:
            if not raw.startswith("  "):
                break
            code = re.split(r"\s+#", raw.strip())[0].strip() if not raw.strip().startswith("#") else ""
            if code.startswith(tuple(COMMANDS)) or pending:
                pending += code
                if pending.endswith("\\"):
                    pending = pending[:-1].rstrip() + " "
                    continue
                found.append(pending)
                pending = ""
    return found


@functools.cache
def all_examples() -> tuple[str, ...]:
    """Every help text's examples, run once per session (each `--help` is a process start of about a second)."""
    texts = [help_text(name, *([sub] if sub else [])) for name, subs in COMMANDS.items() for sub in ("", *subs)]
    ordered = dict.fromkeys(example for text in texts for example in examples(text))
    return tuple(example for example in ordered if NEEDS_A_CLUSTER not in example)


def test_every_help_shows_runnable_examples() -> None:
    found = all_examples()
    for name, subs in COMMANDS.items():
        for sub in subs or ("",):
            assert any(e.startswith(f"{name} {sub}".strip()) for e in found), f"no example of {name} {sub}"
    placeholder = re.compile(r"/data/(?!(" + "|".join(map(re.escape, DATA_FOLDERS)) + r"|shards|weights/eval)\b)")
    for example in found:
        assert not placeholder.search(example), f"{example}: a /data path this test cannot make real"


def _other_method(world: Path) -> None:
    """out/other_method: each task's driving clip stored where a method's output must be (tasks.csv)."""
    inputs = world / "out" / "eval_inputs"
    with (inputs / "tasks.csv").open() as handle:
        for task in csv.DictReader(handle):
            target = world / "out" / "other_method" / task["output"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(inputs / task["driving"], target)


def _world(folder: Path, build_dir: Path, tiny_checkpoint: Path) -> Path:
    run = lambda *args: subprocess.run([str(BIN / args[0]), *args[1:]], cwd=folder, capture_output=True, text=True)  # noqa: E731
    shutil.copytree(build_dir.parent / "sample", folder / "sample")  # `rp-data sample`'s, as the build wrote it
    data = folder / "data"
    link_data_folders(data, folder / "sample")
    shutil.copytree(build_dir, data / "shards")  # reports are written into it: a copy of the session's build
    (data / "weights" / "eval").mkdir(parents=True)
    split = run("rp-data", "split", "--sample", "sample", "--per-dataset", "1", "--out", "manifests/splits/paper.json")
    assert split.returncode == 0, split.stdout + split.stderr
    (folder / "runs" / "realportrait" / "stage2").mkdir(parents=True)
    (folder / "runs" / "realportrait" / "stage2" / "export").symlink_to(tiny_checkpoint)
    Image.fromarray(load_photo("astronaut")).save(folder / "me.jpg", quality=95)
    clip = VideoFile(folder / "sample" / "hdtf" / "WDA_JaneDoe0_000.mp4")
    frames = clip.frames(range(16), *clip.size)
    write_recording(folder / "driving.mp4", np.ascontiguousarray(frames), 25, Recording())
    return folder


def _lane(world: Path, examples: list[str]) -> list[str]:
    """Runs the examples in order; the failures, each with its output (the first one stops the lane)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for example in examples:
        if "--outputs out/other_method" in example:
            _other_method(world)
        script = example.replace("/data/", f"{world}/data/")
        result = subprocess.run(["bash", "-e", "-c", script], cwd=world, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            return [f"{example}\n---\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"]
    return []


@pytest.mark.slow
def test_every_help_example_runs_on_the_sample(tmp_path: Path, build_dir: Path, tiny_checkpoint: Path) -> None:
    world = _world(tmp_path, build_dir, tiny_checkpoint)
    found = all_examples()
    lanes = [[e for e in found if e.startswith("rp-data")], [e for e in found if not e.startswith("rp-data")]]
    with ThreadPoolExecutor(len(lanes)) as pool:
        failures = [failure for done in pool.map(lambda lane: _lane(world, lane), lanes) for failure in done]
    assert not failures, "\n\n".join(failures)
    assert (world / "out" / "animation.mp4").is_file() and (world / "out" / "tables" / "table1.md").is_file()
