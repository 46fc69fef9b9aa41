"""Which device owns a pointer, for sources that do not say (CAI, GpuMat headers)."""

from __future__ import annotations

from ._backends import is_installed
from ._device import Device

__all__ = ["device_of"]


def device_of(ptr: int) -> Device | None:
    """The CUDA device that owns ``ptr``, as the CUDA runtime reports it through CuPy; None when
    no runtime can tell (CuPy absent, no GPU, or a host pointer)."""
    if not 0 < ptr < 2**64 or not is_installed("cupy"):  # not a pointer: the caller reports it
        return None
    from . import _cupy

    ordinal = _cupy.pointer_device(ptr)
    return None if ordinal is None else Device("cuda", ordinal)
