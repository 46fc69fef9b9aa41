"""``_batch_out``: where a batch conversion writes, checked before anything is written."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gpuimage import DeviceError, GpuBatch, ReadOnlyError, SpecError
from gpuimage._batch_out import allocate_batch, parse_batch_out
from gpuimage._device import CPU

WHERE = "normalize_batch()"


def test_a_numpy_batch_is_read_as_pointer_pitch_and_item_geometry() -> None:
    array = np.zeros((2, 3, 4, 5), np.float32)
    out = parse_batch_out(array, 2, 3, (4, 5), "float32", WHERE)
    assert out.ptr == array.ctypes.data
    assert out.item_pitch == 3 * 4 * 5 * 4
    assert (out.geometry.height, out.geometry.width, out.geometry.channels) == (4, 5, 3)
    assert out.spoke is not None


def test_a_gpu_batch_is_its_own_destination() -> None:
    batch = GpuBatch.empty(2, 4, 5, 3, "float32", layout="NHWC", device="cpu")
    out = parse_batch_out(batch, 2, 3, (4, 5), "float32", WHERE)
    assert (out.ptr, out.item_pitch, out.spoke) == (batch.ptr, batch.item_pitch, None)
    with pytest.raises(SpecError, match=r"\(N, C, H, W\) = \(3, 3, 4, 5\)"):
        parse_batch_out(batch, 3, 3, (4, 5), "float32", WHERE)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 3, 4, 4), np.float32), r"shape \(N, C, H, W\)"),
        (np.zeros((2, 3, 4, 5), np.float16), "dtype float32"),
        (np.lib.stride_tricks.as_strided(np.zeros(60, np.float32), (2, 3, 4, 5), (0, 80, 20, 4)), "overlap"),
    ],
    ids=["shape", "dtype", "overlap"],
)
def test_a_wrong_destination_is_refused(array: npt.NDArray[np.float32], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_batch_out(array, 2, 3, (4, 5), "float32", WHERE)


def test_not_an_array() -> None:
    with pytest.raises(SpecError, match=r"torch\.Tensor, cupy\.ndarray or numpy\.ndarray"):
        parse_batch_out([1, 2], 2, 3, (4, 5), "float32", WHERE)


def test_read_only_gpu_batches_are_refused() -> None:
    array = np.zeros((1, 3, 4, 5), np.float32)
    array.flags.writeable = False
    batch = GpuBatch.from_numpy(array)
    if not batch.readonly:
        pytest.skip("NumPy's read-only flag is not carried by GpuBatch.from_numpy")
    with pytest.raises(ReadOnlyError):
        parse_batch_out(batch, 1, 3, (4, 5), "float32", WHERE)


def test_new_batches_on_the_host() -> None:
    array = allocate_batch("numpy", 2, 3, (4, 5), "float32", CPU, WHERE)
    assert isinstance(array, np.ndarray)
    assert array.shape == (2, 3, 4, 5)
    with pytest.raises(DeviceError, match="like='numpy' or 'torch' for host"):
        allocate_batch("cupy", 2, 3, (4, 5), "float32", CPU, WHERE)
    with pytest.raises(SpecError, match="like='torch', 'cupy'"):
        allocate_batch("jax", 2, 3, (4, 5), "float32", CPU, WHERE)
