"""The spoke interface and its registry: one module per foreign library, found by name.

Every foreign library (torch, CuPy, OpenCV, NumPy, DLPack producers, CUDA Array Interface
producers) is one spoke module that defines ``SPOKE``, an instance of a ``Spoke`` subclass. The hub
and the base modules name no library module: they ask this registry for a spoke by name
(``spoke("torch")``), or for the spoke of a foreign object's package (``spoke_of(obj)``). A spoke
module imports its library at its top, so a spoke loads only when first asked for.

Adding a library (JAX, numba) is one new module with a ``SPOKE`` and one line in ``_REGISTRY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

from ._errors import InteropError

if TYPE_CHECKING:
    from ._device import Device
    from ._dtypes import DTypeName
    from ._layout import Layout
    from ._runtime import Runtime
    from ._source import Imported
    from ._spec import ImageSpec

__all__ = ["OutArray", "Spoke", "loaded_spokes", "spoke", "spoke_of"]


class OutArray(NamedTuple):
    """An ``out=`` array described: pointer, shape, byte strides, dtype and device."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: DTypeName
    device: Device


class ParseFunction(Protocol):
    """A spoke's import: a foreign object read as pointer + checked spec + owner + ready stream."""

    def __call__(
        self, obj: object, /, *, layout: Layout | None, device: Device | None, stream: int | None, where: str
    ) -> Imported: ...


def _cannot_parse(
    obj: object, /, *, layout: Layout | None, device: Device | None, stream: int | None, where: str
) -> Imported:
    raise InteropError(f"{where}: gpuimage cannot import a {type(obj).__name__} this way.")


def _no_view(ptr: int, spec: ImageSpec, owner: object, /) -> object:
    raise InteropError("this library has no zero-copy view of a gpuimage image.")


def _legacy_default(device: int, /) -> int:
    return 0  # a library without streams queues its work on the legacy default stream


def _nothing(device: int, /) -> object:
    return None


def _never(obj: object, /) -> bool:
    return False


def _no_handle(stream: object, /, *, where: str) -> int:
    raise InteropError(f"{where}: a {type(stream).__name__} has no stream handle gpuimage can read.")


def _no_note(owner: object, stream: int, /) -> None:
    return None  # gpuimage keeps owners alive itself (see _lifetime): no allocator is handed a stream


def _no_runtime() -> Runtime | None:
    return None  # a library without a CUDA runtime of its own (OpenCV without CUDA, NumPy)


def _no_signature(out: object, /) -> tuple[int, Hashable] | None:
    return None  # every call describes its out= in full


def _cannot_describe(out: object, /, *, where: str) -> OutArray:
    raise InteropError(f"{where}: expected out to be an array gpuimage can write, got {type(out).__name__}.")


@dataclass(frozen=True, slots=True)
class Spoke:
    """What a foreign library's module offers the hub: a record of functions, defaults for the
    rest ("not supported", or nothing to do). Fields are plain functions, called without binding.

    - ``parse``: a foreign object read as pointer + checked spec + owner + ready stream.
    - ``view``: a zero-copy view of the library's own type over an image's memory, keeping ``owner``.
    - ``current_stream`` / ``current_stream_object``: where the library queues work on a device
      (the default consumer of a view), and the object that keeps that stream alive.
    - ``stream_handle``: the raw handle of one of the library's stream objects.
    - ``note_use``: tell the library's allocator that ``stream`` uses memory it owns.
    - ``describe_out``: an ``out=`` array of the library's type, described.
    - ``gpu_runtime``: the library's CUDA calls as a ``Runtime`` where it reaches a GPU (``_runtime``
      picks among them), else None.
    - ``parses_as_dlpack``: whether ``parse`` reads this object of the library's as its
      ``__dlpack__`` would export it (pointer, spec, the object kept alive; an object the library
      refuses to export is not), so ``from_dlpack`` may read it that way where DLPack would queue no
      wait: a tenth of the capsule route's host time.
    - ``out_signature``: an ``out=`` array's pointer, and a hashable record of everything else
      ``describe_out`` reads of it (equal records: equal descriptions but the pointer), read far
      cheaper than a description; None where the library has none. A replayed frame batch
      (``_frame_replay``) keys on it.
    """

    name: str
    parse: ParseFunction = _cannot_parse
    view: Callable[[int, ImageSpec, object], object] = _no_view
    current_stream: Callable[[int], int] = _legacy_default
    current_stream_object: Callable[[int], object] = _nothing
    stream_handle: StreamHandleFunction = _no_handle
    note_use: Callable[[object, int], None] = _no_note
    describe_out: DescribeOutFunction = _cannot_describe
    gpu_runtime: Callable[[], Runtime | None] = _no_runtime
    parses_as_dlpack: Callable[[object], bool] = _never
    out_signature: Callable[[object], tuple[int, Hashable] | None] = _no_signature


class StreamHandleFunction(Protocol):
    """A spoke's reading of one of its library's stream objects as a raw ``cudaStream_t``."""

    def __call__(self, stream: object, /, *, where: str) -> int: ...


class DescribeOutFunction(Protocol):
    """A spoke's description of an ``out=`` array of its library's type."""

    def __call__(self, out: object, /, *, where: str) -> OutArray: ...


_REGISTRY: dict[str, str] = {
    "torch": "gpuimage._torch",
    "cupy": "gpuimage._cupy",
    "opencv": "gpuimage._opencv",
    "numpy": "gpuimage._numpy",
    "dlpack": "gpuimage._dlpack",
    "cai": "gpuimage._cai",
}
"""Spoke name -> module. The module defines ``SPOKE``."""

_BY_PACKAGE: dict[str, str] = {"torch": "torch", "cupy": "cupy", "cv2": "opencv", "numpy": "numpy"}
"""A foreign object's top-level package -> the spoke that reads it (without importing the spoke)."""

_loaded: dict[str, Spoke] = {}


def spoke(name: str) -> Spoke:
    """The spoke called ``name``, imported on first use (raises ``MissingBackendError`` naming what
    to install when its library is missing)."""
    found = _loaded.get(name)
    if found is None:
        module = importlib.import_module(_REGISTRY[name])
        found = _loaded[name] = cast(Spoke, module.SPOKE)
    return found


def spoke_of(obj: object) -> Spoke | None:
    """The spoke of the library that ``obj`` comes from, or None."""
    name = _BY_PACKAGE.get(type(obj).__module__.partition(".")[0])
    return None if name is None else spoke(name)


def loaded_spokes(*names: str) -> list[Spoke]:
    """The spokes among ``names`` that are already loaded (asking loads nothing)."""
    return [found for found in map(_loaded.get, names) if found is not None]
