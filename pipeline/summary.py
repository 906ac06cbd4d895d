"""Console tables: the registry, a scan's counts per dataset, and its problems; a build's outcome."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.table import Table

from manifests.schema import DatasetSpec
from pipeline.runner import Progress
from pipeline.sources.records import REASONS
from pipeline.sources.scan import DatasetScan


def datasets_table(specs: dict[str, DatasetSpec]) -> Table:
    table = Table(title=f"dataset registry ({len(specs)} specs)", caption="rp-data datasets NAME shows one in full")
    for column in ("name", "modality", "identity", "split", "licence", "commercial use"):
        table.add_column(column, overflow="fold")
    for spec in specs.values():
        table.add_row(
            spec.name,
            spec.modality.value,
            spec.identity.kind.value,
            "/".join(spec.split.values) if spec.split.official else "none official",
            spec.license.tag,
            "yes" if spec.license.commercial_use else "no",
        )
    return table


def _counts(counter: dict[str, int]) -> str:
    return " ".join(f"{key}:{value}" for key, value in sorted(counter.items()))


def scan_table(results: Sequence[DatasetScan]) -> Table:
    table = Table(title="scan summary")
    for column in ("dataset", "items", "usable", "media not usable", "modality", "splits", "identities", "problems"):
        table.add_column(column, overflow="fold")
    for r in results:
        unusable = {k: v for k, v in r.media.items() if k not in ("present", "ok")}
        kinds = "/".join(sorted(r.identity_kinds))
        table.add_row(
            r.dataset,
            str(r.items),
            str(r.usable),
            _counts(unusable) or "-",
            _counts(r.modalities),
            _counts(r.splits),
            f"{len(r.identities)} ({kinds})" if r.identities else f"0 ({kinds or '-'})",
            _counts(r.problems) or "-",
        )
    if len(results) > 1:
        table.add_row(
            "all",
            str(sum(r.items for r in results)),
            str(sum(r.usable for r in results)),
            "",
            "",
            "",
            str(sum(len(r.identities) for r in results)),
            str(sum(sum(r.problems.values()) for r in results)),
            style="bold",
        )
    return table


def problems_table(results: Sequence[DatasetScan], limit: int) -> Table:
    table = Table(title=f"problems (file, line, reason; at most {limit} per dataset and reason)")
    for column in ("dataset", "file", "line", "reason", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        for reason, examples in sorted(r.examples.items()):
            for problem in examples[:limit]:
                table.add_row(
                    problem.dataset,
                    problem.file,
                    "" if problem.line is None else str(problem.line),
                    reason,
                    problem.detail,
                )
            hidden = r.problems[reason] - min(limit, len(examples))
            if hidden > 0:
                table.add_row(r.dataset, f"... {hidden} more", "", reason, "all are in the problems parquet (--out)")
    seen = {reason for r in results for reason in r.problems}
    table.caption = "reasons: " + "; ".join(f"{k} = {v}" for k, v in REASONS.items() if k in seen)
    return table


def build_table(counts: pd.DataFrame) -> Table:
    """Per dataset: source items by status, samples kept, annotation problems, and the commonest reasons.

    `counts` has the manifest's rows counted by (dataset, kind, status, reason), with their frames
    (pipeline.manifest_merge.write_manifest): a summary of millions of rows never reads them all.
    """
    table = Table(title="build summary")
    for column in (
        "dataset",
        "items ok",
        "filtered",
        "failed",
        "samples",
        "frames",
        "annotation problems",
        "reasons (items and clips)",
    ):
        table.add_column(column, overflow="fold")
    if counts.empty:
        return table
    for dataset, rows in counts.groupby("dataset", sort=True):
        sources = rows[rows.kind == "source"].groupby("status").rows.sum()
        samples = rows[(rows.kind == "sample") & (rows.status == "ok")]
        reasons = (
            rows[(rows.status != "ok") & (rows.kind != "annotation")]
            .groupby("reason")
            .rows.sum()
            .sort_values(ascending=False, kind="stable")
        )
        table.add_row(
            str(dataset),
            *(str(int(sources.get(status, 0))) for status in ("ok", "filtered", "failed")),
            str(int(samples.rows.sum())),
            str(int(samples.frames.sum())),
            str(int(rows[rows.kind == "annotation"].rows.sum())),
            " ".join(f"{reason}:{int(count)}" for reason, count in reasons.items()),
        )
    return table


def recovery_line(progress: Progress) -> str:
    """How many workers died during the build, how many work shards were built again for it or for a storage
    fault, and how many replacements never started (the last two said only when some did)."""
    line = f"{progress.workers_lost} worker(s) lost, {progress.retried} work shard(s) retried"
    line += f", {progress.storage_faults} storage fault(s)" if progress.storage_faults else ""
    return line + (f", {progress.failed_starts} replacement(s) never started" if progress.failed_starts else "")
