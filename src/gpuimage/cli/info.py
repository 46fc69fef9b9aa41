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
import warnings
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from .._errors import GpuImageError

if TYPE_CHECKING:
    from cupy.cuda.runtime import CUDARuntimeError

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


# cudaError_t values that say why no GPU is reachable (CUDA's driver_types.h).
_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: no driver, or one older than the runtime
_NO_DEVICE = 100  # cudaErrorNoDevice


def _cuda_version(encoded: int) -> str:
    """A CUDA version as CUDA encodes it (``cudaDriverGetVersion``: 12040) in words: ``12.4``."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def driver_advice(library: str, runtime: str | None, driver: int | None, older_build: str) -> str:
    """Why ``library``, built with the CUDA ``runtime``, cannot use this machine's driver; what to do.

    ``driver`` is the CUDA version the driver supports, encoded (12040): 0 where no driver is
    loaded, None where it could not be read. ``older_build`` names a build of ``library`` for an
    older CUDA (``{cuda}`` and ``{major}`` are filled in with the driver's).
    """
    built = f"the CUDA {runtime} runtime {library} was built with" if runtime else f"{library}'s CUDA runtime"
    needed = f"CUDA {runtime} or newer" if runtime else "the CUDA version of its build or newer"
    if driver == 0:
        return (
            f"no NVIDIA driver is loaded here, and {built} needs one (a machine without an NVIDIA GPU, "
            f"or a container started without the driver). Run where `nvidia-smi` shows a GPU, or "
            f"install an NVIDIA driver for {needed}."
        )
    if driver is None:
        return (
            f"the NVIDIA driver is missing or older than {built}. Check it with `nvidia-smi`, which "
            f"shows the CUDA version a driver supports: {library} needs {needed}."
        )
    cuda = _cuda_version(driver)
    alternative = older_build.format(cuda=cuda, major=driver // 1000)
    return (
        f"the NVIDIA driver here supports CUDA {cuda}, older than {built}. Update the driver to one "
        f"for {needed}, or {alternative}."
    )


def _torch_failure(who: str, cuda: str, said: str) -> str:
    """Why a CUDA build of torch reaches no GPU, from what torch said (a warning or an error)."""
    old = re.search(r"driver on your system is too old \(found version (\d+)\)", said)
    if old is None and "Found no NVIDIA driver" not in said:
        return f"{who} (CUDA {cuda}) sees no GPU" + (f": {said}" if said else "")
    advice = driver_advice(
        "torch",
        cuda,
        int(old[1]) if old is not None else 0,
        "install a torch built for CUDA {cuda} or older (pytorch.org names the --index-url of each)",
    )
    return f"{who} (CUDA {cuda}) reaches no GPU: {advice}"


class _DeviceProperties(Protocol):
    """What torch.cuda.get_device_properties() returns, as far as ``info`` reads it."""

    name: str
    major: int
    minor: int
    total_memory: int  # bytes


def torch_devices() -> tuple[list[dict[str, Any]], str | None]:
    """The GPUs torch sees, or why it sees none."""
    import torch

    who, cuda = f"torch {torch.__version__}", torch.version.cuda
    if cuda is None:
        return [], f"{who} is a CPU-only build"
    # torch says why it sees no GPU in a warning ("CUDA initialization: The NVIDIA driver on your
    # system is too old"), the first time it looks, or in the RuntimeError of a later call.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = torch.cuda.is_available()
            count = torch.cuda.device_count() if available else 0
        except RuntimeError as exc:
            return [], _torch_failure(who, cuda, " ".join(str(exc).split()))
    if count == 0:
        prefix = "CUDA initialization: "  # torch's other warnings say nothing about the GPU
        said = [" ".join(str(warning.message).split()) for warning in caught]
        reason = " ".join(text.removeprefix(prefix) for text in said if text.startswith(prefix))
        return [], _torch_failure(who, cuda, reason)
    # torch leaves the properties object unannotated; these four fields are all this reads of it.
    properties_of = cast(
        "Callable[[int], _DeviceProperties]",
        torch.cuda.get_device_properties,  # pyright: ignore[reportUnknownMemberType]
    )
    devices: list[dict[str, Any]] = []
    for index in range(count):
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
        return [], _cupy_failure(exc)
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


def _cupy_failure(exc: CUDARuntimeError) -> str:
    """Why CuPy could not count the GPUs, in words: what failed, what it means, what to do."""
    import cupy

    status = exc.status
    name = str(exc).partition(":")[0]  # "cudaErrorInsufficientDriver"
    failed = f"CuPy {cupy.__version__} reaches no GPU: counting the GPUs failed with {name}"
    if status == _NO_DEVICE:
        return (
            f"{failed}, the driver finds no CUDA device. Check `nvidia-smi`, and that "
            "CUDA_VISIBLE_DEVICES does not hide the GPUs."
        )
    if status != _INSUFFICIENT_DRIVER:
        return f"{failed} ({' '.join(str(exc).split())}). Check the driver and the GPU with `nvidia-smi`."
    versions: list[int | None] = []
    for read in (cupy.cuda.runtime.runtimeGetVersion, cupy.cuda.runtime.driverGetVersion):
        try:
            versions.append(read())
        except Exception:  # the runtime library itself half-loaded: say what is known
            versions.append(None)
    runtime, driver = versions
    advice = driver_advice(
        "CuPy",
        None if runtime is None else _cuda_version(runtime),
        driver,
        "install the CuPy for CUDA {major} (pip install cupy-cuda{major}x, in place of this one)",
    )
    return f"{failed}: {advice}"


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
            devices, reason = [], f"{name} failed while listing the GPUs: {describe_exception(exc)}"
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
        print("  none reachable:", file=out)
        for reason in cuda["reasons"].values():  # each a sentence or more: one line each
            print(f"    {reason}", file=out)
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
