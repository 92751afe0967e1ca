"""The seeds' layout: measured numbers beside the published ones, with the difference."""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.measure.intervals import Estimate, delta_text
from harness.results.frame import ACCURACY

__all__ = ["PUBLISHED_ROWS", "DEVICE_ORDER", "published_tables", "published_frames", "fmt_value"]

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
DEVICE_ORDER = {"ascend": 0, "gpu": 1, "cpu": 2}


def _hardware(row: pd.Series) -> tuple[Any, ...]:
    """The column a record belongs to in a seed-layout table: backend, device, device count, scenario kind."""
    kind = "inference" if row.get("cfg.scenario") == "inference" else "train"
    return (DEVICE_ORDER.get(row["device"], 9), row["device"], int(row.get("devices") or 1), row["backend"], kind)


def _measured(rows: list[pd.Series], col: str) -> Estimate | None:
    """The measured value of ``col`` for one table column: every run (repetitions, seeds) of the first
    configuration that has it, as a geometric mean with its interval (accuracy: a mean over seeds)."""
    from harness.measure.intervals import mean_ci, rate

    usable = [r for r in rows if r.get(col) is not None and pd.notna(r.get(col))]  # (synthetic top-1: None already,
    # harness.results.frame.LEARNED)
    if not usable:
        return None
    key = (usable[0].get("run_id"), usable[0].get("config_key"))
    values = [float(r[col]) for r in usable if (r.get("run_id"), r.get("config_key")) == key]
    return mean_ci(values) if col in ACCURACY else rate(values)


def fmt_value(fmt: str, v: Any) -> str:
    return fmt.format(v) if v is not None and pd.notna(v) else ""


def published_frames(measured: pd.DataFrame, refs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """Per model with published figures: ``(model, its seed files, table)``, the table's rows the published metrics
    and its columns the hardware, each cell measured (every run of a configuration: geometric mean or mean with its 95%
    interval) beside published, with the difference and the interval of that difference."""
    out: list[tuple[str, str, pd.DataFrame]] = []
    for model, pub in refs.groupby("model", sort=True):
        meas = measured[measured["model"] == model]
        columns: dict[str, list[str]] = {}
        keys = sorted({_hardware(r) for _, r in pub.iterrows()} | {_hardware(r) for _, r in meas.iterrows()})
        for key in keys:
            _, device, devices, backend, kind = key
            p_rows = [r for _, r in pub.iterrows() if _hardware(r) == key]
            m_rows = [r for _, r in meas.iterrows() if _hardware(r) == key]
            variants = [str(r.get("framework_version") or "") for r in p_rows] or [""]
            candidates: list[pd.Series | None] = list(p_rows) if p_rows else [None]
            for i, p in enumerate(candidates):
                cells = []
                for _label, col, fmt in PUBLISHED_ROWS:
                    pv = p.get(col) if p is not None else None
                    est = _measured(m_rows, col)
                    if pv is None or pd.isna(pv):
                        cells.append(est.fmt(fmt) if est is not None else "")
                    elif est is None:
                        cells.append(f"— · pub {fmt_value(fmt, pv)}")
                    else:
                        cells.append(f"{est.fmt(fmt)} · pub {fmt_value(fmt, pv)} · {delta_text(est, float(pv))}")
                suffix = " inference" if kind == "inference" else ""
                if p is not None:
                    label = (f"{p.get('device_model') or device} ×{devices}{suffix}"
                             f"<br>{p.get('framework')} {variants[i]}")
                    if m_rows:
                        label += f"<br>measured: {backend} on {m_rows[0].get('device_model') or device}"
                else:
                    label = f"{device} ×{devices}{suffix}<br>{backend} (measured only)"
                columns[label] = cells
        table = pd.DataFrame(columns, index=[label for label, _, _ in PUBLISHED_ROWS])
        table = table[(table != "").any(axis=1)]
        out.append((str(model), ", ".join(sorted(set(pub["source"].dropna()))), table))
    return out


def published_tables(measured: pd.DataFrame, refs: pd.DataFrame) -> list[str]:
    """:func:`published_frames` as markdown lines, a heading per model."""
    out: list[str] = []
    for model, files, table in published_frames(measured, refs):
        out += [f"### {model}", "", f"Published: {files} (reference records, not measured here).", "",
                table.to_markdown(tablefmt="github", disable_numparse=True), ""]
    return out
