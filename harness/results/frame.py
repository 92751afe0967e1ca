"""Records as a pandas frame: one row per record, flat metric columns and the case settings as ``cfg.<key>``."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.config import has_accuracy
from harness.results.case_rules import IDENTITY_EXCLUDED, data_ceiling, identity_key, pipeline_rates
from harness.results.records import get

__all__ = ["METRIC_ROWS", "ACCURACY", "LEARNED", "records_frame"]

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
    ("waiting for data (% of step)", "train_input_wait_pct", "{:.0f}"),
    ("data pipeline images/s (alone)", "data_images_per_s", "{:.1f}"),
    ("final loss", "train_loss_last", "{:.3f}"),
    ("train TFLOP/s (analytic FLOPs)", "train_tflops", "{:.3g}"),
    ("MFU (% of device peak)", "train_mfu_pct", "{:.1f}"),
    ("train energy (J/image)", "train_j_per_image", "{:.3g}"),
    ("train mean power (W)", "train_mean_w", "{:.0f}"),
    ("eval images/s", "eval_images_per_s", "{:.1f}"),
    ("top-1 (%)", "eval_top1", "{:.2f}"),
    ("top-5 (%)", "eval_top5", "{:.2f}"),
    ("time to target top-1 (s)", "tta_s", "{:.1f}"),
    ("peak host memory (MiB)", "host_peak_mib", "{:.0f}"),
    ("peak device memory (MiB)", "device_peak_mib", "{:.0f}"),
)
ACCURACY = {"eval_top1", "eval_top5"}
#: Columns that mean something only where the labels can be learned (:func:`harness.config.has_accuracy`): every
#: reader of the frame gets None for them on synthetic data, so no report shows them as a result.
LEARNED = ("eval_top1", "eval_top5", "train_loss_last")


def _pct(share: Any) -> float | None:
    return 100.0 * share if isinstance(share, (int, float)) else None


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
            "train_images_per_s": get(m, "train", "images_per_s"),
            "train_steps": get(m, "train", "timed_steps"),
            "train_first_step_s": get(m, "train", "first_step_s"),
            "train_input_wait_pct": _pct(get(m, "train", "input", "wait_share")),
            "input_bound": bool(get(m, "train", "input", "input_bound")),
            "train_loss_last": get(m, "train", "loss_last"),
            "train_tflops": get(m, "train", "flops", "achieved_tflops"),
            "train_mfu_pct": _pct(get(m, "train", "flops", "mfu")),
            "train_j_per_image": get(m, "train", "energy", "j_per_image"),
            "train_mean_w": get(m, "train", "energy", "mean_w"),
            "eval_images_per_s": get(m, "eval", "images_per_s"),
            "eval_top1": get(m, "eval", "top1"), "eval_top5": get(m, "eval", "top5"),
            "tta_s": get(m, "time_to_accuracy", "time_s"),
            "train_total_h": (get(m, "train", "total_time_s") or float("nan")) / 3600,
            "infer_latency_ms": get(m, "inference", "latency_ms", "p50") or get(m, "inference", "latency_ms", "mean"),
            "infer_images_per_s": get(m, "inference", "images_per_s"),
            "devices": (cfg.get("settings") or {}).get("devices") or 1,
            # the suite's matrix values that made the case, as data (never parsed from its name), but those that
            # do not identify it (the seed: cases that differ only in it are one configuration measured several
            # times); config_key is the case's identity (harness.results.case_rules)
            "variant": ", ".join(f"{k}={v}" for k, v in (cfg.get("variant") or {}).items()
                                 if k not in IDENTITY_EXCLUDED),
            "config_key": identity_key(cfg),
            "repeat": r.get("repeat", 0),
            "unstable": bool((r.get("noise") or {}).get("unstable")),
            "noise_reasons": "; ".join((r.get("noise") or {}).get("reasons") or []),
            "framework": env.get("framework"),
            "cpu": env.get("cpu"), "cpu_bf16": env.get("cpu_bf16"), "onednn_max_cpu_isa": env.get("onednn_max_cpu_isa"),
            "source": get(r, "source", "file"),
            "host_peak_mib": (mem.get("host_peak_bytes") or float("nan")) / 2**20,
            "device_peak_mib": (mem.get("device_peak_bytes") or float("nan")) / 2**20,
        }
        for stat in ("mean", "p50", "p90", "p99", "stdev"):
            row[f"train_ms_{stat}"] = get(m, "train", "ms_per_step", stat)
        row["data_images_per_s"] = data_ceiling(m, (cfg.get("settings") or {}).get("workers"))
        row["data_rates"] = pipeline_rates(m)
        for key, value in (cfg.get("settings") or {}).items():
            row[f"cfg.{key}"] = tuple(value) if isinstance(value, list) else value
        for key in ("job_id", "state", "node_list", "nodes", "pending_s", "run_s"):  # a case run as a Slurm job
            if isinstance(env.get("slurm"), dict):
                row[f"slurm.{key}"] = env["slurm"].get(key)
        if row["kind"] == "measured" and not has_accuracy(cfg.get("settings") or {}):  # random labels: no top-1 or
            # loss is a result (a published record's numbers are the paper's, on ImageNet)
            row.update(dict.fromkeys(LEARNED))
        rows.append(row)
    return pd.DataFrame(rows)
