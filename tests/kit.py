"""Helpers shared by the adapter, split and build tests (imported as `kit`: tests/ is on pytest's path)."""

from __future__ import annotations

from pathlib import Path

from manifests.schema import get_spec
from pipeline.sources import open_adapter
from pipeline.sources.records import Problem, SourceItem


def run_adapter(dataset: str, root: Path) -> tuple[list[SourceItem], list[Problem]]:
    """All items and problems of one adapter over `root`, with the registry's spec."""
    problems: list[Problem] = []
    items = list(open_adapter(get_spec(dataset), root, problems.append).items())
    return items, problems


def reasons(problems: list[Problem]) -> list[tuple[str, str]]:
    """(file, reason) pairs, sorted, for exact comparisons."""
    return sorted((p.file, p.reason) for p in problems)


def item(media_path: str = "x.mp4", **values: object) -> SourceItem:
    """A present, identity-free video item of a file the test wrote, with any field overridden."""
    base: dict[str, object] = {
        "dataset": "mead",
        "native_id": Path(media_path).stem,
        "modality": "video",
        "media_path": media_path,
        "media_status": "present",
        "split": "train",
        "identity": None,
        "identity_kind": "none",
        "license_tag": "t:t",
    }
    return SourceItem(**(base | values))


# The folder names the README and the --help examples give the downloads (/data/<NAME>) -> registry names
DATA_FOLDERS = {
    "VFHQ": "vfhq",
    "CelebV-HQ": "celebvhq",
    "HDTF": "hdtf",
    "MEAD": "mead",
    "TalkingHead-1KH": "talkinghead_1kh",
    "VGGFace2": "vggface2",
    "CelebA": "celeba",
    "FFHQ": "ffhq",
}


def link_data_folders(data: Path, sample: Path) -> None:
    """`data/<NAME>` -> the sample's folder of that dataset (each in its official layout), so a documented
    command's `/data/<NAME>` runs on the sample once `/data/` is replaced by `data`'s path."""
    data.mkdir(parents=True, exist_ok=True)
    for name, dataset in DATA_FOLDERS.items():
        (data / name).symlink_to(sample / dataset)
