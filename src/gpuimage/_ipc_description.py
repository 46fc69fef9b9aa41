"""What a pickled device image, frame or batch carries to another process: a CUDA IPC description.
Pure data and its checks: no GPU call, no foreign library.

A description names memory by the IPC handle of each allocation it lies in and byte offsets from the
allocation's base, never by a pointer: pointers mean nothing in another process. Sizes are in
elements; offsets, pitches, extents and allocation sizes in BYTES. The device is named by its UUID
(the same in every process, unlike an ordinal under ``CUDA_VISIBLE_DEVICES``) and PCI bus id. The
ready point is an interprocess event's handle (None: nothing was pending). The producer's pid and
token tell the process that made it, and the lease path ties it to the producer's registry
(``_ipc_lease``).

``Description.from_payload`` checks everything a forged or corrupted description could get wrong
before anything is opened: its version, the sizes of handles, every spec, that every item lies inside
its allocation (nothing may point outside the memory it came from), and that frames and batches are
consistent with their specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from ._device import Device
from ._dtypes import dtype_info, parse_dtype
from ._errors import BoundsError, InteropError, SpecError
from ._formats import (
    FORMATS,
    ChannelOrder,
    ColorMatrixLike,
    ColorRangeLike,
    ColorSpec,
    PixelFormat,
    parse_pixel_format,
)
from ._frame_layout import FrameLayout, frame_layout
from ._geometry import MAX_EXTENT, Geometry, check_geometry
from ._image_batch_spec import checked_count, checked_item_pitch
from ._ipc_lease import check_lease_path
from ._layout import Layout, parse_layout
from ._spec import ImageSpec, trusted_spec

__all__ = ["HANDLE_BYTES", "UUID_BYTES", "VERSION", "Description", "Kind", "SharedAllocation", "SharedBatch",
           "SharedDevice", "SharedFrame", "SharedItem", "spec_fields"]  # fmt: skip

VERSION = 1
"""The description format; a consumer of another version refuses it (both sides must match)."""
HANDLE_BYTES = 64
UUID_BYTES = 16
Kind = Literal["image", "frame", "batch"]
_KINDS: tuple[Kind, ...] = ("image", "frame", "batch")
_WHERE = "pickle.loads()"


@dataclass(frozen=True, slots=True)
class SharedAllocation:
    """One allocation: its IPC handle and its size in bytes (every item must lie inside it)."""

    handle: bytes
    size: int


@dataclass(frozen=True, slots=True)
class SharedItem:
    """An image's memory: ``offset`` bytes from the base of allocation ``allocation``, as ``spec``
    describes it (the spec's device is the producer's ordinal; the consumer puts its own)."""

    allocation: int
    offset: int
    spec: ImageSpec


@dataclass(frozen=True, slots=True)
class SharedDevice:
    """The GPU: its UUID (16 bytes), PCI bus id, and the producer's ordinal (for messages only)."""

    uuid: bytes
    pci_bus_id: str
    ordinal: int


@dataclass(frozen=True, slots=True)
class SharedFrame:
    """A frame's facts. ``layout`` (offsets from the frame's pointer) when its planes lie in one
    allocation as ``frame_layout`` gives them, else None (planes apart, one item each)."""

    format: PixelFormat
    width: int
    height: int
    colour: ColorSpec | None
    layout: FrameLayout | None


@dataclass(frozen=True, slots=True)
class SharedBatch:
    """A batch's facts: ``size`` items, item ``i`` at ``i * item_pitch`` bytes from item 0."""

    size: int
    item_pitch: int


@dataclass(frozen=True, slots=True)
class Description:
    """A device image (``kind="image"``, one item), frame (one item per plane) or batch (item 0, with
    ``batch``) as another process opens it. Build with the fields; read with ``from_payload``."""

    kind: Kind
    allocations: tuple[SharedAllocation, ...]
    items: tuple[SharedItem, ...]
    device: SharedDevice
    event: bytes | None
    producer_pid: int
    producer_token: str
    lease: str
    readonly: bool = False
    channel_order: ChannelOrder | None = None
    frame: SharedFrame | None = None
    batch: SharedBatch | None = None
    version: int = VERSION

    def item_extent(self, index: int) -> int:
        """Bytes of item ``index`` from its offset (a batch's item 0: the whole batch)."""
        extent = self.items[index].spec.nbytes
        batch = self.batch
        return extent if batch is None else (batch.size - 1) * batch.item_pitch + extent

    def to_payload(self) -> dict[str, object]:
        """Plain data (str, int, bool, bytes, None, lists, dicts) that ``from_payload`` reads back."""
        frame, batch, device = self.frame, self.batch, self.device
        return {
            "version": self.version,
            "kind": self.kind,
            "allocations": [{"handle": each.handle, "size": each.size} for each in self.allocations],
            "items": [
                {"allocation": item.allocation, "offset": item.offset, "spec": spec_fields(item.spec)}
                for item in self.items
            ],
            "device": {"uuid": device.uuid, "pci_bus_id": device.pci_bus_id, "ordinal": device.ordinal},
            "event": self.event,
            "producer": {"pid": self.producer_pid, "token": self.producer_token},
            "lease": self.lease,
            "readonly": self.readonly,
            "channel_order": None if self.channel_order is None else self.channel_order.value,
            "frame": None if frame is None else _frame_payload(frame),
            "batch": None if batch is None else {"size": batch.size, "item_pitch": batch.item_pitch},
        }

    @classmethod
    def from_payload(cls, payload: object) -> Description:
        """Read and check a payload (see the module).

        Raises:
            InteropError: not a payload of this version, or a field of the wrong type or size.
            SpecError: a spec, frame layout or batch that describes impossible memory.
            BoundsError: an item that reaches outside its allocation.
        """
        fields = _mapping(payload, "description")
        version = fields.get("version")
        if version != VERSION or type(version) is not int:
            raise InteropError(
                f"{_WHERE}: expected a gpuimage description of version {VERSION}, got version={version!r}. "
                "Run the same gpuimage release in the producing and the consuming process."
            )
        kind = fields.get("kind")
        if kind not in _KINDS:
            raise InteropError(f"{_WHERE}: expected kind 'image', 'frame' or 'batch', got kind={kind!r}.")
        device = _device(_mapping(fields.get("device"), "device"))
        allocations = tuple(_allocation(raw) for raw in _list(fields.get("allocations"), "allocations"))
        items = tuple(
            _item(raw, len(allocations), device.ordinal) for raw in _list(fields.get("items"), "items")
        )
        if not allocations or not items:
            raise InteropError(f"{_WHERE}: expected at least one allocation and one item, got none.")
        event = fields.get("event")
        if event is not None:
            event = _bytes(event, HANDLE_BYTES, "event")
        producer = _mapping(fields.get("producer"), "producer")
        pid, token = producer.get("pid"), producer.get("token")
        if type(pid) is not int or pid <= 0 or not isinstance(token, str) or not token.isalnum():
            raise InteropError(
                f"{_WHERE}: expected a producer pid and token, got producer={dict(producer)!r}."
            )
        readonly = fields.get("readonly")
        if type(readonly) is not bool:
            raise InteropError(f"{_WHERE}: expected readonly to be True or False, got readonly={readonly!r}.")
        description = cls(
            kind=kind,
            allocations=allocations,
            items=items,
            device=device,
            event=event,
            producer_pid=pid,
            producer_token=token,
            lease=check_lease_path(fields.get("lease"), where=_WHERE),
            readonly=readonly,
            channel_order=_order(fields.get("channel_order")),
            frame=None if fields.get("frame") is None else _frame(fields.get("frame")),
            batch=None if fields.get("batch") is None else _batch(fields.get("batch"), items),
        )
        description.check()
        return description

    def check(self) -> None:
        """Raise unless the items fit their allocations and the kind's facts (see ``from_payload``)."""
        kind, frame, batch = self.kind, self.frame, self.batch
        if (kind == "frame") != (frame is not None) or (kind == "batch") != (batch is not None):
            raise InteropError(
                f"{_WHERE}: expected the facts of a {kind} only, got frame={frame!r}, batch={batch!r}."
            )
        if not self.allocations or (kind != "frame" and len(self.items) != 1) or not self.items:
            raise InteropError(f"{_WHERE}: expected one item for a {kind}, got {len(self.items)}.")
        for index, item in enumerate(self.items):
            size = self.allocations[item.allocation].size
            extent = self.item_extent(index)
            if item.offset + extent > size:
                raise BoundsError(
                    f"{_WHERE}: expected item {index} inside its {size}-byte allocation, got {extent} bytes "
                    f"at offset {item.offset} (ending at {item.offset + extent}). The description is "
                    "corrupt or forged: nothing may point outside the memory it came from."
                )
        if frame is not None:
            _check_frame(frame, self.items)


def spec_fields(spec: ImageSpec) -> dict[str, object]:
    """A spec's fields but its device, as JSON-able data (the device is the description's)."""
    fields: dict[str, object] = {name: getattr(spec, name) for name in _SPEC_ORDER}
    fields["layout"] = spec.layout.value
    return fields


_SPEC_ORDER = (
    "height",
    "width",
    "channels",
    "row_pitch",
    "pixel_stride",
    "channel_stride",
    "dtype",
    "layout",
)
_SPEC_KEYS: frozenset[str] = frozenset(_SPEC_ORDER)
_specs: dict[tuple[object, ...], ImageSpec] = {}


def _spec(raw: object, ordinal: int) -> ImageSpec:
    fields = _mapping(raw, "spec")
    if _SPEC_KEYS.symmetric_difference(fields):
        raise InteropError(
            f"{_WHERE}: expected spec fields {sorted(_SPEC_KEYS)}, got {sorted(map(str, fields))}."
        )
    values = [fields[name] for name in _SPEC_ORDER]
    # a frame loop sends one geometry again and again; types are part of the key (True is not 1)
    key = (*values, *map(type, values), ordinal)
    try:
        spec, cacheable = _specs.get(key), True
    except TypeError:  # an unhashable value: refused below
        spec, cacheable = None, False
    if spec is not None:
        return spec
    dtype = parse_dtype(fields["dtype"], where=_WHERE)
    layout = parse_layout(fields["layout"], where=_WHERE)
    numbers = values[:6]
    if not all(type(number) is int for number in numbers):
        raise SpecError(f"{_WHERE}: expected int sizes and strides in the spec, got {dict(fields)!r}.")
    geometry = Geometry(*cast("list[int]", numbers))
    check_geometry(geometry, dtype_info(dtype).itemsize, where=_WHERE)
    spec = trusted_spec(geometry, dtype, layout, Device("cuda", ordinal))
    if cacheable:
        if len(_specs) >= 256:
            _specs.clear()
        _specs[key] = spec
    return spec


def _mapping(raw: object, name: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise InteropError(f"{_WHERE}: expected {name} to be a dict, got {type(raw).__name__}.")
    return cast("Mapping[str, object]", raw)


def _list(raw: object, name: str) -> list[object]:
    if not isinstance(raw, list | tuple):
        raise InteropError(f"{_WHERE}: expected {name} to be a list, got {type(raw).__name__}.")
    return list(cast("list[object] | tuple[object, ...]", raw))


def _bytes(raw: object, size: int, name: str) -> bytes:
    if type(raw) is not bytes or len(raw) != size:
        shown = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise InteropError(f"{_WHERE}: expected {name} to be {size} bytes, got {shown}.")
    return raw


def _count(raw: object, name: str, *, low: int = 0) -> int:
    if type(raw) is not int or not low <= raw < MAX_EXTENT:
        raise InteropError(f"{_WHERE}: expected {name} to be an int in [{low}, 2**63), got {name}={raw!r}.")
    return raw


def _device(fields: Mapping[str, object]) -> SharedDevice:
    bus_id = fields.get("pci_bus_id")
    if not isinstance(bus_id, str) or not 0 < len(bus_id) < 32 or not bus_id.isprintable():
        raise InteropError(f"{_WHERE}: expected a PCI bus id like '0000:1b:00.0', got pci_bus_id={bus_id!r}.")
    ordinal = _count(fields.get("ordinal"), "device ordinal")
    return SharedDevice(_bytes(fields.get("uuid"), UUID_BYTES, "the device UUID"), bus_id, ordinal)


def _allocation(raw: object) -> SharedAllocation:
    fields = _mapping(raw, "allocation")
    return SharedAllocation(
        _bytes(fields.get("handle"), HANDLE_BYTES, "a memory handle"),
        _count(fields.get("size"), "size", low=1),
    )


def _item(raw: object, allocations: int, ordinal: int) -> SharedItem:
    fields = _mapping(raw, "item")
    index = fields.get("allocation")
    if type(index) is not int or not 0 <= index < allocations:
        raise InteropError(
            f"{_WHERE}: expected an allocation index below {allocations}, got allocation={index!r}."
        )
    return SharedItem(index, _count(fields.get("offset"), "offset"), _spec(fields.get("spec"), ordinal))


def _order(raw: object) -> ChannelOrder | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in ChannelOrder.__members__ and raw != ChannelOrder.UNKNOWN.value:
        return ChannelOrder(raw)
    raise InteropError(f"{_WHERE}: expected channel_order RGB, BGR, RGBA, BGRA or None, got {raw!r}.")


def _frame_payload(frame: SharedFrame) -> dict[str, object]:
    layout, colour = frame.layout, frame.colour
    return {
        "format": frame.format.value,
        "width": frame.width,
        "height": frame.height,
        "colour": None if colour is None else [colour.matrix.value, colour.range.value],
        "pitches": None if layout is None else [plane.row_pitch for plane in layout.planes],
        "plane_offsets": None if layout is None else [plane.offset for plane in layout.planes],
    }


def _frame(raw: object) -> SharedFrame:
    fields = _mapping(raw, "frame")
    fmt = parse_pixel_format(fields.get("format"), where=_WHERE)
    colour = None
    if fields.get("colour") is not None:
        names = _list(fields.get("colour"), "colour")
        if len(names) != 2:
            raise InteropError(f"{_WHERE}: expected colour as [matrix, range], got colour={names!r}.")
        colour = ColorSpec(matrix=cast("ColorMatrixLike", names[0]), range=cast("ColorRangeLike", names[1]))
        if not FORMATS[fmt].is_yuv:
            raise SpecError(f"{_WHERE}: expected colour=None for format={fmt.value}, got colour={colour!r}.")
    width, height = _count(fields.get("width"), "width", low=1), _count(fields.get("height"), "height", low=1)
    pitches, offsets = fields.get("pitches"), fields.get("plane_offsets")
    layout = None
    if pitches is not None or offsets is not None:
        pitch_list = [_count(pitch, "pitch", low=1) for pitch in _list(pitches, "pitches")]
        offset_list = [_count(offset, "plane offset") for offset in _list(offsets, "plane_offsets")]
        layout = frame_layout(fmt, width, height, pitch=pitch_list, plane_offsets=offset_list)
    return SharedFrame(fmt, width, height, colour, layout)


def _check_frame(frame: SharedFrame, items: tuple[SharedItem, ...]) -> None:
    info = FORMATS[frame.format]
    if len(items) != len(info.planes):
        raise SpecError(
            f"{_WHERE}: expected {len(info.planes)} planes for {frame.format.value}, got {len(items)}."
        )
    layout = frame.layout
    base = 0 if layout is None else items[0].offset - layout.planes[0].offset
    for index, (item, plane) in enumerate(zip(items, info.planes, strict=True)):
        spec = item.spec
        shape = (frame.height // plane.subsample_y, frame.width // plane.subsample_x, plane.channels)
        fits = (
            spec.layout is Layout.HWC
            and spec.dtype == info.dtype
            and (spec.height, spec.width, spec.channels) == shape
        )
        if layout is not None:  # the layout's planes exactly: packed pixels at its offsets and pitches
            packed = (spec.row_pitch, spec.pixel_stride, spec.channel_stride) == (
                layout.planes[index].row_pitch, plane.channels * info.itemsize, info.itemsize)  # fmt: skip
            fits = fits and packed and base >= 0 and item.allocation == items[0].allocation
            fits = fits and item.offset == base + layout.planes[index].offset
        if not fits:
            raise SpecError(
                f"{_WHERE}: expected plane {index} of a {frame.width}x{frame.height} {frame.format.value} "
                f"frame, got {spec} at offset {item.offset}. The description is corrupt or forged."
            )


def _batch(raw: object, items: tuple[SharedItem, ...]) -> SharedBatch:
    fields = _mapping(raw, "batch")
    size = checked_count(fields.get("size"), where=_WHERE)
    return SharedBatch(size, checked_item_pitch(fields.get("item_pitch"), size, items[0].spec, where=_WHERE))
