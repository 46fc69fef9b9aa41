"""Child processes of ``test_cuda_ipc_multi_gpu.py`` (``spawn`` context): a producer whose memory is on
GPU 0, a consumer that opens it on GPU 1 (a peer view, a copy) with another GPU current, and a ring
reader on GPU 1. Each arms a faulthandler watchdog, so a hang ends the child with its traceback."""

from __future__ import annotations

import gc
from multiprocessing.connection import Connection
from typing import Any

from ._ipc_children import checksum, frame_values, settle, shared_after, start

CASES = ["image", "roi", "frame", "batch"]
ACCESSES = ["peer", "copy", "plain"]
SLEEP_CYCLES = 1_000_000_000  # ~0.5 s of GPU time: the write is still queued when it is pickled
FIRST_SLEEP_CYCLES = 4 * SLEEP_CYCLES  # the first pickling also loads the driver's IPC calls and sets
# the lease folder up, which took over 0.5 s on 2 x H200


def _made(name: str, sleep_cycles: int) -> tuple[Any, Any]:
    """A device object on GPU 0 whose write is queued on a side stream behind a sleep kernel, and
    that stream."""
    import torch

    from gpuimage import GpuBatch, GpuFrame, GpuImage

    with torch.cuda.device(0):
        if name in ("image", "roi"):
            made: Any = GpuImage.empty(64, 96, 3, row_alignment=256, device=0)
        elif name == "frame":
            made = GpuFrame.empty(64, 48, format="NV12", device=0)
        else:
            made = GpuBatch.empty(3, 16, 24, 3, "float32", layout="NHWC", device=0).with_channel_order("BGR")
        parts = made.planes if name == "frame" else list(made) if name == "batch" else [made]
        torch.cuda.synchronize(0)
        stream = torch.cuda.Stream(device=0)
        with torch.cuda.stream(stream):
            torch.cuda._sleep(sleep_cycles)
        for seed, part in enumerate(parts):
            with part.writing(stream), torch.cuda.stream(stream):
                view = part.as_torch(stream=stream)
                pattern = torch.arange(view.numel(), device="cuda:0", dtype=torch.int64) * (seed + 3) % 251
                view.copy_(pattern.reshape(view.shape).to(view.dtype))
    return (made.crop(5, 3, 40, 21) if name == "roi" else made), stream


def producer(to_consumer: Connection, control: Connection) -> None:
    """For each access and case, send a late-written object on GPU 0 (the access first, then the
    object); report what the consumer saw, what was expected, and whether the memory was let go."""
    start()
    from multiprocessing.reduction import ForkingPickler

    import torch

    torch.cuda.set_device(0)
    sleep_cycles = FIRST_SLEEP_CYCLES
    for access in ACCESSES:
        for case in CASES:
            report: dict[str, Any] = {}
            try:
                made, stream = _made(case, sleep_cycles)
                sleep_cycles = SLEEP_CYCLES
                pickled = bytes(ForkingPickler.dumps(made))
                # Checked right after pickling: the description was made while the write was queued.
                report["pending_at_send"] = not stream.query()
                to_consumer.send(access)
                to_consumer.send_bytes(pickled)  # the consumer's recv() unpickles it
                report["answer"] = to_consumer.recv()
                torch.cuda.synchronize(0)
                report["expected"] = checksum(made)
                del made
                gc.collect()
                report["shared_after"] = shared_after(5)
            except Exception as exc:
                report["error"] = f"{type(exc).__name__}: {exc}"
            control.send(((access, case), report))
    to_consumer.send("stop")


def consumer(conn: Connection) -> None:
    """Open each object on GPU 1 (``open_on(1, access=...)``; "plain": no ``open_on``, on GPU 0) with
    the other GPU current, and answer where it lives, the current device afterwards, and checksums
    computed on its GPU."""
    start()
    import torch

    import gpuimage

    peer = bool(torch.cuda.can_device_access_peer(1, 0))
    while True:
        access = conn.recv()
        if access == "stop":
            return
        torch.cuda.set_device(1 if access == "plain" else 0)  # not the GPU the object opens on
        try:
            if access == "plain":
                obj = conn.recv()
            else:
                with gpuimage.open_on(1, access=access):
                    obj = conn.recv()
        except Exception as exc:
            conn.send({"error": f"{type(exc).__name__}: {exc}", "peer": peer})
            continue
        try:
            conn.send(_answer(obj, access, peer))
        except Exception as exc:
            conn.send({"error": f"{type(exc).__name__}: {exc}", "peer": peer})
        del obj
        settle(devices=2)


def _answer(obj: Any, access: str, peer: bool) -> dict[str, Any]:
    import torch

    first = obj.planes[0] if hasattr(obj, "planes") else obj
    answer: dict[str, Any] = {
        "peer": peer,
        "device": first.device.index,
        "current_device": torch.cuda.current_device(),
        "owner": type(first.owner).__name__,
        "order": getattr(getattr(obj, "channel_order", None), "value", None),
    }
    with torch.cuda.device(first.device.index):
        answer["checksum"] = checksum(obj)
    return answer


def ring_reader(from_writer: Connection, control: Connection, frames: int) -> None:
    """Open the ring as a peer view on GPU 1 and read ``frames`` frames there, each checked on GPU 1
    behind a slow read (the writer must not overwrite a slot still read); report the bad frames."""
    start()
    import torch

    import gpuimage

    torch.cuda.set_device(1)
    if not torch.cuda.can_device_access_peer(1, 0):
        control.send(("no peer", 0, []))
        return
    with gpuimage.open_on(1, access="peer"):
        ring = from_writer.recv()
    good = torch.zeros(frames, dtype=torch.bool, device="cuda:1")
    devices = {item.device.index for item in ring.items}
    for index in range(frames):
        with ring.reading(timeout=30) as frame:
            torch.cuda._sleep(2_000_000)
            luma, chroma = frame_values(index)
            good[index] = (frame.planes[0].as_torch() == luma).all() & (
                frame.planes[1].as_torch() == chroma
            ).all()
    bad = [index for index, ok in enumerate(good.cpu().tolist()) if not ok]
    control.send(("read", sorted(devices), bad))


def ring_copy_reader(from_writer: Connection, control: Connection) -> None:
    """Open the ring with ``access="copy"``: report the refusal."""
    start()
    import gpuimage

    try:
        with gpuimage.open_on(1, access="copy"):
            from_writer.recv()
        control.send(("opened", ""))
    except gpuimage.GpuImageError as exc:
        control.send((type(exc).__name__, str(exc)))
