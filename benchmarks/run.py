"""Run every benchmark in this folder and print one table of their results against their targets.

Usage: ``python benchmarks/run.py [--quick] [--dir DIR] [--reports DIR] [--json PATH] [--chart DIR]``
(or ``scripts/dev bench``), from gpuimage's source tree: the benchmarks are not part of the wheel.

Each ``benchmarks/*.py`` (not the ``_``-prefixed helpers, not this runner) runs in its own process,
with a progress bar on stderr; the table goes to stdout. On a machine without a GPU it says so and
runs nothing. Its exit status is ``EXIT_STATUS`` (also printed by ``--help``): a FAIL is a result,
not an error.

After a run it draws the conversions chart (``chart.py``: wall clock per call of gpuimage, torch
and CV-CUDA at 1080p and 4K, GPU-only time beside it) into the reports folder or ``--chart DIR``,
where matplotlib is installed. ``python benchmarks/chart.py RESULT.json --out DIR`` draws it from a
saved ``--json`` file without running anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

__all__ = ["EXIT_STATUS", "BenchRow", "bench", "bench_rows", "main"]

PROG = "benchmarks/run.py"
EXIT_STATUS = (
    "exit status: 0 when every benchmark finished, even if some targets FAIL (read the table), and\n"
    "when no GPU is reachable (nothing is run); 1 when a benchmark script crashed (an ERROR row) or\n"
    "the --json file could not be written; 2 for a usage error (a --dir that is not a folder, an\n"
    "unwritable --reports, --json or --chart path) or when no benchmarks were found. A chart that\n"
    "cannot be drawn (no matplotlib) is reported and changes nothing."
)
# The folder this runner sits in: the benchmarks it runs unless --dir names another.
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BenchRow:
    """One line of the table. Times and ratios are text as the benchmark wrote them."""

    benchmark: str
    case: str
    gpuimage: str
    alternative: str
    ratio: str
    target: str
    result: str  # PASS, FAIL, info (no target), or ERROR (the script did not finish)


_RESULTS = {True: "PASS", False: "FAIL", None: "info"}
# A check named "<case> <op> <target>": the target is the last comparison in the text.
_TARGET = re.compile(r"^(?P<case>.*\S)\s+(?P<op><=|>=|==|<|>)\s+(?P<target>[^<>=]+)$")


def _timings(results: Mapping[str, Any]) -> dict[str, float]:
    """Median microseconds by operation name, from every table of per-call statistics in a result."""
    found: dict[str, float] = {}
    for table in results.values():
        if isinstance(table, dict):
            for name, stats in cast("dict[str, object]", table).items():
                if isinstance(stats, dict) and "median_us" in stats:
                    found[name] = float(cast("dict[str, Any]", stats)["median_us"])
    return found


def _measure(check: Mapping[str, Any], who: str) -> str:
    """``<who>_gbps`` or ``<who>_us`` of a check, as text with its unit ("" where it has neither)."""
    gbps, micros = check.get(f"{who}_gbps"), check.get(f"{who}_us")
    if isinstance(gbps, int | float):
        return f"{gbps:.1f} GB/s"
    return f"{micros:.3f} us" if isinstance(micros, int | float) else ""


def _given(check: Mapping[str, Any], key: str, derived: str) -> str:
    """A field the check gives itself (numbers formatted; a ratio or target with no operator is
    ">=", as benchmarks/conversions.py has it), else the one derived from its text."""
    if key not in check:
        return derived
    value: object = check[key]
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f">= {value:g}" if key == "target" else f"{value:.2f}"
    return str(value)


def bench_rows(benchmark: str, results: Mapping[str, Any]) -> list[BenchRow]:
    """The table rows of one benchmark's ``--json`` output.

    Two shapes of ``results["checks"]`` entries are read. ``{"check", "value", "passed"}``
    (views.py, streams.py): a trailing comparison in the check is the target, "<ours> vs <theirs>"
    takes both medians from the result's timing tables (target: ratio <= 1, gpuimage /
    alternative), a value "ratio X" is the ratio and any other value is gpuimage's.
    ``{"case", "against", "gpuimage_gbps", "other_gbps", "ratio", "target", "passed"}``
    (conversions.py): the fields as given, a bare number target meaning ratio >= target. Fields
    named ``gpuimage`` or ``alternative`` are taken as they are.
    """
    timings = _timings(results)
    rows: list[BenchRow] = []
    for check in cast("list[dict[str, Any]]", results.get("checks", [])):
        text, value, passed = str(check.get("check", "")), str(check.get("value", "")), check.get("passed")
        case, target, ours, theirs, ratio = (
            text,
            "",
            _measure(check, "gpuimage"),
            _measure(check, "other"),
            "",
        )
        match = _TARGET.match(text)
        if match is not None:
            case, target = match["case"], f"{match['op']} {match['target']}"
        pair = re.fullmatch(r"(?P<ours>.+) vs (?P<theirs>.+)", case)
        if pair is not None and pair["ours"] in timings and pair["theirs"] in timings:
            ours, theirs = f"{timings[pair['ours']]:.3f} us", f"{timings[pair['theirs']]:.3f} us"
            target = target or ("ratio <= 1" if passed is not None else "")
        if value.startswith("ratio "):
            ratio = value.removeprefix("ratio ")
        elif value:
            ours = ours or value
        against = check.get("against")
        if isinstance(against, str):  # the alternative's name
            theirs = f"{theirs} ({against})" if theirs else against
        rows.append(
            BenchRow(
                benchmark=benchmark,
                case=_given(check, "case", case),
                gpuimage=_given(check, "gpuimage", ours),
                alternative=_given(check, "alternative", theirs),
                ratio=_given(check, "ratio", ratio),
                target=_given(check, "target", target),
                result=_RESULTS.get(passed, "info") if isinstance(passed, bool | None) else "info",
            )
        )
    return rows


def _print_table(rows: Sequence[BenchRow], out: IO[str]) -> None:
    header = BenchRow("benchmark", "case", "gpuimage", "alternative", "ratio", "target", "result")
    lines = [list(asdict(row).values()) for row in (header, *rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    right = {2, 3, 4}  # numbers line up on the right
    for number, line in enumerate(lines):
        cells = [
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if number == 0:
            print("  ".join("-" * width for width in widths), file=out)


class _Progress:
    """A text progress bar on stderr, redrawn in place every second on a terminal; elsewhere (a log
    file, CI) one line per benchmark and one a minute, so the log stays readable."""

    def __init__(self, total: int, out: IO[str]) -> None:
        self.total, self.out = total, out
        self.live = out.isatty()
        self.width = 0
        self.last: tuple[int, int] | None = None  # (step, minute) of the last line written elsewhere

    def show(self, done: int, label: str, elapsed_s: float) -> None:
        filled = 24 * done // self.total
        line = f"[{'#' * filled}{'-' * (24 - filled)}] {done}/{self.total} {label} ({elapsed_s:.0f} s)"
        if self.live:
            self.out.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif self.last != (done, int(elapsed_s // 60)):
            self.last = (done, int(elapsed_s // 60))
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.live:
            self.out.write("\n")
            self.out.flush()


def _find_scripts(folder: Path) -> list[Path]:
    """The benchmarks of ``folder``: its ``*.py`` files but the ``_``-prefixed helpers and the tools
    (this runner, ``chart.py``).

    ``folder`` must hold the benchmarks' shared ``_common.py``; elsewhere there are none.
    """
    if not (folder / "_common.py").is_file():
        return []
    tools = {Path(__file__).resolve(), HERE / "chart.py"}
    return sorted(
        path for path in folder.glob("*.py") if not path.name.startswith("_") and path.resolve() not in tools
    )


def _unwritable(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` (a folder to create or fill, or a file to write) cannot be written, or None.

    Checked before any benchmark runs, so a typo costs seconds, not the whole run.
    """
    if path.exists():
        if folder != path.is_dir():
            return "it is a file, not a folder" if folder else "it is a folder, not a file"
        return None if os.access(path if folder else path.parent, os.W_OK) else "permission denied"
    if not folder:  # the file is written into a folder that must already exist
        if not path.parent.is_dir():
            return f"its folder {path.parent} does not exist"
        return None if os.access(path.parent, os.W_OK) else f"its folder {path.parent} is not writable"
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    return None if os.access(existing, os.W_OK) else f"{existing} is not writable"


def _describe(exc: BaseException) -> str:
    """An exception as one line, with its class name."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def torch_gpu_missing() -> str | None:
    """Why torch reaches no CUDA GPU here (a CPU-only build, or none visible), or None when it does."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return None


def _gpu_missing() -> str | None:
    """Why the benchmarks cannot run here (they need torch with CUDA and a GPU), or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    try:
        return torch_gpu_missing()
    except Exception as exc:  # a broken install raises anything on import (OSError for a missing .so)
        return f"torch fails to import or to query CUDA: {_describe(exc)}"


def _run_script(script: Path, *, quick: bool, reports: Path, progress: _Progress, done: int) -> int:
    """Run one benchmark: its text report goes to ``reports/<name>.txt``, its JSON beside it."""
    command = [sys.executable, str(script), "--json", str(reports / f"{script.stem}.json")]
    command += ["--quick"] if quick else []
    start = time.monotonic()
    with (reports / f"{script.stem}.txt").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=script.parent)
        while True:
            try:
                return process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                progress.show(done, script.name, time.monotonic() - start)
            except BaseException:  # Ctrl-C: stop the benchmark too, then let the interrupt through
                process.kill()
                process.wait()
                raise


def _results(path: Path) -> dict[str, Any] | None:
    """A benchmark's JSON output, or None where it wrote none (or not a JSON object)."""
    try:
        results: object = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cast("dict[str, Any]", results) if isinstance(results, dict) else None


def _draw(results: Mapping[str, Any], folder: Path) -> None:
    """Draw the chart of ``results`` into ``folder`` (``chart.py``) and say where, or why not."""
    added = str(HERE) not in sys.path  # this runner is also imported from its file (the tests)
    if added:
        sys.path.insert(0, str(HERE))
    try:
        import chart
    finally:
        if added:
            sys.path.remove(str(HERE))

    try:
        print("Chart: " + ", ".join(str(path) for path in chart.write_chart(results, folder)))
    except (chart.ChartError, OSError) as exc:  # the table is the result; the chart is a view of it
        print(f"{PROG}: no chart: {exc}.", file=sys.stderr)


def bench(args: argparse.Namespace) -> int:
    """Run the benchmarks; returns the exit status described by ``EXIT_STATUS``."""
    if args.dir is not None and not args.dir.is_dir():
        why = "it is a file, not a folder" if args.dir.exists() else "no such folder"
        print(f"{PROG}: --dir {args.dir}: {why}.", file=sys.stderr)
        return 2
    folder: Path = args.dir or HERE
    scripts = _find_scripts(folder)
    if not scripts:
        print(
            f"{PROG}: no benchmarks found in {folder} (a folder of benchmark scripts beside their "
            "_common.py, as gpuimage's benchmarks/ is).",
            file=sys.stderr,
        )
        return 2
    outputs: list[tuple[str, Path | None, bool]] = [
        ("--reports", args.reports, True),
        ("--json", args.json, False),
        ("--chart", args.chart, True),
    ]
    for option, path, is_folder in outputs:
        reason = None if path is None else _unwritable(path, folder=is_folder)
        if reason is not None:
            print(f"{PROG}: {option} {path} cannot be written: {reason}.", file=sys.stderr)
            return 2
    missing = _gpu_missing()
    if missing is not None:
        print(f"{PROG}: no CUDA GPU is reachable ({missing}); the benchmarks need one, none was run.")
        return 0
    reports: Path = args.reports or Path(tempfile.mkdtemp(prefix="gpuimage-bench-"))
    reports.mkdir(parents=True, exist_ok=True)
    progress = _Progress(len(scripts), sys.stderr)
    rows: list[BenchRow] = []
    collected: dict[str, Any] = {}
    start = time.monotonic()
    for done, script in enumerate(scripts):
        progress.show(done, script.name, 0.0)
        code = _run_script(script, quick=args.quick, reports=reports, progress=progress, done=done)
        results = _results(reports / f"{script.stem}.json") if code == 0 else None
        if results is None:
            case = f"exit code {code}, no results: see {reports / script.stem}.txt"
            rows.append(BenchRow(script.stem, case, "", "", "", "", result="ERROR"))
            continue
        collected[script.stem] = results
        rows.extend(bench_rows(script.stem, results))
    progress.show(len(scripts), "done", time.monotonic() - start)
    progress.close()
    _print_table(rows, sys.stdout)
    failed, errors = (sum(row.result == kind for row in rows) for kind in ("FAIL", "ERROR"))
    targets = sum(row.result in ("PASS", "FAIL") for row in rows)
    finished = len(scripts) - errors
    print(
        f"\n{targets - failed} of {targets} targets passed; {finished} of {len(scripts)} benchmarks finished."
    )
    print(f"Each benchmark's own report: {reports}")
    if args.json is not None:
        table = [asdict(row) for row in rows]
        try:
            args.json.write_text(json.dumps({"benchmarks": collected, "rows": table}, indent=2) + "\n")
        except OSError as exc:  # checked up front; this is the folder vanishing during the run
            print(f"{PROG}: could not write --json {args.json}: {exc.strerror or exc}.", file=sys.stderr)
            return 1
    _draw({"benchmarks": collected}, args.chart or reports)
    return 1 if errors else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run gpuimage's benchmarks and print one table of their results against their\ntargets.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the exit-status lines as written
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test only")
    parser.add_argument(
        "--dir", type=Path, help="the benchmarks folder, with their _common.py (default: this runner's)"
    )
    parser.add_argument(
        "--reports", type=Path, metavar="DIR", help="keep each benchmark's report and JSON in DIR"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write every result and the table to PATH"
    )
    parser.add_argument(
        "--chart", type=Path, metavar="DIR", help="draw wall-per-call.png/.svg in DIR (default: --reports)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error, as argparse has it)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help and usage errors: return the status instead of exiting
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
