from __future__ import annotations

import json
from pathlib import Path

from kit import reasons, run_adapter

from manifests.schema import get_spec
from pipeline.sources import open_adapter
from pipeline.sources.records import Problem


def test_sample_layout(sample_root: Path) -> None:
    items, problems = run_adapter("ffhq", sample_root / "ffhq")
    assert [item.native_id for item in items] == ["00000", "00001", "00002", "60000"]
    assert [item.split for item in items] == ["train", "train", "train", "val"]
    assert [item.license_tag for item in items] == [
        "ffhq:pdm-1.0",
        "ffhq:cc-by-2.0",
        "ffhq:cc-by-nc-2.0",
        "ffhq:cc-by-2.0",
    ]
    assert items[3].media_path == "images1024x1024/60000/60000.png"
    assert all(item.identity is None and item.identity_kind == "none" for item in items)
    assert all(len(item.landmarks) == 136 and item.landmarks_kind == "68pt_dlib" for item in items)
    assert all(0 < v < 1024 for item in items for v in item.landmarks)
    assert reasons(problems) == [("images1024x1024/00000/00002.png", "missing_media")]


def _entry(index: int, **changes: object) -> dict:
    entry = {
        "category": "training",
        "metadata": {"license": "Some Custom Licence v3"},
        "image": {
            "file_path": f"images1024x1024/00000/{index:05d}.png",
            "pixel_size": [1024, 1024],
            "face_landmarks": [[512.0, 400.0]] * 68,
        },
        "thumbnail": {"file_path": f"thumbnails128x128/00000/{index:05d}.png", "pixel_size": [128, 128]},
    }
    entry.update(changes)
    return entry


def test_broken_entries_and_a_cut_json_are_reported_not_fatal(tmp_path: Path) -> None:
    text = json.dumps({"0": _entry(0), "1": _entry(1, category="holdout"), "2": _entry(2)})
    (tmp_path / "ffhq-dataset-v2.json").write_text(text[: text.rindex('"2"') + 12])  # cut inside entry 2
    items, problems = run_adapter("ffhq", tmp_path)
    assert [item.native_id for item in items] == ["00000"]
    assert items[0].license_tag == "ffhq:some-custom-licence-v3"  # unknown licences are kept, slugged
    assert reasons(problems) == [
        ("ffhq-dataset-v2.json", "malformed_entry"),
        ("ffhq-dataset-v2.json", "unreadable_file"),
        ("images1024x1024/00000/00000.png", "missing_media"),
    ]


def test_thumbnail_variant_rescales_landmarks(tmp_path: Path) -> None:
    (tmp_path / "ffhq-dataset-v2.json").write_text(json.dumps({"7": _entry(7)}))
    spec = get_spec("ffhq").model_copy(update={"options": {"variant": "thumbnail"}})
    problems: list[Problem] = []
    (item,) = open_adapter(spec, tmp_path, problems.append).items()
    assert item.media_path == "thumbnails128x128/00000/00007.png"
    assert (item.space_w, item.space_h) == (128, 128)
    assert item.landmarks[:2] == (64.0, 50.0)
