"""Both ordering back ends (CuPy's runtime, torch's streams) really order a late producer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from gpuimage import _cupy, _torch

pytestmark = pytest.mark.cuda

SPIN_CYCLES = 200_000_000  # ~0.1 s on an H100: far longer than launching the consumer


def _late_producer_read(wait: Callable[[int, int, int], None] | None) -> torch.Tensor:
    """A producer on stream A writes ones after a spin; a consumer on stream B copies the data."""
    data = torch.zeros(1 << 20, device="cuda")
    torch.cuda.synchronize()
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(SPIN_CYCLES)  # pyright: ignore[reportPrivateUsage]  # torch's GPU spin
        data.fill_(1.0)
    if wait is not None:
        wait(producer.cuda_stream, consumer.cuda_stream, data.device.index or 0)
    with torch.cuda.stream(consumer):
        copy = data.clone()
    torch.cuda.synchronize()
    return copy


def test_without_ordering_the_consumer_reads_stale_data() -> None:
    """The control: the race is real, so the tests below can fail."""
    assert float(_late_producer_read(None).sum()) == 0.0


@pytest.mark.parametrize("wait", [_cupy.wait, _torch.wait], ids=["cupy", "torch"])
def test_ordering_makes_the_consumer_see_the_final_data(wait: Callable[[int, int, int], None]) -> None:
    assert bool(_late_producer_read(wait).eq(1.0).all())


@pytest.mark.parametrize("synchronize", [_cupy.synchronize, _torch.synchronize], ids=["cupy", "torch"])
def test_synchronize_waits_for_the_producer(synchronize: Callable[[int, int], None]) -> None:
    data = torch.zeros(1 << 20, device="cuda")
    torch.cuda.synchronize()
    producer = torch.cuda.Stream()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(SPIN_CYCLES)  # pyright: ignore[reportPrivateUsage]
        data.fill_(1.0)
    done = torch.cuda.Event()
    done.record(producer)
    assert not done.query(), "the spin is still running: the test would prove nothing otherwise"
    synchronize(producer.cuda_stream, 0)
    assert done.query()
