"""FFHQ in its official layout: ffhq-dataset-v2.json and images1024x1024/<folder>/<stem>.png.

Planted: the JSON lists image 2, whose PNG is not on disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from pipeline.sample.files import write_json
from pipeline.sample.render import Actor, render_still, write_png

# JSON key -> (portrait, licence as FFHQ names it); 60000 is the first validation image
IMAGES = {
    0: ("astronaut", "Public Domain Mark"),
    1: ("t1_b", "Attribution License"),
    2: ("t1_c", "Attribution-NonCommercial License"),
    60000: ("t1_e", "Attribution License"),
}
MISSING = 2
SIDE = 1024


def _template_68() -> np.ndarray:
    """A 68-point face in dlib order, in units of the inter-ocular distance (eyes at (-0.5, 0), (0.5, 0)).

    FFHQ's JSON carries 68 dlib points; the sample derives them by fitting this template to the
    renderer's 5 measured points.
    """
    jaw = [(1.05 * np.cos(t), 0.3 + 1.35 * np.sin(t)) for t in np.linspace(np.pi, 0, 17)]
    brow_l = [(x, -0.35 - 0.12 * np.sin(np.pi * (x + 0.85) / 0.7)) for x in np.linspace(-0.85, -0.15, 5)]
    brow_r = [(-x, y) for x, y in reversed(brow_l)]
    bridge = [(0.0, y) for y in (-0.1, 0.15, 0.4, 0.65)]
    nostrils = [(-0.25, 0.8), (-0.12, 0.82), (0.0, 0.83), (0.12, 0.82), (0.25, 0.8)]
    eye_l = [(-0.75, 0), (-0.58, -0.09), (-0.42, -0.09), (-0.25, 0), (-0.42, 0.09), (-0.58, 0.09)]
    eye_r = [(0.25, 0), (0.42, -0.09), (0.58, -0.09), (0.75, 0), (0.58, 0.09), (0.42, 0.09)]
    lips = [
        (-0.45, 1.05),
        (-0.3, 0.97),
        (-0.12, 0.93),
        (0, 0.95),
        (0.12, 0.93),
        (0.3, 0.97),
        (0.45, 1.05),
        (0.3, 1.17),
        (0.12, 1.22),
        (0, 1.23),
        (-0.12, 1.22),
        (-0.3, 1.17),
    ]
    inner = [
        (-0.38, 1.05),
        (-0.12, 1.02),
        (0, 1.02),
        (0.12, 1.02),
        (0.38, 1.05),
        (0.12, 1.08),
        (0, 1.09),
        (-0.12, 1.08),
    ]
    return np.array(jaw + brow_l + brow_r + bridge + nostrils + eye_l + eye_r + lips + inner, dtype=np.float64)


TEMPLATE = _template_68()
ANCHORS = np.array([TEMPLATE[36:42].mean(0), TEMPLATE[42:48].mean(0), TEMPLATE[30], TEMPLATE[48], TEMPLATE[54]])


def landmarks_68(points5: np.ndarray) -> np.ndarray:
    matrix, _ = cv2.estimateAffinePartial2D(ANCHORS.astype(np.float32), points5.astype(np.float32))
    return TEMPLATE @ matrix[:, :2].T + matrix[:, 2]


def write(root: Path) -> None:
    entries = {}
    for index, (portrait, licence) in IMAGES.items():
        stem, folder = f"{index:05d}", f"{index // 1000 * 1000:05d}"
        rel = f"images1024x1024/{folder}/{stem}.png"
        small, geometry = render_still([Actor(portrait, (0.5, 0.48), face_px=200)], (SIDE // 2, SIDE // 2), index)
        image = cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
        points = landmarks_68(geometry[0].points * 2)
        if index != MISSING:
            write_png(root / rel, image)
        data = (root / rel).read_bytes() if index != MISSING else b""
        entries[str(index)] = {
            "category": "training" if index < 60000 else "validation",
            "metadata": {
                "photo_url": None,
                "photo_title": f"sample {stem}",
                "author": "sample",
                "country": "",
                "license": licence,
                "license_url": None,
                "date_uploaded": "2026-01-01",
                "date_crawled": "2026-01-02",
            },
            "image": {
                "file_url": None,
                "file_path": rel,
                "file_size": len(data),
                "file_md5": hashlib.md5(data).hexdigest(),
                "pixel_size": [SIDE, SIDE],
                "pixel_md5": hashlib.md5(image.tobytes()).hexdigest(),
                "face_landmarks": np.round(points, 2).tolist(),
            },
            "thumbnail": {
                "file_url": None,
                "file_path": f"thumbnails128x128/{folder}/{stem}.png",
                "file_size": 0,
                "file_md5": "",
                "pixel_size": [128, 128],
                "pixel_md5": "",
            },
            "in_the_wild": {
                "file_url": None,
                "file_path": f"in-the-wild-images/{folder}/{stem}.png",
                "file_size": 0,
                "file_md5": "",
                "pixel_size": [SIDE, SIDE],
                "pixel_md5": "",
                "face_rect": [round(2 * v) for v in geometry[0].box],
                "face_landmarks": np.round(points, 2).tolist(),
                "face_quad": [],
            },
        }
    write_json(root / "ffhq-dataset-v2.json", entries)
