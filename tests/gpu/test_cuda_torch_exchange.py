"""as_torch() through torch's DLPack C exchange function (``_torch_exchange``), on the GPU.

Where torch publishes ``__dlpack_c_exchange_api__`` (torch >= 2.10), views of memory whose device
its source library reported are made by torch's C function; memory a caller described
(``from_pointer``) keeps the array-interface route with its device check. Either way the tensor is
the image's memory, keeps the owner alive exactly as long as it lives, and sees the same values.
"""

from __future__ import annotations

import gc
import weakref

import pytest

pytest.importorskip("torch")

import torch

from gpuimage import DeviceError, GpuImage, ImageSpec, _torch_exchange

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():  # pragma: no cover - CPU machines
    pytest.skip("needs a CUDA GPU (none is reachable here)", allow_module_level=True)

HAS_TABLE = hasattr(torch.Tensor, "__dlpack_c_exchange_api__")


class Owner:
    """Something to keep alive: it holds the tensor that owns the memory."""

    def __init__(self, memory: torch.Tensor) -> None:
        self.memory = memory


def _live_structs() -> int:
    return len(_torch_exchange._live)  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16, torch.int16])
def test_views_of_imported_tensors_share_memory_and_values(dtype: torch.dtype) -> None:
    source = (torch.arange(6 * 10 * 3, device="cuda") % 120).to(dtype).reshape(6, 10, 3)
    image = GpuImage.from_torch(source[1:5, 2:9], layout="HWC")  # a pitched crop
    before = _live_structs()
    view = image.as_torch()
    if HAS_TABLE:
        assert _live_structs() == before + 1  # the exchange route was taken
    assert view.data_ptr() == image.ptr
    assert view.dtype == dtype
    assert view.stride() == tuple(stride // view.element_size() for stride in image.strides)
    torch.testing.assert_close(view, source[1:5, 2:9], rtol=0, atol=0)
    view.add_(1)  # a write through the view is a write of the image's memory
    torch.cuda.synchronize()
    torch.testing.assert_close(source[1:5, 2:9], view, rtol=0, atol=0)


@pytest.mark.skipif(not HAS_TABLE, reason="this torch has no DLPack C exchange table")
def test_the_view_keeps_the_owner_alive_and_releases_it_once() -> None:
    memory = torch.zeros(8, 8, 3, dtype=torch.uint8, device="cuda")
    owner = Owner(memory)
    alive = weakref.ref(owner)
    imported = GpuImage.from_torch(memory, layout="HWC")
    image = GpuImage.from_pointer(imported.ptr, imported.spec, owner=owner)  # a caller-described owner
    del owner, imported
    # from_pointer's device is the caller's say-so: the array-interface route, no exchange struct
    before = _live_structs()
    described = image.as_torch()
    assert _live_structs() == before
    located = GpuImage.from_torch(memory, layout="HWC").as_torch()  # memory torch placed
    assert _live_structs() == before + 1
    del image
    gc.collect()
    assert alive() is not None  # the described view still holds it
    del described
    gc.collect()
    assert alive() is None
    del located
    gc.collect()
    torch.cuda.synchronize()
    assert _live_structs() == before  # torch called the deleter, exactly once per struct


def test_a_wrong_device_in_a_described_spec_is_caught() -> None:
    memory = torch.zeros(4, 4, 1, dtype=torch.uint8, device="cuda")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices to describe memory on the wrong one")
    spec = ImageSpec.packed(height=4, width=4, channels=1, device=1)
    # CUDA says where the memory is: torch would view GPU 0's memory as a cuda:1 tensor, no copy
    # and no error, through unified addressing (2 x H200)
    with pytest.raises(DeviceError, match=r"is on cuda:0, not on cuda:1\. Describe it with device=0"):
        GpuImage.from_pointer(memory.data_ptr(), spec, owner=memory)
