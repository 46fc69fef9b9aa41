"""``python -m gpuimage demo``: build images from each backend and show their views share memory."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in ([], ["demo"]):
        from ._demo import main as demo

        demo()
        return 0
    print("usage: python -m gpuimage [demo]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
