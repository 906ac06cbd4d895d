"""Benchmark of the build driver's memory on a large image scan (issue 11: goal <= 1 GiB at 3 M rows).

    .venv/bin/python bench/driver_memory.py [--rows 3000000] [--keep]

Writes a synthetic VGGFace2-like scan (the source manifest's real columns: boxes, 5-point landmarks,
labels; rows in shuffled order, the worst case for planning), then runs the driver's own code in a
fresh subprocess: planning (pipeline.plan.make_plan), pulling every pending work shard from the lazy
generator, committing each with synthetic rows through the real shard writer (one source row and one
sample row per image, 1 % of them failed, as workers would), selecting the failed items for
--retry-failed, and merging manifest.parquet. The subprocess reports its own peak RSS (VmHWM),
which `report` prints. Ray is not started: its driver-side client adds a fixed
amount, independent of the number of rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is bench/driver_memory.py: put the repository first so `pipeline` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.runner import WorkShard

ROWS = 3_000_000
DATASET = "vggface2"
IMAGES_PER_IDENTITY = 360  # VGGFace2: 3.31 M images of 9,131 identities
FAIL_EVERY = 100  # one image in a hundred fails (missing or undecodable)


def write_scan(path: Path, rows: int, batch: int = 100_000, seed: int = 0) -> None:
    """A scan parquet (and its empty problems file) of `rows` VGGFace2-like images, in shuffled order."""
    from pipeline.sources.records import PROBLEM_SCHEMA
    from pipeline.sources.scan import MANIFEST_SCHEMA

    order = np.random.default_rng(seed).permutation(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, MANIFEST_SCHEMA) as writer:
        for start in range(0, rows, batch):
            index = order[start : start + batch]
            writer.write_table(_scan_rows(index, MANIFEST_SCHEMA))
    pq.write_table(PROBLEM_SCHEMA.empty_table(), path.with_name(f"{path.stem}.problems.parquet"))


def _scan_rows(index: np.ndarray, schema: pa.Schema) -> pa.Table:
    count = len(index)
    identity = [f"n{i // IMAGES_PER_IDENTITY:06d}" for i in index]
    native = [f"{who}/{i % IMAGES_PER_IDENTITY:04d}_01" for who, i in zip(identity, index, strict=True)]
    rng = np.random.default_rng(int(index[0]))
    boxes = rng.uniform(20, 200, (count, 4))
    landmarks = rng.uniform(20, 200, (count, 10)).astype(np.float32)
    columns = {
        "item_id": [f"{DATASET}/{n}" for n in native],
        "dataset": [DATASET] * count,
        "native_id": native,
        "modality": ["image"] * count,
        "media_path": [f"data/train/{n}.jpg" for n in native],
        "media_status": ["present"] * count,
        "split": ["train"] * count,
        "identity": [f"{DATASET}:{who}" for who in identity],
        "identity_kind": ["label"] * count,
        "license_tag": [f"{DATASET}:research-non-commercial"] * count,
        "media_cut": [True] * count,
        "geometry_space": ["media"] * count,
        "box": pa.FixedSizeListArray.from_arrays(boxes.ravel(), 4).cast(pa.list_(pa.float64())),
        "landmarks": pa.FixedSizeListArray.from_arrays(landmarks.ravel(), 10).cast(pa.list_(pa.float32())),
        "landmarks_kind": ["5pt"] * count,
        "labels": ['{"gender": "f"}'] * count,
        "root": ["/data/vggface2"] * count,
    }
    return pa.Table.from_arrays(
        [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(count, f.type) for f in schema],
        schema=schema,
    )


def _committed_rows(shard: WorkShard) -> list[dict[str, object]]:
    """What a worker would commit for a work shard of images: a source row and a sample row each."""
    rows: list[dict[str, object]] = []
    for item in shard.items:
        item_id = str(item["item_id"])
        failed = int(item_id.rsplit("/", 2)[-1][:4]) % FAIL_EVERY == 0
        source = {"item_id": item_id, "dataset": DATASET, "kind": "source", "shard": shard.work, "attempt": 0}
        if failed:
            rows.append(source | {"status": "failed", "reason": "decode_error", "error_class": "permanent"})
            continue
        rows.append(source | {"status": "ok", "frames": 1, "seconds_total": 0.05})
        key = item_id.replace("/", "_")
        sample = {"kind": "sample", "status": "ok", "key": key, "tar": f"shards/{shard.work}-00.tar"}
        rows.append(source | sample | {"frames": 1, "face_px": 120.0, "blur": 30.0, "yaw": 1.0, "pitch": 2.0})
    return rows


def _peak_gib() -> float:
    """This process's peak RSS. Linux's VmHWM, not getrusage: a child's ru_maxrss starts from its parent's
    peak (exec keeps the high-water mark of the memory it replaces), which would count the scan writer."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # KiB on Linux, bytes on macOS


def run_driver(out: Path) -> dict[str, float]:
    """The driver's path over the scan in `out/sources` (run in the measured subprocess). Returns the
    peak RSS and, per phase, its seconds and the peak RSS so far (which phase raised it)."""
    from manifests.schema import get_spec
    from pipeline.build import pending_shards
    from pipeline.config import BuildConfig
    from pipeline.manifest_merge import write_manifest
    from pipeline.plan import make_plan
    from pipeline.shards import WorkShardWriter

    cfg = BuildConfig()
    defaults = {DATASET: get_spec(DATASET).defaults}
    figures: dict[str, float] = {"peak_gib_imports": _peak_gib()}

    def phase(name: str, began: float) -> None:
        figures[f"seconds_{name}"] = time.perf_counter() - began
        figures[f"peak_gib_{name}"] = _peak_gib()

    began = time.perf_counter()
    make_plan([out / "sources" / f"{DATASET}.parquet"], out, cfg)
    phase("plan", began)
    began = time.perf_counter()
    shards = pending_shards(out, defaults, retry_failed=False)
    for shard in shards:  # a worker's commit, one shard at a time
        WorkShardWriter(out / "shards", shard.work, cfg.shard_max_bytes, cfg.shard_max_samples).commit(
            _committed_rows(shard), {"frames": 0, "seconds": 0.0}
        )
    phase("pending", began)
    began = time.perf_counter()
    retries = pending_shards(out, defaults, retry_failed=True)
    retried_items = sum(len(shard.items) for shard in retries)
    phase("retry", began)
    began = time.perf_counter()
    counts = write_manifest(out)
    phase("manifest", began)
    return {
        "peak_rss_gib": _peak_gib(),
        "work_shards": len(shards),
        "retry_shards": len(retries),
        "retried_items": retried_items,
        "manifest_rows": int(counts.rows.sum()),
        **figures,
    }


def measure_driver(rows: int = ROWS, work: Path | None = None, keep: bool = False) -> dict[str, float]:
    """Writes the scan here, runs the driver in a fresh subprocess, returns its figures: peak_rss_gib,
    counts, and per phase its seconds and the peak so far."""
    folder = Path(work or tempfile.mkdtemp(prefix="rp-driver-memory-"))
    try:
        write_scan(folder / "out" / "sources" / f"{DATASET}.parquet", rows)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(folder / "out")], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            raise RuntimeError(f"the driver subprocess failed:\n{child.stderr[-3000:]}")
        return json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def report(rows: int = ROWS, keep: bool = False) -> None:
    """Measures the driver on a `rows`-row scan and prints the bench line with its phases."""
    figures = measure_driver(rows, keep=keep)
    print(
        f"driver peak RSS on a {rows:,}-row image scan: {figures['peak_rss_gib']:.2f} GiB (goal <= 1 GiB); "
        f"{figures['work_shards']:,} work shards, {figures['manifest_rows']:,} manifest rows, "
        f"{figures['retried_items']:,} items selected for --retry-failed"
    )
    phases = [k[len("seconds_") :] for k in figures if k.startswith("seconds_")]
    print(
        "  by phase (seconds, peak RSS so far): imports -, "
        + f"{figures['peak_gib_imports']:.2f} GiB; "
        + "; ".join(
            f"{name} {figures[f'seconds_{name}']:.1f} s, {figures[f'peak_gib_{name}']:.2f} GiB" for name in phases
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS, help=f"scan rows (default {ROWS:,})")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic build directory")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the measured subprocess
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_driver(args.child)))
        return
    report(args.rows, keep=args.keep)


if __name__ == "__main__":
    main()
