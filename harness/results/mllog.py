"""MLPerf logging export: a run's records as ``:::MLLOG`` events (``harness export mllog RUN_DIR``).

One file per case (and repetition) through the ``mlperf-logging`` package's :class:`mllog.MLLogger`, every event
stamped (``time_ms``) with the time the run measured, never the time of the export:

* ``run_start`` at the case's start (``started_at``), ``run_stop`` at its start plus ``duration_s``, with
  ``metadata.status`` ``success`` (case ok) or ``aborted`` (with the reason);
* ``init_start``/``init_stop`` where the record holds the initialisation time (time-to-accuracy runs);
* the system (``submission_platform``: device model, with CPU, device, framework, versions and git commit in its
  metadata) and ``submission_benchmark`` (the model);
* hyperparameters: ``global_batch_size``, ``opt_name``, ``opt_base_learning_rate``, ``opt_weight_decay``,
  ``opt_learning_rate_warmup_epochs``, ``seed``, ``train_samples``, ``eval_samples``;
* ``epoch_start``/``epoch_stop`` per epoch (``metadata.epoch_num``), ``eval_accuracy`` (top-1 as a fraction, top-5 in
  its metadata as a fraction too, with the ``epoch_num`` of the last ``epoch_stop``; none for synthetic labels) after
  each evaluation, and ``throughput`` (a key of this harness: images/s) after training.

What a record holds is the case's start and duration, every timed step's seconds, the first step's and each
evaluation's time since training began (time-to-accuracy runs). Epoch boundaries are therefore derived: training
starts at the case's start plus the initialisation time where known (else at the case's start), step 1 takes
``first_step_s``, untimed warm-up steps the median timed step, and the timed steps their measured seconds; each
such event says so in ``metadata.time_basis``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import statistics
from pathlib import Path
from typing import Any

from harness.config import case_slug, has_accuracy
from harness.errors import HarnessError
from harness.results.case_rules import representative
from harness.results.records import RESULTS_FILE, read_records

__all__ = ["export_mllog", "THROUGHPUT_KEY"]

#: The custom key of the throughput event (images/s); MLPerf training has no standard one.
THROUGHPUT_KEY = "throughput"
_DERIVED = "derived: case start + initialisation + per-step samples"


def _ms(t: float) -> int:
    return round(t * 1000)


def _start_s(record: dict[str, Any]) -> float:
    try:
        return dt.datetime.fromisoformat(record["started_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        raise HarnessError(f"case '{record.get('case')}': record without a valid 'started_at'") from None


def _step_times(record: dict[str, Any]) -> list[float]:
    """Seconds of each training step, 1..total: the first alone, warm-up steps at the median timed step, the timed
    steps as measured (rank 0's where several ranks recorded)."""
    train = (record.get("metrics") or {}).get("train") or {}
    total = int(train.get("total_steps") or 0)
    samples = (record.get("samples") or {}).get("train_step_s") or []
    if isinstance(samples, dict):  # per rank
        samples = samples.get("0") or next(iter(samples.values()), [])
    timed = [float(s) for s in samples if isinstance(s, (int, float)) and math.isfinite(s)]
    if not total:
        return []
    typical = statistics.median(timed) if timed else float(train.get("first_step_s") or 0.0)
    head = [float(train.get("first_step_s") or typical)]
    untimed = max(0, total - 1 - len(timed))
    return (head + [typical] * untimed + timed)[:total]


def _logger(path: Path) -> tuple[Any, logging.Handler]:
    from mlperf_logging.mllog.mllog import MLLogger

    log = logging.Logger(f"harness.mllog.{path}")  # not registered: nothing else writes to it
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return MLLogger(logger=log, root_dir=str(Path(__file__).resolve().parents[2])), handler


def _system(record: dict[str, Any]) -> dict[str, Any]:
    env = record.get("env") or {}
    keys = ("cpu", "cpu_count", "device", "device_model", "device_count", "backend", "backend_version", "framework",
            "framework_version", "harness_version", "git_commit", "host", "os", "python")
    return {k: env[k] for k in keys if env.get(k) is not None}


def _write_case(record: dict[str, Any], path: Path) -> None:
    from mlperf_logging.mllog import constants as c

    mllogger, handler = _logger(path)
    try:
        _events(mllogger, c, record)
    finally:
        handler.close()


def _events(log: Any, c: Any, record: dict[str, Any]) -> None:
    cfg = record.get("config") or {}
    s = cfg.get("settings") or {}
    m = record.get("metrics") or {}
    env = record.get("env") or {}
    t0 = _start_s(record)
    t_end = t0 + float(record.get("duration_s") or 0.0)
    tta = m.get("time_to_accuracy") or {}
    init_s = tta.get("init_s")
    measured = {"time_basis": "measured"}

    log.start(key=c.RUN_START, time_ms=_ms(t0), metadata=measured)
    log.event(key=c.SUBMISSION_BENCHMARK, value=cfg.get("model"), time_ms=_ms(t0))
    log.event(key=c.SUBMISSION_PLATFORM, value=env.get("device_model") or env.get("cpu"), time_ms=_ms(t0),
              metadata=_system(record))
    devices = int(s.get("devices") or 1) * int(s.get("nodes") or 1)
    if s.get("batch_size") is not None:
        log.event(key=c.GLOBAL_BATCH_SIZE, value=int(s["batch_size"]) * devices, time_ms=_ms(t0),
                  metadata={"per_device": s["batch_size"], "devices": devices})
    for key, name in ((c.OPT_NAME, "optimizer"), (c.OPT_BASE_LR, "lr"), (c.OPT_WEIGHT_DECAY, "weight_decay"),
                      (c.OPT_LR_WARMUP_EPOCHS, "lr_warmup_epochs"), (c.SEED, "seed")):
        if s.get(name) is not None:
            log.event(key=key, value=s[name], time_ms=_ms(t0))
    train, ev = m.get("train") or {}, m.get("eval") or {}
    if train.get("steps_per_epoch") and s.get("batch_size") is not None:
        log.event(key=c.TRAIN_SAMPLES, value=int(train["steps_per_epoch"]) * int(s["batch_size"]) * devices,
                  time_ms=_ms(t0))
    if ev.get("images") is not None:
        log.event(key=c.EVAL_SAMPLES, value=ev["images"], time_ms=_ms(t0))

    t_train = t0
    if init_s is not None:
        log.start(key=c.INIT_START, time_ms=_ms(t0), metadata=measured)
        log.end(key=c.INIT_STOP, time_ms=_ms(t0 + init_s), metadata=measured)
        t_train = t0 + init_s
    basis = _DERIVED if init_s is not None else "derived: case start + per-step samples (initialisation not recorded)"
    derived = {"time_basis": basis}
    steps = _step_times(record)
    per_epoch = int(train.get("steps_per_epoch") or 0)
    t = t_train
    last_epoch = max(math.ceil(len(steps) / per_epoch) - 1, 0) if steps and per_epoch else 0
    if steps and per_epoch:
        for e in range(math.ceil(len(steps) / per_epoch)):
            part = steps[e * per_epoch:(e + 1) * per_epoch]
            log.start(key=c.EPOCH_START, time_ms=_ms(t), metadata={c.EPOCH_NUM: e, **derived})
            t += sum(part)
            log.end(key=c.EPOCH_STOP, time_ms=_ms(t), metadata={c.EPOCH_NUM: e, "steps": len(part), **derived})
    evaluations = tta.get("evaluations") or []
    for e in evaluations:  # time to accuracy: each evaluation, timed from the start of training
        log.event(key=c.EVAL_ACCURACY, value=e["top1"] / 100.0, time_ms=_ms(t_train + e["elapsed_s"]),
                  metadata={c.EPOCH_NUM: e["epoch"], "step": e["step"], "time_basis": "measured"})
    measure = representative(record)
    ips = measure.images_per_s if measure is not None else None
    if measure is not None and ips is not None:  # the images/s that represents the case (harness.results.case_rules)
        meta = {"unit": "images/s", "measured": measure.label}
        p50 = (train.get("ms_per_step") or {}).get("p50")
        if p50 is not None:
            meta["ms_per_step_p50"] = p50
        log.event(key=THROUGHPUT_KEY, value=ips, time_ms=_ms(min(t, t_end)), metadata=meta)
    if ev.get("top1") is not None and not evaluations and has_accuracy(s):  # synthetic labels: no accuracy
        eval_s = float(ev.get("first_step_s") or 0.0) + sum(
            float(x) for x in (record.get("samples") or {}).get("eval_step_s") or [] if isinstance(x, (int, float)))
        log.event(key=c.EVAL_ACCURACY, value=ev["top1"] / 100.0, time_ms=_ms(min(t + eval_s, t_end)),
                  metadata={c.EPOCH_NUM: last_epoch, "top5": None if ev.get("top5") is None else ev["top5"] / 100.0,
                            "time_basis": basis})  # the epoch its epoch_stop names; top-5 a fraction like top-1
    ok = record.get("status") == "ok"
    log.end(key=c.RUN_STOP, time_ms=_ms(t_end),
            metadata={c.STATUS: c.SUCCESS if ok else c.ABORTED, "harness_status": record.get("status"),
                      **({} if ok else {"reason": record.get("reason")}), "time_basis": "measured"})


def export_mllog(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Write one MLPerf log per case (and repetition) of the run in ``run_dir`` into ``out_dir`` (default
    ``run_dir/mllog``); a resumed run's newest record of each counts. Returns the files written."""
    run = Path(run_dir)
    if not run.exists():
        raise HarnessError(f"{run}: no such run folder")
    results = run / RESULTS_FILE if run.is_dir() else run
    if not results.is_file():
        raise HarnessError(f"{run}: not a run folder (no {RESULTS_FILE})")
    try:
        import mlperf_logging.mllog  # noqa: F401
    except ImportError:
        raise HarnessError("the mlperf-logging package is not installed (pip install mlperf-logging)") from None
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in read_records(results):
        if r.get("kind", "measured") == "measured":
            latest[r["case"], r.get("repeat", 0)] = r
    if not latest:
        raise HarnessError(f"{results}: no measured records")
    out = Path(out_dir) if out_dir is not None else (results.parent / "mllog")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{out}: cannot make the output folder: {exc.strerror}") from None
    written = []
    for (case, rep), record in sorted(latest.items()):
        many = int(record.get("repeats") or 1) > 1
        path = out / f"{case_slug(case)}{f'-rep{rep}' if many else ''}.log"
        try:
            _write_case(record, path)
        except OSError as exc:
            raise HarnessError(f"{path}: cannot write: {exc.strerror}") from None
        written.append(path)
    return written
