"""The HTML report's plotly charts of one model: a metric's estimate per configuration with its 95% interval as
error bars (throughput, top-1), the step-time distribution of each case (``samples.train_step_s``) and the training
loss by step (``samples.train_loss``, every step after warm-up)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.results.html_page import Page, escape
from harness.results.records import get

__all__ = ["MAX_BOX_SAMPLES", "MAX_CURVE_POINTS", "estimate_chart", "interval_note", "loss_charts",
           "step_time_chart"]


#: Most points one loss curve draws (a longer one is thinned to every k-th step) and most step times one box
#: embeds (beyond, the box is drawn from quartiles computed over every sample), so a 90-epoch run stays a few MB.
MAX_CURVE_POINTS = 2000
MAX_BOX_SAMPLES = 5000


def _config_label(row: pd.Series, several_runs: bool) -> str:
    """A configuration's x label beside the others of its backend: device (×N), matrix values, run."""
    label = escape(row["device"]) + (f" ×{int(row['devices'])}" if int(row["devices"]) > 1 else "")
    extra = [escape(row["variant"])] if row.get("variant") else []
    if several_runs:
        extra.append(f"run {escape(row['run_id'])}")
    return label + ("<br>" + ", ".join(extra) if extra else "")


def estimate_chart(page: Page, est: pd.DataFrame, title: str, unit: str, fmt: str) -> list[str]:
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
            bar = {"x": [label for _, label in part], "y": [r["value"] for r, _ in part], "name": escape(backend),
                   "offsetgroup": escape(backend), "legendgroup": escape(backend), "showlegend": not shown,
                   "marker_color": page.colors.get(str(backend)), "hoverinfo": "text+name"}
            if with_ci:
                bar["hovertext"] = [f"{fmt.format(r['value'])} {unit} [{fmt.format(r['lo'])}, {fmt.format(r['hi'])}], "
                                    f"{r['n']} runs" for r, _ in part]
                bar["error_y"] = {"type": "data", "symmetric": False, "array": [r["hi"] - r["value"] for r, _ in part],
                                  "arrayminus": [r["value"] - r["lo"] for r, _ in part]}
            else:
                bar["hovertext"] = [f"{fmt.format(r['value'])} {unit}, single run: no interval" for r, _ in part]
                single += [f"{escape(backend)} / {label.replace('<br>', ', ')}" for _, label in part]
            fig.add_trace(go.Bar(**bar))
            shown = True
    fig.update_layout(title=title, barmode="group", yaxis_title=unit, legend_title_text="backend",
                      xaxis={"categoryorder": "array", "categoryarray": list(dict.fromkeys(order))})
    page.chart(fig)
    return single


def interval_note(single: list[str], what: str) -> str:
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


def step_time_chart(page: Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> None:
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
        common = {"name": escape(case), "marker_color": page.colors.get(backend), "legendgroup": escape(backend),
                  "boxmean": True}
        if ms.size <= MAX_BOX_SAMPLES:
            fig.add_trace(go.Box(y=ms.tolist(), **common))
        else:
            q1, med, q3 = np.percentile(ms, [25, 50, 75])
            lo = ms[ms >= q1 - 1.5 * (q3 - q1)].min()
            hi = ms[ms <= q3 + 1.5 * (q3 - q1)].max()
            fig.add_trace(go.Box(x=[escape(case)], q1=[q1], median=[med], q3=[q3], lowerfence=[lo], upperfence=[hi],
                                 mean=[ms.mean()], **common))
    fig.update_layout(title=f"{escape(model)}: train step time per case (timed steps of every repetition)",
                      yaxis_title="ms / step",
                      showlegend=False)
    page.chart(fig)


def loss_charts(page: Page, records: list[dict[str, Any]], model: str, group: pd.DataFrame) -> int:
    """Per recipe: every run's training loss by step, all backends on one chart; returns the charts drawn."""
    import plotly.graph_objects as go

    by_recipe: dict[str, list[tuple[str, dict[str, Any], list[float]]]] = {}
    for (_, case), runs in sorted(_train_samples(records, group, "train_loss").items()):
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
            name = f"{escape(case)} · repeat {int(rec.get('repeat') or 0)}" if (rec.get("repeats") or 1) > 1 \
                else escape(case)
            fig.add_trace(go.Scatter(x=steps, y=losses[::stride], mode="lines", name=name,
                                     legendgroup=escape(backend), legendgrouptitle_text=escape(backend),
                                     line={"color": page.colors.get(backend), "width": 1.5}))
        what = f"recipe {recipe}" if recipe else "no published recipe"
        fig.update_layout(title=f"{escape(model)}: training loss, {escape(what)}", xaxis_title="step",
                          yaxis_title="loss")
        page.chart(fig, height=420)
    if thinned:
        page.note(f"Curves longer than {MAX_CURVE_POINTS} steps are drawn from every k-th step.")
    return len(by_recipe)
