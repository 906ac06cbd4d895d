"""The pictures a person judges an animation by (`model.views`, rp-animate's --side-by-side, --contact-sheet,
--panel-size, --labels, --sheet-frames), checked on inputs whose right picture is known: solid colours that
must land in their panels, a clip whose frame t is grey level 10 t so every column tells which frame it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
from PIL import Image

from model.animate_cli import main as animate_main
from model.realportrait import RealPortrait
from model.views import (
    BACKGROUND,
    INK,
    LABELS,
    check_labels,
    check_panel,
    contact_sheet,
    parse_labels,
    sheet_indices,
    side_by_side,
    strip_height,
    titled_stack,
)
from pipeline.crops import resize_square
from pipeline.encode import encode_h264
from pipeline.sample.render import Actor, Shot, render_video

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
FRAMES = 20


def solid(colour: tuple[int, int, int], side: int, frames: int | None = None) -> np.ndarray:
    """A square of one colour (side, side, 3), or a clip of `frames` of them."""
    shape = (side, side, 3) if frames is None else (frames, side, side, 3)
    return np.broadcast_to(np.array(colour, np.uint8), shape).copy()


def grey_clip(level: int = 10, offset: int = 0) -> np.ndarray:
    """FRAMES frames of 64 px whose frame t is the solid grey offset + level t: its value names its index."""
    return np.stack([np.full((64, 64, 3), offset + level * t, np.uint8) for t in range(FRAMES)])


def ink(region: np.ndarray) -> np.ndarray:
    """The text pixels of a label region (white on black, anti-aliased edges counted from half grey)."""
    return region.max(axis=-1) > 128


@pytest.mark.parametrize("panel", [256, 48])  # enlarged from 40/64 px (bicubic), shrunk from 64 px (area)
def test_each_panel_shows_its_clip_at_the_panel_size_under_its_own_label(panel: int) -> None:
    source, driving, result = solid(RED, 40), solid(GREEN, 64, 5), solid(BLUE, 64, 5)
    video = side_by_side(source, driving, result, panel)
    strip = strip_height(panel)
    assert video.shape == (5, strip + panel, 3 * panel, 3)
    for index, colour in enumerate((RED, GREEN, BLUE)):
        area = video[:, strip:, index * panel : (index + 1) * panel]
        assert (area == colour).all(), f"panel {index} is not {colour} over its whole {panel} px"
    labels = video[0, :strip]
    assert (labels.min(axis=-1) == labels.max(axis=-1)).all()  # grey text on black: no colour in the strip
    cells = [labels[:, index * panel : (index + 1) * panel] for index in range(3)]
    for cell in cells:
        text = ink(cell)
        assert text.any() and (cell == BACKGROUND).mean() > 0.5  # light text on a dark strip
        columns = np.flatnonzero(text.any(axis=0))
        assert abs((columns[0] + columns[-1]) / 2 - panel / 2) < 3  # centred above its panel
    assert not np.array_equal(cells[0], cells[1]) and not np.array_equal(cells[1], cells[2])
    assert (video[:, :strip] == labels).all()  # the same strip on every frame


def test_labels_at_a_64_px_panel_are_tall_enough_to_read() -> None:
    video = side_by_side(solid(RED, 64), solid(GREEN, 64, 1), solid(BLUE, 64, 1), 64)
    rows = np.flatnonzero(ink(video[0, : strip_height(64)]).any(axis=1))
    assert rows[-1] - rows[0] + 1 >= 9  # "driving" from its ascenders to its descenders, in pixels


def test_labels_can_be_renamed_and_only_the_renamed_one_changes() -> None:
    clips = solid(RED, 64), solid(GREEN, 64, 1), solid(BLUE, 64, 1)
    ours = side_by_side(*clips, 64, parse_labels("source, driving ,ours"))[0]
    theirs = side_by_side(*clips, 64, LABELS)[0]
    strip = strip_height(64)
    assert np.array_equal(ours[:strip, :128], theirs[:strip, :128])
    assert not np.array_equal(ours[:strip, 128:], theirs[:strip, 128:])
    assert np.array_equal(ours[strip:], theirs[strip:])


def test_shrinking_averages_fine_texture_and_enlarging_keeps_flat_areas_flat() -> None:
    """Area averaging turns a one-pixel checkerboard into its mean grey (exactly at half the size, within a
    quarter of the range at 3/4); sampling it would alias into pure black and white pixels. Bicubic
    enlarging leaves a solid colour exactly that colour."""
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=-1)
    batch = checker[None]
    assert np.abs(resize_square(batch, 32).astype(int) - 127.5).max() <= 1
    assert np.abs(resize_square(batch, 48).astype(int) - 127.5).max() <= 64
    assert (resize_square(solid(GREEN, 64)[None], 256) == GREEN).all()
    assert resize_square(batch, 64) is batch  # the model's own size: no copy


def test_the_side_by_side_is_a_playable_h264_of_every_frame(tmp_path: Path) -> None:
    video = side_by_side(solid(RED, 64), grey_clip(), grey_clip(offset=5), 256, ("source", "driving", "ours"))
    path = tmp_path / "sbs.mp4"
    path.write_bytes(encode_h264(video, 25))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == FRAMES and frames[0].shape == (strip_height(256) + 256, 768, 3)
    middle = [int(frame[strip_height(256) + 128, 256 + 128].mean()) for frame in frames]
    assert np.abs(np.array(middle) - 10 * np.arange(FRAMES)).max() <= 3  # the driving panel's frames, in order


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (8, [0, 3, 5, 8, 11, 14, 16, 19]),  # i 19 / 7 rounded: evenly spaced, first and last included
        (2, [0, 19]),
        (1, [0]),
        (20, list(range(20))),
        (30, list(range(20))),  # more than the clip has: every frame once, none repeated
    ],
)
def test_a_contact_sheet_shows_the_evenly_spaced_frames_in_order(count: int, expected: list[int]) -> None:
    panel = 64
    source, driving, result = solid(RED, 40), grey_clip(), grey_clip(offset=5)
    sheet = contact_sheet(source, driving, result, panel, ("source", "driving", "ours"), count)
    header = strip_height(panel)
    margin = sheet.shape[1] - (1 + len(expected)) * panel
    assert sheet.shape[0] == header + 2 * panel and 0 < margin < panel

    def cell(row: int, column: int) -> np.ndarray:
        x0, y0 = margin + column * panel, header + row * panel
        return sheet[y0 : y0 + panel, x0 : x0 + panel]

    assert (cell(0, 0) == RED).all() and (cell(1, 0) == RED).all()  # the source at the left of both rows
    assert [int(cell(0, c)[0, 0, 0]) // 10 for c in range(1, len(expected) + 1)] == expected  # driving on top
    assert [int(cell(1, c)[0, 0, 0] - 5) // 10 for c in range(1, len(expected) + 1)] == expected  # result below
    for c in range(1, len(expected) + 1):
        assert (cell(0, c) == cell(0, c)[0, 0]).all() and (cell(1, c) == cell(1, c)[0, 0]).all()  # whole cells
    titles = [sheet[:header, margin + c * panel : margin + (c + 1) * panel] for c in range(len(expected) + 1)]
    assert all(ink(title).any() for title in titles)  # "source", then "frame <i>" over each column
    assert len({title.tobytes() for title in titles}) == len(titles)
    rows = [sheet[header + r * panel : header + (r + 1) * panel, :margin] for r in range(2)]
    assert all(ink(row).any() for row in rows) and not np.array_equal(*rows)  # "driving" and "ours"
    assert (sheet[:header, :margin] == BACKGROUND).all()


def test_frame_indices_are_distinct_increasing_and_evenly_spaced() -> None:
    for length in range(1, 60):
        for count in range(1, 70):
            indices = sheet_indices(length, count)
            assert len(indices) == min(count, length) and indices[0] == 0
            if len(indices) > 1:
                gaps = np.diff(indices)
                assert indices[-1] == length - 1 and gaps.min() >= 1 and gaps.max() - gaps.min() <= 1


def test_stacked_sheets_keep_their_pixels_under_a_title_each() -> None:
    narrow, wide = solid(RED, 100), np.full((60, 150, 3), 90, np.uint8)
    stacked = titled_stack([("self-reenactment: a", narrow), ("cross-reenactment: b", wide)], 64)
    title = strip_height(64)
    assert stacked.shape == (2 * title + 160, 150, 3)
    first_sheet = stacked[title : title + 100]
    assert (first_sheet[:, :100] == RED).all() and (first_sheet[:, 100:] == BACKGROUND).all()  # padded on the right
    assert (stacked[2 * title + 100 :] == 90).all()
    first, second = stacked[:title], stacked[title + 100 : 2 * title + 100]
    assert ink(first).any() and ink(second).any() and not np.array_equal(first, second)
    assert np.flatnonzero(ink(first).any(axis=0))[0] < 10  # left-aligned
    assert stacked.max() <= INK


def test_bad_sizes_and_labels_are_refused_with_the_reason() -> None:
    for panel in (16, 47, 65, 4096):
        with pytest.raises(ValueError, match=f"even number of pixels from 48 to 2048, got {panel}"):
            check_panel(panel)
    with pytest.raises(ValueError, match="three non-empty names"):
        parse_labels("source,ours")
    with pytest.raises(ValueError, match="three non-empty names"):
        parse_labels("source,,ours")
    with pytest.raises(ValueError, match="'a label far too long for it' does not fit a 64 px panel"):
        check_labels(("source", "a label far too long for it", "ours"), 64)
    check_labels(LABELS, 48)
    with pytest.raises(ValueError, match="the driving clip has 3 frames and the result 2"):
        side_by_side(solid(RED, 64), solid(GREEN, 64, 3), solid(BLUE, 64, 2), 64)


# -- rp-animate ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_export(tmp_path_factory: pytest.TempPathFactory, vae_dir: Path) -> Path:
    """The tiny model (128 px) with random weights and the small VAE: what is drawn around the result is
    tested here, not what the model makes."""
    folder = tmp_path_factory.mktemp("export") / "tiny"
    RealPortrait.from_preset("tiny").save_pretrained(folder)
    shutil.copytree(vae_dir, folder / "vae")
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A portrait photo and a FRAMES-frame talking head to drive it."""
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(skimage.data.astronaut()).save(folder / "me.png")
    frames, _ = render_video([Shot((Actor("t1_a", (0.5, 0.55), 84),), FRAMES, scene=4)], (320, 320), seed=9)
    (folder / "driving.mp4").write_bytes(encode_h264(frames, 25))
    return folder / "me.png", folder / "driving.mp4"


def test_rp_animate_writes_the_labelled_side_by_side_and_the_contact_sheet(
    random_export: Path, inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, driving = inputs
    sbs, sheet = tmp_path / "sbs.mp4", tmp_path / "sheet.png"
    arguments = ["--checkpoint", str(random_export), "--source", str(source), "--driving", str(driving)]
    views = ["--side-by-side", str(sbs), "--contact-sheet", str(sheet), "--panel-size", "256", "--sheet-frames", "6"]
    rest = ["--labels", "source,driving,ours", "--steps", "1", "--no-progress"]
    code = animate_main([*arguments, "--out", str(tmp_path / "a.mp4"), *views, *rest])
    assert code == 0, capsys.readouterr().err
    assert "source | driving | ours, 256 px panels" in capsys.readouterr().out
    with av.open(str(sbs)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == FRAMES and frames[0].shape == (strip_height(256) + 256, 3 * 256, 3)
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.height == strip_height(256) + 2 * 256
        assert 0 < image.width - 7 * 256 < 256  # a margin for the row names, the source, 6 frames


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--side-by-side", "s.mp4", "--labels", "source,ours"], "argument --labels: give three non-empty names"),
        (["--contact-sheet", "s.png", "--sheet-frames", "0"], "argument --sheet-frames: must be at least 1, got 0"),
        (["--side-by-side", "s.mp4", "--panel-size", "15"], "argument --panel-size: must be an even number"),
        (["--panel-size", "256"], "argument --panel-size: draws nothing without --side-by-side or --contact-sheet"),
        (["--side-by-side", "s.mp4", "--sheet-frames", "4"], "argument --sheet-frames: draws nothing without"),
        (["--contact-sheet", "sheet.jpg"], "argument --contact-sheet: sheet.jpg: the contact sheet is a PNG"),
    ],
)
def test_rp_animate_refuses_bad_view_options_before_loading_the_model(
    random_export: Path,
    inputs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    source, driving = inputs
    arguments = ["--checkpoint", str(random_export), "--source", str(source), "--driving", str(driving)]
    assert animate_main([*arguments, "--out", "a.mp4", *options]) == 2
    printed = capsys.readouterr()
    assert message in printed.err and "loading the model" not in printed.out
    assert not list(tmp_path.iterdir())
