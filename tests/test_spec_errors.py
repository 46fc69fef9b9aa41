"""How a spec's bad input becomes our error (``_spec_errors``): pydantic's ``ValidationError`` is translated
into a ``SpecError`` (a ``PitchError`` for a stride field) that names the field and the value, our own
errors raised inside a validator come back as they were, and a bad dtype, layout or device is both a
``SpecError`` and the error that value raises elsewhere."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from gpuimage import (
    BoundsError,
    DeviceError,
    DTypeError,
    GpuImageError,
    ImageSpec,
    LayoutError,
    PitchError,
    SpecError,
)
from gpuimage._spec_errors import (
    STRIDE_FIELDS,
    SpecDeviceError,
    SpecDTypeError,
    SpecLayoutError,
    as_spec_error,
    translate,
)

_Positive = Annotated[int, Field(gt=0)]


class _Fields(BaseModel):
    """A model with a spec's field names, to make pydantic's errors with."""

    height: _Positive
    row_pitch: _Positive = 1
    channel_stride: _Positive = 1
    dtype: str = "uint8"
    whole: bool = True

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value != "uint8":
            raise SpecDTypeError(f"ImageSpec: expected uint8, got dtype={value!r}.")  # ours, raised inside
        return value

    @model_validator(mode="after")
    def _whole(self) -> _Fields:
        if not self.whole:
            raise ValueError("not whole")
        return self


def _translated(**fields: Any) -> SpecError:
    with pytest.raises(ValidationError) as caught:
        _Fields(**fields)
    return translate(caught.value)


def test_a_missing_field_is_named() -> None:
    error = _translated()
    assert type(error) is SpecError
    assert str(error) == "ImageSpec: expected a value for height, got none (Field required)."


def test_a_bad_value_names_the_field_and_the_value() -> None:
    error = _translated(height=0)
    assert type(error) is SpecError
    assert str(error) == "ImageSpec: height: Input should be greater than 0, got height=0."


@pytest.mark.parametrize("field", ["row_pitch", "channel_stride"])
def test_a_bad_stride_is_a_pitch_error(field: str) -> None:
    error = _translated(height=1, **{field: -3})
    assert type(error) is PitchError
    assert str(error) == f"ImageSpec: {field}: Input should be greater than 0, got {field}=-3."


def test_more_errors_are_counted() -> None:
    error = _translated(height=0, row_pitch=0, channel_stride=0)
    assert str(error) == (
        "ImageSpec: height: Input should be greater than 0, got height=0 (2 more error(s) after this one)."
    )


def test_our_own_error_inside_a_validator_comes_back_as_it_was() -> None:
    error = _translated(height=1, dtype="int8")
    assert type(error) is SpecDTypeError
    assert str(error) == "ImageSpec: expected uint8, got dtype='int8'."


def test_a_model_wide_error_names_the_spec() -> None:
    error = _translated(height=1, whole=False)
    assert type(error) is SpecError
    assert str(error) == "ImageSpec: spec: Value error, not whole, got spec={'height': 1, 'whole': False}."


def test_the_stride_fields_are_the_specs() -> None:
    assert STRIDE_FIELDS == ("row_pitch", "pixel_stride", "channel_stride")
    assert set(STRIDE_FIELDS) <= set(ImageSpec.model_fields)


# -- as_spec_error ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "combined"),
    [(DTypeError, SpecDTypeError), (LayoutError, SpecLayoutError), (DeviceError, SpecDeviceError)],
)
def test_a_field_error_becomes_both_classes(plain: type[GpuImageError], combined: type[SpecError]) -> None:
    error = as_spec_error(plain("ImageSpec: a message."))
    assert type(error) is combined
    assert isinstance(error, SpecError)
    assert isinstance(error, plain), "except DTypeError (or LayoutError, DeviceError) still catches it"
    assert str(error) == "ImageSpec: a message."


def test_a_spec_error_is_kept_and_any_other_becomes_a_spec_error() -> None:
    pitch = PitchError("ImageSpec: rows overlap.")
    assert as_spec_error(pitch) is pitch
    other = as_spec_error(BoundsError("ImageSpec: out of bounds."))
    assert type(other) is SpecError
    assert str(other) == "ImageSpec: out of bounds."


# -- through ImageSpec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error", "named"),
    [
        ({"height": 0, "width": 1}, SpecError, "height=0"),
        ({"height": 1, "width": True}, SpecError, "width=True"),
        ({"height": 1, "width": 1, "row_pitch": -1}, PitchError, "row_pitch=-1"),
        ({"height": 1, "width": 1, "layout": "CHW", "row_pitch": 1.5}, PitchError, "row_pitch=1.5"),
        ({"height": 1, "width": 1, "dtype": "complex64"}, SpecDTypeError, "dtype='complex64'"),
        ({"height": 1, "width": 1, "layout": "NHWC"}, SpecLayoutError, "layout='NHWC'"),
        ({"height": 1, "width": 1, "device": "tpu"}, SpecDeviceError, "device='tpu'"),
    ],
    ids=["height", "width", "row_pitch", "float row_pitch", "dtype", "layout", "device"],
)
def test_imagespec_raises_the_translated_error_naming_the_field(
    fields: dict[str, Any], error: type[SpecError], named: str
) -> None:
    with pytest.raises(error) as caught:
        ImageSpec(**fields)
    assert type(caught.value) is error
    assert named in str(caught.value)
    assert str(caught.value).startswith("ImageSpec")
    assert caught.value.__cause__ is None, "pydantic's error is not chained to ours"


def test_model_validate_translates_too() -> None:
    with pytest.raises(PitchError, match=r"^ImageSpec: channel_stride: .*, got channel_stride=0\.$"):
        ImageSpec.model_validate(
            {"height": 1, "width": 1, "row_pitch": 1, "pixel_stride": 1, "channel_stride": 0}
        )


# issue 12: found by the per-module tests; translate() names a value the caller gave first
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"pixel_stride": 1.5}, "pixel_stride=1.5"),
        ({"channel_stride": 0}, "channel_stride=0"),
        ({"layout": "CHW", "pixel_stride": -2}, "pixel_stride=-2"),
    ],
    ids=["float pixel_stride", "zero channel_stride", "negative chw pixel_stride"],
)
def test_a_bad_inner_stride_is_the_one_named(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(PitchError) as caught:
        ImageSpec(height=2, width=2, **fields)
    assert named in str(caught.value)
