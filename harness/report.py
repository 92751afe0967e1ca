"""Markdown reports from result records (pandas + tabulate).

For each model one table: metric rows x one column per backend/device (plus
any setting that differs between that model's cases), so frameworks and
devices read side by side. Failed and skipped cases follow with their reasons.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = ["records_frame", "render_markdown"]

# (row label, column in the frame, format)
METRIC_ROWS = (
    ("train images/s", "train_images_per_s", "{:.1f}"),
    ("train ms/step (mean)", "train_ms_mean", "{:.1f}"),
    ("train ms/step (p50)", "train_ms_p50", "{:.1f}"),
    ("train ms/step (p90)", "train_ms_p90", "{:.1f}"),
    ("train ms/step (p99)", "train_ms_p99", "{:.1f}"),
    ("train ms/step (stdev)", "train_ms_stdev", "{:.2f}"),
    ("timed steps", "train_steps", "{:.0f}"),
    ("first step / compile (s)", "train_first_step_s", "{:.2f}"),
    ("final loss", "train_loss_last", "{:.3f}"),
    ("eval images/s", "eval_images_per_s", "{:.1f}"),
    ("top-1 (%)", "eval_top1", "{:.2f}"),
    ("top-5 (%)", "eval_top5", "{:.2f}"),
    ("peak host memory (MiB)", "host_peak_mib", "{:.0f}"),
    ("peak device memory (MiB)", "device_peak_mib", "{:.0f}"),
)
ACCURACY = {"eval_top1", "eval_top5"}


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)  # type: ignore[assignment]
    return d


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record with flat metric columns and the case settings as ``cfg.<key>``."""
    rows = []
    for r in records:
        m, env = r.get("metrics", {}), r.get("env", {})
        cfg = r.get("config", {})
        mem = m.get("memory") or {}
        row = {
            "run_id": r.get("run_id"), "case": r.get("case"), "status": r.get("status"), "reason": r.get("reason"),
            "kind": r.get("kind", "measured"),
            "model": cfg.get("model"), "backend": cfg.get("backend"), "device": cfg.get("device"),
            "device_model": env.get("device_model"), "framework_version": env.get("framework_version"),
            "train_images_per_s": _get(m, "train", "images_per_s"),
            "train_steps": _get(m, "train", "timed_steps"),
            "train_first_step_s": _get(m, "train", "first_step_s"),
            "train_loss_last": _get(m, "train", "loss_last"),
            "eval_images_per_s": _get(m, "eval", "images_per_s"),
            "eval_top1": _get(m, "eval", "top1"), "eval_top5": _get(m, "eval", "top5"),
            "host_peak_mib": (mem.get("host_peak_bytes") or float("nan")) / 2**20,
            "device_peak_mib": (mem.get("device_peak_bytes") or float("nan")) / 2**20,
        }
        for stat in ("mean", "p50", "p90", "p99", "stdev"):
            row[f"train_ms_{stat}"] = _get(m, "train", "ms_per_step", stat)
        for key, value in (cfg.get("settings") or {}).items():
            row[f"cfg.{key}"] = tuple(value) if isinstance(value, list) else value
        rows.append(row)
    return pd.DataFrame(rows)


def _column_label(row: pd.Series, multi_run: bool) -> str:
    """``backend / device``, the device model, and the matrix values that name the case."""
    label = f"{row['backend']} / {row['device']}"
    if isinstance(row.get("device_model"), str) and row["device_model"]:
        label += f"<br>{row['device_model']}"
    stem = f"{row['model']}-{row['backend']}-{row['device']}"
    case = str(row.get("case") or "")
    extra = [case[len(stem) + 1:]] if case.startswith(stem + "-") else []
    if multi_run:
        extra.append(f"run {row['run_id']}")
    return label + ("<br>" + ", ".join(extra) if extra else "")


def _variant(row: pd.Series) -> str:
    stem = f"{row['model']}-{row['backend']}-{row['device']}"
    case = str(row.get("case") or "")
    return case[len(stem) + 1:] if case.startswith(stem + "-") else ""


def _backend_ratios(ok: pd.DataFrame) -> pd.DataFrame | None:
    """Per model, device and variant: each metric for the reference backend (torch if present) and the others."""
    if ok.empty or ok["backend"].nunique() < 2:
        return None
    ok = ok.assign(variant=ok.apply(_variant, axis=1))
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


def render_markdown(records: Iterable[dict[str, Any]], title: str = "harness report") -> str:
    df = records_frame(records)
    out = [f"# {title}", ""]
    if df.empty:
        return "\n".join(out + ["No records."]) + "\n"
    ok = df[df["status"] == "ok"]
    for model, group in ok.groupby("model", sort=True):
        multi_run = group["run_id"].nunique() > 1
        columns: dict[str, list[str]] = {}
        for _, row in group.sort_values(["backend", "device", "case"]).iterrows():
            opt, recipe = row.get("cfg.optimizer"), row.get("cfg.recipe")
            cells = [(f"{opt}" if isinstance(opt, str) else "") + (f" ({recipe})" if isinstance(recipe, str) else "")]
            for _label, col, fmt in METRIC_ROWS:
                v = row.get(col)
                if col in ACCURACY and row.get("cfg.data") == "synthetic":
                    v = None  # random labels: accuracy means nothing
                cells.append(fmt.format(v) if v is not None and pd.notna(v) else "")
            label = _column_label(row, multi_run)
            if label in columns:  # never let two cases share (and overwrite) a column
                label += f"<br>{row['case']}"
            columns[label] = cells
        table = pd.DataFrame(columns, index=["optimizer (recipe)", *(label for label, _, _ in METRIC_ROWS)])
        table = table[(table != "").any(axis=1)]
        out += [f"## {model}", "", table.to_markdown(tablefmt="github", disable_numparse=True), ""]
    compared = _backend_ratios(ok)
    if compared is not None:
        out += ["## Backends side by side", "",
                "Ratios are other backend / reference backend, measured in the same run (> 1: the other is faster "
                "for images/s, slower for ms/step).", "",
                compared.to_markdown(index=False, tablefmt="github", disable_numparse=True), ""]
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        out += ["## Failed and skipped cases", "",
                bad[["case", "status", "reason"]].to_markdown(index=False, tablefmt="github"), ""]
    return "\n".join(out)
