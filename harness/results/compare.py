"""``harness compare BASELINE CURRENT``: regression gating for CI.

Cases are matched by name, and must have been measured with the same settings (the first difference is named;
``--allow-different-settings`` overrides). For each case measured in both runs:

* **throughput**: with repetitions (``repeats: 3`` or more in both runs) the per-run median step times are
  compared with a one-sided Welch t-test on their logarithms: that is run-to-run noise, which per-step samples
  miss (two back-to-back runs of the same code can differ by far more than their steps do). With ``paired``
  (``--paired``: the two sides were measured alternately, repetition k of one beside repetition k of the other,
  e.g. by ``benchmarks/gate/run.py`` or a CI job that alternates two checkouts) the ratio of median step times of
  each pair is tested instead (one-sided one-sample t-test on the log ratios): noise that moves the host for
  minutes hits both sides of a pair alike and cancels. Several runs given for one side (a folder of run folders)
  are its repetitions. Otherwise the
  per-step train samples of the two runs are compared with a one-sided Mann-Whitney U test
  (``scipy.stats.mannwhitneyu``, H1: the current steps take longer), which needs at least ``MIN_SAMPLES`` of them.
  With repetitions or pairs the change is their geometric mean ratio, shown with its 95% interval
  (:func:`harness.measure.intervals.rate` over the pairs' ratios, :func:`harness.measure.intervals.ratio` over
  repetitions); a change "within noise" whose interval still reaches ``min_effect`` says so: the runs cannot rule
  that slowdown out. A slowdown is a regression only when it is significant (``p < alpha``) *and* at least
  ``min_effect`` (relative change of the median step time): significance alone flags microseconds on a quiet machine,
  effect size alone flags noise on a busy one;
* **accuracy**: top-1 may fall by at most ``top1_tolerance`` points;
* **noise**: a case marked unstable (:mod:`harness.measure.noise`) in either run is not judged; with repetitions the
  unstable ones are left out as long as ``MIN_REPEATS`` stable ones remain on each side.

A case that was ok in the baseline and failed, or is missing, in the current run is a regression.

Exit status: 0 no regression, 1 regression, 2 usage or input error, or a case that cannot be judged.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.config import has_accuracy
from harness.errors import HarnessError
from harness.measure.intervals import Estimate, rate, ratio
from harness.results.case_rules import identity_difference, representative, representative_samples
from harness.results.significance import mann_whitney_greater, paired_slower, welch_slower

__all__ = ["CaseComparison", "compare_runs", "check_options", "ALPHA", "MIN_EFFECT", "TOP1_TOLERANCE",
           "MIN_SAMPLES", "MIN_REPEATS", "REGRESSIONS", "UNJUDGEABLE"]

#: Defaults of ``--alpha``, ``--min-effect`` and ``--top1-tolerance``.
ALPHA = 0.01
MIN_EFFECT = 0.10
TOP1_TOLERANCE = 1.0
#: Per-step samples per run a judgement needs: with fewer, Mann-Whitney cannot reach p < 0.01 at all.
MIN_SAMPLES = 5
#: Repetitions per case at which per-run values (run-to-run noise) are judged instead of per-step samples.
MIN_REPEATS = 3
#: Verdicts that make the gate exit 1.
REGRESSIONS = ("regression", "missing", "failed")
#: Verdicts that make the gate exit 2: it could not judge.
UNJUDGEABLE = ("unstable",)


@dataclass
class CaseComparison:
    case: str
    verdict: str  # "ok", "regression", "improvement", "new", "missing", "failed", "no samples", "unstable"
    why: str
    baseline_ms: float | None = None
    current_ms: float | None = None
    change: float | None = None  # relative change of the median step time (+ = slower)
    change_ci: tuple[float, float] | None = None  # its 95% interval, from repetitions or pairs (run-to-run noise)
    p_value: float | None = None
    top1: tuple[float | None, float | None] = (None, None)
    basis: str = ""  # "steps" (per-step samples of one run each), "runs" (per-run values of repetitions), "pairs"
    measure: str = ""  # what was timed: the case's representative measurement (train, eval, inference b32, data w4)


def check_options(alpha: float, min_effect: float, top1_tolerance: float) -> None:
    """One line for an option out of range (a gate that cannot fire, or fires on nothing, is refused)."""
    if not 0 < alpha <= 0.5:
        raise HarnessError(f"--alpha {alpha:g}: must be in (0, 0.5] (a significance level)")
    if not 0 <= min_effect < 1:
        raise HarnessError(f"--min-effect {min_effect:g}: must be in [0, 1) (a fraction: 0.10 = 10% slower)")
    if not 0 <= top1_tolerance <= 100:
        raise HarnessError(f"--top1-tolerance {top1_tolerance:g}: must be in [0, 100] (top-1 points)")


def _started(r: dict[str, Any]) -> float:
    """When the record's measurement started (seconds since the epoch; 0 when the record does not say)."""
    try:
        return dt.datetime.fromisoformat(str(r.get("started_at"))).timestamp()
    except ValueError:
        return 0.0


def _by_case(records: list[dict[str, Any]], where: str) -> dict[str, list[dict[str, Any]]]:
    """The measured records of each case, one per repetition, in the order they were measured. A repetition is a
    (run, repeat) pair: several runs given for one side are its repetitions, and a resumed run's newest record of a
    repetition replaces the older one."""
    out: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for i, r in enumerate(records, 1):
        if r.get("kind", "measured") != "measured":
            continue
        repeat = r.get("repeat", 0) or 0
        if not isinstance(r.get("case"), str) or not isinstance(r.get("config"), dict) or not isinstance(repeat, int):
            raise HarnessError(f"{where}: record {i} is not a harness record (no case, config or integer repeat)")
        out.setdefault(r["case"], {})[(str(r.get("run_id", "")), repeat)] = r
    return {k: sorted(v.values(), key=lambda r: (_started(r), r.get("repeat", 0) or 0)) for k, v in out.items()}


def _check_paired(case: str, b: list[dict[str, Any]], c: list[dict[str, Any]]) -> None:
    """Paired repetitions must have been measured alternately: pair k (repetition k of each side) before pair k+1."""
    if len(b) != len(c):
        raise HarnessError(f"case {case}: --paired needs as many repetitions in the baseline as in the current run "
                           f"({len(b)} and {len(c)})")
    starts = [(_started(x), _started(y)) for x, y in zip(b, c)]
    for k in range(1, len(starts)):
        if max(starts[k - 1]) >= min(starts[k]):
            raise HarnessError(f"case {case}: --paired: repetition {k + 1} of one side started before repetition {k} "
                               "of the other; pairs must be measured alternately (baseline, current, baseline, ...)")


def _top1(r: dict[str, Any]) -> float | None:
    if not has_accuracy(r.get("config", {}).get("settings") or {}):
        return None  # random labels: accuracy means nothing
    v = (r.get("metrics", {}).get("eval") or {}).get("top1")
    return float(v) if isinstance(v, (int, float)) else None


def _judge_time(res: CaseComparison, b: list[dict[str, Any]], c: list[dict[str, Any]], alpha: float,
                min_effect: float, paired: bool = False) -> tuple[list[str], list[str]]:
    """Slower, faster or within noise: from per-run median step times when both runs have repetitions, else from
    the per-step samples of one run each; too few of either is refused. The steps are those of the case's
    representative measurement (:func:`harness.results.case_rules.representative`): training's, an eval or export
    case's evaluation, an inference case's largest batch, a data case's pipeline."""
    measures = {m.label for runs in (b, c) for m in map(representative, runs) if m is not None}
    steps = [[representative_samples(r) for r in runs] for runs in (b, c)]
    if not all(steps[0]) or not all(steps[1]) or len(measures) != 1:
        res.verdict = "no samples"
        return [], [f"the two runs time different things ({', '.join(sorted(measures))})" if len(measures) > 1
                    else "no step samples to compare"]
    res.measure = measures.pop()
    change = None
    if paired:
        tb, tc = ([float(np.median(x)) for x in side] for side in steps)
        res.basis = f"pairs ({len(tb)})"
        ratios = np.asarray(tc) / np.asarray(tb)
        p_slower, p_faster = paired_slower(ratios), paired_slower(1 / ratios)
        change = float(np.exp(np.log(ratios).mean())) - 1.0  # the geometric mean of the pairs' ratios
        res.change_ci = _relative(rate(ratios))  # Student's t over the log ratios
    elif len(b) >= MIN_REPEATS and len(c) >= MIN_REPEATS:
        res.basis = f"runs ({len(b)} vs {len(c)})"
        tb, tc = ([float(np.median(x)) for x in side] for side in steps)
        p_slower, p_faster = welch_slower(tc, tb), welch_slower(tb, tc)
        change = float(np.exp(np.log(tc).mean() - np.log(tb).mean())) - 1.0  # what the Welch test on logs judges
        res.change_ci = _relative(ratio(tc, tb))  # Welch's t over the logs
    else:
        tb, tc = steps[0][-1], steps[1][-1]
        for side, values in (("baseline", tb), ("current run", tc)):
            if len(values) < MIN_SAMPLES:
                raise HarnessError(f"case {res.case}: {len(values)} timed steps in the {side}: the gate needs at least "
                                   f"{MIN_SAMPLES} per run (steps: {MIN_SAMPLES}), or {MIN_REPEATS} repetitions "
                                   f"of each case (repeats: {MIN_REPEATS})")
        res.basis = f"steps ({len(tb)} vs {len(tc)})"
        p_slower, p_faster = mann_whitney_greater(tc, tb)[1], mann_whitney_greater(tb, tc)[1]
    mb, mc = float(np.median(tb)), float(np.median(tc))
    res.baseline_ms, res.current_ms, res.p_value = 1e3 * mb, 1e3 * mc, p_slower
    res.change = mc / mb - 1.0 if change is None else change
    if p_slower < alpha and res.change >= min_effect:
        return [f"slower by {100 * res.change:.1f}% (p = {p_slower:.2g})"], []
    if p_faster < alpha and -res.change >= min_effect:
        return [], [f"faster by {-100 * res.change:.1f}% (p = {p_faster:.2g})"]
    if res.change_ci is not None:
        hi = res.change_ci[1]
        wide = (f"; its 95% interval reaches {100 * hi:+.0f}%, so a {100 * min_effect:g}% slowdown is not ruled out: "
                "more repetitions or pairs would narrow it") if hi >= min_effect else ""
        return [], [f"step time {100 * res.change:+.1f}% (p = {p_slower:.2g}): within noise{wide}"]
    return [], [f"step time {100 * res.change:+.1f}% (p = {p_slower:.2g}): within noise"]


def _relative(est: Estimate | None) -> tuple[float, float] | None:
    """A ratio's interval (:mod:`harness.measure.intervals`) as relative changes (ratio - 1)."""
    return None if est is None or est.lo is None or est.hi is None else (est.lo - 1.0, est.hi - 1.0)


def _unstable(r: dict[str, Any]) -> bool:
    return bool((r.get("noise") or {}).get("unstable"))


def _stable(b: list[dict[str, Any]], c: list[dict[str, Any]],
            paired: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The repetitions a case is judged on, and why it cannot be judged ("" when it can). Single runs: an unstable
    one makes the case unjudgeable. Repetitions: unstable ones are left out (with ``paired``, the pairs holding
    one), as long as :data:`MIN_REPEATS` stable ones remain on each side (their spread is in the test already);
    otherwise the case is unjudgeable."""
    if paired:
        kept = [(x, y) for x, y in zip(b, c) if not _unstable(x) and not _unstable(y)]
        if len(kept) >= MIN_REPEATS:
            return [x for x, _ in kept], [y for _, y in kept], ""
        if len(b) < MIN_REPEATS:
            return b, c, f"--paired needs {MIN_REPEATS} pairs ({len(b)} measured)"
        why = next("; ".join(r["noise"]["reasons"]) for r in b + c if _unstable(r))
        return b, c, f"{why} ({len(kept)} of {len(b)} pairs stable on both sides, {MIN_REPEATS} needed)"
    if len(b) >= MIN_REPEATS and len(c) >= MIN_REPEATS:
        stable = [[r for r in runs if not _unstable(r)] for runs in (b, c)]
        if all(len(k) >= MIN_REPEATS for k in stable):
            return stable[0], stable[1], ""
    for side, runs in (("baseline", b), ("current", c)):
        for r in runs:
            if _unstable(r):
                left = sum(not _unstable(x) for x in runs)
                extra = f" ({left} of {len(runs)} repetitions stable, {MIN_REPEATS} needed)" if len(runs) > 1 else ""
                return b, c, f"{side}: {'; '.join(r['noise']['reasons'])}{extra}"
    return b, c, ""


def compare_runs(baseline: list[dict[str, Any]], current: list[dict[str, Any]], alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT, top1_tolerance: float = TOP1_TOLERANCE,
                 allow_different_settings: bool = False, paired: bool = False) -> list[CaseComparison]:
    """Each case of both runs judged; HarnessError (one line) for runs that cannot be compared: a case whose
    settings differ (unless ``allow_different_settings``), too few samples, options out of range; with ``paired``,
    repetitions that were not measured alternately."""
    check_options(alpha, min_effect, top1_tolerance)
    base, cur = _by_case(baseline, "baseline"), _by_case(current, "current run")
    if base and cur and not set(base) & set(cur):
        raise HarnessError(f"the two runs have no case in common (baseline: {', '.join(sorted(base)[:3])}...; "
                           f"current: {', '.join(sorted(cur)[:3])}...): not runs of the same suite")
    out = []
    for name in sorted(set(base) | set(cur)):
        b, c = base.get(name), cur.get(name)
        if c is None:
            ok_before = any(r.get("status") == "ok" for r in b or [])
            out.append(CaseComparison(name, "missing" if ok_before else "ok",
                                      "in the baseline, not in the current run"))
            continue
        if b is None:
            out.append(CaseComparison(name, "new", "not in the baseline"))
            continue
        diff = identity_difference(b[-1]["config"], c[-1]["config"])
        if diff and not allow_different_settings:
            raise HarnessError(f"case {name}: {diff}: the runs measure different things (--allow-different-settings "
                               "to compare them anyway)")
        bad = next((r for r in c if r.get("status") != "ok"), None)
        if bad is not None:
            verdict = "failed" if all(r.get("status") == "ok" for r in b) else "ok"
            out.append(CaseComparison(name, verdict, f"current {bad.get('status')}: {bad.get('reason')}"))
            continue
        if any(r.get("status") != "ok" for r in b):
            out.append(CaseComparison(name, "new", "baseline not ok"))
            continue
        if paired:
            _check_paired(name, b, c)
        b, c, noisy = _stable(b, c, paired)
        if noisy:
            out.append(CaseComparison(name, "unstable", "cannot be judged, " + noisy))
            continue
        res = CaseComparison(name, "ok", "", top1=(_top1(b[-1]), _top1(c[-1])))
        problems, notes = _judge_time(res, b, c, alpha, min_effect, paired)
        t1 = res.top1
        if t1[0] is not None and t1[1] is not None and t1[0] - t1[1] > top1_tolerance:
            problems.append(f"top-1 fell {t1[0] - t1[1]:.2f} points ({t1[0]:.2f} -> {t1[1]:.2f})")
        if problems:
            res.verdict, res.why = "regression", "; ".join(problems)
        else:
            if notes and notes[0].startswith("faster"):
                res.verdict = "improvement"
            res.why = "; ".join(notes)
        out.append(res)
    return out
