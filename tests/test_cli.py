"""The command line: ``info`` (text and JSON), ``demo``, ``bench`` (its table, and no GPU), ``stubs``."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cupy
import cv2
import numpy as np
import pydantic
import pytest
import torch

import gpuimage
from gpuimage import GpuImage, _bench, _demo, _info
from gpuimage.__main__ import main

NO_GPU = pytest.mark.skipif(
    torch.cuda.is_available() or cupy.is_available(), reason="checks what is reported without a GPU"
)
VIEWS = ["as_numpy", "as_torch", "as_cupy", "as_gpumat", "DLPack", "CAI"]


def _run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuimage", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def _find(module: str) -> object:
    """find_spec() that answers None where the parent package is missing too."""
    try:
        return importlib.util.find_spec(module)
    except ImportError:
        return None


def _info_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["info", "--json"]) == 0
    parsed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return parsed


# -- info ---------------------------------------------------------------------------------------


def test_info_json_reports_the_installed_versions(capsys: pytest.CaptureFixture[str]) -> None:
    info = _info_json(capsys)
    libraries = info["libraries"]
    assert info["gpuimage"] == gpuimage.__version__
    assert list(libraries) == ["numpy", "pydantic", "torch", "cupy", "cv2", "nvidia.nvimgcodec"]
    for module, version in (
        ("numpy", np.__version__),
        ("pydantic", pydantic.__version__),
        ("torch", torch.__version__),
        ("cupy", cupy.__version__),
        ("cv2", cv2.__version__),
    ):
        assert libraries[module]["version"] == version
        assert libraries[module]["installed"] is True
        assert libraries[module]["error"] is None
    assert libraries["cv2"]["distribution"] == "opencv-python-headless"
    assert libraries["cupy"]["distribution"].startswith("cupy-cuda")
    assert libraries["nvidia.nvimgcodec"]["installed"] is (_find("nvidia.nvimgcodec") is not None)


@pytest.mark.parametrize(
    ("count", "build_line", "built", "detail"),
    [
        (
            3,
            "  NVIDIA CUDA:  YES (ver 13.0, CUFFT CUBLAS)",
            True,
            "3 CUDA device(s): cv2.cuda functions run on GpuMats",
        ),
        (0, "  NVIDIA CUDA:  YES (ver 13.0, CUFFT CUBLAS)", True, "built with CUDA, but it sees no device"),
        (
            0,
            "  NVIDIA CUDA:  NO",
            False,
            "built without CUDA: GpuMat headers work, cv2.cuda functions raise or abort",
        ),
    ],
    ids=["three-devices", "cuda-build-no-device", "pypi-build"],
)
def test_info_reports_opencvs_own_cuda_count(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    build_line: str,
    built: bool,
    detail: str,
) -> None:
    """The count and the build flag are OpenCV's answers, and the view probes are told whether
    OpenCV has CUDA (the probes themselves are replaced: a patched count must never reach a
    cv2.cuda call that aborts on a build without CUDA)."""
    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: count)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: f"General configuration\n{build_line}\n")
    told: list[bool] = []

    def probe_views(gpu_via: str | None, opencv_has_cuda: bool) -> dict[str, Any]:
        told.append(opencv_has_cuda)
        view = {"works": True, "detail": None}
        return {"host": {"as_numpy": view}, "device": {"as_torch": view}}

    monkeypatch.setattr(_info, "_probe_views", probe_views)
    opencv = _info_json(capsys)["opencv_cuda"]
    assert opencv == {"device_count": count, "built_with_cuda": built, "detail": detail}
    assert told == [count > 0]
    assert main(["info"]) == 0
    assert (
        f"  cv2.cuda.getCudaEnabledDeviceCount() = {count}: {detail}" in capsys.readouterr().out.splitlines()
    )


@NO_GPU
def test_info_json_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    info = _info_json(capsys)
    cuda = info["cuda"]
    assert cuda["via"] is None
    assert cuda["devices"] == []
    if torch.version.cuda is None:
        assert cuda["reasons"]["torch"] == f"torch {torch.__version__} is a CPU-only build"
    assert cuda["reasons"]["cupy"].startswith(f"CuPy {cupy.__version__}")

    host, device = info["views"]["host"], info["views"]["device"]
    assert list(host) == VIEWS
    assert list(device) == VIEWS
    assert {name for name, view in host.items() if view["works"]} == {"as_numpy", "as_torch", "DLPack"}
    assert host["as_cupy"]["detail"].startswith("as_cupy(): the image is in host memory")
    assert host["as_gpumat"]["detail"].startswith("as_gpumat(): the image is in host memory")
    assert host["CAI"]["detail"].startswith("__cuda_array_interface__: the image is in host memory")
    for view in device.values():
        assert view["works"] is False
        assert view["detail"].startswith("GpuImage.empty(device='cuda:0'): allocating GPU memory needs")


@NO_GPU
def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"gpuimage {gpuimage.__version__} (Python ")
    assert f"  torch              {torch.__version__} (torch)" in lines
    assert f"  cv2                {cv2.__version__} (opencv-python-headless)" in lines
    nvimgcodec = next(line for line in lines if line.startswith("  nvidia.nvimgcodec  "))
    assert (nvimgcodec == "  nvidia.nvimgcodec  not installed") is (_find("nvidia.nvimgcodec") is None)
    assert any(line.startswith("  none reachable: ") for line in lines)
    assert any(line.startswith("  cv2.cuda.getCudaEnabledDeviceCount() = 0: ") for line in lines)
    host = lines[lines.index("views of a host image (cpu)") + 1 :]
    assert host[:2] == ["  as_numpy   yes", "  as_torch   yes: a CPU tensor"]
    assert host[2].startswith("  as_cupy    no: as_cupy(): the image is in host memory")
    device = lines[lines.index("views of a device image (cuda:0)") + 1]
    assert device.startswith("  none: GpuImage.empty(device='cuda:0')")


def test_info_reports_a_broken_library_and_carries_on(tmp_path: Path) -> None:
    """A CuPy that fails to import (say, a missing libcudart) is a line of the report, not a crash."""
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise OSError('libcudart.so.13: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = _run_module("info", "--json", env=env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["libraries"]["cupy"]["installed"] is True
    assert info["libraries"]["cupy"]["error"] == "OSError: libcudart.so.13: cannot open shared object file"
    if info["cuda"]["via"] is None:
        assert info["cuda"]["reasons"]["cupy"] == info["libraries"]["cupy"]["error"]


# -- demo, usage --------------------------------------------------------------------------------


def _broken_packages(tmp_path: Path, errors: dict[str, str]) -> dict[str, str]:
    """An environment in which each named package raises the given error on import."""
    for package, raise_line in errors.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(raise_line + "\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_demo_runs() -> None:
    result = _run_module("demo")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(("Host path (no GPU here):", "GPU path: "))
    assert "same memory" in result.stdout
    assert "skipped" not in result.stdout  # torch, CuPy and OpenCV all import here


def test_demo_with_a_broken_torch_shows_the_other_views(tmp_path: Path) -> None:
    """torch whose import raises OSError (a missing libtorch_cuda.so): its rows say so, the rest run."""
    env = _broken_packages(
        tmp_path, {"torch": "raise OSError('libtorch_cuda.so: cannot open shared object file')"}
    )
    result = _run_module("demo", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    broken = "skipped: torch fails to import (OSError: libtorch_cuda.so: cannot open shared object file)"
    assert any(line.startswith("  as_torch() ") and line.endswith(broken) for line in lines)
    assert any(
        line.startswith("  torch.utils.dlpack.from_dlpack(image) ") and line.endswith(broken)
        for line in lines
    )
    numpy_row = next(line for line in lines if line.startswith("  numpy.from_dlpack(image) "))
    assert numpy_row.endswith("same memory")


def test_demo_exits_1_when_no_view_can_be_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise MemoryError("no host memory left")

    monkeypatch.setattr(_demo, "_gpu_via", lambda unavailable: None)
    monkeypatch.setattr(GpuImage, "from_numpy", refuse)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "gpuimage demo: the host path could not run: MemoryError: no host memory left",
        "gpuimage demo: no view of the image could be shown; see the reasons above.",
    ]


@pytest.mark.cuda
def test_demo_gpu_path_without_cupy_and_opencv(tmp_path: Path) -> None:
    """On a GPU with CuPy and OpenCV both failing to import: their rows say why, torch's rows run."""
    env = _broken_packages(
        tmp_path,
        {
            "cupy": "raise ImportError('libcudart.so.13: not found')",
            "cv2": "raise ImportError('libGL.so.1: not found')",
        },
    )
    result = _run_module("demo", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("GPU path: ")
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert rows["as_torch()"].endswith("same memory")
    assert rows["as_cupy()"].endswith(
        "skipped: cupy fails to import (ImportError: libcudart.so.13: not found)"
    )
    assert rows["as_gpumat()"].endswith("skipped: cv2 fails to import (ImportError: libGL.so.1: not found)")


def test_unknown_command_exits_2_with_usage() -> None:
    result = _run_module("frobnicate")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: gpuimage ")
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_no_command_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: gpuimage " in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("info", "demo", "bench", "stubs"):
        assert command in out


def test_console_script_entry_point() -> None:
    entries = importlib.metadata.entry_points(group="console_scripts", name="gpuimage")
    if not entries:
        pytest.skip("gpuimage is not installed here (only on PYTHONPATH): no console script to test")
    (entry,) = entries
    assert entry.value == "gpuimage.__main__:main"
    assert entry.load() is main


# -- bench --------------------------------------------------------------------------------------


@NO_GPU
def test_bench_without_a_gpu_runs_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench started a benchmark on a machine without a GPU")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpuimage bench: no CUDA GPU is reachable (")
    assert out.rstrip().endswith("none was run.")


def test_bench_without_the_benchmarks_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no benchmarks found in {tmp_path}" in err
    assert "benchmarks/ folder of gpuimage's source repository" in err


def test_bench_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 when every benchmark finished, even if some targets FAIL" in help_text
    assert "1 when a benchmark script crashed (an ERROR row)" in help_text
    assert (
        "2 for a usage error (an unwritable --reports or --json path) or when no benchmarks were found"
        in (help_text)
    )


def test_bench_with_a_broken_torch_reports_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError("libtorch_cuda.so: cannot open shared object file")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench started a benchmark without a usable torch")

    monkeypatch.setattr(_bench, "torch_devices", broken)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert main(["bench", "--quick"]) == 0
    assert capsys.readouterr().out == (
        "gpuimage bench: no CUDA GPU is reachable (torch fails to import or to query CUDA: OSError: "
        "libtorch_cuda.so: cannot open shared object file); the benchmarks need one, none was run.\n"
    )


def test_bench_finds_the_source_trees_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./benchmarks here: only the source tree can be found
    folder = _bench._find_benchmarks(None)
    assert folder is not None
    assert folder == Path(__file__).resolve().parents[1] / "benchmarks"
    assert {"views.py", "streams.py"} <= {path.name for path in folder.glob("*.py")}


def test_bench_prefers_the_source_tree_over_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "_common.py").write_text("import gpuimage\n")
    monkeypatch.chdir(tmp_path)
    assert _bench._find_benchmarks(None) == Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_never_runs_another_projects_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a source checkout, ./benchmarks is used only if its _common.py imports gpuimage."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "_common.py").write_text("import numpy  # another project's helpers\n")
    (folder / "theirs.py").write_text("raise SystemExit('another project')\n")
    monkeypatch.setattr(_bench, "_source_tree_benchmarks", lambda: tmp_path / "installed" / "benchmarks")
    monkeypatch.chdir(tmp_path)
    assert _bench._find_benchmarks(None) is None
    assert main(["bench"]) == 2
    assert "no benchmarks found in the source tree or ./benchmarks" in capsys.readouterr().err

    (folder / "_common.py").write_text("from __future__ import annotations\n\nimport gpuimage\n")
    assert _bench._find_benchmarks(None) == tmp_path / "benchmarks"


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

    monkeypatch.setattr(_bench, "_gpu_missing", lambda: None)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    path = tmp_path / where
    assert main(["bench", "--dir", str(folder), option, str(path)]) == 2
    expected = f"gpuimage bench: {option} {path} cannot be written: {reason.format(tmp=tmp_path)}.\n"
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


def test_bench_rows_read_the_benchmarks_json() -> None:
    rows = _bench.bench_rows("views", _VIEWS_LIKE)
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


def test_bench_rows_read_streams_checks() -> None:
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
    rows = _bench.bench_rows("streams", results)
    assert [(row.case, row.gpuimage, row.alternative, row.ratio, row.target, row.result) for row in rows] == [
        ("overhead: (a on A) - (a on B)", "1.25 us", "", "", "<= 5 us", "PASS"),
        ("  that overhead / (by hand)", "", "", "0.31", "", "info"),
        ("pipeline outputs equal: ordered vs synchronized", "max diff 0", "", "", "", "PASS"),
    ]


def test_bench_rows_read_conversions_checks() -> None:
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
    rows = _bench.bench_rows("conversions", results)
    assert [(row.gpuimage, row.alternative, row.ratio, row.target, row.result) for row in rows] == [
        ("2410.0 GB/s", "1077.0 GB/s (torch)", "2.24", ">= 2", "PASS"),
        ("2410.0 GB/s", "1077.0 GB/s (copy)", "2.24", ">= 0.85", "FAIL"),
        ("2410.0 GB/s", "1077.0 GB/s (cupy)", "2.24", "", "info"),
    ]
    assert {row.case for row in rows} == {"4K HWC->CHW uint8"}


def test_bench_runs_each_script_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the GPU check answered yes: every script by glob, a progress bar, one table, the reports."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "_common.py").write_text("# shared helpers: not a benchmark\n")
    (folder / "views.py").write_text(textwrap.dedent(_FAKE_BENCHMARK.format(results=_VIEWS_LIKE)))
    (folder / "crashes.py").write_text("raise SystemExit('no device')\n")
    reports, combined = tmp_path / "reports", tmp_path / "all.json"
    monkeypatch.setattr(_bench, "_gpu_missing", lambda: None)

    args = ["bench", "--quick", "--dir", str(folder), "--reports", str(reports), "--json", str(combined)]
    assert main(args) == 1  # one benchmark did not finish
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


# -- stubs --------------------------------------------------------------------------------------


def test_stubs_opencv_writes_them_and_says_how_to_use_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stubs", "opencv", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote OpenCV stubs: {tmp_path / 'cv2'}"
    assert f'  mypy:    [tool.mypy] mypy_path = "{tmp_path}"' in out
    assert f'  pyright: [tool.pyright] stubPath = "{tmp_path}"' in out
    assert "def __dlpack__(" in (tmp_path / "cv2" / "cuda" / "__init__.pyi").read_text()


def test_stubs_into_a_file_is_a_message_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "stubs.txt"
    target.write_text("a file, not a folder\n")
    assert main(["stubs", "opencv", str(target)]) == 1
    assert capsys.readouterr().err == (
        f"gpuimage stubs: cannot write the stubs into {target}: it is a file, not a folder.\n"
    )
    assert target.read_text() == "a file, not a folder\n"


def test_stubs_under_a_file_is_a_message_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stubs.txt").write_text("a file, not a folder\n")
    target = tmp_path / "stubs.txt" / "typings"
    assert main(["stubs", "opencv", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gpuimage stubs: cannot write the stubs into {target}: Not a directory")
    assert "Traceback" not in err


def test_stubs_refusal_is_a_message_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cv2").mkdir()
    (tmp_path / "cv2" / "__init__.pyi").write_text("# someone else's stubs\n")
    assert main(["stubs", "opencv", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("gpuimage stubs: ")
    assert (tmp_path / "cv2" / "__init__.pyi").read_text() == "# someone else's stubs\n"
