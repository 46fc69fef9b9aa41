"""Opening another process's GPU memory on another GPU of this host: ``open_on`` and its two accesses.

A description names the GPU its memory lives on (its *home*). Plain ``pickle.loads`` opens it there.
Inside ``with open_on(device, access=...)``, a description of memory on another GPU opens on
``device`` by the access asked for, never by a silent choice:

- ``"peer"``: a view. The memory stays on its home GPU and is mapped for ``device``'s kernels
  (``cuIpcOpenMemHandle`` in ``device``'s context, with ``CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS``); the
  image says ``device``, and every read crosses NVLink or PCIe. Refused (``DeviceError``) where
  ``cuDeviceCanAccessPeer`` says ``device`` cannot reach the home GPU.
- ``"copy"``: the description opens on its home GPU, as plain ``pickle.loads`` does, and the result is
  a copy on ``device`` (``image.cuda(device)``; a frame or batch copied plane by plane, item by item),
  queued on ``device``'s current stream after the producer's write. The mapping goes once the copy
  has finished. Works between any two GPUs this process sees.

Events and streams stay on their own devices: the producer's ready point is opened on its home GPU
and waited for by ``device``'s current stream, in ``device``'s context (``_ipc_open``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._device import DeviceLike, parse_device
from ._errors import DeviceError
from ._ipc_driver import driver
from ._runtime import runtime

if TYPE_CHECKING:
    from ._frame import GpuFrame
    from ._image import GpuImage
    from ._image_batch import GpuBatch

__all__ = ["Access", "OpenOn", "check_peer", "choice", "copied_batch", "copied_frame", "copied_image",
           "open_on"]  # fmt: skip

Access: TypeAlias = Literal["peer", "copy"]
"""How ``open_on`` opens memory of another GPU: ``"peer"`` (a view over it) or ``"copy"``."""
_ACCESSES: tuple[Access, ...] = ("peer", "copy")


@dataclass(frozen=True, slots=True)
class OpenOn:
    """The GPU (this process's ordinal) descriptions open on, and how memory of another GPU gets there."""

    device: int
    access: Access


_chosen: ContextVar[OpenOn | None] = ContextVar("gpuimage_open_on", default=None)


def choice() -> OpenOn | None:
    """The ``open_on`` block this thread (or task) is in; None outside any."""
    return _chosen.get()


@contextmanager
def open_on(device: DeviceLike, *, access: Access) -> Generator[None]:
    """Open the images, frames and batches unpickled in this block on GPU ``device``.

    Descriptions of memory on ``device`` open as usual. Memory on another GPU opens by ``access``:
    ``"peer"`` maps it for ``device``'s kernels (a zero-copy view; the memory stays on its GPU and
    each read crosses NVLink or PCIe), ``"copy"`` copies it to ``device`` once opened. It applies to
    every ``pickle.loads`` in the block, also those that ``multiprocessing`` queues and pipes make::

        with gpuimage.open_on("cuda:1", access="peer"):
            image = queue.get()  # the producer's cuda:0 memory, read by cuda:1's kernels

    Parameters:
        device: the GPU to use the images on (``1``, ``"cuda:1"``, a ``Device``), as this process
            numbers it.
        access: ``"peer"`` or ``"copy"`` (keyword-only, no default: the cost differs, so say which).

    Raises:
        DeviceError: ``device`` is not a GPU, or ``access`` is neither ``"peer"`` nor ``"copy"``.
            Unpickling in the block raises ``DeviceError`` for a peer view that ``device`` cannot
            reach (``cuDeviceCanAccessPeer``), with ``access="copy"`` as the fix.

    Notes:
        Streams: the opened object is ready on ``device``'s current stream, which waits on the GPU
        for the producer's write (the event is used on its own GPU, the wait in ``device``'s
        context). A ``SharedRing`` may be read through a peer view; a copy of a ring is refused.

        Lifetime: a peer view holds the producer's memory as any opened image does; a copy lets go
        of it once the copy has finished on the GPU. CUDA maps an allocation once per process, so
        every description of one allocation must open the same way (a plain open and a peer view
        of it, at the same time, are refused).
    """
    where = f"open_on({device!r}, access={access!r})"
    target = parse_device(device, where=where)
    if not target.is_cuda:
        raise DeviceError(f"{where}: expected a GPU, got device={device!r}. Use image.cpu() after opening.")
    if access not in _ACCESSES:
        raise DeviceError(
            f"{where}: expected access='peer' (a view of the memory on its own GPU) or 'copy' (a copy on "
            f"{target}), got access={access!r}."
        )
    token = _chosen.set(OpenOn(target.index, access))
    try:
        yield
    finally:
        _chosen.reset(token)


def check_peer(home: int, target: int, where: str) -> None:
    """Raise ``DeviceError`` unless kernels on ``target`` can reach memory on ``home``."""
    if not driver().can_access_peer(target, home):
        raise DeviceError(
            f"{where}: expected cuda:{target} to reach cuda:{home}'s memory for a peer view "
            f"(open_on(access='peer')), got cuDeviceCanAccessPeer({target}, {home}) = 0 (no NVLink or PCIe "
            f"peer path between them). Use open_on({target}, access='copy'), or use the image on cuda:{home}."
        )


def copied_image(image: GpuImage[Any, Any], target: int) -> GpuImage[Any, Any]:
    """A copy of an opened image on GPU ``target`` (``image.cuda(target)``)."""
    return image.cuda(target)


def copied_frame(frame: GpuFrame, target: int) -> GpuFrame:
    """A copy of an opened frame on GPU ``target``: one allocation, its planes copied one by one."""
    copy = type(frame).empty(
        frame.width, frame.height, format=frame.format, colour=frame.colour, device=target
    )
    _copy_parts(zip(frame.planes, copy.planes, strict=True), target)
    return copy


def copied_batch(batch: GpuBatch, target: int) -> GpuBatch:
    """A packed copy of an opened batch on GPU ``target``, item by item, with its channel order."""
    spec = batch.item_spec
    copy = type(batch).empty(
        batch.size, spec.height, spec.width, spec.channels, spec.dtype, layout=batch.layout, device=target
    )
    _copy_parts(zip(batch, copy, strict=True), target)
    order = batch.channel_order
    return copy if order is None else copy.with_channel_order(order)


def _copy_parts(pairs: Iterable[tuple[GpuImage[Any, Any], GpuImage[Any, Any]]], target: int) -> None:
    """Copy each source into its target on ``target``'s current stream, as ``image.cuda()`` does."""
    chosen = runtime()
    stream = chosen.current_stream(target)
    for source, into in pairs:
        with source.reading(stream), into.writing(stream):
            chosen.copy(source, into, stream, target)
