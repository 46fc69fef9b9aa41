"""Element types (``_dtypes``): what ``dtype=`` accepts and refuses, the static markers, each dtype's
size and its codes in NumPy, CAI and DLPack (DLPack's checked against torch's own capsules), the
integer ranges, and which accumulator a conversion's arithmetic runs in."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import AnyDType, DTypeError, DTypeName, GpuImageError
from gpuimage._dlpack_abi import NAME_VERSIONED, DLManagedTensorVersioned, capsule_pointer
from gpuimage._dtypes import (
    DTYPES,
    accumulator,
    dtype_from_dlpack,
    dtype_info,
    integer_range,
    is_integral,
    parse_dtype,
    parse_dtype_marker,
)

WHERE = "test()"
NAMES: tuple[DTypeName, ...] = get_args(DTypeName)
PLAIN: tuple[DTypeName, ...] = tuple(name for name in NAMES if name != "bfloat16")  # NumPy has them
INTEGRAL: tuple[DTypeName, ...] = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")
MARKERS: dict[type[AnyDType], DTypeName] = {
    gi.Bool: "bool",
    gi.UInt8: "uint8",
    gi.Int8: "int8",
    gi.UInt16: "uint16",
    gi.Int16: "int16",
    gi.UInt32: "uint32",
    gi.Int32: "int32",
    gi.Int64: "int64",
    gi.Float16: "float16",
    gi.BFloat16: "bfloat16",
    gi.Float32: "float32",
    gi.Float64: "float64",
}


# -- parse_dtype ------------------------------------------------------------------------------------


def test_the_table_has_every_name_once() -> None:
    assert tuple(DTYPES) == NAMES
    assert all(info.name == name for name, info in DTYPES.items())


@pytest.mark.parametrize("name", NAMES)
def test_names_and_markers_parse_to_the_name(name: DTypeName) -> None:
    assert parse_dtype(name, where=WHERE) == name
    (marker,) = [marker for marker, named in MARKERS.items() if named == name]
    assert marker.name == name
    assert parse_dtype(marker, where=WHERE) == name


@pytest.mark.parametrize("name", PLAIN)
def test_numpy_dtypes_and_scalar_types_parse_to_their_name(name: DTypeName) -> None:
    dtype = np.dtype(name)
    assert parse_dtype(dtype, where=WHERE) == name
    assert parse_dtype(dtype.type, where=WHERE) == name
    assert parse_dtype(dtype.newbyteorder("="), where=WHERE) == name, "native order spelled out"


@pytest.mark.parametrize(
    "value",
    [
        "float",  # NumPy would take these spellings: gpuimage takes its names only
        "f4",
        "uint64",
        "complex64",
        "UINT8",
        "",
        np.dtype(np.uint64),
        np.uint64,
        np.complex64,
        np.dtype(">f4"),  # byte-swapped (this machine is little-endian)
        np.dtype(">u2"),
        np.dtype([("r", np.uint8), ("g", np.uint8)]),
        np.dtype(object),
        np.dtype("U3"),
        np.floating,  # abstract scalar types: NumPy has no dtype for them
        np.number,
        np.generic,
        AnyDType,  # the marker of "any dtype"
        float,
        int,
        None,
        8,
    ],
    ids=repr,
)
def test_anything_else_is_refused_naming_the_value(value: object) -> None:
    with pytest.raises(DTypeError) as caught:
        parse_dtype(value, where=WHERE)
    message = str(caught.value)
    assert message.startswith("test(): expected one of bfloat16, bool, float16, float32, float64, int16, ")
    assert f"got dtype={value!r}." in message
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, GpuImageError)


def test_the_marker_parser_takes_any_dtype_as_none() -> None:
    assert parse_dtype_marker(AnyDType, where=WHERE) is None
    assert parse_dtype_marker(gi.Float16, where=WHERE) == "float16"
    assert parse_dtype_marker("int8", where=WHERE) == "int8"
    with pytest.raises(DTypeError, match=r"^test\(\): expected one of"):
        parse_dtype_marker("any", where=WHERE)


def test_every_marker_is_an_any_dtype() -> None:
    assert AnyDType.name is None
    assert all(issubclass(marker, AnyDType) for marker in MARKERS)
    assert sorted(MARKERS.values()) == sorted(NAMES), "one marker per dtype"


# -- dtype_info -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PLAIN)
def test_sizes_and_array_interface_codes_are_numpys(name: DTypeName) -> None:
    info = dtype_info(name)
    reference = np.dtype(name)
    assert info.itemsize == reference.itemsize
    assert info.cai_typestr == reference.str
    assert info.numpy == reference


def test_bfloat16_has_no_numpy_dtype_and_no_typestr() -> None:
    info = dtype_info("bfloat16")
    assert info.itemsize == 2
    assert info.cai_typestr is None, "CAI has no bfloat16 code: '<f2' would read back as float16"
    assert info.numpy is None


def test_dtype_info_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        dtype_info("uint8").itemsize = 2  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_dlpack_codes_are_the_ones_torch_exports(name: DTypeName) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.zeros(2, 3, dtype=getattr(torch, name))
    capsule = tensor.__dlpack__(max_version=(1, 0))
    managed = DLManagedTensorVersioned.from_address(capsule_pointer(capsule, NAME_VERSIONED))
    dtype = managed.dl_tensor.dtype
    info = dtype_info(name)
    assert (dtype.code, dtype.bits, dtype.lanes) == (info.dlpack_code, info.itemsize * 8, 1)
    assert dtype_from_dlpack(dtype.code, dtype.bits, dtype.lanes, where=WHERE) == name


@pytest.mark.parametrize("name", NAMES)
def test_dlpack_codes_read_back_to_the_name(name: DTypeName) -> None:
    info = dtype_info(name)
    assert dtype_from_dlpack(info.dlpack_code, info.itemsize * 8, 1, where=WHERE) == name


@pytest.mark.parametrize(
    ("code", "bits", "lanes"),
    [(2, 32, 4), (1, 8, 2), (2, 8, 1), (1, 64, 1), (5, 64, 1), (4, 32, 1), (6, 16, 1), (3, 8, 1)],
)
def test_dlpack_dtypes_gpuimage_lacks_are_refused(code: int, bits: int, lanes: int) -> None:
    expected = (
        rf"^test\(\): expected a DLPack dtype gpuimage supports, got \(code={code}, bits={bits}, "
        rf"lanes={lanes}\)\.$"
    )
    with pytest.raises(DTypeError, match=expected):
        dtype_from_dlpack(code, bits, lanes, where=WHERE)


# -- integer ranges and accumulators ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_integral_dtypes_are_bool_and_the_integers(name: DTypeName) -> None:
    assert is_integral(name) == (name in INTEGRAL)


@pytest.mark.parametrize("name", [name for name in INTEGRAL if name != "bool"])
def test_integer_ranges_are_numpys(name: DTypeName) -> None:
    limits = np.iinfo(name)
    assert integer_range(name) == (int(limits.min), int(limits.max))


def test_bool_ranges_from_zero_to_one() -> None:
    assert integer_range("bool") == (0, 1)


@given(st.sampled_from([name for name in INTEGRAL if name != "bool"]), st.integers(-(2**65), 2**65))
def test_a_value_is_in_range_exactly_when_the_dtype_holds_it(name: DTypeName, value: int) -> None:
    low, high = integer_range(name)
    if low <= value <= high:
        assert np.array(value, dtype=name).item() == value
    else:
        with pytest.raises(OverflowError):
            np.array(value, dtype=name)


def _float32_holds(name: DTypeName) -> bool:
    """Whether every value of ``name`` is exact in float32 (an independent reference)."""
    if name in ("float16", "bfloat16", "float32", "bool"):
        return True
    if name == "float64":
        return False
    limits: Any = np.iinfo(name)
    return bool(limits.min >= -(2**24) and limits.max <= 2**24)


@given(st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_the_accumulator_is_float32_only_where_it_holds_both_sides(
    source: DTypeName, target: DTypeName
) -> None:
    expected = "float32" if _float32_holds(source) and _float32_holds(target) else "float64"
    assert accumulator(source, target) == expected
