"""`rp-data report DIR`: one static HTML page that shows what a build produced and what it threw away.

Read from the build output contract alone (build.json, shards/*.parquet, shards/*.stats.json, the tars),
so it works on a build still running or one that died: only committed work shards (those whose
stats.json exists) count, and whatever cannot be read becomes a note on the page instead of an error.
The page and its PNGs form one local folder that can be copied or served as is. The build may be local or
at an fsspec URL (`s3://bucket/run`, read through pipeline/storage.py); the page of a build at a URL goes to
the current folder unless told otherwise, since the build's own folder is not a local one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import html
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from pipeline.report_tally import MEDIA_KEYS, MEDIA_LISTED, Tally, sample_pool, tally_build
from pipeline.storage import Location, Store, is_url, location

STATUSES = ("ok", "filtered", "failed")
STATUS_COLORS = {"ok": "#4c9a2a", "filtered": "#e69f00", "failed": "#c0392b"}
NUMERIC = (
    "frames", "face_px", "blur", "yaw", "pitch", "roll",
    "seconds_decode", "seconds_faces", "seconds_encode", "seconds_total", "attempt",
)  # fmt: skip
TEXT = ("item_id", "dataset", "kind", "status", "reason", "error_class", "message", "shard", "tar", "key")
COLUMNS = TEXT + NUMERIC  # the build's row contract: a column no table has is said on the page
__all__ = ["MEDIA_LISTED", "BuildView", "choose_samples", "draw_tile", "load_build", "sample_pool", "write_report"]
PLOTS = ("counts.png", "reasons.png", "frames.png", "face_px.png", "pose.png", "blur.png")
SHEET = "contact_sheet.png"
TILE = 192  # contact-sheet thumbnail side, px
GAP = 6
CAPTION = 34
DOT_COLOR = (0, 255, 120)
BOX_COLOR = (255, 40, 40)
# what a sample that breaks the contract raises while drawn: a note on the page, not a failed report
MEDIA_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, Image.DecompressionBombError)


@dataclass
class BuildView:
    """What is committed in a build directory, and notes on everything that is not (or not readable)."""

    root: Location  # as the user named it: a local Path, or the URL
    info: dict[str, Any]  # build.json, {} when missing or unreadable
    stats: list[dict[str, Any]]  # one stats.json per committed work shard
    tally: Tally  # what the page shows of the committed rows (each item's latest attempt)
    pool: pa.Table  # (tar, key) of the committed ok samples, sorted: what the contact sheet draws from
    pending: list[str]  # work shards with files but no stats.json: running, or abandoned by a crash
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RowTables:
    """The page's parts drawn from the rows, made before the rows' tally is let go."""

    status: str  # html of the per dataset, kind and status table
    media: str  # html of the source media section
    available: int  # ok samples the contact sheet could draw from


def write_report(build_dir: str | Path, out_html: str | Path | None = None, samples: int = 16, seed: int = 0) -> Path:
    """Writes the page (`default_page`) and its PNGs beside it; returns the page's path.

    `samples` random ok samples (drawn by `seed`, so a rerun shows the same faces) make the contact sheet.
    Raises FileNotFoundError only when `build_dir` is not a directory (or, at a URL, holds nothing); an
    empty or partial build gives a page that says what is missing.
    """
    root = location(build_dir)
    store = Store.at(root)
    if not store.is_folder():
        raise FileNotFoundError(f"no build directory at {root}")
    page = Path(out_html) if out_html is not None else default_page(root)
    folder = page.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _returning_memory():
        view = load_build(root)
        figures = _save_plots(view.tally, folder)
        chosen = choose_samples(view.pool, samples, seed)
        tables = RowTables(_status_table(view.tally), _media_section(view.tally), view.pool.num_rows)
        # the rows are done with: freed before the contact sheet imports its tar reader (webdataset imports torch)
        view.tally, view.pool = Tally(), view.pool.schema.empty_table()
    shown = _save_contact_sheet(store, chosen, folder / SHEET, view.notes)
    for name in (*PLOTS, SHEET):  # a rerun must not leave a previous run's pictures beside the page
        if name not in figures and not (name == SHEET and shown) and (folder / name).exists():
            (folder / name).unlink()
    text = _page(view, figures, tables, shown, samples, seed)
    part = page.with_name(f".{page.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, page)
    return page


def default_page(root: Location) -> Path:
    """DIR/report/index.html for a local build; for one at a URL, which is no local folder to write in,
    <name>-report/index.html in the current folder (`s3://bucket/run` -> ./run-report/index.html)."""
    if not is_url(root):
        return Path(root) / "report" / "index.html"
    return Path(f"{_name(root)}-report") / "index.html"


def _name(root: Location) -> str:
    """The build folder's own name: its last path component, or a bucket's name."""
    return Path(str(root)).name


@contextmanager
def _returning_memory() -> Iterator[None]:
    """Gives the memory of the rows' tally back to the system at the end: otherwise the allocators keep the
    freed pages (measured: ~0.4 GiB on a 3 M-row build), and they add up with torch's (~0.6 GiB) when the
    contact sheet loads its tar reader. Arrow allocates from the system allocator meanwhile, since pyarrow's
    default (mimalloc) keeps its pages, and the C allocator is trimmed after (glibc only; elsewhere a no-op)."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        gc.collect()
        libc = ctypes.util.find_library("c")
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
        if trim is not None:
            trim(0)


# -- reading the build ---------------------------------------------------------------------------------


def load_build(root: str | Path) -> BuildView:
    """build.json, the stats of every committed work shard (the stats.json is the marker), and the tally of
    their rows, read a work-shard family at a time; `root` is a local folder or an fsspec URL."""
    root = location(root)
    store = Store.at(root)
    shards = store.child("shards")
    notes: list[str] = []
    info = _read_json(store, "build.json", notes)
    if not store.exists("build.json"):
        notes.append("build.json is missing: the build has not started here, or this is not a build directory.")
    tar_files = _tar_files(store)
    stats: list[dict[str, Any]] = []
    committed: list[str] = []
    for name in shards.names("*.stats.json"):
        work = name.removesuffix(".stats.json")
        record = _read_json(shards, name, notes, f"shards/{name}")
        if not record:
            continue
        committed.append(work)
        stats.append(record)
        absent = [str(tar) for tar in record.get("tars") or [] if str(tar) not in tar_files]
        if absent:
            notes.append(f"work shard {work} is committed but its tar(s) {', '.join(absent)} are missing.")
    # items held out by --exclude-split and annotation problems have no work shard: the tally adds them last
    tally = tally_build(store, committed, notes)
    missing = [column for column in COLUMNS if column not in tally.columns]
    if missing and tally.rows + tally.superseded:
        notes.append(f"the shard tables lack column(s) {', '.join(missing)}; those plots stay empty.")
    if tally.superseded:
        notes.append(f"{tally.superseded} row(s) of earlier attempts are replaced by a retry's rows and not counted.")
    seen = {name.removesuffix(".parquet") for name in shards.names("*.parquet")}
    seen |= {name.removesuffix(".tar").rpartition("-")[0] for name in shards.names("*.tar")}
    pending = sorted(seen - set(committed) - {""})
    return BuildView(root, info, stats, tally, tally.pool(), pending, notes)


def _tar_files(store: Store) -> set[str]:
    """The names a stats file may give its tars by (relative to DIR/shards, or to DIR) of the tars that are
    there, from two listings rather than a request per tar."""
    in_shards = store.child("shards").names("*.tar")
    return {*in_shards, *(f"shards/{name}" for name in in_shards), *store.names("*.tar")}


def _read_json(store: Store, name: str, notes: list[str], shown: str | None = None) -> dict[str, Any]:
    """The object in the file `name` of `store`, {} when missing; unreadable is a note naming it as `shown`."""
    if not store.exists(name):
        return {}
    try:
        value = json.loads(store.read_text(name))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{shown or name} is unreadable ({exc}); it is ignored.")
        return {}
    if not isinstance(value, dict):
        notes.append(f"{shown or name} holds a {type(value).__name__}, not an object; it is ignored.")
        return {}
    return value


# -- plots ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure on the Agg canvas, without pyplot: no global state and no display needed."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(np.atleast_1d(figure.subplots(1, columns)))


def _frame(records: list[tuple[object, ...]], keys: list[str]) -> pd.DataFrame:
    """Tallied counts as rows (keys as objects, like the build's text columns, and a `rows` count)."""
    frame = pd.DataFrame(records, columns=[*keys, "rows"], dtype=object)
    return frame.astype({"rows": "int64"})


def _groups(tally: Tally) -> pd.DataFrame:
    return _frame([(*key, group.rows) for key, group in tally.groups.items()], ["dataset", "kind", "status"])


def _plot_counts(tally: Tally) -> Figure | None:
    if not tally.rows:
        return None
    groups = _groups(tally)
    figure, axes = _figure(10, 3.8, 2)
    for ax, kind, title in zip(axes, ("source", "sample"), ("source items", "output samples"), strict=True):
        part = groups[groups["kind"] == kind]
        table = part.groupby(["dataset", "status"])["rows"].sum().unstack(fill_value=0)
        table = table.reindex(columns=STATUSES, fill_value=0)
        bottom = np.zeros(len(table))
        for status in STATUSES:
            ax.bar(table.index, table[status], bottom=bottom, color=STATUS_COLORS[status], label=status)
            bottom += table[status].to_numpy()
        ax.set_title(f"{title} ({part['rows'].sum()})")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelrotation=30)
        if table.empty:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    return figure


def _plot_reasons(tally: Tally) -> Figure | None:
    if not tally.dropped:
        return None
    dropped = _frame([(*key, rows) for key, rows in tally.dropped.items()], ["reason", "status"])
    table = dropped.groupby(["reason", "status"])["rows"].sum().unstack(fill_value=0)
    table = table.reindex(columns=["filtered", "failed"], fill_value=0)
    table = table.loc[table.sum(axis=1).sort_values().index]
    figure, (ax,) = _figure(8, 1.2 + 0.32 * len(table))
    left = np.zeros(len(table))
    for status in table.columns:
        ax.barh(table.index, table[status], left=left, color=STATUS_COLORS[status], label=status)
        left += table[status].to_numpy()
    ax.set_xlabel("rows (source items and samples)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("why items and samples were dropped")
    ax.legend(loc="lower right")
    return figure


def _histogram(ax: Axes, kept: np.ndarray, dropped: np.ndarray, xlabel: str) -> None:
    """Kept samples against filtered rows on shared bins: shows where a threshold cut the data."""
    values = np.concatenate([kept, dropped])
    bins = np.histogram_bin_edges(values, bins=min(30, max(5, len(values))))
    if len(kept):
        ax.hist(kept, bins=bins, color=STATUS_COLORS["ok"], alpha=0.8, label=f"ok samples ({len(kept)})")
    if len(dropped):
        ax.hist(dropped, bins=bins, histtype="step", linewidth=2, color=STATUS_COLORS["filtered"],
                label=f"filtered rows ({len(dropped)})")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()


def _split(tally: Tally, column: str) -> tuple[np.ndarray, np.ndarray]:
    return tally.numbers(column, "sample", "ok"), tally.numbers(column, None, "filtered")


def _plot_column(column: str, title: str, xlabel: str) -> Callable[[Tally], Figure | None]:
    def plot(tally: Tally) -> Figure | None:
        kept, dropped = _split(tally, column)
        if column == "frames":  # clip length: image samples have one frame and would swamp the plot
            kept = kept[kept > 1]
        if not len(kept) and not len(dropped):
            return None
        figure, (ax,) = _figure(6.5, 3.6)
        _histogram(ax, kept, dropped, xlabel)
        median = f", median of ok {np.median(kept):.4g}" if len(kept) else ""
        ax.set_title(f"{title}{median}")
        return figure

    return plot


def _plot_pose(tally: Tally) -> Figure | None:
    if not any(group.chunks[angle] for group in tally.groups.values() for angle in ("yaw", "pitch", "roll")):
        return None
    figure, axes = _figure(12, 3.4, 3)
    for ax, angle in zip(axes, ("yaw", "pitch", "roll"), strict=True):
        kept, dropped = _split(tally, angle)
        if not len(kept) and not len(dropped):
            ax.text(0.5, 0.5, f"no {angle} values", ha="center", va="center", transform=ax.transAxes)
            continue
        _histogram(ax, kept, dropped, f"mean |{angle}| over the clip (degrees)")
        ax.set_title(angle)
    return figure


PLOTTERS: dict[str, tuple[str, Callable[[Tally], Figure | None]]] = {
    "counts.png": ("Source items and output samples per dataset, by status", _plot_counts),
    "reasons.png": ("Filter and failure reasons", _plot_reasons),
    "frames.png": ("Clip length", _plot_column("frames", "clip length", "frames per clip")),
    "face_px.png": ("Face size", _plot_column("face_px", "face size", "median face box side (source px)")),
    "pose.png": ("Head pose", _plot_pose),
    "blur.png": ("Sharpness", _plot_column("blur", "blur score", "blur score (higher = sharper)")),
}


def _save_plots(tally: Tally, folder: Path) -> dict[str, str]:
    """file name -> caption, for the plots that had data."""
    saved = {}
    for name, (caption, plot) in PLOTTERS.items():
        figure = plot(tally)
        if figure is not None:
            figure.savefig(folder / name, dpi=90)
            saved[name] = caption
    return saved


# -- contact sheet -------------------------------------------------------------------------------------


def choose_samples(pool: pa.Table, count: int, seed: int) -> pd.DataFrame:
    """`count` (tar, key) rows drawn without replacement from `pool` (as sample_pool orders it), so the same
    build and seed show the same faces however the shards' rows happen to be ordered."""
    if count <= 0 or not pool.num_rows:
        return pool.slice(0, 0).to_pandas()
    picks = np.random.default_rng(seed).choice(pool.num_rows, size=min(count, pool.num_rows), replace=False)
    return pool.take(np.sort(picks)).to_pandas()


def draw_tile(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray, side: int = TILE) -> Image.Image:
    """The frame scaled to fit `side` px, with its landmarks (2x2 px dots) and face box drawn at that scale.

    Drawn after scaling so the dots stay small and crisp; rows of NaN (no face in that frame) draw nothing.
    """
    height, width = frame.shape[:2]
    scale = side / max(width, height)
    image = Image.fromarray(frame).resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    points = landmarks.astype(np.float32).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)] * scale
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        draw.point([(float(x) + dx, float(y) + dy) for x, y in points], fill=DOT_COLOR)
    box = box.astype(np.float32).reshape(-1)
    if box.size == 4 and np.isfinite(box).all():
        draw.rectangle([float(v) * scale for v in box], outline=BOX_COLOR, width=2)
    return image


def _load_npy(sample: dict[str, Any], name: str) -> np.ndarray:
    return np.load(io.BytesIO(sample[name]), allow_pickle=False)


def _clip_frames(data: bytes, wanted: Sequence[int]) -> dict[int, np.ndarray]:
    """The frames at `wanted` indices, decoded in order (exact, unlike seeking to a keyframe)."""
    found: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data), mode="r") as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if index >= max(wanted):
                break
    return found


def _sample_tiles(sample: dict[str, Any]) -> tuple[list[tuple[str, Image.Image]], str]:
    """Labelled tiles (first/middle/last frame of a clip, or the image) and a caption line."""
    missing = [name for name in ("json", "landmarks.npy", "bbox.npy") if name not in sample]
    if missing or not ("jpg" in sample or "mp4" in sample):
        raise ValueError(f"lacks member(s) {', '.join(missing or ['mp4 or jpg'])}")
    meta = json.loads(sample["json"])
    landmarks, boxes = _load_npy(sample, "landmarks.npy"), _load_npy(sample, "bbox.npy")
    if not isinstance(meta, dict) or landmarks.ndim != 3 or boxes.ndim != 2 or not 0 < len(landmarks) <= len(boxes):
        raise ValueError("json, landmarks.npy or bbox.npy break the contract (rp-data inspect names which)")
    if "jpg" in sample:
        with Image.open(io.BytesIO(sample["jpg"])) as image:
            frame = np.asarray(image.convert("RGB"))
        caption = f"{meta.get('dataset')} · image {frame.shape[1]}x{frame.shape[0]}"
        return [("image", draw_tile(frame, landmarks[0], boxes[0]))], caption
    count = len(landmarks)
    wanted = sorted({0, count // 2, count - 1})
    frames = _clip_frames(sample["mp4"], wanted)
    missing = [index for index in wanted if index not in frames]
    if missing:
        raise ValueError(f"mp4 ends before frame {missing[0]} of {count}")
    tiles = [(f"frame {i}", draw_tile(frames[i], landmarks[i], boxes[i])) for i in wanted]
    fps = meta.get("fps")
    rate = f"{fps:g}" if isinstance(fps, int | float) else "?"
    caption = f"{meta.get('dataset')} · clip {count} frames @ {rate} fps"
    return tiles, caption


def _read_chosen(store: Store, chosen: pd.DataFrame, notes: list[str]) -> list[dict[str, Any]]:
    """The chosen samples' members, read with webdataset one tar at a time, stopping once all are found."""
    from pipeline.inspect_shard import read_samples  # webdataset imports torch: ~0.6 GiB, loaded only now

    found: dict[str, dict[str, Any]] = {}
    for tar, group in chosen.groupby("tar", sort=True):
        wanted = set(group["key"])
        if not store.is_file(str(tar)):
            notes.append(f"contact sheet: {tar} is listed in a committed shard table but missing.")
            continue
        errors: list[str] = []
        with closing(read_samples(store.location_of(str(tar)), errors.append, keys=wanted)) as samples:
            for sample in samples:
                if sample["__key__"] in wanted:
                    found[sample["__key__"]] = sample
                    wanted.discard(sample["__key__"])
                if not wanted:
                    break
        notes.extend(f"contact sheet: reading {tar}: {error}" for error in errors)
        if wanted:
            notes.append(f"contact sheet: {tar} lacks sample(s) {', '.join(sorted(wanted))}.")
    return [found[key] for key in chosen["key"] if key in found]


def _save_contact_sheet(store: Store, chosen: pd.DataFrame, path: Path, notes: list[str]) -> list[dict[str, str]]:
    """Draws the chosen samples, two per row; returns what is shown (key, dataset, caption, tar)."""
    cells: list[tuple[str, str, list[tuple[str, Image.Image]]]] = []
    shown = []
    tars = dict(zip(chosen["key"], chosen["tar"], strict=True))
    for sample in _read_chosen(store, chosen, notes):
        key = sample["__key__"]
        try:
            tiles, caption = _sample_tiles(sample)
        except MEDIA_ERRORS as exc:
            reason = exc.strerror if isinstance(exc, av.FFmpegError) else exc
            notes.append(f"contact sheet: sample {key} could not be drawn: {type(exc).__name__}: {reason}")
            continue
        cells.append((key, caption, tiles))
        shown.append({"key": key, "caption": caption, "tar": str(tars[key])})
    if cells:
        _compose(cells).save(path, format="PNG", compress_level=6)
    return shown


def _compose(cells: list[tuple[str, str, list[tuple[str, Image.Image]]]], per_row: int = 2) -> Image.Image:
    font = ImageFont.load_default(size=12)
    cell_w, cell_h = 3 * TILE + 2 * GAP, TILE + CAPTION
    rows = -(-len(cells) // per_row)
    sheet = Image.new("RGB", (per_row * (cell_w + 3 * GAP) + GAP, rows * (cell_h + 3 * GAP) + GAP), (34, 34, 34))
    draw = ImageDraw.Draw(sheet)
    for index, (key, caption, tiles) in enumerate(cells):
        x0 = GAP + (index % per_row) * (cell_w + 3 * GAP)
        y0 = GAP + (index // per_row) * (cell_h + 3 * GAP)
        for position, (label, tile) in enumerate(tiles):
            x = x0 + position * (TILE + GAP)
            sheet.paste(tile, (x, y0))
            draw.text((x + 3, y0 + 2), label, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        draw.text((x0, y0 + TILE + 3), key, fill=(235, 235, 235), font=font)
        draw.text((x0, y0 + TILE + 18), caption, fill=(170, 170, 170), font=font)
    return sheet


# -- the page ------------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value))


def _split_sentence(info: dict[str, Any]) -> str:
    """Whether evaluation items can be in these shards, in words: leakage ruins every later metric."""
    if "excluded_split" not in info:
        return "build.json does not say whether an evaluation split was excluded."
    split = info["excluded_split"]
    if split:
        return (
            f"The evaluation split <b>{_esc(split)}</b> was excluded from this build: its items are not in "
            "these shards, so models trained on them can be evaluated on it."
        )
    return (
        "<b>No evaluation split was excluded</b>: these shards may hold evaluation items; do not evaluate "
        "models trained on them on the test split."
    )


def _shards_summary(view: BuildView) -> str:
    def total(name: str) -> float:
        return sum(r.get(name) or 0 for r in view.stats if isinstance(r.get(name) or 0, int | float))

    tars = sum(len(r.get("tars") or []) for r in view.stats)
    text = (
        f"<p>{len(view.stats)} committed work shard(s): {tars} tar(s), {total('samples'):g} samples, "
        f"{total('bytes') / 1e6:.1f} MB, {total('frames'):g} frames, {total('seconds'):.1f} s of worker time.</p>"
    )
    if view.pending:
        listed = ", ".join(view.pending[:20]) + (" …" if len(view.pending) > 20 else "")
        text += (
            f"<p class=note>{len(view.pending)} work shard(s) have files but no stats.json (still running, or "
            f"abandoned by a crash); they are not counted: {_esc(listed)}</p>"
        )
    return text


def _status_table(tally: Tally) -> str:
    """Per dataset, kind and status: counts, frames, medians of the quality scores, top reasons, time."""
    if not tally.rows:
        return "<p>No rows yet.</p>"

    def total(values: np.ndarray) -> float:
        return values.sum() if len(values) else np.nan

    def median(values: np.ndarray) -> float:
        return np.median(values) if len(values) else np.nan

    keys = ["dataset", "kind", "status"]
    table = pd.DataFrame(
        [
            {
                **dict(zip(keys, key, strict=True)),
                "rows": group.rows,
                "frames": total(group.numbers("frames")),
                "face_px": median(group.numbers("face_px")),
                "blur": median(group.numbers("blur")),
                "yaw": median(group.numbers("yaw")),
                "seconds": total(group.numbers("seconds_total")),
                "reasons": ", ".join(f"{k} {v}" for k, v in group.reasons.most_common(3)),
            }
            for key, group in tally.groups.items()
        ]
    ).astype({"dataset": object, "kind": object, "status": object, "reasons": object})
    order = table.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    table = table.iloc[np.argsort(order, kind="stable")].rename(
        columns={"face_px": "median face_px", "blur": "median blur", "yaw": "median |yaw|", "seconds": "seconds_total"}
    )
    return table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0, classes="grid")


def _media_section(tally: Tally) -> str:
    """How the source videos were stored, as the build read them: counts per combination of codec, format,
    colour matrix, range, rotation and rate, then each file (rarest combinations first, so that in a large
    build the few sideways, full-range or variable-rate files are the ones listed)."""
    if not tally.media_rows or tally.media_files is None:
        return (
            "<p class=note>No source row records its media properties (codec, colour matrix, range, rotation, "
            "frame rate): the build read no video yet, or it was made by a pipeline that did not record them.</p>"
        )
    found = _frame([(*key, files) for key, files in tally.media_counts.items()], [*MEDIA_KEYS, "status"])
    counts = found.groupby(MEDIA_KEYS).agg(files=("rows", "sum"))
    for status in STATUSES:
        counts[status] = found[found["status"] == status].groupby(MEDIA_KEYS)["rows"].sum()
    counts = counts.fillna(0).astype(int).reset_index()
    # a combination's size; one without a dataset is not counted above, and listed last
    sizes = found.groupby(MEDIA_KEYS)["rows"].sum().to_dict()
    files = tally.media_files
    rarity = [sizes.get(key, np.nan) for key in files[MEDIA_KEYS].itertuples(index=False, name=None)]
    listed = files.assign(rarity=rarity).sort_values(["rarity", "dataset", "item_id"], kind="stable").head(MEDIA_LISTED)
    more = tally.media_rows - len(listed)
    tail = f" The {len(listed)} in the rarest combinations are listed; {more} more are only counted." if more else ""
    return (
        f"<p>{tally.media_rows} source file(s) by how they are stored, as the build read them (a rotation is the "
        f"display matrix's counter-clockwise turn).{tail}</p>"
        + counts.to_html(index=False, border=0, classes="grid")
        + "<p>Each file, the rarest kinds first:</p>"
        + listed.drop(columns=["rarity", "order"])
        .rename(columns={"item_id": "item"})
        .to_html(index=False, border=0, classes="grid")
    )


def _contact_section(shown: list[dict[str, str]], asked: int, seed: int, available: int) -> str:
    if not shown:
        why = "no committed ok sample to show" if available == 0 else "none of the drawn samples could be read"
        return f"<p class=note>No contact sheet: {why}.</p>"
    items = "".join(
        f"<tr><td>{_esc(s['key'])}</td><td>{_esc(s['caption'])}</td><td>{_esc(s['tar'])}</td></tr>" for s in shown
    )
    return (
        f"<p>{len(shown)} of {available} ok samples (asked for {asked}, seed {seed}); green dots are the "
        f"landmarks, the red frame is the face box.</p><img src='{SHEET}' alt='contact sheet'>"
        f"<table class=grid><tr><th>key</th><th>sample</th><th>tar</th></tr>{items}</table>"
    )


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1300px; padding: 0 1em; color: #222; }
img { max-width: 100%; } figure { margin: 1em 0; } figcaption { color: #555; }
.note { background: #fff4d6; border-left: 4px solid #e69f00; padding: .4em .8em; }
table.grid { border-collapse: collapse; margin: .6em 0; }
.grid td, .grid th { border: 1px solid #ccc; padding: 2px 8px; }
pre { background: #f4f4f4; padding: .6em; overflow-x: auto; }
"""


def _page(
    view: BuildView, figures: dict[str, str], tables: RowTables, shown: list[dict[str, str]], asked: int, seed: int
) -> str:
    info = view.info
    notes = list(view.notes)
    if not view.stats:
        notes.insert(0, "No work shard is committed yet (no shards/*.stats.json): counts, plots and the contact "
                        "sheet appear once one is.")  # fmt: skip
    facts = "".join(
        f"<tr><th>{name}</th><td>{_esc(info.get(key, '–'))}</td></tr>"
        for name, key in (("fingerprint", "fingerprint"), ("pipeline version", "pipeline_version"),
                          ("created", "created"))
    )  # fmt: skip
    plots = "".join(
        f"<figure><img src='{name}' alt='{_esc(caption)}'><figcaption>{_esc(caption)}</figcaption></figure>"
        for name, caption in figures.items()
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>build report: {_esc(_name(view.root))}</title>",
        f"<style>{STYLE}</style></head><body><h1>Build report: {_esc(view.root)}</h1>",
        f"<table class=grid>{facts}</table>",
        *(f"<p class=note>{_esc(note)}</p>" for note in notes),
        f"<h2>Evaluation split</h2><p>{_split_sentence(info)}</p>",
        f"<h2>Shards</h2>{_shards_summary(view)}",
        "<h2>Plots</h2>" + (plots or "<p>No data to plot yet.</p>"),
        f"<h2>Per dataset and status</h2>{tables.status}",
        f"<h2>Source media</h2>{tables.media}",
        f"<h2>Contact sheet</h2>{_contact_section(shown, asked, seed, tables.available)}",
        f"<h2>Config</h2><pre>{_esc(json.dumps(info.get('config', {}), indent=2, sort_keys=True))}</pre>",
        f"<h2>Sources</h2><pre>{_esc(json.dumps(info.get('sources', {}), indent=2, sort_keys=True))}</pre>",
        "</body></html>\n",
    ]
    return "\n".join(parts)
