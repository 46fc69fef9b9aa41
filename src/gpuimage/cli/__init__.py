"""The ``gpuimage`` command line (also ``python -m gpuimage``): ``info``, ``stubs``, ``--version``.

Only the console script and ``python -m gpuimage`` import this package; the library never does. Each
subcommand's module is imported when that subcommand runs, and every optional library inside the
probe that needs it: a missing or broken one is reported, never raised, because ``gpuimage info`` is
what a user runs when something does not import.

The demo (``examples/demo.py``) and the benchmark runner (``benchmarks/run.py``) live in the source
tree, not here: ``scripts/dev demo`` and ``scripts/dev bench`` run them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

__all__ = ["main"]


def _info(args: argparse.Namespace) -> int:
    from .info import run

    return run(as_json=bool(args.json))


def _stubs(args: argparse.Namespace) -> int:
    from .stubs import run

    return run(cast("Path", args.directory))


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="gpuimage", description="gpuimage's command line")
    parser.add_argument("--version", action="version", version=f"gpuimage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="installed backends, CUDA devices, and which views work here")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    info.set_defaults(run=_info)
    stubs = commands.add_parser("stubs", help="write type stubs for a library gpuimage talks to")
    stubs.add_argument("library", choices=["opencv"], help="the library (OpenCV's cv2, with cv2.cuda)")
    stubs.add_argument("directory", type=Path, help="where to write them")
    stubs.set_defaults(run=_stubs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error, as argparse has it)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: return the status, do not exit
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    run = cast("Callable[[argparse.Namespace], int]", args.run)
    try:
        return run(args)
    except BrokenPipeError:  # `gpuimage info | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
