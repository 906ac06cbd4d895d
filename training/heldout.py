"""The evaluation split kept out of training, checked on the build before a run starts and recorded with its exports.

`exclude_splits: [test]` trusts each sample's own `split` label, and CelebV-HQ has none (its items are
`unsplit`), so a build made without `rp-data build --exclude-split` can hold the very clips the test
split evaluates. The config's `data.heldout_split` names the split file instead, and the build is
matched against it with the same rule as `--exclude-split`: a sample is held out when its item is one of
the split's clips, or comes from one of their YouTube videos (another interval or person of the same
video), or has one of their identities. Its source video and identity come from the build's own source
manifests (`sources/*.parquet`), its item from the work shards' parquet, so nothing is decoded.

`data.heldout_policy` then filters those samples out (the loader skips them, counted `unfit:held_out`) or
refuses the build; either way the run says which, how many, and which items, before any process group
forms. Every exported model (a checkpoint's `ema/`, a stage's `export/`, `training.export`) carries
`heldout_split.json`: the split file's path and sha256, what was filtered, and the record of the export
the stage started from, so `rp-eval run --method ours` can warn when the evaluated split was not the one
held out at every stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.schema import SpecError
from pipeline.split import load_split
from pipeline.storage import Location
from training.build_record import committed_shards, source_manifests
from training.config import ConfigError, DataConfig

RECORD = "heldout_split.json"
FORMAT = "realportrait-heldout/1"
SHOWN = 10  # items named in a message; the count is always whole


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class HeldOutSplit:
    """The split file's clips, their videos and identities (what `rp-data build --exclude-split` holds out)."""

    path: Path
    sha256: str
    clips: frozenset[str]
    videos: frozenset[str]
    identities: frozenset[str]

    @classmethod
    def read(cls, path: Path) -> HeldOutSplit:
        try:
            split = load_split(path)
        except SpecError as error:
            raise ConfigError(f"data.heldout_split: {error}") from error
        return cls(
            Path(path),
            file_sha256(path),
            frozenset(clip.item_id for clip in split.clips),
            frozenset(clip.youtube_id for clip in split.clips if clip.youtube_id),
            frozenset(clip.identity for clip in split.clips if clip.identity),
        )


@dataclass(frozen=True)
class Leak:
    """A sample of the build that belongs to the held-out split; `why` is clip, video or identity."""

    key: str
    item_id: str
    why: str


def _related_items(build_dir: Location, split: HeldOutSplit) -> dict[str, str]:
    """item_id -> why, for every source item of the build that is a split clip or shares its video or identity."""
    filesystem, manifests = source_manifests(
        build_dir, "data.heldout_split: the build's videos and identities cannot be matched against the split"
    )
    related: dict[str, str] = {}
    clips = pa.array(sorted(split.clips), pa.string())
    videos = pa.array(sorted(split.videos), pa.string())
    identities = pa.array(sorted(split.identities), pa.string())
    for path in manifests:
        for batch in pq.ParquetFile(path, filesystem=filesystem).iter_batches(
            columns=["item_id", "youtube_id", "identity"]
        ):
            same_video = pc.fill_null(pc.is_in(batch["youtube_id"], videos), False)
            same_identity = pc.fill_null(pc.is_in(batch["identity"], identities), False)
            hit = pc.or_(pc.or_(pc.is_in(batch["item_id"], clips), same_video), same_identity)
            rows = pa.Table.from_batches([batch]).filter(hit)  # few rows: only these reach Python
            for item_id, video in zip(rows["item_id"].to_pylist(), rows["youtube_id"].to_pylist(), strict=True):
                if item_id in split.clips:
                    related[item_id] = "clip"
                elif video in split.videos:
                    related[item_id] = "video"
                else:
                    related[item_id] = "identity"
    return related


def find_leaks(build_dir: Location, split: HeldOutSplit) -> list[Leak]:
    """The committed samples of the build (work shards with a stats file) that the split holds out, by key."""
    related = _related_items(build_dir, split)
    leaks: list[Leak] = []
    if not related:
        return leaks
    wanted = pa.array(sorted(related), pa.string())
    for _, rows in committed_shards(build_dir, ["kind", "status", "key", "item_id"]):
        rows = rows.filter(
            pc.and_(
                pc.and_(pc.equal(rows["kind"], "sample"), pc.equal(rows["status"], "ok")),
                pc.is_in(rows["item_id"], wanted),
            )
        )
        leaks += [
            Leak(key, item_id, related[item_id])
            for key, item_id in zip(rows["key"].to_pylist(), rows["item_id"].to_pylist(), strict=True)
        ]
    return sorted(leaks, key=lambda leak: leak.key)


@dataclass(frozen=True)
class HeldOutPlan:
    """What a run does about the split: the split, the build's samples of it, and the policy."""

    split: HeldOutSplit
    build_dir: Location
    policy: str
    leaks: tuple[Leak, ...]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(leak.key for leak in self.leaks)

    def describe(self) -> str:
        """One paragraph: the split, how many samples and items of it the build holds, why, and what is done."""
        head = f"data.heldout_split {self.split.path} (sha256 {self.split.sha256[:12]}, {len(self.split.clips)} clips)"
        if not self.leaks:
            return f"{head}: the build {self.build_dir} holds none of its clips, videos or identities"
        items = sorted({leak.item_id for leak in self.leaks})
        why = Counter(leak.why for leak in {leak.item_id: leak for leak in self.leaks}.values())
        reasons = ", ".join(f"{why[name]} {label}" for name, label in REASONS.items() if why[name])
        shown = ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
        action = "filtered out (skipped by the loader as unfit:held_out)" if self.policy == "filter" else "refused"
        return (
            f"{head}: the build {self.build_dir} holds {len(self.leaks)} sample(s) of {len(items)} item(s) of it "
            f"({reasons}): {action}: {shown}"
        )


REASONS = {
    "clip": "the split's own clips",
    "video": "other clips of the split's videos",
    "identity": "of the split's identities",
}


@functools.lru_cache(maxsize=4)
def _plan(build_dir: Location, split_path: Path, policy: str, modified: int) -> HeldOutPlan:
    """Cached: the config asks for it once before training and again for each stage's loader (`modified`
    is the split file's mtime, so a rewritten file is read again)."""
    split = HeldOutSplit.read(split_path)
    return HeldOutPlan(split, build_dir, policy, tuple(find_leaks(build_dir, split)))


def plan_heldout(data: DataConfig) -> HeldOutPlan | None:
    """The config's plan (None without `data.heldout_split`); refuses the build under the `refuse` policy."""
    if data.heldout_split is None:
        return None
    if not data.heldout_split.is_file():
        raise ConfigError(
            f"data.heldout_split: {data.heldout_split} not found: the evaluation split file (rp-data split --out "
            f"{data.heldout_split}); data.heldout_split=null trains without holding it out, and the exports say so"
        )
    plan = _plan(data.build_dir, data.heldout_split, data.heldout_policy, data.heldout_split.stat().st_mtime_ns)
    if plan.leaks and plan.policy == "refuse":
        raise ConfigError(
            f"{plan.describe()}. Rebuild with `rp-data build ... --exclude-split {plan.split.path}`, or set "
            "data.heldout_policy=filter to train without them"
        )
    return plan


def heldout_keys(data: DataConfig) -> frozenset[str]:
    """Sample keys the loader must skip (empty without a split or when the build holds none of it)."""
    plan = plan_heldout(data)
    return frozenset() if plan is None else plan.keys


# -- the record beside exported weights ------------------------------------------------------------


def read_record(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def stage_record(data: DataConfig, parent: Path | None) -> dict[str, Any]:
    """What a stage's exports say about the held-out split; `parent` is the export the stage started from."""
    plan = plan_heldout(data)
    split = None
    if plan is not None:
        split = {"path": str(plan.split.path), "sha256": plan.split.sha256, "clips": len(plan.split.clips)}
    return {
        "format": FORMAT,
        "split": split,
        "policy": data.heldout_policy,
        "filtered_samples": 0 if plan is None else len(plan.leaks),
        "build_dir": str(data.build_dir),
        "exclude_splits": list(data.exclude_splits),
        "init_from": None if parent is None else {"path": str(parent), "record": read_record(parent)},
    }


def write_record(folder: Path, record: dict[str, Any]) -> None:
    path = Path(folder) / RECORD
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def _problem(record: dict[str, Any] | None, where: str, split: Path, digest: str) -> str | None:
    """Why the weights at `where` are not known to hold `split` out, or None."""
    if record is None:
        return f"{where} has no {RECORD}: nothing says the evaluated split {split} was held out of its training"
    held = record.get("split")
    if held is None:
        return f"{where} was trained without data.heldout_split: the evaluated split {split} was not checked"
    if held["sha256"] != digest:
        return (
            f"{where} was trained with {held['path']} (sha256 {held['sha256'][:12]}) held out, not the evaluated "
            f"split {split} (sha256 {digest[:12]})"
        )
    parent = record.get("init_from")
    if parent is not None:
        return _problem(parent["record"], f"{parent['path']} (the weights {where} started from)", split, digest)
    return None


def checkpoint_warnings(checkpoint: Path, split: Path) -> list[str]:
    """The evaluation's warning when a checkpoint was not trained with `split` held out (at every stage)."""
    problem = _problem(read_record(checkpoint), f"the checkpoint {checkpoint}", split, file_sha256(split))
    return [] if problem is None else [problem]
