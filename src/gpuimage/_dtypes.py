"""The element types gpuimage knows, and their codes in each interchange protocol.

Pure data: which foreign library supports which dtype lives in that library's spoke module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias, cast, get_args

import numpy as np

from ._errors import DTypeError

__all__ = [
    "DTYPES",
    "Accumulator",
    "AnyDType",
    "BFloat16",
    "Bool",
    "DTypeInfo",
    "DTypeLike",
    "DTypeName",
    "Float16",
    "Float32",
    "Float64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "accumulator",
    "dtype_from_dlpack",
    "dtype_info",
    "integer_range",
    "is_integral",
    "parse_dtype",
    "parse_dtype_marker",
]

DTypeName: TypeAlias = Literal[
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "int64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
]

# DLPack type codes (dlpack.h, DLDataTypeCode).
DLPACK_INT = 0
DLPACK_UINT = 1
DLPACK_FLOAT = 2
DLPACK_BFLOAT = 4
DLPACK_BOOL = 6


@dataclass(frozen=True, slots=True)
class DTypeInfo:
    """One element type: its size in bytes and its codes in the interchange protocols.

    ``cai_typestr`` is None where ``__cuda_array_interface__`` has no code (bfloat16); ``numpy`` is
    None where NumPy has no such dtype (bfloat16).
    """

    name: DTypeName
    itemsize: int
    dlpack_code: int
    cai_typestr: str | None
    numpy: np.dtype[np.generic] | None


def _info(name: DTypeName, itemsize: int, code: int, typestr: str | None) -> DTypeInfo:
    numpy_dtype = None if typestr is None else np.dtype(typestr)
    return DTypeInfo(name, itemsize, code, typestr, numpy_dtype)


DTYPES: dict[DTypeName, DTypeInfo] = {
    info.name: info
    for info in (
        _info("bool", 1, DLPACK_BOOL, "|b1"),
        _info("uint8", 1, DLPACK_UINT, "|u1"),
        _info("int8", 1, DLPACK_INT, "|i1"),
        _info("uint16", 2, DLPACK_UINT, "<u2"),
        _info("int16", 2, DLPACK_INT, "<i2"),
        _info("uint32", 4, DLPACK_UINT, "<u4"),
        _info("int32", 4, DLPACK_INT, "<i4"),
        _info("int64", 8, DLPACK_INT, "<i8"),
        _info("float16", 2, DLPACK_FLOAT, "<f2"),
        _info("bfloat16", 2, DLPACK_BFLOAT, None),
        _info("float32", 4, DLPACK_FLOAT, "<f4"),
        _info("float64", 8, DLPACK_FLOAT, "<f8"),
    )
}
_NAMES: frozenset[str] = frozenset(get_args(DTypeName))


Accumulator: TypeAlias = Literal["float32", "float64"]
"""The float type a conversion's arithmetic runs in."""

_WIDE = frozenset({"float64", "int32", "uint32", "int64"})  # values float32 cannot hold exactly
_INTEGRAL = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"})


def is_integral(dtype: DTypeName) -> bool:
    """True for bool and the integer dtypes."""
    return dtype in _INTEGRAL


def integer_range(dtype: DTypeName) -> tuple[int, int]:
    """The smallest and largest value of an integral dtype (bool: 0 and 1)."""
    if dtype == "bool":
        return 0, 1
    bits = DTYPES[dtype].itemsize * 8
    if dtype.startswith("u"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def accumulator(source: DTypeName, target: DTypeName) -> Accumulator:
    """The float type the arithmetic runs in: float64 where float32 would lose either side's values."""
    return "float64" if source in _WIDE or target in _WIDE else "float32"


class AnyDType:
    """Static marker: any element type. ``GpuImage[HWC]`` means ``GpuImage[HWC, AnyDType]``."""

    name: ClassVar[DTypeName | None] = None


class Bool(AnyDType):
    """Static marker for ``bool`` images."""

    name: ClassVar[DTypeName | None] = "bool"


class UInt8(AnyDType):
    """Static marker for ``uint8`` images."""

    name: ClassVar[DTypeName | None] = "uint8"


class Int8(AnyDType):
    """Static marker for ``int8`` images."""

    name: ClassVar[DTypeName | None] = "int8"


class UInt16(AnyDType):
    """Static marker for ``uint16`` images."""

    name: ClassVar[DTypeName | None] = "uint16"


class Int16(AnyDType):
    """Static marker for ``int16`` images."""

    name: ClassVar[DTypeName | None] = "int16"


class UInt32(AnyDType):
    """Static marker for ``uint32`` images."""

    name: ClassVar[DTypeName | None] = "uint32"


class Int32(AnyDType):
    """Static marker for ``int32`` images."""

    name: ClassVar[DTypeName | None] = "int32"


class Int64(AnyDType):
    """Static marker for ``int64`` images."""

    name: ClassVar[DTypeName | None] = "int64"


class Float16(AnyDType):
    """Static marker for ``float16`` images."""

    name: ClassVar[DTypeName | None] = "float16"


class BFloat16(AnyDType):
    """Static marker for ``bfloat16`` images."""

    name: ClassVar[DTypeName | None] = "bfloat16"


class Float32(AnyDType):
    """Static marker for ``float32`` images."""

    name: ClassVar[DTypeName | None] = "float32"


class Float64(AnyDType):
    """Static marker for ``float64`` images."""

    name: ClassVar[DTypeName | None] = "float64"


DTypeLike: TypeAlias = DTypeName | np.dtype[np.generic] | type[np.generic] | type[AnyDType]
"""What every ``dtype=`` parameter accepts: a name, a NumPy dtype or scalar type, or a marker class."""


def parse_dtype(value: object, *, where: str) -> DTypeName:
    """Turn a dtype name, NumPy dtype, NumPy scalar type or marker class into a dtype name."""
    if isinstance(value, str) and value in _NAMES:
        return value  # type: ignore[return-value]  # membership checked just above
    if isinstance(value, type) and issubclass(value, AnyDType) and value.name is not None:
        return value.name
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        # abstract scalar types (np.floating, np.number) have no dtype: NumPy raises TypeError
        numpy_dtype = _safe_dtype(cast("np.dtype[np.generic] | type[np.generic]", value))
        name = None if numpy_dtype is None else numpy_dtype.name
        if numpy_dtype is not None and name in _NAMES and numpy_dtype.isnative:
            return name  # type: ignore[return-value]  # membership checked just above
    raise DTypeError(
        f"{where}: expected one of {', '.join(sorted(_NAMES))}, got dtype={value!r}. "
        "Complex, 64-bit unsigned, byte-swapped, structured and abstract (np.floating) dtypes are not "
        "image dtypes."
    )


def parse_dtype_marker(value: object, *, where: str) -> DTypeName | None:
    """``parse_dtype`` that also takes ``AnyDType`` (any dtype: None). For ``expect()``'s ``dtype``."""
    if value is AnyDType:
        return None
    return parse_dtype(value, where=where)


def dtype_info(name: DTypeName) -> DTypeInfo:
    """The table entry of a dtype name."""
    return DTYPES[name]


def _safe_dtype(value: str | np.dtype[np.generic] | type[np.generic]) -> np.dtype[np.generic] | None:
    try:
        return np.dtype(value)
    except (TypeError, ValueError):
        return None


def dtype_from_dlpack(code: int, bits: int, lanes: int, *, where: str) -> DTypeName:
    """The dtype of a DLPack ``DLDataType`` (code, bits, lanes)."""
    if lanes == 1:
        for info in DTYPES.values():
            if info.dlpack_code == code and info.itemsize * 8 == bits:
                return info.name
    raise DTypeError(
        f"{where}: expected a DLPack dtype gpuimage supports, got (code={code}, bits={bits}, lanes={lanes})."
    )
