"""Help that answers (issue 21): every option of rp-animate and rp-eval says what it does and what its default
is, `rp-eval --help` lists each command with a one-line description, and examples use only the documented
placeholder paths (tests/eval/test_help_examples.py runs them on the sample)."""

from __future__ import annotations

import argparse
import re

import pytest

from eval.cli import parser as eval_parser
from model.animate_cli import parser as animate_parser
from model.realportrait import PRESETS
from model.sampling_options import WINDOW


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


PARSERS = {"rp-animate": animate_parser(), **{f"rp-eval {n}": p for n, p in subcommands(eval_parser()).items()}}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_a_description_and_a_default(name: str) -> None:
    parser = PARSERS[name]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{name} {flag} has no description"
        if action.required or not action.option_strings or action.nargs == 0:
            continue  # required, positional, or a flag: nothing to default
        if action.default is None or action.default == []:
            assert re.search(r"\(default: [^)]|\(required|repeat", action.help), f"{name} {flag}: {action.help}"
        else:
            shown = f"(default: {action.default})"
            assert shown in " ".join(text.split()), f"{name} {flag} does not show {shown}"
    assert parser.description, f"{name} has no description"


def test_rp_eval_lists_each_command_with_a_summary() -> None:
    text = eval_parser().format_help()
    listing = text[text.index("commands:") :]
    for command in ("weights", "inputs", "run", "table"):
        line = next(line for line in listing.splitlines() if line.strip().startswith(command + " "))
        assert len(line.split()) > 3, line


def test_examples_use_the_documented_placeholders() -> None:
    """Each example line starts with its command, continuation lines end with a backslash, and every path is one
    the examples test knows how to substitute."""
    known = re.compile(
        r"^(/data/(VFHQ|CelebV-HQ|weights/eval|weights/sd-vae-ft-ema)|manifests/splits/paper\.json|"
        r"runs/realportrait/stage2/export|me\.jpg|driving\.mp4|out/.+)$"
    )
    epilogs = [animate_parser().epilog, *(parser.epilog for parser in subcommands(eval_parser()).values())]
    for epilog in epilogs:
        lines = epilog.splitlines()
        starts = [index for index, line in enumerate(lines) if line.startswith("  rp-")]
        assert starts, epilog
        for start in starts:
            end = start
            while lines[end].endswith(" \\"):
                end += 1
            words = " ".join(line.rstrip("\\") for line in lines[start : end + 1]).split()
            for word in words:
                value = word.partition("=")[2] if word.startswith(("vfhq=", "celebvhq=")) else word
                if "/" in value or value.endswith((".jpg", ".mp4", ".json")):
                    assert known.match(value), f"{value!r} in {words}"


def test_the_default_window_is_the_training_clip_length() -> None:
    assert PRESETS["paper"].num_frames == WINDOW
