"""GpuImage's constructors (``_image_constructors``): their type checks, ``empty`` on the host, and
what is known of the device of the memory they wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fake_runtime import Runtime, runtime
from gpuimage import Device, DeviceError, DTypeError, GpuImage, ImageSpec, InteropError, LayoutError

FAKE = 0x7F00_0000_0000  # never dereferenced

__all__ = ["runtime"]  # the fixture


def test_constructor_type_errors() -> None:
    with pytest.raises(InteropError, match=r"numpy\.ndarray"):
        GpuImage.from_numpy([[1, 2]])  # type: ignore[call-overload]
    with pytest.raises(InteropError, match=r"torch\.Tensor"):
        GpuImage.from_torch(np.zeros((2, 2)))  # type: ignore[call-overload]
    with pytest.raises(LayoutError, match="never guesses"):
        GpuImage.from_numpy(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DTypeError):
        GpuImage.from_numpy(np.zeros((2, 2), np.complex64))
    with pytest.raises(DTypeError):
        GpuImage.from_torch(torch.zeros(2, 2, dtype=torch.complex64))


def test_empty_allocates_aligned_rows_on_the_host() -> None:
    image = GpuImage.empty(5, 7, 3, "float32", layout="CHW", device="cpu", row_alignment=64)
    assert image.row_pitch == 64
    assert image.ptr % 64 == 0
    image.as_numpy()[...] = 1.5
    assert float(image.as_numpy().sum()) == 1.5 * 5 * 7 * 3


# -- what is known of the device travels with the memory (issue 12 review) -------------------------


def _described_on_cuda() -> GpuImage:
    spec = ImageSpec.packed(height=4, width=6, channels=3, device=0)
    return GpuImage.from_pointer(0x7F0000000000, spec, owner=object())


def test_a_described_device_stays_described_through_dlpack_and_cupy() -> None:
    # a caller's device= is a say-so: re-importing our own export must not make it trusted, or
    # as_torch() would take torch's exchange route, which trusts the device without checking it
    image = _described_on_cuda()
    assert not image._life.located  # pyright: ignore[reportPrivateUsage]
    assert not GpuImage.from_dlpack(image)._life.located  # pyright: ignore[reportPrivateUsage]
    pytest.importorskip("cupy")
    again = GpuImage.from_cupy(image.as_cupy(), layout="HWC")
    assert not again._life.located  # pyright: ignore[reportPrivateUsage]


def test_a_guessed_cai_device_is_not_trusted() -> None:
    class Interface:
        __cuda_array_interface__ = {  # noqa: RUF012  # a fixed interface, read once
            "shape": (4, 6),
            "typestr": "|u1",
            "data": (0x7F0000000000, False),
            "version": 3,
        }

    image = GpuImage.from_cuda_array_interface(Interface())
    assert image.device == Device("cuda", 0)  # no runtime here can tell: the default
    assert not image._life.located  # pyright: ignore[reportPrivateUsage]


def test_a_gpumat_device_is_not_trusted() -> None:
    # OpenCV keeps no device for memory it did not allocate: the GpuMat spoke says so
    cv2 = pytest.importorskip("cv2")
    mat = cv2.cuda.createGpuMatFromCudaMemory(4, 6, cv2.CV_MAKETYPE(cv2.CV_8U, 3), FAKE, 18)
    assert not GpuImage.from_gpumat(mat)._life.located  # pyright: ignore[reportPrivateUsage]


def test_from_pointer_refuses_memory_that_cuda_places_on_another_gpu(runtime: Runtime) -> None:
    """Under unified addressing a view on the wrong GPU neither copies nor fails: CUDA is asked."""
    spec = ImageSpec.packed(height=2, width=3, channels=1, device=1)
    runtime.owners[0x7F00_0000_0000] = 0
    with pytest.raises(
        DeviceError, match=r"0x7f0000000000 is on cuda:0, not on cuda:1\. Describe it with device=0"
    ):
        GpuImage.from_pointer(0x7F00_0000_0000, spec)
    runtime.owners[0x7F00_0000_0000] = 1
    assert GpuImage.from_pointer(0x7F00_0000_0000, spec).device == Device("cuda", 1)
    assert GpuImage.from_pointer(0x7E00_0000_0000, spec).device == Device("cuda", 1)  # unknown: trusted
