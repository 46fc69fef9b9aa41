"""Device images through Ray on one node: a producer actor's images, frame and batch reach a consumer
actor, and a task, by CUDA IPC (the pickled description, never the pixels through the object store),
with values checked on the consumer's GPU; and ``to_tensor_payload`` through Ray Direct Transport:
CUDA IPC between two actors sharing one GPU, NCCL between two GPUs (skipped below 2 GPUs).

Ray is not part of the GPU machine's base set: carry it (``../shared/device/bigwheels.sh``) or the
module skips. Run: ``python -m pytest -q -n 0 tests/gpu/test_cuda_ray.py``
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

import gpuimage  # noqa: E402  (after the skips)
from gpuimage import ColorSpec, GpuBatch, GpuFrame, GpuImage  # noqa: E402

pytestmark = pytest.mark.cuda

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
TIMEOUT_S = 120


@contextlib.contextmanager
def _cluster(gpus: int) -> Iterator[None]:
    """A local Ray cluster with ``gpus`` GPUs. With one, every GPU actor gets GPU 0 (fractions share
    it): CUDA IPC needs both sides on the GPU the memory is on. Workers import this module and the
    gpuimage imported here."""
    paths = [str(Path(__file__).parent.parent), str(Path(gpuimage.__file__).parent.parent)]
    paths += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    ray.init(
        num_cpus=4,
        num_gpus=gpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def one_gpu() -> Iterator[None]:
    with _cluster(1):
        yield


def _items() -> list[Any]:
    """On this process's GPU: a pitched crop (BGR), a CHW bfloat16 image, an NV12 frame, a batch;
    values from a fixed seed."""
    generator = torch.Generator(device="cuda").manual_seed(7)

    def codes(*shape: int) -> Any:
        return torch.randint(0, 250, shape, device="cuda", dtype=torch.uint8, generator=generator)

    pitched = GpuImage.empty(64, 96, 3, row_alignment=256)
    pitched.as_torch().copy_(codes(64, 96, 3))
    chw = GpuImage.from_torch(
        torch.randn(3, 32, 48, device="cuda", generator=generator).bfloat16(), layout="CHW"
    )
    frame = GpuFrame.empty(128, 64, format="NV12", colour=BT709)
    frame.as_torch().copy_(codes(96, 128))
    batch = GpuBatch.from_torch(torch.rand(4, 3, 32, 32, device="cuda", generator=generator))
    return [pitched.crop(3, 2, 50, 40).with_channel_order("BGR"), chw, frame, batch]


BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _checksums(item: Any) -> list[int]:
    """A weighted sum of each part's bits (a frame's planes), exact (int64), on the GPU, in the order
    ``as_torch()`` sets: after the data is ready."""
    parts = item.planes if isinstance(item, GpuFrame) else [item]
    sums = []
    for part in parts:
        tensor = part.as_torch()
        flat = tensor.view(BITS[tensor.element_size()]).flatten().to(torch.int64)
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.int64)
        sums.append(int((flat * weights).sum().item()))
    return sums


def _facts(item: Any) -> dict[str, Any]:
    """What arrived: its type, where, its owner's type (``SharedHold``: mapped by CUDA IPC), values."""
    owner = (item.planes[0] if isinstance(item, GpuFrame) else item).owner
    return {
        "type": type(item).__name__,
        "device": str(item.device),
        "owner": type(owner).__name__,
        "checksums": _checksums(item),
        "channel_order": None if isinstance(item, GpuFrame) else item.channel_order,
        "colour": item.colour if isinstance(item, GpuFrame) else None,
    }


class Producer:
    """Makes the items on its GPU and keeps them; gives them away (pickled: CUDA IPC descriptions)."""

    def __init__(self) -> None:
        self.items = _items()

    def give(self) -> list[Any]:
        return self.items

    def facts(self) -> list[dict[str, Any]]:
        torch.cuda.synchronize()
        return [_facts(item) for item in self.items]

    def pickled_sizes(self) -> list[tuple[int, int]]:
        """(bytes of the pickle, bytes of the pixels) of each item."""
        return [(len(pickle.dumps(item)), int(item.nbytes)) for item in self.items]


class Consumer:
    def open(self, items: list[Any]) -> list[dict[str, Any]]:
        return [_facts(item) for item in items]


def _open_them(items: list[Any]) -> list[dict[str, Any]]:
    return [_facts(item) for item in items]


# Ray's actor classes and task (``ray.remote`` called: ray is untyped here). A quarter of the GPU
# each, so that all of them fit on the one GPU the cluster has.
_Producer = ray.remote(num_gpus=0.25)(Producer)
_Consumer = ray.remote(num_gpus=0.25)(Consumer)
_open_in_a_task = ray.remote(num_gpus=0.25)(_open_them)


def test_device_objects_reach_an_actor_and_a_task_by_cuda_ipc(one_gpu: None) -> None:
    producer, consumer = _Producer.remote(), _Consumer.remote()
    want = ray.get(producer.facts.remote(), timeout=TIMEOUT_S)
    for receiver in (consumer.open, _open_in_a_task):
        got = ray.get(receiver.remote(producer.give.remote()), timeout=TIMEOUT_S)
        assert len(got) == len(want)
        for arrived, made in zip(got, want, strict=True):
            assert arrived["owner"] == "SharedHold", "mapped from the producer's memory by CUDA IPC"
            assert made["owner"] != "SharedHold"
            assert arrived["device"].startswith("cuda")
            for key in ("type", "checksums", "channel_order", "colour"):
                assert arrived[key] == made[key], key
    for pickled, pixels in ray.get(producer.pickled_sizes.remote(), timeout=TIMEOUT_S):
        assert pickled < 4096 < pixels, "a description travels, not the pixels"  # about 1 kB


# -- Ray Direct Transport: the tensor goes by the transport, the description by the object store ------


class Peer:
    """One side of a tensor transport: ``send`` (called with ``.options(tensor_transport=...)``) makes
    payloads, whose tensors go by that transport; ``receive`` rebuilds them."""

    def ready(self) -> bool:
        return True

    def send(self) -> list[Any]:
        # torch's IPC shares a tensor that starts a block of its caching allocator: gpuimage's own
        # allocations (the pitched crop's packed copy included) come from there
        self.items = _items()
        return [gpuimage.to_tensor_payload(item) for item in self.items]

    def facts(self) -> list[dict[str, Any]]:
        torch.cuda.synchronize()
        return [_facts(item) for item in self.items]

    def receive(self, payloads: list[Any]) -> list[dict[str, Any]]:
        return [_facts(gpuimage.from_tensor_payload(payload)) for payload in payloads]


def test_tensor_payloads_cross_the_cuda_ipc_tensor_transport_on_one_gpu(one_gpu: None) -> None:
    peer = ray.remote(num_gpus=0.25, enable_tensor_transport=True)(Peer)
    sender, receiver = peer.remote(), peer.remote()
    sent = sender.send.options(tensor_transport="cuda_ipc").remote()
    got = ray.get(receiver.receive.remote(sent), timeout=TIMEOUT_S)
    want = ray.get(sender.facts.remote(), timeout=TIMEOUT_S)
    assert len(got) == len(want) == 4
    for arrived, made in zip(got, want, strict=True):
        assert arrived["device"].startswith("cuda")
        for key in ("type", "checksums", "channel_order", "colour"):
            assert arrived[key] == made[key], key


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="needs 2 CUDA devices (NCCL does not connect two ranks on one GPU)",
)
def test_tensor_payloads_cross_the_nccl_tensor_transport_between_two_gpus() -> None:
    """What crosses hosts: NCCL between two GPUs (here of one host), as between two nodes."""
    collective = pytest.importorskip("ray.experimental.collective")
    with _cluster(2):
        peer = ray.remote(num_gpus=1, enable_tensor_transport=True)(Peer)
        sender, receiver = peer.remote(), peer.remote()
        ray.get([sender.ready.remote(), receiver.ready.remote()], timeout=TIMEOUT_S)
        collective.create_collective_group([sender, receiver], backend="nccl")
        sent = sender.send.options(tensor_transport="nccl").remote()
        got = ray.get(receiver.receive.remote(sent), timeout=TIMEOUT_S)
        want = ray.get(sender.facts.remote(), timeout=TIMEOUT_S)
    assert len(got) == len(want) == 4
    for arrived, made in zip(got, want, strict=True):
        assert arrived["owner"] != "SharedHold", "received into the receiver's own memory"
        for key in ("type", "checksums", "channel_order", "colour"):
            assert arrived[key] == made[key], key
