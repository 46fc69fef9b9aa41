"""When memory may go back to its allocator: after every stream gpuimage ordered onto it is done.

The contract (``docs/guarantees.md``, "Streams and lifetimes"):

- An image family (an image, its crops, its views, its DLPack capsules and GpuMats) holds one
  ``Lifetime``, which holds the memory's owner (the tensor, array, mat or capsule it came from).
- Each time gpuimage orders a stream onto the memory (a view or export for a consumer stream, a
  ``reading``/``writing`` block, a conversion) other than the family's *home* stream (where the
  memory was made or imported, which its allocator or source library already accounts for), that
  stream is noted, together with the stream object when gpuimage has one, which is then kept alive.
- When the family's last reference goes, an event is recorded on each noted stream, and the owner
  is held on a deferred-release list until every event has completed. The list is polled when the
  next image is made, and drained at exit. No allocator is ever handed a stream handle: torch's
  ``record_stream`` is not used, so no allocator records on a stream that may no longer exist.

A raw integer handle cannot be kept alive: whoever passes one keeps that stream alive until the
family is gone (see the guarantees page). The legacy (0, 1) and per-thread (2) default streams always
exist.
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "Lifetime",
    "ReleaseEvent",
    "StreamCapturing",
    "add_collector",
    "collect",
    "pending_releases",
    "set_recorder",
]


class ReleaseEvent(Protocol):
    """An event recorded at release: its completion frees the owner."""

    def query(self) -> bool:
        """True once the event has completed (never blocks)."""
        ...

    def synchronize(self) -> None:
        """Block the host until the event has completed."""
        ...


# Records an event on (stream, device); installed by ``_runtime`` when a runtime is chosen, so
# this module imports no CUDA binding. None: no runtime, so no GPU work can be pending.
_recorder: list[Callable[[int, int], ReleaseEvent | None] | None] = [None]
_pending: deque[tuple[tuple[ReleaseEvent, ...], object]] = deque()
_captured: list[tuple[tuple[int, ...], int, object]] = []
"""Releases whose streams were being captured into a CUDA graph (no query is allowed there): retried
by ``collect`` once the capture has ended."""


class StreamCapturing(Exception):  # noqa: N818  # a signal between the recorder and _defer, never raised to users
    """The recorder's answer for a stream that is being captured."""


_poll_lock = threading.Lock()


def set_recorder(recorder: Callable[[int, int], ReleaseEvent | None] | None) -> None:
    """Install the runtime's event recorder (``_runtime`` does, whenever a runtime is chosen). It
    returns None for a stream whose work has all finished: nothing to wait for there."""
    _recorder[0] = recorder


class Lifetime:
    """The owner of an image family's memory, and the streams gpuimage ordered onto it.

    ``tracked`` is False for host memory and borrowed pointers (no owner: the caller frees the
    memory), where nothing is noted and the owner goes as soon as the family does.
    """

    __slots__ = ("device", "home", "located", "owner", "tracked", "uses")

    def __init__(
        self, owner: object, device: int, home: int | None, *, cuda: bool, located: bool = True
    ) -> None:
        self.owner = owner
        self.device = device
        self.home = home
        # the memory's device was reported by the library that made or exported it (not a caller's
        # say-so, as with from_pointer): views may trust it without asking the driver
        self.located = located
        self.tracked = cuda and owner is not None
        # handle -> the stream object kept alive for it (None: a raw handle, the caller's to keep)
        self.uses: dict[int, object] | None = None
        if _pending or _captured:  # a new image polls: the oldest release first, one busy entry at most
            collect(limit=1)

    def note(self, stream: int, keep: object) -> None:
        """Remember that work may be queued on ``stream`` that touches the memory."""
        if stream == self.home or not self.tracked:
            return
        uses = self.uses
        if uses is None:
            self.uses = {stream: keep}
            # from now on the release must be ordered: the class with the finalizer (same slots)
            self.__class__ = _NotedLifetime  # pyright: ignore[reportAttributeAccessIssue]
        elif uses.get(stream) is None:
            uses[stream] = keep


class _NotedLifetime(Lifetime):
    """A ``Lifetime`` that has noted a stream, whose release ``__del__`` orders. Only these carry a
    finalizer: most images note none (their home stream does all the work), and a finalizer is a
    Python call at every release, once per frame in a loop."""

    __slots__ = ()

    def __del__(self) -> None:
        uses = self.uses
        if not uses or sys.is_finalizing():
            return
        owner, self.owner = self.owner, None
        _defer(tuple(uses), self.device, owner)


def _defer(streams: tuple[int, ...], device: int, owner: object) -> None:
    """Hold ``owner`` until events recorded now on ``streams`` have completed. Never raises: it runs
    inside ``__del__``, where an exception could only be printed."""
    recorder = _recorder[0]
    if recorder is None:
        return  # no runtime was ever picked, so gpuimage queued nothing: release now
    try:
        events = tuple(event for stream in streams if (event := recorder(stream, device)) is not None)
    except StreamCapturing:  # released after the capture ends, when its events can be recorded
        _captured.append((streams, device, owner))
        return
    except Exception:  # a CUDA error (a destroyed raw handle, a lost context): hold the owner forever
        _unreleasable.append(owner)
        return
    if events:  # else every stream that used the memory is idle: release it now
        _pending.append((events, owner))


# Owners whose release could not be ordered: freeing them could hand in-use memory back to an
# allocator, so they are kept until exit (a leak that is safe, and visible in ``pending_releases``).
_unreleasable: list[object] = []


def collect(*, limit: int = 8) -> int:
    """Release the owners whose events have completed; return how many still wait. Never blocks.

    Releases complete roughly in order, so the scan stops after ``limit`` entries that are still
    busy: a poll costs a few event queries however many frames are in flight (a new image's poll,
    made once per frame or more, stops at the first: one query while the GPU is behind).
    """
    if not _poll_lock.acquire(blocking=False):
        return len(_pending)  # another thread (or a finalizer inside a poll) is polling
    try:
        if _captured:
            waiting = list(_captured)
            _captured.clear()
            for streams, device, owner in waiting:
                _defer(streams, device, owner)  # goes back to _captured while still capturing
            del waiting
        busy: list[tuple[tuple[ReleaseEvent, ...], object]] = []
        while _pending and len(busy) < limit:
            entry = _pending.popleft()
            try:
                done = all(event.query() for event in entry[0])
            except Exception:  # an event that cannot be queried: keep the owner
                _unreleasable.append(entry[1])
                continue
            if not done:
                busy.append(entry)
            del entry  # the owner goes here, when done
        _pending.extendleft(reversed(busy))
        return len(_pending) + len(_unreleasable) + len(_captured)
    finally:
        _poll_lock.release()


_collectors: list[Callable[[], object]] = []
"""Polls of other deferred releases, run with this one's (``_ipc_lease`` adds the memory that other
processes let go of); each is cheap, never blocks and never raises."""


def add_collector(collector: Callable[[], object]) -> None:
    """Run ``collector`` whenever deferred releases are polled (after garbage collections, and in
    ``pending_releases``)."""
    if collector not in _collectors:
        _collectors.append(collector)


def _poll_collectors() -> None:
    for collector in _collectors:
        try:
            collector()
        except Exception:  # a poll must never break a garbage collection
            continue


def pending_releases() -> int:
    """Release the memory whose last uses have finished; return how many owners still wait.

    gpuimage holds an image's memory back from its allocator until the work queued on other
    streams that used it has finished (see the guarantees page, "Streams and lifetimes"). Such
    memory is released on the next poll: when an image is made, after each garbage collection, or
    here. Call it after a synchronize to see the allocator's figures settle; it never blocks.
    """
    _poll_collectors()
    return collect(limit=len(_pending) + 1)


def _poll_after_collection(phase: str, info: dict[str, int]) -> None:
    if phase != "stop":
        return
    if _pending or _captured:
        collect()
    if _collectors and not sys.is_finalizing():
        _poll_collectors()


gc.callbacks.append(_poll_after_collection)


@atexit.register
def _drain() -> None:
    """At exit, wait for the events, so no memory is freed under running work during teardown."""
    while _pending:
        events, _owner = _pending.popleft()
        for event in events:
            try:
                event.synchronize()
            except Exception:  # the runtime is already gone: nothing can run any more
                break
