"""The pages say what the code does: every exception class a page names for a behaviour is the class
the code raises.

``CLAIMS`` is the table of documented claims. Each row is a page, a phrase the page must still
contain (compared with whitespace collapsed, so rewrapping a paragraph changes nothing), the
exception class the page names, a fragment of the message (the fix the page names, where it names
one), and a call that does what the page describes, on the CPU: host images, device images over a
fake pointer that nothing dereferences, GpuMat headers over it. A row fails when the page no longer
says it, or when the code raises another class (exactly that class: not a subclass, not a parent).

``test_every_raises_sentence_has_a_claim`` reads every page for "raises X" sentences that name a
class of gpuimage's tree and fails for each (page, class) without a row: a new claim in the docs
needs a row here.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import gpuimage
from fake_backends import fake_missing
from fake_ipc import fake_ipc_driver
from gpuimage import (
    BoundsError,
    DeviceError,
    DTypeError,
    Float32,
    GpuFrame,
    GpuImage,
    GpuImageError,
    HostMemoryError,
    ImageSpec,
    InteropError,
    LayoutError,
    LifetimeError,
    MissingBackendError,
    PitchError,
    ReadOnlyError,
    StrideError,
    WaitTimeoutError,
    _errors,
    _lifetime,
    _runtime,
    _source,
)
from gpuimage._runtime import HostRuntime

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FAKE = 0x7F00_0000_0000  # 256-byte aligned, never dereferenced
TREE = frozenset(name for name in _errors.__all__)
"""The names of gpuimage's exception classes."""

Call = Callable[[pytest.MonkeyPatch], object]


class Claim(NamedTuple):
    page: str  # relative to the repository root
    phrase: str  # what the page says, verbatim but for whitespace
    error: type[GpuImageError]  # the class the page names
    says: str  # a fragment the message must contain
    call: Call  # the behaviour, on the CPU


def _device(**fields: Any) -> GpuImage:
    return GpuImage.from_pointer(FAKE, ImageSpec(**fields))


def _host(shape: tuple[int, ...], layout: gpuimage.LayoutLike, *, readonly: bool = False) -> GpuImage:
    array = np.zeros(shape, np.uint8)
    array.flags.writeable = not readonly
    return GpuImage.from_numpy(array, layout=layout)


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime of a machine where nothing reaches a GPU, whatever this one has."""
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)  # put back after
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    gpuimage.set_runtime(HostRuntime())


def _torch_sees_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuimage import _torch

    monkeypatch.setattr(_torch, "cuda_available", lambda: False)
    monkeypatch.setattr(_torch, "_headers", _source.SpecMemo(_torch._header))


def _torch_copies(monkeypatch: pytest.MonkeyPatch) -> object:
    """What torch does with memory on another device than the one asked for: a copy (pytorch #54139)."""
    import torch

    from gpuimage import _torch

    monkeypatch.setattr(_torch, "cuda_available", lambda: True)
    monkeypatch.setattr(_torch, "_headers", _source.SpecMemo(_torch._header))
    monkeypatch.setattr(torch, "as_tensor", lambda obj, device=None: torch.zeros(1))
    return _device(height=2, width=3).as_torch()


def _host_cuda_without_gpu(monkeypatch: pytest.MonkeyPatch) -> object:
    _no_gpu(monkeypatch)
    return _host((2, 3), "HWC").cuda()


def _device_torch_view_without_gpu(monkeypatch: pytest.MonkeyPatch) -> object:
    _torch_sees_no_gpu(monkeypatch)
    return _device(height=2, width=3).as_torch()


def _gpumat_without_opencv(monkeypatch: pytest.MonkeyPatch) -> object:
    fake_missing(monkeypatch, "cv2")
    return _device(height=2, width=3).expect("HWC").as_gpumat()


def _opencv_stream_without_cuda(monkeypatch: pytest.MonkeyPatch) -> object:
    from gpuimage import _opencv

    if _opencv.cuda_enabled():
        pytest.skip("this OpenCV has CUDA: its streams have handles")
    stream_type = type("Stream", (), {"__module__": "cv2.cuda"})  # read as OpenCV's, never touched
    pending = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3, channels=3), stream=7)  # to order
    return pending.expect("HWC").as_gpumat(stream=stream_type())


def _host_chw_gpumat(monkeypatch: pytest.MonkeyPatch) -> object:
    return _host((3, 4, 5), "CHW").as_gpumat()  # type: ignore[misc]  # also a static error


def _host_chw_gpumat_without_opencv(monkeypatch: pytest.MonkeyPatch) -> object:
    fake_missing(monkeypatch, "cv2")
    return _host_chw_gpumat(monkeypatch)


def _device_chw_gpumat(monkeypatch: pytest.MonkeyPatch) -> object:
    return _device(height=2, width=3, channels=3, layout="CHW").as_gpumat()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]  # also a static error


def _permuted_chw_gpumat(monkeypatch: pytest.MonkeyPatch) -> object:
    # tensor.permute(2, 0, 1) of HWC memory: a CHW image with interleaved strides
    image = _device(
        height=2, width=3, channels=3, layout="CHW", row_pitch=9, pixel_stride=3, channel_stride=1
    )
    return image.as_gpumat()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]  # also a static error


def _channel_slice_gpumat(monkeypatch: pytest.MonkeyPatch) -> object:
    # the first two channels of a 3-channel HWC image
    return _device(height=2, width=3, channels=2, pixel_stride=3).expect("HWC").as_gpumat()


def _hwc_of_planar_gpumat(monkeypatch: pytest.MonkeyPatch) -> object:
    # tensor.permute(1, 2, 0) of CHW memory: an HWC image whose channels are planes apart
    return (
        _device(height=2, width=3, channels=3, row_pitch=3, pixel_stride=1, channel_stride=6)
        .expect("HWC")
        .as_gpumat()
    )


def _bfloat16_cai(monkeypatch: pytest.MonkeyPatch) -> object:
    return _device(height=2, width=3, dtype="bfloat16").__cuda_array_interface__


def _nv12_frame(monkeypatch: pytest.MonkeyPatch) -> GpuFrame:
    buffer = np.zeros(62, dtype=np.uint8)  # the page's frame: pitch 8, 6 aligned rows
    return GpuFrame.from_pointer(
        buffer.ctypes.data,
        format="NV12",
        width=6,
        height=4,
        pitch=8,
        aligned_height=6,
        device="cpu",
        owner=buffer,
    )


def _odd_stride_array(monkeypatch: pytest.MonkeyPatch) -> object:
    raw = np.zeros(100, np.uint8)
    return GpuImage.from_numpy(np.ndarray((3, 4), dtype=np.uint16, buffer=raw, strides=(20, 3)))


def _late_opener(monkeypatch: pytest.MonkeyPatch) -> object:
    """A description whose lease ended (never opened within the timeout) unpickled afterwards."""
    with fake_ipc_driver(monkeypatch):
        data = pickle.dumps(GpuImage.empty(4, 4))
        gpuimage.set_unopened_timeout(1e-6)
        gpuimage.collect_shared()
        return pickle.loads(data)


def _ring_timeout(monkeypatch: pytest.MonkeyPatch) -> object:
    """A reader waiting for a slot that no writer publishes."""
    with fake_ipc_driver(monkeypatch):
        writer = gpuimage.SharedRing.from_items([GpuImage.empty(4, 6, 3) for _ in range(2)])
        reader = pickle.loads(pickle.dumps(writer))
        with reader.reading(timeout=0.01):
            return None


def _mismatched_payload(monkeypatch: pytest.MonkeyPatch) -> object:
    """A tensor payload whose tensor is not the one its description describes."""
    torch = pytest.importorskip("torch")
    payload = gpuimage.to_tensor_payload(GpuImage.from_numpy(np.zeros((4, 6), np.uint8)))
    return gpuimage.from_tensor_payload(dataclasses.replace(payload, tensor=torch.zeros(4, 7, 1)))


_CHW_GPUMAT = "a GpuMat of a CHW image raises `LayoutError` pointing to `to_layout('HWC')`"
_EVERY_FIX = "image.to_layout('HWC').cuda().as_gpumat()"

CLAIMS: dict[str, Claim] = {
    # README.md
    "readme-chw-gpumat": Claim("README.md", _CHW_GPUMAT, LayoutError, "to_layout('HWC')", _device_chw_gpumat),
    "readme-channel-slice-gpumat": Claim(
        "README.md",
        "a GpuMat of a channel-sliced HWC view `StrideError` pointing to `contiguous()`",
        StrideError,
        "contiguous()",
        _channel_slice_gpumat,
    ),
    "readme-every-fix": Claim(
        "README.md",
        "naming every fix it needs (a host CHW image: `to_layout('HWC')` and `cuda()`)",
        LayoutError,
        _EVERY_FIX,
        _host_chw_gpumat,
    ),
    "readme-every-fix-without-opencv": Claim(
        "README.md",
        "The same misuse raises the same error on every machine",
        LayoutError,
        _EVERY_FIX,
        _host_chw_gpumat_without_opencv,
    ),
    # docs/concepts.md
    "concepts-crop-bounds": Claim(
        "docs/concepts.md",
        "BoundsError: crop(): the rectangle x=3, y=0, width=2, height=2 reaches outside the 4x3 image",
        BoundsError,
        "reaches outside the 4x3 image",
        lambda mp: GpuImage.empty(3, 4, 3, "uint8", device="cpu", row_alignment=16).crop(3, 0, 2, 2),
    ),
    "concepts-permuted-chw-gpumat": Claim(
        "docs/concepts.md",
        "so `as_gpumat()` of any CHW image, permuted or planar, raises {py:exc}`LayoutError` and names "
        "`to_layout('HWC')`",
        LayoutError,
        "to_layout('HWC')",
        _permuted_chw_gpumat,
    ),
    "concepts-planar-chw-gpumat": Claim(
        "docs/concepts.md",
        "raises {py:exc}`LayoutError` and names `to_layout('HWC')`",
        LayoutError,
        "to_layout('HWC')",
        _device_chw_gpumat,
    ),
    "concepts-hwc-of-planar-gpumat": Claim(
        "docs/concepts.md",
        "(an HWC view of planar memory, a slice of its channels) raises {py:exc}`StrideError` and names "
        "{py:meth}`GpuImage.contiguous`",
        StrideError,
        "contiguous()",
        _hwc_of_planar_gpumat,
    ),
    "concepts-channel-slice-gpumat": Claim(
        "docs/concepts.md",
        "a slice of its channels) raises {py:exc}`StrideError`",
        StrideError,
        "contiguous()",
        _channel_slice_gpumat,
    ),
    "concepts-every-fix": Claim(
        "docs/concepts.md",
        "the first error names them all, whatever is installed",
        LayoutError,
        _EVERY_FIX,
        _host_chw_gpumat,
    ),
    "concepts-every-fix-without-opencv": Claim(
        "docs/concepts.md",
        "the first error names them all, whatever is installed",
        LayoutError,
        _EVERY_FIX,
        _host_chw_gpumat_without_opencv,
    ),
    "concepts-pitch-off-item-size": Claim(
        "docs/concepts.md",
        "fails construction with a {py:exc}`PitchError` that names the smallest valid value",
        PitchError,
        "Use a row_pitch of at least 64 bytes",
        lambda mp: ImageSpec(height=2, width=5, channels=3, dtype="float32", row_pitch=61, device="cpu"),
    ),
    "concepts-pitch-overlap": Claim(
        "docs/concepts.md",
        "fails construction with a {py:exc}`PitchError` that names the smallest valid value",
        PitchError,
        "Use a row_pitch of at least 12 bytes",
        lambda mp: ImageSpec(height=2, width=4, channels=3, row_pitch=10, device="cpu"),
    ),
    "concepts-no-gpu-call": Claim(
        "docs/concepts.md",
        "every GPU call raises {py:class}`MissingBackendError`, naming the call",
        MissingBackendError,
        "image.cuda(): copying the image from cpu to cuda:0 needs a CUDA runtime",
        _host_cuda_without_gpu,
    ),
    # docs/guarantees.md
    "guarantees-chw-gpumat": Claim(
        "docs/guarantees.md", _CHW_GPUMAT, LayoutError, "to_layout('HWC')", _device_chw_gpumat
    ),
    "guarantees-non-interleaved-gpumat": Claim(
        "docs/guarantees.md",
        "a GpuMat of a channel-sliced or otherwise non-interleaved HWC view raises `StrideError` pointing to "
        "`contiguous()`",
        StrideError,
        "contiguous()",
        _hwc_of_planar_gpumat,
    ),
    "guarantees-every-fix-without-opencv": Claim(
        "docs/guarantees.md",
        "(a host CHW image: `to_layout('HWC')` and `cuda()`) raises the same error whatever is installed, "
        "naming all of them",
        LayoutError,
        _EVERY_FIX,
        _host_chw_gpumat_without_opencv,
    ),
    # docs/getting-started.md
    "getting-started-device-view-without-gpu": Claim(
        "docs/getting-started.md",
        "CUDA views raise {py:exc}`~gpuimage.MissingBackendError` or {py:exc}`~gpuimage.DeviceError` "
        "with the reason",
        MissingBackendError,
        "as_torch(): the image is on cuda:0, but torch",
        _device_torch_view_without_gpu,
    ),
    "getting-started-host-cuda-view": Claim(
        "docs/getting-started.md",
        "CUDA views raise {py:exc}`~gpuimage.MissingBackendError` or {py:exc}`~gpuimage.DeviceError` "
        "with the reason",
        DeviceError,
        "the image is in host memory",
        lambda mp: _host((2, 3), "HWC").as_cupy(),
    ),
    # docs/typed-pipelines.md
    "typed-expect-layout": Claim(
        "docs/typed-pipelines.md",
        "and raises {py:exc}`LayoutError` or {py:exc}`DTypeError` when it is not one",
        LayoutError,
        "to_layout('CHW')",
        lambda mp: _host((2, 3, 3), "HWC").expect("CHW"),
    ),
    "typed-expect-dtype": Claim(
        "docs/typed-pipelines.md",
        "and raises {py:exc}`LayoutError` or {py:exc}`DTypeError` when it is not one",
        DTypeError,
        "expected a float32 image, got dtype=uint8",
        lambda mp: _host((2, 3, 3), "HWC").expect("HWC", Float32),
    ),
    "typed-chw-gpumat": Claim(
        "docs/typed-pipelines.md",
        "`as_gpumat()` on a CHW image raises {py:exc}`LayoutError` whatever its static type says",
        LayoutError,
        "to_layout('HWC')",
        _device_chw_gpumat,
    ),
    # docs/video-frames.md
    "frames-no-block-views": Claim(
        "docs/video-frames.md",
        "Elsewhere these views raise `LayoutError`",
        LayoutError,
        "do not tile one",
        lambda mp: _nv12_frame(mp).as_numpy(),
    ),
    "frames-no-gpumat": Claim(
        "docs/video-frames.md",
        "`frame.as_gpumat()` raises `LayoutError`",
        LayoutError,
        "a GpuFrame has no GpuMat",
        lambda mp: _nv12_frame(mp).as_gpumat(),  # type: ignore[attr-defined]
    ),
    # docs/partners/cupy.md
    "cupy-odd-stride": Claim(
        "docs/partners/cupy.md",
        "a source with another stride raises {py:exc}`PitchError` when it is wrapped",
        PitchError,
        "not a multiple of the item size",
        _odd_stride_array,
    ),
    "cupy-bfloat16": Claim(
        "docs/partners/cupy.md",
        "`as_cupy()` of a bfloat16 image raises {py:exc}`DTypeError`; use `as_torch()`",
        DTypeError,
        "as_torch()",
        lambda mp: _device(height=2, width=3, dtype="bfloat16").as_cupy(),
    ),
    # docs/partners/cvcuda.md
    "cvcuda-bfloat16-cai": Claim(
        "docs/partners/cvcuda.md",
        "so the attribute raises {py:exc}`DTypeError`",
        DTypeError,
        "bfloat16",
        _bfloat16_cai,
    ),
    # docs/partners/opencv.md
    "opencv-stream-without-cuda": Claim(
        "docs/partners/opencv.md",
        "a `cv2.cuda.Stream` has no handle, so passing one as `stream=` raises {py:exc}`InteropError`",
        InteropError,
        "has no CUDA",
        _opencv_stream_without_cuda,
    ),
    "opencv-table-chw": Claim(
        "docs/partners/opencv.md",
        '| CHW (statically: a type error) | {py:exc}`LayoutError` | `image.to_layout("HWC")`',
        LayoutError,
        "to_layout('HWC')",
        _device_chw_gpumat,
    ),
    "opencv-table-channels": Claim(
        "docs/partners/opencv.md",
        "| more than 4 channels | {py:exc}`LayoutError` |",
        LayoutError,
        "1 to 4 channels",
        lambda mp: _device(height=2, width=3, channels=5).expect("HWC").as_gpumat(),
    ),
    "opencv-table-bfloat16": Claim(
        "docs/partners/opencv.md",
        "| bool, uint32, int64 on OpenCV 4.x; bfloat16 | {py:exc}`DTypeError` | convert first "
        "(`image.astype(...)`)",
        DTypeError,
        "astype('float32')",
        lambda mp: _device(height=2, width=3, dtype="bfloat16").expect("HWC").as_gpumat(),
    ),
    "opencv-table-strides": Claim(
        "docs/partners/opencv.md",
        "| an HWC view whose pixels are not interleaved (channel-sliced, or permuted from planar memory) | "
        "{py:exc}`StrideError` | `image.contiguous()` |",
        StrideError,
        "image.contiguous()",
        _channel_slice_gpumat,
    ),
    "opencv-table-read-only": Claim(
        "docs/partners/opencv.md",
        "| read-only memory | {py:exc}`ReadOnlyError` | `image.copy()` |",
        ReadOnlyError,
        "image.copy()",
        lambda mp: (
            GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3), readonly=True).expect("HWC").as_gpumat()
        ),
    ),
    "opencv-table-host": Claim(
        "docs/partners/opencv.md",
        "| host memory | {py:exc}`DeviceError` | `image.cuda()` |",
        DeviceError,
        "image.cuda()",
        lambda mp: _host((2, 3, 3), "HWC").expect("HWC").as_gpumat(),
    ),
    "opencv-table-not-installed": Claim(
        "docs/partners/opencv.md",
        "| OpenCV not installed | {py:exc}`MissingBackendError` | `pip install 'gpuimage[opencv]'` |",
        MissingBackendError,
        "pip install 'gpuimage[opencv]'",
        _gpumat_without_opencv,
    ),
    # docs/partners/protocols.md
    "protocols-host-cai": Claim(
        "docs/partners/protocols.md",
        "A host image has no CAI: the attribute raises {py:exc}`HostMemoryError`, an `AttributeError`",
        HostMemoryError,
        "host memory",
        lambda mp: _host((2, 3), "HWC").__cuda_array_interface__,
    ),
    "protocols-bfloat16-cai": Claim(
        "docs/partners/protocols.md",
        "bfloat16 has no CAI typestr and raises {py:exc}`DTypeError`",
        DTypeError,
        "bfloat16",
        _bfloat16_cai,
    ),
    # docs/partners/torch.md
    "torch-silent-copy": Claim(
        "docs/partners/torch.md",
        "`as_torch()` checks that the tensor has the image's pointer and raises {py:exc}`DeviceError` "
        "otherwise",
        DeviceError,
        "torch made a copy",
        _torch_copies,
    ),
    "torch-read-only": Claim(
        "docs/partners/torch.md",
        "A read-only image (from a read-only DLPack or CAI source) raises {py:exc}`ReadOnlyError` in "
        "`as_torch()`",
        ReadOnlyError,
        "image.copy()",
        lambda mp: _host((2, 3), "HWC", readonly=True).as_torch(),
    ),
    "torch-bfloat16-cai": Claim(
        "docs/partners/torch.md",
        "CAI export of bfloat16 raises {py:exc}`DTypeError`",
        DTypeError,
        "bfloat16",
        _bfloat16_cai,
    ),
    # docs/processes.md
    "processes-late-opener": Claim(
        "docs/processes.md",
        "A consumer that finds the file gone raises `LifetimeError`",
        LifetimeError,
        "ended",
        _late_opener,
    ),
    "processes-ring-timeout": Claim(
        "docs/processes.md",
        "`timeout=` raises `WaitTimeoutError`",
        WaitTimeoutError,
        "timeout=",
        _ring_timeout,
    ),
    "processes-payload-mismatch": Claim(
        "docs/processes.md",
        "A payload whose tensor does not match its description raises `InteropError`",
        InteropError,
        "TensorPayload",
        _mismatched_payload,
    ),
}

_NAME = r"(?:\{py:(?:exc|class)\}`~?|`)(?:gpuimage\.)?[A-Z]\w*Error`"
RAISES = re.compile(r"\braise[sd]?\s+(?:an?\s+)?((?:" + _NAME + r"(?:\s*(?:,|\bor\b|\band\b)\s*)*)+)")
"""A "raises X" phrase, X one name or a list ("raises `LayoutError` or `DTypeError`"), named as code
or as a Sphinx cross-reference."""


def _text(page: Path) -> str:
    return re.sub(r"\s+", " ", page.read_text(encoding="utf-8"))


def raised_names(text: str) -> set[str]:
    """The classes of gpuimage's tree that ``text`` says something raises."""
    found: set[str] = set()
    for match in RAISES.finditer(text):
        found.update(re.findall(r"([A-Z]\w*Error)`", match[1]))
    return found & TREE


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_the_page_says_it_and_the_code_raises_exactly_that_class(
    claim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = CLAIMS[claim]
    assert re.sub(r"\s+", " ", row.phrase) in _text(ROOT / row.page), (
        f"{row.page} no longer says: {row.phrase}"
    )
    with pytest.raises(Exception) as caught:  # noqa: PT011  # the class is checked exactly below
        row.call(monkeypatch)
    assert type(caught.value) is row.error, (
        f"{row.page} names {row.error.__name__}, the code raised {caught.value!r}"
    )
    assert row.says in str(caught.value)


def test_every_raises_sentence_has_a_claim() -> None:
    covered = {(row.page, row.error.__name__) for row in CLAIMS.values()}
    uncovered = [
        f"{page.relative_to(ROOT)}: raises {name}"
        for page in PAGES
        for name in sorted(raised_names(_text(page)))
        if (str(page.relative_to(ROOT)), name) not in covered
    ]
    assert uncovered == [], "pages name these errors for a behaviour that no row of CLAIMS checks"


CORE_PAGES = ("README.md", "docs/concepts.md", "docs/guarantees.md", "docs/conversions.md")
GENERAL = {"GpuImageError"}
"""Named as the root that catches every error, not for a behaviour."""


@pytest.mark.parametrize("page", CORE_PAGES)
def test_every_class_the_core_pages_name_has_a_claim(page: str) -> None:
    named = set(re.findall(r"\b([A-Z]\w*Error)\b", _text(ROOT / page))) & TREE
    covered = {row.error.__name__ for row in CLAIMS.values() if row.page == page}
    assert named - GENERAL <= covered


def test_the_scan_finds_lists_and_both_spellings() -> None:
    text = (
        "x raises {py:exc}`LayoutError` or {py:exc}`~gpuimage.DTypeError` when; y raise `StrideError`, "
        "and z raises `OSError`; w raises a {py:exc}`PitchError`."
    )
    assert raised_names(text) == {"LayoutError", "DTypeError", "StrideError", "PitchError"}
    assert raised_names("it is a LayoutError, raised elsewhere") == set()


def test_the_scan_reads_the_real_pages() -> None:
    found = {(str(page.relative_to(ROOT)), name) for page in PAGES for name in raised_names(_text(page))}
    assert ("README.md", "LayoutError") in found
    assert ("docs/concepts.md", "StrideError") in found
    assert len(found) >= 15, found
