"""Shared fixtures: the embedded sample written once per session, the shared reference folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.schema import get_spec
from pipeline.sources import open_adapter
from pipeline.sources.records import Problem, SourceItem

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


def run_adapter(dataset: str, root: Path) -> tuple[list[SourceItem], list[Problem]]:
    """All items and problems of one adapter over `root`, with the registry's spec."""
    problems: list[Problem] = []
    items = list(open_adapter(get_spec(dataset), root, problems.append).items())
    return items, problems


def reasons(problems: list[Problem]) -> list[tuple[str, str]]:
    """(file, reason) pairs, sorted, for exact comparisons."""
    return sorted((p.file, p.reason) for p in problems)
