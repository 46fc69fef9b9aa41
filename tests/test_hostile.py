"""Hostile input, fuzzed: every constructor, view and op either works and stays inside its source,
or raises a GpuImageError subclass. Never another exception, never a crash.

The conftest's terminal summary reports how many examples ran and how many distinct error paths
(exception class + the operation that raised) they reached.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuimage import GpuImage, GpuImageError, ImageSpec, runtime
from hypothesis_paths import record

FAKE = 0x7F00_0000_0000

ints = st.one_of(st.integers(-(2**65), 2**65), st.sampled_from([0, 1, -1, 2**63, 2**63 - 1, 2**64]))
junk = st.one_of(
    ints,
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-5, 5), max_size=4).map(tuple),
)
dtypes = st.one_of(
    st.sampled_from(["uint8", "float32", "bfloat16", "bool", "int64", "complex64", "uint64", "float128", ""]),
    junk,
)


def _outcome(operation: str, call: Any) -> object:
    """Run ``call``; a GpuImageError is a fine answer and is recorded, anything else fails the test."""
    try:
        result = call()
    except GpuImageError as exc:
        record(operation, exc)
        return None
    record(operation, None)
    return result


def _assert_inside(image: GpuImage, base: int, size: int) -> None:
    assert base <= image.ptr
    assert image.ptr + image.nbytes <= base + size


spec_fields = st.fixed_dictionaries(
    {},
    optional={
        "height": ints,
        "width": ints,
        "channels": ints,
        "dtype": dtypes,
        "layout": st.one_of(st.sampled_from(["HWC", "CHW", "hwc", "NCHW"]), junk),
        "row_pitch": st.one_of(ints, st.none()),
        "pixel_stride": st.one_of(ints, st.none()),
        "channel_stride": st.one_of(ints, st.none()),
        "device": st.one_of(st.sampled_from(["cpu", "cuda:1", "cuda", "tpu", 0, 3]), junk),
    },
)


@settings(max_examples=1500)
@given(spec_fields)
def test_image_spec(fields: dict[str, Any]) -> None:
    spec = _outcome("ImageSpec", lambda: ImageSpec(**{"height": 2, "width": 2, **fields}))
    if isinstance(spec, ImageSpec):
        assert spec.nbytes < 2**63
        assert ImageSpec.from_json(spec.model_dump_json()) == spec


@settings(max_examples=1500)
@given(ptr=st.one_of(ints, junk), fields=spec_fields, stream=st.one_of(ints, junk), readonly=st.booleans())
def test_from_pointer(ptr: Any, fields: dict[str, Any], stream: Any, readonly: bool) -> None:
    def build() -> GpuImage:
        spec = ImageSpec(**{"height": 2, "width": 2, **fields})
        return GpuImage.from_pointer(ptr, spec, stream=stream, readonly=readonly)

    image = _outcome("from_pointer", build)
    if isinstance(image, GpuImage):
        assert image.ptr > 0
        assert image.ptr % image.spec.itemsize == 0


cai_fields = st.fixed_dictionaries(
    {},
    optional={
        "shape": st.one_of(st.lists(st.integers(-3, 9), max_size=4).map(tuple), junk),
        "typestr": st.one_of(
            st.sampled_from(["|u1", "<f4", "<f2", ">f4", "<c8", "|b1", "<f1", "|V4", "x"]), junk
        ),
        "data": st.one_of(st.tuples(ints, st.booleans()), junk),
        "strides": st.one_of(st.none(), st.lists(st.integers(-64, 64), max_size=4).map(tuple), junk),
        "version": st.one_of(st.integers(-1, 5), junk),
        "stream": st.one_of(st.none(), ints, junk),
        "mask": st.one_of(st.none(), junk),
    },
)


class Cai:
    def __init__(self, interface: object) -> None:
        self.__cuda_array_interface__ = interface


@settings(max_examples=1500)
@given(
    fields=cai_fields,
    layout=st.one_of(st.none(), st.sampled_from(["HWC", "CHW"]), junk),
    device=st.one_of(st.none(), st.sampled_from([0, 1, "cpu"])),
)
def test_from_cuda_array_interface(fields: dict[str, Any], layout: Any, device: Any) -> None:
    interface = {"shape": (2, 3), "typestr": "|u1", "data": (FAKE, False), "version": 3, **fields}
    image = _outcome(
        "from_cuda_array_interface",
        lambda: GpuImage.from_cuda_array_interface(Cai(interface), layout=layout, device=device),
    )
    if isinstance(image, GpuImage):
        assert image.device.is_cuda
        assert image.ptr == interface["data"][0]


@st.composite
def strided_arrays(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A base buffer and a (possibly hostile) strided view into it: negative, zero, odd strides."""
    dtype = np.dtype(
        draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.complex64, np.uint64]))
    )
    base = np.zeros(256 // dtype.itemsize, dtype=dtype)
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    steps = draw(st.lists(st.integers(-3, 8), min_size=ndim, max_size=ndim))
    offset = draw(st.integers(0, base.size - 1))
    low = sum((n - 1) * k for n, k in zip(shape, steps, strict=True) if k < 0)
    high = sum((n - 1) * k for n, k in zip(shape, steps, strict=True) if k > 0)
    if offset + low < 0 or offset + high >= base.size:  # keep the hostile view inside the buffer
        offset, steps = 0, [abs(k) for k in steps]
        if sum((n - 1) * k for n, k in zip(shape, steps, strict=True)) >= base.size:
            steps = [1] * ndim
    strides = tuple(k * dtype.itemsize for k in steps)
    return base, np.lib.stride_tricks.as_strided(base[offset:], shape=shape, strides=strides)


@settings(max_examples=1500)
@given(arrays=strided_arrays(), layout=st.one_of(st.none(), st.sampled_from(["HWC", "CHW"])), data=st.data())
def test_numpy_torch_and_dlpack_sources(
    arrays: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], layout: Any, data: st.DataObject
) -> None:
    base, view = arrays
    makers: list[tuple[str, Any]] = [
        ("from_numpy", lambda: GpuImage.from_numpy(view, layout=layout)),
        ("from_dlpack", lambda: GpuImage.from_dlpack(view, layout=layout)),
    ]
    try:
        tensor = torch.from_numpy(view)  # torch itself refuses negative strides
    except (ValueError, TypeError):
        pass
    else:
        makers.append(("from_torch", lambda: GpuImage.from_torch(tensor, layout=layout)))
    for name, make in makers:
        image = _outcome(name, make)
        if isinstance(image, GpuImage):
            _probe(image, data, base.ctypes.data, base.nbytes)


def _probe(image: GpuImage, data: st.DataObject, start: int, size: int) -> None:
    """Everything an imported host image offers: each works inside its source, or refuses."""
    _assert_inside(image, start, size)
    x, y = data.draw(st.integers(-2, 6)), data.draw(st.integers(-2, 6))
    width, height = data.draw(st.integers(-1, 7)), data.draw(st.integers(-1, 7))
    crop = _outcome("crop", lambda: image.crop(x, y, width, height))
    if isinstance(crop, GpuImage):
        _assert_inside(crop, start, size)
    _outcome("to_layout", lambda: image.to_layout("CHW"))
    _outcome("as_gpumat", lambda: image.expect("HWC").as_gpumat())
    _outcome("as_cupy", image.as_cupy)
    _outcome("cuda_array_interface", lambda: image.__cuda_array_interface__)


@pytest.mark.skipif(runtime().has_gpu, reason="copies and views of a fake pointer would touch a real GPU")
@settings(max_examples=600)
@given(
    spec_args=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from(["uint8", "int8", "float16", "bfloat16", "float64", "uint32", "bool"]),
    layout=st.sampled_from(["HWC", "CHW"]),
    stream=st.one_of(st.none(), ints, junk),
    max_version=st.one_of(st.none(), st.tuples(st.integers(-1, 3), st.integers(-1, 3)), junk),
    dl_device=st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 2)), junk),
    copy=st.one_of(st.none(), st.booleans()),
)
def test_device_header_views_and_exports(
    spec_args: tuple[int, int, int],
    dtype: str,
    layout: str,
    stream: Any,
    max_version: Any,
    dl_device: Any,
    copy: Any,
) -> None:
    height, width, channels = spec_args
    spec = ImageSpec(height=height, width=width, channels=channels, dtype=dtype, layout=layout)  # type: ignore[arg-type]
    image = GpuImage.from_pointer(FAKE, spec)
    _outcome("as_cupy", image.as_cupy)
    _outcome("as_gpumat", lambda: image.expect("HWC").as_gpumat())
    _outcome("cuda_array_interface", lambda: image.__cuda_array_interface__)
    _outcome(
        "__dlpack__",
        lambda: image.__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy),
    )
    _outcome("as_torch", image.as_torch)
