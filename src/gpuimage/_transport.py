"""An image as ONE torch tensor plus a JSON description, for transports that move tensors only.

Ray's GPU tensor transport (Ray Direct Transport: ``@ray.method(tensor_transport="nccl")`` and its
kin) moves the ``torch.Tensor`` objects it finds in an actor method's result directly between actors,
over NCCL, Gloo, NIXL or CUDA IPC, and everything else through the object store. A ``GpuImage``
pickles to a CUDA IPC description (one host only), so across hosts it must travel as a tensor:
``to_tensor_payload`` makes a ``TensorPayload`` (the tensor, and the spec, channel order, frame
format and colour as JSON), ``from_tensor_payload`` rebuilds the image, frame or batch on arrival.

- The tensor is packed: ``as_torch()`` of a packed image (a view, no copy), the batch's 4-D view,
  the frame's one block (``(1.5 H, W)`` for NV12, as ``GpuFrame.from_dlpack`` takes it). A pitched
  image, a crop, a strided batch, a frame whose planes lie apart, or a read-only source is copied
  first, packed and writable (transports send contiguous tensors). Pitch is not kept.
- The tensor is ready on torch's current stream (``as_torch()`` orders it there), where torch-based
  transports read it; on arrival the image is ready on the receiver's current stream.
- The device is the tensor's: wherever the transport puts it (another GPU, another host).
- Nothing here imports torch or Ray: torch comes with the first ``as_torch()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from ._errors import GpuImageError, InteropError
from ._formats import ChannelOrder, ColorMatrixLike, ColorRangeLike, ColorSpec, parse_pixel_format
from ._frame import GpuFrame
from ._image import GpuImage
from ._image_batch import GpuBatch
from ._image_batch_spec import parse_batch_layout
from ._spec import ImageSpec

if TYPE_CHECKING:
    import torch

    from ._dtypes import AnyDType
    from ._layout import AnyLayout

__all__ = ["TensorPayload", "from_tensor_payload", "to_tensor_payload"]

T = TypeVar("T", bound="GpuImage[Any, Any] | GpuFrame | GpuBatch")
L = TypeVar("L", bound="AnyLayout")
D = TypeVar("D", bound="AnyDType")

VERSION = 1
"""The version of ``TensorPayload.description``; ``from_tensor_payload`` refuses another."""


@dataclass(frozen=True, slots=True)
class TensorPayload(Generic[T]):
    """An image, frame or batch as one packed ``torch.Tensor`` and a JSON description of the rest.

    Made by ``to_tensor_payload``, read by ``from_tensor_payload``; picklable (the tensor as torch
    pickles it, or as a tensor transport moves it)."""

    tensor: torch.Tensor
    """The pixels, packed (an image's ``(H, W, C)`` or ``(C, H, W)``, a batch's 4-D view, a frame's
    one block as ``GpuFrame.as_torch()`` gives it)."""
    description: str
    """The rest, as JSON (``kind``, the packed ``spec`` as ``ImageSpec`` writes it, a batch's item spec,
    and the channel order, batch size and layout, or the frame's format, size and colour)."""


@overload
def to_tensor_payload(obj: GpuImage[L, D]) -> TensorPayload[GpuImage[L, D]]: ...
@overload
def to_tensor_payload(obj: GpuFrame) -> TensorPayload[GpuFrame]: ...
@overload
def to_tensor_payload(obj: GpuBatch) -> TensorPayload[GpuBatch]: ...
def to_tensor_payload(obj: GpuImage[Any, Any] | GpuFrame | GpuBatch) -> TensorPayload[Any]:
    """Turn an image, frame or batch into one packed tensor and a JSON description of the rest.

    Parameters:
        obj: a ``GpuImage``, ``GpuFrame`` or ``GpuBatch``, on a GPU or on the host.

    Returns:
        A ``TensorPayload``: return it from a Ray actor method with ``tensor_transport=`` set, and
        the tensor goes by that transport; ``from_tensor_payload`` rebuilds the object.

    Raises:
        InteropError: ``obj`` is none of the three.
        MissingBackendError: torch is not installed.

    Notes:
        A packed, writable source is not copied: the tensor is its ``as_torch()`` view, which keeps
        the memory alive, and torch's current stream waits for the source's data (on the GPU). Other
        sources are copied first (see the module). Do not write the source until the transport
        has sent the tensor.
    """
    if isinstance(obj, GpuBatch):
        batch = obj if obj.is_contiguous and not obj.readonly else _packed_batch(obj)
        facts = _spec_facts("batch", batch.item_spec, batch.channel_order)
        facts.update(size=batch.size, batch_layout=batch.layout.value)
        return TensorPayload(batch.as_torch(), json.dumps(facts))
    if isinstance(obj, GpuFrame):
        frame = _packed_frame(obj)
        colour = frame.colour
        facts = {
            "version": VERSION,
            "kind": "frame",
            "format": frame.format.value,
            "width": frame.width,
            "height": frame.height,
            "colour": None if colour is None else [colour.matrix.value, colour.range.value],
        }
        return TensorPayload(frame.as_torch(), json.dumps(facts))
    if not isinstance(cast(object, obj), GpuImage):  # untyped callers pass anything
        raise InteropError(
            f"to_tensor_payload(): expected a GpuImage, GpuFrame or GpuBatch, got {type(obj).__name__}."
        )
    image = obj.copy() if obj.readonly or not obj.is_contiguous else obj
    facts = _spec_facts("image", image.spec, image.channel_order)
    return TensorPayload(image.as_torch(), json.dumps(facts))


def from_tensor_payload(payload: TensorPayload[T]) -> T:
    """Rebuild the image, frame or batch of a ``TensorPayload`` over its tensor, without copying.

    Raises:
        InteropError: not a ``TensorPayload``, a description that is not gpuimage's (another
            version, a missing field), or a tensor that does not match it (shape, dtype).

    Notes:
        The result wraps ``payload.tensor`` (kept alive), on the tensor's device, ready on torch's
        current stream there, as ``GpuImage.from_torch`` wraps a tensor.
    """
    where = "from_tensor_payload()"
    if not isinstance(cast(object, payload), TensorPayload):
        raise InteropError(f"{where}: expected a TensorPayload, got {type(payload).__name__}.")
    facts = _read(payload.description, where)
    tensor = payload.tensor
    try:
        kind = facts["kind"]
        if kind == "frame":
            return cast(T, _frame_of(tensor, facts, where))
        spec = _spec_of(facts["spec"], where)
        order = None if facts["channel_order"] is None else ChannelOrder(facts["channel_order"])
        if kind == "image":
            image = GpuImage.from_torch(tensor, layout=spec.layout)
            _expect(image.shape, image.dtype, spec.shape, spec.dtype, where)
            return cast(T, image.with_channel_order(order))
        if kind == "batch":
            layout = parse_batch_layout(facts["batch_layout"], where=where)
            batch = GpuBatch.from_torch(tensor, layout=layout)
            _expect(batch.shape, batch.dtype, (facts["size"], *spec.shape), spec.dtype, where)
            return cast(T, batch.with_channel_order(order))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, GpuImageError):
            raise
        raise _corrupt(where, f"{type(exc).__name__}: {exc}") from exc
    raise _corrupt(where, f"kind={kind!r}")


def _spec_facts(kind: str, spec: ImageSpec, order: ChannelOrder | None) -> dict[str, Any]:
    return {
        "version": VERSION,
        "kind": kind,
        "spec": json.loads(spec.model_dump_json()),
        "channel_order": None if order is None else order.value,
    }


def _packed_batch(batch: GpuBatch) -> GpuBatch:
    """A packed, writable copy of ``batch``, item by item."""
    packed = GpuBatch.empty(
        batch.size,
        batch.height,
        batch.width,
        batch.channels,
        batch.dtype,
        layout=batch.layout,
        device=batch.device,
    )
    for index in range(batch.size):
        batch[index].copy(out=packed[index])
    return packed.with_channel_order(batch.channel_order)


def _packed_frame(frame: GpuFrame) -> GpuFrame:
    """``frame`` when it is one packed writable block, else such a copy, plane by plane."""
    packed = GpuFrame.empty(
        frame.width, frame.height, format=frame.format, colour=frame.colour, device=frame.device
    )
    if frame.layout == packed.layout and not frame.readonly:
        return frame
    for source, target in zip(frame.planes, packed.planes, strict=True):
        source.copy(out=target)
    return packed


def _spec_of(fields: object, where: str) -> ImageSpec:
    try:
        return ImageSpec.model_validate_json(json.dumps(fields))
    except GpuImageError as exc:
        raise _corrupt(where, f"spec={fields!r} ({exc})") from exc


def _frame_of(tensor: torch.Tensor, facts: dict[str, Any], where: str) -> GpuFrame:
    fmt = parse_pixel_format(facts["format"], where=where)
    names = facts["colour"]
    colour = None
    if names is not None:
        if not isinstance(names, list) or len(cast("list[object]", names)) != 2:
            raise _corrupt(where, f"colour={names!r} (expected [matrix, range])")
        matrix, range_ = cast("list[ColorMatrixLike | ColorRangeLike]", names)
        colour = ColorSpec(matrix=cast("ColorMatrixLike", matrix), range=cast("ColorRangeLike", range_))
    frame = GpuFrame.from_dlpack(tensor, format=fmt, colour=colour)
    if (frame.width, frame.height) != (facts["width"], facts["height"]):
        raise _corrupt(where, f"a {frame.width}x{frame.height} frame for {facts['width']}x{facts['height']}")
    return frame


def _read(description: object, where: str) -> dict[str, Any]:
    try:
        facts: object = json.loads(cast(str, description))
    except (TypeError, ValueError) as exc:
        raise _corrupt(where, f"description={description!r:.80}") from exc
    if not isinstance(facts, dict):
        raise _corrupt(where, f"description={description!r:.80}")
    found = cast("dict[str, Any]", facts)
    if found.get("version") != VERSION:
        raise InteropError(
            f"{where}: expected a description of version {VERSION}, got version={found.get('version')!r} "
            "(made by another gpuimage release). Rebuild it with the release that made it."
        )
    return found


def _expect(
    shape: tuple[int, ...], dtype: str, want_shape: tuple[int, ...], want_dtype: str, where: str
) -> None:
    if shape != want_shape or dtype != want_dtype:
        raise _corrupt(where, f"a tensor of {dtype} {shape} for {want_dtype} {want_shape}")


def _corrupt(where: str, got: str) -> InteropError:
    return InteropError(
        f"{where}: expected a TensorPayload as to_tensor_payload() makes it, got {got}. Send the "
        "payload whole: its tensor and its description belong together."
    )
