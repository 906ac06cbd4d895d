"""A folder of one's own footage: every video and image under the root, recursively, one item per file,
with an optional sidecar (pipeline/sources/sidecar.py) of identities, splits, time ranges and face boxes.

The guarantees are the official adapters': nothing is dropped without a Problem, and nothing outside the
root is read. Beyond them, a folder nobody curated brings its own traps, each recorded:

- Item ids are the path below the root, "/"-separated, in Unicode NFC: macOS writes names decomposed
  (NFD) and Linux keeps whatever bytes it is given, so one folder copied between them would otherwise
  get other ids (and its samples other keys); NFC is what keyboards and most tools produce. The media
  path keeps the name as it is on disk, which is what opens it.
- Links to folders are never followed (their files are read where they lie, inside the root): one that
  points at its own folder or above would loop (`symlink_loop`), one that leads out is `media_outside_root`.
- A file is media when its extension is configured AND its first bytes are a container of that kind:
  a text file named .mp4 is `not_media`, found here instead of failing a worker.
- Files with identical bytes are built once: the first in id order is kept, every copy is a
  `duplicate_content` problem naming it (only files of equal size are hashed).
"""

from __future__ import annotations

import errno
import hashlib
import os
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from pipeline.sources.base import SourceAdapter
from pipeline.sources.records import Modality, SourceItem
from pipeline.sources.sidecar import SidecarRow, UnknownSplit, read_sidecar

SIDECAR_NAMES = ("sidecar.csv", "sidecar.jsonl")  # looked for at the root when the spec names none
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
HEAD_BYTES = 12
CHUNK = 1 << 20


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str | None = None  # where `rp-data datasets new` found the footage: `--source NAME` alone builds it
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    image_extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    identity: Literal["folder", "file", "none"] = "folder"  # without a sidecar identity: first folder, file, none
    sidecar: str | None = None  # relative to the root, or absolute; default: one of SIDECAR_NAMES if present

    @field_validator("video_extensions", "image_extensions")
    @classmethod
    def _dotted(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [value for value in values if not value.startswith(".") or len(value) < 2]
        if bad:
            raise ValueError(f"extensions start with a dot, e.g. '.mp4'; got {bad}")
        return tuple(value.lower() for value in values)


def container_kind(head: bytes) -> Modality | None:
    """What the first bytes of a file say it is: a video container, an image, or neither."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") or head[:4] == b"\x1a\x45\xdf\xa3":
        return "video"  # ISO BMFF (mp4, mov, m4v), Matroska/WebM
    if head[:4] == b"RIFF":
        return {b"AVI ": "video", b"WEBP": "image"}.get(head[8:12])  # type: ignore[return-value]
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or head[:2] == b"BM":
        return "image"
    return None


def subject_region(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The part of a video the build looks in for the sidecar's face: a square twice the box's larger side,
    as VFHQ's annotated crops are, so the face tracked is the one the box names and not a neighbour's (the
    decoder keeps it inside the picture)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1])
    return (max(0.0, cx - half), max(0.0, cy - half), cx + half, cy + half)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class MediaFile:
    path: str  # relative to the root, as on disk
    id_path: str  # the same, NFC: what ids and the sidecar use
    modality: Modality
    size: int


class Folder(SourceAdapter):
    name = "folder"
    Options = FolderOptions
    options: FolderOptions

    def read_items(self) -> Iterator[SourceItem]:
        sidecar = self._sidecar_path()
        files: dict[str, MediaFile] = {}
        for media in self._media_files(sidecar):
            if media.id_path in files:  # two names that differ only in their Unicode form
                detail = f"{media.path} and {files[media.id_path].path} are one name in NFC: only the first is built"
                self.problem(media.path, "duplicate_id", detail)
            else:
                files[media.id_path] = media
        copies = self._copies(list(files.values()))
        rows: dict[str, list[tuple[int, SidecarRow]]] = defaultdict(list)
        if sidecar is not None:
            for line, row in read_sidecar(self.root / sidecar, sidecar, self._sidecar_problem):
                rows[row.path].append((line, row))
        seen: set[str] = set()
        for id_path, media in files.items():
            if id_path in copies:
                continue
            for line, row in rows.pop(id_path, [(None, None)]):
                item = self._item(media, "present", row, line, sidecar)
                if item is not None and self._unique(item, seen, sidecar, line):
                    yield item
        for id_path, listed in rows.items():
            yield from self._unmatched(id_path, listed, copies, files, sidecar, seen)

    # -- the tree ---------------------------------------------------------------------------------

    def _media_files(self, sidecar: str | None) -> Iterator[MediaFile]:
        """The root's media files in id order; links to folders, links out, loops and other files reported."""
        for path in self._walk(""):
            if path == sidecar:
                continue
            extension = os.path.splitext(path)[1].lower()
            named = (
                "video"
                if extension in self.options.video_extensions
                else "image"
                if extension in self.options.image_extensions
                else None
            )
            if named is None:
                self.problem(path, "not_media", f"extension {extension or '(none)'!r} is not a configured one")
                continue
            if self.outside_root(path, None):
                continue
            try:
                with open(self.root / path, "rb") as handle:
                    head = handle.read(HEAD_BYTES)
                size = os.stat(self.root / path).st_size
            except OSError as exc:
                self.problem(path, "unreadable_media", f"cannot open: {exc.strerror or exc}")
                continue
            if size == 0:
                self.problem(path, "empty_file", "the file has zero bytes")
                continue
            found = container_kind(head)
            if found != named:
                what = f"a {found} container" if found else f"no video or image container (starts {head[:8]!r})"
                self.problem(path, "not_media", f"named {extension} but its first bytes are {what}")
                continue
            yield MediaFile(path, nfc(path), named, size)

    def _walk(self, folder: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(self.root / folder), key=lambda entry: nfc(entry.name))
        except OSError as exc:
            self.problem(folder or ".", "unreadable_file", f"cannot list the folder: {exc.strerror or exc}")
            return
        for entry in entries:
            path = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_symlink():
                if self._linked_file(path, entry):
                    yield path
            elif entry.is_dir():
                yield from self._walk(path)
            elif entry.is_file():
                yield path

    def _linked_file(self, path: str, entry: os.DirEntry[str]) -> bool:
        """Whether a link is one to a file inside the root, to be read as one; every other link is reported."""
        try:
            target = Path(entry.path).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: Python 3.11's word for a loop
            loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
            reason, detail = (
                ("symlink_loop", "the link leads back to itself") if loop else ("missing_media", "a broken link")
            )
            self.problem(path, reason, detail)
            return False
        if not target.is_relative_to(self._real_root):
            self.problem(path, "media_outside_root", f"links to {target}, outside the root {self._real_root}")
            return False
        if target.is_dir():
            inside = (self.root / path).parent.resolve()
            if inside.is_relative_to(target):
                self.problem(path, "symlink_loop", f"links to {target}, which holds the link: never followed")
            else:
                self.problem(path, "linked_folder", f"links to {target}: its files are read there, not twice")
            return False
        return True

    def _copies(self, files: list[MediaFile]) -> dict[str, str]:
        """id path of every file whose bytes an earlier file (in id order) has -> that file's id path."""
        by_size: dict[int, list[MediaFile]] = defaultdict(list)
        for media in files:
            by_size[media.size].append(media)
        copies: dict[str, str] = {}
        for same_size in by_size.values():
            first_of: dict[str, str] = {}
            for media in same_size if len(same_size) > 1 else ():
                digest = self._sha256(media.path)
                if digest in first_of:
                    kept = first_of[digest]
                    copies[media.id_path] = kept
                    # no item_id: the copy gets no row of its own, so the build manifest keeps this problem as one
                    detail = f"the same bytes as {kept}: built once, as {self.item_id(kept)}"
                    self.problem(media.path, "duplicate_content", detail)
                else:
                    first_of[digest] = media.id_path
        return copies

    def _sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with open(self.root / path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    # -- the sidecar ------------------------------------------------------------------------------

    def _sidecar_path(self) -> str | None:
        if self.options.sidecar is not None:
            return self.options.sidecar
        return next((name for name in SIDECAR_NAMES if (self.root / name).is_file()), None)

    def _sidecar_problem(self, file: str, line: int | None, reason: str, detail: str) -> None:
        self.problem(file, reason, detail, line)

    def _unmatched(
        self,
        id_path: str,
        listed: list[tuple[int, SidecarRow]],
        copies: dict[str, str],
        files: dict[str, MediaFile],
        sidecar: str | None,
        seen: set[str],
    ) -> Iterator[SourceItem]:
        """Rows naming no media file of the walk: a copy, a file out of the root, a missing or non-media file."""
        for line, row in listed:
            if id_path in copies:
                detail = f"{row.path} is a copy of {copies[id_path]}: the row's item is not built"
                self.problem(sidecar or ".", "duplicate_content", detail, line)
                continue
            extension = os.path.splitext(row.path)[1].lower()
            modality: Modality = "image" if extension in self.options.image_extensions else "video"
            status = self.media_status(row.path, self.item_id(row.path))
            if status == "present":  # on disk, but the walk found it no media (reported there) or a link
                self.problem(sidecar or ".", "not_media", f"{row.path} is not a media file of the folder", line)
                continue
            item = self._item(MediaFile(row.path, id_path, modality, 0), status, row, line, sidecar)
            if item is not None and self._unique(item, seen, sidecar, line):
                yield item

    # -- items ------------------------------------------------------------------------------------

    def _item(
        self, media: MediaFile, status: str, row: SidecarRow | None, line: int | None, sidecar: str | None
    ) -> SourceItem | None:
        where = sidecar or "."
        try:
            split = row.checked_split() if row else "unsplit"
        except UnknownSplit as exc:
            self.problem(where, "unknown_split", f"{media.id_path}: {exc}", line)
            return None
        ranged = row is not None and row.start is not None and row.end is not None
        if ranged and media.modality == "image":
            self.problem(where, "malformed_line", f"{media.id_path} is an image: it has no time range", line)
            return None
        native_id = media.id_path
        if ranged:
            assert row is not None and row.start is not None and row.end is not None
            native_id += f"#{row.start:g}-{row.end:g}{'s' if row.unit == 'sec' else 'f'}"
        identity, kind = self._identity(media.id_path, row)
        region = subject_region(row.box) if row and row.box and media.modality == "video" else None
        labels: dict[str, object] = {"tags": list(row.tags)} if row and row.tags else {}
        if line is not None:
            labels["sidecar_line"] = line
        return SourceItem(
            dataset=self.spec.name,
            native_id=native_id,
            modality=media.modality,
            media_path=media.path,
            media_status=status,  # type: ignore[arg-type]
            split=split,
            identity=identity,
            identity_kind=kind,
            license_tag=self.spec.license.tag,
            media_cut=not ranged and region is None,
            crop=region,
            time_unit=row.unit if ranged and row else None,
            start=row.start if ranged and row else None,
            end=row.end if ranged and row else None,
            end_inclusive=False if ranged else None,
            geometry_space="media" if row and row.box else None,
            box=row.box if row else None,
            labels=labels,
        )

    def _identity(self, id_path: str, row: SidecarRow | None) -> tuple[str | None, str]:
        if row is not None and row.identity:
            return f"{self.spec.name}:{row.identity}", "label"
        mode = self.options.identity
        if mode == "folder" and "/" in id_path:
            return f"{self.spec.name}:{id_path.split('/', 1)[0]}", "label"
        if mode == "file":
            return f"{self.spec.name}:{id_path}", "proxy_video"
        return None, "none"

    def _unique(self, item: SourceItem, seen: set[str], sidecar: str | None, line: int | None) -> bool:
        if item.item_id in seen:
            where = sidecar or item.media_path
            self.problem(where, "duplicate_id", f"{item.item_id} is listed twice (same file and range)", line)
            return False
        seen.add(item.item_id)
        return True


def folder_help() -> str:
    """What `rp-data datasets folder` prints: what is read, the options and the sidecar's schema."""
    from pipeline.sources import sidecar

    options = "\n".join(
        f"  {name}: {field.default!r}" for name, field in FolderOptions.model_fields.items() if name != "root"
    )
    return (
        "A folder source reads every video and image under its root, recursively, one item per file; its id\n"
        "is NAME/<path below the root>, '/'-separated, in Unicode NFC. Files that are no media, links that\n"
        "loop or lead out of the root, and copies of another file's bytes are recorded, never built.\n\n"
        f"Options (the spec's `options`, with their defaults):\n{options}\n\n"
        f"The sidecar ({' or '.join(SIDECAR_NAMES)} at the root, or options.sidecar):\n{sidecar.__doc__}"
    )
