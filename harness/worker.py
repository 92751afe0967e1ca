"""A case's process: loads one backend and runs the core-owned loops and clock.

Run by the runner as ``python -m harness.worker CASE.json RESULT.json`` in the
case's own working folder. The timing rules are the same for every backend:

* the first step (graph compilation, allocator warm-up) is timed on its own and
  reported as ``first_step_s``; the remaining warm-up steps are not timed;
* each timed step is bracketed by ``harness_synchronize`` and holds only the
  batch fetch and the backend's step: no logging, no reading values to the host;
* losses and correct-counts are read with ``harness_to_host`` after the loop;
* progress goes to the parent between steps, outside the timed intervals.

The result file is rewritten after each phase, so a failure later in the case
keeps what was already measured.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .checkpoints import Checkpoints, interval, refuse_with_target
from .config import Case
from .contract import check_counts, check_export, check_info, check_logits, check_session
from .data import SKIPPED, eval_arrays
from .errors import HarnessError, Unsupported, near
from .hookspecs import OPTIONAL_HOOKS, required_hooks
from .launchers import rank_of, rank_result_file, world_of
from .models import get_model
from .plugins import load_backend
from .timing import summarize, throughput

__all__ = ["run_case", "main"]

_PROGRESS_EVERY_S = 0.5
_PER_DEVICE_STATE = (".running_mean", ".running_var", ".num_batches_tracked")


class _Progress:
    """Sends ``{"phase", "step", "total"}`` lines to the parent (at most every 0.5 s)."""

    def __init__(self) -> None:
        fd, ino = os.environ.get("HARNESS_PROGRESS_FD"), os.environ.get("HARNESS_PROGRESS_INO")
        self.fd = int(fd) if fd else None
        # A launcher (torchrun, msrun) does not pass the pipe on to its workers, so the number may name another
        # file of this process (a data-loader queue): write only to the very pipe the runner opened.
        try:
            if self.fd is not None and str(os.fstat(self.fd).st_ino) != ino:
                self.fd = None
        except OSError:
            self.fd = None
        self.last = 0.0

    def __call__(self, phase: str, step: int, total: int, force: bool = False) -> None:
        if self.fd is None:
            return
        now = time.monotonic()
        if not force and now - self.last < _PROGRESS_EVERY_S:
            return
        self.last = now
        try:
            os.write(self.fd, (json.dumps({"phase": phase, "step": step, "total": total}) + "\n").encode())
        except OSError:
            self.fd = None


def _forever(stream: Any) -> Iterator[Any]:
    """Batches across epochs; a stream with no batches is an error."""
    while True:
        empty = True
        for batch in stream:
            empty = False
            yield batch
        if empty:
            raise HarnessError("the data stream yielded no batches (dataset smaller than one batch?)")


def _write(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def _host_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _open_train(hook: Any, case: Case, device: Any) -> tuple[Any, int, int]:
    """The train stream, its steps per epoch and the run's total steps (``epochs``, else warm-up + ``steps``)."""
    s = case.settings
    data = hook.harness_data(case=case, split="train", device=device)
    steps_per_epoch = len(data)
    if steps_per_epoch < 1:
        raise HarnessError("train data has fewer images than one batch")
    if s.epochs is None:
        return data, steps_per_epoch, s.warmup + s.steps
    total = max(1, math.ceil(s.epochs * steps_per_epoch))
    if total <= s.warmup:
        raise HarnessError(f"epochs={s.epochs} gives {total} steps, not more than warmup={s.warmup}")
    return data, steps_per_epoch, total


def _record_train(result: dict[str, Any], batch_size: int, samples: list[float], first_step_s: float, warmup: int,
                  total: int, steps_per_epoch: int, loss_first: float, losses: list[float]) -> None:
    """The train metrics and samples: ``samples`` and ``losses`` are the timed steps'."""
    result["metrics"]["train"] = {
        "images_per_s": throughput(batch_size, samples),
        "ms_per_step": summarize(samples),
        "first_step_s": first_step_s,
        "warmup_steps": warmup,
        "timed_steps": len(samples),
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "epochs": total / steps_per_epoch,
        "loss_first": loss_first,
        "loss_last": losses[-1] if losses else loss_first,
    }
    result["samples"]["train_step_s"] = samples
    result["samples"]["train_loss"] = losses


def _check_finite(step_losses: Iterable[tuple[int, float]]) -> None:
    """Fail the case as diverged at the first step (1-based) whose loss is NaN or infinite."""
    bad = next(((i, v) for i, v in step_losses if not math.isfinite(v)), None)
    if bad is not None:
        raise HarnessError(f"diverged at step {bad[0]}: loss is {bad[1]}")


def _train(hook: Any, case: Case, model: Any, device: Any, progress: _Progress, result: dict[str, Any],
           rank: int = 0, world: int = 1) -> None:
    """Training for ``steps`` (after ``warmup``) or ``epochs``, checkpointed when the case asks for it and resumed
    from the newest checkpoint in the case folder (:mod:`harness.checkpoints`)."""
    s = case.settings
    data, steps_per_epoch, total = _open_train(hook, case, device)
    step = hook.harness_train_step(case=case, model=model, device=device, total_steps=total,
                                   steps_per_epoch=steps_per_epoch)
    every = interval(case, steps_per_epoch)
    store = Checkpoints(case, os.getcwd(), every, rank, world) if every is not None else None
    done, saved = 0, {}
    if store is not None:
        missing = [name for name in OPTIONAL_HOOKS if not getattr(hook, name).get_hookimpls()]
        if missing:
            raise HarnessError(f"checkpoint_every: backend '{case.backend}' does not implement {missing[0]}")
        found = store.latest()
        if found is not None:
            done, path, saved = found
            progress("resume", done, total, force=True)
            hook.harness_load_train_state(case=case, model=model, device=device, step=step, path=str(path))
            if not hasattr(data, "start_at"):
                raise HarnessError(f"backend '{case.backend}': its train stream has no start_at(epoch, batch), "
                                   "so a checkpoint cannot be resumed")
            data.start_at(done // steps_per_epoch, done % steps_per_epoch)
    losses: list[float] = list(saved.get("losses", []))  # host values of the steps before `done`
    samples: list[float] = list(saved.get("samples", []))  # timed steps only
    resumes: list[dict[str, Any]] = list(saved.get("resumes", []))
    first_step_s = saved.get("first_step_s")
    pending: list[Any] = []  # device losses of this process's steps, read after the timed steps

    def to_host() -> bool:
        """Read the pending losses; False when one is NaN or infinite (no checkpoint is saved then)."""
        if pending:
            losses.extend(hook.harness_to_host(value=list(pending)))
            pending.clear()
        return all(math.isfinite(v) for v in losses)

    sync = hook.harness_synchronize
    clock = time.perf_counter
    if done < total:  # (a run killed after its last checkpoint, in evaluation, has nothing left to train)
        batches = _forever(data)
        # This process's first step (graph compilation, allocator warm-up) is timed on its own.
        sync(device=device)
        t0 = clock()
        pending.append(step(next(batches)))
        sync(device=device)
        if done == 0:
            first_step_s = clock() - t0
        else:  # not a timed sample: it compiles again
            resumes.append({"step": done, "first_step_s": clock() - t0})
        for i in range(done + 1, total):  # i steps are done
            settle = i == s.warmup
            if store is not None and store.due(i, total):
                if not to_host():
                    break  # diverged: recorded below
                progress("checkpoint", i, total, force=True)
                _save(hook, case, model, device, step, store, i, steps_per_epoch, losses, samples, first_step_s,
                      resumes)
                settle = True
            if i < s.warmup:
                pending.append(step(next(batches)))
                progress("warmup", i + 1, s.warmup)
                continue
            if settle:  # nothing queued may spill into the first timed step, or the one after a checkpoint
                sync(device=device)
            t0 = clock()
            pending.append(step(next(batches)))
            sync(device=device)
            samples.append(clock() - t0)
            progress("train", i + 1 - s.warmup, total - s.warmup)
        if to_host() and store is not None and len(losses) == total:
            _save(hook, case, model, device, step, store, total, steps_per_epoch, losses, samples, first_step_s,
                  resumes)
    _record_train(result, s.batch_size, samples, first_step_s, s.warmup, total, steps_per_epoch, losses[0],
                  losses[s.warmup:])
    if store is not None:
        result["metrics"]["train"]["checkpoints"] = store.summary()
    if resumes:
        result["metrics"]["train"]["resumed"] = resumes
    _check_finite(enumerate(losses, 1))


def _save(hook: Any, case: Case, model: Any, device: Any, step: Any, store: Checkpoints, done: int,
          steps_per_epoch: int, losses: list[float], samples: list[float], first_step_s: float | None,
          resumes: list[dict[str, Any]]) -> None:
    state = {"losses": losses, "samples": samples, "first_step_s": first_step_s, "resumes": resumes}
    store.save(done, steps_per_epoch, state,
               lambda folder: hook.harness_save_train_state(case=case, model=model, device=device, step=step,
                                                            path=folder))


def _first_and_warmup(hook: Any, device: Any, run: Callable[[], Any], warmup: int) -> float:
    """Time the first ``run()`` alone (compilation, allocator warm-up), then make the rest of the ``warmup`` calls
    untimed and settle the device; returns the first call's seconds."""
    sync = hook.harness_synchronize
    sync(device=device)
    t0 = time.perf_counter()
    run()
    sync(device=device)
    first = time.perf_counter() - t0
    for _ in range(1, warmup):
        run()
    sync(device=device)
    return first


def _evaluate(hook: Any, case: Case, model: Any, device: Any, progress: _Progress, result: dict[str, Any]) -> float:
    """One timed evaluation pass; returns top-1 (%)."""
    s = case.settings
    data = hook.harness_data(case=case, split="eval", device=device)
    n_batches = len(data) if s.eval_batches is None else min(len(data), s.eval_batches)
    step = hook.harness_eval_step(case=case, model=model, device=device)
    sync = hook.harness_synchronize
    batches = iter(data)
    try:
        first = next(batches)
    except StopIteration:
        raise HarnessError("the eval data stream yielded no batches") from None

    # Untimed warm-up on the first batch (compilation); it is counted once below.
    first_step_s = _first_and_warmup(hook, device, lambda: step(first), min(s.warmup, 3))

    # Timed pass over every batch; as in training, each interval holds the batch fetch and the step
    # (the first batch was fetched above, so its interval holds the step alone).
    samples: list[float] = []
    outs: list[Any] = []
    clock = time.perf_counter
    for i in range(n_batches):
        t0 = clock()
        batch = first if i == 0 else next(batches, None)
        if batch is None:
            break
        outs.append(step(batch))
        sync(device=device)
        samples.append(clock() - t0)
        progress("eval", i + 1, n_batches)

    backend = case.backend
    counts = [check_counts(backend, hook.harness_to_host(value=o)) for o in outs]
    top1 = math.fsum(c[0] for c in counts)
    top5 = math.fsum(c[1] for c in counts)
    n = math.fsum(c[2] for c in counts)
    result["metrics"]["eval"] = {
        "top1": 100.0 * top1 / n if n else float("nan"),
        "top5": 100.0 * top5 / n if n else float("nan"),
        "images": int(n),
        "images_per_s": n / math.fsum(samples) if samples else float("nan"),
        "ms_per_step": summarize(samples),
        "first_step_s": first_step_s,
    }
    result["samples"]["eval_step_s"] = samples
    return result["metrics"]["eval"]["top1"]


def _train_to_target(hook: Any, case: Case, model: Any, device: Any, progress: _Progress, result: dict[str, Any],
                     init_s: float) -> None:
    """Time to accuracy, MLPerf style: the clock starts before the train data is touched and runs through
    every evaluation until top-1 reaches ``target_top1`` (or the run ends). Step samples are kept as usual."""
    s = case.settings
    refuse_with_target(case)
    clock = time.perf_counter
    t_start = clock()
    data, steps_per_epoch, total = _open_train(hook, case, device)
    every = max(1, round(s.eval_every_epochs * steps_per_epoch))
    step = hook.harness_train_step(case=case, model=model, device=device, total_steps=total,
                                   steps_per_epoch=steps_per_epoch)
    sync = hook.harness_synchronize
    batches = _forever(data)
    samples: list[float] = []
    losses: list[Any] = []
    evaluations: list[dict[str, float]] = []
    reached = None
    sync(device=device)
    for i in range(total):
        t0 = clock()
        losses.append(step(next(batches)))
        sync(device=device)
        samples.append(clock() - t0)
        progress("train", i + 1, total)
        if (i + 1) % every == 0 or i + 1 == total:
            top1 = _evaluate(hook, case, model, device, progress, result)
            evaluations.append({"step": i + 1, "epoch": (i + 1) / steps_per_epoch, "top1": top1,
                                "elapsed_s": clock() - t_start})
            if top1 >= s.target_top1:
                reached = evaluations[-1]
                break
    values = hook.harness_to_host(value=losses)
    warm = min(s.warmup, len(samples) - 1)  # the timed samples are those after the warm-up, when there are any
    result["metrics"]["time_to_accuracy"] = {
        "target_top1": s.target_top1,
        "reached": reached is not None,
        "time_s": reached["elapsed_s"] if reached else None,
        "epochs": reached["epoch"] if reached else None,
        "init_s": init_s,
        "evaluations": evaluations,
    }
    _record_train(result, s.batch_size, samples[warm:], samples[0], warm, len(samples), steps_per_epoch, values[0],
                  values[warm:])
    _check_finite(enumerate(values, 1))


def _load_weights(hook: Any, case: Case, model: Any) -> None:
    """``settings.weights``: a checkpoint of this backend, or a neutral ``.npz``, loaded strictly."""
    path = case.settings.weights
    if not os.path.isfile(path):
        raise HarnessError(f"weights '{path}': no such file")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                weights = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise HarnessError(f"weights '{path}': not a readable .npz: {exc}") from None
    else:
        weights = hook.harness_read_checkpoint(path=path)
    try:
        hook.harness_set_weights(case=case, model=model, weights=weights)
    except HarnessError as exc:
        raise HarnessError(f"'{path}': {exc}") from None


def _inference_batches(s: Any) -> list[int]:
    """Batch sizes an inference case runs: those measured, and the eval batch when accuracy is measured."""
    return sorted(set(s.inference_batch_sizes) | ({s.batch_size} if s.data != "synthetic" else set()))


def _export(hook: Any, name: str, case: Case, model: Any, device: Any, fmt: str, batch: int | None) -> dict[str, Any]:
    stem = f"model_{fmt}" if batch is None else f"model_{fmt}_b{batch}"
    out = check_export(name, fmt, hook.harness_export(case=case, model=model, device=device, fmt=fmt,
                                                      path=os.path.join(os.getcwd(), stem), batch=batch))
    return {**out, **({"batch": batch} if batch is not None else {})}


def _time_runs(hook: Any, session: Any, device: Any, images: np.ndarray, s: Any) -> tuple[list[float], float]:
    """Untimed warm-up, then timed ``run`` calls until both ``latency_min_runs`` and ``latency_min_s`` are met."""
    sync = hook.harness_synchronize
    inputs = session.inputs(images)
    first = _first_and_warmup(hook, device, lambda: session.run(inputs), s.warmup)
    samples: list[float] = []
    clock = time.perf_counter
    total = 0.0
    while len(samples) < s.latency_min_runs or total < s.latency_min_s:
        t0 = clock()
        session.run(inputs)
        sync(device=device)
        samples.append(clock() - t0)
        total += samples[-1]
    return samples, first


def _inference(hook: Any, info: dict[str, Any], case: Case, model: Any, device: Any, progress: _Progress,
               result: dict[str, Any]) -> None:
    """Latency and throughput of the model in ``settings.runtime``, and the exported model's accuracy beside the
    framework's own evaluation of the same weights."""
    s, name = case.settings, info["name"]
    runtimes = info.get("runtimes") or {}
    runtime = s.runtime or next(iter(runtimes), None)
    if runtime not in runtimes:
        raise HarnessError(f"runtime '{runtime}': backend '{name}' has {', '.join(runtimes) or 'no runtimes'}"
                           f"{near(str(runtime), runtimes)}")
    fmt = runtimes[runtime]
    if fmt is not None and model is None and not s.model_file:
        raise HarnessError(f"runtime '{runtime}' loads a {fmt} export: set model_file, or run it through "
                           "`harness run` (which exports with export_from)")
    spec = get_model(case.model)
    out: dict[str, Any] = {"runtime": runtime, "format": fmt, "throughput": []}
    result["metrics"]["inference"] = out
    exports: list[dict[str, Any]] = []
    measure = sorted(set(s.inference_batch_sizes))
    rng = np.random.default_rng(s.seed + 3)
    batch_sizes = _inference_batches(s)
    for i, b in enumerate(batch_sizes):
        path = None
        if fmt is not None and model is not None:
            progress("export", i + 1, len(batch_sizes), force=True)
            exports.append(_export(hook, name, case, model, device, fmt, b))
            path = os.path.join(os.getcwd(), exports[-1]["path"])
        elif fmt is not None:
            path = s.model_file.replace("{batch}", str(b))
            if not os.path.isfile(path):
                raise HarnessError(f"model_file '{path}': no such file")
        session = check_session(name, runtime, hook.harness_inference_session(
            case=case, device=device, model=model, runtime=runtime, path=path, batch=b))
        out["runtime_detail"] = session.runtime
        if b in measure:
            images = rng.standard_normal((b, 3, s.image_size, s.image_size), dtype=np.float32)
            check_logits(name, f"{runtime} session logits", session.logits(session.run(session.inputs(images))),
                         b, s.num_classes)
            samples, first = _time_runs(hook, session, device, images, s)
            progress("inference", measure.index(b) + 1, len(measure), force=True)
            out["throughput"].append({"batch_size": b, "images_per_s": throughput(b, samples),
                                      "ms_per_batch": summarize(samples), "first_run_s": first})
            result["samples"][f"inference_b{b}_s"] = samples
            if b == 1:
                out["latency_ms"] = summarize(samples)
        if b == s.batch_size and s.data != "synthetic":
            out["accuracy"] = _exported_accuracy(hook, name, case, model, device, session, b, spec)
            if "eval" in result["metrics"]:  # the framework's own evaluation of the same weights
                out["accuracy"]["framework_top1"] = result["metrics"]["eval"]["top1"]
        del session
    if out["throughput"]:
        out["images_per_s"] = max(out["throughput"], key=lambda t: t["batch_size"])["images_per_s"]
    if exports:
        result["metrics"]["export"] = exports


def _exported_accuracy(hook: Any, name: str, case: Case, model: Any, device: Any, session: Any, batch: int,
                       spec: Any) -> dict[str, Any]:
    """Top-1/top-5 of the session over the eval split (host arrays, the last batch padded to the session's batch),
    and, where the framework model is here, how far its logits are from the framework's on the same images."""
    s = case.settings
    top1 = top5 = n = agree = 0
    max_diff = 0.0
    for images, labels in eval_arrays(s, batch, spec.mean, spec.std):
        k = len(labels)
        padded = images if k == batch else np.concatenate([images, np.repeat(images[-1:], batch - k, axis=0)])
        logits = check_logits(name, "session logits", session.logits(session.run(session.inputs(padded))),
                              batch, s.num_classes)[:k]
        ranked = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        top1 += int((ranked[:, 0] == labels).sum())
        top5 += int((ranked == labels[:, None]).any(axis=1).sum())
        n += k
        if model is not None:
            own = check_logits(name, "harness_predict", hook.harness_predict(case=case, model=model, device=device,
                                                                            images=images), k, s.num_classes)
            agree += int((own.argmax(axis=1) == ranked[:, 0]).sum())
            max_diff = max(max_diff, float(np.max(np.abs(own - logits))))
    acc: dict[str, Any] = {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": n}
    if model is not None:
        acc["top1_agreement"] = 100.0 * agree / n
        acc["max_abs_logit_diff"] = max_diff
    return acc


def run_case(case: Case, result_path: str) -> dict[str, Any]:
    """Run ``case`` in this process; write and return the result dict."""
    world, rank = world_of(), rank_of()
    if world > 1:
        result_path = str(rank_result_file(result_path, rank))
    progress = _Progress() if rank == 0 else (lambda *a, **k: None)
    result: dict[str, Any] = {"status": "running", "reason": None, "metrics": {}, "samples": {}, "env": {},
                              "pid": os.getpid()}
    phase = "setup"
    t_init = time.perf_counter()
    try:
        pm = load_backend(case.backend)
        hook = pm.hook
        info = check_info(case.backend, hook.harness_backend_info())
        scenarios = info.get("scenarios", ["train", "eval"])
        if case.settings.scenario not in scenarios:
            raise HarnessError(f"backend '{case.backend}' does not run scenario '{case.settings.scenario}' "
                               f"(it runs: {', '.join(scenarios)})")
        device = hook.harness_setup(case=case)
        if case.settings.devices * case.settings.nodes != world:
            raise HarnessError(f"devices: {case.settings.devices} x nodes: {case.settings.nodes}, but this process "
                               f"is one of {world}: multi-device cases are started by `harness run` through the "
                               "backend's launcher (torchrun, msrun)")
        for part in hook.harness_environment(case=case, device=device)[::-1]:
            result["env"].update(part or {})
        phase = "build"
        builds = "harness_build_model" in required_hooks(scenarios) and not (
            case.settings.scenario == "inference" and "export" not in scenarios)
        model = hook.harness_build_model(case=case, device=device) if builds else None
        if case.settings.weights and model is not None:
            phase = "weights"
            _load_weights(hook, case, model)
        _write(result_path, result)
        if case.settings.scenario in ("inference", "export") and world > 1:
            raise HarnessError(f"scenario {case.settings.scenario} runs on one device (devices: 1)")
        if case.settings.target_top1 is not None and world > 1:
            raise HarnessError("target_top1: time to accuracy runs on one device (devices: 1) in this version")
        if case.settings.scenario == "train" and case.settings.target_top1 is not None:
            phase = "train"
            _train_to_target(hook, case, model, device, progress, result, time.perf_counter() - t_init)
            _write(result_path, result)
        elif case.settings.scenario == "train":
            phase = "train"
            _train(hook, case, model, device, progress, result, rank, world)
            _write(result_path, result)
        if case.settings.scenario == "train":  # the trained weights' identity (ranks must agree; runs compare)
            weights = hook.harness_get_weights(case=case, model=model)
            digest = hashlib.sha256()
            # with several devices BatchNorm statistics are per device (each rank sees its own shard): left out
            for name in sorted(k for k in weights if world == 1 or not k.endswith(_PER_DEVICE_STATE)):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(weights[name]).tobytes())
            result["metrics"]["weights_sha256"] = digest.hexdigest()
        # evaluation and exports are rank 0's (on the full eval set)
        scenario = case.settings.scenario
        evaluate = (scenario == "eval" or (scenario == "train" and case.settings.eval)
                    or (scenario in ("inference", "export") and model is not None and case.settings.data != "synthetic"))
        if rank == 0 and evaluate and case.settings.target_top1 is None:
            phase = "eval"
            _evaluate(hook, case, model, device, progress, result)
            _write(result_path, result)
        if scenario == "inference":
            phase = "inference"
            _inference(hook, info, case, model, device, progress, result)
            _write(result_path, result)
        exports = []
        per_batch = _inference_batches(case.settings) if scenario == "export" else [None]
        for fmt in (case.settings.export if rank == 0 else ()):
            phase = f"export {fmt}"
            for b in per_batch:
                progress("export", len(exports) + 1, len(case.settings.export) * len(per_batch), force=True)
                exports.append(_export(hook, case.backend, case, model, device, fmt, b))
        if exports:
            result["metrics"]["export"] = exports
        if SKIPPED:  # files of a data folder that were not readable images
            result["metrics"]["data"] = {split: dict(v) for split, v in SKIPPED.items()}
        result["metrics"]["memory"] = {"host_peak_bytes": _host_peak_bytes(),
                                       "device_peak_bytes": hook.harness_device_memory(device=device)}
        result["status"] = "ok"
    except Unsupported as exc:  # includes DeviceUnavailable
        reason = str(exc) if str(exc).startswith(case.device) else f"{case.device}: {exc}"
        result.update(status="skipped", reason=reason)
    except HarnessError as exc:
        result.update(status="failed", reason=f"{phase}: {exc}")
    except MemoryError:
        result.update(status="failed", reason=f"{phase}: out of host memory")
    except Terminated:
        result.update(status="failed", reason=f"{phase}: terminated by SIGTERM (stopped from outside, e.g. by the "
                                              "launcher after another rank failed)", terminated=True)
    except Exception as exc:  # noqa: BLE001 - any backend error fails the case, with its traceback in the log
        traceback.print_exc()
        msg = str(exc).strip().splitlines()
        # torch.OutOfMemoryError (CUDA), NPU and MindSpore allocators say "out of memory" in their messages
        oom = "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower()
        result.update(status="failed", reason=f"{phase}: {'out of device memory: ' if oom else ''}"
                                              f"{type(exc).__name__}: {msg[0] if msg else ''}"[:500])
    result["metrics"].setdefault("memory", {"host_peak_bytes": _host_peak_bytes()})
    _write(result_path, result)
    return result


class Terminated(BaseException):
    """SIGTERM arrived: the launcher (or the runner) is stopping this process."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    case_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    with open(case_path, encoding="utf-8") as f:
        case = Case.from_dict(json.load(f))
    result = run_case(case, result_path)
    print(f"harness worker: {case.name}: {result['status']}" + (f": {result['reason']}" if result["reason"] else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
