"""``normalize_batch`` on CPU: regions packed and padded into NumPy and torch arrays, where a new batch
may be allocated, and what is refused before anything is allocated or launched. Device images here
sit on fake pointers, so no test may reach a kernel: the ones that would on a GPU machine skip there."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpu_probe import gpu_available
from gpuimage import BoundsError, DeviceError, GpuImage, ImageSpec, MissingBackendError, SpecError

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


def host_image(height: int = 6, width: int = 7, channels: int = 3, *, seed: int = 0) -> GpuImage[Any, Any]:
    rng = np.random.default_rng(seed)
    return GpuImage.from_numpy(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), layout="HWC")


def test_normalize_batch_packs_regions_and_pads() -> None:
    images = [host_image(seed=1), host_image(9, 5, seed=2).to_layout("CHW")]
    batch = gi.normalize_batch(images, 0.5, 0.25, rois=[(1, 1, 4, 3), None], pad_value=-7.0, like="numpy")
    assert batch.shape == (2, 3, 9, 5)
    assert batch.dtype == np.float32
    first = (images[0].as_numpy()[1:4, 1:5].astype(np.float32) / 255 - 0.5) / 0.25
    assert np.allclose(batch[0, :, :3, :4], first.transpose(2, 0, 1), atol=1e-6)
    assert np.all(batch[0, :, 3:, :] == -7.0)
    assert np.all(batch[0, :, :, 4:] == -7.0)
    assert np.allclose(batch[1], (images[1].as_numpy().astype(np.float32) / 255 - 0.5) / 0.25, atol=1e-6)
    # into a caller's (channels-last) torch tensor, same values
    torch = pytest.importorskip("torch")
    out = torch.empty((2, 9, 5, 3)).permute(0, 3, 1, 2)
    gi.normalize_batch(images, 0.5, 0.25, rois=[(1, 1, 4, 3), None], pad_value=-7.0, out=out)
    assert np.array_equal(out.numpy(), batch)


def test_a_destination_overlapping_its_source_is_refused() -> None:
    buffer = np.zeros((4, 4, 3), np.uint8)
    image = GpuImage.from_numpy(buffer, layout="HWC")
    with pytest.raises(SpecError, match="overlaps"):
        gi.normalize_batch(
            [image], 0.5, 0.25, dtype="uint8", out=buffer.reshape(1, 4, 4, 3).transpose(0, 3, 1, 2)
        )


def test_read_only_destinations_are_refused() -> None:
    frozen = np.zeros((1, 3, 6, 7), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(gi.ReadOnlyError):
        gi.normalize_batch([host_image()], 0.5, 0.25, out=frozen)


def test_batch_destinations_must_be_aligned_to_their_item_size() -> None:
    buffer = np.zeros(4 * 3 * 6 * 7 + 4, np.uint8)
    misaligned: npt.NDArray[Any] = np.ndarray((1, 3, 6, 7), dtype=np.float32, buffer=buffer, offset=1)
    with pytest.raises(gi.PitchError, match="multiples of the item size"):
        gi.normalize_batch([host_image()], 0.5, 0.25, out=misaligned)


def test_regions_out_of_bounds_name_the_roi() -> None:
    with pytest.raises(BoundsError, match=r"normalize_batch\(\) roi \(5, 5, 4, 4\)"):
        gi.normalize_batch([host_image()], 0.5, 0.25, rois=[(5, 5, 4, 4)], like="numpy")
