"""The README's main job: images from each backend, every view sharing one pointer.

Each optional library is checked before it is used. A missing or broken one (torch whose import
raises OSError, say) skips the rows that need it, each with the reason, and every other row runs:
``gpuimage demo`` fails only when no view at all could be shown.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from ._image import GpuImage
from ._info import describe_exception

__all__ = ["main"]

Library = str  # an import name: "torch", "cupy" or "cv2"
View = tuple[int, tuple[int, ...], tuple[int, ...]]  # a view's pointer, shape, and strides in bytes

_OPTIONAL: tuple[Library, ...] = ("torch", "cupy", "cv2")


def _unavailable(name: Library) -> str | None:
    """Why the optional library ``name`` cannot be used here, or None when it imports."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken entry in sys.modules
        found = False
    if not found:
        return f"{name} is not installed"
    try:
        importlib.import_module(name)
    except Exception as exc:  # a broken install raises anything (OSError for a missing .so, ...)
        return f"{name} fails to import ({describe_exception(exc)})"
    return None


class _Table:
    """Prints one row per view. A row whose library is unavailable, or whose view raises, prints why
    instead, and the demo goes on; ``shown`` counts the rows that worked."""

    def __init__(self, base: int, unavailable: Mapping[Library, str]) -> None:
        self.base = base
        self.unavailable = unavailable
        self.shown = 0

    def skip_reason(self, needs: Collection[Library]) -> str | None:
        reasons = [self.unavailable[name] for name in needs if name in self.unavailable]
        return "; ".join(reasons) if reasons else None

    def row(self, name: str, view: Callable[[], View], needs: Collection[Library] = ()) -> None:
        reason = self.skip_reason(needs)
        if reason is None:
            try:
                pointer, shape, strides = view()
            except Exception as exc:  # one view failing is a line of the demo, not its end
                reason = describe_exception(exc)
            else:
                same = "same memory" if pointer == self.base else f"offset {pointer - self.base:+d} bytes"
                where = f"ptr={pointer:#x}  shape={shape!s:<14} strides(bytes)={strides!s:<16}"
                print(f"  {name:<37} {where} {same}")
                self.shown += 1
                return
        print(f"  {name:<37} skipped: {reason}")

    def line(self, text: Callable[[], str], needs: Collection[Library] = ()) -> None:
        """A line of prose that needs libraries too (a write seen through another view, a copy)."""
        reason = self.skip_reason(needs)
        if reason is None:
            try:
                print(f"  {text()}")
                return
            except Exception as exc:
                reason = describe_exception(exc)
        print(f"  skipped a line: {reason}")


def _gpu_via(unavailable: Mapping[Library, str]) -> Library | None:
    """The library that reaches a GPU here ("torch", else "cupy"), or None."""
    if "torch" not in unavailable:
        import torch

        try:
            if torch.cuda.is_available():
                return "torch"
        except Exception:  # a driver that fails in an unexpected way: try CuPy, else the host
            pass
    if "cupy" not in unavailable:
        import cupy

        try:
            if cupy.is_available():
                return "cupy"
        except Exception:
            pass
    return None


def _device_image(via: Library) -> GpuImage[Any]:
    """A 480x640x3 uint8 frame in GPU memory, made by the library that reaches the GPU."""
    if via == "torch":
        import torch

        frame = torch.arange(480 * 640 * 3, device="cuda").reshape(480, 640, 3).to(torch.uint8)
        print(f"GPU path: {torch.cuda.get_device_name()}")
        return GpuImage.from_torch(frame, layout="HWC")
    pattern = (np.arange(480 * 640 * 3) % 256).astype(np.uint8).reshape(480, 640, 3)
    print("GPU path: reached through CuPy (torch is not usable here)")
    return GpuImage.from_numpy(pattern, layout="HWC").cuda()


def _device_demo(via: Library, unavailable: Mapping[Library, str]) -> int:
    """The views of a device image; returns how many could be shown."""
    image = _device_image(via)
    print(repr(image))
    table = _Table(image.ptr, unavailable)

    def torch_view() -> View:
        tensor = image.as_torch()
        return tensor.data_ptr(), tuple(tensor.shape), image.strides

    def cupy_view() -> View:
        array = image.as_cupy()
        return array.data.ptr, array.shape, array.strides

    def gpumat_view(source: GpuImage[Any]) -> View:
        mat = source.as_gpumat()
        width, height = mat.size()
        return mat.cudaPtr(), (height, width, mat.channels()), (mat.step,)

    def torch_dlpack() -> View:
        import torch.utils.dlpack

        tensor = torch.utils.dlpack.from_dlpack(image)
        return tensor.data_ptr(), tuple(tensor.shape), image.strides

    def cupy_cai() -> View:
        import cupy

        array = cupy.asarray(image)
        return array.data.ptr, array.shape, array.strides

    def wrapped(make: Callable[[], GpuImage[Any]]) -> View:
        source = make()
        return source.ptr, source.shape, source.strides

    roi = image.crop(100, 50, 224, 224)
    table.row("as_torch()", torch_view, needs=["torch"])
    table.row("as_cupy()", cupy_view, needs=["cupy"])
    table.row("as_gpumat()", lambda: gpumat_view(image), needs=["cv2"])
    table.row("torch.utils.dlpack.from_dlpack(image)", torch_dlpack, needs=["torch"])
    table.row("cupy.asarray(image) (CAI)", cupy_cai, needs=["cupy"])
    table.row("crop(100, 50, 224, 224).as_gpumat()", lambda: gpumat_view(roi), needs=["cv2"])
    table.row(
        "GpuImage.from_cupy(array)",
        lambda: wrapped(lambda: GpuImage.from_cupy(image.as_cupy(), layout="HWC")),
        needs=["cupy"],
    )
    table.row(
        "GpuImage.from_gpumat(mat)",
        lambda: wrapped(lambda: GpuImage.from_gpumat(image.as_gpumat())),
        needs=["cv2"],
    )
    table.row(
        "GpuImage.from_dlpack(tensor)",
        lambda: wrapped(lambda: GpuImage.from_dlpack(image.as_torch(), layout="HWC")),
        needs=["torch"],
    )

    def write_through_cupy() -> str:
        image.as_cupy()[0, 0, 0] = 42
        return f"a write through CuPy is seen by torch: tensor[0, 0, 0] = {int(image.as_torch()[0, 0, 0])}"

    table.line(write_through_cupy, needs=["cupy", "torch"])
    table.line(lambda: f"to_layout('CHW') copies into planar memory: {image.to_layout('CHW')!r}")
    return table.shown


def _host_demo(unavailable: Mapping[Library, str]) -> int:
    """The views of a host image; returns how many could be shown."""
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image: GpuImage[Any] = GpuImage.from_numpy(frame, layout="HWC")
    print(f"Host path (no GPU here):\n{image!r}")
    table = _Table(image.ptr, unavailable)

    def numpy_view() -> View:
        array = image.as_numpy()
        return array.ctypes.data, array.shape, array.strides

    def torch_view() -> View:
        tensor = image.as_torch()
        return tensor.data_ptr(), tuple(tensor.shape), image.strides

    def torch_dlpack() -> View:
        import torch.utils.dlpack

        tensor = torch.utils.dlpack.from_dlpack(image)
        return tensor.data_ptr(), tuple(tensor.shape), image.strides

    def numpy_dlpack() -> View:
        array = np.from_dlpack(image)
        return array.ctypes.data, array.shape, array.strides

    def roi_view() -> View:
        roi = image.crop(1, 1, 3, 2)
        return roi.as_numpy().ctypes.data, roi.shape, roi.strides

    def write_through_numpy() -> str:
        image.as_numpy()[0, 0, 0] = 42
        return f"a write through NumPy is seen by every view: {int(np.from_dlpack(image)[0, 0, 0])}"

    table.row("as_numpy()", numpy_view)
    table.row("as_torch() (CPU tensor)", torch_view, needs=["torch"])
    table.row("torch.utils.dlpack.from_dlpack(image)", torch_dlpack, needs=["torch"])
    table.row("numpy.from_dlpack(image)", numpy_dlpack)
    table.row("crop(1, 1, 3, 2).as_numpy()", roi_view)
    table.line(write_through_numpy)
    print(
        "  as_cupy(), as_gpumat(), __cuda_array_interface__ and device DLPack need a GPU with a CUDA build\n"
        "  of torch or CuPy; run this demo on such a machine to see them share one device pointer."
    )
    return table.shown


def _attempt(demo: Callable[[], int], what: str) -> int:
    """Run one demo; a failure to make its image is reported, and counts as no view shown."""
    try:
        return demo()
    except Exception as exc:
        print(f"gpuimage demo: the {what} could not run: {describe_exception(exc)}", file=sys.stderr)
        return 0


def main() -> int:
    """Run the device demo where a GPU is reachable, the host demo elsewhere (and where the device
    demo showed nothing). Returns the exit status: 0 when at least one view was shown, else 1."""
    unavailable = {name: reason for name in _OPTIONAL if (reason := _unavailable(name)) is not None}
    via = _gpu_via(unavailable)
    shown = 0 if via is None else _attempt(lambda: _device_demo(via, unavailable), "GPU path")
    if shown == 0:
        shown = _attempt(lambda: _host_demo(unavailable), "host path")
    if shown == 0:
        print("gpuimage demo: no view of the image could be shown; see the reasons above.", file=sys.stderr)
        return 1
    return 0
