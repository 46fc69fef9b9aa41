"""Which device owns a pointer, for sources that do not say (CAI, GpuMat headers)."""

from __future__ import annotations

from ._device import Device
from ._runtime import runtime

__all__ = ["device_of"]


def device_of(ptr: int) -> Device | None:
    """The CUDA device that owns ``ptr``, as the runtime reports it (``Runtime.pointer_device``); None
    when it cannot tell (no GPU, a host pointer, or torch's runtime, which cannot ask)."""
    if not 0 < ptr < 2**64:  # not a pointer: the caller reports it
        return None
    ordinal = runtime().pointer_device(ptr)
    return None if ordinal is None else Device("cuda", ordinal)
