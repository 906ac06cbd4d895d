"""`rp-data report DIR`: one static HTML page that shows what a build produced and what it threw away.

Read from the build output contract alone (build.json, shards/*.parquet, shards/*.stats.json, the tars),
so it works on a build still running or one that died: only committed work shards (those whose
stats.json exists) count, and whatever cannot be read becomes a note on the page instead of an error.
The page and its PNGs form one folder that can be copied or served as is.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from pipeline.inspect_shard import read_samples
from pipeline.manifest_merge import annotation_rows

STATUSES = ("ok", "filtered", "failed")
STATUS_COLORS = {"ok": "#4c9a2a", "filtered": "#e69f00", "failed": "#c0392b"}
NUMERIC = (
    "frames", "face_px", "blur", "yaw", "pitch", "roll",
    "seconds_decode", "seconds_faces", "seconds_encode", "seconds_total", "attempt",
)  # fmt: skip
TEXT = ("item_id", "dataset", "kind", "status", "reason", "error_class", "message", "shard", "tar", "key")
COLUMNS = TEXT + NUMERIC
# what the build read each source video as; builds from before these columns existed lack them
MEDIA = {
    "media_codec": "codec",
    "media_format": "format",
    "media_matrix": "matrix",
    "media_range": "range",
    "media_rotation": "rotation",
    "media_vfr": "variable rate",
}
MEDIA_LISTED = 200  # source files listed one by one; the counts per combination above them cover all
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

    root: Path
    info: dict[str, Any]  # build.json, {} when missing or unreadable
    stats: list[dict[str, Any]]  # one stats.json per committed work shard
    rows: pd.DataFrame  # manifest rows of the committed work shards
    pending: list[str]  # work shards with files but no stats.json: running, or abandoned by a crash
    notes: list[str] = field(default_factory=list)


def write_report(build_dir: str | Path, out_html: str | Path | None = None, samples: int = 16, seed: int = 0) -> Path:
    """Writes the page (default DIR/report/index.html) and its PNGs beside it; returns the page's path.

    `samples` random ok samples (drawn by `seed`, so a rerun shows the same faces) make the contact sheet.
    Raises FileNotFoundError only when `build_dir` is not a directory; an empty or partial build gives
    a page that says what is missing.
    """
    root = Path(build_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no build directory at {root}")
    page = Path(out_html) if out_html is not None else root / "report" / "index.html"
    folder = page.parent
    folder.mkdir(parents=True, exist_ok=True)
    view = load_build(root)
    figures = _save_plots(view.rows, folder)
    chosen = choose_samples(view.rows, samples, seed)
    shown = _save_contact_sheet(root, chosen, folder / SHEET, view.notes)
    for name in (*PLOTS, SHEET):  # a rerun must not leave a previous run's pictures beside the page
        if name not in figures and not (name == SHEET and shown) and (folder / name).exists():
            (folder / name).unlink()
    text = _page(view, figures, shown, samples, seed)
    part = page.with_name(f".{page.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, page)
    return page


# -- reading the build ---------------------------------------------------------------------------------


def load_build(root: Path) -> BuildView:
    """build.json, and the rows and stats of every committed work shard (the stats.json is the marker)."""
    notes: list[str] = []
    info = _read_json(root / "build.json", notes, "build.json")
    if not (root / "build.json").exists():
        notes.append("build.json is missing: the build has not started here, or this is not a build directory.")
    shards = root / "shards"
    stats: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    committed: set[str] = set()
    for path in sorted(shards.glob("*.stats.json")):
        work = path.name.removesuffix(".stats.json")
        record = _read_json(path, notes, f"shards/{path.name}")
        if not record:
            continue
        committed.add(work)
        stats.append(record)
        # tar names may be relative to DIR (as in the manifest) or to DIR/shards
        tars = [str(tar) for tar in record.get("tars") or []]
        absent = [tar for tar in tars if not ((root / tar).is_file() or (shards / tar).is_file())]
        if absent:
            notes.append(f"work shard {work} is committed but its tar(s) {', '.join(absent)} are missing.")
        table = shards / f"{work}.parquet"
        try:
            frames.append(pd.read_parquet(table))
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            notes.append(f"work shard {work} is committed but its table shards/{table.name} is unreadable: {exc}")
    # items held out by --exclude-split and annotation problems have no work shard: the build keeps them aside
    if (root / "excluded.parquet").exists():
        frames.append(pd.read_parquet(root / "excluded.parquet"))
    annotation = annotation_rows(root)
    if annotation:
        frames.append(pd.DataFrame(annotation))
    seen = {p.name.removesuffix(".parquet") for p in shards.glob("*.parquet")}
    seen |= {p.stem.rpartition("-")[0] for p in shards.glob("*.tar")}
    pending = sorted(seen - committed - {""})
    return BuildView(root, info, stats, _normalise(frames, notes), pending, notes)


def _read_json(path: Path, notes: list[str], name: str) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{name} is unreadable ({exc}); it is ignored.")
        return {}
    if not isinstance(value, dict):
        notes.append(f"{name} holds a {type(value).__name__}, not an object; it is ignored.")
        return {}
    return value


def _normalise(frames: list[pd.DataFrame], notes: list[str]) -> pd.DataFrame:
    """One table with every contract column (a column a shard lacks is noted and left empty), holding
    only each item's latest attempt: a retry writes a new work shard, and its rows replace the old ones."""
    filled = [frame for frame in frames if not frame.empty]
    rows = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame()
    missing = [column for column in COLUMNS if column not in rows.columns]
    if missing and not rows.empty:
        notes.append(f"the shard tables lack column(s) {', '.join(missing)}; those plots stay empty.")
    rows = rows.reindex(columns=[*COLUMNS, *MEDIA])
    for column in NUMERIC:
        values = pd.to_numeric(rows[column], errors="coerce").astype("float64")
        rows[column] = values.where(np.isfinite(values))  # an inf would break every histogram's range
    for column in (*TEXT, *MEDIA):
        rows[column] = rows[column].astype("object").where(rows[column].notna(), None)
    superseded = rows["attempt"] < rows.groupby("item_id")["attempt"].transform("max")
    if superseded.any():
        notes.append(f"{int(superseded.sum())} row(s) of earlier attempts are replaced by a retry's rows and not "
                     "counted.")  # fmt: skip
    return rows[~superseded].reset_index(drop=True)


# -- plots ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure on the Agg canvas, without pyplot: no global state and no display needed."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(np.atleast_1d(figure.subplots(1, columns)))


def _plot_counts(rows: pd.DataFrame) -> Figure | None:
    if rows.empty:
        return None
    figure, axes = _figure(10, 3.8, 2)
    for ax, kind, title in zip(axes, ("source", "sample"), ("source items", "output samples"), strict=True):
        part = rows[rows["kind"] == kind]
        table = part.groupby(["dataset", "status"]).size().unstack(fill_value=0)
        table = table.reindex(columns=STATUSES, fill_value=0)
        bottom = np.zeros(len(table))
        for status in STATUSES:
            ax.bar(table.index, table[status], bottom=bottom, color=STATUS_COLORS[status], label=status)
            bottom += table[status].to_numpy()
        ax.set_title(f"{title} ({len(part)})")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelrotation=30)
        if table.empty:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    return figure


def _plot_reasons(rows: pd.DataFrame) -> Figure | None:
    dropped = rows[rows["status"].isin(["filtered", "failed"])]
    if dropped.empty:
        return None
    reason = dropped["reason"].fillna(dropped["error_class"]).fillna("(no reason)")
    label = reason + " (" + dropped["kind"].fillna("?") + ")"
    table = dropped.groupby([label, dropped["status"]]).size().unstack(fill_value=0)
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


def _histogram(ax: Axes, kept: pd.Series, dropped: pd.Series, xlabel: str) -> None:
    """Kept samples against filtered rows on shared bins: shows where a threshold cut the data."""
    values = pd.concat([kept, dropped])
    bins = np.histogram_bin_edges(values.to_numpy(), bins=min(30, max(5, len(values))))
    if len(kept):
        ax.hist(kept, bins=bins, color=STATUS_COLORS["ok"], alpha=0.8, label=f"ok samples ({len(kept)})")
    if len(dropped):
        ax.hist(dropped, bins=bins, histtype="step", linewidth=2, color=STATUS_COLORS["filtered"],
                label=f"filtered rows ({len(dropped)})")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()


def _split(rows: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    ok = rows[(rows["kind"] == "sample") & (rows["status"] == "ok")][column].dropna()
    return ok, rows[rows["status"] == "filtered"][column].dropna()


def _plot_column(column: str, title: str, xlabel: str) -> Callable[[pd.DataFrame], Figure | None]:
    def plot(rows: pd.DataFrame) -> Figure | None:
        kept, dropped = _split(rows, column)
        if column == "frames":  # clip length: image samples have one frame and would swamp the plot
            kept = kept[kept > 1]
        if kept.empty and dropped.empty:
            return None
        figure, (ax,) = _figure(6.5, 3.6)
        _histogram(ax, kept, dropped, xlabel)
        median = f", median of ok {kept.median():.4g}" if len(kept) else ""
        ax.set_title(f"{title}{median}")
        return figure

    return plot


def _plot_pose(rows: pd.DataFrame) -> Figure | None:
    if all(rows[angle].dropna().empty for angle in ("yaw", "pitch", "roll")):
        return None
    figure, axes = _figure(12, 3.4, 3)
    for ax, angle in zip(axes, ("yaw", "pitch", "roll"), strict=True):
        kept, dropped = _split(rows, angle)
        if kept.empty and dropped.empty:
            ax.text(0.5, 0.5, f"no {angle} values", ha="center", va="center", transform=ax.transAxes)
            continue
        _histogram(ax, kept, dropped, f"mean |{angle}| over the clip (degrees)")
        ax.set_title(angle)
    return figure


PLOTTERS: dict[str, tuple[str, Callable[[pd.DataFrame], Figure | None]]] = {
    "counts.png": ("Source items and output samples per dataset, by status", _plot_counts),
    "reasons.png": ("Filter and failure reasons", _plot_reasons),
    "frames.png": ("Clip length", _plot_column("frames", "clip length", "frames per clip")),
    "face_px.png": ("Face size", _plot_column("face_px", "face size", "median face box side (source px)")),
    "pose.png": ("Head pose", _plot_pose),
    "blur.png": ("Sharpness", _plot_column("blur", "blur score", "blur score (higher = sharper)")),
}


def _save_plots(rows: pd.DataFrame, folder: Path) -> dict[str, str]:
    """file name -> caption, for the plots that had data."""
    saved = {}
    for name, (caption, plot) in PLOTTERS.items():
        figure = plot(rows)
        if figure is not None:
            figure.savefig(folder / name, dpi=90)
            saved[name] = caption
    return saved


# -- contact sheet -------------------------------------------------------------------------------------


def sample_pool(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok samples that name their tar and key, in a stable order (tar, key)."""
    pool = rows[(rows["kind"] == "sample") & (rows["status"] == "ok") & rows["tar"].notna() & rows["key"].notna()]
    return pool.drop_duplicates(["tar", "key"]).sort_values(["tar", "key"]).reset_index(drop=True)


def choose_samples(rows: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """`count` ok samples drawn without replacement from the stable pool order, so the same build and seed
    show the same faces however the shards' rows happen to be ordered."""
    pool = sample_pool(rows)
    if count <= 0 or pool.empty:
        return pool.iloc[:0]
    picks = np.random.default_rng(seed).choice(len(pool), size=min(count, len(pool)), replace=False)
    return pool.iloc[np.sort(picks)]


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


def _read_chosen(root: Path, chosen: pd.DataFrame, notes: list[str]) -> list[dict[str, Any]]:
    """The chosen samples' members, read with webdataset one tar at a time, stopping once all are found."""
    found: dict[str, dict[str, Any]] = {}
    for tar, group in chosen.groupby("tar", sort=True):
        wanted = set(group["key"])
        path = root / str(tar)
        if not path.is_file():
            notes.append(f"contact sheet: {tar} is listed in a committed shard table but missing.")
            continue
        errors: list[str] = []
        with closing(read_samples(path, errors.append, keys=wanted)) as samples:
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


def _save_contact_sheet(root: Path, chosen: pd.DataFrame, path: Path, notes: list[str]) -> list[dict[str, str]]:
    """Draws the chosen samples, two per row; returns what is shown (key, dataset, caption, tar)."""
    cells: list[tuple[str, str, list[tuple[str, Image.Image]]]] = []
    shown = []
    tars = dict(zip(chosen["key"], chosen["tar"], strict=True))
    for sample in _read_chosen(root, chosen, notes):
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


def _status_table(rows: pd.DataFrame) -> str:
    """Per dataset, kind and status: counts, frames, medians of the quality scores, top reasons, time."""
    if rows.empty:
        return "<p>No rows yet.</p>"
    groups = rows.groupby(["dataset", "kind", "status"], dropna=False)
    table = groups.agg(
        rows=("status", "size"),
        frames=("frames", lambda v: v.sum(min_count=1)),
        face_px=("face_px", "median"),
        blur=("blur", "median"),
        yaw=("yaw", "median"),
        seconds=("seconds_total", lambda v: v.sum(min_count=1)),
    )
    table["reasons"] = groups["reason"].agg(
        lambda r: ", ".join(f"{k} {v}" for k, v in r.dropna().value_counts().head(3).items())
    )
    table = table.reset_index().rename(
        columns={"face_px": "median face_px", "blur": "median blur", "yaw": "median |yaw|", "seconds": "seconds_total"}
    )
    return table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0, classes="grid")


def _media_labels(sources: pd.DataFrame) -> pd.DataFrame:
    """The media columns as the page shows them: rotation in degrees, the rate as yes/no, – where unknown."""
    labels = sources[list(MEDIA)].rename(columns=MEDIA).astype("object")
    labels["rotation"] = [f"{int(v)}°" if v is not None else None for v in sources["media_rotation"]]
    labels["variable rate"] = [None if v is None else "yes" if bool(v) else "no" for v in sources["media_vfr"]]
    return labels.fillna("–")


def _media_section(rows: pd.DataFrame) -> str:
    """How the source videos were stored, as the build read them: counts per combination of codec, format,
    colour matrix, range, rotation and rate, then each file (rarest combinations first, so that in a large
    build the few sideways, full-range or variable-rate files are the ones listed)."""
    sources = rows[(rows["kind"] == "source") & rows[list(MEDIA)].notna().any(axis=1)]
    if sources.empty:
        return (
            "<p class=note>No source row records its media properties (codec, colour matrix, range, rotation, "
            "frame rate): the build read no video yet, or it was made by a pipeline that did not record them.</p>"
        )
    labels = _media_labels(sources)
    keys = ["dataset", *MEDIA.values()]
    table = pd.concat([sources[["dataset", "item_id", "status"]], labels], axis=1)
    counts = table.groupby(keys).agg(files=("item_id", "size"))
    for status in STATUSES:
        counts[status] = table[table["status"] == status].groupby(keys).size()
    counts = counts.fillna(0).astype(int).reset_index()
    table["rarity"] = table.groupby(keys)["item_id"].transform("size")
    listed = table.sort_values(["rarity", "dataset", "item_id"], kind="stable").head(MEDIA_LISTED)
    more = len(table) - len(listed)
    tail = f" The {len(listed)} in the rarest combinations are listed; {more} more are only counted." if more else ""
    return (
        f"<p>{len(table)} source file(s) by how they are stored, as the build read them (a rotation is the "
        f"display matrix's counter-clockwise turn).{tail}</p>"
        + counts.to_html(index=False, border=0, classes="grid")
        + "<p>Each file, the rarest kinds first:</p>"
        + listed.drop(columns="rarity")
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


def _page(view: BuildView, figures: dict[str, str], shown: list[dict[str, str]], asked: int, seed: int) -> str:
    info = view.info
    available = len(sample_pool(view.rows))
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
        f"<!doctype html><html><head><meta charset='utf-8'><title>build report: {_esc(view.root.name)}</title>",
        f"<style>{STYLE}</style></head><body><h1>Build report: {_esc(view.root)}</h1>",
        f"<table class=grid>{facts}</table>",
        *(f"<p class=note>{_esc(note)}</p>" for note in notes),
        f"<h2>Evaluation split</h2><p>{_split_sentence(info)}</p>",
        f"<h2>Shards</h2>{_shards_summary(view)}",
        "<h2>Plots</h2>" + (plots or "<p>No data to plot yet.</p>"),
        f"<h2>Per dataset and status</h2>{_status_table(view.rows)}",
        f"<h2>Source media</h2>{_media_section(view.rows)}",
        f"<h2>Contact sheet</h2>{_contact_section(shown, asked, seed, available)}",
        f"<h2>Config</h2><pre>{_esc(json.dumps(info.get('config', {}), indent=2, sort_keys=True))}</pre>",
        f"<h2>Sources</h2><pre>{_esc(json.dumps(info.get('sources', {}), indent=2, sort_keys=True))}</pre>",
        "</body></html>\n",
    ]
    return "\n".join(parts)
