"""Where ``GpuImage.empty`` gets memory: torch's caching allocator, CuPy's pool, or NumPy (host)."""

from __future__ import annotations

from typing import NamedTuple

from ._backends import is_installed
from ._device import Device
from ._errors import MissingBackendError

__all__ = ["Allocation", "allocate"]


class Allocation(NamedTuple):
    """Fresh memory: its first aligned byte, what frees it when dropped, and the stream it belongs to.

    Pools hand out memory in stream order: a block may still be in use by work queued on
    ``stream`` before it was freed, so the memory is "ready" only on that stream.
    """

    ptr: int
    owner: object
    stream: int | None


def allocate(nbytes: int, device: Device, *, alignment: int, stream: int | None = None) -> Allocation:
    """``nbytes`` bytes on ``device`` whose first byte is aligned to ``alignment``, for use on
    ``stream`` (default: the allocating library's current stream).

    torch's caching allocator serves its current stream; CuPy's pool is given ``stream`` itself.
    That stream is the image's home stream: uses on other streams hold the memory back from the
    allocator until they are done (``_lifetime``).
    """
    if not device.is_cuda:
        from . import _numpy

        return Allocation(*_numpy.allocate(nbytes, alignment), None)
    padding = alignment - 1  # no assumption about the pool's own alignment
    if is_installed("torch"):
        from . import _torch

        if _torch.cuda_available():
            base, tensor = _torch.allocate(nbytes + padding, device)
            return Allocation(base + (-base) % alignment, tensor, _torch.current_stream(device.index))
    if is_installed("cupy"):
        from . import _cupy

        if _cupy.gpu_available():
            base, array = _cupy.allocate(nbytes + padding, device, stream)
            used = _cupy.current_stream(device.index) if stream is None else stream
            return Allocation(base + (-base) % alignment, array, used)
    raise MissingBackendError(
        f"GpuImage.empty(device='{device}'): allocating GPU memory needs a CUDA build of torch or CuPy "
        "that sees a GPU: pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."
    )
