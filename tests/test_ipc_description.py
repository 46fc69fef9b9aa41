"""The CUDA IPC description (``_ipc_description``): its payload round trip, and every check that keeps a
corrupt or forged description from pointing outside the memory it came from. Pure: no GPU."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import (
    BoundsError,
    ChannelOrder,
    ColorSpec,
    GpuImageError,
    ImageSpec,
    InteropError,
    PitchError,
    PixelFormat,
    SpecError,
    frame_layout,
)
from gpuimage._ipc_description import (
    VERSION,
    Description,
    SharedAllocation,
    SharedBatch,
    SharedDevice,
    SharedFrame,
    SharedItem,
    spec_fields,
)
from gpuimage.strategies import image_specs

LEASE = "/dev/shm/gpuimage-ipc-1000-4026531836-4242-0123456789abcdef/7.lease"
DEVICE = SharedDevice(bytes(range(16)), "0000:1b:00.0", 0)
HANDLE = bytes(range(64))
EVENT = bytes(range(64, 128))


def _description(spec: ImageSpec, offset: int = 0, slack: int = 0, **fields: Any) -> Description:
    allocation = SharedAllocation(HANDLE, offset + spec.nbytes + slack)
    defaults: dict[str, Any] = {
        "kind": "image",
        "allocations": (allocation,),
        "items": (SharedItem(0, offset, spec),),
        "device": DEVICE,
        "event": EVENT,
        "producer_pid": 4242,
        "producer_token": "0123456789abcdef",
        "lease": LEASE,
    }
    return Description(**{**defaults, **fields})


SPEC = ImageSpec.packed(height=4, width=6, channels=3, row_alignment=32)


def _nv12(offset: int = 64) -> Description:
    layout = frame_layout("NV12", 16, 8, pitch=32)
    planes = tuple(
        SharedItem(
            0,
            offset + plane.offset,
            ImageSpec(
                height=plane.height, width=plane.width, channels=plane.channels, row_pitch=plane.row_pitch
            ),
        )
        for plane in layout.planes
    )
    frame = SharedFrame(PixelFormat.NV12, 16, 8, ColorSpec(matrix="BT709", range="LIMITED"), layout)
    return _description(SPEC, kind="frame", items=planes, frame=frame,
                        allocations=(SharedAllocation(HANDLE, offset + layout.nbytes),))  # fmt: skip


# -- round trips -------------------------------------------------------------------------------------


@given(
    spec=image_specs(device=0),
    offset=st.integers(0, 2**20).map(lambda n: n * 8),
    slack=st.integers(0, 4096),
    readonly=st.booleans(),
    order=st.sampled_from([None, ChannelOrder.RGB, ChannelOrder.BGRA]),
    event=st.sampled_from([None, EVENT]),
)
def test_an_image_description_reads_back_as_it_was_written(
    spec: ImageSpec, offset: int, slack: int, readonly: bool, order: ChannelOrder | None, event: bytes | None
) -> None:
    description = _description(spec, offset, slack, readonly=readonly, channel_order=order, event=event)
    description.check()
    payload = description.to_payload()
    assert Description.from_payload(payload) == description
    # plain data: it survives pickling and copying as it is
    assert Description.from_payload(pickle.loads(pickle.dumps(payload))) == description
    assert Description.from_payload(copy.deepcopy(payload)) == description


@given(spec=image_specs(device=0, max_side=16), size=st.integers(1, 9), padding=st.integers(0, 64))
def test_a_batch_description_reads_back_and_spans_its_items(spec: ImageSpec, size: int, padding: int) -> None:
    pitch = spec.nbytes + padding * spec.itemsize
    batch = SharedBatch(size, pitch)
    description = _description(spec, 0, (size - 1) * pitch, kind="batch", batch=batch)
    assert Description.from_payload(description.to_payload()) == description
    assert description.item_extent(0) == (size - 1) * pitch + spec.nbytes


def test_a_frame_description_reads_back_with_its_layout_and_colour() -> None:
    description = _nv12()
    again = Description.from_payload(description.to_payload())
    assert again == description
    assert again.frame is not None
    assert again.frame.layout == frame_layout("NV12", 16, 8, pitch=32)


def test_the_device_of_a_spec_is_the_producers_ordinal_and_not_in_the_payload() -> None:
    spec = ImageSpec.packed(height=2, width=2, device="cuda:3")
    description = _description(spec, device=SharedDevice(bytes(16), "0000:3b:00.0", 3))
    payload = description.to_payload()
    items: Any = payload["items"]
    assert "device" not in items[0]["spec"]
    assert Description.from_payload(payload).items[0].spec.device == spec.device
    assert spec_fields(spec)["layout"] == "HWC"


# -- refusals ----------------------------------------------------------------------------------------


def _edit(path: tuple[Any, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def edit(payload: dict[str, Any]) -> None:
        target: Any = payload
        for key in path[:-1]:
            target = target[key]
        if value is _DROP:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return edit


_DROP = object()
BAD: list[tuple[str, Callable[[dict[str, Any]], None], type[GpuImageError], str]] = [
    ("newer version", _edit(("version",), 2), InteropError, "of version 1, got version=2"),
    ("version as text", _edit(("version",), "1"), InteropError, "version"),
    ("no version", _edit(("version",), _DROP), InteropError, "version=None"),
    ("unknown kind", _edit(("kind",), "video"), InteropError, "kind='video'"),
    ("short handle", _edit(("allocations", 0, "handle"), bytes(63)), InteropError, "64 bytes, got 63 bytes"),
    ("handle as text", _edit(("allocations", 0, "handle"), "00" * 64), InteropError, "64 bytes, got str"),
    ("empty allocation", _edit(("allocations", 0, "size"), 0), InteropError, "size"),
    ("no allocations", _edit(("allocations",), []), InteropError, "allocation index below 0"),
    ("no items", _edit(("items",), []), InteropError, "at least one allocation and one item"),
    ("allocation index", _edit(("items", 0, "allocation"), 1), InteropError, "index below 1"),
    ("negative offset", _edit(("items", 0, "offset"), -8), InteropError, "offset"),
    ("offset past the end", _edit(("items", 0, "offset"), 64), BoundsError, "inside its"),
    ("allocation too small", _edit(("allocations", 0, "size"), 16), BoundsError, "nothing may point outside"),
    ("pitch below a row", _edit(("items", 0, "spec", "row_pitch"), 4), PitchError, "row"),
    ("float height", _edit(("items", 0, "spec", "height"), 4.0), SpecError, "int sizes"),
    ("bool width", _edit(("items", 0, "spec", "width"), True), SpecError, "int sizes"),
    ("unknown dtype", _edit(("items", 0, "spec", "dtype"), "complex64"), GpuImageError, "complex64"),
    ("missing spec field", _edit(("items", 0, "spec", "channels"), _DROP), InteropError, "spec fields"),
    ("extra spec field", _edit(("items", 0, "spec", "device"), "cuda:0"), InteropError, "spec fields"),
    ("unhashable spec field", _edit(("items", 0, "spec", "height"), [4]), SpecError, "int sizes"),
    ("short uuid", _edit(("device", "uuid"), bytes(15)), InteropError, "UUID"),
    ("bus id", _edit(("device", "pci_bus_id"), ""), InteropError, "PCI bus id"),
    ("short event", _edit(("event",), bytes(8)), InteropError, "event to be 64 bytes"),
    ("no pid", _edit(("producer", "pid"), 0), InteropError, "producer pid"),
    ("odd token", _edit(("producer", "token"), "../x"), InteropError, "producer pid"),
    ("lease elsewhere", _edit(("lease",), "/etc/passwd"), InteropError, "lease file"),
    (
        "lease with ..",
        _edit(("lease",), LEASE.replace("/7.lease", "/../7.lease")),
        InteropError,
        "lease file",
    ),
    (
        "relative lease",
        _edit(("lease",), "gpuimage-ipc-1-2-3-0123456789abcdef/7.lease"),
        InteropError,
        "lease",
    ),
    ("readonly as text", _edit(("readonly",), "no"), InteropError, "readonly"),
    ("unknown order", _edit(("channel_order",), "GBR"), InteropError, "channel_order"),
    ("unknown is no order", _edit(("channel_order",), "UNKNOWN"), InteropError, "channel_order"),
    ("batch facts on an image", _edit(("batch",), {"size": 1, "item_pitch": 114}), InteropError, "facts"),
    ("not a dict", lambda payload: payload.clear(), InteropError, "version"),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_a_bad_image_description_is_refused(
    edit: Callable[[dict[str, Any]], None], error: type[GpuImageError], message: str
) -> None:
    payload = _description(SPEC, 0, 0).to_payload()
    edit(payload)
    with pytest.raises(error, match=message):
        Description.from_payload(payload)


@pytest.mark.parametrize("payload", [None, [], "description", 7], ids=repr)
def test_a_payload_that_is_not_a_dict_is_refused(payload: object) -> None:
    with pytest.raises(InteropError, match="expected description to be a dict"):
        Description.from_payload(payload)


FRAME_BAD: list[tuple[str, Callable[[dict[str, Any]], None], type[GpuImageError], str]] = [
    ("one plane of two", lambda payload: payload["items"].pop(), SpecError, "2 planes for NV12, got 1"),
    ("plane moved", _edit(("items", 1, "offset"), 64 + 32 * 8 - 32), SpecError, "plane 1"),
    ("plane of the wrong size", _edit(("items", 1, "spec", "height"), 3), SpecError, "plane 1"),
    ("colour on RGB", _edit(("frame", "format"), "RGB"), SpecError, "colour=None"),
    ("bad colour", _edit(("frame", "colour"), ["BT2100", "FULL"]), SpecError, "BT2100"),
    ("colour of three", _edit(("frame", "colour"), ["BT709", "FULL", "x"]), InteropError, "matrix, range"),
    ("pitch below the row", _edit(("frame", "pitches"), [8, 8]), PitchError, "pitch"),
    ("unknown format", _edit(("frame", "format"), "H264"), GpuImageError, "H264"),
    ("odd width", _edit(("frame", "width"), 15), SpecError, "15"),
    ("offsets without pitches", _edit(("frame", "pitches"), None), InteropError, "pitches"),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"), [case[1:] for case in FRAME_BAD], ids=[case[0] for case in FRAME_BAD]
)
def test_a_bad_frame_description_is_refused(
    edit: Callable[[dict[str, Any]], None], error: type[GpuImageError], message: str
) -> None:
    payload = _nv12().to_payload()
    edit(payload)
    with pytest.raises(error, match=message):
        Description.from_payload(payload)


def test_a_frame_of_planes_apart_needs_each_plane_of_its_format() -> None:
    y = ImageSpec(height=8, width=16, row_pitch=64)
    uv = ImageSpec(height=4, width=8, channels=2, row_pitch=64, pixel_stride=4)  # a strided UV plane: allowed
    frame = SharedFrame(PixelFormat.NV12, 16, 8, None, None)
    allocations = (SharedAllocation(HANDLE, 1024), SharedAllocation(EVENT, 1024))
    items = (SharedItem(0, 0, y), SharedItem(1, 0, uv))
    description = _description(SPEC, kind="frame", frame=frame, items=items, allocations=allocations)
    assert Description.from_payload(description.to_payload()) == description
    payload: Any = description.to_payload()
    payload["items"][1]["spec"]["layout"] = "CHW"
    payload["items"][1]["spec"].update(channel_stride=256, pixel_stride=2, row_pitch=16)
    with pytest.raises(SpecError, match="plane 1"):
        Description.from_payload(payload)


BATCH_BAD: list[tuple[str, Callable[[dict[str, Any]], None], type[GpuImageError], str]] = [
    ("overlapping items", _edit(("batch", "item_pitch"), 8), PitchError, "at least one item's extent"),
    ("pitch past the allocation", _edit(("batch", "item_pitch"), 200), BoundsError, "inside its"),
    ("items past the end", _edit(("batch", "size"), 9), BoundsError, "inside its"),
    ("no items", _edit(("batch", "size"), 0), SpecError, "positive int number of items"),
    ("batch as a list", _edit(("batch",), [4, 96]), InteropError, "batch to be a dict"),
    ("a batch without facts", _edit(("batch",), None), InteropError, "facts"),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"), [case[1:] for case in BATCH_BAD], ids=[case[0] for case in BATCH_BAD]
)
def test_a_bad_batch_description_is_refused(
    edit: Callable[[dict[str, Any]], None], error: type[GpuImageError], message: str
) -> None:
    pitch = SPEC.nbytes + 32
    description = _description(SPEC, 0, 3 * pitch, kind="batch", batch=SharedBatch(4, pitch))
    payload = description.to_payload()
    edit(payload)
    with pytest.raises(error, match=message):
        Description.from_payload(payload)


def test_check_refuses_what_a_producer_could_build_wrongly() -> None:
    with pytest.raises(InteropError, match="one item for a image"):
        _description(SPEC, items=(SharedItem(0, 0, SPEC), SharedItem(0, 0, SPEC))).check()
    with pytest.raises(BoundsError):
        _description(SPEC, items=(SharedItem(0, 8, SPEC),)).check()
    assert VERSION == 1
