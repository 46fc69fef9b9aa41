"""torch's DLPack C exchange view (``_torch_exchange``) on the CPU: torch's exchange function takes
host tensors too, so the route the torch spoke uses for GPU memory is checked here over torch CPU
memory: the tensor is that memory (pointer, shape, byte strides, values, bfloat16 and pitched crops
included), keeps the owner alive exactly as long as it lives, and a missing or foreign exchange table
gives None (the spoke then keeps the array-interface route)."""

from __future__ import annotations

import ctypes
import gc
import weakref
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import DTypeName, ImageSpec, InteropError, Layout
from gpuimage._dlpack_abi import NO_DESTRUCTOR, capsule_new

torch = pytest.importorskip("torch")

from gpuimage import _torch_exchange as exchange  # noqa: E402

if not hasattr(torch.Tensor, "__dlpack_c_exchange_api__"):  # torch < 2.10
    pytest.skip("this torch has no DLPack C exchange table", allow_module_level=True)

DTYPES = [torch.uint8, torch.int16, torch.float32, torch.float64, torch.bfloat16, torch.bool]
_DTYPE_NAMES: dict[Any, DTypeName] = {
    torch.uint8: "uint8",
    torch.int16: "int16",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.bool: "bool",
}


class Owner:
    """Holds the tensor whose memory a view shares."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory


@pytest.fixture
def no_table_found_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh lookup of the table: the module keeps the one it finds for each type."""
    monkeypatch.setattr(exchange, "_found", {})


def _spec_of(tensor: Any, layout: Layout = Layout.HWC) -> ImageSpec:
    """The spec of a 3-D CPU tensor (strides to bytes; HWC or CHW order)."""
    size = tensor.element_size()
    strides = [stride * size for stride in tensor.stride()]
    if layout is Layout.HWC:
        (height, width, channels), (row, pixel, channel) = tensor.shape, strides
    else:
        (channels, height, width), (channel, row, pixel) = tensor.shape, strides
    return ImageSpec(
        height=height,
        width=width,
        channels=channels,
        dtype=_DTYPE_NAMES[tensor.dtype],
        layout=layout,
        row_pitch=row,
        pixel_stride=pixel,
        channel_stride=channel,
        device="cpu",
    )


def _view(source: Any, layout: Layout = Layout.HWC, owner: object = None) -> Any:
    return exchange.view_through_exchange(torch.Tensor, source.data_ptr(), _spec_of(source, layout), owner)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_packed_view_is_the_tensors_memory(dtype: Any) -> None:
    source = (torch.arange(4 * 5 * 3) % 7).to(dtype).reshape(4, 5, 3)
    view = _view(source, owner=source)
    assert type(view) is torch.Tensor
    assert view.data_ptr() == source.data_ptr()
    assert view.device == torch.device("cpu")
    assert (view.shape, view.stride(), view.dtype) == (source.shape, source.stride(), dtype)
    assert torch.equal(view, source)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_pitched_crop_keeps_its_strides(dtype: Any) -> None:
    base = (torch.arange(6 * 9 * 4) % 11).to(dtype).reshape(6, 9, 4)
    crop = base[1:5, 2:7, 1:3]  # rows pitched, pixels strided, an offset start
    view = _view(crop, owner=base)
    assert view.data_ptr() == crop.data_ptr()
    assert view.stride() == crop.stride() == (36, 4, 1)
    assert torch.equal(view, crop)


def test_a_planar_view_of_interleaved_memory() -> None:
    base = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5)  # CHW memory
    view = _view(base[:, 1:, :4], layout=Layout.CHW, owner=base)
    assert view.shape == (3, 3, 4)
    assert view.stride() == (20, 5, 1)
    assert torch.equal(view, base[:, 1:, :4])


def test_writes_through_the_view_reach_the_memory() -> None:
    source = torch.zeros(2, 3, 4, dtype=torch.int16)
    view = _view(source, owner=source)
    view[1, 2, 3] = 17
    assert int(source[1, 2, 3]) == 17


@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(DTYPES),
)
def test_any_crop_reads_the_same_values(
    height: int, width: int, channels: int, top: int, left: int, dtype: Any
) -> None:
    base = (torch.arange((height + 3) * (width + 3) * channels) * 5 % 97).to(dtype)
    crop = base.reshape(height + 3, width + 3, channels)[top : top + height, left : left + width]
    view = _view(crop, owner=base)
    assert (view.data_ptr(), view.shape, view.stride()) == (crop.data_ptr(), crop.shape, crop.stride())
    assert torch.equal(view, crop)


def test_the_owner_lives_as_long_as_the_tensor_and_is_released_once() -> None:
    memory = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 3, 4)
    owner = Owner(memory)
    alive = weakref.ref(owner)
    live = len(exchange._live)
    view = _view(memory, owner=owner)
    assert len(exchange._live) == live + 1, "the struct and the owner are held for torch"
    del owner
    gc.collect()
    assert alive() is not None
    derived = view[1:]  # shares the storage: torch calls the deleter when the storage goes
    del view
    gc.collect()
    assert alive() is not None
    assert len(exchange._live) == live + 1
    del derived
    gc.collect()
    assert alive() is None
    assert len(exchange._live) == live, "torch called the deleter once, and the entry went"


def test_views_of_one_spec_share_a_template() -> None:
    first = torch.zeros(3, 4, 2, dtype=torch.float32)
    second = torch.ones(3, 4, 2, dtype=torch.float32)
    spec = ImageSpec.packed(height=3, width=4, channels=2, dtype="float32", device="cpu")
    template = exchange._templates(spec)
    assert exchange._templates(spec) is template
    assert list(template.strides) == [stride // 4 for stride in spec.strides], "DLPack strides: elements"
    views = [
        exchange.view_through_exchange(torch.Tensor, each.data_ptr(), spec, each) for each in (first, second)
    ]
    assert torch.equal(views[0], first)
    assert torch.equal(views[1], second), "each view gets its own struct and pointer"


def test_a_failed_exchange_releases_the_struct(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refuse(managed: object, out: object) -> int:
        calls.append(1)
        raise RuntimeError("refused")

    monkeypatch.setattr(exchange, "_found", {torch.Tensor: refuse})
    live = len(exchange._live)
    source = torch.zeros(2, 2, 1, dtype=torch.uint8)
    with pytest.raises(InteropError, match="refused the view: refused"):
        _view(source, owner=Owner(source))
    assert calls == [1]
    assert len(exchange._live) == live, "torch took no ownership: nothing waits for its deleter"


# -- missing and foreign tables ------------------------------------------------------------------------


class NoTable:
    """A type without ``__dlpack_c_exchange_api__`` (torch < 2.10)."""


class NotACapsule:
    __dlpack_c_exchange_api__ = 12


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint32), ("minor", ctypes.c_uint32))


class _Table(ctypes.Structure):
    """The head of DLPack 1.3's ``DLPackExchangeAPI``: up to the function the view calls."""

    _fields_ = (
        ("version", _Version),
        ("prev_api", ctypes.c_void_p),
        ("allocator", ctypes.c_void_p),
        ("from_py_object", ctypes.c_void_p),
        ("to_py_object", ctypes.c_void_p),
    )


_kept: list[object] = []  # tables and names, alive for the capsules that point at them


def _table_type(name: bytes, major: int, function: int) -> type:
    """A type whose ``__dlpack_c_exchange_api__`` is a capsule named ``name`` over a table."""
    table = _Table()
    table.version.major, table.version.minor = major, 0
    table.to_py_object = function
    name_buffer = ctypes.create_string_buffer(name)  # a capsule keeps a pointer to its name
    _kept.extend((table, name_buffer))
    capsule = capsule_new(ctypes.addressof(table), name_buffer, NO_DESTRUCTOR)
    return type("Foreign", (), {"__dlpack_c_exchange_api__": capsule})


@pytest.mark.parametrize(
    "table_type",
    [
        NoTable,
        NotACapsule,
        _table_type(b"dlpack_exchange_api", 2, 0x1000),  # another major version
        _table_type(b"dlpack_exchange_api", 1, 0),  # no function
        _table_type(b"other_api", 1, 0x1000),  # a capsule of another name
    ],
    ids=["none", "not a capsule", "major 2", "null function", "other name"],
)
@pytest.mark.usefixtures("no_table_found_yet")
def test_a_missing_or_foreign_table_gives_none(table_type: type) -> None:
    source = torch.zeros(2, 2, 1, dtype=torch.uint8)
    live = len(exchange._live)
    assert _view_of_type(table_type, source) is None
    assert len(exchange._live) == live, "nothing was handed out"


def test_a_table_of_this_major_version_gives_its_function() -> None:
    found = exchange._to_py_object(_table_type(b"dlpack_exchange_api", 1, 0x1000))  # never called
    assert found is not None
    assert ctypes.cast(found, ctypes.c_void_p).value == 0x1000, "the foreign tables above are read alike"


@pytest.mark.usefixtures("no_table_found_yet")
def test_torchs_table_is_found_and_kept() -> None:
    source = torch.zeros(2, 2, 1, dtype=torch.uint8)
    assert torch.equal(_view_of_type(torch.Tensor, source), source)
    assert exchange._found.get(torch.Tensor) is not None
    assert _view_of_type(torch.Tensor, source) is not None


# issue 12: found by the per-module tests; the table is now looked up once per type
@pytest.mark.usefixtures("no_table_found_yet")
def test_the_table_is_looked_up_per_type() -> None:
    source = torch.zeros(2, 2, 1, dtype=torch.uint8)
    assert _view_of_type(torch.Tensor, source) is not None
    assert _view_of_type(NoTable, source) is None


def _view_of_type(table_type: type, source: Any) -> Any:
    return exchange.view_through_exchange(table_type, source.data_ptr(), _spec_of(source), source)
