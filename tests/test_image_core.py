"""GpuImage's base (``_image_core``): the one construction path, its slots, ``GpuImage()`` refused, and
crops (zero-copy views that share the parent's owner and ready state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import BoundsError, GpuImage, ImageSpec, Layout
from gpuimage.strategies import crops, image_specs, images

FAKE = 0x7F00_0000_0000  # never dereferenced
HOST_SPECS = image_specs(device="cpu")


def _numpy_bits(image: GpuImage) -> npt.NDArray[Any]:
    """Elements as NumPy values, bfloat16 as raw integers (it has no NumPy dtype)."""
    if image.dtype == "bfloat16":
        return image.as_torch().view(torch.int16).numpy()
    return image.as_numpy()


def test_gpuimage_cannot_be_called() -> None:
    with pytest.raises(TypeError, match="from_torch"):
        GpuImage()


def test_every_path_makes_a_slotted_gpuimage() -> None:
    # the hub spans three modules: whatever path made it, an image is a GpuImage with no __dict__
    host = GpuImage.from_numpy(np.zeros((4, 6, 3), np.uint8), layout="HWC")
    made = [
        host,
        host.crop(1, 1, 2, 2),
        host.with_channel_order("BGR"),
        GpuImage.empty(4, 6, 3, device="cpu"),
        GpuImage.from_pointer(FAKE, ImageSpec(height=4, width=6, channels=3), owner=host),
    ]
    for image in made:
        assert type(image) is GpuImage
        assert not hasattr(image, "__dict__"), "a class of the hub lost its __slots__"
    with pytest.raises(AttributeError):
        host.extra = 1  # type: ignore[attr-defined]


@given(images(HOST_SPECS), st.data())
def test_crops_view_the_right_elements(image: GpuImage, data: st.DataObject) -> None:
    x, y, width, height = data.draw(crops(image.spec))
    crop = image.crop(x, y, width, height)
    full = _numpy_bits(image)
    expected = (
        full[y : y + height, x : x + width]
        if image.layout is Layout.HWC
        else full[:, y : y + height, x : x + width]
    )
    np.testing.assert_array_equal(_numpy_bits(crop), expected)
    assert crop.row_pitch == image.row_pitch
    assert crop.owner is image.owner
    # crops of crops stay inside and agree
    inner = crop.crop(width - 1, height - 1, 1, 1)
    np.testing.assert_array_equal(
        _numpy_bits(inner), _numpy_bits(image.crop(x + width - 1, y + height - 1, 1, 1))
    )
    with pytest.raises(BoundsError):
        crop.crop(0, 0, width + 1, height)
