"""Where ``GpuImage.empty`` gets memory: torch's caching allocator, CuPy's pool, or NumPy (host)."""

from __future__ import annotations

from ._backends import is_installed
from ._device import Device
from ._errors import MissingBackendError

__all__ = ["allocate"]

_ALLOCATOR_ALIGNMENT = 256  # torch and CuPy pools hand out blocks aligned at least this much


def allocate(nbytes: int, device: Device, *, alignment: int) -> tuple[int, object]:
    """``nbytes`` bytes on ``device`` whose first byte is aligned to ``alignment``: (pointer, owner)."""
    if not device.is_cuda:
        from . import _numpy

        return _numpy.allocate(nbytes, alignment)
    padding = alignment if alignment > _ALLOCATOR_ALIGNMENT else 0
    if is_installed("torch"):
        from . import _torch

        if _torch.cuda_available():
            base, tensor = _torch.allocate(nbytes + padding, device)
            return base + (-base) % alignment, tensor
    if is_installed("cupy"):
        from . import _cupy

        if _cupy.gpu_available():
            base, array = _cupy.allocate(nbytes + padding, device)
            return base + (-base) % alignment, array
    raise MissingBackendError(
        f"GpuImage.empty(device='{device}'): allocating GPU memory needs a CUDA build of torch or CuPy "
        "that sees a GPU: pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."
    )
