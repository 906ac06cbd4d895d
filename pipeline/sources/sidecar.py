"""The optional sidecar of a folder source: one row per item, in CSV or JSON Lines.

Columns (CSV header, or JSONL keys; only `path` is required):

    path      the file, relative to the folder's root, "/"-separated (compared after NFC normalisation)
    identity  who is in it; rows of one identity are one person (the split keeps them on one side)
    split     train, val or test (empty: unsplit)
    start     with `end`: the part of a video to use, in `unit`s ([start, end), end exclusive)
    end
    unit      sec (default) or frame
    box       the face as "x0 y0 x1 y1" in the picture as displayed (JSONL: a list of 4 numbers); it picks
              the subject when several faces show: in a photo the detection it names, in a video the
              face tracked within a square twice its size around it
    tags      free-form: "a;b" in CSV, a list of strings in JSONL; kept with the item's labels

A file may have several rows (several ranges of one video); a file without a row is one item, whose
identity then follows the spec's `identity` mode. A row that cannot be used is a problem naming the
sidecar's line, as a malformed line of an official annotation file is.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPLITS = ("train", "val", "test")
COLUMNS = ("path", "identity", "split", "start", "end", "unit", "box", "tags")


class UnknownSplit(ValueError):
    """A row whose split is none of SPLITS: recorded as `unknown_split`, not as a malformed row."""


class SidecarRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    identity: str | None = None
    split: str | None = None
    start: float | None = None
    end: float | None = None
    unit: Literal["sec", "frame"] = "sec"
    box: tuple[float, float, float, float] | None = None
    tags: tuple[str, ...] = ()

    @field_validator("path")
    @classmethod
    def _normal(cls, value: str) -> str:
        return unicodedata.normalize("NFC", value.strip())

    @field_validator("identity", "split", "start", "end", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("box", mode="before")
    @classmethod
    def _box_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(",", " ").split() or None
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(tag.strip() for tag in value.split(";") if tag.strip())
        return () if value is None else value

    @model_validator(mode="after")
    def _range(self) -> SidecarRow:
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end go together: give both or neither")
        return self

    def checked_split(self) -> str:
        if self.split is None:
            return "unsplit"
        if self.split not in SPLITS:
            raise UnknownSplit(f"split {self.split!r} is none of {', '.join(SPLITS)}")
        return self.split


Report = Callable[[str, int | None, str, str], None]  # (file, line, reason, detail)


def read_sidecar(path: Path, shown: str, report: Report) -> Iterator[tuple[int, SidecarRow]]:
    """(line, row) of every usable row; every other row is reported with its line (`shown` names the file)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        report(shown, None, "missing_annotation_file", "the sidecar named by the spec is not there")
        return
    except (OSError, UnicodeDecodeError) as exc:
        report(shown, None, "unreadable_file", f"cannot read the sidecar as UTF-8 text: {exc}")
        return
    rows = _jsonl_rows(text) if path.suffix.lower() == ".jsonl" else _csv_rows(text, shown, report)
    for line, raw in rows:
        if isinstance(raw, str):
            report(shown, line, "malformed_line", raw)
            continue
        try:
            yield line, SidecarRow.model_validate(raw)
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
            report(shown, line, "malformed_line", fields)


def _csv_rows(text: str, shown: str, report: Report) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in COLUMNS]
    if "path" not in header or unknown:
        what = f"unknown column(s) {', '.join(unknown)}" if unknown else "no 'path' column"
        report(shown, 1, "malformed_line", f"{what}; the columns are {', '.join(COLUMNS)}")
        return
    for row in reader:
        if None in row:  # more cells than the header has columns
            yield reader.line_num, f"{len(header) + len(row[None])} cells, the header has {len(header)}"
        elif any(value for value in row.values()):
            yield reader.line_num, {key: value for key, value in row.items() if value}  # empty cell: default


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, body in enumerate(text.splitlines(), start=1):
        if not body.strip():
            continue
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            yield line, f"not JSON: {exc.msg}"
            continue
        yield line, value if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
