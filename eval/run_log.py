"""A run's journal: what it is (`started.json`) and each task's row as it finishes (`tasks.jsonl`).

Why: at the paper's scale a method's run takes hours, and a run that kept its results in memory until the
end lost them all to one crash, a pre-emption or a full disk. Each finished task is one JSON line,
flushed and synced before the next task starts, so a killed run keeps every task it finished, and
`rp-eval run --resume` goes on from there: the tasks that succeeded are not generated nor scored again
(their features are in the run folder already); the ones that failed are tried again, since their cause
(a missing output, a full disk) may have been fixed. A line cut short by a crash is ignored.

A run is resumed only under what it was started with: the same method and label, protocol config,
split file, tasks and metric weights. Anything else would mix two evaluations in one row.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

STARTED = "started.json"
JOURNAL = "tasks.jsonl"


class CannotResume(ValueError):
    """`--resume` on a folder that holds no run, or a run started with other settings."""


@dataclass(frozen=True)
class Journal:
    """Appends finished task rows to `<run>/tasks.jsonl`."""

    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / JOURNAL

    def append(self, row: dict[str, object]) -> None:
        """One finished task, durable before the next task starts."""
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> dict[str, dict[str, object]]:
        """task id -> its last row; a line cut short by a crash is skipped."""
        if not self.path.is_file():
            return {}
        found: dict[str, dict[str, object]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "task_id" in row:
                found[f"{row.get('protocol')}/{row['task_id']}"] = row
        return found


def start(folder: Path, identity: dict[str, object]) -> None:
    """A new run: `identity` (what a resumed run must match) is written, and the journal emptied."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JOURNAL).unlink(missing_ok=True)
    (folder / STARTED).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def resume(folder: Path, identity: dict[str, object]) -> dict[str, dict[str, object]]:
    """The rows of the tasks that succeeded in the run started in `folder` ("protocol/task id" -> row).
    Raises CannotResume naming the folder and, for a run started otherwise, every setting that differs."""
    started = folder / STARTED
    if not started.is_file():
        raise CannotResume(f"{folder}: no run to resume ({STARTED} is missing); run without --resume to start one")
    before = json.loads(started.read_text(encoding="utf-8"))
    differences = [
        f"{key}: {before.get(key)!r} then, {value!r} now" for key, value in identity.items() if before.get(key) != value
    ]
    if differences:
        raise CannotResume(
            f"{folder}: the run there was started with other settings ({'; '.join(differences)}); "
            "resume it with the same ones, or start a new run in another folder"
        )
    return {key: row for key, row in Journal(folder).rows().items() if row.get("status") == "ok"}
