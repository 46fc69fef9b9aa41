"""PyTorch spoke: tensors in, tensors out. Everything gpuimage knows about torch is here."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy.typing as npt

from ._backends import missing_backend

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise missing_backend("torch") from exc

from ._device import CPU, Device, cuda_device
from ._dtypes import DTypeName
from ._errors import DeviceError, DTypeError, InteropError, MissingBackendError
from ._interfaces import CudaArrayExport, cuda_array_interface, host_view
from ._layout import Layout
from ._source import Imported, SpecCache, SpecMemo, check_placement, imported, spec_from_strided
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._runtime import Runtime
from ._spokes import OutArray, Spoke
from ._torch_exchange import view_through_exchange
from ._torch_runtime import (
    TorchRuntime,
    cuda_available,
    current_stream,
    current_stream_object,
    torch_device,
)

__all__ = [
    "DTYPES",
    "cuda_available",
    "empty",
    "strided_parts",
    "current_stream",
    "current_stream_object",
    "gpu_runtime",
    "parse",
    "torch_device",
    "view",
]

DTYPES: dict[DTypeName, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "uint16": torch.uint16,
    "int16": torch.int16,
    "uint32": torch.uint32,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
_NAMES: dict[torch.dtype, DTypeName] = {value: key for key, value in DTYPES.items()}


_STRIDED = torch.strided
_specs = SpecCache()


def parse(
    tensor: object, /, *, layout: Layout | None, device: Device | None = None, stream: int | None, where: str
) -> Imported:
    """Wrap a strided tensor (2-D, or 3-D with a layout) as it is: permuted and sliced views too.

    The data is ready on ``stream``, by default torch's current stream on the tensor's device
    (``device`` is ignored: a tensor knows its own).
    """
    if not isinstance(tensor, torch.Tensor):
        raise InteropError(f"{where}: expected a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.layout is not _STRIDED:  # sparse tensors have no strides to build a key from
        _checked_spec(tensor, layout, where)
    spec = _specs.get((tensor.dtype, tensor.shape, tensor.stride(), tensor.device, layout))
    if spec is None:
        spec = _checked_spec(tensor, layout, where)
    if tensor.is_neg() or tensor.is_conj():  # per tensor, not per geometry
        _refuse_lazy_views(tensor, where)
    # torch checks a view's bounds when it is made, but a storage can shrink afterwards (resize_)
    storage = tensor.untyped_storage()
    ptr = check_placement(tensor.data_ptr(), spec, storage.data_ptr(), storage.nbytes(), where=where)
    device = spec.device
    if stream is None and device.kind == "cuda":
        stream = current_stream(device.index)
    return imported((ptr, spec, tensor, stream, False, None, True))


def _checked_spec(tensor: torch.Tensor, layout: Layout | None, where: str) -> ImageSpec:
    """Every check of a tensor's kind, dtype, device and geometry; the spec, stored for reuse."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        raise InteropError(
            f"{where}: expected a dense strided tensor, got layout={tensor.layout}, "
            f"quantized={tensor.is_quantized}, meta={tensor.is_meta}. Call .to_dense() first."
        )
    _refuse_lazy_views(tensor, where)
    dtype = _NAMES.get(tensor.dtype)
    if dtype is None:
        raise DTypeError(f"{where}: torch dtype {tensor.dtype} is not an image dtype.")
    device = _device_of(tensor.device, where=where)
    itemsize = tensor.element_size()
    storage = tensor.untyped_storage()
    spec = spec_from_strided(
        tensor.data_ptr(),
        tensor.shape,
        [stride * itemsize for stride in tensor.stride()],
        dtype,
        layout,
        device,
        where=where,
        allocation=(storage.data_ptr(), storage.nbytes()),
    )
    return _specs.put((tensor.dtype, tensor.shape, tensor.stride(), tensor.device, layout), spec)


def _refuse_lazy_views(tensor: torch.Tensor, where: str) -> None:
    """Raise for a tensor whose memory does not hold its values: torch's negative and conjugate bits
    (``t.conj().imag``, ``torch._neg_view(t)``) flip signs lazily, on read. Memory shared with another
    library would lose the sign, so refuse them (torch's ``__dlpack__`` refuses the conjugate bit; as
    of 2.13 it exports a negated view without its sign)."""
    if tensor.is_neg():
        raise InteropError(
            f"{where}: expected a tensor whose memory holds its values, got one with torch's negative bit "
            "set (tensor.is_neg(), from conj().imag or a negated view): the memory holds the negated "
            "values. Call tensor.resolve_neg() first (a copy)."
        )
    if tensor.is_conj():
        raise InteropError(
            f"{where}: expected a tensor whose memory holds its values, got one with torch's conjugate "
            "bit set (tensor.is_conj()). Call tensor.resolve_conj() first (a copy)."
        )


def _device_of(device: torch.device, *, where: str) -> Device:
    if device.type == "cuda":
        index = cast("int | None", device.index)  # torch's stub says int; it is None for plain "cuda"
        return cuda_device(index if index is not None else torch.cuda.current_device())
    if device.type == "cpu":
        return CPU
    raise DeviceError(f"{where}: tensors on {device} are not supported; use a CUDA or CPU tensor.")


class _FromNumpy(Protocol):
    """The part of the torch module that ``from_numpy`` needs, with the parameter torch leaves untyped."""

    def from_numpy(self, ndarray: npt.NDArray[Any], /) -> torch.Tensor: ...


def from_numpy(array: npt.NDArray[Any]) -> torch.Tensor:
    """``torch.from_numpy`` (a tensor sharing the array's memory), typed."""
    return cast(_FromNumpy, torch).from_numpy(array)


def view(ptr: int, spec: ImageSpec, owner: object) -> torch.Tensor:
    """A tensor over the image's memory (same pointer, same strides) that keeps ``owner`` alive.

    Device memory goes through torch's DLPack C exchange function (``_torch_exchange``) where its
    device is known, else through the array interface, where bfloat16 has no code, so its elements
    travel as int16 and the tensor is reinterpreted (``Tensor.view(dtype)``, no copy).
    """
    interface, device, bfloat16 = _headers(spec)
    if device is not None and getattr(owner, "located", False):
        # memory whose device its source reported: torch's C exchange function, where torch has one
        tensor = view_through_exchange(torch.Tensor, ptr, spec, owner)
        if tensor is not None:
            return cast(torch.Tensor, tensor)
    if device is not None:
        # a new dict per view: the exporter hands it to torch, which reads it once
        interface = {**interface, "data": (ptr, False)}
        tensor = torch.as_tensor(CudaArrayExport(interface, owner), device=device)
        if tensor.data_ptr() != ptr:  # torch copies rather than fail when the device is wrong
            raise DeviceError(
                f"as_torch(): the memory at {ptr:#x} is not on {spec.device} (torch made a copy). Give the "
                "right device when wrapping it (device=...)."
            )
    else:
        carrier: DTypeName | None = "int16" if bfloat16 else None
        tensor = from_numpy(host_view(ptr, spec, owner, readonly=False, as_dtype=carrier))
    return tensor.view(torch.bfloat16) if bfloat16 else tensor


def _header(spec: ImageSpec) -> tuple[dict[str, Any], torch.device | None, bool]:
    """The CAI dict of a view of ``spec`` without its pointer, the torch device (None: host), and
    whether the elements travel as int16 (bfloat16)."""
    bfloat16 = spec.dtype == "bfloat16"
    if not spec.device.is_cuda:
        return {}, None, bfloat16
    if not cuda_available():
        built = torch.version.cuda  # None: a CPU-only build, which installing CUDA torch fixes
        raise MissingBackendError(
            f"as_torch(): the image is on {spec.device}, but torch {torch.__version__} "
            + (
                "is a CPU-only build. Install a CUDA build of torch"
                if built is None
                else f"(CUDA {built}) sees no GPU. Run where a GPU is visible (check the driver and "
                "CUDA_VISIBLE_DEVICES)"
            )
            + ", or call image.cpu() for a host copy."
        )
    # torch rejects read-only CAI buffers (torch tensors cannot be read-only anyway) and ignores the
    # CAI stream: the hub orders torch's stream itself.
    carrier: DTypeName | None = "int16" if bfloat16 else None
    interface = cuda_array_interface(0, spec, stream=None, readonly=False, as_dtype=carrier)
    return interface, torch_device(spec.device.index), bfloat16


_headers = SpecMemo(_header)


def gpu_runtime() -> Runtime | None:
    """torch's runtime calls (``_torch_runtime``) where this torch reaches a GPU, else None."""
    return TorchRuntime(view) if cuda_available() else None


def strided_parts(
    tensor: object, *, where: str = "out"
) -> tuple[int, tuple[int, ...], tuple[int, ...], DTypeName, Device]:
    """(pointer, shape, byte strides, dtype, device) of a dense tensor of an image dtype (an ``out=``)."""
    if (
        not isinstance(tensor, torch.Tensor)
        or tensor.layout != torch.strided
        or tensor.is_nested  # strided by layout, but torch refuses its strides
        or tensor.is_quantized
        or tensor.is_meta
    ):
        nested = " nested" if isinstance(tensor, torch.Tensor) and tensor.is_nested else ""
        raise InteropError(
            f"{where}: expected out to be a dense strided torch.Tensor, got a{nested} {type(tensor).__name__}"
            f"{f' (layout={tensor.layout})' if isinstance(tensor, torch.Tensor) else ''}."
        )
    _refuse_lazy_views(tensor, f"{where} out")
    dtype = _NAMES.get(tensor.dtype)
    if dtype is None:
        raise DTypeError(f"{where}: expected out of an image dtype, got torch dtype {tensor.dtype}.")
    itemsize = tensor.element_size()
    strides = tuple(stride * itemsize for stride in tensor.stride())
    return tensor.data_ptr(), tuple(tensor.shape), strides, dtype, _device_of(tensor.device, where=where)


def empty(shape: tuple[int, ...], dtype: DTypeName, device: Device) -> torch.Tensor:
    """A new packed tensor."""
    return torch.empty(shape, dtype=DTYPES[dtype], device=str(device))


def _describe_out(out: object, /, *, where: str) -> OutArray:
    return OutArray(*strided_parts(out, where=where))


def _out_signature(out: object, /) -> tuple[int, Hashable] | None:
    """A plain dense tensor's pointer, and what ``strided_parts`` reads of it besides (its checks
    depend on nothing else): a fifth of its cost. None for subclasses, which may override any of it,
    and for sparse, MKL-DNN and nested tensors, whose pointer and strides torch refuses to read
    (``strided_parts`` then says what is wrong)."""
    if type(out) is not torch.Tensor:
        return None
    tensor = out
    if tensor.layout is not torch.strided or tensor.is_nested:
        return None
    record = (tensor.shape, tensor.stride(), tensor.dtype, tensor.device, tensor.is_neg(), tensor.is_conj())
    return tensor.data_ptr(), record


def _exported_as_parsed(tensor: object, /) -> bool:
    """torch's ``__dlpack__`` exports what ``parse`` reads, except a tensor that requires grad,
    which it refuses (``from_dlpack`` then says so, as the capsule route does)."""
    return isinstance(tensor, torch.Tensor) and not tensor.requires_grad


SPOKE = Spoke(
    name="torch",
    parse=parse,
    view=view,
    current_stream=current_stream,
    current_stream_object=current_stream_object,
    describe_out=_describe_out,
    gpu_runtime=gpu_runtime,
    parses_as_dlpack=_exported_as_parsed,
    out_signature=_out_signature,
)
