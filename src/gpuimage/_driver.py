"""The CUDA driver calls that no array library offers, through ctypes (``libcuda.so.1``): whether a
stream is being captured into a CUDA graph. Neutral: no foreign Python library. Without a driver
every answer is "not capturing", which is true: nothing can capture without one."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import cast

__all__ = ["is_capturing"]

_CAPTURE_NONE = 0  # CU_STREAM_CAPTURE_STATUS_NONE; 1 is ACTIVE, 2 INVALIDATED (both still capturing)


@functools.cache
def _stream_is_capturing() -> Callable[[ctypes.c_void_p, object], int] | None:
    try:
        function = ctypes.CDLL("libcuda.so.1")["cuStreamIsCapturing"]
    except (OSError, AttributeError):  # no driver, or one without stream capture
        return None
    function.restype = ctypes.c_int
    function.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
    return cast("Callable[[ctypes.c_void_p, object], int]", function)


def is_capturing(stream: int) -> bool:
    """Whether work queued on ``stream`` (a raw handle) is being captured into a graph, where querying
    the stream, or an event recorded on it, would invalidate the capture. Never raises."""
    function = _stream_is_capturing()
    if function is None:
        return False
    status = ctypes.c_int(_CAPTURE_NONE)
    if function(ctypes.c_void_p(stream), ctypes.byref(status)):  # an error: no context, a bad handle
        return False
    return status.value != _CAPTURE_NONE
