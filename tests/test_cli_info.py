"""``gpuimage info`` (gpuimage/cli/info.py): the report as text and as JSON, with and without a GPU,
and a broken library reported, not raised."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cupy
import cv2
import numpy as np
import pydantic
import pytest
import torch

import gpuimage
from gpuimage.cli import info as cli_info
from gpuimage.cli import main

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

    monkeypatch.setattr(cli_info, "_probe_views", probe_views)
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
