"""Shared fixtures: the embedded sample written once per session, the shared reference folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.sample import write_sample

    root = tmp_path_factory.mktemp("sample")
    write_sample(root)
    return root


@pytest.fixture(scope="session")
def hdtf_fixture() -> Path:
    path = SHARED / "fixtures" / "hdtf_annotations"
    if not path.is_dir():
        pytest.fail(f"the shared reference folder is expected beside the repository: {path} is missing")
    return path
