"""Pinned host buffers that carry batch tables to the GPU without blocking the host (the batch kernel's
per-item table: pointers, sizes and strides of every region)."""

from __future__ import annotations

import ctypes
import threading

import cupy
import numpy as np
import numpy.typing as npt

__all__ = ["staging_for"]


class _Staging:
    """Pinned host buffers that carry batch tables to the GPU without blocking the host.

    A pageable upload would wait for all work queued before it; these copies are asynchronous. A
    buffer is reused round-robin once the copy that read it has completed (its event), so the host
    only waits when ``SLOTS`` batches are still queued.
    """

    SLOTS = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffers: list[tuple[int, int, int] | None] = [None] * self.SLOTS  # (pointer, bytes, event)
        self._next = 0

    def to_device(self, table: npt.NDArray[np.int64], stream: int) -> cupy.ndarray:
        """``table`` on the current device, copied on ``stream`` (call inside that device and stream)."""
        runtime = cupy.cuda.runtime
        with self._lock:
            index, self._next = self._next, (self._next + 1) % self.SLOTS
            buffer = self._buffers[index]
            if buffer is not None:
                runtime.eventSynchronize(buffer[2])
            if buffer is None or buffer[1] < table.nbytes:
                if buffer is not None:
                    runtime.freeHost(buffer[0])
                    runtime.eventDestroy(buffer[2])
                size = max(4096, 1 << (table.nbytes - 1).bit_length())
                buffer = (
                    runtime.hostAlloc(size, 0),
                    size,
                    runtime.eventCreateWithFlags(runtime.eventDisableTiming),
                )
                self._buffers[index] = buffer
            pointer = ctypes.cast(buffer[0], ctypes.POINTER(ctypes.c_int64))
            np.ctypeslib.as_array(pointer, shape=(table.size,))[:] = table.ravel()
            device = cupy.empty(table.size, dtype=np.int64)
            runtime.memcpyAsync(device.data.ptr, buffer[0], table.nbytes, runtime.memcpyHostToDevice, stream)
            runtime.eventRecord(buffer[2], stream)
        return device


_staging: dict[int, _Staging] = {}  # per device: an event records only on streams of its own device
_staging_lock = threading.Lock()


def staging_for(device: int) -> _Staging:
    """The staging buffers of ``device`` (made on first use)."""
    with _staging_lock:
        return _staging.setdefault(device, _Staging())
