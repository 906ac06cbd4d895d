"""Every weight file is verified against its pinned sha256 when it is read: the official bytes load, other bytes
stop the run naming the file and the expected hash, unless the explicit opt-out, which every table then reports.

The real files here are dlib's, installed by face_recognition_models; a wrong file is a copy with one byte changed.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from evalkit import SAMPLE_SPLIT

from eval.cli import main as eval_main
from eval.metrics.identity import DlibIdentity
from eval.weights import REGISTRY, WeightsMismatch, find, load_state_dict, read_bytes, status

NOWHERE = Path("/nonexistent")  # no weights folder: dlib's files are found inside their package


def corrupted_copy(key: str, folder: Path) -> Path:
    """The package's file for `key` in `folder` under its own name, with its first byte changed."""
    data = bytearray(find(key, NOWHERE).read_bytes())
    data[0] ^= 0xFF
    folder.mkdir(exist_ok=True)
    (folder / REGISTRY[key].filename).write_bytes(bytes(data))
    return folder / REGISTRY[key].filename


def test_the_official_dlib_files_match_their_pins_and_load() -> None:
    for key in ("dlib_face", "dlib_shape5"):
        data, record = read_bytes(key, NOWHERE)
        assert record.sha256 == hashlib.sha256(data).hexdigest() == REGISTRY[key].sha256
        assert record.problem is None and record.describe().endswith("(matches the pinned sha256)")
    identity = DlibIdentity.load(NOWHERE)
    assert all(record.problem is None for record in identity.weights)


def test_every_official_file_is_pinned_by_a_full_sha256_except_i3d() -> None:
    pins = {key: entry.sha256 for key, entry in REGISTRY.items()}
    assert pins.pop("i3d") is None  # no public source states its hash (see the registry)
    assert all(len(pin) == 64 and int(pin, 16) >= 0 for pin in pins.values())
    # torch hub's convention: the file name carries the first 8 hex digits of the official file's sha256
    assert pins["alexnet"].startswith("7be5be79") and pins["inception"].startswith("6726825d")


def test_a_wrong_file_raises_naming_the_file_and_both_hashes(tmp_path: Path) -> None:
    path = corrupted_copy("dlib_shape5", tmp_path)
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = REGISTRY["dlib_shape5"].sha256
    for load in (lambda: read_bytes("dlib_shape5", tmp_path), lambda: DlibIdentity.load(tmp_path)):
        with pytest.raises(WeightsMismatch) as error:
            load()
        assert isinstance(error.value, ValueError)
        assert str(path) in str(error.value) and expected in str(error.value) and found in str(error.value)
        assert "--allow-unpinned-weights" in str(error.value)


def test_the_opt_out_loads_the_file_and_records_it_as_not_official(tmp_path: Path) -> None:
    path = corrupted_copy("dlib_face", tmp_path)
    _, record = read_bytes("dlib_face", tmp_path, allow_unpinned=True)
    assert record.path == path and record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.problem is not None and "not the official file" in record.problem
    assert REGISTRY["dlib_face"].sha256 in record.problem


def test_an_unpinned_file_loads_and_says_it_was_not_verified(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "i3d_pretrained_400.pt")
    state, record = load_state_dict("i3d", tmp_path)
    assert set(state) == {"weight"} and record.problem is not None and "not verified" in record.problem


def test_weights_command_prints_each_pin_and_whether_the_file_matches(tmp_path: Path, capsys) -> None:
    corrupted_copy("dlib_face", tmp_path)
    assert eval_main(["weights", "--weights", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for entry in REGISTRY.values():
        assert f"pinned sha256 {entry.sha256 or '(none known: the file is not verified)'}" in out
    rows = {row.entry.key: row for row in status(tmp_path)}
    assert rows["dlib_face"].matches is False and rows["dlib_shape5"].matches is True and rows["i3d"].matches is None
    assert out.count("DIFFERS from the pin") == 1 and out.count("(matches the pin)") == 1


def test_a_run_on_a_wrong_file_stops_before_any_network_loads(sample_root: Path, tmp_path: Path, capsys) -> None:
    """Without the opt-out, rp-eval run exits 2 naming the file and its pin. The file is not even a state dict: a
    loader would have said so, so the check ran before any of them."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / REGISTRY["alexnet"].filename).write_bytes(b"not the official AlexNet")
    arguments = ["run", "--split", str(SAMPLE_SPLIT), "--data-root", str(sample_root), "--method", "source-copy"]
    arguments += ["--out", str(tmp_path / "run"), "--weights", str(weights), "--no-progress"]
    assert eval_main([*arguments, "--set", "metrics=[L1,LPIPS,CSIM-dlib]"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("rp-eval run: error: ") and error.count("\n") == 1
    assert str(weights / REGISTRY["alexnet"].filename) in error and REGISTRY["alexnet"].sha256 in error
    assert "weights_only" not in error and not (tmp_path / "run").exists()


def test_the_package_files_are_what_face_recognition_models_installs(tmp_path: Path) -> None:
    """The pins of dlib's files are the installed package's (its version is pinned): a copy in the weights folder
    is found first and verified the same way."""
    for key in ("dlib_face", "dlib_shape5"):
        shutil.copy(find(key, NOWHERE), tmp_path)
        _, record = read_bytes(key, tmp_path)
        assert record.path == tmp_path / REGISTRY[key].filename and record.problem is None
