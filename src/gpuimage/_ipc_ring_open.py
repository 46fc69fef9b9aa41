"""Opening a pickled ``SharedRing`` in its reader, and what both sides of a ring share (``_Shared``).

``open_ring`` is what ``pickle.loads`` calls, with the ring's class (passed by the pickle), its
payload and its items, already unpickled (each opened from its own CUDA IPC description). The
reader takes the ring's lease (the writer keeps the ring's memory and events while it is held),
maps the control block, opens each slot's events, and opens the writer's liveness file to tell,
while it waits, whether the writer is still there. In the process that made the ring, the reader
shares the writer's control block and events instead.

Inside ``open_on(device, access="peer")`` the items are peer views on ``device`` (``_ipc_devices``),
while the slots' events stay on the ring's own GPU (its *home*), where the writer made them: the
reader waits for them from ``device``'s streams and records its reads through a stream of the home GPU
(``SharedRing.reading``). A copy of a ring (``access="copy"``) is refused: it would be a snapshot of the
slots, not the slots the writer keeps writing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ._errors import DeviceError, InteropError, LayoutError, LifetimeError, SpecError
from ._frame import GpuFrame
from ._image import GpuImage
from ._ipc_devices import choice
from ._ipc_driver import IpcEvent, driver
from ._ipc_lease import Hold, is_this_process, lookup
from ._ipc_ring_control import RingControl, RingDescription, control_bytes

if TYPE_CHECKING:
    from ._ipc_ring import SharedRing

__all__ = ["Shared", "check_items", "open_ring"]


class Shared:
    """What both sides of one process use, and the writer's lease keeps alive for its reader: the
    items, each slot's ("written", "read") events, the control block and its memory map."""

    __slots__ = ("control", "events", "items", "map", "path")

    def __init__(self, items: tuple[Any, ...], events: tuple[tuple[IpcEvent, IpcEvent], ...],
                 memory: mmap.mmap, path: str | None) -> None:  # fmt: skip
        self.items, self.events, self.map, self.path = items, events, memory, path
        self.control = RingControl(memory, len(items), create=path is not None)

    def __del__(self) -> None:
        self.control.detach()
        with contextlib.suppress(BufferError, ValueError):
            self.map.close()
        if self.path is not None:  # the writer's: its control file goes with it
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def open_ring(cls: type[SharedRing[Any]], payload: object, items: tuple[object, ...]) -> SharedRing[Any]:
    """``pickle.loads`` of a ring: its reader side (``items`` were unpickled first, each opened)."""
    where = "pickle.loads(ring)"
    description = RingDescription.from_payload(payload)
    if len(items) != description.slots:
        raise InteropError(f"{where}: expected {description.slots} items, got {len(items)}.")
    check_items(items, where)
    device = cast("GpuImage[Any, Any] | GpuFrame", items[0]).device.index  # where the reader uses them
    ipc = driver()
    home = ipc.device_of_uuid(description.device.uuid)
    if home is None:
        raise DeviceError(f"{where}: expected the ring's GPU to be visible here, got no such device.")
    chosen = choice()
    if chosen is not None and chosen.access == "copy" and chosen.device != home:
        raise DeviceError(
            f"{where}: expected the ring read on its own GPU (cuda:{home}) or through a peer view, got "
            f"open_on({chosen.device}, access='copy') (a copy would be a snapshot of the slots, not the "
            "slots the writer keeps writing). Open the ring with access='peer' or without open_on(), and "
            f"copy what you read inside reading() (image.cuda({chosen.device}))."
        )
    if is_this_process(description.producer_pid, description.producer_token):
        shared = lookup(description.lease)
        if not isinstance(shared, Shared):
            raise LifetimeError(f"{where}: expected a ring this process still shares, got its lease ended.")
        hold = Hold.take(description.lease, where=where)  # the writer tells this reader's close, too
        return cls._make(shared, device, "reader", hold=hold)  # pyright: ignore[reportPrivateUsage]
    hold = Hold.take(description.lease, where=where)
    peer: int | None = None
    try:
        try:
            fd = os.open(description.control, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                memory = mmap.mmap(fd, control_bytes(description.slots))
            finally:
                os.close(fd)
            peer = os.open(description.writer, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, ValueError) as exc:  # gone, or not a control block of this size
            raise LifetimeError(
                f"{where}: expected the writer's control block and liveness file, got {type(exc).__name__}: "
                f"{exc}. The writer closed the ring or exited; make a new ring."
            ) from exc
        events = tuple((ipc.open_event(w, home), ipc.open_event(r, home)) for w, r in description.events)
        shared = Shared(items, events, memory, None)
    except BaseException:
        hold.release()
        if peer is not None:
            os.close(peer)
        raise
    return cls._make(shared, device, "reader", hold=hold, peer=peer, home=home)  # pyright: ignore[reportPrivateUsage]


def check_items(items: Sequence[object], where: str) -> None:
    """Images (or frames in one allocation each) of one geometry, in device memory of one device."""
    first = items[0]
    if isinstance(first, GpuImage):
        spec = first.spec
        same = all(isinstance(item, GpuImage) and item.spec == spec for item in items)
        described = f"{spec}"
    elif isinstance(first, GpuFrame):
        geometry = (first.format, first.width, first.height, first.layout, first.device)
        same = all(
            isinstance(item, GpuFrame)
            and (item.format, item.width, item.height, item.layout, item.device) == geometry
            for item in items
        )
        described = repr(first)
        if first.layout is None:
            raise LayoutError(
                f"{where}: expected frames whose planes lie in one allocation, got planes imported apart. "
                "Allocate the ring's frames with GpuFrame.empty()."
            )
    else:
        raise InteropError(f"{where}: expected GpuImage or GpuFrame items, got {type(first).__name__}.")
    if not same:
        raise SpecError(f"{where}: expected every item like the first ({described}), got one that differs.")
    device = first.device
    if not device.is_cuda:
        raise DeviceError(
            f"{where}: expected items in device memory (the ring shares GPU memory), got items on {device}."
        )
