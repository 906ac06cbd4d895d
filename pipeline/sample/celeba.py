"""CelebA in its official layout: in-the-wild and aligned images, Anno/ and Eval/ files.

Planted: 000008.jpg shows two faces. Its wild box names the subject, so the build keeps that face;
`rp-data scan --faces`, which looks without the box, reports it as multiple_faces.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.sample.files import write_text
from pipeline.sample.render import Actor, render_still, write_jpeg

# image number -> (portrait, identity, partition code 0/1/2, wild image size); identities disjoint per split
IMAGES = {
    1: ("t1_d", 101, 0, (260, 300)),
    2: ("t1_d", 101, 0, (300, 260)),
    3: ("t1_e", 102, 0, (280, 280)),
    4: ("t1_e", 102, 0, (240, 320)),
    5: ("hanks", 103, 1, (260, 300)),
    6: ("hanks", 103, 1, (300, 300)),
    7: ("t1_f", 104, 2, (280, 300)),
    8: ("t1_f", 104, 2, (360, 240)),
}
TWO_FACES = 8
ALIGNED = (178, 218)
# where CelebA's alignment puts the eyes and mouth corners in a 178x218 image
ALIGNED_POINTS = np.array([[69.0, 111.0], [108.0, 111.0], [88.0, 135.0], [72.0, 152.0], [105.0, 152.0]])
HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"


def _aligned(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-align the wild image so its 5 points land on CelebA's canonical positions."""
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), ALIGNED_POINTS.astype(np.float32))
    aligned = cv2.warpAffine(image, matrix, ALIGNED, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    return aligned, moved


def _row(image_id: str, values: np.ndarray) -> str:
    return f"{image_id} " + " ".join(f"{round(v):>4d}" for v in values.reshape(-1))


def write(root: Path) -> None:
    bbox, wild_marks, aligned_marks, identity, partition = [], [], [], [], []
    for number, (portrait, person, code, size) in IMAGES.items():
        image_id = f"{number:06d}.jpg"
        actors = [Actor(portrait, (0.5, 0.45), face_px=90)]
        if number == TWO_FACES:
            actors = [Actor(portrait, (0.3, 0.45), face_px=90), Actor("t1_a", (0.72, 0.5), face_px=85)]
        image, geometry = render_still(actors, size, seed=number)
        write_jpeg(root / "Img" / "img_celeba" / image_id, image, quality=90)
        face = geometry[0]
        aligned, moved = _aligned(image, face.points)
        write_jpeg(root / "Img" / "img_align_celeba" / image_id, aligned, quality=90)
        x0, y0, x1, y1 = face.box
        bbox.append(f"{image_id} {round(x0):>4d} {round(y0):>4d} {round(x1 - x0):>4d} {round(y1 - y0):>4d}")
        wild_marks.append(_row(image_id, face.points))
        aligned_marks.append(_row(image_id, moved))
        identity.append(f"{image_id} {person}")
        partition.append(f"{image_id} {code}")
    count = str(len(IMAGES))
    write_text(root / "Anno" / "list_bbox_celeba.txt", [count, "image_id x_1 y_1 width height", *bbox])
    write_text(root / "Anno" / "list_landmarks_celeba.txt", [count, HEADER, *wild_marks])
    write_text(root / "Anno" / "list_landmarks_align_celeba.txt", [count, HEADER, *aligned_marks])
    write_text(root / "Anno" / "identity_CelebA.txt", identity)
    write_text(root / "Eval" / "list_eval_partition.txt", partition)
