"""Exact footers and bold on tables built for the purpose: run folders written by the run's own code
(`summarise`, `run_info`, `write_run`) from per-task rows chosen so that each column's best is known."""

from __future__ import annotations

import csv
import json
from importlib.metadata import packages_distributions, version
from pathlib import Path

import av
import pandas as pd
from evalkit import SAMPLE_SPLIT
from packaging.utils import canonicalize_name

from eval.baselines import SourceCopy
from eval.columns import COLUMNS
from eval.config import load_config
from eval.library_versions import FFMPEG, NOT_INSTALLED, metric_versions, module_versions
from eval.run import run_info, summarise, weight_records, write_run
from eval.scorers import Scorers
from eval.tables import PaperTable, footer, markdown, read_run, tables_for, write_tables
from eval.weights import read_bytes
from pipeline.fingerprint import distributions_of

METRICS = "metrics=[L1,PSNR,AED]"


def task_rows(l1: list[float], psnr: list[float], aed: list[float]) -> list[dict[str, object]]:
    return [
        {
            "protocol": "self",
            "task_id": f"clip{index}",
            "source": f"vfhq/clip{index}",
            "driving": f"vfhq/clip{index}",
            "status": "ok",
            "reason": None,
            "detail": None,
            "frames": 18,
            "scored_frames": 17,
            "L1": a,
            "PSNR": b,
            "AED": c,
            "face_motion_frames_without_face": 0 if c == c else 17,
        }
        for index, (a, b, c) in enumerate(zip(l1, psnr, aed, strict=True))
    ]


def write_folder(
    out: Path, label: str, rows: list[dict[str, object]], warnings: list[str] = (), *, control: bool = False
) -> Path:
    """A run folder of `rows`; the method is source-copy, declared a contender unless `control`."""
    config = load_config(None, [METRICS])
    scorers = Scorers(config)
    method = SourceCopy()
    method.warnings = list(warnings)  # the contract every Method may fill (OutputsFolder, Ours)
    method.control = control
    summary = summarise("self", pd.DataFrame(rows), scorers, config, out, [])
    info = run_info(method, label, config, SAMPLE_SPLIT, scorers, rows, {}, [], [])
    write_run(out, rows, summary, info)
    return out


def row_cells(markdown_text: str, label: str) -> list[str]:
    line = next(line for line in markdown_text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_bold_follows_each_columns_direction_within_one_task_set(tmp_path: Path) -> None:
    # A: lower L1 (better, ↓), lower PSNR (worse, ↑), the lowest AED but with no face on one task;
    # B: higher L1, higher PSNR, AED on every task.
    a = write_folder(tmp_path / "a", "A", task_rows([0.10, 0.12], [20.0, 22.0], [0.01, float("nan")]))
    b = write_folder(tmp_path / "b", "B", task_rows([0.20, 0.22], [30.0, 32.0], [0.30, 0.40]))
    table = tables_for([read_run(a), read_run(b)])[0]
    assert [metric for _, metric in table.columns] == ["L1", "PSNR", "AED"]
    text = markdown(table)
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert "L1 ↓" in header and "PSNR ↑" in header
    row_a, row_b = row_cells(text, "A"), row_cells(text, "B")
    assert row_a[0] == "**0.11**" and row_b[0] == "0.21"  # ↓: the lower is best
    assert row_a[1] == "21" and row_b[1] == "**31**"  # ↑: the higher is best
    # A's AED covers 1 of the 2 common tasks: shown with its count, never bold, even though it is lower
    assert row_a[2] == "0.01 (1/2 tasks)" and row_b[2] == "**0.35**"
    assert row_a[-1] == "0 of 2" and row_b[-1] == "0 of 2"
    assert "self tasks: every row is computed on the same 2 of 2 tasks" in text


def test_bold_singles_out_a_best_or_nothing(tmp_path: Path) -> None:
    """One row has no best (Table 3 of a single ablation run was all bold); nor has a column where all tie."""
    a = write_folder(tmp_path / "a", "A", task_rows([0.10, 0.12], [20.0, 22.0], [0.30, 0.40]))
    alone = markdown(tables_for([read_run(a)])[0])
    assert row_cells(alone, "A")[:3] == ["0.11", "21", "0.35"] and "**0.11**" not in alone
    # B ties A on L1 as printed (0.1100005 reads 0.11) and on AED exactly, and is better on PSNR: only PSNR has a best
    b = write_folder(tmp_path / "b", "B", task_rows([0.100001, 0.12], [30.0, 32.0], [0.30, 0.40]))
    both = markdown(tables_for([read_run(a), read_run(b)])[0])
    assert row_cells(both, "A")[:3] == ["0.11", "21", "0.35"]
    assert row_cells(both, "B")[:3] == ["0.11", "**31**", "0.35"]


def test_footer_versions_weights_and_warnings_are_exact(tmp_path: Path) -> None:
    rows = task_rows([0.1, 0.2], [20.0, 21.0], [0.1, 0.2])
    a = write_folder(tmp_path / "a", "A", rows)
    b = write_folder(tmp_path / "b", "B", rows, warnings=["2 of 2 outputs were stored lossily"])
    # two weight files with the same name in two folders: keyed by path, and their hashes differ
    records = {}
    for name, content in (("a", b"first file"), ("b", b"second file")):
        folder = tmp_path / f"weights_{name}"
        folder.mkdir()
        (folder / "alexnet-owt-7be5be79.pth").write_bytes(content)
        records[name] = weight_records([read_bytes("alexnet", folder, allow_unpinned=True)[1]], ("L1", "LPIPS", "tLP"))
    for folder, name in ((a, "a"), (b, "b")):
        run = read_run(folder)
        run.info["weights"] = records[name]
        (folder / "run.json").write_text(json.dumps(run.info))
    runs = [read_run(a), read_run(b)]
    table = tables_for(runs)[0]
    text = markdown(table)
    assert f"torchmetrics {version('torchmetrics')}" in text and f"torch {version('torch')}" in text
    assert "B: WARNING: 2 of 2 outputs were stored lossily" in text
    # LPIPS is no column of this table: its weights are not listed; the records are keyed by metric and path
    assert "weights for" not in text
    assert records["a"][0]["metrics"] == ["LPIPS", "tLP"]
    assert records["a"][0]["path"] == str((tmp_path / "weights_a" / "alexnet-owt-7be5be79.pth").resolve())
    one_column = PaperTable(1, "t", [("self", "L1")], runs)
    for run in runs:
        run.info["weights"][0]["metrics"] = ["L1"]  # as if L1 used them: both files must be listed
    lines = "\n".join(footer(one_column))
    for name in ("a", "b"):
        assert f"{records[name][0]['path']} sha256 {records[name][0]['sha256']}" in lines
    assert "WARNING: the rows' L1 comes from 2 different alexnet weight files" in lines
    # a row made with another library version is flagged
    runs[1].info["versions"]["L1"]["torchmetrics"] = "0.0.1"
    lines = "\n".join(footer(one_column))
    assert "WARNING: L1 was computed with different library versions" in lines and "torchmetrics 0.0.1" in lines


def test_controls_are_labelled_in_every_format_and_never_bold(tmp_path: Path) -> None:
    """C, a control, is best in every column (as driving-copy is in self-reenactment): it is labelled in
    Markdown, LaTeX, CSV and the chart, and the best of the ranked rows A and B is bold instead."""
    a = write_folder(tmp_path / "a", "A", task_rows([0.10, 0.12], [20.0, 22.0], [0.30, 0.40]))
    b = write_folder(tmp_path / "b", "B", task_rows([0.20, 0.22], [30.0, 32.0], [0.10, 0.20]))
    c = write_folder(tmp_path / "c", "C", task_rows([0.0, 0.0], [100.0, 100.0], [0.0, 0.0]), control=True)
    out = tmp_path / "tables"
    write_tables([a, b, c], out)
    text = (out / "table1.md").read_text()
    assert row_cells(text, "A")[:3] == ["**0.11**", "21", "0.35"]
    assert row_cells(text, "B")[:3] == ["0.21", "**31**", "**0.15**"]
    assert row_cells(text, "C (control)")[:3] == ["0", "100", "0"]
    assert "controls (never bold, never ranked" in text and "C: the source frame repeated" in text
    tex = (out / "table1.tex").read_text()
    assert "C (control) & 0 & 100 & 0" in tex and "\\textbf{0}" not in tex
    rows = list(csv.reader((out / "table1.csv").open()))
    assert rows[0][-1] == "control"
    assert {row[0]: row[-1] for row in rows[1:]} == {"A": "no", "B": "no", "C (control)": "yes"}
    table = tables_for([read_run(a), read_run(b), read_run(c)])[0]
    assert [run.row_label for run in table.ranked] == ["A", "B"]
    # with one ranked row left, nothing is bold
    lone = markdown(tables_for([read_run(a), read_run(c)])[0])
    assert "**" not in lone.split("\n\n")[1]


def test_a_cell_without_a_number_says_why(tmp_path: Path) -> None:
    """A metric a row did not compute, and one no task could give, read "n/a" with the reason below."""
    a = write_folder(tmp_path / "a", "A", task_rows([0.10, 0.12], [20.0, 22.0], [0.30, 0.40]))
    b = write_folder(tmp_path / "b", "B", task_rows([0.20, 0.22], [30.0, 32.0], [float("nan")] * 2))
    summary = pd.read_parquet(a / "summary.parquet")
    summary[summary["metric"] != "PSNR"].to_parquet(a / "summary.parquet")  # as if A had not computed PSNR
    text = markdown(tables_for([read_run(a), read_run(b)])[0])
    assert row_cells(text, "A")[1] == "n/a" and row_cells(text, "B")[2] == "n/a"
    assert "n/a: A, self PSNR: not computed by this run" in text
    assert "n/a: B, self AED[mp478-rel]: no face found" in text


def test_footer_names_the_distributions_installed_here_with_their_versions(tmp_path: Path) -> None:
    """cv2 is named by the distribution(s) that installed it on this machine, never by one that is not installed;
    every version is the installed distribution's; FFmpeg's libraries appear with their versions."""
    run = read_run(write_folder(tmp_path / "a", "A", task_rows([0.1, 0.2], [20.0, 21.0], [0.1, 0.2])))
    text = markdown(tables_for([run])[0])
    opencv = packages_distributions()["cv2"]
    for metric, recorded in run.info["versions"].items():
        for name in ("opencv-python", "opencv-contrib-python", "opencv-python-headless"):
            assert (name in recorded) == (name in opencv), (metric, name)
        libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
        assert f"libavcodec {libavcodec}" in recorded[FFMPEG]
        for name, installed in recorded.items():
            assert installed == (recorded[FFMPEG] if name == FFMPEG else version(name))
            assert f"{name} {installed}" in text


def test_each_metric_records_the_libraries_its_code_imports() -> None:
    versions = {
        metric: {canonicalize_name(name) for name in found} for metric, found in metric_versions(list(COLUMNS)).items()
    }
    declared = {
        module: {canonicalize_name(name) for name in names} for module, names in packages_distributions().items()
    }
    shared = {"numpy", "av", "pillow", "mediapipe", canonicalize_name(FFMPEG), *declared["cv2"]}
    assert all(shared <= found for found in versions.values())
    assert {"torch", "torchmetrics"} <= versions["SSIM"]
    assert {"torch", "torchvision", "lpips"} <= versions["LPIPS"] and versions["LPIPS"] == versions["tLP"]
    assert {"torch", "torch-fidelity"} <= versions["FID"] and {"cd-fvd", "torch-fidelity"} <= versions["FVD"]
    # dlib-bin declares only `_dlib_pybind11` as its module, yet it is what `import dlib` loads
    assert {"dlib-bin", "face-recognition-models"} <= versions["CSIM-dlib"] == versions["CSIM-dlib-leak"]
    # the onnxruntime flavour installed here (onnxruntime or onnxruntime-gpu), insightface's norm_crop and its
    # scikit-image transform
    assert {*declared["onnxruntime"], "insightface", "scikit-image"} <= versions["CSIM-arcface"]
    assert not any(NOT_INSTALLED in found.values() for found in metric_versions(list(COLUMNS)).values())


def test_a_module_no_distribution_provides_is_recorded_as_not_installed() -> None:
    assert distributions_of("no_such_module_here") == []
    assert module_versions(("no_such_module_here",)) == {"no_such_module_here": NOT_INSTALLED}


def test_footer_says_which_weight_files_are_the_pinned_ones(tmp_path: Path) -> None:
    official = read_bytes("dlib_shape5", Path("/nonexistent"))[1]  # the real file, from its package
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "dlib_face_recognition_resnet_model_v1.dat").write_bytes(b"another network")
    allowed = read_bytes("dlib_face", tmp_path / "weights", allow_unpinned=True)[1]
    run = read_run(write_folder(tmp_path / "a", "A", task_rows([0.1, 0.2], [20.0, 21.0], [0.1, 0.2])))
    run.info["weights"] = weight_records([allowed, official], ("CSIM-dlib",))
    for record in run.info["weights"]:
        record["metrics"] = ["L1"]  # as if L1 used them: the table's one column
    lines = "\n".join(footer(PaperTable(1, "t", [("self", "L1")], [run])))
    assert f"{allowed.path.resolve()} sha256 {allowed.sha256} [not the official file: its sha256 differs" in lines
    assert f"{official.path.resolve()} sha256 {official.sha256} [matches the pinned sha256]" in lines
