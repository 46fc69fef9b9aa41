"""The checks every imported or wrapped image passes: pointer range, and a re-validated spec."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import CPU, BoundsError, GpuImage, ImageSpec, Layout, SpecError
from gpuimage._source import SpecCache, SpecMemo, check_placement, spec_from_strided
from gpuimage.strategies import crops, image_specs

TOP = 2**64


@given(image_specs(max_side=16), st.data())
def test_pointers_whose_extent_crosses_2_64_are_refused(spec: ImageSpec, data: st.DataObject) -> None:
    # issue 11, defect 7: ptr + nbytes > 2**64 was accepted (and ctypes truncated it in DLPack)
    overshoot = data.draw(st.integers(1, spec.nbytes + 4096), label="overshoot")
    ptr = (TOP - spec.nbytes + overshoot) // spec.itemsize * spec.itemsize
    if ptr + spec.nbytes <= TOP:  # rounding down to the item size brought it back in range
        ptr += spec.itemsize
    # (a pointer of 2**64 itself is refused first, as not below 2**64)
    with pytest.raises(SpecError, match="2\\*\\*64"):
        GpuImage.from_pointer(ptr, spec)
    with pytest.raises(SpecError, match="2\\*\\*64"):
        spec_from_strided(ptr, spec.shape, spec.strides, spec.dtype, spec.layout, spec.device, where="test")


@given(image_specs(max_side=16), st.data())
def test_an_image_ending_at_2_64_and_its_crops_stay_in_range(spec: ImageSpec, data: st.DataObject) -> None:
    # issue 11, defect 7: the bound is inclusive, and crops never leave [ptr, ptr + nbytes)
    ptr = (TOP - spec.nbytes) // 256 * 256
    image = GpuImage.from_pointer(ptr, spec)
    x, y, width, height = data.draw(crops(spec))
    crop = image.crop(x, y, width, height)
    assert ptr <= crop.ptr
    assert crop.ptr + crop.spec.nbytes <= ptr + spec.nbytes <= TOP


def test_dlpack_capsule_keeps_a_pointer_near_2_64() -> None:
    # issue 11, defect 7: the capsule's c_void_p must carry the pointer unchanged
    spec = ImageSpec(height=2, width=3, channels=3, device="cpu")
    ptr = TOP - 256
    image = GpuImage.from_pointer(ptr, spec)
    again = GpuImage.from_dlpack(image, layout="HWC")
    assert again.ptr == ptr
    assert again.spec == spec


# -- from_pointer re-validates specs that skipped validation ---------------------------------------

_GOOD: dict[str, Any] = {
    "height": 4,
    "width": 5,
    "channels": 3,
    "dtype": "uint8",
    "layout": Layout.HWC,
    "row_pitch": 15,
    "pixel_stride": 3,
    "channel_stride": 1,
    "device": CPU,
}


@given(st.sampled_from(["HWC", "hwc", "CHW"]))
def test_string_layouts_of_constructed_specs_are_parsed(layout: str) -> None:
    # issue 11, defect 8: layout="HWC" as a str gave a transposed (C, H, W) view labelled HWC
    fields = {**_GOOD, "layout": layout}
    if layout == "CHW":
        fields.update(row_pitch=5, pixel_stride=1, channel_stride=20)
    spec = ImageSpec.model_construct(**fields)
    image = GpuImage.from_pointer(4096, spec)
    assert image.layout is Layout(layout.upper())
    assert image.spec == ImageSpec(**fields)
    assert image.shape == ((4, 5, 3) if layout.upper() == "HWC" else (3, 4, 5))


BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-dtype", {"dtype": "nope"}, "dtype='nope'"),
    ("numpy-dtype-object", {"dtype": np.dtype("complex64")}, "dtype"),
    ("unknown-layout", {"layout": "NHWC"}, "NHWC"),
    ("device-string-junk", {"device": "tpu"}, "tpu"),
    ("device-too-large", {"device": "cuda:4294967297"}, "2\\*\\*31"),
    ("float-height", {"height": 4.0}, "height"),
    ("bool-width", {"width": True}, "width"),
    ("string-pitch", {"row_pitch": "15"}, "row_pitch"),
    ("overlapping", {"row_pitch": 3}, "would overlap"),
    ("huge-stride", {"height": 1, "row_pitch": 2**64}, "below 2\\*\\*63"),
]


@pytest.mark.parametrize(
    ("fields", "message"), [case[1:] for case in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_constructed_specs_with_bad_fields_raise_spec_errors(fields: dict[str, Any], message: str) -> None:
    # issue 11, defect 8: a bad dtype raised KeyError; only geometry was checked again
    spec = ImageSpec.model_construct(**{**_GOOD, **fields})
    with pytest.raises(SpecError, match=message):
        GpuImage.from_pointer(4096, spec)


def test_constructed_specs_missing_fields_raise_spec_errors() -> None:
    # issue 11, defect 8: model_construct() leaves required fields out
    spec = ImageSpec.model_construct(height=4, width=5)
    with pytest.raises(SpecError, match="without row_pitch, pixel_stride, channel_stride"):
        GpuImage.from_pointer(4096, spec)


# -- the import caches: one spec per geometry, pointer checks on every import (issue 12) ------------


@given(image_specs(max_side=16), st.integers(0, 16))
def test_check_placement_accepts_exactly_the_pointers_inside_the_allocation(
    spec: ImageSpec, slack_items: int
) -> None:
    base = 1 << 20
    slack = slack_items * spec.itemsize
    size = spec.nbytes + slack
    for offset in range(0, slack + 1, spec.itemsize):
        assert check_placement(base + offset, spec, base, size, where="test") == base + offset
    with pytest.raises(BoundsError, match="outside the memory it came from"):
        check_placement(base + slack + spec.itemsize, spec, base, size, where="test")
    with pytest.raises(BoundsError):
        check_placement(base - spec.itemsize, spec, base, size, where="test")
    if spec.itemsize > 1:
        with pytest.raises(SpecError, match="not aligned"):
            check_placement(base + 1, spec, base, size, where="test")
    with pytest.raises(SpecError, match="non-NULL"):
        check_placement(0, spec, 0, size, where="test")
    with pytest.raises(SpecError, match="2\\*\\*64"):
        check_placement(TOP - spec.nbytes + spec.itemsize, spec, 0, -1, where="test")


def test_the_spec_cache_is_bounded_and_gives_back_what_was_put() -> None:
    cache = SpecCache()
    spec = ImageSpec.packed(height=2, width=3, channels=1, device="cpu")
    assert cache.get("key") is None
    assert cache.put("key", spec) is spec
    assert cache.get("key") is spec
    for index in range(SpecCache._LIMIT + 1):  # pyright: ignore[reportPrivateUsage]
        cache.put(index, spec)
    assert cache.get("key") is None  # cleared when full: a later import checks everything again


def test_the_spec_memo_computes_once_per_spec_and_never_confuses_specs() -> None:
    calls: list[ImageSpec] = []

    def make(spec: ImageSpec) -> int:
        calls.append(spec)
        return spec.width

    memo = SpecMemo(make)
    narrow = ImageSpec.packed(height=2, width=3, device="cpu")
    wide = ImageSpec.packed(height=2, width=5, device="cpu")
    assert [memo(narrow), memo(narrow), memo(wide), memo(narrow)] == [3, 3, 5, 3]
    assert calls == [narrow, wide]


def test_the_spec_memo_forgets_a_spec_once_it_is_gone() -> None:
    # issue 12: one-off specs (CAI, DLPack imports) must not pile up in the memos
    memo = SpecMemo(lambda spec: spec.width)
    specs = [ImageSpec(height=2, width=width, device="cpu") for width in range(1, 50)]
    assert [memo(spec) for spec in specs] == list(range(1, 50))
    assert len(memo._values) == 49  # pyright: ignore[reportPrivateUsage]
    del specs
    gc.collect()
    assert len(memo._values) == 0  # pyright: ignore[reportPrivateUsage]


def test_a_failing_memo_stores_nothing() -> None:
    def refuse(spec: ImageSpec) -> int:
        raise SpecError("no")

    memo = SpecMemo(refuse)
    spec = ImageSpec.packed(height=2, width=3, device="cpu")
    for _ in range(2):
        with pytest.raises(SpecError):
            memo(spec)


def test_numpy_imports_of_one_geometry_share_one_spec() -> None:
    first = GpuImage.from_numpy(np.zeros((4, 6, 3), np.uint8), layout="HWC")
    second = GpuImage.from_numpy(np.zeros((4, 6, 3), np.uint8), layout="HWC")
    assert first.spec == second.spec
