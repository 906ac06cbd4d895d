"""Benchmark of the build's costs that must stay flat as a dataset grows (issue 25, item 7).

    .venv/bin/python bench/build_costs.py [--files 1000000] [--report-rows 3000000] [--clips 20] [--only report]

In one run it prints:
- the scan of a synthetic VGGFace2 tree of `--files` one-byte images (300 per identity folder): serial
  (one stat per item on the driver) against parallel (Ray tasks listing folder chunks), and the ratio;
- the peak RSS of `rp-data report` (its own process, read from getrusage) on a build whose shard tables
  hold `--report-rows` rows (goal: at most 1 GiB);
- the processing time of `--clips` one-second clips cut from one raw video, against the same clips as
  separate files, and against the raw video without the timeline cache (each clip demuxing it again).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PER_FOLDER = 300
GIB = 1 << 30


def bench_scan(folder: Path, files: int) -> None:
    from pipeline.sources.scan import scan

    root = folder / "vggface2"
    (root / "train").mkdir(parents=True)
    names = []
    for k in range(files):
        identity = f"n{k // PER_FOLDER:06d}"
        if k % PER_FOLDER == 0:
            (root / "train" / identity).mkdir()
        name = f"{identity}/{k % PER_FOLDER:04d}_01.jpg"
        (root / "train" / name).write_bytes(b"x")
        names.append(name)
    (root / "train_list.txt").write_text("\n".join(names) + "\n")
    timings = {}
    for label, threshold in (("serial", files * 10), ("parallel", 1)):
        started = time.perf_counter()
        scan("vggface2", root, out=folder / label / "vggface2.parquet", parallel_entries=threshold)
        timings[label] = time.perf_counter() - started
    same = pq.read_table(folder / "serial" / "vggface2.parquet").equals(
        pq.read_table(folder / "parallel" / "vggface2.parquet")
    )
    print(
        f"scan of {files} files: serial {timings['serial']:.1f} s, parallel {timings['parallel']:.1f} s "
        f"(Ray start included, {os.cpu_count()} CPUs), serial/parallel {timings['serial'] / timings['parallel']:.2f}; "
        f"same rows: {same}"
    )


def bench_report(folder: Path, rows: int) -> None:
    from pipeline.shards import MANIFEST_COLUMNS

    shards = folder / "build" / "shards"
    shards.mkdir(parents=True)
    (folder / "build" / "build.json").write_text(json.dumps({"fingerprint": "bench", "excluded_split": None}))
    per, rng = 100_000, np.random.default_rng(0)
    for index, first in enumerate(range(0, rows, per)):
        count, work = min(per, rows - first), f"vggface2-{index:05d}"
        ids = np.arange(first, first + count)
        sample = ids % 2 == 1
        status = np.where(rng.random(count) < 0.8, "ok", "filtered")
        table = {
            "item_id": [f"vggface2/n{i // 600:06d}/{i // 2 % 300:04d}_01" for i in ids],
            "dataset": ["vggface2"] * count,
            "kind": np.where(sample, "sample", "source").tolist(),
            "status": status.tolist(),
            "reason": np.where(status == "ok", None, "small_face").tolist(),
            "shard": [work] * count,
            "tar": np.where(sample, f"shards/{work}-00.tar", None).tolist(),
            "key": [
                f"vggface2_n{i // 600:06d}_{i // 2 % 300:04d}_01" if s else None
                for i, s in zip(ids, sample, strict=True)
            ],
            "frames": np.ones(count, dtype=np.int64),
            **{name: rng.random(count) * 90 for name in ("face_px", "blur", "yaw", "pitch", "roll", "seconds_total")},
            "attempt": np.zeros(count, dtype=np.int64),
        }
        full = {f.name: table.get(f.name, pa.nulls(count, f.type)) for f in MANIFEST_COLUMNS}
        pq.write_table(pa.table(full, schema=MANIFEST_COLUMNS), shards / f"{work}.parquet")
        (shards / f"{work}.stats.json").write_text(json.dumps({"samples": int(sample.sum()), "tars": []}))
    rp_data = Path(sys.executable).with_name("rp-data")
    started = time.perf_counter()
    done = subprocess.run([str(rp_data), "report", str(folder / "build")], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    ok = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    print(
        f"report of {rows} rows: peak RSS {peak / GIB:.2f} GiB (goal <= 1 GiB: {'met' if peak <= GIB else 'NOT met'}), "
        f"{seconds:.1f} s, {ok}"
    )


def bench_clips(folder: Path, clips: int) -> None:
    import av

    from manifests.schema import get_spec
    from pipeline.config import BuildConfig
    from pipeline.faces import open_detector, open_landmarker
    from pipeline.process import Models, process_item
    from pipeline.sample.render import Actor, Shot, render_video
    from pipeline.sources.records import SourceItem
    from pipeline.video_file import TIMELINES

    fps, size = 25, (320, 240)
    frames, _ = render_video([Shot((Actor("astronaut", (0.5, 0.45), 110),), fps * clips, scene=4)], size, seed=5)

    def write(path: Path, picture: np.ndarray) -> None:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = picture.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.options = {"crf": "18", "preset": "veryfast"}
            for frame in picture:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode(None))

    write(folder / "raw.mp4", frames)
    for k in range(clips):
        write(folder / f"clip{k:02d}.mp4", frames[k * fps : (k + 1) * fps])
    base = {"dataset": "mead", "modality": "video", "media_status": "present", "split": "train", "identity": None,
            "identity_kind": "none", "license_tag": "t:t"}  # fmt: skip
    cut = [SourceItem(**base, native_id=f"raw_{k}", media_path="raw.mp4", media_cut=False, time_unit="sec",
                      start=float(k), end=float(k + 1), end_inclusive=False) for k in range(clips)]  # fmt: skip
    separate = [SourceItem(**base, native_id=f"clip{k:02d}", media_path=f"clip{k:02d}.mp4") for k in range(clips)]
    cfg, defaults = BuildConfig(), get_spec("sample").defaults
    models = Models(open_detector(), open_landmarker())

    def run(items: list[SourceItem], cached: bool) -> float:
        TIMELINES.clear()
        started = time.perf_counter()
        for item in items:
            if not cached:
                TIMELINES.clear()
            process_item(item, folder, cfg, defaults, models, "bench")
        return time.perf_counter() - started

    run(separate[:1], True)  # models warm
    apart, together, uncached = run(separate, True), run(cut, True), run(cut, False)
    print(
        f"{clips} clips of 1 s: from one raw file {together:.2f} s, as separate files {apart:.2f} s "
        f"(one raw / separate {together / apart:.2f}); one raw without the timeline cache {uncached:.2f} s "
        f"(uncached / cached {uncached / together:.2f})"
    )


PARTS = {"clips": bench_clips, "report": bench_report, "scan": bench_scan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--files", type=int, default=1_000_000, help="files in the synthetic tree the scan lists (default: %(default)s)"
    )
    parser.add_argument(
        "--report-rows", type=int, default=3_000_000, help="manifest rows rp-data report tallies (default: %(default)s)"
    )
    parser.add_argument(
        "--clips",
        type=int,
        default=20,
        help="clips cut from one raw file, against as many files (default: %(default)s)",
    )
    parser.add_argument("--only", choices=sorted(PARTS), action="append", help="run only this part (repeatable)")
    args = parser.parse_args()
    sizes = {"clips": args.clips, "report": args.report_rows, "scan": args.files}
    for name in args.only or PARTS:
        with tempfile.TemporaryDirectory() as scratch:
            PARTS[name](Path(scratch), sizes[name])


if __name__ == "__main__":
    main()
