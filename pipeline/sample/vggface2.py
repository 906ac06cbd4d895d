"""VGGFace2 in its official layout: identity folders of loose crops, lists, boxes, landmarks, meta.

Planted: a listed image that is not on disk, and a malformed line in loose_bb_train.csv.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sample.files import write_text
from pipeline.sample.render import Actor, render_still, write_jpeg

# class id -> (portrait, split, images, identity_meta name field as written)
CLASSES = {
    "n000001": ("t1_c", "test", 2, '"Sample_Person_C"'),
    "n000002": ("t1_a", "train", 3, '"Sample_Person_A"'),
    "n000003": ("t1_b", "train", 3, '"Doe, Jane"'),  # a quoted name with a comma
    "n000007": ("astronaut", "train", 2, "Naut, Astro"),  # an unquoted comma: the known parsing trap
}
GENDER = {"n000001": "m", "n000002": "f", "n000003": "m", "n000007": "f"}
MISSING = "n000002/0003_01"  # listed, never written
MALFORMED_BOX = "n000003/0002_01"  # its loose_bb line is broken
SIZE = (150, 190)  # VGGFace2's loose crops average about 137x180


def write(root: Path) -> None:
    meta = ["Class_ID, Name, Sample_Num, Flag, Gender"]
    lists: dict[str, list[str]] = {"train": [], "test": []}
    boxes: dict[str, list[str]] = {"train": ["NAME_ID,X,Y,W,H"], "test": ["NAME_ID,X,Y,W,H"]}
    marks_header = "NAME_ID," + ",".join(f"P{i}X,P{i}Y" for i in range(1, 6))
    marks: dict[str, list[str]] = {"train": [marks_header], "test": [marks_header]}
    for seed, (class_id, (portrait, split, count, name)) in enumerate(sorted(CLASSES.items())):
        meta.append(f"{class_id}, {name}, {count}, {1 if split == 'train' else 0}, {GENDER[class_id]}")
        for index in range(1, count + 1):
            name_id = f"{class_id}/{index:04d}_01"
            lists[split].append(f"{name_id}.jpg")
            actor = Actor(portrait, (0.5 + 0.04 * (index - 2), 0.45), face_px=70 + 8 * index)
            image, geometry = render_still([actor], SIZE, seed=100 * seed + index)
            if name_id != MISSING:
                write_jpeg(root / split / f"{name_id}.jpg", image, quality=90)
            x0, y0, x1, y1 = geometry[0].box
            w, h = round(x1 - x0), round(y1 - y0)
            box = f'"{name_id}",{round(x0)},{round(y0)},{"w" if name_id == MALFORMED_BOX else w},{h}'
            boxes[split].append(box)
            points = ",".join(f"{v:.2f}" for v in geometry[0].points.reshape(-1))
            marks[split].append(f'"{name_id}",{points}')
    write_text(root / "identity_meta.csv", meta)
    for split in ("train", "test"):
        write_text(root / f"{split}_list.txt", lists[split])
        write_text(root / "bb_landmark" / f"loose_bb_{split}.csv", boxes[split])
        write_text(root / "bb_landmark" / f"loose_landmark_{split}.csv", marks[split])
