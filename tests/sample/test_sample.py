from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.sample import PLANTED, WRITERS, write_sample
from pipeline.sources.scan import resolve_targets


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_same_bytes_on_every_run(sample_root: Path, tmp_path: Path) -> None:
    second = tmp_path / "again"
    summary = write_sample(second)
    assert tree_digest(second) == tree_digest(sample_root)
    assert 2e6 < summary.bytes < 8e6  # "a few MB"
    # rewriting over an existing sample replaces it: stale files do not survive
    (second / "hdtf" / "stale.mp4").write_bytes(b"old")
    write_sample(second)
    assert tree_digest(second) == tree_digest(sample_root)


def test_one_folder_per_registry_member_and_planted_files(sample_root: Path) -> None:
    members = [spec.name for spec, _ in resolve_targets("sample", sample_root)]
    assert sorted(members) == sorted(WRITERS)
    assert sorted(p.name for p in sample_root.iterdir()) == sorted(WRITERS)
    sizes = {p.dataset + "/" + p.path: (sample_root / p.dataset / p.path) for p in PLANTED}
    assert not sizes["vggface2/train/n000002/0003_01.jpg"].exists()
    assert sizes["mead/M003/video/front/angry/level_1/003.mp4"].stat().st_size == 0
    assert sizes["celebvhq/downloaded_celebvhq/processed/Yk7_pQ3vW1s_0.mp4"].stat().st_size > 0
    assert (sample_root / "hdtf" / "HDTF_dataset" / "WDA_video_url.txt").read_bytes().startswith(b"\xef\xbb\xbf")
