"""One FaceMesh landmarker for the face tests: loading its graphs is the slow part, tracking state is reset per clip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.faces import LandmarkTracker, open_landmarker


@pytest.fixture(scope="package")
def landmarker() -> Iterator[LandmarkTracker]:
    tracker = open_landmarker()
    yield tracker
    tracker.close()
