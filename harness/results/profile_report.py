"""The report's "Where the time goes" section: per model, the profiled step's time by op category for each
backend x device case (``metrics.train.profile``, :mod:`harness.measure.profiles`), and how far the ops account for
the step."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.measure.op_categories import CATEGORIES, TOLERANCE, UNATTRIBUTED
from harness.measure.profiles import PROFILE_STEPS

__all__ = ["profile_frame", "profile_section"]


def _label(rec: dict[str, Any]) -> str:
    cfg = rec.get("config") or {}
    label = f"{cfg.get('backend')} / {cfg.get('device')}"
    variant = cfg.get("variant") or {}
    return label + (" (" + ", ".join(f"{k}={v}" for k, v in variant.items()) + ")" if variant else "")


def _cell(seconds: float | None, step: float) -> str:
    """ms per step and the share of the profiled step; empty for nothing."""
    if not seconds:
        return ""
    return f"{1e3 * seconds:.2f} ({100 * seconds / step:.0f}%)" if step > 0 else f"{1e3 * seconds:.2f}"


def profile_frame(records: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, list[str]]]:
    """Per model: the "where the time goes" table (rows: categories, then unattributed and the step; columns: the
    model's backend x device cases; cells: ms/step and share of the profiled step) and one "sum vs step time" line
    per case (skipped profiles say why)."""
    import pandas as pd

    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        prof = ((rec.get("metrics") or {}).get("train") or {}).get("profile")
        if rec.get("kind", "measured") != "measured" or rec.get("status") != "ok" or not isinstance(prof, dict):
            continue
        cases = by_model.setdefault((rec.get("config") or {}).get("model", "?"), {})
        label = _label(rec)
        if label in cases:
            label += f" [{rec.get('case')}]"
        cases[label] = prof
    out: dict[str, tuple[Any, list[str]]] = {}
    for model, cases in sorted(by_model.items()):
        columns, lines = {}, []
        for label, prof in sorted(cases.items()):
            if "skipped" in prof:
                lines.append(f"- {label}: no profile: {prof['skipped']}")
                continue
            step = prof["step_s"]
            cats = prof.get("categories") or {}
            columns[label] = [_cell(cats.get(c), step) for c in CATEGORIES] + [
                _cell(prof.get("unattributed_s"), step), f"{1e3 * step:.2f}"]
            timed = prof.get("timed_step_s")
            verdict = ("within" if prof.get("within_tolerance") else "OUTSIDE") + f" ±{100 * prof['tolerance']:.0f}%"
            lines.append(f"- {label} ({prof['profiler']}, {prof['steps']} steps): ops sum to "
                         f"{1e3 * prof['attributed_s']:.2f} ms/step = {100 * prof['coverage']:.0f}% of the profiled "
                         f"step {1e3 * step:.2f} ms ({verdict}); unattributed "
                         f"{1e3 * prof['unattributed_s']:.2f} ms/step"
                         + (f"; timed steps' median {1e3 * timed:.2f} ms" if timed else "")
                         + f"; trace: `{prof['trace']}`")
        table = None
        if columns:
            table = pd.DataFrame(columns, index=[*CATEGORIES, f"{UNATTRIBUTED} (in no op)", "profiled step (ms)"])
            table = table[(table != "").any(axis=1)]
        out[model] = (table, lines)
    return out


def profile_section(records: Iterable[dict[str, Any]]) -> list[str]:
    """The report's "Where the time goes" section: markdown lines, nothing without profiles."""
    frames = profile_frame(records)
    if not frames:
        return []
    out = ["## Where the time goes", "",
           (f"One profiled window of {PROFILE_STEPS} training steps after the timed ones (`profile: true`), with "
            "each framework's own profiler; each cell is the self time of the ops of a category in ms per step and "
            "its share of the profiled step. *Unattributed* is the part of the step in no op the profiler recorded "
            "(the framework's runtime between kernels, Python, an idle device). The ops must account for the profiled "
            f"step within ±{100 * TOLERANCE:.0f}%; the timed steps' median shows what the profiler itself cost."), ""]
    for model, (table, lines) in frames.items():
        out += [f"### {model}", ""]
        if table is not None and not table.empty:
            out += [table.to_markdown(tablefmt="github", disable_numparse=True), ""]
        out += [*lines, ""]
    return out
