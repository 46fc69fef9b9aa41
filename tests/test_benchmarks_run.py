"""benchmarks/run.py: runs every benchmark script, prints one table of results against targets.

The runner is a script of the source tree, not part of the package: it is imported from its file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import cupy
import pytest
import torch

from file_modules import load_file

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
NO_GPU = pytest.mark.skipif(
    torch.cuda.is_available() or cupy.is_available(), reason="checks what is reported without a GPU"
)


@pytest.fixture(scope="module")
def run() -> ModuleType:
    """The runner, imported from its file (benchmarks/ is not a package)."""
    return load_file("benchmarks_run", RUNNER)


@NO_GPU
def test_bench_without_a_gpu_runs_nothing(
    run: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench started a benchmark on a machine without a GPU")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert run.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("benchmarks/run.py: no CUDA GPU is reachable (")
    assert out.rstrip().endswith("none was run.")


@NO_GPU
def test_run_as_a_script_without_a_gpu_exits_0() -> None:
    """``python benchmarks/run.py`` (what ``scripts/dev bench`` runs) works from any directory."""
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("benchmarks/run.py: no CUDA GPU is reachable (")


def test_bench_without_the_benchmarks_folder_exits_2(
    run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(["--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"benchmarks/run.py: no benchmarks found in {tmp_path} (")
    assert "beside their _common.py" in err


@pytest.mark.parametrize(
    ("where", "reason"),
    [("nonexistent", "no such folder"), ("a-file.txt", "it is a file, not a folder")],
    ids=["missing", "a-file"],
)
def test_bench_with_a_dir_that_is_not_a_folder_says_so(
    run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, reason: str
) -> None:
    # issue 14: `--dir /nonexistent` said "no benchmarks found" instead of "no such folder"
    (tmp_path / "a-file.txt").write_text("not a folder\n")
    path = tmp_path / where
    assert run.main(["--dir", str(path)]) == 2
    assert capsys.readouterr().err == f"benchmarks/run.py: --dir {path}: {reason}.\n"


def test_bench_help_documents_the_exit_status(run: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert help_text.startswith("usage: benchmarks/run.py [-h] [--quick]")
    assert "exit status: 0 when every benchmark finished, even if some targets FAIL" in help_text
    assert "1 when a benchmark script crashed (an ERROR row)" in help_text
    assert (
        "2 for a usage error (a --dir that is not a folder, an unwritable --reports, --json or --chart "
        "path) or when no benchmarks were found" in help_text
    )
    assert "A chart that cannot be drawn (no matplotlib) is reported and changes nothing." in help_text


def test_an_unknown_option_exits_2(run: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--frobnicate"]) == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_bench_with_a_broken_torch_reports_it(
    run: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError("libtorch_cuda.so: cannot open shared object file")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench started a benchmark without a usable torch")

    monkeypatch.setattr(run, "torch_gpu_missing", broken)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert run.main(["--quick"]) == 0
    assert capsys.readouterr().out == (
        "benchmarks/run.py: no CUDA GPU is reachable (torch fails to import or to query CUDA: OSError: "
        "libtorch_cuda.so: cannot open shared object file); the benchmarks need one, none was run.\n"
    )


def test_bench_runs_its_own_folders_benchmarks_but_not_itself(
    run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --dir: the folder run.py sits in, whatever the working directory; the helpers and the
    tools (the runner itself, chart.py) are not benchmarks."""
    monkeypatch.chdir(tmp_path)
    assert RUNNER.parent == run.HERE
    scripts = {path.name for path in run._find_scripts(run.HERE)}
    assert {"views.py", "streams.py", "conversions.py"} <= scripts
    assert (run.HERE / "chart.py").is_file()
    assert not {"run.py", "chart.py"} & scripts
    assert not any(name.startswith("_") for name in scripts)


@pytest.mark.parametrize(
    ("option", "where", "reason"),
    [
        ("--json", "missing/all.json", "its folder {tmp}/missing does not exist"),
        ("--json", "a-folder", "it is a folder, not a file"),
        ("--reports", "a-file.txt", "it is a file, not a folder"),
        ("--reports", "a-file.txt/reports", "{tmp}/a-file.txt is a file, not a folder"),
    ],
    ids=["json-folder-missing", "json-is-a-folder", "reports-is-a-file", "reports-under-a-file"],
)
def test_bench_checks_its_output_paths_before_running(
    run: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    where: str,
    reason: str,
) -> None:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "_common.py").write_text("# shared helpers\n")
    (folder / "views.py").write_text("raise SystemExit('must not run')\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file.txt").write_text("not a folder\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench started a benchmark before checking its output paths")

    monkeypatch.setattr(run, "_gpu_missing", lambda: None)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    path = tmp_path / where
    assert run.main(["--dir", str(folder), option, str(path)]) == 2
    expected = f"benchmarks/run.py: {option} {path} cannot be written: {reason.format(tmp=tmp_path)}.\n"
    assert capsys.readouterr().err == expected
    assert (tmp_path / "a-file.txt").read_text() == "not a folder\n"


_VIEWS_LIKE = {
    "ops": {
        "as_torch() first": {"median_us": 2.0, "p10_us": 1.9, "p90_us": 2.2},
        "torch.as_tensor(cupy)": {"median_us": 8.0, "p10_us": 7.5, "p90_us": 9.0},
    },
    "checks": [
        {"check": "as_torch() first vs torch.as_tensor(cupy)", "value": "ratio 0.25", "passed": True},
        {"check": "as_torch() cached < 0.3 us", "value": "0.410 us", "passed": False},
        {"check": "from_cupy+as_torch vs torch.as_tensor(cupy)", "value": "ratio 1.40", "passed": None},
    ],
}
_FAKE_BENCHMARK = """
import json, sys
from pathlib import Path
path = Path(sys.argv[sys.argv.index("--json") + 1])
print("the full report of", __file__, "quick" if "--quick" in sys.argv else "full")
path.write_text(json.dumps({results!r}))
"""


def test_bench_rows_read_the_benchmarks_json(run: ModuleType) -> None:
    rows = run.bench_rows("views", _VIEWS_LIKE)
    assert [tuple(vars(row).values()) for row in rows] == [
        (
            "views",
            "as_torch() first vs torch.as_tensor(cupy)",
            "2.000 us",
            "8.000 us",
            "0.25",
            "ratio <= 1",
            "PASS",
        ),
        ("views", "as_torch() cached", "0.410 us", "", "", "< 0.3 us", "FAIL"),
        ("views", "from_cupy+as_torch vs torch.as_tensor(cupy)", "", "", "1.40", "", "info"),
    ]


def test_bench_rows_read_streams_checks(run: ModuleType) -> None:
    results = {
        "ordering": {"x": {"median_us": 1.0}},
        "checks": [
            {"check": "overhead: (a on A) - (a on B) <= 5 us", "value": "1.25 us", "passed": True},
            {"check": "  that overhead / (by hand)", "value": "ratio 0.31", "passed": None},
            {
                "check": "pipeline outputs equal: ordered vs synchronized",
                "value": "max diff 0",
                "passed": True,
            },
        ],
    }
    rows = run.bench_rows("streams", results)
    assert [(row.case, row.gpuimage, row.alternative, row.ratio, row.target, row.result) for row in rows] == [
        ("overhead: (a on A) - (a on B)", "1.25 us", "", "", "<= 5 us", "PASS"),
        ("  that overhead / (by hand)", "", "", "0.31", "", "info"),
        ("pipeline outputs equal: ordered vs synchronized", "max diff 0", "", "", "", "PASS"),
    ]


def test_bench_rows_read_conversions_checks(run: ModuleType) -> None:
    """benchmarks/conversions.py names its fields: case, against, GB/s of both, ratio, target."""
    check = {"case": "4K HWC->CHW uint8", "gpuimage_gbps": 2410.04, "other_gbps": 1077.0, "ratio": 2.2377}
    results = {
        "rows": [{"case": "4K HWC->CHW uint8", "library": "torch", "gbps": 1077.0}],
        "checks": [
            {**check, "against": "torch", "target": 2.0, "passed": True},
            {**check, "against": "copy", "target": 0.85, "passed": False},
            {**check, "against": "cupy", "target": None, "passed": None},
        ],
    }
    rows = run.bench_rows("conversions", results)
    assert [(row.gpuimage, row.alternative, row.ratio, row.target, row.result) for row in rows] == [
        ("2410.0 GB/s", "1077.0 GB/s (torch)", "2.24", ">= 2", "PASS"),
        ("2410.0 GB/s", "1077.0 GB/s (copy)", "2.24", ">= 0.85", "FAIL"),
        ("2410.0 GB/s", "1077.0 GB/s (cupy)", "2.24", "", "info"),
    ]
    assert {row.case for row in rows} == {"4K HWC->CHW uint8"}


def test_bench_runs_each_script_and_prints_one_table(
    run: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the GPU check answered yes: every script by glob, a progress bar, one table, the reports."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "_common.py").write_text("# shared helpers: not a benchmark\n")
    (folder / "views.py").write_text(textwrap.dedent(_FAKE_BENCHMARK.format(results=_VIEWS_LIKE)))
    (folder / "crashes.py").write_text("raise SystemExit('no device')\n")
    reports, combined = tmp_path / "reports", tmp_path / "all.json"
    monkeypatch.setattr(run, "_gpu_missing", lambda: None)

    args = ["--quick", "--dir", str(folder), "--reports", str(reports), "--json", str(combined)]
    assert run.main(args) == 1  # one benchmark did not finish
    out, err = capsys.readouterr()
    table = out.splitlines()
    assert table[0].split() == ["benchmark", "case", "gpuimage", "alternative", "ratio", "target", "result"]
    assert set(table[1]) == {"-", " "}
    cells = [re.split(r"\s{2,}", line.strip()) for line in table[2:6]]
    assert cells.pop(0) == ["crashes", f"exit code 1, no results: see {reports / 'crashes.txt'}", "ERROR"]
    assert cells[0] == [
        *("views", "as_torch() first vs torch.as_tensor(cupy)", "2.000 us", "8.000 us", "0.25"),
        *("ratio <= 1", "PASS"),
    ]
    assert cells[1] == ["views", "as_torch() cached", "0.410 us", "< 0.3 us", "FAIL"]
    assert cells[2] == ["views", "from_cupy+as_torch vs torch.as_tensor(cupy)", "1.40", "info"]
    assert "1 of 2 targets passed; 1 of 2 benchmarks finished." in out
    assert "] 0/2 crashes.py" in err
    assert "] 1/2 views.py" in err
    assert "[########################] 2/2 done" in err
    assert (reports / "views.txt").read_text().startswith("the full report of")
    assert "quick" in (reports / "views.txt").read_text()
    assert "no device" in (reports / "crashes.txt").read_text()
    saved = json.loads(combined.read_text())
    assert saved["benchmarks"] == {"views": _VIEWS_LIKE}
    assert [row["result"] for row in saved["rows"]] == ["ERROR", "PASS", "FAIL", "info"]
