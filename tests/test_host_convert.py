"""The NumPy executor (``_host_convert``): rounding and saturation of stored values, views of
operands, and single and batch conversions of host memory given as operands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpuimage import DeviceError, DTypeName, GpuImage, ImageSpec
from gpuimage._affine import identity_affine, scaled_affine
from gpuimage._dtypes import accumulator
from gpuimage._executor import Buffer, Executor
from gpuimage._host_convert import EXECUTOR, convert_arrays, from_accumulator, hwc_array
from gpuimage._plan import BatchItem


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (2.5, "uint8", 2),  # half to even
        (3.5, "uint8", 4),
        (-0.5, "uint8", 0),
        (255.5, "uint8", 255),  # rounds to 256, saturates
        (1e9, "int16", 32767),
        (-1e9, "int16", -32768),
        (math.nan, "int32", 0),
        (math.inf, "uint16", 65535),
        (-math.inf, "int8", -128),
        (9.3e18, "int64", 2**63 - 1),  # beyond int64: saturates (a plain cast would wrap)
        (-9.3e18, "int64", -(2**63)),
        (0.25, "bool", True),
        (math.nan, "bool", True),  # like NumPy's bool(nan)
    ],
)
def test_integer_targets_round_half_to_even_and_saturate(
    value: float, dtype: DTypeName, expected: object
) -> None:
    wide = np.dtype(accumulator("float64", dtype))
    assert from_accumulator(np.asarray([value], dtype=wide), dtype)[0] == expected


def test_the_host_executor_is_an_executor() -> None:
    executor: Executor = EXECUTOR  # mypy and pyright check the protocol here
    assert executor.name == "numpy"
    assert executor.stream_for(0) == (0, None)


def test_operands_are_viewed_in_hwc_order_with_bfloat16_as_bits() -> None:
    planar = GpuImage.empty(2, 3, 4, "bfloat16", layout="CHW", device="cpu")
    view = hwc_array(planar)
    assert view.shape == (2, 3, 4)
    assert view.dtype == np.uint16
    assert view.ctypes.data == planar.ptr


def test_a_read_only_operand_is_viewed_read_only() -> None:
    values = np.zeros((2, 3, 3), np.uint8)
    values.flags.writeable = False
    view = hwc_array(GpuImage.from_numpy(values, layout="HWC"))
    assert not view.flags.writeable


def test_a_device_operand_is_refused_not_dereferenced() -> None:
    spec = ImageSpec(height=2, width=3, channels=3, dtype="uint8", device="cuda:0")
    with pytest.raises(DeviceError, match="NumPy only sees host memory"):
        hwc_array(Buffer(0x7F00_0000_0000, spec, None))


def test_convert_writes_the_map_of_the_source_into_the_target() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    source = GpuImage.from_numpy(values, layout="HWC")
    target = GpuImage.empty(3, 4, 3, "float32", layout="CHW", device="cpu")
    affine = scaled_affine(3, 0.5, -1.0, where="test")
    EXECUTOR.convert(source, target, affine, 0)
    expected = np.empty((3, 4, 3), np.float32)
    convert_arrays(values, expected, "uint8", "float32", affine)
    assert np.array_equal(target.as_numpy(), expected.transpose(2, 0, 1))


def test_convert_batch_fills_each_slot_and_pads_the_rest() -> None:
    values = np.arange(5 * 6 * 2, dtype=np.uint8).reshape(5, 6, 2)
    source = GpuImage.from_numpy(values, layout="HWC")
    out = np.full((2, 2, 4, 4), 99, np.uint8)  # N, C, H, W
    slot = Buffer(
        out.ctypes.data,
        ImageSpec(height=4, width=4, channels=2, dtype="uint8", layout="CHW", device="cpu"),
        out,
    )
    whole = BatchItem(source.ptr, 12, 2, 1, 4, 3)  # rows 0-3, columns 0-2
    offset = BatchItem(source.ptr + 12 + 2 * 2, 12, 2, 1, 2, 4)  # rows 1-2, columns 2-5
    EXECUTOR.convert_batch(
        [source, source], [whole, offset], slot, out.strides[0], identity_affine(2), 7.0, 0
    )
    assert np.array_equal(out[0, :, :4, :3], values[:4, :3].transpose(2, 0, 1))
    assert np.all(out[0, :, :, 3] == 7)
    assert np.array_equal(out[1, :, :2, :4], values[1:3, 2:6].transpose(2, 0, 1))
    assert np.all(out[1, :, 2:, :] == 7)
