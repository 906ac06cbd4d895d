"""The test split's face check (datasets.md §11): one prominent face over the whole clip, a crop of at
least `min_crop_px`, no scene cut.

Why it is made of the build's own parts: a test clip should be one the build would frame the same way
and keep whole. So the clip is decoded as the build decodes an item (its annotated range and widened
crop region, pipeline.decode), cuts come from the build's scene detector at the build's threshold,
faces from the build's detector on every `detect_every`-th frame at the build's detection size, the
subject's runs from the build's tracker (pipeline.tracking) and the crop from the build's square
(pipeline.process.crop_square). The thresholds are the build's defaults (`BuildConfig()`), except the
crop size, which §11 states and the split file records.

Frames are streamed: one decoded picture is held at a time, whatever the clip's length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig
from pipeline.crops import unscaled
from pipeline.decode import open_frames
from pipeline.faces import Face, FaceDetector
from pipeline.process import crop_square
from pipeline.scenes import SceneCuts
from pipeline.sources.records import SourceItem
from pipeline.tracking import Run, face_runs

Rejection = tuple[str, str]  # (skip reason, detail)


@dataclass(frozen=True)
class ClipFaces:
    """What the build's parts see in one clip."""

    frames: int
    cuts: list[int]  # first frames of new shots
    runs: list[Run]  # the subject's runs, boxes in region pixels
    region: tuple[int, int]  # width, height of the decoded region


def analyse(item: SourceItem, root: Path, detector: FaceDetector, cfg: BuildConfig, min_scene: int) -> ClipFaces:
    """One streamed pass over the clip: every frame to the cut detector, every k-th (and the last) to
    the face detector, then the tracker over the whole clip as one segment."""
    stream = open_frames(item, root, None)
    x0, y0, x1, y1 = stream.region
    small_w, small_h = stream.small_size(cfg.detect_max_side)
    scale_x, scale_y = small_w / (x1 - x0), small_h / (y1 - y0)
    count = len(stream)
    sampled = {*range(0, count, cfg.detect_every), count - 1} if count else set()
    scenes = SceneCuts(stream.fps, cfg.scene_threshold, cfg.scene_width, min_scene)
    scene_size = scenes.size_for(x1 - x0, y1 - y0)
    samples: dict[int, list[Face]] = {}
    for index, picture in enumerate(stream.pictures()):
        scenes.feed(picture.at(*scene_size)[None])
        if index in sampled:
            samples[index] = [unscaled(f, scale_x, scale_y) for f in detector.detect(picture.at(small_w, small_h))]
    runs = face_runs(samples, count, cfg.filters.prominent_ratio, max_missed=cfg.track_max_missed) if count else []
    return ClipFaces(count, list(scenes.cuts), runs, (x1 - x0, y1 - y0))


def judge(faces: ClipFaces, cfg: BuildConfig, min_crop_px: int) -> Rejection | None:
    """Why the clip is no clean test clip, or None. In this order: a cut, no face, the subject not held
    over the clip (lost for longer than the tracker bridges), a second prominent face, a small crop."""
    if faces.cuts:
        return "scene_cut", f"a cut at frame {faces.cuts[0]} of {faces.frames}"
    if not faces.runs:
        return "no_face", f"no face in any sampled frame of {faces.frames}"
    if len(faces.runs) > 1:
        spans = ", ".join(f"{run.start}-{run.stop - 1}" for run in faces.runs)
        return "face_lost", f"the subject is tracked in {len(faces.runs)} separate runs (frames {spans})"
    (run,) = faces.runs
    held = len(run) / faces.frames
    if held < 1 - cfg.filters.max_lost_fraction:
        return "face_lost", f"the subject is tracked in frames {run.start}-{run.stop - 1} of {faces.frames}"
    if run.multi_face_fraction > cfg.filters.max_multi_face_fraction:
        return "multiple_faces", (
            f"{run.multi_face_fraction:.0%} of sampled frames show 2+ prominent faces "
            f"(> {cfg.filters.max_multi_face_fraction:.0%})"
        )
    x0, _, x1, _ = crop_square(run.boxes, cfg.crop_scale, *faces.region)
    if x1 - x0 < min_crop_px:
        return "crop_too_small", f"the build's crop is {x1 - x0} px < {min_crop_px} px"
    return None


def face_check(
    roots: Mapping[str, Path],
    detector: FaceDetector,
    defaults: Mapping[str, PipelineDefaults],
    min_crop_px: int,
    cfg: BuildConfig | None = None,
) -> Callable[[SourceItem], Rejection | None]:
    """The check `pipeline.split.walk` calls per clip. `defaults` are the datasets' registry defaults:
    the build's shortest scene (half its shortest clip, at least 4 frames) comes from them."""
    cfg = cfg or BuildConfig()

    def check(item: SourceItem) -> Rejection | None:
        min_scene = max(4, defaults[item.dataset].min_clip_frames // 2)
        return judge(analyse(item, Path(roots[item.dataset]), detector, cfg, min_scene), cfg, min_crop_px)

    return check
