"""One scoring path: the exported inputs and another method's files hold exactly the frames in memory.

The fast tests check the files (FFV1 and PNG frames decode bit for bit, a lossy file is read but
reported, each malformed output fails with its reason and file). The slow one runs landmark-warp in
memory and, as another method would, on the exported inputs with its frames written to an outputs
folder: every per-task and summary number must be equal, not close.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalkit import FAST, SAMPLE_SPLIT
from PIL import Image

from eval.baselines import LandmarkWarp
from eval.cli import main as eval_main
from eval.clips import load_clip
from eval.frame_files import read_png_folder, read_video
from eval.methods import OutputsFolder, TaskFailed
from eval.tasks import Task
from pipeline.encode import encode_ffv1, encode_h264
from pipeline.faces import open_detector, open_landmarker
from pipeline.split import load_split

TASK = Task("self", "vfhq/clip+1", "vfhq/clip+1")


def frames(count: int = 5, size: int = 32, seed: int = 0) -> np.ndarray:
    """Noise, the hardest content for a codec to keep exactly."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def write_png_folder(folder: Path, video: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for index, frame in enumerate(video):
        Image.fromarray(frame).save(folder / f"frame_{index}.png")  # unpadded: 10 must come after 9


def test_ffv1_decodes_to_exactly_the_frames_and_its_bytes_are_stable(tmp_path: Path) -> None:
    video = frames(size=30)  # odd multiples of 2 only matter for H.264; FFV1 takes any size
    path = tmp_path / "clip.mkv"
    path.write_bytes(encode_ffv1(video, 25))
    decoded = read_video(path)
    assert np.array_equal(decoded.frames, video)
    assert decoded.lossless and decoded.encoding == "ffv1 bgr0"
    assert encode_ffv1(video, 25) == path.read_bytes()


def test_h264_is_read_but_known_to_be_lossy(tmp_path: Path) -> None:
    video = frames(size=32)
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode_h264(video, 25, crf=0))
    decoded = read_video(path)
    assert decoded.frames.shape == video.shape and not np.array_equal(decoded.frames, video)
    assert not decoded.lossless and decoded.encoding == "h264 yuv420p"


def test_png_frames_are_read_in_frame_number_order(tmp_path: Path) -> None:
    video = frames(count=12)
    write_png_folder(tmp_path / "frames", video)
    decoded = read_png_folder(tmp_path / "frames")
    assert np.array_equal(decoded.frames, video) and decoded.lossless


def test_every_layout_of_an_outputs_folder_gives_the_frames_and_lossy_files_are_counted(tmp_path: Path) -> None:
    video = frames()
    tasks = [Task("self", f"vfhq/clip+{n}", f"vfhq/clip+{n}") for n in range(3)]
    folder = tmp_path / "outputs"
    (folder / "self").mkdir(parents=True)
    (folder / OutputsFolder.lossless_path(tasks[0])).write_bytes(encode_ffv1(video, 25))
    write_png_folder(folder / "self" / tasks[1].task_id, video)
    (folder / "self" / f"{tasks[2].task_id}.mp4").write_bytes(encode_h264(video, 25, crf=0))
    method = OutputsFolder(folder, "other")
    read = [method.read(task, 32, len(video)) for task in tasks]
    assert np.array_equal(read[0], video) and np.array_equal(read[1], video)
    assert not np.array_equal(read[2], video)
    assert method.warnings == [
        f"1 of 3 outputs were stored lossily; their scores include compression loss: "
        f"self/{tasks[2].task_id}.mp4 (h264 yuv420p)"
    ]
    (folder / "self" / "typo.mkv").write_bytes(b"")
    assert method.unexpected(tasks) == ["self/typo.mkv"]


def test_a_resized_output_is_counted_in_the_warnings(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / OutputsFolder.lossless_path(TASK)).write_bytes(encode_ffv1(frames(size=64), 25))
    method = OutputsFolder(tmp_path, "other", resize=True)
    assert method.read(TASK, 32, 5).shape == (5, 32, 32, 3)
    assert method.warnings == [
        f"1 of 1 outputs were not at the evaluation size and were resized: {OutputsFolder.lossless_path(TASK)} (64x64)"
    ]


@pytest.mark.parametrize(
    ("make", "reason", "named"),
    [
        (lambda folder: None, "missing_output", "clip+1.mkv"),
        (lambda folder: (folder / "clip+1.mkv").write_bytes(b"not a video"), "unreadable_output", "clip+1.mkv"),
        (
            lambda folder: (folder / "clip+1.mkv").write_bytes(encode_ffv1(frames(size=30), 25)),
            "wrong_resolution",
            "30x30",
        ),
        (
            lambda folder: (folder / "clip+1.mkv").write_bytes(encode_ffv1(frames(count=4), 25)),
            "wrong_length",
            "4 frames",
        ),
        (
            lambda folder: [(folder / f"clip+1{s}").write_bytes(encode_ffv1(frames(), 25)) for s in (".mkv", ".mp4")],
            "ambiguous_output",
            "clip+1.mp4",
        ),
        (
            lambda folder: [
                write_png_folder(folder / "clip+1", frames()),
                (folder / "clip+1" / "x.jpg").write_bytes(b""),
            ],
            "unreadable_output",
            "x.jpg",
        ),
        (
            lambda folder: [
                write_png_folder(folder / "clip+1", frames(count=4)),
                Image.fromarray(frames(count=1, size=16)[0]).save(folder / "clip+1" / "frame_4.png"),
            ],
            "wrong_resolution",
            "frame_4.png",
        ),
    ],
)
def test_a_malformed_output_fails_with_its_reason_and_file(tmp_path: Path, make, reason: str, named: str) -> None:
    folder = tmp_path / "self"
    folder.mkdir()
    task = Task("self", "clip+1", "clip+1")
    make(folder)
    method = OutputsFolder(tmp_path, "other")
    with pytest.raises(TaskFailed) as failure:
        method.read(task, 32, 5)
    assert failure.value.reason == reason and named in failure.value.detail
    assert method.read_count == 0 and method.warnings == []


def rp_eval(*args: str) -> int:
    return eval_main([*args, "--no-progress"])


def common_args(sample_root: Path) -> list[str]:
    return ["--split", str(SAMPLE_SPLIT), "--data-root", str(sample_root)] + [
        item for value in FAST for item in ("--set", value)
    ]


def item_id(stem: str) -> str:
    """The split item id of a task file stem (see `eval.tasks.file_stem`)."""
    return stem.replace("@", "/")


@pytest.fixture(scope="module")
def exported(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """`rp-eval inputs` on the sample at the quick protocol: the folder and the rows of its tasks.csv."""
    inputs = tmp_path_factory.mktemp("inputs")
    assert rp_eval("inputs", *common_args(sample_root), "--out", str(inputs)) == 0
    with open(inputs / "tasks.csv", encoding="utf-8") as handle:
        return inputs, list(csv.DictReader(handle))


@pytest.mark.slow
def test_exported_driving_clips_decode_to_exactly_the_evaluated_frames(
    sample_root: Path, exported: tuple[Path, list[dict[str, str]]]
) -> None:
    inputs, rows = exported
    split, detector = load_split(SAMPLE_SPLIT), open_detector()
    clips = {c.item_id: load_clip(c, sample_root / c.dataset, 128, detector, 18) for c in split.clips}
    assert len(rows) == 6 and all(not row["problem"] for row in rows)
    for row in rows:
        if row["protocol"] == "self":
            source_id = driving_id = item_id(row["task_id"])
        else:
            source_id, driving_id = map(item_id, row["task_id"].split("~"))
        driving = read_video(inputs / row["driving"])
        assert driving.lossless and np.array_equal(driving.frames, clips[driving_id].frames), row["task_id"]
        assert np.array_equal(np.asarray(Image.open(inputs / row["source_png"])), clips[source_id].frames[0])
        assert row["output"] == f"{row['protocol']}/{row['task_id']}.mkv"


@pytest.mark.slow
def test_a_method_scored_in_memory_and_from_its_files_gives_the_same_rows(
    sample_root: Path, metric_weights: Path, exported: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    """landmark-warp in memory, and landmark-warp run on the exported inputs as another method would be,
    its frames written as FFV1 (and one task as PNG frames): every number is equal."""
    common, weights = common_args(sample_root), ["--weights", str(metric_weights), "--allow-unpinned-weights"]
    direct, from_files, outputs = tmp_path / "direct", tmp_path / "from_files", tmp_path / "outputs"
    assert rp_eval("run", *common, "--method", "landmark-warp", "--out", str(direct), *weights) == 0
    inputs, rows = exported
    warp = LandmarkWarp(open_landmarker())
    for index, row in enumerate(rows):
        source = np.asarray(Image.open(inputs / row["source_png"]))
        generated = warp.generate(source, read_video(inputs / row["driving"]).frames)
        target = outputs / row["output"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if index == 0:
            write_png_folder(target.with_suffix(""), generated)
        else:
            target.write_bytes(encode_ffv1(generated, float(row["fps"])))
    args = ["--method", "landmark-warp", "--outputs", str(outputs), "--out", str(from_files), *weights]
    assert rp_eval("run", *common, *args) == 0
    for name in ("tasks.parquet", "summary.parquet"):
        expected, actual = pd.read_parquet(direct / name), pd.read_parquet(from_files / name)
        assert (expected["status"] == "ok").all(), expected
        pd.testing.assert_frame_equal(actual, expected, check_exact=True)
    tasks, summary = pd.read_parquet(direct / "tasks.parquet"), pd.read_parquet(direct / "summary.parquet")
    assert len(tasks) == 6 and np.isfinite(tasks[["L1", "PSNR", "LPIPS", "CSIM-dlib", "AED", "APD"]]).any().all()
    assert {"FID", "FVD", "LPIPS", "CSIM-dlib"} <= set(summary["metric"]) and np.isfinite(summary["value"]).sum() > 10
    assert json.loads((from_files / "run.json").read_text())["warnings"] == []


@pytest.mark.slow
def test_a_run_reading_lossy_outputs_says_so(
    sample_root: Path, exported: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    """The source repeated, one task as H.264: scored, and run.json carries the warning the tables show."""
    inputs, rows = exported
    outputs, run = tmp_path / "outputs", tmp_path / "run"
    for index, row in enumerate(rows):
        video = np.repeat(np.asarray(Image.open(inputs / row["source_png"]))[None], int(row["frames"]), axis=0)
        target = outputs / row["output"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if index == 0:
            target.with_suffix(".mp4").write_bytes(encode_h264(video, float(row["fps"]), crf=0))
        else:
            target.write_bytes(encode_ffv1(video, float(row["fps"])))
    args = ["--method", "copy", "--outputs", str(outputs), "--out", str(run), "--set", "metrics=[L1]"]
    assert rp_eval("run", *common_args(sample_root), *args) == 0
    assert (pd.read_parquet(run / "tasks.parquet")["status"] == "ok").all()
    lossy = Path(rows[0]["output"]).with_suffix(".mp4").as_posix()
    assert json.loads((run / "run.json").read_text())["warnings"] == [
        f"1 of 6 outputs were stored lossily; their scores include compression loss: {lossy} (h264 yuv420p)"
    ]
