"""The stream-lifetime contract on the CPU, with a recording runtime: which streams are noted, what is
kept alive, and when an owner goes back to its allocator (the GPU suite checks the same on a device,
each scenario in a subprocess)."""

from __future__ import annotations

import gc
import weakref

import pytest

from fake_runtime import RecordedEvent, Runtime, runtime
from gpuimage import GpuImage, ImageSpec, _lifetime, _runtime

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


class Owner:
    """Stands in for a tensor: weakly referenceable, so a test sees when it is released."""


class Stream:
    """A stream object in the ``__cuda_stream__`` protocol, as cuda.core's."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


def _image(owner: object, stream: object = 7) -> GpuImage:
    spec = ImageSpec(height=4, width=6, channels=3, device=0)
    return GpuImage.from_pointer(FAKE, spec, owner=owner, stream=stream)


def _released(owner_ref: weakref.ref[Owner]) -> bool:
    gc.collect()
    _lifetime.collect()
    return owner_ref() is None


def test_an_owner_used_on_another_stream_waits_for_an_event_recorded_at_release(runtime: Runtime) -> None:
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner)
    image.as_cupy(stream=9)
    del owner, image
    assert runtime.recorded == [(9, 0)], "one event, on the consumer stream, when the family goes"
    assert not _released(owner_ref), "the consumer's work may still read the memory"
    runtime.complete_all()
    assert _released(owner_ref)


def test_uses_on_the_home_stream_release_at_once(runtime: Runtime) -> None:
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner, stream=7)
    image.as_cupy(stream=7)
    with image.reading(7):
        pass
    runtime.recorded.clear()
    del owner, image
    assert runtime.recorded == [], "the home stream is the allocator's or the source's to account for"
    assert _released(owner_ref)


def test_only_a_lifetime_that_noted_a_stream_carries_a_finalizer(runtime: Runtime) -> None:
    """A finalizer is a Python call at every release: a loop's images that only ever use their home
    stream go without one; the first stream noted switches the lifetime to the class that has one.
    (The fake runtime records the release: stream 9 is no handle a real one could record on.)"""
    owner = Owner()
    life = _lifetime.Lifetime(owner, 0, 7, cuda=True)
    life.note(7, None)  # the home stream: nothing to order at release
    assert not hasattr(type(life), "__del__")
    life.note(9, None)
    assert life.uses == {9: None}
    assert isinstance(life, _lifetime.Lifetime)
    assert hasattr(type(life), "__del__")
    assert (life.owner, life.home, life.device) == (owner, 7, 0), "the same slots, kept"
    del life
    assert runtime.recorded == [(9, 0)], "the finalizer orders the release after stream 9's work"


def test_every_family_member_holds_the_owner(runtime: Runtime) -> None:
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner)
    crop = image.crop(1, 1, 2, 2)
    capsule = image.__dlpack__(stream=11, max_version=(1, 0))
    view = crop.as_cupy(stream=9)
    del owner, image
    runtime.complete_all()
    holders: dict[str, object] = {"crop": crop, "capsule": capsule, "view": view}
    del crop, capsule, view
    for name in list(holders):
        assert not _released(owner_ref), f"{name} still refers to the memory"
        del holders[name]
    assert sorted(runtime.recorded) == [(9, 0), (11, 0)]
    assert not _released(owner_ref), "events recorded at release are not complete yet"
    runtime.complete_all()
    assert _released(owner_ref)


def test_consumer_stream_objects_are_kept_alive_until_release(runtime: Runtime) -> None:
    consumer = Stream(9)
    consumer_ref = weakref.ref(consumer)
    image = _image(Owner())
    image.as_cupy(stream=consumer)
    del consumer
    gc.collect()
    assert consumer_ref() is not None, "an event is recorded on it when the image goes"
    del image
    gc.collect()
    assert runtime.recorded == [(9, 0)]
    assert consumer_ref() is None, "once the event is recorded the stream is free to go"


def test_the_producer_stream_object_is_kept_until_a_write_is_recorded(runtime: Runtime) -> None:
    producer = Stream(7)
    producer_ref = weakref.ref(producer)
    image = _image(Owner(), stream=producer)
    del producer
    gc.collect()
    assert producer_ref() is not None, "a consumer still records an event on the producer stream"
    image.as_cupy(stream=9)
    assert runtime.waits[-1] == (7, 9, 0)
    image.record_write(8)
    gc.collect()
    assert producer_ref() is None, "consumers now wait for the recorded event, never on the stream"


def test_raw_handles_are_not_kept(runtime: Runtime) -> None:
    image = _image(Owner())
    image.as_cupy(stream=9)
    assert image._life.uses == {9: None}


def test_a_release_that_cannot_be_ordered_holds_the_owner_forever(runtime: Runtime) -> None:
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner)
    image.as_cupy(stream=9)
    runtime.fail_records = True  # the stream was destroyed behind gpuimage's back
    held = len(_lifetime._unreleasable)
    del owner, image
    gc.collect()
    assert owner_ref() is not None, "freeing it could hand in-use memory back to the allocator"
    assert len(_lifetime._unreleasable) == held + 1
    _lifetime._unreleasable.pop()


def test_a_release_on_a_stream_being_captured_waits_for_the_capture_to_end(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 12 review finding: the release queried the capturing stream, which invalidates the graph
    capturing = {9}
    monkeypatch.setattr(_runtime, "is_capturing", lambda stream: stream in capturing)
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner)
    image.as_cupy(stream=9)
    del owner, image
    assert not _released(owner_ref), "held while the stream captures"
    assert runtime.recorded == [], "nothing recorded or queried on a capturing stream"
    capturing.clear()  # the capture ended
    _lifetime.collect()
    assert runtime.recorded == [(9, 0)], "ordered as any release, once the capture has ended"
    runtime.complete_all()
    assert _released(owner_ref)


def test_without_a_runtime_nothing_is_tracked() -> None:
    if _lifetime._recorder[0] is not None:
        pytest.skip("a GPU runtime is reachable here")
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner, stream=None)
    image.as_cupy()  # a header over a fake pointer: no GPU, no stream query
    del owner, image
    assert _released(owner_ref)


def test_a_borrowed_pointer_is_not_tracked(runtime: Runtime) -> None:
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=2, channels=1), stream=7)
    image.as_cupy(stream=9)
    assert image._life.uses is None, "without an owner the caller frees the memory"


def test_polls_scan_a_bounded_number_of_busy_entries(runtime: Runtime) -> None:
    images = [_image(Owner()) for _ in range(20)]
    for index in range(len(images)):
        images[index].as_cupy(stream=9)
    images.clear()
    gc.collect()
    waiting = len(_lifetime._pending)
    assert waiting >= 20
    assert _lifetime.collect(limit=8) == waiting
    runtime.complete_all()
    assert _lifetime.pending_releases() == len(_lifetime._unreleasable)


def test_a_new_image_polls_releases_up_to_the_first_busy_one(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image is made once per frame or more: while the GPU is behind, its poll costs one event
    query, not one per release in flight; finished releases ahead of it all go."""
    images = [_image(Owner()) for _ in range(12)]
    for index in range(len(images)):  # no loop variable left holding an image
        images[index].as_cupy(stream=9)
    images.clear()
    gc.collect()
    queried: list[int] = []
    real_query = RecordedEvent.query

    def query(event: RecordedEvent) -> bool:
        queried.append(id(event))
        return real_query(event)

    monkeypatch.setattr(RecordedEvent, "query", query)
    waiting = len(_lifetime._pending)
    assert waiting >= 12
    _image(Owner())
    assert len(queried) == 1, "the oldest release is busy: nothing newer is asked"
    assert len(_lifetime._pending) == waiting
    for events, _owner in list(_lifetime._pending)[:3]:
        for event in events:
            event.synchronize()  # the three oldest releases have finished
    queried.clear()
    _image(Owner())
    assert len(queried) == 4, "three finished, then the first busy one"
    assert len(_lifetime._pending) == waiting - 3


def test_streams_that_are_idle_at_release_hold_nothing_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_lifetime, "_recorder", [lambda stream, device: None])  # every stream idle
    owner = Owner()
    owner_ref = weakref.ref(owner)
    image = _image(owner)
    image.as_cupy(stream=9)
    del owner, image
    assert owner_ref() is None, "the consumer's work has all finished: nothing to wait for"
