"""Stream-lifetime scenarios, run in a subprocess by ``test_cuda_lifetime_streams.py``.

Each scenario: a producer stream writes 7 into a source (torch or CuPy) after a sleep; a consumer
stream takes a view of the image (``as_torch``, ``as_cupy``, ``as_gpumat``, DLPack, CAI), then waits
on a host flag (a kernel spinning on mapped host memory) before it sums the view. The host waits for
the producer, drops the image, the view, the source and both streams in the scenario's order,
churns both allocators on their default streams (memory released too early is handed out again and
overwritten with a sentinel), waits for the churn, and only then raises the flag: the consumer's
read comes after the churn by construction, not by timing. Finally the sum is checked.

Usage: ``python _stream_scenarios.py SCENARIOS_JSON [--control]``. One JSON line per finished
scenario on stdout; a crash leaves the scenario that started last without its line. ``--control``
switches gpuimage's deferred release off, to show that the hazard is real.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
from collections.abc import Callable
from typing import Any

import cupy
import cv2
import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import GpuImage, _lifetime, runtime

HEIGHT, WIDTH, CHANNELS = 1024, 1024, 4
NBYTES = HEIGHT * WIDTH * CHANNELS
SENTINEL = 0xA5
PRODUCER_SLEEP = 2_000_000  # GPU cycles (about 1 ms): the producer is late, the consumer must wait
SPIN_LIMIT = 20_000_000_000  # GPU cycles (about 10 s): a gate nobody opens cannot hang the run

_GATE_SOURCE = r"""
extern "C" __global__ void wait_for_gate(const volatile int* gate, long long limit) {
    long long start = clock64();
    while (*gate == 0 && clock64() - start < limit) { }
}
"""


class Gate:
    """A flag in mapped host memory that a kernel on the consumer stream spins on until the host
    raises it."""

    def __init__(self) -> None:
        self.host = cupy.cuda.runtime.hostAlloc(4, 2)  # cudaHostAllocMapped
        self.flag = ctypes.c_int.from_address(self.host)
        self.device = self.host  # unified addressing: the device sees mapped memory at the same address
        self.kernel = cupy.RawKernel(_GATE_SOURCE, "wait_for_gate")

    def close_on(self, stream: Any) -> None:
        self.flag.value = 0
        with stream:
            self.kernel((1,), (1,), (cupy.uintp(self.device), cupy.int64(SPIN_LIMIT)))

    def open(self) -> None:
        self.flag.value = 1


class Streams:
    """A stream of one kind, with its raw handle, a way to run torch and CuPy work on it, and a way
    to drop it (for a raw handle: destroy it)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.obj: Any
        if kind == "torch":
            self.obj = torch.cuda.Stream()
            self.handle = int(self.obj.cuda_stream)
        elif kind == "cupy":
            self.obj = cupy.cuda.Stream(non_blocking=True)
            self.handle = int(self.obj.ptr)
        else:
            self.handle = int(cupy.cuda.runtime.streamCreateWithFlags(1))  # cudaStreamNonBlocking
            self.obj = self.handle
        self.torch_stream: Any = torch.cuda.ExternalStream(self.handle)
        self.cupy_stream: Any = cupy.cuda.ExternalStream(self.handle)

    def drop(self) -> None:
        if self.kind == "raw" and self.handle:
            cupy.cuda.runtime.streamDestroy(self.handle)
        self.obj = None
        self.handle = 0
        self.torch_stream = self.cupy_stream = None


def _source(kind: str, producer: Streams) -> Any:
    torch.cuda.synchronize()
    with torch.cuda.stream(producer.torch_stream):
        torch.cuda._sleep(PRODUCER_SLEEP)
    if kind == "torch":
        source = torch.zeros((HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        with torch.cuda.stream(producer.torch_stream):
            source.fill_(7)
        return source
    source_array = cupy.zeros((HEIGHT, WIDTH, CHANNELS), dtype=cupy.uint8)
    cupy.cuda.runtime.deviceSynchronize()
    with producer.cupy_stream:
        source_array.fill(7)
    return source_array


def _consume(api: str, image: GpuImage, consumer: Streams, gate: Gate) -> tuple[Any, Any]:
    """Take the view for the consumer stream as a user of that stream's library would, then queue a
    late read there: (view, device sum)."""
    view: Any
    kind = consumer.kind
    if api == "as_torch":
        view = image.as_torch(stream=consumer.obj)
    elif api == "as_cupy":
        view = image.as_cupy(stream=consumer.obj)
    elif api == "as_gpumat":
        mat = image.expect("HWC").as_gpumat(stream=consumer.obj)
        memory = cupy.cuda.UnownedMemory(mat.cudaPtr(), NBYTES, mat)
        view = cupy.ndarray((HEIGHT, WIDTH, CHANNELS), cupy.uint8, cupy.cuda.MemoryPointer(memory, 0))
    elif api == "dlpack" and kind == "torch":
        with torch.cuda.stream(consumer.obj):  # torch passes its current stream
            view = torch_from_dlpack(image)
    elif api == "dlpack" and kind == "cupy":
        with consumer.obj:  # CuPy passes its current stream
            view = cupy.from_dlpack(image)
    elif api == "dlpack":
        view = torch_from_dlpack(image.__dlpack__(stream=consumer.handle, max_version=(1, 0)))
    elif kind == "torch":  # cai
        with torch.cuda.stream(consumer.obj):
            view = torch.as_tensor(image, device="cuda")
    elif kind == "cupy":
        with consumer.obj:
            view = cupy.asarray(image)
    else:
        with consumer.cupy_stream:
            view = cupy.asarray(image)
    gate.close_on(consumer.cupy_stream)
    if isinstance(view, torch.Tensor):
        with torch.cuda.stream(consumer.torch_stream):
            return view, view.sum(dtype=torch.int64)
    with consumer.cupy_stream:
        return view, view.sum(dtype=cupy.int64)


def _churn() -> list[Any]:
    kept: list[Any] = []
    for index in range(32):
        size = NBYTES if index % 2 == 0 else NBYTES * 2
        tensor = torch.full((size,), SENTINEL, dtype=torch.uint8, device="cuda")
        array = cupy.full((size,), SENTINEL, dtype=cupy.uint8)
        kept.extend((tensor, array))
    return kept


def run(scenario: dict[str, Any], gate: Gate) -> dict[str, Any]:
    producer, consumer = Streams(scenario["producer"]), Streams(scenario["consumer"])
    refs: dict[str, Any] = {"source": _source(scenario["source"], producer)}
    refs["image"] = (
        GpuImage.from_torch(refs["source"], layout="HWC", stream=producer.obj)
        if (scenario["source"] == "torch")
        else GpuImage.from_cupy(refs["source"], layout="HWC", stream=producer.obj)
    )
    refs["view"], total = _consume(scenario["api"], refs["image"], consumer, gate)
    torch.cuda.ExternalStream(producer.handle).synchronize()  # only the consumer's read is pending
    drops: dict[str, Callable[[], None]] = {
        "producer": producer.drop,
        "consumer": consumer.drop,
    }
    order: list[str] = list(scenario["order"])
    # raw handles are the caller's to keep alive until the family is gone (the documented contract)
    raw_last = [name for name in ("producer", "consumer") if scenario[name] == "raw"]
    for name in [name for name in order if name not in raw_last] + raw_last:
        if name in drops:
            drops[name]()
        else:
            refs.pop(name)
        gc.collect()
    kept = _churn()
    # the churn ran on the legacy default streams, which never wait for the (non-blocking) consumer
    torch.cuda.default_stream().synchronize()
    cupy.cuda.Stream.null.synchronize()
    gate.open()
    torch.cuda.synchronize()
    cupy.cuda.runtime.deviceSynchronize()
    value = int(total.item()) if isinstance(total, torch.Tensor) else int(total.get())
    del kept
    return {**scenario, "sum": value, "expected": 7 * NBYTES}


def main() -> None:
    scenarios = json.loads(sys.argv[1])
    if "--control" in sys.argv:
        assert runtime().has_gpu  # the runtime is picked once: it will not install its recorder again
        _lifetime.set_recorder(None)
    assert cv2.cuda.getCudaEnabledDeviceCount() >= 0  # imported: the GpuMat views need cv2
    gate = Gate()
    for scenario in scenarios:
        print(json.dumps({"started": scenario}), flush=True)
        print(json.dumps(run(scenario, gate)), flush=True)


if __name__ == "__main__":
    main()
