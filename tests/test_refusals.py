"""Bad input found in review: each gets a gpuimage error (never a crash, never a wrong view)."""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gpuimage import (
    DeviceError,
    DTypeError,
    ExportError,
    GpuImage,
    GpuImageError,
    ImageSpec,
    InteropError,
    PitchError,
    ReadOnlyError,
)

FAKE = 0x7F00_0000_0000


class Cai:
    def __init__(self, **fields: object) -> None:
        self.__cuda_array_interface__ = {
            "shape": (2, 2),
            "typestr": "|u1",
            "data": (FAKE, False),
            "version": 3,
            **fields,
        }


class BadDevice:
    def __dlpack__(self, **kwargs: object) -> object:
        raise AssertionError("never asked")

    def __dlpack_device__(self) -> object:
        return 2


class NegativeStream:
    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, -5)


def _spec() -> ImageSpec:
    return ImageSpec(height=2, width=3)


CASES: list[tuple[str, Callable[[], object], type[GpuImageError], str]] = [
    (
        "unparsable-typestr",
        lambda: GpuImage.from_cuda_array_interface(Cai(typestr="<f1")),
        DTypeError,
        "typestr",
    ),
    (
        "cai-on-cpu",
        lambda: GpuImage.from_cuda_array_interface(Cai(), device="cpu"),
        DeviceError,
        "device memory",
    ),
    ("spec-not-a-spec", lambda: GpuImage.from_pointer(FAKE, {}), InteropError, "ImageSpec"),  # type: ignore[arg-type]
    ("model-copy-validates", lambda: _spec().model_copy(update={"row_pitch": 1}), PitchError, "overlap"),
    (
        "model-construct-bypass",
        lambda: GpuImage.from_pointer(FAKE, ImageSpec.model_construct(**{**dict(_spec()), "row_pitch": 1})),
        PitchError,
        "overlap",
    ),
    (
        "max-version-int",
        lambda: GpuImage.from_pointer(FAKE, _spec()).__dlpack__(max_version=1),  # type: ignore[arg-type]
        ExportError,
        "pair",
    ),
    (
        "dl-device-int",
        lambda: GpuImage.from_pointer(FAKE, _spec()).__dlpack__(dl_device=2),  # type: ignore[arg-type]
        ExportError,
        "pair",
    ),
    ("dlpack-device-not-a-pair", lambda: GpuImage.from_dlpack(BadDevice()), InteropError, "pair"),
    (
        "producer-refuses",
        lambda: GpuImage.from_dlpack(torch.zeros(2, 2, requires_grad=True)),
        InteropError,
        "refused",
    ),
    (
        "negative-cuda-stream",
        lambda: GpuImage.from_pointer(FAKE, _spec(), stream=NegativeStream()),
        InteropError,
        r"0 <= handle < 2\*\*64",
    ),
    (
        "numpy-copy-false-with-dtype",
        lambda: np.asarray(GpuImage.from_numpy(np.zeros((2, 2), np.uint8)), dtype=np.float32, copy=False),
        ExportError,
        "copy",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_refused_with_a_gpuimage_error(
    call: Callable[[], object], error: type[GpuImageError], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_read_only_memory_gets_no_writable_view(tmp_path: Path) -> None:
    frozen = GpuImage.from_numpy(np.frombuffer(bytes(12), np.uint8).reshape(2, 6))
    with pytest.raises(ReadOnlyError, match="copy"):
        frozen.as_torch()
    path = tmp_path / "frame.bin"
    path.write_bytes(bytes(12))
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        mapped_image = GpuImage.from_numpy(np.frombuffer(mapped, np.uint8).reshape(2, 6))
        with pytest.raises(ReadOnlyError):
            mapped_image.as_torch()  # a write through it would have been a segfault
        copy = mapped_image.copy()
        assert not copy.readonly
        copy.as_torch()[0, 0] = 9
        assert int(copy.as_numpy()[0, 0, 0]) == 9
        del mapped_image
    with pytest.raises(ReadOnlyError):
        GpuImage.from_pointer(FAKE, _spec(), readonly=True).as_cupy()
    with pytest.raises(ReadOnlyError):
        GpuImage.from_pointer(FAKE, _spec(), readonly=True).expect("HWC").as_gpumat()


def test_model_copy_gives_fresh_derived_values() -> None:
    image = GpuImage.from_numpy(np.zeros((4, 5, 3), np.uint8), layout="HWC")
    spec = image.spec
    assert spec.shape == (4, 5, 3)  # cached on the original
    changed = spec.model_copy(update={"height": 2})
    assert (changed.height, changed.shape, changed.nbytes) == (2, (2, 5, 3), 30)


def test_host_images_carry_no_stream() -> None:
    host = GpuImage.empty(2, 3, 3, device="cpu", stream=5)
    assert host.stream is None
    host.record_write(7)
    assert host.stream is None
    assert host.as_torch().shape == (2, 3, 3)


def test_expect_accepts_a_runtime_layout_and_any_dtype() -> None:
    from gpuimage import AnyDType, Layout

    image = GpuImage.from_numpy(np.zeros((2, 2), np.uint8))
    layout: Layout = Layout.HWC
    assert image.expect(layout) is image
    assert image.expect("HWC", AnyDType) is image


def test_bare_capsule_is_ready_on_the_given_stream() -> None:
    source = torch.zeros(2, 3)
    capsule: Any = source.__dlpack__()
    image = GpuImage.from_dlpack(capsule, stream=9)
    assert image.stream is None  # host memory: no stream
