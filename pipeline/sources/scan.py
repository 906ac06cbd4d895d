"""Scanning: run adapters over dataset roots, count what they find, write the source manifest.

Items and problems stream straight to parquet (the manifest and `<name>.problems.parquet` beside it),
so a scan of TalkingHead-1KH's ~500k tubes holds counts, not rows. Both files are written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import FOLDER_ADAPTER, DatasetSpec, SpecError, load_specs
from pipeline.decode import middle_frame, widened
from pipeline.faces import FaceDetector, labelled_face, open_detector, prominent
from pipeline.sources import open_adapter
from pipeline.sources.listing import PARALLEL_ENTRIES, TreeLister, media_depth
from pipeline.sources.probe import probe
from pipeline.sources.records import ITEM_SCHEMA, PROBLEM_SCHEMA, USABLE_MEDIA, Problem, SourceItem

MANIFEST_SCHEMA = ITEM_SCHEMA.append(pa.field("root", pa.string()))
KEPT_PROBLEMS = 100  # per dataset and reason, for printing; all of them go to the problems parquet
NAMED_FILES = 3  # files an error about an empty root names per problem reason


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


class NoItemsError(ValueError):
    """A dataset root in which the adapter found no item: a mistyped path or another dataset's folder.

    Refused rather than reported as "0 items", because a build of such a root would end "successfully" with
    nothing in it. `scans` holds what was read (the problems say which files were missing).
    """

    def __init__(self, message: str, scans: Sequence[DatasetScan]):
        super().__init__(message)
        self.scans = list(scans)


def resolve_targets(
    name: str, root: Path, registry: dict[str, DatasetSpec] | None = None
) -> list[tuple[DatasetSpec, Path]]:
    """(spec, root) pairs to scan: a composite spec (the sample) expands to its members' folders,
    whose pipeline defaults it overrides."""
    registry = registry or load_specs()
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
    parallel_entries: int = PARALLEL_ENTRIES,
    ray_address: str | None = None,
) -> list[DatasetScan]:
    """Scans one registry dataset (or each member of a composite one) under `root`.

    A root of more than `parallel_entries` files and folders is listed by Ray tasks first (see
    pipeline.sources.listing), which gives the same rows in the same order as one stat per item; the
    tasks run on the cluster at `ray_address` when given (a build's), else on an embedded Ray.

    A target without a single item raises NoItemsError and writes nothing: an empty manifest would pass
    for a result, and would replace a good one at `out`.
    """
    targets = resolve_targets(name, root, registry)
    writer = ManifestWriter(out) if out else None
    detector = open_detector() if check_faces else None
    results = []
    lister = TreeLister(parallel_entries, ray_address)
    try:
        for spec, dataset_root in targets:
            stats = DatasetScan(spec.name, dataset_root)
            results.append(stats)

            def report(problem: Problem, stats: DatasetScan = stats) -> None:
                stats.add_problem(problem)
                if writer:
                    writer.add_problem(problem)

            adapter = open_adapter(spec, dataset_root, report)
            adapter.listing = lister.list(dataset_root, media_depth(spec))
            items: Iterable[SourceItem] = adapter.items()
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
        refuse_empty(results, registry)
    except BaseException:
        if writer:  # an earlier manifest at `out` is kept
            writer.abort()
        raise
    finally:
        lister.__exit__()
        if detector is not None:
            detector.close()
    if writer:
        writer.close()
    return results


# -- roots without items ---------------------------------------------------------------------------------


def first_items(name: str, root: Path, registry: dict[str, DatasetSpec] | None = None) -> list[DatasetScan]:
    """Each target of `name` under `root` read up to its first item: cheap proof that a root holds the
    dataset (a real download yields one at once), and, when it does not, the problems saying why."""
    scans = []
    for spec, dataset_root in resolve_targets(name, root, registry):
        stats = DatasetScan(spec.name, dataset_root)
        with closing(open_adapter(spec, dataset_root, stats.add_problem).items()) as items:
            item = next(items, None)
        if item is not None:
            stats.add_item(item)
        scans.append(stats)
    return scans


def refuse_empty(
    scans: Sequence[DatasetScan], registry: Mapping[str, DatasetSpec] | None = None, prefix: str = ""
) -> None:
    """Raises NoItemsError naming, for every scan that found no item, what it looked for."""
    empty = [stats for stats in scans if stats.items == 0]
    if empty:
        registry = registry or load_specs()
        message = "\n".join(prefix + no_items_message(stats, registry) for stats in empty)
        raise NoItemsError(message, scans)


def no_items_message(stats: DatasetScan, registry: Mapping[str, DatasetSpec]) -> str:
    """What a user needs to fix an empty root: what the adapter missed, what the layout is, and which
    dataset the folder looks like when it is another one's."""
    spec = registry[stats.dataset]
    details = [_missed(stats, reason) for reason in sorted(stats.problems)]
    details.append(f"the official layout has {', '.join(layout_globs(spec))}")
    others = [f"{name}'s {path}" for name, path in other_layouts(stats.root, spec.name, registry)]
    if others:
        more = len(others) - NAMED_FILES
        details.append(f"the folder holds {', '.join(others[:NAMED_FILES])}{f' and {more} more' if more > 0 else ''}")
    return f"found no items in {stats.root} for {spec.name}: {'; '.join(details)} (see `rp-data datasets {spec.name}`)"


def _missed(stats: DatasetScan, reason: str) -> str:
    """`reason files (detail)`: the files a reason names (the root itself, ".", is said by the detail)."""
    examples = stats.examples.get(reason, [])
    files = [problem.file for problem in examples[:NAMED_FILES] if problem.file != "."]
    more = stats.problems[reason] - len(files) if files else 0
    listed = f" {', '.join(files)}{f' and {more} more' if more else ''}" if files else ""
    return f"{reason}{listed} ({examples[0].detail})" if examples else reason


def layout_globs(spec: DatasetSpec) -> list[str]:
    """The spec's required annotation files, or its required media when it has none (MEAD), as globs."""
    entries = [e for e in spec.layout.annotations.values() if e.required] or [
        e for e in spec.layout.media.values() if e.required
    ]
    return [re.sub(r"\{[^}]*\}", "*", entry.path) for entry in entries]


def other_layouts(root: Path, name: str, registry: Mapping[str, DatasetSpec]) -> list[tuple[str, str]]:
    """(dataset, a file of its layout) for every other single dataset whose layout the folder, or one of
    its subfolders, holds: the usual mistake is the right path given to the wrong name."""
    found = []
    for spec in registry.values():
        if spec.name == name or spec.members or spec.adapter == FOLDER_ADAPTER:  # a folder source takes any tree
            continue
        for pattern in layout_globs(spec):
            match = next((m for where in ("", "*/") for m in Path(root).glob(where + pattern)), None)
            if match is not None:
                found.append((spec.name, match.relative_to(root).as_posix()))
                break
    return found
