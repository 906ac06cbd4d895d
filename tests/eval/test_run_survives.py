"""A run survives its failures: each task is journalled as it finishes, a killed run resumes where it
stopped, one task's surprise fails that task alone, and a run where nothing succeeded exits 1.

On the sample split (3 clips: 3 self and 3 cross tasks) at a small protocol with pixel metrics only, so
that what is tested is the bookkeeping, with real clips, real methods and real run folders.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalkit import SAMPLE_SPLIT

from eval.baselines import SourceCopy
from eval.cli import main as eval_main
from eval.config import load_config
from eval.methods import OutputsFolder, TaskFailed
from eval.run import evaluate
from eval.run_log import CannotResume, Journal
from eval.scorers import load_scorers
from eval.tasks import Task, split_tasks
from pipeline.encode import encode_ffv1
from pipeline.faces import open_detector
from pipeline.sample.recording import Recording, variable_times, write_recording
from pipeline.split import load_split

SMALL = ["size=64", "max_frames=8", "metrics=[L1,PSNR]"]


class Killed(BaseException):
    """What a pre-emption or an out-of-memory kill looks like to the run: nothing it may catch."""


class CountingCopy(SourceCopy):
    """Source-copy (same name and description: a resumed run must be the same method) that counts its calls,
    dies at call `die_at` and returns a list instead of an array at call `wrong_at`."""

    def __init__(self, die_at: int = 0, wrong_at: int = 0):
        self.calls, self.die_at, self.wrong_at = 0, die_at, wrong_at

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        self.calls += 1
        if self.calls == self.die_at:
            raise Killed
        frames = super().generate(source, driving, fps)
        return list(frames) if self.calls == self.wrong_at else frames  # type: ignore[return-value]


@pytest.fixture(scope="module")
def world(sample_root: Path) -> dict[str, object]:
    config = load_config(None, SMALL)
    split = load_split(SAMPLE_SPLIT)
    return {
        "split": split,
        "roots": {name: sample_root / name for name in ("vfhq", "celebvhq")},
        "scorers": load_scorers(config, None, explicit=True),
        "detector": open_detector(),
        "tasks": split_tasks(split),
    }


def run(world: dict[str, object], method: SourceCopy, out: Path, **options: object):
    return evaluate(
        method,
        world["split"],
        SAMPLE_SPLIT,
        world["roots"],
        world["tasks"],
        world["scorers"],
        world["detector"],
        out,
        **options,
    )


def metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index(["protocol", "task_id"])[["status", "L1", "PSNR", "scored_frames"]].sort_index()


def test_a_killed_run_resumes_where_it_stopped(world: dict[str, object], tmp_path: Path) -> None:
    fresh = run(world, SourceCopy(), tmp_path / "fresh")
    killed = CountingCopy(die_at=4)
    with pytest.raises(Killed):
        run(world, killed, tmp_path / "run")
    journalled = Journal(tmp_path / "run").rows()
    assert len(journalled) == 3 and all(row["status"] == "ok" for row in journalled.values())
    assert not (tmp_path / "run" / "tasks.parquet").exists()

    again = CountingCopy()
    resumed = run(world, again, tmp_path / "run", resume=True)
    assert again.calls == 3  # only the tasks the killed run had not finished
    assert resumed.info["resumed_tasks"] == 3 and resumed.info["succeeded"] == 6
    pd.testing.assert_frame_equal(metrics(resumed.tasks), metrics(fresh.tasks))
    assert pd.read_parquet(tmp_path / "run" / "summary.parquet")["value"].tolist() == pytest.approx(
        fresh.summary["value"].tolist()
    )


def test_one_tasks_surprise_fails_that_task_with_its_traceback(world: dict[str, object], tmp_path: Path) -> None:
    result = run(world, CountingCopy(wrong_at=2), tmp_path)
    failed = result.tasks[result.tasks["status"] != "ok"]
    assert len(failed) == 1 and failed.iloc[0]["reason"] == "internal_error"
    assert "AttributeError" in failed.iloc[0]["detail"]
    errors = json.loads((tmp_path / "run.json").read_text())["task_errors"]
    (key, error), *_ = errors.items()
    assert key == f"{failed.iloc[0]['protocol']}/{failed.iloc[0]['task_id']}"
    assert "Traceback" in error["traceback"] and "AttributeError" in error["traceback"]
    assert "traceback" not in result.tasks.columns  # kept in run.json, not in every table's input

    # resumed, the failed task runs again (its cause may be fixed) and the others are kept
    again = CountingCopy()
    resumed = run(world, again, tmp_path, resume=True)
    assert again.calls == 1 and resumed.info["succeeded"] == 6


def test_a_run_resumes_only_what_it_was_started_with(world: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(CannotResume, match="no run to resume"):
        run(world, SourceCopy(), tmp_path / "nothing", resume=True)
    run(world, SourceCopy(), tmp_path / "run", label="copy")
    with pytest.raises(CannotResume, match="label: 'copy' then, 'other' now"):
        run(world, SourceCopy(), tmp_path / "run", label="other", resume=True)


def png_bomb(path: Path) -> None:
    """A PNG whose header claims 30000x30000 pixels: PIL refuses it as a decompression bomb on open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_outputs_are_checked_from_their_headers(tmp_path: Path) -> None:
    task = Task("self", "vfhq/clip", "vfhq/clip")
    folder = tmp_path / "outputs"
    frames = np.full((8, 64, 64, 3), 120, np.uint8)
    target = folder / OutputsFolder.lossless_path(task)
    target.parent.mkdir(parents=True)
    target.write_bytes(encode_ffv1(frames, 30))
    method = OutputsFolder(folder, "other")
    assert method.read(task, 64, 8, fps=30.0).shape == (8, 64, 64, 3)
    with pytest.raises(TaskFailed) as caught:
        method.read(task, 64, 8, fps=25.0)
    assert caught.value.reason == "wrong_frame_rate" and str(target) in caught.value.detail
    assert "30.0" in caught.value.detail and "the driving clip has 25.000 frames/s" in caught.value.detail

    target.unlink()
    pngs = target.with_suffix("")
    pngs.mkdir()
    png_bomb(pngs / "000000.png")
    with pytest.raises(TaskFailed) as caught:
        method.read(task, 64, 8, fps=25.0)
    assert caught.value.reason == "unreadable_output" and "000000.png" in caught.value.detail
    assert "decompression bomb" in caught.value.detail.lower()


def test_a_phones_output_is_read_upright_at_its_mean_rate(tmp_path: Path) -> None:
    """Another method's .mp4 written as a phone writes: stored sideways with a rotation tag, BT.709, frames
    at uneven times. Its top-left quadrant is painted white as displayed; the header gives the displayed
    size and the mean rate, so the file passes at its own rate, fails at twice it, and reads upright."""
    task = Task("self", "vfhq/clip", "vfhq/clip")
    shown = np.full((12, 64, 64, 3), 40, np.uint8)
    shown[:, :32, :32] = 255
    times = variable_times(12, 25.0, seed=3)
    target = tmp_path / "self" / "vfhq@clip.mp4"
    write_recording(target, shown, 25.0, Recording(rotation=90, times=times, crf=10))
    method = OutputsFolder(tmp_path, "phone")
    mean_rate = (len(times) - 1) / times[-1]
    frames = method.read(task, 64, 12, fps=mean_rate)
    assert frames[:, :24, :24].mean() > 230 and frames[:, 40:, 40:].mean() < 60  # upright, not turned
    assert method.lossy == {"self/vfhq@clip.mp4": "h264 yuv420p"}
    with pytest.raises(TaskFailed) as caught:
        method.read(task, 64, 12, fps=2 * mean_rate)
    assert caught.value.reason == "wrong_frame_rate"

    sideways = np.full((12, 48, 64, 3), 40, np.uint8)  # displayed 64 wide, 48 high: stored 48x64
    write_recording(target, sideways, 25.0, Recording(rotation=90))
    with pytest.raises(TaskFailed) as caught:
        method.read(task, 64, 12, fps=25.0)
    assert caught.value.reason == "wrong_resolution" and "64x48, expected 64x64" in caught.value.detail


def test_a_run_where_nothing_succeeded_exits_1_and_names_print_literally(
    sample_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another method's empty outputs folder: every task fails (missing output), the exit code says so; the
    method's name, which looks like rich markup, is printed as it is."""
    (tmp_path / "outputs").mkdir()
    name = "[bold]x[/"
    sets = [item for value in SMALL for item in ("--set", value)]
    method = ["--method", name, "--outputs", str(tmp_path / "outputs"), "--out", str(tmp_path / "run")]
    code = eval_main(["run", "--split", str(SAMPLE_SPLIT), "--data-root", str(sample_root), *sets, *method])
    captured = capsys.readouterr()
    assert code == 1
    assert "no task succeeded" in captured.err and "missing_output" in captured.out
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["method"] == name and info["succeeded"] == 0 and info["failed"] == {"missing_output": 6}
    assert name in captured.err  # the progress bar's label, literally
