"""What ``harness compare`` can gate: every quantity a record measured, each read the one way the gate judges it.

A record holds its metrics and per-step samples (:mod:`harness.results.records`); :func:`observations` turns them
into :class:`Observation` s, one per gateable metric, named as ``--metrics`` takes them:

========================  =====  ================================================================================
metric                    kind   what a run gives
========================  =====  ================================================================================
``train``                 time   the timed training steps (seconds per step; per image across batch sizes)
``eval``                  time   the evaluation batches (not in an inference case: its evaluation in the
                                 framework is there for the top-1 the runtime is held to)
``inference_b<N>``        time   the inference runtime's runs at batch N > 1 (throughput at that batch)
``latency_p50``           time   the runtime's runs at batch 1 (their median is the p50 latency)
``latency_p99``           run    each run's 99th percentile at batch 1: one tail value per run, so it is judged over
                                 repetitions, never from one run's tail
``data_w<N>``             time   the backend's input pipeline with N workers (seconds per batch)
``time_to_accuracy``      run    seconds until top-1 reached ``target_top1``
``energy``                run    joules per image where a meter measured them (training; an inference case at
                                 its largest batch)
``memory_host``           size   the peak resident memory of the host process (bytes)
``memory_device``         size   the device's peak memory (bytes)
``top1``                  top1   top-1 of the evaluation (labelled data only: synthetic labels mean nothing)
``top1_seeds``            top1   a configuration's top-1 over 2+ seeds in both runs, by the equivalence rule
                                 (:mod:`harness.results.equivalence`); its cases' own top-1 rows defer to it
``export_top1``           top1   top-1 of the exported model in the inference runtime (labelled data only), held to
                                 the baseline's and to the framework's own top-1 of the same weights
========================  =====  ================================================================================

Kinds: *time* metrics have per-step samples (lower is better); *run* metrics one noisy value per run (lower is
better), judged only over repetitions; *size* metrics are deterministic and judged by a tolerance on their growth;
*top1* metrics by a tolerance on their fall in points. How each is judged is :mod:`harness.results.compare`'s.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.config import has_accuracy
from harness.results.records import get

__all__ = ["KINDS", "Observation", "observations", "metric_kind", "UNITS"]

#: Metric families by kind; ``inference_b<N>`` and ``data_w<N>`` are time metrics too.
KINDS = {"train": "time", "eval": "time", "latency_p50": "time", "latency_p99": "run", "time_to_accuracy": "run",
         "energy": "run", "memory_host": "size", "memory_device": "size", "top1": "top1", "export_top1": "top1",
         "top1_seeds": "top1"}
#: The unit each kind's values are shown in (time metrics per step or per image, as the comparison chooses).
UNITS = {"latency_p99": "ms", "time_to_accuracy": "s", "energy": "J/image", "memory_host": "MB",
         "memory_device": "MB", "top1": "%", "export_top1": "%", "top1_seeds": "%"}
_SAMPLED = re.compile(r"(inference_b|data_w)(\d+)")


def metric_kind(name: str) -> str | None:
    """The kind of a metric name (``inference_b8`` and ``data_w4`` are time metrics); None for an unknown one."""
    m = _SAMPLED.fullmatch(name)
    if m:  # batch 1 is latency_p50; data_w0 reads in the training process
        return "time" if m.group(1) == "data_w" or int(m.group(2)) > 1 else None
    return KINDS.get(name)


@dataclass(frozen=True)
class Observation:
    """One run's measurement of one metric: per-step ``samples`` (seconds) with the ``batch`` of images each step
    holds, for a time metric; else the run's ``value``."""

    metric: str
    kind: str
    samples: tuple[float, ...] = ()
    batch: int = 1
    value: float | None = None
    own: float | None = None  # export_top1: the framework's own top-1 of the same weights, in the same run


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None


def _steps(samples: dict[str, Any], key: str) -> tuple[float, ...]:
    values = samples.get(key)
    return tuple(float(x) for x in values) if isinstance(values, list) else ()


def observations(record: dict[str, Any]) -> dict[str, Observation]:
    """Every gateable metric an ok record measured (see the module's table), by name."""
    metrics, samples = record.get("metrics") or {}, record.get("samples") or {}
    s = get(record, "config", "settings") or {}
    batch = int(s.get("batch_size") or 1)
    out: dict[str, Observation] = {}

    def timed(name: str, key: str, images: int) -> None:
        steps = _steps(samples, key)
        if steps:
            out[name] = Observation(name, "time", steps, images)

    timed("train", "train_step_s", batch * int(s.get("devices") or 1) * int(s.get("nodes") or 1))
    if s.get("scenario") != "inference":  # there the framework's evaluation only gives the top-1 to compare with
        timed("eval", "eval_step_s", batch)
    for key in samples:
        m = re.fullmatch(r"inference_b(\d+)_s", key)
        if m and int(m.group(1)) > 1:
            timed(f"inference_b{m.group(1)}", key, int(m.group(1)))
    if _steps(samples, "inference_b1_s"):
        timed("latency_p50", "inference_b1_s", 1)
        out["latency_p99"] = Observation("latency_p99", "run",
                                         value=1e3 * float(np.percentile(_steps(samples, "inference_b1_s"), 99)))
    for key in sorted(samples):
        m = re.fullmatch(r"data_backend_w(\d+)_batch_s", key)  # the backend's own pipeline (not the core's)
        if m:
            timed(f"data_w{m.group(1)}", key, batch)
    tta = get(metrics, "time_to_accuracy")
    if isinstance(tta, dict) and tta.get("reached") and _number(tta.get("time_s")) is not None:
        out["time_to_accuracy"] = Observation("time_to_accuracy", "run", value=_number(tta["time_s"]))
    energy = _number(get(metrics, "train", "energy", "j_per_image"))
    runs = [t for t in get(metrics, "inference", "throughput") or [] if isinstance(t, dict)]
    if energy is None and runs:  # an inference case: at its largest batch, as it would be deployed
        energy = _number(get(max(runs, key=lambda t: t.get("batch_size") or 0), "energy", "j_per_image"))
    if energy is not None:
        out["energy"] = Observation("energy", "run", value=energy)
    for name, key in (("memory_host", "host_peak_bytes"), ("memory_device", "device_peak_bytes")):
        size = _number(get(metrics, "memory", key))
        if size is not None and size > 0:
            out[name] = Observation(name, "size", value=size / 1e6)
    if has_accuracy(s):
        for name, path in (("top1", ("eval", "top1")), ("export_top1", ("inference", "accuracy", "top1"))):
            top1 = _number(get(metrics, *path))
            if top1 is not None:
                own = _number(get(metrics, "inference", "accuracy", "framework_top1"))
                out[name] = Observation(name, "top1", value=top1, own=own if name == "export_top1" else None)
    return out
