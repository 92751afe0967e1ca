"""Statistics over per-step time samples (the clock itself lives in :mod:`harness.run.loop`)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["summarize", "throughput", "input_wait", "INPUT_BOUND_SHARE"]


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


#: Share of a timed train step spent waiting for its batch at which a case is marked input-bound: the input
#: pipeline, not the model, sets its pace (decode and augmentation cannot keep up).
INPUT_BOUND_SHARE = 0.2


def input_wait(waits: list[float], steps: list[float]) -> dict[str, Any] | None:
    """How much of the timed steps went to waiting for the batch (host clock, from asking the stream for the next
    batch until it came): the mean wait, its share of the mean step, and ``input_bound`` past
    :data:`INPUT_BOUND_SHARE`. None without timed steps."""
    n = min(len(waits), len(steps))
    if n == 0 or sum(steps[:n]) <= 0:
        return None
    share = min(1.0, sum(waits[:n]) / sum(steps[:n]))
    return {"wait_ms_mean": 1e3 * sum(waits[:n]) / n, "step_ms_mean": 1e3 * sum(steps[:n]) / n,
            "wait_share": share, "input_bound": share >= INPUT_BOUND_SHARE, "limit": INPUT_BOUND_SHARE}
