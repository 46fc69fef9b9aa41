"""Whether this machine reaches a CUDA GPU, asked once: the conftest skips `cuda` tests without one,
and CPU tests over fake device pointers skip with one (they would launch on a fake pointer)."""

from __future__ import annotations

import functools

__all__ = ["gpu_available"]


@functools.cache
def gpu_available() -> bool:
    """True when torch (or CuPy) sees a CUDA GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        import cupy

        return bool(cupy.is_available())
    except ImportError:
        return False
