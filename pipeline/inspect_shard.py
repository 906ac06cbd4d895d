"""`rp-data inspect`: read WebDataset tars of a build and check their samples against contract v1.

Given one tar, every sample of it is checked. Given a build folder (the `--out` of `rp-data build`), its
committed tars are listed with their sample counts (read from the build's own records, not the tars), and
then the first samples of the first tar, one named tar, or every tar are checked. A build folder or a tar
may be local or at an fsspec URL (`s3://bucket/run`); both are read through pipeline/storage.py.

Training reads shards through webdataset far from where they were written, and a bad sample there either
stops a multi-GPU job hours in or, worse, trains silently on misaligned controls. This reads a tar the
way training does (webdataset's own tar iterator and key grouping) and checks what training relies on:
the metadata parses, the media decodes at the promised size and length, and every per-frame array has
one row per frame with the promised dtype and finite values.
"""

from __future__ import annotations

import io
import json
import posixpath
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from webdataset.tariterators import base_plus_ext

from pipeline.storage import Location, Store, location
from pipeline.tar_stream import tar_samples

CLIP_SIDE = 512
LANDMARK_POINTS = 478
JSON_FIELDS = (
    "key", "item_id", "dataset", "native_id", "kind", "identity", "identity_kind", "youtube_id", "split",
    "license", "fps", "frames", "width", "height", "crop_box", "source_range", "quality", "pipeline_version",
    "fingerprint",
)  # fmt: skip
RANGE_FIELDS = ("unit", "start", "end")
QUALITY_FIELDS = ("face_px", "blur", "yaw", "pitch", "roll")
CONTENT = {"clip": "mp4", "image": "jpg"}  # json kind -> the member holding the pixels
# per-frame arrays: member -> (dtype, shape of one frame's row)
ARRAYS: dict[str, tuple[type[np.generic], tuple[int, ...]]] = {
    "landmarks.npy": (np.float16, (LANDMARK_POINTS, 2)),
    "pose.npy": (np.float32, (6,)),
    "bbox.npy": (np.float32, (4,)),
}
MEMBERS = ("json", *CONTENT.values(), *ARRAYS)
TAR_BLOCK = 512
LISTED = 50  # tars a build listing names one by one
NAMED = 5  # tars an error about a tar that is not there offers instead
FPS_TOLERANCE = 1e-3  # relative; the mp4 time base stores 30000/1001 exactly, json a rounded float


@dataclass
class SampleCheck:
    """What one sample holds and what is wrong with it (empty `problems` = it meets the contract)."""

    key: str
    members: dict[str, int]  # member name ("mp4", "pose.npy", ...) -> bytes, in tar order
    kind: str | None = None  # json "kind"
    frames: int | None = None  # json "frames"
    fps: float | None = None  # as the mp4 stream declares it (json's for a sample without a readable mp4)
    size: tuple[int, int] | None = None  # (width, height) of the decoded mp4 or jpg
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class InspectResult:
    """Every sample read from one tar, plus problems of the tar itself (truncation, no samples, ...)."""

    path: Location
    samples: list[SampleCheck]
    errors: list[str]  # tar-level
    limited: bool = False  # reading stopped at `limit` with samples left unread

    @property
    def failed(self) -> list[SampleCheck]:
        return [sample for sample in self.samples if not sample.ok]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed

    @property
    def exit_code(self) -> int:
        """0 when every check passed, 1 otherwise: lets `rp-data inspect` gate a CI step or a script."""
        return 0 if self.ok else 1


def read_samples(
    path: Location, on_error: Callable[[str], None], keys: Collection[str] | None = None
) -> Iterator[dict[str, Any]]:
    """The tar's samples as webdataset groups them (`__key__` plus member name -> bytes).

    Read errors go to `on_error` and reading goes on as far as the tar stream allows, so one bad member
    does not hide the rest of the shard. webdataset reports some errors twice (member and stream level),
    hence the de-duplication. With `keys`, other samples' member bytes are not kept.
    """
    seen: set[str] = set()

    def handler(exn: Exception) -> bool:
        first = exn.args[0] if exn.args else ""
        message = f"{type(exn).__name__}: {first.split(' @ ')[0] if isinstance(first, str) else exn}"
        if message not in seen:
            seen.add(message)
            on_error(message)
        return True

    select = None if keys is None else (lambda name: base_plus_ext(name)[0] in keys)
    yield from tar_samples([{"url": str(path)}], handler=handler, select_files=select)


def inspect_shard(path: str | Path, limit: int | None = None) -> InspectResult:
    """Checks the first `limit` samples (all by default) of one tar, local or at a URL; raises only if the
    file is missing."""
    path = location(path)
    folder, name = Store.holding(path)
    if not folder.is_file(name):
        raise FileNotFoundError(f"no shard at {path}")
    errors: list[str] = []
    checks: list[SampleCheck] = []
    keys: set[str] = set()
    limited = False
    with closing(read_samples(path, errors.append)) as samples:
        for sample in samples:
            if limit is not None and len(checks) >= limit:
                limited = True  # known only once one more sample turned up
                break
            check = check_sample(sample)
            if check.key in keys:
                check.problems.append("key seen before in this tar: its members are not contiguous")
            keys.add(check.key)
            checks.append(check)
    if not checks and not limited:
        errors.append("no samples in the tar")
    cut = _truncation(folder, name)
    if cut:
        errors.append(cut)
    return InspectResult(path, checks, errors, limited)


def _truncation(folder: Store, name: str) -> str | None:
    """Python's tarfile (so webdataset) reads a tar cut at a block boundary as a complete, shorter one;
    a tar without its end-of-archive marker (two zero blocks), or not made of whole blocks, was cut."""
    size = folder.size(name)
    if size % TAR_BLOCK:
        return f"the tar is truncated: {size} bytes is not a whole number of {TAR_BLOCK}-byte blocks"
    with folder.open(name) as stream:
        stream.seek(max(0, size - 2 * TAR_BLOCK))
        tail = stream.read()
    if len(tail) < 2 * TAR_BLOCK or tail.strip(b"\0"):
        return "the tar is truncated: it does not end with the end-of-archive marker (two zero blocks)"
    return None


def check_sample(sample: dict[str, Any]) -> SampleCheck:
    """All contract checks of one webdataset sample; each problem is one readable sentence."""
    members = {name: len(data) for name, data in sample.items() if not name.startswith("__")}
    check = SampleCheck(sample["__key__"], members)
    problems = check.problems
    meta = _check_json(sample.get("json"), check)
    present = [name for name in CONTENT.values() if name in members]
    expected = CONTENT.get(check.kind or "")
    if len(present) > 1:
        problems.append(f"has both {' and '.join(present)}; a sample is one clip or one image")
    content = expected or (present[0] if present else None)
    needed = ["json", *([content] if content else []), *ARRAYS]
    missing = [name for name in needed if name not in members]
    if missing:
        problems.append(f"missing member(s): {', '.join(missing)}")
    unknown = sorted(set(members) - set(MEMBERS))
    if unknown:
        problems.append(f"member(s) not in the contract: {', '.join(unknown)}")
    rows = check.frames
    if content == "mp4" and "mp4" in members:
        decoded = _check_mp4(sample["mp4"], check)
        rows = rows or decoded  # without json frames, the arrays must at least match the video
    elif content == "jpg" and "jpg" in members:
        _check_jpg(sample["jpg"], check, meta)
        rows = 1
    for name, (dtype, row) in ARRAYS.items():
        if name in members:
            _check_array(name, sample[name], dtype, row, rows, problems)
    return check


def _check_json(data: bytes | None, check: SampleCheck) -> dict[str, Any]:
    """Parses the metadata and checks the fields the other checks and training rely on."""
    if data is None:
        return {}
    problems = check.problems
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"json does not parse: {exc}")
        return {}
    if not isinstance(meta, dict):
        problems.append(f"json is a {type(meta).__name__}, not an object")
        return {}
    missing = [name for name in JSON_FIELDS if name not in meta]
    if missing:
        problems.append(f"json lacks field(s): {', '.join(missing)}")
    if "key" in meta and meta["key"] != check.key:
        problems.append(f"json key {meta['key']!r} differs from the tar key")
    kind = meta.get("kind")
    if kind in CONTENT:
        check.kind = kind
    elif "kind" in meta:
        problems.append(f"json kind {kind!r} is neither 'clip' nor 'image'")
    frames = meta.get("frames")
    if _is_int(frames) and frames >= 1:
        check.frames = frames
    elif "frames" in meta:
        problems.append(f"json frames {frames!r} is not a positive integer")
    for name in ("width", "height"):
        if name in meta and not (_is_int(meta[name]) and meta[name] > 0):
            problems.append(f"json {name} {meta[name]!r} is not a positive integer")
    box = meta.get("crop_box")
    if "crop_box" in meta and not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
        problems.append(f"json crop_box {box!r} is not [x0, y0, x1, y1]")
    for name, fields in (("source_range", RANGE_FIELDS), ("quality", QUALITY_FIELDS)):
        value = meta.get(name)
        if name == "source_range" and value is None and check.kind == "image":
            continue  # a still has no time range: null is how the build says so
        if name in meta and not (isinstance(value, dict) and all(f in value for f in fields)):
            problems.append(f"json {name} is not an object with {', '.join(fields)}")
    if check.kind == "clip":
        fps = meta.get("fps")
        if _is_number(fps) and fps > 0:
            check.fps = float(fps)
        else:
            problems.append(f"json fps {fps!r} is not a positive number")
        if (meta.get("width"), meta.get("height")) != (CLIP_SIDE, CLIP_SIDE):
            problems.append(f"json size {meta.get('width')}x{meta.get('height')} is not {CLIP_SIDE}x{CLIP_SIDE}")
    if check.kind == "image" and check.frames not in (None, 1):
        problems.append(f"json frames is {check.frames}; an image has 1")
    return meta


def _check_mp4(data: bytes, check: SampleCheck) -> int | None:
    """Decodes every frame: the count must equal json frames, each frame 512x512, the rate json fps.

    Returns the number of frames decoded, or None when the video could not be read to its end.
    """
    problems = check.problems
    count = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                problems.append("mp4 has no video stream")
                return None
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                problems.append(f"mp4 codec is {stream.codec_context.name}, not h264")
            rate = stream.average_rate or stream.guessed_rate
            _check_rate(rate, check)
            for frame in container.decode(stream):
                if check.size is None:
                    check.size = (frame.width, frame.height)
                if (frame.width, frame.height) != (CLIP_SIDE, CLIP_SIDE):
                    problems.append(f"mp4 frame {count} is {frame.width}x{frame.height}, not {CLIP_SIDE}x{CLIP_SIDE}")
                    return None
                count += 1
    except av.FFmpegError as exc:
        where = f" after {count} frame(s)" if count else ""
        problems.append(f"mp4 does not decode{where}: {exc.strerror or exc}")
        return None
    if check.frames is not None and count != check.frames:
        problems.append(f"mp4 decodes to {count} frames, json says {check.frames}")
    return count


def _check_rate(rate: Fraction | None, check: SampleCheck) -> None:
    declared = check.fps
    check.fps = float(rate) if rate else declared
    if rate is None:
        check.problems.append("mp4 declares no frame rate")
    elif declared is not None and abs(float(rate) - declared) > FPS_TOLERANCE * declared:
        check.problems.append(f"mp4 runs at {float(rate):g} fps, json says {declared:g}")


def _check_jpg(data: bytes, check: SampleCheck, meta: dict[str, Any]) -> None:
    """Images are square RGB context crops of at least a clip frame's side, so training can random-crop 512:
    larger where the photo holds more context, exactly 512 where it does not (the build never pads)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind, mode, check.size = image.format, image.mode, image.size
    except (OSError, Image.DecompressionBombError) as exc:
        check.problems.append(f"jpg does not decode: {exc}")
        return
    width, height = check.size
    if kind != "JPEG":
        check.problems.append(f"jpg member holds a {kind} image")
    if mode != "RGB":
        check.problems.append(f"jpg is {mode}, not RGB")
    if width != height or width < CLIP_SIDE:
        check.problems.append(f"jpg is {width}x{height}: not a square of at least {CLIP_SIDE}")
    if "width" in meta and (meta["width"], meta.get("height")) != (width, height):
        check.problems.append(f"jpg is {width}x{height}, json says {meta.get('width')}x{meta.get('height')}")


def _check_array(
    name: str, data: bytes, dtype: type[np.generic], row: tuple[int, ...], rows: int | None, problems: list[str]
) -> None:
    """dtype, (rows, *row) shape, finite values; a landmarks frame may be all NaN (no face), never partly."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle shard contents
    except (ValueError, OSError, EOFError) as exc:
        problems.append(f"{name} is not a readable .npy: {exc}")
        return
    if not isinstance(array, np.ndarray):
        problems.append(f"{name} is an archive, not one array")
        return
    if array.dtype != dtype:
        problems.append(f"{name} is {array.dtype}, not {np.dtype(dtype)}")
    expected = ("T" if rows is None else rows, *row)
    if array.ndim != len(expected) or array.shape[1:] != row or (rows is not None and array.shape[0] != rows):
        problems.append(f"{name} has shape {array.shape}, expected {tuple(expected)}")
        return
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array).reshape(len(array), -1)
    if name == "landmarks.npy":
        empty = np.isnan(array).reshape(len(array), -1).all(axis=1)
        bad = ~(finite.all(axis=1) | empty)
    else:
        bad = ~finite.all(axis=1)
    if bad.any():
        what = "mixes NaN and values or holds inf" if name == "landmarks.npy" else "holds NaN or inf"
        problems.append(f"{name} {what} in frame(s) {_frames(np.flatnonzero(bad))}")
    if name == "bbox.npy":
        inverted = finite.all(axis=1) & ((array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1]))
        if inverted.any():
            problems.append(f"bbox.npy is not x0 < x1, y0 < y1 in frame(s) {_frames(np.flatnonzero(inverted))}")


def _frames(indices: np.ndarray, shown: int = 8) -> str:
    text = ", ".join(str(i) for i in indices[:shown])
    return text + (f" (+{len(indices) - shown} more)" if len(indices) > shown else "")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _bytes(count: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def describe(check: SampleCheck) -> str:
    """One line: kind, frames, fps, size, then each member with its size."""
    parts = [check.kind or "unknown kind"]
    if check.frames is not None:
        parts.append(f"{check.frames} frame{'s' if check.frames != 1 else ''}")
    if check.fps is not None:
        parts.append(f"{check.fps:g} fps")
    if check.size is not None:
        parts.append(f"{check.size[0]}x{check.size[1]}")
    members = ", ".join(f"{name} {_bytes(size)}" for name, size in check.members.items())
    return f"{', '.join(parts)} | {members}"


def print_inspection(result: InspectResult, file: TextIO | None = None, failed_only: bool = False) -> None:
    """Plain text, one block per sample (problems indented under it) and a verdict line at the end;
    `failed_only` leaves out the samples that pass, for checks of many tars."""
    out = file or sys.stdout
    print(f"{result.path}: {len(result.samples)} sample(s) read", file=out)
    for check in result.failed if failed_only else result.samples:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.key}", file=out)
        print(f"     {describe(check)}", file=out)
        for problem in check.problems:
            print(f"     - {problem}", file=out)
    for error in result.errors:
        print(f"tar: {error}", file=out)
    if result.limited:
        print(f"stopped after {len(result.samples)} sample(s) (--limit); the rest of the tar is unchecked", file=out)
    if result.ok:
        print(f"OK: all {len(result.samples)} sample(s) meet the shard contract", file=out)
    else:
        problems = sum(len(check.problems) for check in result.samples) + len(result.errors)
        print(
            f"FAILED: {len(result.failed)} of {len(result.samples)} sample(s) with problems, "
            f"{len(result.errors)} tar-level; {problems} problem(s) in all",
            file=out,
        )


# -- a build folder ------------------------------------------------------------------------------------


@dataclass
class ListedTar:
    """One tar of a committed work shard, as the build recorded it."""

    path: Location  # a local Path, or the tar's URL
    work: str
    samples: int
    size: int | None  # bytes stored; None when a committed tar is not there

    @property
    def name(self) -> str:
        return posixpath.basename(str(self.path))


@dataclass
class BuildListing:
    """The committed tars of a build folder (a work shard counts once its stats.json exists)."""

    root: Location
    tars: list[ListedTar]
    pending: list[str]  # work shards with files but no stats.json: running, or left by a killed build
    prefix: str = "shards/"  # where the tars are, relative to `root`: "" when `root` is the shards/ folder

    @property
    def missing(self) -> list[ListedTar]:
        return [tar for tar in self.tars if tar.size is None]

    def find(self, name: str) -> ListedTar:
        """The tar named `name`, with or without `shards/` and `.tar`, as the listing and the manifest name it."""
        wanted = posixpath.basename(name).removesuffix(".tar") + ".tar"
        for tar in self.tars:
            if tar.name == wanted:
                return tar
        names = ", ".join(tar.name for tar in self.tars[:NAMED])
        more = f" and {len(self.tars) - NAMED} more" if len(self.tars) > NAMED else ""
        raise FileNotFoundError(f"no committed tar {wanted} in {self.root}; it has: {names or 'none'}{more}")


def list_build(root: str | Path) -> BuildListing:
    """Reads a build folder's records (or those of its shards/ folder, given instead), local or at a URL:
    each work shard's stats.json (its tars and sample count), and its rows only when it wrote more than one
    tar, to split the count between them. The tars' sizes come from one listing, not a request per tar."""
    root = location(root)
    store = Store.at(root)
    shards = store.child("shards")
    if not shards.is_folder():  # the build folder, or its shards/ itself
        shards = store
        if not store.names("*.stats.json"):
            raise FileNotFoundError(
                f"{root} is not a build folder: it has no shards/ and no *.stats.json "
                "(give the --out of rp-data build, or one .tar)"
            )
    sizes = shards.sizes("*.tar")
    tars: list[ListedTar] = []
    committed = set()
    for marker in shards.names("*.stats.json"):
        stats = json.loads(shards.read_text(marker))
        committed.add(stats["work"])
        counts = _per_tar(shards, f"{stats['work']}.parquet", stats)
        for name in stats["tars"]:
            tars.append(ListedTar(shards.location_of(name), stats["work"], counts.get(name, 0), sizes.get(name)))
    seen = {name.removesuffix(".parquet") for name in shards.names("*.parquet")}
    seen |= {name.removesuffix(".tar").rpartition("-")[0] for name in sizes}
    return BuildListing(root, tars, sorted(seen - committed), "" if shards is store else "shards/")


def _per_tar(shards: Store, rows_name: str, stats: dict[str, Any]) -> dict[str, int]:
    """Samples per tar name of one work shard: all of them in its only tar, else counted from its rows."""
    if len(stats["tars"]) == 1:
        return {stats["tars"][0]: int(stats["samples"])}
    filesystem, (path,) = shards.arrow([rows_name])
    rows = pq.read_table(path, columns=["kind", "status", "tar"], filesystem=filesystem).to_pandas()
    kept = rows[(rows.kind == "sample") & (rows.status == "ok")]
    return {posixpath.basename(tar): int(count) for tar, count in kept.tar.value_counts().items()}


def print_listing(listing: BuildListing, file: TextIO | None = None) -> None:
    """One line per committed tar (the first LISTED), then the totals and what is not committed."""
    out = file or sys.stdout
    works = len({tar.work for tar in listing.tars})
    total = sum(tar.samples for tar in listing.tars)
    print(f"{listing.root}: {len(listing.tars)} tar(s) of {works} committed work shard(s), {total} sample(s)", file=out)
    width = max((len(listing.prefix + tar.name) for tar in listing.tars[:LISTED]), default=0)
    for tar in listing.tars[:LISTED]:
        size = "MISSING: committed but not on disk" if tar.size is None else _bytes(tar.size)
        print(f"  {listing.prefix + tar.name:<{width}}  {tar.samples:>6} sample(s)  {size}", file=out)
    if len(listing.tars) > LISTED:
        print(f"  ... and {len(listing.tars) - LISTED} more tar(s)", file=out)
    if listing.pending:
        print(
            f"{len(listing.pending)} work shard(s) not committed (still running, or left by a killed build; "
            f"not listed): {', '.join(listing.pending[:NAMED])}{' ...' if len(listing.pending) > NAMED else ''}",
            file=out,
        )
