"""The text ``harness compare`` prints: a verdict line, how the gate judged, and one row per case
(:func:`harness.results.compare.compare_runs`); then, where both runs have seeds, whether each configuration's top-1
over them is equivalent (:func:`harness.results.equivalence.runs_equivalence`)."""
from __future__ import annotations

import pandas as pd

from harness.results.compare import (
    ALPHA,
    MIN_EFFECT,
    MIN_REPEATS,
    REGRESSIONS,
    TOP1_TOLERANCE,
    UNJUDGEABLE,
    CaseComparison,
)
from harness.results.equivalence import COMPARE_NOTE

__all__ = ["render_comparison"]


def _change_cell(r: CaseComparison) -> str:
    if r.change is None:
        return ""
    if r.change_ci is None:
        return f"{100 * r.change:+.1f}% (single runs)"
    return f"{100 * r.change:+.1f}% [{100 * r.change_ci[0]:+.1f}%, {100 * r.change_ci[1]:+.1f}%]"


def render_comparison(results: list[CaseComparison], alpha: float = ALPHA, min_effect: float = MIN_EFFECT,
                      top1_tolerance: float = TOP1_TOLERANCE, equivalence: pd.DataFrame | None = None) -> str:
    """The verdict, how the gate judged with these options, and a table of every case: what was timed, on what
    basis, the two median step times, the change with its interval, p and top-1, and why; then the accuracy over
    seeds (``equivalence``: :func:`harness.results.equivalence.runs_equivalence`) where there is any."""
    from tabulate import tabulate

    bad = [r for r in results if r.verdict in REGRESSIONS]
    unjudged = [r for r in results if r.verdict in UNJUDGEABLE]
    rows = [[r.case, r.verdict, r.measure, r.basis, f"{r.baseline_ms:.2f}" if r.baseline_ms is not None else "",
             f"{r.current_ms:.2f}" if r.current_ms is not None else "",
             _change_cell(r),
             f"{r.p_value:.2g}" if r.p_value is not None else "",
             " -> ".join("" if v is None else f"{v:.2f}" for v in r.top1) if any(v is not None for v in r.top1) else "",
             r.why] for r in results]
    verdict = "REGRESSION" if bad else "CANNOT JUDGE" if unjudged else "no regression"
    head = (f"# harness compare: {verdict} ({len(bad)} regression(s), {len(unjudged)} unstable, of {len(results)} "
            f"case(s))\n\n"
            f"A slowdown counts when it is significant (p < {alpha:g}: one-sided t over the log ratios of alternately "
            f"measured pairs with --paired, else one-sided Welch t over the per-run median step times when both runs "
            f"have {MIN_REPEATS}+ repetitions, else one-sided Mann-Whitney U over the per-step samples) and the median "
            f"step time grew by at least {100 * min_effect:g}% (with repetitions or pairs: their geometric mean "
            f"ratio, with its 95% interval from run-to-run noise; single runs have none); top-1 may fall by at most "
            f"{top1_tolerance:g} points. A case marked unstable in either run is not judged. The steps timed are those "
            f"of what represents the case (measure): training steps, an eval or export case's evaluation batches, an "
            f"inference case's runs at its largest batch, a data case's batches of the backend's pipeline.\n")
    table = tabulate(rows, headers=["case", "verdict", "measure", "basis", "baseline ms/step (median)",
                                    "current ms/step (median)", "change [95% CI]", "p (slower)", "top-1", "why"],
                     tablefmt="github")
    seeds = "" if equivalence is None or equivalence.empty else (
        f"\n## Accuracy over seeds: equivalent?\n\n{COMPARE_NOTE}\n\n"
        f"{equivalence.to_markdown(index=False, tablefmt='github', disable_numparse=True)}\n")
    return head + "\n" + table + "\n" + seeds
