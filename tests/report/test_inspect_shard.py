"""`inspect_shard` on real tars: valid samples pass, and each way a sample breaks the contract is named."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shardkit import Build, Sample, clip_sample, image_sample, npy, write_tar

from pipeline.cli import main
from pipeline.inspect_shard import inspect_shard, list_build, print_inspection
from pipeline.sample.render import write_mp4


def load(sample: Sample, name: str) -> np.ndarray:
    return np.load(io.BytesIO(sample[name]), allow_pickle=False)


def edit_json(**changes: object) -> Callable[[Sample], None]:
    def edit(sample: Sample) -> None:
        meta = json.loads(sample["json"])
        for name, value in changes.items():
            if value is None:
                del meta[name]
            else:
                meta[name] = value
        sample["json"] = json.dumps(meta).encode()

    return edit


def set_array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Sample], None]:
    def edit(sample: Sample) -> None:
        sample[name] = npy(change(load(sample, name).copy()))

    return edit


def poke(value: float, frame: int, where: tuple[int, ...] = (0,)) -> Callable[[np.ndarray], np.ndarray]:
    def change(array: np.ndarray) -> np.ndarray:
        array[(frame, *where)] = value
        return array

    return change


def small_mp4(sample: Sample) -> None:
    """A real H.264 clip of the right length at 256x256 instead of 512x512."""
    frames = np.full((12, 256, 256, 3), 90, np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        write_mp4(Path(folder) / "small.mp4", frames, 25)
        sample["mp4"] = (Path(folder) / "small.mp4").read_bytes()


def pickled(sample: Sample) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"rows": 12}], dtype=object), allow_pickle=True)
    sample["pose.npy"] = buffer.getvalue()


CLIP_BREAKS: dict[str, tuple[Callable[[Sample], None], str]] = {
    "pose rows": (set_array("pose.npy", lambda a: a[:-1]), "pose.npy has shape (11, 6), expected (12, 6)"),
    "truncated mp4": (lambda s: s.update(mp4=s["mp4"][: len(s["mp4"]) // 2]), "mp4 does not decode"),
    "missing member": (lambda s: s.pop("bbox.npy"), "missing member(s): bbox.npy"),
    "landmarks dtype": (set_array("landmarks.npy", lambda a: a.astype(np.float32)), "is float32, not float16"),
    "landmarks points": (set_array("landmarks.npy", lambda a: a[:, :468]), "expected (12, 478, 2)"),
    "part-NaN frame": (set_array("landmarks.npy", poke(np.nan, 2)), "mixes NaN and values or holds inf in frame(s) 2"),
    "landmarks inf": (set_array("landmarks.npy", poke(np.inf, 7)), "in frame(s) 7"),
    "pose inf": (set_array("pose.npy", poke(np.inf, 3)), "pose.npy holds NaN or inf in frame(s) 3"),
    "bbox NaN": (set_array("bbox.npy", poke(np.nan, 0, (2,))), "bbox.npy holds NaN or inf in frame(s) 0"),
    "bbox inverted": (set_array("bbox.npy", poke(0.0, 4, (2,))), "bbox.npy is not x0 < x1, y0 < y1 in frame(s) 4"),
    "pose dtype": (set_array("pose.npy", lambda a: a.astype(np.float64)), "pose.npy is float64, not float32"),
    "pickled npy": (pickled, "pose.npy is not a readable .npy"),
    "json lacks field": (edit_json(crop_box=None, license=None), "json lacks field(s): license, crop_box"),
    "json garbage": (lambda s: s.update(json=b"{not json"), "json does not parse"),
    "json key": (edit_json(key="vfhq_other"), "json key 'vfhq_other' differs from the tar key"),
    "json frames": (edit_json(frames=13), "mp4 decodes to 12 frames, json says 13"),
    "json fps": (edit_json(fps=30), "mp4 runs at 25 fps, json says 30"),
    "json kind": (edit_json(kind="video"), "json kind 'video' is neither 'clip' nor 'image'"),
    "json range": (edit_json(source_range={"start": 0}), "json source_range is not an object with unit, start, end"),
    "mp4 size": (small_mp4, "mp4 frame 0 is 256x256, not 512x512"),
    "both media": (lambda s: s.update(jpg=image_sample("x_y")["jpg"]), "has both mp4 and jpg"),
    "stray member": (lambda s: s.update(txt=b"caption"), "member(s) not in the contract: txt"),
}


def check_one_broken(tmp_path: Path, broken: Sample, expected: str) -> None:
    """The broken sample sits between two good ones: only it fails, with the expected sentence."""
    before, after = clip_sample("vfhq_good_c000", frames=9, seed=2), image_sample("ffhq_good_i000", seed=4)
    result = inspect_shard(write_tar(tmp_path / "shard-00.tar", [before, broken, after]))
    assert [s.key for s in result.samples] == [before["__key__"], broken["__key__"], after["__key__"]]
    assert [s.key for s in result.failed] == [broken["__key__"]]
    assert any(expected in problem for problem in result.failed[0].problems), result.failed[0].problems
    assert not result.errors and result.exit_code == 1


@pytest.mark.parametrize("case", list(CLIP_BREAKS))
def test_a_broken_clip_is_flagged_and_only_it(tmp_path: Path, case: str) -> None:
    sample = clip_sample("vfhq_broken_c000", frames=12, seed=1)
    edit, expected = CLIP_BREAKS[case]
    edit(sample)
    check_one_broken(tmp_path, sample, expected)


def shrink(sample: Sample) -> None:
    with Image.open(io.BytesIO(sample["jpg"])) as image:
        buffer = io.BytesIO()
        image.resize((500, 500)).save(buffer, format="JPEG")
    sample["jpg"] = buffer.getvalue()


IMAGE_BREAKS: dict[str, tuple[Callable[[Sample], None], str]] = {
    "truncated jpg": (lambda s: s.update(jpg=s["jpg"][: len(s["jpg"]) // 3]), "jpg does not decode"),
    "small jpg": (shrink, "jpg is 500x500: not a square of at least 512"),
    "size disagrees": (edit_json(width=900, height=900), "jpg is 1024x1024, json says 900x900"),
    "two landmark rows": (set_array("landmarks.npy", lambda a: np.concatenate([a, a])), "expected (1, 478, 2)"),
    "missing jpg": (lambda s: s.pop("jpg"), "missing member(s): jpg"),
}


@pytest.mark.parametrize("case", list(IMAGE_BREAKS))
def test_a_broken_image_is_flagged_and_only_it(tmp_path: Path, case: str) -> None:
    sample = image_sample("ffhq_broken_i000", seed=5)
    edit, expected = IMAGE_BREAKS[case]
    edit(sample)
    check_one_broken(tmp_path, sample, expected)


def test_committed_shards_pass_and_print_every_sample(build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    tars = sorted((build.root / "shards").glob("*.tar"))
    results = [inspect_shard(tar) for tar in tars]
    assert [r.exit_code for r in results] == [0] * len(tars)
    keys = [s.key for r in results for s in r.samples]
    assert sorted(keys) == sorted((*build.committed_keys, build.uncommitted_key))
    for result in results:
        print_inspection(result)
    out = capsys.readouterr().out
    # the clip with an all-NaN landmarks frame (no face there) is valid
    assert "ok   vfhq_Clip-Xy9-F0-16_77aa01_c000\n     clip, 16 frames, 25 fps, 512x512 | bbox.npy 384 B" in out
    assert "image, 1 frame, 1024x1024" in out and "jpg " in out and "kB" in out
    assert "FAIL" not in out and out.count("OK: all") == len(tars)


def test_printout_lists_problems_under_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = clip_sample("vfhq_broken_c000", frames=12, seed=1)
    sample.pop("pose.npy")
    result = inspect_shard(write_tar(tmp_path / "s.tar", [sample, clip_sample("vfhq_fine_c000", frames=9, seed=2)]))
    print_inspection(result)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == [
        "FAIL vfhq_broken_c000",
        f"     clip, 12 frames, 25 fps, 512x512 | bbox.npy 320 B, json {len(sample['json'])} B, "
        f"landmarks.npy 23.1 kB, mp4 {len(sample['mp4']) / 1e3:.1f} kB",
        "     - missing member(s): pose.npy",
    ]
    assert lines[4] == "ok   vfhq_fine_c000"
    assert lines[-1] == "FAILED: 1 of 2 sample(s) with problems, 0 tar-level; 1 problem(s) in all"


@pytest.mark.parametrize("where", ["inside a member", "at a header"])
def test_a_truncated_tar_is_a_tar_error_and_the_cut_sample_misses_members(tmp_path: Path, where: str) -> None:
    path = write_tar(tmp_path / "s.tar", [clip_sample(f"vfhq_c{i}", frames=9, seed=2) for i in range(3)])
    with tarfile.open(path) as tar:
        member = tar.getmembers()[8]  # the third member of the second sample
    cut = member.offset_data + 100 if where == "inside a member" else member.offset
    path.write_bytes(path.read_bytes()[:cut])
    result = inspect_shard(path)
    assert [s.key for s in result.samples] == ["vfhq_c0", "vfhq_c1"] and result.samples[0].ok
    assert "missing member(s)" in result.samples[1].problems[0]
    marker = "it does not end with the end-of-archive marker" if where == "at a header" else "whole number of"
    assert any(marker in error for error in result.errors), result.errors
    assert ("ReadError: unexpected end of data" in result.errors) == (where == "inside a member")
    assert result.exit_code == 1


def test_limit_stops_early_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_tar(tmp_path / "s.tar", [clip_sample(f"vfhq_c{i}", frames=9, seed=2) for i in range(2)])
    first = inspect_shard(path, limit=1)
    assert [s.key for s in first.samples] == ["vfhq_c0"] and first.limited and first.ok
    print_inspection(first)
    assert "stopped after 1 sample(s) (--limit)" in capsys.readouterr().out
    whole = inspect_shard(path, limit=2)
    assert len(whole.samples) == 2 and not whole.limited


def test_empty_tar_split_key_and_missing_file(tmp_path: Path) -> None:
    assert inspect_shard(write_tar(tmp_path / "empty.tar", [])).errors == ["no samples in the tar"]
    a, b = clip_sample("vfhq_a", frames=9, seed=2), clip_sample("vfhq_b", frames=9, seed=2)
    split = {"__key__": "vfhq_a", "txt": b"late"}  # a member of vfhq_a written after vfhq_b
    result = inspect_shard(write_tar(tmp_path / "split.tar", [a, b, split]))
    assert "key seen before in this tar: its members are not contiguous" in result.samples[2].problems
    with pytest.raises(FileNotFoundError, match="no shard at"):
        inspect_shard(tmp_path / "absent.tar")


def test_an_image_of_exactly_512_passes_as_the_build_writes_small_photos() -> None:
    """A photo with no room for more context than one crop gives a 512x512 image (pipeline.process.image_context)."""
    with tempfile.TemporaryDirectory() as folder:
        result = inspect_shard(write_tar(Path(folder) / "s.tar", [image_sample("celeba_small_i000", side=512)]))
    assert result.ok, result.failed[0].problems


# -- a build folder ----------------------------------------------------------------------------------------


def test_a_build_folder_lists_its_committed_tars_with_their_counts(build: Build) -> None:
    listing = list_build(build.root)
    # vfhq-00000 wrote two tars: its rows split its three samples between them
    assert [(tar.path.name, tar.work, tar.samples) for tar in listing.tars] == [
        ("ffhq-00000-00.tar", "ffhq-00000", 2),
        ("vfhq-00000-00.tar", "vfhq-00000", 2),
        ("vfhq-00000-01.tar", "vfhq-00000", 1),
    ]
    assert listing.pending == ["vfhq-00001"] and not listing.missing
    assert list_build(build.root / "shards").tars == listing.tars  # its shards/ folder, given instead


def test_inspect_of_a_build_folder_lists_then_checks(build: Build, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(build.root)]) == 0
    out = capsys.readouterr().out
    assert f"{build.root}: 3 tar(s) of 2 committed work shard(s), 5 sample(s)" in out
    assert re.search(r"  shards/vfhq-00000-01\.tar +1 sample\(s\)  \d+\.\d kB\n", out)
    assert "1 work shard(s) not committed (still running, or left by a killed build; not listed): vfhq-00001" in out
    assert "checking the first 3 sample(s) of ffhq-00000-00.tar" in out and out.count("ok   ffhq_") == 2
    assert out.endswith("OK: all 2 sample(s) meet the shard contract\n") and "vfhq-00001-00.tar" not in out
    assert main(["inspect", str(build.root), "--shard", "shards/vfhq-00000-00"]) == 0
    assert "vfhq-00000-00.tar: 2 sample(s) read" in capsys.readouterr().out
    assert main(["inspect", str(build.root), "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("sample(s) read") == 3 and "ok   " not in out
    assert out.endswith("checked 3 tar(s): 0 with problems, 0 missing\n")


def test_inspect_of_a_build_folder_fails_on_a_bad_or_missing_tar(
    build: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(build.root, tmp_path / "build"))
    broken = clip_sample("vfhq_Clip-Xy9-F0-16_77aa01_c000", frames=16, seed=3)
    broken.pop("pose.npy")
    write_tar(root / "shards" / "vfhq-00000-01.tar", [broken])
    assert main(["inspect", str(root), "--all"]) == 1
    out = capsys.readouterr().out
    assert "FAIL vfhq_Clip-Xy9-F0-16_77aa01_c000" in out and "- missing member(s): pose.npy" in out
    assert out.endswith("checked 3 tar(s): 1 with problems, 0 missing\n")
    (root / "shards" / "ffhq-00000-00.tar").unlink()
    assert main(["inspect", str(root)]) == 1  # the first tar present is checked, and passes
    out = capsys.readouterr().out
    assert re.search(r"  shards/ffhq-00000-00\.tar +2 sample\(s\)  MISSING: committed but not on disk\n", out)
    assert "checking the first 3 sample(s) of vfhq-00000-00.tar" in out and "OK: all 2 sample(s)" in out
    assert main(["inspect", str(root), "--shard", "ffhq-00000-00.tar"]) == 2
    assert "no shard at" in capsys.readouterr().out


def test_inspect_names_what_it_cannot_find(build: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(build.root), "--shard", "vfhq-00009-00.tar"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "error: no committed tar vfhq-00009-00.tar in" in out
    assert "it has: ffhq-00000-00.tar, vfhq-00000-00.tar, vfhq-00000-01.tar" in out
    assert main(["inspect", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a build folder: it has no shards/" in " ".join(capsys.readouterr().out.split())
    assert main(["inspect", str(tmp_path / "absent.tar")]) == 2
    assert "no shard at" in capsys.readouterr().out


def test_inspect_into_a_closed_pipe_ends_quietly(build: Build) -> None:
    """A reader that is gone (`rp-data inspect ... | head -1` once head has its line) ends the command with
    141 (128 + SIGPIPE), as shell tools do, and without a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first line: every write fails
    rp_data = Path(sys.executable).with_name("rp-data")
    with os.fdopen(write_end, "wb") as stdout:
        result = subprocess.run(
            [str(rp_data), "inspect", str(build.root), "--all"], stdout=stdout, stderr=subprocess.PIPE, timeout=120
        )
    assert result.returncode == 141 and result.stderr == b""
