"""What the benchmark scripts share: their command line, the no-GPU exit, a hang watchdog, the
versions printed at the top of each run, optional libraries (CV-CUDA), and the checks they write.

A check is one line of the runner's table (``benchmarks/run.py`` reads ``results["checks"]``):
``{"case", "gpuimage", "alternative", "ratio", "target", "passed"}``, every field text as it is
shown, ``passed`` True (PASS), False (FAIL) or None (shown only, or not measurable here).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import cupy
import torch
from _timing import Loop, Spread, timed_in_turn

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


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 160 else text[:157] + "..."


class Measured(Protocol):
    """A benchmark row: its op (None: it could not be built), and what measuring it found."""

    op: Callable[[], object] | None
    note: str  # why it has no figure, or how its output is off ("" where it ran and matched)
    wall: Spread | None
    gpu: float | str | None  # GPU microseconds per call, or why there is no figure


M = TypeVar("M", bound=Measured)


def measure_in_turn(rows: Sequence[M], check: Callable[[M], None], loop: Loop) -> None:
    """Check each row's output once (``check`` may set its note), then time the rows together (their
    samples in turn, ``_timing``), then each one's GPU time; an exception becomes the row's note."""
    timed: list[M] = []
    for row in rows:
        if row.op is None:
            continue
        try:
            check(row)
            timed.append(row)
        except Exception as exc:
            failed(row, exc)
    ops = [cast("Callable[[], object]", row.op) for row in timed]
    for row, result in zip(timed, timed_in_turn(ops, loop), strict=True):
        if isinstance(result, Exception):
            failed(row, result)
        else:
            row.wall, row.gpu = result


def failed(row: Measured, exc: Exception) -> None:
    row.note = f"error: {describe(exc)}"
    with contextlib.suppress(Exception):
        torch.cuda.synchronize()


def optional_module(name: str) -> tuple[Any, str]:
    """``(module, "")``, or ``(None, why)`` where it cannot be imported (CV-CUDA is optional).

    Imported by name so that type checkers never need its stubs (cvcuda ships none).
    """
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # a broken wheel raises anything, not only ImportError
        return None, f"{name} is not importable ({describe(exc)}); its columns are skipped"


def module_version(module: Any) -> str:
    return str(getattr(module, "__version__", "unknown version"))


def micros(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} us" if value >= 0.995 else f"{value:.3f} us"


def ratio_check(
    case: str,
    ours_us: float | None,
    theirs_us: float | None,
    against: str,
    limit: float | None,
    *,
    ours_missing_fails: bool = True,
) -> dict[str, Any]:
    """A check of ``ours / theirs <= limit`` (``limit`` None: the ratio is shown, not judged).

    Without gpuimage's figure the check FAILs (the feature is missing or broke) unless
    ``ours_missing_fails`` is False; without the alternative's it is shown only (not measurable here).
    """
    ratio = None if ours_us is None or theirs_us is None or theirs_us <= 0 else ours_us / theirs_us
    passed: bool | None
    if limit is None:
        passed = None
    elif ours_us is None:
        passed = False if ours_missing_fails else None
    elif ratio is None:
        passed = None
    else:
        passed = ratio <= limit
    return {
        "case": case,
        "gpuimage": micros(ours_us),
        "alternative": f"{micros(theirs_us)} ({against})",
        "ratio": "" if ratio is None else f"{ratio:.2f}",
        "target": "" if limit is None else f"<= {limit:.1f}x",
        "passed": passed,
    }


def value_check(case: str, value: str, target: str, passed: bool | None) -> dict[str, Any]:
    """A check of one figure against an absolute target (a time, a byte count)."""
    return {
        "case": case,
        "gpuimage": value,
        "alternative": "",
        "ratio": "",
        "target": target,
        "passed": passed,
    }


def print_checks(checks: Sequence[dict[str, Any]]) -> None:
    """The checks as the runner shows them: case, gpuimage, alternative, ratio, target, result."""
    names = ("case", "gpuimage", "alternative", "ratio", "target")
    results = {True: "PASS", False: "FAIL", None: "info"}
    lines = [[*names, "result"]]
    lines += [[str(check[name]) for name in names] + [results[check["passed"]]] for check in checks]
    widths = [max(len(line[column]) for line in lines) for column in range(len(names) + 1)]
    for number, line in enumerate(lines):
        cells = [
            cell.rjust(width) if column in (1, 2, 3) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
    failed = sum(check["passed"] is False for check in checks)
    judged = sum(check["passed"] is not None for check in checks)
    print(f"\n{judged - failed} of {judged} targets passed.")


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def shared_stream(cv: Any) -> tuple[torch.cuda.Stream, Any, str]:
    """One stream for the three libraries (the CV-CUDA stream is held until the process ends)."""
    if cv is not None:
        try:
            cv_stream = cv.Stream()
            return torch.cuda.ExternalStream(cv_stream.handle), cv_stream, "a CV-CUDA stream, torch's current"
        except Exception as exc:
            return torch.cuda.Stream(), None, f"a torch side stream (cvcuda.Stream() failed: {describe(exc)})"
    return torch.cuda.Stream(), None, "a torch side stream"
