"""One build per --out: a live lock refuses a second build, a dead one is taken over only with
--force-unlock, and an old lock of another host is stale. The lock holders are real processes: a live
one that holds the lock while the test runs, and one killed with SIGKILL as a lost driver would be."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buildkit import RAY_NO_AUTH, RP_DATA

from pipeline.build_lock import LOCK_NAME, STALE_AFTER_S, FolderLocked, LockHolder, acquire, build_lock

HOLD = "import sys, time; from pipeline.build_lock import build_lock\nwith build_lock(sys.argv[1]):\n" + (
    "    print('locked', flush=True); time.sleep(600)"
)


def _holding(out: Path) -> subprocess.Popen[str]:
    """A process that holds the lock of `out` until killed (once it says so)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def _build(ffhq: Path, out: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["build", "--source", f"ffhq={ffhq}", "--out", str(out), "--workers", "1", "--config", config, *args]
    return subprocess.run(
        [str(RP_DATA), *command], capture_output=True, text=True, timeout=600, env=os.environ | RAY_NO_AUTH
    )


def _message(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    return " ".join(result.stdout.split("error: ", 1)[1].split())


def test_a_second_build_on_a_locked_folder_is_refused_and_touches_nothing(
    sample_root: Path, sample_config: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    holder = _holding(out)
    try:
        left = out / "shards" / ".ffhq-00000-00.tar.4242.tmp"  # the running build's temporary
        left.write_bytes(b"half a tar")
        lock = json.loads((out / LOCK_NAME).read_text())
        for args in [(), ("--force-unlock",)]:
            result = _build(sample_root / "ffhq", out, sample_config, *args)
            assert result.returncode == 2, result.stdout[-2000:]
            message = _message(result)
            assert f"pid {holder.pid} on host {socket.gethostname()}, started {lock['started']}" in message
            assert "is being built by another rp-data build" in message
            assert ("takes over only a stale lock" in message) == bool(args)
        assert left.read_bytes() == b"half a tar"  # a resume would have deleted it: this build never started
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "shards"]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_build_is_taken_over_only_with_force_unlock(
    sample_root: Path, sample_config: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = _holding(out)
    os.kill(holder.pid, signal.SIGKILL)  # no finally runs: the lock stays, naming a dead process
    holder.wait()
    refused = _build(sample_root / "ffhq", out, sample_config)
    assert refused.returncode == 2
    message = _message(refused)
    assert f"seems to have died: pid {holder.pid} on host {socket.gethostname()}" in message
    assert f"process {holder.pid} is no longer running on this host" in message and "--force-unlock" in message
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    taken = _build(sample_root / "ffhq", out, sample_config, "--force-unlock")
    assert taken.returncode == 0, taken.stdout[-3000:]
    assert "1 work shard(s) built" in taken.stdout and not (out / LOCK_NAME).exists()  # released at the end


def _foreign_lock(out: Path, age: float) -> LockHolder:
    """A lock of a build on another host (whose process cannot be checked), last renewed `age` s ago."""
    holder = LockHolder("another-host", 1, "2026-01-01T00:00:00+00:00")
    path = out / LOCK_NAME
    path.write_text(json.dumps({"host": holder.host, "pid": holder.pid, "started": holder.started}))
    os.utime(path, (time.time() - age, time.time() - age))
    return holder


def test_a_lock_of_another_host_is_stale_only_past_the_age_limit(tmp_path: Path) -> None:
    _foreign_lock(tmp_path, age=STALE_AFTER_S / 2)
    with pytest.raises(FolderLocked, match="is being built by another rp-data build: pid 1 on host another-host"):
        acquire(tmp_path, force_unlock=True)
    _foreign_lock(tmp_path, age=STALE_AFTER_S + 60)
    with pytest.raises(FolderLocked, match=r"the lock is stale because its last heartbeat is \d+ s old"):
        acquire(tmp_path)
    with build_lock(tmp_path, force_unlock=True) as me:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid() == me.pid
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()} on host"):  # one build per folder, even here
            acquire(tmp_path, force_unlock=True)
    assert list(tmp_path.iterdir()) == []
