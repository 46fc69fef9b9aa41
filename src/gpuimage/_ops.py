"""Transfers: packed copies of an image on another device (host to GPU, GPU to host, GPU to GPU).

Copies on one device are conversions (``_conversions``). Transfers use torch (preferred) or CuPy
copies of the images' own views, ordered like every other use of an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._backends import is_installed
from ._device import Device
from ._errors import MissingBackendError

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = ["transfer"]


def transfer(image: GpuImage[Any, Any], device: Device) -> GpuImage[Any, Any]:
    """A packed copy of ``image`` (same layout and dtype) on ``device``, another device than its own.

    The copy is queued on the current stream of the library that makes it, on the GPU side, as a read
    of ``image`` and a write of the copy (``reading``/``writing``). A copy into host memory has
    completed when this returns.
    """
    spec = image.spec
    # the source's stream means nothing on another device (or the host): the copy starts unordered
    target = type(image).empty(
        spec.height, spec.width, spec.channels, spec.dtype, layout=spec.layout, device=device
    )
    gpu = device if device.is_cuda else image.device
    if is_installed("torch"):
        from . import _torch

        if _torch.cuda_available():
            stream = _torch.current_stream(gpu.index)
            with image.reading(stream), target.writing(stream):
                source_view = _torch.view(image.ptr, spec, image.owner)
                _torch.view(target.ptr, target.spec, target.owner).copy_(source_view)
            return target
    if is_installed("cupy"):
        from . import _cupy, _numpy

        if _cupy.gpu_available():
            stream = _cupy.current_stream(gpu.index)
            with image.reading(stream), target.writing(stream):
                views = [
                    _cupy.view(each.ptr, each.spec, each.owner)
                    if each.device.is_cuda
                    else _numpy.view(each.ptr, each.spec, each.owner, readonly=each.readonly)
                    for each in (image, target)
                ]
                _cupy.copy(views[0], views[1], gpu)
            return target
    raise MissingBackendError(
        "copying a GPU image needs a CUDA build of torch or CuPy that sees a GPU: "
        "pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."
    )
