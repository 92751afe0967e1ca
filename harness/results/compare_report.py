"""What ``harness compare`` prints and writes: a verdict line, how the gate judged, the settings an A/B comparison
changed, and one row per case and metric (:func:`harness.results.compare.compare_runs`), as markdown or as JSON;
then, where both runs have seeds, whether each configuration's top-1 over them is equivalent
(:func:`harness.results.equivalence.runs_equivalence`)."""
from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from harness.results.compare import (
    ALPHA,
    MEMORY_TOLERANCE,
    MIN_EFFECT,
    MIN_REPEATS,
    REGRESSIONS,
    TOP1_TOLERANCE,
    UNJUDGEABLE,
    CaseComparison,
)
from harness.results.equivalence import COMPARE_NOTE

__all__ = ["render_comparison", "comparison_json", "verdict_line", "JSON_SCHEMA"]

#: The ``schema`` of ``harness compare --json``.
JSON_SCHEMA = "harness.compare/1"


def verdict_line(results: list[CaseComparison]) -> str:
    """REGRESSION, CANNOT JUDGE or no regression, with the counts."""
    bad = [r for r in results if r.verdict in REGRESSIONS]
    unjudged = [r for r in results if r.verdict in UNJUDGEABLE]
    verdict = "REGRESSION" if bad else "CANNOT JUDGE" if unjudged else "no regression"
    cases = len({r.case for r in results if r.metric != "top1_seeds"})  # (a row over seeds is a configuration)
    judged = sum(bool(r.metric) and r.verdict != "not judged" for r in results)
    return (f"{verdict} ({len(bad)} regression(s), {len(unjudged)} unstable, of {cases} case(s), {judged} metric(s) "
            "judged)")


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    return f"{v:.2f} {unit}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g} {unit}"


def _change_cell(r: CaseComparison) -> str:
    if r.change is None:
        return ""
    if r.unit == "%":  # top-1: a change in points
        return f"{r.change:+.2f} points"
    if r.change_ci is None:
        return f"{100 * r.change:+.1f}% (" + ("single runs" if r.basis.startswith("steps") else r.basis) + ")"
    return f"{100 * r.change:+.1f}% [{100 * r.change_ci[0]:+.1f}%, {100 * r.change_ci[1]:+.1f}%]"


def _differences(results: list[CaseComparison]) -> str:
    """The header's list of settings an A/B comparison changed, per case."""
    seen: dict[str, list[str]] = {}
    for r in results:
        if r.differences:
            seen.setdefault(r.case, r.differences)
    if not seen:
        return ""
    lines = [f"- **{case}**: {'; '.join(diffs)}" for case, diffs in seen.items()]
    return ("\n**An A/B comparison: the settings differ by choice.** Time metrics are compared per image where the "
            "batch sizes differ (ms/image), never per step.\n\n" + "\n".join(lines) + "\n")


def render_comparison(results: list[CaseComparison], alpha: float = ALPHA, min_effect: float = MIN_EFFECT,
                      top1_tolerance: float = TOP1_TOLERANCE, equivalence: pd.DataFrame | None = None,
                      memory_tolerance: float = MEMORY_TOLERANCE) -> str:
    """The verdict, how the gate judged with these options, the settings that differ, and a table of every case and
    metric: the statistic of each side, the change with its interval, p and why; then the accuracy over seeds
    (``equivalence``: :func:`harness.results.equivalence.runs_equivalence`) where there is any."""
    from tabulate import tabulate

    rows = [[r.case, r.metric, r.verdict, r.basis, r.statistic, _value(r.baseline, r.unit), _value(r.current, r.unit),
             _change_cell(r), f"{r.p_value:.2g}" if r.p_value is not None else "", r.why] for r in results]
    head = (f"# harness compare: {verdict_line(results)}\n\n"
            f"A time metric (train, eval, inference_b<N>, latency_p50, data_w<N>) is worse when it is significant "
            f"(p < {alpha:g}: one-sided t over the log ratios of alternately measured pairs with --paired, else "
            f"one-sided Welch t over the per-run medians when both runs have {MIN_REPEATS}+ repetitions, else "
            f"one-sided Mann-Whitney U over the per-step samples) and grew by at least {100 * min_effect:g}%. With "
            f"repetitions or pairs the figures are geometric means of the per-run medians and the change their ratio "
            f"with its 95% t-interval; single runs show the medians of the steps and no interval. A run metric "
            f"(latency_p99, time_to_accuracy, energy) has one value per run and is judged over repetitions only. "
            f"Peak memory may grow by {100 * memory_tolerance:g}%, top-1 fall by {top1_tolerance:g} points. A case "
            f"marked unstable in either run is not judged. p tests H1: the current run is worse.\n")
    table = tabulate(rows, headers=["case", "metric", "verdict", "basis", "statistic", "baseline", "current",
                                    "change [95% CI]", "p (H1: worse)", "why"], tablefmt="github")
    seeds = "" if equivalence is None or equivalence.empty else (
        f"\n## Accuracy over seeds: equivalent?\n\n{COMPARE_NOTE}\n\n"
        f"{equivalence.to_markdown(index=False, tablefmt='github', disable_numparse=True)}\n")
    return head + _differences(results) + "\n" + table + "\n" + seeds


def comparison_json(results: list[CaseComparison], options: dict[str, Any]) -> dict[str, Any]:
    """The verdict as data (``--json``): the options it was judged with and one object per row."""
    return {"schema": JSON_SCHEMA, "verdict": verdict_line(results), "options": options,
            "regression": any(r.verdict in REGRESSIONS for r in results),
            "rows": [dataclasses.asdict(r) for r in results]}
