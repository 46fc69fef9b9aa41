"""Stream ordering for ``GpuImage``: where its data is ready, who waits for it, who wrote or read it.

A mixin of the hub, kept apart so that the hub module holds construction and views; the CUDA calls
themselves go through ``_runtime``, and the release of memory after its last use is ``_lifetime``'s.
Every use of an image on a stream (a view, an export, ``reading``, ``writing``, a conversion) goes through
``_use``: it orders the stream after the data and notes the stream as a user of the memory.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Protocol, Self

from ._driver import is_capturing
from ._errors import DeviceError, InteropError
from ._lifetime import Lifetime
from ._runtime import missing_runtime, runtime
from ._spec import ImageSpec
from ._spokes import loaded_spokes
from ._streams import (
    LEGACY_DEFAULT,
    Event,
    ReadyState,
    StreamLike,
    is_default_stream,
    stream_handle,
    stream_keep,
)

__all__ = [
    "BY_HANDLE",
    "CURRENT",
    "CurrentStreams",
    "StreamOrdering",
    "begin_conversion",
    "begin_reads",
    "begin_write",
    "end_conversion",
    "end_reads",
    "end_write",
    "keep_for_handle",
    "read_record",
    "ready_stream",
    "wait_for_reads",
]


class CurrentStreams(Protocol):
    """A spoke's current stream: the consumer of a view asked for without ``stream=``."""

    def current_stream(self, index: int, /) -> int:
        """The raw handle of the library's current stream on device ``index``."""
        ...

    def current_stream_object(self, index: int, /) -> object:
        """The object that keeps that stream alive (None where the library never destroys it)."""
        ...


CURRENT = object()
"""``keep`` for a consumer that is a library's current stream: its object is fetched only when the
stream is noted for the first time (fetching it costs more than the handle)."""
BY_HANDLE = object()
"""``keep`` for a raw handle a consumer gave (DLPack's ``stream=``): looked up, once, among the
current streams of the spokes already loaded."""


class StreamOrdering:
    """The stream side of ``GpuImage``: ordering views and exports, recording writes and reads."""

    __slots__ = ()

    _ready: ReadyState
    _life: Lifetime
    _spec: ImageSpec
    _device_index: int

    @staticmethod
    def _handle(stream: StreamLike) -> int:
        """A consumer's raw stream handle (None: the legacy default stream)."""
        handle = stream_handle(stream, where="stream")
        return LEGACY_DEFAULT if handle is None else handle

    def _consume(self, stream: StreamLike, spoke: CurrentStreams | None) -> None:
        """A use of the image on ``stream`` (default: ``spoke``'s current stream, or the legacy
        default stream without a spoke). Free when nothing is pending and nothing is tracked."""
        if self._ready.stream is None and not self._life.tracked:
            return
        if stream is not None:
            self._use(self._handle(stream), stream_keep(stream), spoke)
        elif spoke is None:
            self._use(LEGACY_DEFAULT, None, None)
        else:
            if not runtime().has_gpu:
                raise missing_runtime(
                    f"ordering a consumer after the image's data, pending on stream {self._ready.stream!r} "
                    "(or pass stream= to name the consumer),"
                )
            self._use(spoke.current_stream(self._device_index), CURRENT, spoke)

    def _use(self, consumer: int, keep: object, spoke: CurrentStreams | None) -> None:
        """Make stream ``consumer`` wait, on the GPU, for the write that produced the data (exactly
        that write when it was recorded, else all work queued on the producing stream so far), and
        note ``consumer`` as a user of the memory, whose work must finish before it is released.
        ``keep`` is the stream object that keeps ``consumer`` alive (``CURRENT``: ``spoke``'s)."""
        ready = self._ready
        producer = ready.stream
        if producer is not None and producer != consumer:
            if ready.event is not None:
                runtime().wait_event(ready.event, consumer)
            else:
                runtime().wait(producer, consumer, self._device_index)
        life = self._life
        if life.tracked and consumer != life.home and (life.uses is None or consumer not in life.uses):
            if keep is CURRENT:
                keep = None if spoke is None else spoke.current_stream_object(self._device_index)
            elif keep is BY_HANDLE:
                keep = keep_for_handle(consumer, self._device_index)
            life.note(consumer, keep)

    def _read_on(self, stream: int, keep: object) -> bool:
        """Order a read of the image on ``stream`` (a conversion's source). True when the read must
        be recorded with an event afterwards: a read on the ready stream, with no write event there,
        is covered by the wait on that stream that any later writer makes."""
        ready = self._ready
        self._use(stream, keep, None)
        return stream != ready.stream or ready.event is not None

    def _write_on(self, stream: int, keep: object) -> None:
        """Order a write of the image on ``stream`` (a conversion's target): after the data's
        producer and after every recorded read, as ``writing()`` does on entry."""
        ready = self._ready
        if ready.stream != stream or ready.event is not None:
            self._use(stream, keep, None)
        else:
            self._life.note(stream, keep)
        if ready.reads:  # a loop's output is rarely read elsewhere: no call then
            wait_for_reads(ready, stream, self._device_index)

    def _written_on(self, stream: int, keep: object) -> None:
        """The image was written by the work queued on ``stream`` so far (a conversion): consumers
        wait for that stream, which ``keep`` keeps alive; no event is needed. (``ReadyState.written_on``
        inlined, with ``keep``: once per conversion.)"""
        ready = self._ready
        ready.stream, ready.event, ready.keep = stream, None, keep
        if ready.reads:
            ready.reads = {}

    def _note_current_streams(self) -> None:
        """Note the current streams of the loaded spokes as users: a consumer that reads the CUDA
        Array Interface names no stream, and queues its work on its library's current stream."""
        life = self._life
        if not life.tracked:
            return
        device = self._device_index
        for source in loaded_spokes("cupy", "torch"):  # only spokes already loaded are asked
            try:
                handle = source.current_stream(device)
                uses = life.uses
                if handle == life.home or (uses is not None and uses.get(handle) is not None):
                    continue  # noted already, with its stream object: no object to fetch (torch's costs µs)
                life.note(handle, source.current_stream_object(device))
            except Exception:  # the library cannot reach the device (torch: AssertionError): no stream there
                continue

    def record_write(self, stream: StreamLike) -> None:
        """Tell the image that work queued on ``stream`` (so far) wrote it: later views and exports
        wait for exactly that work. Shared with crops of the same image.

        It does not wait for earlier readers; ``writing()`` does, for reads made in ``reading()``.
        """
        handle = stream_handle(stream, where="record_write()")
        if handle is None:
            raise InteropError("record_write(): expected the stream that wrote the image, got None.")
        if not self._spec.device.is_cuda:
            return  # host memory: a host write is complete when it returns
        self._ready.written_on(handle, runtime().record(handle, self._device_index))
        self._life.note(handle, stream_keep(stream))

    @contextmanager
    def writing(self, stream: StreamLike) -> Generator[Self]:
        """Write the image on ``stream``, safely.

        On entry ``stream`` waits (on the GPU) for the write that produced the data and for every
        read recorded by ``reading()`` since, so no reader sees half-overwritten data; on exit,
        even through an exception, the write is recorded (``record_write(stream)``).
        """
        writer = self._handle(stream)
        if self._spec.device.is_cuda:
            self._use(writer, stream_keep(stream), None)
        wait_for_reads(self._ready, writer, self._device_index)
        try:
            yield self
        finally:
            self.record_write(writer if stream is None or type(stream) is int else stream)

    @contextmanager
    def reading(self, stream: StreamLike) -> Generator[Self]:
        """Read the image on ``stream``: on entry ``stream`` waits for the data (like every view);
        on exit an event records the reads queued inside (none on the legacy default stream, which
        the next writer waits for as a whole), and the next ``writing()`` waits for it, so a buffer
        is never overwritten while it is still being read."""
        reader = self._handle(stream)
        if self._spec.device.is_cuda:
            self._use(reader, stream_keep(stream), None)
        try:
            yield self
        finally:
            if self._spec.device.is_cuda:
                self._ready.reads[reader] = read_record(reader, self._device_index)

    @classmethod
    @contextmanager
    def reading_all(cls, images: Sequence[StreamOrdering], stream: StreamLike) -> Generator[None]:
        """``reading(stream)`` for many images of one device at once: on entry ``stream`` waits for
        each image's data; on exit one event records the reads for all of them (a batch of 64 crops
        records one event, not 64), unless every image was ready on ``stream`` already: a later
        writer then waits for ``stream`` itself."""
        reader = cls._handle(stream)
        keep = stream_keep(stream)
        devices = {image._spec.device for image in images}
        if len(devices) > 1:
            raise DeviceError(
                f"reading_all(): expected images of one device, got {sorted(map(str, devices))}."
            )
        on_gpu = bool(images) and images[0]._spec.device.is_cuda
        record = on_gpu and begin_reads(images, reader, keep)
        try:
            yield
        finally:
            if record:
                end_reads(images, reader)

    def synchronize(self) -> None:
        """Block the host until the image's data is ready; afterwards nothing is pending (``stream``
        is None)."""
        ready = self._ready
        if ready.stream is not None and self._spec.device.is_cuda:
            if ready.event is not None:
                ready.event.synchronize()
            else:
                runtime().synchronize(ready.stream, self._device_index)
        # Only the write is waited for: recorded reads stay, for the next writer to wait on.
        ready.stream = ready.event = ready.keep = None


def begin_reads(images: Sequence[StreamOrdering], stream: int, keep: object = None) -> bool:
    """``reading_all``'s entry without a context manager (a replayed frame batch's, per frame):
    ``stream`` (a raw handle, kept alive by ``keep``) waits for each image's data. Images of one
    CUDA device. Returns whether the reads must be recorded: then, after they are queued, call
    ``end_reads``, even when queueing failed (else a later writer waits for ``stream`` itself)."""
    record = False
    for image in images:
        record |= image._read_on(stream, keep)  # pyright: ignore[reportPrivateUsage]
    return record


def end_reads(images: Sequence[StreamOrdering], stream: int) -> None:
    """``reading_all``'s exit, where ``begin_reads`` said the reads must be recorded: one event
    records the reads queued on ``stream`` for all ``images``, and the next writer of any of them
    waits for it."""
    event = read_record(stream, images[0]._device_index)  # pyright: ignore[reportPrivateUsage]
    for state in {id(image._ready): image._ready for image in images}.values():  # pyright: ignore[reportPrivateUsage]
        state.reads[stream] = event


def begin_conversion(source: StreamOrdering, target: StreamOrdering, stream: int, keep: object) -> bool:
    """Order a conversion queued on ``stream``: a read of ``source`` and a write of ``target``.
    Returns whether the read must be recorded afterwards (see ``end_conversion``)."""
    # module-level friends of the class: pyright counts any use outside its body as private usage
    record_read = source._read_on(stream, keep)  # pyright: ignore[reportPrivateUsage]
    target._write_on(stream, keep)  # pyright: ignore[reportPrivateUsage]
    return record_read


def end_conversion(
    source: StreamOrdering, target: StreamOrdering, stream: int, keep: object, *, record_read: bool
) -> None:
    """After the conversion was queued: its read recorded where a later writer needs it, and
    ``target`` ready on ``stream``."""
    if record_read:
        event = read_record(stream, source._device_index)  # pyright: ignore[reportPrivateUsage]
        source._ready.reads[stream] = event  # pyright: ignore[reportPrivateUsage]
    target._written_on(stream, keep)  # pyright: ignore[reportPrivateUsage]


def begin_write(target: StreamOrdering, stream: int, keep: object) -> None:
    """Order a write of ``target`` on ``stream`` that reads no image (a frame conversion's output)."""
    target._write_on(stream, keep)  # pyright: ignore[reportPrivateUsage]


def end_write(target: StreamOrdering, stream: int, keep: object) -> None:
    """``target`` was written by the work queued on ``stream`` so far: consumers wait for that stream."""
    target._written_on(stream, keep)  # pyright: ignore[reportPrivateUsage]


def read_record(stream: int, device: int) -> Event | None:
    """What ``ReadyState.reads`` keeps for reads just queued on ``stream``: an event recorded after
    them; None on the legacy default stream, which always exists and which the next writer waits
    for as a whole (``wait_for_reads``), so a loop on it records no event per call."""
    return None if stream == LEGACY_DEFAULT else runtime().record(stream, device)


def wait_for_reads(ready: ReadyState, writer: int, device: int) -> None:
    """Make stream ``writer`` wait for every read recorded in ``ready`` (see ``read_record``).

    A read on the legacy default stream is waited for by recording on that stream now, which a
    stream being captured into a CUDA graph must not do (it would invalidate the capture). It is
    skipped there: the read was queued before the capture began, and ``torch.cuda.graph``
    synchronizes the device before it starts capturing."""
    for reader, read in ready.reads.items():
        if read is not None:
            runtime().wait_event(read, writer)
        elif reader != writer and not is_capturing(writer):
            runtime().wait(reader, writer, device)


def ready_stream(image: StreamOrdering) -> tuple[int | None, object]:
    """The stream an image's data is ready on, and the object that keeps it alive."""
    ready = image._ready  # pyright: ignore[reportPrivateUsage]
    return ready.stream, ready.keep


def current_streams(device: int) -> list[tuple[int, object]]:
    """(handle, keep) of the current stream of each loaded spoke with streams (CuPy, torch) on ``device``."""
    found: list[tuple[int, object]] = []
    for source in loaded_spokes("cupy", "torch"):  # only spokes already loaded are asked
        try:
            found.append((source.current_stream(device), source.current_stream_object(device)))
        except Exception:  # the library cannot reach the device (torch: AssertionError): no stream there
            continue
    return found


def keep_for_handle(handle: int, device: int) -> object:
    """The stream object behind a raw handle, where gpuimage can find one (a loaded spoke's current
    stream); None otherwise (the default streams always exist; other raw handles are the caller's)."""
    if is_default_stream(handle):
        return None
    return next((keep for current, keep in current_streams(device) if current == handle), None)
