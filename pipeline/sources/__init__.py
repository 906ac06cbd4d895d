"""One adapter per official dataset layout, and one for any folder of one's own footage (folder.py), each
yielding normalized SourceItems (see records.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from manifests.schema import DatasetSpec, SpecError
from pipeline.sources.base import SourceAdapter
from pipeline.sources.celeba import CelebA
from pipeline.sources.celebvhq import CelebVHQ
from pipeline.sources.ffhq import FFHQ
from pipeline.sources.folder import Folder
from pipeline.sources.hdtf import HDTF
from pipeline.sources.mead import MEAD
from pipeline.sources.records import Problem
from pipeline.sources.talkinghead_1kh import TalkingHead1KH
from pipeline.sources.vfhq import VFHQ
from pipeline.sources.vggface2 import VGGFace2

ADAPTERS: dict[str, type[SourceAdapter]] = {
    adapter.name: adapter for adapter in (VGGFace2, CelebA, FFHQ, CelebVHQ, TalkingHead1KH, HDTF, MEAD, VFHQ, Folder)
}


def open_adapter(spec: DatasetSpec, root: Path, report: Callable[[Problem], None]) -> SourceAdapter:
    try:
        adapter = ADAPTERS[spec.adapter]
    except KeyError:
        raise SpecError(
            f"manifests/datasets/{spec.name}.yaml: field 'adapter' is {spec.adapter!r}; "
            f"known adapters: {', '.join(sorted(ADAPTERS))}"
        ) from None
    return adapter(spec, root, report)
