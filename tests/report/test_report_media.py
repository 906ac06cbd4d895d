"""The report's "Source media" section: how each source file is stored, from the build's media columns."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from shardkit import Build, commit, row

from pipeline.report import MEDIA_LISTED, write_report

PHONE = {"media_codec": "h264", "media_format": "yuvj420p", "media_matrix": "bt601", "media_range": "full",
         "media_rotation": 90, "media_vfr": True}  # fmt: skip
VP9 = {"media_codec": "vp9", "media_format": "yuv420p", "media_matrix": "bt709", "media_range": "limited",
       "media_rotation": 0, "media_vfr": False}  # fmt: skip
HEVC = VP9 | {"media_codec": "hevc", "media_format": "yuv420p10le", "media_matrix": "bt2020"}
HD = VP9 | {"media_codec": "h264"}
HEADER = ["dataset", "codec", "format", "matrix", "range", "rotation", "variable rate"]


class Tables(HTMLParser):
    """The cells of every table on a page, grouped under the h2 heading they follow."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[list[list[str]]]] = {}
        self.heading = ""
        self.tag = ""
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tag = tag
        if tag == "h2":
            self.heading = ""
        elif tag == "table":
            self.sections.setdefault(self.heading, []).append([])
        elif tag == "tr":
            self.sections[self.heading][-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.sections[self.heading][-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.tag == "h2" and self.cell is None:
            self.heading += data
        elif self.cell is not None:
            self.cell.append(data)


def media_tables(page: Path) -> tuple[list[list[str]], list[list[str]], str]:
    text = page.read_text()
    parser = Tables()
    parser.feed(text)
    counts, files = parser.sections.get("Source media", [[], []])
    return counts, files, text.split("<h2>Source media</h2>", 1)[1].split("<h2>", 1)[0]


def source(item: str, status: str, media: dict | None, **values: object) -> dict:
    return row(item_id=item, dataset=item.split("/")[0], kind="source", status=status, shard="w", **(media or {}),
               **values)  # fmt: skip


def test_each_source_file_is_listed_with_its_matrix_range_rotation_and_rate(tmp_path: Path) -> None:
    rows = [
        source("celebvhq/-xU_9kQ2mZ0_3", "ok", PHONE),
        source("celebvhq/Yk7_pQ3vW1s_4", "ok", VP9),
        source("vfhq/Clip+A", "ok", HD),
        source("vfhq/Clip+B", "filtered", HD, reason="no_face"),
        source("mead/W017/down/neutral/level_1/001", "ok", HEVC),
        source("celebvhq/Yk7_pQ3vW1s_0", "failed", None, reason="decode_error"),  # unreadable: nothing to say
        row(item_id="vfhq/Clip+A", dataset="vfhq", kind="sample", status="ok", shard="w", **HD),
    ]
    commit(tmp_path, "w", {}, rows)
    counts, files, _ = media_tables(write_report(tmp_path))
    assert counts[0] == [*HEADER, "files", "ok", "filtered", "failed"]
    assert sorted(counts[1:]) == [
        ["celebvhq", "h264", "yuvj420p", "bt601", "full", "90°", "yes", "1", "1", "0", "0"],
        ["celebvhq", "vp9", "yuv420p", "bt709", "limited", "0°", "no", "1", "1", "0", "0"],
        ["mead", "hevc", "yuv420p10le", "bt2020", "limited", "0°", "no", "1", "1", "0", "0"],
        ["vfhq", "h264", "yuv420p", "bt709", "limited", "0°", "no", "2", "1", "1", "0"],
    ]
    assert files[0] == ["dataset", "item", "status", *HEADER[1:]]
    listed = {cells[1]: cells for cells in files[1:]}
    assert listed["celebvhq/-xU_9kQ2mZ0_3"] == ["celebvhq", "celebvhq/-xU_9kQ2mZ0_3", "ok", "h264", "yuvj420p",
                                               "bt601", "full", "90°", "yes"]  # fmt: skip
    assert listed["vfhq/Clip+B"][2:] == ["filtered", "h264", "yuv420p", "bt709", "limited", "0°", "no"]
    assert len(files) - 1 == 5 and "celebvhq/Yk7_pQ3vW1s_0" not in listed  # sources with media, each once
    assert [cells[1] for cells in files[-2:]] == ["vfhq/Clip+A", "vfhq/Clip+B"]  # the commonest kind comes last


def test_a_large_build_lists_its_rarest_files_and_counts_the_rest(tmp_path: Path) -> None:
    common = [source(f"vfhq/Clip+{i:04d}", "ok", HD) for i in range(MEDIA_LISTED + 10)]
    commit(tmp_path, "w", {}, [*common, source("celebvhq/phone_1", "ok", PHONE)])
    counts, files, section = media_tables(write_report(tmp_path))
    assert ["vfhq", "h264", "yuv420p", "bt709", "limited", "0°", "no", str(MEDIA_LISTED + 10)] == counts[2][:8]
    assert len(files) - 1 == MEDIA_LISTED and files[1][1] == "celebvhq/phone_1"
    assert f"{MEDIA_LISTED + 11} source file(s)" in section and "11 more are only counted" in section


def test_a_build_without_media_columns_gets_a_note(build: Build, tmp_path: Path) -> None:
    """An older build's tables lack the columns; one shard of a mixed build may too."""
    counts, files, section = media_tables(write_report(build.root, tmp_path / "page.html"))
    assert (counts, files) == ([], []) and "No source row records its media properties" in section
    mixed = Path(tmp_path / "mixed")
    commit(mixed, "old", {}, [source("vfhq/Clip+Old", "ok", None)])
    commit(mixed, "new", {}, [source("celebvhq/phone_1", "ok", PHONE)])
    _, files, _ = media_tables(write_report(mixed))
    assert [cells[1] for cells in files[1:]] == ["celebvhq/phone_1"]
