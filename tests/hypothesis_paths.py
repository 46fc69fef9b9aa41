"""Counts fuzzed examples and the distinct error paths they reach (shown in pytest's summary)."""

from __future__ import annotations

from collections import Counter

PATHS: Counter[tuple[str, str]] = Counter()


def record(operation: str, error: BaseException | None) -> None:
    """Count one outcome: ``operation`` succeeded (error None) or raised ``error``."""
    PATHS[(operation, "ok" if error is None else type(error).__name__)] += 1
