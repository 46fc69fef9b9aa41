"""Leaks and threads on a GPU: 100,000 create/view/drop cycles per backend leave device memory and
Python object counts unchanged; views taken from many threads on many streams stay ordered."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

import cupy
import pytest
import torch
import torch.utils.dlpack

import gpuimage
from gpuimage import GpuImage
from gpuimage._opencv import held_mats

pytestmark = pytest.mark.cuda

CYCLES = 100_000


def _counts() -> tuple[int, int, int, int]:
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()
    return (
        torch.cuda.memory_allocated(),
        cupy.get_default_memory_pool().used_bytes(),
        held_mats(),
        len(gc.get_objects()),
    )


BACKENDS: dict[str, Callable[[torch.Tensor], object]] = {
    "torch": lambda t: GpuImage.from_torch(t, layout="HWC").as_torch(),
    "cupy": lambda t: GpuImage.from_torch(t, layout="HWC").as_cupy(),
    "gpumat": lambda t: GpuImage.from_torch(t, layout="HWC").as_gpumat(),
    "dlpack": lambda t: torch.utils.dlpack.from_dlpack(GpuImage.from_torch(t, layout="HWC")),
    "cai": lambda t: GpuImage.from_cuda_array_interface(t, layout="HWC").as_cupy(),
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_create_view_drop_cycles_leak_nothing(backend: str) -> None:
    cycle = BACKENDS[backend]
    frame = torch.zeros(1080, 1920, 3, dtype=torch.uint8, device="cuda")
    for _ in range(1_000):  # warm-up: caches, lazily imported modules, the allocator's pools
        cycle(frame)
    before = _counts()
    for _ in range(CYCLES):
        cycle(frame)
    after = _counts()
    names = ("torch bytes", "cupy pool bytes", "held GpuMats")
    for name, start, end in zip(names, before, after, strict=False):
        assert end == start, f"{backend}: {name} {start} -> {end} after {CYCLES} cycles"
    # Python objects: a leak of one object per cycle would show as +100,000.
    assert after[3] - before[3] < 200, f"{backend}: {after[3] - before[3]} more live objects"


def test_views_from_many_threads_on_many_streams_stay_ordered() -> None:
    frame = torch.zeros(512, 512, 3, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    writer = torch.cuda.Stream()
    with torch.cuda.stream(writer):
        torch.cuda._sleep(200_000_000)  # pyright: ignore[reportPrivateUsage]  # ~0.1 s late writer
        frame.fill_(3.0)
    image = GpuImage.from_torch(frame, layout="HWC", stream=writer)
    sums: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)
    lock = threading.Lock()

    def reader() -> None:
        try:
            stream = torch.cuda.Stream()
            barrier.wait()
            view = image.as_torch(stream=stream)
            with torch.cuda.stream(stream):
                total = view.sum()
            stream.synchronize()
            with lock:
                sums.append(float(total))
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sums == [3.0 * frame.numel()] * 16
