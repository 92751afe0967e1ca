"""The report as one self-contained HTML file (``harness report --format html -o FILE``): plotly charts with
plotly's JavaScript inlined once, sortable tables, no reference to anything outside the file, so it opens offline.

Every table and chart comes from the frames and records the markdown report reads (:mod:`harness.results.report`): per
model the measured table, throughput by backend x device with the 95% interval of its runs as error bars, top-1
over seeds, step-time distributions (``samples.train_step_s``) and training-loss curves (``samples.train_loss``,
every step after warm-up); then the backend ratios, the comparison matrix, measured beside published, scaling
efficiency, inference latency and throughput, unstable, failed and skipped cases, and every run. All text from
records is escaped.
"""
from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness import __version__
from harness.results.frame import get
from harness.results.published import published_frames
from harness.results.report import (
    backend_ratios,
    comparison_matrix,
    config_estimates,
    inference_table,
    model_table,
    records_frame,
    scaling_efficiency,
    split_frame,
)

__all__ = ["render_html"]

#: Most points one loss curve draws (a longer one is thinned to every k-th step) and most step times one box
#: embeds (beyond, the box is drawn from quartiles computed over every sample), so a 90-epoch run stays a few MB.
MAX_CURVE_POINTS = 2000
MAX_BOX_SAMPLES = 5000

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.4em; }
p.note { color: #555; font-size: 0.9em; max-width: 70em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
.plotly-graph-div { margin: 0.5em 0 1em; }
"""

#: Sorts a table by the clicked header's column (a cell's data-sort, else its text; numbers first, blanks last);
#: a second click reverses it.
_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    function key(row) {
      var cell = row.cells[col];
      if (!cell) { return ""; }
      var v = cell.getAttribute("data-sort");
      return v === null ? cell.textContent.trim() : parseFloat(v);
    }
    var rows = Array.prototype.slice.call(body.rows);
    function rank(v) { return typeof v === "number" ? 0 : v === "" ? 2 : 1; }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (rank(x) !== rank(y)) { return rank(x) - rank(y); }  // numbers, then text, then blanks, either way
      var d = rank(x) === 0 ? x - y : String(x).localeCompare(String(y));
      return asc ? d : -d;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _esc(value: Any) -> str:
    """Text from a record, escaped; nothing for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def _lines(value: Any) -> str:
    """A report cell or label, escaped, its ``<br>`` line breaks (the markdown tables' own) kept."""
    return "<br>".join(_esc(part) for part in str(value).split("<br>")) if value is not None else ""


def _sort_key(text: str) -> str:
    """``data-sort`` of a cell that starts with a number (``81.2 [79.0, 83.1]``, ``0.81x``), for a numeric sort."""
    m = _NUMBER.match(text.strip())
    return f' data-sort="{float(m.group())!r}"' if m and math.isfinite(float(m.group())) else ""


def _table(df: pd.DataFrame, index: bool = False, table_id: str | None = None,
           sort: dict[str, list[float | None]] | None = None) -> str:
    """A sortable table of a report frame (every cell escaped); ``sort``: exact values of a column to sort by (else
    each cell's leading number)."""
    head = ([_esc(df.index.name)] if index else []) + [_lines(c) for c in df.columns]
    rows = []
    for pos, (label, row) in enumerate(df.iterrows()):
        cells = [f"<th scope=\"row\">{_lines(label)}</th>"] if index else []
        for col, value in row.items():
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            exact = (sort or {}).get(col)
            if exact is not None:
                v = exact[pos]
                key = f' data-sort="{v!r}"' if v is not None and math.isfinite(v) else ""
            else:
                key = _sort_key(text)
            cells.append(f"<td{key}>{_lines(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<table class="sortable"{ident}><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")


class _Page:
    """The report's body and its charts (each a plotly div; the bundle is inlined once, in :meth:`html`)."""

    def __init__(self, backends: Iterable[str]) -> None:
        self.body: list[str] = []
        self.charts = 0
        self.colors = {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(sorted(set(backends)))}

    def add(self, *chunks: str) -> None:
        self.body.extend(chunks)

    def heading(self, level: int, text: str) -> None:
        self.add(f"<h{level}>{_esc(text)}</h{level}>")

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{text}</p>')

    def chart(self, fig: Any, height: int = 380) -> None:
        self.charts += 1
        fig.update_layout(template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 50, "b": 60})
        self.add(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{self.charts}",
                             default_height=f"{height}px", config={"displaylogo": False, "responsive": True}))

    def html(self, title: str) -> str:
        from plotly.offline import get_plotlyjs

        bundle = get_plotlyjs().replace("</script", "<\\/script")
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n"
                f"<script>{bundle}</script>\n</head>\n<body>\n<h1>{_esc(title)}</h1>\n" + "\n".join(self.body)
                + f"\n<script>{_SORT_JS}</script>\n</body>\n</html>\n")


def _config_label(row: pd.Series, several_runs: bool) -> str:
    """A configuration's x label beside the others of its backend: device (×N), matrix values, run."""
    label = _esc(row["device"]) + (f" ×{int(row['devices'])}" if int(row["devices"]) > 1 else "")
    extra = [_esc(row["variant"])] if row.get("variant") else []
    if several_runs:
        extra.append(f"run {_esc(row['run_id'])}")
    return label + ("<br>" + ", ".join(extra) if extra else "")


def _estimate_chart(page: _Page, est: pd.DataFrame, title: str, unit: str, fmt: str) -> list[str]:
    """Bars by device, grouped by backend, each with its 95% interval as error bar; a configuration of a single run
    has none (its bar is a trace of its own, in its backend's slot) and is returned to be named."""
    import plotly.graph_objects as go

    several = est["run_id"].nunique() > 1
    fig = go.Figure()
    single, order = [], []
    for backend, g in est.groupby("backend", sort=True):
        rows = [(r, _config_label(r, several)) for _, r in g.iterrows()]
        order += [label for _, label in rows]
        shown = False
        for with_ci in (True, False):
            part = [(r, label) for r, label in rows if (r["lo"] is not None and pd.notna(r["lo"])) == with_ci]
            if not part:
                continue
            bar = {"x": [label for _, label in part], "y": [r["value"] for r, _ in part], "name": _esc(backend),
                   "offsetgroup": _esc(backend), "legendgroup": _esc(backend), "showlegend": not shown,
                   "marker_color": page.colors.get(backend), "hoverinfo": "text+name"}
            if with_ci:
                bar["hovertext"] = [f"{fmt.format(r['value'])} {unit} [{fmt.format(r['lo'])}, {fmt.format(r['hi'])}], "
                                    f"{r['n']} runs" for r, _ in part]
                bar["error_y"] = {"type": "data", "symmetric": False, "array": [r["hi"] - r["value"] for r, _ in part],
                                  "arrayminus": [r["value"] - r["lo"] for r, _ in part]}
            else:
                bar["hovertext"] = [f"{fmt.format(r['value'])} {unit}, single run: no interval" for r, _ in part]
                single += [f"{_esc(backend)} / {label.replace('<br>', ', ')}" for _, label in part]
            fig.add_trace(go.Bar(**bar))
            shown = True
    fig.update_layout(title=title, barmode="group", yaxis_title=unit, legend_title_text="backend",
                      xaxis={"categoryorder": "array", "categoryarray": list(dict.fromkeys(order))})
    page.chart(fig)
    return single


def _interval_note(single: list[str], what: str) -> str:
    head = (f"Error bars: the 95% confidence interval of {what} over each configuration's runs (repetitions and "
            "seeds, harness.measure.intervals).")
    if not single:
        return head + " Every configuration has one."
    return head + f" Single runs have no interval and show no error bar: {'; '.join(single)}."


def _train_samples(records: list[dict[str, Any]], group: pd.DataFrame, name: str) -> dict[tuple[str, str], list[
        tuple[dict[str, Any], list[float]]]]:
    """``(backend, case)`` -> each of its records with its ``samples[name]``, over the model's ok records."""
    several = group["run_id"].nunique() > 1
    out: dict[tuple[str, str], list[tuple[dict[str, Any], list[float]]]] = {}
    for i in group.index:
        rec = records[i]
        values = get(rec, "samples", name)
        if isinstance(values, list) and values and not isinstance(values[0], list):
            case = str(rec.get("case")) + (f" (run {rec.get('run_id')})" if several else "")
            out.setdefault((str(get(rec, "config", "backend")), case), []).append((rec, values))
    return out


def _step_time_chart(page: _Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> None:
    """One box per case: its timed steps' durations (ms) over every repetition."""
    import numpy as np
    import plotly.graph_objects as go

    cases = _train_samples(records, group, "train_step_s")
    if not cases:
        return
    fig = go.Figure()
    for (backend, case), runs in sorted(cases.items()):
        ms = np.asarray([1e3 * v for _, values in runs for v in values if v is not None], dtype=float)
        if ms.size == 0:
            continue
        common = {"name": _esc(case), "marker_color": page.colors.get(backend), "legendgroup": _esc(backend),
                  "boxmean": True}
        if ms.size <= MAX_BOX_SAMPLES:
            fig.add_trace(go.Box(y=ms.tolist(), **common))
        else:
            q1, med, q3 = np.percentile(ms, [25, 50, 75])
            lo = ms[ms >= q1 - 1.5 * (q3 - q1)].min()
            hi = ms[ms <= q3 + 1.5 * (q3 - q1)].max()
            fig.add_trace(go.Box(x=[_esc(case)], q1=[q1], median=[med], q3=[q3], lowerfence=[lo], upperfence=[hi],
                                 mean=[ms.mean()], **common))
    fig.update_layout(title=f"{_esc(model)}: train step time per case (timed steps of every repetition)",
                      yaxis_title="ms / step",
                      showlegend=False)
    page.chart(fig)


def _loss_charts(page: _Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> int:
    """Per recipe: every run's training loss by step, all backends on one chart; returns the charts drawn."""
    import plotly.graph_objects as go

    by_recipe: dict[str, list[tuple[str, dict[str, Any], list[float]]]] = {}
    for (backend, case), runs in sorted(_train_samples(records, group, "train_loss").items()):
        for rec, losses in runs:
            recipe = get(rec, "config", "settings", "recipe")
            by_recipe.setdefault(recipe if isinstance(recipe, str) else "", []).append((case, rec, losses))
    thinned = False
    for recipe, curves in sorted(by_recipe.items()):
        fig = go.Figure()
        for case, rec, losses in curves:
            backend = str(get(rec, "config", "backend"))
            first = int(get(rec, "config", "settings", "warmup") or 0) + 1
            stride = max(1, math.ceil(len(losses) / MAX_CURVE_POINTS))
            thinned |= stride > 1
            steps = list(range(first, first + len(losses)))[::stride]
            name = f"{_esc(case)} · repeat {int(rec.get('repeat') or 0)}" if (rec.get("repeats") or 1) > 1 \
                else _esc(case)
            fig.add_trace(go.Scatter(x=steps, y=losses[::stride], mode="lines", name=name,
                                     legendgroup=_esc(backend), legendgrouptitle_text=_esc(backend),
                                     line={"color": page.colors.get(backend), "width": 1.5}))
        what = f"recipe {recipe}" if recipe else "no published recipe"
        fig.update_layout(title=f"{_esc(model)}: training loss, {_esc(what)}", xaxis_title="step", yaxis_title="loss")
        page.chart(fig, height=420)
    if thinned:
        page.note(f"Curves longer than {MAX_CURVE_POINTS} steps are drawn from every k-th step.")
    return len(by_recipe)


def _model_section(page: _Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> None:
    page.add(f'<h2 id="model-{_esc(model)}">{_esc(model)}</h2>')
    page.add(_table(model_table(group), index=True, table_id=f"table-{_esc(model)}"))
    ips = config_estimates(group, "train_images_per_s")
    if not ips.empty:
        single = _estimate_chart(page, ips, f"{_esc(model)}: train throughput by backend and device", "images/s",
                                 "{:.1f}")
        page.note(_interval_note(single, "the median images/s"))
    top1 = config_estimates(group, "eval_top1")
    if not top1.empty:
        single = _estimate_chart(page, top1, f"{_esc(model)}: top-1 over seeds and repetitions", "top-1 %",
                                 "{:.2f}")
        page.note(_interval_note(single, "the mean top-1"))
    _step_time_chart(page, records, model, group)
    _loss_charts(page, records, model, group)


def _inference_section(page: _Page, records: list[dict[str, Any]], infer: pd.DataFrame) -> None:
    import plotly.graph_objects as go

    page.heading(2, "Inference")
    page.note("Latency at batch 1 (percentiles over the timed runs), throughput at each batch size, and the runtime's "
              "top-1 on the eval split beside the framework's own evaluation of the same weights; agreement: images "
              "where both give the same top-1 class.")
    page.add(_table(infer.sort_values(["model", "device", "backend", "runtime"]), table_id="inference"))
    measured = [r for r in records if r.get("kind", "measured") == "measured" and r.get("status") == "ok"
                and get(r, "metrics", "inference")]
    for model in sorted({str(get(r, "config", "model")) for r in measured}):
        mine = [r for r in measured if str(get(r, "config", "model")) == model]
        labels = [f"{_esc(get(r, 'config', 'backend'))} / {_esc(get(r, 'config', 'device'))}<br>"
                  f"{_esc(get(r, 'metrics', 'inference', 'runtime'))}" for r in mine]
        latency = go.Figure()
        for pct in ("p50", "p90", "p99"):
            latency.add_trace(go.Bar(x=labels, y=[get(r, "metrics", "inference", "latency_ms", pct) for r in mine],
                                     name=pct))
        latency.update_layout(title=f"{_esc(model)}: latency at batch 1", barmode="group", yaxis_title="ms",
                              legend_title_text="percentile")
        page.chart(latency)
        throughput = go.Figure()
        for label, r in zip(labels, mine):
            points = [t for t in get(r, "metrics", "inference", "throughput") or [] if isinstance(t, dict)]
            throughput.add_trace(go.Scatter(x=[t.get("batch_size") for t in points],
                                            y=[t.get("images_per_s") for t in points], mode="lines+markers",
                                            name=label.replace("<br>", " · ")))
        throughput.update_layout(title=f"{_esc(model)}: inference throughput by batch size",
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
    return _table(table, table_id="runs", sort=exact)


def render_html(records: Iterable[dict[str, Any]], title: str = "harness report") -> str:
    """The whole report as one HTML page that needs nothing outside itself."""
    records = list(records)
    df = records_frame(records)
    page = _Page(df["backend"].dropna().astype(str) if not df.empty else ())
    if df.empty:
        page.add("<p>No records.</p>")
        return page.html(title)
    measured, ok, refs = split_frame(df)
    runs = sorted(measured["run_id"].dropna().astype(str).unique())
    page.note(f"{len(measured)} measured record(s) from run(s) {_esc(', '.join(runs)) or '-'}: "
              f"{int((measured['status'] == 'ok').sum())} ok, {int((measured['status'] == 'failed').sum())} failed, "
              f"{int((measured['status'] == 'skipped').sum())} skipped; {len(refs)} published reference figure "
              f"record(s). Made by harness {_esc(__version__)}. Click a column header to sort a table.")
    for model, group in ok.groupby("model", sort=True):
        _model_section(page, records, str(model), group)

    ratios = backend_ratios(ok)
    if ratios is not None and not ratios.empty:
        page.heading(2, "Backends side by side")
        page.note("Other backend / reference backend (torch where present), measured in the same run: medians over "
                  "each side's runs with the 95% confidence interval of the ratio; a ratio of single runs has none and "
                  "says so, an interval that holds 1.00x is no measurable difference.")
        page.add(_table(ratios, table_id="ratios"))
    matrix = comparison_matrix(ok)
    if not matrix.empty:
        page.heading(2, "Comparison matrix")
        page.note("Every model x backend x device over its runs (median, or mean for top-1, with the 95% "
                  "interval); backend ratio: ÷ PyTorch on the same device; device ratio: ÷ the same backend on the "
                  "first device present (ascend, gpu, cpu).")
        page.add(_table(matrix, table_id="matrix"))
    if not refs.empty:
        page.heading(2, "Measured beside published")
        page.note("Each cell: measured (median of the runs, mean for accuracy, with its 95% interval) · "
                  "pub(lished) · Δ (measured - published, % of published). '— · pub' has no measured counterpart "
                  "in these runs.")
        for model, files, table in published_frames(ok, refs):
            page.heading(3, model)
            page.note(f"Published: {_esc(files)} (reference records, not measured here).")
            page.add(_table(table, index=True, table_id=f"published-{_esc(model)}"))
    scaling = scaling_efficiency(pd.concat([ok, refs]) if not refs.empty else ok)
    if not scaling.empty:
        page.heading(2, "Scaling efficiency")
        page.note("N-device images/s over N times 1-device images/s (or 1-device over N-device ms/step), from every "
                  "run of each side, with the 95% interval of that ratio.")
        page.add(_table(scaling, table_id="scaling"))
    infer = inference_table(records)
    if not infer.empty:
        _inference_section(page, records, infer)

    page.heading(2, "Unstable measurements")
    unstable = measured[measured["unstable"]]
    if unstable.empty:
        page.add("<p>None in this run.</p>")
    else:
        page.note("These runs passed a noise threshold (harness.measure.noise): their figures are shown, but a comparison "
                  "built on them says little; `harness doctor` tells what on the host to fix.")
        page.add(_table(unstable[["case", "repeat", "noise_reasons"]].rename(columns={"noise_reasons": "why"}),
                         table_id="unstable"))
    page.heading(2, "Failed and skipped cases")
    bad = measured[measured["status"] != "ok"]
    page.add(_table(bad[["case", "repeat", "status", "reason"]], table_id="failed") if not bad.empty
             else "<p>None in this run.</p>")
    page.heading(2, "Every run")
    page.add(_runs_table(measured))
    return page.html(title)
