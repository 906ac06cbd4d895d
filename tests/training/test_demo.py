"""`make demo-train` in seconds (`python -m training.demo --smoke`): the same commands as the real demo (the
VAE script, `deepspeed --num_gpus 2` through both stages of training/configs/demo.yaml, rp-eval inputs,
rp-animate, rp-eval run for three methods, rp-eval table, the loss curves), each cut to a few steps, on the
real shards of `rp-data build --sample`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import av
import pandas as pd
import pytest
from PIL import Image

from training.config import load_config
from training.demo import REPO, TRAIN_CONFIG, VAE_CONFIG, DemoPaths, main, run_demo
from training.train_vae import load_config as load_vae_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory: pytest.TempPathFactory, build_dir: Path) -> DemoPaths:
    out = tmp_path_factory.mktemp("demo") / "demo"
    return run_demo(build_dir, build_dir.parent / "sample", out, smoke=True, master_port=29_600 + os.getpid() % 100)


def test_the_side_by_side_video_plays_and_shows_source_driving_and_result(smoke_demo: DemoPaths) -> None:
    with av.open(str(smoke_demo.side_by_side)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    with av.open(str(smoke_demo.animation)) as container:
        animated = sum(1 for _ in container.decode(video=0))
    assert len(frames) == animated > 1
    height, width, _ = frames[0].shape
    assert height == 64 and width == 3 * 64, frames[0].shape  # source | driving | result at the model's 64 px


def test_every_method_is_evaluated_on_the_held_out_split_and_tabled(smoke_demo: DemoPaths) -> None:
    for name in ("ours", "source-copy", "landmark-warp"):
        tasks = pd.read_parquet(smoke_demo.eval_run(name) / "tasks.parquet")
        assert len(tasks) == 6 and (tasks["status"] == "ok").all(), tasks[["task_id", "status", "detail"]]
        run = json.loads((smoke_demo.eval_run(name) / "run.json").read_text())
        assert run["config"]["size"] == 64
    for table in ("table1", "table2", "table3"):
        for suffix in ("md", "csv", "png"):
            assert (smoke_demo.tables / f"{table}.{suffix}").stat().st_size > 0
    assert "ours (demo)" in (smoke_demo.tables / "table1.md").read_text()


def test_the_loss_curves_of_both_stages_are_drawn(smoke_demo: DemoPaths) -> None:
    with Image.open(smoke_demo.loss_curves) as image:
        assert image.format == "PNG" and image.width > image.height
    assert sorted(path.name for path in (smoke_demo.run / "tensorboard").iterdir()) == ["stage1", "stage2"]


def test_the_model_was_trained_with_the_demo_vae_and_the_split_held_out(smoke_demo: DemoPaths) -> None:
    record = json.loads((smoke_demo.vae / "reconstruction.json").read_text())
    assert record["heldout_keys"] and record["psnr_heldout_db"] is not None
    exported = json.loads((smoke_demo.checkpoint / "heldout_split.json").read_text())
    assert exported["split"]["sha256"] == record["heldout_split"]["sha256"]
    assert (smoke_demo.logs / "train.log").read_text().count("done: EMA model exported") == 2


def test_a_missing_build_is_named_with_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--build", str(tmp_path / "nothing"), "--out", str(tmp_path / "demo")]) == 2
    assert "run `make demo` first" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_a_folder_that_is_not_a_demo_is_never_replaced(
    tmp_path: Path, build_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results.csv").write_text("precious\n")
    arguments = [
        "--build",
        str(build_dir),
        "--sample",
        str(build_dir.parent / "sample"),
        "--out",
        str(tmp_path / "mine"),
    ]
    assert main(arguments) == 2
    assert "not an earlier demo's folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "results.csv").read_text() == "precious\n"


def test_the_demo_model_generates_at_the_vae_resolution() -> None:
    """rp-animate and rp-eval generate at the model's `input_sq_size`: the demo's must be the VAE's 64 px
    (training/test_train_vae.py checks the rest of the two configs' agreement)."""
    training, vae = load_config(TRAIN_CONFIG), load_vae_config(VAE_CONFIG, [])
    assert training.model.overrides["input_sq_size"] == vae.resolution == 64


def test_on_a_terminal_each_step_gets_one_so_its_progress_bars_draw_live(tmp_path: Path) -> None:
    """The demo run from a terminal (pseudo-terminal here): the child sees a terminal of the same size, and
    its output still reaches the step's log."""
    log = tmp_path / "step.log"
    child = "import os, sys; print('tty', sys.stdout.isatty(), os.get_terminal_size(1).columns)"
    demo = (
        "from pathlib import Path; from training.demo import run_step; "
        f"run_step([{sys.executable!r}, '-c', {child!r}], Path({str(log)!r}))"
    )
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 132, 0, 0))
    process = subprocess.run(
        [sys.executable, "-c", demo], cwd=REPO, stdout=follower, stderr=subprocess.PIPE, timeout=120
    )
    os.close(follower)
    os.close(leader)
    assert process.returncode == 0, process.stderr.decode()
    assert "tty True 132" in log.read_text()
