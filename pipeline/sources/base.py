"""What every adapter shares: reading annotation files tolerantly and recording what goes wrong.

An adapter turns one official layout into SourceItems. The rule for all of them: a missing file, an
unreadable file or a malformed line becomes a Problem (dataset, file, line, reason) and the scan goes
on; nothing is dropped without a Problem saying so. Every item then passes one check of its values
(records.invalid_values), and every media path one check that it stays inside the dataset root.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from manifests.schema import DatasetSpec, SpecError
from pipeline.sources.listing import Listing
from pipeline.sources.records import MediaStatus, Problem, SourceItem, invalid_values, leads_outside

T = TypeVar("T")


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceAdapter(ABC):
    """Reads one dataset's official layout under `root`; subclasses implement `read_items`."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    listing: Listing | None = None  # the root's file sizes when listed in parallel (pipeline.sources.listing)

    def __init__(self, spec: DatasetSpec, root: Path, report: Callable[[Problem], None]):
        self.spec = spec
        self.root = Path(root)
        self._real_root = self.root.resolve()
        self._report = report
        try:
            self.options = self.Options.model_validate(spec.options)
        except ValidationError as exc:
            fields = "; ".join(f"field 'options.{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise SpecError(f"manifests/datasets/{spec.name}.yaml: {fields}") from exc

    def items(self) -> Iterator[SourceItem]:
        """Stream the items; problems go to the report callback as they are found.

        An item with a value no stage can use (an infinite or negative time, a box without area) is
        dropped with an `invalid_value` problem. The problem carries no item_id, because the item gets
        no row of its own: the build manifest then keeps the problem as a row, and its detail names the item.
        """
        for item in self.read_items():
            problem = invalid_values(item)
            if problem is None:
                yield item
            else:
                self.problem(self.annotation_file(item), "invalid_value", f"{item.item_id}: {problem}")

    @abstractmethod
    def read_items(self) -> Iterator[SourceItem]:
        """The items as the official files describe them (`items` checks their values)."""

    def annotation_file(self, item: SourceItem) -> str:
        """The file a problem with the item's values names: its media unless the adapter says which
        annotation file the values came from (the detail names the field either way)."""
        return item.media_path

    # -- recording --------------------------------------------------------------------------------

    def problem(
        self, file: str | Path, reason: str, detail: str, line: int | None = None, item_id: str | None = None
    ) -> None:
        self._report(Problem(self.spec.name, self.rel(file), line, reason, detail, item_id))

    def rel(self, path: str | Path) -> str:
        path = Path(path)
        if path.is_absolute():
            try:
                path = path.relative_to(self.root)
            except ValueError:
                return str(path)
        return path.as_posix()

    def item_id(self, native_id: str) -> str:
        return f"{self.spec.name}/{native_id}"

    # -- files ------------------------------------------------------------------------------------

    def outside_root(self, rel_path: str, item_id: str | None, folder: bool = False) -> bool:
        """Whether the media lead out of the dataset root (reported; such media are never opened)."""
        where = leads_outside(self._real_root, rel_path, folder)
        if where is not None:
            self.problem(rel_path, "media_outside_root", where, None, item_id)
        return where is not None

    def media_status(self, rel_path: str, item_id: str | None = None, required: bool = True) -> MediaStatus:
        """Inside the root, then existence and size from one stat call; what cannot be used is reported."""
        if self.outside_root(rel_path, item_id):
            return "outside_root"
        size = self._size(rel_path)
        if size is None:
            if required:
                self.problem(rel_path, "missing_media", "referenced by the annotations, not on disk", None, item_id)
            return "missing"
        if size == 0:
            self.problem(rel_path, "empty_file", "the file has zero bytes", None, item_id)
            return "empty"
        return "present"

    def _size(self, rel_path: str) -> int | None:
        """One stat, or a look-up in the listing that replaced it; None when the file does not exist."""
        if self.listing is not None:
            return self.listing.size(rel_path)
        try:
            return os.stat(self.root / rel_path).st_size
        except OSError:
            return None

    def lines(self, rel_path: str, required: bool = True) -> Iterator[tuple[int, str]]:
        """(1-based line number, text) of a text annotation file, tolerating a BOM and CRLF endings.

        A missing file is a `missing_annotation_file` problem (when required); undecodable bytes stop
        the file with an `unreadable_file` problem at the line where they occur.
        """
        path = self.root / rel_path
        try:
            handle = open(path, encoding="utf-8-sig", newline=None)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            if required:
                self.problem(rel_path, "missing_annotation_file", "not found in the dataset root")
            return
        except OSError as exc:
            self.problem(rel_path, "unreadable_file", f"cannot open: {exc.strerror or exc}")
            return
        number = 0
        with handle:
            try:
                for number, text in enumerate(handle, start=1):
                    text = text.rstrip("\n")
                    if text.strip():
                        yield number, text
            except UnicodeDecodeError as exc:
                self.problem(rel_path, "unreadable_file", f"not UTF-8 text ({exc.reason})", number + 1)

    def exists(self, rel_path: str) -> bool:
        return self._size(rel_path) is not None


class KeyedLookahead(Generic[T]):
    """Joins a companion annotation file to an item list without loading it whole.

    Official companion files (boxes, landmarks, identities) list items in the same order as the index
    file, so `pop` normally reads exactly one row and memory stays flat. Rows read ahead but not yet
    claimed are held until asked for, so a file in another order, or a key without a row (which reads
    to the end of the file), stays correct at the cost of memory.
    """

    def __init__(self, rows: Iterable[tuple[str, T]]):
        self._rows = iter(rows)
        self._pending: dict[str, T] = {}

    def pop(self, key: str) -> T | None:
        if key in self._pending:
            return self._pending.pop(key)
        for row_key, value in self._rows:
            if row_key == key:
                return value
            self._pending[row_key] = value
        return None

    def leftovers(self) -> Iterator[tuple[str, T]]:
        """Rows never claimed, including the unread rest of the file."""
        yield from self._pending.items()
        self._pending = {}
        yield from self._rows
