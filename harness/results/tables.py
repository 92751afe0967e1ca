"""The analysis tables both reports show (the markdown report, :mod:`harness.results.report`, and the HTML one,
:mod:`harness.results.html`), as pandas frames from the records frame (:mod:`harness.results.frame`).

Per model one table of metric rows x one column per configuration (:func:`model_table`); the backends side by
side (:func:`backend_ratios`); the comparison matrix of every model x backend x device with backend and device
ratios (:func:`comparison_matrix`); a metric's estimate per configuration (:func:`config_estimates`); scaling
efficiency (:func:`scaling_efficiency`) and the inference table (:func:`inference_table`). Each number over a
configuration's runs is a geometric mean (rates) or mean (accuracy) with its 95% interval
(:mod:`harness.measure.intervals`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

import pandas as pd

from harness.config import has_accuracy
from harness.measure.intervals import Estimate, mean_ci, rate, ratio, ratio_text
from harness.measure.steps import INPUT_BOUND_SHARE
from harness.results.frame import ACCURACY, METRIC_ROWS
from harness.results.published import DEVICE_ORDER, fmt_value
from harness.results.records import get

__all__ = ["ENVIRONMENT_NOTE", "environment_table", "RATES", "backend_ratios", "reference_backend",
           "comparison_matrix", "config_estimates", "inference_table", "model_table", "scaling_efficiency",
           "split_frame"]


#: Columns that are rates (their runs' spread is multiplicative: geometric mean and a log-scale interval).
RATES = {"train_images_per_s", "eval_images_per_s", "infer_images_per_s", "data_images_per_s"}


def _column_label(row: pd.Series, multi_run: bool) -> str:
    """``backend / device``, the device model, and the matrix values that name the case."""
    label = f"{row['backend']} / {row['device']}"
    if isinstance(row.get("device_model"), str) and row["device_model"]:
        label += f"<br>{row['device_model']}"
    extra = [row["variant"]] if row.get("variant") else []
    if multi_run:
        extra.append(f"run {row['run_id']}")
    return label + ("<br>" + ", ".join(extra) if extra else "")


def _ratio_cell(a: pd.Series, b: pd.Series, fmt: str) -> str:
    """``a / b`` of two configurations' per-run values: geometric means, their ratio and its 95% interval, and
    whether it is a measurable difference at all."""
    est, ga, gb = ratio(list(a), list(b)), rate(list(a)), rate(list(b))
    if est is None or ga is None or gb is None:
        return ""
    return f"{fmt.format(ga.value)} / {fmt.format(gb.value)} = {ratio_text(est)}"


def reference_backend(backends: Iterable[str]) -> str:
    """The backend others are measured against side by side: torch where present, else the first by name."""
    names = sorted(backends)
    return "torch" if "torch" in names else names[0]


def backend_ratios(ok: pd.DataFrame) -> pd.DataFrame | None:
    """Per model, device and variant: each metric for the reference backend (torch if present) and the others,
    over every run of each (repetitions and seeds), with the ratio's 95% confidence interval."""
    if ok.empty or ok["backend"].nunique() < 2:
        return None
    backends = sorted(ok["backend"].unique())
    ref = reference_backend(backends)
    metrics = (("images/s", "train_images_per_s", "{:.1f}"), ("data pipeline images/s", "data_images_per_s", "{:.1f}"),
               ("ms/step p50", "train_ms_p50", "{:.1f}"),
               ("first step (s)", "train_first_step_s", "{:.2f}"), ("peak host MiB", "host_peak_mib", "{:.0f}"))
    rows = []
    for (model, device, variant), g in ok.groupby(["model", "device", "variant"], sort=True):
        by = dict(iter(g.groupby("backend")))  # iter: dict() would read a GroupBy's .keys as a mapping's
        if ref not in by:
            continue
        for other in (b for b in backends if b != ref and b in by):
            row = {"model": model, "device": device, "variant": str(variant) or "-", "backends": f"{other} / {ref}",
                   "runs": f"{len(by[other])} / {len(by[ref])}"}
            for label, col, fmt in metrics:
                a, b = by[other][col].dropna(), by[ref][col].dropna()
                if len(a) and len(b):
                    row[label] = _ratio_cell(a, b, fmt)
            rows.append(row)
    return pd.DataFrame(rows).fillna("") if rows else None


def _cell(col: str, fmt: str, values: pd.Series) -> str:
    """One metric over a configuration's runs: rates as geometric mean [95% CI], accuracy as mean [95% CI] over its
    seeds and repetitions, anything else as the median."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return fmt.format(values.iloc[0])
    est = _estimate(col, values)
    return est.fmt(fmt) if est is not None else fmt.format(values.median())


def _estimate(col: str, values: pd.Series) -> Estimate | None:
    """An accuracy's mean or a rate's geometric mean over a configuration's runs with its 95% interval (none from a
    single run); None for any other metric or without values."""
    present = list(values.dropna())
    return mean_ci(present) if col in ACCURACY else rate(present) if col in RATES else None


def _by_config(g: pd.DataFrame) -> dict[tuple[str, str, int], pd.DataFrame]:
    """A run's configurations of one model: ``(backend, device, devices)`` -> their runs (repetitions, seeds)."""
    return {(str(b), str(d), int(cast(int, n))): runs
            for (b, d, n), runs in g.groupby(["backend", "device", "devices"], sort=True)}


def _scenario(ok: pd.DataFrame) -> pd.Series:
    return ok.get("cfg.scenario", pd.Series("train", index=ok.index)).fillna("train")


def _configurations(ok: pd.DataFrame) -> Iterator[tuple[tuple[str, str, str], dict[tuple[str, str, int],
                                                                                  pd.DataFrame]]]:
    """``(model, variant, run)`` -> its configurations (:func:`_by_config`), the data cases apart (they feed the data
    ceiling)."""
    for (model, variant, run), g in ok[_scenario(ok) != "data"].groupby(["model", "variant", "run_id"], sort=True):
        yield (str(model), str(variant), str(run)), _by_config(g)


def config_estimates(ok: pd.DataFrame, col: str = "train_images_per_s") -> pd.DataFrame:
    """One row per configuration of each model, variant and run (the comparison matrix's rows) with ``col`` over its
    runs: ``value`` (a rate's geometric mean, an accuracy's mean), ``lo``/``hi`` its 95% interval (None from a single
    run) and ``n`` the runs it rests on; accuracy only where the data can be learned."""
    rows = []
    for (model, variant, run), configs in (_configurations(ok) if not ok.empty else ()):
        for (backend, device, n), runs in configs.items():
            est = _estimate(col, runs[col])  # (None for top-1 on synthetic data: records_frame blanks it)
            if est is not None:
                rows.append({"model": model, "variant": variant, "run_id": run, "backend": backend, "device": device,
                             "devices": n, "value": est.value, "lo": est.lo, "hi": est.hi, "n": est.n})
    return pd.DataFrame(rows, columns=["model", "variant", "run_id", "backend", "device", "devices", "value", "lo",
                                       "hi", "n"])


def _ceiling(feeds: pd.DataFrame, train: pd.Series) -> str:
    """The images/s of the backend's pipeline alone (data cases of the same model, backend, device and run) at the
    training case's worker count, over the data cases' runs; nothing for training on synthetic data."""
    if feeds.empty or not has_accuracy({"data": train.get("cfg.data")}):
        return ""
    workers = train.get("cfg.workers")
    values = [rate for rates in feeds["data_rates"] for w, rate in rates if w == workers]
    return _cell("data_images_per_s", "{:.1f}", pd.Series(values, dtype=float)) if values else ""


def comparison_matrix(ok: pd.DataFrame) -> pd.DataFrame:
    """Model x backend x device (every run of each configuration: repetitions and seeds): images/s, ms/step and
    top-1 as geometric mean or mean with their 95% intervals, the backend ratio (÷ PyTorch on the same device) and the
    device ratio (÷ the same backend on the first device present, ascend, gpu, cpu order), each with the interval
    of the ratio from the runs (:func:`harness.measure.intervals.ratio`)."""
    if ok.empty:
        return pd.DataFrame()
    rows = []
    feeds = ok[_scenario(ok) == "data"]
    for (model, variant, run), configs in _configurations(ok):
        ips = {k: runs["train_images_per_s"].dropna() for k, runs in configs.items()}
        for (backend, device, n), runs in configs.items():
            mine = ips[(backend, device, n)]
            ref_dev = min((d for b, d, m in ips if b == backend and m == n), key=lambda d: DEVICE_ORDER.get(d, 9))
            torch_here = ips.get(("torch", device, n), pd.Series(dtype=float))
            backend_ratio = ratio(list(mine), list(torch_here)) if backend != "torch" else None
            device_ratio = ratio(list(mine), list(ips[(backend, ref_dev, n)])) if ref_dev != device else None
            rows.append({
                "model": model, "variant": variant or "-", "backend": backend, "device": device + (f" ×{n}" if n > 1
                                                                                                 else ""),
                "runs": len(runs), "images/s": _cell("train_images_per_s", "{:.1f}", runs["train_images_per_s"]),
                "ms/step p50": _cell("train_ms_p50", "{:.1f}", runs["train_ms_p50"]),
                "MFU (%)": _cell("train_mfu_pct", "{:.1f}", runs.get("train_mfu_pct", pd.Series(dtype=float))),
                "J/image": _cell("train_j_per_image", "{:.3g}", runs.get("train_j_per_image", pd.Series(dtype=float))),
                "top-1 (%)": _cell("eval_top1", "{:.2f}", runs["eval_top1"]),
                "backend ratio (÷ torch)": ratio_text(backend_ratio) if backend_ratio else "",
                "device ratio": f"{ratio_text(device_ratio)} vs {ref_dev}" if device_ratio else "",
                "data ceiling images/s": _ceiling(feeds[(feeds["model"] == model) & (feeds["backend"] == backend)
                                                        & (feeds["device"] == device) & (feeds["run_id"] == run)],
                                                  runs.iloc[0]),
            })
    table = pd.DataFrame(rows)
    return table.loc[:, (table != "").any()] if not table.empty else table


def scaling_efficiency(df: pd.DataFrame) -> pd.DataFrame:
    """Where a 1-device and an N-device run of the same case exist: N-device throughput over N times the
    1-device throughput (images/s), or the 1-device over the N-device ms/step (same per-device batch), from every
    repetition of each side, with the 95% interval of that ratio; published figures are single values."""
    if df.empty:
        return pd.DataFrame()
    rows = []
    key = ["kind", "model", "backend", "device", "framework_version"]
    d = df.assign(framework_version=df["framework_version"].fillna(""))
    for (kind, model, backend, device, version), g in d.groupby(key, sort=True):
        g = g[g.get("cfg.scenario", pd.Series(index=g.index, dtype=object)) != "inference"]
        one = g[g["devices"] == 1]
        for n, many in g[g["devices"] > 1].groupby("devices", sort=True):
            n = int(cast(int, n))
            est, how = None, ""
            if many["train_images_per_s"].notna().any() and one["train_images_per_s"].notna().any():
                est, how = ratio(list(many["train_images_per_s"]), list(one["train_images_per_s"])), "images/s"
                est = est.scaled(1 / n) if est else None
            elif many["train_ms_mean"].notna().any() and one["train_ms_mean"].notna().any():
                est, how = ratio(list(one["train_ms_mean"]), list(many["train_ms_mean"])), "ms/step"
            if est is None:
                continue
            rows.append({"model": model, "backend": backend, "device": device, "version": str(version) or "-",
                         "devices": n, "runs": f"{len(many)} / {len(one)}" if kind != "reference" else "",
                         "efficiency": (est.scaled(100).fmt("{:.1f}", "%") if est.has_ci else f"{100 * est.value:.1f}%"
                                        + (" (single run)" if kind != "reference" and est.n == 1 else "")),
                         "from": how, "source": "published" if kind == "reference" else "measured"})
    return pd.DataFrame(rows)


def inference_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per measured inference case: runtime, batch-1 latency percentiles, throughput at each batch size,
    and the runtime's top-1 beside the framework's own evaluation of the same weights."""
    rows = []
    for r in records:
        inf = get(r, "metrics", "inference")
        if r.get("kind", "measured") != "measured" or r.get("status") != "ok" or not inf:
            continue
        cfg = r.get("config", {})
        lat = inf.get("latency_ms") or {}
        acc = inf.get("accuracy") or {}
        src = get(r, "metrics", "export_from", "backend")
        rows.append({
            "model": cfg.get("model"), "backend": cfg.get("backend"), "device": cfg.get("device"),
            "runtime": inf.get("runtime", "") + (f" (export: {src})" if src else ""),
            "p50 ms": fmt_value("{:.3f}", lat.get("p50")), "p90 ms": fmt_value("{:.3f}", lat.get("p90")),
            "p99 ms": fmt_value("{:.3f}", lat.get("p99")), "runs": lat.get("count", ""),
            "images/s by batch": ", ".join(f"{t['batch_size']}: {t['images_per_s']:.1f}"
                                           for t in inf.get("throughput", [])),
            "runtime top-1": fmt_value("{:.2f}", acc.get("top1")),
            "framework top-1": fmt_value("{:.2f}", acc.get("framework_top1")),
            "top-1 agreement %": fmt_value("{:.1f}", acc.get("top1_agreement")),
            "run": r.get("run_id"),
        })
    table = pd.DataFrame(rows)
    if not table.empty and table["run"].nunique() < 2:  # the run says which row is which only over several runs
        table = table.drop(columns="run")
    return table


def model_table(group: pd.DataFrame) -> pd.DataFrame:
    """One model's measured records (ok): metric rows x one column per configuration (backend / device, its
    device model, the matrix values and, over several runs, the run), each cell over the configuration's runs."""
    multi_run = group["run_id"].nunique() > 1
    columns: dict[str, list[str]] = {}
    keys = ["run_id", "config_key"] if multi_run else ["config_key"]
    for _, runs in sorted(group.groupby(keys, sort=False), key=lambda kv: tuple(kv[1].iloc[0][["backend",
                                                                                             "device", "case"]])):
        row = runs.iloc[0]
        opt, recipe = row.get("cfg.optimizer"), row.get("cfg.recipe")
        if pd.isna(row.get("train_images_per_s")):  # the optimizer means something only where it trained
            opt = recipe = None
        cells = [(f"{opt}" if isinstance(opt, str) else "") + (f" ({recipe})" if isinstance(recipe, str) else "")]
        for _label, col, fmt in METRIC_ROWS:
            cells.append(_cell(col, fmt, runs[col]))  # (top-1 and loss on synthetic data: None, records_frame)
        unstable = runs[runs["unstable"]]
        cells.append(str(len(runs)) if len(runs) > 1 else "")
        cells.append(f"{len(unstable)} of {len(runs)}: {unstable['noise_reasons'].iloc[0]}" if len(unstable)
                     else "")
        starved = int(runs["input_bound"].sum()) if "input_bound" in runs else 0
        cells.append(f"{starved} of {len(runs)}: waiting for data took {runs['train_input_wait_pct'].max():.0f}% "
                     f"of a step (limit {100 * INPUT_BOUND_SHARE:.0f}%)" if starved else "")
        label = _column_label(row, multi_run)
        if label in columns:  # never let two configurations share (and overwrite) a column
            label += f"<br>{row['case']}"
        columns[label] = cells
    index = ["optimizer (recipe)", *(label for label, _, _ in METRIC_ROWS), "runs (geometric mean [95% CI])",
             "UNSTABLE", "INPUT-BOUND"]
    table = pd.DataFrame(columns, index=index)
    return table[(table != "").any(axis=1)]


def split_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The records frame as the report reads it: the measured records (of a case re-recorded by a resumed run, the
    last), the ok ones among them, and the published reference records; the index stays the records' positions."""
    refs = df[(df["kind"] == "reference") & (df["status"] == "ok")]
    df = df[df["kind"] != "reference"]
    df = df.drop_duplicates(["run_id", "case", "repeat"], keep="last")  # a resumed run re-records failed cases
    return df, df[df["status"] == "ok"], refs


ENVIRONMENT_NOTE = ("What each backend ran on, from the records: the framework and its version, the device, the host "
                    "CPU and its native bf16 instructions (amx_bf16 or avx512_bf16; none: a bf16 case on this CPU is "
                    "refused, emulated bf16 would measure the emulation), and the oneDNN ISA cap MindSpore ran under.")


def environment_table(measured: pd.DataFrame) -> pd.DataFrame:
    """One row per backend, framework version, device and host CPU in the records."""
    cols = {"backend": "backend", "framework": "framework", "framework_version": "version", "device": "device",
            "device_model": "device model", "cpu": "host CPU", "cpu_bf16": "CPU bf16",
            "onednn_max_cpu_isa": "oneDNN ISA cap"}
    have = [c for c in cols if c in measured]
    if measured.empty or "backend" not in have:
        return pd.DataFrame()
    table = measured[have].astype(object).where(measured[have].notna(), "-").drop_duplicates()
    return table.sort_values(["backend", "device"]).rename(columns=cols).reset_index(drop=True)
