"""examples/pipeline.py: decode -> preprocess -> infer -> draw -> encode, on the host and on a GPU;
examples/demo.py (``scripts/dev demo``): one image, every view sharing one pointer;
examples/two_process_pipeline.py: a decoder process and an inference process around a SharedRing;
examples/ray_pipeline.py: a decoder actor and an inference actor, frames passed as Ray arguments."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import torch

from file_modules import load_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline.py"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
TWO_PROCESS = Path(__file__).resolve().parents[1] / "examples" / "two_process_pipeline.py"
RAY_PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "ray_pipeline.py"


@pytest.fixture(scope="module")
def pipeline() -> ModuleType:
    """The example, imported from its file (examples/ is not a package)."""
    return load_file("pipeline_example", EXAMPLE)


def _decode(jpeg: bytes) -> npt.NDArray[np.uint8]:
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return pixels.astype(np.uint8)


def _check_drawn(pipeline: ModuleType, result: Any) -> None:
    """The output has the input's size, green outlines where the boxes are, and the input elsewhere."""
    before, after = _decode(pipeline.make_test_jpeg()), _decode(result.jpeg)
    assert after.shape == before.shape == (result.height, result.width, 3) == (480, 640, 3)
    outline = np.zeros(before.shape[:2], bool)
    for detection, roi in zip(result.detections, pipeline.ROIS, strict=True):
        x, y, width, height = detection.box
        assert roi.x <= x
        assert x + width <= roi.x + roi.width
        assert roi.y <= y
        assert y + height <= roi.y + roi.height
        assert 0.0 <= detection.score <= 1.0
        for sx, sy, sw, sh in pipeline.box_outline(detection.box, pipeline.BOX_THICKNESS):
            outline[sy : sy + sh, sx : sx + sw] = True
    # In BGR: green is channel 1. JPEG blurs colour edges, so compare medians over the outline.
    blue, green, red = (np.median(after[..., channel][outline]) for channel in range(3))
    assert green >= 200
    assert blue <= 90
    assert red <= 90
    assert np.median(before[..., 1][outline]) <= 60  # the input had no green there: pixels changed
    # Away from the outlines (beyond JPEG's 8x8 blocks) the output is the input, re-encoded.
    near = cv2.dilate(outline.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    difference = np.abs(after.astype(np.int16) - before.astype(np.int16))[~near]
    assert difference.mean() < 2.0


def test_host_path(pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "boxes.jpg"
    assert pipeline.main(["--output", str(output), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cpu path: decoded and encoded with opencv, boxes drawn with NumPy\n")
    assert f"wrote {output} (640x480, " in out

    result = pipeline.run(pipeline.make_test_jpeg(), device="cpu", codec="opencv")
    assert (result.device, result.codec, result.drawn_with) == ("cpu", "opencv", "NumPy")
    assert output.read_bytes() == result.jpeg  # the same weights and the same pixels every run
    _check_drawn(pipeline, result)


def test_without_output_the_jpeg_goes_to_a_new_temporary_folder_never_the_cwd(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 14: the example wrote pipeline-output.jpg into the repository (its cwd)."""
    cwd, temporary = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where gettempdir() points
    assert pipeline.main(["--device", "cpu"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    written = re.fullmatch(r"wrote (.+) \(640x480, (\d+) bytes\)", last)
    assert written is not None, last
    output = Path(written[1])
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    assert output.name == "pipeline-output.jpg"
    assert output.parent.parent == temporary  # a folder of its own, in the temporary folder
    assert output.read_bytes() == pipeline.run(pipeline.make_test_jpeg(), device="cpu", codec="opencv").jpeg
    assert int(written[2]) == output.stat().st_size
    assert pipeline.main(["--device", "cpu"]) == 0  # a second run: a second folder, the first kept
    assert len(list(temporary.iterdir())) == 2


def test_a_usage_error_makes_no_temporary_folder(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(pipeline, "nvimgcodec_installed", lambda: False)
    _usage_error(pipeline, capsys, "--codec", "nvimgcodec")
    assert list(tmp_path.iterdir()) == []


def test_nvimgcodec_needs_the_gpu(pipeline: ModuleType) -> None:
    with pytest.raises(ValueError, match="nvImageCodec decodes into GPU memory"):
        pipeline.run(pipeline.make_test_jpeg(), device="cpu", codec="nvimgcodec")


def _usage_error(pipeline: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the example's command line, expecting argparse's usage error; its message."""
    with pytest.raises(SystemExit) as exited:
        pipeline.main(list(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_device_cuda_without_a_gpu_is_a_usage_error(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "boxes.jpg"
    message = _usage_error(pipeline, capsys, "--device", "cuda", "--output", str(output))
    assert message.endswith("error: --device cuda: torch sees no CUDA GPU here; use --device cpu (or auto)")
    assert not output.exists()


def test_codec_nvimgcodec_where_it_cannot_run_is_a_usage_error(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "boxes.jpg"
    message = _usage_error(
        pipeline, capsys, "--codec", "nvimgcodec", "--device", "cpu", "--output", str(output)
    )
    if pipeline.nvimgcodec_installed():
        assert (
            "--codec nvimgcodec decodes into GPU memory, which needs a CUDA GPU and --device cuda" in message
        )
    else:
        assert (
            "--codec nvimgcodec: nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12" in message
        )
    assert not output.exists()


def test_codec_nvimgcodec_without_nvimgcodec_is_a_usage_error(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "nvimgcodec_installed", lambda: False)
    message = _usage_error(pipeline, capsys, "--codec", "nvimgcodec", "--output", str(tmp_path / "boxes.jpg"))
    assert message.endswith(
        "error: --codec nvimgcodec: nvImageCodec is not installed "
        "(pip install nvidia-nvimgcodec-cu12 or -cu13); use --codec opencv (or auto)"
    )


@pytest.mark.parametrize(
    ("where", "reason"),
    [("missing/boxes.jpg", "its folder {tmp}/missing does not exist"), (".", "it is a folder")],
    ids=["folder-missing", "a-folder"],
)
def test_unwritable_output_is_a_usage_error(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, reason: str
) -> None:
    output = tmp_path / where
    message = _usage_error(pipeline, capsys, "--device", "cpu", "--output", str(output))
    assert message.endswith(f"error: --output {output} cannot be written: {reason.format(tmp=tmp_path)}")


def test_output_that_fails_while_writing_is_a_message(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Path, data: bytes) -> int:
        raise OSError(28, os.strerror(28), str(self))

    output = tmp_path / "boxes.jpg"
    monkeypatch.setattr(Path, "write_bytes", disk_full)
    assert pipeline.main(["--device", "cpu", "--output", str(output)]) == 1
    assert capsys.readouterr().err == f"pipeline: could not write {output}: No space left on device\n"


def test_build_model_leaves_the_callers_random_state_alone(pipeline: ModuleType) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(4)  # what the caller's next draw is without the model in between
    torch.manual_seed(1234)
    first = pipeline.build_model("cpu")
    assert torch.equal(torch.rand(4), expected)
    second = pipeline.build_model("cpu")
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same weights every time, whatever the caller's seed
    torch.manual_seed(99)
    third = pipeline.build_model("cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), third.parameters(), strict=True))


def test_drawing_library_falls_back_to_torch_without_cupy(
    pipeline: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_gpu_first = "GpuMat" if cv2.cuda.getCudaEnabledDeviceCount() > 0 else None
    assert pipeline.drawing_library(on_gpu=False) == "NumPy"
    assert pipeline.drawing_library(on_gpu=True) == (on_gpu_first or "CuPy")  # CuPy imports here
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if only torch were installed
    assert pipeline.drawing_library(on_gpu=True) == (on_gpu_first or "torch")
    assert pipeline.drawing_library(on_gpu=False) == "NumPy"


@pytest.mark.cuda
def test_gpu_path_draws_with_torch_when_cupy_is_missing(
    pipeline: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cv2.cuda.getCudaEnabledDeviceCount() > 0:
        pytest.skip("OpenCV has CUDA here: the boxes are drawn through a GpuMat")
    monkeypatch.setattr(pipeline, "_cupy_usable", lambda: False)
    result = pipeline.run(pipeline.make_test_jpeg(), device="cuda", codec="opencv")
    assert result.drawn_with == "torch"
    _check_drawn(pipeline, result)


@pytest.mark.cuda
def test_gpu_path_matches_the_host_path(pipeline: ModuleType) -> None:
    jpeg = pipeline.make_test_jpeg()
    result = pipeline.run(jpeg, device="cuda", codec="opencv")
    assert result.drawn_with == ("GpuMat" if cv2.cuda.getCudaEnabledDeviceCount() > 0 else "CuPy")
    _check_drawn(pipeline, result)
    host = pipeline.run(jpeg, device="cpu", codec="opencv")
    for on_gpu, on_host in zip(result.detections, host.detections, strict=True):
        assert on_gpu.score == pytest.approx(on_host.score, abs=1e-3)
        assert all(abs(a - b) <= 1 for a, b in zip(on_gpu.box, on_host.box, strict=True))  # float rounding


@pytest.mark.cuda
def test_gpu_path_with_nvimgcodec(
    pipeline: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not pipeline.nvimgcodec_installed():
        pytest.skip("nvidia-nvimgcodec is not installed")
    result = pipeline.run(pipeline.make_test_jpeg(), device="cuda", codec="nvimgcodec")
    assert result.codec == "nvimgcodec"
    _check_drawn(pipeline, result)
    output = tmp_path / "boxes.jpg"
    assert pipeline.main(["--output", str(output)]) == 0  # auto: the GPU, and nvImageCodec
    assert capsys.readouterr().out.startswith("cuda path: decoded and encoded with nvimgcodec")


# -- examples/demo.py (issue 12: the demo left the package; `scripts/dev demo` runs this file) ----


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    """The demo, imported from its file."""
    return load_file("demo_example", DEMO)


def _run_demo(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def _broken_packages(tmp_path: Path, errors: dict[str, str]) -> dict[str, str]:
    """An environment in which each named package raises the given error on import."""
    for package, raise_line in errors.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(raise_line + "\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def _demo_rows(lines: list[str]) -> dict[str, tuple[str, str]]:
    """Each printed row of the demo by its name, with the explanation line under it."""
    return {
        line[:40].strip(): (line, below)
        for line, below in zip(lines, [*lines[1:], ""], strict=True)
        if line.startswith("  ") and not line.startswith("   ") and "ptr=0x" in line
    }


# The crop's explanation: ptr - image.ptr = y * row_pitch + x * pixel_stride = 1 * 18 + 1 * 3 = 21 bytes
ARITHMETIC = re.compile(
    r"^      proves: ptr - image\.ptr = y \* row_pitch \+ x \* pixel_stride = "
    r"(\d+) \* (\d+) \+ (\d+) \* (\d+) = (\d+) bytes: "
)


def _number(pattern: str, text: str, base: int = 10) -> int:
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return int(found[1], base)


def _check_crop_arithmetic(lines: list[str]) -> None:
    """The crop's printed arithmetic adds up, and equals the pointers' real difference (issue 14)."""
    image = next(line for line in lines if line.startswith("GpuImage("))
    base = _number(r"ptr=(0x[0-9a-f]+)\)$", image, 16)
    row_pitch = _number(r"row_pitch=(\d+)", image)
    (name, (row, explanation)) = next((n, r) for n, r in _demo_rows(lines).items() if n.startswith("crop("))
    x, y = (int(value) for value in re.findall(r"\d+", name)[:2])  # crop(x, y, width, height)
    pointer = _number(r"ptr=(0x[0-9a-f]+)", row, 16)
    arithmetic = ARITHMETIC.match(explanation)
    assert arithmetic is not None, explanation
    printed_y, printed_pitch, printed_x, pixel_stride, total = (int(group) for group in arithmetic.groups())
    assert (printed_y, printed_pitch, printed_x, pixel_stride) == (y, row_pitch, x, 3)  # uint8 RGB: 3 bytes
    assert printed_y * printed_pitch + printed_x * pixel_stride == total
    assert pointer - base == total
    assert row.endswith(f"offset +{total} bytes")


def test_demo_runs() -> None:
    result = _run_demo()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(("Host path (no GPU here):", "GPU path: "))
    assert "same memory" in result.stdout
    assert "skipped" not in result.stdout  # torch, CuPy and OpenCV all import here
    rows = _demo_rows(lines)
    assert len(rows) >= 5
    for row, explanation in rows.values():  # every row says what it proves, and it held
        assert explanation.startswith("      proves: "), (row, explanation)
    _check_crop_arithmetic(lines)


def test_demo_host_path_shows_every_view_sharing_one_pointer(
    demo: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "gpu_via", lambda unavailable: None)  # the host path, GPU or not
    assert demo.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Host path (no GPU here):"
    assert lines[2:4] == demo.LEGEND.splitlines()
    rows = _demo_rows(lines)
    for name, proves in (
        ("as_numpy()", "the wrapped NumPy array is the image's memory, its byte strides as they were"),
        ("as_torch() (CPU tensor)", "torch sees the same host bytes"),
        ("torch.utils.dlpack.from_dlpack(image)", "torch consumed gpuimage's DLPack capsule"),
        ("numpy.from_dlpack(image)", "NumPy consumed the same capsule"),
    ):
        row, explanation = rows[name]
        assert row.endswith("same memory"), row
        assert "strides(bytes)=(18, 3, 1)" in row
        assert explanation == f"      proves: same pointer, so no copy: {proves}"
    row, explanation = rows["crop(1, 1, 3, 2).as_numpy()"]
    assert "shape=(2, 3, 3)" in row
    assert row.endswith("offset +21 bytes")  # one row of 18 bytes plus one pixel of 3
    assert explanation == (
        "      proves: ptr - image.ptr = y * row_pitch + x * pixel_stride = 1 * 18 + 1 * 3 = 21 bytes: "
        "a crop is a pointer into its parent, with the parent's row pitch: no copy"
    )
    _check_crop_arithmetic(lines)
    write = lines.index("  a write through NumPy is seen by every view: 42")
    assert lines[write + 1].startswith("      proves: one memory")
    copy = next(
        index for index, line in enumerate(lines) if line.startswith("  to_layout('CHW') copies: ptr=")
    )
    assert lines[copy + 1].startswith("      proves: views never copy, conversions always do")


def test_demo_explains_a_crop_from_the_images_own_pitch(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pitched image (rows of 24 bytes holding 18 of pixels): the offset is worked out from its
    pitch, and a pointer that does not match the claim is reported, not explained away."""
    image = demo.GpuImage.from_numpy(np.zeros((4, 8, 3), np.uint8)[:, :6], layout="HWC")
    crop = demo.CropOffset.of(image, 2, 1)
    assert crop.nbytes == 1 * 24 + 2 * 3
    table = demo.Table(image, {})
    real = image.crop(2, 1, 3, 2)
    table.row("real", lambda: (real.ptr, real.shape, real.strides), proves="it holds", crop=crop)
    table.row("off", lambda: (image.ptr + 21, real.shape, real.strides), proves="it holds", crop=crop)
    table.row("repitched", lambda: (image.ptr, image.shape, (18, 3, 1)), proves="it holds")
    assert table.shown == 3
    explanations = capsys.readouterr().out.splitlines()[1::2]
    assert [line[:6] for line in explanations] == [" " * 6] * 3  # indented under the row
    assert [line[6:] for line in explanations] == [
        "proves: ptr - image.ptr = y * row_pitch + x * pixel_stride = 1 * 24 + 2 * 3 = 30 bytes: it holds",
        "NOT as claimed: expected the image's pointer +30 bytes and its row pitch 24, got +21 bytes and 24",
        "NOT as claimed: expected the image's pointer +0 bytes and its row pitch 24, got +0 bytes and 18",
    ]


def test_demo_with_a_broken_torch_shows_the_other_views(tmp_path: Path) -> None:
    """torch whose import raises OSError (a missing libtorch_cuda.so): its rows say so, the rest run."""
    env = _broken_packages(
        tmp_path, {"torch": "raise OSError('libtorch_cuda.so: cannot open shared object file')"}
    )
    result = _run_demo(env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    broken = "skipped: torch fails to import (OSError: libtorch_cuda.so: cannot open shared object file)"
    assert any(line.startswith("  as_torch() ") and line.endswith(broken) for line in lines)
    assert any(
        line.startswith("  torch.utils.dlpack.from_dlpack(image) ") and line.endswith(broken)
        for line in lines
    )
    # Without torch, CuPy alone reaches the GPU where there is one (its runtime and memory), so the
    # GPU path runs there; elsewhere the host path does. Either way the views without torch work.
    other = "  as_cupy() " if lines[0].startswith("GPU path: ") else "  numpy.from_dlpack(image) "
    other_row = next(line for line in lines if line.startswith(other))
    assert other_row.endswith("same memory")


def test_demo_exits_1_when_no_view_can_be_shown(
    demo: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise MemoryError("no host memory left")

    monkeypatch.setattr(demo, "gpu_via", lambda unavailable: None)
    monkeypatch.setattr(demo.GpuImage, "from_numpy", refuse)
    assert demo.main() == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "demo: the host path could not run: MemoryError: no host memory left",
        "demo: no view of the image could be shown; see the reasons above.",
    ]


@pytest.mark.cuda
def test_demo_gpu_path_without_cupy_and_opencv(tmp_path: Path) -> None:
    """On a GPU with CuPy and OpenCV both failing to import: their rows say why, torch's rows run."""
    env = _broken_packages(
        tmp_path,
        {
            "cupy": "raise ImportError('libcudart.so.13: not found')",
            "cv2": "raise ImportError('libGL.so.1: not found')",
        },
    )
    result = _run_demo(env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("GPU path: ")
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert rows["as_torch()"].endswith("same memory")
    assert rows["as_cupy()"].endswith(
        "skipped: cupy fails to import (ImportError: libcudart.so.13: not found)"
    )
    assert rows["as_gpumat()"].endswith("skipped: cv2 fails to import (ImportError: libGL.so.1: not found)")


# -- examples/two_process_pipeline.py (issue 15): decode in one process, infer in another ----------

FRAME_LINE = re.compile(r"frame (\d+): classes \[([\d, ]*)\] mean (\S+) checksum (\S+)")


@pytest.fixture(scope="module")
def two_process() -> ModuleType:
    return load_file("two_process_example", TWO_PROCESS)


def _run_two_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TWO_PROCESS), *argv], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what it says on a machine without a GPU")
def test_two_process_pipeline_without_a_gpu_says_it_needs_one() -> None:
    result = _run_two_process("--frames", "5")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "two_process_pipeline: this example needs a CUDA GPU (frames cross processes by CUDA IPC); "
        "torch sees none here, so nothing ran.\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slots", "1"], "argument --slots: expected a whole number from 2 to 4096, got '1'"),
        (["--frames", "0"], "argument --frames: expected a whole number from 1 to 1000000, got '0'"),
        (["--frames", "-3"], "argument --frames: expected a whole number from 1 to 1000000, got '-3'"),
    ],
    ids=["one-slot", "no-frames", "negative"],
)
def test_two_process_pipeline_usage_errors(
    two_process: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _usage_error(two_process, capsys, *argv).endswith(f"error: {message}")


def test_two_process_checksum_tells_frames_regions_and_order_apart(two_process: ModuleType) -> None:
    batch = torch.rand((4, 3, 8, 8), generator=torch.Generator().manual_seed(5))
    total = float(two_process.checksum(batch))
    assert float(two_process.checksum(batch.clone())) == total
    assert float(two_process.checksum(batch[[1, 0, 2, 3]])) != pytest.approx(total, rel=1e-9)  # regions
    assert float(two_process.checksum(batch.transpose(2, 3))) != pytest.approx(total, rel=1e-9)  # pixels
    assert float(two_process.checksum(batch + 1e-3)) != pytest.approx(total, rel=1e-9)  # values


def test_two_process_model_weights_are_fixed_whatever_the_callers_seed(two_process: ModuleType) -> None:
    torch.manual_seed(1)
    first, expected = two_process.build_model(), torch.rand(3)
    torch.manual_seed(1)
    second = two_process.build_model()
    assert torch.equal(torch.rand(3), expected)  # the caller's random state was left alone
    torch.manual_seed(2)
    third = two_process.build_model()
    for a, b, c in zip(first.parameters(), second.parameters(), third.parameters(), strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, c)  # the inference process and a test's reference get the same model


def test_two_process_messages_from_a_reader_that_ended(
    two_process: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parent's side of the queue: a last message put just before the reader exited is still
    shown; then a dead reader is an error, as is an error the reader reported."""
    results = multiprocessing.get_context("spawn").Queue()
    dead = SimpleNamespace(is_alive=lambda: False, exitcode=-9)
    try:
        results.put(("frame", 7, [1, 2], -0.25, 1234.5))
        two_process.show(two_process.wait_for(results, dead))
        shown = capsys.readouterr().out
        assert shown == "frame 7: classes [1, 2] mean -0.250000 checksum 1.234500000000e+03\n"
        assert FRAME_LINE.fullmatch(shown.rstrip()) is not None  # what the GPU tests parse
        assert list(two_process.arrived(results)) == []
        with pytest.raises(RuntimeError, match=r"^the inference process stopped \(exit code -9\)$"):
            two_process.wait_for(results, dead)
        results.put(("error", "LifetimeError: the writer is gone"))
        with pytest.raises(RuntimeError, match=r"^the inference process failed: LifetimeError: the writer"):
            two_process.wait_for(results, dead)
    finally:
        results.close()
        results.join_thread()


def _reference(two_process: ModuleType, fills: Any) -> list[tuple[float, float, list[int], float]]:
    """What the inference process must print for each frame, computed here in one process: the batch
    checksum, the logits' mean, the classes, and the smallest top-2 margin (argmax is compared only
    where a rounding difference between the processes' kernels cannot flip it)."""
    frame = _empty_frame(two_process)
    batch = torch.empty((len(two_process.ROIS), 3, *two_process.SIZE), device="cuda")
    model = two_process.build_model().cuda()
    expected = []
    with torch.inference_mode():
        for fill in fills:
            fill(frame.as_torch())
            two_process.preprocess(frame, batch)
            logits = model(batch)
            top = logits.topk(2, dim=1).values
            expected.append(
                (
                    float(two_process.checksum(batch)),
                    float(logits.mean()),
                    logits.argmax(1).tolist(),
                    float((top[:, 0] - top[:, 1]).min()),
                )
            )
    return expected


def _empty_frame(two_process: ModuleType) -> Any:
    return two_process.GpuFrame.empty(
        two_process.WIDTH, two_process.HEIGHT, format="NV12", colour=two_process.COLOUR
    )


def _check_two_process_output(result: subprocess.CompletedProcess[str], expected: list[Any]) -> str:
    """Every frame printed once, in order, with the values computed here; the header line."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    printed = [FRAME_LINE.fullmatch(line) for line in lines if line.startswith("frame ")]
    assert [int(found[1]) for found in printed if found is not None] == list(range(len(expected)))
    for found, (total, mean, classes, margin) in zip(printed, expected, strict=True):
        assert found is not None
        index = found[1]
        assert float(found[4]) == pytest.approx(total, rel=1e-9), f"frame {index}: not the frame written"
        assert float(found[3]) == pytest.approx(mean, abs=1e-4), f"frame {index}: model output"
        if margin > 1e-3:
            assert [int(c) for c in found[2].split(", ")] == classes, f"frame {index}: classes"
    totals = [total for total, *_ in expected]
    assert len(set(totals)) == len(totals), "frames that do not differ cannot show a stale slot"
    assert re.fullmatch(rf"{len(expected)} frames through 3 slots in \S+ s: \S+ frames/s", lines[-1])
    return lines[0]


@pytest.mark.cuda
def test_two_process_pipeline_synthetic_frames_arrive_in_order_with_their_values(
    two_process: ModuleType,
) -> None:
    result = _run_two_process("--synthetic", "--frames", "20", "--slots", "3")
    header = _check_two_process_output(result, _reference(two_process, two_process.synthetic_frames(20)))
    assert header.startswith("decoder: synthetic frames (--synthetic); 3 slots of 1280x720 NV12; ")


@pytest.mark.cuda
def test_two_process_pipeline_with_nvdec_frames(two_process: ModuleType, tmp_path: Path) -> None:
    reason = two_process.unusable_decoder()
    if reason is not None:
        pytest.skip(f"no NVDEC frames here: {reason}")
    result = _run_two_process("--frames", "20", "--slots", "3")
    # The same clip (x264 is deterministic), decoded here: the reference for every frame.
    expected = _reference(two_process, two_process.nvdec_frames(20, tmp_path))
    header = _check_two_process_output(result, expected)
    assert header.startswith("decoder: NVDEC frames (PyNvVideoCodec) of an H.264 clip encoded by PyAV; ")


# -- examples/ray_pipeline.py (issue 15): the same with Ray actors ---------------------------------


@pytest.fixture(scope="module")
def ray_example() -> ModuleType:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):  # CI installs the test extra, which pins Ray
            pytest.fail("ray is not installed; the test extra pins it", pytrace=False)
        pytest.skip("ray is not installed (the test extra pins it)")
    return load_file("ray_example", RAY_PIPELINE)


def _ray_reference(ray_example: ModuleType, device: str, count: int) -> list[tuple[float, float, list[int]]]:
    """What the inference actor must answer for each frame, computed here in one process."""
    frame = ray_example.GpuFrame.empty(1280, 720, format="NV12", colour=ray_example.COLOUR, device=device)
    base = ray_example.gradient(device)
    model = ray_example.build_model().to(device)
    batch = torch.empty((len(ray_example.ROIS), 3, *ray_example.SIZE), device=device)
    expected = []
    for index in range(count):
        _, classes, mean, total = ray_example.answer(
            index, ray_example.fill(frame, base, index), model, batch
        )
        expected.append((total, mean, classes))
    return expected


def _check_ray_output(ray_example: ModuleType, device: str, *argv: str) -> str:
    result = subprocess.run(
        [sys.executable, str(RAY_PIPELINE), "--frames", "3", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    expected = _ray_reference(ray_example, device, 3)
    for index, (line, (total, mean, classes)) in enumerate(zip(lines[1:4], expected, strict=True)):
        found = FRAME_LINE.fullmatch(line)
        assert found is not None, line
        assert int(found[1]) == index, "answers in order"
        assert float(found[4]) == pytest.approx(total, rel=1e-9), f"frame {index}: not the frame sent"
        assert float(found[3]) == pytest.approx(mean, abs=1e-4), f"frame {index}: model output"
        if device == "cpu":
            assert [int(c) for c in found[2].split(", ")] == classes, f"frame {index}: classes"
    assert len({total for total, _, _ in expected}) == 3, "frames that do not differ cannot show a mix-up"
    assert re.fullmatch(r"3 frames in \S+ s: \S+ frames/s", lines[-1])
    return lines[0]


def test_ray_pipeline_host_frames_arrive_in_order_with_their_values(ray_example: ModuleType) -> None:
    header = _check_ray_output(ray_example, "cpu", "--host")
    assert header == (
        "ray_pipeline: 1280x720 NV12 synthetic frames, host frames by value through the object store"
    )


@pytest.mark.cuda
def test_ray_pipeline_gpu_frames_arrive_in_order_with_their_values(ray_example: ModuleType) -> None:
    header = _check_ray_output(ray_example, "cuda")
    assert header == "ray_pipeline: 1280x720 NV12 synthetic frames, GPU frames by CUDA IPC"


def test_ray_pipeline_usage_errors(ray_example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    message = _usage_error(ray_example, capsys, "--in-flight", "0")
    assert message.endswith("error: argument --in-flight: expected a whole number from 1 to 64, got '0'")
