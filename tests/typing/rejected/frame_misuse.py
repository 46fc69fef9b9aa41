"""A frame is not an image: misuse that must be a static error (see layout_mixups.py for the marks)."""

from __future__ import annotations

import torch

from gpuimage import CHW, GpuFrame, GpuImage


def gpumat_of_a_frame(frame: GpuFrame) -> None:
    frame.as_gpumat()  # mypy: attr-defined  # pyright: reportAttributeAccessIssue


def a_frame_where_an_image_is_expected(frame: GpuFrame) -> None:
    image: GpuImage = frame  # mypy: assignment  # pyright: reportAssignmentType
    del image


def to_image_tracks_the_layout(frame: GpuFrame) -> None:
    packed: GpuImage[CHW] = frame.to_image()  # mypy: assignment  # pyright: reportAssignmentType
    del packed


def an_unknown_format(tensor: torch.Tensor) -> None:
    GpuFrame.from_dlpack(tensor, format="YUY2")  # mypy: arg-type  # pyright: reportArgumentType
