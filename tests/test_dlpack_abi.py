"""DLPack's C ABI (``_dlpack_abi``): the ctypes structures have dlpack.h's sizes and field offsets on a
64-bit machine, they read what a real producer (torch) writes, the capsule calls work, and
``immortal`` keeps an object alive for good."""

from __future__ import annotations

import ctypes
import gc
import sys
import weakref
from typing import Any

import pytest

from gpuimage import _dlpack_abi as abi

pytestmark = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the offsets of a 64-bit ABI")


def _offsets(structure: Any) -> dict[str, int]:
    return {name: getattr(structure, name).offset for name, *_ in structure._fields_}


def test_sizes_and_offsets_are_dlpack_hs() -> None:
    # dlpack.h v1.x on LP64: every struct laid out with natural alignment
    assert (ctypes.sizeof(abi.DLDevice), _offsets(abi.DLDevice)) == (8, {"device_type": 0, "device_id": 4})
    assert (ctypes.sizeof(abi.DLDataType), _offsets(abi.DLDataType)) == (
        4,
        {"code": 0, "bits": 1, "lanes": 2},
    )
    assert ctypes.sizeof(abi.DLTensor) == 48
    assert _offsets(abi.DLTensor) == {
        "data": 0,
        "device": 8,
        "ndim": 16,
        "dtype": 20,
        "shape": 24,
        "strides": 32,
        "byte_offset": 40,
    }
    assert ctypes.sizeof(abi.DLManagedTensor) == 64
    assert _offsets(abi.DLManagedTensor) == {"dl_tensor": 0, "manager_ctx": 48, "deleter": 56}
    assert (ctypes.sizeof(abi.DLPackVersion), _offsets(abi.DLPackVersion)) == (8, {"major": 0, "minor": 4})
    assert ctypes.sizeof(abi.DLManagedTensorVersioned) == 80
    assert _offsets(abi.DLManagedTensorVersioned) == {
        "version": 0,
        "manager_ctx": 8,
        "deleter": 16,
        "flags": 24,
        "dl_tensor": 32,
    }


def test_field_types_have_dlpack_hs_widths() -> None:
    widths = {field[0]: ctypes.sizeof(field[1]) for field in abi.DLTensor._fields_}
    assert widths == {
        "data": 8,
        "device": 8,
        "ndim": 4,
        "dtype": 4,
        "shape": 8,
        "strides": 8,
        "byte_offset": 8,
    }
    assert ctypes.sizeof(abi.Deleter) == 8, "a function pointer"
    versioned = {field[0]: ctypes.sizeof(field[1]) for field in abi.DLManagedTensorVersioned._fields_}
    assert versioned == {"version": 8, "manager_ctx": 8, "deleter": 8, "flags": 8, "dl_tensor": 48}
    managed = {field[0]: ctypes.sizeof(field[1]) for field in abi.DLManagedTensor._fields_}
    assert managed == {"dl_tensor": 48, "manager_ctx": 8, "deleter": 8}


def _check_tensor(tensor: abi.DLTensor, source: Any) -> None:
    assert tensor.data == source.data_ptr()
    assert (tensor.device.device_type, tensor.device.device_id) == (1, 0), "kDLCPU"
    assert tensor.ndim == 3
    assert [tensor.shape[axis] for axis in range(3)] == list(source.shape)
    assert [tensor.strides[axis] for axis in range(3)] == list(source.stride()), "strides in elements"
    assert (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes) == (0, 16, 1), "kDLInt, 16 bits"
    assert tensor.byte_offset == 0


def test_the_structures_read_torchs_versioned_capsule() -> None:
    torch = pytest.importorskip("torch")
    source = torch.zeros(4, 6, 3, dtype=torch.int16)[1:3, ::2]
    capsule = source.__dlpack__(max_version=(1, 0))
    assert abi.capsule_is_valid(capsule, abi.NAME_VERSIONED) == 1
    assert abi.capsule_is_valid(capsule, abi.NAME) == 0
    managed = abi.DLManagedTensorVersioned.from_address(abi.capsule_pointer(capsule, abi.NAME_VERSIONED))
    assert managed.version.major == 1
    assert managed.deleter, "the producer's deleter"
    assert managed.flags & 1 == 0, "not read-only"
    _check_tensor(managed.dl_tensor, source)


def test_the_structures_read_torchs_legacy_capsule() -> None:
    torch = pytest.importorskip("torch")
    source = torch.zeros(4, 6, 3, dtype=torch.int16)[1:3, ::2]
    capsule = torch.utils.dlpack.to_dlpack(source)
    assert abi.capsule_is_valid(capsule, abi.NAME) == 1
    managed = abi.DLManagedTensor.from_address(abi.capsule_pointer(capsule, abi.NAME))
    assert managed.deleter
    _check_tensor(managed.dl_tensor, source)


def test_a_capsule_made_here_reads_back_and_can_be_renamed() -> None:
    managed = abi.DLManagedTensorVersioned()
    managed.version.major, managed.version.minor = 1, 1
    address = ctypes.addressof(managed)
    capsule = abi.capsule_new(address, abi.NAME_VERSIONED, abi.NO_DESTRUCTOR)
    assert type(capsule).__name__ == "PyCapsule"
    assert abi.capsule_pointer(capsule, abi.NAME_VERSIONED) == address
    with pytest.raises(ValueError, match="incorrect name"):
        abi.capsule_pointer(capsule, abi.NAME)  # the wrong name: Python's own error
    assert abi.capsule_set_name(capsule, abi.USED_VERSIONED) == 0
    assert abi.capsule_is_valid(capsule, abi.USED_VERSIONED) == 1
    assert abi.capsule_is_valid(capsule, abi.NAME_VERSIONED) == 0


def test_capsule_names_are_dlpacks() -> None:
    assert abi.NAME.value == b"dltensor"
    assert abi.NAME_VERSIONED.value == b"dltensor_versioned"
    assert abi.USED.value == b"used_dltensor"
    assert abi.USED_VERSIONED.value == b"used_dltensor_versioned"
    assert not abi.NO_DESTRUCTOR, "a NULL destructor"


class _Kept:
    """Something weak-referenceable to keep alive."""


def test_immortal_returns_the_object_and_keeps_it_alive() -> None:
    kept = _Kept()
    before = sys.getrefcount(kept)
    assert abi.immortal(kept) is kept
    assert sys.getrefcount(kept) == before + 1, "one reference that nothing gives back"
    alive = weakref.ref(kept)
    del kept
    gc.collect()
    assert alive() is not None, "consumers may call a deleter after every name of it is gone"
