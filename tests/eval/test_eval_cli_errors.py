"""rp-eval's wrong inputs end in one clear line naming what is wrong (exit code 2), before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalkit import SAMPLE_SPLIT

from eval.cli import main as eval_main
from eval.config import load_config
from manifests.schema import SpecError


def run(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--split",
        str(SAMPLE_SPLIT),
        "--data-root",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
        "--weights",
        str(tmp_path),
        "--no-progress",
        *extra,
    ]


def test_an_explicitly_requested_metric_without_weights_is_an_error(tmp_path: Path, capsys) -> None:
    assert eval_main(run(tmp_path, "--method", "source-copy", "--set", "metrics=[FVD]")) == 2
    error = capsys.readouterr().err
    assert "i3d_pretrained_400.pt" in error and "github.com/songweige/TATS" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "ours"], "--method ours needs --checkpoint"),
        (["--method", "LivePortrait"], "or --outputs DIR for another"),
        (["--method", "source-copy", "--set", "size=10"], "size"),
        (["--method", "source-copy", "--set", "metrics=[FOO]"], "unknown metrics ['FOO']"),
    ],
)
def test_wrong_run_arguments(tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    assert eval_main(run(tmp_path, *arguments)) == 2
    assert message in capsys.readouterr().err


def test_table_of_a_folder_that_is_no_run(tmp_path: Path, capsys) -> None:
    assert eval_main(["table", str(tmp_path), "--out", str(tmp_path / "tables")]) == 2
    assert "run.json is missing" in capsys.readouterr().err


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
