"""The kernel executor of conversions: one CUDA kernel per conversion (``_kernels``, through CuPy).

The fastest executor, chosen wherever CuPy reaches a GPU: each conversion is one lookup of a cached
launch plan (per dtypes, geometries, pointer alignments, map and device) and one launch; a batch is
one launch over a table of its regions; frames (colour, crop, resize, normalize) go to ``_frame_kernels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from . import _cupy
from ._executor import ConvertReplay, Operand
from ._frame_kernels import FramesReplay
from ._frame_kernels import convert_frames as _convert_frames
from ._geometry import Geometry
from ._kernels import LaunchPlan, launch_batch, launch_plan
from ._plan import MAX_VECTOR, plan_variant

if TYPE_CHECKING:
    from ._affine import Affine
    from ._plan import BatchItem
    from ._sampling import FrameSource, SampleRecipe
    from ._spec import ImageSpec

__all__ = ["EXECUTOR", "KernelExecutor", "reaches_gpu"]

_plans: dict[tuple[int, int, int, int, int], tuple[ImageSpec, ImageSpec, Affine, LaunchPlan]] = {}
_PLANS_LIMIT = 256


def reaches_gpu() -> bool:
    """True when CuPy can reach a GPU (it imports without one)."""
    return _cupy.gpu_available()


class KernelExecutor:
    """The CUDA kernels of ``_kernels.cu``, queued on the stream given."""

    __slots__ = ()
    name = "kernels"

    def stream_for(self, device: int, /) -> tuple[int, object]:
        # CuPy destroys a stream with its object: the object keeps the handle valid
        return _cupy.current_stream(device), _cupy.current_stream_object(device)

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        source_ptr, target_ptr = source.ptr, target.ptr
        _plan_for(source.spec, source_ptr, target.spec, target_ptr, affine).launch(
            source_ptr, target_ptr, stream
        )

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> ConvertReplay:
        # the plan depends on the pointers only through their residues modulo MAX_VECTOR
        source_ptr, target_ptr = source.ptr, target.ptr
        plan = _plan_for(source.spec, source_ptr, target.spec, target_ptr, affine)
        return ConvertReplay(plan.launch, MAX_VECTOR, source_ptr % MAX_VECTOR, target_ptr % MAX_VECTOR)

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
        first, target_spec = sources[0].spec, target.spec
        channels = first.channels
        read = [(item.ptr, Geometry(item.height, item.width, channels, *item[1:4])) for item in regions]
        written = (target.ptr, target_spec.geometry)
        variant = plan_variant(first.dtype, target_spec.dtype, read, written, affine, item_pitch=item_pitch)
        launch_batch(
            variant,
            items=regions,
            target=written,
            item_pitch=item_pitch,
            affine=affine,
            pad=pad,
            stream=stream,
            device=target_spec.device.index,
        )

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        # one launch per 32 items (_frame_kernels): parameters by value, no table to upload
        _convert_frames(sources, target, item_pitch, recipe, stream)

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> FramesReplay:
        # packed and loaded once: a replay writes its pointers and launches
        return FramesReplay(sources, target, item_pitch, recipe)


EXECUTOR: Final = KernelExecutor()


def _plan_for(
    source_spec: ImageSpec, source_ptr: int, target_spec: ImageSpec, target_ptr: int, affine: Affine
) -> LaunchPlan:
    """The launch plan of one conversion. Specs and maps are shared per description, so a frame loop
    finds its plan by identity, without hashing geometries; the entry holds what it was made for, so
    an id is never reused."""
    key = (id(source_spec), id(target_spec), source_ptr % MAX_VECTOR, target_ptr % MAX_VECTOR, id(affine))
    entry = _plans.get(key)
    if entry is not None and entry[0] is source_spec and entry[1] is target_spec and entry[2] is affine:
        return entry[3]
    plan = launch_plan(
        source_spec.dtype,
        target_spec.dtype,
        source_ptr % MAX_VECTOR,
        source_spec.geometry,
        target_ptr % MAX_VECTOR,
        target_spec.geometry,
        affine,
        source_spec.device.index,
    )
    if len(_plans) >= _PLANS_LIMIT:
        _plans.clear()
    _plans[key] = (source_spec, target_spec, affine, plan)
    return plan
