"""The ``gpuimage`` command line (also ``python -m gpuimage``): ``info``, ``demo``, ``bench``, ``stubs``.

Every optional library is imported inside the subcommand that needs it, and a missing or broken one
is reported, never raised: ``gpuimage info`` is what a user runs when something does not import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from ._bench import EXIT_STATUS as BENCH_EXIT_STATUS
from ._bench import bench as run_bench
from ._errors import GpuImageError
from ._info import collect_info, print_info

__all__ = ["main"]


def _info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_info(info, sys.stdout)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as demo

    return demo()


# -- stubs --------------------------------------------------------------------------------------


def _stubs(args: argparse.Namespace) -> int:
    from ._stubgen import write_opencv_stubs

    try:
        written = write_opencv_stubs(args.directory)
    except GpuImageError as exc:
        print(f"gpuimage stubs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the folder is a file, or not writable: say so, as for every other refusal
        directory: Path = args.directory
        if directory.exists() and not directory.is_dir():
            reason = "it is a file, not a folder"
        else:
            reason = exc.strerror or str(exc)
            reason += f" ({exc.filename})" if exc.filename is not None else ""
        print(f"gpuimage stubs: cannot write the stubs into {directory}: {reason}.", file=sys.stderr)
        return 1
    # mypy_path and stubPath name the folder that holds the cv2 package, not the package itself.
    root = written.parent if written.name in ("cv2", "cv2-stubs") else written
    print(f"wrote OpenCV stubs: {written}")
    print("point your type checker at them (pyproject.toml):")
    print(f'  mypy:    [tool.mypy] mypy_path = "{root}"')
    print(f'  pyright: [tool.pyright] stubPath = "{root}"')
    return 0


# -- entry point --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuimage", description="gpuimage's command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="installed backends, CUDA devices, and which views work here")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    info.set_defaults(run=_info)
    demo = commands.add_parser(
        "demo",
        help="one image, every view sharing one pointer",
        description="One image, every view sharing one pointer: on the GPU where one is reachable, on "
        "the host elsewhere. A view whose library is missing or broken is skipped with the reason; the "
        "exit status is 1 only when no view at all could be shown.",
    )
    demo.set_defaults(run=_demo)
    bench = commands.add_parser(
        "bench",
        help="run benchmarks/*.py and print one table of their targets",
        description="Run the benchmarks of gpuimage's source tree and print one table of their\n"
        "results against their targets.",
        epilog=BENCH_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the exit-status lines as written
    )
    bench.add_argument("--quick", action="store_true", help="few repetitions: a smoke test only")
    bench.add_argument(
        "--dir",
        type=Path,
        help="the benchmarks folder (default: the source tree's, else ./benchmarks if its _common.py "
        "imports gpuimage)",
    )
    bench.add_argument(
        "--reports", type=Path, metavar="DIR", help="keep each benchmark's report and JSON in DIR"
    )
    bench.add_argument(
        "--json", type=Path, metavar="PATH", help="also write every result and the table to PATH"
    )
    bench.set_defaults(run=run_bench)
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
    except SystemExit as exit_:  # --help and usage errors: return the status instead of exiting
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    run = cast("Callable[[argparse.Namespace], int]", args.run)
    try:
        return run(args)
    except BrokenPipeError:  # `gpuimage info | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
