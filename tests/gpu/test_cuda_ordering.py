"""Stream ordering (``_ordering``) on a GPU: a reader on any stream sees writes still queued on
the image's ready stream.

Every test races a *late writer* against a reader. The writer is a spin kernel queued on stream A:
it busy-waits on ``clock64()`` for a set time, then writes one byte value over the whole image.
The reader is queued at once on another stream B (non-blocking, so nothing orders it implicitly)
through one of gpuimage's views or protocols. gpuimage must make B wait for A with an event, never
with a host sync, so after the final ``torch.cuda.synchronize()`` the reader's copy holds the late
value. The control tests leave the ordering out (a borrowed pointer with ``stream=None``, the raw
tensor read on B) and see the old value: the race is real, so the ordered tests prove something.

``torch.cuda.synchronize()`` runs while setting up (before the writer is queued) and at the end of
each test, never between writer and reader. Every kernel a reader uses runs once on a twin image
before the race (``_warm_up``), so that no compile or module load delays the reader until the
writer is done: a reader queued after the write would see the new value even without ordering.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import cupy
import numpy as np
import numpy.typing as npt
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import HWC, GpuImage, ImageSpec

from ._support import gpu_settings, memory_bits

pytestmark = pytest.mark.cuda

_HEIGHT, _WIDTH, _CHANNELS, _PITCH = 37, 53, 3, 256
_SHAPE = (_HEIGHT, _WIDTH, _CHANNELS)
_NBYTES = (_HEIGHT - 1) * _PITCH + _WIDTH * _CHANNELS
"""uint8 HWC with rows 256 bytes apart (padded), odd sizes: about 9 KB, copied in microseconds."""

_OLD, _NEW, _NEWER = 0x11, 0xC3, 0x5A
"""What memory holds before the writer runs, what the writer writes, what a second writer writes."""

_RACE_MS = 200.0
"""Controls: long enough that a reader queued right after the writer always runs before the write."""
_ORDER_MS = 100.0
"""Ordered reads: the reader is queued well inside the spin, so only ordering makes it see the write."""
_QUICK_MS = 20.0
"""Hypothesis examples: short, so that a dozen examples take well under a second of spinning."""
_BLOCK_MS = 300.0
"""The no-host-blocking test: view calls must return long before this."""
_VIEW_BUDGET_S = 0.020
"""The longest a view call may take while the writer spins (a few microseconds when it only queues)."""

_CALIBRATION_CYCLES = 20_000_000
"""About 10 ms at data-centre boost clocks: the spin timed to learn the SM clock."""
_CLOCK_MARGIN = 1.25
"""Spins are sized for a clock 25% above the measured one, so a clock that rises later (boost)
still leaves them at least as long as asked."""

_LATE_FILL_SOURCE = r"""
extern "C" __global__ void gpuimage_test_late_fill(
    unsigned char* data, unsigned long long nbytes, unsigned long long value, long long cycles)
{
    const long long start = clock64();
    while (clock64() - start < cycles) {
    }
    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < nbytes;
         i += step) {
        data[i] = (unsigned char)value;
    }
}
"""

Consumer = Literal["torch", "cupy", "gpumat", "dlpack_torch", "dlpack_cupy", "cai", "numba"]
ReaderKind = Literal["new", "current", "legacy", "per_thread"]
Producer = Literal["torch", "cupy", "protocol", "legacy"]
Declaration = Literal["argument", "current", "record_write"]

_ORDERED: tuple[Consumer, ...] = ("torch", "cupy", "gpumat", "dlpack_torch", "dlpack_cupy")
"""Consumers that order on the device (an event wait); ``cai`` and ``numba`` wait on the host."""
_READER_KINDS: tuple[ReaderKind, ...] = ("new", "current", "legacy", "per_thread")
_PRODUCERS: tuple[Producer, ...] = ("torch", "cupy", "protocol", "legacy")
_DECLARATIONS: tuple[Declaration, ...] = ("argument", "current", "record_write")

_Read = Callable[[], npt.NDArray[Any]]
"""Returns the reader's copy on the host; called only after the final synchronize."""


# -- the late writer ---------------------------------------------------------------------------


class _StreamHandle:
    """A bare stream-like that only speaks the CUDA stream protocol (as cuda.core streams do)."""

    def __init__(self, handle: int, keep: object = None) -> None:
        self.handle = handle
        self.keep = keep  # the stream object that owns the handle, kept alive with it

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


def _cupy_stream(handle: int) -> cupy.cuda.Stream:
    """A CuPy stream object for a raw ``cudaStream_t`` handle (0 legacy, 2 per-thread default)."""
    if handle == 0:
        return cupy.cuda.Stream.null
    if handle == 2:
        return cupy.cuda.Stream.ptds
    return cupy.cuda.Stream.from_external(_StreamHandle(handle))


@functools.cache
def _late_fill_kernel() -> cupy.RawKernel:
    return cupy.RawKernel(_LATE_FILL_SOURCE, "gpuimage_test_late_fill")


@functools.cache
def _cycles_per_ms() -> float:
    """SM clock cycles per millisecond, measured: a spin of known cycles timed with CUDA events.

    Measured rather than read from the device attributes (CUDA 13 dropped ``clockRate`` from the
    device properties), after a first spin that compiles the kernel and lets the clock ramp up.
    ``clock64()`` counts while a kernel is time-sliced out, so a spin never outlasts its cycles by
    much; the shortest of three timings is the one least stretched by other work on the GPU.
    """
    stream = cupy.cuda.Stream(non_blocking=True)
    scratch = cupy.zeros(256, dtype=cupy.uint8)
    args = (
        np.uint64(scratch.data.ptr),
        np.uint64(scratch.nbytes),
        np.uint64(0),
        np.int64(_CALIBRATION_CYCLES),
    )
    _late_fill_kernel()((1,), (256,), args, stream=stream)
    timings: list[float] = []
    for _ in range(3):  # the shortest: another process time-slicing the GPU only makes spins longer
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        _late_fill_kernel()((1,), (256,), args, stream=stream)
        end.record(stream)
        end.synchronize()
        timings.append(cupy.cuda.get_elapsed_time(start, end))
    return _CALIBRATION_CYCLES / max(min(timings), 1e-3) * _CLOCK_MARGIN


def _late_fill(ptr: int, value: int, *, ms: float, stream: int, nbytes: int = _NBYTES) -> cupy.cuda.Event:
    """Queue on ``stream`` (a raw handle) a kernel that spins ``ms`` milliseconds, then sets every byte
    of ``[ptr, ptr + nbytes)`` to ``value``. Returns an event recorded on ``stream`` right after it.

    At most 8 blocks: all of them are resident at once (the spin lasts ``ms``, not a multiple of it),
    and most SMs stay free for the reader's kernels, which must be able to run during the spin.
    """
    threads = 256
    blocks = max(1, min(8, -(-nbytes // threads)))
    queue = _cupy_stream(stream)
    cycles = round(ms * _cycles_per_ms())
    args = (np.uint64(ptr), np.uint64(nbytes), np.uint64(value), np.int64(cycles))
    _late_fill_kernel()((blocks,), (threads,), args, stream=queue)
    done = cupy.cuda.Event(disable_timing=True)
    done.record(queue)
    return done


@dataclasses.dataclass(frozen=True)
class _Target:
    """Padded uint8 HWC memory from torch's allocator: ``tensor`` is the ``(H, W, C)`` view of ``storage``."""

    storage: torch.Tensor
    tensor: torch.Tensor

    @property
    def ptr(self) -> int:
        return self.tensor.data_ptr()

    def cupy_array(self) -> cupy.ndarray:
        """A CuPy header over the same memory (no CUDA call, so no ordering of its own)."""
        memory = cupy.cuda.UnownedMemory(self.ptr, _NBYTES, self.storage, device_id=0)
        return cupy.ndarray(
            _SHAPE, np.uint8, cupy.cuda.MemoryPointer(memory, 0), strides=(_PITCH, _CHANNELS, 1)
        )

    def spec(self) -> ImageSpec:
        return GpuImage.from_torch(self.tensor, layout="HWC").spec

    def late_fill(self, value: int, *, ms: float, stream: int) -> cupy.cuda.Event:
        return _late_fill(self.ptr, value, ms=ms, stream=stream)


def _target(value: int = _OLD) -> _Target:
    """Fresh memory holding ``value``, and nothing queued on any stream (set-up: synchronizes)."""
    storage = torch.full((_HEIGHT * _PITCH,), value, dtype=torch.uint8, device="cuda:0")
    tensor = storage.as_strided(_SHAPE, (_PITCH, _CHANNELS, 1))
    torch.cuda.synchronize()
    return _Target(storage, tensor)


class _CaiSource:
    """A bare ``__cuda_array_interface__`` exporter over a target, with a chosen ``stream`` entry."""

    def __init__(self, target: _Target, stream: int | None) -> None:
        self.target = target
        self.__cuda_array_interface__: dict[str, Any] = {
            "shape": _SHAPE,
            "typestr": "|u1",
            "data": (target.ptr, False),
            "strides": (_PITCH, _CHANNELS, 1),
            "version": 3,
            "stream": stream,
        }


# -- readers -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Reader:
    """The stream a consumer reads on, as torch and CuPy see it.

    ``new`` and ``per_thread`` pass the stream to the view (``stream=``); ``current`` makes it the
    libraries' current stream and passes nothing (the view's default consumer); ``legacy`` passes
    nothing and leaves the current stream alone (the legacy default stream).
    """

    kind: ReaderKind
    torch_stream: torch.cuda.Stream
    cupy_stream: cupy.cuda.Stream

    @property
    def handle(self) -> int:
        return int(self.torch_stream.cuda_stream)

    @property
    def explicit(self) -> bool:
        return self.kind in ("new", "per_thread")

    def argument(self, library: Literal["torch", "cupy", "gpumat"]) -> object:
        """What an explicit view call is passed: each library's own stream type, or a raw int."""
        if self.kind == "per_thread":
            return 2
        if library == "torch":
            return self.torch_stream
        if library == "cupy":
            return self.cupy_stream
        return self.handle


def _reader(kind: ReaderKind) -> _Reader:
    if kind == "legacy":
        return _Reader(kind, torch.cuda.default_stream(0), cupy.cuda.Stream.null)
    if kind == "per_thread":
        return _Reader(kind, torch.cuda.ExternalStream(2, device=0), cupy.cuda.Stream.ptds)
    stream = torch.cuda.Stream(device=0)  # torch's pool streams are non-blocking
    return _Reader(kind, stream, _cupy_stream(stream.cuda_stream))


@contextlib.contextmanager
def _on(reader: _Reader) -> Iterator[None]:
    """Make the reader's stream current for torch and CuPy."""
    with torch.cuda.stream(reader.torch_stream), reader.cupy_stream:
        yield


def _numba_cuda() -> Any:
    numba_cuda = pytest.importorskip("numba.cuda")
    if not numba_cuda.is_available():
        pytest.skip("numba is installed but sees no CUDA GPU")
    return numba_cuda


def _consume(image: GpuImage[HWC], consumer: Consumer, reader: _Reader) -> _Read:
    """Queue a copy of ``image`` on the reader's stream through one view or protocol.

    The device-ordered consumers return before the copy ran (nothing here waits on the host); the
    copy is read back by the returned callable, after the final synchronize. ``cai`` and ``numba``
    synchronize the host on the interface's ``stream`` by design, and copy to the host at once.
    """
    if consumer == "torch":
        if reader.explicit:
            tensor = image.as_torch(stream=reader.argument("torch"))
        else:
            with _on(reader):
                tensor = image.as_torch()
        with _on(reader):
            torch_copy = tensor.clone()
        return lambda: torch_copy.cpu().numpy()
    if consumer == "cupy":
        if reader.explicit:
            array = image.as_cupy(stream=reader.argument("cupy"))
        else:
            with _on(reader):
                array = image.as_cupy()
        with _on(reader):
            cupy_copy = array.copy()
        return lambda: cupy_copy.get()
    if consumer == "gpumat":
        # OpenCV would work on the mat on the consumer stream; it says so when the mat comes back.
        if reader.explicit:
            mat = image.as_gpumat(stream=reader.argument("gpumat"))
            back = GpuImage.from_gpumat(mat, stream=reader.argument("gpumat"))
            tensor = back.as_torch(stream=reader.argument("torch"))
        else:
            mat = image.as_gpumat()  # OpenCV's default: the legacy default stream
            back = GpuImage.from_gpumat(mat, stream=0)
            with _on(reader):
                tensor = back.as_torch()
        with _on(reader):
            mat_copy = tensor.clone()
        return lambda: mat_copy.cpu().numpy()
    if consumer == "dlpack_torch":  # torch passes its current stream to __dlpack__
        with _on(reader):
            dlpack_copy = torch_from_dlpack(image).clone()
        return lambda: dlpack_copy.cpu().numpy()
    if consumer == "dlpack_cupy":  # CuPy passes its current stream to __dlpack__
        with _on(reader):
            dlpack_array = cupy.from_dlpack(image).copy()
        return lambda: dlpack_array.get()
    if consumer == "cai":  # CuPy synchronizes the host on the CAI stream
        with _on(reader):
            cai_host = cupy.asarray(image).get()
        return lambda: cai_host
    if consumer == "numba":  # numba synchronizes the host on the CAI stream (sync=True)
        numba_host = _numba_cuda().as_cuda_array(image).copy_to_host()
        return lambda: numba_host
    raise AssertionError(consumer)


def _warm_up(consumer: Consumer, reader: _Reader) -> None:
    """Run the late writer and ``consumer`` once on an idle twin image (set-up: synchronizes).

    A first launch compiles (CuPy) or loads (lazy CUDA modules) its kernel: done during the race,
    that could hold the reader back until the writer is done, and hide a missing wait.
    """
    twin = _target()
    idle = torch.cuda.Stream(device=0)
    twin.late_fill(_OLD, ms=0.0, stream=idle.cuda_stream)
    image = GpuImage.from_torch(twin.tensor, layout="HWC", stream=idle)
    read = _consume(image, consumer, reader)
    torch.cuda.synchronize()
    read()


# -- checks ------------------------------------------------------------------------------------


def _seen(host: npt.NDArray[Any]) -> list[str]:
    return [f"{int(value):#04x}" for value in np.unique(host)[:8]]


def _assert_all(host: npt.NDArray[Any], value: int, what: str) -> None:
    """Every byte is ``value``."""
    assert host.size > 0, f"{what}: empty"
    wrong = int(np.count_nonzero(host != value))
    assert wrong == 0, (
        f"{what}: {wrong} of {host.size} bytes are not {value:#04x} (values seen: {_seen(host)}); "
        "the read was not ordered after the write"
    )


def _assert_stale(host: npt.NDArray[Any], what: str) -> None:
    """Every byte still holds the value from before the writer ran."""
    wrong = int(np.count_nonzero(host != _OLD))
    assert wrong == 0, (
        f"{what}: {wrong} of {host.size} bytes are not the old value {_OLD:#04x} (values seen: "
        f"{_seen(host)}); the unordered read ran after the write, so the race did not show"
    )


def _assert_pending(pending: bool, what: str) -> None:
    """The writer was still spinning when the reader had been queued: the race window was open."""
    assert pending, (
        f"{what}: the writer had finished by the time the reader was queued, so this run could not "
        "tell an ordered read from a lucky one (a host sync in the view, or a very slow host)"
    )


# -- 1. every view and protocol orders its reader after the writer ------------------------------


@pytest.mark.parametrize("declaration", ["constructor", "record_write"])
@pytest.mark.parametrize("consumer", [*_ORDERED, "cai", "numba"])
def test_a_reader_on_another_stream_sees_the_late_write(consumer: Consumer, declaration: str) -> None:
    if consumer == "numba":
        _numba_cuda()
    writer = torch.cuda.Stream(device=0)
    reader = _reader("new")
    assert reader.handle != writer.cuda_stream
    _warm_up(consumer, reader)
    target = _target()

    if declaration == "record_write":
        image = GpuImage.from_torch(target.tensor, layout="HWC")
        done = target.late_fill(_NEW, ms=_ORDER_MS, stream=writer.cuda_stream)
        image.record_write(writer)
    else:
        done = target.late_fill(_NEW, ms=_ORDER_MS, stream=writer.cuda_stream)
        image = GpuImage.from_torch(target.tensor, layout="HWC", stream=writer)
    assert image.stream == writer.cuda_stream
    assert image.__cuda_array_interface__["stream"] == writer.cuda_stream

    read = _consume(image, consumer, reader)
    pending = not done.done
    torch.cuda.synchronize()

    if consumer in _ORDERED:
        _assert_pending(pending, consumer)
    _assert_all(read(), _NEW, f"{consumer} read on another stream ({declaration})")


# -- 2. controls: without ordering the same reads see old data ------------------------------------


def test_control_the_raw_tensor_read_on_another_stream_sees_old_data() -> None:
    writer = torch.cuda.Stream(device=0)
    reader = torch.cuda.Stream(device=0)
    twin = _target()
    with torch.cuda.stream(reader):
        twin.tensor.clone()  # warm-up: the copy kernel is loaded before the race
    twin.late_fill(_OLD, ms=0.0, stream=writer.cuda_stream)
    target = _target()  # synchronizes

    done = target.late_fill(_NEW, ms=_RACE_MS, stream=writer.cuda_stream)
    with torch.cuda.stream(reader):
        copy = target.tensor.clone()
    pending = not done.done
    torch.cuda.synchronize()

    _assert_pending(pending, "raw tensor (control)")
    _assert_stale(copy.cpu().numpy(), "raw tensor cloned on another stream without a wait")
    _assert_all(target.tensor.cpu().numpy(), _NEW, "memory after the writer")


@pytest.mark.parametrize("consumer", _ORDERED)
def test_control_a_borrowed_pointer_without_a_stream_is_not_ordered(consumer: Consumer) -> None:
    writer = torch.cuda.Stream(device=0)
    reader = _reader("new")
    _warm_up(consumer, reader)
    target = _target()
    spec = target.spec()

    done = target.late_fill(_NEW, ms=_RACE_MS, stream=writer.cuda_stream)
    image = GpuImage.from_pointer(target.ptr, spec, owner=target.storage, stream=None).expect("HWC")
    assert image.stream is None
    read = _consume(image, consumer, reader)
    pending = not done.done
    torch.cuda.synchronize()

    _assert_pending(pending, f"{consumer} (control)")
    _assert_stale(read(), f"{consumer} read of an image that says nothing is pending")
    _assert_all(memory_bits(image), _NEW, "memory after the writer")


# -- 3. any producer, any consumer library, any consumer stream ---------------------------------


@dataclasses.dataclass(frozen=True)
class _Writer:
    """The producer's stream: what gpuimage is given (``stream``) and its raw handle."""

    producer: Producer
    stream: object
    handle: int


def _writer(producer: Producer) -> _Writer:
    if producer == "torch":
        torch_stream = torch.cuda.Stream(device=0)
        return _Writer(producer, torch_stream, int(torch_stream.cuda_stream))
    if producer == "cupy":
        cupy_stream = cupy.cuda.Stream(non_blocking=True)
        return _Writer(producer, cupy_stream, cupy_stream.ptr)
    if producer == "protocol":
        owned = cupy.cuda.Stream(non_blocking=True)
        return _Writer(producer, _StreamHandle(owned.ptr, keep=owned), owned.ptr)
    return _Writer(producer, 0, 0)


def _wrap_idle(target: _Target, writer: _Writer) -> GpuImage[HWC]:
    """The image before the write, through the producer's own library (for ``record_write``)."""
    if writer.producer == "cupy":
        return GpuImage.from_cupy(target.cupy_array(), layout="HWC")
    if writer.producer == "protocol":
        return GpuImage.from_pointer(target.ptr, target.spec(), owner=target.storage).expect("HWC")
    return GpuImage.from_torch(target.tensor, layout="HWC")


def _wrap_written(target: _Target, writer: _Writer, declaration: Declaration) -> GpuImage[HWC]:
    """The image after the write, ready on the writer's stream as a constructor learns it."""
    if declaration == "argument":
        if writer.producer == "cupy":
            return GpuImage.from_cupy(target.cupy_array(), layout="HWC", stream=writer.stream)
        if writer.producer == "protocol":
            image = GpuImage.from_pointer(
                target.ptr, target.spec(), owner=target.storage, stream=writer.stream
            )
            return image.expect("HWC")
        return GpuImage.from_torch(target.tensor, layout="HWC", stream=writer.stream)
    # The constructor's default: the producing library's current stream, the CAI's own stream, or
    # for DLPack the stream passed to the producer (the legacy default stream).
    if writer.producer == "torch":
        assert isinstance(writer.stream, torch.cuda.Stream)
        with torch.cuda.stream(writer.stream):
            return GpuImage.from_torch(target.tensor, layout="HWC")
    if writer.producer == "cupy":
        assert isinstance(writer.stream, cupy.cuda.Stream)
        with writer.stream:
            return GpuImage.from_cupy(target.cupy_array(), layout="HWC")
    if writer.producer == "protocol":
        return GpuImage.from_cuda_array_interface(_CaiSource(target, writer.handle), layout="HWC", device=0)
    return GpuImage.from_dlpack(target.tensor, layout="HWC")


@gpu_settings(12)
@given(
    producer=st.sampled_from(_PRODUCERS),
    declaration=st.sampled_from(_DECLARATIONS),
    consumer=st.sampled_from(_ORDERED),
    kind=st.sampled_from(_READER_KINDS),
)
def test_any_producer_any_consumer_any_stream(
    producer: Producer, declaration: Declaration, consumer: Consumer, kind: ReaderKind
) -> None:
    writer = _writer(producer)
    reader = _reader(kind)
    _warm_up(consumer, reader)
    target = _target()

    if declaration == "record_write":
        image = _wrap_idle(target, writer)
        target.late_fill(_NEW, ms=_QUICK_MS, stream=writer.handle)
        image.record_write(writer.stream)
    else:
        target.late_fill(_NEW, ms=_QUICK_MS, stream=writer.handle)
        image = _wrap_written(target, writer, declaration)
    assert image.stream == writer.handle, f"{producer} writer declared by {declaration}"

    read = _consume(image, consumer, reader)
    torch.cuda.synchronize()
    _assert_all(read(), _NEW, f"{producer} writer ({declaration}) -> {consumer} on a {kind} stream")


# -- 4. views queue a wait and return: no host blocking -----------------------------------------


def test_views_do_not_block_the_host() -> None:
    writer = torch.cuda.Stream(device=0)
    # One reader stream per view: a stream already ordered after a write is not ordered again, so
    # a shared reader would time only the first view's wait.
    by_torch, by_cupy, by_gpumat, by_dlpack = (torch.cuda.Stream(device=0) for _ in range(4))
    by_cupy_stream = _cupy_stream(by_cupy.cuda_stream)

    def take_views(image: GpuImage[HWC]) -> tuple[dict[str, float], list[tuple[str, _Read]]]:
        """Time each view call, then queue a copy of each view on its reader stream."""
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        tensor = image.as_torch(stream=by_torch)
        seconds["as_torch(stream=B)"] = time.perf_counter() - start
        start = time.perf_counter()
        array = image.as_cupy(stream=by_cupy_stream)
        seconds["as_cupy(stream=B)"] = time.perf_counter() - start
        start = time.perf_counter()
        mat = image.as_gpumat(stream=by_gpumat)
        seconds["as_gpumat(stream=B)"] = time.perf_counter() - start
        start = time.perf_counter()
        capsule = image.__dlpack__(stream=by_dlpack.cuda_stream)
        seconds["__dlpack__(stream=B)"] = time.perf_counter() - start

        with torch.cuda.stream(by_torch):
            torch_copy = tensor.clone()
        with by_cupy_stream:
            cupy_copy = array.copy()
        back = GpuImage.from_gpumat(mat, stream=by_gpumat)
        with torch.cuda.stream(by_gpumat):
            mat_copy = back.as_torch(stream=by_gpumat).clone()
        with torch.cuda.stream(by_dlpack):
            dlpack_copy = torch_from_dlpack(capsule).clone()  # torch takes a bare capsule as it is
        reads: list[tuple[str, _Read]] = [
            ("as_torch", lambda: torch_copy.cpu().numpy()),
            ("as_cupy", lambda: cupy_copy.get()),
            ("as_gpumat", lambda: mat_copy.cpu().numpy()),
            ("__dlpack__", lambda: dlpack_copy.cpu().numpy()),
        ]
        return seconds, reads

    twin = _target()
    twin.late_fill(_OLD, ms=0.0, stream=writer.cuda_stream)
    take_views(GpuImage.from_torch(twin.tensor, layout="HWC", stream=writer))  # warm-up
    target = _target()  # synchronizes

    done = target.late_fill(_NEW, ms=_BLOCK_MS, stream=writer.cuda_stream)
    image = GpuImage.from_torch(target.tensor, layout="HWC", stream=writer)
    seconds, reads = take_views(image)
    still_running = not done.done
    torch.cuda.synchronize()

    slow = {name: f"{value * 1e3:.1f} ms" for name, value in seconds.items() if value >= _VIEW_BUDGET_S}
    assert not slow, f"view calls waited for the {_BLOCK_MS:.0f} ms writer on the host: {slow}"
    assert still_running, "the writer finished during the view calls: one of them synchronized the host"
    for name, read in reads:
        _assert_all(read(), _NEW, f"{name}(stream=B) copied on B")


# -- 5. cached views order again after each new write -------------------------------------------


@pytest.mark.parametrize("second_on", ["another stream", "the same stream"])
@pytest.mark.parametrize("view", ["torch", "cupy"])
def test_a_cached_view_waits_for_a_later_write(view: Consumer, second_on: str) -> None:
    first = torch.cuda.Stream(device=0)
    # The same stream again: the reader already waited on it once, for the first write only.
    second = torch.cuda.Stream(device=0) if second_on == "another stream" else first
    reader = _reader("new")
    _warm_up(view, reader)
    target = _target()

    target.late_fill(_NEW, ms=_ORDER_MS, stream=first.cuda_stream)
    image = GpuImage.from_torch(target.tensor, layout="HWC", stream=first)
    cached: object = (
        image.as_torch(stream=reader.torch_stream)
        if view == "torch"
        else image.as_cupy(stream=reader.cupy_stream)
    )
    read_first = _consume(image, view, reader)

    # gpuimage orders reads after writes, not the next write after earlier reads: the test keeps
    # the second writer off the memory until the first read is done.
    second.wait_stream(reader.torch_stream)
    done = target.late_fill(_NEWER, ms=_ORDER_MS, stream=second.cuda_stream)
    image.record_write(second)
    assert image.stream == second.cuda_stream
    again: object = (
        image.as_torch(stream=reader.torch_stream)
        if view == "torch"
        else image.as_cupy(stream=reader.cupy_stream)
    )
    assert again is cached, f"as_{view}() is not cached"
    read_second = _consume(image, view, reader)
    pending = not done.done
    torch.cuda.synchronize()

    _assert_pending(pending, f"cached as_{view}() after the second write")
    _assert_all(read_first(), _NEW, f"as_{view}(stream=B) after the first write")
    _assert_all(read_second(), _NEWER, f"cached as_{view}(stream=B) after record_write() on {second_on}")


# -- 6. writing() and synchronize() --------------------------------------------------------------


def test_writing_orders_the_writer_and_records_its_write() -> None:
    earlier = torch.cuda.Stream(device=0)
    writer = torch.cuda.Stream(device=0)
    reader = _reader("new")
    _warm_up("torch", reader)
    target = _target()

    # A write still pending on another stream when the block starts: writing() must queue the
    # writer after it, or that earlier (longer) write lands last and memory ends with _NEW.
    target.late_fill(_NEW, ms=_RACE_MS, stream=earlier.cuda_stream)
    image = GpuImage.from_torch(target.tensor, layout="HWC", stream=earlier)
    with image.writing(writer) as written:
        assert written is image
        done = target.late_fill(_NEWER, ms=_ORDER_MS, stream=writer.cuda_stream)
    assert image.stream == writer.cuda_stream
    read = _consume(image, "torch", reader)
    pending = not done.done
    torch.cuda.synchronize()

    _assert_pending(pending, "writing()")
    _assert_all(read(), _NEWER, "a read on B after writing(A)")
    _assert_all(memory_bits(image), _NEWER, "memory after an earlier write and writing(A)")


@pytest.mark.parametrize("consumer", _ORDERED)
def test_writing_waits_for_reads_recorded_by_reading(consumer: Consumer) -> None:
    writer = torch.cuda.Stream(device=0)
    reader = _reader("new")
    _warm_up(consumer, reader)
    target = _target()
    image = GpuImage.from_torch(target.tensor, layout="HWC")  # ready on the legacy default stream

    # A slow reader: its stream is busy for a while (a spin that writes nothing), then it copies.
    reader_busy = _late_fill(target.ptr, 0, ms=_ORDER_MS, stream=reader.handle, nbytes=0)
    with image.reading(reader.handle):  # the read's copy is queued inside: reading() records it
        read = _consume(image, consumer, reader)
    # A quick overwrite: writing() must queue it after the reader's copy, which is still waiting.
    with image.writing(writer):
        target.late_fill(_NEW, ms=0.0, stream=writer.cuda_stream)
    pending = not reader_busy.done
    torch.cuda.synchronize()

    _assert_pending(pending, f"{consumer} reader before writing()")
    _assert_stale(read(), f"{consumer} read queued before writing(): overwritten before it ran")
    _assert_all(memory_bits(image), _NEW, "memory after writing()")


def test_synchronize_waits_on_the_host_and_clears_the_stream() -> None:
    writer = torch.cuda.Stream(device=0)
    target = _target()
    done = target.late_fill(_NEW, ms=_ORDER_MS, stream=writer.cuda_stream)
    image = GpuImage.from_torch(target.tensor, layout="HWC", stream=writer)
    crop = image.crop(2, 1, 9, 7)
    assert crop.stream == writer.cuda_stream

    image.synchronize()
    assert done.done, "synchronize() returned before the writer finished"
    assert image.stream is None
    assert crop.stream is None
    assert image.__cuda_array_interface__["stream"] is None
    # memory_bits copies with a plain cudaMemcpy on the legacy default stream, which does not wait
    # for the (non-blocking) writer stream: only synchronize() made the data visible to it.
    _assert_all(memory_bits(image), _NEW, "a host copy after synchronize()")
    torch.cuda.synchronize()


# -- 7. crops share the ready stream with their image --------------------------------------------


@pytest.mark.parametrize("recorded_on", ["image", "crop"])
def test_crops_share_the_ready_stream(recorded_on: str) -> None:
    writer = torch.cuda.Stream(device=0)
    reader = _reader("new")
    _warm_up("torch", reader)
    target = _target()
    image = GpuImage.from_torch(target.tensor, layout="HWC")
    crop = image.crop(5, 3, 17, 11)
    inner = crop.crop(1, 2, 6, 4)

    done = target.late_fill(_NEW, ms=_ORDER_MS, stream=writer.cuda_stream)
    (image if recorded_on == "image" else crop).record_write(writer)
    assert image.stream == crop.stream == inner.stream == writer.cuda_stream
    other = crop if recorded_on == "image" else image
    read_other = _consume(other, "torch", reader)
    read_inner = _consume(inner, "torch", reader)
    pending = not done.done
    torch.cuda.synchronize()

    _assert_pending(pending, "crops")
    _assert_all(read_other(), _NEW, f"the {'crop' if recorded_on == 'image' else 'image'} read on B")
    _assert_all(read_inner(), _NEW, "a crop of the crop read on B")


# -- constructors record where the data is ready -------------------------------------------------


def test_constructors_record_the_ready_stream() -> None:
    torch_stream = torch.cuda.Stream(device=0)
    cupy_stream = cupy.cuda.Stream(non_blocking=True)
    target = _target()
    spec = target.spec()
    handle = int(torch_stream.cuda_stream)

    assert GpuImage.from_torch(target.tensor, layout="HWC").stream == 0
    with torch.cuda.stream(torch_stream):
        assert GpuImage.from_torch(target.tensor, layout="HWC").stream == handle
        assert GpuImage.empty(4, 5, 3).stream == handle
    assert GpuImage.from_torch(target.tensor, layout="HWC", stream=cupy_stream).stream == cupy_stream.ptr
    assert GpuImage.from_cupy(target.cupy_array(), layout="HWC").stream == cupy.cuda.get_current_stream().ptr
    with cupy_stream:
        assert GpuImage.from_cupy(target.cupy_array(), layout="HWC").stream == cupy_stream.ptr
    assert GpuImage.from_cupy(target.cupy_array(), layout="HWC", stream=torch_stream).stream == handle
    assert GpuImage.from_pointer(target.ptr, spec).stream is None
    assert GpuImage.from_pointer(target.ptr, spec, stream=_StreamHandle(handle)).stream == handle
    assert GpuImage.from_pointer(target.ptr, spec, stream=2).stream == 2
    assert GpuImage.from_dlpack(target.tensor, layout="HWC").stream == 0
    assert GpuImage.from_dlpack(target.tensor, layout="HWC", stream=torch_stream).stream == handle

    # The CAI's own stream: 1 names the legacy default stream, stored as 0 and exported as 1 again.
    for exported, stored in ((None, None), (1, 0), (2, 2), (handle, handle)):
        image = GpuImage.from_cuda_array_interface(_CaiSource(target, exported), layout="HWC", device=0)
        assert image.stream == stored, f"CAI stream {exported}"
        assert image.__cuda_array_interface__["stream"] == exported, f"CAI stream {exported}"
    torch.cuda.synchronize()
