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
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, cast

__all__ = ["main"]

_INFO_DESCRIPTION = (
    "Report what is installed and what works on this machine: the versions of NumPy, pydantic, "
    "torch, CuPy, OpenCV and nvImageCodec, the CUDA devices torch or CuPy reach (or, in words, why "
    "none), whether OpenCV has CUDA, and which views of a host image and of a device image work, with "
    "the reason where one does not. A missing or broken library is reported, never raised: run this "
    "first when something does not import."
)
_STUBS_DESCRIPTION = (
    "Write type stubs for a library gpuimage talks to. 'gpuimage stubs opencv DIR' writes DIR/cv2: a "
    "copy of the installed OpenCV's own stubs with GpuMat.__dlpack__ and GpuMat.__dlpack_device__ "
    "added (OpenCV 4.13+ has them at run time, its stubs lack them). Point mypy's mypy_path or "
    "pyright's stubPath at DIR, and run it again after upgrading OpenCV. A refusal is one line on "
    "stderr and exit status 1, with nothing written."
)


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it reports its own unknown arguments, with its own usage.

    argparse leaves a subcommand's unknown arguments to the top-level parser, which prints the
    top-level usage (``gpuimage [-h] [--version] COMMAND ...``) for ``gpuimage info --jsn``. This
    parser refuses them itself, and names the closest option it has.
    """

    def parse_known_args(  # type: ignore[override]  # the same call; only the extras are refused
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace or argparse.Namespace())
        if extras:
            self._refuse(extras)
        return parsed, extras

    def _refuse(self, extras: Sequence[str]) -> NoReturn:
        options = [option for action in self._actions for option in action.option_strings]
        hints: list[str] = []
        for extra in extras:
            name = extra.partition("=")[0]
            if name == "--version":  # given after the command, where argparse does not look for it
                hints.append("--version goes before the command: gpuimage --version")
            elif extra.startswith("-") and (close := difflib.get_close_matches(name, options, n=1)):
                hints.append(f"{'' if len(extras) == 1 else f'{extra}: '}did you mean {close[0]}?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _info(args: argparse.Namespace) -> int:
    from .info import run

    return run(as_json=bool(args.json))


def _stubs(args: argparse.Namespace) -> int:
    from .stubs import run

    return run(cast("Path", args.directory))


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="gpuimage",
        description="gpuimage's command line: what works on this machine (info), and type stubs (stubs).",
        epilog="'gpuimage COMMAND --help' describes each command. 'python -m gpuimage' is the same.",
    )
    parser.add_argument("--version", action="version", version=f"gpuimage {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )
    info = commands.add_parser(
        "info",
        help="installed backends, CUDA devices, and which views work here",
        description=_INFO_DESCRIPTION,
    )
    info.add_argument("--json", action="store_true", help="print the same report as JSON")
    info.set_defaults(run=_info)
    stubs = commands.add_parser(
        "stubs",
        help="write type stubs for a library gpuimage talks to",
        description=_STUBS_DESCRIPTION,
    )
    # The metavars are what usage, help and errors all name ("required: LIBRARY, DIR").
    stubs.add_argument(
        "library",
        metavar="LIBRARY",
        choices=["opencv"],
        help="the library: opencv (OpenCV's cv2.cuda.GpuMat)",
    )
    stubs.add_argument(
        "directory",
        metavar="DIR",
        type=Path,
        help="the folder to write LIBRARY's stubs into (created if missing)",
    )
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
