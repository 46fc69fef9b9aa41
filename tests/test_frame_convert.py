"""``_frame_convert`` on CPU: the recipe each public call builds, what reaches the executor, and every
refusal; host frames converted end to end against ``_colour.yuv_to_rgb`` (the definition)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

import gpuimage as gi
from gpuimage import ColorSpec, GpuFrame, GpuImage, LayoutError, SpecError
from gpuimage._colour import yuv_to_rgb
from gpuimage._conversions import override_executor
from gpuimage._executor import Operand
from gpuimage._formats import ChannelOrder, PixelFormat
from gpuimage._frame_convert import batch_sources, frame_to_image, is_frame, normalize_frame
from gpuimage._sampling import FrameSource, SampleRecipe

BT601 = ColorSpec(matrix="BT601", range="LIMITED")


def _nv12(
    height: int = 4, width: int = 6, seed: int = 0, colour: ColorSpec | None = BT601
) -> tuple[GpuFrame, list[npt.NDArray[np.uint8]]]:
    rng = np.random.default_rng(seed)
    luma = rng.integers(16, 236, (height, width, 1), dtype=np.uint8)
    chroma = rng.integers(16, 241, (height // 2, width // 2, 2), dtype=np.uint8)
    return GpuFrame.from_planes([luma, chroma], format="NV12", colour=colour), [luma, chroma]


@dataclass
class Recorder:
    """An executor that records what ``convert_frames`` is handed and computes nothing."""

    calls: list[tuple[list[FrameSource], Operand, int, SampleRecipe, int]]

    @property
    def name(self) -> str:
        return "recorder"

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return 0, None

    def convert(self, *args: object) -> None:
        raise AssertionError("a frame conversion must not call convert")

    def convert_replay(self, *args: object) -> None:
        return None

    def convert_batch(self, *args: object) -> None:
        raise AssertionError("a frame conversion must not call convert_batch")

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        self.calls.append((list(sources), target, item_pitch, recipe, stream))

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> None:
        return None


def test_a_frame_is_told_apart_from_an_image() -> None:
    frame, _ = _nv12()
    assert is_frame(frame)
    assert not is_frame(frame.planes[0])
    assert not is_frame(np.zeros((2, 2)))


def test_to_image_hands_the_executor_the_whole_frame_and_a_uint8_recipe() -> None:
    frame, _ = _nv12()
    recorder = Recorder([])
    with override_executor(recorder):
        image = frame_to_image(frame, layout="CHW", dtype="uint8", order="BGR")
    ((sources, target, item_pitch, recipe, stream),) = recorder.calls
    assert sources == [FrameSource(PixelFormat.NV12, frame.planes, BT601, (0, 0, 6, 4))]
    assert target is image
    assert item_pitch == 0
    assert stream == 0
    assert (image.height, image.width, image.channels, image.dtype, image.layout) == (
        4,
        6,
        3,
        "uint8",
        gi.Layout.CHW,
    )
    assert recipe == SampleRecipe(
        4, 6, "nearest", False, ChannelOrder.BGR, (255.0,) * 3, (0.0,) * 3, (0.0,) * 3
    )


def test_normalize_of_a_frame_scales_values_in_unit_range() -> None:
    frame, _ = _nv12()
    recorder = Recorder([])
    with override_executor(recorder):
        image = gi.normalize(frame, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0), dtype="float16")
    recipe = recorder.calls[0][3]
    assert recipe.factors == (2.0, 4.0, 0.5)
    assert recipe.shifts == (-1.0, -1.0, -0.0)
    assert image.dtype == "float16"
    assert image.layout is gi.Layout.CHW


def test_refusals_name_the_fix() -> None:
    frame, _ = _nv12()
    unknown, _ = _nv12(colour=None)
    with pytest.raises(SpecError, match=r"colour=None .*with_colour"):
        frame_to_image(unknown, layout="HWC", dtype="uint8", order="RGB")
    with pytest.raises(SpecError, match="order 'RGB', 'BGR', 'RGBA' or 'BGRA'"):
        frame_to_image(frame, layout="HWC", dtype="uint8", order="UNKNOWN")
    with pytest.raises(SpecError, match="dtype uint8, float32"):
        frame_to_image(frame, layout="HWC", dtype="int16", order="RGB")
    with pytest.raises(SpecError, match="reverse_channels=True"):
        gi.normalize(frame, 0.5, 0.25, reverse_channels=True)
    with pytest.raises(LayoutError, match="order for a 1-channel image"):  # a plane is no frame
        gi.normalize(frame.planes[0], 0.5, 0.25, order="BGR")
    chw = GpuImage.from_numpy(np.zeros((3, 4, 4), np.uint8), layout="CHW")
    with pytest.raises(LayoutError, match=r"to_layout\('HWC'\)"):
        batch_sources([chw], None, "test")
    with pytest.raises(SpecError, match="inside the 6x4 source"):
        batch_sources([frame], [(4, 0, 4, 4)], "test")
    with pytest.raises(SpecError, match="one roi per item"):
        batch_sources([frame, frame], [None], "test")
    gray = GpuImage.from_numpy(np.zeros((4, 6, 1), np.uint8), layout="HWC")
    with pytest.raises(SpecError, match="one format and dtype"):
        batch_sources([frame, gray], None, "test")
    wrong = GpuImage.from_numpy(np.zeros((3, 4, 5), np.float32), layout="CHW")
    with pytest.raises(SpecError, match=r"expected out of \(height, width"):
        normalize_frame(frame, 0.5, 0.25, dtype=None, scale=None, order="RGB", out=wrong)


@pytest.mark.parametrize(("dtype", "layout"), [("uint8", "HWC"), ("float32", "CHW")])
def test_a_host_frame_converts_as_the_reference_defines(dtype: str, layout: str) -> None:
    frame, arrays = _nv12(6, 8, seed=3)
    image = frame.planes[0]
    result = frame_to_image(frame, layout=layout, dtype=dtype, order="RGB")
    expected = yuv_to_rgb([arrays[0][..., 0], arrays[1]], "NV12", BT601, dtype=dtype)  # type: ignore[arg-type]
    found = result.as_numpy()
    if layout == "CHW":
        found = found.transpose(1, 2, 0)
    if dtype == "uint8":
        np.testing.assert_array_equal(found, expected)
    else:
        np.testing.assert_allclose(found, expected, atol=1e-6)
    assert image.ptr == frame.planes[0].ptr  # the source is untouched


def test_out_that_is_read_only_or_overlaps_the_frame_is_refused() -> None:
    # review findings: normalize(frame, out=) wrote into read-only memory and into the frame itself
    frame, _ = _nv12()
    frozen = np.zeros((3, 4, 6), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(gi.ReadOnlyError, match="writable out"):
        gi.normalize(frame, 0.5, 0.25, out=GpuImage.from_numpy(frozen, layout="CHW"))
    assert not frozen.any()
    memory = np.zeros(4 * 6 * 4 * 3, np.uint8)
    over = GpuFrame.from_planes(
        [memory[:24].reshape(4, 6, 1), memory[24:36].reshape(2, 3, 2)], format="NV12", colour=BT601
    )
    inside = GpuImage.from_numpy(memory.view(np.float32).reshape(3, 4, 6), layout="CHW")
    with pytest.raises(SpecError, match="overlaps the frame's planes"):
        gi.normalize(over, 0.5, 0.25, out=inside)


def test_frames_of_different_colours_are_batched_apart() -> None:
    frame, _ = _nv12()
    other = frame.with_colour(ColorSpec(matrix="BT709", range="FULL"))
    with pytest.raises(SpecError, match="one colour description"):
        batch_sources([frame, other], None, "test")
    assert len(batch_sources([frame, frame.with_colour(BT601)], None, "test")) == 2


def test_reverse_channels_of_a_frame_is_refused_and_order_is_not_guessed() -> None:
    frame, _ = _nv12()
    with override_executor(Recorder([])):
        gi.normalize(frame, 0.5, 0.25, reverse_channels=np.False_)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    with pytest.raises(SpecError):
        gi.normalize(frame, 0.5, 0.25, order="")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
