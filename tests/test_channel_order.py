"""Channel orders (``_channel_order``): what images and batches record, the views that record one,
the conversions that pass it on, ``to_channel_order`` in the NumPy and torch executors, and
``normalize``/``denormalize``/``normalize_batch`` reordering from the recorded order (host images:
values checked against NumPy indexing and against ``reverse_channels``)."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import (
    ChannelOrder,
    ChannelOrderLike,
    ColorSpec,
    GpuBatch,
    GpuFrame,
    GpuImage,
    Layout,
    LayoutError,
    SpecError,
)
from gpuimage._affine import Affine
from gpuimage._channel_order import (
    check_fits,
    known_order,
    needs_swap,
    plan_order,
    reversed_order,
    swap_inputs,
    wanted_order,
)
from gpuimage._conversions import override_executor
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR
from gpuimage.strategies import crops, fill_pattern, image_specs, images

Order = ChannelOrder
SWAP = {3: [2, 1, 0], 4: [2, 1, 0, 3]}
"""Red and blue swapped, alpha kept: what RGB <-> BGR and RGBA <-> BGRA do to the channels."""
COLOUR_SPECS = image_specs(device="cpu", min_channels=3, max_channels=4, max_side=9)
BT709 = ColorSpec(matrix="BT709", range="LIMITED")


class Buffer(np.ndarray[Any, Any]):
    """A weak-referenceable ndarray, to watch the memory owner die."""


def _hwc(array: npt.NDArray[Any], order: str | None = None) -> GpuImage:
    image = GpuImage.from_numpy(array, layout="HWC")
    return image if order is None else image.with_channel_order(order)  # type: ignore[arg-type]


def _pixels(channels: int, seed: int = 0, dtype: Any = np.uint8) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).integers(0, 250, (5, 6, channels)).astype(dtype)


def _hwc_bits(image: GpuImage) -> npt.NDArray[Any]:
    """Elements in (H, W, C) order as NumPy values, bfloat16 as its bits (NumPy has none)."""
    tensor = image.as_torch()
    tensor = tensor.permute(1, 2, 0) if image.layout is Layout.CHW else tensor
    if image.dtype == "bfloat16":
        tensor = tensor.view(torch.int16)
    return tensor.numpy().copy()


@pytest.fixture(params=["numpy", "torch"])
def executor(request: pytest.FixtureRequest) -> Iterator[str]:
    """Host conversions through the NumPy executor, then through the torch one (on CPU tensors)."""
    with override_executor(HOST if request.param == "numpy" else TORCH_EXECUTOR):
        yield request.param


# -- the rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("UNKNOWN", None),
        ("unknown", None),
        (Order.UNKNOWN, None),
        ("bgr", Order.BGR),
        (Order.RGBA, Order.RGBA),
    ],
)
def test_known_orders_treat_unknown_as_none(value: object, expected: ChannelOrder | None) -> None:
    assert known_order(value, where="test") is expected


def test_reversal_and_swaps() -> None:
    assert reversed_order(Order.BGR, 3) is Order.RGB
    assert reversed_order(Order.RGB, 3) is Order.BGR
    assert reversed_order(Order.BGRA, 4) is None  # every channel reversed is ARGB: no order
    assert reversed_order(None, 3) is None
    assert needs_swap(Order.BGR, Order.RGB, where="test")
    assert not needs_swap(Order.RGBA, Order.RGBA, where="test")
    assert plan_order(Order.BGR, "RGB", 3, False, where="test") == (Order.RGB, True, False)
    assert plan_order(Order.BGRA, "rgba", 4, False, where="test") == (Order.RGBA, False, True)
    assert plan_order(Order.RGB, "RGB", 3, np.False_, where="test") == (Order.RGB, False, False)
    constants = swap_inputs(Affine((1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0), False))
    assert constants == ((3.0, 2.0, 1.0, 4.0), (7.0, 6.0, 5.0, 8.0), False)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        pytest.param(lambda: known_order("ARGB", where="w()"), SpecError, "got order='ARGB'", id="unknown"),
        pytest.param(lambda: wanted_order("UNKNOWN", where="w()"), LayoutError, r"with_channel_order\(None\)",
                     id="unknown-target"),
        pytest.param(lambda: check_fits(Order.RGB, 4, where="w()"), LayoutError,
                     r"w\(\): expected an order for a 4-channel image, got order='RGB' "
                     r"\(it names 3 channels\)\. Pass RGBA or BGRA\.", id="rgb-of-4"),
        pytest.param(lambda: check_fits(Order.BGRA, 1, where="w()"), LayoutError, "Only 3-channel",
                     id="gray"),
        pytest.param(lambda: needs_swap(None, Order.RGB, where="w()"), LayoutError,
                     r"channel_order=None .*with_channel_order\('BGR'\) for an image from OpenCV",
                     id="unrecorded"),
        pytest.param(lambda: needs_swap(None, Order.RGBA, where="w()"), LayoutError,
                     r"with_channel_order\('BGRA'\) .*with_channel_order\('RGBA'\)", id="unrecorded-4"),
        pytest.param(lambda: plan_order(Order.BGR, "RGB", 3, True, where="w()"), LayoutError,
                     "one of order= and reverse_channels=True", id="both"),
        pytest.param(lambda: plan_order(Order.BGR, "RGB", 3, "yes", where="w()"), SpecError,
                     "reverse_channels=True or False", id="not-a-flag"),
    ],
)  # fmt: skip
def test_refusals_name_the_fix(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# -- what images record ------------------------------------------------------------------------------


def test_imports_and_allocations_record_no_order() -> None:
    array = _pixels(3)
    assert GpuImage.from_numpy(array, layout="HWC").channel_order is None
    assert GpuImage.from_torch(torch.from_numpy(array), layout="HWC").channel_order is None
    assert GpuImage.empty(2, 2, 3, device="cpu").channel_order is None
    assert GpuBatch.empty(2, 2, 2, 3, device="cpu").channel_order is None


def test_with_channel_order_is_a_view_of_the_same_memory() -> None:
    array = _pixels(3).view(Buffer)
    image = GpuImage.from_numpy(array, layout="HWC")
    bgr = image.with_channel_order("BGR")
    assert bgr.channel_order is Order.BGR
    assert image.channel_order is None, "the source changed"
    assert bgr is not image
    assert (bgr.ptr, bgr.spec, bgr.owner, bgr.readonly) == (
        image.ptr,
        image.spec,
        image.owner,
        image.readonly,
    )
    assert bgr._ready is image._ready, "a write recorded on one is not seen by the other"
    assert bgr.with_channel_order(Order.BGR) is bgr
    assert bgr.with_channel_order(None).channel_order is None
    assert bgr.with_channel_order("UNKNOWN").channel_order is None
    assert image.with_channel_order(None) is image
    bgr.as_numpy()[0, 0, 0] = 77
    assert array[0, 0, 0] == 77


def test_a_relabelled_view_keeps_the_memory_alive() -> None:
    array = np.zeros((2, 3, 4), np.uint8).view(Buffer)
    alive = weakref.ref(array)
    view = GpuImage.from_numpy(array, layout="HWC").with_channel_order("BGRA")
    del array
    gc.collect()
    assert alive() is not None, "the owner died under a live view"
    assert view.as_numpy().shape == (2, 3, 4)
    del view
    gc.collect()
    assert alive() is None


def test_read_only_images_stay_read_only() -> None:
    array = _pixels(3)
    array.flags.writeable = False
    bgr = _hwc(array, "BGR")
    assert bgr.readonly
    assert bgr.to_channel_order("RGB").readonly is False


@pytest.mark.parametrize(("channels", "order"), [(1, "RGB"), (3, "RGBA"), (4, "BGR"), (2, "RGB")])
def test_an_order_of_another_channel_count_is_a_layout_error(channels: int, order: ChannelOrderLike) -> None:
    image = GpuImage.from_numpy(np.zeros((2, 2, channels), np.uint8), layout="HWC")
    with pytest.raises(LayoutError, match=f"for a {channels}-channel image"):
        image.with_channel_order(order)
    with pytest.raises(LayoutError, match=f"for a {channels}-channel image"):  # before the unknown order
        image.to_channel_order(order)


def test_a_name_that_is_no_order_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="got order='XYZ'"):
        _hwc(_pixels(3)).with_channel_order("XYZ")  # type: ignore[arg-type]


def test_repr_shows_a_known_order() -> None:
    image = _hwc(_pixels(3))
    assert " HWC, cpu" in repr(image)
    assert " HWC BGR, cpu" in repr(image.with_channel_order("BGR"))
    batch = GpuBatch.empty(2, 2, 2, 4, device="cpu").with_channel_order("RGBA")
    assert " NCHW RGBA, cpu" in repr(batch)


def test_pickling_keeps_the_order() -> None:
    assert pickle.loads(pickle.dumps(_hwc(_pixels(3), "BGR"))).channel_order is Order.BGR


# -- what passes the order on ------------------------------------------------------------------------


@given(images(COLOUR_SPECS), st.data())
def test_paths_that_keep_the_channels_keep_the_order(image: GpuImage, data: st.DataObject) -> None:
    order = data.draw(
        st.sampled_from([Order.RGB, Order.BGR] if image.channels == 3 else [Order.RGBA, Order.BGRA])
    )
    image = image.with_channel_order(order)
    x, y, width, height = data.draw(crops(image.spec))
    kept = {
        "crop": image.crop(x, y, width, height),
        "copy": image.copy(),
        "padded copy": image.copy(row_alignment=64),
        "contiguous": image.crop(x, y, width, height).contiguous(),
        "to_layout": image.to_layout("CHW" if image.layout is Layout.HWC else "HWC"),
        "astype": image.astype("float32", scale=0.5),
        "cpu": image.cpu(),
        "expect": image.expect(image.layout),
        "copy.copy": copy.copy(image),
        "copy.deepcopy": copy.deepcopy(image),
        "normalize": gi.normalize(image, 0.5, 0.25),
        "denormalize": gi.denormalize(gi.normalize(image, 0.5, 0.25), 0.5, 0.25),
        "from_dlpack": GpuImage.from_dlpack(image),
    }
    assert {name: kept[name].channel_order for name in kept} == dict.fromkeys(kept, order)


def test_out_keeps_its_own_record_and_refuses_a_conflicting_one() -> None:
    bgr = _hwc(_pixels(3), "BGR")
    blank = GpuImage.empty(5, 6, 3, device="cpu")
    assert bgr.copy(out=blank) is blank
    assert blank.channel_order is None  # an order describes a handle: out's is its own
    labelled = blank.with_channel_order("BGR")
    assert bgr.astype("uint8", out=labelled) is labelled
    rgb_out = blank.with_channel_order("RGB")
    calls: list[Callable[[], object]] = [
        lambda: bgr.copy(out=rgb_out),
        lambda: bgr.to_layout("HWC", out=rgb_out),
        lambda: bgr.astype("uint8", out=rgb_out),
    ]
    for call in calls:
        with pytest.raises(LayoutError, match=r"got out\.channel_order=RGB \(the result is BGR\)"):
            call()
    planar = GpuImage.empty(5, 6, 3, "float32", layout="CHW", device="cpu").with_channel_order("BGR")
    with pytest.raises(LayoutError, match=r"out\.with_channel_order\('RGB'\)"):
        gi.normalize(bgr, 0.5, 0.25, order="RGB", out=planar)
    assert gi.normalize(bgr, 0.5, 0.25, out=planar) is planar


def test_batches_record_an_order_and_their_items_carry_it() -> None:
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    batch = GpuBatch.from_numpy(array)
    assert batch.channel_order is None
    assert batch[0].channel_order is None
    bgr = batch.with_channel_order("BGR")
    assert (bgr.ptr, bgr.item_pitch, bgr.item_spec, bgr.owner) == (
        batch.ptr,
        batch.item_pitch,
        batch.item_spec,
        batch.owner,
    )
    assert bgr._ready is batch._ready
    assert [item.channel_order for item in bgr] == [Order.BGR, Order.BGR]
    assert bgr[-1].channel_order is Order.BGR
    assert bgr.with_channel_order("BGR") is bgr
    assert GpuBatch.from_dlpack(bgr) is bgr
    with pytest.raises(LayoutError, match="for a 3-channel image"):
        batch.with_channel_order("RGBA")


# -- to_channel_order: the pixels reordered ----------------------------------------------------------


@given(images(COLOUR_SPECS), st.integers(0, 100), st.booleans())
def test_to_channel_order_swaps_red_and_blue_in_every_executor(image: GpuImage, seed: int, bgr: bool) -> None:
    fill_pattern(image, seed)
    channels = image.channels
    orders = (Order.BGR, Order.RGB) if channels == 3 else (Order.BGRA, Order.RGBA)
    source, target = orders if bgr else orders[::-1]
    labelled = image.with_channel_order(source)
    expected = _hwc_bits(image)[..., SWAP[channels]]
    for chosen in (HOST, TORCH_EXECUTOR):
        with override_executor(chosen):
            result = labelled.to_channel_order(target)
        assert result.channel_order is target
        assert (result.layout, result.dtype, result.is_contiguous) == (image.layout, image.dtype, True)
        np.testing.assert_array_equal(_hwc_bits(result), expected, err_msg=chosen.name)
        np.testing.assert_array_equal(_hwc_bits(image), _hwc_bits(labelled), err_msg="the source changed")


def test_to_channel_order_of_the_same_order_is_the_image() -> None:
    bgr = _hwc(_pixels(3), "BGR")
    assert bgr.to_channel_order(Order.BGR) is bgr


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("RGB", "channel order is recorded"),  # the image records none
        ("UNKNOWN", r"with_channel_order\(None\)"),
        ("RGBA", "for a 3-channel image"),
    ],
)
def test_to_channel_order_refusals(order: ChannelOrderLike, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        _hwc(_pixels(3)).to_channel_order(order)


# -- normalize, denormalize and normalize_batch reorder from the recorded order ---------------------


@given(
    st.lists(st.floats(-1, 1, width=32), min_size=3, max_size=3),
    st.lists(st.floats(0.125, 2, width=32), min_size=3, max_size=3),
    st.sampled_from(["uint8", "uint16", "float32"]),
)
def test_normalize_to_the_mirror_order_is_reverse_channels(
    mean: list[float], std: list[float], dtype: str
) -> None:
    bgr = _hwc(_pixels(3, dtype=dtype), "BGR")
    reordered = gi.normalize(bgr, mean, std, order="RGB")
    reference = gi.normalize(bgr, mean, std, reverse_channels=True)
    assert reordered.channel_order is Order.RGB
    assert reference.channel_order is Order.RGB  # reverse_channels of a known order records the flipped one
    np.testing.assert_array_equal(reordered.as_numpy(), reference.as_numpy())
    same = gi.normalize(bgr, mean, std, order="BGR")
    assert same.channel_order is Order.BGR
    np.testing.assert_array_equal(same.as_numpy(), gi.normalize(bgr, mean, std).as_numpy())


def test_normalize_of_four_channels_keeps_alpha_last(executor: str) -> None:
    pixels = _pixels(4, seed=3)
    mean, std = (0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)
    bgra = _hwc(pixels, "BGRA")
    rgba = gi.normalize(bgra, mean, std, order="RGBA", dtype="float32")
    reference = gi.normalize(_hwc(np.ascontiguousarray(pixels[..., SWAP[4]])), mean, std)
    assert rgba.channel_order is Order.RGBA
    np.testing.assert_array_equal(rgba.as_numpy(), reference.as_numpy())
    back = gi.denormalize(rgba, mean, std, order="BGRA")
    assert back.channel_order is Order.BGRA
    np.testing.assert_array_equal(back.as_numpy(), pixels)
    assert gi.normalize(bgra, 0.5, 0.5, reverse_channels=True).channel_order is None  # ARGB is no order


def test_denormalize_writes_the_order_asked(executor: str) -> None:
    pixels = _pixels(3, seed=5)
    model_input = gi.normalize(_hwc(pixels, "BGR"), (0.4, 0.5, 0.6), 0.25, order="RGB")
    for_opencv = gi.denormalize(model_input, (0.4, 0.5, 0.6), 0.25, order="BGR")
    assert for_opencv.channel_order is Order.BGR
    np.testing.assert_array_equal(for_opencv.as_numpy(), pixels)
    as_is = gi.denormalize(model_input, (0.4, 0.5, 0.6), 0.25)
    assert as_is.channel_order is Order.RGB
    np.testing.assert_array_equal(as_is.as_numpy(), pixels[..., ::-1])


def test_normalize_refuses_an_order_it_cannot_reorder_from() -> None:
    with pytest.raises(LayoutError, match=r"channel_order=None .*with_channel_order\('BGR'\)"):
        gi.normalize(_hwc(_pixels(3)), 0.5, 0.25, order="RGB")
    with pytest.raises(LayoutError, match="one of order= and reverse_channels=True"):
        gi.normalize(_hwc(_pixels(3), "BGR"), 0.5, 0.25, order="RGB", reverse_channels=True)
    with pytest.raises(LayoutError, match="for a 4-channel image"):
        gi.denormalize(_hwc(_pixels(4), "RGBA"), 0.5, 0.25, order="RGB")
    with pytest.raises(LayoutError, match="channel_order=None"):
        gi.denormalize(_hwc(_pixels(3)), 0.5, 0.25, order="BGR")


def test_normalize_batch_of_images_reorders_from_their_order(executor: str) -> None:
    bgr = [_hwc(_pixels(3, seed), "BGR") for seed in range(3)]
    ordered = gi.normalize_batch(bgr, 0.5, 0.25, order="RGB", like="numpy")
    reversed_ = gi.normalize_batch(bgr, 0.5, 0.25, reverse_channels=True, like="numpy")
    np.testing.assert_array_equal(ordered, reversed_)
    np.testing.assert_array_equal(
        gi.normalize_batch(bgr, 0.5, 0.25, order="BGR", like="numpy"),
        gi.normalize_batch(bgr, 0.5, 0.25, like="numpy"),
    )
    resized = gi.normalize_batch(bgr, 0.5, 0.25, order="RGB", resize="bilinear", size=(3, 4), like="numpy")
    np.testing.assert_array_equal(
        resized,
        gi.normalize_batch(
            bgr, 0.5, 0.25, reverse_channels=True, resize="bilinear", size=(3, 4), like="numpy"
        ),
    )


def test_normalize_batch_swaps_four_channels_with_resize(executor: str) -> None:
    pixels = _pixels(4, seed=8)
    got = gi.normalize_batch([_hwc(pixels, "BGRA")], 0.5, 0.25, order="RGBA", resize="nearest", size=(5, 6),
                             like="numpy")  # fmt: skip
    reference = _hwc(np.ascontiguousarray(pixels[..., SWAP[4]]))
    expected = gi.normalize_batch([reference], 0.5, 0.25, resize="nearest", size=(5, 6), like="numpy")
    np.testing.assert_array_equal(got, expected)


def test_normalize_batch_refusals() -> None:
    bgr, rgb = _hwc(_pixels(3), "BGR"), _hwc(_pixels(3), "RGB")
    with pytest.raises(LayoutError, match="one recorded channel order for order=, got BGR and RGB"):
        gi.normalize_batch([bgr, rgb], 0.5, 0.25, order="RGB", like="numpy")
    with pytest.raises(LayoutError, match="one recorded channel order for order=, got BGR and None"):
        gi.normalize_batch([bgr, _hwc(_pixels(3))], 0.5, 0.25, order="RGB", like="numpy")
    with pytest.raises(LayoutError, match=r"expected resize= to swap .*to_channel_order\('RGBA'\)"):
        gi.normalize_batch([_hwc(_pixels(4), "BGRA")], 0.5, 0.25, order="RGBA", like="numpy")
    out = GpuBatch.empty(1, 5, 6, 3, device="cpu").with_channel_order("BGR")
    with pytest.raises(LayoutError, match=r"out\.channel_order=BGR \(the result is RGB\)"):
        gi.normalize_batch([bgr], 0.5, 0.25, order="RGB", out=out)
    with pytest.raises(LayoutError, match=r"out\.channel_order=BGR \(the result is RGB\)"):
        gi.normalize_batch([bgr], 0.5, 0.25, reverse_channels=True, out=out)
    with pytest.raises(LayoutError, match=r"out\.channel_order=BGR \(the result is RGB\)"):
        gi.normalize_batch([bgr], 0.5, 0.25, order="RGB", resize="nearest", size=(5, 6), out=out)
    pair = GpuBatch.empty(2, 5, 6, 3, device="cpu").with_channel_order("BGR")
    assert gi.normalize_batch([bgr, rgb], 0.5, 0.25, out=pair) is pair  # mixed orders: nothing to check
    assert out.channel_order is Order.BGR


# -- frames record the order they were converted to --------------------------------------------------


def test_frames_record_the_order_they_were_converted_to() -> None:
    luma = np.full((4, 6), 120, np.uint8)
    frame = GpuFrame.from_planes([luma, np.full((2, 6), 128, np.uint8)], format="NV12", colour=BT709)
    assert frame.to_image().channel_order is Order.RGB
    assert frame.to_image(order="BGRA").channel_order is Order.BGRA
    assert gi.normalize(frame, 0.5, 0.25).channel_order is Order.RGB
    bgr = gi.normalize(frame, 0.5, 0.25, order="BGR")
    assert bgr.channel_order is Order.BGR
    np.testing.assert_array_equal(bgr.as_numpy(), gi.normalize(frame, 0.5, 0.25).as_numpy()[::-1])
    out = GpuImage.empty(4, 6, 3, "float32", layout="CHW", device="cpu").with_channel_order("RGB")
    with pytest.raises(LayoutError, match=r"out\.channel_order=RGB \(the result is BGR\)"):
        gi.normalize(frame, 0.5, 0.25, order="BGR", out=out)
    assert gi.normalize(frame, 0.5, 0.25, out=out) is out
    batch = GpuBatch.empty(1, 4, 6, 3, device="cpu").with_channel_order("BGR")
    with pytest.raises(LayoutError, match=r"out\.channel_order=BGR \(the result is RGB\)"):
        gi.normalize_batch([frame], 0.5, 0.25, out=batch)
