"""The README's main job: images from each backend, every view sharing one pointer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backends import is_installed
from ._image import GpuImage


def _row(name: str, pointer: int, shape: tuple[int, ...], strides: tuple[int, ...], base: int) -> str:
    same = "same memory" if pointer == base else f"offset {pointer - base:+d} bytes"
    return f"  {name:<34} ptr={pointer:#x}  shape={shape!s:<14} strides(bytes)={strides!s:<16} {same}"


def _torch_dlpack_row(image: GpuImage[Any], base: int) -> str:
    """The row for torch's DLPack import of ``image`` (host or device: the same call)."""
    import torch.utils.dlpack

    tensor = torch.utils.dlpack.from_dlpack(image)
    return _row(
        "torch.utils.dlpack.from_dlpack(image)", tensor.data_ptr(), tuple(tensor.shape), image.strides, base
    )


def _gpu_ready() -> bool:
    if not is_installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _device_demo() -> None:
    import cupy
    import torch

    frame = torch.arange(480 * 640 * 3, device="cuda").reshape(480, 640, 3).to(torch.uint8)
    image = GpuImage.from_torch(frame, layout="HWC")
    base = image.ptr
    print(f"GPU path: {torch.cuda.get_device_name()}\n{image!r}")
    tensor, array, mat = image.as_torch(), image.as_cupy(), image.as_gpumat()
    print(_row("as_torch()", tensor.data_ptr(), tuple(tensor.shape), image.strides, base))
    print(_row("as_cupy()", array.data.ptr, array.shape, array.strides, base))
    print(
        _row("as_gpumat()", mat.cudaPtr(), (mat.size()[1], mat.size()[0], mat.channels()), (mat.step,), base)
    )
    print(_torch_dlpack_row(image, base))
    via_cai = cupy.asarray(image)
    print(_row("cupy.asarray(image) (CAI)", via_cai.data.ptr, via_cai.shape, via_cai.strides, base))
    roi = image.crop(100, 50, 224, 224)
    roi_mat = roi.as_gpumat()
    print(_row("crop(100, 50, 224, 224).as_gpumat()", roi_mat.cudaPtr(), roi.shape, roi.strides, base))
    for name, source in (
        ("GpuImage.from_cupy(array)", GpuImage.from_cupy(array, layout="HWC")),
        ("GpuImage.from_gpumat(mat)", GpuImage.from_gpumat(mat)),
        ("GpuImage.from_dlpack(tensor)", GpuImage.from_dlpack(tensor, layout="HWC")),
    ):
        print(_row(name, source.ptr, source.shape, source.strides, base))
    array[0, 0, 0] = 42
    print(f"  a write through CuPy is seen by torch: tensor[0, 0, 0] = {int(tensor[0, 0, 0])}")
    planar = image.to_layout("CHW")
    print(f"  to_layout('CHW') copies into planar memory: {planar!r}")


def _host_demo() -> None:
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image: GpuImage[Any] = GpuImage.from_numpy(frame, layout="HWC")
    base = image.ptr
    print(f"Host path (no GPU here):\n{image!r}")
    array = image.as_numpy()
    print(_row("as_numpy()", array.ctypes.data, array.shape, array.strides, base))
    if is_installed("torch"):
        tensor = image.as_torch()
        print(_row("as_torch() (CPU tensor)", tensor.data_ptr(), tuple(tensor.shape), image.strides, base))
        print(_torch_dlpack_row(image, base))
    via_numpy = np.from_dlpack(image)
    print(_row("numpy.from_dlpack(image)", via_numpy.ctypes.data, via_numpy.shape, via_numpy.strides, base))
    roi = image.crop(1, 1, 3, 2)
    print(_row("crop(1, 1, 3, 2).as_numpy()", roi.as_numpy().ctypes.data, roi.shape, roi.strides, base))
    array[0, 0, 0] = 42
    print(f"  a write through NumPy is seen by every view: {int(np.from_dlpack(image)[0, 0, 0])}")
    print(
        "  as_cupy(), as_gpumat(), __cuda_array_interface__ and device DLPack need a GPU with a CUDA build\n"
        "  of torch or CuPy; run this demo on such a machine to see them share one device pointer."
    )


def main() -> None:
    """Run the device demo where a GPU is reachable, the host demo elsewhere."""
    if _gpu_ready():
        _device_demo()
    else:
        _host_demo()
