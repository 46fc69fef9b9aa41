"""``python -m gpuimage`` and the ``gpuimage`` console script: see ``gpuimage._cli``."""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
