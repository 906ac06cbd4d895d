"""Where a build lives: a local folder, or any fsspec URL (`s3://bucket/run`, `gs://...`), with one commit rule.

Readers trust a work shard once its stats file exists, so every other file of the shard must be whole
and final before the stats file appears. A local folder gets that from renames (pipeline/atomic.py): a
file is written under a temporary name and renamed into place. An object store has no rename, but it
has what a rename gives: an object appears whole when its one PUT (or the completion of its multipart
upload) succeeds, and never half. So on an object store a staged file is a staged object, "renaming"
it into place is a server-side copy (no byte passes through the driver) followed by deleting the staged
object, and the stats file is still written last, in one PUT, as the commit record.

A relative local path is resolved here, on the driver, once: workers on other nodes get the absolute
path (or the URL), never a path their own working directory would change. `file://` URLs are local.
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline import atomic


class StoreError(ValueError):
    """A location that cannot be opened: an unknown URL scheme, or one whose filesystem package is missing
    (`s3://` needs s3fs: `pip install 'realportrait[s3]'`)."""


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for a remote fsspec URL (`s3://...`); a local path or a `file://` URL is not one."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


Location = Path | str  # a local file or folder as a Path, a remote one as its URL


def location(value: str | os.PathLike[str]) -> Location:
    """`value` as readers keep it: a URL as the string it is (a Path would make `s3://b/run` `s3:/b/run`), a
    local path (or `file://` URL) as a Path."""
    text = str(value)
    return text.rstrip("/") if is_url(text) else Path(text.removeprefix("file://"))


def open_file(where: str | os.PathLike[str]) -> IO[bytes]:
    """A seekable binary reader of the file at a local path or an fsspec URL."""
    folder, name = Store.holding(where)
    return folder.open(name)


@dataclass(frozen=True)
class Store:
    """A folder of a build: `fs` and `root` are fsspec's filesystem and its path of the folder, `url` how
    the user names it (the absolute local path, or the URL)."""

    fs: Any
    root: str
    url: str

    @classmethod
    def at(cls, location: str | os.PathLike[str] | Store) -> Store:
        """The folder at `location`; a relative local path is resolved against this process's working folder."""
        if isinstance(location, Store):
            return location
        text = str(location)
        if is_url(text):
            import fsspec

            try:  # no listings cache: other processes (the workers) write the folder this one lists
                fs, root = fsspec.core.url_to_fs(text, use_listings_cache=False)
            except (ImportError, ValueError) as exc:
                raise StoreError(f"{text}: no storage for this URL here ({exc})") from exc
            root = root.rstrip("/")
            return cls(fs, root, fs.unstrip_protocol(root))
        from fsspec.implementations.local import LocalFileSystem

        path = str(Path(text.removeprefix("file://")).expanduser().resolve())
        return cls(LocalFileSystem(), path, path)

    @classmethod
    def holding(cls, where: str | os.PathLike[str]) -> tuple[Store, str]:
        """The folder of the file at `where` (a local path or an fsspec URL), and the file's name in it."""
        folder, name = posixpath.split(str(where).rstrip("/"))
        return cls.at(folder or "."), name

    @property
    def local(self) -> bool:
        return not is_url(self.url)

    @property
    def local_path(self) -> Path:
        """The folder as a local Path (local stores only)."""
        if not self.local:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.root)

    def child(self, name: str) -> Store:
        return Store(self.fs, self._path(name), self.url_of(name))

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name) if name else self.root

    def url_of(self, name: str) -> str:
        """What a message (or another process) calls the file `name` of this folder."""
        return str(Path(self.root) / name) if self.local else f"{self.url}/{name}"

    def location_of(self, name: str) -> Location:
        """The file `name` of this folder as readers keep it: a local Path, or its URL."""
        return Path(self.url_of(name)) if self.local else self.url_of(name)

    def __str__(self) -> str:
        return self.url

    # -- reading ------------------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(name)))

    def is_folder(self) -> bool:
        """Whether the folder exists (an object store's folder exists once an object lies under it)."""
        return bool(self.fs.isdir(self.root))

    def read_bytes(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self._path(name)))

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def open(self, name: str) -> IO[bytes]:
        """A binary reader of the file `name` (seekable: pyarrow reads parquet footers through it)."""
        return self.fs.open(self._path(name), "rb")

    def arrow(self, names: list[str]) -> tuple[Any, list[str]]:
        """(filesystem, paths) for pyarrow to read the files `names` of this folder: local paths as they
        are, an object store's through its fsspec filesystem."""
        return (None if self.local else self.fs), [self._path(name) for name in names]

    def names(self, pattern: str = "*") -> list[str]:
        """Names of the files in this folder (not below it) that match the glob `pattern`, sorted."""
        if self.local:
            folder = Path(self.root)
            return sorted(p.name for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []
        return sorted(self._listing(pattern))

    def sizes(self, pattern: str = "*") -> dict[str, int]:
        """name -> bytes of the files `names(pattern)` lists, from one listing (no request per file)."""
        if self.local:
            folder = Path(self.root)
            found = folder.glob(pattern) if folder.is_dir() else []
            return {p.name: p.stat().st_size for p in found if p.is_file()}
        return {name: int(info["size"]) for name, info in self._listing(pattern).items()}

    def _listing(self, pattern: str) -> dict[str, dict[str, Any]]:
        """An object store's files matching `pattern`, with what the listing says of each. Only the keys that
        begin with the pattern's literal head are listed where the filesystem can (s3fs, gcsfs): a commit
        lists one work shard's files, never the whole folder."""
        head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        if "prefix" in inspect.signature(self.fs.find).parameters:
            found = self.fs.find(self.root, maxdepth=1, detail=True, prefix=head)
        else:
            found = self.fs.find(self.root, maxdepth=1, detail=True)
        files = {posixpath.basename(path): info for path, info in found.items() if info.get("type") == "file"}
        return {name: info for name, info in files.items() if fnmatch.fnmatchcase(name, pattern)}

    def is_file(self, name: str) -> bool:
        return bool(self.fs.isfile(self._path(name)))

    def size(self, name: str) -> int:
        """Bytes of the file `name`."""
        return int(self.fs.size(self._path(name)))

    def modified(self, name: str) -> float:
        """When the file was last written, in seconds since the epoch."""
        if self.local:
            return (Path(self.root) / name).stat().st_mtime
        return float(self.fs.modified(self._path(name)).timestamp())

    # -- writing ------------------------------------------------------------------------------------------

    def make(self) -> None:
        """Creates the folder (locally; an object store has no folders to create)."""
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Writes the file whole or not at all: a rename into place here, one PUT on an object store."""
        if self.local:
            self.make()
            atomic.write_bytes(Path(self.root) / name, data)
        else:
            self.fs.pipe_file(self._path(name), data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode())

    def create(self, name: str, data: bytes) -> bool:
        """Writes the file only if none exists by that name; False if one does. Exactly one of two writers
        racing wins: a hard link here, a conditional PUT (If-None-Match) on S3."""
        if self.local:
            self.make()
            path = Path(self.root) / name
            tmp = atomic.temporary(path)
            tmp.write_bytes(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            return True
        try:
            self.fs.pipe_file(self._path(name), data, mode="create")
        except FileExistsError:
            return False
        return True

    @contextmanager
    def replacing(self, name: str) -> Iterator[IO[bytes]]:
        """A binary writer of the file `name` that appears only when the block ends well: a temporary file
        renamed into place here, an upload completed only then on an object store (discarded on error)."""
        if self.local:
            self.make()
            with atomic.replacing(Path(self.root) / name) as tmp, open(tmp, "wb") as stream:
                yield stream
            return
        stream = self.fs.open(self._path(name), "wb")
        try:
            yield stream
        except BaseException:
            stream.discard()  # aborts the upload; the object never appears
            stream.closed = True  # so that its finaliser does not upload what is left
            raise
        stream.close()

    def open_write(self, name: str) -> IO[bytes]:
        """A plain binary writer of `name` (a staged file: its name says it is not final)."""
        if self.local:
            self.make()
            return open(Path(self.root) / name, "wb")
        return self.fs.open(self._path(name), "wb")

    def rename(self, staged: str, final: str) -> None:
        """Puts the whole file `staged` in place as `final`: an atomic rename here; on an object store a
        server-side copy (the final object appears whole) and then the staged object is deleted."""
        if self.local:
            os.replace(Path(self.root) / staged, Path(self.root) / final)
            return
        self.fs.copy(self._path(staged), self._path(final))
        self.fs.rm_file(self._path(staged))

    def remove(self, name: str) -> None:
        """Deletes the file `name`; one already gone is fine."""
        if self.local:
            (Path(self.root) / name).unlink(missing_ok=True)
            return
        with suppress(FileNotFoundError):
            self.fs.rm_file(self._path(name))

    def remove_stale(self) -> list[str]:
        """Deletes the temporaries a killed run left in this folder (pipeline/atomic.py names them); call it
        only while no writer of the folder runs."""
        stale = [name for name in self.names(".*") if atomic.is_temporary(Path(name))]
        for name in stale:
            self.remove(name)
        return stale


def worker_env() -> dict[str, str]:
    """The object-store settings a build's workers need beside the driver's (endpoint and region; never
    keys: each node brings its own credentials, as a cluster's instance roles do)."""
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "FSSPEC_S3_ENDPOINT_URL")
    return {name: os.environ[name] for name in names if name in os.environ}
