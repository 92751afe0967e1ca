"""Which records ``harness compare`` judges, and whether it can: a case's repetitions in the order they were measured,
the selection a subset run made (``harness run --only``), alternation of paired repetitions, and the noise rule that
leaves unstable repetitions out (:mod:`harness.measure.noise` marks them)."""
from __future__ import annotations

import datetime as dt
import fnmatch
from typing import Any

from harness.errors import HarnessError

__all__ = ["by_case", "selected", "check_paired", "stable"]


def _started(r: dict[str, Any]) -> float:
    """When the record's measurement started (seconds since the epoch; 0 when the record does not say)."""
    try:
        return dt.datetime.fromisoformat(str(r.get("started_at"))).timestamp()
    except ValueError:
        return 0.0


def by_case(records: list[dict[str, Any]], where: str,
            only: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The measured records of each case (those matching a glob of ``only``, when given), one per repetition, in the
    order they were measured. A repetition is a (run, repeat) pair: several runs given for one side are its
    repetitions, and a resumed run's newest record of a repetition replaces the older one."""
    out: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for i, r in enumerate(records, 1):
        if r.get("kind", "measured") != "measured":
            continue
        repeat = r.get("repeat", 0) or 0
        if not isinstance(r.get("case"), str) or not isinstance(r.get("config"), dict) or not isinstance(repeat, int):
            raise HarnessError(f"{where}: record {i} is not a harness record (no case, config or integer repeat)")
        if only and not any(fnmatch.fnmatchcase(r["case"], p) for p in only):
            continue
        out.setdefault(r["case"], {})[(str(r.get("run_id", "")), repeat)] = r
    return {k: sorted(v.values(), key=lambda r: (_started(r), r.get("repeat", 0) or 0)) for k, v in out.items()}


def selected(records: list[dict[str, Any]]) -> list[str] | None:
    """The ``--only`` globs a subset run was started with (every record of such a run names them under
    ``selection``), or None for a run of its whole suite."""
    globs = {tuple(r["selection"]) for r in records if isinstance(r.get("selection"), list)}
    return sorted({g for sel in globs for g in sel}) if globs else None


def check_paired(case: str, b: list[dict[str, Any]], c: list[dict[str, Any]]) -> None:
    """Paired repetitions must have been measured alternately: pair k (repetition k of each side) before pair k+1."""
    if len(b) != len(c):
        raise HarnessError(f"case {case}: --paired needs as many repetitions in the baseline as in the current run "
                           f"({len(b)} and {len(c)})")
    starts = [(_started(x), _started(y)) for x, y in zip(b, c)]
    for k in range(1, len(starts)):
        if max(starts[k - 1]) >= min(starts[k]):
            raise HarnessError(f"case {case}: --paired: repetition {k + 1} of one side started before repetition {k} "
                               "of the other; pairs must be measured alternately (baseline, current, baseline, ...)")


def _unstable(r: dict[str, Any]) -> bool:
    return bool((r.get("noise") or {}).get("unstable"))


def stable(b: list[dict[str, Any]], c: list[dict[str, Any]], paired: bool,
           min_repeats: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The repetitions a case is judged on, and why it cannot be judged ("" when it can). Single runs: an unstable
    one makes the case unjudgeable. Repetitions: unstable ones are left out (with ``paired``, the pairs holding
    one), as long as ``min_repeats`` stable ones remain on each side (their spread is in the test already);
    otherwise the case is unjudgeable."""
    if paired:
        kept = [(x, y) for x, y in zip(b, c) if not _unstable(x) and not _unstable(y)]
        if len(kept) >= min_repeats:
            return [x for x, _ in kept], [y for _, y in kept], ""
        if len(b) < min_repeats:
            return b, c, f"--paired needs {min_repeats} pairs ({len(b)} measured)"
        why = next("; ".join(r["noise"]["reasons"]) for r in b + c if _unstable(r))
        return b, c, f"{why} ({len(kept)} of {len(b)} pairs stable on both sides, {min_repeats} needed)"
    if len(b) >= min_repeats and len(c) >= min_repeats:
        kept_b, kept_c = ([r for r in runs if not _unstable(r)] for runs in (b, c))
        if len(kept_b) >= min_repeats and len(kept_c) >= min_repeats:
            return kept_b, kept_c, ""
    for side, runs in (("baseline", b), ("current", c)):
        for r in runs:
            if _unstable(r):
                left = sum(not _unstable(x) for x in runs)
                extra = f" ({left} of {len(runs)} repetitions stable, {min_repeats} needed)" if len(runs) > 1 else ""
                return b, c, f"{side}: {'; '.join(r['noise']['reasons'])}{extra}"
    return b, c, ""
