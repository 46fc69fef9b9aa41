"""Conversions on a GPU: the kernel executor (and the torch executor) against the NumPy reference.

Every dtype pair, both layouts on each side, padded pitches, regions at odd offsets, widths 1, 2, 3,
7, 33 and more, 1 to 4 channels, identity, scaled and channel-reversing maps. The kernels compute
the reference's formula with the same roundings, so results are compared bit for bit (NaNs only as
NaNs); the torch fallback may differ by one ulp in float16 from float64 (torch rounds through float32).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import numpy as np
import numpy.typing as npt
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from conversion_values import random_values, storage
from gpuimage import DTypeName, GpuImage, Layout, _conversions, _kernel_convert, _ordering
from gpuimage._affine import Affine, identity_affine, scaled_affine
from gpuimage._conversions import convert_into
from gpuimage._host_convert import convert_arrays
from gpuimage._runtime import runtime
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR

from ._support import TORCH_DTYPES, gpu_settings

pytestmark = pytest.mark.cuda

DTYPES: list[DTypeName] = list(TORCH_DTYPES)
WIDTHS = st.sampled_from([1, 2, 3, 7, 33]) | st.integers(1, 300)


def upload(host_hwc: npt.NDArray[Any], dtype: DTypeName, layout: Layout) -> GpuImage[Any, Any]:
    """A GPU image holding ``host_hwc`` (bfloat16 given as bits) in ``layout``."""
    ordered = host_hwc if layout is Layout.HWC else host_hwc.transpose(2, 0, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(ordered)).cuda()
    if dtype == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    return GpuImage.from_torch(tensor, layout=layout)


def download(image: GpuImage[Any, Any]) -> npt.NDArray[Any]:
    """The image's elements on the host, HWC order, bfloat16 as bits."""
    tensor = image.as_torch().cpu()
    if image.layout is Layout.CHW:
        tensor = tensor.permute(1, 2, 0)
    if image.dtype == "bfloat16":
        return tensor.contiguous().view(torch.int16).numpy().view(np.uint16)
    return tensor.contiguous().numpy()


def assert_matches(got: npt.NDArray[Any], want: npt.NDArray[Any], dtype: DTypeName, *, ulps: int = 0) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    if dtype == "bfloat16":
        nan_got, nan_want = (got & 0x7FFF) > 0x7F80, (want & 0x7FFF) > 0x7F80
    elif storage(dtype).kind == "f":
        nan_got, nan_want = np.isnan(got), np.isnan(want)
    else:
        assert np.array_equal(got, want)
        return
    assert np.array_equal(nan_got, nan_want)
    signed = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[got.itemsize]
    difference = np.abs(got.view(signed).astype(np.int64) - want.view(signed).astype(np.int64))
    assert int(np.where(nan_got, 0, difference).max(initial=0)) <= ulps


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    channels = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["identity", "scaled", "reversed"]))
    affine: Affine
    if kind == "identity":
        affine = identity_affine(channels)
    elif kind == "reversed":
        affine = identity_affine(channels, reverse=True)
    else:
        affine = scaled_affine(
            channels, draw(st.floats(-4, 4, allow_nan=False)), draw(st.floats(-300, 300)), where="test"
        )
    return {
        "source": draw(st.sampled_from(DTYPES)),
        "target": draw(st.sampled_from(DTYPES)),
        "channels": channels,
        "height": draw(st.integers(1, 9)),
        "width": draw(WIDTHS),
        "x": draw(st.integers(0, 5)),
        "y": draw(st.integers(0, 3)),
        "source_layout": draw(st.sampled_from(list(Layout))),
        "target_layout": draw(st.sampled_from(list(Layout))),
        "row_alignment": draw(st.sampled_from([1, 2, 16, 64, 256])),
        "affine": affine,
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def run_case(case: dict[str, Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(GPU result, NumPy reference) of one conversion of a region of a padded image."""
    rng = np.random.default_rng(case["seed"])
    height, width, channels = case["height"], case["width"], case["channels"]
    x, y = case["x"], case["y"]
    parent = random_values(rng, case["source"], (y + height + 2, x + width + 3, channels))
    source = upload(parent, case["source"], case["source_layout"]).crop(x, y, width, height)
    target = GpuImage.empty(
        height,
        width,
        channels,
        case["target"],
        layout=case["target_layout"],
        row_alignment=case["row_alignment"],
    )
    convert_into(source, target, case["affine"], where="test")
    want = np.empty((height, width, channels), storage(case["target"]))
    convert_arrays(
        parent[y : y + height, x : x + width], want, case["source"], case["target"], case["affine"]
    )
    return download(target), want


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kernel launches the kernel executor makes during the test: "launch" for a conversion (its
    launch plan, looked up once per launch), "launch_batch" for a batch."""
    calls: list[str] = []

    def counted(name: str) -> Any:
        function = getattr(_kernel_convert, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append("launch" if name == "launch_plan" else name)
            return function(*args, **kwargs)

        return counting

    monkeypatch.setattr(_kernel_convert, "launch_plan", counted("launch_plan"))
    monkeypatch.setattr(_kernel_convert, "launch_batch", counted("launch_batch"))
    return calls


@gpu_settings(max_examples=400)
@given(cases())
def test_kernels_match_the_reference_bit_for_bit(case: dict[str, Any]) -> None:
    got, want = run_case(case)
    assert_matches(got, want, case["target"])


@gpu_settings(max_examples=150)
@given(cases())
def test_torch_fallback_matches_the_reference(case: dict[str, Any]) -> None:
    with _conversions.override_executor(TORCH_EXECUTOR):
        got, want = run_case(case)
    wide_to_half = case["target"] == "float16" and case["source"] in ("float64", "int32", "uint32", "int64")
    assert_matches(got, want, case["target"], ulps=1 if wide_to_half else 0)


def test_public_operations_take_the_kernel_path(launches: list[str]) -> None:
    frame = GpuImage.from_torch(
        torch.randint(0, 256, (37, 41, 3), dtype=torch.uint8, device="cuda"), layout="HWC"
    )
    frame.to_layout("CHW")
    frame.crop(3, 1, 30, 30).contiguous()
    frame.astype(gi.Float16)
    gi.normalize(frame, 0.5, 0.25)
    assert launches == ["launch"] * 4


@pytest.mark.parametrize("dtype", [gi.Float32, gi.Float16, gi.BFloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_normalize_matches_torchvision(dtype: type[gi.AnyDType], reverse: bool) -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    frame = torch.randint(0, 256, (67, 131, 3), dtype=torch.uint8, device="cuda")
    region = frame[5:50, 3:120]  # a pitched region at an odd offset
    result = gi.normalize(
        GpuImage.from_torch(frame, layout="HWC").crop(3, 5, 117, 45),
        mean,
        std,
        dtype=dtype,
        reverse_channels=reverse,
    )
    rgb = region.flip(-1) if reverse else region
    reference = (
        rgb.permute(2, 0, 1).double() / 255 - torch.tensor(mean, device="cuda").view(3, 1, 1).double()
    ) / torch.tensor(std, device="cuda").view(3, 1, 1).double()
    got = result.as_torch()
    assert result.layout is Layout.CHW
    assert got.dtype == TORCH_DTYPES[result.dtype]
    if got.dtype == torch.float32:
        # one multiply-add in float32, its factors rounded to float32: a few ulps of the largest term
        assert torch.allclose(got.double(), reference, rtol=1e-6, atol=1e-6)
        return
    # float16 and bfloat16: within one ulp of the exact value rounded to the output type (near zero,
    # where an ulp is finer than float32's own error, within 1e-6)
    exact = reference.to(got.dtype).double()
    spacing = (exact.abs() * torch.finfo(got.dtype).eps).clamp_min(1e-6)
    assert bool(((got.double() - exact).abs() <= spacing).all())


def test_denormalize_inverts_normalize_exactly() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    frame = GpuImage.from_torch(
        torch.randint(0, 256, (40, 50, 3), dtype=torch.uint8, device="cuda"), layout="HWC"
    )
    planar = gi.normalize(frame, mean, std, reverse_channels=True)
    back = gi.denormalize(planar, mean, std, reverse_channels=True)
    assert back.layout is Layout.HWC
    assert back.dtype == "uint8"
    assert torch.equal(back.as_torch(), frame.as_torch())


def test_normalize_writes_into_a_slice_of_a_batch_tensor() -> None:
    batch = torch.full((4, 3, 20, 30), -1.0, device="cuda")
    frame = GpuImage.from_torch(
        torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8, device="cuda"), layout="HWC"
    )
    result = gi.normalize(frame, 0.5, 0.25, out=GpuImage.from_torch(batch[2], layout="CHW"))
    assert result.ptr == batch[2].data_ptr()
    expected = (frame.as_torch().permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(batch[2], expected, atol=1e-6)
    assert bool((batch[[0, 1, 3]] == -1.0).all())


@pytest.mark.parametrize("like", ["torch", "cupy"])
def test_normalize_batch_of_mixed_sizes_in_one_launch(like: str, launches: list[str]) -> None:
    frames = [
        torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda")
        for shape in ((60, 80, 3), (33, 47, 3), (3, 50, 40))
    ]
    images = [
        GpuImage.from_torch(frames[0], layout="HWC"),
        GpuImage.from_torch(frames[1], layout="HWC"),
        GpuImage.from_torch(frames[2], layout="CHW"),
    ]
    rois = [(7, 3, 31, 29), None, (1, 2, 33, 17)]
    batch = gi.normalize_batch(images, 0.5, 0.25, rois=rois, size=(40, 48), pad_value=-3.0, like=like)  # type: ignore[call-overload]
    assert launches == ["launch_batch"]
    result = torch.as_tensor(batch, device="cuda")
    regions = [frames[0][3:32, 7:38].permute(2, 0, 1), frames[1].permute(2, 0, 1), frames[2][:, 2:19, 1:34]]
    for index, region in enumerate(regions):
        _, height, width = region.shape
        expected = (region.float() / 255 - 0.5) / 0.25
        assert torch.allclose(result[index, :, :height, :width], expected, atol=1e-6)
        assert bool((result[index, :, height:, :] == -3.0).all())
        assert bool((result[index, :, :, width:] == -3.0).all())


def test_normalize_batch_into_a_channels_last_tensor() -> None:
    frames = [torch.randint(0, 256, (100, 120, 3), dtype=torch.uint8, device="cuda") for _ in range(2)]
    images = [GpuImage.from_torch(frame, layout="HWC") for frame in frames]
    rois = [(x, y, 24, 24) for x, y in ((0, 0), (1, 3), (95, 75), (17, 33))]
    out = torch.empty((4, 24, 24, 3), device="cuda", dtype=torch.float16).permute(0, 3, 1, 2)
    gi.normalize_batch([images[i % 2] for i in range(4)], 0.5, 0.25, rois=rois, dtype=gi.Float16, out=out)
    for index, (x, y, w, h) in enumerate(rois):
        expected = (
            (frames[index % 2][y : y + h, x : x + w].permute(2, 0, 1).float() / 255 - 0.5) / 0.25
        ).half()
        assert torch.equal(out[index], expected)


def test_conversions_run_after_the_source_is_written_on_another_stream() -> None:
    side = torch.cuda.Stream()
    frame = torch.zeros((256, 256, 3), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)  # hold the side stream so a missing wait would read zeros
        frame.fill_(7)
        image = GpuImage.from_torch(frame, layout="HWC")  # ready on the side stream
    converted = image.astype(gi.Float32, scale=2.0)
    assert converted.stream == side.cuda_stream  # queued behind the write, on the source's stream
    batch = gi.normalize_batch([image], 0.0, 1.0, scale=1.0)  # on torch's current stream, after a wait
    assert bool((converted.as_torch() == 14.0).all())
    assert bool((batch == 7.0).all())


def test_a_destination_overlapping_the_source_is_refused() -> None:
    tensor = torch.zeros((10, 10, 3), dtype=torch.float32, device="cuda")
    image = GpuImage.from_torch(tensor, layout="HWC")
    with pytest.raises(gi.SpecError, match="overlaps"):
        gi.normalize(image, 0.5, 0.25, out=GpuImage.from_torch(tensor.permute(2, 0, 1), layout="CHW"))
    with pytest.raises(gi.DeviceError):
        gi.normalize(image, 0.5, 0.25, out=GpuImage.empty(10, 10, 3, "float32", layout="CHW", device="cpu"))


@gpu_settings(max_examples=60)
@given(
    count=st.integers(1, 6),
    channels=st.integers(1, 4),
    dtype=st.sampled_from([gi.Float32, gi.Float16, gi.BFloat16]),
    source_dtype=st.sampled_from(["uint8", "uint16"]),
    reverse=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_normalize_batch_matches_the_reference_bit_for_bit(
    count: int, channels: int, dtype: type[gi.AnyDType], source_dtype: DTypeName, reverse: bool, seed: int
) -> None:
    """Mixed sizes, odd widths and offsets, both layouts, padding: the one launch equals the NumPy
    path item by item."""
    rng = np.random.default_rng(seed)
    hosts, images, rois = [], [], []
    for index in range(count):
        height, width = int(rng.integers(1, 40)), int(rng.choice([1, 2, 3, 7, 33, int(rng.integers(1, 70))]))
        values = random_values(rng, source_dtype, (height + 3, width + 5, channels))
        layout = Layout.HWC if index % 2 == 0 else Layout.CHW
        hosts.append(
            GpuImage.from_numpy(
                np.ascontiguousarray(values if layout is Layout.HWC else values.transpose(2, 0, 1)),
                layout=layout,
            )
        )
        images.append(hosts[-1].cuda())
        rois.append((int(rng.integers(0, 5)), int(rng.integers(0, 3)), width, height))
    mean = [float(value) for value in rng.uniform(0, 1, channels)]
    std = [float(value) for value in rng.uniform(0.1, 1, channels)]
    size = (45, 75)
    on_gpu = gi.normalize_batch(
        images, mean, std, rois=rois, size=size, pad_value=-0.5, dtype=dtype, reverse_channels=reverse
    )
    on_host = gi.normalize_batch(
        hosts, mean, std, rois=rois, size=size, pad_value=-0.5, dtype=dtype, reverse_channels=reverse
    )
    carrier = torch.int16 if on_gpu.element_size() == 2 else torch.int32
    assert torch.equal(on_gpu.cpu().view(carrier), on_host.view(carrier))


@pytest.mark.parametrize("channels", [5, 8])
def test_images_with_more_than_four_channels_convert(channels: int) -> None:
    rng = np.random.default_rng(channels)
    values = rng.integers(0, 256, (9, 13, channels), dtype=np.uint8)
    image = GpuImage.from_numpy(values, layout="HWC").cuda()
    planar = image.to_layout("CHW")
    assert np.array_equal(planar.cpu().as_numpy(), values.transpose(2, 0, 1))
    scaled = image.astype(gi.Float32, scale=0.5, offset=1.0).cpu().as_numpy()
    assert np.array_equal(scaled, values.astype(np.float32) * np.float32(0.5) + np.float32(1.0))
    normalized = gi.normalize(image, 0.5, 0.25).cpu().as_numpy()
    host = gi.normalize(GpuImage.from_numpy(values, layout="HWC"), 0.5, 0.25).as_numpy()
    assert np.array_equal(normalized, host)


class CountingRuntime:
    """The runtime in use, noting each event record and each cross-stream wait asked of it."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner, self._calls = inner, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record(self, stream: int, device: int) -> Any:
        self._calls.append("record")
        return self._inner.record(stream, device)

    def wait(self, producer: int, consumer: int, device: int) -> None:
        self._calls.append("wait")
        self._inner.wait(producer, consumer, device)

    def wait_event(self, event: Any, consumer: int) -> None:
        self._calls.append("wait")
        self._inner.wait_event(event, consumer)


def test_a_loop_on_one_stream_records_no_event_and_waits_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    counting = CountingRuntime(runtime(), calls)
    monkeypatch.setattr(_ordering, "runtime", lambda: counting)  # what conversions' ordering asks
    frame = torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8, device="cuda")
    image = GpuImage.from_torch(frame, layout="HWC")  # ready on torch's current stream
    out = GpuImage.empty(120, 160, 3, "float32", layout="CHW")
    planar_out = GpuImage.empty(120, 160, 3, "uint8", layout="CHW", row_alignment=256)
    planar = image.to_layout("CHW")
    for _ in range(20):  # a frame loop: every step on the one stream the data is ready on
        planar = image.to_layout("CHW")
        image.to_layout("CHW", out=planar_out)
        gi.normalize(image, 0.5, 0.25, out=out)
        planar.astype(gi.Float32, scale=2.0).as_torch()
    assert calls == [], "the same stream needs no event and no cross-stream wait"
    expected = frame.permute(2, 0, 1)
    assert torch.equal(planar.as_torch(), expected)
    assert torch.equal(planar_out.as_torch(), expected), "to_layout(out=) into a pitched destination"
    assert torch.equal(out.as_torch(), (expected.float() / 255 - 0.5) / 0.25)


def test_a_loop_on_the_default_stream_inside_another_streams_context_waits_for_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data is ready on the legacy default stream and torch's current stream is another: each
    conversion is queued on the default stream, and its result is allocated there, so no
    cross-stream wait is asked and no release waits for an event."""
    calls: list[str] = []
    counting = CountingRuntime(runtime(), calls)
    monkeypatch.setattr(_ordering, "runtime", lambda: counting)
    frame = torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8, device="cuda")
    image = GpuImage.from_torch(frame, layout="HWC")  # ready on the legacy default stream
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        planar = image.to_layout("CHW")
        for _ in range(20):
            planar = image.to_layout("CHW")
            assert planar._life.uses is None, "a result used only where it was made notes no stream"
            assert planar._ready.stream == 0
    assert calls == [], "the memory comes from the stream the conversion runs on"
    assert torch.equal(planar.as_torch(), frame.permute(2, 0, 1))


def test_an_out_destination_waits_for_the_reads_recorded_on_another_stream() -> None:
    reader = torch.cuda.Stream()
    source = GpuImage.from_torch(torch.full((64, 64, 3), 9, dtype=torch.uint8, device="cuda"), layout="HWC")
    target = GpuImage.from_torch(torch.ones((3, 64, 64), dtype=torch.float32, device="cuda"), layout="CHW")
    torch.cuda.synchronize()
    with target.reading(reader), torch.cuda.stream(reader):
        torch.cuda._sleep(50_000_000)  # the reader is late: a write that does not wait overtakes it
        total = target.as_torch(stream=reader).sum()
    gi.normalize(source, 0.0, 1.0, scale=1.0, out=target)  # on torch's current stream
    torch.cuda.synchronize()
    assert float(total) == 3 * 64 * 64, "the conversion overwrote the destination while it was read"
    assert bool((target.as_torch() == 9.0).all())
