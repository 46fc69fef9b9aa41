"""Child processes of ``test_cuda_ipc.py`` and ``test_cuda_ipc_ring.py`` (started with the ``spawn``
context, so each is a fresh interpreter with its own CUDA context, as in a real pipeline).

Every function here runs in a child: a consumer that opens what it is sent and answers with checksums
computed on its GPU, a consumer that holds what it opened until it is killed, a producer whose
consumer is killed, and the two sides of a ``SharedRing``. Each arms a faulthandler watchdog, so a
hang ends the child with its traceback instead of stalling the run.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import pickle
import time
from multiprocessing.connection import Connection
from typing import Any

HANG_S = 90.0
LONG_HANG_S = 150.0  # the 10,000-frame ring: under the test's own watchdog (180 s)


def stop(*processes: Any) -> list[int | None]:
    """Join each child (kill one that is still alive after 30 s); their exit codes."""
    codes = []
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
        codes.append(process.exitcode)
    return codes


def start(seconds: float = HANG_S) -> None:
    """A child's watchdog: a hang past ``seconds`` exits with every thread's traceback, and a crash
    says where it happened."""
    faulthandler.enable()
    faulthandler.dump_traceback_later(seconds, exit=True)


def shared_after(seconds: float, poll_s: float = 0.005) -> int:
    """The producer's descriptions still keeping memory alive, once they are all let go or
    ``seconds`` passed (``collect_shared`` polls the consumers' locks)."""
    import gpuimage

    deadline = time.monotonic() + seconds
    while gpuimage.collect_shared() and time.monotonic() < deadline:
        time.sleep(poll_s)
    return gpuimage.collect_shared()


def checksum(obj: Any) -> list[int]:
    """Weighted byte sums of each part (an image; a frame's planes; a batch's 4-D view), computed on
    the GPU through ``as_torch()``, which orders torch's current stream after the data."""
    import torch

    parts = obj.planes if hasattr(obj, "planes") else (obj,)
    sums: list[int] = []
    for part in parts:
        data = part.as_torch().contiguous().view(torch.uint8).reshape(-1).to(torch.int64)
        weights = torch.arange(1, data.numel() + 1, device=data.device, dtype=torch.int64) % 65521
        sums.append(int((data * weights).sum().item()))
    return sums


def facts(obj: Any) -> dict[str, Any]:
    """What the consumer's object says of its geometry, to compare with the producer's."""
    if hasattr(obj, "planes"):
        return {"kind": "frame", "format": obj.format.value, "layout": obj.layout, "colour": repr(obj.colour),
                "planes": [plane.spec.model_dump(exclude={"device"}) for plane in obj.planes]}  # fmt: skip
    if hasattr(obj, "item_pitch"):
        return {"kind": "batch", "shape": obj.shape, "strides": obj.strides, "dtype": obj.dtype}
    return {"kind": "image", "spec": obj.spec.model_dump(exclude={"device"}), "order": obj.channel_order}


def settle(devices: int | None = None) -> None:
    """Let go of everything opened: its GPU work is done (on the current GPU, or on the first
    ``devices`` GPUs), so its mapping closes and its lease goes."""
    import torch

    import gpuimage

    if devices is None:
        torch.cuda.synchronize()
    for device in range(devices or 0):
        torch.cuda.synchronize(device)
    gc.collect()
    gpuimage.pending_releases()


def consumer(conn: Connection) -> None:
    """Serve requests until ``("stop", None)``: each message is unpickled (opening what it describes)."""
    start()
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:
            return
        except Exception as exc:  # the unpickling itself failed: say so and go on
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
            continue
        if command == "stop":
            return
        try:
            conn.send(_serve(command, payload))
        except Exception as exc:
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        del payload
        settle()


def _serve(command: str, payload: Any) -> dict[str, Any]:
    import gpuimage
    from gpuimage import GpuBatch, GpuFrame, GpuImage, _ipc_open

    if command == "checksum":
        answer: dict[str, Any] = {"checksum": checksum(payload), "facts": facts(payload)}
        first = payload.planes[0] if hasattr(payload, "planes") else payload
        answer["owner"] = type(first.owner).__name__
        try:
            pickle.dumps(payload)
            answer["repickled"] = "allowed"
        except gpuimage.GpuImageError as exc:
            answer["repickled"] = type(exc).__name__
        return answer
    if command == "together":  # several descriptions at once, all still open
        return {"mappings": len(_ipc_open._mappings), "checksums": [checksum(each) for each in payload]}
    if command == "same_process":  # pickled and unpickled here: the original object, no IPC open
        made = [
            GpuImage.empty(5, 7, 3, row_alignment=256),
            GpuFrame.empty(32, 16, format="NV12"),
            GpuBatch.empty(2, 4, 4, 3, "float32"),
        ]
        again = pickle.loads(pickle.dumps(made))
        return {
            "same": [a is b for a, b in zip(made, again, strict=True)],
            "opened": len(_ipc_open._mappings),
        }
    raise ValueError(f"unknown command {command!r}")


def holder(conn: Connection) -> None:
    """Open what arrives, answer its checksum, and hold it until killed."""
    start()
    opened = conn.recv()
    conn.send(("holding", checksum(opened)))
    time.sleep(HANG_S)


def producer_of_a_killed_consumer(to_consumer: Connection, control: Connection, nbytes: int) -> None:
    """Share an image with a consumer that the test then SIGKILLs; report the memory before and after."""
    start()
    import torch

    import gpuimage
    from gpuimage import GpuImage

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    image = GpuImage.empty(1024, nbytes // 1024)
    image.as_torch().fill_(7)
    expected = checksum(image)
    to_consumer.send(image)
    _, seen = to_consumer.recv()
    control.send(
        ("holding", seen == expected, gpuimage.collect_shared(), torch.cuda.memory_allocated() - baseline)
    )
    del image
    gc.collect()
    control.recv()  # the test killed the consumer
    shared_after(10, poll_s=0.01)
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()
    control.send(("after", gpuimage.collect_shared(), torch.cuda.memory_allocated() - baseline))


def _case(name: str) -> Any:
    """A filled device object of one kind (the values come from a seed, written on the GPU)."""
    import torch

    from gpuimage import GpuBatch, GpuFrame, GpuImage

    def fill(image: Any, seed: int) -> Any:
        view = image.as_torch()
        values = torch.randint(
            0, 256, view.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(seed)
        )
        if view.dtype == torch.bfloat16:
            view.copy_(values.to(torch.bfloat16) / 7)
        else:
            view.copy_(values.to(view.dtype))
        return image

    if name == "hwc_uint8":
        return fill(GpuImage.empty(48, 64, 3), 1)
    if name == "pitched":
        return fill(GpuImage.empty(37, 53, 3, row_alignment=256), 2)
    if name == "roi":
        return fill(GpuImage.empty(64, 80, 4, row_alignment=256), 3).crop(7, 5, 33, 21)
    if name == "chw_float32":
        return fill(GpuImage.empty(24, 40, 3, "float32", layout="CHW"), 4)
    if name == "bfloat16":
        return fill(GpuImage.empty(20, 30, 2, "bfloat16"), 5)
    if name == "nv12_frame":
        frame = GpuFrame.empty(64, 48, format="NV12", colour=None, row_alignment=128)
        for seed, plane in enumerate(frame.planes):
            fill(plane, 6 + seed)
        return frame
    if name == "batch":
        batch = GpuBatch.empty(3, 16, 24, 3, "float32")
        for seed, item in enumerate(batch):
            fill(item, 10 + seed)
        return batch
    raise ValueError(name)


def producer(to_consumer: Connection, control: Connection, cases: list[str], sleep_cycles: int) -> None:
    """Send each case to the consumer (``consumer``), and report to the test what it expected, what the
    consumer saw, and whether the description let go of the memory once the consumer did."""
    start()
    import torch

    from gpuimage import GpuImage

    for case in cases:
        report: dict[str, Any] = {}
        try:
            if case == "late":  # the write is still behind a sleep kernel when the image is pickled
                image = GpuImage.empty(256, 512, 4)
                image.as_torch().zero_()
                torch.cuda.synchronize()
                stream = torch.cuda.Stream()
                with image.writing(stream), torch.cuda.stream(stream):
                    torch.cuda._sleep(sleep_cycles)
                    pattern = torch.arange(256 * 512 * 4, device="cuda") % 251
                    image.as_torch(stream=stream).copy_(pattern.to(torch.uint8).reshape(256, 512, 4))
                to_consumer.send(("checksum", image))
                report["pending_at_send"] = not stream.query()
                report["answer"] = to_consumer.recv()
                stream.synchronize()
                report["expected"] = checksum(image)
                del image
            elif case == "together":  # two descriptions of one allocation, open at the same time
                image = _case("hwc_uint8")
                parts = (image.crop(0, 0, 32, 16), image.crop(32, 16, 32, 16))
                report["expected"] = [checksum(part) for part in parts]
                to_consumer.send(("together", parts))
                report["answer"] = to_consumer.recv()
                del image, parts
            elif case == "same_process":
                to_consumer.send(("same_process", None))
                report["answer"] = to_consumer.recv()
            else:
                made = _case(case)
                report["expected"], report["facts"] = checksum(made), facts(made)
                to_consumer.send(("checksum", made))
                report["answer"] = to_consumer.recv()
                del made
            gc.collect()
            report["shared_after"] = shared_after(5)
        except Exception as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
        control.send((case, report))
    to_consumer.send(("stop", None))


def refused_allocator(control: Connection) -> None:
    """Pickle an image of torch's memory under this process's PYTORCH_CUDA_ALLOC_CONF; report the error."""
    start()
    import torch

    from gpuimage import GpuImage

    tensor = torch.ones(256, 256, 3, dtype=torch.uint8, device="cuda")
    try:
        pickle.dumps(GpuImage.from_torch(tensor, layout="HWC"))
        control.send(("pickled", ""))
    except Exception as exc:
        control.send((type(exc).__name__, str(exc)))


def frame_values(index: int) -> tuple[int, int]:
    """The luma and chroma values the ring's writer puts in frame ``index``: the pair differs for every
    index below 251 * 251 (luma gives ``index % 251``, chroma then ``index // 251``)."""
    return index % 251, (3 * index + 1 + index // 251) % 251


def usage(*, writer: bool) -> dict[str, int]:
    """What a ring's side holds now, after a synchronize and a collection: torch's allocator, the device
    as a whole (every process's memory), open file descriptors, IPC mappings, live descriptions, and
    (``writer``) the files of this process's lease directory."""
    import torch

    import gpuimage
    from gpuimage import _ipc_lease, _ipc_open

    torch.cuda.synchronize()
    gc.collect()
    gpuimage.pending_releases()
    free, total = torch.cuda.mem_get_info()
    found = {
        "allocated": torch.cuda.memory_allocated(),
        "reserved": torch.cuda.memory_reserved(),
        "device used": total - free,
        "open files": len(os.listdir("/proc/self/fd")),
        "mappings": len(_ipc_open._mappings),
        "shared": gpuimage.collect_shared(),
    }
    if writer:
        found["lease files"] = len(os.listdir(_ipc_lease.lease_directory()))
    return found


def ring_writer(
    to_reader: Connection,
    control: Connection,
    frames: int,
    slots: int,
    sleep_cycles: int = 1_000_000,
    measure_at: int | None = None,
) -> None:
    """Write ``frames`` NV12 frames into a ring of ``slots``, each write behind a sleep kernel; report
    how it ended (``done``, or ``gone`` with the error once the reader is gone). With ``measure_at``,
    first report ``("usage", after measure_at frames, after the last)``."""
    start(HANG_S if measure_at is None else LONG_HANG_S)
    import torch

    from gpuimage import GpuFrame, LifetimeError, SharedRing

    ring = SharedRing.from_items([GpuFrame.empty(64, 48, format="NV12") for _ in range(slots)])
    to_reader.send(ring)
    written = 0
    measured: list[dict[str, int]] = []
    try:
        for index in range(frames):
            with ring.writing(timeout=30) as (_, frame):
                torch.cuda._sleep(sleep_cycles)  # a late write: the reader must wait for it on its GPU
                luma, chroma = frame_values(index)
                frame.planes[0].as_torch().fill_(luma)
                frame.planes[1].as_torch().fill_(chroma)
            written += 1
            if measure_at is not None and written in (measure_at, frames):
                measured.append(usage(writer=True))
    except LifetimeError as exc:
        control.send(("gone", written, str(exc)))
    else:
        if measure_at is not None:
            control.send(("usage", *measured))
        control.send(("done", written, ""))
    control.recv()  # the reader finished: the ring's memory may go


def ring_reader(
    from_writer: Connection,
    control: Connection,
    frames: int,
    stop_after: int | None,
    sleep_cycles: int = 2_000_000,
    measure_at: int | None = None,
) -> None:
    """Read ``frames`` frames, checking each on the GPU without a host sync (a slow read behind a sleep
    kernel, which the writer must not overwrite); report the frames whose values were wrong. With
    ``stop_after``, report after that many reads and hold on until killed. With ``measure_at``, first
    report ``("usage", after measure_at frames, after the last)``."""
    start(HANG_S if measure_at is None else LONG_HANG_S)
    import torch

    ring = from_writer.recv()
    good = torch.zeros(frames, dtype=torch.bool, device="cuda")
    measured: list[dict[str, int]] = []
    for index in range(frames):
        with ring.reading(timeout=30) as frame:
            torch.cuda._sleep(sleep_cycles)  # a slow read, queued: the slot must stay untouched meanwhile
            luma, chroma = frame_values(index)
            good[index] = (frame.planes[0].as_torch() == luma).all() & (
                frame.planes[1].as_torch() == chroma
            ).all()
        if stop_after is not None and index + 1 == stop_after:
            control.send(("read", index + 1, []))
            time.sleep(HANG_S)
        if measure_at is not None and index + 1 in (measure_at, frames):
            measured.append(usage(writer=False))
    if measure_at is not None:
        control.send(("usage", *measured))
    bad = [index for index, ok in enumerate(good.cpu().tolist()) if not ok]
    control.send(("read", frames, bad))
