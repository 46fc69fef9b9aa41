"""What the benchmark scripts share: their command line, the no-GPU exit, a hang watchdog, and
the versions printed at the top of each run."""

from __future__ import annotations

import argparse
import faulthandler
import platform
from pathlib import Path

import cupy
import torch

import gpuimage


def parse_args(doc: str | None, script: str, argv: list[str] | None) -> argparse.Namespace | None:
    """``--quick`` and ``--json PATH``; None (after saying why) where no CUDA GPU is reachable."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"{script}: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False); skipped.")
        return None
    # A hang (say, a deadlock in the library under test) ends the run with every thread's traceback.
    faulthandler.dump_traceback_later(300 if args.quick else 1800, exit=True)
    return args


def header() -> dict[str, str]:
    """The machine and the library versions a run measured."""
    return {
        "device": torch.cuda.get_device_name(0),
        "python": platform.python_version(),
        "gpuimage": gpuimage.__version__,
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
        "cupy": cupy.__version__,
    }
