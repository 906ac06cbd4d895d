"""Labelled faces kept: where an image's annotation boxes the subject, the build takes the detection the
box names and drops the image for `multiple_faces` only when no detection matches it.

Two inputs: the embedded sample's CelebA 000008.jpg (two people; its wild box is around the left one),
and a VGGFace2 folder made here in the official layout from two real face photos composed side by
side, the subject on the right and smaller, with a loose box around it; a second image of the same
composition has its box on the seam between the faces, which matches neither.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from buildkit import rp_data, samples

from pipeline.decode import read_image
from pipeline.faces import Face, labelled_face, open_detector
from pipeline.sample.portraits import PORTRAITS, load_photo
from pipeline.sample.render import write_jpeg

Box = tuple[float, float, float, float]
TILE = 220  # each photo's square in the composition
LOOSE = 1.3  # VGGFace2's loose boxes are wider than a detector's face box
CLASS_ID = "n009001"


def _tile(key: str, face_widths: float) -> tuple[np.ndarray, Box, np.ndarray]:
    """A TILE x TILE square of a shipped photo centred on its face, `face_widths` face widths across,
    with the face box and 5 points in tile pixels."""
    portrait = PORTRAITS[key]
    side = portrait.width * face_widths
    (cx, cy), scale = portrait.center, TILE / side
    matrix = np.array([[scale, 0, TILE / 2 - cx * scale], [0, scale, TILE / 2 - cy * scale]])
    tile = cv2.warpAffine(np.asarray(load_photo(key)), matrix, (TILE, TILE), flags=cv2.INTER_AREA)
    x0, y0, x1, y1 = portrait.box
    box = (x0 * scale + matrix[0, 2], y0 * scale + matrix[1, 2], x1 * scale + matrix[0, 2], y1 * scale + matrix[1, 2])
    points = np.array(portrait.points) * scale + matrix[:, 2]
    return tile, box, points


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _grown(box: Box, factor: float) -> Box:
    (cx, cy), half_w, half_h = _centre(box), (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def two_faces() -> tuple[np.ndarray, Box, Box, np.ndarray]:
    """(image, left face box, right face box, right face points): a large face left, the subject right."""
    left, left_box, _ = _tile("t1_b", 1.7)
    right, (x0, y0, x1, y1), points = _tile("astronaut", 2.4)
    return np.hstack([left, right]), left_box, (x0 + TILE, y0, x1 + TILE, y1), points + np.array([TILE, 0])


def seam_box(right: Box) -> Box:
    """A face-sized box across the seam of the composition: on neither face."""
    return (TILE - 40, right[1], TILE + 40, right[3])


def detect(path: Path) -> list[Face]:
    """The real detector the build uses (mediapipe), on a whole image."""
    detector = open_detector()
    try:
        return detector.detect(read_image(path))
    finally:
        detector.close()


def write_vggface2(root: Path) -> tuple[Box, Box]:
    """One train class of two images in VGGFace2's layout: 0001_01 boxes the right face loosely,
    0002_01 boxes the seam between the faces. Returns the face boxes (left, right)."""
    image, left, right, points = two_faces()
    boxes = {"0001_01": _grown(right, LOOSE), "0002_01": seam_box(right)}
    rows = {"bb": ["NAME_ID,X,Y,W,H"], "landmark": ["NAME_ID," + ",".join(f"P{i}X,P{i}Y" for i in range(1, 6))]}
    for name, (x0, y0, x1, y1) in boxes.items():
        write_jpeg(root / "train" / CLASS_ID / f"{name}.jpg", image, quality=95)
        rows["bb"].append(f'"{CLASS_ID}/{name}",{round(x0)},{round(y0)},{round(x1 - x0)},{round(y1 - y0)}')
        rows["landmark"].append(f'"{CLASS_ID}/{name}",' + ",".join(f"{v:.2f}" for v in points.reshape(-1)))
    files = {
        "identity_meta.csv": ["Class_ID, Name, Sample_Num, Flag, Gender", f'{CLASS_ID}, "Test_Subject", 2, 1, f'],
        "train_list.txt": [f"{CLASS_ID}/{name}.jpg" for name in boxes],
        "test_list.txt": [],
        "bb_landmark/loose_bb_train.csv": rows["bb"],
        "bb_landmark/loose_bb_test.csv": rows["bb"][:1],
        "bb_landmark/loose_landmark_train.csv": rows["landmark"],
        "bb_landmark/loose_landmark_test.csv": rows["landmark"][:1],
    }
    for rel, lines in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("".join(line + "\n" for line in lines))
    return left, right


def celeba_box(celeba: Path, image_id: str) -> Box:
    """The wild box of one CelebA image, from list_bbox_celeba.txt (x, y, w, h)."""
    for line in (celeba / "Anno" / "list_bbox_celeba.txt").read_text().splitlines():
        if line.startswith(image_id):
            x, y, w, h = (float(v) for v in line.split()[1:])
            return (x, y, x + w, y + h)
    raise AssertionError(f"{image_id} not in list_bbox_celeba.txt")


def test_the_box_names_one_detection_and_a_box_between_faces_names_none(sample_root: Path, tmp_path: Path) -> None:
    celeba = sample_root / "celeba"
    found = detect(celeba / "Img" / "img_celeba" / "000008.jpg")
    assert len(found) == 2
    subject = labelled_face(found, celeba_box(celeba, "000008.jpg"))
    assert subject is not None and subject.box[2] < max(face.box[2] for face in found)  # the left one
    _, right = write_vggface2(tmp_path)
    found = detect(tmp_path / "train" / CLASS_ID / "0001_01.jpg")
    assert len(found) == 2
    subject = labelled_face(found, _grown(right, LOOSE))
    assert subject is not None and subject.box[0] > TILE  # the right face, though the left one is larger
    assert max(found, key=lambda face: face.area) is not subject
    assert labelled_face(found, seam_box(right)) is None
    # a small face in the background of a loose box is not its subject: the box's centre is not on it
    small = Face((right[0], right[1], right[0] + 10, right[1] + 10), 0.9)
    assert labelled_face([small], _grown(right, LOOSE)) is None


@pytest.mark.slow
def test_the_build_keeps_labelled_faces_and_drops_unmatched_groups(
    sample_root: Path, tmp_path: Path, sample_config: str
) -> None:
    vggface2 = tmp_path / "vggface2"
    left, right = write_vggface2(vggface2)
    out = tmp_path / "out"
    sources = ["--source", f"celeba={sample_root / 'celeba'}", "--source", f"vggface2={vggface2}"]
    rp_data("build", *sources, "--out", str(out), "--workers", "1", "--config", sample_config)
    manifest = pd.read_parquet(out / "manifest.parquet")
    rows = manifest[manifest.kind == "source"].set_index("item_id")
    assert rows.loc["celeba/000008", "status"] == "ok"
    assert rows.loc[f"vggface2/{CLASS_ID}/0001_01", "status"] == "ok"
    assert tuple(rows.loc[f"vggface2/{CLASS_ID}/0002_01", ["status", "reason"]]) == ("filtered", "multiple_faces")
    metas = {meta["item_id"]: meta for meta in (json.loads(s["json"]) for s in samples(out).values())}

    def framed(item_id: str, box: Box) -> bool:
        """The sample's context crop (source pixels) holds the centre of this face."""
        x0, y0, x1, y1 = metas[item_id]["crop_box"]
        cx, cy = _centre(box)
        return x0 <= cx < x1 and y0 <= cy < y1

    subject = celeba_box(sample_root / "celeba", "000008.jpg")
    faces = detect(sample_root / "celeba" / "Img" / "img_celeba" / "000008.jpg")
    other = next(face.box for face in faces if face.box[0] > subject[2])  # the face the wild box does not name
    assert framed("celeba/000008", subject) and not framed("celeba/000008", other)
    assert framed(f"vggface2/{CLASS_ID}/0001_01", right) and not framed(f"vggface2/{CLASS_ID}/0001_01", left)
