"""The spec of a folder source (one's own footage), as `rp-data datasets new` writes it into the user's
registry folder (manifests.schema.user_registry_dir) and as `--source NAME=folder:PATH` uses it unwritten.

It is an ordinary registry spec: its pipeline defaults (face size, clip lengths, fps, crop scale), its
licence and its adapter options (extensions, identity mode, sidecar) are edited as an official spec's are.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from manifests.schema import FOLDER_ADAPTER, DatasetSpec, SpecError, load_spec, source_name_problem
from manifests.schema import load_registry as load_official
from manifests.yaml_files import validate

HEADER = """\
# A folder source: every video and image under the root, one item per file (rp-data datasets folder).
# Edit it as an official spec: `defaults` (min_face_px, clip lengths, target_fps, image_context_scale),
# `license`, and `options` (video_extensions, image_extensions, identity: folder|file|none, sidecar).
"""


def folder_spec(name: str, root: Path | None = None) -> DatasetSpec:
    """A folder source's spec with the project's defaults; refused for a name readers would misread."""
    problem = source_name_problem(name, load_official())
    if problem:
        raise SpecError(problem)
    raw = {
        "name": name,
        "title": f"{name}: own footage",
        "modality": "mixed",
        "adapter": FOLDER_ADAPTER,
        "layout": {
            "download": "your own videos and photos, in any folders below the root",
            "annotations": {
                "sidecar": {
                    "path": "sidecar.csv",
                    "holds": "optional: path, identity, split, start, end, unit, box, tags (or sidecar.jsonl)",
                    "required": False,
                }
            },
            "media": {"file": {"path": "**/{file}", "holds": "every video and image below the root, recursively"}},
        },
        "identity": {
            "kind": "label",
            "source": "the sidecar's identity column, else options.identity: the first folder below the root",
        },
        "split": {"official": False, "values": ["train", "val", "test", "unsplit"], "source": "the sidecar's split"},
        "native": {"size": "yours", "resolution": "any"},
        "license": {
            "tag": f"{name}:own",
            "summary": "your own footage: state here who may use it and how",
            "commercial_use": False,
            "redistribution": False,
        },
        "options": {"root": str(Path(root).resolve()) if root is not None else None},
    }
    return validate(DatasetSpec, raw, f"folder source {name}", "dataset spec", SpecError)


def spec_text(spec: DatasetSpec) -> str:
    body = spec.model_dump(mode="json", exclude_none=True)
    return HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def write_user_spec(spec: DatasetSpec, folder: Path, replace: bool = False) -> Path:
    """Writes the spec as FOLDER/NAME.yaml, refusing to replace an existing one unless asked; reads it
    back through the registry's own validation."""
    path = Path(folder) / f"{spec.name}.yaml"
    if path.exists() and not replace:
        raise SpecError(f"{path} exists: edit it, or give --force to write it anew")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(spec), encoding="utf-8")
    load_spec(path)
    return path


FOLDER_PREFIX = "folder:"


def resolve_sources(given: list[tuple[str, str | None]], registry: dict[str, DatasetSpec]) -> list[tuple[str, Path]]:
    """(name, root) of each `--source`: NAME=PATH as before; NAME=folder:PATH a folder source, with the
    user's spec of that name when there is one (else the defaults, added to `registry`); NAME alone a
    folder source whose spec records its root (`rp-data datasets new NAME --root PATH`)."""
    resolved = []
    for name, text in given:
        spec = registry.get(name)
        if text is None:
            root = spec.options.get("root") if spec is not None and spec.adapter == FOLDER_ADAPTER else None
            if not root:
                raise SpecError(f"--source {name}: give NAME=PATH; only a folder source's spec may record its root")
            resolved.append((name, Path(root)))
        elif text.startswith(FOLDER_PREFIX):
            if spec is None or spec.adapter != FOLDER_ADAPTER:
                registry[name] = folder_spec(name)
            resolved.append((name, Path(text[len(FOLDER_PREFIX) :])))
        else:
            resolved.append((name, Path(text)))
    return resolved
