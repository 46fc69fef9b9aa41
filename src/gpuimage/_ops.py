"""Copies: packing, layout conversion and transfers between host and devices.

These use plain torch (preferred), CuPy or NumPy operations on the images' own views; a later
kernels module replaces them with single-pass kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._backends import is_installed
from ._device import Device
from ._errors import MissingBackendError
from ._layout import Layout

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = ["copy_into", "copy_to_new", "permutation"]


def permutation(source: Layout, target: Layout) -> tuple[int, int, int]:
    """Axes that turn an array in ``source`` order into ``target`` order (``transpose`` argument)."""
    if source is target:
        return (0, 1, 2)
    return (1, 2, 0) if source is Layout.CHW else (2, 0, 1)


def copy_to_new(image: GpuImage[Any, Any], layout: Layout, device: Device) -> GpuImage[Any, Any]:
    """A packed copy of ``image`` in ``layout`` on ``device``."""
    from ._image import GpuImage

    spec = image.spec
    target = GpuImage.empty(
        spec.height, spec.width, spec.channels, spec.dtype, layout=layout, device=device, stream=image.stream
    )
    copy_into(image, target)
    return target


def _torch_usable() -> bool:
    if not is_installed("torch"):
        return False
    from . import _torch

    return _torch.cuda_available()


def copy_into(source: GpuImage[Any, Any], target: GpuImage[Any, Any]) -> None:
    """Copy every element of ``source`` into ``target`` (same sizes; layouts and devices may differ).

    Returns once the copy is queued on the library's current stream, which both images' data is
    ordered before and which ``target`` then records as its writer; a copy into host memory has
    completed when it returns.
    """
    axes = permutation(source.layout, target.layout)
    on_gpu = source.device.is_cuda or target.device.is_cuda
    if not on_gpu and (source.dtype != "bfloat16" or not is_installed("torch")):
        import numpy as np

        np.copyto(target.as_numpy(), source.as_numpy().transpose(axes))
        return
    if not on_gpu or _torch_usable():
        target.as_torch().copy_(source.as_torch().permute(axes))
        if target.device.is_cuda:
            from . import _torch

            target.record_write(_torch.current_stream(target.device.index))
        return
    if is_installed("cupy"):
        from . import _cupy

        if _cupy.gpu_available():
            source_view = source.as_cupy() if source.device.is_cuda else source.as_numpy()
            target_view = target.as_cupy() if target.device.is_cuda else target.as_numpy()
            gpu = target.device if target.device.is_cuda else source.device
            _cupy.copy(source_view.transpose(axes), target_view, gpu)
            if target.device.is_cuda:
                target.record_write(_cupy.current_stream(target.device.index))
            return
    raise MissingBackendError(
        "copying a GPU image needs a CUDA build of torch or CuPy that sees a GPU: "
        "pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."
    )
