"""``harness compare BASELINE CURRENT``: the gate, on every metric a case measured (:mod:`.gate_metrics`).

Cases are matched by name, and must have been measured with the same settings (the first difference is named;
``--allow-different-settings`` makes it an A/B comparison: every difference is listed, and time metrics are
compared per image when the batch sizes differ). ``--only GLOB`` keeps the matching cases; a baseline case that a
subset run (``harness run --only``) did not select is "not run", never a regression. Each metric is judged by the
statistic that fits it:

* **time** metrics (training steps, evaluation, inference per batch size and the p50 latency at batch 1, the
  input pipeline per worker count): with ``--paired`` repetitions (measured alternately, repetition k of one side
  beside repetition k of the other) the ratios of per-run medians, one-sided one-sample t-test on their logs; with
  ``MIN_REPEATS`` repetitions on both sides the per-run medians, one-sided Welch t-test on their logs; both show the
  change as the ratio of geometric means of the per-run medians with its 95% t-interval (run-to-run noise). Single
  runs: the per-step samples, one-sided Mann-Whitney U; the change is the ratio of medians, with no interval.
* **run** metrics (the p99 latency at batch 1, time to accuracy, energy per image): one value per run, judged as the
  time metrics' repetitions are; single runs are not judged (a single run's tail is one sample).
* **size** metrics (peak host and device memory): deterministic; growth beyond ``memory_tolerance`` is a regression.
* **top1** metrics (evaluation, exported model; labelled data only): a fall of more than ``top1_tolerance`` points.

A slowdown is a regression only when it is significant (``p < alpha``) *and* at least ``min_effect``: significance
alone flags microseconds on a quiet machine, effect size alone flags noise on a busy one. A case marked unstable
(:mod:`harness.measure.noise`) in either run is not judged (with repetitions the unstable ones are left out while
``MIN_REPEATS`` stable ones remain). A case ok in the baseline that failed, or is missing, in the current run is a
regression. Exit status: 0 no regression, 1 regression, 2 usage or input error, or something asked for that cannot
be judged.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.measure.intervals import Estimate, rate, ratio
from harness.results.case_rules import identity_differences
from harness.results.equivalence import MARGIN
from harness.results.gate_metrics import UNITS, Observation, metric_kind, observations
from harness.results.gate_runs import by_case, check_paired, selected, stable
from harness.results.significance import mann_whitney_greater, paired_slower, welch_slower

__all__ = ["CaseComparison", "compare_runs", "check_options", "check_metrics", "ALPHA", "MIN_EFFECT",
           "TOP1_TOLERANCE", "MEMORY_TOLERANCE", "MIN_SAMPLES", "MIN_REPEATS", "REGRESSIONS", "UNJUDGEABLE"]

#: Defaults of ``--alpha``, ``--min-effect``, ``--top1-tolerance`` and ``--memory-tolerance``.
ALPHA = 0.01
MIN_EFFECT = 0.10
TOP1_TOLERANCE = 1.0
MEMORY_TOLERANCE = 0.10
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
    """One row of the gate: a case's ``metric`` judged (or the whole case, ``metric`` empty: missing, failed, new,
    not run, unstable). ``baseline``/``current`` are the ``statistic`` of each side in ``unit``; ``change`` is the
    relative change of that statistic (+ = worse for time, run and size metrics; top-1 points for top-1), with its
    95% interval where repetitions or pairs give one; ``p_value`` tests "the current run is worse"."""

    case: str
    verdict: str  # "ok", "regression", "improvement", "new", "missing", "failed", "unstable", "not run", "not judged"
    why: str
    metric: str = ""
    unit: str = ""
    statistic: str = ""
    baseline: float | None = None
    current: float | None = None
    change: float | None = None
    change_ci: tuple[float, float] | None = None
    p_value: float | None = None
    basis: str = ""  # "steps (20 vs 20)", "runs (3 vs 3)", "pairs (5)", "tolerance"
    differences: list[str] = field(default_factory=list)  # settings that differ (an A/B comparison)


def check_options(alpha: float, min_effect: float, top1_tolerance: float,
                  memory_tolerance: float = MEMORY_TOLERANCE) -> None:
    """One line for an option out of range (a gate that cannot fire, or fires on nothing, is refused)."""
    if not 0 < alpha <= 0.5:
        raise HarnessError(f"--alpha {alpha:g}: must be in (0, 0.5] (a significance level)")
    if not 0 <= min_effect < 1:
        raise HarnessError(f"--min-effect {min_effect:g}: must be in [0, 1) (a fraction: 0.10 = 10% slower)")
    if not 0 <= top1_tolerance <= 100:
        raise HarnessError(f"--top1-tolerance {top1_tolerance:g}: must be in [0, 100] (top-1 points)")
    if not 0 <= memory_tolerance < 10:
        raise HarnessError(f"--memory-tolerance {memory_tolerance:g}: must be in [0, 10) (a fraction: 0.10 = 10%)")


def check_metrics(names: list[str] | None) -> None:
    """One line for a ``--metrics`` name the gate does not know, with a near match."""
    from harness.errors import near
    from harness.results.gate_metrics import KINDS

    for name in names or []:
        if metric_kind(name) is None:
            known = [*KINDS, "inference_b<N>", "data_w<N>"]
            raise HarnessError(f"--metrics: unknown metric '{name}'{near(name, known)} (known: {', '.join(known)})")


def _per_run(obs: list[Observation], per_image: bool) -> list[list[float]]:
    """Each run's per-step milliseconds (per image with ``per_image``)."""
    return [[1e3 * v / (o.batch if per_image else 1) for v in o.samples] for o in obs]


def _geo(values: list[float]) -> float:
    return float(np.exp(np.log(values).mean()))


def _relative(est: Estimate | None) -> tuple[float, float] | None:
    """A ratio's interval (:mod:`harness.measure.intervals`) as relative changes (ratio - 1)."""
    return None if est is None or est.lo is None or est.hi is None else (est.lo - 1.0, est.hi - 1.0)


def _over_runs(res: CaseComparison, tb: list[float], tc: list[float], paired: bool) -> tuple[float, float] | None:
    """Judge per-run values (lower is better) over pairs or repetitions; (p worse, p better), or None for too few."""
    if paired and len(tb) >= MIN_REPEATS:
        ratios = np.asarray(tc) / np.asarray(tb)
        res.basis, res.change_ci = f"pairs ({len(tb)})", _relative(rate(ratios))
        p = paired_slower(ratios), paired_slower(1 / ratios)
    elif not paired and len(tb) >= MIN_REPEATS and len(tc) >= MIN_REPEATS:
        res.basis, res.change_ci = f"runs ({len(tb)} vs {len(tc)})", _relative(ratio(tc, tb))
        p = welch_slower(tc, tb), welch_slower(tb, tc)
    else:
        return None
    res.statistic = "geometric mean of the runs" + (" (per-run medians)" if res.unit.startswith("ms/") else "")
    res.baseline, res.current = _geo(tb), _geo(tc)
    res.change = res.current / res.baseline - 1.0
    return p


def _judge_timing(res: CaseComparison, b: list[Observation], c: list[Observation], per_image: bool, alpha: float,
                  min_effect: float, paired: bool) -> None:
    kind = b[0].kind
    if kind == "time":
        res.unit = "ms/image" if per_image else ("ms/step" if res.metric == "train" else "ms/batch")
        sb, sc = _per_run(b, per_image), _per_run(c, per_image)
        p = _over_runs(res, [float(np.median(x)) for x in sb], [float(np.median(x)) for x in sc], paired)
        if p is None:
            tb, tc = sb[-1], sc[-1]
            for side, values in (("baseline", tb), ("current run", tc)):
                if len(values) < MIN_SAMPLES:
                    raise HarnessError(f"case {res.case}: {res.metric}: {len(values)} timed steps in the {side}: the "
                                       f"gate needs at least {MIN_SAMPLES} per run (steps: {MIN_SAMPLES}), or "
                                       f"{MIN_REPEATS} repetitions of each case (repeats: {MIN_REPEATS})")
            res.basis, res.statistic = f"steps ({len(tb)} vs {len(tc)})", "median of the steps"
            res.baseline, res.current = float(np.median(tb)), float(np.median(tc))
            res.change = res.current / res.baseline - 1.0
            p = mann_whitney_greater(tc, tb)[1], mann_whitney_greater(tb, tc)[1]
    else:
        res.unit = UNITS[res.metric]
        p = _over_runs(res, [o.value for o in b if o.value is not None],
                       [o.value for o in c if o.value is not None], paired)
        if p is None:
            res.verdict = "not judged"
            res.why = (f"one value per run: judged over {MIN_REPEATS}+ repetitions (repeats: {MIN_REPEATS}), "
                       "never from a single run")
            return
    assert res.change is not None
    res.p_value = p[0]
    if p[0] < alpha and res.change >= min_effect:
        res.verdict, res.why = "regression", f"worse by {100 * res.change:.1f}% (p = {p[0]:.2g})"
    elif p[1] < alpha and -res.change >= min_effect:
        res.verdict, res.why = "improvement", f"better by {-100 * res.change:.1f}% (p = {p[1]:.2g} for H1: better)"
    else:
        hi = res.change_ci[1] if res.change_ci is not None else None
        wide = (f"; its 95% interval reaches {100 * hi:+.0f}%, so a {100 * min_effect:g}% slowdown is not ruled out: "
                "more repetitions or pairs would narrow it") if hi is not None and hi >= min_effect else ""
        res.why = f"{100 * res.change:+.1f}% (p = {p[0]:.2g}): within noise{wide}"


def _judge_tolerance(res: CaseComparison, b: list[Observation], c: list[Observation], top1_tolerance: float,
                     memory_tolerance: float) -> None:
    res.unit, res.basis = UNITS[res.metric], "tolerance"
    vb, vc = ([o.value for o in side if o.value is not None] for side in (b, c))
    if b[0].kind == "size":
        res.statistic = "median of the runs"
        res.baseline, res.current = float(np.median(vb)), float(np.median(vc))
        res.change = res.current / res.baseline - 1.0
        if res.change > memory_tolerance:
            res.verdict = "regression"
            res.why = f"grew by {100 * res.change:.1f}% (tolerance {100 * memory_tolerance:g}%)"
        else:
            res.why = f"{100 * res.change:+.1f}% (tolerance {100 * memory_tolerance:g}%)"
        return
    res.statistic = "mean of the runs"
    res.baseline, res.current = float(np.mean(vb)), float(np.mean(vc))
    res.change = res.current - res.baseline  # in points
    own = [o.own for o in c if o.own is not None]
    behind = float(np.mean(own)) - res.current if own else None  # the export against its own framework
    if -res.change > top1_tolerance:
        res.verdict = "regression"
        res.why = f"top-1 fell {-res.change:.2f} points ({res.baseline:.2f} -> {res.current:.2f})"
    elif behind is not None and behind > top1_tolerance:
        res.verdict = "regression"
        res.why = (f"the exported model's top-1 is {behind:.2f} points below the framework's own of the same "
                   f"weights ({res.current:.2f} vs {res.current + behind:.2f})")
    else:
        res.why = f"{res.change:+.2f} points (tolerance {top1_tolerance:g})"


def _judge_case(name: str, b: list[dict[str, Any]], c: list[dict[str, Any]], options: dict[str, Any],
                differences: list[str]) -> list[CaseComparison]:
    ob = [observations(r) for r in b]
    oc = [observations(r) for r in c]
    common = [m for m in ob[-1] if all(m in o for o in ob + oc)]
    wanted = options["metrics"]
    rows = []
    for metric in (wanted if wanted is not None else common):
        if metric == "top1_seeds":  # over a configuration's cases, not one case's (_over_seeds)
            continue
        res = CaseComparison(name, "ok", "", metric=metric, differences=differences)
        if metric not in common:
            res.verdict, res.why = "not judged", "not measured in both runs"
            rows.append(res)
            continue
        sb, sc = [o[metric] for o in ob], [o[metric] for o in oc]
        if sb[0].kind in ("time", "run"):
            batches = {o.batch for o in sb + sc}
            _judge_timing(res, sb, sc, len(batches) > 1, options["alpha"], options["min_effect"], options["paired"])
        else:
            _judge_tolerance(res, sb, sc, options["top1_tolerance"], options["memory_tolerance"])
        rows.append(res)
    return rows


def compare_runs(baseline: list[dict[str, Any]], current: list[dict[str, Any]], alpha: float = ALPHA,
                 min_effect: float = MIN_EFFECT, top1_tolerance: float = TOP1_TOLERANCE,
                 allow_different_settings: bool = False, paired: bool = False, metrics: list[str] | None = None,
                 memory_tolerance: float = MEMORY_TOLERANCE, only: list[str] | None = None,
                 margin: float = MARGIN) -> list[CaseComparison]:
    """Every case of both runs judged, one row per metric (``metrics``: these only; default every metric both runs
    measured); HarnessError (one line) for runs that cannot be compared: a case whose settings differ (unless
    ``allow_different_settings``), too few samples, options out of range; with ``paired``, repetitions that were not
    measured alternately."""
    check_options(alpha, min_effect, top1_tolerance, memory_tolerance)
    check_metrics(metrics)
    options = {"alpha": alpha, "min_effect": min_effect, "top1_tolerance": top1_tolerance,
               "memory_tolerance": memory_tolerance, "paired": paired, "metrics": metrics}
    base, cur = by_case(baseline, "baseline", only), by_case(current, "current run", only)
    if base and cur and not set(base) & set(cur):
        raise HarnessError(f"the two runs have no case in common (baseline: {', '.join(sorted(base)[:3])}...; "
                           f"current: {', '.join(sorted(cur)[:3])}...): not runs of the same suite")
    subset = selected(current)
    out = []
    for name in sorted(set(base) | set(cur)):
        b, c = base.get(name), cur.get(name)
        if c is None:
            if subset is not None and not any(fnmatch.fnmatchcase(name, p) for p in subset):
                out.append(CaseComparison(name, "not run", f"the current run selected {' '.join(subset)} (--only)"))
                continue
            ok_before = any(r.get("status") == "ok" for r in b or [])
            out.append(CaseComparison(name, "missing" if ok_before else "ok",
                                      "in the baseline, not in the current run"))
            continue
        if b is None:
            out.append(CaseComparison(name, "new", "not in the baseline"))
            continue
        differences = identity_differences(b[-1]["config"], c[-1]["config"])
        if differences and not allow_different_settings:
            raise HarnessError(f"case {name}: {differences[0]}: the runs measure different things "
                               "(--allow-different-settings to compare them anyway)")
        bad = next((r for r in c if r.get("status") != "ok"), None)
        if bad is not None:
            verdict = "failed" if all(r.get("status") == "ok" for r in b) else "ok"
            out.append(CaseComparison(name, verdict, f"current {bad.get('status')}: {bad.get('reason')}"))
            continue
        if any(r.get("status") != "ok" for r in b):
            out.append(CaseComparison(name, "new", "baseline not ok"))
            continue
        if paired:
            check_paired(name, b, c)
        b, c, noisy = stable(b, c, paired, MIN_REPEATS)
        if noisy:
            out.append(CaseComparison(name, "unstable", "cannot be judged, " + noisy))
            continue
        out.extend(_judge_case(name, b, c, options, differences))
    if metrics is None or {"top1", "top1_seeds"} & set(metrics):
        _over_seeds(out, baseline, current, margin)
    return out


def _over_seeds(rows: list[CaseComparison], baseline: list[dict[str, Any]], current: list[dict[str, Any]],
                margin: float) -> None:
    """Top-1 of a configuration with 2+ seeds in both runs is judged over its seeds by the equivalence rule
    (:func:`harness.results.equivalence.seed_equivalences`): worse beyond ``margin`` is a regression, inconclusive is
    not judged (its cases keep their tolerance); otherwise its cases' own top-1 rows defer to it."""
    from harness.results.equivalence import SEED_KEYS, seed_equivalences
    from harness.results.frame import records_frame

    tested = seed_equivalences(baseline, current, margin)
    if not tested:
        return
    frame = records_frame(current)
    cases: dict[tuple[Any, ...], set[str]] = {}
    for _, r in frame.iterrows():
        cases.setdefault(tuple(r[k] for k in SEED_KEYS), set()).add(str(r["case"]))
    for key, result in tested:
        for row in rows:  # inconclusive over the seeds: each case keeps its tolerance
            if row.metric == "top1" and row.case in cases.get(key, ()) and result.verdict != "inconclusive":
                row.verdict, row.why = "not judged", "top-1 judged over the configuration's seeds (top1_seeds)"
        worse, verdict = result.difference < 0, result.verdict
        model, backend, device, n, variant = key
        rows.append(CaseComparison(
            f"{model} {backend} {device}" + (f" x{n}" if int(n) > 1 else "") + (f" {variant}" if str(variant) else "")
            + " (over seeds)",
            {"equivalent": "ok", "inconclusive": "not judged"}.get(verdict, "regression" if worse else "improvement"),
            f"{result.verdict_text()}; current - baseline {result.interval_text()} points (90% CI), margin "
            f"±{margin:g}", metric="top1_seeds", unit="%", statistic="mean over seeds", basis="equivalence",
            baseline=result.reference.value, current=result.other.value, change=result.difference))
