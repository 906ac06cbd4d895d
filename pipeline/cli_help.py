"""The help layout the command-line tools share: every option shows its default, and epilogs keep their lines
(their examples are commands to copy, so argparse must not re-wrap them)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`(default: X)` after each option's help, left out where it would say nothing: a None default (the help
    says in words what happens then), a flag's False, the empty list a repeatable option starts from."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)
