"""Device images over fake pointers: CuPy and GpuMat headers, CAI, and their round trips.

CuPy and OpenCV build array headers without touching memory, so this runs without a GPU. Nothing
here reads or writes the (fake) device memory.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import cupy
import cv2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import (
    BoundsError,
    Device,
    DeviceError,
    DTypeError,
    GpuImage,
    ImageSpec,
    InteropError,
    Layout,
    LayoutError,
    SpecError,
    StrideError,
)
from gpuimage._opencv import DEPTHS, held_mats
from gpuimage.strategies import crops, image_specs

FAKE = 0x7F00_0000_0000  # 256-byte aligned, never dereferenced


class Owner:
    """Stands for whatever owns the fake memory; weak-referenceable so tests can see it die."""


def _fake(spec: ImageSpec, owner: object = None) -> GpuImage:
    return GpuImage.from_pointer(FAKE, spec, owner=owner)


@given(image_specs(device=0, dtypes=("uint8", "int16", "float32", "float64", "bool")), st.data())
def test_cupy_header_matches_the_image_and_round_trips(spec: ImageSpec, data: st.DataObject) -> None:
    image = _fake(spec).crop(*data.draw(crops(spec)))
    array = image.as_cupy()
    assert (array.data.ptr, array.shape, array.strides) == (image.ptr, image.shape, image.strides)
    assert array.dtype == spec.dtype
    assert array.device.id == 0
    back = GpuImage.from_cupy(array, layout=image.layout)
    assert (back.ptr, back.shape, back.strides, back.dtype) == (
        image.ptr,
        image.shape,
        image.strides,
        image.dtype,
    )


@given(image_specs(device=0, layouts=(Layout.HWC,), dtypes=tuple(DEPTHS)), st.data())
def test_gpumat_header_matches_the_image_and_round_trips(spec: ImageSpec, data: st.DataObject) -> None:
    image = _fake(spec).crop(*data.draw(crops(spec))).expect("HWC")
    mat = image.as_gpumat()
    assert mat.cudaPtr() == image.ptr
    assert mat.size() == (image.width, image.height)
    assert mat.channels() == image.channels
    assert mat.type() == cv2.CV_MAKETYPE(DEPTHS[image.spec.dtype], image.channels)
    if image.height > 1:
        assert mat.step == image.row_pitch
    back = GpuImage.from_gpumat(mat)
    assert (back.ptr, back.shape, back.dtype) == (image.ptr, image.shape, image.dtype)
    if image.height > 1:
        assert back.strides == image.strides


def test_full_round_trip_cupy_gpumat_cai_dlpack_keeps_pointer_shape_strides() -> None:
    spec = ImageSpec.packed(height=6, width=10, channels=3, dtype="float32", row_alignment=256)
    start = _fake(spec).crop(1, 2, 7, 3)
    via_cupy = GpuImage.from_cupy(start.as_cupy(), layout="HWC")
    via_gpumat = GpuImage.from_gpumat(via_cupy.as_gpumat())
    via_cai = GpuImage.from_cuda_array_interface(via_gpumat, layout="HWC")
    for image in (via_cupy, via_gpumat, via_cai):
        assert (image.ptr, image.shape, image.strides, image.dtype) == (
            start.ptr,
            start.shape,
            start.strides,
            start.dtype,
        )


def test_cuda_array_interface_v3() -> None:
    spec = ImageSpec(height=4, width=5, channels=2, dtype="uint16", layout="CHW")
    interface = GpuImage.from_pointer(FAKE, spec, stream=7, readonly=True).__cuda_array_interface__
    assert interface == {
        "shape": (2, 4, 5),
        "typestr": "<u2",
        "data": (FAKE, True),
        "strides": (40, 10, 2),
        "version": 3,
        "stream": 7,
    }
    assert GpuImage.from_pointer(FAKE, spec, stream=0).__cuda_array_interface__["stream"] == 1
    assert GpuImage.from_pointer(FAKE, spec).__cuda_array_interface__["stream"] is None


def test_bfloat16_has_no_cai_or_cupy_view() -> None:
    image = _fake(ImageSpec(height=2, width=2, dtype="bfloat16"))
    with pytest.raises(DTypeError, match="bfloat16"):
        _ = image.__cuda_array_interface__
    with pytest.raises(DTypeError, match="bfloat16"):
        image.as_cupy()


class FakeCai:
    def __init__(self, **interface: object) -> None:
        self.__cuda_array_interface__ = {
            "shape": (4, 5, 3),
            "typestr": "|u1",
            "data": (FAKE, False),
            "version": 3,
            **interface,
        }


def test_cai_import_reads_contiguous_default_strides_and_stream() -> None:
    image = GpuImage.from_cuda_array_interface(FakeCai(stream=5), layout="HWC", device=1)
    assert image.strides == (15, 3, 1)
    assert image.stream == 5
    assert image.device.index == 1
    assert GpuImage.from_cuda_array_interface(FakeCai(stream=5), layout="HWC", stream=9).stream == 9


@pytest.mark.parametrize(
    ("interface", "error", "message"),
    [
        ({"version": 4}, InteropError, "version"),
        ({"mask": object()}, InteropError, "mask"),
        ({"data": (0, False)}, SpecError, "non-NULL"),
        ({"data": (FAKE + 1, False), "typestr": "<f4"}, SpecError, "aligned"),
        ({"data": "nope"}, InteropError, "data"),
        ({"shape": (4, "5", 3)}, InteropError, "shape"),
        ({"typestr": "<c8"}, DTypeError, "typestr"),
        ({"stream": 0}, InteropError, "0 is forbidden"),
        ({"strides": (2, 3, 1)}, SpecError, "overlap"),
        ({"shape": (4, 5, 3, 1)}, LayoutError, "2-D"),
    ],
    ids=["version", "mask", "null", "misaligned", "data", "shape", "dtype", "stream0", "overlap", "rank"],
)
def test_bad_cai_is_rejected(interface: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        GpuImage.from_cuda_array_interface(FakeCai(**interface), layout="HWC")


def test_not_a_cai_object() -> None:
    with pytest.raises(InteropError, match="no __cuda_array_interface__"):
        GpuImage.from_cuda_array_interface(object(), layout="HWC")


def test_cupy_slices_and_bounds() -> None:
    memory = cupy.cuda.UnownedMemory(FAKE, 4 * 8 * 3, None, device_id=0)
    array = cupy.ndarray((4, 8, 3), cupy.uint8, cupy.cuda.MemoryPointer(memory, 0))
    sliced = array[1:3, 2:7]
    image = GpuImage.from_cupy(sliced, layout="HWC")
    assert image.ptr == FAKE + 24 + 6
    assert image.strides == (24, 3, 1)
    interleaved_as_planar = GpuImage.from_cupy(array.transpose(2, 0, 1), layout="CHW")
    assert interleaved_as_planar.strides == (1, 24, 3)
    planes = cupy.ndarray((3, 4, 8), cupy.uint8, cupy.cuda.MemoryPointer(memory, 0))
    planar_as_interleaved = GpuImage.from_cupy(planes.transpose(1, 2, 0), layout="HWC")
    assert planar_as_interleaved.strides == (8, 1, 32)
    with pytest.raises(StrideError, match="interleaved pixels"):
        planar_as_interleaved.as_gpumat()
    past_the_end = cupy.ndarray((5, 8, 3), cupy.uint8, cupy.cuda.MemoryPointer(memory, 0))
    with pytest.raises(BoundsError, match="outside"):
        GpuImage.from_cupy(past_the_end, layout="HWC")


def test_gpumat_refusals() -> None:
    chw = _fake(ImageSpec(height=2, width=2, channels=3, layout="CHW"))
    with pytest.raises(LayoutError, match="one interleaved plane"):
        chw.as_gpumat()  # type: ignore[misc]  # also a static error: as_gpumat needs GpuImage[HWC]
    with pytest.raises(LayoutError, match="1 to 4 channels"):
        _fake(ImageSpec(height=2, width=2, channels=5)).expect("HWC").as_gpumat()
    with pytest.raises(DTypeError, match="no bfloat16 depth"):
        _fake(ImageSpec(height=2, width=2, dtype="bfloat16")).expect("HWC").as_gpumat()
    transposed = ImageSpec(height=3, width=4, row_pitch=1, pixel_stride=3)
    with pytest.raises(StrideError, match="interleaved pixels"):
        _fake(transposed).expect("HWC").as_gpumat()
    host = GpuImage.empty(2, 2, device="cpu")
    with pytest.raises(DeviceError):
        host.as_gpumat()


def test_gpumat_import_refusals() -> None:
    with pytest.raises(InteropError, match="GpuMat"):
        GpuImage.from_gpumat(object())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="empty"):
        GpuImage.from_gpumat(cv2.cuda.GpuMat())


@pytest.mark.parametrize("device", ["cpu", "CPU", Device("cpu")], ids=["text", "upper", "device"])
def test_gpumat_labelled_host_memory_is_refused(device: object) -> None:
    # issue 11, defect 2: a GpuMat is always device memory; labelled "cpu", a read segfaulted
    mat = _fake(ImageSpec(height=2, width=3, channels=3)).expect("HWC").as_gpumat()
    with pytest.raises(DeviceError, match="a GpuMat always holds device memory"):
        GpuImage.from_gpumat(mat, device=device)  # type: ignore[arg-type]
    assert GpuImage.from_gpumat(mat, device="cuda:1").device == Device("cuda", 1)


def test_gpumat_keeps_the_owner_alive_while_referenced() -> None:
    owner = Owner()
    alive = weakref.ref(owner)
    start = held_mats()
    image = _fake(ImageSpec(height=4, width=4, channels=3), owner).expect("HWC")
    mat = image.as_gpumat()
    assert image.as_gpumat() is mat
    del owner, image
    gc.collect()
    assert alive() is not None, "the mat is still referenced, so its memory must be"
    assert held_mats() == start + 1
    assert GpuImage.from_gpumat(mat).ptr == FAKE
    del mat
    gc.collect()
    assert alive() is None
    assert held_mats() == start


def test_cupy_view_keeps_the_owner_alive() -> None:
    owner = Owner()
    alive = weakref.ref(owner)
    array = _fake(ImageSpec(height=4, width=4, channels=3), owner).as_cupy()
    del owner
    gc.collect()
    assert alive() is not None
    assert array.data.ptr == FAKE
    del array
    gc.collect()
    assert alive() is None


def test_device_of_views_follows_the_image() -> None:
    image = _fake(ImageSpec(height=2, width=2, device="cuda:1"))
    assert image.as_cupy().device.id == 1
    assert image.__dlpack_device__() == (2, 1)


def test_registry_survives_collections_during_its_own_sweeps() -> None:
    """A gc callback that fires inside a sweep must not deadlock on the registry's lock."""
    code = textwrap.dedent(
        """
        import gc
        from gpuimage import GpuImage, ImageSpec
        from gpuimage._opencv import held_mats
        gc.set_threshold(1, 1, 1)  # collect on nearly every allocation
        spec = ImageSpec(height=2, width=2, channels=3)
        mats = [GpuImage.from_pointer(0x7F0000000000, spec).expect("HWC").as_gpumat() for _ in range(3000)]
        assert held_mats() == 3000
        del mats
        gc.collect()
        print(held_mats())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
