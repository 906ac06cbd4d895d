"""Fixtures of the report and inspect tests; the helpers that write shards live in shardkit.py."""

from __future__ import annotations

import pytest
from shardkit import Build, write_build


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Shared, read-only: tests write their reports elsewhere (out_html) unless they copy it."""
    return write_build(tmp_path_factory.mktemp("build"))
