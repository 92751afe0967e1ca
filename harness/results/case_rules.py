"""Two rules about a case that every reader of records applies the same way, decided here and nowhere else.

*Which settings identify a case* (:data:`IDENTITY_EXCLUDED`, :func:`identity_key`, :func:`identity_difference`):
two records with the same identity measured the same thing. The runner reads it to tell that a resumed run has
done a case already (:mod:`harness.run.runner`), the records frame to fold a configuration's repetitions and seeds
into one (:mod:`harness.results.frame`), and ``harness compare`` to refuse two runs that measured different things
(:mod:`harness.results.compare`).

*Which measurement represents a case* (:func:`representative`): by the case's scenario, the per-step samples and
the images/s that stand for it. The runner judges a case's noise on those samples, ``harness compare`` gates on
them, and ``harness history`` and the MLPerf log show that images/s (:mod:`harness.results.history`,
:mod:`harness.results.mllog`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.results.records import get

__all__ = ["IDENTITY_EXCLUDED", "identity", "identity_key", "identity_difference", "identity_differences", "Measure",
           "representative", "representative_samples", "pipeline_rates", "data_ceiling"]

#: Settings that change how a case is run, guarded or stored, not what it measures: records that differ only in
#: these measured the same thing. The three readers used to keep three lists (the runner left out ``repeats``, the
#: records frame ``repeats`` and ``seed``, ``harness compare`` ``repeats``, ``timeout``, ``workers``,
#: ``max_bad_images``, ``checkpoint_keep``, ``data_root`` and ``verify``); this one is their union but for
#: ``workers``:
#:
#: * ``repeats``: how many times a case is measured, not what (all three agreed);
#: * ``seed``: a seed draws one sample of the same measurement, so that cases that differ in their seed are one
#:   configuration measured several times (the report's intervals over seeds rest on it); a resumed run keeps a
#:   finished case's record when only its seed changed, and that record names the seed it ran with;
#: * ``timeout``, ``max_bad_images``, ``verify``, ``checkpoint_keep``: when a case is given up, how many unreadable
#:   images fail it, how its data folder is checked when first scanned, how many checkpoints stay on disk: none
#:   reaches a timed step;
#: * ``data_root``: where the data lives on this machine (another machine, a moved dataset, or a run folder moved
#:   elsewhere with the tiny dataset beside it), not which data it is: ``data`` says that.
#:
#: ``workers`` stays in the identity: the number of loader processes decides whether a folder-data case is input
#: bound, and the report reads the data ceiling at a case's worker count, so a change of it can move images/s
#: without any change of code.
IDENTITY_EXCLUDED = frozenset({"repeats", "seed", "timeout", "max_bad_images", "verify", "checkpoint_keep",
                               "data_root"})


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """A record's ``config`` (or :meth:`harness.config.Case.to_dict`) reduced to what identifies its case: model,
    backend, device, and the settings and matrix values but those in :data:`IDENTITY_EXCLUDED`. The case's name is
    not part of it: cases are matched by name first, where a reader matches them at all."""
    def kept(values: Any) -> dict[str, Any]:
        return {k: v for k, v in (values or {}).items() if k not in IDENTITY_EXCLUDED}

    return {"model": config.get("model"), "backend": config.get("backend"), "device": config.get("device"),
            "settings": kept(config.get("settings")), "variant": kept(config.get("variant"))}


def identity_key(config: dict[str, Any]) -> str:
    """:func:`identity` as text: equal for two configurations exactly when they identify the same case."""
    return json.dumps(identity(config), sort_keys=True, default=str)


def identity_differences(first: dict[str, Any], second: dict[str, Any],
                         names: tuple[str, str] = ("the baseline", "the current run")) -> list[str]:
    """Every part of the identity in which two configurations differ, worded with ``names`` for the two sides
    (``settings.steps: 20 in the baseline, 30 in the current run``); empty for the same case."""
    a, b = identity(first), identity(second)
    out = [f"{key}: {a[key]!r} in {names[0]}, {b[key]!r} in {names[1]}"
           for key in ("model", "backend", "device") if a[key] != b[key]]
    for part in ("settings", "variant"):
        out += [f"{part}.{key}: {a[part].get(key)!r} in {names[0]}, {b[part].get(key)!r} in {names[1]}"
                for key in sorted(set(a[part]) | set(b[part])) if a[part].get(key) != b[part].get(key)]
    return out


def identity_difference(first: dict[str, Any], second: dict[str, Any],
                        names: tuple[str, str] = ("the baseline", "the current run")) -> str | None:
    """The first of :func:`identity_differences`, or None for the same case."""
    return next(iter(identity_differences(first, second, names)), None)


def pipeline_rates(metrics: dict[str, Any]) -> tuple[tuple[int, float], ...]:
    """A data case's ``(workers, images/s)`` through the backend's own pipeline, for each worker count timed."""
    pipelines = get(metrics, "input_pipeline", "pipelines") or []
    return tuple((int(p["workers"]), float(p["images_per_s"])) for p in pipelines
                 if isinstance(p, dict) and p.get("pipeline") == "backend" and isinstance(p.get("workers"), int)
                 and isinstance(p.get("images_per_s"), (int, float)))


def data_ceiling(metrics: dict[str, Any], workers: Any) -> float | None:
    """A data case's (``scenario: data``) images/s through the backend's own pipeline at the case's worker count
    (else the best it measured): the most a training run of the same preprocessing could take in."""
    rates = pipeline_rates(metrics)
    same = [r for w, r in rates if w == workers]
    return max(same or [r for _, r in rates], default=None)


@dataclass(frozen=True)
class Measure:
    """What represents a case: ``label`` says which part of it (``train``, ``eval``, ``inference b32``,
    ``data w4``), ``samples`` names its per-step (per-batch) seconds in the record's ``samples``, and
    ``images_per_s`` is its throughput where the record has it."""

    label: str
    samples: str
    images_per_s: float | None


def _number(value: Any) -> float | None:
    """A number a record holds, as a float; None for anything else (a bool is not a number here)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


#: A part of a case that may represent it: (metrics, samples, settings) -> its measurement, or None where the record
#: does not hold that part.
_Part = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], Measure | None]


def _pass(part: str) -> _Part:
    """The training or evaluation pass: its ``<part>_step_s`` samples and ``metrics.<part>.images_per_s``."""
    def measure(metrics: dict[str, Any], samples: dict[str, Any], settings: dict[str, Any]) -> Measure | None:
        ips = _number(get(metrics, part, "images_per_s"))
        return Measure(part, f"{part}_step_s", ips) if samples.get(f"{part}_step_s") or ips is not None else None

    return measure


_INFERENCE = re.compile(r"inference_b(\d+)_s")
_DATA = re.compile(r"data_backend_w(\d+)_batch_s")


def _inference(metrics: dict[str, Any], samples: dict[str, Any], settings: dict[str, Any]) -> Measure | None:
    """The runtime at its largest batch size: the throughput a deployment would run at."""
    rows = [t for t in get(metrics, "inference", "throughput") or []
            if isinstance(t, dict) and isinstance(t.get("batch_size"), int)]
    batches = {t["batch_size"] for t in rows} | {int(m.group(1)) for k in samples if (m := _INFERENCE.fullmatch(k))}
    if not batches:
        return None
    b = max(batches)
    ips = next((_number(t.get("images_per_s")) for t in rows if t["batch_size"] == b), None)
    return Measure(f"inference b{b}", f"inference_b{b}_s", ips)


def _data(metrics: dict[str, Any], samples: dict[str, Any], settings: dict[str, Any]) -> Measure | None:
    """The backend's own input pipeline at the case's worker count, else at its fastest (:func:`data_ceiling`)."""
    rates = dict(pipeline_rates(metrics))
    timed = set(rates) | {int(m.group(1)) for k in samples if (m := _DATA.fullmatch(k))}
    if not timed:
        return None
    workers = settings.get("workers")
    w = workers if workers in timed else max(sorted(timed), key=lambda n: rates.get(n, float("-inf")))
    return Measure(f"data w{w}", f"data_backend_w{w}_batch_s", rates.get(w))


#: The part that represents a case of each scenario. Evaluation represents an export case (what it times is the
#: evaluation of the weights it exports); an inference case is its runtime even where it also evaluated the weights
#: in the framework (the runner and history used to take that evaluation for it, as it came before inference in
#: their order).
_BY_SCENARIO: dict[str, tuple[_Part, ...]] = {
    "train": (_pass("train"),), "eval": (_pass("eval"),), "export": (_pass("eval"),), "inference": (_inference,),
    "data": (_data,)}
#: A scenario a package adds, or a record without one: the first part it has, in this order.
_ANY: tuple[_Part, ...] = (_pass("train"), _pass("eval"), _inference, _data)


def representative(record: dict[str, Any]) -> Measure | None:
    """The measurement that stands for a record's case (``metrics``, ``samples`` and ``config.settings`` are read),
    chosen by its scenario: training for ``train``, the evaluation pass for ``eval`` and ``export``, the runtime at
    its largest batch for ``inference``, the backend's pipeline at the case's worker count for ``data``; None where
    the record holds none of it (a failed case)."""
    metrics, samples = record.get("metrics") or {}, record.get("samples") or {}
    settings = get(record, "config", "settings") or {}
    for part in _BY_SCENARIO.get(str(settings.get("scenario")), _ANY):
        found = part(metrics, samples, settings)
        if found is not None:
            return found
    return None


def representative_samples(record: dict[str, Any]) -> list[float]:
    """The per-step seconds of the record's :func:`representative` measurement (empty where it has none)."""
    measure = representative(record)
    values = (record.get("samples") or {}).get(measure.samples) if measure is not None else None
    return list(values) if isinstance(values, list) else []
