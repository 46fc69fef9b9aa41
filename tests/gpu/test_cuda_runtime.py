"""Each real runtime's calls on a GPU (CuPy's runtime bindings, torch's streams and allocator), and
the default that combines them. A late producer (a spin, then a write) makes every ordering testable:
without the wait the consumer reads stale data, which the control test shows."""

from __future__ import annotations

import gc
from collections.abc import Callable

import numpy as np
import pytest
import torch

import gpuimage
from gpuimage import CudaError, Device, GpuImage, ImageSpec, _runtime
from gpuimage._cupy import view as cupy_view
from gpuimage._cupy_runtime import CupyRuntime
from gpuimage._cupy_runtime import RecordedEvent as CupyEvent
from gpuimage._streams import Event
from gpuimage._torch import view as torch_view
from gpuimage._torch_runtime import TorchRuntime

pytestmark = pytest.mark.cuda

SPIN_CYCLES = 200_000_000  # ~0.1 s on an H100: far longer than launching the consumer
RUNTIMES = [CupyRuntime(cupy_view), TorchRuntime(torch_view)]
IDS = ["cupy", "torch"]


def _late_producer(data: torch.Tensor) -> torch.cuda.Stream:
    """A stream that writes ones into ``data`` after a spin; nothing has been written on return."""
    torch.cuda.synchronize()
    producer = torch.cuda.Stream()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(SPIN_CYCLES)  # pyright: ignore[reportPrivateUsage]  # torch's GPU spin
        data.fill_(1.0)
    return producer


def _late_producer_read(order: Callable[[int, int], None] | None) -> torch.Tensor:
    """A consumer on stream B copies what a late producer on stream A writes, ordered by ``order``."""
    data = torch.zeros(1 << 20, device="cuda")
    producer = _late_producer(data)
    consumer = torch.cuda.Stream()
    if order is not None:
        order(producer.cuda_stream, consumer.cuda_stream)
    with torch.cuda.stream(consumer):
        copy = data.clone()
    torch.cuda.synchronize()
    return copy


def test_without_ordering_the_consumer_reads_stale_data() -> None:
    """The control: the race is real, so the tests below can fail."""
    assert float(_late_producer_read(None).sum()) == 0.0


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_wait_makes_the_consumer_see_the_final_data(runtime: gpuimage.Runtime) -> None:
    assert bool(_late_producer_read(lambda a, b: runtime.wait(a, b, 0)).eq(1.0).all())


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_a_recorded_event_orders_the_consumer(runtime: gpuimage.Runtime) -> None:
    events: list[Event] = []

    def order(producer: int, consumer: int) -> None:
        events.append(runtime.record(producer, 0))
        assert not events[0].query(), "the spin is still running: the test would prove nothing otherwise"
        runtime.wait_event(events[0], consumer)

    assert bool(_late_producer_read(order).eq(1.0).all())
    events[0].synchronize()
    assert events[0].query()


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_synchronize_waits_for_the_producer(runtime: gpuimage.Runtime) -> None:
    data = torch.zeros(1 << 20, device="cuda")
    producer = _late_producer(data)
    done = torch.cuda.Event()
    done.record(producer)
    assert not done.query(), "the spin is still running: the test would prove nothing otherwise"
    runtime.synchronize(producer.cuda_stream, 0)
    assert done.query()


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_stream_idle_tells_a_busy_stream_from_a_finished_one(runtime: gpuimage.Runtime) -> None:
    producer = _late_producer(torch.zeros(1 << 20, device="cuda"))
    assert not runtime.stream_idle(producer.cuda_stream, 0)
    producer.synchronize()
    assert runtime.stream_idle(producer.cuda_stream, 0)


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_allocations_are_aligned_usable_and_ready_on_their_stream(runtime: gpuimage.Runtime) -> None:
    memory = runtime.allocate(1000, Device("cuda", 0), alignment=256, stream=None)
    assert memory.ptr % 256 == 0
    assert memory.stream == runtime.current_stream(0)
    image = GpuImage.from_pointer(
        memory.ptr, ImageSpec(height=10, width=100, channels=1, device=0), owner=memory.owner
    )
    image.as_torch().fill_(3)
    assert int(image.as_torch().sum()) == 3000
    side = torch.cuda.Stream()
    asked = runtime.allocate(64, Device("cuda", 0), alignment=1, stream=side.cuda_stream)
    # CuPy's pool takes the memory for the stream asked; torch's allocator serves its current stream
    # (an external stream may be destroyed before the block is freed)
    expected = side.cuda_stream if runtime.name == "cupy" else torch.cuda.current_stream().cuda_stream
    assert asked.stream == expected
    with torch.cuda.stream(side):  # a default stream always exists: both pools serve it when asked
        default = runtime.allocate(64, Device("cuda", 0), alignment=1, stream=0)
    assert default.stream == 0


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
@pytest.mark.parametrize("on_current", [True, False], ids=["current-stream", "side-stream"])
def test_copies_round_trip_a_pitched_crop(runtime: gpuimage.Runtime, on_current: bool) -> None:
    pattern = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    crop = GpuImage.from_numpy(pattern, layout="HWC").crop(2, 1, 5, 4)  # pitched: rows of 10 pixels
    device = GpuImage.empty(4, 5, 3, "uint8", device=0, row_alignment=256)
    back = GpuImage.empty(4, 5, 3, "uint8", device="cpu")
    side = torch.cuda.Stream()
    stream = runtime.current_stream(0) if on_current else side.cuda_stream
    torch.cuda.synchronize()  # the allocations' streams are done: the copies need no ordering here
    runtime.copy(crop, device, stream, 0)
    torch.cuda.synchronize()
    runtime.copy(device, back, stream, 0)
    assert np.array_equal(back.as_numpy(), pattern[1:5, 2:7])


def test_cupy_knows_which_device_owns_a_pointer() -> None:
    tensor = torch.empty(16, device="cuda:0")
    assert CupyRuntime(cupy_view).pointer_device(tensor.data_ptr()) == 0
    host = np.empty(16, np.uint8)
    assert CupyRuntime(cupy_view).pointer_device(host.ctypes.data) is None
    assert TorchRuntime(torch_view).pointer_device(tensor.data_ptr()) is None, "torch cannot ask"


@pytest.mark.parametrize("runtime", RUNTIMES, ids=IDS)
def test_the_device_guard_makes_a_device_current_and_restores_it(runtime: gpuimage.Runtime) -> None:
    torch.cuda.set_device(0)
    with runtime.device(0):
        assert torch.cuda.current_device() == 0
    if torch.cuda.device_count() < 2:
        pytest.skip("switching devices needs two GPUs")
    with runtime.device(1):
        assert torch.cuda.current_device() == 1
    assert torch.cuda.current_device() == 0
    with pytest.raises(KeyError), runtime.device(1):
        raise KeyError
    assert torch.cuda.current_device() == 0, "restored through an exception"


def test_a_failed_cuda_call_raises_cuda_error() -> None:
    with pytest.raises(CudaError, match="synchronizing stream 0x0 on cuda:4096: expected the CUDA call"):
        CupyRuntime(cupy_view).synchronize(0, 4096)
    assert torch.cuda.current_device() == 0


def test_the_default_takes_cupys_events_and_torchs_memory() -> None:
    chosen = _runtime._default_runtime()
    assert chosen.has_gpu
    assert chosen.name == "cupy+torch"
    assert isinstance(chosen.record(0, 0), CupyEvent)
    gc.collect()  # memory of earlier tests left in garbage cycles goes now, not during the counts below
    gpuimage.pending_releases()
    before = torch.cuda.memory_allocated()
    memory = chosen.allocate(64, Device("cuda", 0), alignment=1, stream=None)
    assert torch.cuda.memory_allocated() > before  # torch's caching allocator served it
    assert memory.stream == torch.cuda.current_stream().cuda_stream
    del memory
    gc.collect()
    assert torch.cuda.memory_allocated() == before  # and took it back with its owner


def test_cupy_event_handles_are_recorded_again_once_dropped() -> None:
    """A dropped event's handle is reused by the next record (no create/destroy per conversion),
    never while an event object still holds it; a wait made before the reuse still waits for the
    record it was made after."""
    stream = torch.cuda.Stream()
    handle = stream.cuda_stream
    first = CupyEvent(handle, 0)
    reused = first._handle  # pyright: ignore[reportPrivateUsage]
    del first
    gc.collect()
    second = CupyEvent(handle, 0)
    third = CupyEvent(handle, 0)
    assert second._handle == reused  # pyright: ignore[reportPrivateUsage]
    assert third._handle != reused  # pyright: ignore[reportPrivateUsage]
    values = torch.zeros(1 << 20, device="cuda")
    stream.wait_stream(torch.cuda.current_stream())  # the zeros land before the fill
    with torch.cuda.stream(stream):
        torch.cuda._sleep(20_000_000)
        values.fill_(1.0)
    done = CupyEvent(handle, 0)
    consumer = torch.cuda.Stream()
    done.wait_on(consumer.cuda_stream)
    del done  # its handle goes back to the spares and is recorded again at once, on an idle stream
    CupyEvent(torch.cuda.Stream().cuda_stream, 0)
    with torch.cuda.stream(consumer):
        total = values.sum()
    consumer.synchronize()  # item() reads on the current stream, which does not wait for consumer
    assert total.item() == float(1 << 20)  # the consumer waited for the fill, not for the re-record
    values.record_stream(consumer)
