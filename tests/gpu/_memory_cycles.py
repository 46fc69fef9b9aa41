"""Child process of ``test_cuda_lifetime.py``: many image/view cycles, then a memory report.

Run as ``python _memory_cycles.py CYCLES HANG_SECONDS``. Each cycle is::

    img = GpuImage.from_torch(t, layout="HWC"); img.as_torch(); img.as_cupy(); img.as_gpumat(); del img

It prints one JSON line: device memory and held GpuMat views before, during and after the loop.
It runs in its own process so that a deadlock (garbage collection re-entering a lock) ends this
process, with every thread's traceback on stderr, rather than the test session.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import sys
import time
import weakref


def run(cycles: int, hang_seconds: float) -> dict[str, object]:
    faulthandler.dump_traceback_later(hang_seconds, exit=True)

    import cupy
    import torch

    import gpuimage
    from gpuimage import GpuImage
    from gpuimage._opencv import held_mats

    def pool_bytes() -> int:
        return int(cupy.get_default_memory_pool().used_bytes())

    tensor = (torch.arange(48 * 64 * 3) % 101).to(torch.uint8).reshape(48, 64, 3).to("cuda")
    # One warm-up cycle imports the spokes and initializes CuPy and OpenCV.
    warm = GpuImage.from_torch(tensor, layout="HWC")
    warm.as_torch()
    warm.as_cupy()
    warm.as_gpumat()
    del warm
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()

    start_allocated, start_pool, start_mats = torch.cuda.memory_allocated(), pool_bytes(), held_mats()
    peak_allocated, peak_pool, peak_mats = start_allocated, start_pool, start_mats
    samples: list[weakref.ref[GpuImage]] = []
    began = time.perf_counter()
    for index in range(cycles):
        img = GpuImage.from_torch(tensor, layout="HWC")
        img.as_torch()
        img.as_cupy()
        img.as_gpumat()
        if index % 1000 == 0:
            samples.append(weakref.ref(img))
        del img
        if index % 500 == 499:
            peak_allocated = max(peak_allocated, torch.cuda.memory_allocated())
            peak_pool = max(peak_pool, pool_bytes())
            peak_mats = max(peak_mats, held_mats())
    elapsed = time.perf_counter() - began
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()
    faulthandler.cancel_dump_traceback_later()
    return {
        "cycles": cycles,
        "seconds": elapsed,
        "start_allocated": start_allocated,
        "peak_allocated": peak_allocated,
        "end_allocated": torch.cuda.memory_allocated(),
        "start_pool": start_pool,
        "peak_pool": peak_pool,
        "end_pool": pool_bytes(),
        "start_mats": start_mats,
        "peak_mats": peak_mats,
        "end_mats": held_mats(),
        "images_alive_after_gc": sum(ref() is not None for ref in samples),
        "images_sampled": len(samples),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), float(sys.argv[2]))), flush=True)
