"""benchmarks/chart.py (issue 14, pictures): the chart of wall clock per call, drawn from a saved
result file on a machine without a GPU, by ``chart.py`` itself and by the runner after a run.

The result file is written here in the shape ``benchmarks/run.py --json`` writes (the conversions
benchmark's ``timings``, as ``conversions.timings()`` makes them: one test checks that too).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from file_modules import load_file

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stats(wall: float, gpu: float | str, *, into: bool, note: str = "") -> dict[str, Any]:
    """One ``timings`` entry as conversions.py writes it."""
    entry: dict[str, Any] = {"into": into} | ({"note": note} if note else {})
    return entry | {"median_us": wall, "p10_us": wall * 0.98, "p90_us": wall * 1.03, "gpu_us": gpu}


def _timings() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for size, scale in (("1080p", 1.0), ("4K", 4.0)):
        case = f"{size} uint8 HWC->CHW"
        table |= {
            f"{case} | gpuimage to_layout": _stats(14.5 * scale, 4.7 * scale, into=False),
            f"{case} | gpuimage to_layout(out=)": {"into": True, "note": "n/a: to_layout() takes no out="},
            f"{case} | torch permute.contiguous": _stats(16.8 * scale, 11.9 * scale, into=False),
            f"{case} | torch copy_(permute)": _stats(13.0 * scale, 11.9 * scale, into=True),
            f"{case} | CV-CUDA reformat": _stats(12.0 * scale, 6.9 * scale, into=False),
            f"{case} | CV-CUDA reformat_into": _stats(
                11.5 * scale, "n/a: the host could not queue", into=True
            ),
            # faster, but not torch's output: never a bar
            f"{case} | CV-CUDA convertto+reformat": _stats(
                1.0, 0.5, into=False, note="not judged: one scale and offset"
            ),
        }
    return table


RESULT: dict[str, Any] = {
    "benchmarks": {
        "conversions": {
            "header": {
                "device": "NVIDIA H200",
                "python": "3.12.3",
                "gpuimage": "0.1.0",
                "torch": "2.11.0+cu130 (CUDA 13.0)",
                "cupy": "14.2.0",
                "cvcuda": "0.19.0",
            },
            "config": {"calls": 200, "repeats": 3, "warmup": 50, "gpu_calls": 50},
            "notes": ["all libraries run on a CV-CUDA stream, torch's current"],
            "timings": _timings(),
            "checks": [
                {
                    "case": "1080p uint8 HWC->CHW",
                    "gpuimage": "14.50 us",
                    "alternative": "16.80 us (torch permute.contiguous)",
                    "ratio": "0.86",
                    "target": "<= 1.0x",
                    "passed": True,
                }
            ],
        },
        "views": {"ops": {"as_torch() cached": {"median_us": 0.3}}, "checks": []},
    },
    "rows": [
        {
            "benchmark": "conversions",
            "case": "1080p uint8 HWC->CHW",
            "gpuimage": "14.50 us",
            "alternative": "16.80 us (torch permute.contiguous)",
            "ratio": "0.86",
            "target": "<= 1.0x",
            "result": "PASS",
        }
    ],
}


@pytest.fixture
def chart(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/chart.py, imported by name as run.py imports it (benchmarks/ is not a package)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("chart")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(RESULT, indent=2) + "\n")
    return path


def _svg_text(path: Path) -> list[str]:
    """Every text line of an SVG (ElementTree fails on a file that is not XML)."""
    root = ElementTree.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return [text.strip() for element in root.iter() for text in (element.text,) if text and text.strip()]


def test_the_chart_is_drawn_from_a_saved_result_file(
    chart: ModuleType, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "docs" / "bench"
    assert chart.main([str(saved), "--out", str(out)]) == 0
    png, svg = out / "wall-per-call.png", out / "wall-per-call.svg"
    assert capsys.readouterr().out == f"Chart: {png}, {svg}\n"
    assert png.read_bytes().startswith(PNG_MAGIC)
    texts = _svg_text(svg)
    for label in ("uint8 HWC->CHW", "uint8 HWC->CHW, out="):
        assert label in texts
    assert {"gpuimage", "torch", "CV-CUDA"} <= set(texts)  # the legend
    assert any(text.startswith("1080p: wall clock per call") for text in texts)
    assert any(text.startswith("4K: GPU time only") for text in texts)
    # values on the bars: gpuimage's 4K wall time, a missing out= and a missing GPU figure
    assert "58.0" in texts
    # per size: gpuimage's missing out= in both panels, and CV-CUDA's out= GPU time
    assert texts.count("n/a") == 3 * 2
    assert "0.5" not in texts  # the faster route with another output is not a bar


def test_the_chart_is_the_same_for_the_same_result(chart: ModuleType, tmp_path: Path) -> None:
    """No date or random ids in the SVG: a chart committed to the docs changes only with its data."""
    first = chart.write_chart(RESULT, tmp_path / "first")[1].read_bytes()
    assert chart.write_chart(RESULT, tmp_path / "again")[1].read_bytes() == first


def test_bars_are_each_librarys_fastest_route_with_torchs_output(chart: ModuleType) -> None:
    bars = chart.conversion_bars(RESULT)
    assert [(bar.size, bar.into, bar.library, bar.call, bar.wall_us) for bar in bars[:6]] == [
        ("1080p", False, "gpuimage", "to_layout", 14.5),
        ("1080p", False, "torch", "permute.contiguous", 16.8),
        ("1080p", False, "CV-CUDA", "reformat", 12.0),
        ("1080p", True, "gpuimage", None, None),
        ("1080p", True, "torch", "copy_(permute)", 13.0),
        ("1080p", True, "CV-CUDA", "reformat_into", 11.5),
    ]
    assert bars[5].gpu_us is None  # "n/a: ..." is no figure
    assert [bar.size for bar in bars] == ["1080p"] * 6 + ["4K"] * 6
    # conversions.py's own JSON (not run's) gives the same bars
    assert chart.conversion_bars(RESULT["benchmarks"]["conversions"]) == bars


def test_older_results_without_into_name_the_mode_in_the_call(chart: ModuleType) -> None:
    timings = {
        name: {key: value for key, value in stats.items() if key != "into"}
        for name, stats in _timings().items()
    }
    assert chart.conversion_bars({"timings": timings}) == chart.conversion_bars(RESULT)


def test_conversions_writes_the_timings_the_chart_reads(chart: ModuleType) -> None:
    conversions, timing = importlib.import_module("conversions"), importlib.import_module("_timing")
    case = conversions.Case("4K uint8 pitched->packed", "4K", torch.zeros(1), 2)
    spread = timing.Spread(16.0, 15.5, 16.5)
    case.variants = [
        conversions.Variant("gpuimage", "contiguous", False, None, wall=spread, gpu=15.0),
        conversions.Variant("torch", "copy_", True, None, wall=timing.Spread(55.0, 54.0, 56.0), gpu=54.0),
        conversions.Variant("CV-CUDA", "reformat_into (same layout)", True, None, note="n/a: cvcuda"),
    ]
    bars = chart.conversion_bars({"timings": conversions.timings([case])})
    assert [(bar.into, bar.library, bar.call, bar.wall_us, bar.gpu_us) for bar in bars] == [
        (False, "gpuimage", "contiguous", 16.0, 15.0),
        (False, "torch", None, None, None),
        (False, "CV-CUDA", None, None, None),
        (True, "gpuimage", None, None, None),
        (True, "torch", "copy_", 55.0, 54.0),
        (True, "CV-CUDA", None, None, None),
    ]
    assert {bar.case for bar in bars} == {"uint8 pitched->packed"}


def test_without_matplotlib_the_chart_says_how_to_install_it(
    chart: ModuleType,
    saved: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert chart.main([str(saved), "--out", str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "benchmarks/chart.py: no chart: matplotlib is not installed: pip install matplotlib (it comes "
        "with gpuimage's dev extra: pip install -e '.[dev]').\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        ("[1, 2]", "no chart: not a JSON object"),
        (
            json.dumps({"benchmarks": {"views": {"checks": []}}, "rows": []}),
            "no chart: the results hold no conversion timings (expected run.py's --json output with "
            "a 'conversions' benchmark, or conversions.py's)",
        ),
    ],
    ids=["missing", "not-an-object", "no-conversions"],
)
def test_a_file_that_is_not_a_result_is_a_usage_error(
    chart: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, reason: str
) -> None:
    path = tmp_path / "bench.json"
    if content is not None:
        path.write_text(content)
    assert chart.main([str(path)]) == 2
    assert capsys.readouterr().err == f"benchmarks/chart.py: {path}: {reason}.\n"
    assert list(tmp_path.iterdir()) == ([path] if content is not None else [])


def test_matplotlib_is_imported_only_to_draw() -> None:
    """Importing the runner or chart.py (as `scripts/dev bench` does) loads no matplotlib."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        import chart, run
        assert "matplotlib" not in sys.modules, sorted(m for m in sys.modules if "matplotlib" in m)
        chart.conversion_bars({{"timings": {{"1080p x | torch a": {{"median_us": 1.0}}}}}})
        assert "matplotlib" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_runner_draws_the_chart_after_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scripts/dev bench` (the GPU check answered yes, a fake conversions benchmark): the table,
    then the chart in --chart DIR."""
    run = load_file("benchmarks_run_for_chart", BENCHMARKS / "run.py")
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "_common.py").write_text("# shared helpers: not a benchmark\n")
    conversions = RESULT["benchmarks"]["conversions"]
    (folder / "conversions.py").write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        'path = Path(sys.argv[sys.argv.index("--json") + 1])\n'
        f"path.write_text(json.dumps({conversions!r}))\n"
    )
    monkeypatch.setattr(run, "_gpu_missing", lambda: None)
    charts = tmp_path / "charts"
    assert run.main(["--dir", str(folder), "--reports", str(tmp_path / "r"), "--chart", str(charts)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"Chart: {charts / 'wall-per-call.png'}, {charts / 'wall-per-call.svg'}")
    assert (charts / "wall-per-call.png").read_bytes().startswith(PNG_MAGIC)
    assert "uint8 HWC->CHW, out=" in _svg_text(charts / "wall-per-call.svg")
    assert str(BENCHMARKS) not in sys.path  # the runner found chart.py without leaving its folder there


def test_the_runner_reports_a_chart_it_cannot_draw_and_keeps_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_file("benchmarks_run_for_chart", BENCHMARKS / "run.py")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run._draw(RESULT, tmp_path)
    assert capsys.readouterr().err.startswith("benchmarks/run.py: no chart: matplotlib is not installed: ")
    assert list(tmp_path.iterdir()) == []
