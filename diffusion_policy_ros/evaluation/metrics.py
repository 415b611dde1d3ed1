"""Numbers every evaluation reports: success counts, latency percentiles."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def rate(outcomes: Sequence[dict], criterion: str = "success") -> float:
    """Fraction of episodes meeting `criterion` (0 when there are none yet)."""
    return float(np.mean([o[criterion] for o in outcomes])) if outcomes else 0.0


def count(outcomes: Iterable[dict], criterion: str = "success") -> int:
    return int(sum(bool(o[criterion]) for o in outcomes))


def percentiles(values) -> dict[str, float]:
    """p50 / p99 / max, NaN-aware (NaN when there are no samples)."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": float(np.nanpercentile(values, 50)), "p99": float(np.nanpercentile(values, 99)),
            "max": float(np.nanmax(values))}


def rate_hz(times) -> float:
    """Events per second from their times (median spacing; NaN with fewer than three)."""
    times = np.asarray(times, dtype=float)
    if len(times) <= 2:
        return float("nan")
    return float(1.0 / np.median(np.diff(times)))
