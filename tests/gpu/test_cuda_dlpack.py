"""DLPack imports on the GPU: torch and CuPy objects read by their spoke where DLPack would queue
nothing, and through the capsule (with the producer's wait) where it would."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import cupy
import torch

from gpuimage import GpuImage

pytestmark = pytest.mark.cuda


def _count_dlpack_calls(monkeypatch: pytest.MonkeyPatch, kind: type[Any]) -> list[object]:
    asked: list[object] = []
    real = kind.__dlpack__

    def counted(self: object, *args: Any, **kwargs: Any) -> object:
        asked.append(kwargs.get("stream"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(kind, "__dlpack__", counted)
    return asked


def test_a_tensor_on_the_default_stream_is_read_by_the_torch_spoke(monkeypatch: pytest.MonkeyPatch) -> None:
    tensor = torch.arange(8 * 5 * 3, dtype=torch.uint8, device="cuda").reshape(8, 5, 3)
    asked = _count_dlpack_calls(monkeypatch, torch.Tensor)
    image = GpuImage.from_dlpack(tensor, layout="HWC")
    assert asked == []
    assert image.ptr == tensor.data_ptr()
    assert image.stream == 0  # ready on the legacy default stream, as the capsule route says
    assert torch.equal(image.as_torch(), tensor)


def test_a_tensor_queued_on_a_side_stream_goes_through_its_capsule_and_its_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tensor = torch.zeros(256, 256, 3, dtype=torch.uint8, device="cuda")
    side = torch.cuda.Stream()
    asked = _count_dlpack_calls(monkeypatch, torch.Tensor)
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)  # a late producer: the write lands long after the import
        tensor.fill_(9)
        image = GpuImage.from_dlpack(tensor, layout="HWC")
    assert asked == [1]  # DLPack's legacy default stream, which torch made wait for the side stream
    assert image.stream == 0
    copied = image.as_torch().clone()  # on the default stream: after the write
    assert int(copied.min()) == 9


def test_a_cupy_array_on_its_stream_is_read_by_the_cupy_spoke(monkeypatch: pytest.MonkeyPatch) -> None:
    array = cupy.arange(6 * 7, dtype=cupy.float32).reshape(6, 7)
    asked = _count_dlpack_calls(monkeypatch, cupy.ndarray)
    image = GpuImage.from_dlpack(array)
    assert asked == []
    assert image.ptr == array.data.ptr
    assert bool((image.as_cupy().reshape(6, 7) == array).all())
