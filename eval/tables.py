"""`rp-eval table`: the paper's three tables from run folders, as Markdown, LaTeX, CSV and a PNG bar chart.

- Table 1, self-reenactment, and Table 2, cross-reenactment: one row per run (method), in the order given.
- Table 3, ablations: one row per run of method `ours` (checkpoints or configurations, by their label),
  the self- and cross-reenactment columns side by side.
Headers carry the direction (↑/↓); the best value of each column is bold (Markdown, LaTeX). A metric whose
weights were missing shows "weights missing", never a number. The footer lists every backend, the weight
files with their sha256, the protocol (crop, size, frame 0, FID reference sets, FVD windows and seeds),
each row's motion mode, config fingerprint and failed tasks; rows made under different protocol configs
are flagged.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from eval.columns import COLUMNS

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


@dataclass(frozen=True)
class Run:
    folder: Path
    info: dict
    summary: pd.DataFrame

    @property
    def label(self) -> str:
        return str(self.info.get("label") or self.info["method"])


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    for name in ("run.json", "summary.parquet"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: not a run folder ({name} is missing; write one with rp-eval run)")
    return Run(
        folder,
        json.loads((folder / "run.json").read_text(encoding="utf-8")),
        pd.read_parquet(folder / "summary.parquet"),
    )


@dataclass(frozen=True)
class Cell:
    value: float | None  # None when there is no number
    std: float | None
    text: str  # what a reader sees when there is no number


def cell(run: Run, protocol: str, metric: str) -> Cell:
    rows = run.summary[(run.summary["protocol"] == protocol) & (run.summary["metric"] == metric)]
    if rows.empty:
        return Cell(None, None, "—")
    row = rows.iloc[0]
    if row["status"] == "weights missing":
        return Cell(None, None, MISSING)
    if row["status"] != "ok" or not math.isfinite(float(row["value"])):
        return Cell(None, None, str(row["status"]))
    std = float(row["std"]) if metric == "FVD" and math.isfinite(float(row["std"])) else None
    return Cell(float(row["value"]), std, "")


def number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def shown(c: Cell) -> str:
    if c.value is None:
        return c.text
    return number(c.value) + (f" ± {number(c.std)}" if c.std is not None else "")


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

    def cells(self) -> list[list[Cell]]:
        return [[cell(run, protocol, metric) for protocol, metric in self.columns] for run in self.runs]

    def best(self) -> list[float | None]:
        """The best value of each column (None when no row has a number)."""
        grid = self.cells()
        out = []
        for index, (_, metric) in enumerate(self.columns):
            values = [row[index].value for row in grid if row[index].value is not None]
            pick = max if COLUMNS[metric].higher_is_better else min
            out.append(pick(values) if values else None)
        return out


def tables_for(runs: list[Run]) -> list[PaperTable]:
    def present(protocol: str, names: tuple[str, ...], rows: list[Run]) -> list[tuple[str, str]]:
        found = {(protocol, m) for run in rows for m in run.summary[run.summary["protocol"] == protocol]["metric"]}
        return [(protocol, name) for name in names if (protocol, name) in found]

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


def footer(table: PaperTable) -> list[str]:
    """The lines under a table: backends, weight hashes, protocol, per-row facts."""
    lines = []
    metrics = list(dict.fromkeys(metric for _, metric in table.columns))
    for metric in metrics:
        lines.append(f"{COLUMNS[metric].label} ({COLUMNS[metric].unit or 'no unit'}): {COLUMNS[metric].backend}")
    weights: dict[str, str] = {}
    missing: dict[str, str] = {}
    for run in table.runs:
        for record in run.info.get("weights", []):
            note = f" [{record['problem']}]" if record.get("problem") else ""
            weights[record["file"]] = f"{record['file']} sha256 {record['sha256']}{note}"
        missing.update(run.info.get("weights_missing", {}))
    lines += [f"weights: {text}" for text in weights.values()]
    lines += [f"{metric}: {message}" for metric, message in sorted(missing.items()) if metric in metrics]
    notes = {}
    for run in table.runs:
        for _, row in run.summary.iterrows():
            if row["metric"] in ("FID", "FVD") and row["note"] and row["status"] == "ok":
                notes[f"{row['protocol']} {row['metric']}"] = row["note"]
    lines += [f"{key}: {value}" for key, value in sorted(notes.items())]
    for run in table.runs:
        skipped = run.summary[run.summary["frames_without_face"] > 0]
        parts = [
            f"{r['label']} ({r['protocol']}) {r['frames_without_face']}"
            for _, r in skipped.iterrows()
            if r["metric"] in metrics
        ]
        if parts:
            lines.append(f"{run.label}: scored frames skipped for want of a face: {', '.join(parts)}")
    fingerprints = {run.info["fingerprint"] for run in table.runs}
    for run in table.runs:
        config = run.info["config"]
        failed = run.info.get("failed") or {}
        lines.append(
            f"{run.label}: method {run.info['method']}, motion {run.info['motion_mode']}, {run.info['description']}; "
            f"protocol {run.info['fingerprint']} (size {config['size']}, {run.info['frame0']})"
            + (f"; failed tasks {failed}" if failed else "")
        )
    if len(fingerprints) > 1:
        lines.append(f"WARNING: the rows were evaluated under {len(fingerprints)} different protocol configs")
    if table.runs:
        lines.append(f"crop: {table.runs[0].info['crop']}")
    return lines


def markdown(table: PaperTable) -> str:
    best = table.best()
    head = ["Method", *(table.header(p, m) for p, m in table.columns)]
    lines = [f"**Table {table.number}. {table.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, row in zip(table.runs, table.cells(), strict=True):
        texts = [
            f"**{shown(c)}**" if c.value is not None and c.value == b else shown(c)
            for c, b in zip(row, best, strict=True)
        ]
        lines.append("| " + " | ".join([run.label, *texts]) + " |")
    if not table.runs:
        lines.append("| (no runs) |" + " |" * len(table.columns))
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
    head = ["Method", *(table.header(p, m) for p, m in table.columns)]
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(table.title)}}}",
        f"\\label{{tab:{table.number}}}",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in head) + " \\\\",
        "\\midrule",
    ]
    for run, row in zip(table.runs, table.cells(), strict=True):
        texts = [
            f"\\textbf{{{latex_escape(shown(c))}}}" if c.value is not None and c.value == b else latex_escape(shown(c))
            for c, b in zip(row, best, strict=True)
        ]
        lines.append(" & ".join([latex_escape(run.label), *texts]) + " \\\\")
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
        writer.writerow(head)
        for run, row in zip(table.runs, table.cells(), strict=True):
            values: list[str] = [run.label]
            for (_, metric), c in zip(table.columns, row, strict=True):
                values.append(c.text if c.value is None else repr(c.value))
                if metric == "FVD":
                    values.append("" if c.std is None else repr(c.std))
            writer.writerow(values)


def bar_chart(table: PaperTable, path: Path) -> None:
    """One panel per column, one bar per row; a missing number is written where its bar would be."""
    count = max(len(table.columns), 1)
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    labels = [run.label for run in table.runs]
    grid = table.cells()
    for index, ax in enumerate(axes.flat):
        if index >= len(table.columns):
            ax.axis("off")
            continue
        protocol, metric = table.columns[index]
        values = [row[index] for row in grid]
        heights = [c.value if c.value is not None else 0.0 for c in values]
        errors = [c.std or 0.0 for c in values]
        ax.bar(range(len(values)), heights, yerr=errors, color="tab:blue")
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
