"""Scanning: run adapters over dataset roots, count what they find, write the source manifest.

Items and problems stream straight to parquet (the manifest and `<name>.problems.parquet` beside it),
so a scan of TalkingHead-1KH's ~500k tubes holds counts, not rows. Both files are written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import DatasetSpec, SpecError, load_registry
from pipeline.decode import middle_frame, widened
from pipeline.faces import FaceDetector, labelled_face, open_detector, prominent
from pipeline.sources import open_adapter
from pipeline.sources.probe import probe
from pipeline.sources.records import ITEM_SCHEMA, PROBLEM_SCHEMA, USABLE_MEDIA, Problem, SourceItem

MANIFEST_SCHEMA = ITEM_SCHEMA.append(pa.field("root", pa.string()))
KEPT_PROBLEMS = 100  # per dataset and reason, for printing; all of them go to the problems parquet


@dataclass
class DatasetScan:
    """What one dataset root holds, as counts."""

    dataset: str
    root: Path
    items: int = 0
    media: Counter[str] = field(default_factory=Counter)
    modalities: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    identities: set[str] = field(default_factory=set)
    identity_kinds: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Problem]] = field(default_factory=dict)  # reason -> the first problems

    @property
    def usable(self) -> int:
        return sum(self.media[status] for status in USABLE_MEDIA)

    def add_item(self, item: SourceItem) -> None:
        self.items += 1
        self.media[item.media_status] += 1
        self.modalities[item.modality] += 1
        self.splits[item.split] += 1
        self.identity_kinds[item.identity_kind] += 1
        if item.identity is not None:
            self.identities.add(item.identity)

    def add_problem(self, problem: Problem) -> None:
        self.problems[problem.reason] += 1
        kept = self.examples.setdefault(problem.reason, [])
        if len(kept) < KEPT_PROBLEMS:
            kept.append(problem)


def resolve_targets(
    name: str, root: Path, registry: dict[str, DatasetSpec] | None = None
) -> list[tuple[DatasetSpec, Path]]:
    """(spec, root) pairs to scan: a composite spec (the sample) expands to its members' folders,
    whose pipeline defaults it overrides."""
    registry = registry or load_registry()
    if name not in registry:
        raise SpecError(f"unknown dataset {name!r}; the registry has: {', '.join(sorted(registry))}")
    spec = registry[name]
    if not spec.members:
        return [(spec, Path(root))]
    return [(registry[m].model_copy(update={"defaults": spec.defaults}), Path(root) / m) for m in spec.members]


class ManifestWriter:
    """Streams item rows and problem rows to two parquet files, renamed into place on close."""

    def __init__(self, path: Path, batch_rows: int = 5000):
        self.path = Path(path)
        self.problems_path = self.path.with_name(self.path.stem + ".problems.parquet")
        self._batch_rows = batch_rows
        self._items: list[dict[str, object]] = []
        self._problems: list[dict[str, object]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._problems_tmp = self.problems_path.with_name(f".{self.problems_path.name}.{os.getpid()}.tmp")
        self._item_writer = pq.ParquetWriter(self._tmp, MANIFEST_SCHEMA)
        self._problem_writer = pq.ParquetWriter(self._problems_tmp, PROBLEM_SCHEMA)

    def add_item(self, item: SourceItem, root: Path) -> None:
        self._items.append(item.row() | {"root": str(Path(root).resolve())})
        if len(self._items) >= self._batch_rows:
            self._flush_items()

    def add_problem(self, problem: Problem) -> None:
        self._problems.append(problem.row())
        if len(self._problems) >= self._batch_rows:
            self._flush_problems()

    def _flush_items(self) -> None:
        if self._items:
            self._item_writer.write_table(pa.Table.from_pylist(self._items, schema=MANIFEST_SCHEMA))
            self._items = []

    def _flush_problems(self) -> None:
        if self._problems:
            self._problem_writer.write_table(pa.Table.from_pylist(self._problems, schema=PROBLEM_SCHEMA))
            self._problems = []

    def close(self) -> None:
        self._flush_items()
        self._flush_problems()
        self._item_writer.close()
        self._problem_writer.close()
        os.replace(self._tmp, self.path)
        os.replace(self._problems_tmp, self.problems_path)

    def abort(self) -> None:
        for writer, tmp in ((self._item_writer, self._tmp), (self._problem_writer, self._problems_tmp)):
            writer.close()
            tmp.unlink(missing_ok=True)


def probed(
    items: Iterable[SourceItem], root: Path, report: Callable[[Problem], None], workers: int
) -> Iterator[SourceItem]:
    """Opens each usable media file in a thread pool (I/O bound), keeping the item order and a
    bounded number of files in flight."""
    in_flight: deque[tuple[SourceItem, Future[str | None] | None]] = deque()

    def finish(item: SourceItem, future: Future[str | None] | None) -> SourceItem:
        if future is None:
            return item
        error = future.result()
        if error is None:
            return dataclasses.replace(item, media_status="ok")
        report(Problem(item.dataset, item.media_path, None, "unreadable_media", error, item.item_id))
        return dataclasses.replace(item, media_status="unreadable")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item in items:
            usable = item.media_status in USABLE_MEDIA
            future = pool.submit(probe, root / item.media_path, item.modality) if usable else None
            in_flight.append((item, future))
            if len(in_flight) >= workers * 4:
                yield finish(*in_flight.popleft())
        while in_flight:
            yield finish(*in_flight.popleft())


def face_checked(
    items: Iterable[SourceItem], root: Path, report: Callable[[Problem], None], detector: FaceDetector
) -> Iterator[SourceItem]:
    """Looks for the subject's face in each usable item's middle frame (inside its annotated crop, widened
    as the build widens it).

    A quick sanity check of a download before a long build: it catches faceless clips, wrong crops
    and group shots (unless the annotation boxes the subject). The build repeats the check on every sampled frame.
    """
    for item in items:
        if item.media_status in USABLE_MEDIA:
            try:
                frame = middle_frame(item, root)
            except Exception as exc:  # any decoder failure makes the media unusable
                detail = f"{type(exc).__name__}: {exc}"
                report(Problem(item.dataset, item.media_path, None, "unreadable_media", detail, item.item_id))
                yield dataclasses.replace(item, media_status="unreadable")
                continue
            region = item.crop_in_media(frame.shape[1], frame.shape[0])
            if region is not None:  # widened as the build widens it: a tight crop hides a face from the detector
                x0, y0, x1, y1 = widened(region, frame.shape[1], frame.shape[0])
                frame = frame[y0:y1, x0:x1]
            detected = detector.detect(frame)
            # the subject's annotated box names its face in a group photo, as the build does (`labelled_face`)
            boxed = region is None and item.box is not None and item.geometry_space == "media"
            subject = labelled_face(detected, item.box) if boxed else None
            faces = [subject] if subject is not None else prominent(detected)
            if len(faces) != 1:
                reason = "no_face" if not faces else "multiple_faces"
                detail = "no face found" if not faces else f"{len(faces)} faces of similar size"
                report(
                    Problem(item.dataset, item.media_path, None, reason, f"{detail} in the middle frame", item.item_id)
                )
        yield item


def scan(
    name: str,
    root: Path,
    *,
    out: Path | None = None,
    probe_media: bool = False,
    workers: int = 8,
    on_item: Callable[[DatasetScan], None] | None = None,
    check_faces: bool = False,
    registry: dict[str, DatasetSpec] | None = None,
) -> list[DatasetScan]:
    """Scans one registry dataset (or each member of a composite one) under `root`."""
    targets = resolve_targets(name, root, registry)
    writer = ManifestWriter(out) if out else None
    detector = open_detector() if check_faces else None
    results = []
    try:
        for spec, dataset_root in targets:
            stats = DatasetScan(spec.name, dataset_root)
            results.append(stats)

            def report(problem: Problem, stats: DatasetScan = stats) -> None:
                stats.add_problem(problem)
                if writer:
                    writer.add_problem(problem)

            items: Iterable[SourceItem] = open_adapter(spec, dataset_root, report).items()
            if probe_media:
                items = probed(items, dataset_root, report, workers)
            if detector is not None:
                items = face_checked(items, dataset_root, report, detector)
            for item in items:
                stats.add_item(item)
                if writer:
                    writer.add_item(item, dataset_root)
                if on_item:
                    on_item(stats)
    except BaseException:
        if writer:
            writer.abort()
        raise
    finally:
        if detector is not None:
            detector.close()
    if writer:
        writer.close()
    return results
