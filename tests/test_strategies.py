"""gpuimage.strategies: devices honoured, defaults that work without a GPU, the docs example runs;
and ``st.from_type(GpuImage[...])`` through the hypothesis entry point (``_hypothesis_hook``)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from file_modules import load_file
from gpuimage import CHW, CPU, HWC, Device, GpuImage, ImageSpec, Layout, UInt8
from gpuimage.strategies import image_specs, images

GUARANTEES = Path(__file__).resolve().parents[1] / "docs" / "guarantees.md"


@given(image_specs())
def test_image_specs_default_to_host_memory(spec: ImageSpec) -> None:
    # issue 11, defect 16: image_specs() defaulted to cuda:0, so images(image_specs()) needed a GPU
    assert spec.device == CPU


@given(images(image_specs(device=0), device="cpu"))
def test_images_honour_device_over_the_specs_device(image: GpuImage) -> None:
    # issue 11, defect 16: images(specs, device="cpu") ignored device and allocated on the spec's GPU
    assert image.device == CPU  # and the pattern was written through host memory


@given(images(image_specs(device="cpu", max_side=8)))
def test_images_keep_the_specs_device_by_default(image: GpuImage) -> None:
    assert image.device == CPU


@given(st.data())
def test_images_place_specs_on_the_given_device_without_changing_them(data: st.DataObject) -> None:
    # issue 11, defect 16: only the device changes; every other field is the drawn spec's
    spec = data.draw(image_specs(device=3, max_side=8))
    image = data.draw(images(st.just(spec), device="cpu"))
    assert image.spec == spec.replace(device=CPU)
    assert spec.device == Device("cuda", 3)


def test_the_guarantees_example_runs_without_a_gpu(tmp_path: Path) -> None:
    # issue 11, defect 16: the example in docs/guarantees.md failed on a machine without a GPU
    blocks = re.findall(r"```python\n(.*?)```", GUARANTEES.read_text(), flags=re.DOTALL)
    example = next(block for block in blocks if "gpuimage.strategies" in block)
    module_path = tmp_path / "guarantees_example.py"
    # the docs leave my_preprocess to the reader: an identity that records what it saw
    module_path.write_text(
        "SEEN = []\n\ndef my_preprocess(image):\n    SEEN.append(image)\n    return image\n\n" + example
    )
    module = load_file("guarantees_example", module_path)
    module.test_my_preprocess_keeps_the_shape()
    assert module.SEEN
    assert all(image.device == CPU for image in module.SEEN)


@settings(max_examples=30, database=None)
@given(st.from_type(GpuImage[CHW, UInt8]), st.from_type(GpuImage[HWC]))
def test_from_type_draws_the_layout_and_dtype_the_type_names(
    planar: GpuImage[CHW, UInt8], interleaved: GpuImage[HWC]
) -> None:
    assert planar.layout is Layout.CHW
    assert planar.dtype == "uint8"
    assert interleaved.layout is Layout.HWC
