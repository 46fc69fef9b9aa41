"""Pickling device images, frames and batches to CUDA IPC descriptions: the producer's side.

``pickle.dumps(image)`` (``GpuImage``, ``GpuFrame``, ``GpuBatch`` in device memory) calls
``reduce_image`` / ``reduce_frame`` / ``reduce_batch`` through the object's ``__reduce_ex__``:

1. Each item's allocation is found (``cuMemGetAddressRange``) and its IPC handle taken; the image
   must lie inside one allocation per item, and be the producer's own memory (memory mapped from
   another process is refused with what to do instead). Host memory has no handle: host objects
   pickle by value instead (``_host_pickle``).
2. The ready point: where the data is still being produced (``image.stream``), an interprocess
   event is recorded on that stream now; the consumer's stream waits for it, on the GPU.
3. A lease (``_ipc_lease.share``) keeps the object, and with it its memory and that event, alive
   until every process that opened the description let go, or nobody opened it within
   ``unopened_timeout()``. A SIGKILLed consumer lets go too: the OS drops its lock.
4. The pickle carries ``(open_*, (class, payload))``: ``_ipc_open`` rebuilds the object there.

The lifetime protocol, in full: ``docs/processes.md`` and ``_ipc_lease``. Multi-GPU: the description
names the GPU by UUID and PCI bus id; the consumer opens it on that same GPU, or inside ``open_on`` on
another one by a peer view or a copy (``_ipc_devices``). The ready point's event is made and recorded
on the image's own GPU, in its context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._driver import is_capturing
from ._errors import BoundsError, ExportError, LifetimeError
from ._formats import ChannelOrder
from ._host_pickle import reduce_host_batch, reduce_host_frame, reduce_host_image
from ._ipc_description import (
    Description,
    Kind,
    SharedAllocation,
    SharedBatch,
    SharedDevice,
    SharedFrame,
    SharedItem,
)
from ._ipc_driver import IpcEvent, driver
from ._ipc_lease import process_token, share
from ._ipc_open import SharedHold, mapped_from, open_batch, open_frame, open_image
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._frame import GpuFrame
    from ._image import GpuImage
    from ._image_batch import GpuBatch

__all__ = ["reduce_batch", "reduce_frame", "reduce_image"]

Reduced = tuple[Callable[..., object], tuple[object, ...]]
"""What ``__reduce_ex__`` returns: the callable ``pickle.loads`` calls, and its arguments."""


def reduce_image(image: GpuImage[Any, Any]) -> Reduced:
    """``pickle.dumps(image)`` of a device image: its CUDA IPC description (see the module)."""
    if not image.device.is_cuda:
        return reduce_host_image(image)  # by value: host memory has no handle to share
    where = "pickle.dumps(image)"
    _check_shareable([image], where)
    payload = _describe(
        image,
        "image",
        [(image.ptr, image.spec, image.nbytes)],
        image.stream,
        image.readonly,
        image.channel_order,
        where=where,
    )
    return open_image, (type(image), payload)


def reduce_frame(frame: GpuFrame) -> Reduced:
    """``pickle.dumps(frame)`` of a device frame: its planes, and its layout when it has one."""
    if not frame.device.is_cuda:
        return reduce_host_frame(frame)
    where = "pickle.dumps(frame)"
    planes = frame.planes
    _check_shareable(planes, where)
    items = [(plane.ptr, plane.spec, plane.nbytes) for plane in planes]
    facts = SharedFrame(frame.format, frame.width, frame.height, frame.colour, frame.layout)
    payload = _describe(frame, "frame", items, frame.stream, frame.readonly, None, where=where, frame=facts)
    return open_frame, (type(frame), type(planes[0]), payload)


def reduce_batch(batch: GpuBatch) -> Reduced:
    """``pickle.dumps(batch)`` of a device batch: item 0, the count and the item pitch."""
    if not batch.device.is_cuda:
        return reduce_host_batch(batch)
    where = "pickle.dumps(batch)"
    _check_shareable([batch], where)
    facts = SharedBatch(batch.size, batch.item_pitch)
    items = [(batch.ptr, batch.item_spec, batch.nbytes)]
    order = batch.channel_order
    payload = _describe(batch, "batch", items, batch.stream, batch.readonly, order, where=where, batch=facts)
    return open_batch, (type(batch), payload)


def _check_shareable(parts: Sequence[Any], where: str) -> None:
    """Refuse memory mapped here from another process (see the module)."""
    for part in parts:
        owner: object = part.owner
        pid = owner.producer_pid if isinstance(owner, SharedHold) else mapped_from(part.ptr)
        if pid is not None:
            raise ExportError(
                f"{where}: expected memory that this process allocated, got memory mapped from process {pid} "
                f"(CUDA IPC cannot share a mapping again). Pickle it in process {pid}, or pickle a copy "
                "made in this process (image.copy(), frame.to_image())."
            )


def _describe(
    source: object,
    kind: Kind,
    items: Sequence[tuple[int, ImageSpec, int]],
    stream: int | None,
    readonly: bool,
    order: ChannelOrder | None,
    *,
    where: str,
    frame: SharedFrame | None = None,
    batch: SharedBatch | None = None,
) -> dict[str, object]:
    """The payload of ``source``'s description; ``source`` is kept alive by a new lease.

    ``items`` are ``(pointer, spec, extent in bytes)``; ``stream`` the ready stream (None: ready)."""
    ipc = driver()
    device = items[0][1].device.index
    bases: dict[int, int] = {}  # allocation base -> index in allocations
    allocations: list[SharedAllocation] = []
    shared: list[SharedItem] = []
    for ptr, spec, extent in items:
        base, size = ipc.address_range(ptr, device)
        if ptr + extent > base + size:
            raise BoundsError(
                f"{where}: expected the {kind} inside one allocation, got {extent} bytes at {ptr:#x} in an "
                f"allocation of {size} bytes at {base:#x} (it spans several allocations, which one IPC "
                "handle cannot describe). Pickle a copy."
            )
        if base not in bases:
            bases[base] = len(allocations)
            allocations.append(SharedAllocation(ipc.mem_handle(base, device), size))
        shared.append(SharedItem(bases[base], ptr - base, spec))
    event = _ready_point(stream, device, where)
    try:
        lease = share(source, () if event is None else (event,))
    except OSError as exc:
        raise LifetimeError(
            f"{where}: expected to create a lease file for the description, got {type(exc).__name__}: {exc}. "
            "Check that /dev/shm (or GPUIMAGE_IPC_DIR, or the temporary directory) is writable."
        ) from exc
    try:
        description = Description(
            kind=kind,
            allocations=tuple(allocations),
            items=tuple(shared),
            device=SharedDevice(ipc.device_uuid(device), ipc.pci_bus_id(device), device),
            event=None if event is None else event.handle,
            producer_pid=os.getpid(),
            producer_token=process_token(),
            lease=lease.path,
            readonly=readonly,
            channel_order=order,
            frame=frame,
            batch=batch,
        )
        description.check()
    except BaseException:
        lease.end()  # the registry lets go of it at its next poll
        raise
    return description.to_payload()


def _ready_point(stream: int | None, device: int, where: str) -> IpcEvent | None:
    """An interprocess event recorded on ``stream`` now (None when nothing is pending)."""
    if stream is None:
        return None
    if is_capturing(stream):
        raise ExportError(
            f"{where}: expected the data's stream to be outside a CUDA graph capture, got stream {stream:#x} "
            "being captured (an event recorded there would become a node of the graph). Pickle the image "
            "after the capture ends, or after the graph ran and wrote it."
        )
    event = driver().create_event(device)
    try:
        event.record(stream)
    except BaseException:
        with contextlib.suppress(Exception):
            event.close()
        raise
    return event
