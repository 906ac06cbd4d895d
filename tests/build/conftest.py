"""Session fixtures of the end-to-end build tests, shared by their modules so each is built once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from buildkit import rp_data

from manifests.schema import get_spec


@pytest.fixture(scope="session")
def sample_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A build config giving every dataset the sample's pipeline defaults (small, soft faces), for builds of
    single sample folders passed as --source."""
    defaults = get_spec("sample").defaults.model_dump(mode="json")
    path = tmp_path_factory.mktemp("config") / "sample_defaults.yaml"
    path.write_text(yaml.safe_dump({"defaults": {name: defaults for name in get_spec("sample").members}}))
    return str(path)


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The main job on the embedded sample, as `make demo` runs it, undisturbed."""
    root = tmp_path_factory.mktemp("sample_build")
    result = rp_data(
        "build", "--sample", "--sample-dir", str(root / "sample"), "--out", str(root / "out"), "--workers", "2"
    )
    return root / "out", result.stdout
