"""The array-interface dicts gpuimage builds, and the small exporters that carry them with the memory's
owner: neutral ground for every spoke that makes a view through ``__cuda_array_interface__`` (torch,
CuPy's consumers) or ``__array_interface__`` (NumPy, torch on the host). Strides are in bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._dtypes import DTypeName, dtype_info
from ._errors import DTypeError, ExportError
from ._spec import ImageSpec
from ._streams import to_protocol

__all__ = [
    "ArrayExport",
    "CudaArrayExport",
    "array_request",
    "cuda_array_interface",
    "host_array_interface",
    "host_view",
]


def _typestr(dtype: DTypeName, *, where: str) -> str:
    typestr = dtype_info(dtype).cai_typestr
    if typestr is None:
        raise DTypeError(
            f"{where}: {dtype} has no array-interface typestr (torch would read it back as float16). "
            "Use DLPack (__dlpack__ / as_torch()) for bfloat16 images."
        )
    return typestr


def cuda_array_interface(
    ptr: int, spec: ImageSpec, *, stream: int | None, readonly: bool, as_dtype: DTypeName | None = None
) -> dict[str, Any]:
    """The v3 ``__cuda_array_interface__`` dict of an image (strides always explicit, in bytes).

    ``as_dtype`` reinterprets the elements as another dtype of the same size (bfloat16 as uint16).
    """
    return {
        "shape": spec.shape,
        "typestr": _typestr(as_dtype or spec.dtype, where="__cuda_array_interface__"),
        "data": (ptr, readonly),
        "strides": spec.strides,
        "version": 3,
        "stream": None if stream is None else to_protocol(stream),  # CAI forbids 0: the legacy default is 1
    }


def host_array_interface(
    ptr: int, spec: ImageSpec, *, readonly: bool, as_dtype: DTypeName | None = None
) -> dict[str, Any]:
    """The ``__array_interface__`` (v3) dict of an image in host memory."""
    return {
        "shape": spec.shape,
        "typestr": _typestr(as_dtype or spec.dtype, where="__array_interface__"),
        "data": (ptr, readonly),
        "strides": spec.strides,
        "version": 3,
    }


class CudaArrayExport:
    """A CAI exporter that keeps the memory's owner alive (torch.as_tensor and CuPy hold on to it)."""

    __slots__ = ("__cuda_array_interface__", "owner")

    def __init__(self, interface: dict[str, Any], owner: object) -> None:
        self.__cuda_array_interface__ = interface
        self.owner = owner


class ArrayExport:
    """An ``__array_interface__`` exporter that keeps the memory's owner alive (NumPy's ``.base``)."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, interface: dict[str, Any], owner: object) -> None:
        self.__array_interface__ = interface
        self.owner = owner


def host_view(
    ptr: int, spec: ImageSpec, owner: object, *, readonly: bool, as_dtype: DTypeName | None = None
) -> npt.NDArray[Any]:
    """A NumPy array over host memory described by ``spec`` that keeps ``owner`` alive."""
    return np.asarray(
        ArrayExport(host_array_interface(ptr, spec, readonly=readonly, as_dtype=as_dtype), owner)
    )


def array_request(array: npt.NDArray[Any], dtype: object, copy: bool | None, what: str) -> npt.NDArray[Any]:
    """NumPy's ``__array__(dtype, copy)`` answered over ``array`` (a host view): itself, a copy, or a
    converted copy; ``copy=False`` with another dtype is refused (it would copy)."""
    if dtype is not None and array.dtype != dtype:
        if copy is False:
            raise ExportError(f"numpy.asarray({what}, dtype=..., copy=False): a dtype change copies.")
        return array.astype(dtype)  # type: ignore[call-overload, no-any-return]  # dtype is numpy's
    return array.copy() if copy else array
