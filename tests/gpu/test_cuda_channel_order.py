"""Channel orders of CUDA images: ``to_channel_order`` in the kernel and torch executors against NumPy
indexing, ``normalize``/``denormalize``/``normalize_batch`` with ``order=`` against
``reverse_channels`` and against a reordered copy, the record kept by ``cuda()``/``cpu()`` and batch
items, and a reorder of data still being written on another stream (the host tests are in
``tests/test_channel_order.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import numpy as np
import numpy.typing as npt
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import ChannelOrder, ChannelOrderLike, GpuBatch, GpuImage, Layout
from gpuimage._conversions import override_executor
from gpuimage._kernel_convert import EXECUTOR as KERNELS
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR
from gpuimage.strategies import crops, fill_pattern, image_specs, images

from ._support import assert_bits_equal, gpu_settings, torch_bits

pytestmark = pytest.mark.cuda

SWAP = {3: [2, 1, 0], 4: [2, 1, 0, 3]}
"""Red and blue swapped, alpha kept: what RGB <-> BGR and RGBA <-> BGRA do to the channels."""
MIRROR = {3: (ChannelOrder.BGR, ChannelOrder.RGB), 4: (ChannelOrder.BGRA, ChannelOrder.RGBA)}


def _hwc_bits(image: GpuImage) -> npt.NDArray[Any]:
    """The image's elements on the host in (H, W, C) order, as integers of the element's size."""
    tensor = image.as_torch()
    return torch_bits(tensor.permute(1, 2, 0) if image.layout is Layout.CHW else tensor)


def _upload(pixels: npt.NDArray[Any], order: ChannelOrderLike | None = None) -> GpuImage:
    image = GpuImage.from_torch(torch.from_numpy(np.ascontiguousarray(pixels)).cuda(), layout="HWC")
    return image.with_channel_order(order)


def _pixels(channels: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (37, 41, channels), dtype=np.uint8)


@pytest.fixture(params=["kernels", "torch"])
def executor(request: pytest.FixtureRequest) -> Iterator[str]:
    """GPU conversions through the CUDA kernels, then through torch operations."""
    with override_executor(KERNELS if request.param == "kernels" else TORCH_EXECUTOR):
        yield request.param


@gpu_settings(40)
@given(
    image=images(image_specs(device=0, min_channels=3, max_channels=4, max_side=40), device=0),
    seed=st.integers(0, 100),
    data=st.data(),
)
def test_to_channel_order_swaps_red_and_blue_in_both_gpu_executors(
    image: GpuImage, seed: int, data: st.DataObject
) -> None:
    fill_pattern(image, seed)
    x, y, width, height = data.draw(crops(image.spec))
    region = image.crop(x, y, width, height)  # pitched, at an offset
    source, target = MIRROR[image.channels] if data.draw(st.booleans()) else MIRROR[image.channels][::-1]
    labelled = region.with_channel_order(source)
    expected = _hwc_bits(region)[..., SWAP[image.channels]]
    for chosen in (KERNELS, TORCH_EXECUTOR):
        with override_executor(chosen):
            result = labelled.to_channel_order(target)
        assert result.channel_order is target
        assert (result.device, result.layout, result.dtype, result.is_contiguous) == (
            image.device,
            image.layout,
            image.dtype,
            True,
        )
        assert_bits_equal(_hwc_bits(result), expected, f"to_channel_order({target.value}), {chosen.name}")
    assert_bits_equal(_hwc_bits(labelled), _hwc_bits(region), "the source changed")


def test_normalize_to_the_mirror_order_is_reverse_channels(executor: str) -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    bgr = _upload(_pixels(3, seed=1), "BGR").crop(3, 5, 31, 29)
    reordered = gi.normalize(bgr, mean, std, order="RGB")
    reference = gi.normalize(bgr, mean, std, reverse_channels=True)
    assert reordered.channel_order is ChannelOrder.RGB
    assert reference.channel_order is ChannelOrder.RGB
    assert torch.equal(reordered.as_torch(), reference.as_torch())
    back = gi.denormalize(reordered, mean, std, order="BGR")
    assert back.channel_order is ChannelOrder.BGR
    assert torch.equal(back.as_torch(), bgr.as_torch())


def test_four_channels_keep_alpha_last(executor: str) -> None:
    pixels = _pixels(4, seed=2)
    mean, std = (0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)
    bgra = _upload(pixels, "BGRA")
    rgba = gi.normalize(bgra, mean, std, order="RGBA")
    reference = gi.normalize(_upload(pixels[..., SWAP[4]]), mean, std)
    assert rgba.channel_order is ChannelOrder.RGBA
    assert torch.equal(rgba.as_torch(), reference.as_torch())
    back = gi.denormalize(rgba, mean, std, order="BGRA")
    assert torch.equal(back.as_torch(), bgra.as_torch())
    swapped = bgra.to_layout("CHW").to_channel_order("RGBA")
    assert np.array_equal(_hwc_bits(swapped), pixels[..., SWAP[4]])


def test_normalize_batch_reorders_images_on_the_gpu(executor: str) -> None:
    bgr = [_upload(_pixels(3, seed), "BGR") for seed in range(3)]
    assert torch.equal(
        gi.normalize_batch(bgr, 0.5, 0.25, order="RGB"),
        gi.normalize_batch(bgr, 0.5, 0.25, reverse_channels=True),
    )
    scaled: dict[str, Any] = {"resize": "bilinear", "size": (16, 16)}
    assert torch.equal(
        gi.normalize_batch(bgr, 0.5, 0.25, order="RGB", **scaled),
        gi.normalize_batch(bgr, 0.5, 0.25, reverse_channels=True, **scaled),
    )
    out = GpuBatch.empty(3, 37, 41, 3).with_channel_order("RGB")
    assert gi.normalize_batch(bgr, 0.5, 0.25, order="RGB", out=out) is out
    assert [item.channel_order for item in out] == [ChannelOrder.RGB] * 3


def test_transfers_and_views_keep_the_order() -> None:
    bgr = _upload(_pixels(3), "BGR")
    host = bgr.cpu()
    assert host.channel_order is ChannelOrder.BGR
    assert host.cuda().channel_order is ChannelOrder.BGR
    view = bgr.with_channel_order("RGB")
    assert view.as_torch().data_ptr() == bgr.as_torch().data_ptr()
    assert GpuImage.from_dlpack(bgr).channel_order is ChannelOrder.BGR
    assert GpuImage.from_torch(bgr.as_torch(), layout="HWC").channel_order is None  # a foreign import


def test_a_reorder_waits_for_data_written_on_another_stream() -> None:
    pixels = _pixels(4, seed=4)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        tensor = torch.empty((37, 41, 4), dtype=torch.uint8, device="cuda")
        torch.cuda._sleep(20_000_000)  # the data arrives late on the side stream
        tensor.copy_(torch.from_numpy(pixels).cuda(non_blocking=True))
    image = GpuImage.from_torch(tensor, layout="HWC", stream=side).with_channel_order("BGRA")
    swapped = image.to_channel_order("RGBA")  # two passes, queued after the side stream's work
    assert np.array_equal(swapped.as_torch().cpu().numpy(), pixels[..., SWAP[4]])
