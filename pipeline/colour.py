"""YUV to RGB as the file says: the stream's matrix and range, at any bit depth, subsampling and frame size.

Why the project converts itself instead of asking FFmpeg for RGB: the build cuts a face region out of a
1080p or 4K frame and shrinks it, so it cuts and resizes the decoder's planes first and converts only the
output's pixels (at 4K the full-frame RGB conversion would cost more than the decode). OpenCV's fast
conversion knows only BT.601 limited range, which shifts every BT.709 HD download's colours (a green
(40,160,60) came out (47,177,61)); the matrix here is built from the frame's own tags instead.

Tags are resolved the way FFmpeg's scaler resolves them: an unspecified matrix is BT.601, an unspecified
range is limited, the `yuvj` formats are full range whatever the tag says, and so is gray (FFmpeg writes
and reads gray as full range under any tag, so that is what gray files hold). What this module cannot
convert exactly (RGB-coded formats, packed or semi-planar layouts, YCgCo or ICtCp matrices) goes through
PyAV's own full-frame conversion, which honours the tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

IntBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, ends exclusive

# (Kr, Kb) of each matrix, by FFmpeg's AVColorSpace number (2 = unspecified is resolved to BT.601)
_COEFFICIENTS = {
    1: (0.2126, 0.0722),  # BT.709
    2: (0.299, 0.114),  # unspecified: FFmpeg's scaler uses BT.601
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG (BT.601 625 lines)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525 lines)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
}
MATRIX_NAMES = {1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020"}
FULL = 2  # FFmpeg's AVColorRange JPEG (full); 1 is MPEG (limited), 0 unspecified (read as limited)
_PLANAR = re.compile(r"^(?P<kind>yuvj?|gray)(?P<sub>4[0-4][0-4])?p?(?P<bits>\d+)?(?P<endian>le)?$")


@dataclass(frozen=True)
class PlaneLayout:
    """How a planar format stores a picture: luma alone (gray) or luma and two chroma planes."""

    gray: bool
    bits: int
    implied_full: bool  # yuvj and gray formats are full range whatever the tag says


def layout(format_name: str) -> PlaneLayout | None:
    """The planar layout of a pixel format this module converts, or None (PyAV converts it)."""
    match = _PLANAR.match(format_name)
    if match is None or (match["bits"] and not match["endian"]) or (match["kind"] != "gray" and not match["sub"]):
        return None
    bits = int(match["bits"] or 8)
    if bits > 16:
        return None
    return PlaneLayout(gray=match["kind"] == "gray", bits=bits, implied_full=match["kind"] != "yuv")


def is_full_range(frame: object, plane_layout: PlaneLayout | None) -> bool:
    if plane_layout is not None and plane_layout.implied_full:
        return True
    return int(getattr(frame, "color_range", 0) or 0) == FULL


@dataclass(frozen=True)
class ColourTags:
    """A frame's colour as its tags resolve: the matrix's name and whether the range is full."""

    matrix: str
    full_range: bool


def colour_tags(frame: object) -> ColourTags:
    colorspace = int(getattr(frame, "colorspace", 2) or 2)
    fmt = frame.format.name  # type: ignore[attr-defined]
    plane_layout = layout(fmt)
    if plane_layout is None and frame.format.is_rgb:  # type: ignore[attr-defined]
        return ColourTags("rgb", True)
    return ColourTags(MATRIX_NAMES.get(colorspace, f"avcol_spc_{colorspace}"), is_full_range(frame, plane_layout))


@cache
def yuv_to_rgb_matrix(colorspace: int, full_range: bool, bits: int) -> np.ndarray:
    """The 3x4 affine map from (Y, U, V) code values to RGB in 0..255 (the last column is the offset)."""
    kr, kb = _COEFFICIENTS[colorspace]
    kg = 1.0 - kr - kb
    scale = float(1 << (bits - 8))
    if full_range:
        y_offset, y_range, c_range = 0.0, 255.0 * scale, 255.0 * scale
    else:
        y_offset, y_range, c_range = 16.0 * scale, 219.0 * scale, 224.0 * scale
    c_offset = float(1 << (bits - 1))
    # R'G'B' in 0..1 from Y' in 0..1 and Pb, Pr in -0.5..0.5 (ITU-R BT.601/709/2020 definitions)
    to_rgb = np.array(
        [
            [1.0, 0.0, 2.0 * (1.0 - kr)],
            [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
            [1.0, 2.0 * (1.0 - kb), 0.0],
        ]
    )
    normalise = np.diag([255.0 / y_range, 255.0 / c_range, 255.0 / c_range])
    linear = to_rgb @ normalise
    offset = -linear @ np.array([y_offset, c_offset, c_offset])
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def _plane(frame: object, index: int, bits: int) -> np.ndarray:
    """A plane as a (height, width) array view: its rows are padded to `line_size` bytes."""
    plane = frame.planes[index]  # type: ignore[attr-defined]
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    values = np.frombuffer(plane, dtype)
    return values.reshape(plane.height, -1)[:, : plane.width]


def _resize(plane: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), cubic when enlarging, as the pipeline resizes pixels."""
    height, width = plane.shape
    if (width, height) == (out_w, out_h):
        return plane
    method = cv2.INTER_AREA if width >= out_w and height >= out_h else cv2.INTER_CUBIC
    return cv2.resize(plane, (out_w, out_h), interpolation=method)


def _chroma_cut(plane: np.ndarray, box: IntBox, luma_w: int, luma_h: int) -> np.ndarray:
    """The chroma samples that cover a luma box (subsampling read off the plane's size)."""
    x0, y0, x1, y1 = box
    sx, sy = -(-luma_w // plane.shape[1]), -(-luma_h // plane.shape[0])
    return plane[y0 // sy : -(-y1 // sy), x0 // sx : -(-x1 // sx)]


def convert_planes(frame: object, box: IntBox, out_w: int, out_h: int) -> np.ndarray | None:
    """RGB (out_h, out_w, 3) uint8 of `box` of a planar YUV or gray frame, or None when the format or
    matrix is one this module leaves to PyAV. Planes are cut and resized first, so the conversion's cost
    follows the output size, not the source's."""
    fmt = frame.format.name  # type: ignore[attr-defined]
    plane_layout = layout(fmt)
    colorspace = int(getattr(frame, "colorspace", 2) or 2)
    if plane_layout is None or colorspace not in _COEFFICIENTS:
        return None
    x0, y0, x1, y1 = box
    width, height = frame.width, frame.height  # type: ignore[attr-defined]
    full = is_full_range(frame, plane_layout)
    bits = plane_layout.bits
    luma = _resize(_plane(frame, 0, bits)[y0:y1, x0:x1], out_w, out_h)
    if plane_layout.gray:
        gray = luma if bits == 8 else np.minimum((luma.astype(np.float32) * (255.0 / ((1 << bits) - 1)) + 0.5), 255)
        return cv2.merge([gray.astype(np.uint8)] * 3)
    chroma = [_resize(_chroma_cut(_plane(frame, index, bits), box, width, height), out_w, out_h) for index in (1, 2)]
    yuv = cv2.merge([luma, *chroma])
    rgb = cv2.transform(yuv, yuv_to_rgb_matrix(colorspace, full, bits))
    if bits > 8:  # cv2.transform saturates at the input's depth: 16 bits here
        rgb = np.minimum(rgb, 255).astype(np.uint8)
    return rgb
