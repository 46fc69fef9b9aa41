"""Transfers: packed copies of an image on another device (host to GPU, GPU to host, GPU to GPU).

Copies on one device are conversions (``_conversions``). Transfers are the runtime's ``copy`` (torch's
where torch reaches a GPU, else CuPy's; see ``_runtime``), ordered like every other use of an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._device import Device
from ._runtime import missing_runtime, runtime

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = ["transfer"]


def transfer(image: GpuImage[Any, Any], device: Device) -> GpuImage[Any, Any]:
    """A packed copy of ``image`` (same layout and dtype) on ``device``, another device than its own.

    The copy is queued on the runtime's current stream of the GPU side, as a read of ``image`` and a
    write of the copy (``reading``/``writing``). A copy into host memory has completed when this
    returns.
    """
    spec = image.spec
    # the source's stream means nothing on another device (or the host): the copy starts unordered
    target = type(image).empty(
        spec.height, spec.width, spec.channels, spec.dtype, layout=spec.layout, device=device
    )
    chosen = runtime()
    if not chosen.has_gpu:
        raise missing_runtime("copying a GPU image")
    gpu = (device if device.is_cuda else image.device).index
    stream = chosen.current_stream(gpu)
    with image.reading(stream), target.writing(stream):
        chosen.copy(image, target, stream, gpu)
    return target
