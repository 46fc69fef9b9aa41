"""Conversions (``_conversions``) on CPU: the public operations on host images, the executor each
device gets and the override, every operation going through that one executor, and argument
validation (a table of bad calls, and fuzzed arguments that may raise only GpuImageErrors)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpu_probe import gpu_available
from gpuimage import BoundsError, DTypeError, DTypeName, GpuImage, Layout, SpecError, _conversions
from gpuimage._affine import Affine
from gpuimage._device import CPU, Device
from gpuimage._executor import Executor, Operand
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._plan import BatchItem
from gpuimage._sampling import FrameSource, SampleRecipe
from gpuimage.strategies import image_specs, images
from hypothesis_paths import record

torch = pytest.importorskip("torch")
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR  # noqa: E402

# -- the public operations on host images ----------------------------------------------------------


def host_image(height: int = 6, width: int = 7, channels: int = 3, *, seed: int = 0) -> GpuImage[Any, Any]:
    rng = np.random.default_rng(seed)
    return GpuImage.from_numpy(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), layout="HWC")


def test_astype_and_layouts_on_host_images() -> None:
    image = host_image()
    pixels = image.as_numpy()
    scaled = image.astype(gi.Float32, scale=0.5, offset=-1.0).as_numpy()
    assert np.array_equal(scaled, pixels.astype(np.float32) * np.float32(0.5) + np.float32(-1.0))
    clipped = image.astype(gi.Int8, scale=1.0).as_numpy()  # 0..255 into int8 saturates at 127
    assert np.array_equal(clipped, np.minimum(pixels, 127).astype(np.int8))
    planar = image.crop(1, 2, 5, 3).to_layout("CHW")
    assert planar.layout is Layout.CHW
    assert planar.is_contiguous
    assert np.array_equal(planar.as_numpy(), pixels[2:5, 1:6].transpose(2, 0, 1))
    padded = image.copy(row_alignment=64)
    assert padded.row_pitch == 64
    assert np.array_equal(padded.as_numpy(), pixels)


def test_normalize_matches_the_torchvision_formula_on_host() -> None:
    image = host_image(seed=3)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    result = gi.normalize(image, mean, std, reverse_channels=True).as_numpy()
    rgb = image.as_numpy()[..., ::-1].astype(np.float64) / 255
    expected = ((rgb - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    assert result.dtype == np.float32
    assert np.allclose(result, expected, atol=1e-5)
    back = gi.denormalize(
        gi.normalize(image, mean, std, reverse_channels=True), mean, std, reverse_channels=True
    )
    assert np.array_equal(back.as_numpy(), image.as_numpy())


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda i: gi.normalize(i, 0.5, 0.25, out=i.to_layout("CHW")), SpecError, "float32 destination"),
        (lambda i: gi.normalize(i, 0.5, 0.25, out=i.astype(gi.Float32)), gi.LayoutError, "CHW destination"),
        (
            lambda i: gi.normalize(
                i, 0.5, 0.25, out=GpuImage.empty(2, 2, 3, "float32", layout="CHW", device="cpu")
            ),
            SpecError,
            "destination of 6x7x3",
        ),
        (lambda i: gi.normalize_batch([], 0.5, 0.25), SpecError, "at least one image"),
        (lambda i: gi.normalize_batch([i, i.astype(gi.Float32)], 0.5, 0.25), DTypeError, "same dtype"),
        (lambda i: gi.normalize_batch([i], 0.5, 0.25, rois=[]), SpecError, "one roi per image"),
        (lambda i: gi.normalize_batch([i], 0.5, 0.25, rois=[(5, 5, 4, 4)]), BoundsError, "outside"),
        (lambda i: gi.normalize_batch([i], 0.5, 0.25, size=(2, 2)), BoundsError, "does not fit"),
        (
            lambda i: gi.normalize_batch([i], 0.5, 0.25, out=np.empty((1, 3, 6, 6), np.float32)),
            SpecError,
            "shape",
        ),
        (
            lambda i: gi.normalize_batch([i], 0.5, 0.25, out=np.empty((1, 3, 6, 7), np.float16)),
            SpecError,
            "dtype",
        ),
        (
            lambda i: gi.normalize_batch([i], 0.5, 0.25, like="jax"),  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
            SpecError,
            "like=",
        ),
        (
            lambda i: gi.normalize_batch([i], 0.5, 0.25, dtype="bfloat16", like="numpy"),
            DTypeError,
            "bfloat16",
        ),
        (lambda i: i.astype("complex64"), DTypeError, "complex"),
        (lambda i: i.astype(gi.Float32, scale=math.inf), SpecError, "finite"),
    ],
)
def test_bad_conversion_arguments_are_refused(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(host_image())


def test_pitched_allocations_align_every_row_to_the_item_size() -> None:
    # rows every 6 bytes of float32 would put elements on 2-byte boundaries: the pitch and the
    # pointer are aligned to lcm(6, 4) = 12 instead
    for _ in range(20):
        image = GpuImage.empty(3, 5, 3, "float32", row_alignment=6, device="cpu")
        assert image.ptr % 12 == 0
        assert image.row_pitch % 12 == 0


def test_mean_and_std_take_numpy_values_and_refuse_degenerate_maps() -> None:
    image = host_image()
    by_array = gi.normalize(image, np.array([0.5, 0.5, 0.5]), np.float32(0.25)).as_numpy()
    assert np.array_equal(by_array, gi.normalize(image, 0.5, 0.25).as_numpy())
    with pytest.raises(SpecError, match="non-finite map"):
        gi.normalize(image, 0.5, 1e-320)
    with pytest.raises(SpecError, match="pad_value"):
        gi.normalize_batch([image], 0.5, 0.25, pad_value=math.inf, like="numpy")


def _numpy_bits(image: GpuImage) -> Any:
    """Elements as NumPy values, bfloat16 as raw integers (it has no NumPy dtype)."""
    if image.dtype == "bfloat16":
        return image.as_torch().view(torch.int16).numpy()
    return image.as_numpy()


@given(images(image_specs(device="cpu")))
def test_layout_conversions_round_trip(image: GpuImage) -> None:
    other = Layout.CHW if image.layout is Layout.HWC else Layout.HWC
    converted = image.to_layout(other)
    assert converted.layout is other
    assert converted.is_contiguous
    back = converted.to_layout(image.layout)
    np.testing.assert_array_equal(_numpy_bits(back), _numpy_bits(image))
    assert image.to_layout(image.layout) is image
    copied = image.copy()
    assert copied.ptr != image.ptr
    np.testing.assert_array_equal(_numpy_bits(copied), _numpy_bits(image))


# -- bad arguments of the public conversion API (issue 11, defect 12) -------------------------------


def _image_of(dtype: DTypeName = "uint8", layout: str = "HWC", channels: int = 3) -> GpuImage[Any, Any]:
    image = host_image(4, 5, channels).astype(dtype)
    return image.to_layout(layout)  # type: ignore[call-overload, no-any-return]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUnknownVariableType]


loose: Any = gi  # the calls below are wrong on purpose: an untyped caller's view of the module
norm, denorm, batch = loose.normalize, loose.denormalize, loose.normalize_batch
Interop = gi.InteropError

BAD_CALLS: list[tuple[str, Any, type[gi.GpuImageError], str]] = [
    ("astype-scale-beyond-float", lambda i: i.astype(gi.Float32, scale=10**400), SpecError, "for scale"),
    ("normalize-scale-beyond-float", lambda i: norm(i, 0.5, 0.25, scale=10**400), SpecError, "scale=1000"),
    ("astype-offset-beyond-float", lambda i: i.astype(gi.Float32, offset=-(10**309)), SpecError, "offset="),
    ("std-none", lambda i: norm(i, 0.5, None), SpecError, r"std as one number or one per channel \(3\)"),
    ("mean-text", lambda i: norm(i, "0.5", 0.25), SpecError, "got mean='0.5'"),
    ("mean-0d-tensor", lambda i: norm(i, torch.tensor(0.5), 0.25), SpecError, "mean"),
    ("std-2d-array", lambda i: norm(i, 0.5, np.ones((3, 1))), SpecError, "finite number for std"),
    ("mean-object", lambda i: norm(i, object(), 0.25), SpecError, "got mean=<object"),
    ("normalize-ndarray", lambda i: norm(i.as_numpy(), 0.5, 0.25), Interop, "GpuImage.from_numpy"),
    ("denormalize-tensor", lambda i: denorm(torch.zeros(3, 4, 5), 0.5, 0.25), Interop, "got Tensor"),
    (
        "normalize-out-ndarray",
        lambda i: norm(i, 0.5, 0.25, out=np.zeros((3, 4, 5), np.float32)),
        Interop,
        r"out to be a CHW GpuImage or None, got ndarray.*layout='CHW'",
    ),
    ("denormalize-out-tensor", lambda i: denorm(i, 0.5, 0.25, out=torch.zeros(4)), Interop, "HWC GpuImage"),
    ("reverse-list", lambda i: norm(i, 0.5, 0.25, reverse_channels=[1]), SpecError, "reverse_channels=True"),
    ("reverse-text", lambda i: denorm(i, 0.5, 0.25, reverse_channels="yes"), SpecError, "reverse_channels"),
    ("rois-int", lambda i: batch([i], 0.5, 0.25, rois=5), Interop, r"rois as one \(x, y, width, height\)"),
    ("rois-text", lambda i: batch([i], 0.5, 0.25, rois="abcd"), Interop, "rois"),
    ("images-int", lambda i: batch(5, 0.5, 0.25), Interop, "images as a sequence"),
    ("images-one-image", lambda i: batch(i, 0.5, 0.25), Interop, r"for one image \[image\]"),
    ("images-of-arrays", lambda i: batch([i.as_numpy()], 0.5, 0.25), Interop, "GpuImage items"),
    ("batch-out-list", lambda i: batch([i], 0.5, 0.25, out=[0.0]), SpecError, r"got builtins\.list"),
    ("astype-abstract-dtype", lambda i: i.astype(np.floating), DTypeError, "abstract"),
    ("normalize-abstract-dtype", lambda i: norm(i, 0.5, 0.25, dtype=np.number), DTypeError, "abstract"),
    ("expect-int", lambda i: i.expect("HWC", int), DTypeError, r"expect\(\): expected one of.*'int'>"),
    ("expect-none-layout", lambda i: i.expect(None), gi.LayoutError, "layout=None"),
    ("to-layout-int", lambda i: i.to_layout(3), gi.LayoutError, "layout=3"),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [case[1:] for case in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_calls_raise_a_gpuimage_error_that_says_what_was_wrong(
    call: Any, error: type[gi.GpuImageError], message: str
) -> None:
    # issue 11, defect 12: these leaked OverflowError, TypeError, KeyError or AttributeError, or passed
    with pytest.raises(error, match=message):
        call(host_image(4, 5))


def test_zero_dimensional_numpy_values_are_numbers() -> None:
    # issue 11, defect 12: np.mean(...) is a 0-d array; iterating it raised TypeError
    image = host_image()
    by_arrays = loose.normalize(image, np.array(0.5), np.array(0.25), scale=np.array(1 / 255)).as_numpy()
    assert np.array_equal(by_arrays, loose.normalize(image, 0.5, 0.25).as_numpy())
    assert np.array_equal(
        loose.denormalize(loose.normalize(image, 0.5, 0.25), np.float64(0.5), np.array(0.25)).as_numpy(),
        image.as_numpy(),
    )


LEAVES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 3, 255, 2**31, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-42, 1e-320, 5e-324, 1e39, -0.0, 3.5e38]),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.binary(max_size=3),
    st.sampled_from(
        [
            np.float32(0.5),
            np.float64(1e300),
            np.bool_(True),
            np.array(0.5),
            np.array([0.5, 0.25, 0.1]),
            np.zeros((2, 2)),
            np.array("x"),
            np.array([], np.float32),
            np.array([1 + 2j]),
            torch.tensor(0.5),
            torch.tensor([0.5, 1.0, 2.0]),
            object(),
            int,
            float,
            np.uint8,
            np.generic,
            np.number,
            np.complex64,
            gi.Float32,
            gi.UInt8,
            gi.AnyDType,
            "CHW",
            "hwc",
            gi.CHW,
            gi.AnyLayout,
            Layout.HWC,
            "float16",
            "bfloat16",
            "uint64",
        ]
    ),
)
JUNK = st.one_of(LEAVES, st.lists(LEAVES, max_size=4).map(tuple), st.lists(LEAVES, max_size=4))
SOURCES = [
    ("uint8", "HWC", 3),
    ("uint8", "CHW", 3),
    ("float32", "HWC", 3),
    ("uint16", "HWC", 1),
    ("float16", "CHW", 5),
]


@given(
    operation=st.sampled_from(
        ["normalize", "denormalize", "normalize_batch", "astype", "copy", "to_layout", "expect"]
    ),
    source=st.sampled_from(SOURCES),
    first=JUNK,
    second=JUNK,
    options=st.dictionaries(
        st.sampled_from(
            [
                "dtype",
                "scale",
                "offset",
                "reverse_channels",
                "out",
                "rois",
                "size",
                "pad_value",
                "like",
                "row_alignment",
            ]
        ),
        JUNK,
        max_size=3,
    ),
)
def test_fuzzed_conversion_arguments_raise_only_gpuimage_errors(
    operation: str, source: tuple[DTypeName, str, int], first: Any, second: Any, options: dict[str, Any]
) -> None:
    # issue 11, defect 12: whatever the arguments, a result or a GpuImageError, never a builtin error
    image = _image_of(*source)

    def given_options(*names: str) -> dict[str, Any]:
        return {name: value for name, value in options.items() if name in names}

    normalizing = given_options("dtype", "scale", "reverse_channels", "out")
    calls: dict[str, Any] = {
        "normalize": lambda: loose.normalize(image, first, second, **normalizing),
        "denormalize": lambda: loose.denormalize(image, first, second, **normalizing),
        "normalize_batch": lambda: loose.normalize_batch(
            [image],
            first,
            second,
            **given_options("dtype", "scale", "reverse_channels", "out", "rois", "size", "pad_value", "like"),
        ),
        "astype": lambda: image.astype(first, **given_options("scale", "offset")),
        "copy": lambda: image.copy(**given_options("row_alignment")),
        "to_layout": lambda: image.to_layout(first),
        "expect": lambda: image.expect(first, second) if second is not None else image.expect(first),
    }
    try:
        calls[operation]()
    except gi.GpuImageError as exc:
        record(f"fuzzed {operation}", exc)
    else:
        record(f"fuzzed {operation}", None)


def test_conversions_write_into_out_and_return_it() -> None:
    values = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    image = GpuImage.from_numpy(values, layout="HWC")
    planar = GpuImage.from_numpy(np.zeros((3, 4, 5), dtype=np.uint8), layout="CHW")
    assert image.to_layout("CHW", out=planar) is planar
    assert np.array_equal(planar.as_numpy(), values.transpose(2, 0, 1))
    padded = GpuImage.from_numpy(np.zeros((4, 8, 3), dtype=np.uint8)[:, :5], layout="HWC")  # pitched
    assert image.copy(out=padded) is padded
    assert np.array_equal(padded.as_numpy(), values)
    assert image.to_layout("HWC", out=padded) is padded, "out= copies even when no layout change is needed"
    halves = GpuImage.from_numpy(np.zeros((4, 5, 3), dtype=np.float32), layout="HWC")
    assert image.astype(gi.Float32, scale=0.5, out=halves) is halves
    assert np.array_equal(halves.as_numpy(), values.astype(np.float32) * 0.5)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda image: image.to_layout("CHW", out=image), gi.LayoutError, "CHW destination"),
        (lambda image: image.copy(out=np.zeros((4, 5, 3), np.uint8)), gi.InteropError, "from_numpy"),
        (lambda image: image.astype(gi.Float32, out=image), gi.SpecError, "float32 destination"),
        (
            lambda image: image.copy(out=GpuImage.from_numpy(np.zeros((4, 6, 3), np.uint8), layout="HWC")),
            gi.SpecError,
            "4x5x3",
        ),
        (lambda image: image.copy(out=image), gi.SpecError, "overlaps"),
    ],
    ids=["wrong-layout", "not-an-image", "wrong-dtype", "wrong-size", "overlapping"],
)
def test_a_bad_out_is_refused(
    call: Callable[[GpuImage], object], error: type[Exception], message: str
) -> None:
    image = GpuImage.from_numpy(np.zeros((4, 5, 3), dtype=np.uint8), layout="HWC")
    with pytest.raises(error, match=message):
        call(image)


# -- the executor ------------------------------------------------------------------------------------


class Recording:
    """An executor that notes each call and lets the NumPy executor do the work."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return 0, None

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        self.calls.append("convert")
        HOST.convert(source, target, affine, stream)

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> None:
        return None

    def convert_batch(
        self,
        sources: Sequence[Operand],
        regions: Sequence[BatchItem],
        target: Operand,
        item_pitch: int,
        affine: Affine,
        pad: float,
        stream: int,
        /,
    ) -> None:
        self.calls.append("convert_batch")
        HOST.convert_batch(sources, regions, target, item_pitch, affine, pad, stream)

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        self.calls.append("convert_frames")
        HOST.convert_frames(sources, target, item_pitch, recipe, stream)

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> None:
        return None


@pytest.fixture
def recording() -> Iterator[Recording]:
    executor = Recording()
    with _conversions.override_executor(executor):
        yield executor


def test_host_images_are_converted_by_numpy_chosen_once() -> None:
    assert _conversions.executor_for(CPU, "test") is HOST
    assert _conversions.executor_for(Device("cpu"), "test") is HOST


def test_every_public_conversion_goes_through_the_one_executor(recording: Recording) -> None:
    image = host_image()
    planar = image.to_layout("CHW")
    image.copy(row_alignment=64)
    image.astype(gi.Float32, scale=0.5)
    normalized = gi.normalize(image, 0.5, 0.25)
    gi.denormalize(normalized, 0.5, 0.25)
    image.to_layout("CHW", out=planar)
    gi.normalize_batch([image, planar], 0.5, 0.25, like="numpy")
    assert recording.calls == ["convert"] * 6 + ["convert_batch"]
    assert np.array_equal(planar.as_numpy(), image.as_numpy().transpose(2, 0, 1))


def test_the_override_ends_with_its_block() -> None:
    executor = Recording()
    with _conversions.override_executor(executor):
        assert _conversions.executor_for(CPU, "test") is executor
        assert _conversions.executor_for(Device("cuda", 0), "test") is executor
    assert _conversions.executor_for(CPU, "test") is HOST
    host_image().to_layout("CHW")
    assert executor.calls == []


def test_the_torch_executor_computes_what_numpy_computes_through_the_public_api() -> None:
    image = host_image(seed=9)
    batch_reference = gi.normalize_batch([image], 0.5, 0.25, rois=[(1, 1, 4, 3)], size=(4, 5), like="numpy")
    with _conversions.override_executor(TORCH_EXECUTOR):
        planar = image.to_layout("CHW")
        normalized = gi.normalize(image, (0.4, 0.5, 0.6), 0.25, reverse_channels=True)
        batch = gi.normalize_batch([image], 0.5, 0.25, rois=[(1, 1, 4, 3)], size=(4, 5), like="numpy")
    assert np.array_equal(planar.as_numpy(), image.to_layout("CHW").as_numpy())
    reference = gi.normalize(image, (0.4, 0.5, 0.6), 0.25, reverse_channels=True)
    assert np.array_equal(normalized.as_numpy(), reference.as_numpy())
    assert np.array_equal(batch, batch_reference)


@pytest.fixture
def gpu_choice() -> Iterator[None]:
    """The GPU executor chosen afresh inside the test, and again after it."""
    _conversions._gpu_executor.cache_clear()
    saved = dict(_conversions.chosen)
    _conversions.chosen.pop("cuda", None)
    try:
        yield
    finally:
        _conversions._gpu_executor.cache_clear()
        _conversions.chosen.clear()
        _conversions.chosen.update(saved)


@pytest.mark.parametrize(
    ("kernels", "torch_gpu", "expected"),
    [(True, True, "kernels"), (True, False, "kernels"), (False, True, "torch"), (False, False, None)],
)
def test_gpu_images_get_the_kernels_else_torch(
    gpu_choice: None, monkeypatch: pytest.MonkeyPatch, kernels: bool, torch_gpu: bool, expected: str | None
) -> None:
    pytest.importorskip("cupy")
    from gpuimage import _kernel_convert, _torch_convert

    monkeypatch.setattr(_kernel_convert, "reaches_gpu", lambda: kernels)
    monkeypatch.setattr(_torch_convert, "reaches_gpu", lambda: torch_gpu)
    if expected is None:
        with pytest.raises(gi.MissingBackendError, match=r"to_layout\(\): converting a GPU image needs CuPy"):
            _conversions.executor_for(Device("cuda", 0), "to_layout()")
        return
    executor: Executor = _conversions.executor_for(Device("cuda", 0), "to_layout()")
    assert executor.name == expected
    assert _conversions.executor_for(Device("cuda", 1), "to_layout()") is executor, "chosen once"


@pytest.mark.skipif(gpu_available(), reason="on a GPU machine this would launch on a fake pointer")
def test_a_gpu_image_without_a_gpu_library_says_what_to_install() -> None:
    image = GpuImage.from_pointer(
        0x7F00_0000_0000, gi.ImageSpec(height=2, width=3, channels=3, dtype="uint8", device="cuda:0")
    )
    with pytest.raises(gi.MissingBackendError, match=r"to_layout\(\): converting a GPU image needs CuPy"):
        image.to_layout("CHW")
