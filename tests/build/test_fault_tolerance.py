"""Workers that die during `rp-data build`, on real Ray: the CLI in a subprocess, a worker process killed
with SIGKILL as the OOM killer or a lost node would, and an item that kills every worker that reaches it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest
import webdataset as wds
from buildkit import RAY_NO_AUTH, RP_DATA, local_cluster, rp_data, samples

from pipeline.recovery import (
    MARKER_SUFFIX,
    DeathLedger,
    DeathSite,
    WorkerError,
    death_site,
    mark,
    marker_path,
)
from pipeline.runner import POISON_ENV
from pipeline.shards import WorkShardWriter, discard, is_committed, publish_if_current, stats_path


def test_only_the_marker_of_the_dispatch_that_died_says_where_it_died(tmp_path: Path) -> None:
    work, token, other = "vfhq-00000", "a1" * 16, "b2" * 16
    assert death_site(tmp_path, work, token) == DeathSite(started=False)
    mark(tmp_path, work, token, None)
    assert death_site(tmp_path, work, token) == DeathSite(started=True)
    mark(tmp_path, work, token, "vfhq/clip-1")
    assert death_site(tmp_path, work, token) == DeathSite(started=True, item_id="vfhq/clip-1")
    mark(tmp_path, work, other, "vfhq/clip-2")  # a stale worker of another dispatch writes its own marker
    assert death_site(tmp_path, work, token) == DeathSite(started=True, item_id="vfhq/clip-1")
    assert death_site(tmp_path, work, "c3" * 16) == DeathSite(started=False)  # an earlier dispatch's or run's
    assert death_site(tmp_path, "vfhq-00001", token) == DeathSite(started=False)
    marker_path(tmp_path, work, token).write_text('{"work": "vfhq-00000", "tok')  # torn by hand
    assert death_site(tmp_path, work, token) == DeathSite(started=False)
    (tmp_path / f"{marker_path(tmp_path, work, token).name}.{token}.tmp").write_text("{}")  # a killed writer's
    discard(tmp_path, work, token)
    assert [p.name for p in tmp_path.iterdir()] == [marker_path(tmp_path, work, other).name]
    discard(tmp_path, work, other)
    assert list(tmp_path.iterdir()) == []


def test_a_stale_dispatch_never_publishes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A worker whose node stalled stages the shard beside the worker it was sent to again: before and after
    the current dispatch is published, its late commit is refused and every file of it deleted."""
    work = "vfhq-00000"
    stale, current = (WorkShardWriter(tmp_path, work, 10**9, 1) for _ in range(2))  # one sample per tar
    mark(tmp_path, work, stale.token, "vfhq/b")
    mark(tmp_path, work, current.token, None)
    for writer, text in [(stale, b"stale"), (current, b"current")]:
        writer.add("vfhq_a", {"json": text})
    stale.add("vfhq_b", {"json": b"stale"})  # a second part the current dispatch does not have
    late = stale.stage([], {"frames": 1})
    assert not publish_if_current(tmp_path, work, stale.token, current.token, late)  # refused before...
    assert not is_committed(tmp_path, work) and not list(tmp_path.glob(f"*{stale.token}*"))
    names = current.stage([], {"frames": 2})
    assert publish_if_current(tmp_path, work, current.token, current.token, names)
    stale.add("vfhq_a", {"json": b"stale"})  # ... and after: it ran on, as a stalled node does once resumed
    assert not publish_if_current(tmp_path, work, stale.token, None, stale.stage([], {"frames": 1}))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{work}-00.tar", f"{work}.parquet", f"{work}.stats.json"]
    assert json.loads(stats_path(tmp_path, work).read_text())["frames"] == 2
    assert [s["json"] for s in wds.WebDataset(str(tmp_path / f"{work}-00.tar"), shardshuffle=False)] == [b"current"]


def test_deaths_are_held_against_the_item_the_shard_or_neither() -> None:
    ledger = DeathLedger(max_attempts=2, workers=3)
    death = RuntimeError("The actor died unexpectedly before finishing this task.")
    ledger.record("mead-00000", DeathSite(True, "mead/a"), death)
    assert ledger.isolated(["mead/a", "mead/b"]) == {}
    ledger.record("mead-00000", DeathSite(True, "mead/a"), death)
    isolated = ledger.isolated(["mead/a", "mead/b"])
    assert list(isolated) == ["mead/a"] and "all 2 attempts" in isolated["mead/a"]
    for _ in range(4):  # idle actors a lost node took down: max_attempts + workers - 1 are let pass
        ledger.record("mead-00002", DeathSite(False), death)
    with pytest.raises(WorkerError, match="mead-00002: its worker died 5 times before it could start it"):
        ledger.record("mead-00002", DeathSite(False), death)
    ledger.record("mead-00001", DeathSite(True), death)  # between items: no item to set aside
    with pytest.raises(WorkerError, match="mead-00001: its worker died 2 times outside any item"):
        ledger.record("mead-00001", DeathSite(True), death)


VIDEO_DATASETS = ("celebvhq", "hdtf", "mead", "talkinghead_1kh", "vfhq")  # an item of these takes a second or more


def _at_a_video(marker: Path) -> int | None:
    """The pid of the worker the marker says is at a video item (so it stays there a while), else None."""
    try:
        state = json.loads(marker.read_text())
    except (OSError, ValueError):  # renamed away meanwhile
        return None
    item_id = state.get("item_id") or ""
    return state.get("pid") if item_id.split("/")[0] in VIDEO_DATASETS else None


def _busy_worker(build: subprocess.Popen[bytes], out: Path, log: Path, hosts: Sequence[int] = ()) -> tuple[int, int]:
    """(pid, host) of one of this build's ShardWorker processes while it is building a video item (its
    work shard's marker names the item and the process), once two work shards are committed, so the death
    comes mid-build beside a live worker. Only descendants of the build (or of the given node processes,
    whose pid is returned as host) are looked at: other builds may be running."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert build.poll() is None, "the build ended before a worker could be killed: " + log.read_text()[-2000:]
        shard_dir = out / "shards"
        busy = {pid for marker in shard_dir.glob(f".*{MARKER_SUFFIX}") if (pid := _at_a_video(marker))}
        if len(list(shard_dir.glob("*.stats.json"))) >= 2 and busy:
            for host in hosts or [build.pid]:
                for process in psutil.Process(host).children(recursive=True):
                    try:
                        title = " ".join(process.cmdline())
                    except psutil.Error:
                        continue
                    if process.pid in busy and title.startswith("ray::ShardWorker.process"):
                        return process.pid, host
        time.sleep(0.05)
    pytest.fail("no ShardWorker was seen building a video item")


@contextmanager
def _sample_build(tmp_path: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`rp-data build --sample` into tmp_path/out, running in the background (output in `log`); ended if the
    test leaves it running."""
    command = [
        str(RP_DATA),
        "build",
        "--sample",
        "--sample-dir",
        str(tmp_path / "sample"),
        "--out",
        str(tmp_path / "out"),
    ]
    with log.open("w") as stream:
        build = subprocess.Popen(
            [*command, *args], stdout=stream, stderr=subprocess.STDOUT, env=os.environ | RAY_NO_AUTH
        )
        try:
            yield build
        finally:
            if build.poll() is None:
                build.kill()
                build.wait()


def _listed_tars(out: Path) -> set[str]:
    return {tar for stats in (out / "shards").glob("*.stats.json") for tar in json.loads(stats.read_text())["tars"]}


def _left_behind(out: Path) -> list[str]:
    """Markers, temporaries and tar parts that no committed shard lists."""
    shard_dir = out / "shards"
    stray = [p.name for p in shard_dir.iterdir() if p.name.startswith(".")]
    return stray + sorted({p.name for p in shard_dir.glob("*.tar")} - _listed_tars(out))


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_samples_are_unchanged(
    sample_build: tuple[Path, str], tmp_path: Path
) -> None:
    out, log = tmp_path / "out", tmp_path / "build.log"
    with _sample_build(tmp_path, log, "--workers", "2") as build:
        os.kill(_busy_worker(build, out, log)[0], signal.SIGKILL)
        assert build.wait(timeout=900) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "1 worker(s) lost, 1 work shard(s) retried" in text and "8 work shard(s) built" in text
    assert "workers lost 1, shards retried 1" in text  # the progress line said so as it happened
    undisturbed, rebuilt = samples(sample_build[0]), samples(out)
    assert len(undisturbed) >= 45 and sorted(rebuilt) == sorted(undisturbed)
    assert all(rebuilt[key] == undisturbed[key] for key in undisturbed)
    assert _left_behind(out) == []
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert "worker_died" not in set(manifest.reason.dropna())  # one death is retried, not held against an item


@pytest.mark.slow
def test_an_item_that_kills_its_worker_is_isolated(sample_build: tuple[Path, str], tmp_path: Path) -> None:
    reference = pd.read_parquet(sample_build[0] / "manifest.parquet")
    sources = reference[reference.kind == "source"]
    videos = sources[(sources.dataset == "celebvhq") & (sources.status == "ok")].item_id
    poison = sorted(videos)[0]  # the first item of its work shard: the rest of the shard comes after it
    out = tmp_path / "out"
    result = rp_data(
        "build",
        "--sample",
        "--sample-dir",
        str(tmp_path / "sample"),
        "--out",
        str(out),
        "--workers",
        "2",
        "--max-attempts",
        "2",
        env=os.environ | {POISON_ENV: poison},
    )
    assert "2 worker(s) lost, 2 work shard(s) retried" in result.stdout
    manifest = pd.read_parquet(out / "manifest.parquet")
    row = manifest[(manifest.item_id == poison) & (manifest.kind == "source")].iloc[0]
    assert (row.status, row.reason, row.error_class) == ("failed", "worker_died", "transient")
    assert "on all 2 attempts" in row.message and "worker process has died" in row.message
    assert not ((manifest.item_id == poison) & (manifest.kind == "sample")).any()
    shard = manifest[(manifest.shard == row.shard) & (manifest.kind == "source")]
    assert (shard.status == "ok").sum() >= 2  # the rest of its work shard was built
    # every other item: the status, reason and samples of the undisturbed build
    columns = ["item_id", "kind", "status", "reason", "key"]
    others = manifest[manifest.item_id != poison][columns].sort_values(columns).reset_index(drop=True)
    expected = reference[reference.item_id != poison][columns].sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(others, expected)
    undisturbed, built = samples(sample_build[0]), samples(out)
    poisoned_keys = set(reference[(reference.item_id == poison) & (reference.kind == "sample")].key)
    assert poisoned_keys and sorted(built) == sorted(set(undisturbed) - poisoned_keys)
    assert all(built[key] == undisturbed[key] for key in built)
    assert _left_behind(out) == []


@pytest.mark.slow
def test_a_lost_node_is_the_same_case(sample_build: tuple[Path, str], tmp_path: Path) -> None:
    """Two worker nodes of one CPU each and a head without CPUs (the driver's); the node of a worker that is
    building an item is taken down whole (raylet, object store, workers), as a lost machine would be."""
    out, log = tmp_path / "out", tmp_path / "build.log"
    with (
        local_cluster(tmp_path, head_cpus=0, node_cpus=(1, 1)) as cluster,
        _sample_build(tmp_path, log, "--ray-address", cluster.address) as build,  # --workers: the cluster's 2 CPUs
    ):
        _, host = _busy_worker(build, out, log, hosts=[node.pid for node in cluster.nodes])
        os.killpg(host, signal.SIGKILL)
        assert build.wait(timeout=900) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "1 worker(s) lost, 1 work shard(s) retried" in text and "8 work shard(s) built" in text
    undisturbed, rebuilt = samples(sample_build[0]), samples(out)
    assert sorted(rebuilt) == sorted(undisturbed) and all(rebuilt[key] == undisturbed[key] for key in undisturbed)
    assert _left_behind(out) == []
