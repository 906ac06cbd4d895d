"""Real face photographs that installed packages ship, with their face geometry measured once.

The sample dataset must exercise real detectors and landmarkers, so its faces are real photos, not
drawings. The geometry below was measured once with mediapipe FaceMesh and is kept as constants:
re-measuring at run time would make the sample's ground truth depend on the very landmarker that the
pipeline is tested with.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

Point = tuple[float, float]


@dataclass(frozen=True)
class Portrait:
    """One face in one shipped photo; coordinates are photo pixels, x1/y1 exclusive."""

    key: str
    source: str  # the package that ships the photo: "insightface" or "skimage"
    resource: str  # file name inside insightface/data/images, or the skimage.data function name
    box: tuple[float, float, float, float]
    points: tuple[Point, Point, Point, Point, Point]  # eye L, eye R, nose tip, mouth L, mouth R (image sides)

    @property
    def center(self) -> Point:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


PORTRAITS: dict[str, Portrait] = {
    p.key: p
    for p in (
        Portrait("t1_a", "insightface", "t1.jpg", (53, 276, 172, 397),
                 ((87.7, 328.8), (128.7, 309.0), (121.4, 341.5), (114.1, 371.8), (147.9, 351.9))),
        Portrait("t1_b", "insightface", "t1.jpg", (464, 283, 575, 415),
                 ((490.1, 319.1), (537.1, 331.6), (506.8, 368.7), (485.9, 370.3), (529.2, 381.0))),
        Portrait("t1_c", "insightface", "t1.jpg", (747, 367, 845, 479),
                 ((761.5, 398.3), (803.0, 403.8), (772.4, 434.6), (764.8, 436.3), (806.4, 442.0))),
        Portrait("t1_d", "insightface", "t1.jpg", (907, 76, 1020, 205),
                 ((921.4, 121.3), (944.8, 116.3), (919.8, 157.7), (936.7, 173.4), (960.1, 168.9))),
        Portrait("t1_e", "insightface", "t1.jpg", (1133, 288, 1230, 401),
                 ((1149.8, 327.2), (1192.9, 324.0), (1166.4, 350.3), (1154.3, 368.3), (1197.5, 363.5))),
        Portrait("t1_f", "insightface", "t1.jpg", (274, 163, 374, 264),
                 ((293.3, 210.9), (321.1, 193.7), (305.9, 229.9), (313.9, 247.1), (338.4, 233.9))),
        Portrait("astronaut", "skimage", "astronaut", (179, 70, 272, 177),
                 ((203.6, 101.3), (246.7, 103.7), (223.7, 130.3), (202.4, 139.5), (245.6, 140.9))),
        Portrait("hanks", "insightface", "Tom_Hanks_54745.png", (3, 21, 85, 113),
                 ((34.4, 50.6), (70.7, 49.7), (63.8, 80.8), (38.7, 91.9), (67.3, 90.3))),
    )
}  # fmt: skip


def load_photo(key: str) -> np.ndarray:
    """The photo holding portrait `key`, RGB uint8 (read-only: it is shared by every caller)."""
    portrait = PORTRAITS[key]
    return _load(portrait.source, portrait.resource)


@cache
def _load(source: str, resource: str) -> np.ndarray:
    if source == "skimage":
        import skimage.data  # imported here: scikit-image is slow to import and only astronaut needs it

        photo = np.ascontiguousarray(getattr(skimage.data, resource)()[..., :3])
    else:
        with Image.open(_insightface_file(resource)) as image:
            photo = np.asarray(image.convert("RGB"))
    photo.setflags(write=False)
    return photo


def _insightface_file(name: str) -> Path:
    """Finds the file without importing insightface, which is slow to import and an optional extra."""
    wanted = f"insightface/data/images/{name}"
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the sample photo {wanted} comes from the 'insightface' package, which is not installed; "
            "install it with: pip install 'realportrait[insightface]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / name
    if not path.is_file():
        raise FileNotFoundError(f"the installed 'insightface' package has no {wanted} (looked for {path})")
    return path
