"""``PreparedBatch``: a frame loop's ``normalize_batch`` with everything but the images fixed once.

``normalize_batch`` replays a call it has seen (``_frame_replay``), but it still reads and keys every
argument on every call (the regions' types, mean and std, the options: about half its host time).
A prepared batch owns copies of those arguments, so a call compares only what can change: the
items (their formats, colours and plane geometries, by the interned tokens the replay table uses)
and ``out``'s description. When they match the call it last checked in full, it launches with the
new pointers, checked and ordered exactly as a replay is (``launch_entry``). Anything else goes
through ``normalize_batch`` itself, which checks in full, raises what is wrong, and leaves the replay
this object adopts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast

from ._affine import ChannelValues, short_repr
from ._batch import Roi, normalize_batch, replay_call
from ._dtypes import DTypeLike
from ._errors import SpecError
from ._formats import ChannelOrderLike
from ._frame_replay import Entry, items_part, known, launch_entry
from ._image_batch import GpuBatch
from ._sampling import ResizeMode
from ._spokes import Spoke

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

    from ._frame import GpuFrame
    from ._image import GpuImage

__all__ = ["PreparedBatch"]

OutT = TypeVar("OutT", "torch.Tensor", "cupy.ndarray", "npt.NDArray[Any]", GpuBatch)
"""The type of a prepared batch's ``out``, which every call returns."""


_DEFAULTS: dict[str, object] = {
    "rois": None,
    "size": None,
    "resize": None,
    "keep_aspect": False,
    "order": None,
    "pad_value": 0.0,
    "dtype": None,
    "scale": None,
    "reverse_channels": False,
}
"""The arguments a repr leaves out when they equal the signature's defaults (and are of their type)."""


class _Fast(NamedTuple):
    """The call last checked in full, as a replay: what a new call must match to launch at once."""

    items: tuple[object, ...]  # ItemsPart.key
    held: tuple[object, ...]  # the specs whose ids ``items`` names
    described: object  # out's Spoke.out_signature record
    spoke: Spoke
    entry: Entry


class PreparedBatch(Generic[OutT]):
    """``normalize_batch`` with every argument but the images fixed, for a per-frame loop.

    ``prepared(frames)`` does what ``normalize_batch(frames, mean, std, rois=..., ..., out=out)``
    does, and returns ``out``. The arguments are copied when the object is made (mutating the list
    of regions afterwards changes nothing) and checked on the first call, in full, as
    ``normalize_batch`` checks them. A later call whose items are described as the last checked
    call's (same formats, colours, plane geometries and the same pattern of items) and whose
    ``out`` is described as before launches at once: only the new pointers are checked
    (alignment, ``out`` overlapping an input), and the streams are ordered as ``normalize_batch``
    orders them. Any other call is checked in full again.

    Example::

        prepared = gpuimage.PreparedBatch(MEAN, STD, rois=rois, size=(224, 224), resize="bilinear", out=batch)
        for frame in decoded:  # GpuFrames of one geometry
            model(prepared([frame] * len(rois)))

    The fast path needs an array ``out`` (torch or CuPy) and a GPU executor with replays (the
    kernels); otherwise every call is a plain ``normalize_batch`` call.
    """

    __slots__ = ("_arguments", "_fast", "_out")

    def __init__(
        self,
        mean: ChannelValues,
        std: ChannelValues,
        *,
        rois: Sequence[Roi | None] | None = None,
        size: tuple[int, int] | None = None,
        resize: ResizeMode | None = None,
        keep_aspect: bool = False,
        order: ChannelOrderLike | None = None,
        pad_value: float = 0.0,
        dtype: DTypeLike | None = None,
        scale: float | None = None,
        reverse_channels: bool = False,
        out: OutT,
    ) -> None:
        where = "PreparedBatch()"
        if cast(object, out) is None:  # untyped callers
            raise SpecError(
                f"{where}: expected out= (the array or GpuBatch every call writes), got None. Call "
                "normalize_batch(...) for a new array per call."
            )
        try:  # deep copies: a caller's list mutated later must not change what was checked
            mean, std, rois, size = copy.deepcopy((mean, std, rois, size))
        except Exception as exc:  # a generator, a lock: nothing normalize_batch takes either
            raise SpecError(
                f"{where}: expected mean, std, rois and size as numbers, tuples, lists or NumPy arrays "
                f"(copied when it is made), got one that cannot be copied: {type(exc).__name__}: {exc}"
            ) from exc
        self._arguments: dict[str, Any] = {
            "mean": mean,
            "std": std,
            "rois": rois,
            "size": size,
            "resize": resize,
            "keep_aspect": keep_aspect,
            "order": order,
            "pad_value": pad_value,
            "dtype": dtype,
            "scale": scale,
            "reverse_channels": reverse_channels,
        }
        self._out: OutT = out
        self._fast: _Fast | None = None

    def __repr__(self) -> str:
        given = {
            name: value
            for name, value in self._arguments.items()
            if name not in _DEFAULTS or type(value) is not type(_DEFAULTS[name]) or value != _DEFAULTS[name]
        }
        given.pop("rois", None)
        shown = [f"{name}={short_repr(value)}" for name, value in given.items()]
        rois: object = self._arguments["rois"]
        if isinstance(rois, list | tuple):
            shown.insert(2, f"rois=<{len(cast('list[object]', rois))} regions>")
        elif rois is not None:
            shown.insert(2, f"rois={short_repr(rois)}")
        return f"PreparedBatch({', '.join(shown)}, out={type(self._out).__name__})"

    @property
    def out(self) -> OutT:
        """The array (or ``GpuBatch``) every call writes and returns."""
        return self._out

    def __call__(self, images: Sequence[GpuImage[Any, Any] | GpuFrame]) -> OutT:
        """Normalize ``images`` (one per region) into ``out`` and return it; see the class."""
        fast, items = self._fast, cast("Sequence[object]", images)
        if fast is not None and (type(items) is list or type(items) is tuple) and items:
            part = items_part(cast("Sequence[object]", items))
            if part is not None and part.key == fast.items:
                signature = fast.spoke.out_signature(self._out)
                if (
                    signature is not None
                    and signature[1] == fast.described
                    and launch_entry(fast.entry, fast.spoke, part.planes, part.pointers, signature[0])
                ):
                    return self._out
        cast(Any, normalize_batch)(images, **self._arguments, out=self._out)  # returns out
        self._adopt(images)
        return self._out

    def _adopt(self, images: Sequence[GpuImage[Any, Any] | GpuFrame]) -> None:
        """Keep the replay that the full call just left, if it left one (a call that raised left none)."""
        call = replay_call(images, **self._arguments, out=self._out)
        if call is None:
            self._fast = None
            return
        entry = known(call.key)
        if entry is None or entry.launch is None:
            self._fast = None
            return
        self._fast = _Fast(call.items, call.held, call.described, call.spoke, entry)
