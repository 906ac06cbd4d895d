"""Helpers of the training tests (imported as `trainkit`): the deepspeed launcher run as users run it,
and TensorBoard event reading."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = REPO / "training" / "configs" / "tiny.yaml"
# DeepSpeed JIT-builds its CPU shared-memory op (about a minute) into the torch extensions folder: one stable
# folder in the repository's git-ignored .cache builds it once per checkout, not once per launch.
EXTENSIONS = REPO / ".cache" / "torch_extensions"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_command(config: Path, overrides: list[str], gpus: int, port: int) -> list[str]:
    launcher = [str(BIN / "deepspeed"), "--num_gpus", str(gpus), "--master_port", str(port)]
    return [*launcher, str(REPO / "training" / "train.py"), "--config", str(config), *overrides]


def launcher_env() -> dict[str, str]:
    return {**os.environ, "TORCH_EXTENSIONS_DIR": str(EXTENSIONS), "PYTHONUNBUFFERED": "1"}


def release_shm(port: int) -> None:
    """DeepSpeed's per-rank shared-memory buffers of a killed run (a finished run removes its own)."""
    for leftover in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_{port}_*"):
        leftover.unlink(missing_ok=True)


def launch(config: Path, *overrides: str, gpus: int = 2, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`deepspeed --num_gpus N training/train.py --config ...` from the repository root; must succeed."""
    port = free_port()
    try:
        result = subprocess.run(
            launcher_command(config, list(overrides), gpus, port),
            cwd=REPO,
            env=launcher_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        release_shm(port)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return result


def start(config: Path, *overrides: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The launcher in the background, in its own session (so the whole job can be killed), output to `log`."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            launcher_command(config, list(overrides), 2, port),
            cwd=REPO,
            env=launcher_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, port


def run_overrides(output: Path, build: Path, vae: Path) -> list[str]:
    return [f"output_dir={output}", f"data.build_dir={build}", f"vae.path={vae}"]


def event_files(log_dir: Path) -> list[Path]:
    """One event file per launch, oldest first."""
    return sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.name.split(".")[3])


def read_events(path: Path) -> Iterator[tuple[int, str, object]]:
    """(step, tag, value) of every summary value as written: a float for scalars, encoded bytes for images."""
    for record in RawEventFileLoader(str(path)).Load():
        event = Event.FromString(record)
        for value in event.summary.value:
            if value.HasField("simple_value"):
                yield event.step, value.tag, value.simple_value
            elif value.HasField("image"):
                yield event.step, value.tag, value.image.encoded_image_string


def scalars(log_dir: Path, tag: str, file: Path | None = None) -> dict[int, float]:
    files = [file] if file is not None else event_files(log_dir)
    return {step: float(v) for path in files for step, t, v in read_events(path) if t == tag}  # type: ignore[arg-type]


def images(log_dir: Path, tag: str) -> list[io.BytesIO]:
    return [io.BytesIO(v) for path in event_files(log_dir) for _, t, v in read_events(path) if t == tag]  # type: ignore[arg-type]
