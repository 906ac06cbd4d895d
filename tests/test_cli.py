from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifests.schema import DATASETS_DIR
from pipeline.cli import main

RP_DATA = Path(sys.executable).with_name("rp-data")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RP_DATA), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [[], ["datasets"], ["sample"], ["scan"]])
def test_every_help_shows_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "example" in result.stdout and "rp-data" in result.stdout


def test_datasets_lists_nine_specs() -> None:
    result = run("datasets")
    assert result.returncode == 0
    assert "9 specs" in result.stdout
    for name in ("vggface2", "celeba", "ffhq", "celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq", "sample"):
        assert f" {name} " in result.stdout
    one = run("datasets", "hdtf")
    assert "crop_wh" in one.stdout and "min_face_px" in one.stdout


def test_a_broken_spec_is_an_error_naming_file_and_field(tmp_path: Path) -> None:
    shutil.copytree(DATASETS_DIR, tmp_path / "registry")
    spec = tmp_path / "registry" / "ffhq.yaml"
    data = yaml.safe_load(spec.read_text())
    data["modality"] = "audio"
    spec.write_text(yaml.safe_dump(data))
    result = run("--registry", str(tmp_path / "registry"), "datasets")
    assert result.returncode == 2
    assert "ffhq.yaml" in result.stdout and "field 'modality'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_scan_prints_counts_and_problems(sample_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "scan",
                "--dataset",
                "talkinghead_1kh",
                "--root",
                str(sample_root / "talkinghead_1kh"),
                "--out",
                str(tmp_path / "th.parquet"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train:2" in out and "val:1" in out and "2 (proxy_video)" in out and "malformed_line:1" in out
    assert "data_list/train_video_tubes.txt" in out
    assert (tmp_path / "th.parquet").exists() and (tmp_path / "th.problems.parquet").exists()
    assert main(["scan", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sources", "error"),
    [
        (["--source", "vfhq=A", "--source", "hdtf=B", "--source", "vfhq=C"], "--source vfhq is given twice"),
        (["--sample", "--source", "mead=A"], "--source mead and --sample both build mead"),
    ],
)
def test_a_dataset_given_twice_is_refused_before_anything_is_written(
    sources: list[str], error: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run("build", *sources, "--sample-dir", str(tmp_path / "sample"), "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {error}: every item of" in result.stdout and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "sample").exists()
