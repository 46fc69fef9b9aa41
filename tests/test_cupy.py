"""The CuPy spoke (``_cupy``) over fake device pointers: ``cupy.ndarray`` headers in and out, slices
and bounds, and the owner a view keeps alive.

CuPy builds array headers without touching memory (``UnownedMemory`` with an explicit device), so
this runs without a GPU. Nothing here reads or writes the (fake) device memory.
"""

from __future__ import annotations

import gc
import weakref

import cupy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import BoundsError, GpuImage, ImageSpec, StrideError
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
