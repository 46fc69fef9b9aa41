"""``gpuimage info``: installed backends and versions, CUDA devices, OpenCV's CUDA, and which views work.

Every optional library is imported inside a probe, and a missing or broken one is reported, never
raised: ``gpuimage info`` is what a user runs when something does not import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import platform
import re
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol, cast

from .._errors import GpuImageError

__all__ = ["collect_info", "describe_exception", "print_info", "run", "torch_devices"]

# The libraries ``info`` reports, by import name (nvImageCodec lives in the ``nvidia`` namespace).
_LIBRARIES = ("numpy", "pydantic", "torch", "cupy", "cv2", "nvidia.nvimgcodec")

# -- info ---------------------------------------------------------------------------------------


def describe_exception(exc: BaseException) -> str:
    """An exception as one line; gpuimage's own messages already name the operation."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, GpuImageError) else f"{type(exc).__name__}: {text}"


def _distribution(module: str) -> str | None:
    """The installed distribution that provides ``module`` (``cv2`` -> ``opencv-python-headless``)."""
    top, _, sub = module.partition(".")
    names = importlib.metadata.packages_distributions().get(top, [])
    if sub:  # a namespace package (``nvidia``) is shared by many distributions: pick the one named for it
        names = [name for name in names if sub in name.replace("-", "").replace("_", "").lower()]
    return names[0] if names else None


def _library(module: str) -> dict[str, Any]:
    """Whether ``module`` is installed and imports, and its version; never raises."""
    record: dict[str, Any] = {"installed": False, "distribution": None, "version": None, "error": None}
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # the parent of a dotted name is missing
        found = False
    if not found:
        return record
    record["installed"] = True
    record["distribution"] = distribution = _distribution(module)
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # a broken install raises anything (OSError for a missing .so, ...)
        record["error"] = describe_exception(exc)
        imported = None
    version: object = getattr(imported, "__version__", None)
    if not isinstance(version, str) and distribution is not None:
        version = importlib.metadata.version(distribution)
    record["version"] = version if isinstance(version, str) else None
    return record


class _DeviceProperties(Protocol):
    """What torch.cuda.get_device_properties() returns, as far as ``info`` reads it."""

    name: str
    major: int
    minor: int
    total_memory: int  # bytes


def torch_devices() -> tuple[list[dict[str, Any]], str | None]:
    """The GPUs torch sees, or why it sees none."""
    import torch

    if torch.version.cuda is None:
        return [], f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return [], f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    # torch leaves the properties object unannotated; these four fields are all this reads of it.
    properties_of = cast(
        "Callable[[int], _DeviceProperties]",
        torch.cuda.get_device_properties,  # pyright: ignore[reportUnknownMemberType]
    )
    devices: list[dict[str, Any]] = []
    for index in range(torch.cuda.device_count()):
        properties = properties_of(index)
        devices.append(
            {
                "index": index,
                "name": properties.name,
                "compute_capability": f"{properties.major}.{properties.minor}",
                "memory_bytes": properties.total_memory,
            }
        )
    return devices, None


def _cupy_devices() -> tuple[list[dict[str, Any]], str | None]:
    """The GPUs CuPy sees, or why it sees none."""
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        return [], f"CuPy {cupy.__version__}: {exc}"
    if count == 0:
        return [], f"CuPy {cupy.__version__} sees no GPU"
    # getDeviceProperties (a dict of cudaDeviceProp's fields) is not in gpuimage's partial CuPy stubs.
    properties_of = cast(
        "Callable[[int], dict[str, Any]]",
        getattr(cupy.cuda.runtime, "getDeviceProperties"),  # noqa: B009  # absent from the stubs
    )
    devices: list[dict[str, Any]] = []
    for index in range(count):
        properties = properties_of(index)
        name = properties["name"]
        devices.append(
            {
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "compute_capability": f"{properties['major']}.{properties['minor']}",
                "memory_bytes": int(properties["totalGlobalMem"]),
            }
        )
    return devices, None


def _cuda_devices(libraries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The GPUs reachable through torch, else CuPy; ``via`` names the library that reached them."""
    reasons: dict[str, str] = {}
    for name, probe in (("torch", torch_devices), ("cupy", _cupy_devices)):
        library = libraries[name]
        if not library["installed"] or library["error"] is not None:
            reasons[name] = f"{name} is not installed" if not library["installed"] else library["error"]
            continue
        try:
            devices, reason = probe()
        except Exception as exc:  # a driver or runtime that fails in an unexpected way
            devices, reason = [], describe_exception(exc)
        if devices:
            return {"via": name, "devices": devices, "reasons": reasons}
        reasons[name] = reason or f"{name} sees no GPU"
    return {"via": None, "devices": [], "reasons": reasons}


def _opencv_cuda(library: Mapping[str, Any]) -> dict[str, Any]:
    """OpenCV's CUDA device count, and whether the build has CUDA at all (PyPI wheels do not)."""
    if not library["installed"] or library["error"] is not None:
        return {"device_count": None, "built_with_cuda": None, "detail": library["error"] or "not installed"}
    import cv2

    # Safe on every build (0 without CUDA); unlike wrapStream() or Stream.Null() it never aborts.
    count = int(cv2.cuda.getCudaEnabledDeviceCount())
    built = re.search(r"NVIDIA CUDA:\s*YES", cv2.getBuildInformation()) is not None
    if count > 0:
        detail = f"{count} CUDA device(s): cv2.cuda functions run on GpuMats"
    elif built:
        detail = "built with CUDA, but it sees no device"
    else:
        detail = "built without CUDA: GpuMat headers work, cv2.cuda functions raise or abort"
    return {"device_count": count, "built_with_cuda": built, "detail": detail}


def _attempt(probe: Callable[[], object], note: str | None = None) -> dict[str, Any]:
    try:
        probe()
    except Exception as exc:
        return {"works": False, "detail": describe_exception(exc)}
    return {"works": True, "detail": note}


def _probe_views(gpu_via: str | None, opencv_has_cuda: bool) -> dict[str, Any]:
    """Make each view of a small host image and of a small device image; record what works and why not."""
    import numpy as np

    from .._image import GpuImage

    host = GpuImage.from_numpy(np.zeros((2, 4, 3), np.uint8), layout="HWC")
    results: dict[str, Any] = {
        "host": {
            "as_numpy": _attempt(host.as_numpy),
            "as_torch": _attempt(host.as_torch, "a CPU tensor"),
            "as_cupy": _attempt(host.as_cupy),
            "as_gpumat": _attempt(host.as_gpumat),
            "DLPack": _attempt(lambda: np.from_dlpack(host), "consumed by numpy.from_dlpack"),
            "CAI": _attempt(lambda: host.__cuda_array_interface__),
        }
    }
    try:
        device = GpuImage.empty(2, 4, 3, "uint8", device=0)
    except Exception as exc:  # no GPU, or no CUDA build of torch or CuPy: the same reason for every view
        reason = {"works": False, "detail": describe_exception(exc)}
        results["device"] = dict.fromkeys(
            ("as_numpy", "as_torch", "as_cupy", "as_gpumat", "DLPack", "CAI"), reason
        )
        return results

    def consume_dlpack() -> object:
        if gpu_via == "torch":
            import torch.utils.dlpack

            return torch.utils.dlpack.from_dlpack(device)
        import cupy

        return cupy.from_dlpack(device)

    mat_note = None if opencv_has_cuda else "a header only: this OpenCV has no CUDA to run cv2.cuda functions"
    results["device"] = {
        "as_numpy": _attempt(device.as_numpy),
        "as_torch": _attempt(device.as_torch),
        "as_cupy": _attempt(device.as_cupy),
        "as_gpumat": _attempt(device.as_gpumat, mat_note),
        "DLPack": _attempt(consume_dlpack, f"consumed by {gpu_via or 'cupy'}.from_dlpack"),
        "CAI": _attempt(lambda: device.__cuda_array_interface__, "CAI v3 with the ready stream"),
    }
    return results


def collect_info() -> dict[str, Any]:
    """Everything ``gpuimage info`` reports, as plain JSON-able data."""
    from .. import __version__

    libraries = {module: _library(module) for module in _LIBRARIES}
    cuda = _cuda_devices(libraries)
    opencv = _opencv_cuda(libraries["cv2"])
    return {
        "gpuimage": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "libraries": libraries,
        "cuda": cuda,
        "opencv_cuda": opencv,
        "views": _probe_views(cuda["via"], bool(opencv["device_count"])),
    }


def print_info(info: Mapping[str, Any], out: IO[str]) -> None:
    print(f"gpuimage {info['gpuimage']} (Python {info['python']}, {info['platform']})", file=out)
    print("\nlibraries", file=out)
    for module, library in info["libraries"].items():
        if not library["installed"]:
            status = "not installed"
        else:
            status = f"{library['version']} ({library['distribution'] or 'distribution unknown'})"
            if library["error"] is not None:
                status += f", fails to import: {library['error']}"
        print(f"  {module:<19}{status}", file=out)
    cuda = info["cuda"]
    print("\nCUDA devices", file=out)
    for device in cuda["devices"]:
        memory = device["memory_bytes"] / 2**30
        print(
            f"  cuda:{device['index']}  {device['name']}, compute capability {device['compute_capability']}, "
            f"{memory:.1f} GiB (seen through {cuda['via']})",
            file=out,
        )
    if not cuda["devices"]:
        print("  none reachable: " + "; ".join(cuda["reasons"].values()), file=out)
    opencv = info["opencv_cuda"]
    count = "n/a" if opencv["device_count"] is None else opencv["device_count"]
    print(f"\nOpenCV CUDA\n  cv2.cuda.getCudaEnabledDeviceCount() = {count}: {opencv['detail']}", file=out)
    for kind, title in (("host", "a host image (cpu)"), ("device", "a device image (cuda:0)")):
        print(f"\nviews of {title}", file=out)
        views: dict[str, dict[str, Any]] = info["views"][kind]
        outcomes = list(views.values())
        if not outcomes[0]["works"] and all(outcome == outcomes[0] for outcome in outcomes):
            print(f"  none: {outcomes[0]['detail']}", file=out)  # one reason for all, such as no GPU
            continue
        for name, result in views.items():
            answer = "yes" if result["works"] else "no"
            detail = f": {result['detail']}" if result["detail"] else ""
            print(f"  {name:<11}{answer}{detail}", file=out)


def run(*, as_json: bool) -> int:
    """``gpuimage info [--json]``: print the report to stdout; returns the exit status (always 0)."""
    info = collect_info()
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print_info(info, sys.stdout)
    return 0
