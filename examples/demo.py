"""One image, every view sharing one pointer: the README's main job, shown row by row.

Usage::

    python examples/demo.py      # or: scripts/dev demo

Where a GPU is reachable (through torch, else CuPy), a 480x640 RGB frame is made in GPU memory and
viewed as a torch tensor, a CuPy array and an OpenCV ``GpuMat``, through DLPack and the CUDA Array
Interface, and wrapped back. Elsewhere a small host image is viewed through NumPy and torch instead.
Each row prints the view's pointer, shape and strides (in bytes) and whether the pointer is the
image's own: "same memory" is the proof that no view copied. The line under each row says what it
proves, once the pointer has been checked: a view's is the image's own, and a crop's is the image's
plus ``y * row_pitch + x * pixel_stride`` bytes, worked out from the image's pitch and printed.

Each optional library is checked before it is used. A missing or broken one (torch whose import
raises OSError, say) skips only the rows that need it, each with the reason, and every other row
runs. The exit status is 0 when at least one view was shown, 1 when none could be.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CropOffset:
    """Where a crop at ``(x, y)`` starts inside its parent: ``y`` rows of ``row_pitch`` bytes, then
    ``x`` pixels of ``pixel_stride`` bytes (both read from the parent image, in bytes)."""

    x: int
    y: int
    row_pitch: int
    pixel_stride: int

    @classmethod
    def of(cls, image: GpuImage[Any], x: int, y: int) -> CropOffset:
        return cls(x, y, image.spec.row_pitch, image.spec.pixel_stride)

    @property
    def nbytes(self) -> int:
        return self.y * self.row_pitch + self.x * self.pixel_stride

    def arithmetic(self) -> str:
        return (
            f"y * row_pitch + x * pixel_stride = {self.y} * {self.row_pitch} + {self.x} * "
            f"{self.pixel_stride} = {self.nbytes} bytes"
        )


class Table:
    """Prints one row per view: its pointer, shape and strides, and how the pointer compares with
    the image's own (``base``), then what the row proves. The claim is checked first: the view's
    pointer must be the image's own (or, for a crop, the image's plus the crop's offset) and its
    row pitch the image's, else the row says what it found instead. A row whose library is
    unavailable, or whose view raises, prints why, and the demo goes on; ``shown`` counts the rows
    that worked."""

    def __init__(self, image: GpuImage[Any], unavailable: Mapping[Library, str]) -> None:
        self.base = image.ptr
        self.row_pitch = image.spec.row_pitch
        self.unavailable = unavailable
        self.shown = 0

    def skip_reason(self, needs: Collection[Library]) -> str | None:
        reasons = [self.unavailable[name] for name in needs if name in self.unavailable]
        return "; ".join(reasons) if reasons else None

    def row(
        self,
        name: str,
        view: Callable[[], View],
        needs: Collection[Library] = (),
        *,
        proves: str,
        crop: CropOffset | None = None,
    ) -> None:
        """One view: the row, then ``proves`` under it once the pointer says it holds (for a crop,
        with the arithmetic of its offset)."""
        reason = self.skip_reason(needs)
        if reason is None:
            try:
                pointer, shape, strides = view()
            except Exception as exc:  # one view failing is a line of the demo, not its end
                reason = describe(exc)
            else:
                offset = pointer - self.base
                same = "same memory" if offset == 0 else f"offset {offset:+d} bytes"
                where = f"ptr={pointer:#x}  shape={shape!s:<14} strides(bytes)={strides!s:<16}"
                print(f"  {name:<37} {where} {same}")
                print(f"      {self.explain(offset, strides[0], proves, crop)}")
                self.shown += 1
                return
        print(f"  {name:<37} skipped: {reason}")

    def explain(self, offset: int, row_pitch: int, proves: str, crop: CropOffset | None) -> str:
        """What the row proves, or, where the pointer or the pitch says otherwise, what it found."""
        expected = 0 if crop is None else crop.nbytes
        if offset != expected or row_pitch != self.row_pitch:
            return (
                f"NOT as claimed: expected the image's pointer {expected:+d} bytes and its row pitch "
                f"{self.row_pitch}, got {offset:+d} bytes and {row_pitch}"
            )
        if crop is None:
            return f"proves: same pointer, so no copy: {proves}"
        return f"proves: ptr - image.ptr = {crop.arithmetic()}: {proves}"

    def line(self, text: Callable[[], str], needs: Collection[Library] = (), *, proves: str) -> None:
        """A line of prose that needs libraries too (a write seen through another view, a copy)."""
        reason = self.skip_reason(needs)
        if reason is None:
            try:
                print(f"  {text()}")
                print(f"      proves: {proves}")
                return
            except Exception as exc:
                reason = describe(exc)
        print(f"  skipped a line: {reason}")


def copy_line(image: GpuImage[Any]) -> str:
    """A conversion, for contrast with the views: ``to_layout('CHW')`` and where its result lives."""
    planar = image.to_layout("CHW")
    if planar.ptr == image.ptr:
        raise AssertionError("to_layout('CHW') returned the image's own memory, not a copy")
    return f"to_layout('CHW') copies: ptr={planar.ptr:#x} (new memory), strides(bytes)={planar.strides}"


LEGEND = (
    "Each row: a view's pointer, shape and strides in bytes, compared with the image's own pointer;\n"
    "under it, what that row proves (checked before it is printed)."
)


def byte_strides(tensor: Any) -> tuple[int, ...]:
    """A torch tensor's strides in bytes (torch counts them in elements)."""
    return tuple(stride * tensor.element_size() for stride in tensor.stride())


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
    print(LEGEND)
    table = Table(image, unavailable)

    def torch_view() -> View:
        tensor = image.as_torch()
        return tensor.data_ptr(), tuple(tensor.shape), byte_strides(tensor)

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
        return tensor.data_ptr(), tuple(tensor.shape), byte_strides(tensor)

    def cupy_cai() -> View:
        import cupy

        array = cupy.asarray(image)
        return array.data.ptr, array.shape, array.strides

    def wrapped(make: Callable[[], GpuImage[Any]]) -> Callable[[], View]:
        def view() -> View:
            source = make()
            return source.ptr, source.shape, source.strides

        return view

    x, y = 100, 50
    roi = image.crop(x, y, 224, 224)
    table.row("as_torch()", torch_view, needs=["torch"], proves="torch's tensor is the image's GPU memory")
    table.row("as_cupy()", cupy_view, needs=["cupy"], proves="CuPy's array is the image's GPU memory")
    table.row(
        "as_gpumat()",
        lambda: gpumat_view(image),
        needs=["cv2"],
        proves="the GpuMat header points at the image, its step is the image's row pitch",
    )
    table.row(
        "torch.utils.dlpack.from_dlpack(image)",
        torch_dlpack,
        needs=["torch"],
        proves="torch consumed gpuimage's DLPack capsule",
    )
    table.row(
        "cupy.asarray(image) (CAI)",
        cupy_cai,
        needs=["cupy"],
        proves="CuPy read __cuda_array_interface__ and wrapped the pointer",
    )
    table.row(
        f"crop({x}, {y}, 224, 224).as_gpumat()",
        lambda: gpumat_view(roi),
        needs=["cv2"],
        proves="a crop is a pointer into its parent, with the parent's row pitch (GpuMat's step): no copy",
        crop=CropOffset.of(image, x, y),
    )
    backs: list[tuple[str, Callable[[], GpuImage[Any]], Library]] = [
        ("GpuImage.from_cupy(array)", lambda: GpuImage.from_cupy(image.as_cupy(), layout="HWC"), "cupy"),
        ("GpuImage.from_gpumat(mat)", lambda: GpuImage.from_gpumat(image.as_gpumat()), "cv2"),
        (
            "GpuImage.from_dlpack(tensor)",
            lambda: GpuImage.from_dlpack(image.as_torch(), layout="HWC"),
            "torch",
        ),
    ]
    for name, make, library in backs:
        table.row(
            name,
            wrapped(make),
            needs=[library],
            proves="wrapping a view back gives an image on the same memory",
        )

    def write_through_cupy() -> str:
        image.as_cupy()[0, 0, 0] = 42
        return f"a write through CuPy is seen by torch: tensor[0, 0, 0] = {int(image.as_torch()[0, 0, 0])}"

    table.line(
        write_through_cupy,
        needs=["cupy", "torch"],
        proves="one memory, not copies kept in step: what one library writes, the other reads",
    )
    table.line(
        lambda: copy_line(image),
        proves="views never copy, conversions always do: a new pointer, a packed planar (CHW) image",
    )
    return table.shown


def host_demo(unavailable: Mapping[Library, str]) -> int:
    """The views of a host image; returns how many could be shown."""
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image: GpuImage[Any] = GpuImage.from_numpy(frame, layout="HWC")
    print(f"Host path (no GPU here):\n{image!r}\n{LEGEND}")
    table = Table(image, unavailable)

    def numpy_view() -> View:
        array = image.as_numpy()
        return array.ctypes.data, array.shape, array.strides

    def torch_view() -> View:
        tensor = image.as_torch()
        return tensor.data_ptr(), tuple(tensor.shape), byte_strides(tensor)

    def torch_dlpack() -> View:
        import torch.utils.dlpack

        tensor = torch.utils.dlpack.from_dlpack(image)
        return tensor.data_ptr(), tuple(tensor.shape), byte_strides(tensor)

    def numpy_dlpack() -> View:
        array = np.from_dlpack(image)
        return array.ctypes.data, array.shape, array.strides

    x, y = 1, 1

    def roi_view() -> View:
        array = image.crop(x, y, 3, 2).as_numpy()
        return array.ctypes.data, array.shape, array.strides

    def write_through_numpy() -> str:
        image.as_numpy()[0, 0, 0] = 42
        return f"a write through NumPy is seen by every view: {int(np.from_dlpack(image)[0, 0, 0])}"

    table.row(
        "as_numpy()",
        numpy_view,
        proves="the wrapped NumPy array is the image's memory, its byte strides as they were",
    )
    table.row("as_torch() (CPU tensor)", torch_view, needs=["torch"], proves="torch sees the same host bytes")
    table.row(
        "torch.utils.dlpack.from_dlpack(image)",
        torch_dlpack,
        needs=["torch"],
        proves="torch consumed gpuimage's DLPack capsule",
    )
    table.row("numpy.from_dlpack(image)", numpy_dlpack, proves="NumPy consumed the same capsule")
    table.row(
        f"crop({x}, {y}, 3, 2).as_numpy()",
        roi_view,
        proves="a crop is a pointer into its parent, with the parent's row pitch: no copy",
        crop=CropOffset.of(image, x, y),
    )
    table.line(
        write_through_numpy,
        proves="one memory, not copies kept in step: a write through one view is read through another",
    )
    table.line(
        lambda: copy_line(image),
        proves="views never copy, conversions always do: a new pointer, a packed planar (CHW) image",
    )
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
