"""Stream ordering for ``GpuImage``: where its data is ready, who waits for it, who wrote it.

A mixin of the hub, kept apart so that the hub module holds construction and views; the CUDA calls
themselves live in ``_cuda`` (which picks the CuPy or torch spoke).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Self

from . import _cuda
from ._errors import DeviceError, InteropError
from ._spec import ImageSpec
from ._streams import LEGACY_DEFAULT, ReadyState, StreamLike, stream_handle

__all__ = ["StreamOrdering"]


class StreamOrdering:
    """The stream side of ``GpuImage``: ordering views and exports, recording writes and reads."""

    __slots__ = ()

    _ready: ReadyState
    _spec: ImageSpec
    _owner: object
    _device_index: int

    @staticmethod
    def _handle(stream: StreamLike) -> int:
        """A consumer's raw stream handle (None: the legacy default stream)."""
        handle = stream_handle(stream, where="stream")
        return LEGACY_DEFAULT if handle is None else handle

    def _order(self, consumer: int) -> None:
        """Make stream ``consumer`` wait, on the GPU, for the write that produced the data: exactly
        that write when it was recorded (``record_write``, ``writing``), else all work queued on the
        producing stream so far (ordering is per use, so a cached view is ordered every time)."""
        ready = self._ready
        producer = ready.stream
        if producer is None or producer == consumer:
            return
        event = ready.event
        if event is not None:
            _cuda.wait_event(event, consumer)
        else:
            _cuda.wait(producer, consumer, self._spec.device.index)
        self._note_use(consumer)

    def _note_use(self, stream: int) -> None:
        """Tell the memory's allocator (torch's caching allocator) that ``stream`` uses the memory, so
        it is not reused while work queued there may still touch it; once per stream and memory."""
        ready = self._ready
        if stream not in ready.users and type(self._owner).__module__.startswith("torch"):
            from . import _torch  # the owner is a torch tensor: torch is imported already

            _torch.record_use(self._owner, stream, self._device_index)
            ready.users.add(stream)

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
        self._ready.written_on(handle, _cuda.record(handle, self._spec.device.index))

    @contextmanager
    def writing(self, stream: StreamLike) -> Generator[Self]:
        """Write the image on ``stream``, safely.

        On entry ``stream`` waits (on the GPU) for the write that produced the data and for every
        read recorded by ``reading()`` since, so no reader sees half-overwritten data; on exit,
        even through an exception, the write is recorded (``record_write(stream)``).
        """
        writer = self._handle(stream)
        self._order(writer)
        if self._spec.device.is_cuda:
            self._note_use(writer)
        for read in self._ready.reads.values():
            _cuda.wait_event(read, writer)
        try:
            yield self
        finally:
            self.record_write(writer)

    @contextmanager
    def reading(self, stream: StreamLike) -> Generator[Self]:
        """Read the image on ``stream``: on entry ``stream`` waits for the data (like every view);
        on exit an event records the reads queued inside, and the next ``writing()`` waits for it,
        so a buffer is never overwritten while it is still being read."""
        reader = self._handle(stream)
        self._order(reader)
        if self._spec.device.is_cuda:
            self._note_use(reader)
        try:
            yield self
        finally:
            if self._spec.device.is_cuda:
                self._ready.reads[reader] = _cuda.record(reader, self._spec.device.index)

    @classmethod
    @contextmanager
    def reading_all(cls, images: Sequence[StreamOrdering], stream: StreamLike) -> Generator[None]:
        """``reading(stream)`` for many images of one device at once: on entry ``stream`` waits for
        each image's data; on exit one event records the reads for all of them (a batch of 64 crops
        records one event, not 64)."""
        reader = cls._handle(stream)
        devices = {image._spec.device for image in images}
        if len(devices) > 1:
            raise DeviceError(
                f"reading_all(): expected images of one device, got {sorted(map(str, devices))}."
            )
        for image in images:
            image._order(reader)
            if image._spec.device.is_cuda:
                image._note_use(reader)
        try:
            yield
        finally:
            if images and images[0]._spec.device.is_cuda:
                event = _cuda.record(reader, images[0]._device_index)
                for state in {id(image._ready): image._ready for image in images}.values():
                    state.reads[reader] = event

    def synchronize(self) -> None:
        """Block the host until the image's data is ready; afterwards nothing is pending (``stream``
        is None)."""
        ready = self._ready
        if ready.stream is not None and self._spec.device.is_cuda:
            if ready.event is not None:
                ready.event.synchronize()
            else:
                _cuda.synchronize(ready.stream, self._spec.device.index)
        # Only the write is waited for: recorded reads stay, for the next writer to wait on.
        ready.stream = ready.event = None
