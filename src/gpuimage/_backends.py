"""Optional libraries: install hints, and a check that does not import them.

Each spoke module imports its library at its top, inside ``try``, and raises ``missing_backend()``
from the ``ImportError``; the hub imports a spoke only when a method needs it. So ``import gpuimage``
never imports torch, CuPy or OpenCV.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from typing import Literal

from ._errors import MissingBackendError

__all__ = ["Backend", "imported_version", "install_hint", "is_installed", "missing_backend"]

Backend = Literal["torch", "cupy", "cv2"]

_HINTS: dict[Backend, str] = {
    "torch": "pip install 'gpuimage[torch]'",
    "cupy": "pip install 'gpuimage[cupy]' (or cupy-cuda12x for a CUDA 12 driver)",
    "cv2": "pip install 'gpuimage[opencv]' (one OpenCV distribution only)",
}


def install_hint(name: Backend) -> str:
    """The command that installs ``name`` as gpuimage's extra (``pip install 'gpuimage[...]'``)."""
    return _HINTS[name]


def missing_backend(name: Backend) -> MissingBackendError:
    """The error for a library that failed to import, naming the extra to install."""
    return MissingBackendError(f"this needs {name}, which is not installed: {_HINTS[name]}.")


@functools.cache
def is_installed(name: Backend) -> bool:
    """True if the library can be found (without importing it). Asked once: conversions and
    allocations ask on every call, and installing a library into a running process is not a case."""
    return importlib.util.find_spec(name) is not None


def imported_version(name: str) -> str:
    """The ``__version__`` of library ``name`` if it is imported, else "" (nothing is imported here)."""
    return str(getattr(sys.modules.get(name), "__version__", ""))
