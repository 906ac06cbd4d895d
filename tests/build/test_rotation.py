"""Rotation everywhere: a phone's video, stored on its side with a display matrix and annotated upright, is cut
upright and unstretched around the annotated face, by the build and by rp-eval's clip reader alike; the build
does the same for it as one's own footage, its subject boxed in a folder source's sidecar.

The footage is rendered here, so every face's geometry is known per frame: two people in a portrait phone
video, the annotation (CelebV-HQ's normalised head box, VFHQ's pixel boxes) on the lower one, in displayed
coordinates as annotators draw them. A reader that sizes the picture from the stored frame (480x360 here,
not 360x480) misplaces or squeezes the annotated region, and its crop then frames the face too tightly or
holds the other person.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kit import run_adapter

from eval.clips import load_clip
from eval.frame_files import read_video
from manifests.folder_spec import folder_spec
from manifests.schema import get_spec
from pipeline.config import BuildConfig
from pipeline.faces import FaceDetector, open_detector, open_landmarker
from pipeline.process import Models, process_item
from pipeline.sample.files import face_box, square_around
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, FaceGeometry, Shot, render_video
from pipeline.sources import open_adapter
from pipeline.sources.records import Problem, SourceItem
from pipeline.split import frozen_clip, measure

SIZE = (360, 480)  # displayed (width, height); the file stores 480x360
PHONE = Recording(matrix="bt601", full_range=True, rotation=90)  # as an Android camera writes it
FPS, FRAMES = 25, 40
YTID = "Ph0ne_Vid-9"
SUBJECT, OTHER = 1, 0  # actor indices: the annotation boxes the lower face
SHOT = Shot((Actor("t1_b", (0.62, 0.27), 96), Actor("astronaut", (0.36, 0.7), 104)), FRAMES, scene=7)
BUILD = BuildConfig()
EYES_AND_NOSE = 0.1  # largest distance, in face widths, of a detected eye or nose tip from its true place


def write_celebvhq(root: Path, frames: np.ndarray, geometry: list[list[FaceGeometry]]) -> None:
    """A raw download and its clip's normalised head box (the face boxes' union widened by half, as annotated)."""
    write_recording(root / "downloaded_celebvhq" / "raw" / f"{YTID}.mp4", frames, FPS, PHONE)
    x0, y0, x1, y1 = face_box([face for faces in geometry for face in faces if face.actor == SUBJECT])
    grow_x, grow_y = (x1 - x0) / 4, (y1 - y0) / 4
    width, height = SIZE
    bbox = {
        "top": (y0 - grow_y) / height,
        "bottom": (y1 + grow_y) / height,
        "left": (x0 - grow_x) / width,
        "right": (x1 + grow_x) / width,
    }
    clip = {"ytb_id": YTID, "duration": {"start_sec": 0.0, "end_sec": FRAMES / FPS}, "bbox": bbox, "attributes": {}}
    (root / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": {f"{YTID}_0": clip}}))


def write_vfhq(root: Path, frames: np.ndarray, geometry: list[list[FaceGeometry]]) -> None:
    """A downloaded source video and the meta file of the subject's clip: per-frame x y w h and 5 points."""
    write_recording(root / "raw" / f"{YTID}.mp4", frames, FPS, PHONE)
    faces = [next(face for face in frame if face.actor == SUBJECT) for frame in geometry]
    x0, y0, x1, y1 = square_around(face_box(faces), 2.0, *SIZE)
    lines = [f"Video ID: {YTID}", f"H: {SIZE[1]}", f"W: {SIZE[0]}", f"FPS: {FPS}", "", "FRAME INDEX X0 Y0 W H", ""]
    for index, face in enumerate(faces):
        bx0, by0, bx1, by1 = face.box
        points = " ".join(f"{v:.3f}" for v in face.points.reshape(-1))
        lines.append(f"{index} {SUBJECT:08d} {bx0:.3f} {by0:.3f} {bx1 - bx0:.3f} {by1 - by0:.3f} {points}")
    lines.append(f"CROP: {x0} {y0} {x1} {y1}")
    meta = root / "meta_info" / "test" / f"Clip+{YTID}+P{SUBJECT}+C0+F0-{FRAMES - 1}.txt"
    meta.parent.mkdir(parents=True)
    (root / "meta_info" / "train").mkdir()
    meta.write_text("\n".join(lines) + "\n")


def write_folder(root: Path, frames: np.ndarray, geometry: list[list[FaceGeometry]]) -> None:
    """One's own footage: the phone video under a name with a space, its sidecar's box drawn on the picture
    as displayed (a person draws it on what the player shows) around the subject's faces."""
    write_recording(root / "me" / f"{YTID} phone.mp4", frames, FPS, PHONE)
    x0, y0, x1, y1 = face_box([face for faces in geometry for face in faces if face.actor == SUBJECT])
    row = f"me/{YTID} phone.mp4,me,train,,,,{x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f},"
    (root / "sidecar.csv").write_text("path,identity,split,start,end,unit,box,tags\n" + row + "\n")


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[FaceGeometry]]]:
    """Both datasets' layouts over the same rotated recording, and its ground truth per frame."""
    root = tmp_path_factory.mktemp("rotated")
    frames, geometry = render_video([SHOT], SIZE, seed=3)
    write_celebvhq(root / "celebvhq", frames, geometry)
    write_vfhq(root / "vfhq", frames, geometry)
    write_folder(root / "folder", frames, geometry)
    return root, geometry


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return open_detector()


def the_item(root: Path, dataset: str) -> SourceItem:
    if dataset == "folder":  # one's own footage, the subject boxed in its sidecar
        problems: list[Problem] = []
        items = list(open_adapter(folder_spec("mine"), root / dataset, problems.append).items())
        assert problems == [] and len(items) == 1 and items[0].media_path == f"me/{YTID} phone.mp4"
        return items[0]
    items, problems = run_adapter(dataset, root / dataset)
    assert problems == [] and len(items) == 1 and items[0].media_path.endswith(f"{YTID}.mp4")
    assert (items[0].space_w, items[0].space_h) == SIZE  # the annotation's frame: the picture as displayed
    return items[0]


def assert_upright_subject(
    crops: np.ndarray,
    crop_box: tuple[int, int, int, int],
    first: int,
    geometry: list[list[FaceGeometry]],
    detector: FaceDetector,
) -> None:
    """The crop (displayed pixels, from media frame `first` on) frames the subject as the build frames a face,
    leaves the other person out, and shows the subject's eyes and nose where the true geometry puts them."""
    x0, y0, x1, y1 = crop_box
    side = x1 - x0
    assert y1 - y0 == side, crop_box
    shown = geometry[first : first + len(crops)]
    subject = [next(face for face in faces if face.actor == SUBJECT) for faces in shown]
    other = np.array([next(face for face in faces if face.actor == OTHER).box for faces in shown])
    face_side = np.median([max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in subject])
    assert side == pytest.approx(BUILD.crop_scale * face_side, rel=0.12)  # not squeezed by a misread region
    centres = (other[:, :2] + other[:, 2:]) / 2
    assert not np.any((centres > (x0, y0)).all(1) & (centres < (x1, y1)).all(1))  # the other person is out
    scale = crops.shape[1] / side
    for index in range(0, len(crops), 5):
        truth = subject[index]
        faces = detector.detect(crops[index])
        assert faces, f"no face in crop {index}"
        found = max(faces, key=lambda face: face.area)
        expected = (truth.points[:3] - (x0, y0)) * scale  # eye (image left), eye (image right), nose tip
        error = np.linalg.norm(found.keypoints[:3] - expected, axis=1) / ((truth.box[2] - truth.box[0]) * scale)
        assert error.max() < EYES_AND_NOSE, (index, error)


@pytest.mark.parametrize("dataset", ["celebvhq", "vfhq", "folder"])
def test_the_build_cuts_the_annotated_face_of_a_rotated_video_upright(
    footage: tuple[Path, list[list[FaceGeometry]]], detector: FaceDetector, dataset: str, tmp_path: Path
) -> None:
    root, geometry = footage
    models = Models(detector, open_landmarker())
    outcome = process_item(the_item(root, dataset), root / dataset, BUILD, get_spec("sample").defaults, models, "fp")
    assert outcome.source_row["status"] == "ok", outcome.candidate_rows
    for sample in outcome.samples:
        meta = json.loads(sample.members["json"])
        assert meta["fps"] == FPS  # the recording's own rate: output frame j is media frame start + j
        (tmp_path / "clip.mp4").write_bytes(sample.members["mp4"])
        crops = read_video(tmp_path / "clip.mp4").frames
        assert_upright_subject(crops, meta["crop_box"], meta["source_range"]["start"], geometry, detector)


@pytest.mark.parametrize("dataset", ["celebvhq", "vfhq"])
def test_rp_eval_cuts_the_annotated_face_of_a_rotated_video_upright(
    footage: tuple[Path, list[list[FaceGeometry]]], detector: FaceDetector, dataset: str
) -> None:
    root, geometry = footage
    item = the_item(root, dataset)
    clip = frozen_clip(item, measure(root / dataset / item.media_path, item))
    loaded = load_clip(clip, root / dataset, 256, detector)
    assert len(loaded.frames) >= FRAMES - 2
    assert_upright_subject(loaded.frames, loaded.crop_box, loaded.first_frame, geometry, detector)
