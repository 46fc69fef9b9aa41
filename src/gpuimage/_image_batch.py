"""``GpuBatch``: N images of one geometry in one allocation, item ``i`` at ``ptr + i * item_pitch``.

The hub one dimension up: a pointer, one item's ``ImageSpec``, an item pitch (bytes), the owner that
keeps the memory alive, the ready stream. Items are ``GpuImage`` views sharing owner and ready state;
the 4-D views and exports are ``_image_batch_io``'s, the checks of a description ``_image_batch_spec``'s.

Import: a 4-D array is read through its spoke's ``parse``, item by item: item 0 (every check of an
image: dtype, strides, placement in the source's allocation, ready stream), item N-1 (placement), and
item 1, whose distance from item 0 is the item pitch; so no spoke needs a 4-D parse. For the CUDA
Array Interface the items are 3-D interface dicts cut from the batch's one (``cai_items``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self, SupportsIndex, cast

from ._channel_order import ChannelOrdered
from ._device import Device, DeviceLike, parse_device
from ._dtypes import DTypeLike, DTypeName
from ._errors import BoundsError, DeviceError, InteropError, LayoutError
from ._formats import ChannelOrder
from ._image import GpuImage
from ._image_batch_io import BatchExports, consume_dlpack
from ._image_batch_spec import (
    BY_ITEM_LAYOUT,
    BatchLayout,
    BatchLayoutLike,
    cai_items,
    checked_count,
    checked_item_pitch,
    packed_item_spec,
    parse_batch_layout,
)
from ._lifetime import Lifetime
from ._ordering import BY_HANDLE, keep_for_handle
from ._pointers import device_of
from ._runtime import runtime
from ._source import Imported, check_address_range, check_pointer, revalidated_spec
from ._spec import ImageSpec
from ._spokes import spoke, spoke_of
from ._streams import ReadyState, stream_handle, stream_keep

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

__all__ = ["BatchLayout", "BatchLayoutLike", "GpuBatch"]


class GpuBatch(BatchExports, ChannelOrdered):
    """N images of one size, dtype and layout in one allocation: an ``NCHW`` or ``NHWC`` batch.

    Item ``i`` starts at ``ptr + i * item_pitch`` (bytes); ``item_pitch`` may exceed an item's extent
    (padded items), never fall short of it. ``batch[i]`` is a ``GpuImage`` view of item ``i``;
    ``as_torch()``, ``as_cupy()``, ``__cuda_array_interface__`` and ``__dlpack__`` are 4-D views of the
    whole batch, so ``cvcuda.as_tensor(batch, "NCHW")`` and ``torch.from_dlpack(batch)`` work.

    Notes:
        Lifetime: the batch, its items and every view keep the owner of its memory alive.

        Streams: ``stream`` is where the data is ready. Items share the batch's ready state (as
        crops share their image's): a write recorded on an item is seen by the batch and the other
        items. Every view makes its consumer stream wait for the data, on the GPU, as image views do.
    """

    __slots__ = ("__weakref__", "_channel_order", "_device_index", "_item_pitch", "_layout", "_life", "_ptr",
                 "_readonly", "_ready", "_size", "_spec", "_views")  # fmt: skip

    _layout: BatchLayout

    def __init__(self) -> None:
        raise InteropError(
            "GpuBatch(): expected a constructor, got a direct call; use GpuBatch.empty(), .from_torch(), "
            ".from_cupy(), .from_numpy(), .from_dlpack(), .from_cuda_array_interface() or .from_pointer()."
        )

    @classmethod
    def _wrap(cls, ptr: int, size: int, pitch: int, spec: ImageSpec, life: Lifetime, ready: ReadyState,
              readonly: bool) -> GpuBatch:  # fmt: skip
        """The one construction path: no checks here, every caller passes checked values."""
        batch = object.__new__(GpuBatch)
        batch._ptr, batch._size, batch._item_pitch, batch._spec = ptr, size, pitch, spec
        batch._layout = BY_ITEM_LAYOUT[spec.layout]
        batch._life, batch._ready, batch._readonly = life, ready, readonly
        batch._device_index = spec.device.index
        batch._views, batch._channel_order = {}, None
        return batch

    def _relabelled(self, order: ChannelOrder | None) -> Self:
        batch = self._wrap(self._ptr, self._size, self._item_pitch, self._spec, self._life, self._ready,
                           self._readonly)  # fmt: skip
        batch._channel_order = order
        return cast(Self, batch)

    @classmethod
    def _family(
        cls,
        ptr: int,
        size: int,
        pitch: int,
        spec: ImageSpec,
        owner: object,
        stream: int | None,
        readonly: bool,
        keep: object = None,
        *,
        located: bool = True,
    ) -> GpuBatch:
        """A new batch family, ready on ``stream`` and kept alive by ``owner`` (as ``GpuImage._family``)."""
        device = spec.device
        if device.kind != "cuda":
            life = Lifetime(owner, 0, None, cuda=False)
            return cls._wrap(ptr, size, pitch, spec, life, ReadyState(None), readonly)
        if keep is BY_HANDLE:
            keep = None if stream is None else keep_for_handle(stream, device.index)
        life = Lifetime(owner, device.index, stream, cuda=runtime().has_gpu, located=located)
        return cls._wrap(ptr, size, pitch, spec, life, ReadyState(stream, None, keep), readonly)

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def empty(
        cls,
        n: int,
        height: int,
        width: int,
        channels: int,
        dtype: DTypeLike = "float32",
        *,
        layout: BatchLayoutLike = BatchLayout.NCHW,
        device: DeviceLike = "cuda:0",
        stream: object = None,
    ) -> GpuBatch:
        """Allocate an uninitialized packed batch (``item_pitch`` is one packed item), as
        ``GpuImage.empty`` allocates: torch's or CuPy's pool on a GPU, NumPy on the host."""
        where = "GpuBatch.empty()"
        size = checked_count(n, where=where)
        item = parse_batch_layout(layout, where=where).item
        spec = packed_item_spec(height, width, channels, dtype, item, device)
        pitch = checked_item_pitch(spec.nbytes, size, spec, where=where)
        given = None if stream is None else stream_handle(stream, where=where)
        memory = runtime().allocate(size * pitch, spec.device, alignment=spec.itemsize, stream=given)
        batch = cls._family(memory.ptr, size, pitch, spec, memory.owner, memory.stream, False)
        if given is not None and memory.stream is not None and given != memory.stream:
            # the pool handed out memory that earlier work on the allocating stream may still use
            batch._use(given, stream_keep(stream), None)
            batch._ready.stream, batch._ready.keep = given, stream_keep(stream)
        return batch

    @classmethod
    def from_pointer(
        cls,
        ptr: int,
        item_spec: ImageSpec,
        n: int,
        *,
        item_pitch: int | None = None,
        owner: object = None,
        stream: object = None,
        readonly: bool = False,
    ) -> GpuBatch:
        """Wrap ``n`` items described by ``item_spec`` at ``ptr + i * item_pitch`` (default: one
        item's extent). ``owner`` is kept alive; without one the batch is a borrow."""
        where = "GpuBatch.from_pointer()"
        if not isinstance(cast(object, item_spec), ImageSpec):  # untyped callers pass anything
            raise InteropError(f"{where}: expected an ImageSpec, got {type(item_spec).__name__}.")
        spec = revalidated_spec(item_spec, where=where)
        size = checked_count(n, where=where)
        pitch = checked_item_pitch(spec.nbytes if item_pitch is None else item_pitch, size, spec, where=where)
        check_pointer(ptr, spec.itemsize, extent=(size - 1) * pitch + spec.nbytes, where=where)
        handle = stream_handle(stream, where=where)
        return cls._family(
            ptr, size, pitch, spec, owner, handle, bool(readonly), stream_keep(stream), located=False
        )

    @classmethod
    def from_torch(
        cls, tensor: torch.Tensor, *, layout: BatchLayoutLike = BatchLayout.NCHW, stream: object = None
    ) -> GpuBatch:
        """Wrap a 4-D ``(N, C, H, W)`` or ``(N, H, W, C)`` tensor without copying (strided and permuted
        views too); the data is ready on ``stream``, by default torch's current stream."""
        return cls._import("torch", tensor, layout, stream, "GpuBatch.from_torch()")

    @classmethod
    def from_cupy(
        cls, array: cupy.ndarray, *, layout: BatchLayoutLike = BatchLayout.NCHW, stream: object = None
    ) -> GpuBatch:
        """Wrap a 4-D ``cupy.ndarray`` without copying; ready on ``stream`` or CuPy's current stream."""
        return cls._import("cupy", array, layout, stream, "GpuBatch.from_cupy()")

    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any], *, layout: BatchLayoutLike = BatchLayout.NCHW) -> GpuBatch:
        """Wrap a 4-D NumPy array as a host batch without copying (read-only if the array is)."""
        return cls._import("numpy", array, layout, None, "GpuBatch.from_numpy()")

    @classmethod
    def from_dlpack(cls, obj: object, *, layout: BatchLayoutLike = BatchLayout.NCHW) -> GpuBatch:
        """Wrap a 4-D torch tensor, CuPy or NumPy array, or any DLPack producer, without copying.

        The DLPack spoke reads 2-D and 3-D tensors only; a 4-D producer of another library is
        consumed by ``torch.from_dlpack`` (which orders the producer's work before torch's current
        stream, and calls its deleter when the batch is gone) and wrapped from the tensor."""
        where = "GpuBatch.from_dlpack()"
        known = spoke_of(obj)
        if known is not None:
            return cls._import(known.name, obj, layout, None, where)
        if isinstance(obj, GpuBatch):
            batch = obj  # already a batch: the same memory and ready state
            if parse_batch_layout(layout, where=where) is not batch.layout:
                raise LayoutError(
                    f"{where}: the source is a {batch.layout.value} batch, got layout={layout!r}."
                )
            return batch
        return cls._import("torch", consume_dlpack(obj, where=where), layout, None, where)

    @classmethod
    def from_cuda_array_interface(
        cls,
        obj: object,
        *,
        layout: BatchLayoutLike = BatchLayout.NCHW,
        device: DeviceLike | None = None,
        stream: object = None,
    ) -> GpuBatch:
        """Wrap any object with a 4-D ``__cuda_array_interface__`` without copying; keeps it alive.

        ``device`` defaults to the device CUDA reports for the pointer, else ``cuda:0``; the data is
        ready on ``stream`` if given, else on the interface's own stream."""
        where = "GpuBatch.from_cuda_array_interface()"
        item = parse_batch_layout(layout, where=where).item
        first, last, size, pitch = cai_items(obj, where=where)
        found = device_of(cast(int, first.__cuda_array_interface__["data"][0]))
        chosen = found or (Device("cuda", 0) if device is None else parse_device(device, where=where))
        if not chosen.is_cuda:
            raise DeviceError(
                f"{where}: expected a CUDA device (the CUDA Array Interface describes device memory), got "
                f"device={device!r}. For host memory use from_numpy() or from_dlpack()."
            )
        handle = None if stream is None else stream_handle(stream, where=where)
        parse = spoke("cai").parse
        imported = parse(first, layout=item, device=chosen, stream=handle, where=where)
        if size > 1:  # the pitch first: a negative one would put item N-1 below item 0
            checked_item_pitch(pitch, size, imported.spec, where=where)
            parse(last, layout=item, device=chosen, stream=handle, where=where)
        keep = BY_HANDLE if stream is None else stream_keep(stream)
        return cls._from_items(imported, obj, size, pitch, keep, located=found is not None, where=where)

    @classmethod
    def _import(cls, name: str, obj: object, layout: object, stream: object, where: str) -> GpuBatch:
        """Read a 4-D array of spoke ``name``'s library: items 0, 1 and N-1 parsed as images."""
        item = parse_batch_layout(layout, where=where).item
        shape: object = getattr(obj, "shape", None)
        if not isinstance(shape, tuple) or len(cast("tuple[object, ...]", shape)) != 4:
            raise LayoutError(
                f"{where}: expected a 4-D (N, C, H, W) or (N, H, W, C) array, got {type(obj).__name__} of "
                f"shape {shape!r}. Wrap a single image with GpuImage, or stack images first."
            )
        size = checked_count(cast("tuple[object, ...]", shape)[0], where=where)
        handle = None if stream is None else stream_handle(stream, where=where)
        parse = spoke(name).parse

        def item_at(index: int) -> Imported:
            try:
                part: object = cast(Any, obj)[index]
            except Exception as exc:  # a foreign __getitem__ refusing: the object is not an array
                raise InteropError(
                    f"{where}: expected an indexable array, got {type(obj).__name__}."
                ) from exc
            return parse(part, layout=item, device=None, stream=handle, where=where)

        first = item_at(0)
        pitch = item_at(1).ptr - first.ptr if size > 1 else first.spec.nbytes
        if size > 2:
            item_at(size - 1)  # the last item lies inside the source's allocation too
        keep = stream_keep(stream) if stream is not None else first.keep
        return cls._from_items(first, obj, size, pitch, keep, located=first.located, where=where)

    @classmethod
    def _from_items(
        cls, first: Imported, owner: object, size: int, pitch: int, keep: object, *, located: bool, where: str
    ) -> GpuBatch:
        pitch = checked_item_pitch(pitch, size, first.spec, where=where, given=False)
        check_address_range(first.ptr, (size - 1) * pitch + first.spec.nbytes, where=where)
        return cls._family(
            first.ptr, size, pitch, first.spec, owner, first.stream, first.readonly, keep, located=located
        )

    # -- metadata -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """N, the number of items (also ``len(batch)``)."""
        return self._size

    def __len__(self) -> int:
        return self._size

    @property
    def ptr(self) -> int:
        """Address of item 0's first element."""
        return self._ptr

    @property
    def item_spec(self) -> ImageSpec:
        """The spec of one item (every item has it)."""
        return self._spec

    @property
    def item_pitch(self) -> int:
        """Bytes from one item to the next."""
        return self._item_pitch

    @property
    def height(self) -> int:
        """Rows of each item."""
        return self._spec.height

    @property
    def width(self) -> int:
        """Columns of each item."""
        return self._spec.width

    @property
    def channels(self) -> int:
        """Channels of each item."""
        return self._spec.channels

    @property
    def dtype(self) -> DTypeName:
        """Element type name."""
        return self._spec.dtype

    @property
    def layout(self) -> BatchLayout:
        """``BatchLayout.NCHW`` or ``BatchLayout.NHWC`` (``item_spec.layout`` is the item's)."""
        return self._layout

    @property
    def device(self) -> Device:
        """Where the memory lives."""
        return self._spec.device

    @property
    def stream(self) -> int | None:
        """The raw ``cudaStream_t`` whose queued work produces the data, or None (nothing pending)."""
        return self._ready.stream

    @property
    def owner(self) -> object:
        """The object kept alive for the memory's sake (None for a borrowed pointer)."""
        return self._life.owner

    @property
    def readonly(self) -> bool:
        """True when the source said the memory must not be written."""
        return self._readonly

    def __repr__(self) -> str:
        spec = self._spec
        return (
            f"GpuBatch({self._size}x{spec.height}x{spec.width}x{spec.channels} {spec.dtype} "
            f"{self._layout.value}{'' if self._channel_order is None else ' ' + self._channel_order.value}, "
            f"{spec.device}, item_pitch={self._item_pitch}, strides={self.strides}, "
            f"ptr={self._ptr:#x})"
        )

    # -- items ----------------------------------------------------------------------------------

    def __getitem__(self, index: SupportsIndex) -> GpuImage:
        """Item ``index`` (negative counts from the end) as a ``GpuImage`` view: same owner, same
        ready state, same channel order. Raises ``BoundsError`` outside ``[-N, N)``."""
        kind = type(index)
        if kind is not int and (kind is bool or not hasattr(kind, "__index__")):  # NumPy ints are fine
            raise InteropError(f"GpuBatch[index]: expected an int index, got {kind.__name__}.")
        position = index.__index__()
        size = self._size
        if not -size <= position < size:
            raise BoundsError(
                f"GpuBatch[index]: expected an index in [-{size}, {size}), got index={position} (the batch "
                f"has {size} items)."
            )
        position %= size
        item = self._views.get(position)
        if item is None:
            ptr = self._ptr + position * self._item_pitch
            wrap = GpuImage._wrap  # pyright: ignore[reportPrivateUsage]
            made = wrap(ptr, self._spec, self._life, self._ready, self._readonly, self._channel_order)
            item = self._views.setdefault(position, made)
        return cast(GpuImage, item)

    def __iter__(self) -> Iterator[GpuImage]:
        return (self[index] for index in range(self._size))
