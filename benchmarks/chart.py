"""Draw the benchmark chart: wall clock per call of gpuimage, torch and CV-CUDA for each conversion
case, at 1080p and 4K, with the GPU-only time beside it.

Usage: ``python benchmarks/chart.py RESULT.json [--out DIR]``: no GPU needed, nothing is run.
RESULT.json is what ``run.py --json`` wrote (or ``conversions.py --json``); DIR defaults to the
folder RESULT.json is in. ``benchmarks/run.py`` (``scripts/dev bench``) also draws it after each
run, into its reports folder or ``--chart DIR``; it runs this tool's ``write_chart``, and does not
take this file for a benchmark. Two files come out: ``wall-per-call.png`` and ``wall-per-call.svg``
(its text kept as text, so it can be searched and read). Exit status: 0 drawn, 1 matplotlib is not
installed, 2 a usage error (no such file, not a result, no conversion timings, an unwritable DIR).

Read from ``conversions``' ``"timings"``: ``{"<case> | <library> <call>": {"median_us", "gpu_us",
"into", "note", ...}}``. A bar is the library's fastest call of that case and mode (a new output,
or ``out=``) that ran and gave torch's output (no ``note``), as the table's rows are. Results
saved before ``"into"`` was written name the mode only in the call: ``out=``, ``_into``, ``copy_``.

matplotlib is imported only to draw, with the Agg canvas (no display, no pyplot state); without it
``ChartError`` says how to install it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CHART_NAME", "Bar", "ChartError", "conversion_bars", "main", "missing_timings", "write_chart"]

CHART_NAME = "wall-per-call"
LIBRARIES = ("gpuimage", "torch", "CV-CUDA")
# Colour-blind-safe (Okabe-Ito): blue, orange, bluish green.
COLOURS = {"gpuimage": "#0072B2", "torch": "#E69F00", "CV-CUDA": "#009E73"}
_INTO_MARKS = ("out=", "_into", "copy_")  # how older results name a preallocated output's call


class ChartError(Exception):
    """The chart cannot be drawn: matplotlib is missing, or the results hold no conversion timings."""


@dataclass(frozen=True)
class Bar:
    """One library's fastest route for one case and mode; None where it has none."""

    size: str  # "1080p", "4K"
    case: str  # the case without its size: "uint8 HWC->CHW"
    into: bool  # writes into a preallocated output (out=)
    library: str
    call: str | None
    wall_us: float | None
    gpu_us: float | None


def _conversions(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """The conversions benchmark's results, from run.py's combined JSON or conversions.py's own."""
    benchmarks = results.get("benchmarks")
    if isinstance(benchmarks, Mapping):
        found = cast("Mapping[str, Any]", benchmarks).get("conversions")
        return cast("Mapping[str, Any]", found) if isinstance(found, Mapping) else {}
    return results


def missing_timings(results: Mapping[str, Any]) -> str | None:
    """Why ``results`` cannot be charted (they hold no conversion timings), or None."""
    timings = _conversions(results).get("timings")
    if isinstance(timings, Mapping) and timings:
        return None
    return (
        "the results hold no conversion timings (expected run.py's --json output with a "
        "'conversions' benchmark, or conversions.py's)"
    )


def conversion_bars(results: Mapping[str, Any]) -> list[Bar]:
    """Every bar of the chart, in the order the cases ran: sizes, cases, new output then ``out=``.

    Raises:
        ChartError: ``results`` hold no conversion timings.
    """
    why = missing_timings(results)
    if why is not None:
        raise ChartError(why)
    timings = _conversions(results)["timings"]
    best: dict[tuple[str, bool, str], tuple[str, float, float | None]] = {}
    modes: dict[str, set[bool]] = {}  # each case, in the order it ran, and its modes
    for key, entry in cast("Mapping[str, Any]", timings).items():
        if not isinstance(entry, Mapping):
            continue
        stats = cast("Mapping[str, Any]", entry)
        name, _, route = str(key).partition(" | ")
        library, _, call = route.partition(" ")
        into = bool(stats.get("into", any(mark in call for mark in _INTO_MARKS)))
        modes.setdefault(name, set()).add(into)
        wall, gpu = stats.get("median_us"), stats.get("gpu_us")
        if stats.get("note") or not isinstance(wall, int | float):
            continue  # did not run, or not the same output as torch's
        known = best.get((name, into, library))
        if known is None or wall < known[1]:
            gpu_figure = float(gpu) if isinstance(gpu, int | float) else None
            best[(name, into, library)] = (call, float(wall), gpu_figure)
    bars: list[Bar] = []
    for name, found in modes.items():
        size, _, case = name.partition(" ")
        for into in sorted(found):  # the new output, then out=
            for library in LIBRARIES:
                fastest = best.get((name, into, library))
                bars.append(Bar(size, case, into, library, *(fastest or (None, None, None))))
    return bars


def _label(bar: Bar) -> str:
    """A case's label, as the runner's table names the row (without the size)."""
    return f"{bar.case}, out=" if bar.into else bar.case


def _panel(axes: Axes, bars: list[Bar], *, gpu: bool, title: str) -> None:
    """Grouped horizontal bars, each labelled with its value (a linear scale: length is time)."""
    groups = [bars[i : i + len(LIBRARIES)] for i in range(0, len(bars), len(LIBRARIES))]
    height = 0.8 / len(LIBRARIES)
    for number, library in enumerate(LIBRARIES):
        ys = [row + (number - 1) * height for row in range(len(groups))]
        values = [(group[number].gpu_us if gpu else group[number].wall_us) for group in groups]
        drawn = axes.barh(
            ys,
            [value or 0.0 for value in values],
            height,
            label=library,
            color=COLOURS[library],
            hatch="///" if gpu else None,
            edgecolor="white" if gpu else None,
            linewidth=0,
        )
        texts = ["n/a" if value is None else f"{value:.1f}" for value in values]
        axes.bar_label(drawn, labels=texts, padding=2, fontsize=7)
    axes.set_yticks(range(len(groups)), [_label(group[0]) for group in groups], fontsize=8)
    axes.set_title(title, fontsize=9, loc="left")
    axes.tick_params(axis="x", labelsize=8)
    axes.grid(axis="x", alpha=0.25)
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)


def _figure(bars: list[Bar], header: Mapping[str, Any]) -> Figure:
    from matplotlib.figure import Figure

    sizes = list(dict.fromkeys(bar.size for bar in bars))
    rows = len(bars) // len(LIBRARIES)  # bar groups in all
    figure = Figure(figsize=(8, 0.5 * rows + 1.2 * len(sizes) + 0.6), layout="constrained")
    # Per size, both panels share one time axis: the gap between a library's two bars is host time.
    grid = figure.subplots(
        len(sizes),
        2,
        squeeze=False,
        sharex="row",
        sharey="row",
        height_ratios=[sum(bar.size == size for bar in bars) for size in sizes],
    )
    for row, size in enumerate(sizes):
        of_size = [bar for bar in bars if bar.size == size]
        _panel(grid[row][0], of_size, gpu=False, title=f"{size}: wall clock per call (what a loop pays)")
        _panel(grid[row][1], of_size, gpu=True, title=f"{size}: GPU time only (CUDA events)")
        grid[row][1].tick_params(axis="y", left=False, labelleft=False)
        grid[row][0].invert_yaxis()  # once for the shared axis: the first case on top, as in the table
        right = max((bar.wall_us or 0.0) for bar in of_size)
        grid[row][0].set_xlim(0, right * 1.15 if right else 1.0)  # room for the value labels
    grid[-1][0].set_xlabel("µs per call (lower is better)", fontsize=8)
    grid[-1][1].set_xlabel("µs per call (lower is better)", fontsize=8)
    grid[0][1].legend(loc="lower right", fontsize=8, frameon=False)
    versions = ", ".join(
        f"{name} {header[name]}"
        for name in ("gpuimage", "torch", "cvcuda")
        if isinstance(header.get(name), str)
    )
    figure.suptitle(
        f"Conversions per call: {header.get('device', 'unknown GPU')}"
        + (f"\n{versions}" if versions else ""),
        fontsize=10,
    )
    return figure


def write_chart(results: Mapping[str, Any], folder: Path) -> list[Path]:
    """Draw the chart of ``results`` into ``folder`` (made if missing): the PNG and SVG paths.

    Raises:
        ChartError: matplotlib is not installed, or ``results`` hold no conversion timings.
    """
    bars = conversion_bars(results)
    try:
        import matplotlib
    except ImportError as exc:
        raise ChartError(
            "matplotlib is not installed: pip install matplotlib (it comes with gpuimage's dev extra: "
            "pip install -e '.[dev]')"
        ) from exc
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    header = _conversions(results).get("header")
    figure = _figure(bars, cast("Mapping[str, Any]", header) if isinstance(header, Mapping) else {})
    FigureCanvasAgg(figure)  # the Agg canvas: no display needed
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{CHART_NAME}.png", folder / f"{CHART_NAME}.svg"]
    # Text stays text in the SVG; no date and a fixed hash salt, so one result gives one file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "gpuimage"}):
        figure.savefig(paths[0], dpi=150, metadata={"Software": None})
        figure.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Draw the chart of a saved result file; returns the exit status (module docstring)."""
    parser = argparse.ArgumentParser(prog="benchmarks/chart.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("result", type=Path, help="a result file: run.py's --json output")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: beside RESULT)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help and usage errors: return the status instead of exiting
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    path: Path = args.result
    try:
        results: object = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        reason = "no such file" if not path.is_file() else f"not a JSON file ({exc})"
        print(f"{parser.prog}: {path}: {reason}.", file=sys.stderr)
        return 2
    folder: Path = args.out or path.parent
    why = "not a JSON object" if not isinstance(results, dict) else missing_timings(results)
    if why is None:
        try:
            print(
                "Chart: "
                + ", ".join(str(out) for out in write_chart(cast("dict[str, Any]", results), folder))
            )
            return 0
        except ChartError as exc:  # no matplotlib: the data were checked above
            print(f"{parser.prog}: no chart: {exc}.", file=sys.stderr)
            return 1
        except OSError as exc:
            why = f"{folder} cannot be written ({exc.strerror or exc})"
    print(f"{parser.prog}: {path}: no chart: {why}.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
