"""MEAD: per-actor folders of takes per view, emotion and level (datasets.md §7).

MEAD ships no annotation files: the folder tree is the annotation. The split follows the README's
protocol (sentences held out, not people): per actor, emotion and level the highest-numbered takes are
test, 10 for neutral and 6 for the other emotions.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.sources.base import SourceAdapter
from pipeline.sources.records import SourceItem

ACTOR = re.compile(r"[MW]\d{3}")
VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
LEVEL = re.compile(r"level_(\d)")
TAKE = re.compile(r"(\d{3})\.mp4")


class TestLast(BaseModel):
    model_config = ConfigDict(extra="forbid")
    neutral: int = Field(10, ge=0)
    other: int = Field(6, ge=0)


class MEADOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    views: list[str] = Field(default_factory=lambda: list(VIEWS), min_length=1)
    test_last: TestLast = Field(default_factory=TestLast)

    @field_validator("views")
    @classmethod
    def _known_views(cls, views: list[str]) -> list[str]:
        unknown = sorted(set(views) - set(VIEWS))
        if unknown:
            raise ValueError(f"unknown views {unknown}; MEAD has {list(VIEWS)}")
        return views


def _subdirs(path: str) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except OSError:
        return []


class MEAD(SourceAdapter):
    name = "mead"
    Options = MEADOptions

    def read_items(self) -> Iterator[SourceItem]:
        actors = [name for name in _subdirs(str(self.root)) if ACTOR.fullmatch(name)]
        if not actors:
            self.problem(".", "missing_media", "no actor folder (M003, W009, ...) in the dataset root")
        for actor in actors:
            yield from self._actor_items(actor)

    def _actor_items(self, actor: str) -> Iterator[SourceItem]:
        video_dir = f"{actor}/video"
        if not (self.root / video_dir).is_dir():
            archive = self.spec.layout.media_path("video_archive", actor=actor)
            if self.exists(archive):
                self.problem(archive, "unextracted_archive", f"extract it to {video_dir}/ (tar xf)")
            else:
                self.problem(actor, "missing_media", f"no {video_dir}/ folder and no video.tar")
            return
        takes: dict[tuple[str, int, str], list[str]] = defaultdict(list)  # (emotion, level, take) -> views
        views_found = _subdirs(str(self.root / video_dir))
        for view in views_found:
            if view not in VIEWS:
                self.problem(f"{video_dir}/{view}", "invalid_value", f"unknown view folder {view!r}")
                continue
            for emotion in _subdirs(str(self.root / video_dir / view)):
                if emotion not in EMOTIONS:
                    self.problem(f"{video_dir}/{view}/{emotion}", "invalid_value", f"unknown emotion {emotion!r}")
                    continue
                for level_dir in _subdirs(str(self.root / video_dir / view / emotion)):
                    level = LEVEL.fullmatch(level_dir)
                    folder = f"{video_dir}/{view}/{emotion}/{level_dir}"
                    if level is None:
                        self.problem(folder, "invalid_value", f"expected level_<n>, got {level_dir!r}")
                        continue
                    for entry in sorted(os.listdir(self.root / folder)):
                        take = TAKE.fullmatch(entry)
                        if take is None:
                            self.problem(f"{folder}/{entry}", "invalid_value", "expected a take named NNN.mp4")
                            continue
                        takes[(emotion, int(level.group(1)), take.group(1))].append(view)
        self._report_gaps(actor, video_dir, views_found, {emotion for emotion, _, _ in takes})
        test = self._test_takes(takes)
        for (emotion, level, take), views in sorted(takes.items()):
            for view in views:
                if view in self.options.views:
                    yield self._item(actor, view, emotion, level, take, (emotion, level, take) in test)

    def _report_gaps(self, actor: str, video_dir: str, views: list[str], emotions: set[str]) -> None:
        """One problem per actor for absent views and one for absent emotions (W017 has only 'down')."""
        absent_views = [view for view in self.options.views if view not in views]
        if absent_views:
            self.problem(video_dir, "missing_view", f"{actor} has no {', '.join(absent_views)} view(s)")
        absent_emotions = [emotion for emotion in EMOTIONS if emotion not in emotions]
        if absent_emotions:
            self.problem(video_dir, "missing_view", f"{actor} has no {', '.join(absent_emotions)} takes in any view")

    def _test_takes(self, takes: dict[tuple[str, int, str], list[str]]) -> set[tuple[str, int, str]]:
        by_level: dict[tuple[str, int], list[str]] = defaultdict(list)
        for emotion, level, take in takes:
            by_level[(emotion, level)].append(take)
        test = set()
        for (emotion, level), numbers in by_level.items():
            count = self.options.test_last.neutral if emotion == "neutral" else self.options.test_last.other
            held_out = sorted(numbers)[max(0, len(numbers) - count) :] if count else []
            test.update((emotion, level, take) for take in held_out)
        return test

    def _item(self, actor: str, view: str, emotion: str, level: int, take: str, test: bool) -> SourceItem:
        layout = self.spec.layout
        media = layout.media_path("video", actor=actor, view=view, emotion=emotion, level=str(level), take=take)
        audio = layout.media_path("audio", actor=actor, emotion=emotion, level=str(level), take=take)
        native_id = f"{actor}/{view}/{emotion}/level_{level}/{take}"
        return SourceItem(
            dataset=self.name,
            native_id=native_id,
            modality="video",
            media_path=media,
            media_status=self.media_status(media, self.item_id(native_id)),
            split="test" if test else "train",
            identity=f"{self.name}:{actor}",
            identity_kind="actor",
            license_tag=self.spec.license.tag,
            audio_path=audio if self.exists(audio) else None,
            labels={"view": view, "emotion": emotion, "level": level, "take": take},
        )
