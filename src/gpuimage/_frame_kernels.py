"""The frame kernel: ``_frame_kernels.cu`` compiled per variant (NVRTC, through CuPy) and launched.

``convert_frames`` is the kernel executor's ``Executor.convert_frames``. ``_frame_params`` checks the
call and packs the parameters, which the kernel takes BY VALUE in one struct (no table to upload); each
launch converts up to ``MAX_ITEMS`` (32) items, so a batch of up to 32 items is ONE launch and more are
``ceil(N / 32)`` launches on the same stream, queued only after every item was checked. What the kernel
computes is ``_sampling``'s definition, with ``_colour``'s constants computed on the host.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc

from ._errors import CudaError
from ._frame_params import BLOCK, FrameVariant, defines
from ._frame_plan import planned, repack, replay_parts
from ._kernels import (
    _INVALID_CONTEXT,  # pyright: ignore[reportPrivateUsage]
    _OPTIONS,  # pyright: ignore[reportPrivateUsage]
    _raw_launch,  # pyright: ignore[reportPrivateUsage]
    _single_device,  # pyright: ignore[reportPrivateUsage]
)

if TYPE_CHECKING:
    from ._executor import Operand
    from ._sampling import FrameSource, SampleRecipe

__all__ = ["FramesReplay", "convert_frames"]

_WHERE = "convert_frames()"
_STREAMS_KEPT = 16
"""Streams whose launch arguments a replay keeps (a loop queues on one or a few)."""


def convert_frames(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, stream: int
) -> None:
    """Queue on ``stream`` (a raw handle on the target's device) the launches that write item ``i`` as
    ``_sampling`` defines it into slot ``i`` of ``target``, ``i * item_pitch`` bytes after slot 0.

    Raises:
        SpecError, DTypeError, BoundsError, StrideError, DeviceError, PitchError: a call that
            ``_frame_plan.plan_launches`` refuses (nothing is queued then).
        CudaError: compiling or launching the kernel failed.
    """
    device = target.spec.device.index
    for launch in planned(sources, target, item_pitch, recipe):
        _launch(launch.variant, device, launch.grid, stream, launch.parameters)


@functools.cache
def _source() -> str:
    return resources.files("gpuimage").joinpath("_frame_kernels.cu").read_text(encoding="utf-8")


_modules: list[cupy.cuda.function.Module] = []  # loaded for the process: launches use raw handles


@functools.cache
def _function(variant: FrameVariant, device: int) -> cupy.cuda.function.Function:
    """The compiled kernel for ``variant``, loaded on ``device`` (compiled once per process)."""
    source = defines(variant) + _source()
    with cupy.cuda.Device(device):
        try:
            compiled = cupy.cuda.compiler.compile_using_nvrtc(source, _OPTIONS)
            image = compiled[0] if isinstance(compiled, tuple) else compiled
            module = cupy.cuda.function.Module()
            module.load(image.encode() if isinstance(image, str) else image)  # cubin, or PTX text
            function = module.get_function("gpuimage_frames")
        except (cupy.cuda.compiler.CompileException, RuntimeError) as exc:  # a bug of ours, never the input
            raise CudaError(
                f"convert_frames(): compiling the frame kernel for {variant} on cuda:{device} failed "
                f"({type(exc).__name__}). Report it with this log:\n{exc}\nDefines:\n{defines(variant)}"
            ) from exc
    _modules.append(module)
    return function


def _launch(
    variant: FrameVariant,
    device: int,
    grid: tuple[int, int, int],
    stream: int,
    buffer: ctypes.Array[ctypes.c_char],
) -> None:
    """``cuLaunchKernel`` with the one parameter in ``buffer`` (the driver copies it at the call)."""
    head = _head(variant, device, grid)
    parameters = (ctypes.c_void_p * 1)(ctypes.addressof(buffer))
    _queue(variant, device, grid, (*head, ctypes.c_void_p(stream), parameters, None))


def _head(variant: FrameVariant, device: int, grid: tuple[int, int, int]) -> tuple[object, ...]:
    """``cuLaunchKernel``'s arguments before the stream: the function, grid, block, shared bytes."""
    function = _function(variant, device)
    return (ctypes.c_void_p(function.ptr), *[ctypes.c_uint(value) for value in (*grid, *BLOCK, 0)])


def _queue(variant: FrameVariant, device: int, grid: tuple[int, int, int], args: tuple[object, ...]) -> None:
    driver = _raw_launch()
    if driver is None:
        raise CudaError(f"{_WHERE}: expected the CUDA driver (libcuda.so.1), got none. Install a driver.")
    if _single_device() or cupy.cuda.runtime.getDevice() == device:
        status = _call(driver, args, device)
    else:
        with cupy.cuda.Device(device):
            status = _call(driver, args, device)
    if status:
        raise CudaError(
            f"{_WHERE}: launching the frame kernel ({variant}, grid {grid}) on cuda:{device} failed: "
            f"CUresult {status}."
        )


class FramesReplay:
    """One checked ``convert_frames`` call, repeated with new pointers (``Executor.frames_replay``):
    the parameters are packed and the launch arguments made once; a call writes the pointers and
    launches. The caller vouches that every plane, region and the target are described as in the
    call it was made from, and checks the pointers' alignment (``target_alignment``,
    ``plane_alignment``)."""

    __slots__ = (
        "_calls",
        "_device",
        "_item_pitch",
        "_launches",
        "_lock",
        "_packed",
        "plane_alignment",
        "target_alignment",
    )

    def __init__(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe
    ) -> None:
        self._device = device = target.spec.device.index
        self._item_pitch = item_pitch
        parts = replay_parts(sources, target, item_pitch, recipe)
        self._launches = [
            (
                part,
                _head(part.variant, device, part.grid),
                (ctypes.c_void_p * 1)(ctypes.addressof(part.parameters)),
            )
            for part in parts
        ]
        self.target_alignment = parts[0].target_alignment
        self.plane_alignment = parts[0].plane_alignment
        self._lock = threading.Lock()  # the parameters are shared: pack and launch one call at a time
        self._packed: tuple[list[tuple[int, int, int]], int] = ([], -1)  # the pointers in the buffers
        self._calls: dict[int, list[tuple[FrameVariant, tuple[int, int, int], tuple[object, ...]]]] = {}

    def __call__(self, pointers: Sequence[tuple[int, int, int]], target_ptr: int, stream: int) -> None:
        """Queue the call on ``stream`` with item ``i``'s plane pointers ``pointers[i]`` (zero-padded
        to three) and slot 0 at ``target_ptr``."""
        calls = self._calls.get(stream)
        if calls is None:  # the launches' arguments, made once per stream
            stream_arg = ctypes.c_void_p(stream)
            calls = [
                (part.variant, part.grid, (*head, stream_arg, parameters, None))
                for part, head, parameters in self._launches
            ]
            if len(self._calls) >= _STREAMS_KEPT:
                self._calls.clear()
            self._calls[stream] = calls
        with self._lock:  # the driver copies the parameters at each launch
            if target_ptr != self._packed[1] or pointers != self._packed[0]:
                # a loop over one frame and one out packs nothing: the buffers hold its pointers
                for part, _, _ in self._launches:
                    repack(part, pointers, target_ptr, self._item_pitch)
                self._packed = (list(pointers), target_ptr)
            for variant, grid, arguments in calls:
                _queue(variant, self._device, grid, arguments)


def _call(driver: Callable[..., int], args: tuple[object, ...], device: int) -> int:
    status = driver(*args)
    if status == _INVALID_CONTEXT:
        cupy.cuda.runtime.setDevice(device)  # binds the device's primary context to this thread
        status = driver(*args)
    return status
