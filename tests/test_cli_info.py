"""``gpuimage info`` (gpuimage/cli/info.py): the report as text and as JSON, with and without a GPU,
and a broken library reported, not raised."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
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
    reasons = lines[lines.index("  none reachable:") + 1 : lines.index("OpenCV CUDA") - 1]
    assert [reason.startswith("    ") for reason in reasons] == [True, True]  # torch's, then CuPy's
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


# -- why no GPU is reachable, in words (issue 14: info passed on cudaErrorInsufficientDriver raw) --

NO_DRIVER = (
    "CuPy {cupy} reaches no GPU: counting the GPUs failed with cudaErrorInsufficientDriver: no NVIDIA "
    "driver is loaded here, and the CUDA 13.2 runtime CuPy was built with needs one (a machine without "
    "an NVIDIA GPU, or a container started without the driver). Run where `nvidia-smi` shows a GPU, or "
    "install an NVIDIA driver for CUDA 13.2 or newer."
)
OLD_DRIVER = (
    "CuPy {cupy} reaches no GPU: counting the GPUs failed with cudaErrorInsufficientDriver: the NVIDIA "
    "driver here supports CUDA 12.4, older than the CUDA 13.2 runtime CuPy was built with. Update the "
    "driver to one for CUDA 13.2 or newer, or install the CuPy for CUDA 12 (pip install cupy-cuda12x, in "
    "place of this one)."
)
UNREADABLE_DRIVER = (
    "CuPy {cupy} reaches no GPU: counting the GPUs failed with cudaErrorInsufficientDriver: the NVIDIA "
    "driver is missing or older than the CUDA 13.2 runtime CuPy was built with. Check it with "
    "`nvidia-smi`, which shows the CUDA version a driver supports: CuPy needs CUDA 13.2 or newer."
)
NO_DEVICE = (
    "CuPy {cupy} reaches no GPU: counting the GPUs failed with cudaErrorNoDevice, the driver finds no "
    "CUDA device. Check `nvidia-smi`, and that CUDA_VISIBLE_DEVICES does not hide the GPUs."
)
OTHER = (
    "CuPy {cupy} reaches no GPU: counting the GPUs failed with cudaErrorUnknown (cudaErrorUnknown: "
    "unknown error). Check the driver and the GPU with `nvidia-smi`."
)


def _unreadable() -> int:
    raise cupy.cuda.runtime.CUDARuntimeError(35)


@pytest.mark.parametrize(
    ("status", "driver_version", "expected"),
    [
        (35, lambda: 0, NO_DRIVER),
        (35, lambda: 12040, OLD_DRIVER),
        (35, _unreadable, UNREADABLE_DRIVER),
        (100, lambda: 0, NO_DEVICE),
        (999, lambda: 0, OTHER),
    ],
    ids=["no-driver", "old-driver", "driver-unreadable", "no-device", "other"],
)
def test_a_cupy_runtime_error_is_reported_in_words(
    monkeypatch: pytest.MonkeyPatch, status: int, driver_version: Callable[[], int], expected: str
) -> None:
    """A fake CuPy runtime that fails as a machine without a (recent) driver does; no GPU needed."""

    def get_device_count() -> int:
        raise cupy.cuda.runtime.CUDARuntimeError(status)

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", get_device_count)
    monkeypatch.setattr(cupy.cuda.runtime, "runtimeGetVersion", lambda: 13020)
    monkeypatch.setattr(cupy.cuda.runtime, "driverGetVersion", driver_version)
    assert cli_info._cupy_devices() == ([], expected.format(cupy=cupy.__version__))


def test_info_prints_cupys_driver_error_in_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def get_device_count() -> int:
        raise cupy.cuda.runtime.CUDARuntimeError(35)

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", get_device_count)
    monkeypatch.setattr(cupy.cuda.runtime, "runtimeGetVersion", lambda: 13020)
    monkeypatch.setattr(cupy.cuda.runtime, "driverGetVersion", lambda: 0)
    monkeypatch.setattr(cli_info, "torch_devices", lambda: ([], "torch 9.9 is a CPU-only build"))
    view = {"works": True, "detail": None}  # the view probes are not what this test is about
    monkeypatch.setattr(
        cli_info,
        "_probe_views",
        lambda gpu_via, has_cuda: {"host": {"as_numpy": view}, "device": {"CAI": view}},
    )
    info = _info_json(capsys)
    assert info["cuda"]["reasons"] == {
        "torch": "torch 9.9 is a CPU-only build",
        "cupy": NO_DRIVER.format(cupy=cupy.__version__),
    }
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"    {NO_DRIVER.format(cupy=cupy.__version__)}" in out.splitlines()
    assert "CUDA driver version is insufficient for CUDA runtime version" not in out  # CuPy's own words


def _fake_cuda_torch(monkeypatch: pytest.MonkeyPatch, is_available: Callable[[], bool]) -> None:
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", is_available)


def _warns(message: str) -> Callable[[], bool]:
    def is_available() -> bool:  # what torch does on its first look at a machine it cannot use
        warnings.warn(message, UserWarning, stacklevel=1)
        return False

    return is_available


def _raises(message: str) -> Callable[[], int]:
    def device_count() -> int:
        raise RuntimeError(message)

    return device_count


TORCH = f"torch {torch.__version__} (CUDA 13.0)"


@pytest.mark.parametrize(
    ("is_available", "device_count", "expected"),
    [
        (
            _warns(
                "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                "Please update your GPU driver by downloading and installing a new version from the URL: "
                "http://www.nvidia.com/Download/index.aspx"
            ),
            None,
            f"{TORCH} reaches no GPU: the NVIDIA driver here supports CUDA 11.4, older than the CUDA 13.0 "
            "runtime torch was built with. Update the driver to one for CUDA 13.0 or newer, or install a "
            "torch built for CUDA 11.4 or older (pytorch.org names the --index-url of each).",
        ),
        (
            lambda: True,
            _raises(
                "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
                "installed a driver from http://www.nvidia.com/Download/index.aspx"
            ),
            f"{TORCH} reaches no GPU: no NVIDIA driver is loaded here, and the CUDA 13.0 runtime torch "
            "was built with needs one (a machine without an NVIDIA GPU, or a container started without "
            "the driver). Run where `nvidia-smi` shows a GPU, or install an NVIDIA driver for CUDA 13.0 "
            "or newer.",
        ),
        (_warns("CUDA initialization: something new"), None, f"{TORCH} sees no GPU: something new"),
        (lambda: False, None, f"{TORCH} sees no GPU"),
        (_warns("torch.cuda.something is deprecated"), None, f"{TORCH} sees no GPU"),
    ],
    ids=["old-driver-warning", "no-driver-error", "other-warning", "silent", "unrelated-warning"],
)
def test_torch_reports_why_it_sees_no_gpu_in_words(
    monkeypatch: pytest.MonkeyPatch,
    is_available: Callable[[], bool],
    device_count: Callable[[], int] | None,
    expected: str,
) -> None:
    """A CUDA build of torch on a machine it cannot use, faked; no GPU needed."""
    _fake_cuda_torch(monkeypatch, is_available)
    if device_count is not None:
        monkeypatch.setattr(torch.cuda, "device_count", device_count)
    assert cli_info.torch_devices() == ([], expected)


def test_a_probe_that_fails_unexpectedly_says_which_library_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def torch_devices() -> tuple[list[dict[str, Any]], str | None]:
        raise ValueError("an answer torch never gave before")

    monkeypatch.setattr(cli_info, "torch_devices", torch_devices)
    monkeypatch.setattr(cli_info, "_cupy_devices", lambda: ([], "CuPy sees no GPU"))
    libraries = {name: {"installed": True, "error": None} for name in ("torch", "cupy")}
    assert cli_info._cuda_devices(libraries)["reasons"] == {
        "torch": "torch failed while listing the GPUs: ValueError: an answer torch never gave before",
        "cupy": "CuPy sees no GPU",
    }
