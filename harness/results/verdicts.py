"""The answer in one sentence: per model, device and variant, how the backends compare, with the interval and the
number of runs it rests on; and the settings that differ between the configurations a table puts side by side.

The figure is the ratio of the backends' geometric mean throughput over their runs, with Welch's t interval over the
logs (:func:`harness.measure.intervals.ratio`), turned so that it reads "X is 1.31x faster than Y [1.19, 1.43]": an
interval that holds 1.00x is "no measurable difference", and single runs say they have no interval.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.measure.intervals import Estimate, ratio
from harness.results.case_rules import IDENTITY_EXCLUDED
from harness.results.tables import reference_backend

__all__ = ["plain_verdicts", "differing_settings", "THROUGHPUT"]

#: The throughput that answers "which is faster" for a case of each scenario (the records frame's columns).
THROUGHPUT = {"train": ("train_images_per_s", "training images/s"), "eval": ("eval_images_per_s", "eval images/s"),
              "export": ("eval_images_per_s", "eval images/s"),
              "inference": ("infer_images_per_s", "inference images/s at the largest batch")}


def _name(g: pd.DataFrame, backend: str) -> str:
    row = g.iloc[0]
    framework, version = row.get("framework"), row.get("framework_version")
    return f"{backend} ({framework} {version})" if isinstance(framework, str) and version else backend


def _runs(n_a: int, n_b: int) -> str:
    return f"{n_a} runs each" if n_a == n_b and n_a > 1 else f"{n_a} and {n_b} runs"


def _sentence(fast: str, slow: str, est: Estimate, what: str, n_fast: int, n_slow: int) -> str:
    if est.lo is None or est.hi is None:
        return f"{fast} is {est.value:.2f}x faster than {slow} in {what} (single runs: no interval)"
    if est.lo <= 1.0 <= est.hi:
        return (f"no measurable difference between {fast} and {slow} in {what} ({est.value:.2f}x "
                f"[{est.lo:.2f}, {est.hi:.2f}]), {_runs(n_fast, n_slow)}")
    return (f"{fast} is {est.value:.2f}x faster than {slow} [{est.lo:.2f}, {est.hi:.2f}] in {what}, "
            f"{_runs(n_fast, n_slow)}")


def plain_verdicts(ok: pd.DataFrame) -> list[str]:
    """One sentence per model, device, variant and other backend (against torch where present), on the scenario's
    throughput; empty where no two backends measured the same thing."""
    if ok.empty or "backend" not in ok or ok["backend"].nunique() < 2:
        return []
    scenario = ok.get("cfg.scenario", pd.Series("train", index=ok.index)).fillna("train")
    out = []
    for (model, device, variant, scen), g in ok.assign(_scenario=scenario).groupby(
            ["model", "device", "variant", "_scenario"], sort=True):
        if scen not in THROUGHPUT:
            continue
        col, what = THROUGHPUT[str(scen)]
        by = {str(b): runs[col].dropna() for b, runs in g.groupby("backend")}
        by = {b: v for b, v in by.items() if len(v)}
        if len(by) < 2:
            continue
        ref = reference_backend(by)
        where = f"{model} on {device}" + (f" ({variant})" if str(variant) else "")
        for other in sorted(b for b in by if b != ref):
            est = ratio(list(by[other]), list(by[ref]))
            if est is None:
                continue
            names = {b: _name(g[g["backend"] == b], b) for b in (ref, other)}
            if est.value >= 1.0:
                line = _sentence(names[other], names[ref], est, what, len(by[other]), len(by[ref]))
            else:
                inv = Estimate(1 / est.value, None if est.hi is None else 1 / est.hi,
                               None if est.lo is None else 1 / est.lo, est.n)
                line = _sentence(names[ref], names[other], inv, what, len(by[ref]), len(by[other]))
            out.append(f"{where}: {line}.")
    return out


def differing_settings(group: pd.DataFrame) -> list[str]:
    """The settings that differ between a table's configurations (``cfg.<key>`` columns, but those that do not
    identify a case), each with the values it takes: ``batch_size: 16, 32``."""
    out = []
    for col in sorted(c for c in group.columns if c.startswith("cfg.")):
        key = col[4:]
        if key in IDENTITY_EXCLUDED:
            continue
        values: list[Any] = []
        for v in group[col]:
            v = None if isinstance(v, float) and v != v else v  # NaN: a setting a record does not hold
            if v not in values:
                values.append(v)
        if len(values) > 1:
            out.append(f"{key}: {', '.join(str(v) for v in values)}")
    return out
