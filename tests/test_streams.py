"""Stream-likes and their encodings (``_streams``): what a ``stream=`` accepts, handles normalized
(the legacy default stream kept as 0), the CAI and DLPack codes converted in one place, and bad
streams refused. Which streams wait for which is ``_ordering``'s, in ``tests/test_ordering.py``."""

from __future__ import annotations

import pytest

from gpuimage import ExportError, GpuImage, ImageSpec, InteropError
from gpuimage._streams import from_protocol, is_default_stream, to_protocol

FAKE = 0x7F00_0000_0000


def _image(stream: object = None, device: int = 0) -> GpuImage:
    spec = ImageSpec(height=4, width=6, channels=3, device=device)
    return GpuImage.from_pointer(FAKE, spec, stream=stream)


class CudaStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


def test_stream_handles_are_normalized() -> None:
    assert _image(stream=1).stream == 0, "cudaStreamLegacy (1) is the legacy default stream, kept as 0"
    assert _image(stream=0).stream == 0
    assert _image(stream=CudaStream(42)).stream == 42
    assert _image(stream=0).__cuda_array_interface__["stream"] == 1, "CAI forbids 0"


def test_the_encodings_convert_in_one_place() -> None:
    """Stored handles keep the legacy default stream as 0; CAI and DLPack call it 1 (their 0 is
    forbidden); the per-thread default stream is 2 in both."""
    assert [from_protocol(code) for code in (1, 2, 0x7F)] == [0, 2, 0x7F]
    assert [to_protocol(handle) for handle in (0, 2, 0x7F)] == [1, 2, 0x7F]
    assert [handle for handle in range(6) if is_default_stream(handle)] == [0, 1, 2]


class _Interface:
    def __init__(self, stream: int | None) -> None:
        self.__cuda_array_interface__ = {
            "shape": (2, 3),
            "typestr": "|u1",
            "data": (FAKE, False),
            "strides": None,
            "version": 3,
            "stream": stream,
        }


@pytest.mark.parametrize(("code", "stored"), [(1, 0), (2, 2), (None, None), (0x55, 0x55)])
def test_a_cai_stream_code_is_stored_as_a_handle(code: int | None, stored: int | None) -> None:
    assert GpuImage.from_cuda_array_interface(_Interface(code)).stream == stored


def test_bad_streams_are_refused() -> None:
    image = _image(stream=7)
    with pytest.raises(InteropError, match="None"):
        image.record_write(None)
    with pytest.raises(InteropError, match="stream"):
        image.as_cupy(stream="fast")
    with pytest.raises(InteropError, match=r"0 <= handle < 2\*\*64"):
        image.record_write(-3)
    with pytest.raises(InteropError, match=r"0 <= handle < 2\*\*64"):
        image.record_write(2**64)
    for bad in (0, -2, 1.5):
        with pytest.raises(ExportError, match="stream"):
            image.__dlpack__(stream=bad)  # type: ignore[arg-type]
