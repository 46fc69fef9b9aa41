"""Import a module from a file that is not in a package (benchmarks/, examples/, docs/_ext/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_file"]


def load_file(name: str, path: Path) -> ModuleType:
    """The module at ``path``, registered as ``name`` (dataclasses look their module up while a class
    is made, so it must be in ``sys.modules`` before it runs)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
