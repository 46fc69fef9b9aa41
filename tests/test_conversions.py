"""Conversions on CPU: the planning arithmetic, the NumPy executor against the torch executor (two
independent implementations of one formula), saturation and rounding, and argument validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from conversion_values import random_values, storage
from gpuimage import BoundsError, DTypeError, DTypeName, GpuImage, ImageSpec, Layout, SpecError
from gpuimage._convert import (
    THREAD_BYTES,
    Affine,
    Mode,
    RunKind,
    _pixels_per_thread,
    _vector_bytes,
    accumulator,
    denormalize_affine,
    identity_affine,
    mode,
    normalize_affine,
    plan_variant,
    run_kind,
    scaled_affine,
)
from gpuimage._host_convert import convert as host_convert
from gpuimage._host_convert import from_accumulator
from hypothesis_paths import record

torch = pytest.importorskip("torch")
from gpuimage._torch_convert import convert as torch_convert  # noqa: E402

DTYPES: list[DTypeName] = [
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64",
    "float16", "bfloat16", "float32", "float64",
]  # fmt: skip
TORCH = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "uint16": torch.uint16,
    "int16": torch.int16, "uint32": torch.uint32, "int32": torch.int32, "int64": torch.int64,
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
}  # fmt: skip


def torch_of(array: npt.NDArray[Any], dtype: DTypeName) -> Any:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def bits_of(tensor: Any, dtype: DTypeName) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = (
        tensor.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else tensor.numpy()
    )
    return array


def assert_same(ours: npt.NDArray[Any], theirs: npt.NDArray[Any], dtype: DTypeName) -> None:
    """Bit-equal, except that NaNs only need to be NaNs (payloads differ between libraries)."""
    if storage(dtype).kind == "f":
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        ours, theirs = np.where(np.isnan(ours), 0, ours), np.where(np.isnan(theirs), 0, theirs)
    elif dtype == "bfloat16":
        nan = ((ours & 0x7FFF) > 0x7F80), ((theirs & 0x7FFF) > 0x7F80)
        assert np.array_equal(*nan)
        ours, theirs = np.where(nan[0], 0, ours), np.where(nan[1], 0, theirs)
    assert ours.dtype == theirs.dtype
    assert np.array_equal(ours.view(np.uint8), theirs.view(np.uint8))


@given(
    source=st.sampled_from(DTYPES),
    target=st.sampled_from(DTYPES),
    channels=st.integers(1, 4),
    width=st.sampled_from([1, 2, 3, 7, 33]),
    affine=st.sampled_from(["identity", "scaled", "reversed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_numpy_and_torch_executors_agree_bit_for_bit(
    source: DTypeName, target: DTypeName, channels: int, width: int, affine: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = random_values(rng, source, (3, width, channels))
    if affine == "identity":
        plan = identity_affine(channels)
    elif affine == "reversed":
        plan = identity_affine(channels, reverse=True)
    else:
        plan = scaled_affine(channels, float(rng.uniform(-3, 3)), float(rng.uniform(-100, 100)), where="test")
    ours = np.empty(values.shape, storage(target))
    host_convert(values, ours, source, target, plan)
    theirs = torch.empty(values.shape, dtype=TORCH[target])
    torch_convert(torch_of(values, source), theirs, source, target, plan)
    assert_same(ours, bits_of(theirs, target), target)


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (2.5, "uint8", 2),  # half to even
        (3.5, "uint8", 4),
        (-0.5, "uint8", 0),
        (255.5, "uint8", 255),  # rounds to 256, saturates
        (1e9, "int16", 32767),
        (-1e9, "int16", -32768),
        (math.nan, "int32", 0),
        (math.inf, "uint16", 65535),
        (-math.inf, "int8", -128),
        (9.3e18, "int64", 2**63 - 1),  # beyond int64: saturates (a plain cast would wrap)
        (-9.3e18, "int64", -(2**63)),
        (0.25, "bool", True),
        (math.nan, "bool", True),  # like NumPy's bool(nan)
    ],
)
def test_integer_targets_round_half_to_even_and_saturate(
    value: float, dtype: DTypeName, expected: object
) -> None:
    wide = np.dtype(accumulator("float64", dtype))
    assert from_accumulator(np.asarray([value], dtype=wide), dtype)[0] == expected


def test_bfloat16_rounding_matches_torch() -> None:
    rng = np.random.default_rng(7)
    floats = np.concatenate(
        [
            rng.integers(0, 2**32, 4096, dtype=np.uint32).view(np.float32),
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.0e38, 1.00390625, 1.01171875], np.float32),
        ]
    )
    ours = from_accumulator(floats, "bfloat16")
    theirs = torch.from_numpy(floats).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    finite = ~np.isnan(floats)
    assert np.array_equal(ours[finite], theirs[finite])
    assert np.all((ours[~finite] & 0x7FFF) > 0x7F80)  # NaN stays NaN


# -- planning -------------------------------------------------------------------------------------


@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.integers(1, 64))
def test_threads_move_a_bounded_power_of_two_of_pixels(source: int, target: int, channels: int) -> None:
    pixels = _pixels_per_thread(source, target, channels)
    assert pixels & (pixels - 1) == 0
    assert 1 <= pixels <= 32
    per_pixel = channels * (source + target)
    assert pixels == 1 or pixels * per_pixel <= THREAD_BYTES
    assert pixels == 32 or 2 * pixels * per_pixel > THREAD_BYTES  # the most that fits


@given(
    st.sampled_from(list(RunKind)),
    st.integers(1, 512),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=6),
)
def test_vector_width_divides_every_start(kind: RunKind, run_bytes: int, addresses: list[int]) -> None:
    width = _vector_bytes(kind, run_bytes, addresses)
    assert width in (1, 2, 4, 8, 16)
    if kind is RunKind.GENERIC:
        assert width == 1
    else:
        assert all(value % width == 0 for value in (run_bytes, *addresses))
        # and it is the widest such power of two
        assert width == 16 or any(value % (2 * width) for value in (run_bytes, *addresses))


@given(
    st.sampled_from(list(Layout)),
    st.integers(1, 50),
    st.integers(1, 50),
    st.integers(1, 4),
    st.sampled_from(["uint8", "float16", "float32", "float64"]),
    st.sampled_from([1, 64, 256]),
)
def test_packed_images_are_vectorised_by_layout(
    layout: Layout, height: int, width: int, channels: int, dtype: DTypeName, alignment: int
) -> None:
    spec = ImageSpec.packed(
        height=height, width=width, channels=channels, dtype=dtype, layout=layout, row_alignment=alignment
    )
    kind = run_kind(spec.geometry, spec.itemsize)
    if channels == 1 or layout is Layout.HWC:
        assert kind is RunKind.INTERLEAVED
    else:
        assert kind is RunKind.PLANAR
    variant = plan_variant(
        dtype, "float32", [(1 << 20, spec.geometry)], (1 << 20, spec.geometry), identity_affine(channels)
    )
    assert variant.source_kind is kind
    assert variant.pixels >= 1


def test_a_batch_of_mixed_run_kinds_is_read_one_element_at_a_time() -> None:
    hwc = ImageSpec.packed(height=4, width=4, channels=3, layout="HWC").geometry
    chw = ImageSpec.packed(height=4, width=4, channels=3, layout="CHW").geometry
    variant = plan_variant("uint8", "float32", [(4096, hwc), (8192, chw)], (4096, chw), identity_affine(3))
    assert variant.source_kind is RunKind.GENERIC
    assert variant.source_vector == 1


@pytest.mark.parametrize(
    ("source", "target", "affine", "expected"),
    [
        ("uint8", "uint8", identity_affine(3, reverse=True), Mode.COPY),
        ("uint8", "int64", identity_affine(3), Mode.INTEGER),
        ("bool", "uint8", identity_affine(3), Mode.INTEGER),
        ("uint8", "float32", identity_affine(3), Mode.FLOAT),
        ("uint8", "uint8", Affine((2.0,) * 3, (0.0,) * 3, False), Mode.FLOAT),
    ],
)
def test_each_conversion_takes_the_exact_path(
    source: DTypeName, target: DTypeName, affine: Affine, expected: Mode
) -> None:
    assert mode(source, target, affine) is expected


@given(
    st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    st.lists(st.floats(0.05, 3), min_size=3, max_size=3),
    st.booleans(),
)
def test_denormalize_undoes_normalize(mean: list[float], std: list[float], reverse: bool) -> None:
    forward = normalize_affine(3, mean, std, 1 / 255, reverse=reverse, where="t")
    backward = denormalize_affine(3, mean, std, 1 / 255, reverse=reverse, where="t")
    for value in (0.0, 17.0, 255.0):
        for channel in range(3):
            # output channel c of the round trip reads input channel c again
            middle = 2 - channel if reverse else channel
            normalized = value * forward.scale[middle] + forward.offset[middle]
            assert math.isclose(
                normalized * backward.scale[channel] + backward.offset[channel], value, abs_tol=1e-9
            )


@pytest.mark.parametrize(
    ("mean", "std", "channels", "message"),
    [
        ((0.5, 0.5), 0.25, 3, "expected 1 or 3 values for mean"),
        (0.5, (0.25, 0.0, 0.25), 3, "non-zero std"),
        (math.nan, 0.25, 3, "finite number for mean"),
        (0.5, True, 3, "finite number for std"),
        ((0.1, 0.2, 0.3, 0.4, 0.5), 0.25, 5, "1 to 4 channels"),
    ],
)
def test_bad_normalization_parameters_are_refused(mean: Any, std: Any, channels: int, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        normalize_affine(channels, mean, std, 1 / 255, reverse=False, where="normalize()")


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


def test_normalize_batch_packs_regions_and_pads() -> None:
    images = [host_image(seed=1), host_image(9, 5, seed=2).to_layout("CHW")]
    batch = gi.normalize_batch(images, 0.5, 0.25, rois=[(1, 1, 4, 3), None], pad_value=-7.0, like="numpy")
    assert batch.shape == (2, 3, 9, 5)
    assert batch.dtype == np.float32
    first = (images[0].as_numpy()[1:4, 1:5].astype(np.float32) / 255 - 0.5) / 0.25
    assert np.allclose(batch[0, :, :3, :4], first.transpose(2, 0, 1), atol=1e-6)
    assert np.all(batch[0, :, 3:, :] == -7.0)
    assert np.all(batch[0, :, :, 4:] == -7.0)
    assert np.allclose(batch[1], (images[1].as_numpy().astype(np.float32) / 255 - 0.5) / 0.25, atol=1e-6)
    # into a caller's (channels-last) torch tensor, same values
    out = torch.empty((2, 9, 5, 3)).permute(0, 3, 1, 2)
    gi.normalize_batch(images, 0.5, 0.25, rois=[(1, 1, 4, 3), None], pad_value=-7.0, out=out)
    assert np.array_equal(out.numpy(), batch)


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


def test_a_destination_overlapping_its_source_is_refused() -> None:
    buffer = np.zeros((4, 4, 3), np.uint8)
    image = GpuImage.from_numpy(buffer, layout="HWC")
    with pytest.raises(SpecError, match="overlaps"):
        gi.normalize_batch(
            [image], 0.5, 0.25, dtype="uint8", out=buffer.reshape(1, 4, 4, 3).transpose(0, 3, 1, 2)
        )


def test_read_only_destinations_are_refused() -> None:
    frozen = np.zeros((1, 3, 6, 7), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(gi.ReadOnlyError):
        gi.normalize_batch([host_image()], 0.5, 0.25, out=frozen)


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


def test_batch_destinations_must_be_aligned_to_their_item_size() -> None:
    buffer = np.zeros(4 * 3 * 6 * 7 + 4, np.uint8)
    misaligned: npt.NDArray[Any] = np.ndarray((1, 3, 6, 7), dtype=np.float32, buffer=buffer, offset=1)
    with pytest.raises(gi.PitchError, match="multiples of the item size"):
        gi.normalize_batch([host_image()], 0.5, 0.25, out=misaligned)


def test_regions_out_of_bounds_name_the_roi() -> None:
    with pytest.raises(BoundsError, match=r"normalize_batch\(\) roi \(5, 5, 4, 4\)"):
        gi.normalize_batch([host_image()], 0.5, 0.25, rois=[(5, 5, 4, 4)], like="numpy")


def test_kernel_launches_refuse_sizes_beyond_their_int_parameters() -> None:
    pytest.importorskip("cupy")
    from gpuimage import _kernels

    with pytest.raises(SpecError, match="Convert in parts"):
        _kernels._check_limits(2**31, 16, 1)
    with pytest.raises(SpecError, match="Convert in parts"):
        _kernels._check_limits(16, 16, 65536)
    _kernels._check_limits(16, 16, 65535)  # the largest batch one launch takes


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
