"""Session fixtures of the end-to-end build tests, shared by their modules so each is made once (the build of
the sample itself, `sample_build`, is tests/conftest.py's, shared with the training and evaluation tests)."""

from __future__ import annotations

import pytest
import yaml

from manifests.schema import get_spec


@pytest.fixture(scope="session")
def sample_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A build config giving every dataset the sample's pipeline defaults (small, soft faces), for builds of
    single sample folders passed as --source."""
    defaults = get_spec("sample").defaults.model_dump(mode="json")
    path = tmp_path_factory.mktemp("config") / "sample_defaults.yaml"
    path.write_text(yaml.safe_dump({"defaults": {name: defaults for name in get_spec("sample").members}}))
    return str(path)
