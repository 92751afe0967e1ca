"""Statistics over per-step time samples (the clock itself lives in :mod:`harness.worker`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["summarize", "throughput"]


def summarize(samples_s: Sequence[float]) -> dict[str, float | int]:
    """Distribution of step times in milliseconds: count, mean, p50, p90, p99, stdev, min, max.

    Percentiles interpolate linearly between samples (numpy's default); stdev is
    the sample standard deviation (0 for a single sample).
    """
    if not samples_s:
        return {"count": 0}
    ms = np.asarray(samples_s, dtype=float) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "count": int(ms.size),
        "mean": float(ms.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "stdev": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def throughput(images_per_step: int, samples_s: Sequence[float]) -> float:
    """Images per second over the timed steps: images / total timed seconds."""
    total = math.fsum(samples_s)
    return images_per_step * len(samples_s) / total if total > 0 else float("nan")
