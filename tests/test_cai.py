"""The CUDA Array Interface spoke (``_cai``): a foreign ``__cuda_array_interface__`` imported, with
default strides and its stream read, typestrs and the readonly flag checked exactly, and bad
interfaces refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import DTypeError, GpuImage, InteropError, LayoutError, SpecError

FAKE = 0x7F00_0000_0000
EXACT_TYPESTRS = {
    "|b1": "bool",
    "|u1": "uint8",
    "|i1": "int8",
    "<u1": "uint8",
    ">i1": "int8",
    "<u2": "uint16",
    "<i2": "int16",
    "<u4": "uint32",
    "<i4": "int32",
    "<i8": "int64",
    "<f2": "float16",
    "<f4": "float32",
    "<f8": "float64",
}


class Cai:
    def __init__(self, interface: dict[str, Any]) -> None:
        self.__cuda_array_interface__ = interface


def _import(**changes: Any) -> GpuImage:
    interface: dict[str, Any] = {"shape": (2, 4), "typestr": "|u1", "data": (FAKE, False), "version": 3}
    interface.update(changes)
    return GpuImage.from_cuda_array_interface(Cai(interface), device=0)


@pytest.mark.parametrize(("typestr", "dtype"), sorted(EXACT_TYPESTRS.items()))
def test_exact_typestrs_give_their_dtype(typestr: str, dtype: str) -> None:
    assert _import(typestr=typestr).dtype == dtype


@pytest.mark.parametrize(
    "typestr", ["b", "B", "?", "f", "i1", "u1", "b1", "int8", "float32", "=f4", "|f4", ">f4", "<b", " |u1"]
)
def test_numpy_spellings_that_are_not_typestrs_are_refused(typestr: str) -> None:
    # issue 11, defect 17: 'b' (NumPy's char for int8) parsed as int8; '|b1' is bool
    with pytest.raises(DTypeError, match="'\\|b1' is bool, '\\|i1' int8"):
        _import(typestr=typestr)


@given(st.text(max_size=5))
def test_any_text_is_an_exact_typestr_or_a_dtype_error(typestr: str) -> None:
    # issue 11, defect 17: only exact typestrs are accepted
    try:
        dtype = _import(typestr=typestr).dtype
    except DTypeError:
        assert typestr not in EXACT_TYPESTRS
    else:
        assert EXACT_TYPESTRS[typestr] == dtype


@pytest.mark.parametrize(
    "flag",
    [np.array(True), np.array([True, False]), [True], (False,), 1, 0, "yes", None, 1.0],
    ids=["0d-array", "1d-array", "list", "tuple", "one", "zero", "text", "none", "float"],
)
def test_readonly_flags_that_are_not_bools_are_refused(flag: object) -> None:
    # issue 11, defect 17: an array flag raised NumPy's ValueError ("truth value ... ambiguous")
    with pytest.raises(InteropError, match="readonly flag"):
        _import(data=(FAKE, flag))


@pytest.mark.parametrize("flag", [True, False, np.True_, np.False_])
def test_bool_readonly_flags_are_read(flag: object) -> None:
    assert _import(data=(FAKE, flag)).readonly is bool(flag)


class FakeCai:
    def __init__(self, **interface: object) -> None:
        self.__cuda_array_interface__ = {
            "shape": (4, 5, 3),
            "typestr": "|u1",
            "data": (FAKE, False),
            "version": 3,
            **interface,
        }


def test_cai_import_reads_contiguous_default_strides_and_stream() -> None:
    image = GpuImage.from_cuda_array_interface(FakeCai(stream=5), layout="HWC", device=1)
    assert image.strides == (15, 3, 1)
    assert image.stream == 5
    assert image.device.index == 1
    assert GpuImage.from_cuda_array_interface(FakeCai(stream=5), layout="HWC", stream=9).stream == 9


def test_a_callers_stream_overrides_a_forbidden_stream_0() -> None:
    # PyNvVideoCodec 2.2 exports 'stream': 0 for a decoder on the default stream: the caller says which
    with pytest.raises(InteropError, match=r"0 is forbidden.*pass it as stream="):
        GpuImage.from_cuda_array_interface(FakeCai(stream=0), layout="HWC")
    assert GpuImage.from_cuda_array_interface(FakeCai(stream=0), layout="HWC", stream=7).stream == 7


@pytest.mark.parametrize(
    ("interface", "error", "message"),
    [
        ({"version": 4}, InteropError, "version"),
        ({"mask": object()}, InteropError, "mask"),
        ({"data": (0, False)}, SpecError, "non-NULL"),
        ({"data": (FAKE + 1, False), "typestr": "<f4"}, SpecError, "aligned"),
        ({"data": "nope"}, InteropError, "data"),
        ({"shape": (4, "5", 3)}, InteropError, "shape"),
        ({"typestr": "<c8"}, DTypeError, "typestr"),
        ({"stream": 0}, InteropError, "0 is forbidden"),
        ({"strides": (2, 3, 1)}, SpecError, "overlap"),
        ({"shape": (4, 5, 3, 1)}, LayoutError, "2-D"),
    ],
    ids=["version", "mask", "null", "misaligned", "data", "shape", "dtype", "stream0", "overlap", "rank"],
)
def test_bad_cai_is_rejected(interface: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        GpuImage.from_cuda_array_interface(FakeCai(**interface), layout="HWC")


def test_not_a_cai_object() -> None:
    with pytest.raises(InteropError, match="no __cuda_array_interface__"):
        GpuImage.from_cuda_array_interface(object(), layout="HWC")
