"""`make demo-train` in seconds (`python -m training.demo --smoke`): the same commands as the real demo (the
VAE script, `deepspeed --num_gpus 2` through both stages of training/configs/demo.yaml, rp-eval inputs,
rp-animate for a self- and a cross-reenactment task, rp-eval run for three methods, rp-eval table, the loss
curves), each cut to a few steps, on the real shards of `rp-data build --sample`."""

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
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from model.views import strip_height, text_cell, text_size
from training.config import load_config
from training.demo import (
    PANEL_SIZE,
    PROTOCOLS,
    REPO,
    TRAIN_CONFIG,
    VAE_CONFIG,
    DemoPaths,
    held_out_task,
    main,
    run_demo,
)
from training.train_vae import load_config as load_vae_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory: pytest.TempPathFactory, build_dir: Path) -> DemoPaths:
    out = tmp_path_factory.mktemp("demo") / "demo"
    return run_demo(build_dir, build_dir.parent / "sample", out, smoke=True, master_port=29_600 + os.getpid() % 100)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_side_by_side_plays_labelled_panels_of_256_px(smoke_demo: DemoPaths, protocol: str) -> None:
    with av.open(str(smoke_demo.side_by_side(protocol))) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    with av.open(str(smoke_demo.animation(protocol))) as container:
        animated = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == len(animated) > 1
    strip = strip_height(PANEL_SIZE)
    assert frames[0].shape == (strip + PANEL_SIZE, 3 * PANEL_SIZE, 3)  # labels over source | driving | ours
    assert animated[0].shape == (64, 64, 3)  # the model's own size, enlarged only in the side-by-side
    labels = frames[0][: strip - 2]  # clear of the chroma the panels below bleed into it
    assert (labels.max(axis=-1) > 128).any() and np.median(labels) < 40  # light text on a dark strip


def test_the_contact_sheet_shows_the_self_task_above_the_cross_task(smoke_demo: DemoPaths) -> None:
    sheets = {}
    for protocol in PROTOCOLS:
        with Image.open(smoke_demo.task_sheet(protocol)) as image:
            sheets[protocol] = np.asarray(image.convert("RGB"))
            assert image.height == strip_height(PANEL_SIZE) + 2 * PANEL_SIZE
    with Image.open(smoke_demo.contact_sheet) as image:
        assert image.format == "PNG"
        combined = np.asarray(image.convert("RGB"))
    title = strip_height(PANEL_SIZE)
    self_sheet, cross_sheet = sheets["self"], sheets["cross"]
    assert combined.shape[0] == 2 * title + self_sheet.shape[0] + cross_sheet.shape[0]
    below_self = title + self_sheet.shape[0]
    assert np.array_equal(combined[title:below_self, : self_sheet.shape[1]], self_sheet)
    assert np.array_equal(combined[below_self + title :, : cross_sheet.shape[1]], cross_sheet)
    for protocol, top in (("self", 0), ("cross", below_self)):  # each title names its protocol and task
        task_id = held_out_task(smoke_demo.inputs, protocol)["task_id"]
        words = f"{protocol}-reenactment: {task_id}"
        expected = text_cell(words, combined.shape[1], title, text_size(PANEL_SIZE), centred=False)
        assert np.array_equal(combined[top : top + title], expected)


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
