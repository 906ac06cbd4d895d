"""Pictures a person judges an animation by: the labelled side-by-side video and the contact sheet.

A model's own frames (64 px for the demo's) are too small to judge by eye, and three unlabelled panels
leave the viewer guessing which is which. So every panel here is resized to one `panel` side and every
picture names its parts in a strip of text above them. The text is drawn with Pillow's built-in font
(`ImageFont.load_default(size=...)`, Pillow >= 10.1), so no font file has to ship with the toolkit or be
found on the machine. The source, driving and result panels are all resized from what the model was given
and what it made, at the model's size, so they show the same detail and compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.crops import resize_square

LABELS = ("source", "driving", "result")
MIN_PANEL, MAX_PANEL = 48, 2048  # below 48 px "driving" no longer fits its panel at MIN_TEXT
MIN_TEXT = 8  # px: the smallest text drawn; a label that does not fit its panel at this size is refused
BACKGROUND, INK = 0, 255  # white text on black: the most contrast, and no chroma for H.264's 4:2:0 to blur
MARGIN = 4  # px of background kept between a label and its panel's edges


@dataclass(frozen=True)
class ViewOptions:
    """How the pictures are drawn: the side of every panel (None: the model's native size), the three panels'
    names in the order source, driving, result, and how many frames the contact sheet shows."""

    panel: int | None = None
    labels: tuple[str, str, str] = LABELS
    sheet_frames: int = 8


def check_panel(panel: int) -> None:
    """An even side (H.264's 4:2:0 chroma needs even frame sizes) in [MIN_PANEL, MAX_PANEL]; the upper bound
    keeps a typo from filling the memory (a 300-frame side-by-side at 2048 px already takes 11 GB)."""
    if not MIN_PANEL <= panel <= MAX_PANEL or panel % 2:
        raise ValueError(f"must be an even number of pixels from {MIN_PANEL} to {MAX_PANEL}, got {panel}")


def parse_labels(text: str) -> tuple[str, str, str]:
    """ "source,driving,ours" -> the three names, each stripped of spaces; anything but three names is refused."""
    names = tuple(name.strip() for name in text.split(","))
    if len(names) != 3 or not all(names):
        raise ValueError(f"give three non-empty names separated by commas (source,driving,result), got {text!r}")
    return names  # type: ignore[return-value]


def check_labels(labels: Sequence[str], panel: int) -> None:
    """Every label fits its panel (a ValueError naming the first that does not), checked before a long run."""
    for label in labels:
        fitting_font(label, panel, text_size(panel))


def text_size(panel: int) -> int:
    """Text height for panels of `panel` px: a tenth of the panel, but never under 12 px, so that the text
    above a small model's 64 px panels stays legible."""
    return max(12, panel // 10)


def strip_height(panel: int) -> int:
    """A line and a half of text, rounded up to even (H.264's 4:2:0 chroma needs even frame sizes)."""
    return 2 * math.ceil(0.75 * text_size(panel))


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` px, loaded once per size (the side-by-side draws its strip once, the
    contact sheet a label per column)."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def fitting_font(text: str, width: int, size: int) -> ImageFont.FreeTypeFont:
    """The font at `size`, or the largest smaller one down to MIN_TEXT, whose `text` fits `width` px with
    MARGIN on each side: a long label shrinks rather than runs into its neighbour's."""
    for candidate in range(size, MIN_TEXT - 1, -1):
        if font(candidate).getlength(text) <= width - 2 * MARGIN:
            return font(candidate)
    raise ValueError(f"{text!r} does not fit a {width} px panel even at {MIN_TEXT} px text; shorten it")


def text_cell(text: str, width: int, height: int, size: int, *, centred: bool = True) -> np.ndarray:
    """(height, width, 3) uint8: `text` in INK on BACKGROUND, centred (else left-aligned after MARGIN), shrunk
    to fit the width."""
    image = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    position, anchor = ((width / 2, height / 2), "mm") if centred else ((MARGIN, height / 2), "lm")
    ImageDraw.Draw(image).text(position, text, fill=(INK,) * 3, font=fitting_font(text, width, size), anchor=anchor)
    return np.asarray(image)


def label_strip(labels: Sequence[str], panel: int) -> np.ndarray:
    """(strip_height(panel), len(labels) * panel, 3): each label centred above its panel."""
    height, size = strip_height(panel), text_size(panel)
    return np.concatenate([text_cell(label, panel, height, size) for label in labels], axis=1)


def check_clips(driving: np.ndarray, result: np.ndarray) -> None:
    """Frame t of the result was driven by frame t of the driving clip: the two must be equally long."""
    if len(driving) != len(result) or not len(result):
        raise ValueError(f"the driving clip has {len(driving)} frames and the result {len(result)}")


def side_by_side(
    source: np.ndarray, driving: np.ndarray, result: np.ndarray, panel: int, labels: Sequence[str] = LABELS
) -> np.ndarray:
    """(T, strip + panel, 3 panel, 3) uint8: source | driving | result, each at `panel` px, under a strip
    naming them. The source still (S, S, 3) stands beside every frame, so its likeness to the result can be
    judged at any moment of the video; driving (T, S', S', 3) and result (T, N, N, 3) are square crops."""
    check_clips(driving, result)
    strip = strip_height(panel)
    video = np.empty((len(result), strip + panel, 3 * panel, 3), np.uint8)
    video[:, :strip] = label_strip(labels, panel)
    video[:, strip:, :panel] = resize_square(source[None], panel)[0]
    video[:, strip:, panel : 2 * panel] = resize_square(driving, panel)
    video[:, strip:, 2 * panel :] = resize_square(result, panel)
    return video


def sheet_indices(length: int, count: int) -> list[int]:
    """`count` frame indices of a `length`-frame clip, the first and the last included, as evenly spaced as
    whole frames allow (i (length - 1) / (count - 1), rounded half up, so no two coincide). A count above the
    clip's length shows every frame once, as repeated columns would look like frames where nothing moved;
    a count of 1 shows the first frame."""
    count = min(count, length)
    if count == 1:
        return [0]
    return [(2 * i * (length - 1) + count - 1) // (2 * (count - 1)) for i in range(count)]


def contact_sheet(
    source: np.ndarray,
    driving: np.ndarray,
    result: np.ndarray,
    panel: int,
    labels: Sequence[str] = LABELS,
    frames: int = 8,
) -> np.ndarray:
    """(H, W, 3) uint8: the driving clip's frames (top row) over the result's (bottom row) at the same
    `sheet_indices`, the source at the left of both rows, every cell at `panel` px. One still shows at a
    glance whether the result follows the driver's motion along its column and keeps the source's face
    along its row, which a video playing by makes hard to tell. The rows are named in a left margin with
    labels[1] and labels[2]; the columns in a strip above, labels[0] then "frame <index>"."""
    check_clips(driving, result)
    if frames < 1:
        raise ValueError(f"a contact sheet shows at least 1 frame, got {frames}")
    indices = sheet_indices(len(result), frames)
    size, header = text_size(panel), strip_height(panel)
    margin = 2 * math.ceil((max(font(size).getlength(label) for label in labels[1:]) + 2 * MARGIN) / 2)
    columns = [label_strip([labels[0], *(f"frame {i}" for i in indices)], panel)]
    for clip in (driving, result):
        cells = [resize_square(source[None], panel)[0], *resize_square(clip[indices], panel)]
        columns.append(np.concatenate(cells, axis=1))
    corner = np.full((header, margin, 3), BACKGROUND, np.uint8)
    row_names = [text_cell(name, margin, panel, size) for name in labels[1:]]
    return np.concatenate([np.concatenate([corner, *row_names]), np.concatenate(columns)], axis=1)


def titled_stack(sheets: Sequence[tuple[str, np.ndarray]], panel: int) -> np.ndarray:
    """The sheets (H, W, 3) one above the other, each under a title line, for one picture to compare them
    by; narrower sheets are padded on the right. `panel` is the sheets' cell size and sets the title's text
    size, the same as their labels'."""
    width = max(sheet.shape[1] for _, sheet in sheets)
    height, size = strip_height(panel), text_size(panel)
    parts = []
    for title, sheet in sheets:
        parts.append(text_cell(title, width, height, size, centred=False))
        parts.append(np.pad(sheet, ((0, 0), (0, width - sheet.shape[1]), (0, 0)), constant_values=BACKGROUND))
    return np.concatenate(parts)
