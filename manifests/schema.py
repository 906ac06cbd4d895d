"""The dataset registry's schema: every spec under `manifests/datasets/` is validated against it.

A spec is the single declarative description of a dataset: where its official download lands, which
annotation files carry what, where identities and splits come from, its licence, and the defaults the
pipeline applies to it. Adapters read their per-dataset options from `options`, validated by the
adapter's own model, so a typo in a spec fails at load time with the file and field named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from manifests.yaml_files import read_mapping, validate

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
USER_REGISTRY_ENV = "RP_DATA_REGISTRY"  # the user's own specs (folder sources), when not in the config dir
FOLDER_ADAPTER = "folder"
RESERVED_NAMES = ("new", "folder")  # `rp-data datasets new|folder` are commands, not specs


class SpecError(ValueError):
    """A registry spec that cannot be used; the message names the file and the offending field."""


class IdentityKind(str, Enum):
    """How much an identity label can be trusted (datasets.md §10 pairing rule)."""

    label = "label"  # curated class labels (VGGFace2, CelebA)
    actor = "actor"  # lab-recorded actor ids (MEAD)
    name = "name"  # a person's name from the file naming (HDTF)
    proxy_video = "proxy_video"  # same source video, not necessarily the same person
    proxy_track = "proxy_track"  # one person track within one source video (VFHQ pid)
    none = "none"  # nothing links images of one person (FFHQ)


class Modality(str, Enum):
    image = "image"
    video = "video"
    mixed = "mixed"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """A root-relative path template and what it holds.

    `{field}` placeholders are filled by the adapter (e.g. `{split}`, `{ytid}`), so the file naming
    lives here in the registry and the adapter only knows the role (`train_list`, `raw_video`, ...).
    """

    path: str
    holds: str
    required: bool = True

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"must be relative to the dataset root, got {value!r}")
        return value


class Layout(_Strict):
    """Where the official download lands, relative to the root the user passes to `--root`."""

    download: str = Field(description="the official tool or archive that produces this layout")
    annotations: dict[str, FileEntry] = Field(default_factory=dict)
    media: dict[str, FileEntry] = Field(min_length=1)

    def annotation(self, role: str, **fields: str) -> str:
        return self.annotations[role].path.format(**fields)

    def media_path(self, role: str, **fields: str) -> str:
        return self.media[role].path.format(**fields)


class IdentitySource(_Strict):
    kind: IdentityKind
    source: str
    notes: str = ""


class SplitSource(_Strict):
    official: bool
    values: list[str] = Field(min_length=1)
    source: str


class Native(_Strict):
    size: str
    resolution: str
    fps: str | None = None
    audio: str | None = None


class License(_Strict):
    tag: str = Field(pattern=r"^[a-z0-9_]+:[a-z0-9._-]+$")
    summary: str
    terms_url: HttpUrl | None = Field(None, description="the terms page; none for one's own footage")
    commercial_use: bool
    redistribution: bool


class PipelineDefaults(_Strict):
    """Per-dataset knobs the build stage starts from (a build config may override them)."""

    min_face_px: int = Field(128, ge=16, description="smallest face box side kept, in source pixels")
    min_clip_frames: int = Field(16, ge=1, description="shortest clip kept (the paper trains on L=16)")
    max_clip_frames: int = Field(300, ge=1)
    target_fps: float | None = Field(25.0, gt=0, description="clips are re-encoded at this rate")
    scene_detection: bool = Field(True, description="split on scene cuts inside official ranges")
    min_sharpness: float = Field(
        10.0, ge=0, description="blur filter: variance of the Laplacian on the face at 128 px (pipeline.controls)"
    )
    image_context_scale: float = Field(
        2.0, ge=1.0, description="image samples keep a face-centred crop this many times the 512 crop"
    )

    @model_validator(mode="after")
    def _lengths(self) -> PipelineDefaults:
        if self.max_clip_frames < self.min_clip_frames:
            raise ValueError("max_clip_frames must be >= min_clip_frames")
        return self


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    modality: Modality
    adapter: str = Field(description="the pipeline/sources adapter that reads this layout")
    homepage: HttpUrl | None = None
    layout: Layout
    identity: IdentitySource
    split: SplitSource
    native: Native
    license: License
    pitfalls: list[str] = Field(default_factory=list, description="the traps the adapter handles")
    defaults: PipelineDefaults = Field(default_factory=PipelineDefaults)
    options: dict[str, Any] = Field(default_factory=dict, description="adapter-specific, see its Options")
    members: list[str] = Field(default_factory=list, description="for composite specs: member datasets")


def load_spec(path: Path) -> DatasetSpec:
    """Read and validate one spec; every failure is a SpecError naming the file (and field)."""
    path = Path(path)
    raw = read_mapping(path, "dataset spec", SpecError)
    spec = validate(DatasetSpec, raw, str(path), "dataset spec", SpecError)
    if spec.name != path.stem:
        raise SpecError(f"{path}: field 'name' is {spec.name!r} but the file is named {path.stem!r}")
    return spec


def user_registry_dir() -> Path:
    """Where `rp-data datasets new` writes and every command finds the user's own specs: $RP_DATA_REGISTRY,
    else realportrait/datasets under the XDG config folder, which keeps them out of the repository (a
    pull never touches them) and in one place for every checkout."""
    if os.environ.get(USER_REGISTRY_ENV):
        return Path(os.environ[USER_REGISTRY_ENV]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "realportrait" / "datasets"


def source_name_problem(name: str, official: Iterable[str]) -> str | None:
    """Why `name` cannot name a folder source, or None.

    Work shards are named `<dataset>-<index>` and every reader splits the dataset off at the first "-"
    (training/data.py, pipeline/plan.py), so a name with a "-" (or a "." or a capital, which other
    tools fold) would be read as another dataset; an official name would mix two datasets' shards.
    """
    if not re.fullmatch(r"[a-z0-9_]+", name):
        return f"{name!r} is not a folder source name: use lowercase letters, digits and underscores only"
    if name in set(official):
        return f"{name!r} is an official dataset's name: choose another name for your own footage"
    if name in RESERVED_NAMES:
        return f"{name!r} is a word of `rp-data datasets` ({', '.join(RESERVED_NAMES)}): choose another name"
    return None


def load_registry(directory: Path = DATASETS_DIR) -> dict[str, DatasetSpec]:
    """All specs of one registry folder, keyed by name, with composite members checked to exist."""
    specs = {path.stem: load_spec(path) for path in sorted(Path(directory).glob("*.yaml"))}
    _check_members(specs, Path(directory))
    return specs


def load_specs(user: Path | None = None) -> dict[str, DatasetSpec]:
    """The official specs with the user's own (`user`, default `user_registry_dir()`) added.

    A user spec of an official name replaces it (an edited copy of the registry still works as one); a
    folder spec must have a name of its own (`source_name_problem`).
    """
    specs = load_registry(DATASETS_DIR)
    official = set(specs)
    folder = Path(user) if user is not None else user_registry_dir()
    if folder.is_dir() and folder.resolve() != DATASETS_DIR:
        for path in sorted(folder.glob("*.yaml")):
            spec = load_spec(path)
            problem = source_name_problem(spec.name, official) if spec.adapter == FOLDER_ADAPTER else None
            if problem:
                raise SpecError(f"{path}: field 'name': {problem}")
            specs[spec.name] = spec
        _check_members(specs, folder)
    return specs


def _check_members(specs: dict[str, DatasetSpec], directory: Path) -> None:
    for spec in specs.values():
        for member in spec.members:
            if member not in specs:
                raise SpecError(
                    f"{directory / (spec.name + '.yaml')}: field 'members' names {member!r}, "
                    "which has no spec in the registry"
                )


def get_spec(name: str, directory: Path = DATASETS_DIR) -> DatasetSpec:
    path = Path(directory) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in Path(directory).glob("*.yaml")))
        raise SpecError(f"no dataset spec named {name!r} in {directory} (known: {known})")
    return load_spec(path)
