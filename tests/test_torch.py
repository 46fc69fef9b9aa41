"""The torch spoke (``_torch``) on CPU tensors: what ``parse`` and ``strided_parts`` (``out=``) accept
and refuse, permuted tensors wrapped as they are, views outside their storage, and bfloat16."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import BoundsError, DTypeError, GpuImage, InteropError, Layout

torch = pytest.importorskip("torch")


def _negated(tensor: Any) -> Any:
    return torch._neg_view(tensor)


def _imaginary_of_conjugate(tensor: Any) -> Any:
    return torch.complex(torch.zeros_like(tensor), tensor).conj().imag  # the negative bit, lazily


LAZY_VIEWS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("neg-view", _negated, r"negative bit.*resolve_neg\(\)"),
    ("conj-imag", _imaginary_of_conjugate, r"negative bit.*resolve_neg\(\)"),
    ("conj-complex", lambda t: torch.complex(t, t).conj(), r"conjugate bit.*resolve_conj\(\)"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in LAZY_VIEWS], ids=[c[0] for c in LAZY_VIEWS])
def test_tensors_with_a_lazy_sign_bit_are_refused(make: Callable[[Any], Any], message: str) -> None:
    # issue 11, defect 4: the memory of such a view holds the negated values; wrapping it lost the sign
    view = make(torch.arange(6.0).reshape(2, 3))
    with pytest.raises(InteropError, match=rf"GpuImage\.from_torch\(\): .*{message}"):
        GpuImage.from_torch(view)


def test_a_negated_view_is_refused_through_dlpack_too() -> None:
    # issue 11, defect 4: torch's own __dlpack__ exports a negated view without its sign
    with pytest.raises(InteropError, match=r"from_dlpack\(\): .*resolve_neg\(\)"):
        GpuImage.from_dlpack(_negated(torch.arange(6.0).reshape(2, 3)))
    with pytest.raises(InteropError, match=r"from_cuda_array_interface\(\): .*resolve_neg\(\)"):
        GpuImage.from_cuda_array_interface(_negated(torch.arange(6.0).reshape(2, 3)))


@given(
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    channels=st.integers(1, 4),
    layout=st.sampled_from([Layout.HWC, Layout.CHW]),
    make=st.sampled_from([_negated, _imaginary_of_conjugate]),
)
def test_negated_views_are_refused_and_their_resolved_copies_keep_the_sign(
    height: int, width: int, channels: int, layout: Layout, make: Callable[[Any], Any]
) -> None:
    # issue 11, defect 4
    values = torch.arange(1.0, 1.0 + height * width * channels).reshape(height, width, channels)
    view = make(values.permute(2, 0, 1) if layout is Layout.CHW else values)
    with pytest.raises(InteropError, match=r"resolve_neg\(\)"):
        GpuImage.from_torch(view, layout=layout)
    resolved = view.resolve_neg()
    image = GpuImage.from_torch(resolved, layout=layout)
    assert np.array_equal(image.as_numpy(), resolved.numpy())
    assert float(image.as_numpy().max()) < 0  # every value 1..N came back negative


def test_negated_batch_destinations_are_refused() -> None:
    # issue 11, defect 4: normalize_batch(out=) wrote through the view and the caller read negated values
    image = GpuImage.from_numpy(np.full((2, 3, 3), 255, np.uint8), layout="HWC")
    out = _negated(torch.zeros(1, 3, 2, 3))
    with pytest.raises(InteropError, match=r"normalize_batch\(\) out: .*negative bit.*resolve_neg\(\)"):
        gi.normalize_batch([image], 0.5, 0.25, out=out)
    assert torch.count_nonzero(out) == 0  # refused before anything was written
    resolved = torch.zeros(1, 3, 2, 3)
    gi.normalize_batch([image], 0.5, 0.25, out=resolved)
    assert torch.all(resolved == 2.0)  # (1 - 0.5) / 0.25


def test_batch_destinations_of_other_dtypes_name_the_call() -> None:
    # issue 11, defect 12: the message said only "torch dtype ... is not an image dtype"
    image = GpuImage.from_numpy(np.zeros((2, 3, 3), np.uint8), layout="HWC")
    with pytest.raises(gi.DTypeError, match=r"normalize_batch\(\): expected out of an image dtype"):
        gi.normalize_batch([image], 0.5, 0.25, out=torch.zeros(1, 3, 2, 3, dtype=torch.complex64))


# -- the import cache: checks that depend on the tensor, not its geometry, run on every import -----


def test_a_cached_geometry_still_refuses_a_negated_view() -> None:
    # issue 12: the spec is reused per geometry; the sign bits are per tensor
    plain = torch.zeros(4, 6, 3)
    assert GpuImage.from_torch(plain, layout="HWC").spec.height == 4
    with pytest.raises(InteropError, match="negative bit"):
        GpuImage.from_torch(_negated(plain), layout="HWC")


def test_a_cached_geometry_still_refuses_a_storage_that_shrank() -> None:
    # issue 12: the bounds of the storage are checked on every import, after the cache
    source = torch.zeros(8, 6, dtype=torch.uint8)
    view = source[4:]
    GpuImage.from_torch(source[4:])  # the geometry (4, 6), strides (6, 1) is now cached
    source.untyped_storage().resize_(8)
    with pytest.raises(gi.BoundsError, match="outside the memory it came from"):
        GpuImage.from_torch(view)


@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from(["HWC", "CHW"]))
def test_repeated_imports_share_one_spec_and_agree_with_a_fresh_check(
    height: int, width: int, layout: str
) -> None:
    tensor = torch.zeros(3, height, width) if layout == "CHW" else torch.zeros(height, width, 3)
    first = GpuImage.from_torch(tensor, layout=layout)  # type: ignore[call-overload]
    second = GpuImage.from_torch(tensor.clone(), layout=layout)  # type: ignore[call-overload]
    assert first.spec is second.spec
    assert first.spec == gi.ImageSpec(**first.spec.model_dump())


# -- tensors wrapped as they are -------------------------------------------------------------------


def test_permuted_tensor_is_wrapped_without_copy() -> None:
    hwc = torch.arange(4 * 5 * 3, dtype=torch.float32).reshape(4, 5, 3)
    image = GpuImage.from_torch(hwc.permute(2, 0, 1), layout="CHW")
    assert image.ptr == hwc.data_ptr()
    assert image.strides == (4, 60, 12)
    assert not image.is_contiguous
    assert torch.equal(image.as_torch(), hwc.permute(2, 0, 1))
    packed = image.contiguous()
    assert packed.is_contiguous
    assert packed.ptr != image.ptr
    assert torch.equal(packed.as_torch(), hwc.permute(2, 0, 1))


def test_torch_views_outside_their_storage_are_refused() -> None:
    storage = torch.zeros(100, dtype=torch.uint8)
    inside = torch.as_strided(storage, (4, 5), (20, 1))
    assert GpuImage.from_torch(inside).nbytes == 3 * 20 + 5  # extent: no padding after the last row
    storage.untyped_storage().resize_(50)  # the view now reaches past its (shrunk) storage
    with pytest.raises(BoundsError, match="outside the memory"):
        GpuImage.from_torch(inside)


def test_bfloat16_host_images_work_through_torch() -> None:
    tensor = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    image = GpuImage.from_torch(tensor)
    assert image.dtype == "bfloat16"
    assert torch.equal(image.as_torch()[..., 0], tensor)
    with pytest.raises(DTypeError, match="bfloat16"):
        image.as_numpy()
    assert torch.equal(torch.utils.dlpack.from_dlpack(image)[..., 0], tensor)


def test_out_signature_records_all_that_describe_out_reads_but_the_pointer() -> None:
    from gpuimage._torch import SPOKE, strided_parts

    def signature(tensor: Any) -> object:
        found = SPOKE.out_signature(tensor)
        assert found is not None
        ptr, record = found
        assert ptr == tensor.data_ptr()
        return record

    base = torch.zeros(2, 3, 4, 5)
    same = torch.ones(2, 3, 4, 5)
    assert signature(base) == signature(same)
    hash(signature(base))  # it keys a table
    others = [
        torch.zeros(2, 3, 4, 6),  # shape
        torch.zeros(2, 3, 4, 10)[..., ::2],  # strides
        torch.zeros(2, 3, 4, 5, dtype=torch.float16),  # dtype
        torch._neg_view(torch.zeros(2, 3, 4, 5)),  # the negative bit: describe_out refuses it
    ]
    for other in others:
        assert signature(other) != signature(base), other
    with pytest.raises(InteropError):
        strided_parts(others[-1])
    assert SPOKE.out_signature(torch.nn.Parameter(base)) is None  # a subclass may override any of it
    assert SPOKE.out_signature(np.zeros(3)) is None


@pytest.mark.parametrize("kind", ["sparse", "sparse_csr", "nested"])
def test_an_out_torch_cannot_stride_is_refused_by_gpuimage_not_by_torch(kind: str) -> None:
    """A replayed frame batch reads ``out`` first: a tensor whose pointer or strides torch refuses
    to give has no signature, and the full path names the problem (no torch RuntimeError)."""
    from gpuimage._torch import SPOKE

    dense = torch.zeros(1, 3, 8, 8)
    out: Any = {
        "sparse": lambda: dense.to_sparse(),
        "sparse_csr": lambda: dense.reshape(3, 64).to_sparse_csr(),
        "nested": lambda: torch.nested.nested_tensor([dense[0], dense[0]]),
    }[kind]()
    assert SPOKE.out_signature(out) is None
    image = gi.GpuImage.from_numpy(np.zeros((16, 16, 3), np.uint8), layout="HWC")
    with pytest.raises(gi.GpuImageError):
        gi.normalize_batch([image], 0.5, 0.5, size=(8, 8), resize="bilinear", out=out)
