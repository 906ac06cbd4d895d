"""`rp-eval table`: the paper's three tables from run folders, as Markdown, LaTeX, CSV and a PNG bar chart.

- Table 1, self-reenactment, and Table 2, cross-reenactment: one row per run (method), in the order given.
- Table 3, ablations: one row per run of method `ours` (checkpoints or configurations, by their label),
  the self- and cross-reenactment columns side by side.

Every row of a table is computed on the same tasks: per protocol, the tasks that succeeded for all of its
rows (the others are named in the footer, with the row that lost each and why); each row shows its own
failure count. Cells are recomputed from each run's `tasks.parquet` and `features/` over that common set
(`eval.task_sets`), and FID and FVD take their real sets from one run folder for every row. Headers carry
the direction (↑/↓); the best value of each column is bold, among cells taken over the whole common set
(a face metric over fewer tasks, for want of a face, shows its count and is not compared), unless bold
would single nothing out (fewer than two ranked rows, a column whose compared cells all read the same).
Controls (source-copy, driving-copy, any run made with --control) are labelled "(control)" in every format
and never bold nor ranked: driving-copy is the ground truth in self-reenactment. A metric whose weights
were missing shows "weights missing", never a number; any other cell without a number shows "n/a", and
the footer says why. The footer states the task sets, every
backend with the installed versions of its libraries, the weight files by metric and path with their
sha256 and pin check, the protocol, and each row's motion mode, config fingerprint, failures and warnings; rows made
under different protocol configs, splits, weights or library versions are flagged.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from eval.columns import COLUMNS
from eval.config import FVDConfig
from eval.task_sets import (
    RUN_FORMAT,
    clip_features_path,
    common_tasks,
    load_features,
    succeeded,
    task_features_path,
    without_face,
)
from eval.task_sets import aggregate as aggregate_tasks

SELF_COLUMNS = (
    "L1",
    "PSNR",
    "SSIM",
    "LPIPS",
    "FID",
    "FVD",
    "CSIM-dlib",
    "CSIM-arcface",
    "AED",
    "APD",
    "tLP",
    "PSNR-legacy-uint8",
)
CROSS_COLUMNS = ("FID", "FVD", "CSIM-dlib", "CSIM-arcface", "AED", "APD", "tLP")
MISSING = "weights missing"
NOT_AVAILABLE = "n/a"  # a cell that cannot be computed; the footer says why
FAILED_HEADER = "Failed tasks"


def table_columns(protocol: str, listed: tuple[str, ...]) -> tuple[str, ...]:
    """The listed columns, then every other column of `COLUMNS` defined for the protocol (new metrics
    show up without editing this module)."""
    extra = tuple(key for key, column in COLUMNS.items() if protocol in column.protocols and key not in listed)
    return listed + extra


@dataclass(frozen=True)
class Run:
    folder: Path
    info: dict
    summary: pd.DataFrame
    tasks: pd.DataFrame

    @property
    def label(self) -> str:
        return str(self.info.get("label") or self.info["method"])

    @property
    def control(self) -> bool:
        """A control (source-copy, driving-copy, a method run with --control): shown, never bold nor ranked."""
        return bool(self.info.get("control", False))

    @property
    def row_label(self) -> str:
        """The row's name as every table format prints it: controls say so."""
        return f"{self.label} (control)" if self.control else self.label

    @property
    def fvd(self) -> FVDConfig:
        return FVDConfig(**self.info["config"]["fvd"])

    def status(self, protocol: str, metric: str) -> str | None:
        """The run's own summary status of a metric, None when the run did not compute it."""
        rows = self.summary[(self.summary["protocol"] == protocol) & (self.summary["metric"] == metric)]
        return None if rows.empty else str(rows.iloc[0]["status"])


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    for name in ("run.json", "summary.parquet", "tasks.parquet"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: not a run folder ({name} is missing; write one with rp-eval run)")
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    if info.get("format") != RUN_FORMAT:
        raise ValueError(
            f"{folder}: run format {info.get('format')!r}, tables need {RUN_FORMAT!r} (per-task features); "
            "run rp-eval run again for this method"
        )
    return Run(folder, info, pd.read_parquet(folder / "summary.parquet"), pd.read_parquet(folder / "tasks.parquet"))


@dataclass(frozen=True)
class Cell:
    value: float | None  # None when there is no number
    std: float | None
    text: str  # what a reader sees when there is no number
    tasks: int = 0  # tasks the value is taken over
    complete: bool = True  # taken over every task of the table's set (only those compete for bold)
    note: str = ""  # what the value is taken over (FID's and FVD's real sets)


def number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def shown(c: Cell, total: int | None = None) -> str:
    if c.value is None:
        return c.text
    text = number(c.value) + (f" ± {number(c.std)}" if c.std is not None else "")
    return text if c.complete or total is None else f"{text} ({c.tasks}/{total} tasks)"


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one protocol every row of a table succeeded on."""

    protocol: str
    task_ids: list[str]
    dropped: dict[str, list[str]]  # task id -> "<row label>: <reason>" for each row that lacks it

    def statement(self, rows: int) -> str:
        total = len(self.task_ids) + len(self.dropped)
        text = (
            f"{self.protocol} tasks: every row is computed on the same {len(self.task_ids)} of {total} tasks, "
            f"those that succeeded for all {rows} rows"
        )
        if self.dropped:
            text += "; left out: " + "; ".join(f"{t} ({', '.join(why)})" for t, why in self.dropped.items())
        return text


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    columns: list[tuple[str, str]]  # (protocol, metric)
    runs: list[Run]

    def header(self, protocol: str, metric: str) -> str:
        column = COLUMNS[metric]
        prefix = {"self": "Self ", "cross": "Cross "}[protocol] if self.number == 3 else ""
        return f"{prefix}{column.label} {column.arrow}"

    @property
    def protocols(self) -> list[str]:
        return list(dict.fromkeys(protocol for protocol, _ in self.columns))

    @cached_property
    def task_sets(self) -> dict[str, TaskSet]:
        named = [(run.label, run.tasks) for run in self.runs]
        return {p: TaskSet(p, *common_tasks(named, p)) for p in self.protocols}

    def reference(self, protocol: str, metric: str) -> Run | None:
        """The run whose real features (FID, FVD) every row is compared with: the first that has them."""
        for run in self.runs:
            if run.status(protocol, metric) not in (None, MISSING):
                return run
        return None

    @cached_property
    def reference_clips(self) -> list[str]:
        """Cross FID's real set: the split clips usable in every row that computed FID."""
        runs = [run for run in self.runs if run.status("cross", "FID") not in (None, MISSING)]
        if not runs:
            return []
        shared = set.intersection(*(set(run.info.get("fid_reference_clips", [])) for run in runs))
        return [c for c in runs[0].info.get("fid_reference_clips", []) if c in shared]

    def aggregate(self, run: Run, protocol: str, metric: str) -> Cell:
        """The cell of a row and column; a cell without a number says why (`unavailable_lines`)."""
        status = run.status(protocol, metric)
        if status is None:
            return Cell(None, None, NOT_AVAILABLE, note="not computed by this run (not in its metrics or protocols)")
        if status == MISSING:
            return Cell(None, None, MISSING)
        ids = self.task_sets[protocol].task_ids
        reference = self.reference(protocol, metric) or run
        tasks = succeeded(run.tasks, protocol).loc[ids] if ids else run.tasks.iloc[0:0]
        result = aggregate_tasks(metric, protocol, tasks, run.folder, reference.folder, run.fvd, self.reference_clips)
        if not ids:
            return Cell(None, None, NOT_AVAILABLE, note="no task succeeded for every row")
        if result.status != "ok" or not math.isfinite(result.value):
            why = f"{result.status}: {result.note}" if result.note else result.status
            return Cell(None, None, NOT_AVAILABLE, note=why)
        std = result.std if metric == "FVD" and math.isfinite(result.std) else None
        return Cell(result.value, std, "", result.tasks, result.tasks == len(ids), result.note)

    @cached_property
    def grid(self) -> list[list[Cell]]:
        return [[self.aggregate(run, protocol, metric) for protocol, metric in self.columns] for run in self.runs]

    @property
    def ranked(self) -> list[Run]:
        """The rows that compete for bold: every row but the controls."""
        return [run for run in self.runs if not run.control]

    def best(self) -> list[float | None]:
        """The best value of each column among the ranked rows' cells over the whole common task set; None
        where bold would single nothing out: no such cell, fewer than two ranked rows, or a column whose
        compared cells all read the same (values are compared as printed: 0.2605 and 0.2605 tie, whatever
        digits follow). Controls never compete: driving-copy is the ground truth in self-reenactment and
        would be best in every column it has."""
        out: list[float | None] = []
        rows = [row for run, row in zip(self.runs, self.grid, strict=True) if not run.control]
        for index, (_, metric) in enumerate(self.columns):
            values = [row[index].value for row in rows if row[index].value is not None and row[index].complete]
            pick = max if COLUMNS[metric].higher_is_better else min
            all_tie = len(values) > 1 and len({number(value) for value in values}) == 1
            out.append(pick(values) if values and len(rows) > 1 and not all_tie else None)
        return out

    def is_best(self, run: Run, c: Cell, best: float | None) -> bool:
        """Bold: a ranked row's compared cell that reads as the best (cells tied with it as printed are bold
        too)."""
        compared = c.value is not None and c.complete and not run.control
        return compared and best is not None and number(c.value) == number(best)

    def total(self, protocol: str) -> int:
        return len(self.task_sets[protocol].task_ids)

    def failures(self, run: Run) -> str:
        """The row's failed tasks among its tasks of this table's protocols, e.g. "1 of 6"."""
        mine = run.tasks[run.tasks["protocol"].isin(self.protocols)]
        return f"{int((mine['status'] != 'ok').sum())} of {len(mine)}"

    def failure_reasons(self, run: Run) -> dict[str, int]:
        """reason -> count among the row's failed tasks of this table's protocols."""
        mine = run.tasks[run.tasks["protocol"].isin(self.protocols) & (run.tasks["status"] != "ok")]
        return {str(reason): int(count) for reason, count in mine["reason"].value_counts().sort_index().items()}

    def texts(self, run_index: int) -> list[str]:
        return [shown(c, self.total(p)) for c, (p, _) in zip(self.grid[run_index], self.columns, strict=True)]


def tables_for(runs: list[Run]) -> list[PaperTable]:
    def present(protocol: str, names: tuple[str, ...], rows: list[Run]) -> list[tuple[str, str]]:
        found = {(protocol, m) for run in rows for m in run.summary[run.summary["protocol"] == protocol]["metric"]}
        return [(protocol, name) for name in table_columns(protocol, names) if (protocol, name) in found]

    self_runs = [run for run in runs if (run.summary["protocol"] == "self").any()]
    cross_runs = [run for run in runs if (run.summary["protocol"] == "cross").any()]
    ours = [run for run in runs if run.info["method"] == "ours"]
    return [
        PaperTable(1, "Self-reenactment", present("self", SELF_COLUMNS, self_runs), self_runs),
        PaperTable(2, "Cross-reenactment", present("cross", CROSS_COLUMNS, cross_runs), cross_runs),
        PaperTable(
            3,
            "Ablations (checkpoints and configurations of ours)",
            present("self", SELF_COLUMNS, ours) + present("cross", CROSS_COLUMNS, ours),
            ours,
        ),
    ]


def versions_lines(table: PaperTable, metrics: list[str]) -> list[str]:
    """Per metric its backend and the installed libraries' versions; a warning when rows differ."""
    lines = []
    for metric in metrics:
        column = COLUMNS[metric]
        seen: dict[str, list[str]] = {}
        for run in table.runs:
            installed = run.info.get("versions", {}).get(metric)
            if installed:
                text = ", ".join(f"{package} {version}" for package, version in sorted(installed.items()))
                seen.setdefault(text, []).append(run.label)
        line = f"{column.label} ({column.unit or 'no unit'}): {column.backend}"
        if len(seen) == 1:
            line += f"; installed: {next(iter(seen))}"
        lines.append(line)
        if len(seen) > 1:
            lines.append(
                f"WARNING: {column.label} was computed with different library versions: "
                + "; ".join(f"{', '.join(labels)}: {text}" for text, labels in seen.items())
            )
    return lines


def pin_note(record: dict) -> str:
    """Whether a run's weight file is the official one: its recorded problem, else whether it matched a pin
    (a run written before files were pinned recorded no pin: it was not verified)."""
    if record.get("problem"):
        return str(record["problem"])
    if record.get("pinned") == record["sha256"]:
        return "matches the pinned sha256"
    return "not verified against a pinned sha256"


def weights_lines(table: PaperTable, metrics: list[str]) -> list[str]:
    """Each weight file by the metrics it serves and its full path, with its sha256; a warning when one
    metric was computed from files with different hashes."""
    lines: dict[tuple[str, str, str], str] = {}
    hashes: dict[tuple[str, str], set[str]] = {}  # (metric, weights key): a metric may need several files
    for run in table.runs:
        for record in run.info.get("weights", []):
            used = [m for m in record.get("metrics", []) if m in metrics]
            if not used:
                continue
            key = (",".join(used), record["path"], record["sha256"])
            lines[key] = (
                f"weights for {', '.join(used)}: {record['path']} sha256 {record['sha256']} [{pin_note(record)}]"
            )
            for metric in used:
                hashes.setdefault((metric, str(record.get("key", ""))), set()).add(record["sha256"])
    out = list(lines.values())
    out += [
        f"WARNING: the rows' {metric} comes from {len(found)} different {key} weight files (see the hashes above)"
        for (metric, key), found in sorted(hashes.items())
        if len(found) > 1
    ]
    return out


def same_real_features(table: PaperTable, run: Run, reference: Run, protocol: str, metric: str) -> bool:
    """Whether `run` saw the same real features as the reference (same crops, same networks)."""
    if metric == "FID" and protocol == "cross":
        paths = [(clip_features_path(run.folder, c), "inception") for c in table.reference_clips]
        ref = [(clip_features_path(reference.folder, c), "inception") for c in table.reference_clips]
    else:
        key = "inception_real" if metric == "FID" else "i3d_real"
        ids = table.task_sets[protocol].task_ids
        paths = [(task_features_path(run.folder, protocol, t), key) for t in ids]
        ref = [(task_features_path(reference.folder, protocol, t), key) for t in ids]
    for (mine, key), (theirs, _) in zip(paths, ref, strict=True):
        a, b = load_features(mine)[key], load_features(theirs)[key]
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-5):
            return False
    return True


def real_set_lines(table: PaperTable) -> list[str]:
    """FID's and FVD's real sets: which run folder they come from, what they hold, and rows whose own real
    features differ from them."""
    lines = []
    for protocol, metric in table.columns:
        if metric not in ("FID", "FVD"):
            continue
        reference = table.reference(protocol, metric)
        if reference is None:
            continue
        cell = table.grid[table.runs.index(reference)][table.columns.index((protocol, metric))]
        if cell.value is None:
            continue
        lines.append(
            f"{protocol} {metric}: {cell.note}; real features from {reference.label}'s run, the same for every row"
        )
        for run in table.runs:
            if run is reference or run.status(protocol, metric) in (None, MISSING):
                continue
            if not same_real_features(table, run, reference, protocol, metric):
                lines.append(
                    f"WARNING: {run.label}'s own real {metric} features differ from {reference.label}'s "
                    "(other crops, protocol or weights): compare its row with care"
                )
    return lines


def unavailable_lines(table: PaperTable) -> list[str]:
    """Why each "n/a" cell has no number (weights missing is said by its own line)."""
    lines = []
    for run, row in zip(table.runs, table.grid, strict=True):
        for (protocol, metric), c in zip(table.columns, row, strict=True):
            if c.value is None and c.text == NOT_AVAILABLE:
                lines.append(f"n/a: {run.label}, {protocol} {COLUMNS[metric].label}: {c.note}")
    return lines


def control_lines(table: PaperTable) -> list[str]:
    """What the control rows are, and that they are neither bold nor ranked."""
    controls = [run for run in table.runs if run.control]
    if not controls:
        return []
    described = "; ".join(f"{run.label}: {run.info['description']}" for run in controls)
    return [f"controls (never bold, never ranked; they bound the measures, they are not methods): {described}"]


def footer(table: PaperTable) -> list[str]:
    """The lines under a table: task sets, backends and versions, weight hashes, protocol, per-row facts."""
    metrics = list(dict.fromkeys(metric for _, metric in table.columns))
    lines = [table.task_sets[p].statement(len(table.runs)) for p in table.protocols]
    lines += versions_lines(table, metrics)
    lines += weights_lines(table, metrics)
    missing: dict[str, str] = {}
    for run in table.runs:
        missing.update(run.info.get("weights_missing", {}))
    lines += [f"{metric}: {message}" for metric, message in sorted(missing.items()) if metric in metrics]
    lines += real_set_lines(table)
    lines += control_lines(table)
    lines += unavailable_lines(table)
    for run, row in zip(table.runs, table.grid, strict=True):
        parts = []
        for (protocol, metric), c in zip(table.columns, row, strict=True):
            ids = table.task_sets[protocol].task_ids
            skipped = without_face(metric, succeeded(run.tasks, protocol).loc[ids]) if ids else 0
            if skipped:
                parts.append(f"{COLUMNS[metric].label} ({protocol}) {skipped}")
            if c.value is not None and not c.complete:
                parts.append(f"{COLUMNS[metric].label} ({protocol}) has a value on {c.tasks} tasks only")
        if parts:
            lines.append(f"{run.label}: scored frames skipped for want of a face: {', '.join(parts)}")
    fingerprints = {run.info["fingerprint"] for run in table.runs}
    splits = {run.info["split"]["sha256"] for run in table.runs}
    for run in table.runs:
        config = run.info["config"]
        failed = table.failure_reasons(run)
        lines.append(
            f"{run.label}: method {run.info['method']}, motion {run.info['motion_mode']}, {run.info['description']}; "
            f"protocol {run.info['fingerprint']} (size {config['size']}, {run.info['frame0']}); "
            f"failed tasks {table.failures(run)}" + (f" {failed}" if failed else "")
        )
        lines += [f"{run.label}: WARNING: {warning}" for warning in run.info.get("warnings", [])]
    if len(fingerprints) > 1:
        lines.append(f"WARNING: the rows were evaluated under {len(fingerprints)} different protocol configs")
    if len(splits) > 1:
        lines.append(f"WARNING: the rows were evaluated on {len(splits)} different split files")
    if table.runs:
        lines.append(f"crop: {table.runs[0].info['crop']}")
    return lines


def markdown(table: PaperTable) -> str:
    best = table.best()
    head = ["Method", *(table.header(p, m) for p, m in table.columns), FAILED_HEADER]
    lines = [f"**Table {table.number}. {table.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index, (run, row) in enumerate(zip(table.runs, table.grid, strict=True)):
        texts = [
            f"**{text}**" if table.is_best(run, c, b) else text
            for c, b, text in zip(row, best, table.texts(index), strict=True)
        ]
        lines.append("| " + " | ".join([run.row_label, *texts, table.failures(run)]) + " |")
    if not table.runs:
        lines.append("| (no runs) |" + " |" * (len(table.columns) + 1))
    lines += ["", *(f"- {line}" for line in footer(table))]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    for char, replacement in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\^{}"),
        ("$", r"\$"),
    ):
        text = text.replace(char, replacement)
    return text.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("±", r"$\pm$")


def latex(table: PaperTable) -> str:
    best = table.best()
    head = ["Method", *(table.header(p, m) for p, m in table.columns), FAILED_HEADER]
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(table.title)}}}",
        f"\\label{{tab:{table.number}}}",
        "\\begin{tabular}{l" + "c" * (len(table.columns) + 1) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in head) + " \\\\",
        "\\midrule",
    ]
    for index, (run, row) in enumerate(zip(table.runs, table.grid, strict=True)):
        texts = [
            f"\\textbf{{{latex_escape(text)}}}" if table.is_best(run, c, b) else latex_escape(text)
            for c, b, text in zip(row, best, table.texts(index), strict=True)
        ]
        lines.append(" & ".join([latex_escape(run.row_label), *texts, table.failures(run)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\par\\footnotesize"]
    lines += [latex_escape(line) + " \\\\" for line in footer(table)]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def write_csv(table: PaperTable, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        head = ["method"]
        for protocol, metric in table.columns:
            head.append(table.header(protocol, metric))
            if metric == "FVD":
                head.append(table.header(protocol, metric) + " std")
        head += [f"{table.header(protocol, metric)} tasks" for protocol, metric in table.columns]
        writer.writerow([*head, FAILED_HEADER.lower(), "control"])
        for run, row in zip(table.runs, table.grid, strict=True):
            values: list[str] = [run.row_label]
            for (_, metric), c in zip(table.columns, row, strict=True):
                values.append(c.text if c.value is None else repr(c.value))
                if metric == "FVD":
                    values.append("" if c.std is None else repr(c.std))
            values += [str(c.tasks) if c.value is not None else "" for c in row]
            writer.writerow([*values, table.failures(run), "yes" if run.control else "no"])


def bar_chart(table: PaperTable, path: Path) -> None:
    """One panel per column, one bar per row; a missing number is written where its bar would be."""
    count = max(len(table.columns), 1)
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    labels = [run.row_label for run in table.runs]
    colours = ["lightgrey" if run.control else "tab:blue" for run in table.runs]
    hatches = ["//" if run.control else "" for run in table.runs]
    grid = table.grid
    for index, ax in enumerate(axes.flat):
        if index >= len(table.columns):
            ax.axis("off")
            continue
        protocol, metric = table.columns[index]
        values = [row[index] for row in grid]
        heights = [c.value if c.value is not None else 0.0 for c in values]
        errors = [c.std or 0.0 for c in values]
        bars = ax.bar(range(len(values)), heights, yerr=errors, color=colours, edgecolor="grey")
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        for x, c in enumerate(values):
            if c.value is None:
                ax.text(x, 0, c.text, rotation=90, ha="center", va="bottom", fontsize=7, color="tab:red")
        ax.set_title(table.header(protocol, metric), fontsize=9)
        ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    if not table.columns:
        axes.flat[0].text(0.5, 0.5, "no runs for this table", ha="center", va="center")
    figure.suptitle(f"Table {table.number}. {table.title}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_tables(run_folders: list[Path], out: Path) -> list[Path]:
    """Reads the runs and writes table{1,2,3}.{md,tex,csv,png} into `out`; returns the paths written."""
    runs = [read_run(folder) for folder in run_folders]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables_for(runs):
        stem = out / f"table{table.number}"
        (stem.with_suffix(".md")).write_text(markdown(table), encoding="utf-8")
        (stem.with_suffix(".tex")).write_text(latex(table), encoding="utf-8")
        write_csv(table, stem.with_suffix(".csv"))
        bar_chart(table, stem.with_suffix(".png"))
        written += [stem.with_suffix(suffix) for suffix in (".md", ".tex", ".csv", ".png")]
    return written
