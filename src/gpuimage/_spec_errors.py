"""How a spec's bad input becomes a ``SpecError``: pydantic's errors translated, and a bad dtype,
layout or device raised as both a ``SpecError`` and the error that value raises elsewhere."""

from __future__ import annotations

from pydantic import ValidationError

from ._errors import DeviceError, DTypeError, GpuImageError, LayoutError, PitchError, SpecError

__all__ = [
    "STRIDE_FIELDS",
    "SpecDTypeError",
    "SpecDeviceError",
    "SpecLayoutError",
    "as_spec_error",
    "translate",
]

STRIDE_FIELDS = ("row_pitch", "pixel_stride", "channel_stride")


# A bad dtype, layout or device of a spec is both a SpecError (what ImageSpec promises) and the
# error the same value raises elsewhere (what ``except DTypeError`` code expects).
class SpecDTypeError(SpecError, DTypeError):
    """An ImageSpec whose dtype is not an image dtype."""


class SpecLayoutError(SpecError, LayoutError):
    """An ImageSpec whose layout is not HWC or CHW."""


class SpecDeviceError(SpecError, DeviceError):
    """An ImageSpec whose device is not a CUDA ordinal or the host."""


def as_spec_error(error: GpuImageError) -> SpecError:
    """``error`` as a ``SpecError`` (a field error of a spec), keeping its message and its class."""
    if isinstance(error, SpecError):
        return error
    for plain, combined in (
        (DTypeError, SpecDTypeError),
        (LayoutError, SpecLayoutError),
        (DeviceError, SpecDeviceError),
    ):
        if isinstance(error, plain):
            return combined(str(error))
    return SpecError(str(error))


def translate(exc: ValidationError) -> SpecError:
    """Turn pydantic's error into ours: re-raise our own exception if a validator raised one."""
    errors = exc.errors(include_url=False)
    # A stride left None (the packed fill stops at a bad inner stride) is not the caller's mistake:
    # name a value they gave, or a field they left out, first.
    given = [error for error in errors if error.get("input") is not None or error["type"] == "missing"]
    first = (given or errors)[0]
    original = first.get("ctx", {}).get("error")
    if isinstance(original, GpuImageError):
        return as_spec_error(original)
    location = ".".join(str(part) for part in first["loc"]) or "spec"
    error = PitchError if location in STRIDE_FIELDS else SpecError
    more = f" ({len(errors) - 1} more error(s) after this one)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return error(f"ImageSpec: expected a value for {location}, got none ({first['msg']}){more}.")
    return error(f"ImageSpec: {location}: {first['msg']}, got {location}={first.get('input')!r}{more}.")
