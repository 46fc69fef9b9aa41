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
        spec.height,
        spec.width,
        spec.channels,
        spec.dtype,
        layout=layout,
        device=device,
        # the source's stream means nothing on another device (or the host)
        stream=image.stream if device == image.device else None,
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

    The copy is queued on the library's current stream as a read of ``source`` and a write of
    ``target`` (``reading``/``writing``: ordered after both images' pending work, and recorded for
    later readers and writers). Read-only sources work: the views here are internal. A copy into
    host memory has completed when this returns.
    """
    if source.device == target.device:
        from ._conversions import convert_into
        from ._convert import identity_affine

        convert_into(source, target, identity_affine(source.channels), where="copy")
        return
    axes = permutation(source.layout, target.layout)
    gpu = target.device if target.device.is_cuda else source.device
    if not gpu.is_cuda and (source.dtype != "bfloat16" or not is_installed("torch")):
        import numpy as np

        np.copyto(target.as_numpy(), source.as_numpy().transpose(axes))
        return
    if not gpu.is_cuda or _torch_usable():
        from . import _torch

        stream = _torch.current_stream(gpu.index) if gpu.is_cuda else 0
        with source.reading(stream), target.writing(stream):
            source_view = _torch.view(source.ptr, source.spec, source.owner)
            _torch.view(target.ptr, target.spec, target.owner).copy_(source_view.permute(axes))
        return
    if is_installed("cupy"):
        from . import _cupy, _numpy

        if _cupy.gpu_available():
            stream = _cupy.current_stream(gpu.index)
            with source.reading(stream), target.writing(stream):
                views = [
                    _cupy.view(image.ptr, image.spec, image.owner)
                    if image.device.is_cuda
                    else _numpy.view(image.ptr, image.spec, image.owner, readonly=image.readonly)
                    for image in (source, target)
                ]
                _cupy.copy(views[0].transpose(axes), views[1], gpu)
            return
    raise MissingBackendError(
        "copying a GPU image needs a CUDA build of torch or CuPy that sees a GPU: "
        "pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."
    )
