"""The build driver on its own (no Ray): the streamed plan and manifest against the whole-table versions
they replace, what --retry-failed reads, the fingerprint's inputs, and resumes after a kill mid-write.

Builds are reused (the session's `sample_build`, built by the CLI) and copied without their tars: the
driver never opens a tar.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kit import item as video_item

from manifests.schema import DATASETS_DIR, get_spec, load_registry
from pipeline import atomic
from pipeline.build import BuildError, _record, build, build_fingerprint, resolved_defaults, scan_sources
from pipeline.config import BuildConfig
from pipeline.manifest_merge import annotation_rows, write_manifest
from pipeline.plan import PLAN_SCHEMA, Exclusion, failed_items, make_plan, rows_of, unbuilt_shards
from pipeline.shards import MANIFEST_COLUMNS, WorkShardWriter, stats_path
from pipeline.sources.scan import MANIFEST_SCHEMA as SCAN_SCHEMA
from pipeline.split import excluded_ids, load_split

RP_DATA = Path(sys.executable).with_name("rp-data")
SAMPLE_SPLIT = DATASETS_DIR.parent / "splits" / "sample.json"
SORT_KEYS = ["dataset", "item_id", "kind", "key"]


@pytest.fixture(scope="module")
def sample_scans(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return scan_sources([("sample", sample_root)], tmp_path_factory.mktemp("scans"))


def _driver_copy(build_dir: Path, to: Path) -> Path:
    """The build's driver-side files (everything but the tars), as a resumable build directory."""
    shutil.copytree(build_dir, to, ignore=shutil.ignore_patterns("*.tar"))
    return to


# -- the plan ------------------------------------------------------------------------------------------


def _whole_plan(items: pd.DataFrame, cfg: BuildConfig) -> pd.DataFrame:
    """The whole-table planning the stream replaces: a dataset's items in (media file, item_id) order (an
    image's item_id stands for its file), cut every N, a file's clips moved whole to the next shard when
    they would straddle a cut and fit in one."""
    items = items.assign(group=items.item_id.where(items.modality == "image", items.media_path))
    rows = []
    for dataset, group in items.sort_values(["group", "item_id"]).groupby("dataset", sort=True):
        per = cfg.images_per_shard if (group.modality == "image").all() else cfg.videos_per_shard
        shard, fill = 0, 0
        for _, clips in group.groupby("group", sort=False):
            if fill and fill + len(clips) > per:
                shard, fill = shard + 1, 0
            for item_id in clips.item_id:
                if fill == per:
                    shard, fill = shard + 1, 0
                rows.append({"work": f"{dataset}-{shard:05d}", "dataset": dataset, "item_id": item_id})
                fill += 1
    return pd.DataFrame(rows)


def test_the_streamed_plan_is_the_whole_table_plan_whatever_the_batch_sizes(
    sample_scans: list[Path], tmp_path: Path
) -> None:
    cfg = BuildConfig(videos_per_shard=2, images_per_shard=3)
    make_plan(sample_scans, tmp_path, cfg)
    whole = pq.read_table(tmp_path / "plan.parquet")
    items = pd.concat([pd.read_parquet(p) for p in sample_scans], ignore_index=True)
    expected = _whole_plan(items, cfg)
    assert whole.schema.equals(PLAN_SCHEMA)
    assert whole.select(["work", "dataset", "item_id"]).to_pandas().equals(expected)
    # every planned row is its scanned row, whole
    scanned = {row["item_id"]: row for row in pq.read_table(sample_scans[0]).to_pylist()}
    for row in whole.to_pylist():
        work = row.pop("work")
        assert row == scanned[row["item_id"]] and work.startswith(row["dataset"])
    # tiny batches and buckets (many bucket files, rows spread over them) give the same bytes of rows
    small = tmp_path / "small"
    small.mkdir()
    make_plan(sample_scans, small, cfg, batch_rows=3, bucket_rows=4)
    assert pq.read_table(small / "plan.parquet").equals(whole)
    assert not [p for p in small.iterdir() if atomic.is_temporary(p)]  # the bucket files are gone


def test_clips_of_one_raw_file_are_planned_onto_one_shard(tmp_path: Path) -> None:
    """CelebV-HQ-like clips whose ids interleave across raw files: each file's clips end up together, on
    one shard, unless a file has more clips than a shard holds; the plan is the same whatever the batches."""
    clips = {"a.mp4": 3, "b.mp4": 2, "c.mp4": 5, "d.mp4": 1, "e.mp4": 2}
    rows, n = [], 0
    for media, count in clips.items():
        for _ in range(count):
            # ids interleave the files: item_id order alone would scatter each file's clips
            native = f"clip{(n * 7) % 13:02d}"
            rows.append(video_item(media, native_id=native, dataset="celebvhq").row() | {"root": str(tmp_path)})
            n += 1
    scans = [tmp_path / "scan.parquet"]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCAN_SCHEMA), scans[0])
    cfg = BuildConfig(videos_per_shard=4)
    make_plan(scans, tmp_path, cfg)
    plan = pq.read_table(tmp_path / "plan.parquet").to_pandas()
    expected = _whole_plan(pd.DataFrame(rows), cfg)
    assert plan[["work", "dataset", "item_id"]].equals(expected)
    shards = plan.groupby("media_path").work.unique()
    assert all(len(shards[media]) == 1 for media in ("a.mp4", "b.mp4", "d.mp4", "e.mp4"))
    assert len(shards["c.mp4"]) == 2  # 5 clips: more than a shard holds
    assert plan.groupby("work").size().max() <= 4
    again = tmp_path / "again"
    again.mkdir()
    make_plan(scans, again, cfg, batch_rows=2, bucket_rows=3)
    assert pq.read_table(again / "plan.parquet").equals(pq.read_table(tmp_path / "plan.parquet"))


def test_the_evaluation_split_is_excluded_while_planning(sample_scans: list[Path], tmp_path: Path) -> None:
    youtube_ids, identities = excluded_ids(load_split(SAMPLE_SPLIT))
    exclusion = Exclusion(frozenset(youtube_ids), frozenset(identities), "held out by the test")
    make_plan(sample_scans, tmp_path, BuildConfig(), exclusion, batch_rows=5)
    items = pd.concat([pd.read_parquet(p) for p in sample_scans], ignore_index=True)
    hit = items.youtube_id.isin(youtube_ids) | items.identity.isin(identities)
    excluded = pd.read_parquet(tmp_path / "excluded.parquet")
    assert hit.sum() > 0 and sorted(excluded.item_id) == sorted(items[hit].item_id)
    assert set(excluded.reason) == {"excluded_split"} and set(excluded.status) == {"filtered"}
    planned = pd.read_parquet(tmp_path / "plan.parquet", columns=["item_id"])
    assert sorted(planned.item_id) == sorted(items[~hit].item_id)


def test_pending_shards_are_made_lazily_and_skip_committed_ones(
    sample_root: Path, sample_scans: list[Path], tmp_path: Path
) -> None:
    cfg = BuildConfig(videos_per_shard=2, images_per_shard=3)
    make_plan(sample_scans, tmp_path, cfg)
    defaults = resolved_defaults("sample", sample_root, cfg)
    plan = pd.read_parquet(tmp_path / "plan.parquet", columns=["work", "item_id"])
    pending = unbuilt_shards(tmp_path, defaults)
    assert len(pending) == plan.work.nunique()
    shards = iter(pending)
    first = next(shards)  # made without making the others
    assert first.work == plan.work.iloc[0] and [i["item_id"] for i in first.items] == list(
        plan[plan.work == first.work].item_id
    )
    WorkShardWriter(tmp_path / "shards", first.work, 10**9, 10**4).commit([], {"frames": 0})
    resumed = unbuilt_shards(tmp_path, defaults)
    assert len(resumed) == len(pending) - 1 and first.work not in {s.work for s in resumed}
    assert sorted(s.work for s in resumed) == sorted(set(plan.work) - {first.work})


def test_rows_of_equals_to_pylist_with_nulls_lists_and_slices() -> None:
    table = pa.table(
        {
            "i": pa.array([1, None, 3, 4], pa.int32()),
            "b": pa.array([True, None, False, True]),
            "f": pa.array([0.5, None, 2.0, 1.0]),
            "s": pa.array(["x", None, "z", ""]),
            "l": pa.array([[1.0, 2.0], None, [], [3.5]], pa.list_(pa.float32())),
            "n": pa.nulls(4, pa.string()),
        }
    )
    for part in (table, table.slice(1), pa.concat_tables([table.slice(0, 2), table.slice(2)])):
        assert rows_of(part) == part.to_pylist()


# -- what --retry-failed reads ---------------------------------------------------------------------------


def _rows(item: str, status: str, attempt: int, **values: object) -> dict[str, object]:
    return {"item_id": item, "dataset": "ffhq", "kind": "source", "status": status, "attempt": attempt, **values}


def _unreadable_row_group(path: Path, group: int) -> None:
    """Overwrites every page of one row group, keeping the footer (and its statistics) intact."""
    meta = pq.ParquetFile(path).metadata.row_group(group)
    data = bytearray(path.read_bytes())
    for index in range(meta.num_columns):
        column = meta.column(index)
        start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
        data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    path.write_bytes(bytes(data))


def test_retry_selection_reads_only_the_rows_of_failed_items(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    first = shards / "ffhq-00000.parquet"
    with pq.ParquetWriter(first, MANIFEST_COLUMNS) as writer:  # failed rows, then the others
        writer.write_table(
            pa.Table.from_pylist([_rows("ffhq/b", "failed", 0), _rows("ffhq/c", "failed", 0)], MANIFEST_COLUMNS)
        )
        ok = [_rows(f"ffhq/a{i}", "ok", 0) for i in range(50)] + [_rows("ffhq/a0", "ok", 0, kind="sample", key="a0")]
        writer.write_table(pa.Table.from_pylist(ok, MANIFEST_COLUMNS))
    stats_path(shards, "ffhq-00000").write_text("{}")
    _unreadable_row_group(first, 1)
    with pytest.raises(OSError):
        pq.read_table(first)  # reading any of the ok rows fails
    # c was retried and is fine now; d failed twice
    retry = [_rows("ffhq/c", "ok", 1), _rows("ffhq/d", "failed", 1)]
    WorkShardWriter(shards, "ffhq-00001-r1", 10**9, 10**4).commit(retry, {})
    WorkShardWriter(shards, "ffhq-00001", 10**9, 10**4).commit([_rows("ffhq/d", "failed", 0)], {})
    WorkShardWriter(shards, "ffhq-00002", 10**9, 10**4).commit([_rows("ffhq/e", "failed", 0)], {})
    (shards / "ffhq-00003.parquet").write_bytes(b"not committed: no stats file, never read")
    assert failed_items(shards) == {"ffhq/b": 0, "ffhq/d": 1, "ffhq/e": 0}


# -- the manifest ------------------------------------------------------------------------------------------


def _old_manifest(out: Path) -> pa.Table:
    """The whole-table merge the stream replaces (every committed row in one DataFrame)."""
    tables = [
        pq.read_table(p) for p in sorted((out / "shards").glob("*.parquet")) if stats_path(p.parent, p.stem).exists()
    ]
    if (out / "excluded.parquet").exists():
        tables.append(pq.read_table(out / "excluded.parquet"))
    rows = pa.concat_tables([t.cast(MANIFEST_COLUMNS) for t in tables]).to_pandas()
    rows = rows.sort_values("attempt", kind="stable")
    rows = rows[rows.attempt == rows.groupby("item_id")["attempt"].transform("max")]
    annotation = pd.DataFrame(annotation_rows(out), columns=MANIFEST_COLUMNS.names)
    manifest = pd.concat([rows, annotation], ignore_index=True) if len(annotation) else rows
    manifest = manifest.sort_values(SORT_KEYS, na_position="first", kind="stable").reset_index(drop=True)
    return pa.Table.from_pandas(manifest, schema=MANIFEST_COLUMNS, preserve_index=False)


def test_the_streamed_manifest_equals_the_whole_table_merge(sample_build: tuple[Path, str], tmp_path: Path) -> None:
    build_dir = sample_build[0]
    assert pq.read_table(build_dir / "manifest.parquet").equals(_old_manifest(build_dir))
    out = _driver_copy(build_dir, tmp_path / "out")
    manifest = pd.read_parquet(out / "manifest.parquet")
    failed = manifest[(manifest.kind == "source") & (manifest.status == "failed")]
    fixed, again = failed.iloc[0], failed.iloc[1]
    # retries: one failed item succeeds at attempt 1, another fails again and succeeds at attempt 2
    for item, attempt, status in ((fixed, 1, "ok"), (again, 1, "failed"), (again, 2, "ok")):
        rows = [_rows(item.item_id, status, attempt, dataset=item.dataset)]
        if status == "ok":
            rows.append(_rows(item.item_id, "ok", attempt, dataset=item.dataset, kind="sample", key=f"k{attempt}"))
        WorkShardWriter(out / "shards", f"{item.shard}-r{attempt}", 10**9, 10**4).commit(rows, {})
    # excluded items falling before, between and after the shards' ranges, and in a dataset of their own
    extra = [("celeba/000000", "celeba"), ("celeba/000004x", "celeba"), ("vggface2/zzz", "vggface2"), ("aaa/1", "aaa")]
    excluded = [_rows(i, "filtered", 0, dataset=d, reason="excluded_split") for i, d in extra]
    pq.write_table(pa.Table.from_pylist(excluded, MANIFEST_COLUMNS), out / "excluded.parquet")
    counts = write_manifest(out)
    merged = pq.read_table(out / "manifest.parquet")
    assert merged.equals(_old_manifest(out))
    rows = merged.to_pandas()
    latest = rows[rows.kind == "source"].set_index("item_id")
    assert latest.loc[fixed.item_id].attempt == 1 and latest.loc[again.item_id].attempt == 2
    assert counts.rows.sum() == len(rows) and len(rows[rows.item_id == again.item_id]) == 2
    by_status = rows.groupby(["dataset", "kind", "status"], dropna=False).size()
    assert (counts.groupby(["dataset", "kind", "status"], dropna=False).rows.sum() == by_status).all()


# -- the fingerprint ---------------------------------------------------------------------------------------


def _edited_registry(to: Path, dataset: str, **defaults: object) -> Path:
    shutil.copytree(DATASETS_DIR, to)
    path = to / f"{dataset}.yaml"
    text = path.read_text()
    old = get_spec(dataset).defaults
    new = old.model_copy(update=defaults)
    line = next(line for line in text.splitlines() if line.startswith("defaults:"))
    path.write_text(text.replace(line, "defaults: " + json.dumps(new.model_dump(mode="json"))))
    assert load_registry(to)[dataset].defaults == new != old
    return to


def test_the_fingerprint_follows_the_defaults_in_effect_and_the_model_files(sample_root: Path, tmp_path: Path) -> None:
    cfg = BuildConfig()
    ffhq = sample_root / "ffhq"
    registry = load_registry()
    edited = load_registry(_edited_registry(tmp_path / "registry", "ffhq", min_face_px=96))
    current, inputs = build_fingerprint(cfg, resolved_defaults("ffhq", ffhq, cfg, registry))
    assert build_fingerprint(cfg, resolved_defaults("ffhq", ffhq, cfg, registry))[0] == current  # stable
    changed, _ = build_fingerprint(cfg, resolved_defaults("ffhq", ffhq, cfg, edited))
    assert changed != current
    # a config override of the registry's defaults is the same change, made the other way
    override = BuildConfig(defaults={"ffhq": edited["ffhq"].defaults})
    assert build_fingerprint(override, resolved_defaults("ffhq", ffhq, override, registry))[0] not in (current, changed)
    assert {"av", "cv2", "mediapipe", "numpy", "PIL", "scenedetect", "webdataset"} <= set(inputs["libraries"])
    assert inputs["libraries"]["av"].startswith("av ")
    assert any(name.endswith("face_landmark_with_attention.tflite") for name in inputs["models"])
    # insightface: the SCRFD file in face_model_dir is hashed, and onnxruntime's version counts
    models = tmp_path / "pack"
    models.mkdir()
    (models / "det_10g.onnx").write_bytes(b"weights one")
    scrfd = BuildConfig(face_backend="insightface", face_model_dir=models)
    defaults = resolved_defaults("ffhq", ffhq, scrfd, registry)
    one, scrfd_inputs = build_fingerprint(scrfd, defaults)
    assert "insightface/det_10g.onnx" in scrfd_inputs["models"] and "onnxruntime" in scrfd_inputs["libraries"]
    (models / "det_10g.onnx").write_bytes(b"weights two")
    assert build_fingerprint(scrfd, defaults)[0] != one
    (models / "det_10g.onnx").unlink()
    with pytest.raises(BuildError, match="no SCRFD face detector model"):
        build_fingerprint(scrfd, defaults)


def test_a_resume_under_edited_registry_defaults_is_refused(sample_root: Path, tmp_path: Path) -> None:
    cfg = BuildConfig()
    sources = [("ffhq", sample_root / "ffhq")]
    edited = load_registry(_edited_registry(tmp_path / "registry", "ffhq", min_face_px=96))
    out = tmp_path / "out"
    out.mkdir()
    fingerprint, inputs = build_fingerprint(cfg, resolved_defaults("ffhq", sample_root / "ffhq", cfg, edited))
    _record(out, cfg, fingerprint, inputs, sources, None, False)  # the first run, before the edit
    current, now = build_fingerprint(cfg, resolved_defaults("ffhq", sample_root / "ffhq", cfg))
    with pytest.raises(BuildError, match=r"dataset default ffhq\.min_face_px: 96 -> 128"):
        _record(out, cfg, current, now, sources, None, False)
    # the CLI computes the same inputs and refuses the same way, before any work
    result = subprocess.run(
        [str(RP_DATA), "build", "--source", f"ffhq={sample_root / 'ffhq'}", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "fingerprint" in result.stdout and "Traceback" not in result.stderr
    assert "min_face_px" in " ".join(result.stdout.split())
    assert not (out / "plan.parquet").exists() and not (out / "sources").exists()


# -- atomic writes and resumes --------------------------------------------------------------------------


def test_a_resume_removes_stale_temporaries_only(sample_build: tuple[Path, str], tmp_path: Path) -> None:
    build_dir = sample_build[0]
    out = _driver_copy(build_dir, tmp_path / "out")
    stale = [
        out / ".plan.parquet.4242.tmp",
        out / ".manifest.parquet.4242.tmp",
        out / ".plan-bucket-00000.parquet.4242.tmp",
        out / "sources" / ".sample.parquet.4242.tmp",
        out / "sources" / ".sample.problems.parquet.4242.tmp",
        out / "shards" / ".celeba-00000-00.tar.4242.tmp",
        out / "shards" / ".celeba-00000.parquet.4242.tmp",
        out / "shards" / ".celeba-00000.stats.json.4242.tmp",
    ]
    kept = [
        out / "notes.tmp",
        out / ".hidden",
        out / "shards" / ".celeba-00000.tar.tmp",
        out / "sources" / "x.4242.tmp",
    ]
    for path in stale + kept:
        path.write_bytes(b"half")
    before = {p: p.read_bytes() for p in (out / "shards").glob("*.parquet")}
    result = build([("sample", build_dir.parent / "sample")], out, BuildConfig())  # every shard done: no Ray
    assert result.progress.total == 0 and result.skipped == 8
    assert not [p for p in stale if p.exists()] and all(p.read_bytes() == b"half" for p in kept)
    assert {p: p.read_bytes() for p in (out / "shards").glob("*.parquet")} == before
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(build_dir / "manifest.parquet"))


def test_a_kill_mid_write_of_build_json_leaves_a_usable_dir(sample_build: tuple[Path, str], tmp_path: Path) -> None:
    build_dir = sample_build[0]
    out = _driver_copy(build_dir, tmp_path / "out")
    record = (out / "build.json").read_text()
    # killed while writing build.json: only its temporary, half written, is there
    (out / "build.json").unlink()
    (out / f".build.json.{os.getpid() + 1}.tmp").write_text(record[: len(record) // 2])
    result = build([("sample", build_dir.parent / "sample")], out, BuildConfig())
    assert (
        result.progress.total == 0
        and json.loads((out / "build.json").read_text())["fingerprint"] == json.loads(record)["fingerprint"]
    )
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    # a build.json broken some other way is named, not a traceback
    (out / "build.json").write_text(record[:10])
    with pytest.raises(BuildError, match=r"build\.json: unreadable"):
        build([("sample", build_dir.parent / "sample")], out, BuildConfig())


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "build.json"
    atomic.write_text(path, "old")
    with pytest.raises(RuntimeError), atomic.replacing(path) as tmp:
        tmp.write_text("half of the n")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    assert atomic.is_temporary(atomic.temporary(path)) and not atomic.is_temporary(path)
