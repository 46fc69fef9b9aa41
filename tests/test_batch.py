"""``normalize_batch`` on CPU: where a new batch may be allocated, and what is refused before anything
is allocated or launched. Device images here sit on fake pointers, so no test may reach a kernel: the
ones that would on a GPU machine skip there."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpu_probe import gpu_available
from gpuimage import DeviceError, GpuImage, ImageSpec, MissingBackendError, SpecError

FAKE = 0x7F00_0000_0000  # never dereferenced


no_gpu_here = pytest.mark.skipif(
    gpu_available(), reason="on a GPU machine this would launch on a fake pointer"
)


def _host_image() -> GpuImage:
    return GpuImage.from_numpy(np.full((2, 3, 3), 255, np.uint8), layout="HWC")


def _device_image() -> GpuImage:
    spec = ImageSpec(height=2, width=3, channels=3, dtype="uint8", device="cuda:0")
    return GpuImage.from_pointer(FAKE, spec)


def test_host_images_are_not_batched_into_cupy() -> None:
    # issue 11, defect 15: this raised CuPy's CUDARuntimeError without a GPU (and allocated on a GPU)
    with pytest.raises(DeviceError, match=r"normalize_batch\(\): expected like='numpy' or 'torch' for host"):
        gi.normalize_batch([_host_image()], 0.5, 0.25, like="cupy")


@no_gpu_here
@pytest.mark.parametrize("like", ["cupy", "torch"])
def test_device_images_without_a_gpu_say_what_is_missing(like: str) -> None:
    # issue 11, defect 15: CUDARuntimeError (CuPy) or torch's "not compiled with CUDA" escaped
    with pytest.raises(MissingBackendError, match=r"normalize_batch\(\): converting a GPU image needs CuPy"):
        gi.normalize_batch([_device_image()], 0.5, 0.25, like=like)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


@no_gpu_here
def test_new_cupy_arrays_without_a_gpu_are_refused_with_what_to_do() -> None:
    # issue 11, defect 15: _cupy.empty let CUDARuntimeError escape
    pytest.importorskip("cupy")
    from gpuimage import _cupy
    from gpuimage._device import Device

    with pytest.raises(MissingBackendError, match=r"cupy.is_available\(\) is False.*like='torch'"):
        _cupy.empty((1, 3, 2, 3), "float32", Device("cuda", 0), where="normalize_batch()")


@given(std=st.floats(min_value=5e-324, max_value=1e-30))
def test_tiny_std_gives_finite_values_or_a_spec_error_naming_std(std: float) -> None:
    # issue 11, defect 9: the check ran in float64, the arithmetic in float32 (inf and NaN came out)
    try:
        batch = gi.normalize_batch([_host_image()], 0.5, std, like="numpy")
    except SpecError as exc:
        refusal = str(exc)
    else:
        assert np.isfinite(batch).all()
        return
    assert "std" in refusal


def test_a_std_too_small_for_float32_is_refused() -> None:
    # issue 11, defect 9
    with pytest.raises(SpecError, match=r"normalize_batch\(\): expected x \* scale/std .* finite in float32"):
        gi.normalize_batch([_host_image()], 0.5, 1e-42, like="numpy")
    assert math.isfinite(gi.normalize_batch([_host_image()], 0.5, 1e-36, like="numpy").max())
