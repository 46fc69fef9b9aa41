"""The conversion kernels: ``_kernels.cu`` compiled per variant (NVRTC, through CuPy) and launched.

Kernels run on the stream and device they are given; the kernel executor (``_kernel_convert``) calls
them, and ``_conversions`` orders them after the source's data and records them for later readers
and writers. ``launch_plan`` is the cached launch of one conversion; ``launch_batch`` launches a batch.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import cast

import numpy as np

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc

from ._affine import Affine
from ._cupy_runtime import external_stream
from ._dtypes import DTypeName, integer_range
from ._errors import CudaError, SpecError
from ._geometry import Geometry
from ._plan import BatchItem, Mode, Variant, plan_variant
from ._staging import staging_for

__all__ = ["MAX_ITEMS", "MAX_SIDE", "LaunchPlan", "defines", "launch_batch", "launch_plan"]

BLOCK = 128
_STORAGE: dict[DTypeName, str] = {
    "bool": "unsigned char",
    "uint8": "unsigned char",
    "int8": "signed char",
    "uint16": "unsigned short",
    "int16": "short",
    "uint32": "unsigned int",
    "int32": "int",
    "int64": "long long",
    "float16": "unsigned short",
    "bfloat16": "unsigned short",
    "float32": "float",
    "float64": "double",
}


def _integer_literal(value: int) -> str:
    # -2**63 has no literal of its own in C++: its magnitude overflows before the minus applies.
    return "(-9223372036854775807LL - 1)" if value == -(2**63) else f"{value}LL"


def _load_acc(dtype: DTypeName) -> str:
    if dtype == "float16":
        return "((ACC_T)half_to_float(x))"
    if dtype == "bfloat16":
        return "((ACC_T)bfloat_to_float(x))"
    if dtype == "bool":
        return "((ACC_T)((x) != 0))"
    return "((ACC_T)(x))"


def _store_acc(dtype: DTypeName, accumulator: DTypeName) -> str:
    if dtype in ("float32", "float64"):
        return f"(({_STORAGE[dtype]})(v))"
    if dtype == "float16":
        return "double_to_half(v)" if accumulator == "float64" else "float_to_half(v)"
    if dtype == "bfloat16":
        return "float_to_bfloat((float)(v))"  # from float64: through float32, as the host reference does
    if dtype == "bool":
        return "((unsigned char)((v) != 0))"
    storage = _STORAGE[dtype]
    low, high = (_integer_literal(value) for value in integer_range(dtype))
    return f"saturate_float<{storage}>(v, (ACC_T){low}, (ACC_T){high}, ({storage}){low}, ({storage}){high})"


def _store_int(dtype: DTypeName) -> str:
    if dtype == "bool":
        return "((unsigned char)((v) != 0))"
    low, high = (_integer_literal(value) for value in integer_range(dtype))
    return f"saturate_integer<{_STORAGE[dtype]}>(v, {low}, {high})"


def defines(variant: Variant) -> str:
    """The ``#define`` lines that specialise ``_kernels.cu`` for ``variant``."""
    accumulator = "double" if variant.accumulator == "float64" else "float"
    integer = variant.mode is Mode.INTEGER
    lines = {
        "SRC_T": _STORAGE[variant.source_dtype],
        "DST_T": _STORAGE[variant.target_dtype],
        "ACC_T": accumulator,
        "RINT": "rint" if accumulator == "double" else "rintf",
        "LOAD_ACC(x)": _load_acc(variant.source_dtype),
        "STORE_ACC(v)": _store_acc(variant.target_dtype, variant.accumulator),
        "LOAD_INT(x)": "((long long)((x) != 0))" if variant.source_dtype == "bool" else "((long long)(x))",
        "STORE_INT(v)": _store_int(variant.target_dtype) if integer else "0",
        "CHANNELS": str(variant.channels),
        "PIXELS": str(variant.pixels),
        "SRC_KIND": str(int(variant.source_kind)),
        "DST_KIND": str(int(variant.target_kind)),
        "SRC_VEC": str(variant.source_vector),
        "DST_VEC": str(variant.target_vector),
        "MODE": str(int(variant.mode)),
        "ARITHMETIC": str(int(variant.arithmetic)),
        "REVERSE": str(int(variant.reverse)),
    }
    return "".join(f"#define {name} {value}\n" for name, value in lines.items())


# Exact IEEE arithmetic, as the NumPy reference does it: no fused multiply-add (one rounding less), and
# subnormals kept (flushing them to zero would turn -1e-40 + 0 into +0, and bool(1e-40) into False).
# RawModule cannot do that: it appends -ftz=true to every compilation (cupy/cupy#9576), so kernels
# are compiled with compile_using_nvrtc, which adds nothing, and loaded as a plain module.
_OPTIONS = ("--std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true")


@functools.cache
def _source() -> str:
    return resources.files("gpuimage").joinpath("_kernels.cu").read_text(encoding="utf-8")


@functools.cache
def _function(variant: Variant, device: int) -> cupy.cuda.function.Function:
    """The compiled kernel for ``variant``, loaded on ``device`` (compiled once per process)."""
    with cupy.cuda.Device(device):
        try:
            compiled = cupy.cuda.compiler.compile_using_nvrtc(defines(variant) + _source(), _OPTIONS)
        except cupy.cuda.compiler.CompileException as exc:  # a bug of ours, never the user's input
            raise CudaError(f"compiling the conversion kernel for {variant} failed: {exc}") from exc
        image = compiled[0] if isinstance(compiled, tuple) else compiled
        module = cupy.cuda.function.Module()
        module.load(image.encode() if isinstance(image, str) else image)  # cubin, or PTX text
        function = module.get_function("gpuimage_convert")
        # the driver launch uses the raw CUfunction handle: keep its module loaded for the process
        _modules.append(module)
        return function


_modules: list[cupy.cuda.function.Module] = []


def _block(groups: int, rows: int) -> tuple[int, int, int]:
    """128 threads: along the row as far as it has runs of pixels, the rest on further rows."""
    across = 32 if groups <= 32 else (64 if groups <= 64 else 128)
    return across, max(1, min(BLOCK // across, rows)), 1


# The kernel's parameters, packed as the CUDA ABI lays them out (each at its natural alignment, which
# this order meets without padding): items, src, 3 source strides, dst, 3 target strides, item pitch
# (8 bytes each), 4 ints, then 9 accumulator values.
_CODES = {"float32": "QQqqqQqqqqiiii" + "f" * 9, "float64": "QQqqqQqqqqiiii" + "d" * 9}
_PARAMETERS = {accumulator: struct.Struct("<" + codes) for accumulator, codes in _CODES.items()}
_NUMPY: dict[str, Callable[[float | int], np.generic]] = {
    "Q": np.uint64,
    "q": np.int64,
    "i": np.int32,
    "f": np.float32,
    "d": np.float64,
}
_INVALID_CONTEXT = 201  # CUDA_ERROR_INVALID_CONTEXT: this thread has no current context yet


def _launch_packed(
    variant: Variant,
    device: int,
    grid: tuple[int, int, int],
    block: tuple[int, int, int],
    stream: int,
    values: tuple[float | int, ...],
) -> None:
    """Launch with one packed parameter buffer through the driver: a few microseconds, where CuPy's
    per-argument conversion of this kernel's 23 parameters costs about 17 (measured on an H100)."""
    kernel = _function(variant, device)
    handle = kernel.ptr
    driver = _raw_launch()
    if driver is None or not handle:
        codes = _CODES[variant.accumulator]
        arguments = tuple(_NUMPY[code](value) for code, value in zip(codes, values, strict=True))
        kernel(grid, block, arguments, stream=external_stream(stream, device))
        return
    packed = _PARAMETERS[variant.accumulator].pack(*values)
    buffer = ctypes.create_string_buffer(packed, len(packed))
    size = ctypes.c_size_t(len(packed))
    # CU_LAUNCH_PARAM_BUFFER_POINTER (1), the buffer, CU_LAUNCH_PARAM_BUFFER_SIZE (2), its size, END (0)
    extra = (ctypes.c_void_p * 5)(1, ctypes.addressof(buffer), 2, ctypes.addressof(size), 0)
    dims = [ctypes.c_uint(value) for value in (*grid, *block, 0)]
    args = (ctypes.c_void_p(handle), *dims, ctypes.c_void_p(stream), None, extra)
    status = driver(*args)
    if status == _INVALID_CONTEXT:
        cupy.cuda.runtime.setDevice(device)  # binds the device's primary context to this thread
        status = driver(*args)
    if status:
        raise CudaError(f"launching the conversion kernel on cuda:{device} failed: CUresult {status}")


# The kernel's int parameters (sizes) and grid dimensions bound what one launch can convert.
MAX_SIDE = 2**31 - 4096
MAX_ITEMS = 65535


def _check_limits(height: int, width: int, items: int) -> None:
    if height > MAX_SIDE or width > MAX_SIDE or items > MAX_ITEMS:
        raise SpecError(
            f"conversion: expected height and width up to {MAX_SIDE} and at most {MAX_ITEMS} images a "
            f"batch, got height={height}, width={width}, {items} images. Convert in parts."
        )


def _launch(
    variant: Variant,
    device: int,
    stream: int,
    out: Geometry,
    items: int,
    sizes: tuple[int, ...],
    values: tuple[float | int, ...],
) -> None:
    """Launch over ``out``'s rows and runs (and ``items`` items), with the pointer/stride ``values``,
    the ``sizes``, and the map ``values`` in the kernel's parameter order."""
    groups = -(-out.width // variant.pixels)
    block = _block(groups, out.height)
    grid = (-(-groups // block[0]), min(-(-out.height // block[1]), 65535), items)
    _launch_packed(variant, device, grid, block, stream, (*values[:10], *sizes, *values[10:]))


def _map_values(variant: Variant, affine: Affine, pad: float) -> tuple[float, ...]:
    """The 4 scales, 4 offsets and the padding, each rounded to the accumulator type first (so a
    float32 factor beyond float32's range becomes inf, as in NumPy)."""
    wide = np.float64 if variant.accumulator == "float64" else np.float32
    with np.errstate(over="ignore"):
        scale = [float(wide(value)) for value in (*affine.scale, 1.0, 1.0, 1.0)[:4]]
        offset = [float(wide(value)) for value in (*affine.offset, 0.0, 0.0, 0.0)[:4]]
        return (*scale, *offset, float(wide(pad)))


class LaunchPlan:
    """One conversion's launch, packed once: grid, block and every parameter but the two pointers.

    A per-frame loop converts images of one geometry again and again; its plan is looked up, the
    two pointers are written into the packed parameters, and the kernel is launched through the
    driver with ctypes arguments made once (no per-call packing or argument conversion).
    """

    __slots__ = ("_args", "_driver", "_lock", "_one_device", "_size", "_stream",
                 "buffer", "device", "function", "slots", "values", "variant")  # fmt: skip

    def __init__(
        self, variant: Variant, device: int, region: Geometry, out: Geometry, affine: Affine
    ) -> None:
        _check_limits(out.height, out.width, 1)
        strides = (region.row_pitch, region.pixel_stride, region.channel_stride)
        pointers = (0, 0, *strides, 0, out.row_pitch, out.pixel_stride, out.channel_stride, 0)
        sizes = (region.height, region.width, out.height, out.width)
        values = (*pointers, *sizes, *_map_values(variant, affine, 0.0))
        self.variant, self.values, self.device = variant, values, device
        groups = -(-out.width // variant.pixels)
        block = _block(groups, out.height)
        grid = (-(-groups // block[0]), min(-(-out.height // block[1]), 65535), 1)
        packed = _PARAMETERS[variant.accumulator].pack(*values)
        self.buffer = ctypes.create_string_buffer(packed, len(packed))
        # the source pointer is the second 8-byte parameter, the target pointer the sixth
        self.slots = (
            ctypes.c_uint64.from_buffer(self.buffer, 8),
            ctypes.c_uint64.from_buffer(self.buffer, 40),
        )
        self._size = ctypes.c_size_t(len(packed))
        # CU_LAUNCH_PARAM_BUFFER_POINTER (1), the buffer, CU_LAUNCH_PARAM_BUFFER_SIZE (2), its size, END (0)
        extra = (ctypes.c_void_p * 5)(1, ctypes.addressof(self.buffer), 2, ctypes.addressof(self._size), 0)
        self.function = _function(variant, device)
        dims = [ctypes.c_uint(value) for value in (*grid, *block, 0)]  # grid, block, shared memory
        # cuLaunchKernel(f, grid xyz, block xyz, shared bytes, stream, kernel params, extra)
        self._args: list[object] = [
            ctypes.c_void_p(self.function.ptr),
            *dims,
            ctypes.c_void_p(0),
            None,
            extra,
        ]
        self._stream = 0
        self._lock = threading.Lock()  # the pointers are written into one shared buffer
        # both answers are fixed for the process: looked up here, not on every launch
        self._driver = _raw_launch() if self.function.ptr else None
        self._one_device = _single_device()

    def launch(self, source_ptr: int, target_ptr: int, stream: int) -> None:
        """Queue the kernel on ``stream`` for these pointers."""
        driver = self._driver
        if driver is None:  # no libcuda: CuPy's launch, argument by argument
            values = (*self.values[:1], source_ptr, *self.values[2:5], target_ptr, *self.values[6:])
            with cupy.cuda.Device(self.device):
                _launch_packed(self.variant, self.device, *self.grid_block(), stream, values)
            return
        if not self._one_device and cupy.cuda.runtime.getDevice() != self.device:
            with cupy.cuda.Device(self.device):  # the plan's device current: the path below
                self.launch(source_ptr, target_ptr, stream)
            return
        args = self._args
        with self._lock:  # the driver copies the parameters at launch: the buffer is free again after
            if stream != self._stream:
                args[8], self._stream = ctypes.c_void_p(stream), stream
            self.slots[0].value, self.slots[1].value = source_ptr, target_ptr
            status = driver(*args)
            if status == _INVALID_CONTEXT:
                cupy.cuda.runtime.setDevice(self.device)  # binds the device's primary context to this thread
                status = driver(*args)
        if status:
            raise CudaError(
                f"launching the conversion kernel on cuda:{self.device} failed: CUresult {status}"
            )

    def grid_block(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The launch's grid and block dimensions."""
        dims = [cast(ctypes.c_uint, value).value for value in self._args[1:7]]
        return (dims[0], dims[1], dims[2]), (dims[3], dims[4], dims[5])


@functools.cache
def _single_device() -> bool:
    """One GPU: its primary context is the only one, so no launch needs a device check."""
    return int(cupy.cuda.runtime.getDeviceCount()) == 1


@functools.cache
def _raw_launch() -> Callable[..., int] | None:
    """``cuLaunchKernel`` without argument types: LaunchPlan passes ctypes objects it made once."""
    try:
        function = ctypes.CDLL("libcuda.so.1")["cuLaunchKernel"]  # [] gives a fresh function object
    except OSError:
        return None
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


@functools.lru_cache(maxsize=256)
def launch_plan(
    source_dtype: DTypeName,
    target_dtype: DTypeName,
    source_alignment: int,
    source: Geometry,
    target_alignment: int,
    target: Geometry,
    affine: Affine,
    device: int,
) -> LaunchPlan:
    """The packed launch that converts ``source`` into ``target`` on ``cuda:device`` (the 256 latest
    kept). ``*_alignment``: the pointers modulo ``MAX_VECTOR``, all the access widths depend on; a
    frame loop asks for the same plan every call, so this one lookup is its whole planning."""
    variant = plan_variant(
        source_dtype, target_dtype, [(source_alignment, source)], (target_alignment, target), affine
    )
    return LaunchPlan(variant, device, source, target, affine)


def launch_batch(
    variant: Variant,
    *,
    items: Sequence[BatchItem],
    target: tuple[int, Geometry],
    item_pitch: int,
    affine: Affine,
    pad: float,
    stream: int,
    device: int,
) -> None:
    """Queue one kernel on ``stream`` that converts every item into ``target`` + ``i * item_pitch``
    bytes (``target``'s geometry gives the batch's height, width and strides), padding with ``pad``."""
    dst_ptr, out = target
    _check_limits(out.height, out.width, len(items))
    with cupy.cuda.Device(device):
        # The table outlives the kernel: CuPy's pool hands its memory on to later work on this stream
        # only, which runs after the kernel.
        with external_stream(stream, device):
            table = staging_for(device).to_device(np.array(items, dtype=np.int64), stream)
        strides = (out.row_pitch, out.pixel_stride, out.channel_stride)
        pointers = (table.data.ptr, 0, 0, 0, 0, dst_ptr, *strides, item_pitch)
        sizes = (0, 0, out.height, out.width)  # each item's own size comes from the table
        _launch(
            variant, device, stream, out, len(items), sizes, (*pointers, *_map_values(variant, affine, pad))
        )
