"""CV-CUDA's route for each case of conversions.py (a helper module: the runner skips it).

CV-CUDA 0.19's Python API, as its operators declare it (python/mod_cvcuda/Op*.cpp):
``reformat(src, layout)``, ``reformat_into(dst, src)`` (same shape and dtype: one
cudaMemcpy2DAsync, so it is also CV-CUDA's pitched -> packed copy), ``convertto(src, dtype, scale,
offset)`` and ``_into(dst, src, scale, offset)`` (one scale and offset for all channels),
``normalize(src, base, scale, flags)`` (input and output of one dtype and layout, NHWC or HWC),
``crop_flip_normalize_reformat(src_varshape, out_shape, out_dtype, out_layout, rect, flip_code,
base, scale, ..., flags=)`` (one fused kernel over an ``ImageBatchVarShape``; flip codes other
than -1, 0, 1 do not flip). Tensors carry a batch dimension (NHWC, NCHW) as in CV-CUDA's samples.

Every builder runs outside the clock and returns the op to time; each op returns its output (the
preallocated torch tensor for ``*_into`` routes), which conversions.py checks against torch's.
The module object is ``Any``: cvcuda ships no type stubs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Op = Callable[[], object]


class Routes:
    """CV-CUDA's routes over one size's frames; every tensor it wraps is held here."""

    def __init__(
        self, cv: Any, hwc: torch.Tensor, roi: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> None:
        self.cv, self.hwc, self.roi = cv, hwc, roi
        self.height, self.width = int(hwc.shape[0]), int(hwc.shape[1])
        self.mean, self.std = mean.reshape(1, 1, 1, 3).contiguous(), std.reshape(1, 1, 1, 3).contiguous()
        self.held: list[object] = []  # wrapped tensors and batches live as long as the routes

    def _wrap(self, tensor: torch.Tensor, layout: str) -> Any:
        self.held.append(tensor)
        return self.cv.as_tensor(tensor, layout)

    def _empty(self, layout: str, dtype: torch.dtype) -> tuple[torch.Tensor, Any]:
        shape = (1, 3, self.height, self.width) if layout == "NCHW" else (1, self.height, self.width, 3)
        tensor = torch.empty(shape, dtype=dtype, device="cuda")
        return tensor, self._wrap(tensor, layout)

    def _flags(self) -> Any:
        return self.cv.NormalizeFlags.SCALE_IS_STDDEV

    # -- HWC -> CHW ----------------------------------------------------------------------------

    def reformat(self) -> Op:
        cv, src = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC")
        return lambda: cv.reformat(src, "NCHW")

    def reformat_into(self) -> Op:
        cv, src = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC")
        target, dst = self._empty("NCHW", torch.uint8)
        return lambda: (cv.reformat_into(dst, src), target)[1]

    # -- pitched -> packed ---------------------------------------------------------------------

    def copy(self) -> Op:
        cv, src = self.cv, self._wrap(self.roi.unsqueeze(0), "NHWC")
        return lambda: cv.reformat(src, "NHWC")

    def copy_into(self) -> Op:
        cv, src = self.cv, self._wrap(self.roi.unsqueeze(0), "NHWC")
        target, dst = self._empty("NHWC", torch.uint8)
        return lambda: (cv.reformat_into(dst, src), target)[1]

    # -- normalize to float32 CHW ---------------------------------------------------------------

    def three_ops(self) -> Op:
        """``convertto`` (/255) + ``normalize`` (mean, std) + ``reformat`` (NCHW): CV-CUDA's samples."""
        cv, src, flags = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC"), self._flags()
        base, scale = self._wrap(self.mean, "NHWC"), self._wrap(self.std, "NHWC")

        def run() -> object:
            unit = cv.convertto(src, np.float32, scale=1 / 255)
            return cv.reformat(cv.normalize(unit, base, scale, flags=flags), "NCHW")

        return run

    def three_ops_into(self) -> Op:
        cv, src, flags = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC"), self._flags()
        base, scale = self._wrap(self.mean, "NHWC"), self._wrap(self.std, "NHWC")
        (_, unit), (_, normed) = self._empty("NHWC", torch.float32), self._empty("NHWC", torch.float32)
        target, dst = self._empty("NCHW", torch.float32)

        def run() -> object:
            cv.convertto_into(unit, src, scale=1 / 255)
            cv.normalize_into(normed, unit, base, scale, flags=flags)
            cv.reformat_into(dst, normed)
            return target

        return run

    def _fused_inputs(self) -> tuple[Any, Any, Any, Any, Any]:
        """(batch of one image, crop rect, flip code, base, scale) of ``crop_flip_normalize_reformat``.

        Raw uint8 in: base = 255 mean and scale = 255 std give ``(x / 255 - mean) / std``.
        """
        cv = self.cv
        batch = cv.ImageBatchVarShape(1)
        batch.pushback(cv.as_image(self.hwc, cv.Format.RGB8))
        self.held.append(batch)
        rect = torch.tensor([0, 0, self.width, self.height], dtype=torch.int32, device="cuda")
        flip = torch.tensor([2], dtype=torch.int32, device="cuda")  # 2: no flip
        base, scale = self._wrap(self.mean * 255, "NHWC"), self._wrap(self.std * 255, "NHWC")
        return batch, self._wrap(rect.view(1, 1, 1, 4), "NHWC"), self._wrap(flip, "N"), base, scale

    def fused(self) -> Op:
        cv, flags = self.cv, self._flags()
        batch, rect, flip, base, scale = self._fused_inputs()
        shape = (1, 3, self.height, self.width)
        return lambda: cv.crop_flip_normalize_reformat(
            batch, shape, np.float32, "NCHW", rect, flip, base, scale, flags=flags
        )

    def fused_into(self) -> Op:
        cv, flags = self.cv, self._flags()
        batch, rect, flip, base, scale = self._fused_inputs()
        target, dst = self._empty("NCHW", torch.float32)
        return lambda: (
            cv.crop_flip_normalize_reformat_into(dst, batch, rect, flip, base, scale, flags=flags),
            target,
        )[1]

    def _uniform(self) -> tuple[float, float]:
        """convertto's one scale and offset: ImageNet's mean and std averaged over the channels."""
        mean, std = float(self.mean.mean()), float(self.std.mean())
        return 1 / (255 * std), -mean / std

    def uniform(self) -> Op:
        """``convertto`` + ``reformat``: not the same output (one affine map for all channels)."""
        cv, src = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC")
        scale, offset = self._uniform()
        return lambda: cv.reformat(cv.convertto(src, np.float32, scale=scale, offset=offset), "NCHW")

    def uniform_into(self) -> Op:
        cv, src = self.cv, self._wrap(self.hwc.unsqueeze(0), "NHWC")
        scale, offset = self._uniform()
        (_, unit), (target, dst) = self._empty("NHWC", torch.float32), self._empty("NCHW", torch.float32)

        def run() -> object:
            cv.convertto_into(unit, src, scale=scale, offset=offset)
            cv.reformat_into(dst, unit)
            return target

        return run
