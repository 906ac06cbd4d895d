"""The build's small parts on their own: tracking, crops, shard files, config."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from manifests.schema import SpecError
from pipeline.config import BuildConfig, MediaLimits, load_config
from pipeline.faces import Face
from pipeline.shards import WorkShardWriter, is_committed
from pipeline.sources.records import TooLarge
from pipeline.tracking import face_runs, stable_crop


def _face(x: float, y: float, side: float = 50.0) -> Face:
    return Face((x, y, x + side, y + side), 0.9)


def test_runs_bridge_one_missed_detection_and_end_on_a_lost_face() -> None:
    samples = {0: [_face(10, 10)], 5: [], 10: [_face(12, 10)], 15: [], 20: [], 25: [_face(14, 10)], 29: [_face(14, 10)]}
    runs = face_runs(samples, 30, prominent_ratio=0.25, max_missed=1)
    assert [(r.start, r.stop) for r in runs] == [(0, 11), (25, 30)]
    assert runs[0].boxes.shape == (11, 4) and runs[0].boxes[5, 0] == pytest.approx(11.0)  # interpolated
    # a face that jumps elsewhere is not the same track: it starts its own run where it appeared
    jump = face_runs({0: [_face(10, 10)], 5: [_face(300, 300)], 9: [_face(300, 300)]}, 10, 0.25)
    assert [(r.start, r.stop) for r in jump] == [(0, 1), (5, 10)]
    crowd = face_runs(
        {0: [_face(10, 10), _face(100, 10)], 5: [_face(10, 10)], 9: [_face(10, 10), _face(9, 200, 10)]}, 10, 0.25
    )
    assert crowd[0].multi_face_fraction == pytest.approx(1 / 3)  # the small third face does not count


def test_stable_crop_is_square_inside_the_frame_and_holds_every_box() -> None:
    boxes = np.array([[100.0, 80, 150, 140], [130, 90, 180, 150], [110, 85, 160, 145]])
    x0, y0, x1, y1 = stable_crop(boxes, 2.2, 640, 360)
    assert x1 - x0 == y1 - y0 and x0 >= 0 and x1 <= 640 and y0 >= 0 and y1 <= 360
    assert x0 <= boxes[:, 0].min() and x1 >= boxes[:, 2].max() and y0 <= boxes[:, 1].min() and y1 >= boxes[:, 3].max()
    assert stable_crop(np.array([[0.0, 0, 300, 300]]), 2.2, 320, 240) == (30, 0, 270, 240)  # clamped to the frame


def test_work_shard_files_are_atomic_capped_and_byte_stable(tmp_path: Path) -> None:
    def write(folder: Path) -> WorkShardWriter:
        writer = WorkShardWriter(folder, "ds-00000", max_bytes=2500, max_samples=10)
        for index in range(5):
            writer.add(f"ds_k{index}", {"json": json.dumps({"i": index}).encode(), "jpg": bytes(1000)})
        assert not is_committed(folder, "ds-00000")
        writer.commit([{"item_id": "ds/x", "dataset": "ds", "kind": "source", "status": "ok"}], {"frames": 5})
        return writer

    writer = write(tmp_path / "a")
    assert writer.tars == ["ds-00000-00.tar", "ds-00000-01.tar", "ds-00000-02.tar"]  # two samples per 2.5 kB
    assert is_committed(tmp_path / "a", "ds-00000") and not list((tmp_path / "a").glob(".*"))
    write(tmp_path / "b")
    for name in writer.tars:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "a" / "ds-00000-{00..02}.tar"), shardshuffle=False)]
    assert keys == [f"ds_k{i}" for i in range(5)]
    with tarfile.open(tmp_path / "a" / "ds-00000-00.tar") as archive:
        assert {m.mtime for m in archive.getmembers()} == {0}
    stats = json.loads((tmp_path / "a" / "ds-00000.stats.json").read_text())
    assert stats["samples"] == 5 and stats["tars"] == writer.tars


def test_config_overrides_fingerprint_and_errors(tmp_path: Path) -> None:
    base = BuildConfig()
    tuned = load_config(None, ["crf=20", "filters.max_abs_yaw=50", "defaults.vfhq.min_face_px=200"])
    assert tuned.crf == 20 and tuned.filters.max_abs_yaw == 50 and tuned.defaults["vfhq"].min_face_px == 200
    assert base.fingerprint() == BuildConfig().fingerprint() != tuned.fingerprint()
    path = tmp_path / "build.yaml"
    path.write_text("crf: 80\nfilters: {on_scene_cut: merge}\n")
    with pytest.raises(SpecError) as error:
        load_config(path)
    assert "build.yaml" in str(error.value) and "field 'crf'" in str(error.value)
    assert "field 'filters.on_scene_cut'" in str(error.value)
    with pytest.raises(SpecError, match="not key=value"):
        load_config(None, ["crf"])
    assert np.load(io.BytesIO(__import__("pipeline.shards", fromlist=["npy_bytes"]).npy_bytes(np.ones(3)))).sum() == 3


def test_media_limits_default_to_8k_and_hours_and_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    base = BuildConfig()
    assert (base.max_pixels, base.max_seconds) == (7680 * 4320, 4 * 3600.0)
    assert base.limits == MediaLimits(7680 * 4320, 4 * 3600.0)
    longer = load_config(None, ["max_seconds=36000"])
    assert longer.limits.max_seconds == 36000 and longer.fingerprint() != base.fingerprint()
    with pytest.raises(SpecError, match="field 'max_pixels'"):
        load_config(None, ["max_pixels=0"])
    limits = MediaLimits(max_pixels=7680 * 4320, max_seconds=60.0)
    limits.check(tmp_path / "x.mp4", 7680, 4320, 60.0)  # at the limits: accepted
    limits.check(tmp_path / "x.mp4", 0, 0, None)  # a header that states neither: left to the timeline read
    with pytest.raises(TooLarge, match=r"x.mp4: 7681x4320 is 33181920 pixels, above max_pixels=33177600"):
        limits.check(tmp_path / "x.mp4", 7681, 4320, 1.0)
    with pytest.raises(TooLarge, match=r"x.mp4: inf s long, above max_seconds=60"):
        limits.check(tmp_path / "x.mp4", 640, 480, float("inf"))
