"""The torch executor (``_torch_convert``) against the NumPy executor, on CPU: two independent
implementations of one formula agree bit for bit, on arrays and on operands (single and batch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversion_values import random_values, storage
from gpuimage import DTypeName, GpuImage, ImageSpec, Layout
from gpuimage._affine import Affine, identity_affine, scaled_affine
from gpuimage._executor import Buffer, Executor
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._host_convert import convert_arrays, from_accumulator, hwc_array
from gpuimage._plan import BatchItem

torch = pytest.importorskip("torch")
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR  # noqa: E402
from gpuimage._torch_convert import convert_tensors  # noqa: E402

DTYPES: list[DTypeName] = [
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64",
    "float16", "bfloat16", "float32", "float64",
]  # fmt: skip
TORCH = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "uint16": torch.uint16,
    "int16": torch.int16, "uint32": torch.uint32, "int32": torch.int32, "int64": torch.int64,
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
}  # fmt: skip


def torch_of(array: npt.NDArray[Any], dtype: DTypeName) -> Any:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def bits_of(tensor: Any, dtype: DTypeName) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = (
        tensor.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else tensor.numpy()
    )
    return array


def assert_same(ours: npt.NDArray[Any], theirs: npt.NDArray[Any], dtype: DTypeName) -> None:
    """Bit-equal, except that NaNs only need to be NaNs (payloads differ between libraries)."""
    if storage(dtype).kind == "f":
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        ours, theirs = np.where(np.isnan(ours), 0, ours), np.where(np.isnan(theirs), 0, theirs)
    elif dtype == "bfloat16":
        nan = ((ours & 0x7FFF) > 0x7F80), ((theirs & 0x7FFF) > 0x7F80)
        assert np.array_equal(*nan)
        ours, theirs = np.where(nan[0], 0, ours), np.where(nan[1], 0, theirs)
    assert ours.dtype == theirs.dtype
    assert np.array_equal(ours.view(np.uint8), theirs.view(np.uint8))


@given(
    source=st.sampled_from(DTYPES),
    target=st.sampled_from(DTYPES),
    channels=st.integers(1, 4),
    width=st.sampled_from([1, 2, 3, 7, 33]),
    affine=st.sampled_from(["identity", "scaled", "reversed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_numpy_and_torch_executors_agree_bit_for_bit(
    source: DTypeName, target: DTypeName, channels: int, width: int, affine: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = random_values(rng, source, (3, width, channels))
    if affine == "identity":
        plan = identity_affine(channels)
    elif affine == "reversed":
        plan = identity_affine(channels, reverse=True)
    else:
        plan = scaled_affine(channels, float(rng.uniform(-3, 3)), float(rng.uniform(-100, 100)), where="test")
    ours = np.empty(values.shape, storage(target))
    convert_arrays(values, ours, source, target, plan)
    theirs = torch.empty(values.shape, dtype=TORCH[target])
    convert_tensors(torch_of(values, source), theirs, source, target, plan)
    assert_same(ours, bits_of(theirs, target), target)


def test_bfloat16_rounding_matches_torch() -> None:
    rng = np.random.default_rng(7)
    floats = np.concatenate(
        [
            rng.integers(0, 2**32, 4096, dtype=np.uint32).view(np.float32),
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.0e38, 1.00390625, 1.01171875], np.float32),
        ]
    )
    ours = from_accumulator(floats, "bfloat16")
    theirs = torch.from_numpy(floats).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    finite = ~np.isnan(floats)
    assert np.array_equal(ours[finite], theirs[finite])
    assert np.all((ours[~finite] & 0x7FFF) > 0x7F80)  # NaN stays NaN


def test_the_torch_executor_is_an_executor() -> None:
    executor: Executor = TORCH_EXECUTOR  # mypy and pyright check the protocol here
    assert executor.name == "torch"


def _filled(rng: np.random.Generator, dtype: DTypeName, layout: Layout, channels: int) -> GpuImage[Any, Any]:
    image = GpuImage.empty(3, 5, channels, dtype, layout=layout, device="cpu", row_alignment=16)
    hwc_array(image)[...] = random_values(rng, dtype, (3, 5, channels))
    return image


def _affine_of(kind: str, channels: int) -> Affine:
    if kind == "scaled":
        return scaled_affine(channels, 0.75, -3.0, where="test")
    return identity_affine(channels, reverse=kind == "reversed")


@given(
    source=st.sampled_from(DTYPES),
    target=st.sampled_from(DTYPES),
    layouts=st.tuples(st.sampled_from(list(Layout)), st.sampled_from(list(Layout))),
    channels=st.integers(1, 4),
    kind=st.sampled_from(["identity", "scaled", "reversed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_both_executors_convert_operands_alike(
    source: DTypeName,
    target: DTypeName,
    layouts: tuple[Layout, Layout],
    channels: int,
    kind: str,
    seed: int,
) -> None:
    image = _filled(np.random.default_rng(seed), source, layouts[0], channels)
    ours = GpuImage.empty(3, 5, channels, target, layout=layouts[1], device="cpu")
    theirs = GpuImage.empty(3, 5, channels, target, layout=layouts[1], device="cpu", row_alignment=64)
    HOST.convert(image, ours, _affine_of(kind, channels), 0)
    TORCH_EXECUTOR.convert(image, theirs, _affine_of(kind, channels), 0)
    assert_same(np.ascontiguousarray(hwc_array(ours)), np.ascontiguousarray(hwc_array(theirs)), target)


def test_both_executors_batch_operands_alike() -> None:
    rng = np.random.default_rng(11)
    images = [_filled(rng, "uint16", Layout.HWC, 3), _filled(rng, "uint16", Layout.CHW, 3)]
    regions = [
        BatchItem(images[0].ptr, images[0].row_pitch, 6, 2, 3, 5),
        BatchItem(images[1].ptr + 2 * 2, images[1].row_pitch, 2, images[1].spec.channel_stride, 2, 3),
    ]
    spec = ImageSpec(height=4, width=6, channels=3, dtype="float16", layout="CHW", device="cpu")
    results = []
    for executor in (HOST, TORCH_EXECUTOR):
        out = np.full((2, 3, 4, 6), np.nan, np.float16)
        executor.convert_batch(
            images,
            regions,
            Buffer(out.ctypes.data, spec, out),
            out.strides[0],
            _affine_of("scaled", 3),
            -1.5,
            0,
        )
        results.append(out)
    assert not np.isnan(results[0]).any(), "every element is written: the region or the padding"
    assert np.array_equal(results[0], results[1])
    assert np.all(results[0][1, :, 2:, :] == np.float16(-1.5))
