"""Round trips between torch, CuPy, GpuMat, DLPack and the CUDA Array Interface keep the memory.

The pointer, the shape and the byte strides survive every hop unchanged (no hidden copy, no
re-packing), for packed tensors, sliced and permuted views, and pitched ``GpuImage.empty`` images.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import cupy
import numpy as np
import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import HWC, DTypeName, GpuImage, Layout, LayoutError

from ._support import TORCH_DTYPES, assert_bits_equal, cupy_bits, memory_bits, torch_bits

pytestmark = pytest.mark.cuda


def _pattern_tensor(shape: tuple[int, ...], dtype: DTypeName) -> torch.Tensor:
    """Values 0..100 (0..1 for bool) built on the host, then moved to the GPU."""
    count = int(np.prod(shape))
    values = torch.arange(count, dtype=torch.int64) * 7 % 101
    if dtype == "bool":
        values %= 2
    return values.to(TORCH_DTYPES[dtype]).reshape(shape).to("cuda")


def _byte_strides(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(s * tensor.element_size() for s in tensor.stride())


def _packed(dtype: DTypeName) -> torch.Tensor:
    return _pattern_tensor((9, 13, 3), dtype)


def _sliced(dtype: DTypeName) -> torch.Tensor:
    return _pattern_tensor((11, 17, 3), dtype)[1:8, 3:14]


def _pitched(dtype: DTypeName) -> torch.Tensor:
    image = GpuImage.empty(10, 21, 3, dtype, row_alignment=256)
    assert image.row_pitch % 256 == 0
    assert image.row_pitch > 21 * 3 * image.spec.itemsize
    assert image.ptr % 256 == 0
    tensor = image.as_torch()
    tensor.copy_(_pattern_tensor((10, 21, 3), dtype))
    return tensor


_SOURCES: dict[str, Callable[[DTypeName], torch.Tensor]] = {
    "packed": _packed,
    "sliced": _sliced,
    "pitched": _pitched,
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float16", "float32", "float64"])
@pytest.mark.parametrize("source", list(_SOURCES))
def test_torch_cupy_gpumat_torch_chain_keeps_pointer_shape_and_strides(source: str, dtype: DTypeName) -> None:
    tensor = _SOURCES[source](dtype)
    ptr, shape, strides = tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)
    expected = torch_bits(tensor)

    first = GpuImage.from_torch(tensor, layout="HWC")
    assert (first.ptr, first.shape, first.strides) == (ptr, shape, strides)
    array = first.as_cupy()
    assert (array.data.ptr, array.shape, array.strides) == (ptr, shape, strides)

    second = GpuImage.from_cupy(array, layout="HWC")
    assert (second.ptr, second.shape, second.strides) == (ptr, shape, strides)
    assert second.spec == first.spec
    mat = second.as_gpumat()
    assert mat.cudaPtr() == ptr
    assert mat.step == strides[0]
    assert tuple(mat.size()) == (shape[1], shape[0])
    assert mat.channels() == shape[2]
    assert mat.elemSize() == strides[1]

    third = GpuImage.from_gpumat(mat)
    assert (third.ptr, third.shape, third.strides) == (ptr, shape, strides)
    assert third.spec == first.spec
    last = third.as_torch()
    assert last.dtype == tensor.dtype
    assert (last.data_ptr(), tuple(last.shape), _byte_strides(last)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(last), expected, "torch -> CuPy -> GpuMat -> torch")


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "bfloat16"])
def test_permuted_torch_view_taken_as_chw(dtype: DTypeName) -> None:
    hwc = _pattern_tensor((6, 10, 3), dtype)
    chw = hwc.permute(2, 0, 1)
    ptr, shape, strides = chw.data_ptr(), tuple(chw.shape), _byte_strides(chw)
    itemsize = hwc.element_size()
    expected = torch_bits(chw)

    image = GpuImage.from_torch(chw, layout="CHW")
    assert (image.ptr, image.shape, image.strides) == (ptr, shape, strides)
    assert image.spec.channel_stride == itemsize
    assert image.spec.pixel_stride == 3 * itemsize
    assert image.row_pitch == 10 * 3 * itemsize
    assert not image.is_contiguous
    assert_bits_equal(memory_bits(image), expected, "permuted view in memory")

    with pytest.raises(LayoutError):
        image.as_gpumat()  # type: ignore[misc]  # statically rejected too: a GpuMat is HWC
    back = image.as_torch()
    assert (back.data_ptr(), tuple(back.shape), _byte_strides(back)) == (ptr, shape, strides)
    dlpacked = torch_from_dlpack(image)
    assert (dlpacked.data_ptr(), tuple(dlpacked.shape), _byte_strides(dlpacked)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(dlpacked), expected, "torch.from_dlpack of the permuted view")
    if dtype == "bfloat16":
        return

    array = image.as_cupy()
    assert (array.data.ptr, array.shape, array.strides) == (ptr, shape, strides)
    again = GpuImage.from_cupy(array, layout="CHW")
    assert again.spec == image.spec
    final = again.as_torch()
    assert (final.data_ptr(), tuple(final.shape), _byte_strides(final)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(final), expected, "torch -> CuPy -> torch of the permuted view")
    through_cai = GpuImage.from_cuda_array_interface(image, layout="CHW")
    assert (through_cai.ptr, through_cai.shape, through_cai.strides) == (ptr, shape, strides)
    # The same memory seen as HWC again is a GpuMat.
    as_hwc = GpuImage.from_torch(final.permute(1, 2, 0), layout=HWC)
    assert as_hwc.as_gpumat().cudaPtr() == ptr


@pytest.mark.parametrize("dtype", ["uint8", "uint32", "float32"])
def test_sliced_cupy_array_round_trip(dtype: DTypeName) -> None:
    base = cupy.arange(8 * 10 * 3, dtype=cupy.int64).reshape(8, 10, 3) % 101
    full = base.astype(dtype)
    sliced = full[1:5, 2:7]
    ptr, shape, strides = sliced.data.ptr, sliced.shape, sliced.strides
    assert ptr != full.data.ptr
    expected = cupy_bits(sliced)

    image = GpuImage.from_cupy(sliced, layout="HWC")
    assert (image.ptr, image.shape, image.strides) == (ptr, shape, strides)
    tensor = image.as_torch()
    assert (tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)) == (ptr, shape, strides)
    mat = image.as_gpumat()
    assert (mat.cudaPtr(), mat.step) == (ptr, strides[0])
    back = GpuImage.from_gpumat(mat)
    assert back.spec == image.spec
    array = back.as_cupy()
    assert (array.data.ptr, array.shape, array.strides) == (ptr, shape, strides)
    assert_bits_equal(cupy_bits(array), expected, "CuPy -> torch/GpuMat -> CuPy")
    assert_bits_equal(torch_bits(tensor), expected, "as_torch() of a sliced CuPy array")


@pytest.mark.parametrize("layout", [Layout.HWC, Layout.CHW])
@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32", "bfloat16"])
def test_pitched_empty_views_keep_the_pitch(dtype: DTypeName, layout: Layout) -> None:
    image = GpuImage.empty(5, 33, 3, dtype, layout=layout, row_alignment=256)
    expected = (image.ptr, image.shape, image.strides)
    assert image.row_pitch % 256 == 0
    assert image.row_pitch >= 33 * (1 if layout is Layout.CHW else 3) * image.spec.itemsize
    if layout is Layout.CHW:
        assert image.spec.plane_pitch == image.row_pitch * 5
    tensor = image.as_torch()
    assert (tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)) == expected
    dlpacked = torch_from_dlpack(image)
    assert (dlpacked.data_ptr(), tuple(dlpacked.shape), _byte_strides(dlpacked)) == expected
    if dtype != "bfloat16":
        array = image.as_cupy()
        assert (array.data.ptr, array.shape, array.strides) == expected
        through_cai = cupy.asarray(image)
        assert (through_cai.data.ptr, through_cai.shape, through_cai.strides) == expected
    if layout is Layout.HWC and dtype != "bfloat16":
        hwc = image.expect("HWC")
        mat = hwc.as_gpumat()
        assert (mat.cudaPtr(), mat.step) == (image.ptr, image.row_pitch)
        assert GpuImage.from_gpumat(mat).spec == image.spec


_TORCH_VIEWS: dict[str, Callable[[], torch.Tensor]] = {
    "packed HWC": lambda: _packed("float32"),
    "sliced HWC": lambda: _sliced("uint8"),
    "pitched HWC": lambda: _pitched("int16"),
    "bfloat16 HWC": lambda: _packed("bfloat16"),
    "bool HWC": lambda: _sliced("bool"),
}


@pytest.mark.parametrize("name", list(_TORCH_VIEWS))
def test_dlpack_round_trip_with_torch(name: str) -> None:
    tensor = _TORCH_VIEWS[name]()
    ptr, shape, strides = tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)
    expected = torch_bits(tensor)
    image = GpuImage.from_dlpack(tensor, layout="HWC")
    assert (image.ptr, image.shape, image.strides) == (ptr, shape, strides)
    assert image.dtype == {v: k for k, v in TORCH_DTYPES.items()}[tensor.dtype]
    back = torch_from_dlpack(image)
    assert back.dtype == tensor.dtype
    assert (back.data_ptr(), tuple(back.shape), _byte_strides(back)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(back), expected, f"{name}: torch -> DLPack -> GpuImage -> DLPack -> torch")


def test_dlpack_round_trip_with_permuted_torch_view() -> None:
    chw = _pattern_tensor((7, 9, 3), "float32").permute(2, 0, 1)
    ptr, shape, strides = chw.data_ptr(), tuple(chw.shape), _byte_strides(chw)
    image = GpuImage.from_dlpack(chw, layout="CHW")
    assert (image.ptr, image.shape, image.strides) == (ptr, shape, strides)
    back = torch_from_dlpack(image)
    assert (back.data_ptr(), tuple(back.shape), _byte_strides(back)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(back), torch_bits(chw), "permuted view through DLPack")


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "float16", "float64"])
def test_dlpack_and_cai_round_trips_with_sliced_cupy_array(dtype: DTypeName) -> None:
    full = (cupy.arange(9 * 11 * 4, dtype=cupy.int64).reshape(9, 11, 4) % 101).astype(dtype)
    sliced = full[1:5, 2:7]
    ptr, shape, strides = sliced.data.ptr, sliced.shape, sliced.strides
    expected = cupy_bits(sliced)

    through_dlpack = GpuImage.from_dlpack(sliced, layout="HWC")
    assert (through_dlpack.ptr, through_dlpack.shape, through_dlpack.strides) == (ptr, shape, strides)
    back = cupy.from_dlpack(through_dlpack)
    assert (back.data.ptr, back.shape, back.strides) == (ptr, shape, strides)
    assert_bits_equal(cupy_bits(back), expected, "CuPy -> DLPack -> GpuImage -> DLPack -> CuPy")

    through_cai = GpuImage.from_cuda_array_interface(sliced, layout="HWC")
    assert (through_cai.ptr, through_cai.shape, through_cai.strides) == (ptr, shape, strides)
    assert through_cai.device == through_dlpack.device
    again = cupy.asarray(through_cai)
    assert (again.data.ptr, again.shape, again.strides) == (ptr, shape, strides)
    assert_bits_equal(cupy_bits(again), expected, "CuPy -> CAI -> GpuImage -> CAI -> CuPy")
    tensor = torch.as_tensor(through_cai, device="cuda")
    assert (tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(tensor), expected, "CuPy -> CAI -> GpuImage -> CAI -> torch")


def test_cai_round_trip_with_torch_tensor() -> None:
    tensor = _sliced("float32")
    ptr, shape, strides = tensor.data_ptr(), tuple(tensor.shape), _byte_strides(tensor)
    image = GpuImage.from_cuda_array_interface(tensor, layout="HWC")
    assert (image.ptr, image.shape, image.strides) == (ptr, shape, strides)
    assert image.owner is tensor
    back = torch.as_tensor(image, device="cuda")
    assert (back.data_ptr(), tuple(back.shape), _byte_strides(back)) == (ptr, shape, strides)
    assert_bits_equal(torch_bits(back), torch_bits(tensor), "torch -> CAI -> GpuImage -> CAI -> torch")
