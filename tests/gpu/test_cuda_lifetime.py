"""Memory stays valid while any image, view, GpuMat or DLPack consumer refers to it, and no longer.

Dangling memory is made visible by churning the caching allocators (torch's and CuPy's): a block
freed too early is handed out again and overwritten with a sentinel before the data is read back.
Release is checked with ``torch.cuda.memory_allocated()`` plus CuPy's pool, the GpuMat registry
(``held_mats()``) and the DLPack export registry returning to where they started.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import cupy
import cv2
import numpy.typing as npt
import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

import gpuimage
from gpuimage import HWC, GpuImage, Layout
from gpuimage._dlpack import _exports as dlpack_exports
from gpuimage._opencv import held_mats

from ._support import (
    assert_bits_equal,
    churn,
    cupy_bits,
    device_bytes,
    expected_bits,
    host_pattern,
    torch_bits,
)

pytestmark = pytest.mark.cuda

_SHAPE = (257, 383, 3)
"""uint8 HWC, about 295 KB: odd sizes, and blocks that torch's small pool and CuPy's pool reuse at once."""


def _make_source(kind: str, seed: int) -> tuple[GpuImage[HWC], int]:
    """An image over a fresh source of the given kind that nothing but the image refers to.

    Returns the image and the size of the source's allocation, for ``churn``.
    """
    host = host_pattern(_SHAPE, Layout.HWC, "uint8", seed)
    if kind == "empty":
        image = GpuImage.empty(*_SHAPE, "uint8", row_alignment=256)
        image.as_torch().copy_(host.as_torch())
        return image, image.nbytes
    if kind == "cupy":
        array = cupy.asarray(host.as_numpy())
        return GpuImage.from_cupy(array, layout="HWC"), array.nbytes
    tensor = host.as_torch().to("cuda")
    nbytes = tensor.untyped_storage().nbytes()
    if kind == "torch":
        return GpuImage.from_torch(tensor, layout="HWC"), nbytes
    if kind == "dlpack":
        return GpuImage.from_dlpack(tensor, layout="HWC"), nbytes
    if kind == "cai":
        return GpuImage.from_cuda_array_interface(tensor, layout="HWC"), nbytes
    raise AssertionError(kind)


def _read(view: object) -> npt.NDArray[Any]:
    if isinstance(view, torch.Tensor):
        return torch_bits(view)
    if isinstance(view, cupy.ndarray):
        return cupy_bits(view)
    assert isinstance(view, cv2.cuda.GpuMat)
    return torch_bits(GpuImage.from_gpumat(view).as_torch())


def _settle() -> None:
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()  # memory whose last uses have now finished goes back


@pytest.mark.parametrize("kept", ["torch", "cupy", "gpumat"])
@pytest.mark.parametrize("source", ["torch", "cupy", "empty", "dlpack"])
def test_the_last_view_keeps_the_memory_alive(source: str, kept: str) -> None:
    expected = expected_bits(_SHAPE, Layout.HWC, "uint8", 3)
    image, nbytes = _make_source(source, 3)
    views: dict[str, object] = {
        "torch": image.as_torch(),
        "cupy": image.as_cupy(),
        "gpumat": image.as_gpumat(),
        "dlpack": torch_from_dlpack(image),
        "cai": cupy.asarray(image),
    }
    kept_view = views.pop(kept)
    del image, views
    _settle()
    held = churn(nbytes)
    assert_bits_equal(_read(kept_view), expected, f"{kept} view of a {source} image after churn")
    del held


def test_the_end_of_a_round_trip_chain_keeps_the_memory_alive() -> None:
    expected = expected_bits(_SHAPE, Layout.HWC, "uint8", 4)
    image, nbytes = _make_source("torch", 4)
    through_cupy = GpuImage.from_cupy(image.as_cupy(), layout="HWC")
    last = GpuImage.from_gpumat(through_cupy.as_gpumat()).as_torch()
    assert last.data_ptr() == image.ptr
    del image, through_cupy
    _settle()
    held = churn(nbytes)
    assert_bits_equal(torch_bits(last), expected, "torch -> CuPy -> GpuMat -> torch, the end alone")
    del held


def test_a_gpumat_alone_keeps_its_owner() -> None:
    _settle()
    start, start_mats = device_bytes(), held_mats()
    image, nbytes = _make_source("torch", 5)
    mat = image.as_gpumat()
    del image
    _settle()
    assert held_mats() == start_mats + 1, "the mat's registry entry was dropped while the mat is held"
    assert device_bytes() >= start + nbytes, "the memory behind a held GpuMat was released"
    del mat
    _settle()
    assert held_mats() == start_mats
    assert device_bytes() == start


@pytest.mark.parametrize("source", ["torch", "cupy", "empty", "dlpack", "cai"])
def test_the_owner_is_released_once_everything_is_dropped(source: str) -> None:
    _settle()
    start, start_mats, start_exports = device_bytes(), held_mats(), len(dlpack_exports)
    image, nbytes = _make_source(source, 6)
    mat = image.as_gpumat()
    views: list[object] = [
        image.as_torch(),
        image.as_cupy(),
        torch_from_dlpack(image),
        cupy.from_dlpack(image),
        cupy.asarray(image),
        torch.as_tensor(image, device="cuda"),
        GpuImage.from_gpumat(mat).as_torch(),
        image.crop(1, 2, 3, 4).as_torch(),
    ]
    _settle()
    assert device_bytes() >= start + nbytes
    assert held_mats() >= start_mats + 1
    assert len(dlpack_exports) == start_exports + 2

    del image
    _settle()
    assert device_bytes() >= start + nbytes, "views alive, memory released"

    del views, mat
    _settle()
    assert device_bytes() == start, "the source's memory was not released"
    assert held_mats() == start_mats, "a GpuMat registry entry outlived its mat"
    assert len(dlpack_exports) == start_exports, "a DLPack export outlived its consumer"


@pytest.mark.parametrize("consumer", ["torch", "cupy", "torch, legacy capsule"])
def test_a_dlpack_consumer_keeps_the_memory_alive_after_the_image_is_dropped(consumer: str) -> None:
    _settle()
    start, start_exports = device_bytes(), len(dlpack_exports)
    expected = expected_bits(_SHAPE, Layout.HWC, "uint8", 7)
    image = GpuImage.empty(*_SHAPE, "uint8", row_alignment=256)
    image.as_torch().copy_(host_pattern(_SHAPE, Layout.HWC, "uint8", 7).as_torch())
    ptr, nbytes = image.ptr, image.nbytes
    view: torch.Tensor | cupy.ndarray
    if consumer == "torch":
        view = torch_from_dlpack(image)
    elif consumer == "cupy":
        view = cupy.from_dlpack(image)
    else:
        view = torch_from_dlpack(image.__dlpack__())
    assert len(dlpack_exports) == start_exports + 1

    del image
    _settle()
    assert device_bytes() >= start + nbytes
    held = churn(nbytes)
    assert (view.data_ptr() if isinstance(view, torch.Tensor) else view.data.ptr) == ptr
    assert_bits_equal(_read(view), expected, f"{consumer} DLPack consumer after the image was dropped")

    del held, view
    _settle()
    assert len(dlpack_exports) == start_exports, "the consumer never called the capsule's deleter"
    assert device_bytes() == start


@pytest.mark.parametrize("versioned", [True, False])
def test_an_unconsumed_capsule_releases_the_memory_when_dropped(versioned: bool) -> None:
    _settle()
    start, start_exports = device_bytes(), len(dlpack_exports)
    image = GpuImage.empty(64, 64, 4, "float32")
    nbytes = image.nbytes
    capsule = image.__dlpack__(max_version=(1, 0) if versioned else None)
    del image
    _settle()
    assert device_bytes() >= start + nbytes
    assert len(dlpack_exports) == start_exports + 1
    del capsule
    _settle()
    assert len(dlpack_exports) == start_exports
    assert device_bytes() == start


def test_ten_thousand_view_cycles_leave_memory_unchanged() -> None:
    script = Path(__file__).with_name("_memory_cycles.py")
    source_root = str(Path(gpuimage.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, str(script), "10000", "100"],
            capture_output=True,
            text=True,
            env=env,
            timeout=150,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"10,000 view cycles did not finish in {exc.timeout} s; stderr:\n{exc.stderr!r}")
    assert done.returncode == 0, (
        f"the cycle process failed (exit {done.returncode}); a faulthandler traceback here means a "
        f"hang:\n{done.stderr[-6000:]}"
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cycles"] == 10000
    assert report["end_allocated"] == report["start_allocated"], report
    assert report["peak_allocated"] == report["start_allocated"], report
    assert report["end_pool"] == report["start_pool"], report
    assert report["peak_pool"] == report["start_pool"], report
    assert report["end_mats"] == report["start_mats"], report
    assert report["peak_mats"] <= report["start_mats"] + 1, report
    assert report["images_sampled"] == 10
    assert report["images_alive_after_gc"] == 0, report


_CAPTURE_SCENARIO = """
import gc, json, weakref
import torch
import gpuimage as gi
from gpuimage import _lifetime

class Owner:
    def __init__(self, tensor):
        self.tensor = tensor

owner = Owner(torch.zeros(64, 64, 3, dtype=torch.uint8, device="cuda"))
owner_ref = weakref.ref(owner)
image = gi.GpuImage.from_pointer(
    owner.tensor.data_ptr(), gi.ImageSpec(height=64, width=64, channels=3, device="cuda:0"),
    owner=owner, stream=torch.cuda.current_stream(),
)
del owner
image.synchronize()  # nothing pending: a capture may not wait on uncaptured work
side = torch.cuda.Stream()
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph, stream=side):
    view = image.as_torch()  # noted: the capturing stream uses the memory
    result = view + 1
    del image, view  # the family dies while its stream captures
    gc.collect()
    held_during_capture = owner_ref() is not None
graph.replay()
torch.cuda.synchronize()
gc.collect()
_lifetime.pending_releases()
torch.cuda.synchronize()
print(json.dumps({
    "held_during_capture": held_during_capture,
    "replayed": int(result.sum().item()),
    "released_after": owner_ref() is None,
}))
"""


def test_an_image_that_dies_during_graph_capture_does_not_invalidate_it() -> None:
    # issue 12 review finding: the release queried the capturing stream (cudaErrorStreamCaptureInvalidated)
    source_root = str(Path(gpuimage.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", _CAPTURE_SCENARIO],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"capture failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replayed"] == 64 * 64 * 3, report
    assert report["held_during_capture"], report
    assert report["released_after"], report
