from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
import numpy as np
import pandas as pd

from pipeline.sample import PLANTED
from pipeline.sample.files import truncate
from pipeline.sample.render import write_mp4
from pipeline.sources.base import KeyedLookahead
from pipeline.sources.probe import probe
from pipeline.sources.scan import scan

ITEMS = {"vggface2": 10, "celeba": 8, "ffhq": 4, "celebvhq": 5, "talkinghead_1kh": 3, "hdtf": 10, "mead": 23, "vfhq": 3}


def test_sample_scan_with_probe_writes_manifests_and_reports_every_planted_problem(
    sample_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "manifest.parquet"
    results = scan("sample", sample_root, out=out, probe_media=True, workers=4, check_faces=True)
    assert {r.dataset: r.items for r in results} == ITEMS
    problems = pd.read_parquet(tmp_path / "manifest.problems.parquet")
    reported = set(zip(problems.dataset, problems.file, problems.reason, strict=True))
    for planted in PLANTED:
        if planted.scan_reason is None:  # a group photo whose annotation boxes the subject: nothing to report
            assert not any((d, f) == (planted.dataset, planted.path) for d, f, _ in reported), planted
        else:
            assert (planted.dataset, planted.path, planted.scan_reason) in reported, planted
    # the face check finds the planted faceless clip, and nothing else
    faces = {(d, f, r) for d, f, r in reported if r in ("no_face", "multiple_faces")}
    assert faces == {(p.dataset, p.path, p.scan_reason) for p in PLANTED if "face" in (p.scan_reason or "")}
    assert len(problems) == sum(sum(r.problems.values()) for r in results)
    items = pd.read_parquet(out)
    assert len(items) == sum(ITEMS.values()) and items.item_id.is_unique
    assert set(items.root) == {str((sample_root / name).resolve()) for name in ITEMS}
    statuses = Counter(items.media_status)
    assert statuses == {"ok": 61, "missing": 3, "unreadable": 1, "empty": 1}
    truncated = items.set_index("item_id").loc["celebvhq/Yk7_pQ3vW1s_0"]
    assert truncated.media_status == "unreadable"
    vfhq = items.set_index("item_id").loc["vfhq/Clip+Zz9-yX_8wVu+P0+C2+F10-50"]
    assert len(vfhq.crop) == 4 and vfhq.crop[2] > vfhq.crop[0]
    assert len(vfhq.frame_boxes) == 41 * 4 and vfhq.fps == 25.0


def test_without_probe_nothing_is_opened(sample_root: Path) -> None:
    results = scan("celebvhq", sample_root / "celebvhq")
    assert results[0].media == {"present": 5} and not results[0].problems


def test_probe_catches_a_truncated_file_whose_index_comes_first(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    plain = tmp_path / "plain.mp4"
    write_mp4(plain, frames, 25)
    fast = tmp_path / "fast.mp4"  # moov at the front, as a 'faststart' download has it
    with av.open(str(plain)) as source, av.open(str(fast), "w", options={"movflags": "faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    assert probe(fast, "video") is None and probe(plain, "video") is None
    truncate(fast, 0.6)
    assert "truncated" in probe(fast, "video")
    truncate(plain, 0.6)
    assert "InvalidDataError" in probe(plain, "video")  # no index at all
    (tmp_path / "cut.jpg").write_bytes((Path(__file__).parent / "test_scan.py").read_bytes()[:10])
    assert probe(tmp_path / "cut.jpg", "image") is not None


def test_keyed_lookahead_joins_in_any_order() -> None:
    rows = KeyedLookahead([("a", 1), ("b", 2), ("d", 4), ("c", 3)])
    assert [rows.pop(k) for k in ("a", "c", "x", "b")] == [1, 3, None, 2]
    assert list(rows.leftovers()) == [("d", 4)]
    streamed = KeyedLookahead(iter([(str(i), i) for i in range(5)]))
    assert streamed.pop("0") == 0 and streamed._pending == {}  # in order: nothing is held
