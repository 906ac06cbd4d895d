"""The S3 endpoint every storage test talks to, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3kit import S3Endpoint, s3_endpoint


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with s3_endpoint(tmp_path_factory.mktemp("s3") / "server.log") as endpoint:
        yield endpoint
