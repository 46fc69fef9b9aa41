"""``_image_batch_spec``: batch layouts, item counts and pitches, packed item specs, and the items of a
4-D CUDA Array Interface. Pure metadata: no GPU."""

from __future__ import annotations

from typing import Any

import pytest

import gpuimage
from gpuimage import BatchLayout, ImageSpec, Layout
from gpuimage._image_batch_spec import (
    cai_items,
    checked_count,
    checked_item_pitch,
    packed_item_spec,
    parse_batch_layout,
)

FAKE = 0x7F0000000000
WHERE = "test()"
SPEC = ImageSpec(height=2, width=3, channels=3, dtype="float32", layout="CHW", device="cuda:0")  # 72 bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NCHW", BatchLayout.NCHW),
        ("nhwc", BatchLayout.NHWC),
        (BatchLayout.NHWC, BatchLayout.NHWC),
        (Layout.CHW, BatchLayout.NCHW),
        (Layout.HWC, BatchLayout.NHWC),
    ],
)
def test_batch_layouts_parse(value: object, expected: BatchLayout) -> None:
    assert parse_batch_layout(value, where=WHERE) is expected


@pytest.mark.parametrize("value", ["CHW", "NCWH", None, 4, gpuimage.CHW])
def test_other_layouts_are_refused(value: object) -> None:
    with pytest.raises(gpuimage.LayoutError, match=r"test\(\): expected layout 'NCHW' or 'NHWC'"):
        parse_batch_layout(value, where=WHERE)


def test_item_layout_of_a_batch_layout() -> None:
    assert BatchLayout.NCHW.item is Layout.CHW
    assert BatchLayout.NHWC.item is Layout.HWC
    assert BatchLayout.NCHW == "NCHW"


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "2", None])
def test_counts_must_be_positive_ints(value: object) -> None:
    with pytest.raises(gpuimage.SpecError, match="positive int number of items"):
        checked_count(value, where=WHERE)


@pytest.mark.parametrize(
    ("pitch", "size", "given", "expected"),
    [
        (72, 4, True, 72),
        (256, 4, True, 256),
        (0, 1, False, 72),  # one item read off an array: its pitch carries nothing
        (-4, 1, False, 72),
        (6, 1, False, 72),
        (512, 1, False, 512),
    ],
)
def test_usable_pitches(pitch: int, size: int, given: bool, expected: int) -> None:
    assert checked_item_pitch(pitch, size, SPEC, where=WHERE, given=given) == expected


@pytest.mark.parametrize(
    ("pitch", "size", "error", "message"),
    [
        (68, 2, gpuimage.PitchError, r"at least one item's extent \(72 bytes\)"),
        (0, 2, gpuimage.PitchError, "overlap"),
        (74, 2, gpuimage.PitchError, r"multiple of the item size \(4 bytes\)"),
        (-72, 2, gpuimage.StrideError, "non-negative"),
        (None, 2, gpuimage.PitchError, "int item_pitch"),
        (True, 2, gpuimage.PitchError, "int item_pitch"),
        (0, 1, gpuimage.PitchError, "at least one item's extent"),  # given: checked even for one item
        (2**62, 3, gpuimage.SpecError, r"2\*\*63"),
    ],
)
def test_bad_pitches(pitch: object, size: int, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        checked_item_pitch(pitch, size, SPEC, where=WHERE)


def test_packed_item_specs_are_validated_once() -> None:
    first = packed_item_spec(4, 5, 3, "uint8", Layout.HWC, "cuda:0")
    assert packed_item_spec(4, 5, 3, "uint8", Layout.HWC, "cuda:0") is first
    assert first.strides == (15, 3, 1)
    with pytest.raises(gpuimage.SpecError):
        packed_item_spec(True, 5, 3, "uint8", Layout.HWC, "cuda:0")
    with pytest.raises(gpuimage.SpecError):
        packed_item_spec(0, 5, 3, "uint8", Layout.HWC, "cuda:0")


class _Cai:
    def __init__(self, **fields: Any) -> None:
        self.__cuda_array_interface__ = {
            "shape": (4, 3, 2, 3),
            "typestr": "<f4",
            "data": (FAKE, False),
            "strides": (256, 24, 12, 4),
            "version": 3,
            "stream": 7,
        }
        self.__cuda_array_interface__.update(fields)


def test_cai_items_cut_the_batch_interface() -> None:
    first, last, size, pitch = cai_items(_Cai(), where=WHERE)
    assert (size, pitch) == (4, 256)
    assert first.__cuda_array_interface__["shape"] == (3, 2, 3)
    assert first.__cuda_array_interface__["strides"] == (24, 12, 4)
    assert first.__cuda_array_interface__["stream"] == 7
    assert last.__cuda_array_interface__["data"] == (FAKE + 3 * 256, False)


def test_cai_items_without_strides_are_packed() -> None:
    first, last, _, pitch = cai_items(_Cai(strides=None, typestr="<f2"), where=WHERE)
    assert pitch == 3 * 2 * 3 * 2
    assert first.__cuda_array_interface__["strides"] is None
    assert last.__cuda_array_interface__["data"][0] == FAKE + 3 * pitch


class _Raises:
    @property
    def __cuda_array_interface__(self) -> dict[str, object]:
        raise AttributeError("no")


@pytest.mark.parametrize(
    ("obj", "error", "message"),
    [
        (object(), gpuimage.InteropError, "has no __cuda_array_interface__"),
        (_Raises(), gpuimage.InteropError, "has no __cuda_array_interface__"),
        (_Cai.__new__(_Cai), gpuimage.InteropError, "has no"),
        (_Cai(shape=(3, 2, 3)), gpuimage.LayoutError, "expected a 4-D"),
        (_Cai(shape=[4, 3, 2, "3"]), gpuimage.InteropError, "'shape' to be a tuple of ints"),
        (_Cai(data=None), gpuimage.InteropError, r"'data' to be a \(pointer, readonly\) pair"),
        (_Cai(data=(1.5, False)), gpuimage.InteropError, "'data'"),
        (_Cai(strides=(24, 12, 4)), gpuimage.InteropError, "expected 4 strides"),
        (_Cai(strides=(256.0, 24, 12, 4)), gpuimage.InteropError, "'strides' to be a tuple of ints"),
        (_Cai(shape=(0, 3, 2, 3)), gpuimage.SpecError, "positive int number of items"),
    ],
)
def test_bad_interfaces_are_refused(obj: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        cai_items(obj, where=WHERE)


def test_an_interface_that_is_not_a_dict() -> None:
    class NotADict:
        __cuda_array_interface__ = (("shape", (1, 1, 1, 1)),)

    with pytest.raises(gpuimage.InteropError, match="is a tuple, not a dict"):
        cai_items(NotADict(), where=WHERE)
