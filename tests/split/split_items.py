"""SourceItems and Clips built by hand, for rule edge cases the embedded sample does not have."""

from __future__ import annotations

from pipeline.sources.records import SourceItem
from pipeline.split import Clip


def ytid(n: int) -> str:
    return f"vid{n:08d}"  # 11 characters, like every YouTube id


def vfhq_item(video: str, *, pid: int = 0, first: int = 1000, last: int = 1300, split: str = "test") -> SourceItem:
    name = f"Clip+{video}+P{pid}+C0+F{first}-{last}"
    return SourceItem(
        dataset="vfhq",
        native_id=name,
        modality="frames",
        media_path=f"frames/{name}",
        media_status="present",
        split=split,
        identity=f"vfhq:{video}+P{pid}",
        identity_kind="proxy_track",
        license_tag="vfhq:research-only",
        youtube_id=video,
        time_unit="frame",
        start=first + 1,
        end=last - 1,
        end_inclusive=True,
        fps=25.0,
        labels={"pid": pid, "clip_index": 0, "name_range": [first, last]},
    )


def celebvhq_item(
    key: str, *, start: float = 10.0, end: float = 16.0, sep_flag: object = False, appearance: tuple[str, ...] = ()
) -> SourceItem:
    video = key[:11]
    return SourceItem(
        dataset="celebvhq",
        native_id=key,
        modality="video",
        media_path=f"downloaded_celebvhq/processed/{key}.mp4",
        media_status="present",
        split="unsplit",
        identity=f"celebvhq:{video}",
        identity_kind="proxy_video",
        license_tag="celebvhq:research-non-commercial",
        youtube_id=video,
        time_unit="sec",
        start=start,
        end=end,
        end_inclusive=False,
        labels={
            "bbox_norm": {"top": 0.1, "bottom": 0.9, "left": 0.2, "right": 0.8},
            "appearance": list(appearance),
            "action": ["talk"],
            "emotion": {"sep_flag": sep_flag, "labels": "neutral"},
        },
    )


def clip(n: int, video: str, identity: str | None) -> Clip:
    return Clip(
        item_id=f"celebvhq/{video}_{n}",
        dataset="celebvhq",
        native_id=f"{video}_{n}",
        youtube_id=video,
        identity=identity,
        identity_kind="proxy_video",
        range=None,
        crop=None,
        media=f"downloaded_celebvhq/processed/{video}_{n}.mp4",
        modality="video",
        media_cut=True,
        fps=25.0,
        fps_from="media",
        media_frames=100,
        sha256="0" * 64,
    )
