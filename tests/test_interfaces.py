"""Array-interface dicts and exporters (``_interfaces``): the CAI v3 and ``__array_interface__`` dicts of
a spec (shape in layout order, strides in bytes, read-only flag, typestr, the stream encoded for the
protocol), bfloat16's refusal, and exporters and host views that keep the memory's owner alive."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import DTypeError, DTypeName, GpuImageError, ImageSpec, Layout
from gpuimage._interfaces import (
    ArrayExport,
    CudaArrayExport,
    cuda_array_interface,
    host_array_interface,
    host_view,
)
from gpuimage.strategies import image_specs

FAKE = 0x7F00_0000_0000
PITCHED_CHW = ImageSpec(
    height=3, width=5, channels=2, dtype="float32", layout="CHW", row_pitch=32, channel_stride=128, device=1
)


def test_the_cuda_array_interface_of_a_pitched_chw_spec() -> None:
    interface = cuda_array_interface(FAKE, PITCHED_CHW, stream=7, readonly=False)
    assert interface == {
        "shape": (2, 3, 5),
        "typestr": "<f4",
        "data": (FAKE, False),
        "strides": (128, 32, 4),  # bytes, in shape order
        "version": 3,
        "stream": 7,
    }


def test_the_cuda_array_interface_of_a_packed_hwc_spec_spells_its_strides() -> None:
    spec = ImageSpec.packed(height=4, width=6, channels=3, dtype="uint16")
    interface = cuda_array_interface(FAKE, spec, stream=None, readonly=True)
    assert interface["shape"] == (4, 6, 3)
    assert interface["strides"] == (36, 6, 2), "explicit even where packed (None would also be valid)"
    assert interface["typestr"] == "<u2"
    assert interface["data"] == (FAKE, True)
    assert interface["stream"] is None, "nothing pending: no stream to order after"


@pytest.mark.parametrize(("stream", "encoded"), [(0, 1), (1, 1), (2, 2), (0x5500, 0x5500)])
def test_the_stream_is_written_as_cai_encodes_it(stream: int, encoded: int) -> None:
    interface = cuda_array_interface(FAKE, PITCHED_CHW, stream=stream, readonly=False)
    assert interface["stream"] == encoded, "CAI forbids 0: the legacy default stream is 1"


@given(image_specs(max_side=12), st.booleans(), st.one_of(st.none(), st.integers(0, 2**40)))
def test_both_dicts_describe_any_spec(spec: ImageSpec, readonly: bool, stream: int | None) -> None:
    typestr = "<u2" if spec.dtype == "bfloat16" else spec.dtype
    carrier: DTypeName | None = "uint16" if spec.dtype == "bfloat16" else None
    device = cuda_array_interface(FAKE, spec, stream=stream, readonly=readonly, as_dtype=carrier)
    host = host_array_interface(FAKE, spec, readonly=readonly, as_dtype=carrier)
    expected_shape = (
        (spec.height, spec.width, spec.channels)
        if spec.layout is Layout.HWC
        else (spec.channels, spec.height, spec.width)
    )
    expected_strides = (
        (spec.row_pitch, spec.pixel_stride, spec.channel_stride)
        if spec.layout is Layout.HWC
        else (spec.channel_stride, spec.row_pitch, spec.pixel_stride)
    )
    for interface in (device, host):
        assert interface["shape"] == expected_shape
        assert interface["strides"] == expected_strides
        assert np.dtype(interface["typestr"]) == np.dtype(typestr)
        assert interface["data"] == (FAKE, readonly)
        assert interface["version"] == 3
    assert "stream" not in host, "the host protocol has no stream"


@pytest.mark.parametrize("device_side", [True, False], ids=["device", "host"])
def test_bfloat16_has_no_typestr_and_is_refused(device_side: bool) -> None:
    spec = ImageSpec.packed(height=2, width=2, channels=1, dtype="bfloat16")
    name = "__cuda_array_interface__" if device_side else "__array_interface__"

    def build() -> object:
        if device_side:
            return cuda_array_interface(FAKE, spec, stream=None, readonly=False)
        return host_array_interface(FAKE, spec, readonly=False)

    with pytest.raises(DTypeError) as caught:
        build()
    assert str(caught.value) == (
        f"{name}: bfloat16 has no array-interface typestr (torch would read it back as float16). "
        "Use DLPack (__dlpack__ / as_torch()) for bfloat16 images."
    )
    assert isinstance(caught.value, GpuImageError)


def test_as_dtype_reinterprets_the_elements() -> None:
    spec = ImageSpec.packed(height=2, width=2, channels=3, dtype="bfloat16")
    interface = cuda_array_interface(FAKE, spec, stream=None, readonly=False, as_dtype="uint16")
    assert interface["typestr"] == "<u2"
    assert interface["strides"] == spec.strides, "same bytes, same strides"


# -- exporters and host views -------------------------------------------------------------------------


class _Owner:
    """Something to keep alive."""


def test_exporters_carry_the_dict_and_keep_the_owner() -> None:
    owner = _Owner()
    alive = weakref.ref(owner)
    interface = cuda_array_interface(FAKE, PITCHED_CHW, stream=None, readonly=False)
    exported = CudaArrayExport(interface, owner)
    array_export = ArrayExport(host_array_interface(FAKE, PITCHED_CHW, readonly=False), owner)
    assert exported.__cuda_array_interface__ is interface
    assert exported.owner is owner
    assert array_export.__array_interface__["data"] == (FAKE, False)
    del owner
    gc.collect()
    assert alive() is not None
    del exported, array_export
    gc.collect()
    assert alive() is None, "the exporters hold nothing else"


def _memory(spec: ImageSpec, seed: int) -> npt.NDArray[np.uint8]:
    """Bytes enough for ``spec``, filled with a pattern."""
    return ((np.arange(spec.nbytes, dtype=np.int64) * 31 + seed) % 251).astype(np.uint8)


@given(image_specs(max_side=10, max_padding_items=3), st.integers(0, 250), st.booleans())
def test_host_views_see_the_memory_through_the_specs_strides(
    spec: ImageSpec, seed: int, readonly: bool
) -> None:
    memory = _memory(spec, seed)
    carrier: DTypeName | None = "uint16" if spec.dtype == "bfloat16" else None
    view = host_view(memory.ctypes.data, spec, memory, readonly=readonly, as_dtype=carrier)
    reference: npt.NDArray[Any] = np.lib.stride_tricks.as_strided(
        _typed(memory, carrier or spec.dtype), shape=spec.shape, strides=spec.strides
    )
    assert view.shape == spec.shape
    assert view.strides == spec.strides
    assert view.ctypes.data == memory.ctypes.data
    assert view.flags.writeable is not readonly
    assert np.array_equal(view, reference, equal_nan=view.dtype.kind == "f")


def _typed(memory: npt.NDArray[np.uint8], dtype: str) -> npt.NDArray[Any]:
    """``memory`` seen as ``dtype`` (its length cut to whole elements)."""
    itemsize = np.dtype(dtype).itemsize
    usable = memory[: memory.size - memory.size % itemsize]
    return usable.view(dtype)


def test_a_read_only_host_view_refuses_writes() -> None:
    memory = np.zeros(16, np.uint8)
    spec = ImageSpec.packed(height=2, width=2, channels=4, device="cpu")
    view = host_view(memory.ctypes.data, spec, memory, readonly=True)
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0, 0] = 1
    writable = host_view(memory.ctypes.data, spec, memory, readonly=False)
    writable[1, 1, 3] = 9
    assert memory[15] == 9, "a write through the view is a write of the memory"


def test_a_host_view_keeps_the_owner_alive_while_it_lives() -> None:
    class Owner:
        def __init__(self) -> None:
            self.memory = np.arange(24, dtype=np.uint8)

    owner = Owner()
    alive = weakref.ref(owner)
    spec = ImageSpec.packed(height=2, width=3, channels=4, device="cpu")
    view = host_view(owner.memory.ctypes.data, spec, owner, readonly=False)
    del owner
    gc.collect()
    assert alive() is not None
    assert view[1, 2, 3] == 23
    derived = view[1:]  # a slice's base chain ends at the exporter too
    del view
    gc.collect()
    assert alive() is not None
    del derived
    gc.collect()
    assert alive() is None


def test_array_request_answers_numpys_dtype_and_copy() -> None:
    from gpuimage import ExportError
    from gpuimage._interfaces import array_request

    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert array_request(array, None, None, "image") is array
    copied = array_request(array, None, True, "image")
    assert copied is not array
    np.testing.assert_array_equal(copied, array)
    assert array_request(array, np.float32, None, "image").dtype == np.float32
    with pytest.raises(ExportError, match=r"numpy.asarray\(batch, dtype=..., copy=False\)"):
        array_request(array, np.float32, False, "batch")
