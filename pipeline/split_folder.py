"""The frozen test split of a folder source (one's own footage), drawn as the official one is
(pipeline/split.py): clips ranked by sha256("facetest-v1:<dataset>:<id>"), walked in that order through
the same media check (`faces`: the build's detector, tracker, crop and scene cuts; or `probe`), frozen with
media sha256s and cross-identity pairs, verified the same way.

What stands in for the official rules: a folder has no YouTube ids, so the unit kept apart is the
identity (and `--train-manifest`, a check of YouTube ids, has nothing to compare). A clip needs one
(`no_identity`), one clip represents each identity (`identity_duplicate`), and `rp-data build
--exclude-split` then keeps every item of a test identity out of training, so the split is
identity-disjoint. A clip must last as long as the official clip datasets' shortest test clip
(`thresholds.celebvhq_min_seconds`, 5 s: `too_short`), measured on its sidecar range or, without one, on the
video's header. The pool is the sidecar's `test` rows when there are any, else every clip.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import av

from manifests.schema import DatasetSpec
from pipeline.sources.records import Problem, SourceItem
from pipeline.split import (
    DEFAULT_THRESHOLDS,
    CheckLevel,
    CheckResult,
    DatasetCounts,
    Fingerprint,
    Ranked,
    Split,
    Thresholds,
    cross_pairs,
    faces_check,
    rank_key,
    read_items,
    readable,
    walk,
)

log = logging.getLogger(__name__)
Check = Callable[[SourceItem], CheckResult]


def folder_pool(items: Sequence[SourceItem], dataset: str) -> tuple[list[SourceItem], str, list[str]]:
    """(pool, its split, notes): the sidecar's test rows, or every item when it names none."""
    test = [item for item in items if item.split == "test"]
    if test:
        return test, "test", []
    note = f"{dataset}: no sidecar row of split 'test': the pool is every item"
    log.warning(note)
    return list(items), "all", [note]


def rank_folder_pool(pool: Sequence[SourceItem]) -> list[Ranked]:
    """The pool in ranking order, each clip marked eligible or not; the best-ranked clip of an identity
    represents it."""
    ranked = sorted((Ranked(rank_key(item.dataset, item.native_id), item) for item in pool), key=lambda r: r.key)
    representative: dict[str, str] = {}
    out = []
    for entry in ranked:
        item = entry.item
        rule = None
        if item.modality not in ("video", "frames"):
            rule = "not_a_clip", f"{item.media_path} is a photo"
        elif item.identity is None:
            rule = "no_identity", "no sidecar identity and no folder to take it from"
        elif item.identity in representative:
            rule = "identity_duplicate", f"{representative[item.identity]} represents {item.identity}"
        if rule is None:
            representative[item.identity] = item.item_id  # type: ignore[index]
            out.append(entry)
        else:
            out.append(Ranked(entry.key, item, *rule))
    return out


def clip_seconds(path: Path, item: SourceItem) -> float:
    """How long the clip lasts: its sidecar range (frames over the video's rate), or the whole video."""
    if item.time_unit == "sec" and item.start is not None and item.end is not None:
        return item.end - item.start
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if item.start is not None and item.end is not None:
            rate = float(stream.average_rate or 0)
            return (item.end - item.start) / rate if rate else 0.0
        return float(container.duration or 0) / av.time_base


def long_enough(check: Check, root: Path, min_seconds: float) -> Check:
    """`check`, after a clip shorter than `min_seconds` is refused (`too_short`); a video that cannot be read
    is left to the walk, which records it as unreadable."""

    def verdict(item: SourceItem) -> CheckResult:
        try:
            seconds = clip_seconds(root / item.media_path, item)
        except (OSError, av.FFmpegError, IndexError):
            return check(item)
        if seconds < min_seconds:
            return "too_short", f"{seconds:.2f} s < {min_seconds:g} s"
        return check(item)

    return verdict


def folder_split(
    dataset: str,
    root: Path,
    registry: Mapping[str, DatasetSpec],
    *,
    per_dataset: int = 50,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    check: CheckLevel = "faces",
    seed: int = 0,
) -> tuple[Split, list[Problem]]:
    """Up to `per_dataset` test clips of distinct identities of the folder source at `root`, and the problems
    its adapter found (for printing)."""
    items, problems = read_items(dataset, root, registry)
    pool, pool_split, notes = folder_pool(items, dataset)
    ranked = rank_folder_pool(pool)
    with ExitStack() as stack:
        roots = {dataset: Path(root)}
        verdict = faces_check(roots, thresholds, registry, stack) if check == "faces" else readable(roots)
        verdict = long_enough(verdict, Path(root), thresholds.celebvhq_min_seconds)
        clips, skipped, walked = walk(ranked, Path(root), per_dataset, verdict)
    counts = DatasetCounts.of(ranked, pool_split, walked, len(clips))
    if len(clips) < per_dataset:
        notes.append(f"{dataset}: selected {len(clips)} of the {per_dataset} clips asked for: the pool ran out")
    split = Split(
        per_dataset=per_dataset,
        thresholds=thresholds,
        check=check,
        train_youtube_ids=Fingerprint(count=0, sha256=hashlib.sha256(b"").hexdigest()),
        notes=notes,
        counts={dataset: counts},
        clips=clips,
        skipped=skipped,
        pairs=cross_pairs(clips, seed),
    )
    return split, problems
