"""``SharedRing``: N reusable images or frames of one geometry, written by one process and read by
another on the same host, zero-copy (CUDA IPC), without a host synchronization per frame.

The writer makes the ring over images it allocated and pickles it once to the reader (a
``multiprocessing`` argument or queue). Each slot has two interprocess events, "written" (recorded by
the writer after its write) and "read" (recorded by the reader after its reads), and a small shared
control block (``_ipc_ring_control``) says which records happened:

- ``writing()`` takes the next slot once the reader released its previous content (the host waits only
  while the reader still holds it), makes the writer's stream wait on the GPU for the slot's "read"
  event, yields ``(index, item)``, and on exit records "written" and publishes the slot;
- ``reading()`` takes the next published slot (the host waits until there is one), makes the reader's
  stream wait for its "written" event, yields the item, and on exit records "read" and releases it.

Liveness: the reader holds the ring's lease (``_ipc_lease``) while its ring lives, the writer a shared
lock on the ring's writer file; the OS drops both when a process dies, even by SIGKILL. A side that
waits for a slot checks the other every 0.1 s and raises ``LifetimeError`` when it is gone, so a
dead reader never deadlocks the writer. One writer and one reader per ring.

A reader on another GPU (the ring unpickled inside ``open_on(device, access="peer")``) reads peer
views; the slots' events stay on the ring's GPU: "written" is waited for by the reader's stream in its
own device's context, and "read" is recorded on the ring GPU's current stream after that stream waits,
through an event of the reader's GPU (the bridge), for the reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Literal, TypeVar, cast

from ._errors import InteropError, LifetimeError, SpecError, WaitTimeoutError
from ._exports import ImageExports
from ._frame import GpuFrame
from ._image import GpuImage
from ._ipc_description import SharedDevice
from ._ipc_driver import IpcEvent, driver
from ._ipc_lease import Hold, Lease, make_file, probe, process_token, share
from ._ipc_ring_control import MAX_SLOTS, RingDescription, control_bytes
from ._ipc_ring_open import Shared, check_items, open_ring
from ._runtime import runtime
from ._streams import StreamLike, stream_handle

__all__ = ["SharedRing"]

T = TypeVar("T", bound="GpuImage[Any, Any] | GpuFrame")
_CHECK_EVERY_S = 0.1  # how often a waiting side checks that the other is alive


class SharedRing(Generic[T]):
    """N reusable images (or frames) of one geometry, shared by a writer process and a reader process.

    Make it in the writer with ``SharedRing.from_items`` over memory of one device (``GpuImage.empty``,
    ``GpuFrame.empty``), then pickle it once to the reader; the unpickled ring reads.

    Writer::

        ring = SharedRing.from_items([GpuFrame.empty(1920, 1080, format="NV12") for _ in range(4)])
        reader = ctx.Process(target=consume, args=(ring,)); reader.start()
        for packet in stream:
            with ring.writing() as (index, frame):
                decoder.decode_into(frame, packet)  # queued on the current stream

    Reader::

        def consume(ring):
            while True:
                with ring.reading(timeout=5) as frame:
                    batch = normalize_batch([frame], MEAN, STD, size=(224, 224))

    Notes:
        Streams: ``stream`` (default: the runtime's current stream, torch's where torch is installed)
        is where ``writing()``/``reading()`` order their work; queue the block's work there, or make
        it wait for your other streams before the block ends. No host synchronization happens per
        frame; the host waits only while the ring is full (writer) or empty (reader).

        Lifetime: the writer keeps the items' memory while the reader's ring lives; the reader's ring
        keeps its mappings. A reader that dies (even by SIGKILL) lets go, and a waiting writer then
        raises ``LifetimeError``; likewise a waiting reader once the writer is gone.
    """

    __slots__ = ("__weakref__", "_bridge", "_device", "_hold", "_home", "_lease", "_peer", "_role", "_shared",
                 "_writer")  # fmt: skip

    _shared: Shared
    _device: int  # where this side uses the items (a reader's peer views: the reader's GPU)
    _home: int  # the GPU of the items' memory and of the slots' events
    _bridge: IpcEvent | None  # a reader on another GPU: orders the home GPU's stream after its reads
    _role: Literal["writer", "reader"]
    _lease: Lease | None  # the writer's latest pickling: its reader's lease
    _hold: Hold | None  # the reader's lease (None in the writer's own process)
    _peer: int | None  # the reader's fd of the writer's liveness file
    _writer: tuple[str, int] | None  # the writer's liveness file and its fd, locked shared while it lives

    def __init__(self) -> None:
        raise TypeError("SharedRing() cannot be called directly; use SharedRing.from_items().")

    @classmethod
    def _make(
        cls,
        shared: Shared,
        device: int,
        role: Literal["writer", "reader"],
        *,
        hold: Hold | None = None,
        peer: int | None = None,
        writer: tuple[str, int] | None = None,
        home: int | None = None,
    ) -> SharedRing[Any]:
        ring: SharedRing[Any] = object.__new__(cls)
        ring._shared, ring._device, ring._role = shared, device, role
        ring._home, ring._bridge = device if home is None else home, None
        ring._lease, ring._hold, ring._peer, ring._writer = None, hold, peer, writer
        return ring

    @classmethod
    def from_items(cls, items: Sequence[T]) -> SharedRing[T]:
        """A ring over ``items`` (2 or more; its slots, in order), written by this process.

        Raises:
            SpecError: fewer than 2 or more than 4096 items, or items of different geometries.
            DeviceError: items in host memory, or on different devices.
            LayoutError: a frame whose planes do not lie in one allocation (use ``GpuFrame.empty``).
        """
        where = "SharedRing.from_items()"
        found = tuple(items)
        if not 2 <= len(found) <= MAX_SLOTS:
            raise SpecError(f"{where}: expected 2 to {MAX_SLOTS} images or frames, got {len(found)}.")
        check_items(found, where)
        device = found[0].device.index
        ipc = driver()
        events = tuple((ipc.create_event(device), ipc.create_event(device)) for _ in found)
        path, fd = make_file(".ctl", control_bytes(len(found)))
        try:
            memory = mmap.mmap(fd, control_bytes(len(found)))
        finally:
            os.close(fd)
        writer = make_file(".writer")
        fcntl.flock(writer[1], fcntl.LOCK_SH)  # held while this ring lives: the reader tests it
        return cast(
            "SharedRing[T]", cls._make(Shared(found, events, memory, path), device, "writer", writer=writer)
        )

    # -- metadata -------------------------------------------------------------------------------

    @property
    def items(self) -> tuple[T, ...]:
        """The slots' images or frames, in order (in the reader: opened over the writer's memory)."""
        return cast("tuple[T, ...]", self._shared.items)

    @property
    def slots(self) -> int:
        """How many slots the ring has."""
        return len(self._shared.items)

    @property
    def role(self) -> Literal["writer", "reader"]:
        """``"writer"`` in the process that made the ring, ``"reader"`` where it was unpickled."""
        return self._role

    def __repr__(self) -> str:
        control = self._shared.control
        return (
            f"SharedRing({self.slots} x {self._shared.items[0]!r}, {self._role}, "
            f"written={control.write_seq}, read={control.read_seq})"
        )

    # -- writing and reading ----------------------------------------------------------------------

    @contextmanager
    def writing(self, *, stream: StreamLike = None, timeout: float | None = None) -> Generator[tuple[int, T]]:
        """Write the next slot: yields ``(index, item)``; on a normal exit the write is published.

        On entry the host waits while the reader still holds the slot (up to ``timeout`` seconds;
        None: as long as the reader lives), then ``stream`` waits on the GPU for the reader's last
        read of it. Queue the write on ``stream``. An exception inside the block publishes nothing:
        the next ``writing()`` takes the same slot.

        Raises:
            LifetimeError: the reader is gone (closed its ring, exited, was killed), or never opened
                the ring within ``unopened_timeout()``.
            WaitTimeoutError: ``timeout`` passed with the slot still held.
            InteropError: called in the reader.
        """
        where = "SharedRing.writing()"
        self._expect_role("writer", where)
        shared = self._shared
        seq, slot = self._wait(shared.control.writable, timeout, where)
        handle, keep = self._stream(stream, where)
        write_event, read_event = shared.events[slot]
        if shared.control.read_recorded(slot):
            read_event.wait_on(handle)
        item = shared.items[slot]
        with _image_of(item).writing(keep):
            yield slot, item
        write_event.record(handle)
        shared.control.publish(seq)

    @contextmanager
    def reading(self, *, stream: StreamLike = None, timeout: float | None = None) -> Generator[T]:
        """Read the next published slot: yields its item; on exit (also through an exception) the
        read is recorded and the slot goes back to the writer.

        On entry the host waits until the writer published a slot (up to ``timeout`` seconds; None: as
        long as the writer lives), then ``stream`` waits on the GPU for that write, and the item is
        ready on ``stream`` (its views order other streams after it).

        Raises:
            LifetimeError: the writer is gone while the ring is empty.
            WaitTimeoutError: ``timeout`` passed with nothing published.
            InteropError: called in the writer.
        """
        where = "SharedRing.reading()"
        self._expect_role("reader", where)
        shared = self._shared
        seq, slot = self._wait(shared.control.readable, timeout, where)
        handle, keep = self._stream(stream, where)
        write_event, read_event = shared.events[slot]
        write_event.wait_on(handle, self._device)
        item = shared.items[slot]
        item.record_write(keep)
        try:
            yield item
        finally:
            self._record_read(read_event, handle)
            shared.control.release(seq)

    def _record_read(self, read_event: IpcEvent, handle: int) -> None:
        """Record the reads queued on ``handle`` in the slot's "read" event, on the event's own GPU."""
        home = self._home
        if home == self._device:
            read_event.record(handle)
            return
        bridge = self._bridge
        if bridge is None:
            bridge = self._bridge = driver().create_event(self._device)
        on_home = runtime().current_stream(home)
        bridge.record(handle)
        bridge.wait_on(on_home, home)
        read_event.record(on_home)

    def _expect_role(self, role: str, where: str) -> None:
        if self._role != role:
            raise InteropError(
                f"{where}: expected the {role} side of the ring, got its {self._role} side. The process that "
                "made the ring writes; the one that unpickled it reads."
            )

    def _stream(self, stream: StreamLike, where: str) -> tuple[int, object]:
        """The raw handle to order on, and what to pass on (the stream object keeps it alive)."""
        if stream is None:
            current = runtime().current_stream(self._device)
            return current, current
        handle = stream_handle(stream, where=where)
        return (0 if handle is None else handle), stream

    def _wait(
        self, ready: Callable[[], tuple[int, int] | None], timeout: float | None, where: str
    ) -> tuple[int, int]:
        """Poll ``ready`` until it gives a slot; check the other side every 0.1 s (see the module)."""
        found = ready()
        if found is not None:
            return found
        start = time.monotonic()
        check, pause = start, 20e-6
        while True:
            now = time.monotonic()
            if now >= check:
                self._check_peer(where)
                check = now + _CHECK_EVERY_S
            if timeout is not None and now - start >= timeout:
                side = "reader to release a slot" if self._role == "writer" else "writer to publish a slot"
                raise WaitTimeoutError(
                    f"{where}: expected the {side} within timeout={timeout} s, got none in time. Wait "
                    "longer, or check that the other process keeps up."
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
            found = ready()
            if found is not None:
                return found

    def _check_peer(self, where: str) -> None:
        """Raise ``LifetimeError`` when the other side is gone (see the module)."""
        if self._role == "writer":
            lease = self._lease
            state = "unsent" if lease is None else probe(lease)
            if state == "released":
                raise LifetimeError(
                    f"{where}: expected the reader to hold the ring, got it let go (the reader closed its "
                    "ring, exited or was killed). Send the ring to a new reader (pickle it again)."
                )
            if state == "expired":
                raise LifetimeError(
                    f"{where}: expected a reader to open the ring, got none within unopened_timeout() of "
                    "pickling it. Start the reader sooner, or raise gpuimage.set_unopened_timeout()."
                )
            return
        peer = self._peer
        if peer is None:  # the writer is this process
            return
        try:
            fcntl.flock(peer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # the writer holds its shared lock: alive
        with contextlib.suppress(OSError):
            fcntl.flock(peer, fcntl.LOCK_UN)
        raise LifetimeError(
            f"{where}: expected the writer to hold the ring, got it gone (the writer closed the ring, exited "
            "or was killed) with nothing left to read."
        )

    # -- closing and pickling ---------------------------------------------------------------------

    def close(self) -> None:
        """Let go of this side: the reader releases its lease (a waiting writer then stops), the writer
        its liveness file (a waiting reader then stops). Idempotent."""
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()
        for fd in (self._peer, None if self._writer is None else self._writer[1]):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._writer is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._writer[0])
        self._peer = self._writer = None

    def __del__(self) -> None:
        if hasattr(self, "_role"):  # not one whose construction was refused
            self.close()

    def __enter__(self) -> SharedRing[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: object) -> tuple[object, ...]:
        """Pickle the writer's ring for its reader: the items (each a CUDA IPC description), the events'
        handles, the control block's path, and a lease the reader holds while its ring lives."""
        where = "pickle.dumps(ring)"
        self._expect_role("writer", where)
        if self._writer is None:
            raise LifetimeError(f"{where}: expected an open ring, got one closed by close().")
        shared, ipc = self._shared, driver()
        lease = self._lease = share(shared)
        description = RingDescription(
            kind="image" if isinstance(shared.items[0], ImageExports) else "frame",
            slots=self.slots,
            control=cast(str, shared.path),
            writer=self._writer[0],
            lease=lease.path,
            events=tuple((written.handle, read.handle) for written, read in shared.events),
            device=SharedDevice(ipc.device_uuid(self._device), ipc.pci_bus_id(self._device), self._device),
            producer_pid=os.getpid(),
            producer_token=process_token(),
        )
        return open_ring, (type(self), description.to_payload(), shared.items)


def _image_of(item: GpuImage[Any, Any] | GpuFrame) -> GpuImage[Any, Any]:
    """The image whose ready state and lifetime stand for the item (a frame's planes share them)."""
    return item if isinstance(item, GpuImage) else item.planes[0]
