"""An S3-compatible endpoint on 127.0.0.1 for tests: moto's server in its own process, reached through
the real client stack (s3fs, aiobotocore, botocore over HTTP), as s3fs's own test suite does.

The endpoint and dummy keys go into the environment, so this process, the rp-data commands a test runs
and the Ray workers they start all find it the way a user's processes find a real bucket
(AWS_ENDPOINT_URL, read by botocore).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    env: dict[str, str]  # what a process needs to reach it

    def bucket(self) -> str:
        """A new, empty bucket; returns its s3:// URL."""
        import s3fs

        name = f"rp-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
        return f"s3://{name}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def s3_endpoint(log: Path) -> Iterator[S3Endpoint]:
    """Starts the endpoint (its log in `log`), sets the environment to use it, and restores both after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 endpoint did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as environment:
            for name, value in env.items():
                environment.setenv(name, value)
            yield S3Endpoint(url, env)
    finally:
        server.terminate()
        server.wait(timeout=30)
