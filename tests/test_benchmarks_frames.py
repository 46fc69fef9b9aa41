"""benchmarks/frames.py (issue 13's benchmark) and its helper _frames_routes.py, on the CPU.

What runs here: the exit without a GPU, the regions, the torch pipeline against the NumPy
definition (``_colour.yuv_to_rgb`` + ``_sampling.taps``), every CV-CUDA route's calls against a
recording stand-in for ``cvcuda``, the output checks, and the checks as the runner shows them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from file_modules import load_file
from gpuimage import ColorSpec
from gpuimage._colour import yuv_to_rgb
from gpuimage._sampling import taps

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """frames.py as a module (benchmarks/ is not a package: its helpers import by bare name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_file("benchmarks_frames", BENCHMARKS / "frames.py")


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_file("benchmarks_frames_routes", BENCHMARKS / "_frames_routes.py")


def test_without_a_gpu_it_says_so_and_exits_0(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 13, benchmark: CI imports the script; on a machine without a GPU it runs nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert script.main(["--quick", "--json", "unused.json"]) == 0
    assert capsys.readouterr().out == (
        "frames.py: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False); skipped.\n"
    )
    assert not Path("unused.json").exists()


def test_the_runner_finds_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_file("benchmarks_run_for_frames", BENCHMARKS / "run.py")
    assert "frames.py" in {path.name for path in run._find_scripts(run.HERE)}
    assert "_frames_routes.py" not in {path.name for path in run._find_scripts(run.HERE)}


def test_person_rois_are_fixed_varied_inside_the_frame_and_some_at_odd_offsets(routes: ModuleType) -> None:
    rois = routes.person_rois(1920, 1080)
    assert rois == routes.person_rois(1920, 1080)  # fixed: the same every run
    assert len(rois) == 8
    assert len(set(rois)) == 8
    heights = [h for _, _, _, h in rois]
    assert min(heights) == 100
    assert max(heights) == 600
    for x, y, w, h in rois:
        assert x >= 0
        assert x + w <= 1920
        assert y >= 0
        assert y + h <= 1080
        assert 0.4 * h - 1 <= w <= 0.8 * h
    assert sum(x % 2 == 1 and y % 2 == 1 for x, y, _, _ in rois) >= 3
    assert sum(x % 2 == 0 for x, _, _, _ in rois) >= 3


def test_person_rois_shrink_to_a_small_frame_and_refuse_an_empty_one(routes: ModuleType) -> None:
    for x, y, w, h in routes.person_rois(64, 48, count=5):
        assert x >= 0
        assert x + w <= 64
        assert y >= 0
        assert y + h <= 48
        assert w >= 1
        assert h >= 1
    with pytest.raises(ValueError, match="person_rois"):
        routes.person_rois(1, 48)


def test_nv12_frames_hold_nominal_codes_and_repeat_with_their_seed(routes: ModuleType) -> None:
    frame = routes.nv12_frame(12, 16, seed=3, device="cpu")
    assert frame.shape == (18, 16)
    assert frame.dtype == torch.uint8
    assert int(frame[:12].min()) >= 16
    assert int(frame[:12].max()) <= 235
    assert int(frame[12:].min()) >= 16
    assert int(frame[12:].max()) <= 240
    assert torch.equal(frame, routes.nv12_frame(12, 16, seed=3, device="cpu"))
    assert not torch.equal(frame, routes.nv12_frame(12, 16, seed=4, device="cpu"))


def _reference_batch(
    nv12: np.ndarray, colour: ColorSpec, rois: list[tuple[int, int, int, int]], size: tuple[int, int]
) -> np.ndarray:
    """``_sampling``'s recipe in float64: yuv_to_rgb, bilinear taps per axis, then (v - mean) / std."""
    height, width = nv12.shape[0] * 2 // 3, nv12.shape[1]
    planes = [nv12[:height], nv12[height:].reshape(height // 2, width // 2, 2)]
    rgb = yuv_to_rgb(planes, "NV12", colour, dtype="float32").astype(np.float64)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    batch = np.empty((len(rois), 3, *size))
    for item, (x, y, w, h) in enumerate(rois):
        region = rgb[y : y + h, x : x + w]
        for i in range(size[0]):
            y0, y1, fy = taps(i, size[0], h, "bilinear")
            for j in range(size[1]):
                x0, x1, fx = taps(j, size[1], w, "bilinear")
                top = (1 - fx) * region[y0, x0] + fx * region[y0, x1]
                bottom = (1 - fx) * region[y1, x0] + fx * region[y1, x1]
                batch[item, :, i, j] = ((1 - fy) * top + fy * bottom - mean) / std
    return batch


@pytest.mark.parametrize(
    "colour",
    [
        ColorSpec(matrix="BT709", range="LIMITED"),
        ColorSpec(matrix="BT601", range="LIMITED"),
        ColorSpec(matrix="BT601", range="FULL"),
    ],
    ids=repr,
)
def test_the_torch_route_computes_the_sampling_recipe(routes: ModuleType, colour: ColorSpec) -> None:
    # issue 13, benchmark: torch's batch is the reference the other pipelines are checked against
    rng = np.random.default_rng(13)
    nv12 = rng.integers(0, 256, (18, 16), dtype=np.uint8)  # every code: clipping is exercised too
    rois = [(0, 0, 16, 12), (3, 5, 7, 6), (1, 1, 3, 2), (10, 2, 5, 9)]  # down, up, odd offsets
    size = (5, 7)
    route = routes.TorchRoute(torch.from_numpy(nv12), colour, rois, size)
    batch = route.run()
    assert batch.shape == (4, 3, 5, 7)
    assert batch.dtype == torch.float32
    np.testing.assert_allclose(batch.numpy(), _reference_batch(nv12, colour, rois, size), atol=2e-5)
    rgb = route.rgb()
    expected = yuv_to_rgb([nv12[:12], nv12[12:].reshape(6, 8, 2)], "NV12", colour, dtype="float32")
    np.testing.assert_allclose(rgb.numpy(), expected.transpose(2, 0, 1), atol=2e-6)
    out = torch.full((4, 3, 5, 7), math.nan)
    assert route.batch(route.rgb(), out=out) is out
    assert torch.equal(out, batch)


class _Cv:
    """A stand-in for ``cvcuda`` that records each operator call and the tensors it was handed."""

    class ColorConversion:
        YUV2RGB_NV12 = "YUV2RGB_NV12"

    class Interp:
        LINEAR = "LINEAR"

    class NormalizeFlags:
        SCALE_IS_STDDEV = "SCALE_IS_STDDEV"

    class Format:
        RGB8 = "RGB8"

    class ImageBatchVarShape:
        def __init__(self, capacity: int) -> None:
            self.capacity, self.images = capacity, list[object]()

        def pushback(self, image: object) -> None:
            assert len(self.images) < self.capacity
            self.images.append(image)

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def as_tensor(self, tensor: torch.Tensor, layout: str) -> tuple[str, tuple[int, ...], str]:
        assert len(layout) == tensor.dim(), (layout, tensor.shape)
        return ("tensor", tuple(tensor.shape), layout)

    def as_image(self, tensor: torch.Tensor, format: str) -> tuple[str, tuple[int, ...], str]:
        assert tensor.dim() == 3
        assert tensor.shape[2] == 3
        assert format == "RGB8"
        return ("image", tuple(tensor.shape), format)

    def __getattr__(self, name: str) -> Any:
        def operator(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return operator


ROUTE_CALLS = {
    "cvtcolor+rccr x N+normalize (NCHW planes)": [
        "cvtcolor_into",
        *(["resize_crop_convert_reformat_into"] * 3),
        "normalize_into",
    ],
    "cvtcolor+rccr var-shape+normalize (NCHW planes)": [
        "cvtcolor_into",
        "resize_crop_convert_reformat_into",
        "normalize_into",
    ],
    "cvtcolor+rccr x N+normalize+reformat": [
        "cvtcolor_into",
        *(["resize_crop_convert_reformat_into"] * 3),
        "normalize_into",
        "reformat_into",
    ],
    "cvtcolor+resize x N+convertto+normalize+reformat": [
        "cvtcolor_into",
        *(["resize_into"] * 3),
        "convertto_into",
        "normalize_into",
        "reformat_into",
    ],
}


@pytest.mark.parametrize("name", list(ROUTE_CALLS))
def test_each_cvcuda_route_calls_its_operators_on_the_right_tensors(routes: ModuleType, name: str) -> None:
    cv = _Cv()
    nv12 = torch.zeros((18, 16), dtype=torch.uint8)
    rois = [(0, 0, 16, 12), (3, 5, 7, 6), (1, 1, 3, 2)]
    made = routes.CvcudaRoutes(cv, nv12, rois, (5, 7))
    op = routes.ROUTES[name](made)
    assert cv.calls == []  # building calls no operator: every call happens in the timed op
    out = op()
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 3, 5, 7)
    assert out.dtype == torch.float32
    assert [call[0] for call in cv.calls] == ROUTE_CALLS[name]
    convert = cv.calls[0]
    assert convert[1] == (
        ("tensor", (1, 12, 16, 3), "NHWC"),
        ("tensor", (1, 18, 16, 1), "NHWC"),
        "YUV2RGB_NV12",
    )
    for call, args, kwargs in cv.calls[1:]:
        if call == "resize_crop_convert_reformat_into":
            assert args[2:] == ((7, 5), "LINEAR", (0, 0))
            assert kwargs == {"scale": 1 / 255, "srcCast": False}
        if call == "normalize_into":
            dst, src, base, scale = args
            assert kwargs == {"flags": "SCALE_IS_STDDEV"}
            assert dst[1] == src[1]
            per_plane = dst[1] == (9, 5, 7, 1)  # NCHW seen as one sample per channel plane
            assert base[1] == scale[1] == ((9, 1, 1, 1) if per_plane else (1, 1, 1, 3))
        if call == "reformat_into":
            assert args[0] == ("tensor", (3, 3, 5, 7), "NCHW")
            assert args[1][1] == (3, 5, 7, 3)
    sources = [
        args[1] for call, args, _ in cv.calls if call in ("resize_into", "resize_crop_convert_reformat_into")
    ]
    if "var-shape" in name:
        assert [image[1] for image in sources[0].images] == [(12, 16, 3), (6, 7, 3), (2, 3, 3)]
    else:
        assert [source[1] for source in sources] == [(1, 12, 16, 3), (1, 6, 7, 3), (1, 2, 3, 3)]


def test_an_output_off_every_reference_is_marked_and_not_judged(script: ModuleType) -> None:
    reference = torch.zeros(2, 3)
    references = {
        "torch BT.709 limited": reference,
        "torch BT.601 full": reference + 1,
        "gpuimage X": reference,
    }
    close = script.Row("1080p", "CV-CUDA", "route", op=lambda: reference + 0.9)
    script.check(close, references, 0.2)
    assert close.note == ""
    assert close.diffs["torch BT.601 full"] == pytest.approx(0.1)
    far = script.Row("1080p", "CV-CUDA", "route", op=lambda: reference + 0.5)
    script.check(far, references, 0.2)
    assert far.note.startswith("WRONG OUTPUT: max |diff| 5.00e-01 > 2e-01")
    far.wall = script.Spread(10.0, 9.0, 11.0)
    assert far.us is None
    assert far.gpu_us is None
    nan = script.Row("1080p", "torch", "route", op=lambda: torch.full((2, 3), math.nan))
    script.check(nan, {"torch BT.709 limited": reference}, 1.0)
    assert nan.note.startswith("WRONG OUTPUT")
    assert nan.diffs["torch BT.709 limited"] == math.inf
    wrong_shape = script.Row("1080p", "torch", "route", op=lambda: torch.zeros(4))
    script.check(wrong_shape, {"torch BT.709 limited": reference}, 1.0)
    assert wrong_shape.note.startswith("WRONG OUTPUT")


def _row(
    script: ModuleType, library: str, call: str, wall: float | None, gpu: float | None, **how: Any
) -> Any:
    row = script.Row("1080p", library, call, **how)
    row.wall = None if wall is None else script.Spread(wall, wall - 1, wall + 1)
    row.gpu = gpu
    return row


def test_the_frame_checks_judge_gpuimage_against_the_fastest_cvcuda_route(script: ModuleType) -> None:
    # issue 13, target: at least 2x CV-CUDA's wall clock per frame (gpuimage / CV-CUDA <= 0.5)
    rows = [
        _row(script, "gpuimage", "normalize_batch(out=)", 40.0, 20.0),
        _row(script, "gpuimage", "normalize_batch", 45.0, 21.0),
        _row(script, "gpuimage", "per frame", 60.0, 22.0, judged=False),
        _row(script, "torch", "planes", 400.0, 200.0),
        _row(script, "CV-CUDA", "fast but wrong", 10.0, 5.0, note="WRONG OUTPUT: ..."),
        _row(script, "CV-CUDA", "slow", 120.0, 60.0),
        _row(script, "CV-CUDA", "fast", 100.0, 50.0),
        _row(script, "CV-CUDA", "broke", None, None, note="error: RuntimeError"),
    ]
    checks = script.frame_checks(rows, "")
    run = load_file("benchmarks_run_for_frames", BENCHMARKS / "run.py")
    shown = [tuple(vars(row).values())[1:] for row in run.bench_rows("frames", {"checks": checks})]
    case = "1080p NV12 -> 8 ROIs -> 224x224 batch"
    assert shown == [
        (f"{case}, wall/frame", "40.00 us", "100.00 us (CV-CUDA fast)", "0.40", "<= 0.5x", "PASS"),
        (f"{case}, wall/frame", "40.00 us", "400.00 us (torch planes)", "0.10", "", "info"),
        (f"{case}, GPU/frame", "20.00 us", "50.00 us (CV-CUDA fast)", "0.40", "", "info"),
        (f"{case}, GPU/frame", "20.00 us", "200.00 us (torch planes)", "0.10", "", "info"),
        (
            f"{case}, wall/frame with from_dlpack per frame",
            "60.00 us",
            "100.00 us (CV-CUDA fast)",
            "0.60",
            "",
            "info",
        ),
    ]
    rows[0].wall = script.Spread(60.0, 59.0, 61.0)  # now 60 / 100 > 0.5, from the second row: 45
    assert script.frame_checks(rows, "")[0]["passed"] is True
    rows[1].wall = script.Spread(51.0, 50.0, 52.0)
    assert script.frame_checks(rows, "")[0]["passed"] is False


def test_without_gpuimage_the_bar_fails_and_without_cvcuda_it_is_not_judged(script: ModuleType) -> None:
    cv_only = [_row(script, "CV-CUDA", "fast", 100.0, 50.0)]
    broken = [_row(script, "gpuimage", "normalize_batch(out=)", None, None, note="setup failed: X"), *cv_only]
    assert script.frame_checks(broken, "")[0]["passed"] is False
    ours = [_row(script, "gpuimage", "normalize_batch(out=)", 40.0, 20.0)]
    missing = "cvcuda is not importable (ImportError); its columns are skipped"
    check = script.frame_checks(ours, missing)[0]
    assert check["passed"] is None
    assert check["alternative"] == f"n/a ({missing})"


def test_the_bandwidth_check_judges_the_fraction_of_the_copy_bandwidth(script: ModuleType) -> None:
    # issue 13, target: the 4K NV12 -> RGB CHW conversion at >= 0.85 of the device's copy bandwidth
    passed = script.bandwidth_check("4K", 2450.0, 2800.0)
    assert passed == {
        "case": "4K",
        "gpuimage": "2450 GB/s",
        "alternative": "2800 GB/s (device-to-device copy_)",
        "ratio": "0.88",
        "target": ">= 0.85",
        "passed": True,
    }
    assert script.bandwidth_check("4K", 2000.0, 2800.0)["passed"] is False
    assert script.bandwidth_check("4K", None, 2800.0)["passed"] is False
    assert script.bandwidth_check("4K", 2000.0, None)["passed"] is None
    run = load_file("benchmarks_run_for_frames", BENCHMARKS / "run.py")
    (row,) = run.bench_rows("frames", {"checks": [passed]})
    assert (row.gpuimage, row.ratio, row.target, row.result) == ("2450 GB/s", "0.88", ">= 0.85", "PASS")


def test_rows_print_their_figures_and_notes_and_go_to_the_json(script: ModuleType) -> None:
    ran = _row(script, "gpuimage", "normalize_batch(out=)", 41.25, 20.5)
    ran.diffs = {"torch BT.709 limited": 3e-6}
    line = script.row_line(ran)
    assert line.split()[:2] == ["1080p", "gpuimage"]
    assert "41.2" in line
    assert "40.2-42.2" in line
    assert "20.5" in line
    assert "torch BT.709 limited 3.0e-06" in line
    broke = _row(script, "CV-CUDA", "route", None, None, note="setup failed: AttributeError: x")
    assert script.row_line(broke).endswith("setup failed: AttributeError: x")
    no_gpu = _row(script, "torch", "planes", 400.0, None)
    no_gpu.gpu = "n/a: the host could not queue ahead of the GPU (a call blocks the host)"
    assert script.row_line(no_gpu).endswith(no_gpu.gpu)
    assert script.row_line(None).split()[:3] == ["case", "library", "call"]
    table = script.timings([ran, broke])
    assert table["1080p | gpuimage normalize_batch(out=)"] == {
        "median_us": 41.25,
        "p10_us": 40.25,
        "p90_us": 42.25,
        "gpu_us": 20.5,
        "max_abs_diff": {"torch BT.709 limited": 3e-6},
    }
    assert table["1080p | CV-CUDA route"] == {"note": "setup failed: AttributeError: x"}


def test_a_route_that_raises_is_noted_and_the_others_still_run(script: ModuleType) -> None:
    def fail() -> object:
        raise RuntimeError("no kernel image")

    row = script.build("1080p", "CV-CUDA", "route", lambda: fail)
    assert row.op is fail
    assert row.note == ""
    broken = script.build("1080p", "CV-CUDA", "route", lambda: fail())
    assert broken.op is None
    assert broken.note == "setup failed: RuntimeError: no kernel image"
    absent = script.build("1080p", "CV-CUDA", "route", None, "cvcuda is not importable")
    assert absent.note == "n/a: cvcuda is not importable"


class _Frame:
    """A stand-in for ``GpuFrame``: the NV12 tensor and its colour; it converts with the torch route."""

    def __init__(self, nv12: torch.Tensor, colour: ColorSpec, routes: ModuleType) -> None:
        self.nv12, self.colour, self.routes = nv12, colour, routes

    def to_image(self, *, layout: str, dtype: str) -> torch.Tensor:
        assert (layout, dtype) == ("CHW", "float32")
        rgb: torch.Tensor = self.routes.TorchRoute(self.nv12, self.colour, [], (1, 1)).rgb()
        return rgb


class _Gpuimage:
    """A stand-in for the frame API frames.py calls, computing the recipe with the torch route."""

    ColorSpec = ColorSpec

    def __init__(self, routes: ModuleType) -> None:
        self.routes, self.calls = routes, list[str]()
        stand_in = self

        class GpuFrame:
            @staticmethod
            def from_dlpack(
                obj: torch.Tensor, *, format: str, colour: ColorSpec, stream: object = None
            ) -> _Frame:
                assert format == "NV12"
                stand_in.calls.append("from_dlpack")
                return _Frame(obj, colour, routes)

        class PreparedBatch:
            def __init__(self, mean: Any, std: Any, **options: Any) -> None:
                self.mean, self.std, self.options = mean, std, options

            def __call__(self, items: list[_Frame]) -> torch.Tensor:
                stand_in.calls.append("PreparedBatch")
                return stand_in.normalize_batch(items, self.mean, self.std, **self.options)

        self.GpuFrame, self.PreparedBatch = GpuFrame, PreparedBatch

    def normalize_batch(
        self, items: list[_Frame], mean: Any, std: Any, *, rois: Any, size: Any, resize: str, out: Any = None
    ) -> torch.Tensor:
        assert resize == "bilinear"
        assert len(items) == len(rois)
        self.calls.append("normalize_batch" + ("(out=)" if out is not None else ""))
        route = self.routes.TorchRoute(items[0].nv12, items[0].colour, rois, size, mean, std)
        batch: torch.Tensor = route.batch(route.rgb(), out=out)
        return batch

    def normalize(self, frame: _Frame, mean: Any, std: Any) -> torch.Tensor:
        assert (tuple(mean), tuple(std)) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.calls.append("normalize")
        return frame.to_image(layout="CHW", dtype="float32")


def test_a_whole_run_with_stand_ins_prints_the_table_and_writes_the_json(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # issue 13, benchmark: every step of main() between the GPU calls runs here, on CPU tensors
    stand_in = _Gpuimage(load_file("benchmarks_frames_routes", BENCHMARKS / "_frames_routes.py"))
    cv = _Cv()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda *args, **kwargs: None)
    monkeypatch.setattr(script, "header", lambda: {"device": "stand-in"})
    monkeypatch.setattr(script, "optional_module", lambda name: (cv, ""))
    monkeypatch.setattr(script, "module_version", lambda module: "0.19 (stand-in)")
    monkeypatch.setattr(script, "shared_stream", lambda cv: (None, None, "no stream (CPU)"))
    monkeypatch.setattr(script, "GPUIMAGE", stand_in)
    monkeypatch.setattr(script, "DEVICE", "cpu")
    monkeypatch.setattr(script, "FRAMES", {"1080p": (120, 160), "4K": (24, 32)})
    monkeypatch.setattr(script, "SLOT", (6, 5))
    monkeypatch.setattr(script, "COPY_BYTES", 4096)
    monkeypatch.setattr(script, "wall_per_call", lambda op, loop: (op(), script.Spread(50.0, 49.0, 51.0))[1])
    monkeypatch.setattr(script, "gpu_per_call", lambda op, loop, wall_us: (op(), 20.0)[1])
    figures = (script.Spread(50.0, 49.0, 51.0), 20.0)
    common = importlib.import_module("_common")  # the helper frames.py imported by bare name
    monkeypatch.setattr(common, "timed_in_turn", lambda ops, loop: [(op(), figures)[1] for op in ops])
    report = tmp_path / "frames.json"
    assert script.main(["--quick", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "all libraries run on no stream (CPU)" in out
    for call in ("normalize_batch(out=), frame made once", "from_dlpack + normalize_batch(out=) per frame"):
        assert re.search(
            rf"^1080p\s+gpuimage\s+{re.escape(call)}\s+50\.0\s+49\.0-51\.0\s+20\.0  torch BT\.709", out, re.M
        )
    # the stand-in for CV-CUDA computes nothing: its routes ran, and are off every reference
    assert len(re.findall(r"^1080p\s+CV-CUDA .* WRONG OUTPUT", out, re.M)) == len(ROUTE_CALLS)
    assert len(re.findall(r"against gpuimage's BT\.601 limited batch$", out, re.M)) == len(ROUTE_CALLS)
    assert re.search(r"^4K\s+gpuimage\s+normalize\(frame, 0, 1\)\s+50\.0", out, re.M)
    results = json.loads(report.read_text())
    assert [check["case"] for check in results["checks"]] == [
        "1080p NV12 -> 8 ROIs -> 224x224 batch, wall/frame",
        "1080p NV12 -> 8 ROIs -> 224x224 batch, wall/frame",
        "1080p NV12 -> 8 ROIs -> 224x224 batch, GPU/frame",
        "4K NV12 -> RGB CHW float32, GB/s vs copy",
    ]
    first, bandwidth = results["checks"][0], results["checks"][-1]
    assert first["passed"] is None
    assert "no route ran and matched" in first["alternative"]
    nbytes = 24 * 32 * 3 // 2 + 3 * 24 * 32 * 4
    assert results["bandwidth"] == {
        "bytes_per_frame": nbytes,
        "gpuimage_gbps": nbytes / 20.0 / 1e3,
        "copy_gbps": 2 * 4096 / 20.0 / 1e3,
        "copy_bytes": 4096,
    }
    assert bandwidth["passed"] is (nbytes / (2 * 4096) >= 0.85)
    assert "from_dlpack" in stand_in.calls
    assert "normalize" in stand_in.calls
    assert results["timings"]["1080p | gpuimage normalize_batch(out=), frame made once"]["median_us"] == 50.0
    prepared = results["timings"]["1080p | gpuimage PreparedBatch(out=)(frames), frame made once"]
    assert prepared["median_us"] == 50.0
    assert "note" not in prepared
    assert "PreparedBatch" in stand_in.calls
    assert "of 1 targets passed." in out
    assert results["config"] == {"calls": 200, "repeats": 5, "warmup": 30, "gpu_calls": 50}
    first_cv = results["timings"]["1080p | CV-CUDA cvtcolor+rccr x N+normalize (NCHW planes)"]
    assert first_cv["note"].startswith("WRONG OUTPUT")
    assert all(diff is None or diff > 1 for diff in first_cv["max_abs_diff"].values())
