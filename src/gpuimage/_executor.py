"""The executor interface of conversions: what every backend that computes a conversion implements.

Three executors, one module each: the CUDA kernels (``_kernel_convert``, over ``_kernels``), torch
operations (``_torch_convert``) and NumPy (``_host_convert``). ``_conversions`` picks one through its
``executor_for`` and does everything around the work: checks, allocation and stream ordering. An
executor only computes: it is handed operands, the map and the stream to queue on; it never sees the
hub (a ``GpuImage`` is passed as an ``Operand``, which it satisfies) and never orders streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._geometry import Geometry
from ._spec import trusted_spec

if TYPE_CHECKING:
    from ._affine import Affine
    from ._dtypes import DTypeName
    from ._plan import BatchItem
    from ._sampling import FrameSource, SampleRecipe
    from ._spec import ImageSpec

__all__ = [
    "Buffer",
    "ConvertReplay",
    "Executor",
    "FramesReplay",
    "Operand",
    "convert_each",
    "region_of",
    "slot_of",
]


class Operand(Protocol):
    """One side of a conversion: memory that ``spec`` describes, kept alive by ``owner``.

    A ``GpuImage`` is one, so a conversion hands its images over as they are (no record per call);
    ``Buffer`` is one for memory that is no image (a batch's region or slot).
    """

    @property
    def ptr(self) -> int:
        """Address of element (0, 0, 0)."""
        ...

    @property
    def spec(self) -> ImageSpec:
        """Sizes, byte strides, dtype, layout and device."""
        ...

    @property
    def owner(self) -> object:
        """What keeps the memory alive (a view made by an executor holds it)."""
        ...

    @property
    def readonly(self) -> bool:
        """True when the memory must not be written (sources only: targets are checked writable)."""
        ...


class Buffer(NamedTuple):
    """An ``Operand`` that is no ``GpuImage``: a region a batch reads, a slot of a batch's array."""

    ptr: int
    spec: ImageSpec
    owner: object
    readonly: bool = False


class ConvertReplay(NamedTuple):
    """A checked ``convert`` call made repeatable with new pointers (``Executor.convert_replay``):
    ``launch(source_ptr, target_ptr, stream)`` queues it, for pointers whose residues modulo
    ``modulus`` are the ones the call was planned for (else call ``convert``)."""

    launch: Callable[[int, int, int], None]
    modulus: int
    source_residue: int
    target_residue: int


class FramesReplay(Protocol):
    """A checked ``convert_frames`` call, repeated with new pointers (``Executor.frames_replay``)."""

    @property
    def target_alignment(self) -> int:
        """The alignment in bytes that the target pointer must have (else do not replay: convert)."""
        ...

    @property
    def plane_alignment(self) -> int:
        """The alignment in bytes that every plane pointer must have (else do not replay: convert)."""
        ...

    def __call__(self, pointers: Sequence[tuple[int, int, int]], target_ptr: int, stream: int, /) -> None:
        """Queue the call on ``stream``: item ``i`` read from the plane pointers ``pointers[i]``
        (zero-padded to three), slot 0 written at ``target_ptr``."""
        ...


class Executor(Protocol):
    """Computes ``target = affine(source)`` element by element (``_plan`` has the formula).

    ``stream`` is the raw handle to queue GPU work on, on the operands' device; ordering it after
    the data and recording it for later users is the caller's (``_conversions``). Host executors
    finish before returning and get ``stream=0``.
    """

    @property
    def name(self) -> str:
        """A short name for messages and tests: "kernels", "torch" or "numpy"."""
        ...

    def stream_for(self, device: int, /) -> tuple[int, object]:
        """(raw handle, the object keeping it alive) of the stream this executor queues on by default
        on ``cuda:device``: its library's current stream. Used when the source has nothing pending."""
        ...

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        """Write ``affine(source)`` into ``target``: same height, width and channels, on one device;
        any layouts, pitches and dtypes; memory that does not overlap."""
        ...

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> ConvertReplay | None:
        """This ``convert`` call made repeatable with new pointers and no checks (a frame loop's
        call: ``_convert_replay``), or None where the executor has no cheaper way than ``convert``
        itself. Called after the same ``convert`` call succeeded."""
        ...

    def convert_batch(
        self,
        sources: Sequence[Operand],
        regions: Sequence[BatchItem],
        target: Operand,
        item_pitch: int,
        affine: Affine,
        pad: float,
        stream: int,
        /,
    ) -> None:
        """Write ``affine`` of region ``i`` of ``sources[i]`` into the top left of slot ``i`` of
        ``target`` (slot 0; slot ``i`` starts ``i * item_pitch`` bytes later), and ``pad`` (in output
        units) into the rest of every slot. Sources share a dtype and channel count; every region
        fits ``target.spec``'s height and width."""
        ...

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        """Write item ``i`` as ``_sampling`` defines it (colour, crop, resize, letterbox, normalize)
        into slot ``i`` of ``target`` (slot 0; slot ``i`` starts ``i * item_pitch`` bytes later).
        ``target.spec`` is one slot: ``recipe.height`` x ``recipe.width``, the order's channel count,
        CHW or HWC, float32/float16/bfloat16 or uint8. Every source lies on the target's device."""
        ...

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> FramesReplay | None:
        """This ``convert_frames`` call made repeatable with new pointers and no checks (a frame
        loop's call: ``_frame_replay``), or None where the executor has no cheaper way than
        ``convert_frames`` itself. Raises what ``convert_frames`` raises for the call."""
        ...


def region_of(source: Operand, region: BatchItem) -> Buffer:
    """The part of ``source`` that ``region`` (a batch item: pointer, strides, size) covers."""
    spec = source.spec
    _, row_pitch, pixel_stride, channel_stride, height, width = region
    geometry = Geometry(height, width, spec.channels, row_pitch, pixel_stride, channel_stride)
    return Buffer(
        region.ptr,
        trusted_spec(geometry, spec.dtype, spec.layout, spec.device),
        source.owner,
        source.readonly,
    )


def slot_of(target: Operand, index: int, item_pitch: int) -> Buffer:
    """Slot ``index`` of a batch whose slot 0 is ``target``."""
    return Buffer(target.ptr + index * item_pitch, target.spec, target.owner)


class _Sliceable(Protocol):
    """An HWC array (NumPy's or torch's) whose top-left part a batch item is written into."""

    def __getitem__(self, index: tuple[slice, slice], /) -> Any: ...


def convert_each(
    sources: Sequence[Operand],
    regions: Sequence[BatchItem],
    target: Operand,
    item_pitch: int,
    affine: Affine,
    pad: float,
    *,
    hwc: Callable[[Operand], _Sliceable],
    fill: Callable[[Any, float, DTypeName, DTypeName], None],
    convert: Callable[[Any, Any, DTypeName, DTypeName, Affine], None],
) -> None:
    """``convert_batch`` one item at a time, for executors that work on arrays (NumPy, torch): each
    slot padded with ``pad``, then the item's region converted into its top left."""
    target_dtype = target.spec.dtype
    for index, (source, region) in enumerate(zip(sources, regions, strict=True)):
        source_dtype = source.spec.dtype
        slot = hwc(slot_of(target, index, item_pitch))
        fill(slot, pad, source_dtype, target_dtype)
        convert(
            hwc(region_of(source, region)),
            slot[: region.height, : region.width],
            source_dtype,
            target_dtype,
            affine,
        )
