"""The one-sided tests ``harness compare`` asks "is the current run slower?" with: Mann-Whitney U over the per-step
samples of one run each, Welch's t over the per-run times of repetitions, and a one-sample t over the ratios of
alternately measured pairs (each on the logarithms where times are multiplicative)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as st

__all__ = ["mann_whitney_greater", "welch_slower", "paired_slower"]


def mann_whitney_greater(current: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """(U, p) for H1 "``current`` tends to be larger than ``baseline``" (``scipy.stats.mannwhitneyu``).

    ``U`` counts pairs (c, b) with c > b (ties count one half). ``p`` is from the normal approximation
    with the tie-corrected variance and a continuity correction of 0.5.
    """
    if len(current) == 0 or len(baseline) == 0:
        raise ValueError("both samples need at least one value")
    r = st.mannwhitneyu(current, baseline, alternative="greater", method="asymptotic", use_continuity=True)
    return float(r.statistic), float(r.pvalue) if math.isfinite(r.pvalue) else 1.0


def welch_slower(current: Sequence[float], baseline: Sequence[float]) -> float:
    """p for H1 "``current`` per-run times are longer" from repetitions: one-sided Welch t on the logs."""
    lc, lb = np.log(np.asarray(current, float)), np.log(np.asarray(baseline, float))
    if lc.std(ddof=1) == 0 and lb.std(ddof=1) == 0:
        return 0.0 if lc.mean() > lb.mean() else 1.0
    return float(st.ttest_ind(lc, lb, equal_var=False, alternative="greater").pvalue)


def paired_slower(ratios: Sequence[float]) -> float:
    """p for H1 "current is slower" from the ratios current / baseline of alternately measured pairs: one-sided
    one-sample t-test of the log ratios against 0."""
    d = np.log(np.asarray(ratios, float))
    if d.std(ddof=1) == 0:
        return 0.0 if d.mean() > 0 else 1.0
    return float(st.ttest_1samp(d, 0.0, alternative="greater").pvalue)
