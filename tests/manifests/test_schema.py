from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from manifests.schema import DATASETS_DIR, IdentityKind, SpecError, load_registry, load_spec

EIGHT = {"vggface2", "celeba", "ffhq", "celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq"}


def test_registry_has_the_eight_datasets_and_the_sample() -> None:
    registry = load_registry()
    assert set(registry) == EIGHT | {"sample"}
    assert set(registry["sample"].members) == EIGHT
    assert registry["mead"].identity.kind is IdentityKind.actor
    assert registry["hdtf"].license.tag == "hdtf:cc-by-4.0"
    assert registry["sample"].defaults.min_face_px < registry["vfhq"].defaults.min_face_px
    for spec in registry.values():
        assert spec.layout.media, spec.name
        assert str(spec.license.terms_url).startswith("https://")


def _broken(tmp_path: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "registry"
    shutil.copytree(DATASETS_DIR, folder)
    data = yaml.safe_load((folder / f"{name}.yaml").read_text())
    edit(data)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return folder


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    folder = _broken(tmp_path, "vfhq", lambda d: d["license"].update(terms_url="not a url", commercial_use="maybe"))
    with pytest.raises(SpecError) as error:
        load_registry(folder)
    message = str(error.value)
    assert str(folder / "vfhq.yaml") in message
    assert "field 'license.terms_url'" in message and "field 'license.commercial_use'" in message


def test_unknown_fields_missing_fields_and_wrong_names_are_rejected(tmp_path: Path) -> None:
    folder = _broken(tmp_path, "hdtf", lambda d: (d.pop("identity"), d.update(fps_note="typo")))
    with pytest.raises(SpecError, match=r"hdtf\.yaml.*\n.*field 'identity': Field required"):
        load_spec(folder / "hdtf.yaml")
    with pytest.raises(SpecError, match="field 'fps_note': Extra inputs are not permitted"):
        load_spec(folder / "hdtf.yaml")
    renamed = tmp_path / "other.yaml"
    shutil.copy(DATASETS_DIR / "mead.yaml", renamed)
    with pytest.raises(SpecError, match=r"other\.yaml: field 'name' is 'mead'"):
        load_spec(renamed)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_defaults_and_members_are_checked(tmp_path: Path) -> None:
    folder = _broken(tmp_path, "celeba", lambda d: d["defaults"].update(min_clip_frames=50, max_clip_frames=10))
    with pytest.raises(SpecError, match=r"(?s)celeba\.yaml.*field 'defaults'.*max_clip_frames"):
        load_registry(folder)
    folder = _broken(tmp_path / "b", "sample", lambda d: d["members"].append("voxceleb"))
    with pytest.raises(SpecError, match=r"sample\.yaml: field 'members' names 'voxceleb'"):
        load_registry(folder)
