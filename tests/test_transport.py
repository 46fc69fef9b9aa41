"""``to_tensor_payload`` / ``from_tensor_payload`` (``_transport``) on the host: every kind round trips
through one packed torch tensor and a JSON description, without a copy where the source is packed;
a payload that does not match its tensor is refused."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

torch = pytest.importorskip("torch")

from gpuimage import (  # noqa: E402  (after the skip: these tests need torch)
    BatchLayout,
    ChannelOrder,
    ColorSpec,
    GpuBatch,
    GpuFrame,
    GpuImage,
    ImageSpec,
    InteropError,
    Layout,
    PixelFormat,
    TensorPayload,
    frame_layout,
    from_tensor_payload,
    to_tensor_payload,
)

BT709 = ColorSpec(matrix="BT709", range="FULL")


def _values(shape: tuple[int, ...], dtype: Any = np.uint8, seed: int = 0) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)


# -- images -------------------------------------------------------------------------------------------


def test_a_packed_image_travels_as_its_own_tensor() -> None:
    image = GpuImage.from_numpy(_values((4, 6, 3)), layout="HWC").with_channel_order("RGB")
    payload = to_tensor_payload(image)
    assert payload.tensor.data_ptr() == image.ptr, "a packed image is not copied"
    assert tuple(payload.tensor.shape) == (4, 6, 3)
    facts = json.loads(payload.description)
    assert ImageSpec.model_validate(facts["spec"]) == image.spec
    assert (facts["kind"], facts["channel_order"]) == ("image", "RGB")
    rebuilt = from_tensor_payload(payload)
    assert rebuilt.ptr == image.ptr, "the rebuilt image wraps the tensor"
    assert rebuilt.spec == image.spec
    assert rebuilt.channel_order is ChannelOrder.RGB


def test_a_pitched_crop_travels_packed_with_its_values() -> None:
    source = GpuImage.empty(6, 9, 3, device="cpu", row_alignment=64)
    source.as_numpy()[...] = _values(source.shape)
    crop = source.crop(2, 1, 5, 4)
    payload = to_tensor_payload(crop)
    assert payload.tensor.is_contiguous()
    assert payload.tensor.data_ptr() != crop.ptr
    rebuilt = from_tensor_payload(pickle.loads(pickle.dumps(payload)))  # as the object store moves it
    assert rebuilt.row_pitch == 5 * 3
    np.testing.assert_array_equal(rebuilt.as_numpy(), crop.as_numpy())


def test_chw_bfloat16_and_read_only_images_round_trip() -> None:
    tensor = torch.randn(3, 4, 5).to(torch.bfloat16)
    chw = GpuImage.from_torch(tensor, layout="CHW")
    rebuilt = from_tensor_payload(to_tensor_payload(chw))
    assert (rebuilt.layout, rebuilt.dtype) == (Layout.CHW, "bfloat16")
    assert torch.equal(rebuilt.as_torch(), tensor)
    array = _values((4, 4))
    array.flags.writeable = False
    readonly = GpuImage.from_numpy(array)
    payload = to_tensor_payload(readonly)  # torch has no read-only tensors: a writable copy
    assert payload.tensor.data_ptr() != readonly.ptr
    rebuilt_copy = from_tensor_payload(payload)
    assert not rebuilt_copy.readonly
    np.testing.assert_array_equal(rebuilt_copy.as_numpy()[..., 0], array)


# -- frames -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [PixelFormat.NV12, PixelFormat.I420, PixelFormat.P010, PixelFormat.YUV444])
def test_a_frame_travels_as_its_one_block(fmt: PixelFormat) -> None:
    frame = GpuFrame.empty(8, 4, format=fmt, colour=BT709, device="cpu")
    frame.as_numpy()[...] = _values(frame.as_numpy().shape, frame.as_numpy().dtype)
    payload = to_tensor_payload(frame)
    assert payload.tensor.data_ptr() == frame.planes[0].ptr
    rebuilt = from_tensor_payload(payload)
    assert (rebuilt.format, rebuilt.width, rebuilt.height, rebuilt.colour) == (fmt, 8, 4, BT709)
    assert rebuilt.layout == frame_layout(fmt, 8, 4)
    np.testing.assert_array_equal(rebuilt.as_numpy(), frame.as_numpy())


def test_a_pitched_frame_and_one_of_separate_planes_are_packed_first() -> None:
    pitched = GpuFrame.empty(8, 4, format="NV12", device="cpu", row_alignment=64)
    for index, plane in enumerate(pitched.planes):
        plane.as_numpy()[...] = _values(plane.shape, seed=index)
    apart = GpuFrame.from_planes([_values((4, 8), seed=5), _values((2, 8), seed=6)], format="NV12")
    for frame in (pitched, apart):
        payload = to_tensor_payload(frame)
        assert tuple(payload.tensor.shape) == (6, 8)
        rebuilt = from_tensor_payload(payload)
        assert rebuilt.colour is None
        for got, want in zip(rebuilt.planes, frame.planes, strict=True):
            np.testing.assert_array_equal(got.as_numpy(), want.as_numpy())


# -- batches ------------------------------------------------------------------------------------------


def test_a_packed_batch_travels_as_its_4d_view() -> None:
    batch = GpuBatch.from_numpy(_values((3, 4, 4, 3), np.float32), layout="NHWC").with_channel_order("BGR")
    payload = to_tensor_payload(batch)
    assert payload.tensor.data_ptr() == batch.ptr
    rebuilt = from_tensor_payload(payload)
    assert (rebuilt.shape, rebuilt.layout, rebuilt.channel_order) == (
        batch.shape,
        BatchLayout.NHWC,
        ChannelOrder.BGR,
    )
    np.testing.assert_array_equal(rebuilt.as_numpy(), batch.as_numpy())


def test_a_strided_batch_is_packed_item_by_item() -> None:
    whole = _values((5, 3, 4, 4), np.float32)
    batch = GpuBatch.from_numpy(whole[::2])
    payload = to_tensor_payload(batch)
    assert payload.tensor.is_contiguous()
    rebuilt = from_tensor_payload(payload)
    assert rebuilt.is_contiguous
    np.testing.assert_array_equal(rebuilt.as_numpy(), whole[::2])


# -- refusals -----------------------------------------------------------------------------------------


def _image_payload() -> TensorPayload[GpuImage]:
    return to_tensor_payload(GpuImage.from_numpy(_values((4, 6))))


def _frame_payload() -> TensorPayload[GpuFrame]:
    return to_tensor_payload(GpuFrame.empty(8, 4, format="NV12", device="cpu"))


def _edited(payload: TensorPayload[Any], **changes: Any) -> TensorPayload[Any]:
    facts = json.loads(payload.description)
    facts.update(changes)
    return replace(payload, description=json.dumps(facts))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: replace(_image_payload(), description="{not json"), "not json"),
        (lambda: replace(_image_payload(), description="[1, 2]"), r"\[1, 2\]"),
        (lambda: _edited(_image_payload(), version=7), "version=7"),
        (lambda: _edited(_image_payload(), kind="video"), "kind='video'"),
        (lambda: _edited(_image_payload(), spec=None), "spec=None"),
        (lambda: _edited(_image_payload(), channel_order="XYZ"), "XYZ"),
        (lambda: replace(_image_payload(), tensor=torch.zeros(4, 7, 1, dtype=torch.uint8)), r"\(4, 7, 1\)"),
        (lambda: replace(_image_payload(), tensor=torch.zeros(4, 6, 1, dtype=torch.int16)), "int16"),
        (lambda: _edited(to_tensor_payload(GpuBatch.from_numpy(_values((2, 1, 2, 2)))), size=3), r"\(3,"),
        (lambda: _edited(_frame_payload(), width=6), "8x4"),
        (lambda: _edited(_frame_payload(), colour=[1]), r"colour=\[1\]"),
    ],
    ids=["json", "list", "version", "kind", "spec", "order", "shape", "dtype", "size", "width", "colour"],
)
def test_payloads_that_do_not_match_their_tensor_are_refused(make: Any, match: str) -> None:
    with pytest.raises(InteropError, match=match):
        from_tensor_payload(make())


def test_what_is_not_an_image_or_a_payload_is_refused() -> None:
    with pytest.raises(InteropError, match="expected a GpuImage, GpuFrame or GpuBatch, got ndarray"):
        to_tensor_payload(np.zeros((2, 2)))  # type: ignore[call-overload]
    with pytest.raises(InteropError, match="expected a TensorPayload, got tuple"):
        from_tensor_payload((torch.zeros(1), "{}"))  # type: ignore[arg-type]


def test_import_gpuimage_imports_neither_torch_nor_ray() -> None:
    code = "import sys, gpuimage; print('torch' in sys.modules, 'ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
