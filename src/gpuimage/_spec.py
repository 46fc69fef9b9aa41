"""``ImageSpec``: the pure, validated description of an image's memory. No pointer, no GPU."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Annotated, Any, ClassVar, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ._device import Device, DeviceLike, parse_device
from ._dtypes import DTypeLike, DTypeName, dtype_info, parse_dtype
from ._errors import GpuImageError, SpecError
from ._geometry import (
    Geometry,
    byte_extent,
    check_geometry,
    layout_shape,
    layout_strides,
    packed_geometry,
)
from ._layout import Layout, LayoutLike, parse_layout
from ._spec_errors import STRIDE_FIELDS, as_spec_error, translate

__all__ = ["ImageSpec", "field_names", "trusted_spec"]

T = TypeVar("T")


def _field(parse: Callable[..., T]) -> Callable[[object], T]:
    """A field validator that raises ``parse``'s errors as ``SpecError`` subclasses."""

    def validate(value: object) -> T:
        try:
            return parse(value, where="ImageSpec")
        except GpuImageError as exc:
            raise as_spec_error(exc) from None

    return validate


_Size = Annotated[int, Strict(), Field(gt=0)]
_Bytes = Annotated[int, Strict(), Field(gt=0, description="bytes")]

_DTypeField = Annotated[DTypeName, BeforeValidator(_field(parse_dtype))]
_LayoutField = Annotated[Layout, BeforeValidator(_field(parse_layout))]
_DeviceField = Annotated[
    Device,
    PlainValidator(_field(parse_device)),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(cpu|cuda:\d+)$", "examples": ["cuda:0", "cpu"]}),
    Field(json_schema_extra={"default": "cuda:0"}),
]

_ALL_FIELDS = frozenset((*Geometry._fields, "dtype", "layout", "device"))


class ImageSpec(BaseModel):
    """The layout of one image in memory: sizes, element type, order, pitches (bytes) and device.

    A spec is frozen and validated: every spec that exists describes distinct, addressable elements.
    Strides left out are packed around the ones given, innermost first (a CHW spec given only
    ``row_pitch`` gets a plane pitch of ``height * row_pitch``); ``ImageSpec.packed(...,
    row_alignment=256)`` pads rows.

    All pitches and strides are in **bytes**: ``row_pitch`` from one row to the next,
    ``pixel_stride`` from one pixel to the next in a row, ``channel_stride`` from one channel to the
    next (the plane pitch of a CHW image, see ``plane_pitch``).

    Every way of building one (the constructor, ``packed``, ``replace``, ``model_copy``,
    ``model_validate``, ``model_validate_json``, ``model_validate_strings``, ``from_json``) raises
    ``SpecError`` for bad input, never pydantic's ``ValidationError``.

    Raises:
        SpecError: sizes that are not positive ints, an unknown dtype/layout/device (also a
            ``DTypeError``/``LayoutError``/``DeviceError``), input that is not a spec's fields, or
            an extent of 2**63 bytes or more.
        PitchError: a pitch or stride that is not a positive multiple of the item size below 2**63,
            or one that makes rows, pixels, channels or planes overlap.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    height: _Size
    width: _Size
    channels: _Size = 1
    dtype: _DTypeField = "uint8"
    layout: _LayoutField = Layout.HWC
    row_pitch: _Bytes
    pixel_stride: _Bytes
    channel_stride: _Bytes
    device: _DeviceField = Device("cuda", 0)

    # Derived values (shape, strides, nbytes, ...) are cached_property: a spec is frozen, and views
    # read them on every creation.
    _FIELD_ORDER: ClassVar[tuple[str, ...]] = (
        "height",
        "width",
        "channels",
        "dtype",
        "layout",
        *STRIDE_FIELDS,
        "device",
    )

    def __init__(
        self,
        *,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        layout: LayoutLike = Layout.HWC,
        row_pitch: int | None = None,
        pixel_stride: int | None = None,
        channel_stride: int | None = None,
        device: DeviceLike = 0,
    ) -> None:
        """Validate and build a spec; pitches and strides left as None are packed."""
        try:
            super().__init__(
                height=height,
                width=width,
                channels=channels,
                dtype=dtype,
                layout=layout,
                row_pitch=row_pitch,
                pixel_stride=pixel_stride,
                channel_stride=channel_stride,
                device=device,
            )
        except ValidationError as exc:
            raise translate(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _fill_packed_strides(cls, data: Any) -> Any:
        """Replace missing or None strides by packed ones, computed from the (raw) other fields.

        Each missing stride steps over the dimension inside it, whose own stride may have been
        given: in layout order (row, pixel, channel for HWC; channel, row, pixel for CHW) a missing
        stride is ``inner size * inner stride``, and a missing innermost one is the item size.
        """
        if not isinstance(data, dict):
            return data
        raw = cast("dict[str, Any]", data)  # raw constructor input, not yet validated
        if all(raw.get(name) is not None for name in STRIDE_FIELDS):
            return raw
        try:
            layout = parse_layout(raw.get("layout", Layout.HWC), where="ImageSpec")
            itemsize = dtype_info(parse_dtype(raw.get("dtype", "uint8"), where="ImageSpec")).itemsize
            sizes = {
                "row_pitch": raw["height"],
                "pixel_stride": raw["width"],
                "channel_stride": raw.get("channels", 1),
            }
        except (GpuImageError, KeyError, TypeError):
            return raw  # field validation reports the real problem
        order = ("row_pitch", "pixel_stride", "channel_stride")
        if layout is Layout.CHW:
            order = ("channel_stride", "row_pitch", "pixel_stride")
        filled = dict(raw)
        step = itemsize  # the bytes one element of the current dimension spans, innermost first
        for name in reversed(order):
            given = filled.get(name)
            if given is None:
                filled[name] = step
            elif not _is_positive_int(given):
                return filled  # field validation reports it; the outer strides stay unfilled
            size = sizes[name]
            if not _is_positive_int(size):
                return filled
            step = size * filled[name]
        return filled

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_geometry(self.geometry, self.itemsize, layout=self.layout)
        return self

    # -- construction helpers -------------------------------------------------------------------

    @classmethod
    def packed(
        cls,
        *,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        layout: LayoutLike = Layout.HWC,
        device: DeviceLike = 0,
        row_alignment: int = 1,
    ) -> ImageSpec:
        """A spec whose rows start every ``row_alignment`` bytes (as ``cudaMallocPitch`` pads them)."""
        try:
            layout_value = parse_layout(layout, where="ImageSpec.packed()")
            dtype_name = parse_dtype(dtype, where="ImageSpec.packed()")
            device_value = parse_device(device, where="ImageSpec.packed()")
        except GpuImageError as exc:
            raise as_spec_error(exc) from None
        for name, size in (("height", height), ("width", width), ("channels", channels)):
            if type(size) is not int or size <= 0:
                raise SpecError(f"ImageSpec.packed(): expected a positive int {name}, got {name}={size!r}.")
        geometry = packed_geometry(
            layout_value,
            height,
            width,
            channels,
            dtype_info(dtype_name).itemsize,
            row_alignment=row_alignment,
        )
        # Packed geometry is valid by construction but for its size: check only that, and skip
        # pydantic's validation (conversions allocate their results through here on every call).
        check_geometry(geometry, dtype_info(dtype_name).itemsize, where="ImageSpec.packed()")
        return trusted_spec(geometry, dtype_name, layout_value, device_value)

    def replace(self, **changes: Any) -> ImageSpec:
        """A validated copy with some fields changed (``model_copy`` would skip validation)."""
        unknown = set(changes) - set(self._FIELD_ORDER)
        if unknown:
            raise SpecError(f"ImageSpec.replace(): unknown field(s) {sorted(unknown)}.")
        fields: dict[str, Any] = {name: getattr(self, name) for name in self._FIELD_ORDER}
        fields.update(changes)
        return ImageSpec(**fields)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A validated copy (pydantic's own skips validation, and would keep stale derived values)."""
        if update is not None and not isinstance(cast(object, update), Mapping):
            raise SpecError(f"ImageSpec.model_copy(): expected a mapping of fields, got update={update!r}.")
        return cast(Self, self.replace(**(update or {})))

    @classmethod
    def from_json(cls, text: str | bytes) -> ImageSpec:
        """Parse ``model_dump_json()`` output; errors are ``SpecError`` rather than pydantic's."""
        return cls.model_validate_json(text)

    # pydantic's validators raise ValidationError, and (ImageSpec has its own __init__, which they
    # call with the input as keywords) TypeError for a missing or unknown field: give SpecError.
    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Validate a dict of fields (or a spec); bad input raises ``SpecError``, not pydantic's error."""
        try:
            return super().model_validate(obj, **options)
        except (ValidationError, TypeError) as exc:
            raise _validation_failure(exc, "ImageSpec.model_validate()") from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """Validate JSON text; bad input raises ``SpecError``, not pydantic's error."""
        try:
            return super().model_validate_json(json_data, **options)
        except (ValidationError, TypeError) as exc:
            raise _validation_failure(exc, "ImageSpec.model_validate_json()") from None

    @classmethod
    def model_validate_strings(cls, obj: Any, **options: Any) -> Self:
        """Validate a dict of string fields; bad input raises ``SpecError``, not pydantic's error."""
        try:
            return super().model_validate_strings(obj, **options)
        except (ValidationError, TypeError) as exc:
            raise _validation_failure(exc, "ImageSpec.model_validate_strings()") from None

    # -- derived values -------------------------------------------------------------------------

    @cached_property
    def itemsize(self) -> int:
        """Bytes per element."""
        return dtype_info(self.dtype).itemsize

    @cached_property
    def geometry(self) -> Geometry:
        """Sizes and byte strides, independent of the layout order."""
        return Geometry(
            self.height, self.width, self.channels, self.row_pitch, self.pixel_stride, self.channel_stride
        )

    @cached_property
    def shape(self) -> tuple[int, int, int]:
        """Sizes in layout order, ``(H, W, C)`` for HWC and ``(C, H, W)`` for CHW."""
        return layout_shape(self.layout, self.height, self.width, self.channels)

    @cached_property
    def strides(self) -> tuple[int, int, int]:
        """Strides in **bytes**, in layout order (matching ``shape``)."""
        return layout_strides(self.layout, self.row_pitch, self.pixel_stride, self.channel_stride)

    @property
    def plane_pitch(self) -> int:
        """Bytes from one channel plane to the next (``channel_stride``; meaningful for CHW)."""
        return self.channel_stride

    @cached_property
    def nbytes(self) -> int:
        """The extent in bytes, from the first element to one past the last (padding included)."""
        return byte_extent(self.shape, self.strides, self.itemsize)

    @cached_property
    def is_contiguous(self) -> bool:
        """True when the elements are packed in layout order, with no padding or permutation."""
        packed = packed_geometry(self.layout, self.height, self.width, self.channels, self.itemsize)
        return all(
            size == 1 or mine == theirs
            for size, mine, theirs in zip(
                (self.height, self.width, self.channels),
                self.geometry[3:],
                packed[3:],
                strict=True,
            )
        )

    def __str__(self) -> str:
        return (
            f"{self.height}x{self.width}x{self.channels} {self.dtype} {self.layout.value} on {self.device} "
            f"(row_pitch={self.row_pitch}, pixel_stride={self.pixel_stride}, "
            f"channel_stride={self.channel_stride})"
        )


_interned: dict[tuple[Geometry, DTypeName, Layout, Device], ImageSpec] = {}
_INTERNED_LIMIT = 1024


def trusted_spec(geometry: Geometry, dtype: DTypeName, layout: Layout, device: Device) -> ImageSpec:
    """The spec of values already checked by ``check_geometry`` (the hot import paths), shared.

    Specs are immutable, so one object per description serves every image of it: a frame loop's
    imports, crops and results share theirs, and what is derived from a spec (its extent, a view's
    header, a launch plan) is computed once per spec, not per frame.
    """
    key = (geometry, dtype, layout, device)
    spec = _interned.get(key)
    if spec is not None:
        return spec
    # model_construct() costs about 5 us; setting pydantic's four slots directly costs under 1 us.
    spec = object.__new__(ImageSpec)
    height, width, channels, row_pitch, pixel_stride, channel_stride = geometry
    fields = {
        "height": height,
        "width": width,
        "channels": channels,
        "dtype": dtype,
        "layout": layout,
        "row_pitch": row_pitch,
        "pixel_stride": pixel_stride,
        "channel_stride": channel_stride,
        "device": device,
    }
    object.__setattr__(spec, "__dict__", fields)
    object.__setattr__(spec, "__pydantic_fields_set__", set(_ALL_FIELDS))
    object.__setattr__(spec, "__pydantic_extra__", None)
    object.__setattr__(spec, "__pydantic_private__", None)
    if len(_interned) >= _INTERNED_LIMIT:
        _interned.clear()  # more descriptions than this in one loop: they are built again
    _interned[key] = spec
    return spec


def field_names() -> tuple[str, ...]:
    """The names of ImageSpec's fields, in declaration order."""
    return tuple(ImageSpec.model_fields)


def _is_positive_int(value: object) -> bool:
    return type(value) is int and value > 0


def _validation_failure(exc: ValidationError | TypeError, where: str) -> SpecError:
    """The ``SpecError`` for a failed ``model_validate*`` call (our own errors pass through)."""
    if isinstance(exc, ValidationError):
        return translate(exc)
    if isinstance(exc, GpuImageError):
        return as_spec_error(exc)
    # ImageSpec.__init__'s own TypeError: a required field is missing, or an unknown one is given.
    return SpecError(
        f"{where}: expected the fields {', '.join(field_names())} (height and width required), "
        f"got other ones ({exc}). Pass a dict like ImageSpec.model_dump() returns."
    )
