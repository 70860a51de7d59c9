"""Medians and their noise: every figure of the benchmark is a median over interleaved repeats."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation, scaled to a standard deviation's size."""
    if len(values) < 2:
        return 0.0
    m = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - m) for v in values)


def median_error(values: Sequence[float]) -> float:
    """Standard error of a median of roughly normal values."""
    return 1.2533 * mad(values) / math.sqrt(len(values)) if len(values) > 1 else float("inf")


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
