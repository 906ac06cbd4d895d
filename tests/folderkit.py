"""A folder of one's own footage for the folder-source tests: real H.264 clips and JPEG/PNG photos of
rendered faces (pipeline.sample.render), with every trap a folder nobody curated brings."""

from __future__ import annotations

import os
import shutil
import unicodedata
from pathlib import Path

from pipeline.sample.render import Actor, Shot, render_still, render_video, write_jpeg, write_mp4, write_png

SIZE = (128, 128)
CAFE_NFD = unicodedata.normalize("NFD", "café.mp4")  # as macOS writes it; the id is NFC
SIDECAR = """\
path,identity,split,start,end,unit,box,tags
alice/clip one.mp4,alice,train,0,0.6,sec,,talking;indoor
alice/clip one.mp4,alice,train,5,9,sec,,
bob/café.mp4,bob,test,,,,,
bob/portrait.png,bob,holdout,,,,,
missing.mp4,carol,train,,,,,
../escape.mp4,carol,train,,,,,
"""


def clip(path: Path, portrait: str, seed: int, frames: int = 25) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    video, _ = render_video([Shot((Actor(portrait, (0.5, 0.5), 56),), frames, scene=seed)], SIZE, seed)
    write_mp4(path, video, 25)


def photo(path: Path, portrait: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image, _ = render_still([Actor(portrait, (0.5, 0.5), 56)], SIZE, seed)
    (write_png if path.suffix == ".png" else write_jpeg)(path, image)


def own_footage(root: Path, outside: Path, sidecar: bool = True) -> Path:
    """The folder: nested videos and photos, a name with spaces and one in NFD, a copy, a text file named
    .mp4, a note, a link loop, a link out of the root and (with `sidecar`) a sidecar with ranges,
    identities and splits, bad rows among them."""
    clip(root / "alice" / "clip one.mp4", "hanks", 1)
    photo(root / "alice" / "stills" / "photo.jpg", "hanks", 2)
    clip(root / "bob" / CAFE_NFD, "t1_a", 3)
    photo(root / "bob" / "portrait.png", "t1_a", 4)
    shutil.copyfile(root / "alice" / "clip one.mp4", root / "bob" / "copy of clip.mp4")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("shot in March\n")
    (root / "fake.mp4").write_text("this is not a video\n")
    os.symlink("..", root / "alice" / "loop")
    outside.mkdir(parents=True, exist_ok=True)
    clip(outside / "secret.mp4", "astronaut", 5, frames=5)
    os.symlink(outside / "secret.mp4", root / "elsewhere.mp4")
    if sidecar:
        (root / "sidecar.csv").write_text(SIDECAR, encoding="utf-8")
    return root
