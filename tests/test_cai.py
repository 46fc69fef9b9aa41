"""__cuda_array_interface__ import: typestrs and the readonly flag, checked exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import DTypeError, GpuImage, InteropError

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
