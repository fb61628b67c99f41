"""The `ctrbench` command. Each area adds its own sub-commands through `add_commands(subparsers)`:
data (ctrbench.data.cli), kernels (ctrbench.kernels_cli), run/report/models (ctrbench.harness.cli).
"""
from __future__ import annotations

import argparse
import importlib
import faulthandler
import signal
import sys

from ctrbench.errors import CtrbenchError

COMMAND_MODULES = ("ctrbench.data.cli", "ctrbench.kernels_cli", "ctrbench.harness.cli", "ctrbench.search.cli",
                   "ctrbench.cubicml.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrbench",
        description="CTR-prediction benchmark suite: datasets and synthetic twins, models, searchers, kernels.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack to stderr: where a command hangs. Only where stderr is a real
    file (not, e.g., pytest's captured stream)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=fd, all_threads=True)


def main(argv: list[str] | None = None) -> int:
    """Run one command: a ctrbench error is one `error:` line (exit 2); Ctrl-C or SIGTERM is one line too
    (exit 128 + the signal's number), after the command has marked what it left unfinished."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _stacks_on_sigusr1()
    try:
        return int(args.func(args) or 0)
    except CtrbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        what = ": unfinished runs are marked interrupted; the same command resumes them" if args.command == "run" \
            else ""
        print(f"interrupted ({signal.Signals(signum).name}){what}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
