"""A three-stage pipeline whose layouts and dtypes are in the signatures (docs/typed-pipelines.md).

It has two deliberate mistakes that mypy and pyright reject; tests/test_docs_figures.py runs mypy
on this file and checks that the page quotes its messages exactly.
"""

import torch

from gpuimage import CHW, HWC, GpuImage, UInt8


def decode(frame: torch.Tensor) -> GpuImage[HWC, UInt8]:
    return GpuImage.from_torch(frame, layout="HWC").expect("HWC", UInt8)


def preprocess(image: GpuImage[HWC, UInt8]) -> GpuImage[CHW, UInt8]:
    return image.crop(0, 0, 224, 224).to_layout("CHW")


def infer(planar: GpuImage[CHW]) -> torch.Tensor:
    return planar.as_torch().float().mean()


def pipeline(frame: torch.Tensor) -> torch.Tensor:
    return infer(decode(frame))  # forgot preprocess()


def show(planar: GpuImage[CHW, UInt8]) -> None:
    planar.as_gpumat()  # a GpuMat holds one interleaved plane
