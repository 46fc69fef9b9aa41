"""One image, every view sharing one pointer: the README's main job, shown row by row.

Usage::

    python examples/demo.py      # or: scripts/dev demo

Where a GPU is reachable (through torch, else CuPy), a 480x640 RGB frame is made in GPU memory and
viewed as a torch tensor, a CuPy array and an OpenCV ``GpuMat``, through DLPack and the CUDA Array
Interface, and wrapped back. Elsewhere a small host image is viewed through NumPy and torch instead.
Each row prints the view's pointer, shape and strides (in bytes) and whether the pointer is the
image's own: "same memory" is the proof that no view copied.

Each optional library is checked before it is used. A missing or broken one (torch whose import
raises OSError, say) skips only the rows that need it, each with the reason, and every other row
runs. The exit status is 0 when at least one view was shown, 1 when none could be.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from gpuimage import GpuImage, GpuImageError

Library = str  # an import name: "torch", "cupy" or "cv2"
View = tuple[int, tuple[int, ...], tuple[int, ...]]  # a view's pointer, shape, and strides in bytes

OPTIONAL: tuple[Library, ...] = ("torch", "cupy", "cv2")


def describe(exc: BaseException) -> str:
    """An exception as one line. gpuimage's own messages already name the operation; others get
    their class name (``OSError: libtorch_cuda.so: ...``)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, GpuImageError) else f"{type(exc).__name__}: {text}"


def unavailable_reason(name: Library) -> str | None:
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
        return f"{name} fails to import ({describe(exc)})"
    return None


class Table:
    """Prints one row per view: its pointer, shape and strides, and how the pointer compares with
    the image's own (``base``). A row whose library is unavailable, or whose view raises, prints why
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
                reason = describe(exc)
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
                reason = describe(exc)
        print(f"  skipped a line: {reason}")


def gpu_via(unavailable: Mapping[Library, str]) -> Library | None:
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


def device_image(via: Library) -> GpuImage[Any]:
    """A 480x640x3 uint8 frame in GPU memory, made by the library that reaches the GPU."""
    if via == "torch":
        import torch

        frame = torch.arange(480 * 640 * 3, device="cuda").reshape(480, 640, 3).to(torch.uint8)
        print(f"GPU path: {torch.cuda.get_device_name()}")
        return GpuImage.from_torch(frame, layout="HWC")  # 3-D sources name their layout
    pattern = (np.arange(480 * 640 * 3) % 256).astype(np.uint8).reshape(480, 640, 3)
    print("GPU path: reached through CuPy (torch is not usable here)")
    return GpuImage.from_numpy(pattern, layout="HWC").cuda()


def device_demo(via: Library, unavailable: Mapping[Library, str]) -> int:
    """The views of a device image; returns how many could be shown."""
    image = device_image(via)
    print(repr(image))
    table = Table(image.ptr, unavailable)

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
    # Each library's own view of the image: one pointer, the image's strides, no copy.
    table.row("as_torch()", torch_view, needs=["torch"])
    table.row("as_cupy()", cupy_view, needs=["cupy"])
    table.row("as_gpumat()", lambda: gpumat_view(image), needs=["cv2"])
    # The protocols, consumed by the libraries themselves (gpuimage is the producer here).
    table.row("torch.utils.dlpack.from_dlpack(image)", torch_dlpack, needs=["torch"])
    table.row("cupy.asarray(image) (CAI)", cupy_cai, needs=["cupy"])
    # An ROI is the parent's pointer plus an offset, with the parent's row pitch (GpuMat's step).
    table.row("crop(100, 50, 224, 224).as_gpumat()", lambda: gpumat_view(roi), needs=["cv2"])
    # And back: wrapping a view gives an image on the same memory, not a copy of it.
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

    # Shared memory, shown by its effect rather than by pointers.
    table.line(write_through_cupy, needs=["cupy", "torch"])
    # Views never copy; conversions always do: a new pointer, planar layout, typed GpuImage[CHW].
    table.line(lambda: f"to_layout('CHW') copies into planar memory: {image.to_layout('CHW')!r}")
    return table.shown


def host_demo(unavailable: Mapping[Library, str]) -> int:
    """The views of a host image; returns how many could be shown."""
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image: GpuImage[Any] = GpuImage.from_numpy(frame, layout="HWC")
    print(f"Host path (no GPU here):\n{image!r}")
    table = Table(image.ptr, unavailable)

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

    # The wrapped NumPy array is the image's memory, as it was: same pointer, same byte strides.
    table.row("as_numpy()", numpy_view)
    # torch sees the same host bytes (a CPU tensor), without a copy.
    table.row("as_torch() (CPU tensor)", torch_view, needs=["torch"])
    # DLPack works both ways on the host too, for torch and for NumPy.
    table.row("torch.utils.dlpack.from_dlpack(image)", torch_dlpack, needs=["torch"])
    table.row("numpy.from_dlpack(image)", numpy_dlpack)
    # An ROI is an offset into the parent (1 row of 18 bytes + 1 pixel of 3 = +21), same row pitch.
    table.row("crop(1, 1, 3, 2).as_numpy()", roi_view)
    # Shared memory, shown by its effect rather than by pointers.
    table.line(write_through_numpy)
    print(
        "  as_cupy(), as_gpumat(), __cuda_array_interface__ and device DLPack need a GPU with a CUDA build\n"
        "  of torch or CuPy; run this demo on such a machine to see them share one device pointer."
    )
    return table.shown


def attempt(demo: Callable[[], int], what: str) -> int:
    """Run one demo; a failure to make its image is reported, and counts as no view shown."""
    try:
        return demo()
    except Exception as exc:
        print(f"demo: the {what} could not run: {describe(exc)}", file=sys.stderr)
        return 0


def main() -> int:
    """Run the device demo where a GPU is reachable, the host demo elsewhere (and where the device
    demo showed nothing). Returns the exit status: 0 when at least one view was shown, else 1."""
    unavailable = {name: reason for name in OPTIONAL if (reason := unavailable_reason(name)) is not None}
    via = gpu_via(unavailable)
    shown = 0 if via is None else attempt(lambda: device_demo(via, unavailable), "GPU path")
    if shown == 0:
        shown = attempt(lambda: host_demo(unavailable), "host path")
    if shown == 0:
        print("demo: no view of the image could be shown; see the reasons above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
