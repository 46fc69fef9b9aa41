"""Stream-likes: everything a ``stream=`` parameter accepts, reduced to a raw ``cudaStream_t`` handle.

This module also owns the stream encodings, and is the one place that converts them: gpuimage
stores the legacy default stream as ``LEGACY_DEFAULT`` (0, ``cudaStreamLegacy``'s handle), while
``__cuda_array_interface__`` and DLPack name it ``PROTOCOL_LEGACY_DEFAULT`` (1, since their 0 is
forbidden or means something else); ``PER_THREAD_DEFAULT`` (2) is the same in both. Spokes and
exports convert with ``to_protocol`` and ``from_protocol``.

It only reads handles and keeps the bookkeeping; ``_runtime`` orders streams with events. It never
imports a foreign library, and never touches OpenCV streams on builds without CUDA (they abort the
interpreter there).
"""

from __future__ import annotations

from typing import Protocol, TypeAlias, cast, runtime_checkable

from ._errors import InteropError
from ._spokes import spoke_of

__all__ = [
    "LEGACY_DEFAULT",
    "PER_THREAD_DEFAULT",
    "PROTOCOL_LEGACY_DEFAULT",
    "CudaStreamProtocol",
    "Event",
    "ReadyState",
    "StreamLike",
    "from_protocol",
    "is_default_stream",
    "stream_handle",
    "stream_keep",
    "to_protocol",
]


@runtime_checkable
class CudaStreamProtocol(Protocol):
    """The cuda.core stream protocol: ``__cuda_stream__()`` returns ``(version, handle)``."""

    def __cuda_stream__(self) -> tuple[int, int]: ...


StreamLike: TypeAlias = object
"""A ``torch.cuda.Stream``, ``cupy.cuda.Stream``, ``cv2.cuda.Stream`` (CUDA builds only), an object
with ``__cuda_stream__``, a raw ``cudaStream_t`` handle (int), or None."""


LEGACY_DEFAULT = 0
"""The legacy default stream, as gpuimage stores it (and as the CUDA runtime takes it: handle 0)."""
PROTOCOL_LEGACY_DEFAULT = 1
"""CAI's and DLPack's code for the legacy default stream (``cudaStreamLegacy``): their 0 is forbidden."""
PER_THREAD_DEFAULT = 2
"""``cudaStreamPerThread``, the same code everywhere."""


def from_protocol(code: int) -> int:
    """The stored handle for a CAI or DLPack stream code: 1 (the legacy default) becomes 0."""
    return LEGACY_DEFAULT if code == PROTOCOL_LEGACY_DEFAULT else code


def to_protocol(handle: int) -> int:
    """The CAI or DLPack stream code for a stored handle: 0 (the legacy default) becomes 1."""
    return PROTOCOL_LEGACY_DEFAULT if handle == LEGACY_DEFAULT else handle


def is_default_stream(handle: int) -> bool:
    """True for the default streams (legacy 0 or 1, per-thread 2): they always exist."""
    return LEGACY_DEFAULT <= handle <= PER_THREAD_DEFAULT


def stream_handle(stream: object, *, where: str) -> int | None:
    """The raw ``cudaStream_t`` of a stream-like (the legacy default as 0), or None for None.

    An int is taken as CAI and DLPack take it: 1 is the legacy default stream."""
    handle = _raw_handle(stream, where=where)
    return None if handle is None else from_protocol(handle)


def stream_keep(stream: object) -> object:
    """What keeps a stream-like's stream alive while gpuimage may still record on it: the stream
    object itself, or None for a raw int handle (whoever passed it keeps it alive)."""
    return None if stream is None or type(stream) is int else stream


class Event(Protocol):
    """A recorded CUDA event (``Runtime.record``): streams can be made to wait for it."""

    def wait_on(self, consumer: int) -> None:
        """Make stream ``consumer`` wait, on the GPU, until the event has completed."""
        ...

    def synchronize(self) -> None:
        """Block the host until the event has completed."""
        ...

    def query(self) -> bool:
        """True once the event has completed (never blocks)."""
        ...


class ReadyState:
    """Where an image's data is ready, shared by an image and the crops taken from it.

    ``stream`` is the raw handle of the stream whose work produces the data (None: nothing
    pending). ``event``, when set, was recorded on ``stream`` right after the recorded write, so
    consumers wait for exactly that write; without it (a constructor's stream) a consumer waits for
    all work queued on ``stream`` at the time it asks. ``reads`` holds events recorded after reads
    (``GpuImage.reading``) since the last write, which the next writer waits for; None for a read on
    the legacy default stream, which always exists: the next writer on another stream waits for all
    work queued there by then, so the read itself records nothing.
    """

    __slots__ = ("event", "keep", "reads", "stream")

    def __init__(self, stream: int | None, event: Event | None = None, keep: object = None) -> None:
        self.stream = stream
        self.event = event
        # the producer's stream object: without an event, a consumer records one on the producer
        # stream when it asks, so that stream must still exist then
        self.keep = keep
        # the last read recorded on each stream: it completes after every earlier read there, so an
        # image read again and again holds one event per stream, not one per read
        self.reads: dict[int, Event | None] = {}

    def written_on(self, stream: int | None, event: Event | None = None) -> None:
        """Record that work queued on ``stream`` (up to ``event``) now produces the data."""
        self.stream = stream
        self.event = event
        self.keep = None  # consumers wait for the event, never on the stream itself
        self.reads = {}


def _raw_handle(stream: object, *, where: str) -> int | None:
    if stream is None:
        return None
    if type(stream) is int:
        return _checked(stream, "stream", where=where)
    protocol = getattr(stream, "__cuda_stream__", None)
    if protocol is not None:
        version_and_handle: object = protocol()
        pair = (
            cast("tuple[object, ...]", version_and_handle) if isinstance(version_and_handle, tuple) else None
        )
        if pair is None or len(pair) != 2 or type(pair[1]) is not int or not 0 <= pair[1] < _HANDLE_LIMIT:
            raise InteropError(
                f"{where}: {type(stream).__name__}.__cuda_stream__() returned {version_and_handle!r}; "
                "expected a (version, handle) tuple with 0 <= handle < 2**64."
            )
        return pair[1]
    for attribute in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        handle = getattr(stream, attribute, None)
        if type(handle) is int:
            return _checked(handle, f"{type(stream).__name__}.{attribute}", where=where)
    reader = spoke_of(stream)  # a library's own stream type (cv2.cuda.Stream)
    if reader is not None:
        return _checked(reader.stream_handle(stream, where=where), "stream handle", where=where)
    raise InteropError(
        f"{where}: expected a stream (torch.cuda.Stream, cupy.cuda.Stream, cv2.cuda.Stream, an object "
        f"with __cuda_stream__, an int handle or None), got {type(stream).__name__}."
    )


_HANDLE_LIMIT = 2**64  # a cudaStream_t is a pointer


def _checked(handle: int, name: str, *, where: str) -> int:
    if not 0 <= handle < _HANDLE_LIMIT:
        raise InteropError(
            f"{where}: expected a stream handle with 0 <= handle < 2**64 (a cudaStream_t), got "
            f"{name}={handle}."
        )
    return handle
