"""``harness compare BASELINE CURRENT``: regression gating for CI.

Cases are matched by name. For each case measured in both runs:

* **throughput**: the per-step train samples (seconds) of the two runs are compared with a one-sided
  Mann-Whitney U test (H1: the current steps take longer), normal approximation with tie and
  continuity corrections. A slowdown is a regression only when it is significant (``p < alpha``) *and*
  at least ``min_effect`` (relative change of the median step time): significance alone flags
  microseconds on a quiet machine, effect size alone flags noise on a busy one;
* **accuracy**: top-1 may fall by at most ``top1_tolerance`` points.

A case that was ok in the baseline and failed, or is missing, in the current run is a regression.

Exit status: 0 no regression, 1 regression, 2 usage or input error.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import has_accuracy

__all__ = ["mann_whitney_greater", "CaseComparison", "compare_runs", "render_comparison", "ALPHA", "MIN_EFFECT",
           "TOP1_TOLERANCE"]

ALPHA = 0.01
MIN_EFFECT = 0.10
TOP1_TOLERANCE = 1.0


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) and the sizes of the groups of tied values."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    ties = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        ties.append(j - i + 1)
        i = j + 1
    return ranks, np.asarray(ties, dtype=np.float64)


def mann_whitney_greater(current: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """(U, p) for H1 "``current`` tends to be larger than ``baseline``".

    ``U`` counts pairs (c, b) with c > b (ties count one half). ``p`` is from the normal approximation
    with the tie-corrected variance and a continuity correction of 0.5.
    """
    x = np.asarray(current, dtype=np.float64)
    y = np.asarray(baseline, dtype=np.float64)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _ranks(np.concatenate([x, y]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    mean = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - float((ties ** 3 - ties).sum()) / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u, 1.0 if u <= mean else 0.0
    z = (u - mean - 0.5) / math.sqrt(var)
    return u, 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass
class CaseComparison:
    case: str
    verdict: str  # "ok", "regression", "improvement", "new", "missing", "failed", "no samples"
    why: str
    baseline_ms: float | None = None
    current_ms: float | None = None
    change: float | None = None  # relative change of the median step time (+ = slower)
    p_value: float | None = None
    top1: tuple[float | None, float | None] = (None, None)


def _measured(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last measured record of each case (a run may be resumed)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("kind", "measured") == "measured":
            out[r["case"]] = r
    return out


def _top1(r: dict[str, Any]) -> float | None:
    if not has_accuracy(r.get("config", {}).get("settings") or {}):
        return None  # random labels: accuracy means nothing
    v = (r.get("metrics", {}).get("eval") or {}).get("top1")
    return float(v) if isinstance(v, (int, float)) else None


def compare_runs(baseline: list[dict[str, Any]], current: list[dict[str, Any]], alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT, top1_tolerance: float = TOP1_TOLERANCE) -> list[CaseComparison]:
    base, cur = _measured(baseline), _measured(current)
    out = []
    for name in sorted(set(base) | set(cur)):
        b, c = base.get(name), cur.get(name)
        if c is None:
            ok_before = b is not None and b.get("status") == "ok"
            out.append(CaseComparison(name, "missing" if ok_before else "ok",
                                      "in the baseline, not in the current run"))
            continue
        if b is None:
            out.append(CaseComparison(name, "new", "not in the baseline"))
            continue
        if c.get("status") != "ok":
            verdict = "failed" if b.get("status") == "ok" else "ok"
            out.append(CaseComparison(name, verdict, f"current {c.get('status')}: {c.get('reason')}"))
            continue
        if b.get("status") != "ok":
            out.append(CaseComparison(name, "new", f"baseline {b.get('status')}"))
            continue
        bs = (b.get("samples") or {}).get("train_step_s") or []
        cs = (c.get("samples") or {}).get("train_step_s") or []
        t1 = (_top1(b), _top1(c))
        problems, notes = [], []
        res = CaseComparison(name, "ok", "", top1=t1)
        if bs and cs:
            mb, mc = float(np.median(bs)), float(np.median(cs))
            _, p_slower = mann_whitney_greater(cs, bs)
            _, p_faster = mann_whitney_greater(bs, cs)
            res.baseline_ms, res.current_ms, res.change = 1e3 * mb, 1e3 * mc, mc / mb - 1.0
            res.p_value = p_slower
            if p_slower < alpha and res.change >= min_effect:
                problems.append(f"slower by {100 * res.change:.1f}% (p = {p_slower:.2g})")
            elif p_faster < alpha and -res.change >= min_effect:
                notes.append(f"faster by {-100 * res.change:.1f}% (p = {p_faster:.2g})")
            else:
                notes.append(f"step time {100 * res.change:+.1f}% (p = {p_slower:.2g}): within noise")
        else:
            res.verdict = "no samples"
            notes.append("no train step samples to compare")
        if t1[0] is not None and t1[1] is not None:
            drop = t1[0] - t1[1]
            if drop > top1_tolerance:
                problems.append(f"top-1 fell {drop:.2f} points ({t1[0]:.2f} -> {t1[1]:.2f})")
        if problems:
            res.verdict, res.why = "regression", "; ".join(problems)
        else:
            if notes and notes[0].startswith("faster"):
                res.verdict = "improvement"
            res.why = "; ".join(notes)
        out.append(res)
    return out


REGRESSIONS = ("regression", "missing", "failed")


def render_comparison(results: list[CaseComparison], alpha: float = ALPHA, min_effect: float = MIN_EFFECT,
                      top1_tolerance: float = TOP1_TOLERANCE) -> str:
    from tabulate import tabulate

    bad = [r for r in results if r.verdict in REGRESSIONS]
    rows = [[r.case, r.verdict, f"{r.baseline_ms:.2f}" if r.baseline_ms is not None else "",
             f"{r.current_ms:.2f}" if r.current_ms is not None else "",
             f"{100 * r.change:+.1f}%" if r.change is not None else "",
             f"{r.p_value:.2g}" if r.p_value is not None else "",
             " -> ".join("" if v is None else f"{v:.2f}" for v in r.top1) if any(v is not None for v in r.top1) else "",
             r.why] for r in results]
    head = (f"# harness compare: {'REGRESSION' if bad else 'no regression'} "
            f"({len(bad)} of {len(results)} case(s))\n\n"
            f"A slowdown counts when one-sided Mann-Whitney U on the per-step samples gives p < {alpha:g} and the "
            f"median step time grew by at least {100 * min_effect:g}%; top-1 may fall by at most "
            f"{top1_tolerance:g} points.\n")
    table = tabulate(rows, headers=["case", "verdict", "baseline ms/step (median)", "current ms/step (median)",
                                    "change", "p (slower)", "top-1", "why"], tablefmt="github")
    return head + "\n" + table + "\n"
