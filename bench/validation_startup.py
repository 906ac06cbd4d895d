"""What choosing the validation clips costs at a stage's start: the tar scan it replaced against the choice
from the build's record (`training.validation_picks`), on a build whose unsplit clips sort first.

    .venv/bin/python bench/validation_startup.py [--unsplit 1000] [--pairs 4] [--frames 16] [--size 64]

The build is written as `rp-data build` writes one (`pipeline.shards.WorkShardWriter`: tars, each work
shard's parquet, the stats file; the source manifest `sources/<name>.parquet`), with tiny clips: a
`celebvhq` work shard of `--unsplit` unsplit clips (as CelebV-HQ is), then a `vfhq` one of training
clips followed by `--pairs` validation clips. Dataset names sort the unsplit ones first, as CelebV-HQ and
HDTF do in a real build. Each clip is an H.264 mp4 of `--frames` frames at `--size` px with the
landmarks, pose and box arrays of a real sample (478 landmarks per frame).

The scan is the replaced `load_clips`: every tar in the build's order, every member streamed (what
webdataset's `tarfile_to_samples` reads), each sample's json parsed, until `--pairs` validation clips
are found. The choice reads the parquet files, then only the chosen samples. Both decode the same
clips afterwards, which is left out. Printed: tars opened, bytes read and seconds of each, and their
ratios. Every rank does this once per stage, so the saving is per rank and per stage.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/validation_startup.py: put the repository first so `pipeline` and `training` are the packages.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline.encode import encode_h264  # noqa: E402
from pipeline.process import sample_members  # noqa: E402
from pipeline.shards import WorkShardWriter  # noqa: E402
from pipeline.sources.records import ITEM_SCHEMA  # noqa: E402
from training.data import read_index  # noqa: E402
from training.validation_picks import ReadCost, pick_clips, read_picks  # noqa: E402

LANDMARKS = 478
FPS = 25.0


@dataclass(frozen=True)
class SplitBuild:
    """The build's folder, its validation clips' keys in tar order and the tars that hold them."""

    build_dir: Path
    validation_keys: list[str]
    validation_tars: list[Path]


def _clip_members(key: str, item_id: str, dataset: str, split: str, video: bytes, frames: int) -> dict[str, bytes]:
    meta = {"key": key, "item_id": item_id, "dataset": dataset, "kind": "clip", "split": split}
    meta.update(frames=frames, fps=FPS)
    landmarks = np.zeros((frames, LANDMARKS, 2), np.float32)
    return sample_members("mp4", video, meta, landmarks, np.zeros((frames, 3)), np.zeros((frames, 4)))


def _work_shard(
    build_dir: Path, work: str, clips: list[tuple[str, str, bytes]], frames: int, per_tar: int
) -> dict[str, Path]:
    """Writes one work shard of (item_id, split, mp4) clips; returns key -> its tar."""
    dataset = work.split("-", 1)[0]
    writer = WorkShardWriter(build_dir / "shards", work, max_bytes=10**12, max_samples=per_tar)
    rows, where = [], {}
    for index, (item_id, split, video) in enumerate(clips):
        key = f"{dataset}_{index:05d}_c000"
        tar = writer.add(key, _clip_members(key, item_id, dataset, split, video, frames))
        where[key] = build_dir / tar
        rows.append(
            {"item_id": item_id, "dataset": dataset, "kind": "sample", "status": "ok", "tar": tar, "key": key}
            | {"frames": frames, "attempt": 0}
        )
    writer.commit(rows, {})
    return where


def write_split_build(
    build_dir: Path, *, unsplit: int, pairs: int, frames: int, size: int, train: int = 6, per_tar: int = 250
) -> SplitBuild:
    """A build of `unsplit` unsplit clips (`per_tar` to a tar) sorted before `train` training clips and `pairs`
    validation clips, the first of them in the training clips' tar (validation clip i is filled with grey
    level 40 * (i + 1) % 256, so a test can tell which was read)."""
    rng = np.random.default_rng(0)
    filler = encode_h264(rng.integers(0, 256, (frames, size, size, 3), np.uint8), FPS)
    grey = [encode_h264(np.full((frames, size, size, 3), 40 * (i + 1) % 256, np.uint8), FPS) for i in range(pairs)]
    unsplit_clips = [(f"celebvhq/{i:05d}", "unsplit", filler) for i in range(unsplit)]
    split_clips = [(f"vfhq/train{i:03d}", "train", filler) for i in range(train)]
    split_clips += [(f"vfhq/val{i:03d}", "val", video) for i, video in enumerate(grey)]
    items = [
        {"item_id": item_id, "dataset": item_id.split("/")[0], "split": split} for item_id, split, _ in unsplit_clips
    ]
    items += [{"item_id": item_id, "dataset": "vfhq", "split": split} for item_id, split, _ in split_clips]
    (build_dir / "sources").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(items, schema=ITEM_SCHEMA), build_dir / "sources" / "sources.parquet")
    _work_shard(build_dir, "celebvhq-00000", unsplit_clips, frames, per_tar)
    where = _work_shard(build_dir, "vfhq-00000", split_clips, frames, train + 1)  # 2 tars; the 1st mixes splits
    keys = list(where)[train:]
    return SplitBuild(build_dir, keys, sorted({where[key] for key in keys}))


def scan_cost(build_dir: Path, splits: list[str], span: int, pairs: int) -> ReadCost:
    """The replaced choice: stream every member of every tar in the build's order until `pairs` clips of
    `splits` with `span` frames are found (the samples' json says their split)."""
    cost, found = ReadCost(), 0
    for entry in read_index(build_dir):
        if entry.clips == 0:
            continue
        cost.tars.append(entry.path)
        with open(entry.path, "rb") as raw, tarfile.open(fileobj=_Counted(raw, cost), mode="r|") as archive:
            for member in archive:
                data = archive.extractfile(member)
                content = b"" if data is None else data.read()
                if member.name.endswith(".json"):
                    meta = json.loads(content)
                    found += meta["kind"] == "clip" and meta["split"] in splits and meta["frames"] >= span
                    if found == pairs:
                        return cost
    return cost


class _Counted(io.RawIOBase):
    """A stream that adds every byte read to a ReadCost."""

    def __init__(self, raw: io.BufferedReader, cost: ReadCost) -> None:
        self.raw, self.cost = raw, cost

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.cost.bytes += len(data)
        return data


def choice_cost(build_dir: Path, splits: list[str], span: int, pairs: int) -> ReadCost:
    cost = ReadCost()
    read_picks(pick_clips(build_dir, splits, span=span, count=pairs), cost)
    return cost


def timed(measure: Callable[..., ReadCost], *args: object) -> tuple[ReadCost, float]:
    began = time.perf_counter()
    cost = measure(*args)
    return cost, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unsplit", type=int, default=1000, help="unsplit clips sorted before the validation clips")
    parser.add_argument("--pairs", type=int, default=4, help="validation clips (validation.pairs)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="clip side in pixels")
    args = parser.parse_args()
    splits = ["val", "test"]
    with tempfile.TemporaryDirectory() as scratch:
        build = write_split_build(
            Path(scratch) / "build", unsplit=args.unsplit, pairs=args.pairs, frames=args.frames, size=args.size
        )
        total = sum(path.stat().st_size for path in (build.build_dir / "shards").glob("*.tar"))
        print(
            f"build: {args.unsplit} unsplit clips, then {args.pairs} validation clips ({args.frames} frames of "
            f"{args.size} px); {len(read_index(build.build_dir))} tars, {total / 1e6:.1f} MB"
        )
        scan, scan_seconds = timed(scan_cost, build.build_dir, splits, args.frames, args.pairs)
        choice, choice_seconds = timed(choice_cost, build.build_dir, splits, args.frames, args.pairs)
        print(f"{'':<22}{'tars opened':>12}{'MB read':>10}{'seconds':>10}")
        for name, cost, seconds in (
            ("tar scan (before)", scan, scan_seconds),
            ("record (after)", choice, choice_seconds),
        ):
            print(f"{name:<22}{len(cost.tars):>12}{cost.bytes / 1e6:>10.3f}{seconds:>10.3f}")
        print(
            f"ratio before/after: tars {len(scan.tars) / len(choice.tars):.1f}x, bytes "
            f"{scan.bytes / choice.bytes:.0f}x, seconds {scan_seconds / choice_seconds:.1f}x (per rank, per stage)"
        )


if __name__ == "__main__":
    main()
