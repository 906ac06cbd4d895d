"""The embedded sample: each of the eight datasets in its official layout, a few items each.

Made from real face photos that installed packages ship (see portraits.py), animated with smooth head
motion and expression, with scene cuts where a dataset has them, and with bad items planted on purpose
(PLANTED) so that every failure path of the pipeline runs on every machine. The video files are written
as each dataset's real files are (recording.py): BT.709-tagged HD downloads, a full-range phone recording
stored on its side at a variable frame rate, odd-sized VP9, 4:2:2 and 10-bit studio cameras, and untagged
files. Deterministic: the same bytes on every run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.sample import celeba, celebvhq, ffhq, hdtf, mead, talkinghead_1kh, vfhq, vggface2

WRITERS: dict[str, Callable[[Path], None]] = {
    "vggface2": vggface2.write,
    "celeba": celeba.write,
    "ffhq": ffhq.write,
    "celebvhq": celebvhq.write,
    "talkinghead_1kh": talkinghead_1kh.write,
    "hdtf": hdtf.write,
    "mead": mead.write,
    "vfhq": vfhq.write,
}


@dataclass(frozen=True)
class Planted:
    """A bad item written on purpose, and the reason the stage that can see it must give."""

    dataset: str
    path: str  # relative to the dataset's folder
    what: str
    scan_reason: str | None  # what `rp-data scan --probe --faces` reports for it (None: nothing, it is usable)


PLANTED = (
    Planted("vggface2", "train/n000002/0003_01.jpg", "missing file referenced by train_list.txt", "missing_media"),
    Planted("vggface2", "bb_landmark/loose_bb_train.csv", "malformed annotation line", "malformed_line"),
    Planted("celeba", "Img/img_celeba/000008.jpg", "image with two faces", None),  # its wild box names the subject
    Planted("ffhq", "images1024x1024/00000/00002.png", "missing file referenced by the JSON", "missing_media"),
    Planted("celebvhq", "downloaded_celebvhq/processed/Yk7_pQ3vW1s_0.mp4", "truncated mp4", "unreadable_media"),
    Planted("talkinghead_1kh", "data_list/train_video_tubes.txt", "malformed annotation line", "malformed_line"),
    Planted("hdtf", "RD_Radio3_000.mp4", "clip with no face", "no_face"),
    Planted("mead", "M003/video/front/angry/level_1/003.mp4", "zero-byte file", "empty_file"),
    Planted(
        "vfhq", "meta_info/train/Clip+Ab3_dE-7fGh+P1+C1+F100-130.txt", "malformed annotation line", "malformed_line"
    ),
)


@dataclass(frozen=True)
class SampleSummary:
    files: int
    bytes: int


def write_sample(out: Path) -> SampleSummary:
    """Writes every dataset folder under `out`, each built aside and swapped in when complete."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, write in WRITERS.items():
        staging = out / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        write(staging)
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    files = [p for name in WRITERS for p in (out / name).rglob("*") if p.is_file()]
    return SampleSummary(len(files), sum(p.stat().st_size for p in files))
