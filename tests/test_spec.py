"""ImageSpec: validation, derived values and JSON, checked against NumPy's own stride arithmetic."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import (
    CPU,
    Device,
    DeviceError,
    DTypeError,
    DTypeName,
    ImageSpec,
    Layout,
    LayoutError,
    PitchError,
    SpecError,
)
from gpuimage.strategies import image_specs


@given(image_specs(dtypes=("uint8", "int16", "float32", "float64")))
def test_shape_strides_and_extent_match_numpy(spec: ImageSpec) -> None:
    buffer = np.zeros(spec.nbytes, dtype=np.uint8)
    view = np.lib.stride_tricks.as_strided(
        buffer.view(spec.dtype)[:1], shape=spec.shape, strides=spec.strides
    )
    assert view.shape == spec.shape
    assert view.strides == spec.strides
    # The last element ends exactly at nbytes: the extent is tight.
    last = view[tuple(slice(size - 1, size) for size in spec.shape)]
    assert last.__array_interface__["data"][0] - buffer.ctypes.data + spec.itemsize == spec.nbytes


@given(image_specs())
def test_elements_never_share_bytes(spec: ImageSpec) -> None:
    offsets = (
        np.arange(spec.shape[0])[:, None, None] * spec.strides[0]
        + np.arange(spec.shape[1])[None, :, None] * spec.strides[1]
        + np.arange(spec.shape[2])[None, None, :] * spec.strides[2]
    ).ravel()
    starts = np.sort(offsets)
    assert np.all(np.diff(starts) >= spec.itemsize)
    assert starts[-1] + spec.itemsize <= spec.nbytes


@given(image_specs())
def test_json_round_trip(spec: ImageSpec) -> None:
    text = spec.model_dump_json()
    assert ImageSpec.from_json(text) == spec
    assert ImageSpec.model_validate_json(text) == spec


def test_defaults_are_packed_per_layout() -> None:
    hwc = ImageSpec(height=4, width=5, channels=3, dtype="float32")
    assert (hwc.shape, hwc.strides, hwc.nbytes) == ((4, 5, 3), (60, 12, 4), 240)
    assert hwc.is_contiguous
    chw = ImageSpec(height=4, width=5, channels=3, dtype="float32", layout="CHW")
    assert (chw.shape, chw.strides, chw.plane_pitch) == ((3, 4, 5), (80, 20, 4), 80)
    assert chw.is_contiguous


def test_packed_with_row_alignment_pads_rows_and_planes() -> None:
    spec = ImageSpec.packed(height=3, width=5, channels=3, layout="CHW", dtype="uint16", row_alignment=256)
    assert spec.row_pitch == 256
    assert spec.plane_pitch == 256 * 3
    assert not spec.is_contiguous
    assert spec.nbytes == 2 * 768 + 2 * 256 + 5 * 2


def test_device_parsing_and_serialization() -> None:
    assert ImageSpec(height=1, width=1, device="cuda:3").device == Device("cuda", 3)
    assert ImageSpec(height=1, width=1, device=2).device == Device("cuda", 2)
    assert ImageSpec(height=1, width=1, device="cpu").device == CPU
    assert '"device":"cpu"' in ImageSpec(height=1, width=1, device="cpu").model_dump_json()


def test_dtype_accepts_numpy_types_and_layout_accepts_strings() -> None:
    spec = ImageSpec(height=2, width=2, dtype=np.float16, layout="CHW")
    assert spec.dtype == "float16"
    assert spec.layout is Layout.CHW


def test_replace_revalidates() -> None:
    spec = ImageSpec(height=2, width=4, channels=3)
    assert spec.replace(row_pitch=16).row_pitch == 16
    with pytest.raises(PitchError, match="row_pitch=8 bytes is smaller than the 12 bytes"):
        spec.replace(row_pitch=8)
    with pytest.raises(SpecError, match="unknown field"):
        spec.replace(colour="red")


def test_spec_is_frozen() -> None:
    spec = ImageSpec(height=2, width=2)
    with pytest.raises(ValueError, match="frozen"):
        setattr(spec, "height", 3)  # noqa: B010  - bypass static checks to test the runtime guard


def test_json_schema_keeps_precise_types() -> None:
    schema = ImageSpec.model_json_schema()
    properties = schema["properties"]
    assert properties["height"]["type"] == "integer"
    assert properties["height"]["exclusiveMinimum"] == 0
    assert "bfloat16" in properties["dtype"]["enum"]
    assert properties["device"]["pattern"] == r"^(cpu|cuda:\d+)$"


BAD_SPECS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("zero-height", {"height": 0, "width": 4}, SpecError, "height"),
    ("negative-width", {"height": 2, "width": -1}, SpecError, "width"),
    ("bool-size", {"height": True, "width": 4}, SpecError, "height"),
    ("float-size", {"height": 2.0, "width": 4}, SpecError, "height"),
    ("zero-channels", {"height": 2, "width": 4, "channels": 0}, SpecError, "channels"),
    ("unknown-dtype", {"height": 2, "width": 2, "dtype": "complex64"}, DTypeError, "complex64"),
    ("uint64", {"height": 2, "width": 2, "dtype": np.uint64}, DTypeError, "uint64"),
    ("byteswapped", {"height": 2, "width": 2, "dtype": np.dtype(">f4")}, DTypeError, "dtype"),
    ("unknown-layout", {"height": 2, "width": 2, "layout": "NHWC"}, LayoutError, "NHWC"),
    ("unknown-device", {"height": 2, "width": 2, "device": "tpu:0"}, DeviceError, "tpu"),
    ("negative-device", {"height": 2, "width": 2, "device": -1}, DeviceError, "device"),
    (
        "pitch-below-row",
        {"height": 2, "width": 4, "channels": 3, "row_pitch": 11},
        PitchError,
        "rows would overlap",
    ),
    (
        "pitch-not-multiple",
        {"height": 2, "width": 2, "dtype": "float32", "row_pitch": 10},
        PitchError,
        "multiple",
    ),
    ("zero-pitch", {"height": 2, "width": 2, "row_pitch": 0}, PitchError, "greater than 0"),
    (
        "planes-overlap",
        {"height": 4, "width": 4, "channels": 3, "layout": "CHW", "channel_stride": 12},
        PitchError,
        "channels would overlap",
    ),
    (
        "pixels-overlap-channels",
        {"height": 1, "width": 4, "channels": 3, "pixel_stride": 2},
        PitchError,
        "pixels would overlap",
    ),
    ("extent-overflow", {"height": 2**31, "width": 2**31, "channels": 4}, SpecError, "2\\*\\*63"),
    ("unknown-field", {"height": 2, "width": 2, "colour": "red"}, TypeError, "colour"),
]


@pytest.mark.parametrize(
    ("fields", "error", "message"), [case[1:] for case in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_specs_are_rejected_with_a_reason(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ImageSpec(**fields)


def test_bad_json_raises_spec_error() -> None:
    with pytest.raises(SpecError, match="row_pitch"):
        ImageSpec.from_json(
            '{"height":2,"width":4,"channels":3,"dtype":"uint8","layout":"HWC","row_pitch":5,'
            '"pixel_stride":3,"channel_stride":1,"device":"cuda:0"}'
        )
    with pytest.raises(SpecError):
        ImageSpec.from_json("{not json")


@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 4), st.sampled_from([1, 2, 64, 256, 512]))
def test_row_alignment_is_honoured(height: int, width: int, channels: int, alignment: int) -> None:
    spec = ImageSpec.packed(
        height=height, width=width, channels=channels, dtype="float32", row_alignment=alignment
    )
    assert spec.row_pitch % alignment == 0
    assert spec.row_pitch % 4 == 0
    assert spec.row_pitch - width * channels * 4 < max(alignment, 4)


# -- every construction path raises SpecError -----------------------------------------------------

_FIELD_NAMES = (
    "height",
    "width",
    "channels",
    "dtype",
    "layout",
    "row_pitch",
    "pixel_stride",
    "channel_stride",
)
_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["uint8", "float32", "HWC", "CHW", "cpu", "cuda:0", "cuda:99999999999"]),
    st.lists(st.integers(0, 3), max_size=2),
)
_raw_fields = st.dictionaries(st.sampled_from((*_FIELD_NAMES, "device", "colour")), _json_values, max_size=10)


@given(_raw_fields)
def test_model_validate_gives_a_spec_or_a_spec_error(fields: dict[str, Any]) -> None:
    # issue 11, defect 10: model_validate raised pydantic's ValidationError or a bare TypeError
    try:
        spec = ImageSpec.model_validate(fields)
    except SpecError as exc:
        message = str(exc)
    else:
        assert spec == ImageSpec(**fields)
        return
    assert message.startswith("ImageSpec")


@given(st.one_of(_raw_fields.map(json.dumps), st.text(max_size=40), st.binary(max_size=20)))
def test_json_construction_gives_a_spec_or_a_spec_error(text: str | bytes) -> None:
    # issue 11, defect 10: model_validate_json and from_json raised TypeError or ValidationError
    for parse in (ImageSpec.model_validate_json, ImageSpec.from_json):
        try:
            spec = parse(text)
        except SpecError:
            continue
        assert ImageSpec.from_json(spec.model_dump_json()) == spec


VALIDATE_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("not-a-dict", lambda: ImageSpec.model_validate(5), "valid dictionary"),
    ("zero-height", lambda: ImageSpec.model_validate({"height": 0, "width": 2}), "greater than 0"),
    ("missing-width", lambda: ImageSpec.model_validate({"height": 2}), "width"),
    ("unknown-field", lambda: ImageSpec.model_validate({"height": 2, "width": 2, "colour": 1}), "colour"),
    ("json-missing-width", lambda: ImageSpec.model_validate_json('{"height": 2}'), "width"),
    ("json-not-text", lambda: ImageSpec.from_json(123), "JSON input should be"),  # type: ignore[arg-type]
    ("json-broken", lambda: ImageSpec.from_json("{not json"), "Invalid JSON"),
    ("strings-missing", lambda: ImageSpec.model_validate_strings({}), "height"),
    ("copy-bad-height", lambda: ImageSpec(height=2, width=2).model_copy(update={"height": 0}), "height"),
    ("copy-not-mapping", lambda: ImageSpec(height=2, width=2).model_copy(update=[1]), "mapping"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("call", "message"), [case[1:] for case in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES]
)
def test_every_construction_path_raises_spec_error(call: Callable[[], object], message: str) -> None:
    # issue 11, defect 10: only SpecError, with pydantic's explanation in the message
    with pytest.raises(SpecError, match=message):
        call()


@pytest.mark.parametrize(
    ("fields", "also"),
    [
        ({"dtype": "complex64"}, DTypeError),
        ({"layout": "NHWC"}, LayoutError),
        ({"device": "tpu:0"}, DeviceError),
    ],
    ids=["dtype", "layout", "device"],
)
def test_bad_dtype_layout_device_are_spec_errors_too(fields: dict[str, Any], also: type[Exception]) -> None:
    # issue 11, defect 10: the docstring promises SpecError for an unknown dtype, layout or device
    with pytest.raises(SpecError) as caught:
        ImageSpec(height=2, width=2, **fields)
    assert isinstance(caught.value, also)
    with pytest.raises(SpecError) as caught:
        ImageSpec.model_validate({"height": 2, "width": 2, **fields})
    assert isinstance(caught.value, also)


# -- the default plane pitch of a padded CHW spec -------------------------------------------------


@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.integers(1, 4),
    st.sampled_from(["uint8", "uint16", "float32", "float64"]),
    st.integers(0, 64),
)
def test_default_plane_pitch_is_height_times_row_pitch(
    height: int, width: int, channels: int, dtype: DTypeName, padding_items: int
) -> None:
    # issue 11: ImageSpec(..., layout="CHW", row_pitch=32) raised PitchError (plane pitch W*H*s)
    itemsize = np.dtype(dtype).itemsize
    row_pitch = (width + padding_items) * itemsize
    spec = ImageSpec(
        height=height, width=width, channels=channels, dtype=dtype, layout="CHW", row_pitch=row_pitch
    )
    assert spec.plane_pitch == height * row_pitch
    assert spec.pixel_stride == itemsize
    assert (
        ImageSpec.model_validate(
            {
                "height": height,
                "width": width,
                "channels": channels,
                "dtype": dtype,
                "layout": "CHW",
                "row_pitch": row_pitch,
            }
        )
        == spec
    )


def test_issue_example_of_a_padded_chw_spec() -> None:
    # issue 11: the exact example of the report
    spec = ImageSpec(height=5, width=7, channels=3, dtype="float32", layout="CHW", row_pitch=32)
    assert (spec.strides, spec.nbytes) == ((160, 32, 4), 2 * 160 + 4 * 32 + 7 * 4)


@given(st.integers(1, 16), st.integers(1, 16), st.integers(1, 4), st.integers(0, 8))
def test_default_row_pitch_steps_over_padded_pixels(height: int, width: int, channels: int, pad: int) -> None:
    # issue 11 (same rule, HWC): a missing stride spans the given inner one
    pixel_stride = channels + pad
    spec = ImageSpec(height=height, width=width, channels=channels, pixel_stride=pixel_stride)
    assert spec.row_pitch == width * pixel_stride


@pytest.mark.parametrize(
    ("fields", "also"),
    [
        ({"dtype": "complex64"}, DTypeError),
        ({"layout": "NHWC"}, LayoutError),
        ({"device": "cuda:-1"}, DeviceError),
    ],
    ids=["dtype", "layout", "device"],
)
def test_packed_raises_spec_errors_too(fields: dict[str, Any], also: type[Exception]) -> None:
    # issue 11, defect 10: packed() is a construction path as well
    with pytest.raises(SpecError, match=r"ImageSpec\.packed\(\)") as caught:
        ImageSpec.packed(height=2, width=2, **fields)
    assert isinstance(caught.value, also)


# -- a pitch error names the smallest valid value -------------------------------------------------

_SMALLEST = re.compile(r"Use a (\w+) of at least (\d+) bytes")


def _smallest_named(error: PitchError) -> tuple[str, int]:
    found = _SMALLEST.search(str(error))
    assert found is not None, f"no smallest valid value in: {error}"
    return found[1], int(found[2])


@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 4),
    st.sampled_from(["uint16", "int32", "float32", "float64"]),
    st.sampled_from(["HWC", "CHW"]),
    st.integers(1, 200),
)
def test_a_pitch_off_the_item_size_names_the_smallest_valid_one(
    height: int, width: int, channels: int, dtype: DTypeName, layout: str, row_pitch: int
) -> None:
    fields: dict[str, Any] = {
        "height": height,
        "width": width,
        "channels": channels,
        "dtype": dtype,
        "layout": layout,
        "device": "cpu",
    }
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * (channels if layout == "HWC" else 1) * itemsize
    if height == 1 or row_pitch % itemsize == 0:
        return  # valid, or (one row) any pitch goes: not this test's case
    with pytest.raises(PitchError) as caught:
        ImageSpec(**fields, row_pitch=row_pitch)
    name, smallest = _smallest_named(caught.value)
    assert name == "row_pitch"
    # the smallest multiple of the item size that is at least the row's bytes and the given pitch
    assert smallest == -(-max(row_bytes, row_pitch) // itemsize) * itemsize
    assert ImageSpec(**fields, row_pitch=smallest).row_pitch == smallest, "the value named is valid"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"height": 2, "width": 5, "channels": 3, "dtype": "float32", "row_pitch": 61},
            "row_pitch=61 bytes is not a multiple of the item size (4 bytes); every element must start on "
            "an item boundary. Use a row_pitch of at least 64 bytes (the smallest multiple of 4 that is at "
            "least 61 and spans the 3 channels and 5 pixels it steps over).",
        ),
        (
            {"height": 2, "width": 5, "channels": 3, "dtype": "float32", "row_pitch": 50},
            "Use a row_pitch of at least 60 bytes (the smallest multiple of 4 that is at least 50 and spans "
            "the 3 channels and 5 pixels it steps over).",
        ),
        (
            {
                "height": 4,
                "width": 5,
                "channels": 2,
                "dtype": "uint16",
                "layout": "CHW",
                "channel_stride": 41,
            },
            "Use a channel_stride of at least 42 bytes (the smallest multiple of 2 that is at least 41 and "
            "spans the 5 pixels and 4 rows it steps over).",
        ),
    ],
    ids=["above-the-row", "below-the-row", "plane-pitch"],
)
def test_pitch_errors_off_the_item_size_are_pinned(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(PitchError) as caught:
        ImageSpec(**fields, device="cpu")
    assert message in str(caught.value)
