"""``ImageSpec``: the pure, validated description of an image's memory. No pointer, no GPU."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, ClassVar, Self, cast

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
from ._errors import GpuImageError, PitchError, SpecError
from ._geometry import (
    Geometry,
    byte_extent,
    check_geometry,
    layout_shape,
    layout_strides,
    packed_geometry,
)
from ._layout import Layout, LayoutLike, parse_layout

__all__ = ["ImageSpec"]

_Size = Annotated[int, Strict(), Field(gt=0)]
_Bytes = Annotated[int, Strict(), Field(gt=0, description="bytes")]

_DTypeField = Annotated[DTypeName, BeforeValidator(lambda value: parse_dtype(value, where="ImageSpec"))]
_LayoutField = Annotated[Layout, BeforeValidator(lambda value: parse_layout(value, where="ImageSpec"))]
_DeviceField = Annotated[
    Device,
    PlainValidator(lambda value: parse_device(value, where="ImageSpec")),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(cpu|cuda:\d+)$", "examples": ["cuda:0", "cpu"]}),
    Field(json_schema_extra={"default": "cuda:0"}),
]

_STRIDE_FIELDS = ("row_pitch", "pixel_stride", "channel_stride")
_ALL_FIELDS = frozenset((*Geometry._fields, "dtype", "layout", "device"))


class ImageSpec(BaseModel):
    """The layout of one image in memory: sizes, element type, order, pitches (bytes) and device.

    A spec is frozen and validated: every spec that exists describes distinct, addressable elements.
    Strides left out are packed (no padding); ``ImageSpec.packed(..., row_alignment=256)`` pads rows.

    All pitches and strides are in **bytes**: ``row_pitch`` from one row to the next,
    ``pixel_stride`` from one pixel to the next in a row, ``channel_stride`` from one channel to the
    next (the plane pitch of a CHW image, see ``plane_pitch``).

    Raises:
        SpecError: sizes that are not positive ints, an unknown dtype/layout/device, or an extent
            of 2**63 bytes or more.
        PitchError: a pitch or stride that is not a positive multiple of the item size, or one
            that makes rows, pixels, channels or planes overlap.
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
        *_STRIDE_FIELDS,
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
            raise _translate(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _fill_packed_strides(cls, data: Any) -> Any:
        """Replace missing or None strides by packed ones, computed from the (raw) other fields."""
        if not isinstance(data, dict):
            return data
        raw = cast("dict[str, Any]", data)  # raw constructor input, not yet validated
        if all(raw.get(name) is not None for name in _STRIDE_FIELDS):
            return raw
        try:
            layout = parse_layout(raw.get("layout", Layout.HWC), where="ImageSpec")
            itemsize = dtype_info(parse_dtype(raw.get("dtype", "uint8"), where="ImageSpec")).itemsize
            packed = packed_geometry(
                layout, int(raw["height"]), int(raw["width"]), int(raw.get("channels", 1)), itemsize
            )
        except (GpuImageError, KeyError, TypeError, ValueError):
            return raw  # field validation reports the real problem
        filled = dict(raw)
        for name in _STRIDE_FIELDS:
            if filled.get(name) is None:
                filled[name] = getattr(packed, name)
        return filled

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_geometry(self.geometry, self.itemsize)
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
        layout_value = parse_layout(layout, where="ImageSpec.packed()")
        dtype_name = parse_dtype(dtype, where="ImageSpec.packed()")
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
        return trusted_spec(
            geometry, dtype_name, layout_value, parse_device(device, where="ImageSpec.packed()")
        )

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
        return cast(Self, self.replace(**(update or {})))

    @classmethod
    def from_json(cls, text: str | bytes) -> ImageSpec:
        """Parse ``model_dump_json()`` output; errors are ``SpecError`` rather than pydantic's."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _translate(exc) from None

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


def trusted_spec(geometry: Geometry, dtype: DTypeName, layout: Layout, device: Device) -> ImageSpec:
    """Build a spec from values already checked by ``check_geometry`` (the hot import paths)."""
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
    return spec


def _translate(exc: ValidationError) -> GpuImageError:
    """Turn pydantic's error into ours: re-raise our own exception if a validator raised one."""
    first = exc.errors(include_url=False)[0]
    original = first.get("ctx", {}).get("error")
    if isinstance(original, GpuImageError):
        return original
    location = ".".join(str(part) for part in first["loc"]) or "spec"
    error = PitchError if location in _STRIDE_FIELDS else SpecError
    return error(f"ImageSpec: {location}: {first['msg']}, got {location}={first.get('input')!r}.")
