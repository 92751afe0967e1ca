"""The markdown report (``harness report``): from result records, with pandas and tabulate.

For each model one table: metric rows x one column per backend/device (plus any setting that differs between that
model's cases), so frameworks and devices read side by side; where the time goes (profiles); the backends side by
side and how fair their ratios are (``--fairness``: :mod:`harness.results.fairness`), whether their top-1 over
seeds is equivalent (:mod:`harness.results.equivalence`), unstable measurements,
inference, the comparison matrix, measured beside published, scaling efficiency and charts; failed and skipped
cases follow with their reasons. The tables are those of :mod:`harness.results.tables`, which the HTML report shows
too.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.results.charts import write_charts
from harness.results.equivalence import MARGIN, NOTE, equivalence_table
from harness.results.fairness import fairness_note, fairness_table
from harness.results.frame import records_frame
from harness.results.profile_report import profile_section
from harness.results.published import published_tables
from harness.results.tables import (
    ENVIRONMENT_NOTE,
    backend_ratios,
    comparison_matrix,
    environment_table,
    inference_table,
    model_table,
    scaling_efficiency,
    split_frame,
)
from harness.results.verdicts import differing_settings, plain_verdicts

__all__ = ["render_markdown", "answer_lines"]


def _one_per_config(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of a run: its repetitions and seeds folded into the median of each number."""
    if ok.empty or "config_key" not in ok:
        return ok
    numeric = [c for c in ok.columns if pd.api.types.is_numeric_dtype(ok[c]) and c not in ("repeat", "devices")]
    rows = []
    for _, g in ok.groupby(["run_id", "config_key"], sort=False):
        row = g.iloc[0].copy()
        for c in numeric:
            row[c] = g[c].median()
        rows.append(row)
    return pd.DataFrame(rows)


def answer_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """The plain verdicts (:func:`harness.results.verdicts.plain_verdicts`) of a run's records."""
    df = records_frame(list(records))
    return [] if df.empty else plain_verdicts(split_frame(df)[1])


def _section(title: str, table: pd.DataFrame | None, text: str | None = None) -> list[str]:
    """A report section's markdown lines: heading, optional explanation, table; nothing for an empty table."""
    if table is None or table.empty:
        return []
    return [f"## {title}", "", *([text, ""] if text else []),
            table.to_markdown(index=False, tablefmt="github", disable_numparse=True), ""]


def render_markdown(records: Iterable[dict[str, Any]], title: str = "harness report",
                    charts: tuple[str, str] | None = None, margin: float = MARGIN,
                    fairness: list[dict[str, Any]] | None = None) -> str:
    """The report. ``charts``: (folder to write PNGs into, its path relative to the markdown file); ``margin``: the
    top-1 points inside which backends count as equivalent; ``fairness``: fairness benchmark results
    (:mod:`harness.results.fairness`) to show beside the backends' ratios."""
    records = list(records)
    df = records_frame(records)
    out = [f"# {title}", ""]
    if df.empty:
        return "\n".join([*out, "No records."]) + "\n"
    df, ok, refs = split_frame(df)
    answer = plain_verdicts(ok)
    if answer:
        out += ["**The answer.** " + " ".join(answer), ""]
    for model, group in ok.groupby("model", sort=True):
        differ = differing_settings(group)
        out += [f"## {model}", "", *([f"Settings that differ between the columns: {'; '.join(differ)}.", ""]
                                     if differ else []),
                model_table(group).to_markdown(tablefmt="github", disable_numparse=True), ""]
    out += profile_section(records)  # where the time goes (profile: true)
    out += _section("Where it ran", environment_table(df[df["kind"] != "reference"]), ENVIRONMENT_NOTE)
    out += _section("Backends side by side", backend_ratios(ok),
                    "Ratios are other backend / reference backend, measured in the same run (> 1: the other is faster "
                    "for images/s, slower for ms/step): geometric means of each side's runs, with the 95% confidence "
                    "interval of the ratio from the runs (repeats: N; Welch t on the logs). A ratio from one run a "
                    "side has no interval and says so; an interval that holds 1.00x is no measurable difference.")
    if fairness:
        out += _section("How fair are the ratios", fairness_table(fairness, ok), fairness_note(fairness))
    out += _section("Accuracy over seeds: equivalent?", equivalence_table(ok, margin), NOTE)
    unstable = df[df["unstable"]] if "unstable" in df else df.iloc[0:0]
    out += _section("Unstable measurements", unstable[["case", "repeat", "noise_reasons"]].rename(
        columns={"noise_reasons": "why"}) if not unstable.empty else None,
        "These runs passed a noise threshold (harness.measure.noise): their figures are shown, but a comparison built "
        "on them says little. `harness doctor` tells what on the host to fix.")
    infer = inference_table(records)
    out += _section("Inference", infer.sort_values(["model", "device", "backend", "runtime"]) if not infer.empty
                    else infer,
                    "Latency at batch 1 (percentiles over the timed runs), throughput at each batch size, and the "
                    "runtime's top-1 on the eval split (harness's own preprocessing) beside the framework's own "
                    "evaluation of the same weights; agreement: images where both give the same top-1 class.")
    out += _section("Comparison matrix", comparison_matrix(ok),
                    "Measured train throughput, step time and top-1 for every model x backend x device over its runs "
                    "(geometric mean, or mean for top-1, with the 95% interval from repetitions and seeds); the "
                    "backend ratio divides by PyTorch on the same device, the device ratio by the same backend on the "
                    "first device present (ascend, gpu, cpu order), each with the 95% interval of the ratio; an "
                    "interval that holds 1.00x is no measurable difference, and a ratio of single runs says so. The "
                    "data ceiling is the images/s of the backend's input pipeline alone (scenario: data) at the "
                    "training case's worker count, where the run measured it: training cannot go faster than it. MFU "
                    "is the analytic training FLOPs (3 x forward, harness.models.flops) per second over the device's "
                    "peak for the case's precision (harness.measure.peaks); J/image is the device's energy over the "
                    "timed steps (harness.measure.energy) per image.")
    if not refs.empty:
        out += ["## Measured beside published", "",
                ("Each cell: measured (geometric mean of the runs, mean for accuracy, with its 95% interval) · "
                 "pub(lished) · Δ (measured - published, % of published, with the measurement's 95% interval: a "
                 "published figure comes with none). A cell with only '— · pub' has no measured counterpart in these "
                 "runs (same backend, device kind and device count)."),
                ""]
        out += published_tables(ok, refs)
    one = _one_per_config(ok)
    out += _section("Scaling efficiency", scaling_efficiency(pd.concat([ok, refs]) if not refs.empty else ok),
                    "N-device images/s over N times 1-device images/s, from every run of each side, with the 95% "
                    "interval of that ratio.")
    if charts is not None and not ok.empty:
        names = write_charts(one, charts[0])
        if names:
            out += ["## Charts", ""] + [f"![{n}]({charts[1].rstrip('/')}/{n})" for n in names] + [""]
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        out += ["## Failed and skipped cases", "",
                bad[["case", "status", "reason"]].to_markdown(index=False, tablefmt="github"), ""]
    return "\n".join(out)
