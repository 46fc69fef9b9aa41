"""Stream ordering and host waits on raw ``cudaStream_t`` handles, through whichever spoke reaches a GPU.

CuPy's runtime bindings are preferred (two calls per ordering); torch's stream objects are the
fallback. Where neither reaches a GPU, an ordering that is needed raises ``MissingBackendError``
rather than silently not happening (a CUDA build of OpenCV alone cannot order streams here).
Ordering never blocks the host: an event is recorded on the producer and the consumer waits for it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager

from ._backends import is_installed
from ._errors import CudaError, MissingBackendError
from ._lifetime import set_recorder
from ._streams import Event

__all__ = ["available", "current_device", "record", "synchronize", "wait", "wait_event"]

_Calls = tuple[
    Callable[[int, int, int], None],  # wait(producer, consumer, device)
    Callable[[int, int], None],  # synchronize(stream, device)
    Callable[[int, int], Event],  # record(stream, device)
    Callable[[], int],  # get_device()
    Callable[[int], None],  # set_device(device)
    Callable[[int, int], bool],  # stream_idle(stream, device)
]
_chosen: list[_Calls | None] = []


def _calls() -> _Calls | None:
    """The runtime calls (see ``_Calls``) of the first spoke that reaches a GPU; chosen once.

    A library that is installed but fails to import (a missing libcudart) is passed over."""
    if not _chosen:
        calls: _Calls | None = None
        try:
            calls = _cupy_calls() if is_installed("cupy") else None
        except MissingBackendError:
            calls = None
        if calls is None:
            try:
                calls = _torch_calls() if is_installed("torch") else None
            except MissingBackendError:
                calls = None
        _chosen.append(calls)
        # releases of memory that other streams used record their events through the same runtime
        set_recorder(None if calls is None else _release_event_recorder(calls))
    return _chosen[0]


def _release_event_recorder(calls: _Calls) -> Callable[[int, int], Event | None]:
    """What a release records on a stream that used the memory: nothing when the stream is idle
    already (all its work has finished), else an event."""
    record, idle = calls[2], calls[5]

    def release_event(stream: int, device: int) -> Event | None:
        return None if idle(stream, device) else record(stream, device)

    return release_event


def _cupy_calls() -> _Calls | None:
    from . import _cupy

    if not _cupy.gpu_available():
        return None
    return (
        _cupy.wait,
        _cupy.synchronize,
        _cupy.RecordedEvent,
        _cupy.get_device,
        _cupy.set_device,
        _cupy.stream_idle,
    )


def _torch_calls() -> _Calls | None:
    from . import _torch

    if not _torch.cuda_available():
        return None
    return (
        _torch.wait,
        _torch.synchronize,
        _torch.RecordedEvent,
        _torch.get_device,
        _torch.set_device,
        _torch.stream_idle,
    )


def _required(what: str) -> _Calls:
    calls = _calls()
    if calls is None:
        raise MissingBackendError(
            f"{what} needs a CUDA runtime: install a CUDA build of torch or CuPy that sees the GPU "
            "(pip install 'gpuimage[cupy]' or 'gpuimage[torch]')."
        )
    return calls


def available() -> bool:
    """True when a CUDA runtime (through CuPy or torch) reaches a GPU."""
    return _calls() is not None


def wait(producer: int, consumer: int, device: int) -> None:
    """Make stream ``consumer`` wait, on the GPU, for the work queued so far on ``producer``.

    Both are raw handles (0: the legacy default stream of ``device``, the image's device).
    """
    if producer == consumer:
        return
    try:
        _required("ordering two streams")[0](producer, consumer, device)
    except RuntimeError as exc:  # CuPy's CUDARuntimeError and torch's errors are RuntimeErrors
        raise CudaError(
            f"ordering stream {consumer:#x} after stream {producer:#x} on cuda:{device} failed: {exc}"
        ) from exc


def synchronize(stream: int, device: int) -> None:
    """Block the host until the work queued so far on ``stream`` has finished."""
    try:
        _required("synchronizing a stream")[1](stream, device)
    except RuntimeError as exc:
        raise CudaError(f"synchronizing stream {stream:#x} on cuda:{device} failed: {exc}") from exc


def record(stream: int, device: int) -> Event:
    """An event recorded on ``stream`` now."""
    try:
        return _required("recording an event")[2](stream, device)
    except RuntimeError as exc:
        raise CudaError(f"recording an event on stream {stream:#x} on cuda:{device} failed: {exc}") from exc


def wait_event(event: Event, consumer: int) -> None:
    """Make stream ``consumer`` wait, on the GPU, for ``event``."""
    try:
        event.wait_on(consumer)
    except RuntimeError as exc:
        raise CudaError(f"making stream {consumer:#x} wait for an event failed: {exc}") from exc


@contextmanager
def current_device(device: int) -> Generator[None]:
    """Make ``device`` the current CUDA device inside the block (a no-op without a runtime), as a
    DLPack producer expects when it is handed a stream of that device."""
    calls = _calls()
    previous = calls[3]() if calls is not None else device
    if calls is not None and previous != device:
        calls[4](device)
    try:
        yield
    finally:
        if calls is not None and previous != device:
            calls[4](previous)
