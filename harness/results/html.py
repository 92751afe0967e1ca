"""The report as one self-contained HTML file (``harness report --format html -o FILE``): plotly charts with
plotly's JavaScript inlined once, sortable tables, no reference to anything outside the file, so it opens offline.

Every table and chart comes from the frames and records the markdown report reads (:mod:`harness.results.tables`): per
model the measured table, throughput by backend x device with the 95% interval of its runs as error bars, top-1
over seeds, step-time distributions (``samples.train_step_s``) and training-loss curves (``samples.train_loss``,
every step after warm-up); training trajectories side by side (``harness parity --steps``:
:mod:`harness.results.trajectories`); then the backend ratios and how fair they are (``--fairness``:
:mod:`harness.results.fairness`), whether the backends' top-1 over seeds is equivalent
(:mod:`harness.results.equivalence`), the comparison matrix, measured beside published, scaling efficiency, inference
latency and throughput, unstable, failed and skipped cases, and every run. All text from records is escaped.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness import __version__
from harness.results.equivalence import MARGIN, NOTE, equivalence_table
from harness.results.fairness import fairness_note, fairness_table
from harness.results.frame import records_frame
from harness.results.html_charts import estimate_chart, interval_note, loss_charts, step_time_chart
from harness.results.html_page import Page, escape, html_table
from harness.results.published import published_frames
from harness.results.records import get
from harness.results.tables import (
    ENVIRONMENT_NOTE,
    backend_ratios,
    comparison_matrix,
    config_estimates,
    environment_table,
    inference_table,
    model_table,
    scaling_efficiency,
    split_frame,
)
from harness.results.trajectories import trajectory_section
from harness.results.verdicts import differing_settings, plain_verdicts

__all__ = ["render_html"]


def _model_section(page: Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> None:
    page.add(f'<h2 id="model-{escape(model)}">{escape(model)}</h2>')
    differ = differing_settings(group)
    if differ:
        page.note(escape(f"Settings that differ between the columns: {'; '.join(differ)}."))
    page.add(html_table(model_table(group), index=True, table_id=f"table-{escape(model)}"))
    ips = config_estimates(group, "train_images_per_s")
    if not ips.empty:
        single = estimate_chart(page, ips, f"{escape(model)}: train throughput by backend and device", "images/s",
                                 "{:.1f}")
        page.note(interval_note(single, "the geometric mean of the runs' images/s"))
    top1 = config_estimates(group, "eval_top1")
    if not top1.empty:
        single = estimate_chart(page, top1, f"{escape(model)}: top-1 over seeds and repetitions", "top-1 %",
                                 "{:.2f}")
        page.note(interval_note(single, "the mean top-1"))
    step_time_chart(page, records, model, group)
    loss_charts(page, records, model, group)


def _inference_section(page: Page, records: list[dict[str, Any]], infer: pd.DataFrame) -> None:
    import plotly.graph_objects as go

    page.heading(2, "Inference")
    page.note("Latency at batch 1 (percentiles over the timed runs), throughput at each batch size, and the runtime's "
              "top-1 on the eval split beside the framework's own evaluation of the same weights; agreement: images "
              "where both give the same top-1 class.")
    page.add(html_table(infer.sort_values(["model", "device", "backend", "runtime"]), table_id="inference"))
    measured = [r for r in records if r.get("kind", "measured") == "measured" and r.get("status") == "ok"
                and get(r, "metrics", "inference")]
    for model in sorted({str(get(r, "config", "model")) for r in measured}):
        mine = [r for r in measured if str(get(r, "config", "model")) == model]
        labels = [f"{escape(get(r, 'config', 'backend'))} / {escape(get(r, 'config', 'device'))}<br>"
                  f"{escape(get(r, 'metrics', 'inference', 'runtime'))}" for r in mine]
        latency = go.Figure()
        for pct in ("p50", "p90", "p99"):
            latency.add_trace(go.Bar(x=labels, y=[get(r, "metrics", "inference", "latency_ms", pct) for r in mine],
                                     name=pct))
        latency.update_layout(title=f"{escape(model)}: latency at batch 1", barmode="group", yaxis_title="ms",
                              legend_title_text="percentile")
        page.chart(latency)
        throughput = go.Figure()
        for label, r in zip(labels, mine):
            points = [t for t in get(r, "metrics", "inference", "throughput") or [] if isinstance(t, dict)]
            throughput.add_trace(go.Scatter(x=[t.get("batch_size") for t in points],
                                            y=[t.get("images_per_s") for t in points], mode="lines+markers",
                                            name=label.replace("<br>", " · ")))
        throughput.update_layout(title=f"{escape(model)}: inference throughput by batch size",
                                 xaxis_title="batch size", yaxis_title="images/s", xaxis_type="log")
        page.chart(throughput)


def _runs_table(measured: pd.DataFrame) -> str:
    """Every measured record (the last of a re-recorded case): its own numbers, not folded over repetitions."""
    cols = (("images/s", "train_images_per_s", "{:.1f}"), ("ms/step p50", "train_ms_p50", "{:.2f}"),
            ("top-1 (%)", "eval_top1", "{:.2f}"), ("final loss", "train_loss_last", "{:.4f}"))
    table = pd.DataFrame({"run": measured["run_id"], "case": measured["case"], "repeat": measured["repeat"],
                          "backend": measured["backend"], "device": measured["device"],
                          "devices": measured["devices"], "status": measured["status"]})
    exact: dict[str, list[float | None]] = {}
    for label, col, fmt in cols:
        values = [None if pd.isna(v) else float(v) for v in measured[col]]
        table[label] = [fmt.format(v) if v is not None else "" for v in values]
        exact[label] = values
    return html_table(table, table_id="runs", sort=exact)


def render_html(records: Iterable[dict[str, Any]], title: str = "harness report", margin: float = MARGIN,
                trajectories: list[dict[str, Any]] | None = None, fairness: list[dict[str, Any]] | None = None) -> str:
    """The whole report as one HTML page that needs nothing outside itself; ``margin``: the top-1 points inside
    which backends count as equivalent; ``trajectories``: training trajectories side by side to show
    (:mod:`harness.results.trajectories`); ``fairness``: fairness benchmark results to show beside the backends'
    ratios (:mod:`harness.results.fairness`)."""
    records, trajectories = list(records), trajectories or []
    df = records_frame(records)
    page = Page([*(df["backend"].dropna().astype(str) if not df.empty else ()),
                 *(b for t in trajectories for b in t["backends"])])
    if df.empty:
        page.add("<p>No records.</p>")
        trajectory_section(page, trajectories)
        return page.html(title)
    measured, ok, refs = split_frame(df)
    runs = sorted(measured["run_id"].dropna().astype(str).unique())
    page.note(f"{len(measured)} measured record(s) from run(s) {escape(', '.join(runs)) or '-'}: "
              f"{int((measured['status'] == 'ok').sum())} ok, {int((measured['status'] == 'failed').sum())} failed, "
              f"{int((measured['status'] == 'skipped').sum())} skipped; {len(refs)} published reference figure "
              f"record(s). Made by harness {escape(__version__)}. Click a column header to sort a table.")
    answer = plain_verdicts(ok)
    if answer:
        page.add('<p id="answer"><strong>The answer.</strong> ' + escape(" ".join(answer)) + "</p>")
    for model, group in ok.groupby("model", sort=True):
        _model_section(page, records, str(model), group)
    trajectory_section(page, trajectories)

    where = environment_table(measured)
    if not where.empty:
        page.heading(2, "Where it ran")
        page.note(escape(ENVIRONMENT_NOTE))
        page.add(html_table(where, table_id="environment"))
    ratios = backend_ratios(ok)
    if ratios is not None and not ratios.empty:
        page.heading(2, "Backends side by side")
        page.note("Other backend / reference backend (torch where present), measured in the same run: geometric "
                  "means over each side's runs with the 95% confidence interval of the ratio; a ratio of single runs "
                  "has none and says so, an interval that holds 1.00x is no measurable difference.")
        page.add(html_table(ratios, table_id="ratios"))
    if fairness:
        page.heading(2, "How fair are the ratios")
        page.note(escape(fairness_note(fairness)))
        page.add(html_table(fairness_table(fairness, ok), table_id="fairness"))
    same = equivalence_table(ok, margin)
    if not same.empty:
        page.heading(2, "Accuracy over seeds: equivalent?")
        page.note(NOTE)
        page.add(html_table(same, table_id="equivalence"))
    matrix = comparison_matrix(ok)
    if not matrix.empty:
        page.heading(2, "Comparison matrix")
        page.note("Every model x backend x device over its runs (geometric mean, or mean for top-1, with the 95% "
                  "interval); backend ratio: ÷ PyTorch on the same device; device ratio: ÷ the same backend on the "
                  "first device present (ascend, gpu, cpu).")
        page.add(html_table(matrix, table_id="matrix"))
    if not refs.empty:
        page.heading(2, "Measured beside published")
        page.note("Each cell: measured (geometric mean of the runs, mean for accuracy, with its 95% interval) · "
                  "pub(lished) · Δ (measured - published, % of published). '— · pub' has no measured counterpart "
                  "in these runs.")
        for model, files, table in published_frames(ok, refs):
            page.heading(3, model)
            page.note(f"Published: {escape(files)} (reference records, not measured here).")
            page.add(html_table(table, index=True, table_id=f"published-{escape(model)}"))
    scaling = scaling_efficiency(pd.concat([ok, refs]) if not refs.empty else ok)
    if not scaling.empty:
        page.heading(2, "Scaling efficiency")
        page.note("N-device images/s over N times 1-device images/s (or 1-device over N-device ms/step), from every "
                  "run of each side, with the 95% interval of that ratio.")
        page.add(html_table(scaling, table_id="scaling"))
    infer = inference_table(records)
    if not infer.empty:
        _inference_section(page, records, infer)

    page.heading(2, "Unstable measurements")
    unstable = measured[measured["unstable"]]
    if unstable.empty:
        page.add("<p>None in this run.</p>")
    else:
        page.note("These runs passed a noise threshold (harness.measure.noise): their figures are shown, but a "
                  "comparison built on them says little; `harness doctor` tells what on the host to fix.")
        page.add(html_table(unstable[["case", "repeat", "noise_reasons"]].rename(columns={"noise_reasons": "why"}),
                         table_id="unstable"))
    page.heading(2, "Failed and skipped cases")
    bad = measured[measured["status"] != "ok"]
    page.add(html_table(bad[["case", "repeat", "status", "reason"]], table_id="failed") if not bad.empty
             else "<p>None in this run.</p>")
    page.heading(2, "Every run")
    page.add(_runs_table(measured))
    return page.html(title)
