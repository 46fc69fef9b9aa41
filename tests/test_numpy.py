"""The NumPy spoke (``_numpy``): host arrays in, read-only arrays kept read-only, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpuimage import GpuImage, InteropError, OutOfMemoryError
from gpuimage._numpy import strided_parts


@given(
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8)),
    st.data(),
)
def test_masked_arrays_are_refused(values: np.ndarray, data: st.DataObject) -> None:
    # issue 11, defect 17: from_numpy silently dropped the mask of a numpy.ma.MaskedArray
    mask = data.draw(st.one_of(st.just(False), hnp.arrays(np.bool_, values.shape)), label="mask")
    masked = np.ma.MaskedArray(values, mask=mask)
    with pytest.raises(InteropError, match=r"MaskedArray.*array\.filled\(fill_value\).*array\.data"):
        GpuImage.from_numpy(masked)
    with pytest.raises(InteropError, match="MaskedArray"):
        strided_parts(masked)
    # the two ways out that the message names both work
    assert GpuImage.from_numpy(masked.filled(0)).shape == (*values.shape, 1)
    assert GpuImage.from_numpy(masked.data).shape == (*values.shape, 1)


def test_read_only_arrays_give_read_only_images() -> None:
    array = np.zeros((3, 4), np.uint8)
    array.flags.writeable = False
    image = GpuImage.from_numpy(array)
    assert image.readonly
    assert not image.as_numpy().flags.writeable


def test_host_memory_that_cannot_be_had_is_an_out_of_memory_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # found by the fuzzed conversions: copy(row_alignment=6319125887) let NumPy's MemoryError escape
    image = GpuImage.from_numpy(np.zeros((2, 3, 3), np.uint8), layout="HWC")

    def refuse(*args: object, **kwargs: object) -> object:
        raise MemoryError("Unable to allocate 23.5 GiB")

    monkeypatch.setattr(np, "empty", refuse)  # the module _numpy allocates through
    with pytest.raises(
        OutOfMemoryError, match=r"host memory .* got MemoryError: Unable to allocate 23\.5 GiB"
    ):
        image.copy(row_alignment=4096)
