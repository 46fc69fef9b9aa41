"""Stream ordering (``_ordering``) on the CPU: which streams are ordered after which when an image is
viewed, exported, read, written or synchronized, checked with a recording stand-in for the CUDA
runtime (``tests/gpu/test_cuda_ordering.py`` checks that the ordering really holds on a device)."""

from __future__ import annotations

from typing import Any

import pytest

from fake_runtime import Runtime, runtime
from gpuimage import GpuImage, ImageSpec, MissingBackendError, _ordering, _runtime, _spokes

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


def _image(stream: object = None, device: int = 0) -> GpuImage:
    spec = ImageSpec(height=4, width=6, channels=3, device=device)
    return GpuImage.from_pointer(FAKE, spec, stream=stream)


class CudaStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


def test_every_use_orders_the_consumer_after_the_producer(runtime: Runtime) -> None:
    image = _image(stream=7, device=1)
    image.as_cupy(stream=9)
    image.as_cupy(stream=9)  # ordered again: work queued on 7 since is waited for too
    image.expect("HWC").as_gpumat(stream=CudaStream(9))
    assert runtime.waits == [(7, 9, 1)] * 3
    image.expect("HWC").as_gpumat()  # OpenCV's default: the legacy default stream
    assert runtime.waits[-1] == (7, 0, 1)
    image.record_write(8)
    image.as_cupy(stream=9)
    assert runtime.waits[-1] == (8, 9, 1)
    image.as_cupy(stream=8)  # the producer itself needs no wait
    assert len(runtime.waits) == 5


def test_record_write_records_an_event_that_consumers_wait_for(runtime: Runtime) -> None:
    image = _image(stream=7, device=1)
    image.record_write(8)
    assert runtime.recorded == [(8, 1)], "the write is pinned by an event recorded right away"
    image.as_cupy(stream=9)
    image.as_cupy(stream=9)
    assert runtime.waits == [(8, 9, 1), (8, 9, 1)]


def test_writing_waits_for_the_producer_and_the_recorded_reads(runtime: Runtime) -> None:
    image = _image(stream=7)
    with image.reading(9):
        pass
    with image.reading(5):
        pass
    image.as_cupy(stream=4)  # a bare view records no read: only reading() does
    runtime.waits.clear()
    with image.writing(12):
        assert runtime.waits == [(7, 12, 0), (9, 12, 0), (5, 12, 0)]
    runtime.waits.clear()
    with image.writing(13):  # reads before the last write are done with: only that write is waited for
        assert runtime.waits == [(12, 13, 0)]


def test_repeated_reads_keep_one_event_per_stream(runtime: Runtime) -> None:
    image = _image(stream=7)
    for _ in range(100):  # a source converted every frame, never written again
        with image.reading(9):
            pass
    with image.reading(5):
        pass
    runtime.waits.clear()
    with image.writing(12):  # the last read on each stream stands for the ones before it
        assert runtime.waits == [(7, 12, 0), (9, 12, 0), (5, 12, 0)]


def test_nothing_is_ordered_when_nothing_is_pending(runtime: Runtime) -> None:
    image = _image(stream=None)
    image.as_cupy(stream=9)
    image.__dlpack__(stream=5)
    assert runtime.waits == []


@pytest.mark.parametrize(
    ("consumer", "expected"),
    [(None, [(7, 0, 0)]), (1, [(7, 0, 0)]), (2, [(7, 2, 0)]), (99, [(7, 99, 0)]), (-1, [])],
    ids=["none-is-legacy", "legacy", "per-thread", "handle", "no-sync"],
)
def test_dlpack_orders_the_consumer_stream(runtime: Runtime, consumer: int | None, expected: Any) -> None:
    _image(stream=7).__dlpack__(stream=consumer)
    assert runtime.waits == expected


def test_crops_share_the_ready_stream(runtime: Runtime) -> None:
    image = _image(stream=7)
    crop = image.crop(1, 1, 2, 2)
    crop.record_write(11)
    assert image.stream == 11
    image.as_cupy(stream=3)
    assert runtime.waits == [(11, 3, 0)]


def test_writing_orders_on_entry_and_records_on_exit(runtime: Runtime) -> None:
    image = _image(stream=7)
    with image.writing(12) as same:
        assert same is image
        assert runtime.waits == [(7, 12, 0)]
    assert image.stream == 12
    with pytest.raises(ZeroDivisionError), image.writing(13):
        raise ZeroDivisionError
    assert image.stream == 13, "a write that failed half-way still happened on that stream"


def test_synchronize_blocks_on_the_producer_and_clears_it(runtime: Runtime) -> None:
    image = _image(stream=7, device=2)
    image.synchronize()
    assert runtime.syncs == [(7, 2)]
    assert image.stream is None
    image.as_cupy(stream=5)
    assert runtime.waits == []


def test_without_a_gpu_runtime_a_needed_ordering_raises() -> None:
    if _runtime.runtime().has_gpu:
        pytest.skip("a GPU runtime is reachable here")
    image = _image(stream=7)
    image.as_cupy(stream=7)  # the producer's own stream: nothing to order
    with pytest.raises(MissingBackendError, match="CUDA runtime"):
        image.as_cupy(stream=9)
    with pytest.raises(MissingBackendError, match="CUDA runtime"):
        image.synchronize()
    assert _image(stream=None).as_cupy(stream=9).data.ptr == FAKE  # nothing pending: nothing to do


def test_reads_on_the_legacy_default_stream_record_no_event(runtime: Runtime) -> None:
    """The legacy default stream always exists: a writer elsewhere waits for it as a whole, when it
    comes, instead of each read recording an event (a loop on torch's default stream)."""
    image = _image(stream=7)
    for _ in range(3):
        with image.reading(None):  # None: the legacy default stream
            pass
    assert runtime.recorded == []
    runtime.waits.clear()
    with image.writing(12):
        assert runtime.waits == [(7, 12, 0), (0, 12, 0)]
    with image.reading(None):
        pass
    runtime.waits.clear()
    with image.writing(None):  # only the last write: the reads' own stream needs no wait for them
        assert runtime.waits == [(12, 0, 0)]


def test_reading_all_records_only_reads_that_a_writer_would_miss(runtime: Runtime) -> None:
    ready_here, ready_elsewhere = _image(stream=9), _image(stream=7)
    with GpuImage.reading_all([ready_here], 9):  # ready on 9 already: the wait for 9 covers the read
        pass
    assert runtime.recorded == []
    with GpuImage.reading_all([ready_here, ready_elsewhere], 9):
        pass
    assert runtime.recorded == [(9, 0)], "one event for the read of the image ready on 7"
    runtime.waits.clear()
    with ready_elsewhere.writing(12):
        assert (9, 12, 0) in runtime.waits  # through that event


def test_a_writer_being_captured_skips_the_legacy_stream(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording on the legacy default stream would invalidate a graph capture: a capturing writer
    does not wait for legacy reads that way (they were queued before the capture, which
    torch.cuda.graph starts by synchronizing), but still waits for the data and recorded reads."""
    image = _image(stream=7)
    with image.reading(None):  # the legacy default stream: nothing recorded
        pass
    with image.reading(9):
        pass
    monkeypatch.setattr(_ordering, "is_capturing", lambda stream: stream == 12)
    runtime.waits.clear()
    with image.writing(12):
        assert runtime.waits == [(7, 12, 0), (9, 12, 0)]


def test_a_cai_export_fetches_a_stream_object_only_for_a_stream_it_notes(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``__cuda_array_interface__`` notes each loaded library's current stream as a user. Asking
    torch for its stream object costs microseconds: it is asked only for a stream not noted yet
    (not the memory's home, not noted with its object before)."""
    fetched: list[str] = []

    def library(name: str, handle: int) -> _spokes.Spoke:
        def stream_object(device: int) -> object:
            fetched.append(name)
            return f"{name} stream {handle}"

        return _spokes.Spoke(
            name=name, current_stream=lambda device: handle, current_stream_object=stream_object
        )

    monkeypatch.setattr(_spokes, "_loaded", {"torch": library("torch", 7), "cupy": library("cupy", 9)})
    image = GpuImage.from_pointer(
        0x10000, ImageSpec(height=2, width=2, channels=3, device="cuda:0"), owner=object(), stream=7
    )
    assert image._life.home == 7  # torch's current stream: its allocator's, nothing to note
    for _ in range(3):
        assert image.__cuda_array_interface__["data"] == (0x10000, False)
    assert fetched == ["cupy"], "torch's stream is the home; CuPy's object is fetched once, when first noted"
    assert image._life.uses == {9: "cupy stream 9"}
