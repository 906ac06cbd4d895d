"""The face models' native log lines stay off the terminal unless --verbose; everything else still gets through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.faces.quiet import QUIET_ENV, quiet_native_logs

RP_DATA = Path(sys.executable).with_name("rp-data")
TFLITE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
ABSL = "inference_feedback_manager.cc"


def stderr_of(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_scan_faces_is_quiet_unless_verbose(sample_root: Path, verbose: bool) -> None:
    command = [str(RP_DATA), "scan", "--dataset", "hdtf", "--root", str(sample_root / "hdtf"), "--faces"]
    stderr = stderr_of(*command, *(["--verbose"] if verbose else []))
    assert (TFLITE in stderr) == verbose and (ABSL in stderr) == verbose, stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_split_with_the_faces_check_is_quiet_unless_verbose(sample_root: Path, tmp_path: Path, verbose: bool) -> None:
    command = [str(RP_DATA), "split", "--sample", str(sample_root), "--out", str(tmp_path / "split.json")]
    stderr = stderr_of(*command, *(["--verbose"] if verbose else []))
    assert (TFLITE in stderr) == verbose, stderr


def test_the_filter_drops_native_info_and_warnings_only() -> None:
    """Written to descriptor 2 the way native code writes: errors, plain lines and Python's stderr pass."""
    script = """
import os, sys
from pipeline.faces.quiet import quiet_native_logs
quiet_native_logs(False)
os.write(2, b"W0000 00:00:1796592716.594507   29354 inference_feedback_manager.cc:114] dropped\\n")
os.write(2, b"I0000 00:00:1.5  12 gl_context.cc:369] dropped\\nINFO: Created TensorFlow Lite delegate\\n")
os.write(2, b"E0000 00:00:1.5  12 calculator_graph.cc:887] kept error\\nkept plain line\\n")
print("kept from python", file=sys.stderr)
print(os.environ["GLOG_minloglevel"], os.environ["TF_CPP_MIN_LOG_LEVEL"])
raise SystemExit("kept exit message")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "2 2\n"
    assert sorted(result.stderr.splitlines()) == [
        "E0000 00:00:1.5  12 calculator_graph.cc:887] kept error",
        "kept exit message",
        "kept from python",
        "kept plain line",
    ]


def test_a_captured_stderr_is_left_to_its_owner(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (pytest captures sys.stderr here), only the variables are set; what native code writes
    still reaches whoever holds descriptor 2."""
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    captured = sys.stderr
    quiet_native_logs(False)
    assert sys.stderr is captured and all(os.environ[name] == value for name, value in QUIET_ENV.items())
    os.write(2, b"W0000 00:00:1.5  12 x.cc:1] still captured\n")
    assert "still captured" in capfd.readouterr().err
