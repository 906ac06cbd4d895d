"""rp-eval's wrong inputs end in one clear line naming the argument and what is wrong (exit code 2), before any
model, metric network or face model loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from evalkit import FAST, REPO, SAMPLE_SPLIT

from eval.cli import main as eval_main
from eval.config import load_config
from manifests.schema import SpecError

HEAVY = ("diffusers", "mediapipe", "model.realportrait", "eval.metrics", "lpips")


@pytest.fixture
def export_dir(tmp_path: Path, vae_dir: Path) -> Path:
    """A real export of an untrained tiny model with its VAE, as training writes one (in a second, untrained)."""
    from model.realportrait import RealPortrait
    from training.checkpoints import export_model

    export_model(RealPortrait.from_preset("tiny"), tmp_path / "export", None, vae_dir)
    return tmp_path / "export"


def run(sample_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--split",
        str(SAMPLE_SPLIT),
        "--data-root",
        str(sample_root),
        "--out",
        str(tmp_path / "run"),
        "--weights",
        str(tmp_path),
        "--no-progress",
        *extra,
    ]


def test_an_explicitly_requested_metric_without_weights_is_an_error(sample_root: Path, tmp_path: Path, capsys) -> None:
    assert eval_main(run(sample_root, tmp_path, "--method", "source-copy", "--set", "metrics=[FVD]")) == 2
    error = capsys.readouterr().err
    assert "i3d_pretrained_400.pt" in error and "github.com/songweige/TATS" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "ours"], "argument --checkpoint: --method ours needs --checkpoint DIR"),
        (["--method", "LivePortrait"], "argument --method: 'LivePortrait': use ours, source-copy"),
        (["--method", "ours", "--checkpoint", "{tmp}/nothing"], "argument --checkpoint: {tmp}/nothing: not a Real"),
        (["--method", "ours", "--checkpoint", "{checkpoint}", "--steps", "0"], "argument --steps: input should be"),
        (["--method", "ours", "--checkpoint", "{checkpoint}", "--vae", "{tmp}/vae"], "argument --vae: {tmp}/vae: not"),
        (["--method", "x", "--outputs", "{tmp}/videos"], "argument --outputs: {tmp}/videos: no such folder"),
        (["--method", "source-copy", "--weights", "{tmp}/w"], "argument --weights: {tmp}/w: no such folder"),
        (["--method", "source-copy", "--config", "{tmp}/e.yaml"], "argument --config: {tmp}/e.yaml: no such file"),
    ],
)
def test_wrong_run_arguments(
    sample_root: Path, tmp_path: Path, export_dir: Path, capsys, arguments: list[str], message: str
) -> None:
    """Each check's own line; `{checkpoint}` is a real export, so only the argument named can be the problem."""
    values = {"tmp": str(tmp_path), "checkpoint": str(export_dir)}
    assert eval_main(run(sample_root, tmp_path, *(argument.format(**values) for argument in arguments))) == 2
    error = capsys.readouterr().err
    assert error.startswith("rp-eval run: error: ") and error.count("\n") == 1
    assert message.format(**values) in error


def test_protocol_settings_are_checked(sample_root: Path, tmp_path: Path, capsys) -> None:
    """Every bad field on its own line, under the line naming where the value was written."""
    assert eval_main(run(sample_root, tmp_path, "--method", "source-copy", "--set", "size=10")) == 2
    error = capsys.readouterr().err
    assert error.startswith("rp-eval run: error: --set size=10: invalid evaluation config (1 problem(s))")
    assert "field 'size': Input should be greater than or equal to 64" in error
    assert eval_main(run(sample_root, tmp_path, "--method", "source-copy", "--set", "metrics=[FOO]")) == 2
    assert "unknown metrics ['FOO']" in capsys.readouterr().err


def test_dataset_roots_must_hold_the_split(sample_root: Path, tmp_path: Path, capsys) -> None:
    base = ["run", "--split", str(SAMPLE_SPLIT), "--method", "source-copy", "--out", str(tmp_path / "run")]
    cases = [
        (["--data-root", str(tmp_path)], f"argument --data-root: {tmp_path / 'vfhq'}: no such folder"),
        (["--root", f"vfhq={sample_root / 'vfhq'}"], "the split has celebvhq clips but no root for them"),
        (["--root", f"vfhq={tmp_path / 'VFHQ'}"], f"argument --root vfhq={tmp_path / 'VFHQ'}: {tmp_path / 'VFHQ'}: no"),
        (["--root", "vfhq"], "argument --root: 'vfhq' is not DATASET=DIR"),
        (
            ["--root", f"vfhq={sample_root}", "--root", f"celebvhq={sample_root / 'celebvhq'}"],
            f"argument --root vfhq={sample_root}: {sample_root} holds none of the split's 1 vfhq clips",
        ),
    ]
    for arguments, message in cases:
        assert eval_main([*base, *arguments]) == 2
        assert message in capsys.readouterr().err


def test_table_of_a_folder_that_is_no_run(tmp_path: Path, capsys) -> None:
    assert eval_main(["table", str(tmp_path), "--out", str(tmp_path / "tables")]) == 2
    assert "run.json is missing" in capsys.readouterr().err
    assert eval_main(["table", str(tmp_path / "nothing"), "--out", str(tmp_path / "tables")]) == 2
    assert f"argument RUN: {tmp_path / 'nothing'}: no such folder" in capsys.readouterr().err


def test_errors_come_before_the_heavy_imports(export_dir: Path, sample_root: Path, tmp_path: Path) -> None:
    """A real export whose VAE is gone: the error names it, and neither the model code nor the face models nor
    a metric network was imported to find that out (a new process, so nothing was imported before)."""
    checkpoint = export_dir
    shutil.rmtree(checkpoint / "vae")
    arguments = run(sample_root, tmp_path, "--method", "ours", "--checkpoint", str(checkpoint))
    script = (
        "import sys\nfrom eval.cli import main\ncode = main(sys.argv[1:])\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\nsys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stdout == "[]\n", result.stdout + result.stderr
    assert f"argument --checkpoint: {checkpoint}: {checkpoint / 'vae'} is missing" in result.stderr
    assert "loading the model" not in result.stdout


def test_config_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text("size: 256\nfvd:\n  clip_length: 16\n  seeds: [0, 1, 2]\n")
    config = load_config(path)
    assert (
        config.size == 256 and config.fvd.seeds == (0, 1, 2) and config.fingerprint() != load_config(None).fingerprint()
    )
    path.write_text("fvd:\n  windows: 3\n")
    with pytest.raises(SpecError, match=r"fvd\.windows"):
        load_config(path)


@pytest.mark.slow
def test_a_run_says_each_missing_weight_file_once_and_nothing_else(sample_root: Path, tmp_path: Path) -> None:
    """The installed `rp-eval` with an empty weights folder: one warning per missing file (ArcFace's serves three
    metrics, and was named three times), and no native log lines of the face models (TensorFlow Lite, absl)."""
    (tmp_path / "weights").mkdir()
    sets = [item for value in FAST for item in ("--set", value)]
    command = [str(Path(sys.executable).with_name("rp-eval")), "run", "--split", str(SAMPLE_SPLIT), "--data-root"]
    command += [str(sample_root), "--method", "source-copy", "--out", str(tmp_path / "run"), "--protocol", "self"]
    command += ["--weights", str(tmp_path / "weights"), "--no-progress", *sets]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for metric in ("LPIPS, tLP", "FID", "FVD", "CSIM-arcface"):
        assert sum(line.startswith(f"warning: weights missing for {metric} (") for line in lines) == 1, lines
    assert len(lines) == 4 and all(line.startswith("warning: weights missing for ") for line in lines), lines
