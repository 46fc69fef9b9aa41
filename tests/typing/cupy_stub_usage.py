"""Type-level checks for the CuPy stubs in ``stubs/cupy``.

Only type checkers read this module: every function below is defined and never called, so importing it
runs no GPU code. It touches each stubbed name the way gpuimage uses it and pins key result types
with ``assert_type``. Run from the repository root::

    MYPYPATH=stubs .venv/bin/mypy --strict tests/typing/cupy_stub_usage.py stubs/cupy
    .venv/bin/pyright --pythonversion 3.11 tests/typing/cupy_stub_usage.py
"""

import ctypes
import io
import sys
from types import ModuleType
from typing import Any, assert_type

import cupy
import cupy.cuda
import cupy.cuda.memory
import cupy.cuda.runtime
import cupy.cuda.stream
import numpy as np
import numpy.typing as npt
from cupy.cuda import (
    BaseMemory,
    Device,
    Event,
    ExternalStream,
    Memory,
    MemoryPointer,
    MemoryPool,
    Stream,
    UnownedMemory,
    alloc,
    get_allocator,
    get_current_stream,
    get_elapsed_time,
    runtime,
    set_allocator,
)
from cupy.cuda.runtime import CUDARuntimeError

_ADD_KERNEL = r"""
extern "C" __global__ void add_one(const float* x, float* y, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + 1.0f;
}
"""


def array_attributes(a: cupy.ndarray) -> None:
    assert_type(a.shape, tuple[int, ...])
    assert_type(a.strides, tuple[int, ...])
    assert_type(a.dtype, np.dtype[Any])
    assert_type(a.ndim, int)
    assert_type(a.size, int)
    assert_type(a.nbytes, int)
    assert_type(a.itemsize, int)
    assert_type(a.data, MemoryPointer)
    assert_type(a.data.ptr, int)
    assert_type(a.device, Device)
    assert_type(a.device.id, int)
    assert_type(a.flags.c_contiguous, bool)
    assert_type(a.flags.f_contiguous, bool)
    assert_type(a.base, cupy.ndarray | None)
    assert_type(a.T, cupy.ndarray)
    assert_type(a.__cuda_array_interface__, dict[str, Any])
    assert_type(a.__dlpack_device__(), tuple[int, int])
    a.shape = (a.size,)


def dlpack_exchange(a: cupy.ndarray, host: npt.NDArray[np.float32], stream: Stream) -> cupy.ndarray:
    capsule = a.__dlpack__(stream=stream.ptr, max_version=(1, 0), dl_device=(2, 0), copy=False)
    if sys.version_info >= (3, 13):
        import types

        assert_type(capsule, types.CapsuleType)
    else:
        assert_type(capsule, object)
    legacy_capsule = a.toDlpack()
    assert_type(cupy.from_dlpack(a), cupy.ndarray)
    assert_type(cupy.from_dlpack(host, device=(2, 0), copy=True), cupy.ndarray)
    assert_type(cupy.from_dlpack(capsule), cupy.ndarray)
    return cupy.fromDlpack(legacy_capsule)  # pyright: ignore[reportDeprecated]


def host_transfers(host: npt.NDArray[np.uint8], stream: Stream) -> npt.NDArray[Any]:
    dev = cupy.asarray(host)
    assert_type(dev, cupy.ndarray)
    assert_type(cupy.asarray(dev, dtype=cupy.float32, order="C", copy=None, blocking=True), cupy.ndarray)
    assert_type(cupy.asarray([1.0, 2.0, 3.0]), cupy.ndarray)
    assert_type(cupy.array(host, dtype=np.float32, copy=True, order="K", ndmin=3), cupy.ndarray)
    assert_type(cupy.array([dev, dev]), cupy.ndarray)
    dev.set(host, stream=stream)
    back = dev.get(stream=stream, order="C", out=None, blocking=False)
    assert_type(back, npt.NDArray[Any])
    assert_type(cupy.asnumpy(dev), npt.NDArray[Any])
    return cupy.asnumpy(dev, stream=stream, order="C", out=back)


def creation(height: int, width: int) -> list[cupy.ndarray]:
    rgb = cupy.empty((height, width, 3), dtype=cupy.uint8, order="C")
    assert_type(rgb, cupy.ndarray)
    arrays = [
        rgb,
        cupy.zeros(height * width, dtype=np.float32),
        cupy.ones((height, width)),
        cupy.full((height, width), 7, dtype=cupy.int32),
        cupy.full((2,), np.float16(0.5)),
        cupy.empty_like(rgb),
        cupy.zeros_like(rgb, dtype=cupy.float16, shape=(height, width)),
        cupy.arange(0, height * width, 2, dtype=cupy.int64),
        cupy.arange(10.0),
        cupy.ascontiguousarray(rgb.T, dtype=cupy.uint16),
    ]
    assert_type(arrays, list[cupy.ndarray])
    return arrays


def dtype_aliases() -> list[np.dtype[Any]]:
    assert_type(cupy.uint8, type[np.uint8])
    assert_type(cupy.float32(1.5), np.float32)
    assert_type(cupy.bool_, type[np.bool_])
    scalar_types: list[type[np.generic[Any]]] = [
        cupy.uint8,
        cupy.int8,
        cupy.uint16,
        cupy.int16,
        cupy.uint32,
        cupy.int32,
        cupy.int64,
        cupy.uint64,
        cupy.float16,
        cupy.float32,
        cupy.float64,
        cupy.bool_,
    ]
    return [np.dtype(t) for t in scalar_types]


def array_methods(a: cupy.ndarray, b: cupy.ndarray) -> list[cupy.ndarray]:
    assert_type(a.copy(), cupy.ndarray)
    assert_type(a.copy(order="F"), cupy.ndarray)
    assert_type(a.astype(cupy.float32, copy=False), cupy.ndarray)
    assert_type(a.astype("float16"), cupy.ndarray)
    assert_type(a.transpose(2, 0, 1), cupy.ndarray)
    assert_type(a.transpose((2, 0, 1)), cupy.ndarray)
    assert_type(a.transpose(), cupy.ndarray)
    assert_type(a.reshape(4, -1), cupy.ndarray)
    assert_type(a.reshape((4, -1), order="C"), cupy.ndarray)
    assert_type(a.view(cupy.uint32), cupy.ndarray)
    a.fill(0)
    a.fill(np.uint8(255))
    assert_type(len(a), int)
    assert_type(a.item(), bool | int | float | complex)
    values = a.tolist()
    if isinstance(values, list):
        first = values[0]
        if not isinstance(first, list):
            assert_type(first, bool | int | float | complex)
    a[0, 1] = 3
    a[:] = b
    a[..., 0] = np.zeros(4, dtype=np.uint8)
    rows = list(a)
    assert_type(rows, list[cupy.ndarray])
    reductions = [
        a.sum(),
        a.sum(axis=0, dtype=cupy.float64, keepdims=True),
        a.max(),
        a.min(axis=(0, 1)),
        a.all(),
        a.any(axis=-1),
        a.mean(axis=-1, keepdims=True),
    ]
    flag = bool(a.any())
    total = float(a.sum())
    assert_type(flag, bool)
    assert_type(total, float)
    indexed = [a[0], a[1:, ::2], a[..., 0], a[None], a[a > 0], a[[0, 2]], a[(slice(None), 0)]]
    return reductions + indexed


def operators(a: cupy.ndarray, b: cupy.ndarray) -> list[cupy.ndarray]:
    results = [
        a + b,
        a - 1,
        2 * a,
        a / 255.0,
        a // 2,
        a % 3,
        a**2,
        2.0**a,
        a @ b,
        -a,
        +a,
        abs(a),
        ~a,
        a & 1,
        a | b,
        a ^ b,
        a << 1,
        a >> np.uint8(1),
        a == b,
        a != 0,
        a < b,
        a <= 1.5,
        a > b,
        a >= np.float32(0),
        np.float32(2) * a,
    ]
    acc = a.copy()
    acc += 1
    acc *= b
    assert_type(acc, cupy.ndarray)
    assert_type(divmod(a, 2), tuple[cupy.ndarray, cupy.ndarray])
    assert_type(results, list[cupy.ndarray])
    return results


def comparisons(a: cupy.ndarray, b: cupy.ndarray) -> bool:
    same = cupy.array_equal(a, b, equal_nan=True)
    close = cupy.allclose(a, b, rtol=1e-5, atol=1e-8)
    near_zero = cupy.allclose(a, 0.0)
    assert_type(same, cupy.ndarray)
    assert_type(close, cupy.ndarray)
    return bool(same) and bool(close) and bool(near_zero)


def module_helpers(a: cupy.ndarray, host: npt.NDArray[np.float32]) -> str:
    xp = cupy.get_array_module(a, host)
    assert_type(xp, ModuleType)
    assert_type(cupy.is_available(), bool)
    assert_type(cupy.cuda.is_available(), bool)
    assert_type(cupy.cuda.get_local_runtime_version(), int)
    assert_type(cupy.__version__, str)
    return cupy.__version__


def devices() -> tuple[int, str]:
    with Device(0) as dev:
        assert_type(dev, Device)
        assert_type(dev.id, int)
        dev.synchronize()
    current = cupy.cuda.Device()
    assert_type(current.use(), Device)
    assert_type(current.compute_capability, str)
    assert_type(current.mem_info, tuple[int, int])
    assert_type(current.attributes, dict[str, int])
    assert_type(int(current), int)
    assert_type(cupy.cuda.device.get_device_id(), int)
    assert_type(cupy.cuda.device.from_pointer(0), Device)
    assert_type(Device.from_pci_bus_id(current.pci_bus_id), Device)
    return current.id, current.compute_capability


class _ForeignStream:
    # Anything implementing the CUDA stream protocol, e.g. a torch.cuda.Stream.
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


def streams_and_events(handle: int) -> float:
    stream = Stream(non_blocking=True)
    prioritized = cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=-1)
    assert_type(stream.ptr, int)
    assert_type(stream.device_id, int)
    assert_type(Stream.null, Stream)
    assert_type(Stream.ptds, Stream)
    assert_type(stream.__cuda_stream__(), tuple[int, int])
    assert_type(stream.done, bool)
    assert_type(prioritized.priority, int)
    assert_type(prioritized.is_non_blocking, bool)
    wrapped = Stream.from_external(_ForeignStream(handle))
    assert_type(wrapped, Stream)
    external = ExternalStream(handle, device_id=0)  # pyright: ignore[reportDeprecated]
    assert_type(external.ptr, int)
    assert_type(get_current_stream(), Stream)
    assert_type(cupy.cuda.get_current_stream(0), Stream)
    with stream as s:
        assert_type(s, Stream)
        start = Event()
        start.record()
        end = s.record()
        assert_type(end, Event)
    timing = Event(block=True, disable_timing=False, interprocess=False)
    timing.record(stream)
    timing.record(external)
    wrapped.wait_event(timing)
    timing.synchronize()
    assert_type(timing.done, bool)
    assert_type(timing.ptr, int)
    assert_type(stream.use(), Stream)
    stream.synchronize()
    assert_type(cupy.cuda.stream.get_elapsed_time(start, end), float)
    return get_elapsed_time(start, end)


def memory_wrapping(ptr: int, nbytes: int, owner: object, height: int, width: int) -> cupy.ndarray:
    mem = UnownedMemory(ptr, nbytes, owner, 0)
    assert_type(mem.ptr, int)
    assert_type(mem.size, int)
    assert_type(mem.device_id, int)
    assert_type(mem.device, Device)
    memptr = MemoryPointer(mem, 0)
    assert_type(memptr.ptr, int)
    assert_type(memptr.mem, BaseMemory)
    assert_type(memptr.device_id, int)
    assert_type(memptr + 16, MemoryPointer)
    assert_type(16 + memptr, MemoryPointer)
    assert_type(int(memptr), int)
    image = cupy.ndarray((height, width, 4), dtype=cupy.uint8, memptr=memptr, strides=(width * 4, 4, 1))
    assert_type(image, cupy.ndarray)
    owned = Memory(1024)
    assert_type(owned.ptr, int)
    assert_type(cupy.cuda.memory.UnownedMemory(ptr, nbytes, owner), UnownedMemory)
    staging = (ctypes.c_uint8 * nbytes)()
    MemoryPointer(owned, 0).copy_from_device(memptr, 1024)
    memptr.copy_to_host(ctypes.addressof(staging), nbytes)
    memptr.copy_from_host_async(ctypes.c_void_p(ctypes.addressof(staging)), nbytes, stream=Stream.null)
    memptr.memset_async(0, nbytes)
    return cupy.ndarray((height, width), dtype=np.float32, memptr=memptr)


def memory_pools() -> tuple[int, int]:
    buf = alloc(256)
    assert_type(buf, MemoryPointer)
    assert_type(cupy.cuda.alloc(256), MemoryPointer)
    pool = cupy.get_default_memory_pool()
    assert_type(pool, MemoryPool)
    private_pool = MemoryPool(cupy.cuda.memory.alloc)
    previous = get_allocator()
    set_allocator(private_pool.malloc)
    try:
        assert_type(cupy.cuda.get_allocator()(64), MemoryPointer)
        assert_type(private_pool.n_free_blocks(), int)
    except cupy.cuda.memory.OutOfMemoryError:
        private_pool.free_all_blocks()
    finally:
        set_allocator(previous)
    cupy.cuda.set_allocator(None)
    pool.free_all_blocks(stream=Stream.null)
    pool.set_limit(fraction=0.5)
    assert_type(pool.get_limit(), int)
    return pool.used_bytes(), pool.total_bytes()


def runtime_api(stream: Stream, ptr: int) -> tuple[int, int]:
    assert_type(runtime.getDeviceCount(), int)
    device = cupy.cuda.runtime.getDevice()
    assert_type(device, int)
    runtime.setDevice(device)
    attrs = runtime.pointerGetAttributes(ptr)
    assert_type(attrs.device, int)
    assert_type(attrs.type, int)
    assert_type(attrs.devicePointer, int)
    on_device = attrs.type in (runtime.memoryTypeDevice, runtime.memoryTypeManaged)
    assert_type(on_device, bool)
    free, total = runtime.memGetInfo()
    assert_type(free, int)
    runtime.deviceSynchronize()
    runtime.streamSynchronize(stream.ptr)
    event = runtime.eventCreate()
    assert_type(event, int)
    try:
        runtime.eventRecord(event, stream.ptr)
        runtime.streamWaitEvent(Stream.null.ptr, event)
        runtime.streamWaitEvent(Stream.null.ptr, event, 0)
        assert_type(runtime.eventQuery(event), int)
    except CUDARuntimeError as err:
        assert_type(err.status, int)
        raise
    finally:
        runtime.eventDestroy(event)
    return free, total


def is_cuda_runtime_error(exc: BaseException) -> bool:
    return isinstance(exc, cupy.cuda.runtime.CUDARuntimeError)


def raw_kernels(x: cupy.ndarray, stream: Stream) -> cupy.ndarray:
    kernel = cupy.RawKernel(
        _ADD_KERNEL,
        "add_one",
        options=("-std=c++17",),
        backend="nvrtc",
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        jitify=False,
    )
    y = cupy.empty_like(x)
    n = x.size
    block = min(256, kernel.max_threads_per_block)
    kernel(((n + block - 1) // block,), (block,), (x, y, np.uint32(n)), shared_mem=0, stream=stream)
    kernel((1,), (32,), (x, y, np.uint32(n)))
    assert_type(kernel.num_regs, int)
    assert_type(kernel.max_threads_per_block, int)
    assert_type(kernel.attributes, dict[str, int])
    kernel.max_dynamic_shared_size_bytes = 48 * 1024
    kernel.compile(log_stream=io.StringIO())
    module = cupy.RawModule(code=_ADD_KERNEL, options=("-O3",), name_expressions=["add_one"])
    fn = module.get_function("add_one")
    assert_type(fn, cupy.RawKernel)
    assert_type(module.get_global("table"), MemoryPointer)
    from_file = cupy.RawModule(path="kernels.cubin")
    assert_type(from_file.file_path, str | None)
    return y


def layout_details(a: cupy.ndarray, other: Device) -> list[cupy.ndarray]:
    assert_type(a.flags.owndata, bool)
    assert_type(a.flags.fnc, bool)
    assert_type(a.flags.forc, bool)
    assert_type(a.flags["C_CONTIGUOUS"], bool)
    assert_type(int(a), int)
    assert_type(complex(a), complex)
    assert_type(a.device < other, bool)
    assert_type(a.device == other, bool)
    return [a.mT, a.real, a.imag, a.ravel(), a.ravel(order="F")]


def _on_stream_done(stream: Stream, status: int, user_data: object) -> None:
    del stream, status, user_data


def _host_callback(user_data: object) -> None:
    del user_data


def stream_callbacks(stream: Stream) -> bool:
    stream.add_callback(_on_stream_done, None)
    stream.launch_host_func(_host_callback, "payload")
    return stream.is_capturing()


def memory_copies(dst: MemoryPointer, src: MemoryPointer, host_ptr: int, nbytes: int, stream: Stream) -> int:
    dst.copy_from_device_async(src, nbytes, stream=stream)
    dst.copy_from_host(host_ptr, nbytes)
    dst.copy_from(src, nbytes)
    dst.copy_from(ctypes.c_void_p(host_ptr), nbytes)
    dst.copy_from_async(host_ptr, nbytes, stream)
    dst.copy_to_host_async(host_ptr, nbytes, stream=stream)
    dst.memset(0, nbytes)
    cursor = src
    cursor += 256
    cursor -= 128
    assert_type(cursor, MemoryPointer)
    assert_type(cursor - 64, MemoryPointer)
    pool = cupy.get_default_memory_pool()
    pool.free_all_free()
    return pool.free_bytes()


def raw_handles(ptr: int) -> float:
    assert_type(runtime.is_hip, bool)
    assert_type(runtime.driverGetVersion(), int)
    assert_type(runtime.runtimeGetVersion(), int)
    attrs: runtime.PointerAttributes = runtime.pointerGetAttributes(ptr)
    assert_type(attrs.hostPointer, int)
    host_visible = attrs.type in (runtime.memoryTypeHost, runtime.memoryTypeUnregistered)
    assert_type(host_visible, bool)
    assert_type(attrs.device in (runtime.cudaCpuDeviceId, runtime.cudaInvalidDeviceId), bool)
    fake = runtime.PointerAttributes(0, ptr, 0, runtime.memoryTypeDevice)
    assert_type(fake.device, int)
    flags = runtime.streamNonBlocking if runtime.streamDefault == 0 else runtime.streamDefault
    assert_type(flags, int)
    legacy = Stream.null.ptr in (runtime.streamLegacy, runtime.streamPerThread)
    assert_type(legacy, bool)
    handle = runtime.streamCreate()
    start = runtime.eventCreateWithFlags(runtime.eventDefault)
    end = runtime.eventCreateWithFlags(runtime.eventBlockingSync | runtime.eventDisableTiming)
    shared = runtime.eventCreateWithFlags(runtime.eventInterprocess | runtime.eventDisableTiming)
    try:
        runtime.eventRecord(start, handle)
        runtime.eventRecord(end, handle)
        runtime.eventSynchronize(end)
        assert_type(runtime.streamQuery(handle), int)
        return runtime.eventElapsedTime(start, end)
    finally:
        for event in (start, end, shared):
            runtime.eventDestroy(event)
        runtime.streamDestroy(handle)


def kernel_introspection(kernel: cupy.RawKernel, module: cupy.RawModule) -> dict[str, int]:
    assert_type(kernel.code, str)
    assert_type(kernel.name, str)
    assert_type(kernel.file_path, str | None)
    assert_type(kernel.options, tuple[str, ...])
    assert_type(kernel.backend, str)
    assert_type(kernel.enable_cooperative_groups, bool)
    kernel.preferred_shared_memory_carveout = 50
    assert_type(module.code, str | None)
    assert_type(module.options, tuple[str, ...])
    assert_type(module.backend, str)
    assert_type(module.enable_cooperative_groups, bool)
    assert_type(module.name_expressions, tuple[str, ...] | None)
    module.compile()
    return {
        "shared_size_bytes": kernel.shared_size_bytes,
        "const_size_bytes": kernel.const_size_bytes,
        "local_size_bytes": kernel.local_size_bytes,
        "ptx_version": kernel.ptx_version,
        "binary_version": kernel.binary_version,
        "cache_mode_ca": kernel.cache_mode_ca,
        "max_dynamic_shared_size_bytes": kernel.max_dynamic_shared_size_bytes,
        "preferred_shared_memory_carveout": kernel.preferred_shared_memory_carveout,
    }


def rejected(a: cupy.ndarray, host: npt.NDArray[np.float32]) -> None:
    # Each line is an error under both checkers; mypy --strict flags a stale ignore.
    _ = a + host  # type: ignore[operator]  # no implicit host-to-device transfer
    cupy.RawModule(_ADD_KERNEL)  # type: ignore[call-overload]  # code= and path= are keyword-only
    cupy.RawKernel(_ADD_KERNEL, "k", (), "nvrtc", True)  # type: ignore[call-arg]  # translate_cucomplex is kw-only
