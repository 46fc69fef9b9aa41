"""Two GPUs: events and waits happen on the image's own device, which is restored afterwards."""

from __future__ import annotations

import pytest
import torch

from gpuimage import GpuImage

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"
    ),
]

SPIN_CYCLES = 200_000_000  # ~0.1 s: far longer than queueing the consumer


def _late_image(device: int) -> tuple[GpuImage, torch.Tensor]:
    """An image on ``device`` that a side stream there fills with ones after a spin."""
    data = torch.zeros(64, 96, 3, device=f"cuda:{device}")
    torch.cuda.synchronize(device)
    writer = torch.cuda.Stream(device=device)
    with torch.cuda.device(device), torch.cuda.stream(writer):
        torch.cuda._sleep(SPIN_CYCLES)  # pyright: ignore[reportPrivateUsage]
        data.fill_(1.0)
    return GpuImage.from_torch(data, layout="HWC", stream=writer), data


def test_a_consumer_on_the_images_device_waits_and_the_current_device_is_restored() -> None:
    torch.cuda.set_device(0)
    image, _ = _late_image(1)
    reader = torch.cuda.Stream(device=1)
    view = image.as_torch(stream=reader)
    assert torch.cuda.current_device() == 0, "gpuimage switched devices and did not switch back"
    with torch.cuda.device(1), torch.cuda.stream(reader):
        copy = view.clone()
    torch.cuda.synchronize(1)
    assert bool(copy.eq(1.0).all())


def test_record_write_and_writing_on_another_device() -> None:
    torch.cuda.set_device(0)
    image, data = _late_image(1)
    other = torch.cuda.Stream(device=1)
    with image.writing(other), torch.cuda.device(1), torch.cuda.stream(other):
        data.add_(1.0)  # must run after the late fill: 1 + 1
    assert torch.cuda.current_device() == 0
    reader = torch.cuda.Stream(device=1)
    view = image.as_torch(stream=reader)
    with torch.cuda.device(1), torch.cuda.stream(reader):
        copy = view.clone()
    torch.cuda.synchronize(1)
    assert bool(copy.eq(2.0).all())


@pytest.mark.parametrize("target", ["cuda:0", "cpu"])
def test_copies_to_another_device_wait_for_the_source(target: str) -> None:
    torch.cuda.set_device(0)
    image, _ = _late_image(1)
    moved = image.cuda(0) if target == "cuda:0" else image.cpu()
    assert str(moved.device) == target
    if target == "cpu":
        assert moved.stream is None
    moved.synchronize()
    assert bool(moved.as_torch().cpu().eq(1.0).all())


def test_conversions_run_on_the_images_own_device() -> None:
    """Kernels compile, load and launch on the second GPU, after its late write; the current device
    is restored; a batch on each device uses that device's staging (twice, to reuse the slots)."""
    import gpuimage as gi

    torch.cuda.set_device(0)
    image, _ = _late_image(1)
    planar = image.to_layout("CHW")
    normalized = gi.normalize(image, 0.5, 0.25)
    assert torch.cuda.current_device() == 0
    assert planar.device.index == 1
    assert bool(planar.as_torch().eq(1.0).all())
    assert bool(normalized.as_torch().eq(2.0).all())  # (1 * 1 - 0.5) / 0.25 with scale 1 for floats
    for _ in range(2):
        for device in (0, 1):
            frame = torch.full((20, 30, 3), 51, dtype=torch.uint8, device=f"cuda:{device}")
            with torch.cuda.device(device):
                batch = gi.normalize_batch([GpuImage.from_torch(frame, layout="HWC")] * 3, 0.0, 1.0)
            assert batch.device == torch.device("cuda", device)
            assert torch.allclose(batch, torch.full_like(batch, 51 / 255))
