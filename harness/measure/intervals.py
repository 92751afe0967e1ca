"""Uncertainty of a number measured several times: run-to-run noise, from repetitions in fresh processes.

Per-step samples of one run are autocorrelated and miss what changes between runs (placement, clocks, caches,
other processes), so a case's throughput and a ratio of two cases get their confidence intervals from
*repetitions*, one value per run:

* a throughput (or any positive rate): the geometric mean of the runs, with a 95% interval from Student's t over
  the runs' logarithms (run-to-run noise is multiplicative), mapped back: the figure is the interval's centre, the
  statistic the interval is about;
* a ratio of two such cases: the ratio of their geometric means, with Welch's t interval of the difference of the
  log means, mapped back (``scipy.stats.ttest_ind(..., equal_var=False).confidence_interval``);
* an accuracy over seeds: the mean, with Student's t interval.

With a single run there is no interval: the value is shown as a single run.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as st

__all__ = ["Estimate", "rate", "ratio", "mean_ci", "ratio_text", "delta_text", "CONFIDENCE"]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A value with its interval (``lo``/``hi`` None for a single run) and how many runs it rests on."""

    value: float
    lo: float | None
    hi: float | None
    n: int

    @property
    def has_ci(self) -> bool:
        return self.lo is not None

    def includes(self, x: float) -> bool:
        return self.lo is not None and self.hi is not None and self.lo <= x <= self.hi

    def scaled(self, k: float) -> Estimate:
        """The estimate of ``k`` times the quantity (``k`` > 0)."""
        return Estimate(self.value * k, None if self.lo is None else self.lo * k,
                        None if self.hi is None else self.hi * k, self.n)

    def fmt(self, spec: str = "{:.2f}", suffix: str = "") -> str:
        if not self.has_ci:
            return spec.format(self.value) + suffix + (" (1 run)" if self.n == 1 else "")
        return f"{spec.format(self.value)}{suffix} [{spec.format(self.lo)}, {spec.format(self.hi)}]"


def _finite(values: Sequence[float | None], positive: bool = False) -> npt.NDArray[np.float64]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    return a[a > 0] if positive else a


def rate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """The geometric mean of positive per-run values, with a t interval over their logs (centred on it)."""
    a = _finite(values, positive=True)
    if a.size == 0:
        return None
    logs = np.log(a)
    centre = float(logs.mean())
    if a.size < 2:
        return Estimate(float(a[0]), None, None, int(a.size))
    half = st.t.ppf(0.5 + confidence / 2, a.size - 1) * logs.std(ddof=1) / math.sqrt(a.size)
    return Estimate(math.exp(centre), float(math.exp(centre - half)), float(math.exp(centre + half)), int(a.size))


def ratio(a_values: Sequence[float], b_values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """``a / b`` for positive per-run values: the ratio of geometric means, with Welch's t interval over the logs
    (centred on it)."""
    a, b = _finite(a_values, positive=True), _finite(b_values, positive=True)
    if a.size == 0 or b.size == 0:
        return None
    value = float(math.exp(np.log(a).mean() - np.log(b).mean()))
    n = int(min(a.size, b.size))
    if a.size < 2 or b.size < 2:
        return Estimate(value, None, None, n)
    la, lb = np.log(a), np.log(b)
    if la.std(ddof=1) == 0 and lb.std(ddof=1) == 0:  # identical runs: no spread to speak of
        return Estimate(value, value, value, n)
    ci = st.ttest_ind(la, lb, equal_var=False).confidence_interval(confidence_level=confidence)
    return Estimate(value, float(math.exp(ci.low)), float(math.exp(ci.high)), n)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """The mean with Student's t interval (accuracy over seeds)."""
    a = _finite(values)
    if a.size == 0:
        return None
    m = float(a.mean())
    if a.size < 2:
        return Estimate(m, None, None, int(a.size))
    half = st.t.ppf(0.5 + confidence / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size)
    return Estimate(m, m - float(half), m + float(half), int(a.size))


def ratio_text(est: Estimate, spec: str = "{:.2f}") -> str:
    """``0.81x [0.77, 0.85]``; ``1.02x [0.95, 1.09], no measurable difference`` when the interval holds 1; a ratio
    from a single run a side says so."""
    if not est.has_ci:
        return f"{spec.format(est.value)}x" + (" (single run)" if est.n == 1 else "")
    return est.fmt(spec, "x") + (", no measurable difference" if est.includes(1.0) else "")


def delta_text(est: Estimate, reference: float) -> str:
    """The difference of a measured estimate from a published value, in % of it: ``Δ +3.1% [-1.0, +7.2]`` (the
    interval is the measurement's: a published figure comes without one); ``, within noise`` when it holds 0."""
    if not reference:
        return ""
    d = est.scaled(1 / reference)
    head = f"Δ {100 * (d.value - 1):+.1f}%"
    if d.lo is None or d.hi is None:  # no interval: the measured value beside it says "(1 run)"
        return head
    return f"{head} [{100 * (d.lo - 1):+.1f}, {100 * (d.hi - 1):+.1f}]" + (", within noise" if d.includes(1.0) else "")
