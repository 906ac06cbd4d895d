"""The evaluation tasks of a split and the file each method writes for them (the outputs folder layout).

- self-reenactment, one task per clip: the source is the clip's frame 0 (at the evaluation crop), the
  driving video and the ground truth are the clip itself;
- cross-reenactment, one task per pair of the split: the source is frame 0 of the pair's source clip,
  the driving video is the pair's driving clip; there is no ground truth.

A method's frames live in `<outputs>/<protocol>/<task file>.mkv` (FFV1, lossless; a folder of PNG frames
or a lossy `.mp4` is also read, see `eval.methods.OutputsFolder`); the file name is the item id with
"/" written as "@" (self) and the source and driving names joined by "~" (cross): characters that no
dataset id of the registry uses, so every name maps back to exactly one task.
"""

from __future__ import annotations

from dataclasses import dataclass

from eval.config import Protocol
from pipeline.split import Split


def file_stem(item_id: str) -> str:
    return item_id.replace("/", "@")


@dataclass(frozen=True)
class Task:
    protocol: Protocol
    source: str  # item id whose frame 0 is the source portrait
    driving: str  # item id of the driving clip (and the ground truth in self-reenactment)

    @property
    def task_id(self) -> str:
        if self.protocol == "self":
            return file_stem(self.driving)
        return f"{file_stem(self.source)}~{file_stem(self.driving)}"


def split_tasks(split: Split, protocols: tuple[Protocol, ...] = ("self", "cross")) -> list[Task]:
    tasks: list[Task] = []
    if "self" in protocols:
        tasks += [Task("self", clip.item_id, clip.item_id) for clip in split.clips]
    if "cross" in protocols:
        tasks += [Task("cross", pair.source, pair.driving) for pair in split.pairs.pairs]
    return tasks
