"""Keeps the face models' native log lines off the terminal unless the user asks for them (`--verbose`).

mediapipe's graphs and TensorFlow Lite write INFO and WARNING lines from C++ straight to file descriptor 2
the first time a graph runs ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "W0000 ...
inference_feedback_manager.cc:114] ..."). `GLOG_minloglevel` and `TF_CPP_MIN_LOG_LEVEL` are set for the
libraries that read them, but the wheels installed here log through absl and TFLite's minimal logger, which
read neither (measured: the lines still appear with both set). So the lines are filtered where they are
written: descriptor 2 becomes a pipe whose reader drops native lines below ERROR and passes everything else
through, errors and fatal messages included. Python's own `sys.stderr` (tracebacks, warnings) is pointed at
the real stderr first, so what Python prints never waits on that reader.

One call per process, before the first model runs; command-line entry points call it (rp-data, rp-animate,
rp-eval). Child processes inherit the pipe, so a child that outlives the command and then writes to stderr
meets a closed pipe: call it in commands whose children end with them. Ray workers get the variables
through their runtime environment and log to Ray's session files (`rp-data build` never calls it).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import re
import sys
import threading

QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
# absl/glog lines of severity I or W ("W0000 00:00:1796592716.594507   29354 file.cc:114] ..."), and the
# "INFO: ..."/"WARNING: ..." lines of TFLite's minimal logger and of absl before its logging is initialised
NATIVE_CHATTER = re.compile(rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] |(?:INFO|WARNING|VERBOSE): )")
DRAIN_SECONDS = 2.0  # at exit, how long the filter may take to pass on lines still in the pipe


def quiet_native_logs(verbose: bool) -> None:
    """Unless `verbose`, sets the quieting variables (a user's own values win) and filters descriptor 2.

    Descriptor 2 is left alone when something already replaced `sys.stderr` (a test harness capturing it, an
    application embedding the command): re-pointing it there would take the output away from its owner.
    """
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if sys.stderr is sys.__stderr__:
        _filter_stderr()


@functools.cache
def _filter_stderr() -> None:
    """Once per process: descriptor 2 -> pipe -> `_forward` -> the real stderr."""
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    # the process's stderr from now on: it lives as long as the process
    sys.stderr = open(real, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    forwarder = threading.Thread(target=_forward, args=(read, real), name="native-log-filter", daemon=True)
    forwarder.start()
    atexit.register(_restore, real, forwarder)


def _forward(read: int, real: int) -> None:
    with open(read, "rb") as pipe:
        for line in pipe:
            if not NATIVE_CHATTER.match(line):
                os.write(real, line)


def _restore(real: int, forwarder: threading.Thread) -> None:
    """Puts the real stderr back on descriptor 2, which closes the pipe's last writer (unless a child
    process still holds it), so the filter passes on what is left and ends."""
    os.dup2(real, 2)
    forwarder.join(DRAIN_SECONDS)


def add_verbose_argument(parser: argparse.ArgumentParser, when: str = "") -> None:
    """The `--verbose` option every command that runs the face models takes, described once (`when`: the
    case it applies to, e.g. "with --faces")."""
    prefix = f"{when}, " if when else ""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"{prefix}show the face models' native log lines (mediapipe, TensorFlow Lite), hidden otherwise",
    )
