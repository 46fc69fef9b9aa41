"""A module stand-in that imports its module on first attribute access, then steps aside.

The hub reaches the torch, CuPy and OpenCV spokes through these, so that ``import gpuimage`` imports
none of those libraries, and a view costs no ``import`` statement (about 2 us each) after the first.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LazyModule"]


class LazyModule:
    """Stands in ``namespace[alias]`` for module ``name`` until first used, then replaces itself."""

    __slots__ = ("_alias", "_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name = name
        self._namespace = namespace
        self._alias = alias

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self._name)  # a spoke raises MissingBackendError here
        self._namespace[self._alias] = module
        return getattr(module, attribute)
