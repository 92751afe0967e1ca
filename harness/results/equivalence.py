"""Do two backends (or two runs) reach the same accuracy? Top-1 over seeds, judged by an equivalence test.

Two samples of top-1 (percent), one value per seed (a seed's repetitions averaged: the seed is the unit that
varies), are compared by the difference of their means, ``other - reference``, with Welch's t
(``scipy.stats.ttest_ind(..., equal_var=False)``: the spreads may differ):

* **equivalent**: two one-sided tests (TOST) at ``alpha`` 0.05 reject "the difference is at most -margin" and "at
  least +margin", i.e. the difference's 90% interval lies inside ``±margin`` (default :data:`MARGIN`, 1.0 point);
* **different**: otherwise, where the difference's 95% interval excludes 0; *beyond the margin* when that whole
  interval lies outside ``±margin``;
* **inconclusive**: neither. :func:`seeds_needed` then estimates how many seeds per side would decide it at the
  observed difference and spread (the noncentral t's power of either test reaching :data:`POWER`), and the verdict
  says how many more than the larger side has that is.

Both equivalent *and* measurably different can hold (a small, real difference well inside the margin): the verdict
is then *equivalent* and says the difference is measurable. It needs 2 seeds a side to compute at all; with fewer
than :data:`MIN_SEEDS` a side it says it rests on too few seeds. Accuracy on synthetic data means nothing and is
never passed here (:func:`harness.config.has_accuracy`, the rule both reports and ``harness compare`` use).
:func:`equivalence_table` is the section both reports show: per run, model, device and variant, each backend against
the reference one (:func:`harness.results.tables.reference_backend`); :func:`runs_equivalence` is the same test
between two runs (``harness compare``): each configuration of the current run against the same one in the baseline.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as st

from harness.errors import HarnessError
from harness.measure.intervals import Estimate, mean_ci
from harness.results.frame import records_frame
from harness.results.tables import reference_backend, split_frame

__all__ = ["SEED_KEYS", "seed_equivalences", "ALPHA", "MARGIN", "MIN_SEEDS", "POWER", "NOTE", "COMPARE_NOTE",
           "Equivalence", "equivalence", "equivalence_table", "runs_equivalence", "per_seed", "seeds_needed",
           "check_margin"]

#: The equivalence margin in top-1 points: differences inside ±MARGIN count as the same accuracy.
MARGIN = 1.0
#: The tests' level: TOST at 5% (a 90% interval inside the margin), a difference at 5% (a 95% interval without 0).
ALPHA = 0.05
#: The seeds a side the verdict should rest on (fewer still compute, from 2, and say so).
MIN_SEEDS = 5
#: The power the seeds-needed estimate asks of the test that would decide.
POWER = 0.8
#: The most seeds a side the estimate looks at; past it, "more than" this.
MAX_SEEDS = 10_000
#: What the reports say about the section.
NOTE = (f"Top-1 of each backend over seeds (mean of one value per seed, with its 95% interval) against the reference "
        f"backend's. The difference (other - reference) is shown with its 90% interval (Welch's t). Equivalent: "
        f"two one-sided tests at {ALPHA:g} put the difference inside ±margin (the 90% interval lies within it); "
        f"different: the difference's 95% interval excludes 0 (beyond the margin when all of it lies outside "
        f"±margin); inconclusive: neither, with an estimate of the seeds per backend that would decide it at the "
        f"observed difference and spread ({POWER:.0%} power). Fewer than {MIN_SEEDS} seeds a backend: the verdict "
        f"rests on too few seeds. Synthetic data have no accuracy and are left out.")
#: What ``harness compare`` says about its section.
COMPARE_NOTE = ("Top-1 over seeds of each configuration (model, backend, device, variant) with 2 or more seeds in "
                "both runs: current against baseline, the same test as the report's (difference current - baseline "
                "with its 90% interval; equivalent, different or inconclusive at the margin). It does not change the "
                "exit status: --top1-tolerance gates accuracy.")


@dataclass(frozen=True)
class Equivalence:
    """The test of ``other`` against ``reference``: their means over seeds (:func:`mean_ci`), the difference
    ``other - reference`` with its 90% and 95% intervals, the TOST p value, the verdict and, when inconclusive,
    the seeds a side that would decide it (None: more than :data:`MAX_SEEDS`)."""

    reference: Estimate
    other: Estimate
    difference: float
    ci90: tuple[float, float]
    ci95: tuple[float, float]
    p_equivalence: float
    margin: float
    verdict: str  # "equivalent", "different", "inconclusive"
    seeds_needed: int | None = None

    @property
    def few_seeds(self) -> bool:
        return min(self.reference.n, self.other.n) < MIN_SEEDS

    @property
    def measurable(self) -> bool:
        """The difference's 95% interval excludes 0."""
        return self.ci95[0] > 0 or self.ci95[1] < 0

    @property
    def beyond_margin(self) -> bool:
        """All of the difference's 95% interval lies outside ±margin."""
        return self.ci95[0] > self.margin or self.ci95[1] < -self.margin

    def interval_text(self) -> str:
        return f"{self.difference:+.2f} [{self.ci90[0]:+.2f}, {self.ci90[1]:+.2f}]"

    def verdict_text(self) -> str:
        """``equivalent``, ``different, beyond the margin`` or ``inconclusive: about 12 seeds per side would
        decide it``, and a warning when it rests on fewer than :data:`MIN_SEEDS` seeds a side."""
        if self.verdict == "equivalent":
            text = "equivalent" + (" (the difference is measurable, but inside the margin)" if self.measurable else "")
        elif self.verdict == "different":
            text = "different, " + ("beyond the margin" if self.beyond_margin else "not shown to be beyond the margin")
        else:
            have = max(self.reference.n, self.other.n)
            need = (f"about {self.seeds_needed} seeds a side ({self.seeds_needed - have} more)"
                    if self.seeds_needed is not None else f"more than {MAX_SEEDS} seeds a side")
            text = f"inconclusive: {need} would decide it at this spread (an estimate)"
        if self.few_seeds:
            text += (f"; rests on too few seeds ({self.reference.n} and {self.other.n}: {MIN_SEEDS} a side are "
                     "asked for)")
        return text


def check_margin(margin: float | None) -> float:
    """``--margin``: the margin given (:data:`MARGIN` when None), or one line for one that cannot be a margin."""
    if margin is None:
        return MARGIN
    if not 0 < margin <= 100:
        raise HarnessError(f"--margin {margin:g}: must be in (0, 100] (top-1 points: 1.0 = ±1 point)")
    return margin


def _mean(est: Estimate) -> str:
    return f"{est.fmt('{:.2f}')} ({est.n} seed{'s' if est.n != 1 else ''})"


def _finite(values: Sequence[float]) -> npt.NDArray[np.float64]:
    a = np.asarray(values, dtype=np.float64)
    return a[np.isfinite(a)]


def _sd(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """The pooled standard deviation of two samples."""
    return math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))


def seeds_needed(difference: float, sd: float, margin: float = MARGIN, start: int = 2) -> int | None:
    """An estimate of the seeds per side (from ``start``) at which, if the true difference and spread were the
    observed ``difference`` and pooled ``sd``, the test would decide: the smallest n at which either TOST
    (equivalent) or the two-sided t-test (different) has :data:`POWER`, from the noncentral t (``scipy.stats.nct``,
    equal n a side, 2n - 2 degrees of freedom), and at which these same means and spreads would decide too. None
    past :data:`MAX_SEEDS`; ``start`` where the spread is 0 (nothing left to decide by more seeds)."""
    if sd <= 0:
        return start
    n = np.arange(max(2, start), MAX_SEEDS + 1, dtype=np.float64)
    df, se = 2 * n - 2, sd * np.sqrt(2 / n)
    t_diff, t_eq = st.t.ppf(1 - ALPHA / 2, df), st.t.ppf(1 - ALPHA, df)
    shift = abs(difference) / se
    power_diff = st.nct.sf(t_diff, df, shift) + st.nct.cdf(-t_diff, df, shift)
    power_eq = np.clip(st.nct.sf(t_eq, df, (difference + margin) / se)
                       + st.nct.cdf(-t_eq, df, (difference - margin) / se) - 1, 0, 1)
    decides_diff = (power_diff >= POWER) & (shift > t_diff)
    decides_eq = (power_eq >= POWER) & ((margin - abs(difference)) / se > t_eq)
    hit = np.flatnonzero(decides_diff | decides_eq)
    return int(n[hit[0]]) if hit.size else None


def equivalence(reference: Sequence[float], other: Sequence[float], margin: float = MARGIN) -> Equivalence | None:
    """The test of ``other``'s top-1 values (one per seed) against ``reference``'s; None with fewer than 2 finite
    values on either side (no spread to judge by)."""
    a, b = _finite(reference), _finite(other)
    ref, oth = mean_ci(list(a)), mean_ci(list(b))
    if a.size < 2 or b.size < 2 or ref is None or oth is None:
        return None
    d = float(b.mean() - a.mean())
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:  # identical runs a side: the difference is known exactly
        ci90 = ci95 = (d, d)
        p_eq = 0.0 if abs(d) < margin else 1.0
    else:
        welch = st.ttest_ind(b, a, equal_var=False)
        i90, i95 = welch.confidence_interval(1 - 2 * ALPHA), welch.confidence_interval(1 - ALPHA)
        ci90, ci95 = (float(i90.low), float(i90.high)), (float(i95.low), float(i95.high))
        above = st.ttest_ind(b + margin, a, equal_var=False, alternative="greater").pvalue  # H0: d <= -margin
        below = st.ttest_ind(b - margin, a, equal_var=False, alternative="less").pvalue  # H0: d >= +margin
        p_eq = float(max(above, below))
    result = Equivalence(ref, oth, d, ci90, ci95, p_eq, margin, "inconclusive")
    if p_eq < ALPHA:
        return dataclasses.replace(result, verdict="equivalent")
    if result.measurable:
        return dataclasses.replace(result, verdict="different")
    return dataclasses.replace(result, seeds_needed=seeds_needed(d, _sd(a, b), margin, max(a.size, b.size) + 1))


def per_seed(runs: pd.DataFrame) -> list[float]:
    """A configuration's top-1, one value per seed (``cfg.seed``, 0 when not set): the mean of that seed's
    repetitions."""
    top1 = runs["eval_top1"].astype(float)
    seed = runs["cfg.seed"].fillna(0) if "cfg.seed" in runs else pd.Series(0, index=runs.index)
    return [float(v) for v in top1.groupby(seed).mean().dropna()]


def _seed_values(ok: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], list[float]]:
    """Top-1 per seed (:func:`per_seed`) of each group of ``keys`` with 2 seeds or more, from the ok records that
    have top-1 on real data."""
    if ok.empty or "eval_top1" not in ok:
        return {}
    real = ok[ok["eval_top1"].notna()]  # synthetic data's top-1 is None already (harness.results.frame.LEARNED)
    values = {tuple(key): per_seed(runs) for key, runs in real.groupby(keys, sort=True)}
    return {key: v for key, v in values.items() if len(v) >= 2}


def _row(model: Any, device: Any, n: Any, variant: Any, result: Equivalence, names: tuple[str, str],
         margin: float) -> dict[str, str]:
    return {"model": str(model), "device": f"{device}" + (f" ×{n}" if int(n) > 1 else ""),
            "variant": str(variant) or "-", f"{names[0]} top-1 (%)": _mean(result.reference),
            f"{names[1]} top-1 (%)": _mean(result.other), "difference [90% CI]": result.interval_text(),
            "margin": f"±{margin:g}", "verdict": result.verdict_text()}


def equivalence_table(ok: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    """Per run, model, device (and count) and variant with top-1 on real data from at least 2 seeds on at least
    two backends: each other backend against the reference one, a row of both means, the difference with its
    interval, the margin and the verdict (a ``run`` column where the records hold several runs)."""
    values = _seed_values(ok, ["run_id", "model", "device", "devices", "variant", "backend"])
    configs: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    for (*config, backend), v in values.items():
        configs.setdefault(tuple(config), {})[str(backend)] = v
    runs = {config[0] for config in configs}
    rows = []
    for (run, model, device, n, variant), sides in configs.items():
        ref = reference_backend(sides)
        for other in sorted(b for b in sides if b != ref):
            result = equivalence(sides[ref], sides[other], margin)
            if result is not None:
                row = _row(model, device, n, variant, result, ("reference", "other"), margin)
                row["reference top-1 (%)"] = f"{ref} {row['reference top-1 (%)']}"
                row["other top-1 (%)"] = f"{other} {row['other top-1 (%)']}"
                rows.append({"run": str(run), **row} if len(runs) > 1 else row)
    return pd.DataFrame(rows)


#: What a configuration over seeds is, for ``harness compare``: these columns of the records frame.
SEED_KEYS = ("model", "backend", "device", "devices", "variant")


def seed_equivalences(baseline: list[dict[str, Any]], current: list[dict[str, Any]],
                      margin: float = MARGIN) -> list[tuple[tuple[Any, ...], Equivalence]]:
    """Each configuration (:data:`SEED_KEYS`) with top-1 on real data from at least 2 seeds in both runs' records:
    its key and the test of the current run's top-1 against the baseline's."""
    keys = list(SEED_KEYS)
    base, cur = (_seed_values(split_frame(records_frame(r))[1], keys) if r else {} for r in (baseline, current))
    out = []
    for key in sorted(base.keys() & cur.keys()):
        result = equivalence(base[key], cur[key], margin)
        if result is not None:
            out.append((key, result))
    return out


def runs_equivalence(baseline: list[dict[str, Any]], current: list[dict[str, Any]],
                     margin: float = MARGIN) -> pd.DataFrame:
    """``harness compare``'s accuracy section: :func:`seed_equivalences` as a table."""
    return pd.DataFrame([{"backend": str(backend), **_row(model, device, n, variant, result, ("baseline", "current"),
                                                          margin)}
                         for (model, backend, device, n, variant), result in seed_equivalences(baseline, current,
                                                                                               margin)])
