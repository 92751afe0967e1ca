"""Markdown reports from result records (pandas + tabulate).

For each model one table: metric rows x one column per backend/device (plus
any setting that differs between that model's cases), so frameworks and
devices read side by side. Failed and skipped cases follow with their reasons.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from .charts import write_charts
from .config import has_accuracy
from .frame import ACCURACY, METRIC_ROWS, get as _get, records_frame

__all__ = ["records_frame", "render_markdown", "comparison_matrix", "scaling_efficiency", "write_charts",
           "PUBLISHED_ROWS"]

def _column_label(row: pd.Series, multi_run: bool) -> str:
    """``backend / device``, the device model, and the matrix values that name the case."""
    label = f"{row['backend']} / {row['device']}"
    if isinstance(row.get("device_model"), str) and row["device_model"]:
        label += f"<br>{row['device_model']}"
    extra = [row["variant"]] if row.get("variant") else []
    if multi_run:
        extra.append(f"run {row['run_id']}")
    return label + ("<br>" + ", ".join(extra) if extra else "")




def _backend_ratios(ok: pd.DataFrame) -> pd.DataFrame | None:
    """Per model, device and variant: each metric for the reference backend (torch if present) and the others."""
    if ok.empty or ok["backend"].nunique() < 2:
        return None
    backends = sorted(ok["backend"].unique())
    ref = "torch" if "torch" in backends else backends[0]
    metrics = (("images/s", "train_images_per_s", "{:.1f}"), ("ms/step p50", "train_ms_p50", "{:.1f}"),
               ("first step (s)", "train_first_step_s", "{:.2f}"), ("peak host MiB", "host_peak_mib", "{:.0f}"))
    rows = []
    for (model, device, variant), g in ok.groupby(["model", "device", "variant"], sort=True):
        by = {r["backend"]: r for _, r in g.iterrows()}
        if ref not in by:
            continue
        for other in (b for b in backends if b != ref and b in by):
            row = {"model": model, "device": device, "variant": variant or "-", "backends": f"{other} / {ref}"}
            for label, col, fmt in metrics:
                a, b = by[other].get(col), by[ref].get(col)
                if a is None or b is None or pd.isna(a) or pd.isna(b):
                    continue
                row[label] = f"{fmt.format(a)} / {fmt.format(b)} = {a / b:.2f}x" if b else ""
            rows.append(row)
    return pd.DataFrame(rows).fillna("") if rows else None


#: Rows of the seed-layout tables (the seeds' "parameter rows x hardware columns").
PUBLISHED_ROWS = (
    ("top-1 (%)", "eval_top1", "{:.2f}"),
    ("top-5 (%)", "eval_top5", "{:.2f}"),
    ("train ms/step", "train_ms_mean", "{:.1f}"),
    ("train images/s", "train_images_per_s", "{:.1f}"),
    ("total training time (h)", "train_total_h", "{:.1f}"),
    ("inference latency (ms)", "infer_latency_ms", "{:.3f}"),
    ("inference images/s", "infer_images_per_s", "{:.1f}"),
)
_DEVICE_ORDER = {"ascend": 0, "gpu": 1, "cpu": 2}


def _hardware(row: pd.Series) -> tuple[Any, ...]:
    """The column a record belongs to in a seed-layout table: backend, device, device count, scenario kind."""
    kind = "inference" if row.get("cfg.scenario") == "inference" else "train"
    return (_DEVICE_ORDER.get(row["device"], 9), row["device"], int(row.get("devices") or 1), row["backend"], kind)


def _fmt(fmt: str, v: Any) -> str:
    return fmt.format(v) if v is not None and pd.notna(v) else ""


def _published_tables(measured: pd.DataFrame, refs: pd.DataFrame) -> list[str]:
    """Per model with published figures: measured beside published, with the difference."""
    out: list[str] = []
    for model, pub in refs.groupby("model", sort=True):
        meas = measured[measured["model"] == model]
        columns: dict[str, list[str]] = {}
        keys = sorted({_hardware(r) for _, r in pub.iterrows()} | {_hardware(r) for _, r in meas.iterrows()})
        for key in keys:
            _, device, devices, backend, kind = key
            p_rows = [r for _, r in pub.iterrows() if _hardware(r) == key]
            m_rows = [r for _, r in meas.iterrows() if _hardware(r) == key]
            variants = [str(r.get("framework_version") or "") for r in p_rows] or [""]
            for i, p in enumerate(p_rows or [None]):
                cells = []
                for _label, col, fmt in PUBLISHED_ROWS:
                    pv = p.get(col) if p is not None else None
                    mv = next((r.get(col) for r in m_rows if r.get(col) is not None and pd.notna(r.get(col))
                               and not (col in ACCURACY and not has_accuracy({"data": r.get("cfg.data")}))), None)
                    if pv is None or pd.isna(pv):
                        cells.append(_fmt(fmt, mv))
                    elif mv is None:
                        cells.append(f"— · pub {_fmt(fmt, pv)}")
                    else:
                        cells.append(f"{_fmt(fmt, mv)} · pub {_fmt(fmt, pv)} · Δ {100 * (mv - pv) / pv:+.1f}%")
                suffix = " inference" if kind == "inference" else ""
                if p is not None:
                    label = f"{p.get('device_model') or device} ×{devices}{suffix}<br>{p.get('framework')} {variants[i]}"
                    if m_rows:
                        label += f"<br>measured: {backend} on {m_rows[0].get('device_model') or device}"
                else:
                    label = f"{device} ×{devices}{suffix}<br>{backend} (measured only)"
                columns[label] = cells
        table = pd.DataFrame(columns, index=[label for label, _, _ in PUBLISHED_ROWS])
        table = table[(table != "").any(axis=1)]
        files = ", ".join(sorted({f for f in pub["source"].dropna()}))
        out += [f"### {model}", "", f"Published: {files} (reference records, not measured here).", "",
                table.to_markdown(tablefmt="github", disable_numparse=True), ""]
    return out


def comparison_matrix(measured: pd.DataFrame) -> pd.DataFrame:
    """Model x backend x device: images/s, ms/step, top-1, backend ratio (MindSpore / PyTorch) and device
    ratio (images/s over the same model and backend on the first device present, ascend, gpu, cpu order)."""
    if measured.empty:
        return pd.DataFrame()
    m = measured
    rows = []
    for (model, variant), g in m.groupby(["model", "variant"], sort=True):
        ips = {(r["backend"], r["device"]): r.get("train_images_per_s") for _, r in g.iterrows()}
        for _, r in g.sort_values(["backend", "device"]).iterrows():
            ref_dev = min((d for b, d in ips if b == r["backend"]), key=lambda d: _DEVICE_ORDER.get(d, 9))
            other = ips.get(("torch", r["device"]))
            mine = r.get("train_images_per_s")
            rows.append({
                "model": model, "variant": variant or "-", "backend": r["backend"], "device": r["device"],
                "images/s": _fmt("{:.1f}", mine), "ms/step p50": _fmt("{:.1f}", r.get("train_ms_p50")),
                "top-1 (%)": "" if not has_accuracy({"data": r.get("cfg.data")}) else _fmt("{:.2f}", r.get("eval_top1")),
                "backend ratio (÷ torch)": (f"{mine / other:.2f}x" if r["backend"] != "torch" and other and mine
                                             and pd.notna(mine) else ""),
                "device ratio": (f"{mine / ips[(r['backend'], ref_dev)]:.2f}x vs {ref_dev}"
                                  if ref_dev != r["device"] and mine and ips[(r["backend"], ref_dev)] else ""),
            })
    return pd.DataFrame(rows)


def scaling_efficiency(df: pd.DataFrame) -> pd.DataFrame:
    """Where a 1-device and an N-device run of the same case exist: N-device throughput over N times the
    1-device throughput (images/s), or the 1-device over the N-device ms/step (same per-device batch)."""
    if df.empty:
        return pd.DataFrame()
    rows = []
    key = ["kind", "model", "backend", "device", "framework_version"]
    d = df.assign(framework_version=df["framework_version"].fillna(""))
    for (kind, model, backend, device, version), g in d.groupby(key, sort=True):
        g = g[g.get("cfg.scenario", pd.Series(index=g.index, dtype=object)) != "inference"]
        one = g[g["devices"] == 1]
        for _, r in g[g["devices"] > 1].iterrows():
            n = int(r["devices"])
            for _, base in one.iterrows():
                if pd.notna(r.get("train_images_per_s")) and pd.notna(base.get("train_images_per_s")):
                    eff, how = r["train_images_per_s"] / (n * base["train_images_per_s"]), "images/s"
                elif pd.notna(r.get("train_ms_mean")) and pd.notna(base.get("train_ms_mean")):
                    eff, how = base["train_ms_mean"] / r["train_ms_mean"], "ms/step"
                else:
                    continue
                rows.append({"model": model, "backend": backend, "device": device, "version": version or "-",
                             "devices": n, "efficiency": f"{100 * eff:.1f}%", "from": how,
                             "source": "published" if kind == "reference" else "measured"})
                break
    return pd.DataFrame(rows)


def inference_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per measured inference case: runtime, batch-1 latency percentiles, throughput at each batch size,
    and the runtime's top-1 beside the framework's own evaluation of the same weights."""
    rows = []
    for r in records:
        inf = _get(r, "metrics", "inference")
        if r.get("kind", "measured") != "measured" or r.get("status") != "ok" or not inf:
            continue
        cfg = r.get("config", {})
        lat = inf.get("latency_ms") or {}
        acc = inf.get("accuracy") or {}
        src = _get(r, "metrics", "export_from", "backend")
        rows.append({
            "model": cfg.get("model"), "backend": cfg.get("backend"), "device": cfg.get("device"),
            "runtime": inf.get("runtime", "") + (f" (export: {src})" if src else ""),
            "p50 ms": _fmt("{:.3f}", lat.get("p50")), "p90 ms": _fmt("{:.3f}", lat.get("p90")),
            "p99 ms": _fmt("{:.3f}", lat.get("p99")), "runs": lat.get("count", ""),
            "images/s by batch": ", ".join(f"{t['batch_size']}: {t['images_per_s']:.1f}"
                                           for t in inf.get("throughput", [])),
            "runtime top-1": _fmt("{:.2f}", acc.get("top1")),
            "framework top-1": _fmt("{:.2f}", acc.get("framework_top1")),
            "top-1 agreement %": _fmt("{:.1f}", acc.get("top1_agreement")),
            "run": r.get("run_id"),
        })
    table = pd.DataFrame(rows)
    if not table.empty and table["run"].nunique() < 2:  # the run says which row is which only over several runs
        table = table.drop(columns="run")
    return table


def _section(title: str, table: pd.DataFrame | None, text: str | None = None) -> list[str]:
    """A report section's markdown lines: heading, optional explanation, table; nothing for an empty table."""
    if table is None or table.empty:
        return []
    return [f"## {title}", "", *([text, ""] if text else []),
            table.to_markdown(index=False, tablefmt="github", disable_numparse=True), ""]


def render_markdown(records: Iterable[dict[str, Any]], title: str = "harness report",
                    charts: tuple[str, str] | None = None) -> str:
    """The report. ``charts``: (folder to write PNGs into, its path relative to the markdown file)."""
    records = list(records)
    df = records_frame(records)
    out = [f"# {title}", ""]
    if df.empty:
        return "\n".join(out + ["No records."]) + "\n"
    refs = df[(df["kind"] == "reference") & (df["status"] == "ok")]
    df = df[df["kind"] != "reference"]
    df = df.drop_duplicates(["run_id", "case"], keep="last")  # a resumed run re-records failed cases
    ok = df[df["status"] == "ok"]
    for model, group in ok.groupby("model", sort=True):
        multi_run = group["run_id"].nunique() > 1
        columns: dict[str, list[str]] = {}
        for _, row in group.sort_values(["backend", "device", "case"]).iterrows():
            opt, recipe = row.get("cfg.optimizer"), row.get("cfg.recipe")
            if pd.isna(row.get("train_images_per_s")):  # the optimizer means something only where it trained
                opt = recipe = None
            cells = [(f"{opt}" if isinstance(opt, str) else "") + (f" ({recipe})" if isinstance(recipe, str) else "")]
            for _label, col, fmt in METRIC_ROWS:
                v = row.get(col)
                if col in ACCURACY and not has_accuracy({"data": row.get("cfg.data")}):
                    v = None  # random labels: accuracy means nothing
                cells.append(fmt.format(v) if v is not None and pd.notna(v) else "")
            label = _column_label(row, multi_run)
            if label in columns:  # never let two cases share (and overwrite) a column
                label += f"<br>{row['case']}"
            columns[label] = cells
        table = pd.DataFrame(columns, index=["optimizer (recipe)", *(label for label, _, _ in METRIC_ROWS)])
        table = table[(table != "").any(axis=1)]
        out += [f"## {model}", "", table.to_markdown(tablefmt="github", disable_numparse=True), ""]
    out += _section("Backends side by side", _backend_ratios(ok),
                    "Ratios are other backend / reference backend, measured in the same run (> 1: the other is faster "
                    "for images/s, slower for ms/step).")
    infer = inference_table(records)
    out += _section("Inference", infer.sort_values(["model", "device", "backend", "runtime"]) if not infer.empty
                    else infer,
                    "Latency at batch 1 (percentiles over the timed runs), throughput at each batch size, and the "
                    "runtime's top-1 on the eval split (harness's own preprocessing) beside the framework's own "
                    "evaluation of the same weights; agreement: images where both give the same top-1 class.")
    out += _section("Comparison matrix", comparison_matrix(ok),
                    "Measured train throughput, step time and top-1 for every model x backend x device; the backend "
                    "ratio divides by PyTorch on the same device, the device ratio by the same backend on the first "
                    "device present (ascend, gpu, cpu order).")
    if not refs.empty:
        out += ["## Measured beside published", "",
                "Each cell: measured · pub(lished) · Δ (measured - published, % of published). A cell with only "
                "'— · pub' has no measured counterpart in these runs (same backend, device kind and device count).",
                ""]
        out += _published_tables(ok, refs)
    out += _section("Scaling efficiency", scaling_efficiency(pd.concat([ok, refs]) if not refs.empty else ok))
    if charts is not None and not ok.empty:
        names = write_charts(ok, charts[0])
        if names:
            out += ["## Charts", ""] + [f"![{n}]({charts[1].rstrip('/')}/{n})" for n in names] + [""]
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        out += ["## Failed and skipped cases", "",
                bad[["case", "status", "reason"]].to_markdown(index=False, tablefmt="github"), ""]
    return "\n".join(out)
