"""The frames, regions and torch and CV-CUDA pipelines of frames.py (a helper module: the runner skips it).

What each pipeline computes is ``gpuimage._sampling``'s recipe: every pixel of the NV12 frame
converted to R'G'B' in [0, 1] (chroma nearest-upsampled, clipped), each region resized to the slot
with OpenCV's ``INTER_LINEAR`` (half-pixel centres, no antialiasing), then ``(v - mean[c]) / std[c]``
into one ``(N, 3, H, W)`` float32 batch.

- ``TorchRoute``: plane arithmetic on the ``(1.5 H, W)`` uint8 tensor with the constants of
  ``gpuimage._colour`` (``ypbpr_to_rgb_matrix``, ``code_scales``), ``functional.interpolate(bilinear,
  align_corners=False, antialias=False)`` per region, ``cat`` and an in-place normalize. It runs on
  CPU tensors too (tests/test_benchmarks_frames.py checks it against the NumPy reference there).
- ``CvcudaRoutes``: CV-CUDA 0.19 (python/mod_cvcuda/Op*.cpp). ``cvtcolor(YUV2RGB_NV12)`` is BT.601
  limited range in 8-bit fixed point (OpenCV's), whatever the frame's matrix: frames.py checks
  these routes against a reference of that colour, and the output is uint8 RGB before the resize.
  Every route writes into preallocated tensors (``*_into``) and returns the batch; the tensors are
  wrapped once, outside the clock, and held here. The module object is ``Any`` (no stubs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from _common import describe
from torch.nn import functional

from gpuimage import ColorSpec
from gpuimage._colour import code_scales, ypbpr_to_rgb_matrix

Roi = tuple[int, int, int, int]  # (x, y, width, height) in luma pixels of the whole frame
Op = Callable[[], object]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def person_rois(width: int, height: int, count: int = 8) -> list[Roi]:
    """``count`` fixed boxes inside a ``width`` x ``height`` frame, person-sized and varied.

    Heights run from 100 to 600 pixels (fewer where the frame is smaller), widths from 0.4 to 0.8
    of the height; every other box starts at an odd x and y (where it fits), the rest at even ones,
    so some regions share their first chroma sample with pixels outside them, as real detections do.
    """
    if width < 2 or height < 2 or count < 1:
        raise ValueError(
            f"person_rois(): expected a frame of at least 2x2 and count >= 1, got {width}x{height}"
        )
    rois: list[Roi] = []
    for index in range(count):
        tall = 100 + (500 * index) // max(1, count - 1)
        h = max(1, min(tall, height))
        w = max(1, min((h * (2 + index % 3)) // 5, width))
        x = (width - w) * (2 * ((index * 5) % count) + 1) // (2 * count)
        y = (height - h) * (2 * ((index * 3) % count) + 1) // (2 * count)
        if index % 2:
            x, y = min(x | 1, width - w), min(y | 1, height - h)
        else:
            x, y = x & ~1, y & ~1
        rois.append((x, y, w, h))
    return rois


def nv12_frame(height: int, width: int, seed: int, device: str = "cuda") -> torch.Tensor:
    """A random NV12 frame with codes in the nominal limited range (luma 16-235, chroma 16-240)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    luma = torch.randint(16, 236, (height, width), dtype=torch.uint8, device=device, generator=generator)
    chroma = torch.randint(
        16, 241, (height // 2, width), dtype=torch.uint8, device=device, generator=generator
    )
    return torch.cat((luma, chroma))


def as_tensor(output: object) -> torch.Tensor:
    """An output as a torch tensor: a tensor, a gpuimage image (``as_torch``), or anything with CAI."""
    if isinstance(output, torch.Tensor):
        return output
    as_torch = getattr(output, "as_torch", None)
    if callable(as_torch):
        result = as_torch()
        if isinstance(result, torch.Tensor):
            return result
    return torch.as_tensor(output, device="cuda")


def max_abs_diff(output: object, reference: torch.Tensor) -> float:
    """The largest |output - reference| (inf where the shapes differ or a value is not finite)."""
    tensor = as_tensor(output)
    if tensor.numel() != reference.numel():
        return float("inf")
    diff = (tensor.reshape(reference.shape).to(torch.float32) - reference).abs()
    return float(diff.max()) if bool(torch.isfinite(diff).all()) else float("inf")


Four = tuple[float, float, float, float]


def colour_constants(colour: ColorSpec) -> tuple[Four, Four]:
    """``((luma_offset, luma_scale, chroma_offset, chroma_scale), (R_Pr, G_Pb, G_Pr, B_Pb))`` at 8 bits."""
    s = code_scales(colour.range, 8)
    m = ypbpr_to_rgb_matrix(colour.matrix)
    return (s.luma_offset, s.luma_scale, s.chroma_offset, s.chroma_scale), (
        m[0][2],
        m[1][1],
        m[1][2],
        m[2][1],
    )


class TorchRoute:
    """The torch pipeline over one NV12 frame (a ``(1.5 H, W)`` uint8 tensor, any device)."""

    def __init__(
        self,
        nv12: torch.Tensor,
        colour: ColorSpec,
        rois: Sequence[Roi],
        size: tuple[int, int],
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        rows, width = int(nv12.shape[0]), int(nv12.shape[1])
        self.nv12, self.height, self.width = nv12, rows * 2 // 3, width
        self.rois, self.size = list(rois), size
        (self.luma_offset, self.luma_scale, self.chroma_offset, self.chroma_scale), self.coeffs = (
            colour_constants(colour)
        )
        self.mean = torch.tensor(mean, dtype=torch.float32, device=nv12.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=nv12.device).view(1, 3, 1, 1)

    def rgb(self) -> torch.Tensor:
        """The whole frame as ``(3, H, W)`` float32 R'G'B' in [0, 1] (``_colour.yuv_to_rgb``, unrounded)."""
        height, width = self.height, self.width
        luma = (self.nv12[:height].to(torch.float32) - self.luma_offset) / self.luma_scale
        chroma = self.nv12[height:].reshape(height // 2, width // 2, 2).to(torch.float32)
        chroma = (chroma - self.chroma_offset) / self.chroma_scale
        # nearest upsampling: chroma sample (i, j) serves luma pixels (2i + a, 2j + b)
        chroma = chroma.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
        pb, pr = chroma[..., 0], chroma[..., 1]
        r_pr, g_pb, g_pr, b_pb = self.coeffs
        rgb = torch.stack((luma + r_pr * pr, luma + g_pb * pb + g_pr * pr, luma + b_pb * pb))
        return rgb.clamp_(0.0, 1.0)

    def batch(self, rgb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Every region of ``rgb`` resized to the slot and normalized: ``(N, 3, H, W)`` float32."""
        crops = [
            functional.interpolate(
                rgb[None, :, y : y + h, x : x + w],
                size=self.size,
                mode="bilinear",
                align_corners=False,
                antialias=False,
            )
            for x, y, w, h in self.rois
        ]
        batch = torch.cat(crops) if out is None else torch.cat(crops, out=out)
        return batch.sub_(self.mean).div_(self.std)

    def run(self) -> torch.Tensor:
        return self.batch(self.rgb())


class CvcudaRoutes:
    """CV-CUDA's routes over one NV12 frame on the GPU; every tensor it wraps is held here."""

    def __init__(
        self,
        cv: Any,
        nv12: torch.Tensor,
        rois: Sequence[Roi],
        size: tuple[int, int],
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        self.cv, self.rois, self.size = cv, list(rois), size
        self.height, self.width = int(nv12.shape[0]) * 2 // 3, int(nv12.shape[1])
        self.mean, self.std = tuple(mean), tuple(std)
        self.held: list[object] = []  # wrapped tensors and batches live as long as the routes
        # NV12 as CV-CUDA's samples wrap it: one (1, 1.5 H, W, 1) NHWC tensor
        self.src = self._wrap(nv12.reshape(1, *nv12.shape, 1), "NHWC")
        self.rgb = torch.empty((1, self.height, self.width, 3), dtype=torch.uint8, device=nv12.device)
        self.rgb_cv = self._wrap(self.rgb, "NHWC")
        self.code = cv.ColorConversion.YUV2RGB_NV12
        self.linear = cv.Interp.LINEAR
        self.flags = cv.NormalizeFlags.SCALE_IS_STDDEV

    def _wrap(self, tensor: torch.Tensor, layout: str) -> Any:
        self.held.append(tensor)
        return self.cv.as_tensor(tensor, layout)

    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=self.rgb.device)

    def _count(self) -> int:
        return len(self.rois)

    def _nchw(self) -> torch.Tensor:
        return self._empty((self._count(), 3, *self.size))

    def _nhwc(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._empty((self._count(), *self.size, 3), dtype)

    def _roi_sources(self) -> list[Any]:
        """Each region of the RGB frame as a pitched ``(1, h, w, 3)`` NHWC tensor (no copy)."""
        return [self._wrap(self.rgb[:, y : y + h, x : x + w, :], "NHWC") for x, y, w, h in self.rois]

    def _plane_params(self) -> tuple[Any, Any]:
        """Base and scale per plane of an NCHW batch seen as NHWC ``(N*3, H, W, 1)``: normalize takes
        one value per sample (its ``checkParamShape``: N of the input or 1), so that is per channel."""
        count = self._count()
        base = torch.tensor(self.mean * count, device=self.rgb.device).view(3 * count, 1, 1, 1)
        scale = torch.tensor(self.std * count, device=self.rgb.device).view(3 * count, 1, 1, 1)
        return self._wrap(base, "NHWC"), self._wrap(scale, "NHWC")

    def _planes(self, batch: torch.Tensor) -> Any:
        return self._wrap(batch.view(self._count() * 3, *self.size, 1), "NHWC")

    def _channel_params(self) -> tuple[Any, Any]:
        base = torch.tensor(self.mean, device=self.rgb.device).view(1, 1, 1, 3)
        scale = torch.tensor(self.std, device=self.rgb.device).view(1, 1, 1, 3)
        return self._wrap(base, "NHWC"), self._wrap(scale, "NHWC")

    def _cvtcolor(self) -> None:
        self.cv.cvtcolor_into(self.rgb_cv, self.src, self.code)

    def per_roi_nchw(self) -> Op:
        """cvtcolor + per region ``resize_crop_convert_reformat_into`` (NCHW float32 slot, x 1/255) +
        ``normalize_into`` over the planes: 2 + N launches."""
        cv, size, sources = self.cv, self.size, self._roi_sources()
        unit, out = self._nchw(), self._nchw()
        slots = [self._wrap(unit[i : i + 1], "NCHW") for i in range(self._count())]
        (base, scale), src_planes, dst_planes = self._plane_params(), self._planes(unit), self._planes(out)

        def run() -> object:
            self._cvtcolor()
            for slot, source in zip(slots, sources, strict=True):
                cv.resize_crop_convert_reformat_into(
                    slot, source, (size[1], size[0]), self.linear, (0, 0), scale=1 / 255, srcCast=False
                )
            cv.normalize_into(dst_planes, src_planes, base, scale, flags=self.flags)
            return out

        return run

    def varshape_nchw(self) -> Op:
        """cvtcolor + one ``resize_crop_convert_reformat_into`` over an ``ImageBatchVarShape`` of the
        regions (built once: the regions are fixed) + ``normalize_into`` over the planes: 3 launches."""
        cv, size = self.cv, self.size
        images = cv.ImageBatchVarShape(self._count())
        for x, y, w, h in self.rois:
            region = self.rgb[0, y : y + h, x : x + w, :]
            self.held.append(region)
            images.pushback(cv.as_image(region, cv.Format.RGB8))
        self.held.append(images)
        unit, out = self._nchw(), self._nchw()
        dst = self._wrap(unit, "NCHW")
        (base, scale), src_planes, dst_planes = self._plane_params(), self._planes(unit), self._planes(out)

        def run() -> object:
            self._cvtcolor()
            cv.resize_crop_convert_reformat_into(
                dst, images, (size[1], size[0]), self.linear, (0, 0), scale=1 / 255, srcCast=False
            )
            cv.normalize_into(dst_planes, src_planes, base, scale, flags=self.flags)
            return out

        return run

    def per_roi_nhwc(self) -> Op:
        """cvtcolor + per region ``resize_crop_convert_reformat_into`` (NHWC float32, x 1/255) +
        ``normalize_into`` (per channel, NHWC) + ``reformat_into`` (NCHW): 3 + N launches."""
        cv, size, sources = self.cv, self.size, self._roi_sources()
        unit, normed, out = self._nhwc(), self._nhwc(), self._nchw()
        slots = [self._wrap(unit[i : i + 1], "NHWC") for i in range(self._count())]
        (base, scale), src, mid, dst = (
            self._channel_params(),
            self._wrap(unit, "NHWC"),
            self._wrap(normed, "NHWC"),
            self._wrap(out, "NCHW"),
        )

        def run() -> object:
            self._cvtcolor()
            for slot, source in zip(slots, sources, strict=True):
                cv.resize_crop_convert_reformat_into(
                    slot, source, (size[1], size[0]), self.linear, (0, 0), scale=1 / 255, srcCast=False
                )
            cv.normalize_into(mid, src, base, scale, flags=self.flags)
            cv.reformat_into(dst, mid)
            return out

        return run

    def resize_convert(self) -> Op:
        """The issue's route: cvtcolor + per region ``resize_into`` (uint8) + ``convertto_into``
        (x 1/255) + ``normalize_into`` + ``reformat_into``: 4 + N launches, resized values rounded to
        8 bits."""
        cv, sources = self.cv, self._roi_sources()
        resized, unit, normed, out = self._nhwc(torch.uint8), self._nhwc(), self._nhwc(), self._nchw()
        slots = [self._wrap(resized[i : i + 1], "NHWC") for i in range(self._count())]
        (base, scale), small, src, mid, dst = (
            self._channel_params(),
            self._wrap(resized, "NHWC"),
            self._wrap(unit, "NHWC"),
            self._wrap(normed, "NHWC"),
            self._wrap(out, "NCHW"),
        )

        def run() -> object:
            self._cvtcolor()
            for slot, source in zip(slots, sources, strict=True):
                cv.resize_into(slot, source, self.linear)
            cv.convertto_into(src, small, scale=1 / 255, offset=0.0)
            cv.normalize_into(mid, src, base, scale, flags=self.flags)
            cv.reformat_into(dst, mid)
            return out

        return run


def cvcuda_routes(
    cv: Any, nv12: torch.Tensor, rois: Sequence[Roi], size: tuple[int, int], missing: str
) -> tuple[CvcudaRoutes | None, str]:
    """CV-CUDA's routes over the frame, or None and why (not importable, or its setup raised)."""
    if cv is None:
        return None, missing
    try:
        return CvcudaRoutes(cv, nv12, rois, size), ""
    except Exception as exc:
        return None, f"CV-CUDA setup failed: {describe(exc)}"


ROUTES: dict[str, Callable[[CvcudaRoutes], Op]] = {
    "cvtcolor+rccr x N+normalize (NCHW planes)": CvcudaRoutes.per_roi_nchw,
    "cvtcolor+rccr var-shape+normalize (NCHW planes)": CvcudaRoutes.varshape_nchw,
    "cvtcolor+rccr x N+normalize+reformat": CvcudaRoutes.per_roi_nhwc,
    "cvtcolor+resize x N+convertto+normalize+reformat": CvcudaRoutes.resize_convert,
}
"""CV-CUDA's routes by name (rccr: ``resize_crop_convert_reformat_into``), in the order they run."""
