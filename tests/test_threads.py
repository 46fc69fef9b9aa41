"""Many threads asking for the same lazy views at once each get the one cached view, and nothing
crashes (CPU: host images, and device headers over a fake pointer)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from gpuimage import GpuImage, ImageSpec

THREADS = 16
FAKE = 0x7F00_0000_0000


def _race(view: Callable[[], object], rounds: int = 20) -> list[object]:
    """Call ``view`` from THREADS threads released together; return what each got."""
    results: list[object] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            got = view()
            with lock:
                results.append(got)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == THREADS
    return results


@pytest.mark.parametrize("name", ["as_numpy", "as_torch"])
def test_host_views_are_made_once_under_contention(name: str) -> None:
    for _ in range(20):
        image = GpuImage.from_numpy(np.zeros((8, 8, 3), np.uint8), layout="HWC")
        results = _race(getattr(image, name))
        assert all(result is results[0] for result in results)
        assert getattr(image, name)() is results[0]


@pytest.mark.parametrize("name", ["as_cupy", "as_gpumat"])
def test_device_headers_are_made_once_under_contention(name: str) -> None:
    for _ in range(20):
        image = GpuImage.from_pointer(FAKE, ImageSpec(height=8, width=8, channels=3)).expect("HWC")
        results = _race(getattr(image, name))
        assert all(result is results[0] for result in results)


def test_crops_and_exports_from_many_threads() -> None:
    image = GpuImage.from_numpy(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3), layout="HWC")

    def work() -> object:
        crops = [image.crop(x, x, 8, 8) for x in range(0, 56, 7)]
        return [int(np.from_dlpack(crop)[0, 0, 0]) for crop in crops]

    results = _race(work)
    assert all(result == results[0] for result in results)
