from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifests.schema import DATASETS_DIR, load_registry
from pipeline.cli import build_parser, main
from pipeline.split import DEFAULT_THRESHOLDS, SAMPLE_PER_DATASET, SAMPLE_THRESHOLDS

RP_DATA = Path(sys.executable).with_name("rp-data")
REPO = Path(__file__).resolve().parents[1]
DATASETS = tuple(load_registry())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RP_DATA), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [[], ["datasets"], ["sample"], ["scan"]])
def test_every_help_shows_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "example" in result.stdout and "rp-data" in result.stdout


def test_datasets_lists_nine_specs() -> None:
    result = run("datasets")
    assert result.returncode == 0
    assert "9 specs" in result.stdout
    for name in ("vggface2", "celeba", "ffhq", "celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq", "sample"):
        assert f" {name} " in result.stdout
    one = run("datasets", "hdtf")
    assert "crop_wh" in one.stdout and "min_face_px" in one.stdout


def test_a_broken_spec_is_an_error_naming_file_and_field(tmp_path: Path) -> None:
    shutil.copytree(DATASETS_DIR, tmp_path / "registry")
    spec = tmp_path / "registry" / "ffhq.yaml"
    data = yaml.safe_load(spec.read_text())
    data["modality"] = "audio"
    spec.write_text(yaml.safe_dump(data))
    result = run("--registry", str(tmp_path / "registry"), "datasets")
    assert result.returncode == 2
    assert "ffhq.yaml" in result.stdout and "field 'modality'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_scan_prints_counts_and_problems(sample_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "scan",
                "--dataset",
                "talkinghead_1kh",
                "--root",
                str(sample_root / "talkinghead_1kh"),
                "--out",
                str(tmp_path / "th.parquet"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train:2" in out and "val:1" in out and "2 (proxy_video)" in out and "malformed_line:1" in out
    assert "data_list/train_video_tubes.txt" in out
    assert (tmp_path / "th.parquet").exists() and (tmp_path / "th.problems.parquet").exists()
    assert main(["scan", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sources", "error"),
    [
        (["--source", "vfhq=A", "--source", "hdtf=B", "--source", "vfhq=C"], "--source vfhq is given twice"),
        (["--sample", "--source", "mead=A"], "--source mead and --sample both build mead"),
    ],
)
def test_a_dataset_given_twice_is_refused_before_anything_is_written(
    sources: list[str], error: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run("build", *sources, "--sample-dir", str(tmp_path / "sample"), "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {error}: every item of" in result.stdout and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "sample").exists()


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """rp-data's parser and each subcommand's, by the command line that shows its help."""
    parser = build_parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return {"rp-data": parser, **{f"rp-data {name}": sub for name, sub in commands.choices.items()}}


PARSERS = _parsers()
# the vocabulary of the help examples: dataset roots, a build folder, a frozen split (outputs go under out/)
PLACEHOLDERS = {
    "/data/VFHQ", "/data/CelebV-HQ", "/data/HDTF", "/data/MEAD", "/data/TalkingHead-1KH", "/data/VGGFace2",
    "/data/CelebA", "/data/FFHQ", "/data/shards", "manifests/splits/paper.json",
}  # fmt: skip


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skipped = (argparse._HelpAction, argparse._SubParsersAction)
    return [action for action in parser._actions if not isinstance(action, skipped)]


@pytest.mark.parametrize("command", list(PARSERS))
def test_every_option_says_what_it_does_and_what_happens_without_it(command: str) -> None:
    parser = PARSERS[command]
    formatter = parser._get_formatter()
    for action in _options(parser):
        text = formatter._expand_help(action)
        assert text, f"{command} {action.dest} has no help"
        if action.nargs != 0 and not action.required:  # a flag is off, a required option has no default
            assert "default" in text, f"{command} {action.dest}: {text}"
        if action.default not in (None, False) and action.nargs != 0 and not isinstance(action.default, Path):
            assert f"default: {action.default}" in text, f"{command} {action.dest}: {text}"


def test_split_help_states_the_defaults_the_code_applies() -> None:
    help_text = " ".join(PARSERS["rp-data split"].format_help().split())
    for option, default, sample in (
        ("--vfhq-min-frames", DEFAULT_THRESHOLDS.vfhq_min_frames, SAMPLE_THRESHOLDS.vfhq_min_frames),
        ("--celebvhq-min-seconds", DEFAULT_THRESHOLDS.celebvhq_min_seconds, SAMPLE_THRESHOLDS.celebvhq_min_seconds),
        ("--min-crop-px", DEFAULT_THRESHOLDS.min_crop_px, SAMPLE_THRESHOLDS.min_crop_px),
        ("--per-dataset", 50, SAMPLE_PER_DATASET),
    ):
        assert f"(default: {default:g}; with --sample {sample:g})" in help_text.split(option)[-1], option


@pytest.mark.parametrize("command", list(PARSERS))
def test_no_help_names_a_file_outside_the_repository(command: str) -> None:
    text = PARSERS[command].format_help()
    assert "../" not in text and "shared" not in text
    for name in re.findall(r"[\w/-]+\.(?:md|py)\b", text):
        assert (REPO / name).exists(), f"{command} --help names {name}"


def _examples(parser: argparse.ArgumentParser) -> list[list[str]]:
    lines = (parser.epilog or "").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip().startswith("rp-data ")]


@pytest.mark.parametrize("command", list(PARSERS))
def test_examples_are_valid_commands_in_the_placeholder_vocabulary(command: str) -> None:
    examples = _examples(PARSERS[command])
    assert examples, f"{command} --help shows no example"
    for words in examples:
        build_parser().parse_args(words[1:])  # exits (SystemExit) on an option that does not exist
        for word in words[1:]:
            value = word.partition("=")[2] if word.startswith(tuple(f"{n}=" for n in DATASETS)) else word
            if "/" in value:
                assert value in PLACEHOLDERS or value.startswith(("/data/shards/", "out/")), f"{command}: {value}"


def test_split_writes_the_sample_where_it_is_pointed_when_it_is_not_there(tmp_path: Path) -> None:
    sample, out = tmp_path / "sample", tmp_path / "split.json"
    result = run("split", "--sample", str(sample), "--check", "probe", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert f"writing the embedded sample to {sample}" in text and (sample / "celebvhq").is_dir()
    assert f"wrote {out}: 3 clips (vfhq: 1, celebvhq: 2)" in text  # the sample's VFHQ test pool holds one clip
