"""Unpickling a CUDA IPC description: the consumer's side of ``gpuimage._ipc``.

``open_image``, ``open_frame`` and ``open_batch`` are what ``pickle.loads`` calls, with the class to
build (passed by the pickle, so this module imports no hub) and the description's payload:

1. The payload is read and checked (``Description.from_payload``): nothing it names may lie outside
   the memory it came from.
2. In the process that pickled it, the original object is returned (no IPC: CUDA refuses to open
   its own process's handles).
3. Elsewhere the consumer takes its lease (``_ipc_lease.Hold``: the producer keeps the memory while
   it is held), finds the GPU by UUID, maps each allocation once per process (``cuIpcOpenMemHandle``
   fails for an allocation opened twice: mappings are cached and counted), checks that the mapping
   is as large as the description says, and makes its current stream (the runtime's) wait for the
   producer's ready point, on the GPU.
   Inside ``open_on(device, access=...)`` (``_ipc_devices``), memory of another GPU opens on
   ``device``: mapped in ``device``'s context (a peer view), or on its own GPU and then copied. The
   ready point is opened on its own GPU and waited for by ``device``'s stream, in ``device``'s context.
4. The result is a normal image, frame or batch over the mapping, made by its public ``from_pointer``
   with a ``SharedHold`` as owner, ready on that stream. When its last image goes, and the GPU work
   queued on it has finished (``_lifetime`` defers the owner's release), the mappings of its
   allocations are closed once no other description uses them, then the lease is released.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._device import Device
from ._errors import BoundsError, CudaError, DeviceError, ExportError, InteropError, LifetimeError
from ._ipc_description import Description, Kind, SharedAllocation
from ._ipc_devices import check_peer, choice, copied_batch, copied_frame, copied_image
from ._ipc_driver import Driver, driver
from ._ipc_lease import Hold, is_this_process, lookup
from ._runtime import runtime
from ._spec import ImageSpec, trusted_spec

if TYPE_CHECKING:
    from ._frame import GpuFrame
    from ._image import GpuImage
    from ._image_batch import GpuBatch

__all__ = ["SharedHold", "mapped_from", "open_batch", "open_frame", "open_image"]

T = TypeVar("T")


class _Mapping:
    """One allocation of another process, mapped here: its base, size, device and users."""

    __slots__ = ("base", "device", "driver", "pid", "size", "users")

    def __init__(self, base: int, size: int, device: int, owner: Driver, pid: int) -> None:
        self.base, self.size, self.device, self.driver, self.pid = base, size, device, owner, pid
        self.users = 0


_lock = threading.RLock()  # a release may run from a finalizer while this thread holds it
_mappings: dict[tuple[bytes, bytes], _Mapping] = {}


def _map(allocation: SharedAllocation, uuid: bytes, device: int, pid: int) -> tuple[bytes, bytes]:
    """Map ``allocation`` for ``device``'s kernels, or count one more user of its mapping; returns the
    cache key."""
    key = (uuid, allocation.handle)
    with _lock:
        found = _mappings.get(key)
        if found is not None and found.device != device:
            raise DeviceError(
                f"pickle.loads(): expected every description of one allocation opened for one GPU in this "
                f"process (CUDA maps an allocation once per process), got it mapped for cuda:{found.device} "
                f"already and asked for cuda:{device}. Open them all alike (the same open_on(), or none), or "
                "let go of the first ones before."
            )
        if found is None:
            ipc = driver()
            base = ipc.open_mem_handle(allocation.handle, device)
            try:
                start, size = ipc.address_range(base, device)
                size -= base - start
            except (CudaError, ExportError):  # a driver that cannot tell: the description's check stands
                size = allocation.size
            except BaseException:
                ipc.close_mem_handle(base, device)
                raise
            found = _mappings[key] = _Mapping(base, size, device, ipc, pid)
        if allocation.size > found.size:
            if not found.users:
                _unmap(key, count=False)
            raise BoundsError(
                f"pickle.loads(): expected an allocation of at least {allocation.size} bytes, as the "
                f"description says, got a mapping of {found.size} bytes. The description is corrupt or "
                "forged: nothing may point outside the memory it came from."
            )
        found.users += 1
    return key


def _unmap(key: tuple[bytes, bytes], *, count: bool = True) -> None:
    """One user fewer of a mapping; the last one closes it (never raises)."""
    with _lock:
        found = _mappings.get(key)
        if found is None:
            return
        found.users -= count
        if found.users > 0:
            return
        del _mappings[key]
    if not sys.is_finalizing():  # at exit the driver unmaps what the process held
        with contextlib.suppress(Exception):
            found.driver.close_mem_handle(found.base, found.device)


def mapped_from(ptr: int) -> int | None:
    """The pid of the process whose memory ``ptr`` lies in, when it was mapped here; else None."""
    with _lock:
        return next((m.pid for m in _mappings.values() if m.base <= ptr < m.base + m.size), None)


class SharedHold:
    """The owner of images opened from another process's memory: it holds the description's lease and
    its allocations' mappings, and lets go of both when it is released (mappings first)."""

    __slots__ = ("__weakref__", "_hold", "_keys", "producer_pid")

    def __init__(self, hold: Hold, keys: tuple[tuple[bytes, bytes], ...], producer_pid: int) -> None:
        self._hold, self._keys, self.producer_pid = hold, keys, producer_pid

    def release(self) -> None:
        """Close this description's use of its mappings, then release its lease (idempotent)."""
        keys, self._keys = self._keys, ()
        for key in keys:
            _unmap(key)
        self._hold.release()

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"SharedHold(producer pid {self.producer_pid}, lease {self._hold.path})"


class _Opened(NamedTuple):
    description: Description
    hold: SharedHold
    bases: tuple[int, ...]
    """Each allocation's base in this process."""
    device: Device
    stream: object
    """Where the data is ready now: the current stream's object, or its raw handle."""
    copy_to: int | None
    """The GPU to copy the opened object to (``open_on(access="copy")``), or None."""

    def spec(self, index: int) -> ImageSpec:
        """Item ``index``'s spec, on this process's ordinal of the device."""
        spec, device = self.description.items[index].spec, self.device
        return spec if spec.device == device else trusted_spec(spec.geometry, spec.dtype, spec.layout, device)

    def ptr(self, index: int) -> int:
        item = self.description.items[index]
        return self.bases[item.allocation] + item.offset


def _open(payload: object, kind: Kind, where: str) -> _Opened | object:
    """The original object (same process), or what a consumer needs to build one (see the module)."""
    description = Description.from_payload(payload)
    if description.kind != kind:
        raise InteropError(f"{where}: expected a description of a {kind}, got one of a {description.kind}.")
    if is_this_process(description.producer_pid, description.producer_token):
        source = lookup(description.lease)
        if source is None:
            raise LifetimeError(
                f"{where}: expected a description whose image this process still shares, got one whose lease "
                f"{description.lease} ended (nobody opened it in time, or everyone let go). Unpickle it soon "
                "after pickling, or keep the image itself."
            )
        return source
    hold = Hold.take(description.lease, where=where)
    keys: list[tuple[bytes, bytes]] = []
    try:
        ipc, uuid = driver(), description.device.uuid
        home = ipc.device_of_uuid(uuid)
        if home is None:
            named = description.device
            raise DeviceError(
                f"{where}: expected the producer's GPU (UUID {uuid.hex()}, PCI {named.pci_bus_id}, cuda:"
                f"{named.ordinal} there) to be visible here, got no such device. Give this process that GPU "
                "(CUDA_VISIBLE_DEVICES), or send image.cpu() instead."
            )
        chosen = choice()
        index, copy_to = home, None  # index: the GPU whose kernels use the mapping
        if chosen is not None and chosen.device != home:
            if chosen.access == "peer":
                check_peer(home, chosen.device, where)
                index = chosen.device
            else:
                copy_to = chosen.device
        for allocation in description.allocations:
            keys.append(_map(allocation, uuid, index, description.producer_pid))
        bases = tuple(_mappings[key].base for key in keys)
        with runtime().device(index):  # the stream is index's: so are the context and the wait
            stream = runtime().current_stream(index)
            if description.event is not None:
                event = ipc.open_event(description.event, home)  # an event belongs to its own GPU
                try:
                    event.wait_on(stream, index)
                finally:
                    event.close()  # the wait took the event's state: it may go now
            keep = runtime().current_stream_object(index)
    except BaseException:
        for key in keys:
            _unmap(key)
        hold.release()
        raise
    shared = SharedHold(hold, tuple(keys), description.producer_pid)
    device = Device("cuda", index)
    return _Opened(description, shared, bases, device, stream if keep is None else keep, copy_to)


def _here(source: T, device: Device, copy: Callable[[T, int], T], where: str) -> T:
    """The original object of a description made here, or its copy inside ``open_on(access="copy")``."""
    chosen = choice()
    if chosen is None or device == Device("cuda", chosen.device):
        return source
    if chosen.access == "copy":
        return copy(source, chosen.device)
    raise DeviceError(
        f"{where}: expected a peer view of another process's memory, got a description made in this "
        f"process, whose object is on {device} (CUDA maps no process's own memory for a peer). Use it "
        f"there, or open_on({chosen.device}, access='copy')."
    )


def open_image(cls: type[GpuImage[Any, Any]], payload: object) -> GpuImage[Any, Any]:
    """``pickle.loads`` of a ``GpuImage``: the image over the producer's memory (see the module)."""
    opened = _open(payload, "image", "pickle.loads(image)")
    if not isinstance(opened, _Opened):
        same = _same(opened, cls)
        return _here(same, same.device, copied_image, "pickle.loads(image)")
    description = opened.description
    image = cls.from_pointer(opened.ptr(0), opened.spec(0), owner=opened.hold, readonly=description.readonly)
    if description.channel_order is not None:
        image = image.with_channel_order(description.channel_order)
    image.record_write(opened.stream)
    return image if opened.copy_to is None else copied_image(image, opened.copy_to)


def open_frame(cls: type[GpuFrame], image_cls: type[GpuImage[Any, Any]], payload: object) -> GpuFrame:
    """``pickle.loads`` of a ``GpuFrame``: planes in one allocation as its layout says, or apart."""
    opened = _open(payload, "frame", "pickle.loads(frame)")
    if not isinstance(opened, _Opened):
        same = _same(opened, cls)
        return _here(same, same.device, copied_frame, "pickle.loads(frame)")
    description = opened.description
    facts, readonly = description.frame, description.readonly
    assert facts is not None  # the description's check: a frame has its facts
    layout = facts.layout
    if layout is None:
        planes = [
            image_cls.from_pointer(opened.ptr(i), opened.spec(i), owner=opened.hold, readonly=readonly)
            for i in range(len(description.items))
        ]
        frame = cls.from_planes(planes, format=facts.format, colour=facts.colour)
    else:
        start = description.items[0].offset - layout.planes[0].offset
        size = description.allocations[description.items[0].allocation].size
        frame = cls.from_pointer(
            opened.bases[description.items[0].allocation] + start,
            format=facts.format,
            width=facts.width,
            height=facts.height,
            device=opened.device,
            owner=opened.hold,
            pitch=[plane.row_pitch for plane in layout.planes],
            plane_offsets=[plane.offset for plane in layout.planes],
            nbytes=size - start,
            colour=facts.colour,
            readonly=readonly,
        )
    frame.record_write(opened.stream)
    return frame if opened.copy_to is None else copied_frame(frame, opened.copy_to)


def open_batch(cls: type[GpuBatch], payload: object) -> GpuBatch:
    """``pickle.loads`` of a ``GpuBatch``: the batch over the producer's memory."""
    opened = _open(payload, "batch", "pickle.loads(batch)")
    if not isinstance(opened, _Opened):
        same = _same(opened, cls)
        return _here(same, same.device, copied_batch, "pickle.loads(batch)")
    description = opened.description
    facts = description.batch
    assert facts is not None  # the description's check: a batch has its facts
    batch = cls.from_pointer(
        opened.ptr(0),
        opened.spec(0),
        facts.size,
        item_pitch=facts.item_pitch,
        owner=opened.hold,
        readonly=description.readonly,
    )
    if description.channel_order is not None:
        batch = batch.with_channel_order(description.channel_order)
    batch.record_write(opened.stream)
    return batch if opened.copy_to is None else copied_batch(batch, opened.copy_to)


def _same(source: object, cls: type[T]) -> T:
    """The original object of a description opened where it was made."""
    if not isinstance(source, cls):
        raise InteropError(f"pickle.loads(): expected a {cls.__name__}, got a {type(source).__name__}.")
    return source
